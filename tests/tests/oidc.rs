//! The device-grant provider (`qrauth-oidc`) through both adapters against a real OpenID
//! Provider: panva's `oidc-provider` (npm, pinned in `tests/oidc-provider`) with the device
//! flow, on loopback. The phone is an HTTP client on the OP's own pages. Nothing of qrauth or
//! the OP is mocked; the OP's test controls only count requests, rotate its key, advertise a
//! short `interval`, drop `verification_uri_complete` or answer `slow_down`.
//!
//! The OP advertises `interval: 1` in these tests (a real OP's setting, RFC 8628 §3.2) so that a
//! login takes about a second, not five.

mod oidc_support;

use std::sync::Arc;
use std::time::Duration;

use oidc_support::*;
use qrauth_core::store::{MemoryStore, RedisStore};
use qrauth_core::{ManualClock, QrAuthProvider};
use qrauth_oidc::{ClientAuth, DeviceGrantProvider};
use qrauth_test_support::oidc_provider::CONFIDENTIAL_CLIENT;
use qrauth_test_support::oidc_provider::{CONFIDENTIAL_SECRET, OpOptions, PUBLIC_CLIENT};
use qrauth_test_support::{DevicePhone, Framework as Kind, OidcProvider, RedisServer};
use serde_json::{Value, json};

/// The whole login: QR, the phone approves at the OP, the bound browser's ticket, the
/// exchange, `/api/me` with the session cookie and with the IdP's id_token.
async fn full_login(kind: Kind) {
    let env = Env::new(kind).await;
    let mut browser = Browser::default();
    let (id, content, user_code) = env.qr(&mut browser, 0).await;
    // The QR opens the OP's page with the code in it; the page shows the same code.
    assert!(
        content.starts_with(&format!("{}/device?user_code=", env.op.issuer())),
        "{content}"
    );
    assert!(content.ends_with(&user_code), "{content} / {user_code}");
    let pending = env.status(&browser, 0, &id, None).await.ok(200);
    assert_eq!(pending["status"], "pending");

    // Another browser that only knows the id learns nothing.
    env.status(&Browser::default(), 0, &id, None)
        .await
        .error(403, "not_bound");

    let title = DevicePhone::new()
        .approve(&content, &user_code, "alice")
        .await;
    assert!(title.contains("Success"), "{title}");
    let approved = std::time::Instant::now();
    let confirmed = env.wait_for(&browser, 0, &id, "confirmed").await;
    eprintln!(
        "{kind:?}: approved at the OP → confirmed in the browser: {} ms (interval 1 s)",
        approved.elapsed().as_millis()
    );
    let ticket = confirmed["ticket"].as_str().expect("ticket").to_owned();
    let before_exchange = env.seen.lock().expect("seen").clone();

    let tokens = env.exchange(&browser, 0, &ticket).await;
    let body = tokens.ok(200);
    let access_token = body["access_token"].as_str().expect("access_token");
    let id_token = body["id_token"].as_str().expect("id_token").to_owned();
    assert!(body["expires_in"].as_u64().is_some_and(|s| s > 0), "{body}");
    let claims = env
        .app(0)
        .provider
        .verify(&id_token)
        .await
        .expect("verifies");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.iss, env.op.issuer());
    // The IdP's tokens reached the browser only with the exchange; no device code ever did.
    for seen in &before_exchange {
        assert!(
            !seen.contains(access_token) && !seen.contains(&id_token),
            "{seen}"
        );
        assert!(!seen.contains("device_code"), "{seen}");
    }

    let session = tokens
        .cookie(&env.app(0).service.cookies().session_name())
        .expect("session cookie");
    let me = env.me(0, Some(&session), None).await.ok(200);
    assert_eq!(me["sub"], "alice");
    let me = env.me(0, None, Some(&id_token)).await.ok(200);
    assert_eq!(me["sub"], "alice");

    // Single use.
    env.exchange(&browser, 0, &ticket)
        .await
        .error(400, "invalid_ticket");
    let counts = env.op.counts().await;
    eprintln!("one tab, {kind:?}: requests at the OP per login: {counts:?}");
    assert_eq!(counts.get("/device/auth"), Some(&1));
    // One poll per second: about as many as the login took seconds, never two loops' worth.
    let polls = counts.get("/token").copied().unwrap_or(0);
    assert!((1..=12).contains(&polls), "{counts:?}");
}

