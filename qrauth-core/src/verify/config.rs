//! How issuers are trusted ([`IssuerConfig`]) and how a verifier is configured
//! ([`IdTokenVerifierBuilder`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use url::Url;

use super::cache::TokenCache;
use super::jwks::{self, FetchContext, IssuerKeys, KeySet, KeySource, VerifyingKey};
use super::{
    DEFAULT_HTTP_TIMEOUT, DEFAULT_JWKS_MAX_AGE, DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_REFETCH_INTERVAL, DEFAULT_TOKEN_CACHE_CAPACITY, IdTokenVerifier, Inner, MAX_LEEWAY,
    MIN_HS256_SECRET_BYTES,
};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::{Error, Result};

/// How one issuer is trusted: its `iss` value, the audience its tokens must name, and where its
/// keys come from (exactly one of [`jwks_url`](Self::jwks_url),
/// [`discovery_url`](Self::discovery_url) or [`static_jwks`](Self::static_jwks), and/or an
/// [`hs256_secret`](Self::hs256_secret)).
///
/// Invalid settings are reported by [`IdTokenVerifierBuilder::build`].
///
/// ```
/// use qrauth_core::verify::IssuerConfig;
///
/// let google = IssuerConfig::new("https://accounts.google.com", "my-client-id")
///     .discovery_url("https://accounts.google.com");
/// assert_eq!(google.issuer(), "https://accounts.google.com");
/// assert_eq!(google.audience(), "my-client-id");
/// ```
#[derive(Clone)]
pub struct IssuerConfig {
    issuer: String,
    audience: String,
    jwks_url: Option<String>,
    discovery_url: Option<String>,
    static_jwks: Option<JwkSet>,
    hs256_secret: Option<Vec<u8>>,
    allow_insecure_http: bool,
}

impl fmt::Debug for IssuerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("discovery_url", &self.discovery_url)
            .field(
                "static_jwks",
                &self.static_jwks.as_ref().map(|s| s.keys.len()),
            )
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl IssuerConfig {
    /// Trusts tokens whose `iss` is exactly `issuer` and whose `aud` contains `audience` (the
    /// client id of this application at that issuer).
    ///
    /// ```
    /// use qrauth_core::verify::IssuerConfig;
    ///
    /// let config = IssuerConfig::new("https://idp.example", "web-app")
    ///     .jwks_url("https://idp.example/jwks.json");
    /// # let _ = config;
    /// ```
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            discovery_url: None,
            static_jwks: None,
            hs256_secret: None,
            allow_insecure_http: false,
        }
    }

    /// The expected `iss`.
    ///
    /// ```
    /// # use qrauth_core::verify::IssuerConfig;
    /// assert_eq!(IssuerConfig::new("https://idp.example", "a").issuer(), "https://idp.example");
    /// ```
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audience that `aud` must contain.
    ///
    /// ```
    /// # use qrauth_core::verify::IssuerConfig;
    /// assert_eq!(IssuerConfig::new("https://idp.example", "a").audience(), "a");
    /// ```
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Fetch the issuer's keys from this JWKS URL (HTTPS; plain HTTP only to a loopback host or
    /// with [`allow_insecure_http`](Self::allow_insecure_http)).
    ///
    /// ```
    /// # use qrauth_core::verify::IssuerConfig;
    /// let config = IssuerConfig::new("https://idp.example", "a")
    ///     .jwks_url("https://idp.example/.well-known/jwks.json");
    /// # let _ = config;
    /// ```
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.jwks_url = Some(url.into());
        self
    }

    /// Find the JWKS URL through OpenID Connect discovery: the `jwks_uri` of
    /// `<url>/.well-known/openid-configuration` (or of `url` itself if it already ends with that
    /// path). The document's `issuer` must equal the configured issuer. Discovery happens on
    /// first use, not when building.
    ///
    /// ```
    /// # use qrauth_core::verify::IssuerConfig;
    /// let config = IssuerConfig::new("https://login.example.com/tenant", "a")
    ///     .discovery_url("https://login.example.com/tenant");
    /// # let _ = config;
    /// ```
    pub fn discovery_url(mut self, url: impl Into<String>) -> Self {
        self.discovery_url = Some(url.into());
        self
    }

    /// Use these keys and never fetch any (for an issuer that is this application, such as the
    /// built-in provider). Symmetric (`oct`) keys in the set are ignored.
    ///
    /// ```
    /// use jsonwebtoken::jwk::JwkSet;
    /// use qrauth_core::verify::IssuerConfig;
    ///
    /// let jwks: JwkSet = serde_json::from_str(r#"{"keys": []}"#).unwrap();
    /// let config = IssuerConfig::new("https://me.example", "web").static_jwks(jwks);
    /// # let _ = config;
    /// ```
    pub fn static_jwks(mut self, jwks: JwkSet) -> Self {
        self.static_jwks = Some(jwks);
        self
    }

    /// Accept HS256 tokens of this issuer signed with this shared secret (at least
    /// [`MIN_HS256_SECRET_BYTES`] bytes). Without it, HS256 is always refused; with it, HS256
    /// tokens are checked against this secret only, whatever their `kid`.
    ///
    /// ```
    /// # use qrauth_core::verify::IssuerConfig;
    /// let config = IssuerConfig::new("https://me.example", "web")
    ///     .hs256_secret(b"a shared secret of at least 32 bytes!".to_vec());
    /// # let _ = config;
    /// ```
    pub fn hs256_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.hs256_secret = Some(secret.into());
        self
    }

    /// Allow plain-HTTP JWKS and discovery URLs to non-loopback hosts (e.g. an IdP container
    /// in a development network). Never in production.
    ///
    /// ```
    /// # use qrauth_core::verify::IssuerConfig;
    /// let config = IssuerConfig::new("http://keycloak:8080/realms/dev", "web")
    ///     .discovery_url("http://keycloak:8080/realms/dev")
    ///     .allow_insecure_http(true);
    /// # let _ = config;
    /// ```
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }
}

