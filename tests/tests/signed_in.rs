//! Signed-in sessions over HTTP (`docs/protocol.md`, "Signed-in sessions"): sign-out,
//! revocation from the phone, rotating renewal, idle and absolute lifetimes, the device list,
//! bad input; each test once per adapter and store. Two more run across replicas on one
//! `redis-server` and with the store down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qrauth_core::ManualClock;
use qrauth_tests::{
    Browser, Resp, ServerKind, ServerOptions, SetCookie, Target, TestServer, jwt_payload, spawn,
};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, ORIGIN};
use serde_json::{Value, json};

const TEST_DEADLINE: Duration = Duration::from_secs(50);
const DAY: Duration = Duration::from_secs(86_400);

async fn bounded(name: &str, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("{name} did not finish within {TEST_DEADLINE:?}");
    }
}

macro_rules! signed_in_suite {
    ($target:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::bounded(stringify!($name), super::cases::$name($target)).await;
            }
        )+
    };
    ($target:expr) => {
        signed_in_suite!($target;
            logout_signs_out_bearer_and_cookie,
            logout_refuses_cross_site_requests,
            phone_revokes_one_browser_then_all,
            device_list_shows_only_the_callers_sessions_and_no_secret,
            refresh_rotates_and_a_reused_credential_revokes_the_session,
            a_second_tab_renewing_at_once_is_not_a_reuse,
            idle_timeout_and_absolute_lifetime_on_a_manual_clock,
            bad_input_gets_documented_errors,
        );
    };
}

mod axum {
    signed_in_suite!(qrauth_tests::Target::from(qrauth_tests::ServerKind::Axum));
}
mod actix {
    signed_in_suite!(qrauth_tests::Target::from(qrauth_tests::ServerKind::Actix));
}
mod axum_redis {
    signed_in_suite!(qrauth_tests::Target::redis(qrauth_tests::ServerKind::Axum));
}
mod actix_redis {
    signed_in_suite!(qrauth_tests::Target::redis(qrauth_tests::ServerKind::Actix));
}
mod axum_redis_cluster {
    signed_in_suite!(qrauth_tests::Target::redis_cluster(
        qrauth_tests::ServerKind::Axum
    ));
}

/// A signed-in browser: its tokens and the cookies the exchange (or the latest renewal) set.
struct SignedIn {
    browser: Browser,
    id_token: String,
    session_cookie: String,
    refresh: String,
}

fn refresh_cookie_name(server: &TestServer) -> String {
    server.service.cookies().refresh_name()
}

/// The cookie `name` that `response` set, with a value (not a deletion).
fn set_cookie(response: &Resp, name: &str) -> Option<SetCookie> {
    response
        .set_cookies()
        .into_iter()
        .find(|c| c.name == name && !c.value.is_empty())
}

async fn sign_in(server: &TestServer, phone: &str) -> SignedIn {
    let mut browser = server.browser();
    let qr = browser.generate().await;
    qrauth_tests::Phone::new(server, Some(phone))
        .scan_and_confirm(&qr.id)
        .await;
    let status = browser.bound_status(&qr.id).await;
    let ticket = status["ticket"].as_str().expect("ticket").to_owned();
    let response = browser.exchange(&ticket).await;
    let tokens = response.assert_json(200);
    let session = set_cookie(&response, &server.session_cookie_name()).expect("session cookie");
    let refresh = set_cookie(&response, &refresh_cookie_name(server)).expect("refresh cookie");
    // Both copies of the refresh cookie: one per route, nowhere else.
    let paths: Vec<String> = response
        .set_cookies()
        .into_iter()
        .filter(|c| c.name == refresh.name)
        .filter_map(|c| c.attr("path").map(str::to_owned))
        .collect();
    assert_eq!(paths, ["/qrcode/refresh", "/qrcode/logout"]);
    assert!(refresh.has("httponly") && refresh.attr("samesite") == Some("Strict"));
    browser.binding = None;
    SignedIn {
        browser,
        id_token: tokens["id_token"].as_str().expect("id_token").to_owned(),
        session_cookie: format!("{}={}", session.name, session.value),
        refresh: format!("{}={}", refresh.name, refresh.value),
    }
}

async fn me_bearer(server: &TestServer, token: &str) -> u16 {
    Resp::send(
        qrauth_tests::client(Duration::from_secs(10))
            .get(server.url("/api/me"))
            .header(AUTHORIZATION, format!("Bearer {token}")),
    )
    .await
    .status
}

