//! The browser widget end to end, in the system Chromium: every scenario of
//! `tests/browser/run.mjs` (the demo's login page) and of `tests/browser/sdk.mjs` (the browser
//! SDK: Authing's code samples, the floating component of the ES module, signed-in session
//! renewal, reconnects) runs once against the axum demo (`axum::…`) and once against the
//! actix-web demo (`actix::…`), each on a server of its own started by the harness.
//!
//! Needs Debian's Chromium (`apt-get install -y chromium`), Node.js ≥ 18 and the Node side's
//! packages (`npm ci --prefix tests/browser`); without them the tests fail, saying what to
//! install. The axum run takes screenshots of the pending, scanned, expired, cancelled and
//! floating states; with
//! `QRAUTH_UPDATE_SCREENSHOTS=1` they replace the README's images in `docs/screenshots/`,
//! otherwise they go to a temporary folder (so a test run leaves the tree unchanged).

use qrauth_test_support::programs::repo_root;
use std::path::PathBuf;
use std::time::Duration;

use qrauth_core::Limits;
use qrauth_tests::chromium::{chromium_and_node, run_browser_script};
use qrauth_tests::{ServerKind, ServerOptions, spawn};
use serde_json::Value;

/// The QR lifetime of the expiry scenario.
const SHORT_QR_LIFETIME: Duration = Duration::from_secs(3);

/// Where the screenshots go: the README's folder only when asked to update it.
fn screenshot_dir() -> PathBuf {
    if std::env::var_os("QRAUTH_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        repo_root().join("docs").join("screenshots")
    } else {
        std::env::temp_dir().join(format!("qrauth-screenshots-{}", std::process::id()))
    }
}

/// Starts the demo of `kind` with `options`, runs `run.mjs`'s `scenario` against it and checks
/// the result.
async fn scenario(kind: ServerKind, name: &'static str, options: ServerOptions) -> Value {
    scenario_of("run.mjs", kind, name, options).await
}

/// The same for a scenario of `sdk.mjs`.
async fn sdk_scenario(kind: ServerKind, name: &'static str, options: ServerOptions) -> Value {
    scenario_of("sdk.mjs", kind, name, options).await
}

async fn scenario_of(
    script: &'static str,
    kind: ServerKind,
    name: &'static str,
    options: ServerOptions,
) -> Value {
    chromium_and_node();
    let server = spawn(kind, options).await;
    let base = server.base.clone();
    // The README's screenshots come from the axum run.
    let screenshots = (kind == ServerKind::Axum
        && matches!(name, "login" | "expiry" | "cancel" | "floating"))
    .then(screenshot_dir);
    let dir = screenshots.clone();
    let (result, _) = tokio::task::spawn_blocking(move || {
        run_browser_script(script, &[&base, name], name, dir.as_deref())
    })
    .await
    .expect("runner thread");
    if let Some(dir) = screenshots {
        for shot in result["screenshots"].as_array().into_iter().flatten() {
            let file = dir.join(shot.as_str().unwrap_or_default());
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            assert!(
                size > 1000,
                "{name}: screenshot {} is missing or empty",
                file.display()
            );
        }
    }
    drop(server);
    assert_eq!(
        result["consoleErrors"],
        serde_json::json!([]),
        "{name}: console errors"
    );
    result
}

fn welcome(result: &Value) -> &str {
    result["welcome"].as_str().unwrap_or_default()
}

mod cases {
    use super::*;

    pub async fn login(kind: ServerKind) {
        let r = scenario(kind, "login", ServerOptions::default()).await;
        assert!(welcome(&r).contains("Alice"), "{r}");
        assert!(
            r["scannedStatus"]
                .as_str()
                .unwrap_or_default()
                .contains("Alice"),
            "the scanned state shows the nickname: {r}"
        );
        assert!(r["sse"].as_u64() >= Some(1), "followed by SSE: {r}");
    }

