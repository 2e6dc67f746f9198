//! Two replicas on one real Redis: replica A is the axum demo, replica B the actix-web demo,
//! both with a `RedisStore` and a `RedisRateLimiter` on the same `redis-server` (started by the
//! test on a free loopback port; a missing binary fails with the install command).
//!
//! Requirements 34–37 of `reference/qr-login-security.md` §7 at the HTTP level, and the abuse
//! limits holding across replicas.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use qrauth_tests::{
    Browser, RedisBackend, RedisServer, Resp, ServerKind, ServerOptions, SseReader, TestServer,
    assert_status_shape, version,
};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::Value;

/// Both replicas sign and verify as this issuer (a load balancer's public URL).
const ISSUER: &str = "https://login.example.com";
/// No test may take longer than this.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// Confirm on A → the browser on B has its answer (issue 8's bound).
const CROSS_REPLICA_BOUND: Duration = Duration::from_millis(250);

struct Replicas<R = RedisServer> {
    a: TestServer,
    b: TestServer,
    redis: R,
}

async fn replicas(options: ServerOptions) -> Replicas {
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("redis-server start");
    let options = options.redis(redis.url()).issuer(ISSUER);
    let a = qrauth_tests::spawn(ServerKind::Axum, options.clone()).await;
    let b = qrauth_tests::spawn(ServerKind::Actix, options).await;
    Replicas { a, b, redis }
}

/// Replicas on one Redis or on a 3-primary Redis Cluster, for the tests run on both.
async fn replicas_on(cluster: bool, options: ServerOptions) -> Replicas<RedisBackend> {
    let redis = RedisBackend::start(cluster).await;
    let options = match &redis {
        RedisBackend::Single(server) => options.redis(server.url()),
        RedisBackend::Cluster(nodes) => options.redis_cluster(nodes.urls()),
    }
    .issuer(ISSUER);
    let a = qrauth_tests::spawn(ServerKind::Axum, options.clone()).await;
    let b = qrauth_tests::spawn(ServerKind::Actix, options).await;
    Replicas { a, b, redis }
}

async fn bounded(name: &str, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("{name} did not finish within {TEST_DEADLINE:?}");
    }
}

async fn redis_connection(redis: &RedisServer) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).expect("redis url");
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("connect in time")
    .expect("connect to redis-server")
}

/// A browser on B with a pending QR, the phone having scanned it on A; returns the browser,
/// the id, the confirm token and the scanned version.
async fn scanned_on_a_watched_from_b<R>(r: &Replicas<R>) -> (Browser, String, String, u64) {
    let mut browser = r.b.browser();
    let qr = browser.generate().await;
    let (token, _) = r.a.alice().scan_ok(&qr.id).await;
    let body = browser.bound_status(&qr.id).await;
    assert_eq!(body["status"], "scanned", "B sees A's scan: {body}");
    (browser, qr.id, token, version(&body))
}

/// Time from the phone's confirm (answered on A) to B's answer, per transport.
async fn confirm_to_answer<R>(r: &Replicas<R>, sse: bool) -> Duration {
    let (browser, id, token, v) = scanned_on_a_watched_from_b(r).await;
    let waiter = {
        let id = id.clone();
        tokio::spawn(async move {
            if sse {
                let response = browser.events(&id, Some(v)).await;
                assert_eq!(response.status().as_u16(), 200);
                let mut events = SseReader::new(response);
                let event = events.next_data().await.expect("an event after confirm");
                let data: Value =
                    serde_json::from_str(event.data.as_deref().unwrap_or_default()).expect("JSON");
                (data, Instant::now())
            } else {
                let query = format!("qrcodeId={id}&wait=10&since={v}");
                let body = browser.status_query(&query).await.assert_json(200);
                (body, Instant::now())
            }
        })
    };
    // Let the waiter reach B and park before the phone acts on A.
    tokio::time::sleep(Duration::from_millis(200)).await;
    r.a.alice().confirm(&id, &token).await.assert_json(200);
    let confirmed_at = Instant::now();
    let (body, answered_at) = waiter.await.expect("waiter task");
    assert_status_shape(&body);
    assert_eq!(body["status"], "confirmed", "{body}");
    assert!(
        body["ticket"].is_string(),
        "the bound browser gets its ticket: {body}"
    );
    answered_at.saturating_duration_since(confirmed_at)
}