/// Configures an [`IdTokenVerifier`]; see [`IdTokenVerifier::builder`].
///
/// ```
/// use std::time::Duration;
/// use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
///
/// let verifier = IdTokenVerifier::builder()
///     .issuer(IssuerConfig::new("https://idp.example", "web").jwks_url("https://idp.example/jwks"))
///     .leeway(Duration::from_secs(30))
///     .http_timeout(Duration::from_secs(3))
///     .build()
///     .unwrap();
/// # let _ = verifier;
/// ```
#[must_use = "call .build() to get a verifier"]
pub struct IdTokenVerifierBuilder {
    issuers: Vec<IssuerConfig>,
    leeway: Duration,
    clock: SharedClock,
    http_timeout: Duration,
    max_token_bytes: usize,
    refetch_interval: Duration,
    jwks_max_age: Duration,
    token_cache_capacity: u64,
    client: Option<reqwest::Client>,
}

impl fmt::Debug for IdTokenVerifierBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdTokenVerifierBuilder")
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .field("http_timeout", &self.http_timeout)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("refetch_interval", &self.refetch_interval)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("token_cache_capacity", &self.token_cache_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for IdTokenVerifierBuilder {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            clock: Arc::new(SystemClock),
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            refetch_interval: DEFAULT_REFETCH_INTERVAL,
            jwks_max_age: DEFAULT_JWKS_MAX_AGE,
            token_cache_capacity: DEFAULT_TOKEN_CACHE_CAPACITY,
            client: None,
        }
    }
}

impl IdTokenVerifierBuilder {
    /// Trusts one more issuer. At least one is required; each `iss` at most once.
    ///
    /// ```
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// let verifier = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://a.example", "web").jwks_url("https://a.example/jwks"))
    ///     .issuer(IssuerConfig::new("https://b.example", "web").discovery_url("https://b.example"))
    ///     .build()
    ///     .unwrap();
    /// # let _ = verifier;
    /// ```
    pub fn issuer(mut self, config: IssuerConfig) -> Self {
        self.issuers.push(config);
        self
    }

