//! The Authing provider through both adapters against the fake Authing server
//! (`qrauth-fake-authing`): real HTTP servers on loopback on both sides, nothing of qrauth mocked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qrauth_authing::{ApiVersion, AuthingProvider, AuthingProviderBuilder, TokenAuthMethod};
use qrauth_core::store::{MemoryStore, RedisStore, SessionStore};
use qrauth_core::{Error, Lifetimes, Limits, QrAuthProvider, QrAuthService, TokenError};
use qrauth_fake_authing::{AuthMethod, FakeAuthing, FakeConfig, Faults, IdTokenAlg};
use qrauth_test_support::{Framework as Kind, RedisServer, Served};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE, WWW_AUTHENTICATE};
use serde_json::{Value, json};

/// No test may take longer than this.
const TEST_DEADLINE: Duration = Duration::from_secs(60);
/// Upstream poll interval in these tests.
const UPSTREAM_INTERVAL: Duration = Duration::from_millis(200);
/// Timeout of qrauth's calls to Authing in these tests.
const UPSTREAM_TIMEOUT: Duration = Duration::from_millis(1500);
/// The latency fault: longer than [`UPSTREAM_TIMEOUT`].
const FAULT_LATENCY: Duration = Duration::from_secs(4);

/// The fake Authing, a qrauth app on it, and a browser.
struct Env {
    fake: Arc<FakeAuthing>,
    provider: Arc<AuthingProvider>,
    service: QrAuthService,
    base: String,
    binding_name: String,
    session_name: String,
    /// The qrauth server; dropping it stops the server.
    _served: Served,
    http: reqwest::Client,
    /// Every body the browser received.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Env {
    /// Upstream status loops running now.
    fn live_upstream_loops(&self) -> usize {
        self.service.upstream_loops().0
    }

    /// Upstream status loops started since the service was built.
    fn upstream_loops_started(&self) -> u64 {
        self.service.upstream_loops().1
    }
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }

    #[track_caller]
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        self.json()
    }

    #[track_caller]
    fn error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["error_description"].is_string(), "body: {body}");
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all(SET_COOKIE).iter().find_map(|v| {
            let v = v.to_str().ok()?;
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (n, value) = pair.split_once('=')?;
            (n.trim() == name).then(|| value.trim().to_owned())
        })
    }
}

fn fake_config(method: AuthMethod) -> FakeConfig {
    FakeConfig {
        auth_method: method,
        ..FakeConfig::default()
    }
}

fn builder(fake: &FakeAuthing) -> AuthingProviderBuilder {
    let c = fake.config();
    AuthingProvider::builder(&c.app_id, &c.app_secret, fake.base_url(), &c.user_pool_id)
        .poll_interval(UPSTREAM_INTERVAL)
        // Generous for a loaded CI machine; the latency fault (FAULT_LATENCY) exceeds it.
        .timeouts(UPSTREAM_TIMEOUT, UPSTREAM_TIMEOUT)
}

async fn env(
    kind: Kind,
    config: FakeConfig,
    tweak: impl FnOnce(AuthingProviderBuilder) -> AuthingProviderBuilder,
) -> Env {
    env_custom(kind, config, |fake| tweak(builder(fake))).await
}

async fn env_custom(
    kind: Kind,
    config: FakeConfig,
    make: impl FnOnce(&FakeAuthing) -> AuthingProviderBuilder,
) -> Env {
    let fake = Arc::new(FakeAuthing::spawn(config).await.expect("fake Authing"));
    let provider = make(&fake).build().expect("provider");
    env_on(kind, fake, provider, Arc::new(MemoryStore::new())).await
}

/// A qrauth server of `kind` with `provider` and sessions in `store`, on an existing fake.
async fn env_on(
    kind: Kind,
    fake: Arc<FakeAuthing>,
    provider: AuthingProvider,
    store: Arc<dyn SessionStore>,
) -> Env {
    let provider = Arc::new(provider);
    let service = QrAuthService::builder(provider.clone())
        .shared_store(store)
        .lifetimes(Lifetimes::default().poll_interval(Duration::from_secs(1)))
        .limits(Limits::unlimited())
        .insecure_dev_cookies()
        .build()
        .expect("service");
    let (listener, base) = qrauth_test_support::serve::bind();
    let served = qrauth_test_support::serve::qrauth_app(kind, listener, service.clone()).await;
    Env {
        fake,
        provider,
        base,
        binding_name: service.cookies().binding_name(),
        session_name: service.cookies().session_name(),
        service,
        _served: served,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client"),
        seen: Arc::default(),
    }
}

/// A browser: keeps its binding cookie by hand.
#[derive(Clone)]
struct Browser {
    binding: Option<String>,
}

impl Env {
    fn browser(&self) -> Browser {
        Browser { binding: None }
    }

    async fn send(&self, browser: &Browser, request: reqwest::RequestBuilder) -> Resp {
        let request = match &browser.binding {
            Some(b) => request.header(COOKIE, format!("{}={b}", self.binding_name)),
            None => request,
        };
        let response = request.send().await.expect("request to qrauth");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        self.seen.lock().expect("seen").push(text.clone());
        Resp {
            status,
            headers,
            text,
        }
    }

