//! Property tests of what an upstream IdP may answer: the Authing provider, inside a
//! `QrAuthService`, talks to a real HTTP server on loopback whose every answer (status, body) is
//! drawn by proptest. Whatever it says, the service answers with a typed error of the
//! documented kind (502/504 for Authing's fault, the mapped 4xx for Authing's documented
//! refusals), never a panic and never a 500.
//!
//! `PROPTEST_CASES=5000 cargo test -p qrauth-authing --release --test upstream_responses` for a
//! longer run.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use qrauth_authing::{ApiVersion, AuthingProvider};
use qrauth_core::{ApiRequest, ApiResponse, Lifetimes, Limits, QrAuthService, Route};
use qrauth_test_support::scripted_upstream::{self, ScriptedUpstream as Upstream, http_status};
use serde_json::Value;

trait AuthingUpstream {
    fn service(&self, version: ApiVersion) -> QrAuthService;
}

impl AuthingUpstream for Upstream {
    fn service(&self, version: ApiVersion) -> QrAuthService {
        let _guard = self.runtime.enter();
        let provider = AuthingProvider::builder(
            "app-id-0000",
            "app-secret-0000",
            self.base_url(),
            "pool-0000",
        )
        .allow_insecure_http(true)
        .api_version(version)
        .poll_interval(Duration::from_millis(100))
        .timeouts(Duration::from_secs(2), Duration::from_secs(1))
        .build()
        .expect("provider");
        QrAuthService::builder(Arc::new(provider))
            .lifetimes(Lifetimes::default().poll_interval(Duration::from_secs(1)))
            // The polls of a case come faster than the advertised interval.
            .limits(Limits::unlimited())
            .insecure_dev_cookies()
            .build()
            .expect("service")
    }
}

/// A browser's `POST /qrcode` (empty body); returns the response and its binding cookie.
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

/// The bound browser's plain `GET /qrcode/status`.
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

/// `default` cases, or `PROPTEST_CASES`.
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

/// Any small JSON value, with Authing's field names and status words likely.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    scripted_upstream::json_value(
        &[
            "status",
            "ticket",
            "qrcodeId",
            "random",
            "scannedResult",
            "userInfo",
            "nickname",
            "photo",
        ],
        &[
            "PENDING",
            "SCANNED",
            "AUTHORIZED",
            "CANCELLED",
            "EXPIRED",
            "MOBILE_APP",
        ],
    )
}

/// An Authing-like envelope (V3 `statusCode`/`apiCode`, V2 `code`) around any data, or bytes.
fn upstream_body() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![
        Just(200i64),
        Just(400),
        Just(401),
        Just(403),
        Just(404),
        Just(500),
        Just(2241),
        any::<i64>()
    ];
    prop_oneof![
        (
            code.clone(),
            proptest::option::of(code.clone()),
            json_value(),
            "[ -~]{0,20}"
        )
            .prop_map(|(status, api, data, message)| {
                let mut envelope = serde_json::json!({
                    "statusCode": status, "code": status, "message": message,
                    "requestId": "r", "data": data,
                });
                if let (Some(api), Some(obj)) = (api, envelope.as_object_mut()) {
                    obj.insert("apiCode".into(), api.into());
                }
                serde_json::to_vec(&envelope).unwrap_or_default()
            }),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        proptest::collection::vec(any::<u8>(), 0..300),
    ]
}

/// The error statuses an upstream answer may legitimately turn into.
fn acceptable(status: u16) -> bool {
    status != 500 && (status == 502 || status == 504 || (400..500).contains(&status))
}

/// An error answer of the contract: `{error, error_description}`.
fn is_error_body(body: &Value) -> bool {
    body["error"].is_string() && body["error_description"].is_string()
}

fn valid_gene(version: ApiVersion) -> Vec<u8> {
    let data = match version {
        ApiVersion::V2 => serde_json::json!({ "random": "upstream-qr-1", "expiresIn": 120 }),
        _ => serde_json::json!({ "qrcodeId": "upstream-qr-1" }),
    };
    serde_json::to_vec(&serde_json::json!({
        "statusCode": 200, "code": 200, "message": "ok", "data": data,
    }))
    .unwrap_or_default()
}

