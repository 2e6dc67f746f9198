//! The harness of qrauth's HTTP conformance suite.
//!
//! [`spawn`] serves exactly the demo app (`axum_demo::app` or `actix_demo::configure`) on a
//! loopback port, with a qrauth service built the way `demo_common::demo_service` builds it
//! (plus the knobs tests need: a short QR lifetime, secure cookies, a known signing key, another
//! issuer). [`Browser`] and [`Phone`] are HTTP clients that play the two sides of a login; the
//! browser keeps its binding cookie by hand so that tests can inspect, replay or omit it.
//!
//! Every server keeps its sessions in a [`MemoryStore`] or, with [`StoreKind::Redis`], in a
//! `RedisStore` on a real `redis-server` (its own, started on a free loopback port and killed
//! with the server, or one shared by several replicas through [`ServerOptions::redis`]).
//!
//! The tests themselves live in `tests/conformance.rs`, where one macro expands them once per
//! adapter and store.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use demo_common::DemoPhoneAuthenticator;
use qrauth_core::store::{MemoryStore, RedisStore, SessionStore};
use qrauth_core::{
    BuiltinProvider, Lifetimes, Limits, QrAuthService, SigningAlgorithm, SigningKey,
};

/// The demo's audience (`aud` of issued id_tokens).
pub const AUDIENCE: &str = "qrauth-demo";
/// The demo's app name (shown on the phone's confirm screen).
pub const APP_NAME: &str = "qrauth demo";
/// The content type of every JSON response.
pub const JSON_CT: &str = "application/json; charset=utf-8";
/// The browser's User-Agent: Chrome on Windows.
pub const BROWSER_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
/// The phone's User-Agent: Safari on iOS (deliberately not the browser's).
pub const PHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
/// Default timeout of every client request.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Timeout of clients that long-poll or read event streams (longer than any wait a test uses).
pub const STREAM_TIMEOUT: Duration = Duration::from_secs(25);

/// The web framework a test server runs on.
pub use qrauth_test_support::Framework as ServerKind;
pub use qrauth_test_support::{RedisBackend, RedisServer};

mod browser;
pub mod chromium;
mod graceful;
mod http;
mod phone;
mod sse;
mod status;
mod util;

pub use browser::{Browser, Qr};
pub use graceful::{
    GracefulServer, ServerSockets, open_fds, open_sockets, server_sockets, spawn_graceful,
};
pub use http::{Resp, SetCookie, client};
pub use phone::Phone;
pub use sse::{SseEvent, SseReader};
pub use status::{STATUS_KEYS, assert_status_shape, version};
pub use util::{jwt_header, jwt_payload, login, now_millis, now_secs, unknown_id, url_encode};

/// Where a test server keeps its sessions and its abuse-limit counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `MemoryStore` and `MemoryRateLimiter`.
    Memory,
    /// `RedisStore` and `RedisRateLimiter`.
    Redis,
    /// The same on a Redis Cluster (3 primaries) of the server's own, unless
    /// [`ServerOptions::redis_cluster`] names one.
    RedisCluster,
}

/// What a test server runs on: a web framework and a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The web framework.
    pub server: ServerKind,
    /// The store.
    pub store: StoreKind,
}

impl Target {
    /// `server` on a `RedisStore` on a Redis Cluster of its own.
    pub const fn redis_cluster(server: ServerKind) -> Self {
        Self {
            server,
            store: StoreKind::RedisCluster,
        }
    }

    /// `server` on a `RedisStore`.
    pub const fn redis(server: ServerKind) -> Self {
        Self {
            server,
            store: StoreKind::Redis,
        }
    }
}

impl From<ServerKind> for Target {
    fn from(server: ServerKind) -> Self {
        Self {
            server,
            store: StoreKind::Memory,
        }
    }
}