async fn deny(kind: Kind) {
    let env = Env::new(kind).await;
    let mut browser = Browser::default();
    let (id, content, user_code) = env.qr(&mut browser, 0).await;
    DevicePhone::new().deny(&content, &user_code).await;
    let cancelled = env.wait_for(&browser, 0, &id, "cancelled").await;
    assert!(cancelled["ticket"].is_null(), "{cancelled}");
}

async fn code_expires(kind: Kind) {
    // The provider's clock stands still, so the expiry is the OP's `expired_token`, not
    // qrauth's own count of `expires_in`.
    let clock = ManualClock::starting_now();
    let env = Env::with(
        kind,
        OpOptions {
            device_ttl_secs: Some(2),
            ..OpOptions::default()
        },
        |b| b.clock(Arc::new(clock.clone())),
    )
    .await;
    let mut browser = Browser::default();
    let (id, _content, _code) = env.qr(&mut browser, 0).await;
    env.wait_for_error(&browser, 0, &id, 410, "expired_qrcode")
        .await;
    // Pending for two seconds, then the OP's `expired_token`.
    assert!(env.op.count("/token").await >= 2);
}

async fn parallel_exchanges(kind: Kind) {
    let env = Env::new(kind).await;
    let mut browser = Browser::default();
    let (id, content, user_code) = env.qr(&mut browser, 0).await;
    DevicePhone::new()
        .approve(&content, &user_code, "bob")
        .await;
    let ticket = env.wait_for(&browser, 0, &id, "confirmed").await["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let polls = env.op.count("/token").await;
    let env = Arc::new(env);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (env, browser, ticket) = (env.clone(), browser.clone(), ticket.clone());
        tasks.push(tokio::spawn(async move {
            let r = env.exchange(&browser, 0, &ticket).await;
            (r.status, r.text)
        }));
    }
    let mut token_sets = Vec::new();
    for task in tasks {
        let (status, text) = task.await.expect("exchange task");
        match status {
            200 => token_sets.push(text),
            400 => assert!(text.contains("invalid_ticket"), "{text}"),
            other => panic!("exchange answered {other}: {text}"),
        }
    }
    assert_eq!(token_sets.len(), 1, "exactly one exchange wins");
    let body: Value = serde_json::from_str(&token_sets[0]).expect("JSON");
    let claims = env
        .app(0)
        .provider
        .verify(body["id_token"].as_str().expect("id_token"))
        .await;
    assert_eq!(claims.expect("verifies").sub, "bob");
    // The exchange never calls the OP: the tokens came with the poll.
    assert_eq!(env.op.count("/token").await, polls);
}

async fn without_verification_uri_complete(kind: Kind) {
    let env = Env::new(kind).await;
    env.op.configure(json!({ "omitComplete": true })).await;
    let mut browser = Browser::default();
    let (id, content, user_code) = env.qr(&mut browser, 0).await;
    assert_eq!(content, format!("{}/device", env.op.issuer()));
    assert!(!content.contains(&user_code));
    DevicePhone::new()
        .approve(&content, &user_code, "carol")
        .await;
    let ticket = env.wait_for(&browser, 0, &id, "confirmed").await["ticket"]
        .as_str()
        .expect("ticket")
        .to_owned();
    let body = env.exchange(&browser, 0, &ticket).await.ok(200);
    let claims = env
        .app(0)
        .provider
        .verify(body["id_token"].as_str().expect("id_token"))
        .await;
    assert_eq!(claims.expect("verifies").sub, "carol");
}

macro_rules! both_adapters {
    ($($name:ident),* $(,)?) => {
        mod axum_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::bounded(super::$name(super::Kind::Axum)).await })*
        }
        mod actix_adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::bounded(super::$name(super::Kind::Actix)).await })*
        }
    };
}

both_adapters!(
    full_login,
    deny,
    code_expires,
    parallel_exchanges,
    without_verification_uri_complete
);

