//! Issue 16 ("Hardening II"): what a hostile client tried, each as a named test run against
//! the axum demo and the actix-web demo, with sessions and limits in memory and in a real
//! Redis (`axum::…`, `actix::…`, `axum_redis::…`, `actix_redis::…`), and the ones about
//! shared state once more across two replicas on one Redis (`replicas::…`).
//!
//! The servers believe `X-Forwarded-For` from loopback (the test client's address), so that
//! one test process can play clients on several networks.

use std::net::IpAddr;
use std::time::Duration;

use qrauth_tests::{Browser, Phone, Resp, ServerKind, ServerOptions, Target, TestServer, spawn};
use reqwest::Method;

/// No test may take longer than this, whatever the server does.
const TEST_DEADLINE: Duration = Duration::from_secs(50);

async fn bounded(name: &str, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("{name} did not finish within {TEST_DEADLINE:?}");
    }
}

macro_rules! hardening_suite {
    ($kind:expr) => {
        hardening_suite!(@tests $kind;
            binding_planted_by_another_party_is_replaced,
            binding_minted_for_this_client_is_adopted,
            limit_poll_covers_long_polls_that_answer_at_once,
            limit_poll_fresh_binding_buys_no_budget,
            limit_phone_per_address_before_the_authenticator,
            limit_ipv6_clients_grouped_by_64,
            proxies_spoofed_forwarded_entry_never_wins,
            streams_capped_per_session_binding_and_address,
            nonce_longer_than_256_bytes_is_refused,
            cross_site_generate_is_refused,
            risk_from_another_network_makes_number_matching_mandatory,
            qr_rotates_and_the_replaced_one_no_longer_scans,
            qr_rotation_reaches_an_event_stream,
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
    hardening_suite!(qrauth_tests::Target::from(qrauth_tests::ServerKind::Axum));
}

mod actix {
    hardening_suite!(qrauth_tests::Target::from(qrauth_tests::ServerKind::Actix));
}

mod axum_redis {
    hardening_suite!(qrauth_tests::Target::redis(qrauth_tests::ServerKind::Axum));
}

mod actix_redis {
    hardening_suite!(qrauth_tests::Target::redis(qrauth_tests::ServerKind::Actix));
}

fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

/// Options of a server behind a "proxy" on loopback, with these limits.
fn behind_proxy(limits: qrauth_core::Limits) -> ServerOptions {
    ServerOptions::default()
        .limits(limits)
        .trusted_proxies([loopback()])
}

/// `POST /qrcode` from a client at `ip` (as the trusted proxy reports it).
async fn generate_from(browser: &Browser, ip: &str) -> Resp {
    Resp::send(
        browser
            .request(Method::POST, "/qrcode")
            .header("x-forwarded-for", ip),
    )
    .await
}

/// `POST /qrcode/scan` of `id` by `phone` from a client at `ip` (as the trusted proxy reports
/// it).
async fn scan_from(phone: Phone, id: String, ip: &str) -> Resp {
    Resp::send(
        phone
            .request("/qrcode/scan")
            .header("x-forwarded-for", ip)
            .json(&qrauth_test_support::screen::scan_body(&id)),
    )
    .await
}

/// A browser on `server` whose binding cookie holds `value`.
fn planted(server: &TestServer, value: &str) -> Browser {
    let mut browser = server.browser();
    browser.binding = Some(value.to_owned());
    browser
}

/// Waits until `server` holds `n` waiters (long-polls and streams parked in the store).
async fn until_waiters(server: &TestServer, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.service.live_waiters() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} waiters, expected {n}",
            server.service.live_waiters()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A long-poll (`wait=10`) from a client at `ip`, not yet awaited.
fn long_poll_from(browser: &Browser, id: &str, ip: &str) -> tokio::task::JoinHandle<Resp> {
    let request = browser
        .request(
            Method::GET,
            &format!("/qrcode/status?qrcodeId={id}&wait=10"),
        )
        .header("x-forwarded-for", ip);
    tokio::spawn(Resp::send(request))
}

/// The QR of a session created on `on` rotates on the shared `clock`: each status answer after
/// a rotation carries the new QR, a long-poll ends at the rotation, the binding and the session
/// stay the same; the replaced QR no longer scans (on `phone_on`) once its grace is over, and
/// the one on screen logs the same browser in.
async fn rotation_is_followed_and_enforced(
    on: &TestServer,
    phone_on: &TestServer,
    clock: &qrauth_core::ManualClock,
) {
    let mut browser = on.browser();
    let qr = browser.generate().await;
    let first = qr.body["qrcodeContent"]
        .as_str()
        .expect("content")
        .to_owned();
    let rotation = qr.body["rotation"].as_u64().expect("rotation");
    let rotates_at = qr.body["rotatesAt"].as_u64().expect("rotatesAt");
    let binding = browser.binding.clone();
    // Until the rotation the browser shows the QR on screen: nothing new to send.
    let body = browser.bound_status(&qr.id).await;
    assert_eq!(body["rotation"], rotation, "{body}");
    assert!(body.get("qrcodeContent").is_none(), "{body}");
    let version = body["version"].as_u64().expect("version");

    // A long-poll that waits (20 s) across the rotation ends with the new QR, well before its
    // wait is over. (If the clock moved before the server parked it, the server answers the
    // next one at once: the browser shows an old QR. Either way: the new QR, in seconds.)
    clock.set_millis(rotates_at - 1_000);
    let waiting_since = std::time::Instant::now();
    let query = format!(
        "qrcodeId={}&wait=20&since={version}&rotation={rotation}",
        qr.id
    );
    let poll = tokio::spawn({
        let browser = browser.clone();
        let query = query.clone();
        async move { browser.status_query(&query).await }
    });
    until_waiters(on, 1).await;
    clock.set_millis(rotates_at);
    let mut answer = poll.await.expect("long-poll").assert_json(200);
    if answer.get("qrcodeContent").is_none() {
        answer = browser.status_query(&query).await.assert_json(200);
    }
    assert!(
        waiting_since.elapsed() < Duration::from_secs(10),
        "the long-poll waited past the rotation: {:?}",
        waiting_since.elapsed()
    );
    qrauth_tests::assert_status_shape(&answer);
    let second = answer["qrcodeContent"]
        .as_str()
        .expect("the new QR")
        .to_owned();
    assert_ne!(second, first, "a rotation shows another QR");
    assert_eq!(answer["rotation"], rotation + 1, "{answer}");
    assert_eq!(answer["status"], "pending");
    assert_eq!(
        answer["version"], version,
        "a rotation is not a state change"
    );
    assert_eq!(
        qrauth_test_support::screen::read(&second).0,
        qr.id,
        "the same session"
    );

    // A plain status read by a browser still showing the first QR gets the new one too; no
    // cookie is set: the binding stays.
    let late = browser
        .status_query(&format!("qrcodeId={}&rotation={rotation}", qr.id))
        .await;
    assert!(late.set_cookies().is_empty(), "{:?}", late.headers);
    assert_eq!(late.assert_json(200)["qrcodeContent"], second.as_str());
    assert_eq!(browser.binding, binding);

    // Once the grace is over the replaced QR is dead for scanning, and refusing it changes
    // nothing: the session is still pending.
    clock.advance(Duration::from_secs(5));
    phone_on
        .alice()
        .scan_content(&first)
        .await
        .assert_error(410, "expired_qrcode");
    assert_eq!(browser.bound_status(&qr.id).await["status"], "pending");

    // The QR on screen logs the same browser in.
    let alice = phone_on.alice();
    let (token, _) = alice.scan_ok(&qr.id).await;
    alice.confirm(&qr.id, &token).await.assert_json(200);
    let confirmed = browser.bound_status(&qr.id).await;
    let ticket = confirmed["ticket"].as_str().expect("ticket");
    browser.exchange(ticket).await.assert_json(200);
}

mod cases {
    use super::*;

    /// An event stream delivers the new QR at the rotation (a status event with the same
    /// `id:`, carrying `qrcodeContent` and `image`) without being reopened; a stream opened by
    /// a browser that shows an old QR starts with the new one.
    pub async fn qr_rotation_reaches_an_event_stream(kind: Target) {
        let clock = std::sync::Arc::new(qrauth_core::ManualClock::starting_now());
        let server = spawn(kind, ServerOptions::default().clock(clock.clone())).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let rotation = qr.body["rotation"].as_u64().expect("rotation");
        let rotates_at = qr.body["rotatesAt"].as_u64().expect("rotatesAt");
        let open = |shown: u64| {
            browser
                .request(
                    Method::GET,
                    &format!("/qrcode/events?qrcodeId={}&rotation={shown}", qr.id),
                )
                .send()
        };
        let data = |event: qrauth_tests::SseEvent| -> serde_json::Value {
            serde_json::from_str(event.data.as_deref().expect("data")).expect("JSON")
        };
        // Shortly before the rotation: the first event is the status, with no new QR.
        clock.set_millis(rotates_at - 500);
        let response = open(rotation).await.expect("events");
        assert_eq!(response.status(), 200);
        let mut stream = qrauth_tests::SseReader::new(response);
        let first = stream.next_data().await.expect("first event");
        let first_id = first.id.clone();
        let first = data(first);
        assert_eq!(first["rotation"], rotation, "{first}");
        assert!(first.get("qrcodeContent").is_none(), "{first}");
        until_waiters(&server, 1).await;
        clock.set_millis(rotates_at);
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next_data())
            .await
            .expect("the new QR within seconds")
            .expect("an event");
        assert_eq!(next.id, first_id, "a rotation keeps the version");
        let next = data(next);
        qrauth_tests::assert_status_shape(&next);
        assert_eq!(next["rotation"], rotation + 1, "{next}");
        let content = next["qrcodeContent"].as_str().expect("the new QR");
        assert_ne!(Some(content), qr.body["qrcodeContent"].as_str());
        drop(stream);
        // A browser still showing the first QR gets the new one as its first event.
        let response = open(rotation).await.expect("events");
        let mut late = qrauth_tests::SseReader::new(response);
        let first = data(late.next_data().await.expect("first event"));
        assert_eq!(first["qrcodeContent"].as_str(), Some(content), "{first}");
    }

    /// The QR shown to a browser rotates within one session; the replaced one stops scanning
    /// (QRLJacking: a relayed copy goes stale).
    pub async fn qr_rotates_and_the_replaced_one_no_longer_scans(kind: Target) {
        let clock = std::sync::Arc::new(qrauth_core::ManualClock::starting_now());
        let server = spawn(kind, ServerOptions::default().clock(clock.clone())).await;
        rotation_is_followed_and_enforced(&server, &server, &clock).await;
    }

    /// A binding cookie qrauth did not mint for this client — all zeros, or the attacker's own
    /// binding minted for the attacker's network and planted in the victim's browser — is
    /// replaced at `POST /qrcode`: the planter cannot read the victim's session.
    pub async fn binding_planted_by_another_party_is_replaced(kind: Target) {
        let server = spawn(kind, behind_proxy(qrauth_core::Limits::unlimited())).await;
        // The attacker's own, genuinely minted binding (for the attacker's network).
        let mut attacker = server.browser();
        attacker.accept_qr(generate_from(&attacker, "198.51.100.66").await);
        let attackers_binding = attacker.binding.clone().expect("attacker's binding");
        for plant in ["A".repeat(64), "A".repeat(43), attackers_binding] {
            let mut victim = planted(&server, &plant);
            let qr = victim.accept_qr(generate_from(&victim, "203.0.113.5").await);
            let minted = victim.binding.clone().expect("victim's binding");
            assert_ne!(minted, plant, "a planted binding was adopted");
            victim.bound_status(&qr.id).await;
            // Whoever holds the planted value gets nothing about the victim's session.
            planted(&server, &plant)
                .status(&qr.id)
                .await
                .assert_error(403, "not_bound");
        }
    }

    /// The browser's own binding is kept (its other tabs go on working).
    pub async fn binding_minted_for_this_client_is_adopted(kind: Target) {
        let server = spawn(kind, behind_proxy(qrauth_core::Limits::unlimited())).await;
        let mut browser = server.browser();
        let first = browser.accept_qr(generate_from(&browser, "203.0.113.5").await);
        let binding = browser.binding.clone().expect("binding");
        let second = browser.accept_qr(generate_from(&browser, "203.0.113.5").await);
        assert_eq!(browser.binding.as_deref(), Some(binding.as_str()));
        browser.bound_status(&first.id).await;
        browser.bound_status(&second.id).await;
        // The same value from another network is a planted one: replaced.
        browser.accept_qr(generate_from(&browser, "192.0.2.77").await);
        assert_ne!(browser.binding.as_deref(), Some(binding.as_str()));
    }

    /// A long-poll with a stale `since` answers at once: it is a plain poll and spends the
    /// poll budget; one that really waits does not.
    pub async fn limit_poll_covers_long_polls_that_answer_at_once(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().enforce_poll_interval(true);
        let server = spawn(kind, ServerOptions::default().limits(limits)).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let query = format!("qrcodeId={}&wait=5&since=999", qr.id);
        browser.status_query(&query).await.assert_json(200);
        let refused = browser.status_query(&query).await;
        refused.assert_error(429, "slow_down");
        assert!(refused.header("retry-after").is_some(), "Retry-After");
        // A plain poll right after is refused as well: one budget.
        browser.status(&qr.id).await.assert_error(429, "slow_down");
        // A long-poll that waits (no `since`: the current version) is not a poll: it is
        // answered 200 when the phone scans.
        let waiter = {
            let browser = browser.clone();
            let query = format!("qrcodeId={}&wait=10", qr.id);
            tokio::spawn(async move { browser.status_query(&query).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.alice().scan_ok(&qr.id).await;
        let answered = waiter.await.expect("waiter").assert_json(200);
        assert_eq!(answered["status"], "scanned", "{answered}");
    }

    /// A fresh random binding cookie per poll buys no new budget: the limit keys on the
    /// client's address and the id.
    pub async fn limit_poll_fresh_binding_buys_no_budget(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().enforce_poll_interval(true);
        let server = spawn(kind, ServerOptions::default().limits(limits)).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        browser.status(&qr.id).await.assert_json(200);
        for _ in 0..3 {
            let random = qrauth_core::BindingSecret::generate().expect("random");
            planted(&server, random.expose_secret())
                .status(&qr.id)
                .await
                .assert_error(429, "slow_down");
        }
        // A stale long-poll with yet another binding: the same budget.
        let random = qrauth_core::BindingSecret::generate().expect("random");
        planted(&server, random.expose_secret())
            .status_query(&format!("qrcodeId={}&wait=3&since=999", qr.id))
            .await
            .assert_error(429, "slow_down");
    }

    /// Random credentials on the phone routes spend the client address's budget, before the
    /// `PhoneAuthenticator` runs: past it, even a valid credential is refused with 429 (a 401
    /// would mean the authenticator ran).
    pub async fn limit_phone_per_address_before_the_authenticator(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().phone_per_address_per_minute(5);
        let server = spawn(kind, behind_proxy(limits)).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;
        let from = |phone: Phone, ip: &'static str| scan_from(phone, qr.id.clone(), ip);
        for i in 0..5 {
            let phone = Phone::at(&server.base, Some(&format!("Bearer random-{i}")));
            from(phone, "198.51.100.9")
                .await
                .assert_error(401, "unauthenticated");
        }
        for i in 5..8 {
            let phone = Phone::at(&server.base, Some(&format!("Bearer random-{i}")));
            let refused = from(phone, "198.51.100.9").await;
            refused.assert_error(429, "slow_down");
            assert!(refused.header("retry-after").is_some(), "Retry-After");
        }
        from(server.alice(), "198.51.100.9")
            .await
            .assert_error(429, "slow_down");
        // Another address is not affected.
        let ok = from(server.alice(), "198.51.100.10").await.assert_json(200);
        assert!(ok["confirmToken"].is_string(), "{ok}");
    }

    /// The default risk signal sees a phone on another network than the browser: the confirm
    /// screen shows why, and with `number_matching_from(Elevated)` that login (and only that
    /// one) needs the code the browser shows.
    pub async fn risk_from_another_network_makes_number_matching_mandatory(kind: Target) {
        let mut options = behind_proxy(qrauth_core::Limits::unlimited());
        options.number_matching_from = Some(qrauth_core::risk::RiskLevel::Elevated);
        let server = spawn(kind, options).await;
        let scan = |id: String, ip: &'static str| {
            let phone = server.alice();
            async move { scan_from(phone, id, ip).await.assert_json(200) }
        };
        let confirm = |id: String, token: String, code: Option<String>| {
            let phone = server.alice();
            async move {
                let mut body = serde_json::json!({ "qrcodeId": id, "confirmToken": token });
                if let Some(code) = code {
                    body["matchCode"] = serde_json::json!(code);
                }
                Resp::send(phone.request("/qrcode/confirm").json(&body)).await
            }
        };
        let new_qr = |ip: &'static str| {
            let mut browser = server.browser();
            async move {
                let created = generate_from(&browser, ip).await;
                let qr = browser.accept_qr(created);
                (qr, browser)
            }
        };

        // Same /24 as the browser: low risk, no code asked.
        let (qr, browser) = new_qr("198.51.100.7").await;
        let scanned = scan(qr.id.clone(), "198.51.100.200").await;
        assert_eq!(scanned["context"]["risk"]["level"], "low", "{scanned}");
        assert_eq!(scanned["context"]["numberMatching"], false, "{scanned}");
        let token = scanned["confirmToken"].as_str().expect("token").to_owned();
        confirm(qr.id.clone(), token, None).await.assert_json(200);
        assert_eq!(browser.bound_status(&qr.id).await["status"], "confirmed");

        // Another network: elevated, shown with its reason, and the code is mandatory.
        let (qr, browser) = new_qr("198.51.100.7").await;
        let scanned = scan(qr.id.clone(), "203.0.113.9").await;
        let context = &scanned["context"];
        assert_eq!(context["risk"]["level"], "elevated", "{scanned}");
        assert_eq!(
            context["risk"]["reasons"],
            serde_json::json!(["network_mismatch"])
        );
        assert_eq!(context["networkMismatch"], true);
        assert_eq!(context["numberMatching"], true);
        let token = scanned["confirmToken"].as_str().expect("token").to_owned();
        let code = browser.bound_status(&qr.id).await["matchCode"]
            .as_str()
            .expect("the browser shows the code")
            .to_owned();
        confirm(qr.id.clone(), token.clone(), None)
            .await
            .assert_error(403, "access_denied");
        confirm(qr.id.clone(), token, Some(code))
            .await
            .assert_json(200);
        assert_eq!(browser.bound_status(&qr.id).await["status"], "confirmed");
    }

    /// IPv6 clients are counted by their /64: rotating the interface id buys nothing.
    pub async fn limit_ipv6_clients_grouped_by_64(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().generate_per_minute(3);
        let server = spawn(kind, behind_proxy(limits)).await;
        let browser = server.browser();
        for ip in [
            "2001:db8:1:2::a",
            "2001:db8:1:2::b",
            "2001:db8:1:2:ffff:1:2:3",
        ] {
            generate_from(&browser, ip).await.assert_json(201);
        }
        generate_from(&browser, "2001:db8:1:2:9::9")
            .await
            .assert_error(429, "slow_down");
        generate_from(&browser, "2001:db8:1:3::a")
            .await
            .assert_json(201);
    }

    /// `X-Forwarded-For` is read from the right and stops at an entry that does not parse:
    /// a client cannot hide behind garbage to make a forged entry its address.
    pub async fn proxies_spoofed_forwarded_entry_never_wins(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().generate_per_minute(2);
        let server = spawn(kind, behind_proxy(limits)).await;
        let browser = server.browser();
        // Each request forges a new address left of garbage; all count as the proxy's client
        // (here the proxy itself: nothing parsable lies right of the garbage).
        for i in 0..2 {
            generate_from(&browser, &format!("6.6.6.{i}, garbage"))
                .await
                .assert_json(201);
        }
        generate_from(&browser, "6.6.6.9, garbage")
            .await
            .assert_error(429, "slow_down");
        generate_from(&browser, "6.6.6.10, 999.1.1.1")
            .await
            .assert_error(429, "slow_down");
        // An IPv4-mapped entry is the IPv4 client it names.
        generate_from(&browser, "192.0.2.1").await.assert_json(201);
        generate_from(&browser, "::ffff:192.0.2.1")
            .await
            .assert_json(201);
        generate_from(&browser, "192.0.2.1")
            .await
            .assert_error(429, "slow_down");
    }

    /// Long-polls and event streams held open at once are capped per session, per binding
    /// and per client address: beyond a cap, `429 slow_down` with `Retry-After`, and the cap
    /// frees as soon as a stream ends.
    pub async fn streams_capped_per_session_binding_and_address(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().streams(2, 3, 4);
        let server = spawn(kind, behind_proxy(limits)).await;
        let ip = "198.51.100.20";
        let mut browser = server.browser();
        let qr1 = browser.accept_qr(generate_from(&browser, ip).await);
        let held = [
            long_poll_from(&browser, &qr1.id, ip),
            long_poll_from(&browser, &qr1.id, ip),
        ];
        until_waiters(&server, 2).await;
        // Per session: a third long-poll and an event stream on the same session are refused.
        let refused = long_poll_from(&browser, &qr1.id, ip).await.expect("task");
        refused.assert_error(429, "slow_down");
        assert!(refused.header("retry-after").is_some(), "Retry-After");
        let sse = Resp::send(
            browser
                .request(Method::GET, &format!("/qrcode/events?qrcodeId={}", qr1.id))
                .header("x-forwarded-for", ip),
        )
        .await;
        sse.assert_error(429, "slow_down");
        // Per binding: a second session of the same browser gets one more, then no more.
        let qr2 = browser.accept_qr(generate_from(&browser, ip).await);
        let third = long_poll_from(&browser, &qr2.id, ip);
        until_waiters(&server, 3).await;
        long_poll_from(&browser, &qr2.id, ip)
            .await
            .expect("task")
            .assert_error(429, "slow_down");
        // Per address: another browser on the same network gets the last one.
        let mut other = server.browser();
        let qr3 = other.accept_qr(generate_from(&other, ip).await);
        let fourth = long_poll_from(&other, &qr3.id, ip);
        until_waiters(&server, 4).await;
        let mut third_browser = server.browser();
        let qr4 = third_browser.accept_qr(generate_from(&third_browser, ip).await);
        long_poll_from(&third_browser, &qr4.id, ip)
            .await
            .expect("task")
            .assert_error(429, "slow_down");
        // Another network is not affected.
        let elsewhere = long_poll_from(&third_browser, &qr4.id, "198.51.100.21");
        until_waiters(&server, 5).await;
        // A scan ends the two held on session 1: the session has room again.
        server.alice().scan_ok(&qr1.id).await;
        for h in held {
            let body = h.await.expect("task").assert_json(200);
            assert_eq!(body["status"], "scanned", "{body}");
        }
        let again = long_poll_from(&browser, &qr1.id, ip);
        until_waiters(&server, 4).await;
        for held in [again, third, fourth, elsewhere] {
            held.abort();
        }
    }

    /// `POST /qrcode` from a cross-site context (foreign `Origin`, `Sec-Fetch-Site:
    /// cross-site`) is refused with a JSON 403 before it spends the address's budget or sets
    /// a cookie; the same-origin widget is unaffected.
    pub async fn cross_site_generate_is_refused(kind: Target) {
        let limits = qrauth_core::Limits::unlimited().generate_per_minute(1);
        let server = spawn(kind, ServerOptions::default().limits(limits)).await;
        let mut browser = server.browser();
        let own_origin = server.base.clone();
        let foreign: [(&str, &str); 4] = [
            ("origin", "https://evil.example"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "CROSS-SITE"),
        ];
        for (name, value) in foreign {
            let refused =
                Resp::send(browser.request(Method::POST, "/qrcode").header(name, value)).await;
            refused.assert_error(403, "access_denied");
            assert!(
                refused.set_cookie(&server.binding_cookie_name()).is_none(),
                "{name}: {value} set a binding cookie"
            );
        }
        let ok = Resp::send(
            browser
                .request(Method::POST, "/qrcode")
                .header("origin", own_origin.as_str())
                .header("sec-fetch-site", "same-origin"),
        )
        .await;
        browser.accept_qr(ok);
    }

    /// `nonce` is stored with the session and copied into the id_token: at most 256 bytes.
    pub async fn nonce_longer_than_256_bytes_is_refused(kind: Target) {
        let server = spawn(kind, ServerOptions::default()).await;
        let mut browser = server.browser();
        let post = |nonce: String| {
            Resp::send(
                browser
                    .request(Method::POST, "/qrcode")
                    .json(&serde_json::json!({ "nonce": nonce })),
            )
        };
        let refused = post("n".repeat(257)).await;
        let body = refused.assert_error(400, "invalid_request");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains("256")),
            "{body}"
        );
        let ok = post("n".repeat(256)).await;
        browser.accept_qr(ok);
    }
}

