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
    let content = body_json(&generated)["qrcodeContent"]
        .as_str()
        .unwrap()
        .to_owned();
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
            phone_request(&qrauth_test_support::screen::scan_body_of(&content).to_string()),
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

    // Browser: long-poll sees the confirmation at once (it is a newer version). That answer
    // spends the poll budget (issue 16), so it is the one that carries the ticket.
    let waited = service
        .handle(
            Route::Status,
            with_binding(&service, status_request(&id, "&wait=5&since=2"), &binding),
        )
        .await;
    assert_eq!(waited.status, StatusCode::OK);
    let status = body_json(&waited);
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

/// Secrets of the kinds a request, a response or an error context can carry.
const COOKIE_SECRET: &str = "c00kie-secret-9d8e7f";
const AUTH_SECRET: &str = "auth0rization-secret-1a2b3c";
const TICKET_SECRET: &str = "t1cket-secret-4d5e6f";
const CONFIRM_SECRET: &str = "c0nfirm-secret-7a8b9c";
const TOKEN_SECRET: &str = "eyJ-t0ken-secret-0f1e2d";

fn assert_no_secret(shown: &str) {
    for secret in [
        COOKIE_SECRET,
        AUTH_SECRET,
        TICKET_SECRET,
        CONFIRM_SECRET,
        TOKEN_SECRET,
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
}

fn secret_request() -> ApiRequest {
    let mut request = ApiRequest::new(Method::POST);
    let h = &mut request.headers;
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!("__Host-qrauth_bind={COOKIE_SECRET}")).unwrap(),
    );
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {AUTH_SECRET}")).unwrap(),
    );
    h.insert("x-api-key", HeaderValue::from_str(TOKEN_SECRET).unwrap());
    h.insert("content-type", HeaderValue::from_static("application/json"));
    request.query = Some(format!("code={TOKEN_SECRET}&qrcodeId=abc"));
    request.body = format!(
        r#"{{"ticket":"{TICKET_SECRET}","confirmToken":"{CONFIRM_SECRET}","id_token":"{TOKEN_SECRET}"}}"#
    )
    .into();
    request
}

/// Issue 16: `Debug` of `ApiRequest` prints no cookie, authorization, ticket, confirm token
/// or token, and still says what the request is.
#[test]
fn debug_of_api_request_hides_cookies_credentials_and_bodies() {
    let shown = format!("{:?}", secret_request());
    assert_no_secret(&shown);
    assert!(
        shown.contains("POST") && shown.contains("application/json"),
        "{shown}"
    );
    assert!(
        shown.contains("qrcodeId") && shown.contains("cookie"),
        "{shown}"
    );
}

/// Issue 16: `Debug` of `ApiResponse` prints no `Set-Cookie` value and no body.
#[test]
fn debug_of_api_response_hides_set_cookie_and_body() {
    let body = serde_json::json!({
        "ticket": TICKET_SECRET, "confirmToken": CONFIRM_SECRET, "id_token": TOKEN_SECRET,
    });
    let response = qrauth_core::ApiResponse::json(StatusCode::OK, &body)
        .with_header(
            http::header::SET_COOKIE,
            &format!("__Host-qrauth_session={TOKEN_SECRET}; Path=/"),
        )
        .with_header(
            http::header::LOCATION,
            &format!("/app#token={TOKEN_SECRET}"),
        );
    let shown = format!("{response:?}");
    assert_no_secret(&shown);
    assert!(
        shown.contains("200") && shown.contains("set-cookie"),
        "{shown}"
    );
}

/// Issue 16: `Debug` of the `ErrorContext` an application's renderer sees prints neither the
/// request's headers' secrets nor the default response's.
#[test]
fn debug_of_error_context_hides_the_request_headers() {
    let request = secret_request();
    let default = qrauth_core::ApiResponse::from_error(&Error::NotBound)
        .with_header(http::header::SET_COOKIE, &format!("x={COOKIE_SECRET}"));
    let context = qrauth_core::ErrorContext::new(
        &Error::NotBound,
        qrauth_core::Refused::Authentication,
        Some(&request.method),
        &request.headers,
        &default,
    );
    let shown = format!("{context:?}");
    assert_no_secret(&shown);
    assert!(shown.contains("not_bound"), "{shown}");
}

/// Issue 16: the header map helper shows safe headers and redacts the rest, unknown ones
/// included.
#[test]
fn debug_of_redacted_headers_shows_only_safe_values() {
    let request = secret_request();
    let shown = format!(
        "{:?}",
        qrauth_core::handler::RedactedHeaders(&request.headers)
    );
    assert_no_secret(&shown);
    assert!(
        shown.contains("x-api-key") && shown.contains("<redacted>"),
        "{shown}"
    );
    let _ = HeaderMap::new();
}
