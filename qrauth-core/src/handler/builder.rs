//! [`QrAuthServiceBuilder`]: every setting of the service in one place.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::ApiResponse;
use super::cookies::CookieSettings;
use super::render::{ErrorContext, ErrorRenderer};
use super::{Inner, QrAuthService};
use crate::clock::{SharedClock, SystemClock};
use crate::error::Result;
use crate::flow::{SessionFlow, UpstreamLoops};
use crate::lifetimes::Lifetimes;
use crate::limits::Limits;
use crate::provider::QrAuthProvider;
use crate::risk::{NetworkMismatch, RiskLevel, RiskSignal};
use crate::store::{MemoryStore, SessionStore};
use crate::types::Claims;
use crate::verify::{IdTokenVerifier, IssuerConfig};

/// A completed QR login, for notifications ("you just signed in on Chrome on Windows").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignIn {
    /// The verified claims of the issued id_token.
    pub claims: Claims,
    /// The signed-in session the login created (`sid`): keep it to revoke this browser later
    /// with [`QrAuthService::revoke_session`].
    pub session_id: crate::SessionId,
    /// The signed-in browser and OS, e.g. "Chrome on Windows".
    pub browser: String,
    /// The signed-in browser's address.
    pub ip: Option<IpAddr>,
}

/// Called once per successful ticket exchange.
pub(crate) type SignInHook = Arc<dyn Fn(&SignIn) + Send + Sync>;

/// Configures a [`QrAuthService`]: where sessions live, how long things last, the limits, the
/// cookies, and which other issuers' id_tokens `AuthenticatedUser` accepts.
///
/// ```
/// # fn demo(provider: std::sync::Arc<dyn qrauth_core::QrAuthProvider>) -> qrauth_core::Result<()> {
/// use std::time::Duration;
/// use qrauth_core::{Lifetimes, Limits, QrAuthService};
///
/// let service = QrAuthService::builder(provider)
///     .lifetimes(Lifetimes::default().qr_code(Duration::from_secs(90)))
///     .limits(Limits::default().generate_per_minute(10))
///     .build()?;
/// # let _ = service; Ok(()) }
/// ```
#[must_use]
pub struct QrAuthServiceBuilder {
    provider: Arc<dyn QrAuthProvider>,
    store: Option<Arc<dyn SessionStore>>,
    clock: SharedClock,
    lifetimes: Lifetimes,
    number_matching: bool,
    number_matching_from: Option<RiskLevel>,
    risk_signal: Arc<dyn RiskSignal>,
    limits: Limits,
    cookies: CookieSettings,
    trusted_proxies: Vec<IpAddr>,
    allowed_origins: Vec<String>,
    default_wait: Duration,
    max_wait: Duration,
    keep_alive: Duration,
    shutdown_grace: Duration,
    metrics_label: &'static str,
    on_sign_in: Option<SignInHook>,
    other_issuers: Vec<IssuerConfig>,
    other_verifier: Option<IdTokenVerifier>,
    render_errors: Option<ErrorRenderer>,
    binding_key: Option<crate::BindingKey>,
}

impl QrAuthServiceBuilder {
    pub(super) fn new(provider: Arc<dyn QrAuthProvider>) -> Self {
        Self {
            provider,
            store: None,
            clock: Arc::new(SystemClock),
            lifetimes: Lifetimes::default(),
            number_matching: false,
            number_matching_from: None,
            risk_signal: Arc::new(NetworkMismatch),
            limits: Limits::default(),
            cookies: CookieSettings::default(),
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            default_wait: Duration::from_secs(25),
            max_wait: Duration::from_secs(30),
            keep_alive: Duration::from_secs(15),
            shutdown_grace: super::shutdown::DEFAULT_GRACE,
            metrics_label: crate::metrics::DEFAULT_LABEL,
            on_sign_in: None,
            other_issuers: Vec::new(),
            other_verifier: None,
            render_errors: None,
            binding_key: None,
        }
    }

