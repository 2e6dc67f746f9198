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

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use demo_common::DemoPhoneAuthenticator;
use qrauth_core::store::{MemoryStore, RedisStore, SessionStore};
use qrauth_core::{BuiltinProvider, Lifetimes, Limits, QrAuthService, SigningAlgorithm, SigningKey};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, HeaderMap, SET_COOKIE, USER_AGENT};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `axum_demo::app` served by `axum::serve`.
    Axum,
    /// `actix_demo::configure` served by actix-web's `HttpServer`.
    Actix,
}

/// A throwaway `redis-server` on a loopback port (shared with qrauth-core's own Redis tests).
#[path = "../../qrauth-core/tests/support/redis_server.rs"]
pub mod redis_server;

pub use redis_server::RedisServer;

/// Where a test server keeps its sessions and its abuse-limit counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `MemoryStore` and `MemoryRateLimiter`.
    Memory,
    /// `RedisStore` and `RedisRateLimiter`.
    Redis,
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
    /// Bound on every Redis call (default 2 s).
    pub redis_timeout: Option<Duration>,
    /// How long finished sessions stay readable (default: the library's 30 s).
    pub retention_grace: Option<Duration>,
    /// Ticket lifetime (default: the library's 60 s); sessions are kept until their last
    /// possible ticket expired, plus the retention grace.
    pub ticket_lifetime: Option<Duration>,
    /// Other issuers whose id_tokens `AuthenticatedUser` accepts (the application's own IdP).
    pub other_issuers: Vec<qrauth_core::IssuerConfig>,
}

impl ServerOptions {
    /// Options with this QR lifetime.
    pub fn qr_lifetime(mut self, lifetime: Duration) -> Self {
        self.qr_lifetime = Some(lifetime);
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
    if let Some(grace) = options.retention_grace {
        lifetimes = lifetimes.retention_grace(grace);
    }
    if let Some(ticket) = options.ticket_lifetime {
        lifetimes = lifetimes.ticket(ticket);
    }
    let store: Arc<dyn SessionStore> = match &options.redis_url {
        Some(url) => Arc::new(
            RedisStore::builder(url.as_str())
                .key_prefix(REDIS_PREFIX)
                .command_timeout(options.redis_timeout.unwrap_or(Duration::from_secs(2)))
                .connect()
                .await
                .expect("connect to the test redis-server"),
        ),
        None => Arc::new(MemoryStore::new()),
    };
    let key = options
        .signing_key
        .clone()
        .unwrap_or_else(shared_signing_key);
    let issuer = options.issuer.clone().unwrap_or_else(|| base.to_owned());
    let provider = BuiltinProvider::builder(Arc::new(DemoPhoneAuthenticator))
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
        .limits(options.limits.unwrap_or_else(Limits::unlimited));
    let builder = options
        .other_issuers
        .iter()
        .cloned()
        .fold(builder, |b, issuer| b.accept_id_tokens_from(issuer));
    let builder = if options.secure_cookies {
        builder
    } else {
        builder.insecure_dev_cookies()
    };
    builder.build().expect("valid test service")
}

enum Stopper {
    Axum(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle),
}

/// A running demo app on a loopback port. Dropping it stops the server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Which framework serves it.
    pub kind: ServerKind,
    /// The qrauth service it serves.
    pub service: QrAuthService,
    /// The server's own `redis-server` (for `StoreKind::Redis` without a shared URL); killed
    /// after the app stops.
    pub redis: Option<RedisServer>,
    stopper: Stopper,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("base", &self.base)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        match &self.stopper {
            Stopper::Axum(task) => task.abort(),
            // `stop` sends the command at once; the returned future only awaits completion.
            Stopper::Actix(handle) => drop(handle.stop(false)),
        }
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
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let base = format!("http://{addr}");
    let mut redis = None;
    if target.store == StoreKind::Redis && options.redis_url.is_none() {
        let server = tokio::task::spawn_blocking(RedisServer::start)
            .await
            .expect("redis-server start");
        options.redis_url = Some(server.url());
        redis = Some(server);
    }
    let service = build_service(&base, &options).await;
    let stopper = match target.server {
        ServerKind::Axum => spawn_axum(listener, service.clone()),
        ServerKind::Actix => spawn_actix(listener, service.clone()).await,
    };
    TestServer {
        base,
        kind: target.server,
        service,
        redis,
        stopper,
    }
}