/// How to build a test server's qrauth service.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// QR lifetime (default: the library default, 120 s); may be as short as 1 s.
    pub qr_lifetime: Option<Duration>,
    /// How often the QR rotates (default: the library's 30 s; 10–30 s).
    pub qr_rotation: Option<Duration>,
    /// Keep `Secure` cookies with the `__Host-` prefix (default: off, as for plain-HTTP dev).
    pub secure_cookies: bool,
    /// The signing key (default: one RS256 key shared by the whole test process).
    pub signing_key: Option<SigningKey>,
    /// The issuer (default: the server's own base URL).
    pub issuer: Option<String>,
    /// Abuse limits (default: none, so that tests may poll as fast as they like).
    pub limits: Option<Limits>,
    /// The Redis to keep sessions in (implies [`StoreKind::Redis`]); default: with
    /// `StoreKind::Redis`, a `redis-server` of the server's own.
    pub redis_url: Option<String>,
    /// A Redis Cluster's seed node URLs to keep sessions in instead (wins over `redis_url`).
    pub redis_cluster: Option<Vec<String>>,
    /// Bound on every Redis call (default 2 s).
    pub redis_timeout: Option<Duration>,
    /// How long finished sessions stay readable (default: the library's 30 s).
    pub retention_grace: Option<Duration>,
    /// Ticket lifetime (default: the library's 60 s); sessions are kept until their last
    /// possible ticket expired, plus the retention grace.
    pub ticket_lifetime: Option<Duration>,
    /// Other issuers whose id_tokens `AuthenticatedUser` accepts (the application's own IdP).
    pub other_issuers: Vec<qrauth_core::IssuerConfig>,
    /// The application's own error responses (`QrAuthServiceBuilder::render_errors`).
    pub render_errors: Option<RenderErrors>,
    /// The clock of the service and the provider (default: the system clock), for lifetimes
    /// of days without waiting.
    pub clock: Option<Arc<qrauth_core::ManualClock>>,
    /// Signed-in session lifetimes: id_token, absolute, idle (default: the library's).
    pub signed_in: Option<(Duration, Duration, Duration)>,
    /// The binding-cookie MAC key (default: [`TEST_BINDING_KEY`], shared by every test server
    /// as replicas of one deployment share theirs).
    pub binding_key: Option<[u8; 32]>,
    /// Reverse proxies whose `X-Forwarded-For` the server believes (default: none).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Number matching for logins at this risk level or above, as the default signal judges
    /// them (`QrAuthServiceBuilder::number_matching_from`; default: never).
    pub number_matching_from: Option<qrauth_core::risk::RiskLevel>,
}

/// The binding key of test servers unless [`ServerOptions::binding_key`] says otherwise.
pub const TEST_BINDING_KEY: [u8; 32] = [0x5a; 32];

/// An error renderer for [`ServerOptions::render_errors`].
pub type ErrorRenderer =
    dyn Fn(&qrauth_core::ErrorContext<'_>) -> Option<qrauth_core::ApiResponse> + Send + Sync;

/// A shared [`ErrorRenderer`] (cloneable, and `Debug` for the options).
#[derive(Clone)]
pub struct RenderErrors(pub Arc<ErrorRenderer>);

impl std::fmt::Debug for RenderErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RenderErrors")
    }
}

impl ServerOptions {
    /// Options with this QR lifetime.
    pub fn qr_lifetime(mut self, lifetime: Duration) -> Self {
        self.qr_lifetime = Some(lifetime);
        self
    }

    /// Options with this QR rotation period.
    pub fn qr_rotation(mut self, every: Duration) -> Self {
        self.qr_rotation = Some(every);
        self
    }

    /// Options with these abuse limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Options with secure (`__Host-`) cookies.
    pub fn secure_cookies(mut self) -> Self {
        self.secure_cookies = true;
        self
    }

    /// Options with this signing key.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// Options with this issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Options that keep sessions in the Redis at `url` (e.g. one shared by two replicas).
    pub fn redis(mut self, url: impl Into<String>) -> Self {
        self.redis_url = Some(url.into());
        self
    }

    /// Options that keep sessions in the Redis Cluster with these seed nodes.
    pub fn redis_cluster(mut self, nodes: Vec<String>) -> Self {
        self.redis_cluster = Some(nodes);
        self
    }

    /// Options with this retention of finished sessions.
    pub fn retention_grace(mut self, grace: Duration) -> Self {
        self.retention_grace = Some(grace);
        self
    }

    /// Options with this ticket lifetime.
    pub fn ticket_lifetime(mut self, lifetime: Duration) -> Self {
        self.ticket_lifetime = Some(lifetime);
        self
    }

    /// Options that also accept id_tokens of `issuer`.
    pub fn accept_issuer(mut self, issuer: qrauth_core::IssuerConfig) -> Self {
        self.other_issuers.push(issuer);
        self
    }

