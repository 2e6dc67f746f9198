//! No secret, ticket or token reaches the logs at any level (§7 requirement 19).
//!
//! Captures everything `tracing` emits at TRACE while a whole login runs through
//! `QrAuthService::handle` (handler, provider, flow and store layers), plus the usual failure
//! paths, then searches the capture for every raw value the flow produced.

use std::sync::Arc;

use async_trait::async_trait;
use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use qrauth_core::provider::builtin::{
    BuiltinProvider, PhoneAuthenticator, PhoneUser, SigningAlgorithm,
};
use qrauth_core::{ApiRequest, Error, QrAuthService, Route};
use qrauth_test_support::LogCapture;
use qrauth_test_support::service_client::{binding_cookie, body_json, json_text_request};

/// The phone app's credential: a secret too, so it must not be logged either.
const PHONE_CREDENTIAL: &str = "Bearer phone-session-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4";

struct TestPhones;

#[async_trait]
impl PhoneAuthenticator for TestPhones {
    async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
        if authorization == PHONE_CREDENTIAL {
            Ok(PhoneUser::new("alice")
                .nickname("Alice")
                .claim("email", "alice@example.com"))
        } else {
            Err(Error::Unauthenticated)
        }
    }
}

fn phone_request(body: &str) -> ApiRequest {
    let mut request = json_text_request(Method::POST, body);
    request
        .headers
        .insert(AUTHORIZATION, HeaderValue::from_static(PHONE_CREDENTIAL));
    request
}

fn with_binding(service: &QrAuthService, mut request: ApiRequest, binding: &str) -> ApiRequest {
    let cookie = format!("{}={binding}", service.cookies().binding_name());
    request
        .headers
        .insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
    request
}

fn status_request(id: &str, query: &str) -> ApiRequest {
    let mut request = ApiRequest::new(Method::GET);
    request.query = Some(format!("qrcodeId={id}{query}"));
    request
}

/// Runs a full login (and its usual failure paths) through the HTTP service; returns every
/// secret value it produced, by name.
async fn full_flow_over_http() -> Vec<(String, String)> {
    let provider = BuiltinProvider::builder(Arc::new(TestPhones))
        .algorithm(SigningAlgorithm::Es256)
        .issuer("https://login.example.com/auth")
        .audience("example-web")
        .phone_url("https://login.example.com/m/confirm")
        .build()
        .unwrap();
    let service = QrAuthService::builder(Arc::new(provider)).build().unwrap();

    // Browser: a QR code.
    let generated = service
        .handle(Route::Generate, ApiRequest::new(Method::POST))
        .await;
    assert_eq!(generated.status, StatusCode::CREATED);
    let id = body_json(&generated)["qrcodeId"]
        .as_str()
        .unwrap()
        .to_owned();
    let binding = binding_cookie(&service, &generated);

    // A stranger polls it, with and without a cookie of their own.
    let stranger = service
        .handle(Route::Generate, ApiRequest::new(Method::POST))
        .await;
    let stranger_binding = binding_cookie(&service, &stranger);
    let foreign = service
        .handle(
            Route::Status,
            with_binding(&service, status_request(&id, ""), &stranger_binding),
        )
        .await;
    assert_eq!(foreign.status, StatusCode::FORBIDDEN);
    let unbound = service.handle(Route::Status, status_request(&id, "")).await;
    assert_eq!(unbound.status, StatusCode::FORBIDDEN);

    // Phone: scan, a wrong confirm token, then confirm.
    let scan = service
        .handle(
            Route::Scan,
            phone_request(&format!(r#"{{"qrcodeId":"{id}"}}"#)),
        )
        .await;
    assert_eq!(scan.status, StatusCode::OK);
    let confirm_token = body_json(&scan)["confirmToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = service
        .handle(
            Route::Confirm,
            phone_request(&format!(
                r#"{{"qrcodeId":"{id}","confirmToken":"{}"}}"#,
                "A".repeat(43)
            )),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let confirm = service
        .handle(
            Route::Confirm,
            phone_request(&format!(
                r#"{{"qrcodeId":"{id}","confirmToken":"{confirm_token}"}}"#
            )),
        )
        .await;
    assert_eq!(confirm.status, StatusCode::OK);

    // Browser: long-poll sees the confirmation at once (it is a newer version), plain poll too.
    let waited = service
        .handle(
            Route::Status,
            with_binding(&service, status_request(&id, "&wait=5&since=2"), &binding),
        )
        .await;
    assert_eq!(waited.status, StatusCode::OK);
    let status = service
        .handle(
            Route::Status,
            with_binding(&service, status_request(&id, ""), &binding),
        )
        .await;
    assert_eq!(status.status, StatusCode::OK);
    let status = body_json(&status);
    assert_eq!(status["status"], "confirmed");
    let ticket = status["ticket"].as_str().unwrap().to_owned();

    // Exchange, then a replay of it and a foreign attempt with the same ticket.
    let exchange_body = format!(r#"{{"ticket":"{ticket}"}}"#);
    let exchange = service
        .handle(
            Route::Exchange,
            with_binding(
                &service,
                json_text_request(Method::POST, &exchange_body),
                &binding,
            ),
        )
        .await;
    assert_eq!(exchange.status, StatusCode::OK);
    let tokens = body_json(&exchange);
    let access_token = tokens["access_token"].as_str().unwrap().to_owned();
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let replay = service
        .handle(
            Route::Exchange,
            with_binding(
                &service,
                json_text_request(Method::POST, &exchange_body),
                &binding,
            ),
        )
        .await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    let crossed = service
        .handle(
            Route::Exchange,
            with_binding(
                &service,
                json_text_request(Method::POST, &exchange_body),
                &stranger_binding,
            ),
        )
        .await;
    assert_eq!(crossed.status, StatusCode::BAD_REQUEST);

    // The application authenticates a request with the id_token, and refuses a tampered one.
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {id_token}")).unwrap(),
    );
    assert_eq!(service.authenticate(&headers).await.unwrap().sub, "alice");
    let tampered = format!("{}x", &id_token[..id_token.len() - 1]);
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {tampered}")).unwrap(),
    );
    let refused = service.authenticate(&headers).await.unwrap_err();
    let _ = service.unauthorized(&refused);

    let mut secrets = vec![
        ("binding secret".to_owned(), binding),
        ("stranger's binding secret".to_owned(), stranger_binding),
        ("confirm token".to_owned(), confirm_token),
        ("ticket".to_owned(), ticket),
        ("phone credential".to_owned(), PHONE_CREDENTIAL.to_owned()),
    ];
    // A JWT's header segment is shared by every token of the key and is not secret: look for
    // the whole token and for its payload and signature segments.
    for (name, jwt) in [("access_token", access_token), ("id_token", id_token)] {
        let segments: Vec<String> = jwt.split('.').map(str::to_owned).collect();
        assert_eq!(segments.len(), 3, "{name} is a JWS");
        secrets.push((name.to_owned(), jwt));
        secrets.push((format!("{name} payload"), segments[1].clone()));
        secrets.push((format!("{name} signature"), segments[2].clone()));
    }
    secrets
}

#[tokio::test]
async fn trace_log_of_a_full_http_flow_holds_no_secret_ticket_or_token() {
    // The test runs on the current-thread runtime, so the thread-local default sees every event.
    let (capture, guard) = LogCapture::start();
    let secrets = full_flow_over_http().await;
    drop(guard);
    capture.assert_holds_none(&secrets);
    let log = capture.text();
    eprintln!(
        "{} log lines captured, none with a secret",
        log.lines().count()
    );
}
