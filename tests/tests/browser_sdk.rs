//! The browser SDK's build checks, without a browser:
//!
//! - `sdk/qrauth.mjs` (the ES module of `@qrauth/browser`) is what `node sdk/build.mjs` makes of
//!   `qrauth-core/src/handler/widget.js` (the classic script the adapters serve): one source.
//! - `tsc --noEmit` (TypeScript pinned in `tests/sdk-types/package-lock.json`) type-checks the
//!   sample app in `tests/sdk-types/src` against `sdk/qrauth.d.ts`, including lines that must
//!   not type-check (`@ts-expect-error`).
//!
//! Needs Node.js ≥ 18 and `npm ci --prefix tests/sdk-types`; without them the tests fail,
//! saying what to install.

use std::path::PathBuf;
use std::process::{Command, Output};

use qrauth_test_support::programs::{find_program, repo_root};

fn node() -> PathBuf {
    find_program("/usr/bin/node", "node")
        .unwrap_or_else(|| panic!("node not found: apt-get install -y nodejs npm"))
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn the_es_module_is_built_from_the_served_widget() {
    let root = repo_root();
    let out = run(Command::new(node())
        .current_dir(&root)
        .args(["sdk/build.mjs", "--check"]));
    assert!(
        out.status.success(),
        "sdk/qrauth.mjs is out of sync with qrauth-core/src/handler/widget.js ({}): {}",
        out.status,
        text(&out)
    );
    // Both carry the same code: every business call and session function is in both.
    let widget =
        std::fs::read_to_string(root.join("qrauth-core/src/handler/widget.js")).expect("widget.js");
    let module = std::fs::read_to_string(root.join("sdk/qrauth.mjs")).expect("sdk/qrauth.mjs");
    for name in [
        "function geneCode",
        "function checkCodeStatus",
        "function pollingCodeStatus",
        "function exchangeUserInfo",
        "function startScanning",
        "function renew",
        "function keepSignedIn",
        "function logout",
        "'reconnect'",
        "navigator.locks",
    ] {
        assert!(
            widget.contains(name) && module.contains(name),
            "{name} in both"
        );
    }
    assert!(module.contains("export default QrAuth;"));
    assert!(widget.contains("global.QrAuth = QrAuth;") && !widget.contains("export "));
}

#[test]
fn the_es_module_loads_without_a_document() {
    // Server-side rendering imports the module in Node: nothing may touch `document` on import.
    let out = run(Command::new(node()).current_dir(repo_root()).args([
        "--input-type=module",
        "-e",
        "const m = await import('./sdk/qrauth.mjs'); \
         for (const n of ['geneCode', 'checkCodeStatus', 'pollingCodeStatus', 'exchangeUserInfo', \
           'startAppAuthScanning', 'renew', 'keepSignedIn', 'logout', 'createClient']) \
           if (typeof m[n] !== 'function') throw new Error('export ' + n); \
         for (const n of ['startScanning', 'geneCode', 'checkCodeStatus', 'pollingCodeStatus', \
           'exchangeUserInfo']) \
           if (typeof m.default.qrlogin[n] !== 'function') throw new Error('qrlogin.' + n); \
         const c = new m.Authing({ baseUrl: '/auth/' }); \
         if (c.baseUrl !== '/auth') throw new Error('baseUrl ' + c.baseUrl); \
         console.log('ok');",
    ]));
    assert!(
        out.status.success() && text(&out).contains("ok"),
        "importing sdk/qrauth.mjs in Node: {}",
        text(&out)
    );
}

#[test]
fn the_sample_app_type_checks_against_the_declarations() {
    let dir = repo_root().join("tests").join("sdk-types");
    let tsc = dir.join("node_modules/typescript/bin/tsc");
    assert!(
        tsc.is_file() && dir.join("node_modules/@qrauth/browser").exists(),
        "{} is missing; run: npm ci --prefix tests/sdk-types",
        dir.join("node_modules").display()
    );
    let version = run(Command::new(node()).arg(&tsc).arg("--version"));
    let out = run(Command::new(node())
        .current_dir(&dir)
        .arg(&tsc)
        .args(["--noEmit", "-p", "."]));
    assert!(
        out.status.success(),
        "tsc --noEmit ({}) failed: {}",
        text(&version).trim(),
        text(&out)
    );
}
