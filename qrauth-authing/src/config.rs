//! Configuration of the Authing provider: the application's credentials, the API generation and
//! how the token endpoint authenticates qrauth.

use std::fmt;
use std::time::Duration;

use qrauth_core::{Error, Result, SharedClock, SystemClock};

/// Which generation of Authing's QR API the user pool speaks.
///
/// The two encode statuses differently (V3 strings, V2 integers), so a client must know which
/// one it talks to; see the wire reference in the repository (`authing-api.md` §0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ApiVersion {
    /// `/api/v3/gene-qrcode`, `/api/v3/check-qrcode-status`,
    /// `/api/v3/exchange-tokenset-with-qrcode-ticket` (current).
    #[default]
    V3,
    /// `/api/v2/qrcode/{gene,check,userinfo}` (older user pools).
    V2,
}

/// How qrauth authenticates itself when it exchanges an Authing ticket with the V3 API (the
/// application's "换取 token 身份验证方式"). The V2 `userinfo` exchange carries only the ticket,
/// as Authing's own V2 SDK sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TokenAuthMethod {
    /// `client_id` and `client_secret` in the JSON body (Authing's default).
    #[default]
    ClientSecretPost,
    /// `authorization: Basic base64(app_id:app_secret)`.
    ClientSecretBasic,
    /// No client authentication: whoever holds a ticket gets the tokens. Refused by
    /// [`AuthingProviderBuilder::build`] unless [`AuthingProviderBuilder::allow_none_auth`].
    None,
}

impl TokenAuthMethod {
    /// The OAuth name of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenAuthMethod::ClientSecretPost => "client_secret_post",
            TokenAuthMethod::ClientSecretBasic => "client_secret_basic",
            TokenAuthMethod::None => "none",
        }
    }
}

/// The app secret: never printed.
#[derive(Clone)]
pub(crate) struct AppSecret(pub(crate) String);

impl fmt::Debug for AppSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The checked configuration the client and the provider share.
#[derive(Debug, Clone)]
pub(crate) struct AuthingConfig {
    pub app_id: String,
    pub app_secret: AppSecret,
    /// `https://<app>.authing.cn`, without a trailing slash.
    pub app_host: String,
    pub user_pool_id: String,
    pub api_version: ApiVersion,
    pub auth_method: TokenAuthMethod,
    pub hs256: bool,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub poll_interval: Duration,
    pub max_custom_data_bytes: usize,
    pub allow_insecure_http: bool,
}

impl AuthingConfig {
    /// The OIDC issuer: `<app_host>/oidc`.
    pub fn issuer(&self) -> String {
        format!("{}/oidc", self.app_host)
    }
}

/// Configures an [`AuthingProvider`](crate::AuthingProvider); see
/// [`AuthingProvider::builder`](crate::AuthingProvider::builder).
///
/// ```
/// use std::time::Duration;
/// use qrauth_authing::{ApiVersion, AuthingProvider, TokenAuthMethod};
///
/// let provider = AuthingProvider::builder("app-id", "app-secret", "https://example.authing.cn", "pool-id")
///     .api_version(ApiVersion::V3)
///     .token_auth_method(TokenAuthMethod::ClientSecretBasic)
///     .poll_interval(Duration::from_millis(800))
///     .timeouts(Duration::from_secs(5), Duration::from_secs(3))
///     .max_custom_data_bytes(1024)
///     .build()?;
/// # let _ = provider;
/// # Ok::<_, qrauth_core::Error>(())
/// ```
#[must_use = "call .build() to get a provider"]
pub struct AuthingProviderBuilder {
    pub(crate) config: AuthingConfig,
    pub(crate) allow_none: bool,
    pub(crate) http_client: Option<reqwest::Client>,
    pub(crate) clock: SharedClock,
}