    /// `POST /qrcode`; keeps the binding cookie.
    async fn generate(&self, browser: &mut Browser, body: Option<Value>) -> Resp {
        let mut request = self.http.post(format!("{}/qrcode", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = self.send(browser, request).await;
        if let Some(cookie) = response.cookie(&self.binding_name) {
            browser.binding = Some(cookie);
        }
        response
    }

    async fn status(&self, browser: &Browser, id: &str, wait: Option<u64>) -> Resp {
        let query = match wait {
            Some(w) => format!("qrcodeId={id}&wait={w}"),
            None => format!("qrcodeId={id}"),
        };
        let request = self
            .http
            .get(format!("{}/qrcode/status?{query}", self.base));
        self.send(browser, request).await
    }

    /// A QR generated for `browser`, scanned and confirmed by Alice in the Authing app;
    /// returns qrauth's id and the ticket the bound browser got.
    async fn confirmed_by_alice(&self, browser: &mut Browser) -> (String, String) {
        let qr = self.generate(browser, None).await.ok(201);
        let id = qr["qrcodeId"].as_str().expect("id").to_owned();
        let content = qr["qrcodeContent"].as_str().expect("content");
        self.app_scan_and_confirm(content).await;
        let ticket = self.wait_for(browser, &id, "confirmed").await["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned();
        (id, ticket)
    }

    /// Alice scans and confirms the QR with `content` in the Authing app.
    async fn app_scan_and_confirm(&self, content: &str) {
        let alice = self.fake.alice();
        self.fake.app_scan(content, &alice).await.expect("scan");
        self.fake
            .app_confirm(content, &alice)
            .await
            .expect("confirm");
    }

    /// Long-polls until the status is `want` (or fails the test); upstream errors on the way
    /// (a recovering Authing) are waited out.
    async fn wait_for(&self, browser: &Browser, id: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let response = self.status(browser, id, Some(1)).await;
            if response.status == 200 {
                let body = response.json();
                if body["status"] == want {
                    return body;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last = response.text;
        }
        panic!("status never became {want}; last: {last}");
    }

    /// Long-polls until the status request fails with `status`/`code`.
    async fn wait_for_error(&self, browser: &Browser, id: &str, status: u16, code: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let response = self.status(browser, id, Some(1)).await;
            if response.status == status {
                response.error(status, code);
                return;
            }
            if response.status != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last = response.text;
        }
        panic!("status never failed with {status} {code}; last: {last}");
    }

    async fn exchange(&self, browser: &Browser, ticket: &str) -> Resp {
        let request = self
            .http
            .post(format!("{}/qrcode/exchange", self.base))
            .json(&json!({ "ticket": ticket }));
        self.send(browser, request).await
    }

    async fn me(&self, cookie: Option<&str>, bearer: Option<&str>) -> Resp {
        let mut request = self.http.get(format!("{}/api/me", self.base));
        if let Some(c) = cookie {
            request = request.header(COOKIE, format!("{}={c}", self.session_name));
        }
        if let Some(t) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(&Browser { binding: None }, request).await
    }

    async fn fastpass(&self, bearer: Option<&str>, body: Option<Value>) -> Resp {
        let mut request = self.http.post(format!("{}/qrcode/fastpass", self.base));
        if let Some(t) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(&Browser { binding: None }, request).await
    }

    /// Nothing the browser received contains an Authing ticket, Authing's raw status fields or
    /// user details beyond nickname and photo (before the exchange's tokens).
    fn assert_no_upstream_leak(&self) {
        let seen = self.seen.lock().expect("seen");
        let tickets = self.fake.tickets_issued();
        for body in seen.iter() {
            for t in &tickets {
                assert!(!body.contains(t.as_str()), "Authing ticket in {body}");
            }
            for raw in [
                "briefUserInfo",
                "AUTHORIZED",
                "scannedUserId",
                "apiCode",
                "requestId",
            ] {
                assert!(!body.contains(raw), "Authing field {raw} in {body}");
            }
        }
    }
}

/// Runs `body` under [`TEST_DEADLINE`].
async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("test finished in time");
}

/// The whole login: QR, scan, confirm, exchange, authenticated request; returns qrauth's
/// ticket and the id_token.
async fn full_login(env: &Env) -> (String, String) {
    let fake = &env.fake;
    let alice = fake.alice();
    let mut browser = env.browser();
    let qr = env
        .generate(
            &mut browser,
            Some(json!({ "scene": "APP_AUTH", "userDefinedData": { "school": "pku" } })),
        )
        .await
        .ok(201);
    let id = qr["qrcodeId"].as_str().expect("qrcodeId").to_owned();
    let content = qr["qrcodeContent"].as_str().expect("content").to_owned();
    // The QR carries Authing's QR; the browser's id is qrauth's own.
    let upstream = FakeAuthing::qr_id_of(&content).expect("Authing id in the QR");
    assert!(fake.qrcodes_issued().contains(&upstream));
    assert_ne!(id, upstream);
    // Passed through: V3 `customData`, V2 `params` (js SDK 4.23.10).
    let gene = fake.last_gene_body().expect("gene body");
    let custom = if gene["scene"] == "APP_AUTH" {
        &gene["params"]
    } else {
        &gene["customData"]
    };
    assert_eq!(custom, &json!({ "school": "pku" }), "{gene}");

    let pending = env.status(&browser, &id, None).await.ok(200);
    assert_eq!(pending["status"], "pending");

    fake.app_scan(&content, &alice).await.expect("scan");
    let scanned = env.wait_for(&browser, &id, "scanned").await;
    assert_eq!(scanned["userInfo"]["nickname"], "Alice");
    assert_eq!(scanned["userInfo"]["photo"], alice.photo.as_str());
    assert_eq!(
        scanned["userInfo"].as_object().map(|o| o.len()),
        Some(2),
        "userInfo holds nickname and photo only: {scanned}"
    );
    assert!(scanned["ticket"].is_null());

    // Another browser that only knows the id learns nothing.
    env.status(&env.browser(), &id, None)
        .await
        .error(403, "not_bound");

    fake.app_confirm(&content, &alice).await.expect("confirm");
    let confirmed = env.wait_for(&browser, &id, "confirmed").await;
    assert_eq!(confirmed["success"], true);
    let ticket = confirmed["ticket"].as_str().expect("ticket").to_owned();
    assert!(
        !fake.tickets_issued().contains(&ticket),
        "qrauth's own ticket"
    );

    let tokens = env.exchange(&browser, &ticket).await;
    let body = tokens.ok(200);
    assert!(body["access_token"].is_string());
    // Authing's `expire_in` (V3) or the token's `exp` (V2) becomes `expires_in`.
    let expires_in = body["expires_in"].as_u64().expect("expires_in");
    assert!((7000..=7200).contains(&expires_in), "{body}");
    let id_token = body["id_token"].as_str().expect("id_token").to_owned();
    let claims = env
        .provider
        .verify(&id_token)
        .await
        .expect("id_token verifies");
    assert_eq!(claims.sub, alice.id);
    let session = tokens.cookie(&env.session_name).expect("session cookie");
    let me = env.me(Some(&session), None).await.ok(200);
    assert_eq!(me["sub"], alice.id.as_str());

    // Single use, and the QR can never log in again.
    env.exchange(&browser, &ticket)
        .await
        .error(400, "invalid_ticket");
    assert_eq!(
        fake.count("exchange-tokenset-with-qrcode-ticket") + fake.count("/api/v2/qrcode/userinfo"),
        1
    );
    env.assert_no_upstream_leak();
    (ticket, id_token)
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
    login_client_secret_post,
    login_client_secret_basic,
    login_none_opted_in,
    login_v2,
    login_hs256,
    cancel_on_the_phone,
    fifty_waiters_one_upstream_loop,
    fastpass_for_logged_in_user,
    fastpass_methods_and_paths,
    generate_refuses_foreign_fields,
    fault_gene_server_error,
    fault_gene_timeout,
    fault_gene_malformed_json,
    fault_gene_dropped_connection,
    fault_status_outage_then_recovery,
    fault_status_timeout,
    fault_unknown_qrcode,
    fault_expired_qrcode,
    fault_exchange_server_error,
    wrong_client_secret,
);

async fn login_client_secret_post(kind: Kind) {
    let env = env(kind, fake_config(AuthMethod::ClientSecretPost), |b| b).await;
    let _ = full_login(&env).await;
}

async fn login_client_secret_basic(kind: Kind) {
    let env = env(kind, fake_config(AuthMethod::ClientSecretBasic), |b| {
        b.token_auth_method(TokenAuthMethod::ClientSecretBasic)
    })
    .await;
    let _ = full_login(&env).await;
}

async fn login_none_opted_in(kind: Kind) {
    let env = env(kind, fake_config(AuthMethod::None), |b| {
        b.token_auth_method(TokenAuthMethod::None)
            .allow_none_auth(true)
    })
    .await;
    let _ = full_login(&env).await;
}

async fn login_v2(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| {
        b.api_version(ApiVersion::V2)
    })
    .await;
    let _ = full_login(&env).await;
    assert!(env.fake.count("/api/v2/qrcode/check") > 0);
    assert_eq!(env.fake.count("/api/v3/"), 0, "{:?}", env.fake.requests());
}

async fn login_hs256(kind: Kind) {
    let config = FakeConfig {
        id_token_alg: IdTokenAlg::Hs256,
        ..FakeConfig::default()
    };
    let env = env(kind, config, |b| b.hs256_id_tokens(true)).await;
    let _ = full_login(&env).await;
}

async fn cancel_on_the_phone(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let qr = env.generate(&mut browser, None).await.ok(201);
    let id = qr["qrcodeId"].as_str().expect("id");
    let content = qr["qrcodeContent"].as_str().expect("content");
    let alice = env.fake.alice();
    env.fake.app_scan(content, &alice).await.expect("scan");
    env.wait_for(&browser, id, "scanned").await;
    env.fake.app_cancel(content, &alice).await.expect("cancel");
    let cancelled = env.wait_for(&browser, id, "cancelled").await;
    assert_eq!(cancelled["canceled"], true);
    assert!(cancelled["ticket"].is_null());
    // The session ended: its upstream loop stops.
    tokio::time::sleep(UPSTREAM_INTERVAL * 3).await;
    assert_eq!(env.live_upstream_loops(), 0);
    env.assert_no_upstream_leak();
}

/// 50 tabs long-polling one session cause one upstream loop, and the loop stops once the
/// session ends.
async fn fifty_waiters_one_upstream_loop(kind: Kind) {
    let env = Arc::new(env(kind, FakeConfig::default(), |b| b).await);
    let mut browser = env.browser();
    let qr = env.generate(&mut browser, None).await.ok(201);
    let id = qr["qrcodeId"].as_str().expect("id").to_owned();
    let content = qr["qrcodeContent"].as_str().expect("content").to_owned();
    let before = env.fake.status_checks();
    let started = tokio::time::Instant::now();
    let mut tabs = Vec::new();
    for _ in 0..50 {
        let (env, browser, id) = (env.clone(), browser.clone(), id.clone());
        tabs.push(tokio::spawn(async move {
            env.status(&browser, &id, Some(2)).await.status
        }));
    }
    for tab in tabs {
        assert_eq!(tab.await.expect("tab"), 200);
    }
    let elapsed = started.elapsed();
    let checks = env.fake.status_checks() - before;
    // One loop at UPSTREAM_INTERVAL: about elapsed / interval checks, not 50 times that.
    let one_loop = (elapsed.as_millis() / UPSTREAM_INTERVAL.as_millis()) as u64 + 2;
    assert!(
        checks <= one_loop,
        "{checks} upstream checks in {elapsed:?} (one loop: <= {one_loop})"
    );
    assert!(checks >= 2, "the loop polls: {checks}");
    assert_eq!(env.upstream_loops_started(), 1);
    assert_eq!(env.live_upstream_loops(), 1);

    let alice = env.fake.alice();
    env.fake.app_scan(&content, &alice).await.expect("scan");
    env.fake
        .app_confirm(&content, &alice)
        .await
        .expect("confirm");
    let confirmed = env.wait_for(&browser, &id, "confirmed").await;
    let ticket = confirmed["ticket"].as_str().expect("ticket").to_owned();
    env.exchange(&browser, &ticket).await.ok(200);
    // The session ended: the loop is gone and Authing is not asked any more.
    tokio::time::sleep(UPSTREAM_INTERVAL * 3).await;
    assert_eq!(env.live_upstream_loops(), 0);
    let after = env.fake.status_checks();
    tokio::time::sleep(UPSTREAM_INTERVAL * 5).await;
    assert_eq!(
        env.fake.status_checks(),
        after,
        "no polling after the session ended"
    );
    env.assert_no_upstream_leak();
}

async fn fastpass_for_logged_in_user(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let alice = env.fake.alice();
    let token = env.fake.access_token_for(&alice);
    let options = json!({
        "scope": "openid profile",
        "context": { "source": "utm" },
        "customData": { "school": "pku", "age": "20" },
    });
    let body = env
        .fastpass(Some(&token), Some(options.clone()))
        .await
        .ok(200);
    assert!(body["qrcodeId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(body["user"]["id"], alice.id.as_str());
    assert_eq!(body["appId"], env.fake.config().app_id.as_str());
    assert_eq!(env.fake.last_fastpass_options(), Some(options));

    // Not logged in: 401 with a challenge, and Authing is not called.
    let calls = env.fake.count("gene-fastpass-qrcode-info");
    let anonymous = env.fastpass(None, None).await;
    anonymous.error(401, "invalid_token");
    assert!(anonymous.headers.contains_key(WWW_AUTHENTICATE));
    // A token of another application: refused locally.
    let foreign = env.fake.sign_id_token(
        IdTokenAlg::Rs256,
        &json!({ "sub": alice.id, "aud": "another-app", "iss": env.fake.issuer(),
                 "iat": now_secs(), "exp": now_secs() + 600 }),
    );
    env.fastpass(Some(&foreign), None)
        .await
        .error(401, "invalid_token");
    assert_eq!(env.fake.count("gene-fastpass-qrcode-info"), calls);
}

/// Fastpass answers POST only (405 with `Allow: POST` otherwise); other paths under `/qrcode/`
/// are qrauth's 404, and Authing is not called.
async fn fastpass_methods_and_paths(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let token = env.fake.access_token_for(&env.fake.alice());
    let get = env
        .send(
            &env.browser(),
            env.http
                .get(format!("{}/qrcode/fastpass", env.base))
                .header(AUTHORIZATION, format!("Bearer {token}")),
        )
        .await;
    get.error(405, "method_not_allowed");
    assert_eq!(
        get.headers.get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    assert_eq!(
        get.headers
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    env.send(
        &env.browser(),
        env.http.post(format!("{}/qrcode/fastpass/more", env.base)),
    )
    .await
    .error(404, "not_found");
    env.send(
        &env.browser(),
        env.http.post(format!("{}/qrcode/elsewhere", env.base)),
    )
    .await
    .error(404, "not_found");
    assert_eq!(env.fake.count("gene-fastpass-qrcode-info"), 0);
}

/// `POST /qrcode` takes Authing's `scene` (APP_AUTH only) and `userDefinedData` (an object of
/// at most 1 KiB) besides `nonce`; anything else is refused with 400 before Authing is called.
async fn generate_refuses_foreign_fields(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let refused = [
        json!({ "scene": "WEB_AUTH" }),
        json!({ "scene": 1 }),
        json!({ "userDefinedData": "pku" }),
        json!({ "userDefinedData": { "blob": "x".repeat(2000) } }),
        json!({ "colour": "blue" }),
    ];
    for body in refused {
        let response = env.generate(&mut browser, Some(body.clone())).await;
        response.error(400, "invalid_request");
        assert!(response.cookie(&env.binding_name).is_none(), "{body}");
    }
    let unknown = env
        .generate(&mut browser, Some(json!({ "colour": "blue" })))
        .await;
    assert!(
        unknown.json()["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("colour"))
    );
    assert_eq!(env.fake.count("gene-qrcode"), 0);
    assert_eq!(env.fake.count("/api/v2/qrcode/gene"), 0);
    // What is accepted: nothing, nulls, and the known fields.
    for body in [
        json!({}),
        json!({ "scene": null, "userDefinedData": null, "nonce": "n-1" }),
        json!({ "scene": "APP_AUTH", "userDefinedData": {} }),
    ] {
        env.generate(&mut browser, Some(body)).await.ok(201);
    }
}

async fn fault_gene(kind: Kind, faults: Faults, status: u16) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    env.fake.set_faults(faults);
    let mut browser = env.browser();
    let response = env.generate(&mut browser, None).await;
    response.error(status, "upstream_unavailable");
    assert!(response.cookie(&env.binding_name).is_none());
    assert_eq!(env.live_upstream_loops(), 0);
    // Authing recovers: the next QR works.
    env.fake.clear_faults();
    env.generate(&mut browser, None).await.ok(201);
}

async fn fault_gene_server_error(kind: Kind) {
    let faults = Faults {
        server_error: true,
        ..Faults::default()
    };
    fault_gene(kind, faults, 502).await;
}

async fn fault_gene_timeout(kind: Kind) {
    let faults = Faults {
        latency: Some(FAULT_LATENCY),
        ..Faults::default()
    };
    fault_gene(kind, faults, 504).await;
}

async fn fault_gene_malformed_json(kind: Kind) {
    let faults = Faults {
        malformed_json: true,
        ..Faults::default()
    };
    fault_gene(kind, faults, 502).await;
}

async fn fault_gene_dropped_connection(kind: Kind) {
    let faults = Faults {
        drop_connection: true,
        ..Faults::default()
    };
    fault_gene(kind, faults, 502).await;
}

/// Authing's status API fails: the browser sees 502, the session stays pending, and the login
/// completes once Authing is back.
async fn fault_status_outage_then_recovery(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let qr = env.generate(&mut browser, None).await.ok(201);
    let id = qr["qrcodeId"].as_str().expect("id");
    let content = qr["qrcodeContent"].as_str().expect("content");
    env.fake.set_faults(Faults {
        server_error: true,
        only: Some("check-qrcode-status".into()),
        ..Faults::default()
    });
    env.wait_for_error(&browser, id, 502, "upstream_unavailable")
        .await;
    env.fake.clear_faults();
    env.wait_for(&browser, id, "pending").await;
    env.app_scan_and_confirm(content).await;
    let confirmed = env.wait_for(&browser, id, "confirmed").await;
    let ticket = confirmed["ticket"].as_str().expect("ticket");
    env.exchange(&browser, ticket).await.ok(200);
}

async fn fault_status_timeout(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let qr = env.generate(&mut browser, None).await.ok(201);
    let id = qr["qrcodeId"].as_str().expect("id");
    env.fake.set_faults(Faults {
        latency: Some(FAULT_LATENCY),
        only: Some("check-qrcode-status".into()),
        ..Faults::default()
    });
    env.wait_for_error(&browser, id, 504, "upstream_unavailable")
        .await;
    env.fake.set_faults(Faults {
        malformed_json: true,
        only: Some("check-qrcode-status".into()),
        ..Faults::default()
    });
    env.wait_for_error(&browser, id, 502, "upstream_unavailable")
        .await;
    env.fake.clear_faults();
    env.wait_for(&browser, id, "pending").await;
}

async fn fault_unknown_qrcode(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let qr = env.generate(&mut browser, None).await.ok(201);
    let id = qr["qrcodeId"].as_str().expect("id");
    let content = qr["qrcodeContent"].as_str().expect("content");
    let upstream = FakeAuthing::qr_id_of(content).expect("upstream id");
    env.fake.forget_qrcode(&upstream);
    env.wait_for_error(&browser, id, 404, "unknown_qrcode")
        .await;
    // And it stays that way: the session cannot be confirmed any more.
    env.status(&browser, id, None)
        .await
        .error(404, "unknown_qrcode");
}

async fn fault_expired_qrcode(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let qr = env.generate(&mut browser, None).await.ok(201);
    let id = qr["qrcodeId"].as_str().expect("id");
    let content = qr["qrcodeContent"].as_str().expect("content");
    env.fake.expire_qrcodes();
    env.wait_for_error(&browser, id, 410, "expired_qrcode")
        .await;
    // The app can no longer scan it either.
    assert!(env.fake.app_scan(content, &env.fake.alice()).await.is_err());
    env.status(&browser, id, None)
        .await
        .error(410, "expired_qrcode");
}

/// Authing fails during the exchange: 502, and the login is not lost: the bound browser
/// presents the same ticket again once Authing is back, and gets its tokens exactly once.
async fn fault_exchange_server_error(kind: Kind) {
    let env = env(kind, FakeConfig::default(), |b| b).await;
    let mut browser = env.browser();
    let (id, ticket) = env.confirmed_by_alice(&mut browser).await;
    let id = id.as_str();
    env.fake.set_faults(Faults {
        server_error: true,
        only: Some("exchange-tokenset".into()),
        ..Faults::default()
    });
    env.exchange(&browser, &ticket)
        .await
        .error(502, "upstream_unavailable");
    let status = env.status(&browser, id, None).await.ok(200);
    assert_eq!(status["status"], "confirmed", "{status}");
    // Still bound: another browser presenting it burns it (checked by the redemption), so
    // only the bound browser's retry is tried here.
    env.fake.clear_faults();
    let tokens = env.exchange(&browser, &ticket).await.ok(200);
    assert!(tokens["id_token"].is_string(), "{tokens}");
    env.exchange(&browser, &ticket)
        .await
        .error(400, "invalid_ticket");
    let status = env.status(&browser, id, None).await.ok(200);
    assert_eq!(status["status"], "consumed");
    env.assert_no_upstream_leak();
}

/// The app secret qrauth holds is wrong: Authing refuses the client, the browser gets 502 (a
/// server misconfiguration, not the browser's fault).
async fn wrong_client_secret(kind: Kind) {
    let env = env_custom(kind, FakeConfig::default(), |fake| {
        let c = fake.config();
        AuthingProvider::builder(
            &c.app_id,
            "ffffffffffffffffffffffffffffffff",
            fake.base_url(),
            &c.user_pool_id,
        )
        .poll_interval(UPSTREAM_INTERVAL)
    })
    .await;
    let mut browser = env.browser();
    let (_, ticket) = env.confirmed_by_alice(&mut browser).await;
    env.exchange(&browser, &ticket)
        .await
        .error(502, "upstream_unavailable");
    env.assert_no_upstream_leak();
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn none_auth_refused_unless_opted_in() {
    let b = || {
        AuthingProvider::builder(
            "app",
            "0123456789abcdef0123456789abcdef",
            "https://x.authing.cn",
            "pool",
        )
    };
    let refused = b().token_auth_method(TokenAuthMethod::None).build();
    assert!(matches!(refused, Err(Error::Config(m)) if m.contains("none")));
    assert!(
        b().token_auth_method(TokenAuthMethod::None)
            .allow_none_auth(true)
            .build()
            .is_ok()
    );
    assert!(b().build().is_ok());
    // Plain HTTP only to loopback.
    assert!(
        AuthingProvider::builder("app", "s", "http://x.authing.cn", "pool")
            .build()
            .is_err()
    );
}

/// RS256 and HS256 id_tokens of the application verify; another application's (wrong `aud`),
/// another issuer's, and HS256 when not enabled do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_verification() {
    bounded(async {
        let fake = FakeAuthing::spawn(FakeConfig::default()).await.expect("fake");
        let alice = fake.alice();
        let rs = builder(&fake).build().expect("provider");
        let hs = builder(&fake).hs256_id_tokens(true).build().expect("provider");
        let claims = |aud: &str, iss: &str| {
            json!({ "sub": alice.id, "aud": aud, "iss": iss, "iat": now_secs(), "exp": now_secs() + 600 })
        };
        let app_id = fake.config().app_id.clone();
        let issuer = fake.issuer();

        let good_rs = fake.sign_id_token(IdTokenAlg::Rs256, &claims(&app_id, &issuer));
        assert_eq!(rs.verify(&good_rs).await.expect("RS256").sub, alice.id);
        let good_hs = fake.sign_id_token(IdTokenAlg::Hs256, &claims(&app_id, &issuer));
        assert_eq!(hs.verify(&good_hs).await.expect("HS256").sub, alice.id);
        assert!(matches!(
            rs.verify(&good_hs).await,
            Err(Error::InvalidToken(_))
        ));

        for provider in [&rs, &hs] {
            let wrong_aud = fake.sign_id_token(IdTokenAlg::Rs256, &claims("another-app", &issuer));
            assert!(matches!(
                provider.verify(&wrong_aud).await,
                Err(Error::InvalidToken(TokenError::WrongAudience))
            ));
            let wrong_iss =
                fake.sign_id_token(IdTokenAlg::Rs256, &claims(&app_id, "https://other.authing.cn/oidc"));
            assert!(matches!(
                provider.verify(&wrong_iss).await,
                Err(Error::InvalidToken(TokenError::WrongIssuer))
            ));
        }
        let hs_wrong_aud = fake.sign_id_token(IdTokenAlg::Hs256, &claims("another-app", &issuer));
        assert!(matches!(
            hs.verify(&hs_wrong_aud).await,
            Err(Error::InvalidToken(TokenError::WrongAudience))
        ));
    })
    .await;
}

/// The fake itself: Authing's ticket is single use and the exchange enforces the client
/// authentication method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_enforces_single_use_tickets_and_client_auth() {
    bounded(async {
        let fake = FakeAuthing::spawn(fake_config(AuthMethod::ClientSecretBasic))
            .await
            .expect("fake");
        let http = reqwest::Client::new();
        let gene: Value = http
            .post(format!("{}/api/v3/gene-qrcode", fake.base_url()))
            .header("x-authing-app-id", &fake.config().app_id)
            .json(&json!({ "type": "MOBILE_APP" }))
            .send()
            .await
            .expect("gene")
            .json()
            .await
            .expect("json");
        let qr = gene["data"]["qrcodeId"].as_str().expect("qrcodeId");
        let content = json!({ "qrcodeId": qr }).to_string();
        let alice = fake.alice();
        fake.app_scan(&content, &alice).await.expect("scan");
        fake.app_confirm(&content, &alice).await.expect("confirm");
        let status: Value = http
            .get(format!(
                "{}/api/v3/check-qrcode-status?qrcodeId={qr}",
                fake.base_url()
            ))
            .send()
            .await
            .expect("check")
            .json()
            .await
            .expect("json");
        assert_eq!(status["data"]["status"], "AUTHORIZED");
        let ticket = status["data"]["ticket"].as_str().expect("ticket");
        let exchange = |auth: Option<String>| {
            let mut request = http
                .post(format!(
                    "{}/api/v3/exchange-tokenset-with-qrcode-ticket",
                    fake.base_url()
                ))
                .header(CONTENT_TYPE, "application/json")
                .body(json!({ "ticket": ticket }).to_string());
            if let Some(auth) = auth {
                request = request.header(AUTHORIZATION, auth);
            }
            async move {
                request
                    .send()
                    .await
                    .expect("exchange")
                    .json::<Value>()
                    .await
                    .expect("json")
            }
        };
        let unauthenticated = exchange(None).await;
        assert_eq!(unauthenticated["statusCode"], 401);
        let first = exchange(Some(fake.basic_credentials())).await;
        assert_eq!(first["statusCode"], 200, "{first}");
        assert_eq!(first["data"]["token_type"], "bearer");
        assert!(first["data"]["expire_in"].is_u64());
        let second = exchange(Some(fake.basic_credentials())).await;
        assert_eq!(second["statusCode"], 400, "{second}");
        assert_eq!(
            second["apiCode"],
            qrauth_fake_authing::API_CODE_INVALID_TICKET
        );
    })
    .await;
}

/// Upstream requests per completed login: qrauth's coalesced loop vs each tab polling Authing
/// directly every 800 ms (what Authing's web SDK does), measured at the fake in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measure_upstream_requests_per_login() {
    bounded(async {
        let one = measure_login(1).await;
        let three = measure_login(3).await;
        eprintln!(
            "upstream requests per login (gene + status checks + exchange), phone confirms \
             after 4 s: 1 tab: qrauth {} vs direct {}; 3 tabs: qrauth {} vs direct {}",
            one.0, one.1, three.0, three.1
        );
        // One tab: the same order of cost (both poll every 800 ms); several: qrauth stays flat.
        assert!(one.0 <= one.1 + 3, "{one:?}");
        assert!(three.0 <= one.0 + 2, "{three:?} vs {one:?}");
        assert!(three.0 * 2 <= three.1, "{three:?}");
    })
    .await;
}

/// (qrauth, direct) upstream requests for one login with `tabs` tabs waiting.
async fn measure_login(tabs_open: usize) -> (usize, usize) {
    {
        const PHONE_DELAY: Duration = Duration::from_secs(4);
        let tabs_n = tabs_open;
        let env = Arc::new(
            env(Kind::Axum, FakeConfig::default(), |b| {
                b.poll_interval(Duration::from_millis(800))
            })
            .await,
        );
        // qrauth: TABS tabs long-poll one session; the phone confirms after PHONE_DELAY.
        let before = env.fake.requests().len();
        let mut browser = env.browser();
        let qr = env.generate(&mut browser, None).await.ok(201);
        let id = qr["qrcodeId"].as_str().expect("id").to_owned();
        let content = qr["qrcodeContent"].as_str().expect("content").to_owned();
        let mut tabs = Vec::new();
        for _ in 0..tabs_n {
            let (env, browser, id) = (env.clone(), browser.clone(), id.clone());
            tabs.push(tokio::spawn(async move {
                env.wait_for(&browser, &id, "confirmed").await
            }));
        }
        tokio::time::sleep(PHONE_DELAY).await;
        let alice = env.fake.alice();
        env.fake.app_scan(&content, &alice).await.expect("scan");
        env.fake
            .app_confirm(&content, &alice)
            .await
            .expect("confirm");
        let mut ticket = String::new();
        for tab in tabs {
            ticket = tab.await.expect("tab")["ticket"]
                .as_str()
                .expect("ticket")
                .to_owned();
        }
        env.exchange(&browser, &ticket).await.ok(200);
        let qrauth_requests = env.fake.requests()[before..]
            .iter()
            .filter(|r| !r.contains("set-qrcode-status"))
            .count();

        // Direct: every tab polls Authing's status every 800 ms until authorized.
        let before = env.fake.requests().len();
        let http = reqwest::Client::new();
        let base = env.fake.base_url().to_owned();
        let app_id = env.fake.config().app_id.clone();
        let gene: Value = http
            .post(format!("{base}/api/v3/gene-qrcode"))
            .header("x-authing-app-id", &app_id)
            .json(&json!({ "type": "MOBILE_APP" }))
            .send()
            .await
            .expect("gene")
            .json()
            .await
            .expect("json");
        let qr = gene["data"]["qrcodeId"].as_str().expect("id").to_owned();
        let mut tabs = Vec::new();
        for _ in 0..tabs_n {
            let (http, base, qr) = (http.clone(), base.clone(), qr.clone());
            tabs.push(tokio::spawn(async move {
                loop {
                    let status: Value = http
                        .get(format!("{base}/api/v3/check-qrcode-status?qrcodeId={qr}"))
                        .send()
                        .await
                        .expect("check")
                        .json()
                        .await
                        .expect("json");
                    if status["data"]["status"] == "AUTHORIZED" {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(800)).await;
                }
            }));
        }
        tokio::time::sleep(PHONE_DELAY).await;
        let content = json!({ "qrcodeId": qr }).to_string();
        env.fake.app_scan(&content, &alice).await.expect("scan");
        env.fake
            .app_confirm(&content, &alice)
            .await
            .expect("confirm");
        for tab in tabs {
            tab.await.expect("tab");
        }
        // One tab exchanges (server-side, in Authing's SDK flow too).
        let direct_requests = env.fake.requests()[before..]
            .iter()
            .filter(|r| !r.contains("set-qrcode-status"))
            .count()
            + 1;
        (qrauth_requests, direct_requests)
    }
}

/// A QR nobody polls any more: its upstream loop stops after the linger time (two plain-poll
/// intervals plus a second), and Authing is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_stops_when_nobody_waits() {
    bounded(async {
        let env = env(Kind::Axum, FakeConfig::default(), |b| b).await;
        let mut browser = env.browser();
        let qr = env.generate(&mut browser, None).await.ok(201);
        let id = qr["qrcodeId"].as_str().expect("id");
        env.status(&browser, id, None).await.ok(200);
        assert_eq!(env.live_upstream_loops(), 1);
        // Lifetimes' poll interval is 1 s in these tests: linger = 2 s + 1 s.
        tokio::time::sleep(Duration::from_millis(4500)).await;
        assert_eq!(env.live_upstream_loops(), 0);
        let checks = env.fake.status_checks();
        tokio::time::sleep(UPSTREAM_INTERVAL * 4).await;
        assert_eq!(env.fake.status_checks(), checks);
        // A new poll starts a new loop, and the session still works.
        let body = env.status(&browser, id, None).await.ok(200);
        assert_eq!(body["status"], "pending");
        assert_eq!(env.live_upstream_loops(), 1);
        assert_eq!(env.upstream_loops_started(), 2);
    })
    .await;
}

/// The event stream gets scanned and confirmed pushed from the upstream loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_follows_authing() {
    bounded(async {
        let env = env(Kind::Axum, FakeConfig::default(), |b| b).await;
        let mut browser = env.browser();
        let qr = env.generate(&mut browser, None).await.ok(201);
        let id = qr["qrcodeId"].as_str().expect("id");
        let content = qr["qrcodeContent"].as_str().expect("content");
        let response = env
            .http
            .get(format!("{}/qrcode/events?qrcodeId={id}", env.base))
            .header(
                COOKIE,
                format!(
                    "{}={}",
                    env.binding_name,
                    browser.binding.clone().expect("bound")
                ),
            )
            .send()
            .await
            .expect("events");
        assert_eq!(response.status(), 200);
        env.app_scan_and_confirm(content).await;
        let mut response = response;
        let mut text = String::new();
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"confirmed\"") {
                break;
            }
        }
        assert!(text.contains("\"confirmed\""), "{text}");
        for t in env.fake.tickets_issued() {
            assert!(
                !text.contains(t.as_str()),
                "Authing ticket in the event stream"
            );
        }
    })
    .await;
}