    /// Options whose service renders its errors with `render`.
    pub fn render_errors(
        mut self,
        render: impl Fn(&qrauth_core::ErrorContext<'_>) -> Option<qrauth_core::ApiResponse>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.render_errors = Some(RenderErrors(Arc::new(render)));
        self
    }

    /// Options whose service and provider run on `clock`.
    pub fn clock(mut self, clock: Arc<qrauth_core::ManualClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Options with these signed-in lifetimes: id_token, absolute, idle.
    pub fn signed_in(mut self, id_token: Duration, absolute: Duration, idle: Duration) -> Self {
        self.signed_in = Some((id_token, absolute, idle));
        self
    }

    /// Options with this binding-cookie MAC key.
    pub fn binding_key(mut self, key: [u8; 32]) -> Self {
        self.binding_key = Some(key);
        self
    }

    /// Options that believe `X-Forwarded-For` from these proxies.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = std::net::IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Options with this bound on every Redis call.
    pub fn redis_timeout(mut self, timeout: Duration) -> Self {
        self.redis_timeout = Some(timeout);
        self
    }
}

/// The key prefix of the test servers' Redis keys.
pub const REDIS_PREFIX: &str = "qrauth-test:";

/// The RS256 key (the demo's algorithm) that servers sign with unless told otherwise; generated
/// once because RSA key generation is slow.
pub fn shared_signing_key() -> SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate(SigningAlgorithm::Rs256).expect("RS256 key"))
        .clone()
}

/// A fresh ES256 key (fast to generate).
pub fn fresh_signing_key() -> SigningKey {
    SigningKey::generate(SigningAlgorithm::Es256).expect("ES256 key")
}

/// Builds the qrauth service of a server reachable at `base`, like `demo_common::demo_service`:
/// on a `RedisStore` (with a `RedisRateLimiter`) when `options.redis_url` is set, else in
/// memory.
pub async fn build_service(base: &str, options: &ServerOptions) -> QrAuthService {
    let mut lifetimes = Lifetimes::default();
    if let Some(lifetime) = options.qr_lifetime {
        lifetimes = lifetimes.allow_short_for_tests().qr_code(lifetime);
    }
    if let Some(every) = options.qr_rotation {
        lifetimes = lifetimes.qr_rotation(every);
    }
    if let Some(grace) = options.retention_grace {
        lifetimes = lifetimes.retention_grace(grace);
    }
    if let Some(ticket) = options.ticket_lifetime {
        lifetimes = lifetimes.ticket(ticket);
    }
    if let Some((id_token, absolute, idle)) = options.signed_in {
        lifetimes = lifetimes
            .allow_short_for_tests()
            .id_token(id_token)
            .signed_in(absolute)
            .idle_timeout(idle);
    }
    let redis_builder = match (&options.redis_cluster, &options.redis_url) {
        (Some(nodes), _) => Some(RedisStore::cluster(nodes.iter().cloned())),
        (None, Some(url)) => Some(RedisStore::builder(url.as_str())),
        (None, None) => None,
    };
    let store: Arc<dyn SessionStore> = match redis_builder {
        Some(redis) => {
            let mut redis = redis
                .key_prefix(REDIS_PREFIX)
                .command_timeout(options.redis_timeout.unwrap_or(Duration::from_secs(2)));
            if let Some(clock) = &options.clock {
                redis = redis.clock(clock.clone() as qrauth_core::SharedClock);
            }
            Arc::new(
                redis
                    .connect()
                    .await
                    .expect("connect to the test redis-server"),
            )
        }
        None => {
            let mut memory = MemoryStore::builder();
            if let Some(clock) = &options.clock {
                memory = memory.clock(clock.clone() as qrauth_core::SharedClock);
            }
            Arc::new(memory.build())
        }
    };
    let key = options
        .signing_key
        .clone()
        .unwrap_or_else(shared_signing_key);
    let issuer = options.issuer.clone().unwrap_or_else(|| base.to_owned());
    let mut provider = BuiltinProvider::builder(Arc::new(DemoPhoneAuthenticator));
    if let Some(clock) = &options.clock {
        provider = provider.clock(clock.clone() as qrauth_core::SharedClock);
    }
    let provider = provider
        .signing_key(key)
        .issuer(issuer)
        .audience(AUDIENCE)
        .app_name(APP_NAME)
        .phone_url(format!("{base}/phone"))
        .build()
        .expect("built-in provider");
    let builder = QrAuthService::builder(Arc::new(provider))
        .shared_store(store)
        .lifetimes(lifetimes)
        .limits(options.limits.unwrap_or_else(Limits::unlimited))
        .trusted_proxies(options.trusted_proxies.iter().copied())
        .binding_key(
            qrauth_core::BindingKey::from_bytes(&options.binding_key.unwrap_or(TEST_BINDING_KEY))
                .expect("32-byte binding key"),
        );
    let builder = options
        .other_issuers
        .iter()
        .cloned()
        .fold(builder, |b, issuer| b.accept_id_tokens_from(issuer));
    let builder = match &options.clock {
        Some(clock) => builder.clock(clock.clone() as qrauth_core::SharedClock),
        None => builder,
    };
    let builder = match options.render_errors.clone() {
        Some(RenderErrors(render)) => builder.render_errors(move |error| render(error)),
        None => builder,
    };
    let builder = match options.number_matching_from {
        Some(level) => builder.number_matching_from(level),
        None => builder,
    };
    let builder = if options.secure_cookies {
        builder
    } else {
        builder.insecure_dev_cookies()
    };
    builder.build().expect("valid test service")
}

