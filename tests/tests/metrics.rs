//! qrauth's metrics as an operator sees them: the demos' `GET /metrics` (Prometheus text from
//! `metrics-exporter-prometheus`), scraped before and after a login, an expiry, refused
//! requests and an upstream-confirmed login; and no secret in any label or span field.
//!
//! The recorder is process-global: every server of this test binary records into the same
//! one. Tests therefore compare deltas, tests on the demo's default `provider` label
//! (`"qrauth"`) run one at a time ([`SERIAL`]), and the upstream test uses a label of its own.
//! It takes its turn too, so that the span test's capture holds only its own requests.

use std::future::Future;
use std::time::{Duration, Instant};

use qrauth_core::provider::{UpstreamEvent, UpstreamLogin};
use qrauth_core::{Error, Lifetimes, Limits, QrAuthService, UserInfo};
use qrauth_test_support::LogCapture;
use qrauth_test_support::provider::ScriptedIdp;
use qrauth_tests::{
    Resp, ServerKind, ServerOptions, TestServer, client, spawn, spawn_service, version,
};
use reqwest::Method;
use reqwest::header::AUTHORIZATION;

/// Tests that record under the demo's `provider="qrauth"` label, and every test while the span
/// test captures, take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SESSIONS: &str = "qrauth_sessions_total";
const LIMIT_REFUSALS: &str = "qrauth_limit_refusals_total";
const EXCHANGE_FAILURES: &str = "qrauth_exchange_failures_total";
const VERIFICATION_FAILURES: &str = "qrauth_verification_failures_total";
const LIVE_WAITERS: &str = "qrauth_live_waiters";
const UPSTREAM_LOOPS: &str = "qrauth_upstream_loops";
const CONFIRM_NOTIFY_COUNT: &str = "qrauth_confirm_notify_seconds_count";
const UPSTREAM_CHECK_COUNT: &str = "qrauth_upstream_check_seconds_count";

/// A Prometheus text exposition.
#[derive(Debug, Clone)]
struct Scrape(String);

impl Scrape {
    /// The sum of every sample of `name` whose labels include `labels` (0 if there is none).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_sample)
            .filter(|(n, ls, _)| {
                *n == name
                    && labels
                        .iter()
                        .all(|(k, v)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, value)| value)
            .sum()
    }

    /// Every label value of every `qrauth_` sample but the histogram buckets' `le`.
    fn qrauth_label_values(&self) -> Vec<String> {
        self.0
            .lines()
            .filter(|l| l.starts_with("qrauth_"))
            .filter_map(parse_sample)
            .flat_map(|(_, labels, _)| labels.into_iter())
            .filter(|(k, _)| k != "le")
            .map(|(_, v)| v)
            .collect()
    }
}

/// One sample: its name, its labels, its value.
type Sample<'a> = (&'a str, Vec<(String, String)>, f64);

/// `name{k="v",…} value` → (name, labels, value).
fn parse_sample(line: &str) -> Option<Sample<'_>> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let Some((name, labels)) = series.split_once('{') else {
        return Some((series, Vec::new(), value));
    };
    let labels = labels
        .strip_suffix('}')?
        .split("\",")
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once("=\"")?;
            Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
        })
        .collect();
    Some((name, labels, value))
}

/// `GET /metrics` from loopback: 200, Prometheus text.
async fn scrape(server: &TestServer) -> Scrape {
    let response = Resp::send(client(Duration::from_secs(10)).get(server.url("/metrics"))).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.headers
    );
    Scrape(response.text())
}

/// The process's recorder, rendered directly (for servers that are not the demo app).
fn render() -> Scrape {
    let handle = demo_common::metrics::install().expect("the Prometheus recorder installs");
    Scrape(handle.render())
}

/// Polls `check` every 20 ms until it holds; fails after 10 s, naming `what`.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const QRAUTH: (&str, &str) = ("provider", "qrauth");

fn outcome(name: &'static str) -> [(&'static str, &'static str); 2] {
    [QRAUTH, ("outcome", name)]
}