fn spawn_axum(listener: std::net::TcpListener, service: QrAuthService) -> Stopper {
    use axum::serve::ListenerExt;
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener)
        .expect("tokio listener")
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    let app = axum_demo::app(service);
    Stopper::Axum(tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    }))
}

async fn spawn_actix(listener: std::net::TcpListener, service: QrAuthService) -> Stopper {
    use actix_web::{App, HttpServer};
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("actix-test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new().configure(actix_demo::configure(service.clone()))
                })
                .workers(1)
                .on_connect(qrauth_actix::tcp_nodelay)
                .listen(listener);
                let server = match server {
                    Ok(server) => server.run(),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(server.handle()));
                let _ = server.await;
            });
        })
        .expect("actix thread");
    let handle = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("actix server started in time")
        .expect("actix thread alive")
        .expect("actix server listens");
    Stopper::Actix(handle)
}

/// A reqwest client with a timeout, no proxy, no redirects and no cookie store.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Resp {
    /// Sends `request` and reads the whole response; panics on a transport error (a reset
    /// connection or a timeout is a failure, never an expected outcome).
    pub async fn send(request: RequestBuilder) -> Resp {
        let response = request.send().await.expect("HTTP request failed");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .expect("reading body failed")
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie`, parsed.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(SetCookie::parse)
            .collect()
    }

    /// The `Set-Cookie` for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<SetCookie> {
        self.set_cookies().into_iter().find(|c| c.name == name)
    }

    /// Asserts the status and the JSON error body `{error: code, error_description}` with the
    /// JSON content type; returns the body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some(JSON_CT),
            "error {code} content type"
        );
        let body = self.json();
        assert_eq!(body["error"], code, "error code in {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "error_description in {body}"
        );
        body
    }

    /// Asserts the status and a JSON body of any JSON content type (the demo app's own
    /// routes, e.g. `/api/me`, are not bound by qrauth's `charset=utf-8` rule); returns it.
    #[track_caller]
    pub fn assert_app_json(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "JSON content type: {:?}",
            self.headers
        );
        self.json()
    }

    /// Asserts the status and a JSON body with qrauth's content type; returns the body.
    #[track_caller]
    pub fn assert_json(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(self.header("content-type"), Some(JSON_CT));
        self.json()
    }
}

/// One `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// The whole header value.
    pub raw: String,
    /// The cookie name.
    pub name: String,
    /// The cookie value.
    pub value: String,
    /// Attributes in order: (lower-case name, value).
    pub attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Parses a `Set-Cookie` value.
    pub fn parse(raw: &str) -> SetCookie {
        let mut parts = raw.split(';');
        let (name, value) = parts
            .next()
            .and_then(|nv| nv.split_once('='))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .unwrap_or_default();
        let attributes = parts
            .map(|a| {
                let a = a.trim();
                match a.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
                    None => (a.to_ascii_lowercase(), None),
                }
            })
            .collect();
        SetCookie {
            raw: raw.to_owned(),
            name,
            value,
            attributes,
        }
    }

    /// Whether the attribute is present (case-insensitive name).
    pub fn has(&self, attribute: &str) -> bool {
        let attribute = attribute.to_ascii_lowercase();
        self.attributes.iter().any(|(k, _)| *k == attribute)
    }

    /// The attribute's value.
    pub fn attr(&self, attribute: &str) -> Option<&str> {
        let attribute = attribute.to_ascii_lowercase();
        self.attributes
            .iter()
            .find(|(k, _)| *k == attribute)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// A `POST /qrcode` that succeeded.
#[derive(Debug, Clone)]
pub struct Qr {
    /// The session id.
    pub id: String,
    /// The whole 201 body.
    pub body: Value,
    /// The response.
    pub response: Resp,
}

/// The desktop browser: sends a Chrome-on-Windows User-Agent and keeps its binding cookie by
/// hand (no cookie store), so tests can assert on it, replay it or leave it out.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
    stream_client: reqwest::Client,
    base: String,
    binding_name: String,
    /// The binding cookie's value, once a `POST /qrcode` set it.
    pub binding: Option<String>,
    /// Extra `name=value` cookies sent along (e.g. a pre-login session cookie).
    pub extra_cookies: Vec<String>,
}