impl fmt::Debug for AuthingProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthingProviderBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AuthingProviderBuilder {
    pub(crate) fn new(
        app_id: String,
        app_secret: String,
        app_host: String,
        user_pool_id: String,
    ) -> Self {
        Self {
            config: AuthingConfig {
                app_id,
                app_secret: AppSecret(app_secret),
                app_host: app_host.trim_end_matches('/').to_owned(),
                user_pool_id,
                api_version: ApiVersion::V3,
                auth_method: TokenAuthMethod::ClientSecretPost,
                hs256: false,
                timeout: Duration::from_secs(5),
                connect_timeout: Duration::from_secs(3),
                poll_interval: Duration::from_millis(800),
                max_custom_data_bytes: 1024,
                allow_insecure_http: false,
            },
            allow_none: false,
            http_client: None,
            clock: std::sync::Arc::new(SystemClock),
        }
    }

    /// The API generation (default [`ApiVersion::V3`]).
    pub fn api_version(mut self, version: ApiVersion) -> Self {
        self.config.api_version = version;
        self
    }

    /// How the V3 ticket exchange authenticates qrauth (default
    /// [`TokenAuthMethod::ClientSecretPost`]); must match the application's setting at Authing.
    /// The V2 exchange sends the ticket only.
    pub fn token_auth_method(mut self, method: TokenAuthMethod) -> Self {
        self.config.auth_method = method;
        self
    }

    /// Accepts [`TokenAuthMethod::None`]. With it anyone who learns an Authing ticket can get
    /// the user's tokens; qrauth never shows the ticket to a browser, but Authing's status API
    /// needs no credentials, so only use it for applications Authing fixes to `none`.
    pub fn allow_none_auth(mut self, allow: bool) -> Self {
        self.allow_none = allow;
        self
    }

    /// Also accepts HS256 id_tokens signed with the app secret (for applications whose id_token
    /// signing algorithm is set to HS256 at Authing). RS256 via the JWKS is always accepted.
    pub fn hs256_id_tokens(mut self, on: bool) -> Self {
        self.config.hs256 = on;
        self
    }

    /// Timeout of each call to Authing (default 5 s) and of connecting (default 3 s).
    pub fn timeouts(mut self, request: Duration, connect: Duration) -> Self {
        self.config.timeout = request;
        self.config.connect_timeout = connect;
        self
    }

    /// How often the server checks Authing's QR status while a browser waits (default 800 ms,
    /// the interval of Authing's own web SDK).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval;
        self
    }

    /// The largest `userDefinedData` passed to Authing as `customData`, serialised (default
    /// 1 KiB); larger ones are refused with 400.
    pub fn max_custom_data_bytes(mut self, max: usize) -> Self {
        self.config.max_custom_data_bytes = max;
        self
    }

    /// The clock of id_token verification and of an `expires_in` computed from a token's `exp`
    /// (default: the system clock). The session lifetimes and the store are the service's
    /// settings ([`QrAuthServiceBuilder`](qrauth_core::QrAuthServiceBuilder)); keep the QR
    /// lifetime at most Authing's (120 s by default).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The HTTP client for Authing (default: a rustls client with the configured timeouts).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Allows a plain-HTTP app host that is not loopback (development only).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.config.allow_insecure_http = allow;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        let c = &self.config;
        let config = |m: &str| Err(Error::Config(format!("Authing: {m}")));
        if c.app_id.trim().is_empty() {
            return config("app id is empty");
        }
        if c.app_secret.0.is_empty() {
            return config("app secret is empty");
        }
        if c.user_pool_id.trim().is_empty() {
            return config("user pool id is empty");
        }
        let Ok(url) = url::Url::parse(&c.app_host) else {
            return config("app host is not a URL");
        };
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match url.scheme() {
            "https" => {}
            "http" if loopback || c.allow_insecure_http => {}
            _ => return config("app host must be https"),
        }
        if c.auth_method == TokenAuthMethod::None && !self.allow_none {
            return config(
                "token auth method `none` lets anyone holding a ticket get tokens; \
                 call allow_none_auth(true) if the application really uses it",
            );
        }
        if c.timeout.is_zero() || c.connect_timeout.is_zero() {
            return config("timeouts must be positive");
        }
        if c.poll_interval < Duration::from_millis(100) {
            return config("poll interval must be at least 100 ms");
        }
        if c.hs256 && c.app_secret.0.len() < qrauth_core::verify::MIN_HS256_SECRET_BYTES {
            return config("HS256 needs an app secret of at least 32 bytes");
        }
        Ok(())
    }
}