/// 36: a wait on one replica wakes when the phone acts on another.
async fn long_poll_and_sse_on_b_answer_when_the_phone_confirms_on_a(cluster: bool) {
    bounded("cross-replica wake-up", async {
        let r = replicas_on(cluster, ServerOptions::default()).await;
        for sse in [false, true] {
            let mut lags = Vec::new();
            for _ in 0..5 {
                lags.push(confirm_to_answer(&r, sse).await);
            }
            lags.sort();
            let worst = lags[lags.len() - 1];
            eprintln!("sse={sse}: confirm on A → answer on B {lags:?}");
            assert!(
                worst <= CROSS_REPLICA_BOUND,
                "sse={sse}: B answered {worst:?} after the confirm on A ({lags:?})"
            );
        }
    })
    .await;
}

/// 34: 50 concurrent exchanges of one ticket, spread over both replicas → exactly one 200.
async fn one_ticket_exchanged_fifty_times_on_two_replicas_wins_once(cluster: bool) {
    bounded("ticket race", async {
        let r = replicas_on(cluster, ServerOptions::default()).await;
        let mut browser = r.a.browser();
        let qr = browser.generate().await;
        r.b.alice().scan_and_confirm(&qr.id).await;
        let status = browser.on(&r.b).bound_status(&qr.id).await;
        let ticket = status["ticket"].as_str().expect("ticket").to_owned();

        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let replica = if i % 2 == 0 { &r.a } else { &r.b };
                let browser = browser.on(replica);
                let ticket = ticket.clone();
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    browser.exchange(&ticket).await
                })
            })
            .collect();
        let mut ok = Vec::new();
        let mut refused = 0;
        for task in tasks {
            let response: Resp = task.await.expect("exchange task");
            match response.status {
                200 => ok.push(response.assert_json(200)),
                _ => {
                    response.assert_error(400, "invalid_ticket");
                    refused += 1;
                }
            }
        }
        assert_eq!(ok.len(), 1, "exactly one exchange wins");
        assert_eq!(refused, 49);
        assert!(ok[0]["id_token"].is_string());
        // Either replica verifies the winner's id_token.
        for replica in [&r.a, &r.b] {
            let me = Resp::send(
                qrauth_tests::client(Duration::from_secs(10))
                    .get(replica.url("/api/me"))
                    .bearer_auth(ok[0]["id_token"].as_str().unwrap_or_default()),
            )
            .await;
            assert_eq!(me.status, 200, "{}: {}", replica.base, me.text());
        }
    })
    .await;
}

/// 35: confirms on A racing cancels on B for the same session → exactly one winner, and the
/// final state is the winner's.
async fn confirm_on_a_races_cancel_on_b_one_winner(cluster: bool) {
    bounded("confirm vs cancel", async {
        let r = replicas_on(cluster, ServerOptions::default()).await;
        let mut confirms_won = 0;
        let mut cancels_won = 0;
        for round in 0..10 {
            let (browser, id, token, _) = scanned_on_a_watched_from_b(&r).await;
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(10));
            let tasks: Vec<_> = (0..10)
                .map(|i| {
                    let (phone, confirm) = if i % 2 == 0 {
                        (r.a.alice(), true)
                    } else {
                        (r.b.alice(), false)
                    };
                    let (id, token, barrier) = (id.clone(), token.clone(), barrier.clone());
                    tokio::spawn(async move {
                        barrier.wait().await;
                        let response = if confirm {
                            phone.confirm(&id, &token).await
                        } else {
                            phone.cancel(&id, &token).await
                        };
                        (confirm, response)
                    })
                })
                .collect();
            let mut winners = Vec::new();
            for task in tasks {
                let (confirm, response) = task.await.expect("phone task");
                if response.status == 200 {
                    winners.push(confirm);
                } else {
                    assert_eq!(response.status, 409, "round {round}: {}", response.text());
                }
            }
            assert_eq!(
                winners.len(),
                1,
                "round {round}: one winner, got {winners:?}"
            );
            let body = browser.bound_status(&id).await;
            if winners[0] {
                confirms_won += 1;
                assert_eq!(body["status"], "confirmed", "round {round}: {body}");
            } else {
                cancels_won += 1;
                assert_eq!(body["status"], "cancelled", "round {round}: {body}");
            }
        }
        eprintln!("confirm won {confirms_won}, cancel won {cancels_won}");
    })
    .await;
}

