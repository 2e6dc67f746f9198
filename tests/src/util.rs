//! Clocks, ids, encodings and a whole login.

use serde_json::Value;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::{Browser, TestServer};

/// Unix time, seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Unix time, milliseconds.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A well-formed id (22 base64url characters, 16 bytes) that no server generated.
pub fn unknown_id() -> String {
    URL_SAFE_NO_PAD.encode(*b"not-a-real-id!!!")
}

/// Percent-encodes everything but unreserved characters (for query values).
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The JSON payload of a JWT (not verified).
pub fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON payload")
}

/// The decoded header of a JWT (not verified).
pub fn jwt_header(token: &str) -> Value {
    let header = token.split('.').next().expect("JWT has a header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url header"))
        .expect("JSON header")
}

/// Runs a whole login on `server` as Alice and returns the browser and the token set.
pub async fn login(server: &TestServer) -> (Browser, Value) {
    let mut browser = server.browser();
    let qr = browser.generate().await;
    server.alice().scan_and_confirm(&qr.id).await;
    let status = browser.bound_status(&qr.id).await;
    let ticket = status["ticket"].as_str().expect("ticket").to_owned();
    let tokens = browser.exchange(&ticket).await.assert_json(200);
    (browser, tokens)
}