async fn me_cookie(server: &TestServer, cookie: &str) -> u16 {
    Resp::send(
        qrauth_tests::client(Duration::from_secs(10))
            .get(server.url("/api/me"))
            .header(COOKIE, cookie),
    )
    .await
    .status
}

async fn post_session_route(server: &TestServer, path: &str, cookie: Option<&str>) -> Resp {
    let mut request = qrauth_tests::client(Duration::from_secs(10))
        .post(server.url(path))
        .header(CONTENT_TYPE, "application/json")
        .body("{}");
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    Resp::send(request).await
}

async fn devices(server: &TestServer, phone: &str) -> Resp {
    Resp::send(
        qrauth_tests::client(Duration::from_secs(10))
            .get(server.url("/qrcode/devices"))
            .header(AUTHORIZATION, phone),
    )
    .await
}

async fn revoke(server: &TestServer, phone: &str, body: Value) -> Resp {
    qrauth_tests::Phone::new(server, Some(phone))
        .post("/qrcode/devices/revoke", &body)
        .await
}

const ALICE: &str = "Bearer demo-alice";
const BOB: &str = "Bearer demo-bob";

mod cases {
    use super::*;

    pub async fn logout_signs_out_bearer_and_cookie(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let a = sign_in(&server, ALICE).await;
        assert_eq!(me_bearer(&server, &a.id_token).await, 200);
        assert_eq!(me_cookie(&server, &a.session_cookie).await, 200);
        assert!(
            jwt_payload(&a.id_token)["sid"]
                .as_str()
                .is_some_and(|s| s.len() >= 22)
        );

        let out = post_session_route(&server, "/qrcode/logout", Some(&a.session_cookie)).await;
        assert_eq!(out.status, 204, "{}", out.text());
        let cleared: Vec<SetCookie> = out.set_cookies();
        for name in [server.session_cookie_name(), refresh_cookie_name(&server)] {
            assert!(
                cleared
                    .iter()
                    .any(|c| c.name == name && c.attr("max-age") == Some("0")),
                "{name} cleared: {cleared:?}"
            );
        }
        // At once, both ways of presenting the token.
        assert_eq!(me_bearer(&server, &a.id_token).await, 401);
        assert_eq!(me_cookie(&server, &a.session_cookie).await, 401);
        // Idempotent, and without any session.
        let again = post_session_route(&server, "/qrcode/logout", Some(&a.session_cookie)).await;
        assert_eq!(again.status, 204);
        assert_eq!(
            post_session_route(&server, "/qrcode/logout", None)
                .await
                .status,
            204
        );
        // The refresh credential is dead too.
        let refreshed = post_session_route(&server, "/qrcode/refresh", Some(&a.refresh)).await;
        refreshed.assert_error(400, "invalid_grant");

        // Signing out with the refresh cookie alone (an expired id_token is no obstacle).
        let b = sign_in(&server, ALICE).await;
        let out = post_session_route(&server, "/qrcode/logout", Some(&b.refresh)).await;
        assert_eq!(out.status, 204);
        assert_eq!(me_bearer(&server, &b.id_token).await, 401);
        drop(a.browser);
    }