impl Browser {
    /// A browser for `server`, without cookies.
    pub fn new(server: &TestServer) -> Self {
        Self {
            client: client(CLIENT_TIMEOUT),
            stream_client: client(STREAM_TIMEOUT),
            base: server.base.clone(),
            binding_name: server.binding_cookie_name(),
            binding: None,
            extra_cookies: Vec::new(),
        }
    }

    /// The same browser state without the binding cookie (another client that only knows ids).
    pub fn without_binding(&self) -> Self {
        let mut other = self.clone();
        other.binding = None;
        other
    }

    /// The same browser (same cookies) talking to another replica.
    pub fn on(&self, server: &TestServer) -> Self {
        let mut other = self.clone();
        other.base = server.base.clone();
        other
    }

    /// The `Cookie` header this browser sends, if any.
    pub fn cookie_header(&self) -> Option<String> {
        let mut cookies: Vec<String> = self
            .binding
            .iter()
            .map(|b| format!("{}={b}", self.binding_name))
            .collect();
        cookies.extend(self.extra_cookies.iter().cloned());
        (!cookies.is_empty()).then(|| cookies.join("; "))
    }

    fn build(&self, client: &reqwest::Client, method: Method, path: &str) -> RequestBuilder {
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .header(USER_AGENT, BROWSER_UA);
        if let Some(cookie) = self.cookie_header() {
            request = request.header(COOKIE, cookie);
        }
        request
    }

    /// A request with the User-Agent and the cookies, not yet sent.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.build(&self.client, method, path)
    }

    /// `POST /qrcode` with no body; asserts 201 and keeps the binding cookie.
    pub async fn generate(&mut self) -> Qr {
        let response = Resp::send(self.request(Method::POST, "/qrcode")).await;
        self.accept_qr(response)
    }

    /// Checks a `POST /qrcode` answer and keeps its binding cookie.
    #[track_caller]
    pub fn accept_qr(&mut self, response: Resp) -> Qr {
        let body = response.assert_json(201);
        let id = body["qrcodeId"]
            .as_str()
            .unwrap_or_else(|| panic!("qrcodeId in {body}"))
            .to_owned();
        let cookie = response
            .set_cookie(&self.binding_name)
            .unwrap_or_else(|| panic!("{} not set: {:?}", self.binding_name, response.headers));
        assert!(!cookie.value.is_empty(), "binding cookie value");
        self.binding = Some(cookie.value);
        Qr { id, body, response }
    }

    /// `GET /qrcode/status?qrcodeId=…`.
    pub async fn status(&self, id: &str) -> Resp {
        self.status_query(&format!("qrcodeId={id}")).await
    }

    /// `GET /qrcode/status?{query}` (long-polls allowed).
    pub async fn status_query(&self, query: &str) -> Resp {
        Resp::send(self.build(
            &self.stream_client,
            Method::GET,
            &format!("/qrcode/status?{query}"),
        ))
        .await
    }

    /// A bound status poll that must succeed: asserts 200, the allow-listed keys and the
    /// Authing flags agreeing with `status`.
    pub async fn bound_status(&self, id: &str) -> Value {
        let body = self.status(id).await.assert_json(200);
        assert_status_shape(&body);
        body
    }

    /// `GET /qrcode/events?qrcodeId=…`, optionally with `Last-Event-ID`; the response is not read.
    pub async fn events(&self, id: &str, last_event_id: Option<u64>) -> reqwest::Response {
        let mut request = self.build(
            &self.stream_client,
            Method::GET,
            &format!("/qrcode/events?qrcodeId={id}"),
        );
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last.to_string());
        }
        request.send().await.expect("events request failed")
    }

    /// `POST /qrcode/exchange {"ticket": …}`.
    pub async fn exchange(&self, ticket: &str) -> Resp {
        Resp::send(
            self.request(Method::POST, "/qrcode/exchange")
                .json(&json!({ "ticket": ticket })),
        )
        .await
    }

    /// `GET path` with the cookies.
    pub async fn get(&self, path: &str) -> Resp {
        Resp::send(self.request(Method::GET, path)).await
    }
}

