//! Configuration of the device-grant provider: the issuer, the client and how it
//! authenticates, what it asks for, and the bounds on every call to the IdP.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use qrauth_core::{Error, Result, SharedClock, SystemClock};
use url::Url;

/// Default timeout of every call to the IdP.
///
/// ```
/// assert_eq!(qrauth_oidc::DEFAULT_TIMEOUT.as_secs(), 10);
/// ```
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default connect timeout of every call to the IdP.
///
/// ```
/// assert_eq!(qrauth_oidc::DEFAULT_CONNECT_TIMEOUT.as_secs(), 5);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on every answer of the IdP, bytes.
///
/// ```
/// assert_eq!(qrauth_oidc::DEFAULT_MAX_RESPONSE_BYTES, 64 * 1024);
/// ```
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The RFC 8628 §3.2 poll interval when the IdP advertises none.
///
/// ```
/// assert_eq!(qrauth_oidc::DEFAULT_INTERVAL.as_secs(), 5);
/// ```
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// What RFC 8628 §3.5 adds to the interval on every `slow_down`.
///
/// ```
/// assert_eq!(qrauth_oidc::SLOW_DOWN_STEP.as_secs(), 5);
/// ```
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// How qrauth authenticates as the client at the IdP's device authorization and token
/// endpoints (RFC 6749 §2.3, OpenID Connect Core §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret (the default with a
    /// secret).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A public client: `client_id` only (the default without a secret).
    None,
}

impl ClientAuth {
    /// The OAuth name of the method.
    ///
    /// ```
    /// assert_eq!(qrauth_oidc::ClientAuth::ClientSecretPost.as_str(), "client_secret_post");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
            ClientAuth::None => "none",
        }
    }
}

/// The client secret: never printed.
#[derive(Clone)]
pub(crate) struct ClientSecret(pub(crate) String);

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Without a trailing slash unless the issuer has one.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<ClientSecret>,
    pub auth: ClientAuth,
    pub scopes: String,
    pub extra_params: Vec<(String, String)>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    pub allow_insecure_http: bool,
    pub jwks_refetch_interval: Option<Duration>,
}

impl Config {
    /// Whether `url` may be called: `https`, or plain `http` to a loopback host or when
    /// explicitly allowed.
    pub fn allowed_url(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else {
            return false;
        };
        match url.scheme() {
            "https" => url.host().is_some(),
            "http" => self.allow_insecure_http || is_loopback(&url),
            _ => false,
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Builds a [`DeviceGrantProvider`](crate::DeviceGrantProvider); from
/// [`DeviceGrantProvider::builder`](crate::DeviceGrantProvider::builder).
///
/// ```
/// use std::time::Duration;
/// use qrauth_oidc::{ClientAuth, DeviceGrantProvider};
///
/// let provider = DeviceGrantProvider::builder("https://idp.example", "qrauth-web")
///     .client_secret("s3cret")
///     .client_auth(ClientAuth::ClientSecretPost)
///     .scopes(["openid", "profile", "email"])
///     .authorization_param("audience", "https://api.example")
///     .timeouts(Duration::from_secs(5), Duration::from_secs(2))
///     .build()?;
/// assert_eq!(provider.issuer(), "https://idp.example");
/// # Ok::<_, qrauth_core::Error>(())
/// ```
pub struct DeviceGrantProviderBuilder {
    pub(crate) config: Config,
    auth_set: bool,
    pub(crate) clock: SharedClock,
    pub(crate) http_client: Option<reqwest::Client>,
}

impl fmt::Debug for DeviceGrantProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceGrantProviderBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl DeviceGrantProviderBuilder {
    pub(crate) fn new(issuer: String, client_id: String) -> Self {
        Self {
            config: Config {
                issuer,
                client_id,
                client_secret: None,
                auth: ClientAuth::None,
                scopes: "openid profile".into(),
                extra_params: Vec::new(),
                timeout: DEFAULT_TIMEOUT,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
                allow_insecure_http: false,
                jwks_refetch_interval: None,
            },
            auth_set: false,
            clock: Arc::new(SystemClock),
            http_client: None,
        }
    }

    /// The client secret of a confidential client; sent with `client_secret_basic` unless
    /// [`client_auth`](Self::client_auth) says otherwise.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.config.client_secret = Some(ClientSecret(secret.into()));
        if !self.auth_set {
            self.config.auth = ClientAuth::ClientSecretBasic;
        }
        self
    }

    /// How the client authenticates (default: `client_secret_basic` with a secret, `none`
    /// without).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.config.auth = auth;
        self.auth_set = true;
        self
    }

    /// The scopes asked for (default `openid profile`); `openid` is added when missing, since
    /// the login needs the id_token.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = scopes
            .into_iter()
            .map(|s| s.as_ref().trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if !list.iter().any(|s| s == "openid") {
            list.insert(0, "openid".into());
        }
        self.config.scopes = list.join(" ");
        self
    }

    /// An extra parameter of the device authorization request (Auth0's `audience`, Entra's
    /// `domain_hint`, …). The protocol's own parameters (`client_id`, `client_secret`,
    /// `scope`) are refused by [`build`](Self::build).
    pub fn authorization_param(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.config.extra_params.push((name.into(), value.into()));
        self
    }

    /// Timeout of every call to the IdP, and of establishing its connection (defaults
    /// [`DEFAULT_TIMEOUT`], [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn timeouts(mut self, request: Duration, connect: Duration) -> Self {
        self.config.timeout = request;
        self.config.connect_timeout = connect;
        self
    }