    /// Clock-skew leeway for `exp`, `nbf` and `iat` (default 60 s; more than 60 s is refused by
    /// [`build`](Self::build)).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// let too_lenient = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://a.example", "web").jwks_url("https://a.example/jwks"))
    ///     .leeway(Duration::from_secs(120))
    ///     .build();
    /// assert!(too_lenient.is_err());
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The clock used for `exp`, `nbf`, `iat` and the refetch interval (default
    /// [`SystemClock`]).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// use qrauth_core::ManualClock;
    ///
    /// let clock = ManualClock::starting_now();
    /// let verifier = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://a.example", "web").jwks_url("https://a.example/jwks"))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build()
    ///     .unwrap();
    /// # let _ = verifier;
    /// ```
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Timeout of every JWKS and discovery request, covering connection, headers and body
    /// (default 5 s).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// let builder = IdTokenVerifier::builder().http_timeout(Duration::from_secs(2));
    /// # let _ = builder;
    /// ```
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Largest token accepted, in bytes (default 16 KiB); larger ones are
    /// [`TokenError::TooLarge`](crate::TokenError::TooLarge) before any parsing.
    ///
    /// ```
    /// # use qrauth_core::verify::IdTokenVerifier;
    /// let builder = IdTokenVerifier::builder().max_token_bytes(8 * 1024);
    /// # let _ = builder;
    /// ```
    pub fn max_token_bytes(mut self, max: usize) -> Self {
        self.max_token_bytes = max;
        self
    }

    /// Minimum time between two JWKS fetches of one issuer caused by unknown `kid`s (default
    /// 30 s). The first fetch happens on first use, whatever this says.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qrauth_core::verify::IdTokenVerifier;
    /// let builder = IdTokenVerifier::builder().refetch_interval(Duration::from_secs(60));
    /// # let _ = builder;
    /// ```
    pub fn refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// How long fetched keys are believed (default 5 min): once an issuer's JWKS is older, it
    /// is fetched again before the next verification, and a cached token is verified again
    /// against it. So a key the issuer withdraws stops verifying, cached tokens included,
    /// within this time on every replica. If the new fetch fails, the keys held are kept. Never
    /// shorter than the [`refetch_interval`](Self::refetch_interval).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qrauth_core::verify::IdTokenVerifier;
    /// let builder = IdTokenVerifier::builder().jwks_max_age(Duration::from_secs(60));
    /// # let _ = builder;
    /// ```
    pub fn jwks_max_age(mut self, max_age: Duration) -> Self {
        self.jwks_max_age = max_age;
        self
    }

    /// How many verified tokens to cache (default 10 000; 0 disables the cache).
    ///
    /// ```
    /// # use qrauth_core::verify::IdTokenVerifier;
    /// let builder = IdTokenVerifier::builder().token_cache_capacity(0);
    /// # let _ = builder;
    /// ```
    pub fn token_cache_capacity(mut self, capacity: u64) -> Self {
        self.token_cache_capacity = capacity;
        self
    }

    /// The HTTP client for JWKS and discovery requests (default: a new rustls client). The
    /// [`http_timeout`](Self::http_timeout) is applied to every request whatever the client's
    /// own settings.
    ///
    /// ```
    /// # use qrauth_core::verify::IdTokenVerifier;
    /// let client = reqwest::Client::new();
    /// let builder = IdTokenVerifier::builder().http_client(client);
    /// # let _ = builder;
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Checks the configuration and builds the verifier. Does no network I/O: keys are fetched
    /// on first use (or by [`IdTokenVerifier::prefetch`]).
    ///
    /// # Errors
    /// [`Error::Config`] if no issuer is configured, an issuer appears twice, an issuer has no
    /// key source or more than one of JWKS URL / discovery URL / static JWKS, a URL is invalid
    /// or plain HTTP to a non-loopback host, a static JWK set has no usable key, the HS256
    /// secret is shorter than [`MIN_HS256_SECRET_BYTES`], the leeway exceeds 60 s, or a limit
    /// is zero.
    ///
    /// ```
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// assert!(IdTokenVerifier::builder().build().is_err()); // no issuer
    /// assert!(IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://a.example", "web")) // no key source
    ///     .build()
    ///     .is_err());
    /// ```
    pub fn build(self) -> Result<IdTokenVerifier> {
        let config_err = |msg: String| Error::Config(format!("id_token verifier: {msg}"));
        if self.issuers.is_empty() {
            return Err(config_err("no issuer configured".to_owned()));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(config_err(format!(
                "leeway {:?} exceeds the maximum of {MAX_LEEWAY:?}",
                self.leeway
            )));
        }
        if self.http_timeout.is_zero() {
            return Err(config_err("http_timeout must be positive".to_owned()));
        }
        if self.max_token_bytes == 0 {
            return Err(config_err("max_token_bytes must be positive".to_owned()));
        }

        let mut issuers = HashMap::with_capacity(self.issuers.len());
        let mut needs_http = false;
        for config in self.issuers {
            let entry = IssuerEntry::from_config(config).map_err(config_err)?;
            needs_http |= entry.keys.is_remote();
            if issuers.contains_key(&entry.issuer) {
                return Err(config_err(format!(
                    "issuer `{}` configured twice",
                    entry.issuer
                )));
            }
            issuers.insert(entry.issuer.clone(), Arc::new(entry));
        }

        let client = match self.client {
            Some(client) => Some(client),
            None if needs_http => Some(
                reqwest::Client::builder()
                    .timeout(self.http_timeout)
                    .connect_timeout(self.http_timeout)
                    .redirect(https_only_redirects())
                    .user_agent(concat!("qrauth/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| config_err(format!("HTTP client: {e}")))?,
            ),
            None => None,
        };

        let cache =
            (self.token_cache_capacity > 0).then(|| TokenCache::new(self.token_cache_capacity));

        Ok(IdTokenVerifier {
            inner: Arc::new(Inner {
                issuers,
                clock: Arc::clone(&self.clock),
                leeway_ms: self.leeway.as_millis() as u64,
                max_token_bytes: self.max_token_bytes,
                cache,
                fetch: FetchContext {
                    client,
                    timeout: self.http_timeout,
                    refetch_interval_ms: u64::try_from(self.refetch_interval.as_millis())
                        .unwrap_or(u64::MAX),
                    // Not below the refetch interval, which would refuse the fetch it asks for.
                    max_age_ms: u64::try_from(
                        self.jwks_max_age.max(self.refetch_interval).as_millis(),
                    )
                    .unwrap_or(u64::MAX),
                    clock: self.clock,
                },
            }),
        })
    }
}

pub(super) struct IssuerEntry {
    pub(super) issuer: String,
    pub(super) audience: String,
    pub(super) keys: IssuerKeys,
    pub(super) hs256: Option<Arc<VerifyingKey>>,
}

impl IssuerEntry {
    pub(super) fn from_config(config: IssuerConfig) -> std::result::Result<Self, String> {
        let IssuerConfig {
            issuer,
            audience,
            jwks_url,
            discovery_url,
            static_jwks,
            hs256_secret,
            allow_insecure_http,
        } = config;
        if issuer.is_empty() {
            return Err("an issuer is empty".to_owned());
        }
        if audience.is_empty() {
            return Err(format!("issuer `{issuer}` has an empty audience"));
        }
        let sources = [
            jwks_url.is_some(),
            discovery_url.is_some(),
            static_jwks.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sources > 1 {
            return Err(format!(
                "issuer `{issuer}` has more than one of jwks_url, discovery_url and static_jwks"
            ));
        }
        if sources == 0 && hs256_secret.is_none() {
            return Err(format!(
                "issuer `{issuer}` has no key source (jwks_url, discovery_url, static_jwks or \
                 hs256_secret)"
            ));
        }
        let hs256 = match hs256_secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                return Err(format!(
                    "the HS256 secret of issuer `{issuer}` is shorter than \
                     {MIN_HS256_SECRET_BYTES} bytes"
                ));
            }
            Some(secret) => Some(Arc::new(VerifyingKey::hs256(&secret))),
            None => None,
        };
        let parse_url = |raw: &str| -> std::result::Result<Url, String> {
            let url = Url::parse(raw).map_err(|e| format!("issuer `{issuer}`: bad URL: {e}"))?;
            jwks::check_url_scheme(&url, allow_insecure_http)
                .map_err(|e| format!("issuer `{issuer}`: {e}"))?;
            Ok(url)
        };
        let (source, initial) = if let Some(raw) = jwks_url {
            (KeySource::Jwks(parse_url(&raw)?), KeySet::default())
        } else if let Some(raw) = discovery_url {
            let mut url = parse_url(&raw)?;
            if !url.path().ends_with(jwks::DISCOVERY_PATH) {
                let path = format!(
                    "{}{}",
                    url.path().trim_end_matches('/'),
                    jwks::DISCOVERY_PATH
                );
                url.set_path(&path);
            }
            (KeySource::Discovery(url), KeySet::default())
        } else if let Some(set) = static_jwks {
            let (keys, skipped) = KeySet::from_jwk_set(&set);
            if keys.is_empty() && hs256.is_none() {
                return Err(format!(
                    "the static JWK set of issuer `{issuer}` has no usable key ({skipped} skipped)"
                ));
            }
            if skipped > 0 {
                tracing::warn!(issuer = %issuer, skipped, "unusable keys in static JWK set skipped");
            }
            (KeySource::Static, keys)
        } else {
            (KeySource::Static, KeySet::default())
        };
        Ok(Self {
            keys: IssuerKeys::new(issuer.clone(), source, initial, allow_insecure_http),
            issuer,
            audience,
            hs256,
        })
    }
}

/// At most three redirects, none of which may leave https: a discovery or JWKS fetch that
/// started on https never continues over plain http (where anyone on the path could answer
/// with their own keys). A fetch that started on http (a development issuer with
/// `allow_http`) may stay on http.
pub(crate) fn https_only_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        match redirect_refusal(attempt.previous(), attempt.url()) {
            Some(refusal) => attempt.error(refusal),
            None => attempt.follow(),
        }
    })
}

