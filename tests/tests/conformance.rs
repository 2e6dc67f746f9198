//! The HTTP conformance suite of `docs/protocol.md`: every test in `cases` runs against the axum demo (`axum::…`)
//! and the actix-web demo (`actix::…`), each with sessions in memory and in a real Redis
//! (`axum_redis::…`, `actix_redis::…`); two more tests compare the adapters directly.
//!
//! Numbers in comments refer to §7 of `reference/qr-login-security.md`; F1–F6 are QRLChecker's
//! checks (requirement 38).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use qrauth_tests::{
    APP_NAME, AUDIENCE, JSON_CT, Resp, ServerKind, ServerOptions, SseReader, Target, TestServer,
    assert_status_shape, fresh_signing_key, jwt_payload, login, now_millis, now_secs, spawn,
    unknown_id, url_encode, version,
};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, ORIGIN};
use serde_json::{Value, json};

/// No test may take longer than this, whatever the server does.
const TEST_DEADLINE: Duration = Duration::from_secs(50);

/// Runs a test body under [`TEST_DEADLINE`].
async fn bounded(name: &str, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("{name} did not finish within {TEST_DEADLINE:?}");
    }
}

/// Expands every conformance test for one adapter.
macro_rules! conformance_suite {
    ($kind:expr) => {
        conformance_suite!(@tests $kind;
            full_flow,
            f1_unbound_poll,
            f2_replay_after_success,
            f3_id_entropy,
            f4_client_chosen_id,
            f5_identity_from_body,
            f6_no_pii_in_status,
            headers_on_every_qrcode_route,
            secure_cookie_attributes,
            exchange_with_foreign_binding_burns_ticket,
            long_poll_returns_quickly_on_change,
            sse_one_event_per_transition,
            expiry,
            bad_input,
            protected_route_rejections,
            application_issuer_accepted,
            limit_generate_per_ip,
            limit_sessions_per_binding,
            limit_poll_interval,
            limit_same_answer_for_unknown_foreign_and_expired_ids,
        );
    };
    (@tests $kind:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::bounded(stringify!($name), super::cases::$name($kind)).await;
            }
        )+
    };
}

mod axum {
    conformance_suite!(qrauth_tests::Target::from(qrauth_tests::ServerKind::Axum));
}

mod actix {
    conformance_suite!(qrauth_tests::Target::from(qrauth_tests::ServerKind::Actix));
}

/// The same suite with sessions and limits in a real Redis (each server its own
/// `redis-server`).
mod axum_redis {
    conformance_suite!(qrauth_tests::Target::redis(qrauth_tests::ServerKind::Axum));
}

mod actix_redis {
    conformance_suite!(qrauth_tests::Target::redis(qrauth_tests::ServerKind::Actix));
}

async fn server(kind: Target) -> TestServer {
    spawn(kind, ServerOptions::default()).await
}

fn body_of(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

/// A JSON body of about 1 MiB.
fn one_mib_json() -> Vec<u8> {
    let mut body = br#"{"scene":""#.to_vec();
    body.extend(std::iter::repeat_n(b'a', 1 << 20));
    body.extend_from_slice(br#""}"#);
    body
}

/// A JWKS document served on a loopback port, as an application's own IdP would.
async fn serve_jwks(keys: &[&qrauth_core::SigningKey]) -> (String, tokio::task::JoinHandle<()>) {
    let jwks = json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() });
    let app = ::axum::Router::new().route(
        "/jwks.json",
        ::axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { ::axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = ::axum::serve(listener, app).await;
    });
    (base, task)
}

mod cases {
    use super::*;

    /// An application's existing IdP, configured with one builder call, is accepted by
    /// `AuthenticatedUser` (bearer), while tokens of an issuer nobody configured are 401.
    pub async fn application_issuer_accepted(kind: Target) {
        let idp_key =
            qrauth_core::SigningKey::generate(qrauth_core::SigningAlgorithm::Rs256).expect("key");
        let stranger_key =
            qrauth_core::SigningKey::generate(qrauth_core::SigningAlgorithm::Rs256).expect("key");
        let (idp, _jwks) = serve_jwks(&[&idp_key, &stranger_key]).await;
        let issuer = qrauth_core::IssuerConfig::new(idp.clone(), "app-web")
            .jwks_url(format!("{idp}/jwks.json"))
            .allow_insecure_http(true);
        // A second IdP whose JWKS endpoint is down (nothing listens on the port).
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            format!("http://{}", l.local_addr().expect("addr"))
        };
        let unreachable = qrauth_core::IssuerConfig::new(down.clone(), "app-web")
            .jwks_url(format!("{down}/jwks.json"))
            .allow_insecure_http(true);
        let server = spawn(
            kind,
            ServerOptions::default()
                .accept_issuer(issuer)
                .accept_issuer(unreachable),
        )
        .await;
        let browser = server.browser();
        let now = now_secs();
        let token = |key: &qrauth_core::SigningKey, iss: &str| {
            key.sign(
                "JWT",
                &json!({ "iss": iss, "sub": "employee-7", "aud": "app-web", "iat": now, "exp": now + 600 }),
            )
            .expect("sign")
        };
        let me = Resp::send(
            browser
                .request(Method::GET, "/api/me")
                .header(AUTHORIZATION, format!("Bearer {}", token(&idp_key, &idp))),
        )
        .await
        .assert_app_json(200);
        assert_eq!(me["sub"], "employee-7");
        assert_eq!(me["iss"], idp);

        // Same JWKS, but an issuer nobody configured: refused.
        let foreign = "https://unconfigured.example";
        let refused = Resp::send(browser.request(Method::GET, "/api/me").header(
            AUTHORIZATION,
            format!("Bearer {}", token(&stranger_key, foreign)),
        ))
        .await;
        refused.assert_error(401, "invalid_token");
        assert!(refused.header("www-authenticate").is_some());

        // The configured issuer with the wrong audience: refused too.
        let wrong_aud = idp_key
            .sign(
                "JWT",
                &json!({ "iss": idp, "sub": "x", "aud": "another-app", "iat": now, "exp": now + 600 }),
            )
            .expect("sign");
        Resp::send(
            browser
                .request(Method::GET, "/api/me")
                .header(AUTHORIZATION, format!("Bearer {wrong_aud}")),
        )
        .await
        .assert_error(401, "invalid_token");

        // The optional extractor (`/me` page) agrees on both adapters: anonymous → None (the
        // page redirects to the login), a verifier outage → an error, never "anonymous".
        let anonymous = browser.get("/me").await;
        assert_eq!(
            anonymous.status, 303,
            "anonymous /me redirects to the login page"
        );
        let outage = Resp::send(
            browser
                .request(Method::GET, "/me")
                .header(AUTHORIZATION, format!("Bearer {}", token(&idp_key, &down))),
        )
        .await;
        assert_eq!(
            outage.status, 502,
            "a JWKS outage is not an anonymous visitor"
        );
        assert_eq!(outage.json()["error"], "upstream_unavailable");

