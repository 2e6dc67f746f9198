//! OpenID Connect id_token verification: [`IdTokenVerifier`].
//!
//! What it checks, in order:
//!
//! 1. size (≤ [`max_token_bytes`](IdTokenVerifierBuilder::max_token_bytes)) and shape (three
//!    base64url segments of JSON);
//! 2. the header's `alg` is a signature algorithm qrauth supports (`none` never is);
//! 3. `iss`, read from the still unverified payload, names a configured issuer; only that
//!    issuer's keys are used from then on;
//! 4. the key named by `kid` exists (the issuer's JWKS is refetched at most once per
//!    [`refetch_interval`](IdTokenVerifierBuilder::refetch_interval) when it does not) and *the
//!    key* allows the header's algorithm: the algorithm is pinned by the key's `kty`, `crv` and
//!    `alg`, never taken from the token alone. HS256 is accepted only with an explicitly
//!    configured [`hs256_secret`](IssuerConfig::hs256_secret), never with a key from a JWK set;
//! 5. the signature;
//! 6. `aud` contains the configured audience, `sub` is present, and `exp`, `nbf` and `iat` hold
//!    against the injected [`Clock`] with at most 60 s of leeway.
//!
//! A header `typ` naming another kind of JWT (`at+jwt`, `logout+jwt`, …) is refused, so that an
//! access token of the same issuer cannot pass for an id_token.
//!
//! Verified tokens are cached (by SHA-256 of the token) until their `exp` (at most an hour), so
//! verifying the same token again costs a hash and a lookup; the time checks are repeated on
//! every hit. A cached token therefore stays valid until then even if its key leaves the JWKS.
//!
//! Tokens are never logged.

mod jwks;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::{Map, Value};
use url::Url;

use crate::clock::{Clock, SharedClock, SystemClock};
use crate::error::{Error, Result, TokenError};
use crate::secret::sha256;
use crate::types::{Audience, Claims};

use self::jwks::{FetchContext, IssuerKeys, KeySet, KeySource, VerifyingKey};

/// Default clock-skew leeway for `exp`, `nbf` and `iat`.
///
/// ```
/// assert_eq!(qrauth_core::verify::DEFAULT_LEEWAY.as_secs(), 60);
/// ```
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);
/// Largest leeway the builder accepts.
///
/// ```
/// assert_eq!(qrauth_core::verify::MAX_LEEWAY.as_secs(), 60);
/// ```
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// Default timeout of every JWKS or discovery request.
///
/// ```
/// assert_eq!(qrauth_core::verify::DEFAULT_HTTP_TIMEOUT.as_secs(), 5);
/// ```
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);
/// Default largest token accepted, in bytes.
///
/// ```
/// assert_eq!(qrauth_core::verify::DEFAULT_MAX_TOKEN_BYTES, 16 * 1024);
/// ```
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Default minimum time between two JWKS fetches of one issuer.
///
/// ```
/// assert_eq!(qrauth_core::verify::DEFAULT_REFETCH_INTERVAL.as_secs(), 30);
/// ```
pub const DEFAULT_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Default number of verified tokens kept in the cache.
///
/// ```
/// assert_eq!(qrauth_core::verify::DEFAULT_TOKEN_CACHE_CAPACITY, 10_000);
/// ```
pub const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
///
/// ```
/// assert_eq!(qrauth_core::verify::MIN_HS256_SECRET_BYTES, 32);
/// ```
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// A verified token stays in the cache at most this long, even if its `exp` is later.
const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

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
    /// [`TokenError::TooLarge`] before any parsing.
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
                    .redirect(reqwest::redirect::Policy::limited(3))
                    .user_agent(concat!("qrauth/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| config_err(format!("HTTP client: {e}")))?,
            ),
            None => None,
        };

        let cache = (self.token_cache_capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(self.token_cache_capacity)
                .expire_after(CacheExpiry)
                .build_with_hasher(BuildHasherDefault::<DigestHasher>::default())
        });

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
                    clock: self.clock,
                },
            }),
        })
    }
}

