//! Authing's own Node SDKs judge the fake Authing server (`qrauth-fake-authing`), and the fake's
//! record of what they sent judges qrauth's Authing provider.
//!
//! - `authing-node-sdk` (V3) creates a QR code, reads its status through both status endpoints,
//!   and exchanges the ticket with each client authentication method, then verifies the tokens
//!   with its own `parseIDToken` / `parseAccessToken` against the fake's JWKS
//!   (`tests/authing-sdk/v3.mjs`);
//! - `authing-js-sdk` 4.x (V2) creates a QR code, checks and polls it (`startPolling` and its
//!   callbacks) and calls `exchangeUserInfo` (`tests/authing-sdk/v2.mjs`).
//!
//! Between SDK calls the test plays the Authing app on the fake (scan, confirm, cancel). The
//! assertions read what the SDKs returned (their envelopes, DTO fields and enums), so a change
//! of the fake's wire format fails here. Then qrauth-authing logs in on the same fake and every
//! request it sends must match the SDK's request for the same call: method, path, query
//! parameter names, the app-identifying headers, the authorization scheme, content type and
//! body field names, types and settings ([`RecordedRequest`]).
//!
//! Needs Node.js ≥ 18 (`apt-get install -y nodejs npm`) and the pinned SDKs (`npm ci --prefix
//! tests/authing-sdk`); without them the tests fail, saying what to install.

use qrauth_test_support::programs::{find_program, repo_root};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use qrauth_authing::{ApiVersion, AuthingProvider, TokenAuthMethod};
use qrauth_core::{BindingSecret, Limits, QrAuthProvider, QrAuthService, QrState, TokenSet};
use qrauth_fake_authing::{AuthMethod, FakeAuthing, FakeConfig, RecordedRequest};
use qrauth_test_support::service_client::{Client, Status};
use serde_json::{Value, json};

/// No test may take longer than this.
const TEST_DEADLINE: Duration = Duration::from_secs(90);
/// One SDK call (or the wait for one SDK callback).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The scripts' own deadline: they exit when it passes.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(80);
/// The V2 SDK's polling interval in these tests (its default is 800 ms).
const POLL_INTERVAL_MS: u64 = 100;
/// The custom data both the SDKs and qrauth attach to a QR code.
const CUSTOM_DATA: &str = r#"{"school":"pku"}"#;

fn sdk_dir() -> PathBuf {
    repo_root().join("tests").join("authing-sdk")
}

/// `node`, and the SDKs installed at the versions `package.json` pins; or a failure that says
/// how to get them (never a skip).
fn prerequisites() -> PathBuf {
    let node = find_program("/usr/bin/node", "node")
        .unwrap_or_else(|| panic!("node not found: apt-get install -y nodejs npm"));
    let dir = sdk_dir();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).expect("tests/authing-sdk/package.json"),
    )
    .expect("package.json is JSON");
    let pins = manifest["dependencies"]
        .as_object()
        .expect("package.json pins dependencies");
    for name in ["authing-node-sdk", "authing-js-sdk"] {
        let pinned = pins[name].as_str().expect("an exact version");
        let installed =
            std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .and_then(|p| p["version"].as_str().map(str::to_owned));
        assert_eq!(
            installed.as_deref(),
            Some(pinned),
            "{name} {pinned} is not installed in tests/authing-sdk/node_modules; \
             run: npm ci --prefix tests/authing-sdk"
        );
    }
    node
}

async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("test finished in time");
}

/// One SDK script, driven over its stdin and stdout (`tests/authing-sdk/lib.mjs`).
struct Sdk {
    script: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// SDK callbacks not asked for yet.
    events: VecDeque<Value>,
    seq: u64,
    stderr: Arc<Mutex<String>>,
}