/// A login told by long-polls, a refused plain poll, a refused exchange and token, and an
/// expiry, on `kind`'s demo app; then the series must have moved by exactly that much.
async fn series_move_with_the_flow(kind: ServerKind) {
    let server = spawn(kind, ServerOptions::default().limits(Limits::default())).await;
    // Unlimited, with a QR code that lives 2 s: its expiry wakes a waiting long-poll.
    let expiring = spawn(
        kind,
        ServerOptions::default().qr_lifetime(Duration::from_secs(2)),
    )
    .await;
    let before = scrape(&server).await;

    // A full login; the browser learns of the scan and the confirmation by long-polls.
    let mut browser = server.browser();
    let qr = browser.generate().await;
    let v0 = version(&browser.bound_status(&qr.id).await);
    let long_poll = |since: u64| {
        let browser = browser.clone();
        let query = format!("qrcodeId={}&wait=20&since={since}", qr.id);
        tokio::spawn(async move { browser.status_query(&query).await })
    };
    let waiting = long_poll(v0);
    let waiters_before = before.value(LIVE_WAITERS, &[QRAUTH]);
    eventually("the long-poll to count as a live waiter", || async {
        scrape(&server).await.value(LIVE_WAITERS, &[QRAUTH]) >= waiters_before + 1.0
    })
    .await;
    let phone = server.alice();
    // A long-poll answered within 250 ms of its start counts as a poll (issue 16): the phone
    // acts after that, as a person would.
    let human = Duration::from_millis(400);
    tokio::time::sleep(human).await;
    let (token, _) = phone.scan_ok(&qr.id).await;
    let scanned = waiting.await.expect("long-poll task").assert_json(200);
    assert_eq!(scanned["status"], "scanned");
    let waiting = long_poll(version(&scanned));
    tokio::time::sleep(human).await;
    phone.confirm(&qr.id, &token).await.assert_json(200);
    let confirmed = waiting.await.expect("long-poll task").assert_json(200);
    assert_eq!(confirmed["status"], "confirmed");
    let ticket = confirmed["ticket"].as_str().expect("ticket").to_owned();
    browser.exchange(&ticket).await.assert_json(200);

    // A plain poll within the interval of the one before: refused by the poll limit.
    let other = browser.generate().await;
    browser.bound_status(&other.id).await;
    browser
        .status(&other.id)
        .await
        .assert_error(429, "slow_down");

    // A used ticket and a token that is no JWT.
    browser
        .exchange(&ticket)
        .await
        .assert_error(400, "invalid_ticket");
    let refused = Resp::send(
        browser
            .request(Method::GET, "/api/me")
            .header(AUTHORIZATION, "Bearer not-a-jwt"),
    )
    .await;
    assert_eq!(refused.status, 401, "{}", refused.text());

    // An expiry: a long-poll that only the QR code's deadline ends.
    let mut late = expiring.browser();
    let lapsing = late.generate().await;
    late.status_query(&format!("qrcodeId={}&wait=20", lapsing.id))
        .await
        .assert_error(410, "expired_qrcode");

    let after = scrape(&server).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    let moved = [
        ("started", 3.0),
        ("scanned", 1.0),
        ("confirmed", 1.0),
        ("exchanged", 1.0),
        ("expired", 1.0),
        ("cancelled", 0.0),
    ];
    for (name, by) in moved {
        assert_eq!(
            delta(SESSIONS, &outcome(name)),
            by,
            "{kind:?}: sessions {name}\n{}",
            after.0
        );
    }
    assert_eq!(
        delta(LIMIT_REFUSALS, &[QRAUTH, ("limit", "poll")]),
        1.0,
        "{kind:?}: poll refusals\n{}",
        after.0
    );
    assert_eq!(
        delta(LIMIT_REFUSALS, &[QRAUTH]),
        1.0,
        "{kind:?}: no other limit refused"
    );
    assert_eq!(
        delta(EXCHANGE_FAILURES, &[QRAUTH, ("error", "invalid_ticket")]),
        1.0,
        "{kind:?}: exchange failures\n{}",
        after.0
    );
    assert_eq!(
        delta(
            VERIFICATION_FAILURES,
            &[QRAUTH, ("error", "invalid_token"), ("reason", "malformed")]
        ),
        1.0,
        "{kind:?}: verification failures\n{}",
        after.0
    );
    assert_eq!(
        delta(CONFIRM_NOTIFY_COUNT, &[QRAUTH]),
        1.0,
        "{kind:?}: one confirmation delivered by a long-poll\n{}",
        after.0
    );
    assert_eq!(
        after.value(LIVE_WAITERS, &[QRAUTH]),
        waiters_before,
        "{kind:?}: every waiter is gone"
    );
    assert!(
        after.0.contains("# HELP qrauth_sessions_total"),
        "described series:\n{}",
        after.0
    );

    // Only direct loopback peers get the text: a proxied request is refused.
    let proxied = Resp::send(
        client(Duration::from_secs(10))
            .get(server.url("/metrics"))
            .header("x-forwarded-for", "203.0.113.9"),
    )
    .await;
    assert_eq!(proxied.status, 403, "{kind:?}: {}", proxied.text());
    assert!(
        !proxied.text().contains("qrauth_"),
        "no series for a proxied scrape"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_move_with_login_expiry_and_refusals_on_both_adapters() {
    let _serial = SERIAL.lock().await;
    // The two adapters one after the other: they share the recorder and the label.
    series_move_with_the_flow(ServerKind::Axum).await;
    series_move_with_the_flow(ServerKind::Actix).await;
}

#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_labels_or_span_fields() {
    let _serial = SERIAL.lock().await;
    // Every event and every span (with its fields, on close) of this thread, where the axum
    // app, the browser and the phone all run.
    let (capture, _guard) = LogCapture::start();

    let server = spawn(
        ServerKind::Axum,
        ServerOptions::default().limits(Limits::default()),
    )
    .await;
    let mut browser = server.browser();
    let qr = browser.generate().await;
    let phone = server.alice();
    let (confirm_token, _) = phone.scan_ok(&qr.id).await;
    phone.confirm(&qr.id, &confirm_token).await.assert_json(200);
    let status = browser.bound_status(&qr.id).await;
    let ticket = status["ticket"].as_str().expect("ticket").to_owned();
    let tokens = browser.exchange(&ticket).await.assert_json(200);
    let id_token = tokens["id_token"].as_str().expect("id_token").to_owned();
    // Failures too, so that error labels exist: a refused poll, a replayed ticket, a token
    // with a broken signature, and the good token.
    browser.status(&qr.id).await.assert_error(429, "slow_down");
    browser
        .exchange(&ticket)
        .await
        .assert_error(400, "invalid_ticket");
    let tampered = format!("{id_token}x");
    for (token, status) in [(&tampered, 401), (&id_token, 200)] {
        let response = Resp::send(
            browser
                .request(Method::GET, "/api/me")
                .header(AUTHORIZATION, format!("Bearer {token}")),
        )
        .await;
        assert_eq!(response.status, status, "{}", response.text());
    }
    let metrics = scrape(&server).await;

    let binding = browser.binding.clone().expect("binding cookie");
    let secrets = [
        ("binding cookie".to_owned(), binding),
        ("ticket".to_owned(), ticket),
        ("confirm token".to_owned(), confirm_token),
        ("id_token".to_owned(), id_token),
        (
            "phone credential".to_owned(),
            "Bearer demo-alice".to_owned(),
        ),
        ("qrcodeId".to_owned(), qr.id.clone()),
    ];
    for (name, secret) in &secrets {
        assert!(secret.len() >= 16, "{name} is long enough to search for");
        assert!(
            !metrics.0.contains(secret.as_str()) && !metrics.0.contains(&secret[..16]),
            "/metrics holds the {name}:\n{}",
            metrics.0
        );
    }
    // Label values are fixed names: a provider label, outcomes, codes, limit names.
    for value in metrics.qrauth_label_values() {
        assert!(
            value.len() <= 32
                && value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.".contains(&b)),
            "label value {value:?} is not a fixed name"
        );
    }
    let secrets: Vec<(String, String)> = secrets.into_iter().collect();
    capture.assert_holds_none(&secrets);
    // The request spans were captured, with their route and status, and nothing else.
    let log = capture.text();
    for span in [
        "qrauth.request{route=Generate status=201}",
        "qrauth.request{route=Scan status=200}",
        "qrauth.request{route=Confirm status=200}",
        "qrauth.request{route=Status status=200}",
        "qrauth.request{route=Status status=429}",
        "qrauth.request{route=Exchange status=200}",
        "qrauth.request{route=Exchange status=400}",
    ] {
        assert!(log.contains(span), "no span {span} in the log:\n{log}");
    }
    for line in log.lines().filter(|l| l.contains("qrauth.request{")) {
        let fields = line
            .split("qrauth.request{")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .unwrap_or("");
        assert!(
            fields
                .split(' ')
                .all(|f| f.starts_with("route=") || f.starts_with("status=")),
            "span fields beyond route and status: {line}"
        );
    }
}

fn alice() -> UserInfo {
    UserInfo {
        nickname: Some("Alice".into()),
        photo: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_loops_and_checks_are_measured() {
    let _serial = SERIAL.lock().await;
    const SCRIPTED: (&str, &str) = ("provider", "scripted");
    let mut idp = None;
    let server = spawn_service(ServerKind::Axum, |base| {
        let provider = ScriptedIdp::new(base, "scripted-web", Duration::from_millis(50));
        idp = Some(provider.clone());
        QrAuthService::builder(provider)
            .lifetimes(Lifetimes::default().poll_interval(Duration::from_secs(1)))
            .limits(Limits::unlimited())
            .insecure_dev_cookies()
            .metrics_label("scripted")
            .build()
            .expect("service")
    })
    .await;
    let idp = idp.expect("provider");
    let before = render();
    let checks = |result: &'static str| {
        render().value(UPSTREAM_CHECK_COUNT, &[SCRIPTED, ("result", result)])
    };

    let mut browser = server.browser();
    let qr = browser.generate().await;
    let v0 = version(&browser.bound_status(&qr.id).await);
    eventually("the session's upstream loop", || async {
        render().value(UPSTREAM_LOOPS, &[SCRIPTED]) >= 1.0
    })
    .await;

    // One failed check (the IdP timed out), then two good ones, so that the loop is healthy.
    idp.script(&qr.id, Err(Error::UpstreamTimeout));
    eventually("the failed upstream check", || async {
        checks("upstream_unavailable") >= 1.0
    })
    .await;
    let ok = checks("ok");
    eventually("two good upstream checks", || async {
        checks("ok") >= ok + 2.0
    })
    .await;

    idp.script(&qr.id, Ok(UpstreamEvent::Scanned(alice())));
    let scanned = browser
        .status_query(&format!("qrcodeId={}&wait=10&since={v0}", qr.id))
        .await
        .assert_json(200);
    assert_eq!(scanned["status"], "scanned");
    idp.script(
        &qr.id,
        Ok(UpstreamEvent::Confirmed(
            UpstreamLogin::new(alice()).subject("alice@idp"),
        )),
    );
    let confirmed = browser
        .status_query(&format!(
            "qrcodeId={}&wait=10&since={}",
            qr.id,
            version(&scanned)
        ))
        .await
        .assert_json(200);
    assert_eq!(confirmed["status"], "confirmed");
    let ticket = confirmed["ticket"].as_str().expect("ticket");
    browser.exchange(ticket).await.assert_json(200);
    // The confirmed session needs no loop any more.
    eventually("the upstream loop to stop", || async {
        render().value(UPSTREAM_LOOPS, &[SCRIPTED]) == 0.0
    })
    .await;

    let after = render();
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    for (name, by) in [
        ("started", 1.0),
        ("scanned", 1.0),
        ("confirmed", 1.0),
        ("exchanged", 1.0),
    ] {
        assert_eq!(
            delta(SESSIONS, &[SCRIPTED, ("outcome", name)]),
            by,
            "sessions {name}\n{}",
            after.0
        );
    }
    assert_eq!(
        delta(
            UPSTREAM_CHECK_COUNT,
            &[SCRIPTED, ("result", "upstream_unavailable")]
        ),
        1.0,
        "one failed check\n{}",
        after.0
    );
    assert!(delta(UPSTREAM_CHECK_COUNT, &[SCRIPTED, ("result", "ok")]) >= 4.0);
    assert_eq!(
        delta(CONFIRM_NOTIFY_COUNT, &[SCRIPTED]),
        1.0,
        "the confirmation reached the waiting long-poll\n{}",
        after.0
    );
    assert_eq!(after.value(LIVE_WAITERS, &[SCRIPTED]), 0.0);
    assert!(
        after.0.contains(
            r#"qrauth_upstream_check_seconds_bucket{provider="scripted",result="ok",le="0.005"}"#
        ),
        "upstream checks are a histogram with qrauth's buckets:\n{}",
        after.0
    );
}

/// The README's table is the list of series the library records, with their types and labels.
#[test]
fn the_readme_lists_every_series() {
    let readme = include_str!("../../README.md");
    for series in qrauth_core::metrics::SERIES {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", series.name)))
            .unwrap_or_else(|| panic!("README has no row for {}", series.name));
        let labels = series
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            row.contains(&format!("| {} | {labels} |", series.kind.as_str())),
            "README row of {} should say {} with {labels}: {row}",
            series.name,
            series.kind.as_str()
        );
    }
    let rows = readme
        .lines()
        .filter(|l| l.starts_with("| `qrauth_"))
        .count();
    assert_eq!(
        rows,
        qrauth_core::metrics::SERIES.len(),
        "no README row for a series that does not exist"
    );
}