/// A running demo app on a loopback port. Dropping it stops the server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Which framework serves it.
    pub kind: ServerKind,
    /// The qrauth service it serves.
    pub service: QrAuthService,
    /// The running app; declared before `redis` so that it stops first (fields drop in order).
    _served: qrauth_test_support::Served,
    /// The server's own `redis-server` (for `StoreKind::Redis` without a shared URL); killed
    /// after the app stops.
    pub redis: Option<RedisServer>,
    /// The server's own Redis Cluster (for `StoreKind::RedisCluster` without shared nodes).
    pub redis_cluster: Option<qrauth_test_support::RedisCluster>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base", &self.base)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The binding cookie's name on this server (`qrauth_bind` or `__Host-qrauth_bind`).
    pub fn binding_cookie_name(&self) -> String {
        self.service.cookies().binding_name()
    }

    /// The session cookie's name on this server.
    pub fn session_cookie_name(&self) -> String {
        self.service.cookies().session_name()
    }

    /// A browser without cookies.
    pub fn browser(&self) -> Browser {
        Browser::new(self)
    }

    /// Alice's phone (`Bearer demo-alice`).
    pub fn alice(&self) -> Phone {
        Phone::new(self, Some("Bearer demo-alice"))
    }

    /// Bob's phone (`Bearer demo-bob`).
    pub fn bob(&self) -> Phone {
        Phone::new(self, Some("Bearer demo-bob"))
    }

    /// A phone that sends no `Authorization`.
    pub fn anonymous_phone(&self) -> Phone {
        Phone::new(self, None)
    }
}

/// Starts the demo app of `target` on `127.0.0.1:0` (`target`: a [`ServerKind`] for a
/// `MemoryStore`, or a [`Target`]).
///
/// The port is bound first so that the issuer and phone URLs can name it. Axum runs on the
/// calling tokio runtime; actix-web on a thread of its own with its own `System`.
pub async fn spawn(target: impl Into<Target>, mut options: ServerOptions) -> TestServer {
    let target = target.into();
    let (listener, base) = qrauth_test_support::serve::bind();
    let mut redis = None;
    if target.store == StoreKind::Redis
        && options.redis_url.is_none()
        && options.redis_cluster.is_none()
    {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("redis-server start");
        options.redis_url = Some(server.url());
        redis = Some(server);
    }
    let mut redis_cluster = None;
    if target.store == StoreKind::RedisCluster && options.redis_cluster.is_none() {
        let cluster =
            tokio::task::spawn_blocking(|| qrauth_test_support::RedisCluster::start(3, 0))
                .await
                .expect("Redis Cluster start");
        options.redis_cluster = Some(cluster.urls());
        redis_cluster = Some(cluster);
    }
    let service = build_service(&base, &options).await;
    let served = match target.server {
        ServerKind::Axum => {
            qrauth_test_support::serve::axum(listener, axum_demo::app(service.clone()))
        }
        ServerKind::Actix => {
            let configure = {
                let service = service.clone();
                move |config: &mut actix_web::web::ServiceConfig| {
                    actix_demo::configure(service.clone())(config)
                }
            };
            qrauth_test_support::serve::actix(listener, configure).await
        }
    };
    TestServer {
        base,
        kind: target.server,
        service,
        _served: served,
        redis,
        redis_cluster,
    }
}

/// Serves the service that `build` makes for the server's base URL (qrauth's routes at the
/// root, `/api/me` through `AuthenticatedUser`) on `kind`: for providers other than the demo's.
pub async fn spawn_service(
    kind: ServerKind,
    build: impl FnOnce(&str) -> QrAuthService,
) -> TestServer {
    let (listener, base) = qrauth_test_support::serve::bind();
    let service = build(&base);
    let served = qrauth_test_support::serve::qrauth_app(kind, listener, service.clone()).await;
    TestServer {
        base,
        kind,
        service,
        _served: served,
        redis: None,
        redis_cluster: None,
    }
}