impl Sdk {
    /// Starts `script` on the fake's app host with the app's id (and its secret in the
    /// environment when `with_secret`), plus `args`.
    async fn start(
        script: &'static str,
        fake: &FakeAuthing,
        args: &[&str],
        with_secret: bool,
    ) -> Self {
        let node = prerequisites();
        let mut command = Command::new(node);
        command
            .current_dir(sdk_dir())
            .arg(script)
            .arg("--app-host")
            .arg(fake.base_url())
            .arg("--app-id")
            .arg(&fake.config().app_id)
            .arg("--timeout")
            .arg(SCRIPT_TIMEOUT.as_millis().to_string())
            .args(args)
            .env_remove("AUTHING_APP_SECRET")
            // Loopback only: axios would follow a proxy from the environment.
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env("NO_PROXY", "*")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if with_secret {
            command.env("AUTHING_APP_SECRET", &fake.config().app_secret);
        }
        let mut child = command.spawn().expect("starting node");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            if let Ok(mut s) = sink.lock() {
                s.push_str(&text);
            }
        });
        let mut sdk = Self {
            script,
            child,
            stdin,
            lines,
            events: VecDeque::new(),
            seq: 0,
            stderr,
        };
        sdk.event("ready").await;
        sdk
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn next_line(&mut self, waiting_for: &str) -> Value {
        match tokio::time::timeout(CALL_TIMEOUT, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                // Give the stderr reader a moment to collect the script's last words.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "{}: ended while waiting for {waiting_for}\nstderr: {}",
                    self.script,
                    self.stderr()
                )
            }
            Err(_) => panic!(
                "{}: nothing within {CALL_TIMEOUT:?} while waiting for {waiting_for}\nstderr: {}",
                self.script,
                self.stderr()
            ),
        }
    }

    /// Runs `op` with `args`: the SDK's answer, or what it threw.
    async fn call(&mut self, op: &str, args: Value) -> Result<Value, Value> {
        self.seq += 1;
        let seq = self.seq;
        let mut command = args;
        command["seq"] = json!(seq);
        command["op"] = json!(op);
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("writing to the SDK script");
        stdin.flush().expect("flushing the SDK script's stdin");
        loop {
            let line = self.next_line(op).await;
            if line["seq"] == json!(seq) {
                return if line["ok"] == json!(true) {
                    Ok(line["result"].clone())
                } else {
                    Err(line["error"].clone())
                };
            }
            if line.get("event").is_some() {
                self.events.push_back(line);
            } else {
                println!("{}: {line}", self.script);
            }
        }
    }

    /// Runs `op`, which must succeed in the SDK.
    async fn ok(&mut self, op: &str, args: Value) -> Value {
        match self.call(op, args).await {
            Ok(result) => result,
            Err(error) => panic!("{} {op}: the SDK failed: {error}", self.script),
        }
    }

    /// Waits for the SDK callback `name`; an unexpected `error` callback fails the test.
    async fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i).expect("queued event");
        }
        loop {
            let line = self.next_line(name).await;
            if line["event"] == name {
                return line;
            }
            if line["event"] == "error" || line["event"] == "timeout" {
                panic!("{}: {line} while waiting for {name}", self.script);
            }
            if line.get("event").is_some() {
                self.events.push_back(line);
            }
        }
    }
}

