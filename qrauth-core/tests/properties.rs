//! Property tests: everything that parses untrusted input answers with a typed error or a
//! documented HTTP status, never a panic and never a 5xx for the client's fault.

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use qrauth_core::handler::{ApiRequest, QrAuthService, Route};
use qrauth_core::provider::builtin::{
    BuiltinProvider, PhoneAuthenticator, PhoneUser, SigningAlgorithm,
};
use qrauth_core::{BindingSecret, ConfirmToken, Error, Limits, QrCodeId, Ticket};

struct AnyBearer;

#[async_trait::async_trait]
impl PhoneAuthenticator for AnyBearer {
    async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
        match authorization.strip_prefix("Bearer ") {
            Some(user) if !user.is_empty() && user.len() < 64 => Ok(PhoneUser::new(user)),
            _ => Err(Error::Unauthenticated),
        }
    }
}

fn service() -> QrAuthService {
    let provider = BuiltinProvider::builder(Arc::new(AnyBearer))
        .algorithm(SigningAlgorithm::Es256)
        .build()
        .expect("provider");
    QrAuthService::builder(Arc::new(provider))
        .insecure_dev_cookies()
        .limits(Limits::unlimited())
        .build()
        .expect("service")
}

/// Starts a session with `User-Agent: ua` (as far as it is a valid header value) and scans
/// it: the browser label the phone's confirm screen shows.
async fn confirm_screen_browser(service: &QrAuthService, ua: &str) -> String {
    let mut generate = ApiRequest::new(Method::POST);
    if let Ok(value) = HeaderValue::from_bytes(ua.as_bytes()) {
        generate.headers.insert("user-agent", value);
    }
    let created = service.handle(Route::Generate, generate).await;
    assert_eq!(created.status, 201);
    let body: serde_json::Value =
        serde_json::from_slice(created.body_bytes().expect("a full body")).expect("JSON");
    let content = body["qrcodeContent"].as_str().expect("qrcodeContent");
    let mut scan = ApiRequest::new(Method::POST);
    scan.headers
        .insert("content-type", HeaderValue::from_static("application/json"));
    scan.headers
        .insert("authorization", HeaderValue::from_static("Bearer alice"));
    scan.body = qrauth_test_support::screen::scan_body_of(content)
        .to_string()
        .into();
    let scanned = service.handle(Route::Scan, scan).await;
    assert_eq!(scanned.status, 200);
    let body: serde_json::Value =
        serde_json::from_slice(scanned.body_bytes().expect("a full body")).expect("JSON");
    body["context"]["browser"]
        .as_str()
        .expect("context.browser")
        .to_owned()
}

fn limited_service(limits: Limits, proxies: Vec<std::net::IpAddr>) -> QrAuthService {
    let provider = BuiltinProvider::builder(Arc::new(AnyBearer))
        .algorithm(SigningAlgorithm::Es256)
        .build()
        .expect("provider");
    QrAuthService::builder(Arc::new(provider))
        .insecure_dev_cookies()
        .limits(limits)
        .trusted_proxies(proxies)
        .build()
        .expect("service")
}

/// `POST /qrcode` from `peer` with these extra headers; the response.
async fn generate_with(
    service: &QrAuthService,
    peer: std::net::IpAddr,
    headers: &[(&'static str, &str)],
) -> qrauth_core::ApiResponse {
    let mut request = ApiRequest::new(Method::POST);
    request.peer = Some(peer);
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            request.headers.append(*name, v);
        }
    }
    service.handle(Route::Generate, request).await
}

