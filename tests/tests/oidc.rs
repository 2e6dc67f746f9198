//! The device-grant provider (`qrauth-oidc`) through both adapters against a real OpenID
//! Provider: panva's `oidc-provider` (npm, pinned in `tests/oidc-provider`) with the device
//! flow, on loopback. The phone is an HTTP client on the OP's own pages. Nothing of qrauth or
//! the OP is mocked; the OP's test controls only count requests, rotate its key, advertise a
//! short `interval`, drop `verification_uri_complete` or answer `slow_down`.
//!
//! The OP advertises `interval: 1` in these tests (a real OP's setting, RFC 8628 §3.2) so that a
//! login takes about a second, not five.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qrauth_core::store::{MemoryStore, RedisStore, SessionStore};
use qrauth_core::{Lifetimes, Limits, ManualClock, QrAuthProvider, QrAuthService};
use qrauth_oidc::{ClientAuth, DeviceGrantProvider, DeviceGrantProviderBuilder};
use qrauth_test_support::oidc_provider::{
    CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, OpOptions, PUBLIC_CLIENT,
};
use qrauth_test_support::{DevicePhone, Framework as Kind, OidcProvider, RedisServer, Served};
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

/// No test may take longer than this.
const TEST_DEADLINE: Duration = Duration::from_secs(90);

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
        assert_eq!(self.json()["error"], code, "body: {}", self.text);
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

/// One qrauth server (a replica) on the device-grant provider.
struct App {
    base: String,
    service: QrAuthService,
    provider: Arc<DeviceGrantProvider>,
    _served: Served,
}

/// The OP, one or more qrauth replicas, and what every browser received.
struct Env {
    op: OidcProvider,
    apps: Vec<App>,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Default)]
struct Browser {
    binding: Option<String>,
}

fn builder(op: &OidcProvider) -> DeviceGrantProviderBuilder {
    DeviceGrantProvider::builder(op.issuer(), CONFIDENTIAL_CLIENT)
        .client_secret(CONFIDENTIAL_SECRET)
        .timeouts(Duration::from_secs(5), Duration::from_secs(2))
}

async fn app(kind: Kind, provider: DeviceGrantProvider, store: Arc<dyn SessionStore>) -> App {
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
    App {
        base,
        service,
        provider,
        _served: served,
    }
}

impl Env {
    /// An OP advertising `interval: 1` and one qrauth server of `kind` on it.
    async fn new(kind: Kind) -> Self {
        Self::with(kind, OpOptions::default(), |b| b).await
    }

    async fn with(
        kind: Kind,
        options: OpOptions,
        tweak: impl FnOnce(DeviceGrantProviderBuilder) -> DeviceGrantProviderBuilder,
    ) -> Self {
        let op = OidcProvider::start_with(&options);
        op.advertise_interval(1).await;
        let provider = tweak(builder(&op)).build().expect("provider");
        let app = app(kind, provider, Arc::new(MemoryStore::new())).await;
        Self::of(op, vec![app])
    }

    fn of(op: OidcProvider, apps: Vec<App>) -> Self {
        Self {
            op,
            apps,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            seen: Arc::default(),
        }
    }

    fn app(&self, replica: usize) -> &App {
        &self.apps[replica]
    }