impl Drop for Sdk {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Verifies `token` with the key the fake publishes (discovery → `jwks_uri` → `kid`), as any
/// OIDC client would: RS256, `iss` = the issuer, `aud` = the app id. Returns its claims.
async fn verify_with_published_jwks(fake: &FakeAuthing, token: &str) -> Value {
    let http = http();
    let discovery: Value = http
        .get(format!(
            "{}/oidc/.well-known/openid-configuration",
            fake.base_url()
        ))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery JSON");
    assert_eq!(discovery["issuer"], fake.issuer().as_str());
    let jwks: JwkSet = http
        .get(discovery["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("a JWK set");
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::RS256);
    let jwk = jwks
        .find(header.kid.as_deref().expect("a kid"))
        .expect("the kid is published");
    let key = DecodingKey::from_jwk(jwk).expect("an RSA key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[fake.config().app_id.as_str()]);
    validation.set_issuer(&[fake.issuer()]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("the token verifies against the published JWKS")
        .claims
}

fn custom_data() -> Value {
    serde_json::from_str(CUSTOM_DATA).expect("custom data")
}

/// qrauth's Authing provider logs Alice in on `fake`: `POST /qrcode` with `userDefinedData`,
/// the Authing app scans and confirms, the browser exchanges qrauth's ticket.
async fn provider_login(
    fake: &FakeAuthing,
    version: ApiVersion,
    method: TokenAuthMethod,
) -> TokenSet {
    let c = fake.config();
    let mut builder =
        AuthingProvider::builder(&c.app_id, &c.app_secret, fake.base_url(), &c.user_pool_id)
            .api_version(version)
            .token_auth_method(method)
            .poll_interval(Duration::from_millis(100));
    if method == TokenAuthMethod::None {
        builder = builder.allow_none_auth(true);
    }
    let provider = Arc::new(builder.build().expect("provider"));
    let service = QrAuthService::builder(provider.clone())
        .limits(Limits::unlimited())
        .insecure_dev_cookies()
        .build()
        .expect("service");
    let client = Client::new(service);
    let binding = BindingSecret::generate().expect("binding");
    let qr = client
        .generate_with_body(&binding, &json!({ "userDefinedData": custom_data() }))
        .await
        .expect("POST /qrcode");
    let alice = fake.alice();
    let wait = |want: QrState| {
        let (client, id, binding) = (client.clone(), qr.id.clone(), binding.clone());
        async move {
            let mut since = 0;
            for _ in 0..30 {
                let status: Status = client
                    .wait_for_change(&id, &binding, since, Duration::from_secs(1))
                    .await
                    .expect("status");
                if status.state == want {
                    return status;
                }
                since = status.version;
            }
            panic!("qrauth's status never became {want:?}");
        }
    };
    fake.app_scan(&qr.content, &alice).await.expect("scan");
    let scanned = wait(QrState::Scanned).await;
    assert_eq!(
        scanned.user.and_then(|u| u.nickname).as_deref(),
        Some("Alice")
    );
    fake.app_confirm(&qr.content, &alice)
        .await
        .expect("confirm");
    let confirmed = wait(QrState::Confirmed).await;
    let ticket = confirmed.ticket.expect("qrauth's ticket");
    let tokens = client
        .exchange(&ticket, &binding)
        .await
        .expect("qrauth's exchange");
    let claims = provider
        .verify(&tokens.id_token)
        .await
        .expect("qrauth verifies the id_token");
    assert_eq!(claims.sub, alice.id);
    tokens
}

/// The first request on `path` in `requests`.
fn first<'a>(requests: &'a [RecordedRequest], path: &str) -> &'a RecordedRequest {
    requests.iter().find(|r| r.path == path).unwrap_or_else(|| {
        panic!(
            "no request on {path} among:\n{}",
            requests
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Prints what `who` sent (shown with `--nocapture`: the wire as the SDKs speak it).
fn print_recorded(who: &str, requests: &[RecordedRequest]) {
    println!("{who} sent:");
    for request in requests {
        println!("  {request}");
    }
}

/// Every request qrauth sent on each of `paths` matches the SDK's first request there.
fn assert_provider_sends_what_the_sdk_sends(
    sdk: &[RecordedRequest],
    ours: &[RecordedRequest],
    paths: &[&str],
) {
    print_recorded("the SDK (and the test, as the Authing app)", sdk);
    print_recorded("qrauth", ours);
    for path in paths {
        let theirs = first(sdk, path);
        let mine: Vec<&RecordedRequest> = ours.iter().filter(|r| r.path == *path).collect();
        assert!(!mine.is_empty(), "qrauth sent nothing on {path}");
        for request in mine {
            let context = format!("\n  SDK:    {theirs}\n  qrauth: {request}");
            assert_eq!(request.method, theirs.method, "method{context}");
            assert_eq!(request.query, theirs.query, "query parameters{context}");
            assert_eq!(
                request.authorization, theirs.authorization,
                "client authentication{context}"
            );
            assert_eq!(
                request.content_type, theirs.content_type,
                "content type{context}"
            );
            assert_eq!(
                request.body_fields, theirs.body_fields,
                "body fields{context}"
            );
            assert_eq!(
                request.body_values, theirs.body_values,
                "body settings{context}"
            );
            // The headers that say which app (or pool) calls: whatever the SDK sends, qrauth
            // sends with the same value.
            for header in ["x-authing-app-id", "x-authing-userpool-id"] {
                if let Some(value) = theirs.authing_headers.get(header) {
                    assert_eq!(
                        request.authing_headers.get(header),
                        Some(value),
                        "{header}{context}"
                    );
                }
            }
        }
    }
}

/// What the fake recorded holds no secret: not the app secret, the tickets or the tokens.
fn assert_no_secret_recorded(fake: &FakeAuthing, secrets: &[&str]) {
    let recorded = format!("{:?}", fake.recorded());
    let mut all: Vec<String> = secrets.iter().map(|s| (*s).to_owned()).collect();
    all.push(fake.config().app_secret.clone());
    all.extend(fake.tickets_issued());
    for secret in all.iter().filter(|s| !s.is_empty()) {
        assert!(
            !recorded.contains(secret.as_str()),
            "the fake recorded a secret"
        );
    }
}

/// `report` for a failure message, with tokens and tickets left out.
fn shown(report: &Value) -> String {
    let mut report = report.clone();
    if let Some(object) = report.as_object_mut() {
        for key in ["access_token", "id_token", "token", "ticket"] {
            if object.get(key).is_some_and(Value::is_string) {
                object.insert(key.into(), json!("<redacted>"));
            }
        }
    }
    report.to_string()
}

fn assert_status(report: &Value, status: &str) {
    assert_eq!(report["statusCode"], 200, "{}", shown(report));
    assert_eq!(report["status"], status, "{}", shown(report));
    assert_eq!(
        report["knownStatus"],
        true,
        "a status of the SDK's enum: {}",
        shown(report)
    );
}

/// The V3 node SDK through a whole login with `sdk_method` (the fake configured with
/// `fake_method`), then qrauth with `ours` on the same fake.
async fn v3_login(fake_method: AuthMethod, sdk_method: &str, ours: TokenAuthMethod) {
    let fake = FakeAuthing::spawn(FakeConfig {
        auth_method: fake_method,
        ..FakeConfig::default()
    })
    .await
    .expect("fake Authing");
    let alice = fake.alice();
    let mut sdk = Sdk::start(
        "v3.mjs",
        &fake,
        &["--auth-method", sdk_method],
        sdk_method != "none",
    )
    .await;

    let gene = sdk.ok("gene", json!({ "customData": custom_data() })).await;
    assert_eq!(gene["statusCode"], 200, "{}", shown(&gene));
    let qr = gene["qrcodeId"].as_str().expect("qrcodeId").to_owned();
    assert!(
        gene["url"].as_str().is_some_and(|u| u.starts_with("http")),
        "{}",
        shown(&gene)
    );
    // What the Authing app reads from the QR image (the fake's app helpers take the same JSON).
    let content = json!({ "qrcodeId": qr }).to_string();

    for endpoint in ["get", "check"] {
        let pending = sdk
            .ok("status", json!({ "qrcodeId": qr, "endpoint": endpoint }))
            .await;
        assert_status(&pending, "PENDING");
        assert!(pending["ticket"].is_null() && pending["briefUserInfo"].is_null());
    }

    fake.app_scan(&content, &alice).await.expect("scan");
    for endpoint in ["get", "check"] {
        let scanned = sdk
            .ok("status", json!({ "qrcodeId": qr, "endpoint": endpoint }))
            .await;
        assert_status(&scanned, "SCANNED");
        assert_eq!(
            scanned["briefUserInfo"]["displayName"],
            "Alice",
            "{}",
            shown(&scanned)
        );
        assert_eq!(scanned["briefUserInfo"]["photo"], alice.photo.as_str());
        assert_eq!(
            scanned["briefUserInfoFields"],
            json!(["displayName", "photo"])
        );
        assert!(
            scanned["ticket"].is_null(),
            "no ticket before the user confirms"
        );
    }

    fake.app_confirm(&content, &alice).await.expect("confirm");
    let authorized = sdk
        .ok("status", json!({ "qrcodeId": qr, "endpoint": "get" }))
        .await;
    assert_status(&authorized, "AUTHORIZED");
    assert!(
        authorized["tokenSet"].is_null(),
        "ticket mode, not full user info"
    );
    let ticket = authorized["ticket"].as_str().expect("ticket").to_owned();
    let checked = sdk
        .ok("status", json!({ "qrcodeId": qr, "endpoint": "check" }))
        .await;
    assert_status(&checked, "AUTHORIZED");
    assert_eq!(checked["ticket"], ticket.as_str());

    let tokens = sdk.ok("exchange", json!({ "ticket": ticket })).await;
    assert_eq!(tokens["statusCode"], 200, "{}", shown(&tokens));
    assert!(
        tokens["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{}",
        shown(&tokens)
    );
    assert_eq!(tokens["expire_in"], 7200, "{}", shown(&tokens));
    assert_eq!(tokens["scope"], "openid profile");
    assert_eq!(tokens["hasRefreshToken"], false, "no offline_access");
    // The SDK's own verification, with the JWKS it fetches from the app host.
    assert!(tokens.get("idTokenError").is_none(), "{}", shown(&tokens));
    assert!(
        tokens.get("accessTokenError").is_none(),
        "{}",
        shown(&tokens)
    );
    assert_eq!(tokens["idToken"]["sub"], alice.id.as_str());
    assert_eq!(tokens["idToken"]["aud"], fake.config().app_id.as_str());
    assert_eq!(tokens["idToken"]["iss"], fake.issuer().as_str());
    assert_eq!(tokens["idToken"]["name"], "Alice");
    assert_eq!(tokens["accessToken"]["sub"], alice.id.as_str());
    let id_token = tokens["id_token"].as_str().expect("id_token").to_owned();
    let access_token = tokens["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();

    // Single use: the SDK's second exchange gets an error envelope and no tokens.
    let again = sdk.ok("exchange", json!({ "ticket": ticket })).await;
    assert_ne!(again["statusCode"], 200, "{}", shown(&again));
    assert!(again["apiCode"].is_i64(), "{}", shown(&again));
    assert!(again["id_token"].is_null() && again["access_token"].is_null());

    let theirs = fake.recorded();
    // How the SDK authenticates the app at the exchange.
    let exchange = first(&theirs, "/api/v3/exchange-tokenset-with-qrcode-ticket");
    let (scheme, fields): (Option<&str>, &[&str]) = match sdk_method {
        "client_secret_post" => (None, &["client_id", "client_secret", "ticket"]),
        "client_secret_basic" => (Some("Basic"), &["ticket"]),
        _ => (None, &["ticket"]),
    };
    assert_eq!(exchange.authorization.as_deref(), scheme, "{exchange}");
    assert_eq!(exchange.field_names(), fields, "{exchange}");
    assert_no_secret_recorded(&fake, &[&id_token, &access_token]);
    // The SDK verifies tokens with the JWKS at the app host's OIDC path (its own request: it
    // names the app).
    let jwks = first(&theirs, "/oidc/.well-known/jwks.json");
    assert_eq!(jwks.method, "GET");
    assert!(
        jwks.authing_headers.contains_key("x-authing-app-id"),
        "{jwks}"
    );
    // So does any OIDC client, with the published keys (after the SDK's requests were taken).
    let claims = verify_with_published_jwks(&fake, &id_token).await;
    assert_eq!(claims["sub"], alice.id.as_str());

    fake.clear_recorded();
    let our_tokens = provider_login(&fake, ApiVersion::V3, ours).await;
    let mine = fake.recorded();
    assert_provider_sends_what_the_sdk_sends(
        &theirs,
        &mine,
        &[
            "/api/v3/gene-qrcode",
            "/api/v3/check-qrcode-status",
            "/api/v3/exchange-tokenset-with-qrcode-ticket",
        ],
    );
    // qrauth finds the same JWKS (through discovery).
    assert_eq!(first(&mine, "/oidc/.well-known/jwks.json").method, "GET");
    assert_no_secret_recorded(&fake, &[&our_tokens.id_token, &our_tokens.access_token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_node_sdk_client_secret_post() {
    bounded(v3_login(
        AuthMethod::ClientSecretPost,
        "client_secret_post",
        TokenAuthMethod::ClientSecretPost,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_node_sdk_client_secret_basic() {
    bounded(v3_login(
        AuthMethod::ClientSecretBasic,
        "client_secret_basic",
        TokenAuthMethod::ClientSecretBasic,
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_node_sdk_none() {
    bounded(v3_login(AuthMethod::None, "none", TokenAuthMethod::None)).await;
}

/// The V3 SDK's view of a cancelled and an expired QR code, an unknown one, and a ticket the
/// fake never issued; and the app's client authentication refused when the SDK is set up with
/// another method than the app's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v3_node_sdk_cancel_expiry_and_refusals() {
    bounded(async {
        let fake = FakeAuthing::spawn(FakeConfig::default())
            .await
            .expect("fake Authing");
        let alice = fake.alice();
        let mut sdk = Sdk::start("v3.mjs", &fake, &[], true).await;

        let gene = sdk.ok("gene", json!({})).await;
        let qr = gene["qrcodeId"].as_str().expect("qrcodeId").to_owned();
        let content = json!({ "qrcodeId": qr }).to_string();
        fake.app_scan(&content, &alice).await.expect("scan");
        fake.app_cancel(&content, &alice).await.expect("cancel");
        let cancelled = sdk
            .ok("status", json!({ "qrcodeId": qr, "endpoint": "get" }))
            .await;
        assert_status(&cancelled, "CANCELLED");
        assert!(cancelled["ticket"].is_null());

        let gene = sdk.ok("gene", json!({})).await;
        let qr = gene["qrcodeId"].as_str().expect("qrcodeId").to_owned();
        fake.expire_qrcodes();
        let expired = sdk
            .ok("status", json!({ "qrcodeId": qr, "endpoint": "check" }))
            .await;
        assert_status(&expired, "EXPIRED");

        let unknown = sdk
            .ok(
                "status",
                json!({ "qrcodeId": "no-such-qrcode", "endpoint": "get" }),
            )
            .await;
        assert_ne!(unknown["statusCode"], 200, "{}", shown(&unknown));
        assert!(
            unknown["status"].is_null(),
            "no data for an unknown QR: {unknown}"
        );
        assert!(unknown["message"].is_string(), "{}", shown(&unknown));

        let bogus = sdk
            .ok("exchange", json!({ "ticket": "never-issued" }))
            .await;
        assert_ne!(bogus["statusCode"], 200, "{}", shown(&bogus));
        assert!(bogus["id_token"].is_null());

        // An SDK set up for client_secret_basic against an app that wants client_secret_post.
        let mut basic = Sdk::start(
            "v3.mjs",
            &fake,
            &["--auth-method", "client_secret_basic"],
            true,
        )
        .await;
        let gene = basic.ok("gene", json!({})).await;
        let qr = gene["qrcodeId"].as_str().expect("qrcodeId").to_owned();
        let content = json!({ "qrcodeId": qr }).to_string();
        fake.app_scan(&content, &alice).await.expect("scan");
        fake.app_confirm(&content, &alice).await.expect("confirm");
        let authorized = basic
            .ok("status", json!({ "qrcodeId": qr, "endpoint": "get" }))
            .await;
        let ticket = authorized["ticket"].as_str().expect("ticket");
        let refused = basic.ok("exchange", json!({ "ticket": ticket })).await;
        assert_ne!(refused["statusCode"], 200, "{}", shown(&refused));
        assert!(refused["id_token"].is_null());
        assert_no_secret_recorded(&fake, &[]);
    })
    .await;
}

/// The V2 js SDK through a whole login (its polling callbacks included), then qrauth's V2
/// client on the same fake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_js_sdk_login() {
    bounded(async {
        let fake = FakeAuthing::spawn(FakeConfig::default())
            .await
            .expect("fake Authing");
        let alice = fake.alice();
        let mut sdk = Sdk::start("v2.mjs", &fake, &[], true).await;

        let gene = sdk.ok("gene", json!({ "customData": custom_data() })).await;
        let random = gene["random"].as_str().expect("random").to_owned();
        assert!(
            gene["url"].as_str().is_some_and(|u| u.starts_with("http")),
            "{}",
            shown(&gene)
        );
        assert_eq!(gene["expiresIn"], 120, "{}", shown(&gene));
        let content = json!({ "random": random }).to_string();

        let pending = sdk.ok("check", json!({ "random": random })).await;
        assert_eq!(pending["status"], 0, "{}", shown(&pending));
        assert_eq!(pending["random"], random.as_str());
        assert!(pending["ticket"].is_null());

        sdk.ok(
            "poll",
            json!({ "random": random, "interval": POLL_INTERVAL_MS }),
        )
        .await;
        assert_eq!(sdk.event("status").await["status"], 0);
        fake.app_scan(&content, &alice).await.expect("scan");
        let scanned = sdk.event("scanned").await;
        assert_eq!(
            scanned["userInfo"]["nickname"],
            "Alice",
            "{}",
            shown(&scanned)
        );
        assert_eq!(scanned["userInfo"]["photo"], alice.photo.as_str());
        assert!(
            scanned["userInfo"]["token"].is_null(),
            "nickname and photo only"
        );
        fake.app_confirm(&content, &alice).await.expect("confirm");
        let success = sdk.event("success").await;
        let ticket = success["ticket"].as_str().expect("ticket").to_owned();

        let user = sdk.ok("exchange", json!({ "ticket": ticket })).await;
        assert_eq!(user["id"], alice.id.as_str(), "{}", shown(&user));
        assert_eq!(user["email"], alice.email.as_str());
        assert_eq!(user["nickname"], "Alice");
        assert_eq!(user["photo"], alice.photo.as_str());
        assert_eq!(user["userPoolId"], fake.config().user_pool_id.as_str());
        assert!(user["tokenExpiredAt"].is_string(), "{}", shown(&user));
        let token = user["token"].as_str().expect("token").to_owned();
        // Single use: the SDK throws Authing's error envelope.
        let again = sdk
            .call("exchange", json!({ "ticket": ticket }))
            .await
            .expect_err("a used ticket");
        assert!(
            again["sdkError"]["code"].as_i64().is_some_and(|c| c != 200),
            "{}",
            shown(&again)
        );

        let theirs = fake.recorded();
        // The SDK's `exchangeUserInfo` sends the ticket alone: no client credential, no pool id.
        let userinfo = first(&theirs, "/api/v2/qrcode/userinfo");
        assert_eq!(userinfo.field_names(), ["ticket"], "{userinfo}");
        assert_eq!(userinfo.authorization, None, "{userinfo}");
        assert!(
            !userinfo
                .authing_headers
                .contains_key("x-authing-userpool-id"),
            "{userinfo}"
        );
        assert_no_secret_recorded(&fake, &[&token]);
        // The V2 user's token is an id_token of the app, verifiable with the published keys.
        let claims = verify_with_published_jwks(&fake, &token).await;
        assert_eq!(claims["sub"], alice.id.as_str());
        fake.clear_recorded();
        let our_tokens = provider_login(&fake, ApiVersion::V2, TokenAuthMethod::default()).await;
        let mine = fake.recorded();
        assert_provider_sends_what_the_sdk_sends(
            &theirs,
            &mine,
            &[
                "/api/v2/qrcode/gene",
                "/api/v2/qrcode/check",
                "/api/v2/qrcode/userinfo",
            ],
        );
        assert_no_secret_recorded(&fake, &[&our_tokens.id_token]);
    })
    .await;
}

/// The V2 SDK's callbacks for a cancelled and an expired QR code, and its error for an unknown
/// one (`code 2241`, as its documentation shows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_js_sdk_cancel_expiry_and_unknown() {
    bounded(async {
        let fake = FakeAuthing::spawn(FakeConfig::default())
            .await
            .expect("fake Authing");
        let alice = fake.alice();
        let mut sdk = Sdk::start("v2.mjs", &fake, &[], true).await;

        let gene = sdk.ok("gene", json!({})).await;
        let random = gene["random"].as_str().expect("random").to_owned();
        let content = json!({ "random": random }).to_string();
        sdk.ok(
            "poll",
            json!({ "random": random, "interval": POLL_INTERVAL_MS }),
        )
        .await;
        fake.app_scan(&content, &alice).await.expect("scan");
        sdk.event("scanned").await;
        fake.app_cancel(&content, &alice).await.expect("cancel");
        sdk.event("cancel").await;
        let cancelled = sdk.ok("check", json!({ "random": random })).await;
        assert_eq!(cancelled["status"], 3, "{}", shown(&cancelled));

        let gene = sdk.ok("gene", json!({})).await;
        let random = gene["random"].as_str().expect("random").to_owned();
        sdk.ok(
            "poll",
            json!({ "random": random, "interval": POLL_INTERVAL_MS }),
        )
        .await;
        fake.expire_qrcodes();
        sdk.event("expired").await;

        let unknown = sdk
            .call("check", json!({ "random": "no-such-qrcode" }))
            .await
            .expect_err("an unknown QR");
        assert_eq!(unknown["sdkError"]["code"], 2241, "{}", shown(&unknown));
        sdk.ok(
            "poll",
            json!({ "random": "no-such-qrcode", "interval": POLL_INTERVAL_MS }),
        )
        .await;
        let error = sdk.event("error").await;
        assert_eq!(error["sdkError"]["code"], 2241, "{}", shown(&error));
        assert_no_secret_recorded(&fake, &[]);
    })
    .await;
}
