//! Property tests of what an OpenID Provider may answer: the device-grant provider, inside a
//! `QrAuthService`, talks to a real HTTP server on loopback whose answers (status, body; per
//! endpoint) are drawn by proptest, and to raw TCP servers that cut connections, cut answers
//! short or answer too late. Whatever happens, the browser gets a QR, a valid state or a typed
//! error of the documented kind (502/504 for the IdP's fault, 4xx for the mapped refusals),
//! never a panic and never a 500.
//!
//! `PROPTEST_CASES=2000 cargo test -p qrauth-oidc --release --test upstream_responses` for a
//! longer run.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use qrauth_core::{ApiRequest, ApiResponse, Lifetimes, Limits, QrAuthService, Route};
use qrauth_oidc::DeviceGrantProvider;
use qrauth_test_support::scripted_upstream::{
    self, Fault, FaultyUpstream, ScriptedUpstream as Upstream, http_status,
};
use serde_json::{Value, json};

/// Timeout of the provider's calls in these tests.
const TIMEOUT: Duration = Duration::from_secs(1);

fn service(issuer: &str) -> QrAuthService {
    let provider = DeviceGrantProvider::builder(issuer, "client-0000")
        .client_secret("secret-0000")
        .timeouts(TIMEOUT, TIMEOUT)
        .build()
        .expect("provider");
    QrAuthService::builder(Arc::new(provider))
        .lifetimes(Lifetimes::default().poll_interval(Duration::from_secs(1)))
        .limits(Limits::unlimited())
        .insecure_dev_cookies()
        .build()
        .expect("service")
}

/// A discovery document for an OP at `base` whose token endpoint is at `token_base`.
fn discovery(base: &str, token_base: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "issuer": base,
        "device_authorization_endpoint": format!("{base}/device/auth"),
        "token_endpoint": format!("{token_base}/token"),
        "jwks_uri": format!("{base}/jwks"),
    }))
    .unwrap_or_default()
}

fn valid_device(base: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "device_code": "dc-0000", "user_code": "BCDF-GHJK",
        "verification_uri": format!("{base}/device"),
        "verification_uri_complete": format!("{base}/device?user_code=BCDF-GHJK"),
        "expires_in": 600, "interval": 1,
    }))
    .unwrap_or_default()
}

async fn generate(service: &QrAuthService) -> (ApiResponse, Option<String>) {
    let response = service
        .handle(Route::Generate, ApiRequest::new(http::Method::POST))
        .await;
    let name = service.cookies().binding_name();
    let cookie = response
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (n, value) = pair.split_once('=')?;
            (n.trim() == name).then(|| format!("{name}={}", value.trim()))
        });
    (response, cookie)
}

async fn poll(service: &QrAuthService, id: &str, cookie: &str) -> ApiResponse {
    let mut request = ApiRequest::new(http::Method::GET);
    request.query = Some(format!("qrcodeId={id}"));
    request
        .headers
        .insert(http::header::COOKIE, cookie.parse().expect("cookie header"));
    service.handle(Route::Status, request).await
}

fn json_body(response: &ApiResponse) -> Value {
    response
        .body_bytes()
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null)
}

fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any small JSON value, with the device grant's field names and words likely.
fn json_value() -> impl Strategy<Value = Value> {
    scripted_upstream::json_value(
        &[
            "error",
            "error_description",
            "access_token",
            "id_token",
            "token_type",
            "expires_in",
            "refresh_token",
            "device_code",
            "user_code",
            "verification_uri",
            "verification_uri_complete",
            "verification_url",
            "interval",
            "issuer",
            "device_authorization_endpoint",
            "token_endpoint",
            "jwks_uri",
        ],
        &[
            "authorization_pending",
            "slow_down",
            "access_denied",
            "authorization_declined",
            "bad_verification_code",
            "expired_token",
            "invalid_grant",
            "invalid_client",
            "Bearer",
            "http://127.0.0.1:9/device",
            "javascript:alert(1)",
            "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
        ],
    )
}

/// A JSON object (the usual shape), any JSON, or any bytes.
fn upstream_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::btree_map(
            proptest::sample::select(vec![
                "error", "device_code", "user_code", "verification_uri",
                "verification_uri_complete", "expires_in", "interval", "access_token",
                "id_token", "token_type",
            ]),
            json_value(),
            0..8,
        )
        .prop_map(|m| serde_json::to_vec(&m).unwrap_or_default()),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

fn acceptable(status: u16) -> bool {
    status == 502 || status == 504 || (400..500).contains(&status)
}

fn is_error_body(body: &Value) -> bool {
    body["error"].is_string() && body["error_description"].is_string()
}

proptest! {
    #![proptest_config(config(96))]

    /// Discovery answered with anything: a QR (only for a valid document) or a typed error.
    #[test]
    fn any_discovery_answer_gives_a_qr_or_a_typed_error(
        status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let base = upstream.base_url();
        let service = { let _g = upstream.runtime.enter(); service(&base) };
        upstream.answer_path("/.well-known/openid-configuration", status, body);
        upstream.answer_path("/device/auth", 200, valid_device(&base));
        let (response, _) = upstream.runtime.block_on(generate(&service));
        let answer = json_body(&response);
        match response.status.as_u16() {
            201 => prop_assert!(answer["qrcodeContent"].is_string(), "{answer}"),
            s => prop_assert!(acceptable(s) && is_error_body(&answer), "{answer} → {s}"),
        }
    }

    /// The device authorization answered with anything: a QR whose content is a web URL and
    /// whose `userCode` is a short printable code, or a typed error.
    #[test]
    fn any_device_authorization_answer_gives_a_qr_or_a_typed_error(
        status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let base = upstream.base_url();
        let service = { let _g = upstream.runtime.enter(); service(&base) };
        upstream.answer_path("/.well-known/openid-configuration", 200, discovery(&base, &base));
        upstream.answer_path("/device/auth", status, body);
        let (response, _) = upstream.runtime.block_on(generate(&service));
        let answer = json_body(&response);
        match response.status.as_u16() {
            201 => {
                let content = answer["qrcodeContent"].as_str().unwrap_or("");
                prop_assert!(content.starts_with("http://") || content.starts_with("https://"), "{answer}");
                let code = answer["userCode"].as_str().unwrap_or("");
                prop_assert!(!code.is_empty() && code.chars().count() <= 64, "{answer}");
                prop_assert!(!answer.to_string().contains("device_code"), "{answer}");
            }
            s => prop_assert!(acceptable(s) && is_error_body(&answer), "{answer} → {s}"),
        }
    }
}