    async fn send(
        &self,
        browser: &Browser,
        replica: usize,
        request: reqwest::RequestBuilder,
    ) -> Resp {
        let name = self.app(replica).service.cookies().binding_name();
        let request = match &browser.binding {
            Some(b) => request.header(COOKIE, format!("{name}={b}")),
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

    /// `POST /qrcode` at `replica`; keeps the binding cookie.
    async fn generate(&self, browser: &mut Browser, replica: usize) -> Resp {
        let request = self.http.post(format!("{}/qrcode", self.app(replica).base));
        let response = self.send(browser, replica, request).await;
        let name = self.app(replica).service.cookies().binding_name();
        if let Some(cookie) = response.cookie(&name) {
            browser.binding = Some(cookie);
        }
        response
    }

    async fn status(&self, browser: &Browser, replica: usize, id: &str, wait: Option<u64>) -> Resp {
        let query = match wait {
            Some(w) => format!("qrcodeId={id}&wait={w}"),
            None => format!("qrcodeId={id}"),
        };
        let request = self
            .http
            .get(format!("{}/qrcode/status?{query}", self.app(replica).base));
        self.send(browser, replica, request).await
    }

    /// Long-polls `replica` until the status is `want`.
    async fn wait_for(&self, browser: &Browser, replica: usize, id: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let response = self.status(browser, replica, id, Some(2)).await;
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

    /// Long-polls `replica` until the status request fails with `status`/`code`.
    async fn wait_for_error(
        &self,
        browser: &Browser,
        replica: usize,
        id: &str,
        status: u16,
        code: &str,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let response = self.status(browser, replica, id, Some(2)).await;
            if response.status == status {
                response.error(status, code);
                return;
            }
            assert_eq!(response.status, 200, "{}", response.text);
            last = response.text;
        }
        panic!("status never failed with {status} {code}; last: {last}");
    }

    async fn exchange(&self, browser: &Browser, replica: usize, ticket: &str) -> Resp {
        let request = self
            .http
            .post(format!("{}/qrcode/exchange", self.app(replica).base))
            .json(&json!({ "ticket": ticket }));
        self.send(browser, replica, request).await
    }

    async fn me(&self, replica: usize, cookie: Option<&str>, bearer: Option<&str>) -> Resp {
        let app = self.app(replica);
        let mut request = self.http.get(format!("{}/api/me", app.base));
        if let Some(c) = cookie {
            request = request.header(
                COOKIE,
                format!("{}={c}", app.service.cookies().session_name()),
            );
        }
        if let Some(t) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(&Browser::default(), replica, request).await
    }

    /// A QR at `replica` for `browser`: (qrcodeId, qrcodeContent, userCode).
    async fn qr(&self, browser: &mut Browser, replica: usize) -> (String, String, String) {
        let qr = self.generate(browser, replica).await.ok(201);
        let field = |name: &str| {
            qr[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {qr}"))
                .to_owned()
        };
        (field("qrcodeId"), field("qrcodeContent"), field("userCode"))
    }
}

/// Runs `body` under [`TEST_DEADLINE`].
async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("test finished in time");
}

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

/// Logs at every level during a login and an IdP refusal hold no secret (client secret, its
/// Basic credentials, device code, IdP tokens, qrauth's ticket); the refusal's OAuth error goes
/// to the log, never to the browser.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_logs_and_idp_errors_only_there() {
    use base64::Engine as _;
    let (capture, _guard) = qrauth_test_support::LogCapture::start();
    bounded(async {
        let env = Env::new(Kind::Axum).await;
        let mut browser = Browser::default();
        let (id, content, user_code) = env.qr(&mut browser, 0).await;
        let qr_id = qrauth_core::QrCodeId::parse(&id).expect("id");
        let data = env.app(0).service.upstream().session(&qr_id).await;
        let data = data
            .expect("store")
            .expect("session")
            .provider_data
            .expect("data");
        let device_code = serde_json::from_str::<Value>(&data).expect("state")["dc"]
            .as_str()
            .expect("device code")
            .to_owned();
        DevicePhone::new()
            .approve(&content, &user_code, "heidi")
            .await;
        let ticket = env.wait_for(&browser, 0, &id, "confirmed").await["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned();
        let body = env.exchange(&browser, 0, &ticket).await.ok(200);

        // A replica with a wrong secret: the OP refuses with `invalid_client`.
        let wrong = DeviceGrantProvider::builder(env.op.issuer(), CONFIDENTIAL_CLIENT)
            .client_secret("not-the-secret-0123456789")
            .build()
            .expect("provider");
        let other = app(Kind::Axum, wrong, Arc::new(MemoryStore::new())).await;
        let env = Env::of(env.op, vec![other]);
        let refused = env.generate(&mut Browser::default(), 0).await;
        refused.error(502, "upstream_unavailable");
        assert!(!refused.text.contains("invalid_client"), "{}", refused.text);

        let logs = capture.text();
        assert!(
            logs.contains("device-grant QR login completed"),
            "capture works"
        );
        assert!(logs.contains("invalid_client"), "the IdP's error is logged");
        let basic = |secret: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CONFIDENTIAL_CLIENT}:{secret}"))
        };
        let secrets = [
            CONFIDENTIAL_SECRET.to_owned(),
            basic(CONFIDENTIAL_SECRET),
            "not-the-secret-0123456789".to_owned(),
            device_code,
            ticket,
            body["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            body["id_token"].as_str().expect("id token").to_owned(),
        ];
        for secret in &secrets {
            assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        }
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