/// The binding cookie value a response sets.
fn set_binding(response: &qrauth_core::ApiResponse) -> Option<String> {
    response
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("qrauth_bind="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
}

fn json_of(response: &qrauth_core::ApiResponse) -> serde_json::Value {
    serde_json::from_slice(response.body_bytes().expect("a full body")).expect("JSON")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

const ROUTES: [Route; 11] = [
    Route::Generate,
    Route::Status,
    Route::Events,
    Route::Exchange,
    Route::Scan,
    Route::Confirm,
    Route::Cancel,
    Route::Widget,
    Route::Jwks,
    Route::OpenIdConfiguration,
    Route::Extension,
];

fn config() -> ProptestConfig {
    ProptestConfig {
        // 256 in CI; set PROPTEST_CASES for a longer fuzzing run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Arbitrary bytes, biased towards almost-JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        "\\{\"[a-zA-Z]{0,12}\": ?(\"[^\"]{0,40}\"|[0-9]{1,5}|null|\\[\\]|\\{\\})\\}"
            .prop_map(String::into_bytes),
        "\\{\"(ticket|qrcodeId|confirmToken|scene|nonce)\": ?\"[A-Za-z0-9_-]{0,60}\"\\}"
            .prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn secret_parsing_never_panics_and_accepts_only_base64url_of_16_bytes_or_more(s in ".{0,120}") {
        let parsed = QrCodeId::parse(&s).is_ok();
        let decoded = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD, s.as_bytes());
        prop_assert_eq!(parsed, matches!(decoded, Ok(b) if b.len() >= 16 && s.len() <= 86));
        prop_assert_eq!(BindingSecret::parse(&s).is_ok(), parsed);
        prop_assert_eq!(ConfirmToken::parse(&s).is_ok(), parsed);
        prop_assert_eq!(Ticket::parse(&s).is_ok(), parsed);
    }

    // The label is what the phone's confirm screen shows as `context.browser` (the describing
    // function itself is private): any User-Agent a browser sends, however long or odd.
    #[test]
    fn user_agent_labels_never_panic_and_stay_short(ua in prop_oneof![".{0,2000}", "[ -~]{0,2000}"]) {
        let label = runtime().block_on(confirm_screen_browser(&service(), &ua));
        prop_assert!(label.len() < 64, "{label}");
    }

    #[test]
    fn every_route_answers_garbage_with_a_4xx_json_error_or_success(
        route in proptest::sample::select(ROUTES.to_vec()),
        post in any::<bool>(),
        body in body(),
        query in proptest::option::of("[ -~]{0,80}"),
        content_type in proptest::option::of(prop_oneof![
            Just("application/json".to_owned()),
            Just("application/json; charset=utf-8".to_owned()),
            "[ -~]{0,40}",
        ]),
        cookie in proptest::option::of("[ -~]{0,120}"),
        authorization in proptest::option::of(prop_oneof![
            Just("Bearer alice".to_owned()),
            "[ -~]{0,80}",
        ]),
        origin in proptest::option::of("[ -~]{0,40}"),
    ) {
        let service = service();
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: &Option<String>| {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        };
        put("content-type", &content_type);
        put("cookie", &cookie);
        put("authorization", &authorization);
        put("origin", &origin);
        let mut request = ApiRequest::new(if post { Method::POST } else { Method::GET });
        request.headers = headers;
        request.query = query;
        request.body = body.into();
        let response = runtime().block_on(service.handle(route, request));
        prop_assert!(
            !response.status.is_server_error(),
            "{route:?} answered {}", response.status
        );
        if response.status.is_client_error() {
            let body = response.body_bytes().expect("error bodies are complete");
            let json: serde_json::Value = serde_json::from_slice(body).expect("JSON error body");
            prop_assert!(json["error"].is_string() && json["error_description"].is_string());
            prop_assert_eq!(
                response.headers.get("content-type").and_then(|v| v.to_str().ok()),
                Some("application/json; charset=utf-8")
            );
        }
        prop_assert!(response.headers.contains_key("cache-control"));
    }

    #[test]
    fn arbitrary_tokens_are_refused_with_a_typed_error(
        token in prop_oneof![
            ".{0,300}",
            "[A-Za-z0-9_-]{0,60}\\.[A-Za-z0-9_-]{0,200}\\.[A-Za-z0-9_-]{0,90}",
            "eyJ[A-Za-z0-9_-]{0,40}\\.eyJ[A-Za-z0-9_-]{0,120}\\.[A-Za-z0-9_-]{0,40}",
        ],
    ) {
        let service = service();
        let result = runtime().block_on(service.provider().verify(&token));
        prop_assert!(matches!(result, Err(Error::InvalidToken(_))), "{result:?}");
    }

    #[test]
    fn arbitrary_jwks_documents_never_panic(doc in "\\{\"keys\": ?\\[(\\{\"kty\": ?\"(RSA|EC|OKP|oct|x)\"(, ?\"(n|e|x|y|crv|alg|kid|use)\": ?\"[A-Za-z0-9_-]{0,50}\"){0,5}\\},? ?){0,3}\\]\\}") {
        if let Ok(jwks) = serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&doc) {
            let verifier = qrauth_core::verify::IdTokenVerifier::builder()
                .issuer(qrauth_core::verify::IssuerConfig::new("https://iss", "aud").static_jwks(jwks))
                .build();
            if let Ok(verifier) = verifier {
                let token = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImEifQ.eyJpc3MiOiJodHRwczovL2lzcyJ9.c2ln";
                let result = runtime().block_on(verifier.verify(token));
                prop_assert!(result.is_err());
            }
        }
    }

    // Issue 16: whatever binding cookie a browser presents, POST /qrcode answers 201 and sets a
    // binding that qrauth minted: never the presented value, unless qrauth minted that one.
    #[test]
    fn presented_binding_cookies_are_adopted_only_if_minted_here(
        value in prop_oneof![
            "[A-Za-z0-9_-]{0,100}",
            Just("A".repeat(64)),
            Just("A".repeat(43)),
            "[ -~]{0,100}",
        ],
    ) {
        let service = limited_service(Limits::unlimited(), vec![]);
        let peer: std::net::IpAddr = "203.0.113.1".parse().expect("ip");
        runtime().block_on(async {
            let cookie = format!("qrauth_bind={value}");
            let response = generate_with(&service, peer, &[("cookie", &cookie)]).await;
            prop_assert_eq!(response.status, 201);
            let minted = set_binding(&response).expect("a binding cookie");
            prop_assert_ne!(&minted, &value);
            // The minted value is adopted by the next request, from the same network only.
            let again = format!("qrauth_bind={minted}");
            let kept = generate_with(&service, peer, &[("cookie", &again)]).await;
            prop_assert_eq!(set_binding(&kept), Some(minted.clone()));
            let elsewhere: std::net::IpAddr = "203.0.113.2".parse().expect("ip");
            let moved = generate_with(&service, elsewhere, &[("cookie", &again)]).await;
            prop_assert_ne!(set_binding(&moved), Some(minted));
            Ok(())
        })?;
    }

    // Issue 16: a long-poll with any `since` other than the current version answers at once
    // and spends the poll budget: the next status answer within the window is 429.
    #[test]
    fn long_polls_with_a_stale_since_spend_the_poll_budget(
        since in prop_oneof![Just(0u64), 2u64..1000, any::<u64>().prop_filter("stale", |v| *v != 1)],
        wait in 1u64..30,
    ) {
        let service = limited_service(Limits::unlimited().enforce_poll_interval(true), vec![]);
        let peer: std::net::IpAddr = "203.0.113.1".parse().expect("ip");
        runtime().block_on(async {
            let created = generate_with(&service, peer, &[]).await;
            let id = json_of(&created)["qrcodeId"].as_str().expect("id").to_owned();
            let cookie = format!("qrauth_bind={}", set_binding(&created).expect("binding"));
            let status = |query: String| {
                let mut request = ApiRequest::new(Method::GET);
                request.peer = Some(peer);
                request.query = Some(query);
                request.headers.insert("cookie", HeaderValue::from_str(&cookie).expect("cookie"));
                service.handle(Route::Status, request)
            };
            let first = status(format!("qrcodeId={id}&wait={wait}&since={since}")).await;
            prop_assert_eq!(first.status, 200);
            prop_assert_eq!(json_of(&first)["version"].as_u64(), Some(1));
            let second = status(format!("qrcodeId={id}&wait={wait}&since={since}")).await;
            prop_assert_eq!(second.status, 429);
            Ok(())
        })?;
    }

    // Issue 16: whatever `X-Forwarded-For` says, the client address (shown on the confirm
    // screen) is the trusted peer or an entry of the unbroken run of addresses at the right
    // end of the header: never one left of an entry that does not parse.
    #[test]
    fn forwarded_for_never_yields_an_entry_left_of_garbage(
        entries in proptest::collection::vec(prop_oneof![
            "(1|6|10)\\.0\\.0\\.[0-9]",
            Just("::ffff:10.0.0.1".to_owned()),
            "2001:db8::[0-9a-f]{1,4}",
            "[ -+\\--~]{0,12}",
        ], 0..6),
    ) {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        let service = limited_service(Limits::unlimited(), vec![proxy]);
        let header = entries.join(",");
        let mut allowed: Vec<String> = vec!["10.0.0.1".to_owned()];
        for entry in entries.iter().rev() {
            match entry.trim().parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => allowed.push(
                    v6.to_ipv4_mapped().map_or(v6.to_string(), |v4| v4.to_string()),
                ),
                Ok(ip) => allowed.push(ip.to_string()),
                Err(_) => break,
            }
        }
        runtime().block_on(async {
            let created = generate_with(&service, proxy, &[("x-forwarded-for", &header)]).await;
            prop_assert_eq!(created.status, 201);
            let content = json_of(&created)["qrcodeContent"].as_str().expect("content").to_owned();
            let mut scan = ApiRequest::new(Method::POST);
            scan.headers.insert("content-type", HeaderValue::from_static("application/json"));
            scan.headers.insert("authorization", HeaderValue::from_static("Bearer alice"));
            scan.body = qrauth_test_support::screen::scan_body_of(&content).to_string().into();
            let scanned = service.handle(Route::Scan, scan).await;
            prop_assert_eq!(scanned.status, 200);
            let ip = json_of(&scanned)["context"]["ip"].as_str().expect("ip").to_owned();
            prop_assert!(allowed.contains(&ip), "{ip} from {header:?} (allowed {allowed:?})");
            Ok(())
        })?;
    }

    // Issue 16: whatever number of event streams one browser opens on one session, exactly the
    // cap is admitted and the rest are 429; closing them frees the slots.
    #[test]
    fn stream_counts_beyond_the_cap_are_refused(
        opened in 0usize..24,
        per_session in 1u32..6,
    ) {
        let limits = Limits::unlimited().streams(per_session, 64, 64);
        let service = limited_service(limits, vec![]);
        let peer: std::net::IpAddr = "203.0.113.1".parse().expect("ip");
        runtime().block_on(async {
            let created = generate_with(&service, peer, &[]).await;
            let id = json_of(&created)["qrcodeId"].as_str().expect("id").to_owned();
            let cookie = format!("qrauth_bind={}", set_binding(&created).expect("binding"));
            let open = || {
                let mut request = ApiRequest::new(Method::GET);
                request.peer = Some(peer);
                request.query = Some(format!("qrcodeId={id}"));
                request.headers.insert("cookie", HeaderValue::from_str(&cookie).expect("cookie"));
                service.handle(Route::Events, request)
            };
            let mut streams = Vec::new();
            for _ in 0..opened {
                streams.push(open().await);
            }
            let admitted = streams.iter().filter(|r| r.status == 200).count();
            let refused = streams.iter().filter(|r| r.status == 429).count();
            prop_assert_eq!(admitted, opened.min(per_session as usize));
            prop_assert_eq!(refused, opened - admitted);
            drop(streams);
            prop_assert_eq!(open().await.status, 200);
            Ok(())
        })?;
    }

    // Issue 16: no scan token but the one of the QR on screen scans: any other value is refused
    // (400 without one, 410 otherwise) and the session stays pending for the right one.
    #[test]
    fn only_the_scan_token_on_screen_scans(
        presented in prop_oneof![
            "[A-Za-z0-9_-]{22}",
            "[ -~]{0,64}",
            Just(String::new()),
        ],
    ) {
        let service = limited_service(Limits::unlimited(), vec![]);
        let peer: std::net::IpAddr = "203.0.113.1".parse().expect("ip");
        runtime().block_on(async {
            let created = generate_with(&service, peer, &[]).await;
            let content = json_of(&created)["qrcodeContent"].as_str().expect("content").to_owned();
            let (id, token) = qrauth_test_support::screen::read(&content);
            let token = token.expect("a scan token");
            prop_assume!(presented != token);
            let scan = |body: serde_json::Value| {
                let mut request = ApiRequest::new(Method::POST);
                request.headers.insert("content-type", HeaderValue::from_static("application/json"));
                request.headers.insert("authorization", HeaderValue::from_static("Bearer alice"));
                request.body = body.to_string().into();
                service.handle(Route::Scan, request)
            };
            let refused = scan(serde_json::json!({ "qrcodeId": id, "scanToken": presented })).await;
            prop_assert_eq!(refused.status, 410);
            let refusal = json_of(&refused);
            prop_assert_eq!(refusal["error"].as_str(), Some("expired_qrcode"));
            let missing = scan(serde_json::json!({ "qrcodeId": id })).await;
            prop_assert_eq!(missing.status, 400);
            let right = scan(serde_json::json!({ "qrcodeId": id, "scanToken": token })).await;
            prop_assert_eq!(right.status, 200);
            Ok(())
        })?;
    }

    // Issue 16: any `rotation` a browser says it shows gets a status answer, with the new QR
    // exactly when it names another rotation than the current one.
    #[test]
    fn any_shown_rotation_gets_the_qr_on_screen_exactly_when_it_differs(
        shown in prop_oneof![any::<u64>(), 0u64..4],
        current_offset in prop_oneof![Just(0u64), Just(1u64), any::<u64>()],
    ) {
        let service = limited_service(Limits::unlimited(), vec![]);
        let peer: std::net::IpAddr = "203.0.113.1".parse().expect("ip");
        runtime().block_on(async {
            let created = generate_with(&service, peer, &[]).await;
            let body = json_of(&created);
            let id = body["qrcodeId"].as_str().expect("id").to_owned();
            let current = body["rotation"].as_u64().expect("rotation");
            let cookie = format!("qrauth_bind={}", set_binding(&created).expect("binding"));
            // Around the current rotation as well as anywhere.
            let shown = if current_offset < 2 { current.wrapping_sub(current_offset) } else { shown };
            let mut request = ApiRequest::new(Method::GET);
            request.peer = Some(peer);
            request.query = Some(format!("qrcodeId={id}&rotation={shown}"));
            request.headers.insert("cookie", HeaderValue::from_str(&cookie).expect("cookie"));
            let answer = service.handle(Route::Status, request).await;
            prop_assert_eq!(answer.status, 200);
            let status = json_of(&answer);
            let now = status["rotation"].as_u64().expect("rotation");
            prop_assert_eq!(status.get("qrcodeContent").is_some(), shown != now);
            prop_assert_eq!(status.get("image").is_some(), shown != now);
            Ok(())
        })?;
    }
}
