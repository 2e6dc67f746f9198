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

use qrauth_test_support::programs::{find_program, repo_root};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qrauth_core::Limits;
use qrauth_tests::{ServerKind, ServerOptions, spawn};
use serde_json::Value;

/// The scenario runner's own deadline (it prints a failure and exits when it passes).
const RUNNER_TIMEOUT: Duration = Duration::from_secs(45);
/// Ours, in case the runner hangs anyway: then the Node process is killed.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);
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

fn browser_dir() -> PathBuf {
    repo_root().join("tests").join("browser")
}

/// Everything the Node side needs, or a failure that says how to get it (never a skip).
fn prerequisites() -> (PathBuf, PathBuf) {
    let chromium = find_program("/usr/bin/chromium", "chromium")
        .unwrap_or_else(|| panic!("chromium not found: apt-get install -y chromium"));
    let node = find_program("/usr/bin/node", "node")
        .unwrap_or_else(|| panic!("node not found: apt-get install -y nodejs npm"));
    let modules = browser_dir().join("node_modules");
    assert!(
        modules.join("playwright-core").is_dir() && modules.join("axe-core").is_dir(),
        "{} is missing or incomplete; run: npm ci --prefix tests/browser",
        modules.display()
    );
    (chromium, node)
}

/// Runs `SCRIPT BASE SCENARIO` (`run.mjs`, `sdk.mjs`) and returns its JSON result line, with
/// stderr for context.
fn run_node(
    script: &str,
    base: &str,
    scenario: &str,
    screenshots: Option<&Path>,
) -> (Value, String) {
    let (chromium, node) = prerequisites();
    let mut command = Command::new(node);
    command
        .current_dir(browser_dir())
        .arg(script)
        .arg(base)
        .arg(scenario)
        .arg("--timeout")
        .arg(RUNNER_TIMEOUT.as_millis().to_string())
        .env("QRAUTH_CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = screenshots {
        command.arg("--screenshots").arg(dir);
    }
    let mut child = command.spawn().expect("starting node");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let exit = loop {
        if let Some(status) = child.try_wait().expect("waiting for node") {
            break Some(status);
        }
        if started.elapsed() > PROCESS_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(exit) = exit else {
        panic!("{scenario}: node did not finish within {PROCESS_TIMEOUT:?}\n{stdout}\n{stderr}");
    };
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{scenario}: no result line ({exit})\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{scenario}: bad result line {line:?}: {e}"));
    println!("{line}");
    assert!(
        exit.success() && result["ok"] == Value::Bool(true),
        "{scenario} failed ({exit}): {}\n{}\nstderr: {stderr}",
        result["error"],
        serde_json::to_string_pretty(&result).unwrap_or_default()
    );
    (result, stderr)
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
    prerequisites();
    let server = spawn(kind, options).await;
    let base = server.base.clone();
    // The README's screenshots come from the axum run.
    let screenshots = (kind == ServerKind::Axum
        && matches!(name, "login" | "expiry" | "cancel" | "floating"))
    .then(screenshot_dir);
    let dir = screenshots.clone();
    let (result, _) =
        tokio::task::spawn_blocking(move || run_node(script, &base, name, dir.as_deref()))
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
        login, cancel, expiry, sse_blocked, slow_down, a11y,
        sdk_samples, sdk_floating, sdk_sessions, sdk_reconnect,
        session_signout, session_revoke, session_expiry);
}

mod actix {
    browser_suite!(qrauth_tests::ServerKind::Actix;
        login, cancel, expiry, sse_blocked, slow_down, a11y,
        sdk_samples, sdk_floating, sdk_sessions, sdk_reconnect,
        session_signout, session_revoke, session_expiry);
}