/// Why a redirect to `next`, after the fetch went through `previous` (the first is where it
/// started), is not followed; `None` to follow it.
fn redirect_refusal(previous: &[url::Url], next: &url::Url) -> Option<&'static str> {
    let started_on_https = previous.first().is_some_and(|u| u.scheme() == "https");
    if previous.len() > 3 {
        Some("too many redirects")
    } else if started_on_https && next.scheme() != "https" {
        Some("redirect away from https refused")
    } else {
        None
    }
}

#[cfg(test)]
mod redirect_tests {
    use super::redirect_refusal;

    fn urls(list: &[&str]) -> Vec<url::Url> {
        list.iter().map(|u| url::Url::parse(u).unwrap()).collect()
    }

    #[test]
    fn jwks_and_discovery_redirects_never_leave_https() {
        let next = |u: &str| url::Url::parse(u).unwrap();
        let from_https = urls(&["https://idp.example/.well-known/jwks.json"]);
        assert_eq!(
            redirect_refusal(&from_https, &next("https://cdn.example/jwks")),
            None
        );
        assert_eq!(
            redirect_refusal(&from_https, &next("http://cdn.example/jwks")),
            Some("redirect away from https refused")
        );
        // Not even after a detour over another https host.
        let detour = urls(&["https://idp.example/jwks", "https://cdn.example/jwks"]);
        assert!(redirect_refusal(&detour, &next("http://evil.example/jwks")).is_some());
        // A development issuer on http (allow_insecure_http) may stay on http.
        let from_http = urls(&["http://127.0.0.1:8080/jwks"]);
        assert_eq!(
            redirect_refusal(&from_http, &next("http://127.0.0.1:8080/k")),
            None
        );
        let many = urls(&[
            "https://a.example/",
            "https://b.example/",
            "https://c.example/",
            "https://d.example/",
        ]);
        assert_eq!(
            redirect_refusal(&many, &next("https://e.example/")),
            Some("too many redirects")
        );
    }
}