fn version(v2: bool) -> ApiVersion {
    if v2 { ApiVersion::V2 } else { ApiVersion::V3 }
}

proptest! {
    #![proptest_config(config(128))]

    /// gene-qrcode answered with anything: a QR, or a typed error.
    #[test]
    fn any_gene_answer_gives_a_qr_or_a_typed_error(
        v2 in any::<bool>(), status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let service = upstream.service(version(v2));
        upstream.answer(status, body);
        let (response, _) = upstream.runtime.block_on(generate(&service));
        let answer = json_body(&response);
        match response.status.as_u16() {
            201 => prop_assert!(
                answer["qrcodeContent"].as_str().is_some_and(|c| !c.is_empty()),
                "{answer}"
            ),
            status => prop_assert!(
                acceptable(status) && is_error_body(&answer),
                "{answer} → {status}"
            ),
        }
    }
}

proptest! {
    // Each case waits for a few upstream rounds: fewer cases by default.
    #![proptest_config(config(40))]

    /// check-qrcode-status answered with anything: the browser's poll gives a valid state or
    /// a typed error, and the session is never corrupted (a second poll agrees with itself).
    #[test]
    fn any_status_answer_gives_a_state_or_a_typed_error(
        v2 in any::<bool>(), status in http_status(), body in upstream_body(),
    ) {
        let upstream = Upstream::start();
        let api = version(v2);
        let service = upstream.service(api);
        upstream.answer(200, valid_gene(api));
        let outcome = upstream.runtime.block_on(async {
            let (qr, cookie) = generate(&service).await;
            assert_eq!(qr.status, 201, "generate against a valid gene answer");
            let id = json_body(&qr)["qrcodeId"].as_str().expect("qrcodeId").to_owned();
            let cookie = cookie.expect("binding cookie");
            upstream.answer(status, body);
            // A couple of upstream rounds at the 100 ms interval (with one retry each).
            tokio::time::sleep(Duration::from_millis(350)).await;
            let first = poll(&service, &id, &cookie).await;
            let second = poll(&service, &id, &cookie).await;
            (first, second)
        });
        for response in [outcome.0, outcome.1] {
            let s = json_body(&response);
            match response.status.as_u16() {
                200 => prop_assert!(
                    s["version"].as_u64().is_some_and(|v| v >= 1)
                        && (s["ticket"].is_null() || s["status"] == "confirmed"),
                    "{s}"
                ),
                status => prop_assert!(
                    acceptable(status) && is_error_body(&s),
                    "{s} → {status}"
                ),
            }
        }
    }
}

/// Issue 16: an answer larger than qrauth reads (64 KiB), even valid JSON, is the upstream's
/// failure (502), never buffered whole; the same answer within the bound gives a QR.
#[test]
fn an_upstream_answer_beyond_the_size_limit_is_refused() {
    for api in [ApiVersion::V3, ApiVersion::V2] {
        let upstream = Upstream::start();
        let service = upstream.service(api);
        let mut envelope: Value = serde_json::from_slice(&valid_gene(api)).expect("JSON");
        envelope["padding"] = Value::String("x".repeat(70 * 1024));
        upstream.answer(200, serde_json::to_vec(&envelope).expect("JSON"));
        let (response, _) = upstream.runtime.block_on(generate(&service));
        assert_eq!(response.status, 502, "{}", json_body(&response));
        assert_eq!(json_body(&response)["error"], "upstream_unavailable");
        envelope["padding"] = Value::String("x".repeat(32 * 1024));
        upstream.answer(200, serde_json::to_vec(&envelope).expect("JSON"));
        let (response, _) = upstream.runtime.block_on(generate(&service));
        assert_eq!(response.status, 201, "{}", json_body(&response));
    }
}