        // And qrauth's own logins keep working beside it.
        let (_browser, tokens) = login(&server).await;
        assert_eq!(
            jwt_payload(tokens["id_token"].as_str().expect("id_token"))["iss"],
            server.base
        );
    }

    /// The whole login, with every field the contract promises.
    pub async fn full_flow(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let before = now_millis();
        let qr = browser.generate().await;

        // 201 body.
        let body = &qr.body;
        let content = body["qrcodeContent"].as_str().expect("qrcodeContent");
        // The phone page with the id and the rotating QR's scan token (128 bits).
        let token = qrauth_test_support::screen::scan_token(content).expect("scanToken");
        assert_eq!(token.len(), 22, "scan token of {content}");
        assert_eq!(
            content,
            format!("{}/phone?qrcodeId={}&scanToken={token}", server.base, qr.id)
        );
        let rotates_at = body["rotatesAt"].as_u64().expect("rotatesAt");
        assert!(body["rotation"].is_u64(), "rotation in {body}");
        assert!(
            rotates_at > before && rotates_at <= now_millis() + 30_000,
            "the QR rotates within 30 s: {body}"
        );
        assert!(
            body["image"]
                .as_str()
                .expect("image")
                .starts_with("data:image/svg+xml"),
            "image is an SVG data URL"
        );
        let expires_in = body["expiresIn"].as_u64().expect("expiresIn");
        assert!((119..=120).contains(&expires_in), "expiresIn {expires_in}");
        let expire_at = body["expireAt"].as_u64().expect("expireAt");
        assert!(
            expire_at >= before + 119_000 && expire_at <= now_millis() + 121_000,
            "expireAt {expire_at} is about now + 120 s"
        );
        assert!(body["interval"].as_u64().expect("interval") >= 1);

        // The binding cookie (dev mode: no Secure, no __Host- prefix).
        let cookie = qr.response.set_cookie("qrauth_bind").expect("qrauth_bind");
        assert!(cookie.has("HttpOnly"), "{}", cookie.raw);
        assert_eq!(cookie.attr("SameSite"), Some("Lax"), "{}", cookie.raw);
        assert_eq!(cookie.attr("Path"), Some("/"), "{}", cookie.raw);
        assert!(!cookie.has("Domain"), "{}", cookie.raw);
        assert!(!cookie.has("Secure"), "dev cookies are not Secure");
        assert!(
            cookie
                .attr("Max-Age")
                .and_then(|m| m.parse::<u64>().ok())
                .is_some_and(|m| m >= 120),
            "binding cookie outlives the QR: {}",
            cookie.raw
        );

        let pending = browser.bound_status(&qr.id).await;
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["qrcodeId"], qr.id.as_str());

        // Scan: the context describes the BROWSER (requirement 20), not the phone.
        let alice = server.alice();
        let (token, scan) = alice.scan_ok(&qr.id).await;
        assert!(token.len() >= 22, "confirm token length");
        let context = &scan["context"];
        assert_eq!(context["appName"], APP_NAME);
        assert_eq!(context["origin"], server.base.as_str());
        assert_eq!(context["browser"], "Chrome on Windows", "{context}");
        assert_eq!(context["ip"], "127.0.0.1");
        assert_eq!(context["networkMismatch"], false);
        let created_at = context["createdAt"].as_u64().expect("createdAt");
        assert!(
            created_at >= before.saturating_sub(1000) && created_at <= now_millis(),
            "createdAt {created_at}"
        );

        let scanned = browser.bound_status(&qr.id).await;
        assert_eq!(scanned["status"], "scanned");
        assert_eq!(scanned["userInfo"]["nickname"], "Alice");
        assert!(scanned["ticket"].is_null());
        assert!(version(&scanned) > version(&pending));

        let confirmed = alice.confirm(&qr.id, &token).await.assert_json(200);
        assert_eq!(confirmed, json!({ "status": "confirmed" }));

        let status = browser.bound_status(&qr.id).await;
        assert_eq!(status["status"], "confirmed");
        assert_eq!(status["userInfo"]["nickname"], "Alice");
        let ticket = status["ticket"].as_str().expect("ticket when confirmed");
        assert_ne!(ticket, qr.id, "ticket is not the id");
        assert_ne!(ticket, token, "ticket is not the confirm token");

        // Exchange, with a stale pre-login session cookie that must be replaced (27).
        browser
            .extra_cookies
            .push("qrauth_session=stale-pre-login".into());
        let exchange = browser.exchange(ticket).await;
        let tokens = exchange.assert_json(200);
        for field in ["access_token", "id_token"] {
            let t = tokens[field].as_str().expect(field);
            assert_eq!(t.split('.').count(), 3, "{field} is a JWT");
        }
        assert_eq!(tokens["token_type"], "Bearer");
        assert!(tokens["expires_in"].as_u64().expect("expires_in") > 0);
        let id_token = tokens["id_token"].as_str().expect("id_token");

        let session = exchange
            .set_cookie("qrauth_session")
            .expect("session cookie set at exchange");
        assert!(!session.value.is_empty());
        assert_ne!(session.value, "stale-pre-login", "fresh session cookie");
        assert!(session.has("HttpOnly"), "{}", session.raw);
        assert_eq!(session.attr("SameSite"), Some("Lax"));
        assert_eq!(session.attr("Path"), Some("/"));
        let cleared = exchange
            .set_cookie("qrauth_bind")
            .expect("binding cookie cleared at exchange");
        assert_eq!(cleared.attr("Max-Age"), Some("0"), "{}", cleared.raw);
        assert_eq!(cleared.attr("Path"), Some("/"), "{}", cleared.raw);

        // The session cookie and the id_token both authenticate.
        let mut signed_in = server.browser();
        signed_in
            .extra_cookies
            .push(format!("qrauth_session={}", session.value));
        let me = signed_in.get("/api/me").await.assert_app_json(200);
        assert_eq!(me["sub"], "user-alice");
        assert_eq!(me["iss"], server.base.as_str());
        assert_eq!(me["aud"], AUDIENCE);
        assert_eq!(me["nickname"], "Alice");

        let bearer = Resp::send(
            server
                .browser()
                .request(Method::GET, "/api/me")
                .header(AUTHORIZATION, format!("Bearer {id_token}")),
        )
        .await
        .assert_app_json(200);
        assert_eq!(bearer["sub"], "user-alice");

        let page = signed_in.get("/me").await;
        assert_eq!(page.status, 200, "{}", page.text());
        assert!(
            page.header("content-type")
                .is_some_and(|c| c.starts_with("text/html")),
            "HTML page"
        );
        assert!(page.text().contains("Alice"), "{}", page.text());

        let anonymous = server.browser().get("/me").await;
        assert!(
            (300..400).contains(&anonymous.status),
            "anonymous /me redirects, got {}",
            anonymous.status
        );
    }

    /// F1 (4, 26): a client that only knows the id learns nothing, and cannot tell a
    /// confirmed session from a pending or an unknown one.
    pub async fn f1_unbound_poll(kind: Target) {
        let server = server(kind).await;
        let mut owner = server.browser();
        let confirmed = owner.generate().await;
        server.alice().scan_and_confirm(&confirmed.id).await;
        let owner_view = owner.bound_status(&confirmed.id).await;
        let ticket = owner_view["ticket"]
            .as_str()
            .expect("owner sees the ticket");
        let pending = owner.generate().await;

        let mut foreign = server.browser();
        foreign.generate().await; // a binding cookie of its own
        let cookieless = foreign.without_binding();

        let ids = [confirmed.id.as_str(), pending.id.as_str(), &unknown_id()];
        let mut bodies = Vec::new();
        for client in [&cookieless, &foreign] {
            for id in ids {
                for path in ["/qrcode/status", "/qrcode/events"] {
                    let r = client.get(&format!("{path}?qrcodeId={id}")).await;
                    let body = r.assert_error(403, "not_bound");
                    let object = body.as_object().expect("object");
                    assert!(!object.contains_key("ticket"), "{body}");
                    assert!(!object.contains_key("userInfo"), "{body}");
                    assert!(!r.text().contains(ticket));
                    assert!(!r.text().contains("Alice"));
                    bodies.push(r.body);
                }
            }
        }
        // Exchange without the owner's cookie: no cookie at all, or a foreign one, for an
        // unknown ticket, then for the real one without a cookie.
        let fake_ticket = URL_SAFE_NO_PAD.encode([42u8; 32]);
        for t in [fake_ticket.as_str(), ticket] {
            let r = cookieless.exchange(t).await;
            r.assert_error(403, "not_bound");
            assert!(!r.text().contains("token"), "no token in {}", r.text());
            bodies.push(r.body);
        }
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "every unbound answer is byte-identical: {:?}",
            bodies
                .iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<HashSet<_>>()
        );
    }

    /// F2 (14): after the exchange the QR is consumed: no ticket, no user, no second login.
    pub async fn f2_replay_after_success(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        server.alice().scan_and_confirm(&qr.id).await;
        let success = browser.bound_status(&qr.id).await;
        let ticket = success["ticket"].as_str().expect("ticket").to_owned();
        browser.exchange(&ticket).await.assert_json(200);

        // Replay the successful poll with the (now cleared) binding cookie.
        let replay = browser.bound_status(&qr.id).await;
        assert_eq!(replay["status"], "consumed");
        assert!(replay["ticket"].is_null(), "{replay}");
        assert!(replay["userInfo"].is_null(), "{replay}");
        assert!(!browser.status(&qr.id).await.text().contains(&ticket));

        // Replay the exchange.
        browser
            .exchange(&ticket)
            .await
            .assert_error(400, "invalid_ticket");

        // Events on a consumed session: one terminal event without secrets, then EOF.
        let response = browser.events(&qr.id, None).await;
        assert_eq!(response.status().as_u16(), 200);
        let events = SseReader::new(response).rest().await;
        let data: Vec<Value> = events
            .iter()
            .filter_map(|e| e.data.as_deref())
            .map(|d| serde_json::from_str(d).expect("JSON event"))
            .collect();
        assert_eq!(data.len(), 1, "{events:?}");
        assert_eq!(data[0]["status"], "consumed");
        assert!(data[0]["ticket"].is_null() && data[0]["userInfo"].is_null());

        // A second browser can never log in with that QR.
        let mut second = server.browser();
        second.generate().await;
        second.status(&qr.id).await.assert_error(403, "not_bound");
        second
            .exchange(&ticket)
            .await
            .assert_error(400, "invalid_ticket");
        second
            .without_binding()
            .exchange(&ticket)
            .await
            .assert_error(403, "not_bound");
        for phone in [server.alice(), server.bob()] {
            phone.scan(&qr.id).await.assert_error(409, "conflict");
        }
        let still = browser.bound_status(&qr.id).await;
        assert_eq!(still["status"], "consumed");
    }

    /// F3 (1): ids are unique, base64url, at least 128 bits, not sequential numbers.
    pub async fn f3_id_entropy(kind: Target) {
        let server = server(kind).await;
        let mut ids = HashSet::new();
        let mut bindings = HashSet::new();
        for _ in 0..200 {
            let mut browser = server.browser();
            let qr = browser.generate().await;
            let id = qr.id;
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "base64url without padding: {id}"
            );
            let bytes = URL_SAFE_NO_PAD.decode(&id).expect("base64url id");
            assert!(bytes.len() >= 16, "{id} decodes to {} bytes", bytes.len());
            assert!(!id.bytes().all(|b| b.is_ascii_digit()), "numeric id {id}");
            let binding = browser.binding.expect("binding");
            assert!(URL_SAFE_NO_PAD.decode(&binding).expect("binding").len() >= 16);
            assert!(!binding.contains(&id) && !id.contains(&binding));
            assert!(ids.insert(id), "duplicate id");
            assert!(bindings.insert(binding), "duplicate binding");
        }
        assert!(ids.is_disjoint(&bindings));
    }

    /// 24: the 21st `POST /qrcode` in a minute from one IP is 429 `slow_down` with Retry-After.
    pub async fn limit_generate_per_ip(kind: Target) {
        let limits = qrauth_core::Limits::default();
        let server = spawn(kind, ServerOptions::default().limits(limits)).await;
        for _ in 0..20 {
            server.browser().generate().await;
        }
        let refused = Resp::send(server.browser().request(Method::POST, "/qrcode")).await;
        refused.assert_error(429, "slow_down");
        let retry: u64 = refused
            .header("retry-after")
            .expect("Retry-After")
            .parse()
            .expect("seconds");
        assert!((1..=60).contains(&retry), "Retry-After {retry}");
        assert!(refused.set_cookie(&server.binding_cookie_name()).is_none());
    }

    /// 24: one browser binding holds at most 5 live sessions.
    pub async fn limit_sessions_per_binding(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().sessions_per_binding(5);
        let server = spawn(kind, ServerOptions::default().limits(limits)).await;
        let mut browser = server.browser();
        for _ in 0..5 {
            browser.generate().await;
        }
        Resp::send(browser.request(Method::POST, "/qrcode"))
            .await
            .assert_error(429, "slow_down");
        // Another browser is not affected.
        server.browser().generate().await;
    }

    /// 25: two plain polls 100 ms apart: the second is 429 `slow_down` with Retry-After;
    /// long-polls are not limited.
    pub async fn limit_poll_interval(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().enforce_poll_interval(true);
        let server = spawn(kind, ServerOptions::default().limits(limits)).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        browser.status(&qr.id).await.assert_json(200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let refused = browser.status(&qr.id).await;
        refused.assert_error(429, "slow_down");
        assert!(refused.header("retry-after").is_some(), "Retry-After");
        // A long-poll that answers at once (stale `since`) is a poll too (issue 16).
        let long_poll = browser
            .status_query(&format!("qrcodeId={}&wait=1&since=999", qr.id))
            .await;
        long_poll.assert_error(429, "slow_down");
    }

    /// 26: with limits on, unknown, foreign and expired ids get identical status, headers and
    /// bodies, and each costs one poll.
    pub async fn limit_same_answer_for_unknown_foreign_and_expired_ids(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().enforce_poll_interval(true);
        let options = ServerOptions::default()
            .limits(limits)
            .qr_lifetime(Duration::from_secs(1));
        let server = spawn(kind, options).await;
        let mut victim = server.browser();
        let foreign = victim.generate().await.id;
        let expired = victim.generate().await.id;
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let mut attacker = server.browser();
        attacker.generate().await;
        let mut answers = Vec::new();
        for id in [unknown_id(), foreign, expired] {
            let r = attacker.status(&id).await;
            let mut headers: Vec<(String, String)> = r
                .headers
                .iter()
                .filter(|(k, _)| k.as_str() != "date")
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                .collect();
            headers.sort();
            answers.push((r.status, headers, r.body.clone()));
            // Each id costs the same: the second poll right away is refused for all three.
            attacker.status(&id).await.assert_error(429, "slow_down");
        }
        assert_eq!(answers[0].0, 403);
        assert_eq!(answers[0], answers[1], "unknown vs foreign");
        assert_eq!(answers[0], answers[2], "unknown vs expired");
    }

    /// F4 (2): the client cannot choose the id or the ticket, and the QR carries only the id.
    pub async fn f4_client_chosen_id(kind: Target) {
        let server = server(kind).await;
        let browser = server.browser();
        let chosen = unknown_id();
        for body in [
            json!({ "qrcodeId": chosen }),
            json!({ "ticket": chosen }),
            json!({ "scene": "APP_AUTH", "qrcodeId": chosen }),
        ] {
            let r = Resp::send(
                browser
                    .request(Method::POST, "/qrcode")
                    .header(CONTENT_TYPE, "application/json")
                    .body(body_of(&body)),
            )
            .await;
            r.assert_error(400, "invalid_request");
            assert!(r.set_cookie("qrauth_bind").is_none(), "no session started");
        }

        // A legitimate body is accepted, and the QR carries the id but not the binding.
        let mut browser = server.browser();
        let r = Resp::send(
            browser
                .request(Method::POST, "/qrcode")
                .header(CONTENT_TYPE, "application/json")
                .body(body_of(&json!({ "scene": "APP_AUTH" }))),
        )
        .await;
        let qr = browser.accept_qr(r);
        assert_ne!(qr.id, chosen);
        let binding = browser.binding.clone().expect("binding");
        let content = qr.body["qrcodeContent"].as_str().expect("content");
        assert!(content.contains(&qr.id), "QR content names the id");
        assert!(!content.contains(&binding), "QR content leaks the binding");
        let image = qr.body["image"].as_str().expect("image");
        assert!(!image.contains(&binding));
        if let Some(b64) = image.strip_prefix("data:image/svg+xml;base64,") {
            let svg = String::from_utf8(STANDARD.decode(b64).expect("base64 SVG")).expect("UTF-8");
            assert!(svg.contains("<svg"), "an SVG");
            assert!(!svg.contains(&binding));
        }
        // The whole 201 body never carries the binding (only Set-Cookie does).
        assert!(!qr.response.text().contains(&binding));
    }

    /// F5 (9, 10): the phone's identity comes only from its credential; the phone API is
    /// strict about what it accepts.
    pub async fn f5_identity_from_body(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let (alice, bob) = (server.alice(), server.bob());

        server
            .anonymous_phone()
            .scan(&qr.id)
            .await
            .assert_error(401, "unauthenticated");
        let (token, _) = alice.scan_ok(&qr.id).await;
        bob.scan(&qr.id).await.assert_error(409, "conflict");
        alice.scan(&qr.id).await.assert_error(409, "conflict");

        // Bob cannot confirm or cancel Alice's scan, even naming her in the body.
        bob.confirm(&qr.id, &token)
            .await
            .assert_error(403, "access_denied");
        bob.post(
            "/qrcode/confirm",
            &json!({ "qrcodeId": qr.id, "confirmToken": token, "userId": "user-alice", "sub": "user-alice" }),
        )
        .await
        .assert_error(403, "access_denied");
        bob.cancel(&qr.id, &token)
            .await
            .assert_error(403, "access_denied");

        // No credential, or only a cookie.
        server
            .anonymous_phone()
            .confirm(&qr.id, &token)
            .await
            .assert_error(401, "unauthenticated");
        let cookie_only = Resp::send(
            server
                .anonymous_phone()
                .request("/qrcode/confirm")
                .header(COOKIE, "Authorization=Bearer demo-alice; token=demo-alice")
                .header(CONTENT_TYPE, "application/json")
                .body(body_of(
                    &json!({ "qrcodeId": qr.id, "confirmToken": token }),
                )),
        )
        .await;
        cookie_only.assert_error(401, "unauthenticated");

        // JSON only.
        let form = Resp::send(
            alice
                .request("/qrcode/confirm")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(format!("qrcodeId={}&confirmToken={token}", qr.id)),
        )
        .await;
        form.assert_error(415, "unsupported_media_type");

        // A foreign Origin.
        let evil = Resp::send(
            alice
                .request("/qrcode/confirm")
                .header(ORIGIN, "https://evil.example")
                .header(CONTENT_TYPE, "application/json")
                .body(body_of(
                    &json!({ "qrcodeId": qr.id, "confirmToken": token }),
                )),
        )
        .await;
        evil.assert_error(403, "access_denied");

        // No confirm token.
        alice
            .post("/qrcode/confirm", &json!({ "qrcodeId": qr.id }))
            .await
            .assert_error(400, "invalid_request");

        // None of that changed anything.
        let status = browser.bound_status(&qr.id).await;
        assert_eq!(status["status"], "scanned");

        // Alice confirms (same-origin Origin is fine); the body's identity is ignored.
        let ok = Resp::send(
            alice
                .request("/qrcode/confirm")
                .header(ORIGIN, server.base.as_str())
                .header(CONTENT_TYPE, "application/json")
                .body(body_of(&json!({
                    "qrcodeId": qr.id, "confirmToken": token,
                    "userId": "user-bob", "sub": "user-bob", "nickname": "Bob",
                }))),
        )
        .await;
        assert_eq!(ok.assert_json(200), json!({ "status": "confirmed" }));
        let status = browser.bound_status(&qr.id).await;
        assert_eq!(status["userInfo"]["nickname"], "Alice");
        let ticket = status["ticket"].as_str().expect("ticket");
        let tokens = browser.exchange(ticket).await.assert_json(200);
        let claims = jwt_payload(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(claims["sub"], "user-alice");
        assert_eq!(claims["nickname"], "Alice");
    }

    /// F6 (17): status bodies and events carry only the allow-listed fields, in every state.
    pub async fn f6_no_pii_in_status(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let alice = server.alice();
        let mut seen = Vec::new();

        let qr = browser.generate().await;
        let events = browser.events(&qr.id, None).await;
        seen.push(browser.bound_status(&qr.id).await);
        let (token, _) = alice.scan_ok(&qr.id).await;
        seen.push(browser.bound_status(&qr.id).await);
        alice.confirm(&qr.id, &token).await.assert_json(200);
        let confirmed = browser.bound_status(&qr.id).await;
        seen.push(confirmed.clone());
        browser
            .exchange(confirmed["ticket"].as_str().expect("ticket"))
            .await
            .assert_json(200);
        seen.push(browser.bound_status(&qr.id).await);

        let cancelled = browser.generate().await;
        let (token, _) = alice.scan_ok(&cancelled.id).await;
        alice.cancel(&cancelled.id, &token).await.assert_json(200);
        seen.push(browser.bound_status(&cancelled.id).await);

        for event in SseReader::new(events).rest().await {
            if let Some(data) = event.data {
                seen.push(serde_json::from_str(&data).expect("JSON event"));
            }
        }
        let states: HashSet<&str> = seen
            .iter()
            .map(|s| s["status"].as_str().expect("status"))
            .collect();
        for state in ["pending", "scanned", "confirmed", "consumed", "cancelled"] {
            assert!(states.contains(state), "saw {state}: {states:?}");
        }
        for body in &seen {
            assert_status_shape(body);
            let text = body.to_string();
            for secret in ["user-alice", "alice@demo.invalid"] {
                assert!(!text.contains(secret), "{secret} leaked in {text}");
            }
        }
    }

    /// 18: every `/qrcode*` response, success or error, is uncacheable and referrer-free, and
    /// every error is JSON.
    pub async fn headers_on_every_qrcode_route(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let alice = server.alice();
        let mut responses: Vec<(&str, Resp)> = Vec::new();

        let qr = browser.generate().await;
        responses.push(("POST /qrcode", qr.response.clone()));
        responses.push(("status", browser.status(&qr.id).await));
        responses.push((
            "status unbound",
            browser.without_binding().status(&qr.id).await,
        ));
        responses.push(("status no id", browser.get("/qrcode/status").await));
        responses.push(("events no id", browser.get("/qrcode/events").await));
        responses.push((
            "events unbound",
            browser
                .without_binding()
                .get(&format!("/qrcode/events?qrcodeId={}", qr.id))
                .await,
        ));
        responses.push(("exchange bad ticket", browser.exchange("nope").await));
        responses.push(("scan", alice.scan(&qr.id).await));
        let token = responses.last().expect("scan").1.json()["confirmToken"]
            .as_str()
            .expect("token")
            .to_owned();
        responses.push(("scan again", alice.scan(&qr.id).await));
        responses.push((
            "scan unauthenticated",
            server.anonymous_phone().scan(&qr.id).await,
        ));
        responses.push(("scan unknown", alice.scan(&unknown_id()).await));
        responses.push(("confirm", alice.confirm(&qr.id, &token).await));
        responses.push(("cancel after confirm", alice.cancel(&qr.id, &token).await));
        let ticket = browser.bound_status(&qr.id).await["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned();
        responses.push(("exchange", browser.exchange(&ticket).await));
        responses.push(("exchange replay", browser.exchange(&ticket).await));
        responses.push(("unknown route", browser.get("/qrcode/unknown").await));
        responses.push(("GET /qrcode", browser.get("/qrcode").await));
        responses.push((
            "POST /qrcode/status",
            Resp::send(browser.request(Method::POST, "/qrcode/status")).await,
        ));
        responses.push((
            "form POST /qrcode",
            Resp::send(
                browser
                    .request(Method::POST, "/qrcode")
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body("scene=APP_AUTH"),
            )
            .await,
        ));
        responses.push((
            "1 MiB POST /qrcode",
            Resp::send(
                browser
                    .request(Method::POST, "/qrcode")
                    .header(CONTENT_TYPE, "application/json")
                    .body(one_mib_json()),
            )
            .await,
        ));

        let expected_status = [
            201, 200, 403, 400, 400, 403, 400, 200, 409, 401, 404, 200, 409, 200, 400, 404, 405,
            405, 415, 413,
        ];
        assert_eq!(responses.len(), expected_status.len());
        for ((name, r), status) in responses.iter().zip(expected_status) {
            assert_eq!(r.status, status, "{name}: {}", r.text());
            assert_eq!(r.header("cache-control"), Some("no-store"), "{name}");
            assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{name}");
            assert_eq!(r.header("content-type"), Some(JSON_CT), "{name}");
            let body = r.json();
            if status >= 400 {
                assert!(body["error"].is_string(), "{name}: {body}");
                assert!(body["error_description"].is_string(), "{name}: {body}");
            } else {
                assert!(body.get("error").is_none(), "{name}: {body}");
            }
        }
        assert_eq!(
            responses[16].1.header("allow"),
            Some("POST"),
            "405 names the method"
        );
        assert_eq!(responses[17].1.header("allow"), Some("GET"));

        // The event stream too.
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let events = browser.events(&qr.id, None).await;
        assert_eq!(events.status().as_u16(), 200);
        let h = events.headers();
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["content-type"], "text/event-stream");
    }

    /// 4: with secure cookies the binding cookie is a `__Host-` cookie, and clearing it keeps
    /// the attributes a browser needs to accept the deletion.
    pub async fn secure_cookie_attributes(kind: Target) {
        let server = spawn(kind, ServerOptions::default().secure_cookies()).await;
        assert_eq!(server.binding_cookie_name(), "__Host-qrauth_bind");
        let mut browser = server.browser();
        let qr = browser.generate().await;
        assert!(qr.response.set_cookie("qrauth_bind").is_none());
        let cookie = qr
            .response
            .set_cookie("__Host-qrauth_bind")
            .expect("__Host- binding cookie");
        let binding = cookie.value.clone();
        assert!(!binding.is_empty());
        assert_eq!(cookie.attr("Path"), Some("/"), "{}", cookie.raw);
        assert!(cookie.has("HttpOnly"), "{}", cookie.raw);
        assert!(cookie.has("Secure"), "{}", cookie.raw);
        assert_eq!(cookie.attr("SameSite"), Some("Lax"), "{}", cookie.raw);
        assert!(!cookie.has("Domain"), "{}", cookie.raw);

        // The plain name is not accepted in place of the prefixed one.
        let mut plain = server.browser();
        plain.extra_cookies.push(format!("qrauth_bind={binding}"));
        plain.status(&qr.id).await.assert_error(403, "not_bound");

        server.alice().scan_and_confirm(&qr.id).await;
        let ticket = browser.bound_status(&qr.id).await["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned();
        let exchange = browser.exchange(&ticket).await;
        exchange.assert_json(200);
        let session = exchange
            .set_cookie("__Host-qrauth_session")
            .expect("__Host- session cookie");
        for attribute in ["Secure", "HttpOnly"] {
            assert!(session.has(attribute), "{}", session.raw);
        }
        assert_eq!(session.attr("Path"), Some("/"));
        assert!(!session.has("Domain"));
        let cleared = exchange
            .set_cookie("__Host-qrauth_bind")
            .expect("binding cleared");
        assert_eq!(cleared.attr("Max-Age"), Some("0"));
        assert!(cleared.has("Secure"), "a __Host- deletion must be Secure");
        assert_eq!(cleared.attr("Path"), Some("/"));

        let mut signed_in = server.browser();
        signed_in
            .extra_cookies
            .push(format!("__Host-qrauth_session={}", session.value));
        let me = signed_in.get("/api/me").await.assert_app_json(200);
        assert_eq!(me["sub"], "user-alice");
    }

    /// 13: a ticket presented with another browser's binding is refused and burnt.
    pub async fn exchange_with_foreign_binding_burns_ticket(kind: Target) {
        let server = server(kind).await;
        let mut a = server.browser();
        let mut b = server.browser();
        let qr_a = a.generate().await;
        let qr_b = b.generate().await;
        server.alice().scan_and_confirm(&qr_a.id).await;
        server.bob().scan_and_confirm(&qr_b.id).await;
        let ticket_a = a.bound_status(&qr_a.id).await["ticket"]
            .as_str()
            .expect("ticket A")
            .to_owned();
        let ticket_b = b.bound_status(&qr_b.id).await["ticket"]
            .as_str()
            .expect("ticket B")
            .to_owned();

        let stolen = b.exchange(&ticket_a).await;
        stolen.assert_error(403, "not_bound");
        assert!(stolen.set_cookie("qrauth_session").is_none());

        a.exchange(&ticket_a)
            .await
            .assert_error(400, "invalid_ticket");
        // A re-read must not mint the burnt ticket again.
        let after = a.bound_status(&qr_a.id).await;
        assert_ne!(after["status"], "confirmed", "{after}");
        assert!(after["ticket"].is_null(), "{after}");
        a.exchange(&ticket_a)
            .await
            .assert_error(400, "invalid_ticket");

        // B's own login is unaffected.
        let tokens = b.exchange(&ticket_b).await.assert_json(200);
        let claims = jwt_payload(tokens["id_token"].as_str().expect("id_token"));
        assert_eq!(claims["sub"], "user-bob");
    }

    /// 29: a long-poll answers as soon as the status changes, and `wait` ends on time.
    pub async fn long_poll_returns_quickly_on_change(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let v1 = version(&browser.bound_status(&qr.id).await);

        let poll = {
            let browser = browser.clone();
            let query = format!("qrcodeId={}&wait=10&since={v1}", qr.id);
            tokio::spawn(async move {
                let r = browser.status_query(&query).await;
                (r, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (token, _) = server.alice().scan_ok(&qr.id).await;
        let scanned_at = Instant::now();
        let (r, answered_at) = poll.await.expect("long-poll task");
        let body = r.assert_json(200);
        assert_status_shape(&body);
        assert_eq!(body["status"], "scanned");
        let v2 = version(&body);
        assert!(v2 > v1);
        let lag = answered_at.saturating_duration_since(scanned_at);
        assert!(
            lag < Duration::from_secs(2),
            "long-poll answered {lag:?} after the scan (lost wake-up?)"
        );

        // A huge wait is accepted (clamped, not refused) and still wakes on the change.
        let poll = {
            let browser = browser.clone();
            let query = format!("qrcodeId={}&wait=1000&since={v2}", qr.id);
            tokio::spawn(async move {
                let r = browser.status_query(&query).await;
                (r, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        server
            .alice()
            .confirm(&qr.id, &token)
            .await
            .assert_json(200);
        let confirmed_at = Instant::now();
        let (r, answered_at) = poll.await.expect("long-poll task");
        let body = r.assert_json(200);
        assert_eq!(body["status"], "confirmed");
        assert!(body["ticket"].is_string());
        assert!(answered_at.saturating_duration_since(confirmed_at) < Duration::from_secs(2));

        // A stale `since` answers at once.
        let started = Instant::now();
        let body = browser
            .status_query(&format!("qrcodeId={}&wait=10&since={v1}", qr.id))
            .await
            .assert_json(200);
        assert_eq!(body["status"], "confirmed");
        assert!(started.elapsed() < Duration::from_secs(2));

        // No change: `wait=1` returns after about a second with the same version.
        let quiet = browser.generate().await;
        let v = version(&browser.bound_status(&quiet.id).await);
        for query in [
            format!("qrcodeId={}&wait=1&since={v}", quiet.id),
            format!("qrcodeId={}&wait=1", quiet.id),
        ] {
            let started = Instant::now();
            let body = browser.status_query(&query).await.assert_json(200);
            let elapsed = started.elapsed();
            assert!(
                elapsed >= Duration::from_millis(900),
                "{query}: {elapsed:?}"
            );
            assert!(elapsed < Duration::from_secs(5), "{query}: {elapsed:?}");
            assert_eq!(body["status"], "pending");
            assert_eq!(version(&body), v);
        }
    }

    /// 29: SSE sends one event per transition with `id:` = version, ends after confirmed, and
    /// honours `Last-Event-ID`.
    pub async fn sse_one_event_per_transition(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;

        let response = browser.events(&qr.id, None).await;
        assert_eq!(response.status().as_u16(), 200);
        let h = response.headers();
        assert_eq!(h["content-type"], "text/event-stream");
        assert_eq!(h["x-accel-buffering"], "no");
        assert_eq!(h["cache-control"], "no-store");
        let mut stream = SseReader::new(response);
        let mut all = Vec::new();
        // Read up to the first data event before the phone acts.
        loop {
            let event = stream.next().await.expect("stream open");
            all.push(event.clone());
            if event.data.is_some() {
                break;
            }
        }

        // A second stream that already has version 1 must not get it again.
        let resumed = browser.events(&qr.id, Some(1)).await;
        assert_eq!(resumed.status().as_u16(), 200);
        let mut resumed = SseReader::new(resumed);
        let first = resumed.next().await.expect("resumed stream opens");
        assert!(first.retry.is_some(), "{first:?}");
        assert!(first.data.is_none(), "Last-Event-ID: 1 resent {first:?}");

        let alice = server.alice();
        let (token, _) = alice.scan_ok(&qr.id).await;
        // The stream reports the state it reads after each wake-up: a confirm that lands before
        // it has read "scanned" would be reported as one change. Confirm once it has.
        loop {
            let event = stream.next().await.expect("stream open");
            all.push(event.clone());
            if event
                .data
                .as_deref()
                .is_some_and(|d| d.contains(r#""status":"scanned""#))
            {
                break;
            }
        }
        alice.confirm(&qr.id, &token).await.assert_json(200);

        all.extend(stream.rest().await); // returns only at EOF
        assert!(all.iter().any(|e| e.retry.is_some()), "retry: sent");
        let data: Vec<(Option<String>, Value)> = all
            .iter()
            .filter_map(|e| {
                e.data
                    .as_deref()
                    .map(|d| (e.id.clone(), serde_json::from_str(d).expect("JSON event")))
            })
            .collect();
        let states: Vec<&str> = data
            .iter()
            .map(|(_, d)| d["status"].as_str().expect("status"))
            .collect();
        assert_eq!(states, ["pending", "scanned", "confirmed"], "{all:?}");
        for (id, body) in &data {
            assert_status_shape(body);
            assert_eq!(id.as_deref(), Some(version(body).to_string().as_str()));
        }
        assert!(
            data[2].1["ticket"].is_string(),
            "confirmed event has the ticket"
        );
        assert_eq!(data[2].1["userInfo"]["nickname"], "Alice");

        let resumed_data: Vec<Value> = resumed
            .rest()
            .await
            .into_iter()
            .filter_map(|e| e.data)
            .map(|d| serde_json::from_str(&d).expect("JSON"))
            .collect();
        let resumed_states: Vec<&str> = resumed_data
            .iter()
            .map(|d| d["status"].as_str().expect("status"))
            .collect();
        assert_eq!(resumed_states, ["scanned", "confirmed"]);

        // Reconnecting with the current version: nothing new, and the stream ends.
        let current = version(&data[2].1);
        let again = SseReader::new(browser.events(&qr.id, Some(current)).await)
            .rest()
            .await;
        assert!(again.iter().all(|e| e.data.is_none()), "{again:?}");
    }

    /// 8: a QR lives as long as configured; afterwards browser and phone get 410.
    pub async fn expiry(kind: Target) {
        let lifetime = Duration::from_secs(2);
        let server = spawn(kind, ServerOptions::default().qr_lifetime(lifetime)).await;
        let mut browser = server.browser();
        let started = Instant::now();
        let qr = browser.generate().await;
        assert_eq!(qr.body["expiresIn"], 2);
        let scanned = browser.generate().await;
        let (token, _) = server.alice().scan_ok(&scanned.id).await;

        // Watchers that must end at the expiry, not at their own deadlines.
        let events = browser.events(&qr.id, None).await;
        let poll = {
            let browser = browser.clone();
            let query = format!("qrcodeId={}&wait=10", qr.id);
            tokio::spawn(async move {
                let r = browser.status_query(&query).await;
                (r, Instant::now())
            })
        };

        tokio::time::sleep(
            (lifetime + Duration::from_millis(200)).saturating_sub(started.elapsed()),
        )
        .await;
        browser
            .status(&qr.id)
            .await
            .assert_error(410, "expired_qrcode");
        server
            .alice()
            .scan(&qr.id)
            .await
            .assert_error(410, "expired_qrcode");
        server
            .alice()
            .confirm(&scanned.id, &token)
            .await
            .assert_error(410, "expired_qrcode");
        browser
            .status(&scanned.id)
            .await
            .assert_error(410, "expired_qrcode");
        // Unbound callers still cannot tell an expired id from an unknown one (26).
        let unbound = browser.without_binding();
        assert_eq!(
            unbound.status(&qr.id).await.body,
            unbound.status(&unknown_id()).await.body
        );

        let (r, answered_at) = poll.await.expect("long-poll task");
        r.assert_error(410, "expired_qrcode");
        assert!(
            answered_at.duration_since(started) < Duration::from_secs(5),
            "long-poll ended at the expiry"
        );
        let states: Vec<String> = SseReader::new(events)
            .rest()
            .await
            .into_iter()
            .filter_map(|e| e.data)
            .map(|d| {
                serde_json::from_str::<Value>(&d).expect("JSON")["status"]
                    .as_str()
                    .expect("status")
                    .to_owned()
            })
            .collect();
        assert_eq!(states, ["pending", "expired"]);
        assert!(started.elapsed() < Duration::from_secs(8));
    }

    /// Malformed, oversized and odd requests get the right 4xx JSON, never a 500 or a reset.
    pub async fn bad_input(kind: Target) {
        let server = server(kind).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let alice = server.alice();

        let post = |path: &str, content_type: &str, body: Vec<u8>| {
            let request = browser
                .request(Method::POST, path)
                .header(AUTHORIZATION, "Bearer demo-alice")
                .header(CONTENT_TYPE, content_type)
                .body(body);
            Resp::send(request)
        };

        // Malformed JSON, invalid UTF-8, oversized and non-JSON bodies, on every POST route.
        // The invalid UTF-8 sits in the field each route reads, so that the same body with
        // valid text would not be a 400 invalid_request (but 201, invalid_ticket or 404).
        for (path, prefix) in [
            ("/qrcode", r#"{"scene":""#),
            ("/qrcode/exchange", r#"{"ticket":""#),
            ("/qrcode/scan", r#"{"qrcodeId":""#),
            ("/qrcode/confirm", r#"{"confirmToken":"x","qrcodeId":""#),
            ("/qrcode/cancel", r#"{"confirmToken":"x","qrcodeId":""#),
        ] {
            post(path, "application/json", br#"{"scene":"#.to_vec())
                .await
                .assert_error(400, "invalid_request");
            let mut invalid_utf8 = prefix.as_bytes().to_vec();
            invalid_utf8.extend_from_slice(b"\xff\xfe\"}");
            post(path, "application/json", invalid_utf8)
                .await
                .assert_error(400, "invalid_request");
            post(path, "application/json", one_mib_json())
                .await
                .assert_error(413, "payload_too_large");
            post(path, "text/plain", br#"{"qrcodeId":"x"}"#.to_vec())
                .await
                .assert_error(415, "unsupported_media_type");
        }
        post(
            "/qrcode",
            "application/x-www-form-urlencoded",
            b"scene=x".to_vec(),
        )
        .await
        .assert_error(415, "unsupported_media_type");
        post("/qrcode", "application/json", b"[1,2]".to_vec())
            .await
            .assert_error(400, "invalid_request");
        post("/qrcode/exchange", "application/json", b"{}".to_vec())
            .await
            .assert_error(400, "invalid_request");
        post(
            "/qrcode/exchange",
            "application/json",
            br#"{"ticket":"abc","extra":1}"#.to_vec(),
        )
        .await
        .assert_error(400, "invalid_request");
        browser
            .exchange("x")
            .await
            .assert_error(400, "invalid_ticket");
        alice
            .scan("not an id")
            .await
            .assert_error(404, "unknown_qrcode");

        // Unknown ids of any length, with a valid binding cookie: the same 403.
        let mut bodies = Vec::new();
        let ids = [0usize, 1, 22, 100, 10 * 1024].into_iter().flat_map(|len| {
            [
                "A".repeat(len),
                "a/b+c=d%".chars().cycle().take(len).collect::<String>(),
            ]
        });
        for id in ids {
            for path in ["/qrcode/status", "/qrcode/events"] {
                let r = browser
                    .get(&format!("{path}?qrcodeId={}", url_encode(&id)))
                    .await;
                r.assert_error(403, "not_bound");
                bodies.push(r.body);
            }
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]), "identical bodies");

        // Missing or malformed parameters.
        for path in [
            "/qrcode/status".to_owned(),
            "/qrcode/events".to_owned(),
            "/qrcode/status?qrcodeid=x".to_owned(),
            format!("/qrcode/status?qrcodeId={}&wait=abc", qr.id),
            format!("/qrcode/status?qrcodeId={}&wait=-1", qr.id),
            format!("/qrcode/status?qrcodeId={}&wait=1&since=abc", qr.id),
        ] {
            browser
                .get(&path)
                .await
                .assert_error(400, "invalid_request");
        }

        // The session is still fine after all that.
        let status = browser.bound_status(&qr.id).await;
        assert_eq!(status["status"], "pending");
    }

    /// 28: the protected routes refuse every bad token with 401 and RFC 6750's challenge.
    pub async fn protected_route_rejections(kind: Target) {
        let key = fresh_signing_key();
        let server = spawn(kind, ServerOptions::default().signing_key(key.clone())).await;
        let browser = server.browser();
        let with_bearer = |token: String| {
            Resp::send(
                browser
                    .request(Method::GET, "/api/me")
                    .header(AUTHORIZATION, format!("Bearer {token}")),
            )
        };

        let missing = browser.get("/api/me").await;
        missing.assert_error(401, "invalid_token");
        assert!(
            missing
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer")),
            "{:?}",
            missing.headers
        );

        let now = now_secs();
        // qrauth's own tokens stand for signed-in sessions: the forged ones below name a live
        // one, so that each is refused for the reason its name says and not for its session.
        let (_, signed_in) = login(&server).await;
        let sid = jwt_payload(signed_in["id_token"].as_str().expect("id_token"))["sid"].clone();
        let claims = |overrides: Value| {
            let mut c = json!({
                "iss": server.base, "sub": "user-test", "aud": AUDIENCE,
                "iat": now, "exp": now + 600, "sid": sid,
            });
            for (k, v) in overrides.as_object().expect("object") {
                c[k] = v.clone();
            }
            c
        };

        // Control: a good token signed with the server's key works, so every refusal below is
        // for the reason its name says.
        let good = key.sign("JWT", &claims(json!({}))).expect("sign");
        let me = with_bearer(good.clone()).await.assert_app_json(200);
        assert_eq!(me["sub"], "user-test");

        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("JSON"));
        let good_payload = good.split('.').nth(1).expect("payload").to_owned();
        let hs256 = jsonwebtoken::encode(
            &{
                let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
                h.kid = Some(key.kid().to_owned());
                h
            },
            &claims(json!({})),
            &jsonwebtoken::EncodingKey::from_secret(
                &serde_json::to_vec(key.public_jwk()).expect("JWK"),
            ),
        )
        .expect("HS256 token");
        let bad_tokens = [
            (
                "expired",
                key.sign(
                    "JWT",
                    &claims(json!({ "iat": now - 7200, "exp": now - 3600 })),
                )
                .expect("sign"),
            ),
            (
                "not yet valid",
                key.sign("JWT", &claims(json!({ "nbf": now + 3600 })))
                    .expect("sign"),
            ),
            (
                "wrong audience",
                key.sign("JWT", &claims(json!({ "aud": "another-app" })))
                    .expect("sign"),
            ),
            (
                "wrong issuer",
                key.sign("JWT", &claims(json!({ "iss": "https://evil.example" })))
                    .expect("sign"),
            ),
            (
                "another key",
                fresh_signing_key()
                    .sign("JWT", &claims(json!({})))
                    .expect("sign"),
            ),
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(&json!({ "alg": "none", "typ": "JWT" })),
                    b64(&claims(json!({})))
                ),
            ),
            (
                "alg none with the server's kid",
                format!(
                    "{}.{}.",
                    b64(&json!({ "alg": "none", "typ": "JWT", "kid": key.kid() })),
                    good_payload
                ),
            ),
            ("HS256 keyed with the public key", hs256),
            ("tampered payload", {
                let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
                parts[1] = b64(&claims(json!({ "sub": "user-admin" })));
                parts.join(".")
            }),
            ("garbage", "not-a-jwt".to_owned()),
        ];
        for (name, token) in bad_tokens {
            for via_cookie in [false, true] {
                let r = if via_cookie {
                    Resp::send(
                        server
                            .browser()
                            .request(Method::GET, "/api/me")
                            .header(COOKIE, format!("qrauth_session={token}")),
                    )
                    .await
                } else {
                    with_bearer(token.clone()).await
                };
                assert_eq!(r.status, 401, "{name} (cookie: {via_cookie}): {}", r.text());
                r.assert_error(401, "invalid_token");
                let challenge = r.header("www-authenticate").unwrap_or_default();
                assert!(
                    challenge.starts_with("Bearer")
                        && challenge.contains(r#"error="invalid_token""#),
                    "{name}: WWW-Authenticate {challenge:?}"
                );
            }
        }
    }
}

/// An id_token issued by the axum server verifies on an actix server that shares its key,
/// issuer and store (its signed-in sessions), and not on one with another key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_adapter_token() {
    bounded("cross_adapter_token", async {
        let redis = tokio::task::spawn_blocking(qrauth_tests::RedisServer::start)
            .await
            .expect("redis-server");
        let key = fresh_signing_key();
        let axum = spawn(
            ServerKind::Axum,
            ServerOptions::default()
                .signing_key(key.clone())
                .redis(redis.url()),
        )
        .await;
        let actix = spawn(
            ServerKind::Actix,
            ServerOptions::default()
                .signing_key(key.clone())
                .issuer(axum.base.clone())
                .redis(redis.url()),
        )
        .await;
        let stranger = spawn(
            ServerKind::Actix,
            ServerOptions::default()
                .redis(redis.url())
                .signing_key(fresh_signing_key())
                .issuer(axum.base.clone()),
        )
        .await;

        let me = |server: &TestServer, token: &str| {
            Resp::send(
                server
                    .browser()
                    .request(Method::GET, "/api/me")
                    .header(AUTHORIZATION, format!("Bearer {token}")),
            )
        };

        let (_, tokens) = login(&axum).await;
        let id_token = tokens["id_token"].as_str().expect("id_token");
        let claims = me(&actix, id_token).await.assert_app_json(200);
        assert_eq!(claims["sub"], "user-alice");
        assert_eq!(claims["iss"], axum.base.as_str());
        let mut with_cookie = actix.browser();
        with_cookie
            .extra_cookies
            .push(format!("qrauth_session={id_token}"));
        with_cookie.get("/api/me").await.assert_app_json(200);
        me(&stranger, id_token)
            .await
            .assert_error(401, "invalid_token");

        // And the other way round.
        let (_, tokens) = login(&actix).await;
        let id_token = tokens["id_token"].as_str().expect("id_token");
        assert_eq!(jwt_payload(id_token)["iss"], axum.base.as_str());
        let claims = me(&axum, id_token).await.assert_app_json(200);
        assert_eq!(claims["sub"], "user-alice");
    })
    .await;
}

/// The same bad requests get the same status codes and byte-identical bodies from both adapters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_identical_across_adapters() {
    bounded("json_bodies_identical_across_adapters", async {
        let axum = spawn(ServerKind::Axum, ServerOptions::default()).await;
        let actix = spawn(ServerKind::Actix, ServerOptions::default()).await;

        async fn answers(server: &TestServer) -> Vec<(String, u16, Vec<u8>, Vec<String>)> {
            let mut browser = server.browser();
            let qr = browser.generate().await;
            let unbound = browser.without_binding();
            let alice = server.alice();
            let json_post = |b: &qrauth_tests::Browser, path: &str, body: Vec<u8>| {
                Resp::send(
                    b.request(Method::POST, path)
                        .header(CONTENT_TYPE, "application/json")
                        .body(body),
                )
            };
            let id = unknown_id();
            let mut out = Vec::new();
            let mut record = |name: &str, r: Resp| {
                let headers = ["content-type", "allow", "www-authenticate", "cache-control"]
                    .iter()
                    .map(|h| format!("{h}: {:?}", r.header(h)))
                    .collect();
                out.push((name.to_owned(), r.status, r.body, headers));
            };
            record(
                "client-chosen id",
                json_post(&unbound, "/qrcode", body_of(&json!({ "qrcodeId": id }))).await,
            );
            record(
                "client-chosen ticket",
                json_post(&unbound, "/qrcode", body_of(&json!({ "ticket": id }))).await,
            );
            record(
                "malformed",
                json_post(&unbound, "/qrcode", br#"{"scene":"#.to_vec()).await,
            );
            record(
                "invalid UTF-8",
                json_post(
                    &browser,
                    "/qrcode/exchange",
                    b"{\"ticket\":\"\xff\"}".to_vec(),
                )
                .await,
            );
            record(
                "too large",
                json_post(&unbound, "/qrcode", one_mib_json()).await,
            );
            record(
                "form",
                Resp::send(
                    unbound
                        .request(Method::POST, "/qrcode")
                        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body("scene=x"),
                )
                .await,
            );
            record("GET /qrcode", unbound.get("/qrcode").await);
            record("unknown route", unbound.get("/qrcode/nope").await);
            record("status no id", browser.get("/qrcode/status").await);
            record("status unbound", unbound.status(&qr.id).await);
            record("status unknown", browser.status(&id).await);
            record(
                "status wait=abc",
                browser
                    .get(&format!("/qrcode/status?qrcodeId={}&wait=abc", qr.id))
                    .await,
            );
            record(
                "events unbound",
                unbound
                    .get(&format!("/qrcode/events?qrcodeId={}", qr.id))
                    .await,
            );
            record("exchange bad ticket", browser.exchange("x").await);
            record("exchange unknown ticket", browser.exchange(&id).await);
            record("exchange unbound", unbound.exchange(&id).await);
            record(
                "exchange missing ticket",
                json_post(&browser, "/qrcode/exchange", b"{}".to_vec()).await,
            );
            record(
                "scan unauthenticated",
                server.anonymous_phone().scan(&qr.id).await,
            );
            record("scan unknown", alice.scan(&id).await);
            let (token, _) = alice.scan_ok(&qr.id).await;
            record("scan twice", server.bob().scan(&qr.id).await);
            record("confirm by bob", server.bob().confirm(&qr.id, &token).await);
            record(
                "confirm without token",
                alice
                    .post("/qrcode/confirm", &json!({ "qrcodeId": qr.id }))
                    .await,
            );
            record(
                "confirm evil origin",
                Resp::send(
                    alice
                        .request("/qrcode/confirm")
                        .header(ORIGIN, "https://evil.example")
                        .header(CONTENT_TYPE, "application/json")
                        .body(body_of(
                            &json!({ "qrcodeId": qr.id, "confirmToken": token }),
                        )),
                )
                .await,
            );
            record("api/me anonymous", unbound.get("/api/me").await);
            record(
                "api/me garbage",
                Resp::send(
                    unbound
                        .request(Method::GET, "/api/me")
                        .header(AUTHORIZATION, "Bearer garbage"),
                )
                .await,
            );
            out
        }

        let from_axum = answers(&axum).await;
        let from_actix = answers(&actix).await;
        assert_eq!(from_axum.len(), from_actix.len());
        for (a, b) in from_axum.iter().zip(&from_actix) {
            assert_eq!(a.0, b.0);
            assert!(a.1 >= 400, "{}: {} is an error", a.0, a.1);
            assert_eq!(a.1, b.1, "{}: status axum {} vs actix {}", a.0, a.1, b.1);
            assert_eq!(
                String::from_utf8_lossy(&a.2),
                String::from_utf8_lossy(&b.2),
                "{}: bodies differ",
                a.0
            );
            assert_eq!(a.3, b.3, "{}: headers differ", a.0);
        }
    })
    .await;
}