/// A public client (`none`) and `client_secret_post` log in as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_client_and_client_secret_post() {
    bounded(async {
        for (client, auth) in [
            (PUBLIC_CLIENT, None),
            (CONFIDENTIAL_CLIENT, Some(ClientAuth::ClientSecretPost)),
        ] {
            let op = OidcProvider::start();
            op.advertise_interval(1).await;
            let mut b = DeviceGrantProvider::builder(op.issuer(), client);
            if let Some(auth) = auth {
                b = b.client_secret(CONFIDENTIAL_SECRET).client_auth(auth);
            }
            let app = app(
                Kind::Axum,
                b.build().expect("provider"),
                Arc::new(MemoryStore::new()),
            )
            .await;
            let env = Env::of(op, vec![app]);
            let mut browser = Browser::default();
            let (id, content, code) = env.qr(&mut browser, 0).await;
            DevicePhone::new().approve(&content, &code, "dave").await;
            let ticket = env.wait_for(&browser, 0, &id, "confirmed").await["ticket"]
                .as_str()
                .expect("ticket")
                .to_owned();
            let body = env.exchange(&browser, 0, &ticket).await.ok(200);
            let claims = env
                .app(0)
                .provider
                .verify(body["id_token"].as_str().expect("id_token"))
                .await;
            assert_eq!(claims.expect("verifies").sub, "dave", "{client}");
        }
    })
    .await;
}

/// Three tabs of one browser on two replicas (axum and actix-web) sharing a Redis: one poll
/// loop at the OP (never two polls within one interval), and the login completes (a second
/// poller would have revoked the tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tabs_two_replicas_poll_once() {
    bounded(async {
        let redis = RedisServer::start();
        let op = OidcProvider::start();
        op.advertise_interval(1).await;
        let mut apps = Vec::new();
        for kind in [Kind::Axum, Kind::Actix] {
            let store = RedisStore::builder(redis.url())
                .key_prefix("qrauth-oidc-test:")
                .connect()
                .await
                .expect("redis");
            apps.push(
                app(
                    kind,
                    builder(&op).build().expect("provider"),
                    Arc::new(store),
                )
                .await,
            );
        }
        let env = Arc::new(Env::of(op, apps));
        let mut browser = Browser::default();
        let (id, content, user_code) = env.qr(&mut browser, 0).await;
        // Tab 1 on replica 0, tabs 2 and 3 on replica 1, all long-polling.
        let mut tabs = Vec::new();
        for replica in [0, 1, 1] {
            let (env, browser, id) = (env.clone(), browser.clone(), id.clone());
            tabs.push(tokio::spawn(async move {
                env.wait_for(&browser, replica, &id, "confirmed").await
            }));
        }
        // Both replicas run a loop now; let them compete for a few intervals.
        tokio::time::sleep(Duration::from_secs(4)).await;
        DevicePhone::new()
            .approve(&content, &user_code, "erin")
            .await;
        let mut tickets = Vec::new();
        for tab in tabs {
            let confirmed = tab.await.expect("tab");
            tickets.push(confirmed["ticket"].as_str().expect("ticket").to_owned());
        }
        assert!(tickets.windows(2).all(|w| w[0] == w[1]), "{tickets:?}");
        let body = env.exchange(&browser, 1, &tickets[0]).await.ok(200);
        let id_token = body["id_token"].as_str().expect("id_token");
        assert_eq!(
            env.app(0)
                .provider
                .verify(id_token)
                .await
                .expect("verifies")
                .sub,
            "erin"
        );
        let times = env.op.token_times().await;
        let counts = env.op.counts().await;
        eprintln!("three tabs, two replicas: requests at the OP per login: {counts:?}");
        let gaps: Vec<u64> = times
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        // One loop at `interval: 1`: polls at least ~a second apart (a little scheduling slack).
        assert!(
            gaps.iter().all(|&g| g >= 800),
            "polls too close, two loops? gaps {gaps:?}"
        );
        assert!(times.len() >= 4 && times.len() <= 12, "{times:?}");
        assert_eq!(counts.get("/device/auth"), Some(&1));
    })
    .await;
}