    /// A failed exchange (503) is tried again by the widget with the same ticket.
    pub async fn exchange_retry(kind: ServerKind) {
        let r = scenario(kind, "exchange_retry", ServerOptions::default()).await;
        assert!(welcome(&r).contains("Alice"), "{r}");
        assert_eq!(r["exchanges"], 2, "one failure, one retry: {r}");
        assert!(
            r["retryDelayMs"].as_u64() >= Some(900),
            "after a pause: {r}"
        );
        assert_eq!(r["expected503Logs"], 1, "{r}");
    }

    /// The demo phone page shows the risk signal's verdict and, with
    /// `number_matching_from(Elevated)`, needs the browser's code for a phone on another
    /// network.
    /// The QR rotates (every 10 s here): the widget shows the new one from its event stream,
    /// and the new one logs the browser in.
    pub async fn qr_rotation(kind: ServerKind) {
        let options = ServerOptions::default().qr_rotation(Duration::from_secs(10));
        let r = scenario(kind, "qr_rotation", options).await;
        assert_ne!(r["first"], r["second"], "{r}");
        assert!(welcome(&r).contains("Alice"), "{r}");
    }

    pub async fn risk_on_the_phone_page(kind: ServerKind) {
        let options = ServerOptions {
            trusted_proxies: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            number_matching_from: Some(qrauth_core::risk::RiskLevel::Elevated),
            ..ServerOptions::default()
        };
        let r = scenario(kind, "risk_on_the_phone_page", options).await;
        assert!(welcome(&r).contains("Alice"), "{r}");
        assert!(
            r["withoutCode"]
                .as_str()
                .unwrap_or_default()
                .starts_with("confirm failed"),
            "confirm without the code is refused: {r}"
        );
        assert_eq!(r["expected403Logs"], 1, "{r}");
    }

    pub async fn cancel(kind: ServerKind) {
        let r = scenario(kind, "cancel", ServerOptions::default()).await;
        assert!(
            r["cancelledStatus"]
                .as_str()
                .unwrap_or_default()
                .contains("Login cancelled on the phone."),
            "{r}"
        );
        assert_eq!(r["newQr"], true, "{r}");
        assert!(welcome(&r).contains("Bob"), "the new QR logs in: {r}");
    }

    pub async fn expiry(kind: ServerKind) {
        let options = ServerOptions::default().qr_lifetime(SHORT_QR_LIFETIME);
        let r = scenario(kind, "expiry", options).await;
        assert_eq!(r["newQr"], true, "{r}");
    }

    pub async fn sse_blocked(kind: ServerKind) {
        let r = scenario(kind, "sse_blocked", ServerOptions::default()).await;
        assert!(welcome(&r).contains("Alice"), "{r}");
        assert!(r["longPolls"].as_u64() >= Some(1), "long-polled: {r}");
        assert_eq!(r["sse"], 0, "no /qrcode/events: {r}");
        assert!(
            r["staleLongPoll"].is_string(),
            "refresh() aborted the old long-poll: {r}"
        );
    }

    pub async fn slow_down(kind: ServerKind) {
        let limits = Limits::unlimited().enforce_poll_interval(true);
        let r = scenario(kind, "slow_down", ServerOptions::default().limits(limits)).await;
        let retry_after = r["retryAfter"].as_u64().expect("retryAfter");
        assert!(retry_after >= 1, "{r}");
        assert!(
            r["waitedMs"].as_u64().expect("waitedMs") >= retry_after * 1000,
            "the widget waited Retry-After: {r}"
        );
        assert!(welcome(&r).contains("Alice"), "{r}");
    }