/// The phone app: sends its user's credential in `Authorization` and JSON bodies, with a
/// User-Agent that is not the browser's.
#[derive(Debug, Clone)]
pub struct Phone {
    client: reqwest::Client,
    base: String,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
}

impl Phone {
    /// A phone for `server` with this credential.
    pub fn new(server: &TestServer, authorization: Option<&str>) -> Self {
        Self {
            client: client(CLIENT_TIMEOUT),
            base: server.base.clone(),
            authorization: authorization.map(str::to_owned),
        }
    }

    /// A `POST` with the User-Agent and the credential, no body yet.
    pub fn request(&self, path: &str) -> RequestBuilder {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(USER_AGENT, PHONE_UA);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        request
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        Resp::send(
            self.request(path)
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body).expect("JSON")),
        )
        .await
    }

    /// `POST /qrcode/scan`.
    pub async fn scan(&self, id: &str) -> Resp {
        self.post("/qrcode/scan", &json!({ "qrcodeId": id })).await
    }

    /// A scan that must succeed; returns the confirm token and the whole body.
    pub async fn scan_ok(&self, id: &str) -> (String, Value) {
        let body = self.scan(id).await.assert_json(200);
        let token = body["confirmToken"]
            .as_str()
            .unwrap_or_else(|| panic!("confirmToken in {body}"))
            .to_owned();
        (token, body)
    }

    /// `POST /qrcode/confirm`.
    pub async fn confirm(&self, id: &str, token: &str) -> Resp {
        self.post(
            "/qrcode/confirm",
            &json!({ "qrcodeId": id, "confirmToken": token }),
        )
        .await
    }

    /// `POST /qrcode/cancel`.
    pub async fn cancel(&self, id: &str, token: &str) -> Resp {
        self.post(
            "/qrcode/cancel",
            &json!({ "qrcodeId": id, "confirmToken": token }),
        )
        .await
    }

    /// Scan and confirm; asserts both succeed.
    pub async fn scan_and_confirm(&self, id: &str) {
        let (token, _) = self.scan_ok(id).await;
        let body = self.confirm(id, &token).await.assert_json(200);
        assert_eq!(body, json!({ "status": "confirmed" }));
    }
}

/// The keys a status body may have (requirement 17).
pub const STATUS_KEYS: [&str; 11] = [
    "qrcodeId",
    "status",
    "scanned",
    "expired",
    "success",
    "canceled",
    "userInfo",
    "ticket",
    "description",
    "version",
    "expireAt",
];