/// V2 pools: an unknown QR is `code 2241` in a V2 envelope, and reaches the browser as
/// `404 unknown_qrcode`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_unknown_qrcode() {
    bounded(async {
        let env = env(Kind::Axum, FakeConfig::default(), |b| {
            b.api_version(ApiVersion::V2)
        })
        .await;
        let mut browser = env.browser();
        let qr = env.generate(&mut browser, None).await.ok(201);
        let id = qr["qrcodeId"].as_str().expect("id");
        let content = qr["qrcodeContent"].as_str().expect("content");
        let upstream = FakeAuthing::qr_id_of(content).expect("random");
        env.fake.forget_qrcode(&upstream);
        env.wait_for_error(&browser, id, 404, "unknown_qrcode")
            .await;
    })
    .await;
}

/// Logs at every level during a login and a failed exchange hold no secret: not the app
/// secret, not Authing's tickets, not qrauth's ticket, not the tokens.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_logs() {
    let (capture, _guard) = qrauth_test_support::LogCapture::start();
    bounded(async {
        let env = env(
            Kind::Axum,
            fake_config(AuthMethod::ClientSecretBasic),
            |b| b.token_auth_method(TokenAuthMethod::ClientSecretBasic),
        )
        .await;
        let (ticket, id_token) = full_login(&env).await;
        // An upstream failure is logged (with Authing's message), still without secrets.
        env.fake.set_faults(Faults {
            server_error: true,
            only: Some("gene-qrcode".into()),
            ..Faults::default()
        });
        let mut browser = env.browser();
        env.generate(&mut browser, None)
            .await
            .error(502, "upstream_unavailable");
        let logs = capture.text();
        assert!(logs.contains("Authing QR login completed"), "capture works");
        assert!(
            logs.contains("Authing call failed"),
            "upstream failures are logged"
        );
        let secrets = [
            env.fake.config().app_secret.clone(),
            env.fake.basic_credentials(),
            ticket,
            id_token,
        ];
        for secret in secrets.iter().chain(env.fake.tickets_issued().iter()) {
            assert!(!logs.contains(secret.as_str()), "secret in logs");
        }
    })
    .await;
}

