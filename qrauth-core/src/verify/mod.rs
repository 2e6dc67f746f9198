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
//!    against the injected [`Clock`](crate::Clock) with at most 60 s of leeway.
//!
//! A header `typ` naming another kind of JWT (`at+jwt`, `logout+jwt`, …) is refused, so that an
//! access token of the same issuer cannot pass for an id_token.
//!
//! Verified tokens are cached until their `exp` (at most an hour), so verifying the same token
//! again costs a fast keyed hash, a lookup and a comparison with the stored token, and returns
//! the same shared claims; the time checks are repeated on every hit. A key that leaves its
//! issuer's set stops verifying at once, cached tokens included; a fetched JWKS is fetched again
//! once it is older than [`jwks_max_age`](IdTokenVerifierBuilder::jwks_max_age), so a key the
//! issuer withdraws stops verifying within that time on every replica.
//!
//! Tokens are never logged.

mod cache;
mod claims;
mod config;
mod jwks;
mod keys;

pub use config::{IdTokenVerifierBuilder, IssuerConfig};

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Map, Value};

use crate::clock::SharedClock;
use crate::error::{Error, Result, TokenError};
use crate::types::{Audience, Claims};

use self::cache::{CachedToken, Lookup, TokenCache};
use self::claims::{RawHeader, audience, b64, header_algorithm, is_other_token_type, numeric_date};
use self::config::IssuerEntry;
use self::jwks::{FetchContext, KeySet, VerifyingKey};

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

/// Default time fetched keys are believed before the JWKS is fetched again.
///
/// ```
/// assert_eq!(qrauth_core::verify::DEFAULT_JWKS_MAX_AGE.as_secs(), 300);
/// ```
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);
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

impl IdTokenVerifier {
    /// A builder with the defaults: leeway 60 s, HTTP timeout 5 s, tokens up to 16 KiB,
    /// refetch at most every 30 s, 10 000 cached tokens,
    /// [`SystemClock`](crate::SystemClock).
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

    /// Replaces the static keys of `issuer` (a key rotation of the process's own issuer): a
    /// key that is not in `jwks` any more stops verifying at once, for cached tokens too.
    pub(crate) fn replace_static_keys(&self, issuer: &str, jwks: &JwkSet) -> Result<()> {
        let entry = self
            .inner
            .issuers
            .get(issuer)
            .filter(|entry| !entry.keys.is_remote())
            .ok_or_else(|| Error::Config(format!("`{issuer}` has no static keys here")))?;
        let (keys, _skipped) = KeySet::from_jwk_set(jwks);
        entry.keys.install(keys);
        Ok(())
    }

    /// Fetches the keys of every remote issuer whose keys were never fetched, so that the first
    /// verification does not wait for the network. Optional: keys are fetched on first use
    /// anyway.
    ///
    /// # Errors
    /// [`Error::Upstream`] or
    /// [`Error::UpstreamTimeout`] for the first issuer whose JWKS
    /// (or discovery document) could not be fetched; the other issuers are still tried.
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
    /// - [`Error::InvalidToken`] with the precise [`TokenError`]:
    ///   `Missing` (empty), `TooLarge`, `Malformed`, `AlgorithmNotAllowed` (`none`, an
    ///   unsupported algorithm, one the key does not allow, or HS256 without a configured
    ///   secret), `WrongIssuer`, `UnknownKey` (even after the allowed refetch), `BadSignature`,
    ///   `WrongAudience`, `Expired`, `NotYetValid` (`nbf` or `iat` in the future),
    ///   `InvalidClaim` (missing or mistyped `iss`, `sub`, `aud`, `exp`, `nbf`, `iat`,
    ///   `auth_time` or `nonce`);
    /// - [`Error::Upstream`] /
    ///   [`Error::UpstreamTimeout`] when the issuer's keys had to be
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
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>> {
        let inner = &*self.inner;
        if token.is_empty() {
            return Err(TokenError::Missing.into());
        }
        if token.len() > inner.max_token_bytes {
            return Err(TokenError::TooLarge.into());
        }
        let now_ms = inner.clock.now_millis();
        let cache_key = inner.cache.as_ref().map(|cache| cache.key(token));
        if let (Some(cache), Some(key)) = (&inner.cache, cache_key) {
            match cache.get(key, token, now_ms) {
                Lookup::Valid(claims) => return Ok(claims),
                Lookup::Invalid(e) => return Err(e.into()),
                Lookup::Miss => {}
            }
        }

        // Boxed: the full verification (perhaps a JWKS fetch) is a large future, which would
        // otherwise make every cached verify's future, and its allocation, as large.
        let verified = Box::pin(self.verify_uncached(token, now_ms)).await?;
        let claims = Arc::clone(&verified.claims);
        if let (Some(cache), Some(key)) = (&inner.cache, cache_key) {
            cache.insert(key, Arc::new(verified), now_ms);
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
        let Some(key) = keys
            .into_iter()
            .find(|k| verify_signature(k, alg, message, signature_b64))
        else {
            return Err(TokenError::BadSignature.into());
        };

        // The token is authentic: now check what it says.
        let aud = audience(&payload)?;
        if !aud.contains(&entry.audience) {
            return Err(TokenError::WrongAudience.into());
        }
        // OpenID Connect Core §3.1.3.7 (3, 4): a token for several audiences counts for us only
        // if we are its authorized party; an `azp` naming another client is never ours.
        let several = matches!(&aud, Audience::Many(all) if all.len() > 1);
        match payload.get("azp") {
            Some(Value::String(azp)) if azp == &entry.audience => {}
            None if !several => {}
            _ => return Err(TokenError::InvalidClaim("azp").into()),
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
        let mut cached_until_ms = now_ms.saturating_add(MAX_CACHE_TTL.as_millis() as u64);
        if let Some(stale_at) = entry.keys.stale_at_ms(&inner.fetch) {
            // Believed no longer than the keys that verified it.
            cached_until_ms = cached_until_ms.min(stale_at);
        }
        let claims: Claims = serde_json::from_value(Value::Object(payload))
            .map_err(|_| TokenError::InvalidClaim("claims"))?;
        let verified = CachedToken::new(
            token,
            claims,
            key,
            expired_from_ms,
            valid_from_ms,
            cached_until_ms,
        );
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
    use super::jwks::KeySource;
    use super::*;
    use jsonwebtoken::jwk::JwkSet;

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