    /// Bound on every answer of the IdP (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn max_response_bytes(mut self, max: usize) -> Self {
        self.config.max_response_bytes = max;
        self
    }

    /// Accept plain-HTTP issuer and endpoints on hosts other than loopback (a test-only
    /// setting: tokens cross the network in clear). Loopback is always allowed.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.config.allow_insecure_http = allow;
        self
    }

    /// Minimum time between two fetches of the IdP's JWKS when a token names an unknown key
    /// (the verifier's default, 30 s, when unset).
    pub fn jwks_refetch_interval(mut self, interval: Duration) -> Self {
        self.config.jwks_refetch_interval = Some(interval);
        self
    }

    /// The clock of expiry checks (default: the system clock); the service's clock in tests.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The HTTP client for every call to the IdP (default: one with the timeouts, no
    /// redirects).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    pub(crate) fn check(&mut self) -> Result<()> {
        let c = &mut self.config;
        if c.client_id.trim().is_empty() {
            return Err(Error::Config("client id is empty".into()));
        }
        if !c.allowed_url(&c.issuer) {
            return Err(Error::Config(
                "issuer must be an https URL (plain http only to loopback, or with \
                 allow_insecure_http)"
                    .into(),
            ));
        }
        match (c.auth, &c.client_secret) {
            (ClientAuth::None, _) => {}
            (_, Some(secret)) if !secret.0.is_empty() => {}
            (auth, _) => {
                return Err(Error::Config(format!(
                    "{} needs a client secret",
                    auth.as_str()
                )));
            }
        }
        const RESERVED: [&str; 5] = [
            "client_id",
            "client_secret",
            "scope",
            "grant_type",
            "device_code",
        ];
        if let Some((name, _)) = c
            .extra_params
            .iter()
            .find(|(n, _)| n.is_empty() || RESERVED.contains(&n.as_str()))
        {
            return Err(Error::Config(format!(
                "authorization parameter `{name}` is the protocol's own"
            )));
        }
        if c.timeout.is_zero() || c.connect_timeout.is_zero() {
            return Err(Error::Config("timeouts must be positive".into()));
        }
        if c.max_response_bytes < 1024 {
            return Err(Error::Config(
                "max_response_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> DeviceGrantProviderBuilder {
        DeviceGrantProviderBuilder::new("https://idp.example".into(), "web".into())
    }

    #[test]
    fn defaults_and_checks() {
        let mut b = builder();
        b.check().unwrap();
        assert_eq!(b.config.scopes, "openid profile");
        assert_eq!(b.config.auth, ClientAuth::None);
        let mut b = builder().client_secret("s");
        b.check().unwrap();
        assert_eq!(b.config.auth, ClientAuth::ClientSecretBasic);
        assert!(
            builder()
                .client_auth(ClientAuth::ClientSecretPost)
                .check()
                .is_err()
        );
        assert!(builder().authorization_param("scope", "x").check().is_err());
        let mut insecure =
            DeviceGrantProviderBuilder::new("http://idp.example".into(), "web".into());
        assert!(insecure.check().is_err());
        let mut loopback =
            DeviceGrantProviderBuilder::new("http://127.0.0.1:8080".into(), "web".into());
        loopback.check().unwrap();
        assert_eq!(builder().scopes(["email"]).config.scopes, "openid email");
        assert!(!format!("{:?}", builder().client_secret("hunter2")).contains("hunter2"));
    }
}