    /// The key under which binding cookies and the rotating QR's scan tokens are MACed
    /// (default: a random key per process).
    ///
    /// `POST /qrcode` adopts a browser's binding cookie only if it carries a valid MAC under
    /// this key for the client's network, and mints a fresh one otherwise: a value planted in
    /// the browser by someone else is replaced, not adopted. **Give every replica the same
    /// key** (32 bytes or more from your secret manager); with per-process keys a replica
    /// replaces the bindings another minted, and the browser's other tabs lose their pending
    /// QR codes, and a QR shown by one replica does not scan on another (`410`): nothing worse,
    /// no login crosses browsers.
    ///
    /// ```
    /// # fn demo(builder: qrauth_core::QrAuthServiceBuilder) -> qrauth_core::Result<()> {
    /// let key = qrauth_core::BindingKey::from_bytes(&[42u8; 32])?;
    /// let service = builder.binding_key(key).build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn binding_key(mut self, key: crate::BindingKey) -> Self {
        self.binding_key = Some(key);
        self
    }

    /// Where sessions, tickets and abuse-limit counters live (default: a fresh
    /// [`MemoryStore`]). Give every replica the same shared store (`RedisStore`): it carries
    /// both the sessions and the limits.
    pub fn store(mut self, store: impl SessionStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Like [`store`](Self::store), for a store the application keeps a handle to.
    pub fn shared_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// How long QR codes, confirm tokens and tickets live, and the poll interval (default:
    /// [`Lifetimes::default`]). Checked by [`build`](Self::build).
    pub fn lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    /// The clock of the session flow (default: the system clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock) to run lifetimes without sleeping.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Number matching: after scan the browser shows a two-digit code that the phone user must
    /// send with confirm (default off), a defence against relayed QR codes.
    pub fn number_matching(mut self, on: bool) -> Self {
        self.number_matching = on;
        self
    }

    /// Number matching for the logins that a [risk signal](Self::risk_signal) puts at `level`
    /// or above (default: never; [`number_matching`](Self::number_matching) turns it on for
    /// every login). The phone learns it from the scan's `context.numberMatching`.
    ///
    /// ```
    /// # fn demo(provider: std::sync::Arc<dyn qrauth_core::QrAuthProvider>) -> qrauth_core::Result<()> {
    /// use qrauth_core::QrAuthService;
    /// use qrauth_core::risk::RiskLevel;
    ///
    /// // A phone on another network than the browser must type the browser's code.
    /// let service = QrAuthService::builder(provider)
    ///     .number_matching_from(RiskLevel::Elevated)
    ///     .build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn number_matching_from(mut self, level: RiskLevel) -> Self {
        self.number_matching_from = Some(level);
        self
    }

    /// What judges a login when its QR code is scanned (default
    /// [`NetworkMismatch`]): its verdict is shown on the phone's confirm screen and can make
    /// number matching mandatory (see [`number_matching_from`](Self::number_matching_from)).
    /// Plug in GeoIP or ASN data here.
    ///
    /// ```
    /// # fn demo(provider: std::sync::Arc<dyn qrauth_core::QrAuthProvider>) -> qrauth_core::Result<()> {
    /// use std::sync::Arc;
    /// use qrauth_core::QrAuthService;
    /// use qrauth_core::risk::{LoginAttempt, Risk, RiskLevel, RiskSignal};
    ///
    /// struct EveryLoginIsRisky;
    /// impl RiskSignal for EveryLoginIsRisky {
    ///     fn assess(&self, _: &LoginAttempt<'_>) -> Risk {
    ///         Risk::new(RiskLevel::High, "policy")
    ///     }
    /// }
    ///
    /// let service = QrAuthService::builder(provider)
    ///     .risk_signal(Arc::new(EveryLoginIsRisky))
    ///     .number_matching_from(RiskLevel::High)
    ///     .build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn risk_signal(mut self, signal: Arc<dyn RiskSignal>) -> Self {
        self.risk_signal = signal;
        self
    }

    /// Drops `Secure` and the `__Host-` prefix from cookies so that a plain-HTTP `localhost`
    /// demo works. Never use it in production.
    pub fn insecure_dev_cookies(mut self) -> Self {
        self.cookies.secure = false;
        self
    }

    /// Cookie settings.
    pub fn cookies(mut self, cookies: CookieSettings) -> Self {
        self.cookies = cookies;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Origins the phone routes accept in an `Origin` header (default: the request's own
    /// `Host`). Requests without `Origin` (native apps) are accepted.
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Long-poll wait when the client asks for `wait` without a value (default 25 s), and the
    /// cap on what it may ask (default 30 s).
    ///
    /// Every proxy, load balancer, `tower_http::timeout::TimeoutLayer` and client timeout in
    /// front of the routes must allow more than the cap (nginx `proxy_read_timeout` is 60 s,
    /// an AWS ALB's idle timeout 60 s: both fine with the defaults). Behind a shorter one,
    /// lower the cap below it instead.
    pub fn long_poll(mut self, default: Duration, max: Duration) -> Self {
        self.max_wait = max;
        self.default_wait = default.min(max);
        self
    }

    /// How long the server gives qrauth's requests in flight after
    /// [`QrAuthService::shutdown`] before it drops their connections (default 800 ms; see
    /// [`QrAuthService::drained`]). Held connections end at once at shutdown, so the grace only
    /// covers ordinary requests (a confirm, an exchange) still talking to the store; keep it
    /// below the orchestrator's kill timeout (Kubernetes `terminationGracePeriodSeconds`,
    /// default 30 s) and the load balancer's deregistration delay.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Abuse limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Interval of SSE keep-alive comments (default 15 s).
    ///
    /// A stream without a change sends `: keep-alive` this often, so that proxies that close
    /// idle upstream connections (nginx `proxy_read_timeout` 60 s, AWS ALB idle timeout 60 s,
    /// Cloudflare 100 s) leave it open: keep it well below the shortest idle timeout on the
    /// way. A vanished client is noticed without it (both adapters watch the connection; on
    /// actix-web serve with `HttpServer::h1_allow_half_closed(false)`).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = interval;
        self
    }

    /// The `provider` label of this service's [metrics](crate::metrics) (default `"qrauth"`),
    /// to tell apart several services of one process on a dashboard. A fixed name, never
    /// anything about a user or a session. Recorded only with the `metrics` feature.
    ///
    /// ```
    /// # fn demo(builder: qrauth_core::QrAuthServiceBuilder) -> qrauth_core::Result<()> {
    /// let service = builder.metrics_label("authing").build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn metrics_label(mut self, provider: &'static str) -> Self {
        self.metrics_label = provider;
        self
    }

    /// Calls `hook` once for every completed login (after the ticket exchange), with the
    /// signed-in device's description: send the user a "new sign-in" notification from here.
    ///
    /// ```
    /// # fn demo(builder: qrauth_core::QrAuthServiceBuilder) -> qrauth_core::Result<()> {
    /// let service = builder
    ///     .on_sign_in(|sign_in| println!("{} signed in on {}", sign_in.claims.sub, sign_in.browser))
    ///     .build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn on_sign_in(mut self, hook: impl Fn(&SignIn) + Send + Sync + 'static) -> Self {
        self.on_sign_in = Some(Arc::new(hook));
        self
    }

    /// Also accepts id_tokens of another issuer (the application's existing IdP) wherever
    /// `AuthenticatedUser` checks a token. Call it once per issuer.
    ///
    /// ```
    /// # fn demo(builder: qrauth_core::QrAuthServiceBuilder) -> qrauth_core::Result<()> {
    /// use qrauth_core::IssuerConfig;
    /// let service = builder
    ///     .accept_id_tokens_from(IssuerConfig::new("https://login.example.com", "web-app"))
    ///     .build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn accept_id_tokens_from(mut self, issuer: IssuerConfig) -> Self {
        self.other_issuers.push(issuer);
        self
    }

    /// Like [`accept_id_tokens_from`](Self::accept_id_tokens_from), with a verifier the
    /// application configured itself (leeway, HTTP client, several issuers).
    pub fn accept_id_tokens_verified_by(mut self, verifier: IdTokenVerifier) -> Self {
        self.other_verifier = Some(verifier);
        self
    }

    /// Renders the application's own error responses: `render` sees every refusal of
    /// `AuthenticatedUser` (extractor, axum layer, actix middleware) and every error of
    /// qrauth's routes, on both adapters, as an [`ErrorContext`]; what it returns is sent
    /// instead, `None` keeps qrauth's JSON error.
    ///
    /// Whatever it returns, qrauth still sets `Cache-Control: no-store` and keeps the headers
    /// the protocol requires of the refusal — the RFC 6750 `WWW-Authenticate` challenge of an
    /// `invalid_token` refusal, `Allow` of a 405, `Retry-After` of a 429 or 503 — adding each
    /// one that the application's response lacks (its own value wins). A redirect (3xx) gets
    /// none of them: a login redirect for a browser is not a challenge.
    ///
    /// ```
    /// # fn demo(builder: qrauth_core::QrAuthServiceBuilder) -> qrauth_core::Result<()> {
    /// use http::StatusCode;
    /// use qrauth_core::{ApiResponse, Refused};
    ///
    /// let service = builder
    ///     .render_errors(|error| match error.refused() {
    ///         // Browsers that open a protected page go to the login page ...
    ///         Refused::Authentication if error.wants_html() => Some(ApiResponse::redirect("/login")),
    ///         // ... API clients get the application's own JSON, with qrauth's status.
    ///         _ => Some(ApiResponse::json(
    ///             error.status(),
    ///             &serde_json::json!({ "message": "sign in first", "code": error.error().code() }),
    ///         )),
    ///     })
    ///     .build()?;
    /// # let _ = service; Ok(()) }
    /// ```
    pub fn render_errors(
        mut self,
        render: impl Fn(&ErrorContext<'_>) -> Option<ApiResponse> + Send + Sync + 'static,
    ) -> Self {
        self.render_errors = Some(std::sync::Arc::new(render));
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for lifetimes out of range, or an issuer given to
    /// [`accept_id_tokens_from`](Self::accept_id_tokens_from) that does not configure.
    pub fn build(self) -> Result<QrAuthService> {
        let lifetimes = self.lifetimes.validate()?;
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn SessionStore>);
        let limiter = store.rate_limiter();
        let signed_in = store.signed_in();
        let binding_key = match self.binding_key {
            Some(key) => key,
            None => crate::BindingKey::generate()?,
        };
        let flow = SessionFlow::new(
            store,
            self.clock.clone(),
            lifetimes,
            self.number_matching,
            binding_key.clone(),
        )
        .with_metrics_label(self.metrics_label);
        let other_verifier = match (self.other_verifier, self.other_issuers.is_empty()) {
            (Some(verifier), true) => Some(verifier),
            (verifier, _) => {
                let mut builder = IdTokenVerifier::builder().clock(self.clock.clone());
                let mut any = false;
                for issuer in self.other_issuers {
                    builder = builder.issuer(issuer);
                    any = true;
                }
                match (verifier, any) {
                    (Some(_), true) => {
                        return Err(crate::Error::Config(
                            "use accept_id_tokens_from or accept_id_tokens_verified_by, not both"
                                .into(),
                        ));
                    }
                    (_, true) => Some(builder.build()?),
                    (_, false) => None,
                }
            }
        };
        let upstream_loops = UpstreamLoops::new(self.provider.clone(), flow.clone());
        let token_sessions = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(crate::lifetimes::MAX_ID_TOKEN)
            .build();
        Ok(QrAuthService {
            inner: Arc::new(Inner {
                binding_key,
                risk_signal: self.risk_signal,
                number_matching_from: self.number_matching_from,
                streams: Arc::default(),
                provider: self.provider,
                flow,
                upstream_loops,
                limiter,
                on_sign_in: self.on_sign_in,
                limits: self.limits,
                cookies: self.cookies,
                trusted_proxies: self.trusted_proxies,
                allowed_origins: self.allowed_origins,
                default_wait: self.default_wait,
                max_wait: self.max_wait,
                keep_alive: self.keep_alive,
                shutdown: super::shutdown::Shutdown::new(self.shutdown_grace),
                other_verifier,
                render_errors: self.render_errors,
                signed_in,
                token_sessions,
            }),
        })
    }
}