/// Verifies OpenID Connect id_tokens of one or several issuers; see the [module](self)
/// documentation for what is checked.
///
/// Cheap to clone (one `Arc`), `Send` and `Sync`: build one at start-up and share it.
///
/// ```
/// use std::sync::Arc;
/// use jsonwebtoken::{Algorithm, EncodingKey, Header};
/// use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
/// use qrauth_core::{Clock, Error, ManualClock, TokenError};
///
/// let secret = b"a shared secret of at least 32 bytes!".to_vec();
/// let clock = ManualClock::new(1_700_000_000_000);
/// let verifier = IdTokenVerifier::builder()
///     .issuer(IssuerConfig::new("https://me.example", "web").hs256_secret(secret.clone()))
///     .clock(Arc::new(clock.clone()))
///     .build()
///     .unwrap();
///
/// let now = clock.now_secs();
/// let claims = serde_json::json!({
///     "iss": "https://me.example", "sub": "alice", "aud": "web",
///     "iat": now, "exp": now + 300,
/// });
/// let token = jsonwebtoken::encode(
///     &Header::new(Algorithm::HS256),
///     &claims,
///     &EncodingKey::from_secret(&secret),
/// )
/// .unwrap();
///
/// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
/// rt.block_on(async {
///     assert_eq!(verifier.verify(&token).await.unwrap().sub, "alice");
///     clock.advance(std::time::Duration::from_secs(400));
///     assert!(matches!(
///         verifier.verify(&token).await,
///         Err(Error::InvalidToken(TokenError::Expired))
///     ));
/// });
/// ```
#[derive(Clone)]
pub struct IdTokenVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    issuers: HashMap<String, Arc<IssuerEntry>>,
    clock: SharedClock,
    leeway_ms: u64,
    max_token_bytes: usize,
    cache: Option<TokenCache>,
    fetch: FetchContext,
}

impl fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut issuers: Vec<_> = self.inner.issuers.keys().collect();
        issuers.sort();
        f.debug_struct("IdTokenVerifier")
            .field("issuers", &issuers)
            .field("leeway_ms", &self.inner.leeway_ms)
            .field("max_token_bytes", &self.inner.max_token_bytes)
            .finish_non_exhaustive()
    }
}

struct IssuerEntry {
    issuer: String,
    audience: String,
    keys: IssuerKeys,
    hs256: Option<Arc<VerifyingKey>>,
}

impl IssuerEntry {
    fn from_config(config: IssuerConfig) -> std::result::Result<Self, String> {
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

/// A verified token in the cache, with its validity window precomputed (leeway included).
struct CachedToken {
    claims: Claims,
    /// Unix ms from which the token is expired.
    expired_from_ms: u64,
    /// Unix ms before which the token is not yet valid.
    valid_from_ms: u64,
    /// How long moka keeps it.
    ttl: Duration,
}

impl CachedToken {
    fn check_time(&self, now_ms: u64) -> std::result::Result<(), TokenError> {
        if now_ms >= self.expired_from_ms {
            Err(TokenError::Expired)
        } else if now_ms < self.valid_from_ms {
            Err(TokenError::NotYetValid)
        } else {
            Ok(())
        }
    }
}

/// Verified tokens by SHA-256 of the token.
type TokenCache = moka::sync::Cache<[u8; 32], Arc<CachedToken>, BuildHasherDefault<DigestHasher>>;

/// The cache keys are SHA-256 digests, already uniformly distributed (and only tokens that
/// verified are inserted): their first eight bytes are the hash, no need to hash them again.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as a length prefix (ignored below) and then its bytes.
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }

    fn write_usize(&mut self, _length_prefix: usize) {}
}

struct CacheExpiry;

impl moka::Expiry<[u8; 32], Arc<CachedToken>> for CacheExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The parts of a JOSE header qrauth reads.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn b64(segment: &str) -> std::result::Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// The header's algorithm, if it is one qrauth ever verifies.
fn header_algorithm(name: &str) -> std::result::Result<Algorithm, TokenError> {
    match Algorithm::from_str(name) {
        Ok(
            alg @ (Algorithm::HS256
            | Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA),
        ) => Ok(alg),
        _ => Err(TokenError::AlgorithmNotAllowed),
    }
}

/// Whether a JOSE `typ` names an explicitly typed JWT that is not an id_token (`at+jwt`,
/// `logout+jwt`, `dpop+jwt`, …). `JWT` and no `typ` at all are what id_tokens carry.
fn is_other_token_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    typ.ends_with("+jwt")
}

/// A NumericDate claim as whole seconds (fractions are truncated); `None` when absent.
fn numeric_date(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> std::result::Result<Option<u64>, TokenError> {
    let Some(value) = claims.get_mut(name) else {
        return Ok(None);
    };
    let secs = match &*value {
        Value::Null => return Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => secs,
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => f as u64,
            _ => return Err(TokenError::InvalidClaim(name)),
        },
        _ => return Err(TokenError::InvalidClaim(name)),
    };
    // Normalise so that `Claims` deserialises it as an integer.
    *value = Value::from(secs);
    Ok(Some(secs))
}