/// 36: the subscriber connection of B is killed while B's browser waits; the wait still ends
/// with the right state before its deadline (waiters fall back to re-reading, then resubscribe).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_subscriber_still_gives_the_final_state_by_the_deadline() {
    bounded("killed subscriber", async {
        let r = replicas(ServerOptions::default()).await;
        let mut admin = redis_connection(&r.redis).await;
        for sse in [false, true] {
            let (browser, id, token, v) = scanned_on_a_watched_from_b(&r).await;
            let waiter = {
                let id = id.clone();
                tokio::spawn(async move {
                    if sse {
                        let response = browser.events(&id, Some(v)).await;
                        let mut events = SseReader::new(response);
                        let event = events.next_data().await.expect("an event");
                        serde_json::from_str::<Value>(event.data.as_deref().unwrap_or_default())
                            .expect("JSON")
                    } else {
                        let query = format!("qrcodeId={id}&wait=8&since={v}");
                        browser.status_query(&query).await.assert_json(200)
                    }
                })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("TYPE")
                .arg("pubsub")
                .query_async(&mut admin)
                .await
                .expect("CLIENT KILL");
            assert!(killed >= 2, "both replicas' subscribers killed ({killed})");
            r.a.alice().confirm(&id, &token).await.assert_json(200);
            let started = Instant::now();
            let body = waiter.await.expect("waiter");
            assert_eq!(body["status"], "confirmed", "sse={sse}: {body}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "sse={sse}: answered {:?} after the confirm",
                started.elapsed()
            );
        }
    })
    .await;
}

/// Every `/qrcode*` route that touches sessions or counters, as the browser or the phone
/// would call it.
async fn every_stateful_route(server: &TestServer, id: &str, token: &str, browser: &Browser) {
    let phone = server.alice();
    let answers: Vec<(&str, Resp)> = vec![
        (
            "POST /qrcode",
            Resp::send(browser.request(Method::POST, "/qrcode")).await,
        ),
        ("GET /qrcode/status", browser.status(id).await),
        (
            "GET /qrcode/status (long-poll)",
            browser
                .status_query(&format!("qrcodeId={id}&wait=5&since=1"))
                .await,
        ),
        (
            "GET /qrcode/events",
            Resp::send(browser.request(Method::GET, &format!("/qrcode/events?qrcodeId={id}")))
                .await,
        ),
        (
            "POST /qrcode/exchange",
            browser.exchange(&"A".repeat(43)).await,
        ),
        ("POST /qrcode/scan", phone.scan(id).await),
        ("POST /qrcode/confirm", phone.confirm(id, token).await),
        ("POST /qrcode/cancel", phone.cancel(id, token).await),
    ];
    for (route, response) in answers {
        let body = response.assert_error(503, "store_unavailable");
        let retry = response.header("retry-after").unwrap_or_default();
        assert!(
            retry.parse::<u64>().is_ok_and(|s| s >= 1),
            "{} {route}: Retry-After {retry:?}, body {body}",
            server.base
        );
    }
}