/// The OP answers `slow_down`: the next poll comes 5 s later than the interval, and so do all
/// later ones (RFC 8628 §3.5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_down_adds_five_seconds() {
    bounded(async {
        let env = Env::new(Kind::Axum).await;
        env.op.configure(json!({ "slowDown": 1 })).await;
        let mut browser = Browser::default();
        let (id, content, user_code) = env.qr(&mut browser, 0).await;
        // The first poll (at once) got `slow_down`; approve before the next one.
        DevicePhone::new()
            .approve(&content, &user_code, "frank")
            .await;
        env.wait_for(&browser, 0, &id, "confirmed").await;
        let times = env.op.token_times().await;
        assert!(times.len() >= 2, "{times:?}");
        let gap = times[1] - times[0];
        assert!(
            gap >= 5_900,
            "interval 1 s + 5 s after slow_down; got {gap} ms"
        );
    })
    .await;
}

/// The OP rotates its signing key: the next login's id_token (new `kid`) verifies after one
/// JWKS refetch, and the earlier one (old key, still published) still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_at_the_op() {
    bounded(async {
        let clock = ManualClock::starting_now();
        let env = Env::with(Kind::Axum, OpOptions::default(), |b| {
            b.clock(Arc::new(clock.clone()))
        })
        .await;
        let mut tokens = Vec::new();
        for round in 0..2 {
            if round == 1 {
                env.op.rotate_keys().await;
                // Past the verifier's 30 s refetch throttle, on the injected clock.
                clock.advance(Duration::from_secs(31));
            }
            let mut browser = Browser::default();
            let (id, content, code) = env.qr(&mut browser, 0).await;
            DevicePhone::new().approve(&content, &code, "grace").await;
            let ticket = env.wait_for(&browser, 0, &id, "confirmed").await["ticket"]
                .as_str()
                .expect("ticket")
                .to_owned();
            let body = env.exchange(&browser, 0, &ticket).await.ok(200);
            tokens.push(body["id_token"].as_str().expect("id_token").to_owned());
        }
        let kid = |t: &str| qrauth_tests::jwt_header(t)["kid"].clone();
        assert_ne!(
            kid(&tokens[0]),
            kid(&tokens[1]),
            "the OP signs with the new key"
        );
        for t in &tokens {
            assert_eq!(
                env.app(0).provider.verify(t).await.expect("verifies").sub,
                "grace"
            );
        }
        assert!(
            env.op.count("/jwks").await >= 2,
            "the JWKS was fetched again"
        );
    })
    .await;
}

/// Past the device code's `expires_in` (on the provider's clock) the session is expired without
/// asking the OP again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_expires_in_no_more_polls() {
    bounded(async {
        let clock = ManualClock::starting_now();
        let env = Env::with(Kind::Axum, OpOptions::default(), |b| {
            b.clock(Arc::new(clock.clone()))
        })
        .await;
        let mut browser = Browser::default();
        let (id, _content, _code) = env.qr(&mut browser, 0).await;
        env.wait_for(&browser, 0, &id, "pending").await;
        // The OP said 600 s.
        clock.advance(Duration::from_secs(601));
        let polls = env.op.count("/token").await;
        env.wait_for_error(&browser, 0, &id, 410, "expired_qrcode")
            .await;
        // At most one poll was already under way.
        assert!(env.op.count("/token").await <= polls + 1);
    })
    .await;
}

/// Three tabs of one browser on one replica: one poll loop at the OP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_tabs_one_replica_poll_once() {
    bounded(async {
        let env = Arc::new(Env::new(Kind::Actix).await);
        let mut browser = Browser::default();
        let (id, content, user_code) = env.qr(&mut browser, 0).await;
        let mut tabs = Vec::new();
        for _ in 0..3 {
            let (env, browser, id) = (env.clone(), browser.clone(), id.clone());
            tabs.push(tokio::spawn(async move {
                env.wait_for(&browser, 0, &id, "confirmed").await
            }));
        }
        tokio::time::sleep(Duration::from_secs(4)).await;
        DevicePhone::new()
            .approve(&content, &user_code, "ivan")
            .await;
        for tab in tabs {
            assert!(tab.await.expect("tab")["ticket"].is_string());
        }
        let times = env.op.token_times().await;
        let counts = env.op.counts().await;
        eprintln!("three tabs, one replica: requests at the OP per login: {counts:?}");
        let gaps: Vec<u64> = times
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect();
        assert!(gaps.iter().all(|&g| g >= 800), "polls too close: {gaps:?}");
        assert_eq!(counts.get("/device/auth"), Some(&1));
    })
    .await;
}