proptest! {
    #![proptest_config(config(40))]

    /// The token endpoint answered with anything: the browser's poll gives a valid state or a
    /// typed error, twice in a row; never a ticket for tokens that do not verify.
    #[test]
    fn any_token_answer_gives_a_state_or_a_typed_error(
        status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let base = upstream.base_url();
        let service = { let _g = upstream.runtime.enter(); service(&base) };
        upstream.answer_path("/.well-known/openid-configuration", 200, discovery(&base, &base));
        upstream.answer_path("/device/auth", 200, valid_device(&base));
        upstream.answer_path("/jwks", 200, br#"{"keys":[]}"#.to_vec());
        upstream.answer_path("/token", status, body);
        let outcome = upstream.runtime.block_on(async {
            let (qr, cookie) = generate(&service).await;
            assert_eq!(qr.status, 201, "generate against valid answers");
            let id = json_body(&qr)["qrcodeId"].as_str().expect("qrcodeId").to_owned();
            let cookie = cookie.expect("binding cookie");
            // The loop polls at once when the QR is made.
            tokio::time::sleep(Duration::from_millis(300)).await;
            (poll(&service, &id, &cookie).await, poll(&service, &id, &cookie).await)
        });
        for response in [outcome.0, outcome.1] {
            let s = json_body(&response);
            match response.status.as_u16() {
                200 => prop_assert!(
                    s["version"].as_u64().is_some_and(|v| v >= 1) && s["ticket"].is_null()
                        && s["status"] != "confirmed",
                    "{s}"
                ),
                status => prop_assert!(acceptable(status) && is_error_body(&s), "{s} → {status}"),
            }
        }
    }
}

/// Cut connections, answers cut short and answers too late, at the device authorization and
/// at the token endpoint: `502`/`504 upstream_unavailable`, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_connections_are_502_or_504() {
    for fault in [Fault::Cut, Fault::Truncated, Fault::Slow(TIMEOUT * 3)] {
        let expected = match fault {
            Fault::Slow(_) => 504,
            _ => 502,
        };
        // The device authorization endpoint misbehaves.
        let faulty = FaultyUpstream::start(fault).await;
        let upstream = tokio::task::spawn_blocking(Upstream::start)
            .await
            .expect("upstream");
        let base = upstream.base_url();
        let doc = serde_json::to_vec(&json!({
            "issuer": base,
            "device_authorization_endpoint": format!("{}/device/auth", faulty.base_url()),
            "token_endpoint": format!("{base}/token"),
            "jwks_uri": format!("{base}/jwks"),
        }))
        .expect("doc");
        upstream.answer_path("/.well-known/openid-configuration", 200, doc);
        let qrauth = service(&base);
        let (response, _) = generate(&qrauth).await;
        let body = json_body(&response);
        assert_eq!(response.status.as_u16(), expected, "{fault:?}: {body}");
        assert_eq!(body["error"], "upstream_unavailable", "{body}");

        // The token endpoint misbehaves: the waiting browser is told, the QR stays.
        upstream.answer_path(
            "/.well-known/openid-configuration",
            200,
            discovery(&base, &faulty.base_url()),
        );
        upstream.answer_path("/device/auth", 200, valid_device(&base));
        let qrauth = service(&base);
        let (qr, cookie) = generate(&qrauth).await;
        assert_eq!(qr.status.as_u16(), 201, "{}", json_body(&qr));
        let id = json_body(&qr)["qrcodeId"].as_str().expect("id").to_owned();
        let cookie = cookie.expect("cookie");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = poll(&qrauth, &id, &cookie).await;
            let code = status.status.as_u16();
            assert_ne!(code, 500, "{}", json_body(&status));
            if code == expected {
                assert_eq!(json_body(&status)["error"], "upstream_unavailable");
                break;
            }
            assert_eq!(code, 200, "{fault:?}: {}", json_body(&status));
            assert!(
                tokio::time::Instant::now() < deadline,
                "{fault:?}: never reported"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(qrauth);
        tokio::task::spawn_blocking(move || drop(upstream))
            .await
            .expect("drop");
    }
}

/// An answer larger than the bound is refused without reading it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_answers_are_refused() {
    let upstream = tokio::task::spawn_blocking(Upstream::start)
        .await
        .expect("upstream");
    let base = upstream.base_url();
    upstream.answer_path(
        "/.well-known/openid-configuration",
        200,
        discovery(&base, &base),
    );
    let mut huge = valid_device(&base);
    huge.truncate(huge.len() - 1);
    huge.extend_from_slice(format!(",\"padding\":\"{}\"}}", "x".repeat(100_000)).as_bytes());
    upstream.answer_path("/device/auth", 200, huge);
    let qrauth = service(&base);
    let (response, _) = generate(&qrauth).await;
    assert_eq!(response.status.as_u16(), 502, "{}", json_body(&response));
    drop(qrauth);
    tokio::task::spawn_blocking(move || drop(upstream))
        .await
        .expect("drop");
}