    pub async fn a11y(kind: ServerKind) {
        let r = scenario(kind, "a11y", ServerOptions::default()).await;
        let serious: Vec<&Value> = r["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .collect();
        assert!(serious.is_empty(), "axe: {serious:?}");
    }

    /// Authing's own code samples for the business calls log Alice in (`sdk.mjs samples`).
    pub async fn sdk_samples(kind: ServerKind) {
        let r = sdk_scenario(kind, "samples", ServerOptions::default()).await;
        assert!(welcome(&r).contains("Alice"), "{r}");
        assert_eq!(r["checkCodeStatus"]["status"], 0, "{r}");
        assert_eq!(r["unknownId"]["code"], 403, "{r}");
        let statuses = r["statuses"].as_array().expect("statuses");
        assert_eq!(statuses.first(), Some(&Value::from(0)), "{r}");
        assert_eq!(statuses.last(), Some(&Value::from(1)), "{r}");
        assert!(r["sse"].as_u64() >= Some(1), "followed by SSE: {r}");
    }

    /// `startAppAuthScanning()` without a mount floats in the middle of the page.
    pub async fn sdk_floating(kind: ServerKind) {
        let r = sdk_scenario(kind, "floating", ServerOptions::default()).await;
        assert_eq!(r["geometry"]["position"], "fixed", "{r}");
        assert_eq!(r["geometry"]["role"], "dialog", "{r}");
        let serious = r["violations"]
            .as_array()
            .expect("violations")
            .iter()
            .filter(|v| v["impact"] == "serious" || v["impact"] == "critical")
            .count();
        assert_eq!(serious, 0, "axe: {r}");
    }

    /// `renew`, `keepSignedIn` and `logout` against scripted refresh and logout answers.
    pub async fn sdk_sessions(kind: ServerKind) {
        let r = sdk_scenario(kind, "sessions", ServerOptions::default()).await;
        assert_eq!(r["schedule"], "ok", "{r}");
        assert_eq!(r["overdue"], "ok", "{r}");
        assert_eq!(r["logout"]["body"], "{}", "{r}");
        assert_eq!(r["reuseWithoutLocks"], 1, "the control case: {r}");
    }

    /// Signed-in sessions (`sessions.mjs`): the page's sign-out button.
    pub async fn session_signout(kind: ServerKind) {
        let r = scenario_of("sessions.mjs", kind, "signout", ServerOptions::default()).await;
        assert_eq!(r["afterSignOut"], "login", "{r}");
    }

    /// The demo phone page signs the browser out.
    pub async fn session_revoke(kind: ServerKind) {
        let r = scenario_of("sessions.mjs", kind, "revoke", ServerOptions::default()).await;
        assert_eq!(r["afterRevoke"], "login", "{r}");
    }

    /// A page left open across 2.5 id_token lifetimes (7 s each: the SDK renews at 80 % of
    /// the lifetime, but not more often than every 5 s) stays signed in.
    pub async fn session_expiry(kind: ServerKind) {
        let day = Duration::from_secs(86_400);
        let options = ServerOptions::default().signed_in(Duration::from_secs(7), day, day);
        let r = scenario_of("sessions.mjs", kind, "expiry", options).await;
        assert!(r["refreshes"].as_u64() >= Some(2), "{r}");
        assert_eq!(r["afterExpiry"], "me", "{r}");
    }

    /// `event: reconnect` and an early long-poll answer: the widget comes back unseen.
    pub async fn sdk_reconnect(kind: ServerKind) {
        let r = sdk_scenario(kind, "reconnect", ServerOptions::default()).await;
        let sse = r["sseReopenMs"].as_u64().expect("sseReopenMs");
        assert!((150..=2000).contains(&sse), "{r}");
        assert!(r["longPolls"].as_u64() >= Some(3), "{r}");
    }
}

/// Expands every browser scenario for one demo.
macro_rules! browser_suite {
    ($kind:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::cases::$name($kind).await;
            }
        )+
    };
}

mod axum {
    browser_suite!(qrauth_tests::ServerKind::Axum;
        login, exchange_retry, qr_rotation, risk_on_the_phone_page, cancel, expiry, sse_blocked, slow_down, a11y,
        sdk_samples, sdk_floating, sdk_sessions, sdk_reconnect,
        session_signout, session_revoke, session_expiry);
}

mod actix {
    browser_suite!(qrauth_tests::ServerKind::Actix;
        login, exchange_retry, qr_rotation, risk_on_the_phone_page, cancel, expiry, sse_blocked, slow_down, a11y,
        sdk_samples, sdk_floating, sdk_sessions, sdk_reconnect,
        session_signout, session_revoke, session_expiry);
}