    pub async fn logout_refuses_cross_site_requests(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let a = sign_in(&server, ALICE).await;
        let client = qrauth_tests::client(Duration::from_secs(10));
        let foreign = Resp::send(
            client
                .post(server.url("/qrcode/logout"))
                .header(COOKIE, &a.session_cookie)
                .header(ORIGIN, "https://evil.example")
                .header(CONTENT_TYPE, "application/json")
                .body("{}"),
        )
        .await;
        foreign.assert_error(403, "access_denied");
        let cross = Resp::send(
            client
                .post(server.url("/qrcode/logout"))
                .header(COOKIE, &a.session_cookie)
                .header("sec-fetch-site", "cross-site"),
        )
        .await;
        cross.assert_error(403, "access_denied");
        let form = Resp::send(
            client
                .post(server.url("/qrcode/logout"))
                .header(COOKIE, &a.session_cookie)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body("a=1"),
        )
        .await;
        form.assert_error(415, "unsupported_media_type");
        let refresh = Resp::send(
            client
                .post(server.url("/qrcode/refresh"))
                .header(COOKIE, &a.refresh)
                .header(ORIGIN, "https://evil.example"),
        )
        .await;
        refresh.assert_error(403, "access_denied");
        // None of them signed anyone out.
        assert_eq!(me_bearer(&server, &a.id_token).await, 200);
        // Same origin passes.
        let same = Resp::send(
            client
                .post(server.url("/qrcode/logout"))
                .header(COOKIE, &a.session_cookie)
                .header(ORIGIN, &server.base)
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
        assert_eq!(same.status, 204, "{}", same.text());
        assert_eq!(me_bearer(&server, &a.id_token).await, 401);
    }

    pub async fn phone_revokes_one_browser_then_all(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let a = sign_in(&server, ALICE).await;
        let b = sign_in(&server, ALICE).await;
        let bob = sign_in(&server, BOB).await;
        let list = devices(&server, ALICE).await.assert_json(200);
        let sessions = list["sessions"].as_array().expect("sessions");
        assert_eq!(sessions.len(), 2, "{list}");
        let sid_a = jwt_payload(&a.id_token)["sid"].as_str().unwrap().to_owned();
        assert!(sessions.iter().any(|s| s["sessionId"] == sid_a.as_str()));

        // Bob cannot revoke Alice's browser: the same 404 as an unknown handle.
        revoke(&server, BOB, json!({ "sessionId": sid_a }))
            .await
            .assert_error(404, "unknown_session");
        assert_eq!(me_bearer(&server, &a.id_token).await, 200);

        let one = revoke(&server, ALICE, json!({ "sessionId": sid_a })).await;
        assert_eq!(one.assert_json(200)["revoked"], 1);
        assert_eq!(me_bearer(&server, &a.id_token).await, 401);
        assert_eq!(me_bearer(&server, &b.id_token).await, 200);
        // Revoking it again: it is gone.
        revoke(&server, ALICE, json!({ "sessionId": sid_a }))
            .await
            .assert_error(404, "unknown_session");

        let all = revoke(&server, ALICE, json!({ "all": true })).await;
        assert_eq!(all.assert_json(200)["revoked"], 1);
        assert_eq!(me_bearer(&server, &b.id_token).await, 401);
        assert_eq!(me_cookie(&server, &b.session_cookie).await, 401);
        // Bob's browser is untouched.
        assert_eq!(me_bearer(&server, &bob.id_token).await, 200);
        let empty = devices(&server, ALICE).await.assert_json(200);
        assert_eq!(empty["sessions"], json!([]));
        // The application's server API sees the same.
        let bobs = server.service.signed_in_sessions("user-bob").await.unwrap();
        assert_eq!(bobs.len(), 1);
        assert_eq!(
            server
                .service
                .revoke_all_sessions("user-bob")
                .await
                .unwrap(),
            1
        );
        assert_eq!(me_bearer(&server, &bob.id_token).await, 401);
    }

    pub async fn device_list_shows_only_the_callers_sessions_and_no_secret(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let a = sign_in(&server, ALICE).await;
        let _bob = sign_in(&server, BOB).await;
        let response = devices(&server, ALICE).await;
        let list = response.assert_json(200);
        let sessions = list["sessions"].as_array().expect("sessions");
        assert_eq!(sessions.len(), 1, "only Alice's: {list}");
        let entry = &sessions[0];
        let keys: Vec<&str> = entry
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "browser",
                "createdAt",
                "current",
                "ip",
                "lastSeenAt",
                "sessionId"
            ]
        );
        assert_eq!(entry["browser"], "Chrome on Windows");
        assert_eq!(entry["ip"], "127.0.0.1");
        assert_eq!(entry["current"], false);
        let text = response.text();
        let refresh_secret = a.refresh.split_once('.').unwrap().1;
        for secret in [a.id_token.as_str(), refresh_secret] {
            assert!(!text.contains(secret), "the list leaks a secret: {text}");
        }
        // Without a phone credential: 401, never a list.
        let anonymous = Resp::send(
            qrauth_tests::client(Duration::from_secs(10)).get(server.url("/qrcode/devices")),
        )
        .await;
        anonymous.assert_error(401, "unauthenticated");
    }

    pub async fn refresh_rotates_and_a_reused_credential_revokes_the_session(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let a = sign_in(&server, ALICE).await;
        let first = post_session_route(&server, "/qrcode/refresh", Some(&a.refresh)).await;
        let tokens = first.assert_json(200);
        let renewed = tokens["id_token"].as_str().unwrap().to_owned();
        assert_ne!(renewed, a.id_token);
        assert_eq!(tokens["expires_in"], 600);
        let claims = jwt_payload(&renewed);
        let old = jwt_payload(&a.id_token);
        assert_eq!(claims["sid"], old["sid"]);
        assert_eq!(claims["sub"], "user-alice");
        assert_eq!(claims["auth_time"], old["auth_time"]);
        assert_eq!(claims["name"], "Alice");
        let rotated = set_cookie(&first, &refresh_cookie_name(&server)).expect("rotated cookie");
        assert_ne!(format!("{}={}", rotated.name, rotated.value), a.refresh);
        assert!(set_cookie(&first, &server.session_cookie_name()).is_some());
        assert_eq!(me_bearer(&server, &renewed).await, 200);

        let second_credential = format!("{}={}", rotated.name, rotated.value);
        let second = post_session_route(&server, "/qrcode/refresh", Some(&second_credential)).await;
        second.assert_json(200);
        // The first credential is now two rotations old: a replay revokes the whole session.
        let replay = post_session_route(&server, "/qrcode/refresh", Some(&a.refresh)).await;
        replay.assert_error(400, "invalid_grant");
        assert_eq!(me_bearer(&server, &renewed).await, 401);
        let latest = set_cookie(&second, &refresh_cookie_name(&server)).unwrap();
        post_session_route(
            &server,
            "/qrcode/refresh",
            Some(&format!("{}={}", latest.name, latest.value)),
        )
        .await
        .assert_error(400, "invalid_grant");
        assert_eq!(
            devices(&server, ALICE).await.assert_json(200)["sessions"],
            json!([])
        );
    }

    pub async fn a_second_tab_renewing_at_once_is_not_a_reuse(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let a = sign_in(&server, ALICE).await;
        let first = post_session_route(&server, "/qrcode/refresh", Some(&a.refresh)).await;
        first.assert_json(200);
        // The other tab sent the same cookie a moment later: a fresh id_token, no rotation.
        let second = post_session_route(&server, "/qrcode/refresh", Some(&a.refresh)).await;
        let tokens = second.assert_json(200);
        assert!(set_cookie(&second, &refresh_cookie_name(&server)).is_none());
        let token = tokens["id_token"].as_str().unwrap();
        assert_eq!(me_bearer(&server, token).await, 200);
        // The rotated credential still works.
        let rotated = set_cookie(&first, &refresh_cookie_name(&server)).unwrap();
        post_session_route(
            &server,
            "/qrcode/refresh",
            Some(&format!("{}={}", rotated.name, rotated.value)),
        )
        .await
        .assert_json(200);
    }

    pub async fn idle_timeout_and_absolute_lifetime_on_a_manual_clock(target: Target) {
        let clock = Arc::new(ManualClock::starting_now());
        let options = ServerOptions::default().clock(clock.clone()).signed_in(
            Duration::from_secs(600),
            DAY * 10,
            DAY * 3,
        );
        let server = spawn(target, options).await;

        // Renewing within the idle timeout keeps the session until its absolute end.
        let a = sign_in(&server, ALICE).await;
        let mut credential = a.refresh.clone();
        for _ in 0..4 {
            clock.advance(DAY * 2);
            let renewed = post_session_route(&server, "/qrcode/refresh", Some(&credential)).await;
            let tokens = renewed.assert_json(200);
            let token = tokens["id_token"].as_str().unwrap();
            assert_eq!(me_bearer(&server, token).await, 200);
            let c = set_cookie(&renewed, &refresh_cookie_name(&server)).unwrap();
            // The cookie lives as long as the session has left.
            let max_age: u64 = c.attr("max-age").unwrap().parse().unwrap();
            assert!(max_age <= (DAY * 10).as_secs(), "{max_age}");
            credential = format!("{}={}", c.name, c.value);
        }
        // Day 8 → day 10: past the absolute lifetime, although never idle for long.
        clock.advance(DAY * 2);
        post_session_route(&server, "/qrcode/refresh", Some(&credential))
            .await
            .assert_error(400, "invalid_grant");

        // A session left alone past the idle timeout ends.
        let b = sign_in(&server, ALICE).await;
        clock.advance(DAY * 3 - Duration::from_secs(1));
        let devices_before = devices(&server, ALICE).await.assert_json(200);
        assert_eq!(devices_before["sessions"].as_array().unwrap().len(), 1);
        clock.advance(Duration::from_secs(2));
        post_session_route(&server, "/qrcode/refresh", Some(&b.refresh))
            .await
            .assert_error(400, "invalid_grant");
        assert_eq!(
            devices(&server, ALICE).await.assert_json(200)["sessions"],
            json!([])
        );
    }

    pub async fn bad_input_gets_documented_errors(target: Target) {
        let server = spawn(target, ServerOptions::default()).await;
        let name = refresh_cookie_name(&server);
        for cookie in [
            None,
            Some(format!("{name}=garbage")),
            Some(format!("{name}=.")),
            Some(format!("{name}={}.{}", "A".repeat(22), "B".repeat(43))),
        ] {
            let refused = post_session_route(&server, "/qrcode/refresh", cookie.as_deref()).await;
            refused.assert_error(400, "invalid_grant");
        }
        let garbage_token = Resp::send(
            qrauth_tests::client(Duration::from_secs(10))
                .post(server.url("/qrcode/logout"))
                .header(AUTHORIZATION, "Bearer not.a.token"),
        )
        .await;
        assert_eq!(garbage_token.status, 204);
        for body in [
            json!({}),
            json!({ "sessionId": "x", "all": true }),
            json!({ "all": false }),
        ] {
            revoke(&server, ALICE, body)
                .await
                .assert_error(400, "invalid_request");
        }
        for handle in ["garbage", "", &"A".repeat(22)] {
            revoke(&server, ALICE, json!({ "sessionId": handle }))
                .await
                .assert_error(404, "unknown_session");
        }
        let unknown_field =
            revoke(&server, ALICE, json!({ "sessionId": "x", "user": "bob" })).await;
        unknown_field.assert_error(400, "invalid_request");
        let wrong_method = Resp::send(
            qrauth_tests::client(Duration::from_secs(10)).get(server.url("/qrcode/logout")),
        )
        .await;
        wrong_method.assert_error(405, "method_not_allowed");
    }
}