fn audience(claims: &Map<String, Value>) -> std::result::Result<Audience, TokenError> {
    match claims.get("aud") {
        Some(Value::String(a)) => Ok(Audience::One(a.clone())),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Audience::Many)
            .ok_or(TokenError::InvalidClaim("aud")),
        _ => Err(TokenError::InvalidClaim("aud")),
    }
}

impl IdTokenVerifier {
    /// A builder with the defaults: leeway 60 s, HTTP timeout 5 s, tokens up to 16 KiB,
    /// refetch at most every 30 s, 10 000 cached tokens, [`SystemClock`].
    ///
    /// ```
    /// use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    ///
    /// let verifier = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://idp.example", "web").jwks_url("https://idp.example/jwks"))
    ///     .build()
    ///     .unwrap();
    /// # let _ = verifier;
    /// ```
    pub fn builder() -> IdTokenVerifierBuilder {
        IdTokenVerifierBuilder::default()
    }

    /// The configured issuers (their `iss` values), sorted.
    ///
    /// ```
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// let verifier = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://b.example", "web").jwks_url("https://b.example/jwks"))
    ///     .issuer(IssuerConfig::new("https://a.example", "web").jwks_url("https://a.example/jwks"))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(verifier.issuers(), ["https://a.example", "https://b.example"]);
    /// ```
    pub fn issuers(&self) -> Vec<&str> {
        let mut issuers: Vec<&str> = self.inner.issuers.keys().map(String::as_str).collect();
        issuers.sort_unstable();
        issuers
    }