/// Without a peer address (an integration that passes none), requests do not share one
/// bucket that any client could exhaust for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_requests_without_peer_share_no_global_bucket() {
    let options =
        ServerOptions::default().limits(qrauth_core::Limits::default().generate_per_minute(1));
    let service = qrauth_tests::build_service("http://127.0.0.1:9", &options).await;
    for _ in 0..5 {
        let request = qrauth_core::ApiRequest::new(Method::POST);
        let response = service.handle(qrauth_core::Route::Generate, request).await;
        assert_eq!(response.status, 201, "a peerless request was refused");
    }
    // With a peer, the per-address limit holds.
    let peer = |ip: [u8; 4]| {
        let mut request = qrauth_core::ApiRequest::new(Method::POST);
        request.peer = Some(IpAddr::from(ip));
        request
    };
    let ok = service
        .handle(qrauth_core::Route::Generate, peer([192, 0, 2, 1]))
        .await;
    assert_eq!(ok.status, 201);
    let refused = service
        .handle(qrauth_core::Route::Generate, peer([192, 0, 2, 1]))
        .await;
    assert_eq!(refused.status, 429);
}

/// The shared-state ones across two replicas (axum and actix-web) on one Redis.
mod replicas {
    use super::*;
    use qrauth_tests::RedisServer;