/// 37: Redis stops mid-flow → every stateful route on both replicas answers 503
/// `store_unavailable` with `Retry-After` and a JSON body (never a panic, never memory);
/// Redis back → new flows work without restarting either app.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_503_everywhere_and_recovers_by_itself() {
    bounded("redis down", async {
        let options = ServerOptions::default().redis_timeout(Duration::from_millis(500));
        let mut r = replicas(options).await;
        let mut browser = r.a.browser();
        let qr = browser.generate().await;
        let (token, _) = r.b.alice().scan_ok(&qr.id).await;

        tokio::task::block_in_place(|| r.redis.stop());
        for server in [&r.a, &r.b] {
            every_stateful_route(server, &qr.id, &token, &browser.on(server)).await;
            // What does not need the store still works.
            let widget =
                Resp::send(browser.on(server).request(Method::GET, "/qrcode/widget.js")).await;
            assert_eq!(widget.status, 200);
        }

        tokio::task::block_in_place(|| r.redis.restart());
        // The data is gone with the old server (no persistence), so the old QR is unknown;
        // new flows work on both replicas once the connections are re-established.
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut fresh = r.b.browser();
        let qr = loop {
            let response = Resp::send(fresh.request(Method::POST, "/qrcode")).await;
            if response.status == 201 {
                break fresh.accept_qr(response);
            }
            response.assert_error(503, "store_unavailable");
            assert!(Instant::now() < deadline, "no recovery within 15 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (_, _, token, _) = {
            let (token, _) = loop {
                let response = r.a.alice().scan(&qr.id).await;
                if response.status == 200 {
                    let body = response.assert_json(200);
                    break (
                        body["confirmToken"].as_str().unwrap_or_default().to_owned(),
                        body,
                    );
                }
                response.assert_error(503, "store_unavailable");
                assert!(
                    Instant::now() < deadline,
                    "replica A did not recover within 15 s"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            ((), (), token, ())
        };
        r.a.alice().confirm(&qr.id, &token).await.assert_json(200);
        let status = fresh.on(&r.a).bound_status(&qr.id).await;
        let ticket = status["ticket"].as_str().expect("ticket");
        let tokens = fresh.exchange(ticket).await.assert_json(200);
        assert!(tokens["id_token"].is_string());
    })
    .await;
}

/// 34/37: after full flows through both replicas, no key or value in Redis holds a binding
/// secret, a confirm token, a ticket or a token; and with a 2 s QR lifetime every session key
/// is gone 5 s after the lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_secret_and_forgets_sessions() {
    bounded("no secrets, keys expire", async {
        let options = ServerOptions::default()
            .qr_lifetime(Duration::from_secs(2))
            .ticket_lifetime(Duration::from_secs(1))
            .retention_grace(Duration::from_secs(1));
        let r = replicas(options).await;
        let mut secrets = Vec::new();
        for _ in 0..3 {
            let mut browser = r.a.browser();
            let qr = browser.generate().await;
            let (token, _) = r.b.alice().scan_ok(&qr.id).await;
            r.a.alice().confirm(&qr.id, &token).await.assert_json(200);
            let status = browser.on(&r.b).bound_status(&qr.id).await;
            let ticket = status["ticket"].as_str().expect("ticket").to_owned();
            let exchanged = browser.on(&r.b).exchange(&ticket).await;
            let tokens = exchanged.assert_json(200);
            let refresh = exchanged
                .set_cookie(&r.b.service.cookies().refresh_name())
                .expect("refresh cookie");
            let (_, refresh_secret) = refresh.value.split_once('.').expect("sid.secret");
            secrets.push(refresh_secret.to_owned());
            secrets.push(browser.binding.clone().expect("binding cookie"));
            secrets.push(token);
            secrets.push(ticket);
            for name in ["id_token", "access_token"] {
                secrets.push(tokens[name].as_str().unwrap_or_default().to_owned());
            }
        }
        // A pending one too (its binding secret).
        let mut pending = r.b.browser();
        pending.generate().await;
        secrets.push(pending.binding.clone().expect("binding cookie"));
        assert!(secrets.iter().all(|s| s.len() >= 20), "{secrets:?}");

        let mut conn = redis_connection(&r.redis).await;
        let keys: Vec<String> = conn.keys("*").await.expect("KEYS");
        assert!(
            keys.iter().any(|k| k.starts_with("qrauth-test:s:")),
            "{keys:?}"
        );
        let mut dump = String::new();
        for key in &keys {
            dump.push_str(key);
            dump.push('\n');
            let kind: String = redis::cmd("TYPE")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("TYPE");
            match kind.as_str() {
                "hash" => {
                    let fields: Vec<(Vec<u8>, Vec<u8>)> = conn.hgetall(key).await.expect("HGETALL");
                    for (f, v) in fields {
                        dump.push_str(&String::from_utf8_lossy(&f));
                        dump.push_str(&String::from_utf8_lossy(&v));
                    }
                }
                "string" => {
                    let v: Vec<u8> = conn.get(key).await.expect("GET");
                    dump.push_str(&String::from_utf8_lossy(&v));
                }
                "zset" => {
                    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                        .arg(key)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut conn)
                        .await
                        .expect("ZRANGE");
                    for m in members {
                        dump.push_str(&String::from_utf8_lossy(&m));
                    }
                }
                other => panic!("unexpected key type {other} for {key}"),
            }
        }
        for secret in &secrets {
            assert!(
                !dump.contains(secret.as_str()),
                "a secret is stored in Redis"
            );
        }

        // 2 s lifetime (+ 1 s ticket + 1 s retention) + 5 s: no QR session or ticket key is left
        // (rate-limit counters live a minute, signed-in sessions and their index 30 days, by
        // design).
        tokio::time::sleep(Duration::from_secs(7)).await;
        let keys: Vec<String> = conn.keys("*").await.expect("KEYS");
        let left: HashSet<&String> = keys
            .iter()
            .filter(|k| {
                !["qrauth-test:rl:", "qrauth-test:si:", "qrauth-test:su:"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .collect();
        assert!(left.is_empty(), "keys left behind: {left:?}");
    })
    .await;
}

/// Abuse limits hold across replicas (issue 10): the 21st `POST /qrcode` in a minute from one
/// IP is refused whichever replica gets it, and a poll on B 100 ms after a poll on A is
/// `429 slow_down`.
async fn limits_hold_across_replicas(cluster: bool) {
    bounded("shared limits", async {
        let limits = qrauth_core::Limits::default().sessions_per_binding(u32::MAX);
        let r = replicas_on(cluster, ServerOptions::default().limits(limits)).await;
        let mut ids = Vec::new();
        for i in 0..20 {
            let server = if i % 2 == 0 { &r.a } else { &r.b };
            let mut browser = server.browser();
            ids.push((browser.generate().await.id, browser));
        }
        for server in [&r.a, &r.b] {
            let response = Resp::send(server.browser().request(Method::POST, "/qrcode")).await;
            response.assert_error(429, "slow_down");
            let retry = response.header("retry-after").unwrap_or_default();
            assert!(
                retry.parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)),
                "{retry:?}"
            );
        }

        let (id, browser) = &ids[0];
        browser.on(&r.a).status(id).await.assert_json(200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = browser.on(&r.b).status(id).await;
        second.assert_error(429, "slow_down");
        assert!(second.header("retry-after").is_some());
    })
    .await;
}

/// The tests above that take `cluster`, on one Redis and on a 3-primary Redis Cluster.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod single {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(false).await
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(true).await
                }
            )*
        }
    };
}

on_both_backends!(
    long_poll_and_sse_on_b_answer_when_the_phone_confirms_on_a,
    one_ticket_exchanged_fifty_times_on_two_replicas_wins_once,
    confirm_on_a_races_cancel_on_b_one_winner,
    limits_hold_across_replicas,
);