/// Revoked on replica A (axum), refused on replica B (actix-web) within a second: both on one
/// `redis-server`, B having accepted the token before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_other_replica_within_a_second() {
    revocation_reaches_the_other_replica_within_a_second_on(false).await;
}

/// The same on a 3-primary Redis Cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_the_other_replica_within_a_second_on_a_cluster() {
    revocation_reaches_the_other_replica_within_a_second_on(true).await;
}

async fn revocation_reaches_the_other_replica_within_a_second_on(cluster: bool) {
    bounded("cross-replica revocation", async {
        let redis = qrauth_tests::RedisBackend::start(cluster).await;
        let key = qrauth_tests::fresh_signing_key();
        let options = match &redis {
            qrauth_tests::RedisBackend::Single(server) => {
                ServerOptions::default().redis(server.url())
            }
            qrauth_tests::RedisBackend::Cluster(nodes) => {
                ServerOptions::default().redis_cluster(nodes.urls())
            }
        };
        let options = options.signing_key(key).issuer("http://qrauth.test");
        let a = spawn(ServerKind::Axum, options.clone()).await;
        let b = spawn(ServerKind::Actix, options).await;
        let signed_in = sign_in(&a, ALICE).await;
        // B has seen the session alive, so its answer comes from its local view.
        for _ in 0..3 {
            assert_eq!(me_bearer(&b, &signed_in.id_token).await, 200);
        }
        let out = post_session_route(&a, "/qrcode/logout", Some(&signed_in.session_cookie)).await;
        assert_eq!(out.status, 204);
        let revoked_at = Instant::now();
        loop {
            let status = me_bearer(&b, &signed_in.id_token).await;
            if status == 401 {
                break;
            }
            assert_eq!(status, 200);
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "replica B still accepts the token 1 s after the sign-out"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // And a renewal on B with the dead session's credential fails as well.
        post_session_route(&b, "/qrcode/refresh", Some(&signed_in.refresh))
            .await
            .assert_error(400, "invalid_grant");
    })
    .await;
}

/// With Redis down, a token is never accepted because the store could not be asked: 503
/// `store_unavailable` (fail closed), and a token revoked before the outage stays refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_fails_closed() {
    bounded("store down", async {
        let mut server = spawn(
            Target::redis(ServerKind::Axum),
            ServerOptions::default().redis_timeout(Duration::from_millis(500)),
        )
        .await;
        let revoked = sign_in(&server, ALICE).await;
        let fresh = sign_in(&server, ALICE).await;
        assert_eq!(me_bearer(&server, &revoked.id_token).await, 200);
        let sid = jwt_payload(&revoked.id_token)["sid"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            server
                .service
                .revoke_session(&qrauth_core::SessionId::parse(&sid).unwrap())
                .await
                .unwrap()
        );
        let redis = server.redis.as_mut().expect("own redis-server");
        tokio::task::block_in_place(|| redis.stop());

        let unknown = Resp::send(
            qrauth_tests::client(Duration::from_secs(10))
                .get(server.url("/api/me"))
                .header(AUTHORIZATION, format!("Bearer {}", fresh.id_token)),
        )
        .await;
        unknown.assert_error(503, "store_unavailable");
        assert_eq!(me_bearer(&server, &revoked.id_token).await, 401);
        post_session_route(&server, "/qrcode/refresh", Some(&fresh.refresh))
            .await
            .assert_error(503, "store_unavailable");
    })
    .await;
}