    /// Fetches the keys of every remote issuer whose keys were never fetched, so that the first
    /// verification does not wait for the network. Optional: keys are fetched on first use
    /// anyway.
    ///
    /// # Errors
    /// [`Error::Upstream`] or [`Error::UpstreamTimeout`] for the first issuer whose JWKS (or
    /// discovery document) could not be fetched; the other issuers are still tried.
    ///
    /// ```no_run
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let verifier = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://idp.example", "web").jwks_url("https://idp.example/jwks"))
    ///     .build()?;
    /// verifier.prefetch().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn prefetch(&self) -> Result<()> {
        let mut first_error = None;
        for entry in self.inner.issuers.values() {
            if !entry.keys.is_remote() {
                continue;
            }
            let seen = entry.keys.attempts();
            if let Err(e) = entry.keys.refresh(seen, true, &self.inner.fetch).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Verifies an id_token (the bare compact JWS, without `Bearer `) and returns its claims.
    ///
    /// # Errors
    /// - [`Error::InvalidToken`] with the precise [`TokenError`]: `Missing` (empty), `TooLarge`,
    ///   `Malformed`, `AlgorithmNotAllowed` (`none`, an unsupported algorithm, one the key does
    ///   not allow, or HS256 without a configured secret), `WrongIssuer`, `UnknownKey` (even
    ///   after the allowed refetch), `BadSignature`, `WrongAudience`, `Expired`, `NotYetValid`
    ///   (`nbf` or `iat` in the future), `InvalidClaim` (missing or mistyped `iss`, `sub`,
    ///   `aud`, `exp`, `nbf`, `iat`, `auth_time` or `nonce`);
    /// - [`Error::Upstream`] / [`Error::UpstreamTimeout`] when the issuer's keys had to be
    ///   fetched and the JWKS (or discovery) endpoint failed or did not answer within the
    ///   [`http_timeout`](IdTokenVerifierBuilder::http_timeout).
    ///
    /// ```
    /// # use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
    /// use qrauth_core::{Error, TokenError};
    ///
    /// let verifier = IdTokenVerifier::builder()
    ///     .issuer(IssuerConfig::new("https://me.example", "web")
    ///         .hs256_secret(b"a shared secret of at least 32 bytes!".to_vec()))
    ///     .build()
    ///     .unwrap();
    /// let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let unsigned = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL21lLmV4YW1wbGUifQ.";
    /// assert!(matches!(
    ///     rt.block_on(verifier.verify(unsigned)),
    ///     Err(Error::InvalidToken(TokenError::AlgorithmNotAllowed))
    /// ));
    /// ```
    pub async fn verify(&self, token: &str) -> Result<Claims> {
        let inner = &*self.inner;
        if token.is_empty() {
            return Err(TokenError::Missing.into());
        }
        if token.len() > inner.max_token_bytes {
            return Err(TokenError::TooLarge.into());
        }
        let now_ms = inner.clock.now_millis();
        let cache_key = inner.cache.as_ref().map(|_| sha256(token.as_bytes()));
        if let (Some(cache), Some(key)) = (&inner.cache, &cache_key) {
            if let Some(hit) = cache.get(key) {
                if let Err(e) = hit.check_time(now_ms) {
                    cache.invalidate(key);
                    return Err(e.into());
                }
                return Ok(hit.claims.clone());
            }
        }

        let verified = self.verify_uncached(token, now_ms).await?;
        let claims = verified.claims.clone();
        if let (Some(cache), Some(key)) = (&inner.cache, cache_key) {
            cache.insert(key, Arc::new(verified));
        }
        Ok(claims)
    }

    async fn verify_uncached(&self, token: &str, now_ms: u64) -> Result<CachedToken> {
        let inner = &*self.inner;
        let mut segments = token.split('.');
        let (header_b64, payload_b64, signature_b64) = match (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) {
            (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => (h, p, s),
            _ => return Err(TokenError::Malformed.into()),
        };

        let header: RawHeader =
            serde_json::from_slice(&b64(header_b64)?).map_err(|_| TokenError::Malformed)?;
        let alg = header_algorithm(&header.alg)?;
        if header.crit.is_some() {
            // No JOSE extension is understood, so none may be critical (RFC 7515 §4.1.11).
            return Err(TokenError::Malformed.into());
        }
        if header.typ.as_deref().is_some_and(is_other_token_type) {
            // An access token (`at+jwt`), logout token, DPoP proof… of the same issuer, perhaps
            // even with our audience, is not an id_token.
            return Err(TokenError::InvalidClaim("typ").into());
        }
        let mut payload: Map<String, Value> =
            serde_json::from_slice(&b64(payload_b64)?).map_err(|_| TokenError::Malformed)?;
        if signature_b64.is_empty() {
            return Err(TokenError::BadSignature.into());
        }
        // Decoded only to tell a malformed signature from a wrong one.
        b64(signature_b64)?;

        // Select the issuer from the unverified `iss`; only its keys may verify the token.
        let entry = match payload.get("iss") {
            Some(Value::String(iss)) => inner
                .issuers
                .get(iss.as_str())
                .ok_or(TokenError::WrongIssuer)?,
            _ => return Err(TokenError::InvalidClaim("iss").into()),
        };

        let keys = if alg == Algorithm::HS256 {
            match &entry.hs256 {
                Some(secret) => vec![Arc::clone(secret)],
                None => return Err(TokenError::AlgorithmNotAllowed.into()),
            }
        } else {
            entry
                .keys
                .keys_for(header.kid.as_deref(), alg, &inner.fetch)
                .await?
        };

        let message = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
        if !keys
            .iter()
            .any(|k| verify_signature(k, alg, message, signature_b64))
        {
            return Err(TokenError::BadSignature.into());
        }

        // The token is authentic: now check what it says.
        let aud = audience(&payload)?;
        if !aud.contains(&entry.audience) {
            return Err(TokenError::WrongAudience.into());
        }
        if !matches!(payload.get("sub"), Some(Value::String(s)) if !s.is_empty()) {
            return Err(TokenError::InvalidClaim("sub").into());
        }
        if !matches!(
            payload.get("nonce"),
            None | Some(Value::Null | Value::String(_))
        ) {
            return Err(TokenError::InvalidClaim("nonce").into());
        }
        let exp = numeric_date(&mut payload, "exp")?.ok_or(TokenError::InvalidClaim("exp"))?;
        let nbf = numeric_date(&mut payload, "nbf")?;
        let iat = numeric_date(&mut payload, "iat")?;
        numeric_date(&mut payload, "auth_time")?;

        let leeway = inner.leeway_ms;
        let expired_from_ms = exp.saturating_mul(1000).saturating_add(leeway);
        let not_before = nbf.max(iat).unwrap_or(0);
        let valid_from_ms = not_before.saturating_mul(1000).saturating_sub(leeway);
        let ttl = Duration::from_millis(expired_from_ms.saturating_sub(now_ms)).min(MAX_CACHE_TTL);
        let claims: Claims = serde_json::from_value(Value::Object(payload))
            .map_err(|_| TokenError::InvalidClaim("claims"))?;
        let verified = CachedToken {
            claims,
            expired_from_ms,
            valid_from_ms,
            ttl,
        };
        verified.check_time(now_ms)?;
        Ok(verified)
    }
}

/// Checks one signature with one key, with the algorithm the key allows (the caller made sure the
/// header's algorithm is one of them).
fn verify_signature(
    key: &VerifyingKey,
    alg: Algorithm,
    message: &[u8],
    signature_b64: &str,
) -> bool {
    if !key.algorithms.allows(alg) {
        return false;
    }
    match jsonwebtoken::crypto::verify(signature_b64, message, &key.key, alg) {
        Ok(valid) => valid,
        Err(e) => {
            tracing::debug!(kid = ?key.kid, ?alg, error = %e, "key cannot verify this algorithm");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_and_its_future_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        fn assert_send<T: Send>(_: &T) {}
        assert_send_sync::<IdTokenVerifier>();
        let verifier = IdTokenVerifier::builder()
            .issuer(IssuerConfig::new("https://a.example", "web").hs256_secret(vec![7; 32]))
            .build()
            .unwrap();
        let future = verifier.verify("x");
        assert_send(&future);
    }

    #[test]
    fn header_algorithms_outside_the_supported_list_are_refused() {
        for alg in ["none", "None", "HS384", "HS512", "PS384x", "", "RSA-OAEP"] {
            assert_eq!(
                header_algorithm(alg),
                Err(TokenError::AlgorithmNotAllowed),
                "{alg}"
            );
        }
        for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"] {
            assert!(header_algorithm(alg).is_ok(), "{alg}");
        }
    }

    #[test]
    fn only_untyped_or_plain_jwt_types_pass_for_id_tokens() {
        for typ in ["at+jwt", "application/at+JWT", "logout+jwt", "dpop+jwt"] {
            assert!(is_other_token_type(typ), "{typ}");
        }
        for typ in ["JWT", "jwt", "application/jwt"] {
            assert!(!is_other_token_type(typ), "{typ}");
        }
    }

    #[test]
    fn numeric_dates_accept_integers_and_fractions_only() {
        let mut claims: Map<String, Value> =
            serde_json::from_str(r#"{"a": 10, "b": 10.7, "c": "10", "d": -1, "e": null}"#).unwrap();
        assert_eq!(numeric_date(&mut claims, "a"), Ok(Some(10)));
        assert_eq!(numeric_date(&mut claims, "b"), Ok(Some(10)));
        assert_eq!(claims["b"], Value::from(10u64));
        assert_eq!(
            numeric_date(&mut claims, "c"),
            Err(TokenError::InvalidClaim("c"))
        );
        assert_eq!(
            numeric_date(&mut claims, "d"),
            Err(TokenError::InvalidClaim("d"))
        );
        assert_eq!(numeric_date(&mut claims, "e"), Ok(None));
        assert_eq!(numeric_date(&mut claims, "z"), Ok(None));
    }

    #[test]
    fn build_rejects_bad_configurations() {
        let ok = || IssuerConfig::new("https://a.example", "web");
        let build = |c: IssuerConfig| IdTokenVerifier::builder().issuer(c).build();
        assert!(build(ok().hs256_secret(vec![1; 31])).is_err());
        assert!(build(ok().jwks_url("not a url")).is_err());
        assert!(build(ok().jwks_url("http://idp.example/jwks")).is_err());
        assert!(
            build(
                ok().jwks_url("http://idp.example/jwks")
                    .allow_insecure_http(true)
            )
            .is_ok()
        );
        assert!(build(ok().jwks_url("https://a/j").discovery_url("https://a")).is_err());
        assert!(build(ok().static_jwks(JwkSet { keys: vec![] })).is_err());
        assert!(build(IssuerConfig::new("", "web").hs256_secret(vec![1; 32])).is_err());
        assert!(build(IssuerConfig::new("https://a", "").hs256_secret(vec![1; 32])).is_err());
        assert!(
            IdTokenVerifier::builder()
                .issuer(ok().hs256_secret(vec![1; 32]))
                .issuer(ok().hs256_secret(vec![2; 32]))
                .build()
                .is_err()
        );
        assert!(
            IdTokenVerifier::builder()
                .issuer(ok().hs256_secret(vec![1; 32]))
                .leeway(Duration::from_secs(61))
                .build()
                .is_err()
        );
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let config =
            IssuerConfig::new("https://a.example", "web").hs256_secret(b"S3CR3T".repeat(8));
        assert!(!format!("{config:?}").contains("S3CR3T"));
    }

    #[test]
    fn discovery_url_gets_the_well_known_path_once() {
        let entry = |raw: &str| {
            IssuerEntry::from_config(IssuerConfig::new("https://a", "w").discovery_url(raw))
                .unwrap()
        };
        for raw in [
            "https://idp.example/realm",
            "https://idp.example/realm/",
            "https://idp.example/realm/.well-known/openid-configuration",
        ] {
            let entry = entry(raw);
            assert!(
                matches!(entry.keys.source(), KeySource::Discovery(url)
                    if url.as_str() == "https://idp.example/realm/.well-known/openid-configuration"),
                "{raw}"
            );
        }
    }
}