/// Two replicas sharing one Redis: the browser creates the QR on A and waits on B; B's upstream
/// loop records Authing's confirmation (and Authing's ticket) in Redis; A serves the ticket and
/// exchanges Authing's ticket it never saw itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_session_through_redis() {
    let redis = RedisServer::start();
    bounded(async {
        let fake = Arc::new(
            FakeAuthing::spawn(FakeConfig::default())
                .await
                .expect("fake"),
        );
        let replica = || builder(&fake).build().expect("provider");
        let store_a: Arc<dyn SessionStore> =
            Arc::new(RedisStore::connect(&redis.url()).await.expect("redis A"));
        let store_b: Arc<dyn SessionStore> =
            Arc::new(RedisStore::connect(&redis.url()).await.expect("redis B"));
        let a = env_on(Kind::Axum, fake.clone(), replica(), store_a).await;
        let b = env_on(Kind::Actix, fake.clone(), replica(), store_b).await;
        assert_eq!(a.binding_name, b.binding_name);

        let mut browser = a.browser();
        let qr = a.generate(&mut browser, None).await.ok(201);
        let id = qr["qrcodeId"].as_str().expect("id").to_owned();
        let content = qr["qrcodeContent"].as_str().expect("content").to_owned();
        // Waiting on B; the phone confirms meanwhile.
        let waiting = {
            let browser = browser.clone();
            let id = id.clone();
            tokio::spawn(async move { b.wait_for(&browser, &id, "confirmed").await })
        };
        let alice = fake.alice();
        fake.app_scan(&content, &alice).await.expect("scan");
        fake.app_confirm(&content, &alice).await.expect("confirm");
        let confirmed = waiting.await.expect("B waited");
        let ticket = confirmed["ticket"].as_str().expect("ticket");
        let tokens = a.exchange(&browser, ticket).await.ok(200);
        let id_token = tokens["id_token"].as_str().expect("id_token");
        assert_eq!(
            a.provider.verify(id_token).await.expect("verifies").sub,
            alice.id
        );
        a.assert_no_upstream_leak();
    })
    .await;
}

/// Providers without fastpass (the built-in one) answer the route with qrauth's 404 JSON, on
/// both adapters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fastpass_not_supported_by_builtin_provider() {
    bounded(async {
        for kind in [
            qrauth_tests::ServerKind::Axum,
            qrauth_tests::ServerKind::Actix,
        ] {
            let server = qrauth_tests::spawn(kind, qrauth_tests::ServerOptions::default()).await;
            let response = reqwest::Client::new()
                .post(server.url("/qrcode/fastpass"))
                .header(AUTHORIZATION, "Bearer whatever")
                .send()
                .await
                .expect("fastpass");
            assert_eq!(response.status(), 404, "{kind:?}");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body["error"], "not_found", "{kind:?}");
        }
    })
    .await;
}