/// Asserts a status body: exactly the allow-listed keys, `userInfo` with at most nickname and
/// photo, a ticket only when confirmed, and Authing's flags agreeing with `status`.
#[track_caller]
pub fn assert_status_shape(body: &Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("status body is an object: {body}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut allowed = STATUS_KEYS.to_vec();
    allowed.sort_unstable();
    assert_eq!(keys, allowed, "status keys of {body}");
    match &body["userInfo"] {
        Value::Null => {}
        Value::Object(user) => {
            for key in user.keys() {
                assert!(
                    key == "nickname" || key == "photo",
                    "userInfo key {key} in {body}"
                );
            }
        }
        other => panic!("userInfo is {other}"),
    }
    let status = body["status"].as_str().expect("status string");
    let flag = |name: &str| {
        body[name]
            .as_bool()
            .unwrap_or_else(|| panic!("{name} flag in {body}"))
    };
    assert_eq!(
        flag("scanned"),
        matches!(status, "scanned" | "confirmed"),
        "scanned flag in {body}"
    );
    assert_eq!(flag("success"), status == "confirmed", "success in {body}");
    assert_eq!(flag("expired"), status == "expired", "expired in {body}");
    assert_eq!(
        flag("canceled"),
        status == "cancelled",
        "canceled in {body}"
    );
    if status != "confirmed" {
        assert!(
            body["ticket"].is_null(),
            "ticket only when confirmed: {body}"
        );
    }
    if !matches!(status, "scanned" | "confirmed") {
        assert!(
            body["userInfo"].is_null(),
            "userInfo only when scanned or confirmed: {body}"
        );
    }
    assert!(body["version"].is_u64(), "version in {body}");
}

/// The `version` of a status body.
pub fn version(body: &Value) -> u64 {
    body["version"].as_u64().expect("version")
}

/// One server-sent event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:` (none for the default `message`).
    pub event: Option<String>,
    /// `id:`.
    pub id: Option<String>,
    /// `data:` lines joined by `\n`.
    pub data: Option<String>,
    /// `retry:`.
    pub retry: Option<String>,
    /// Comment lines (`: …`).
    pub comments: Vec<String>,
}

/// Reads a `text/event-stream` body event by event.
#[derive(Debug)]
pub struct SseReader {
    response: reqwest::Response,
    buffer: String,
    eof: bool,
}

impl SseReader {
    /// Reads events from `response` (whose headers the caller has checked).
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
            eof: false,
        }
    }

    /// The next event block, or `None` at the end of the stream. Panics on transport errors
    /// (including the client timeout) and on a stream that ends mid-event.
    pub async fn next(&mut self) -> Option<SseEvent> {
        loop {
            let normalized = self.buffer.replace("\r\n", "\n");
            if let Some(end) = normalized.find("\n\n") {
                let block = normalized[..end].to_owned();
                self.buffer = normalized[end + 2..].to_owned();
                return Some(parse_event(&block));
            }
            if self.eof {
                assert!(
                    self.buffer.trim().is_empty(),
                    "stream ended inside an event: {:?}",
                    self.buffer
                );
                return None;
            }
            match self.response.chunk().await.expect("reading event stream") {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                None => self.eof = true,
            }
        }
    }

    /// Every remaining event up to the end of the stream.
    pub async fn rest(&mut self) -> Vec<SseEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.next().await {
            events.push(event);
        }
        events
    }

    /// The next event that carries `data:`, skipping `retry:`-only blocks and comments.
    pub async fn next_data(&mut self) -> Option<SseEvent> {
        while let Some(event) = self.next().await {
            if event.data.is_some() {
                return Some(event);
            }
        }
        None
    }
}

fn parse_event(block: &str) -> SseEvent {
    let mut event = SseEvent::default();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event.event = Some(value.to_owned()),
            "id" => event.id = Some(value.to_owned()),
            "retry" => event.retry = Some(value.to_owned()),
            "data" => {
                event.data = Some(match event.data.take() {
                    Some(previous) => format!("{previous}\n{value}"),
                    None => value.to_owned(),
                })
            }
            other => panic!("unexpected SSE field {other:?} in {block:?}"),
        }
    }
    event
}

/// Unix time, seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Unix time, milliseconds.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

/// A well-formed id (22 base64url characters, 16 bytes) that no server generated.
pub fn unknown_id() -> String {
    URL_SAFE_NO_PAD.encode(*b"not-a-real-id!!!")
}

/// Percent-encodes everything but unreserved characters (for query values).
pub fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The JSON payload of a JWT (not verified).
pub fn jwt_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url payload"))
        .expect("JSON payload")
}

/// Runs a whole login on `server` as Alice and returns the browser and the token set.
pub async fn login(server: &TestServer) -> (Browser, Value) {
    let mut browser = server.browser();
    let qr = browser.generate().await;
    server.alice().scan_and_confirm(&qr.id).await;
    let status = browser.bound_status(&qr.id).await;
    let ticket = status["ticket"].as_str().expect("ticket").to_owned();
    let tokens = browser.exchange(&ticket).await.assert_json(200);
    (browser, tokens)
}