    struct Replicas {
        a: TestServer,
        b: TestServer,
        _redis: RedisServer,
    }

    async fn replicas(options: ServerOptions) -> Replicas {
        let redis = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("redis-server start");
        let options = options
            .redis(redis.url())
            .issuer("https://login.example.com");
        let a = spawn(ServerKind::Axum, options.clone()).await;
        let b = spawn(ServerKind::Actix, options).await;
        Replicas {
            a,
            b,
            _redis: redis,
        }
    }

    /// A binding minted on A is adopted on B (the replicas share the key); a planted one is
    /// replaced on either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn binding_minted_by_one_replica_is_adopted_by_the_other() {
        bounded("binding across replicas", async {
            let r = replicas(behind_proxy(qrauth_core::Limits::unlimited())).await;
            let mut browser = r.a.browser();
            let on_a = browser.accept_qr(generate_from(&browser, "203.0.113.5").await);
            let binding = browser.binding.clone().expect("binding");
            let mut on_b_browser = browser.on(&r.b);
            let on_b = on_b_browser.accept_qr(generate_from(&on_b_browser, "203.0.113.5").await);
            assert_eq!(on_b_browser.binding.as_deref(), Some(binding.as_str()));
            on_b_browser.bound_status(&on_a.id).await;
            browser.bound_status(&on_b.id).await;
            let mut victim = planted(&r.b, &"A".repeat(64));
            victim.accept_qr(generate_from(&victim, "203.0.113.9").await);
            assert_ne!(victim.binding.as_deref(), Some("A".repeat(64).as_str()));
        })
        .await;
    }

    /// A QR shown by A rotates on B too (the replicas share the key of the scan tokens): B
    /// refuses the replaced QR and accepts the one on screen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn qr_rotation_holds_across_replicas() {
        bounded("rotation across replicas", async {
            let clock = std::sync::Arc::new(qrauth_core::ManualClock::starting_now());
            let r = replicas(ServerOptions::default().clock(clock.clone())).await;
            rotation_is_followed_and_enforced(&r.a, &r.b, &clock).await;
        })
        .await;
    }

    /// The poll budget and the phone budget are shared: spending it on A is spent on B.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_keyed_on_the_address_hold_across_replicas() {
        bounded("limits across replicas", async {
            let limits = qrauth_core::Limits::unlimited()
                .enforce_poll_interval(true)
                .phone_per_address_per_minute(3);
            let r = replicas(ServerOptions::default().limits(limits)).await;
            let mut browser = r.a.browser();
            let qr = browser.generate().await;
            let query = format!("qrcodeId={}&wait=5&since=999", qr.id);
            browser.status_query(&query).await.assert_json(200);
            let random = qrauth_core::BindingSecret::generate().expect("random");
            planted(&r.b, random.expose_secret())
                .status_query(&query)
                .await
                .assert_error(429, "slow_down");
            for i in 0..3 {
                let server = if i % 2 == 0 { &r.a } else { &r.b };
                Phone::at(&server.base, Some(&format!("Bearer random-{i}")))
                    .scan(&qr.id)
                    .await
                    .assert_error(401, "unauthenticated");
            }
            r.b.alice()
                .scan(&qr.id)
                .await
                .assert_error(429, "slow_down");
            r.a.alice()
                .scan(&qr.id)
                .await
                .assert_error(429, "slow_down");
        })
        .await;
    }
}
