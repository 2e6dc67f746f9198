//! The status body's allow-list.

use serde_json::Value;

/// The keys a status body may have (requirement 17).
pub const STATUS_KEYS: [&str; 11] = [
    "qrcodeId",
    "status",
    "scanned",
    "expired",
    "success",
    "canceled",
    "userInfo",
    "ticket",
    "description",
    "version",
    "expireAt",
];

/// Asserts a status body: exactly the allow-listed keys, `userInfo` with at most nickname and
/// photo, a ticket only when confirmed, and Authing's flags agreeing with `status`.
#[track_caller]
pub fn assert_status_shape(body: &Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("status body is an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut allowed = STATUS_KEYS.to_vec();
    // With number matching, a scanned session also shows its code (protocol §3.2).
    if body["status"] == "scanned" && object.contains_key("matchCode") {
        assert!(
            body["matchCode"].as_str().is_some_and(|c| c.len() == 2),
            "matchCode of {body}"
        );
        allowed.push("matchCode");
    }
    // A pending session whose QR rotates says which rotation is on screen and until when, and
    // carries the new QR when the browser shows another (protocol §3.2).
    if body["status"] == "pending" && object.contains_key("rotation") {
        assert!(body["rotation"].is_u64(), "rotation of {body}");
        assert!(body["rotatesAt"].is_u64(), "rotatesAt of {body}");
        allowed.extend(["rotation", "rotatesAt"]);
        if object.contains_key("qrcodeContent") {
            assert!(
                body["image"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("data:image/svg+xml")),
                "image with the new QR of {body}"
            );
            allowed.extend(["qrcodeContent", "image"]);
        }
    }
    allowed.sort_unstable();
    assert_eq!(keys, allowed, "status keys of {body}");
    match &body["userInfo"] {
        Value::Null => {}
        Value::Object(user) => {
            for key in user.keys() {
                assert!(
                    key == "nickname" || key == "photo",
                    "userInfo key {key} in {body}"
                );
            }
        }
        other => panic!("userInfo is {other}"),
    }
    let status = body["status"].as_str().expect("status string");
    let flag = |name: &str| {
        body[name]
            .as_bool()
            .unwrap_or_else(|| panic!("{name} flag in {body}"))
    };
    assert_eq!(
        flag("scanned"),
        matches!(status, "scanned" | "confirmed"),
        "scanned flag in {body}"
    );
    assert_eq!(flag("success"), status == "confirmed", "success in {body}");
    assert_eq!(flag("expired"), status == "expired", "expired in {body}");
    assert_eq!(
        flag("canceled"),
        status == "cancelled",
        "canceled in {body}"
    );
    if status != "confirmed" {
        assert!(
            body["ticket"].is_null(),
            "ticket only when confirmed: {body}"
        );
    }
    if !matches!(status, "scanned" | "confirmed") {
        assert!(
            body["userInfo"].is_null(),
            "userInfo only when scanned or confirmed: {body}"
        );
    }
    assert!(body["version"].is_u64(), "version in {body}");
}

/// The `version` of a status body.
pub fn version(body: &Value) -> u64 {
    body["version"].as_u64().expect("version")
}
