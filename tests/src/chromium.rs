//! Scripts of `tests/browser/` (Node.js driving the system Chromium through playwright-core):
//! what they need, and one way to run one and read its JSON result line.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use qrauth_test_support::programs::{find_program, repo_root};
use serde_json::Value;

/// A script's own deadline (it prints a failure and exits when it passes).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(45);
/// Ours, in case a script hangs anyway: then the Node process is killed.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// `tests/browser`, where the scripts and their `node_modules` are.
pub fn browser_dir() -> PathBuf {
    repo_root().join("tests").join("browser")
}

/// Chromium and Node.js with the scripts' packages, or a failure that says how to get them
/// (never a skip).
pub fn chromium_and_node() -> (PathBuf, PathBuf) {
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

/// Runs `node SCRIPT ARGS… --timeout MS [--screenshots DIR]` in `tests/browser` and returns
/// its last JSON line, with its stderr for context; panics, naming `label`, unless it exits
/// successfully with `"ok": true`.
pub fn run_browser_script(
    script: &str,
    args: &[&str],
    label: &str,
    screenshots: Option<&Path>,
) -> (Value, String) {
    let (chromium, node) = chromium_and_node();
    let mut command = Command::new(node);
    command
        .current_dir(browser_dir())
        .arg(script)
        .args(args)
        .arg("--timeout")
        .arg(SCRIPT_TIMEOUT.as_millis().to_string())
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
    // Both pipes drained at once, so that a chatty script never blocks on a full one.
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
        panic!("{label}: node did not finish within {PROCESS_TIMEOUT:?}\n{stdout}\n{stderr}");
    };
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{label}: no result line ({exit})\n{stdout}\n{stderr}"));
    let result: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("{label}: bad result line {line:?}: {e}"));
    println!("{line}");
    assert!(
        exit.success() && result["ok"] == Value::Bool(true),
        "{label} failed ({exit}): {}\n{}\nstderr: {stderr}",
        result["error"],
        serde_json::to_string_pretty(&result).unwrap_or_default()
    );
    (result, stderr)
}
