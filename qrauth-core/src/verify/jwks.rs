//! JWK sets: parsing into verification keys pinned to one algorithm, fetching them over HTTP
//! (directly or through OpenID Connect discovery), and the per-issuer key cache.
//!
//! Reads go through an atomically swapped `Arc<KeySet>`: a reader clones the `Arc` under a
//! `std::sync::RwLock` that is only ever write-locked for the swap itself, never across a network
//! call. Only the refetch path takes the issuer's async mutex, so a slow JWKS endpoint can delay
//! verifications that need a *new* key, never those whose key is already known.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use url::Url;

use crate::clock::SharedClock;
use crate::error::{Error, TokenError};

/// Largest JWKS or discovery document accepted from the network.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Most keys kept from one JWK set.
pub(crate) const MAX_KEYS: usize = 100;
/// Most keys tried for a token that names no `kid`.
const MAX_CANDIDATES: usize = 8;
/// After a failed fetch, new requests reuse its error for this long (bounded by the refetch
/// interval) instead of hammering a failing endpoint. Measured on the monotonic clock, so that
/// a frozen test clock cannot make a transient failure permanent.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// The path of the OpenID Connect discovery document under an issuer.
pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Which algorithms a key may verify: decided by the key (its `kty`, `crv` and `alg`), never by a
/// token's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowedAlgorithms {
    /// Exactly this algorithm.
    Exactly(Algorithm),
    /// An RSA key without `alg`: any RSA signature algorithm (RS256/384/512, PS256/384/512).
    AnyRsa,
}

impl AllowedAlgorithms {
    pub(crate) fn allows(self, alg: Algorithm) -> bool {
        match self {
            AllowedAlgorithms::Exactly(a) => a == alg,
            AllowedAlgorithms::AnyRsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
        }
    }
}

/// One public key (or the configured HS256 secret), ready to verify signatures.
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithms: AllowedAlgorithms,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The configured HS256 shared secret.
    pub(crate) fn hs256(secret: &[u8]) -> Self {
        Self {
            kid: None,
            algorithms: AllowedAlgorithms::Exactly(Algorithm::HS256),
            key: DecodingKey::from_secret(secret),
        }
    }
}

/// What a key set says about a (`kid`, `alg`) pair.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Keys that may verify this token.
    Found(Vec<Arc<VerifyingKey>>),
    /// The `kid` exists, but its key does not allow the header's algorithm.
    WrongAlgorithm,
    /// No such key.
    NotFound,
}

/// The usable keys of one issuer, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyingKey>>>,
    all: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no key is usable.
    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn push(&mut self, key: VerifyingKey) {
        let key = Arc::new(key);
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(Arc::clone(&key));
        }
        self.all.push(key);
    }

    /// Builds a key set from parsed JWKs, skipping every key that cannot be used safely for
    /// signature verification. Returns the set and how many keys were skipped.
    pub(crate) fn from_jwk_set(set: &JwkSet) -> (Self, usize) {
        let mut keys = KeySet::default();
        let mut skipped = 0;
        for jwk in &set.keys {
            if keys.len() >= MAX_KEYS {
                skipped += 1;
                continue;
            }
            let raw_alg = jwk
                .common
                .key_algorithm
                .map(|a| a.to_string())
                .filter(|a| a != "UNKNOWN_ALGORITHM");
            // jsonwebtoken collapses unknown `alg` values; a key whose `alg` is one it does not
            // know is one we do not use.
            let unknown_alg = jwk.common.key_algorithm.is_some() && raw_alg.is_none();
            let usable = !unknown_alg
                && jwk_is_for_signatures(jwk)
                && verifying_key(jwk, raw_alg.as_deref())
                    .map(|k| keys.push(k))
                    .is_some();
            if !usable {
                skipped += 1;
            }
        }
        (keys, skipped)
    }

    /// Parses a JWKS document received from the network. Keys that do not parse or cannot be
    /// used are skipped; a document that is not a JWK set is an error.
    pub(crate) fn from_json(body: &[u8]) -> Result<(Self, usize), String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("JWKS has no `keys` array".to_owned());
        };
        let mut keys = KeySet::default();
        let mut skipped = 0;
        for entry in entries {
            if keys.len() >= MAX_KEYS {
                skipped += 1;
                continue;
            }
            // Read `alg` from the raw JSON: jsonwebtoken maps unknown names (e.g. "Ed25519")
            // to a catch-all, and we want to decide on the real value.
            let raw_alg = match entry.get("alg") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    skipped += 1;
                    continue;
                }
            };
            let key = serde_json::from_value::<Jwk>(entry.clone())
                .ok()
                .filter(jwk_is_for_signatures)
                .and_then(|jwk| verifying_key(&jwk, raw_alg.as_deref()));
            match key {
                Some(key) => keys.push(key),
                None => skipped += 1,
            }
        }
        Ok((keys, skipped))
    }

    /// The keys that may verify a token with this `kid` and header algorithm.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::NotFound,
                Some(keys) => {
                    let found: Vec<_> = keys
                        .iter()
                        .filter(|k| k.algorithms.allows(alg))
                        .cloned()
                        .collect();
                    if found.is_empty() {
                        Lookup::WrongAlgorithm
                    } else {
                        Lookup::Found(found)
                    }
                }
            },
            None => {
                if self.all.is_empty() {
                    return Lookup::NotFound;
                }
                let found: Vec<_> = self
                    .all
                    .iter()
                    .filter(|k| k.algorithms.allows(alg))
                    .take(MAX_CANDIDATES)
                    .cloned()
                    .collect();
                if found.is_empty() {
                    Lookup::WrongAlgorithm
                } else {
                    Lookup::Found(found)
                }
            }
        }
    }
}

/// `use` must be absent or `sig`; `key_ops`, when present, must include `verify`.
fn jwk_is_for_signatures(jwk: &Jwk) -> bool {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let use_ok = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let ops_ok = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    use_ok && ops_ok
}

fn b64_len(value: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(value).ok().map(|v| v.len())
}

/// Turns one JWK into a verifying key with its algorithm pinned, or `None` if the key is not a
/// public signature key of a supported type, or if its `alg` contradicts its type.
fn verifying_key(jwk: &Jwk, alg: Option<&str>) -> Option<VerifyingKey> {
    let algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // RSA keys below 2048 bits are refused (aws-lc would refuse them too).
            let n_len = b64_len(&rsa.n)?;
            let e_len = b64_len(&rsa.e)?;
            if n_len < 256 || e_len == 0 || e_len > 8 {
                return None;
            }
            match alg {
                None => AllowedAlgorithms::AnyRsa,
                Some(name) => {
                    let alg = Algorithm::from_str(name).ok()?;
                    if !AllowedAlgorithms::AnyRsa.allows(alg) {
                        return None;
                    }
                    AllowedAlgorithms::Exactly(alg)
                }
            }
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (curve_alg, coordinate_len) = match ec.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 32),
                EllipticCurve::P384 => (Algorithm::ES384, 48),
                _ => return None,
            };
            if b64_len(&ec.x)? != coordinate_len || b64_len(&ec.y)? != coordinate_len {
                return None;
            }
            if alg.is_some_and(|a| Algorithm::from_str(a).ok() != Some(curve_alg)) {
                return None;
            }
            AllowedAlgorithms::Exactly(curve_alg)
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 || b64_len(&okp.x)? != 32 {
                return None;
            }
            if alg.is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
                return None;
            }
            AllowedAlgorithms::Exactly(Algorithm::EdDSA)
        }
        // Symmetric keys are never taken from a JWK set: a published secret is no secret, and
        // HS256 is only accepted with an explicitly configured shared secret.
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_) => return None,
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
    })
}

/// Why fetching keys failed, kept so that coalesced waiters can share the outcome.
#[derive(Debug, Clone)]
pub(crate) enum FetchFailure {
    Timeout,
    Upstream(String),
}

impl From<FetchFailure> for Error {
    fn from(f: FetchFailure) -> Self {
        match f {
            FetchFailure::Timeout => Error::UpstreamTimeout,
            FetchFailure::Upstream(msg) => Error::Upstream(msg),
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub(crate) enum KeySource {
    /// Configured once; never fetched.
    Static,
    /// A JWKS URL.
    Jwks(Url),
    /// An OpenID Connect discovery document whose `jwks_uri` names the JWKS.
    Discovery(Url),
}

/// What every fetch needs.
#[derive(Clone)]
pub(crate) struct FetchContext {
    pub(crate) client: Option<reqwest::Client>,
    pub(crate) timeout: Duration,
    pub(crate) refetch_interval_ms: u64,
    pub(crate) clock: SharedClock,
}

#[derive(Default)]
struct RefreshState {
    /// The JWKS URL found through discovery.
    discovered_jwks_uri: Option<Url>,
    /// Clock time of the last successful fetch.
    last_success_ms: Option<u64>,
    /// When the last attempt failed (monotonic) and why; `None` once a fetch succeeds.
    last_failure: Option<(Instant, FetchFailure)>,
}

/// The keys of one issuer and the machinery to refresh them.
pub(crate) struct IssuerKeys {
    issuer: String,
    source: KeySource,
    allow_http: bool,
    current: RwLock<Arc<KeySet>>,
    /// Completed fetch attempts; lets a waiter see that someone else fetched while it waited.
    attempts: AtomicU64,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("source", &self.source)
            .field("keys", &self.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    pub(crate) fn new(
        issuer: String,
        source: KeySource,
        initial: KeySet,
        allow_http: bool,
    ) -> Self {
        Self {
            issuer,
            source,
            allow_http,
            current: RwLock::new(Arc::new(initial)),
            attempts: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    /// The current key set (a cheap `Arc` clone; never waits for a fetch).
    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn install(&self, keys: KeySet) {
        let keys = Arc::new(keys);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = keys;
    }

    /// Where the keys come from.
    #[cfg(test)]
    pub(crate) fn source(&self) -> &KeySource {
        &self.source
    }

    /// Whether keys are fetched over the network.
    pub(crate) fn is_remote(&self) -> bool {
        !matches!(self.source, KeySource::Static)
    }

    /// The keys for (`kid`, `alg`), refetching the JWKS at most once per refetch interval when the
    /// key is unknown. Concurrent callers that miss share one fetch.
    pub(crate) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        ctx: &FetchContext,
    ) -> Result<Vec<Arc<VerifyingKey>>, Error> {
        let attempts_seen = self.attempts.load(Ordering::Acquire);
        match self.snapshot().lookup(kid, alg) {
            Lookup::Found(keys) => return Ok(keys),
            Lookup::WrongAlgorithm => return Err(TokenError::AlgorithmNotAllowed.into()),
            Lookup::NotFound if !self.is_remote() => return Err(TokenError::UnknownKey.into()),
            Lookup::NotFound => {}
        }
        self.refresh(attempts_seen, false, ctx).await?;
        match self.snapshot().lookup(kid, alg) {
            Lookup::Found(keys) => Ok(keys),
            Lookup::WrongAlgorithm => Err(TokenError::AlgorithmNotAllowed.into()),
            Lookup::NotFound => Err(TokenError::UnknownKey.into()),
        }
    }

    /// Fetches the keys unless another caller did since `attempts_seen`, or unless the refetch
    /// interval (or the failure back-off) forbids it. With `only_if_never_loaded`, does nothing
    /// once a fetch has succeeded.
    pub(crate) async fn refresh(
        &self,
        attempts_seen: u64,
        only_if_never_loaded: bool,
        ctx: &FetchContext,
    ) -> Result<(), Error> {
        let mut state = self.refresh.lock().await;
        if self.attempts.load(Ordering::Acquire) != attempts_seen {
            // Someone fetched while we waited for the lock: share their outcome.
            return match &state.last_failure {
                Some((_, failure)) => Err(failure.clone().into()),
                None => Ok(()),
            };
        }
        if only_if_never_loaded && state.last_success_ms.is_some() {
            return Ok(());
        }
        let now = ctx.clock.now_millis();
        let elapsed_since = |t: u64| now.checked_sub(t);
        if let Some((at, failure)) = &state.last_failure {
            let backoff = FAILURE_BACKOFF.min(Duration::from_millis(ctx.refetch_interval_ms));
            if at.elapsed() < backoff {
                return Err(failure.clone().into());
            }
        }
        if let Some(at) = state.last_success_ms {
            if elapsed_since(at).is_some_and(|e| e < ctx.refetch_interval_ms) {
                // Rate limited: the caller reports the key as unknown.
                return Ok(());
            }
        }

        let outcome = self.fetch(&mut state, ctx).await;
        let now = ctx.clock.now_millis();
        let result = match outcome {
            Ok((keys, skipped)) => {
                tracing::info!(
                    issuer = %self.issuer,
                    keys = keys.len(),
                    skipped,
                    "JWKS fetched"
                );
                self.install(keys);
                state.last_success_ms = Some(now);
                state.last_failure = None;
                Ok(())
            }
            Err(failure) => {
                tracing::warn!(issuer = %self.issuer, error = ?failure, "JWKS fetch failed");
                if matches!(self.source, KeySource::Discovery(_)) {
                    // Re-discover next time: the JWKS may have moved.
                    state.discovered_jwks_uri = None;
                }
                state.last_failure = Some((Instant::now(), failure.clone()));
                Err(failure.into())
            }
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        result
    }

    pub(crate) fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::Acquire)
    }

    async fn fetch(
        &self,
        state: &mut RefreshState,
        ctx: &FetchContext,
    ) -> Result<(KeySet, usize), FetchFailure> {
        let Some(client) = &ctx.client else {
            return Err(FetchFailure::Upstream(
                "no HTTP client configured".to_owned(),
            ));
        };
        let jwks_url = match &self.source {
            KeySource::Static => {
                return Err(FetchFailure::Upstream(
                    "static keys are never fetched".to_owned(),
                ));
            }
            KeySource::Jwks(url) => url.clone(),
            KeySource::Discovery(discovery) => match &state.discovered_jwks_uri {
                Some(url) => url.clone(),
                None => {
                    let url = self.discover(client, discovery, ctx.timeout).await?;
                    state.discovered_jwks_uri = Some(url.clone());
                    url
                }
            },
        };
        let body = get_document(client, &jwks_url, ctx.timeout).await?;
        KeySet::from_json(&body)
            .map_err(|e| FetchFailure::Upstream(format!("{}: {e}", display_url(&jwks_url))))
    }

    async fn discover(
        &self,
        client: &reqwest::Client,
        discovery: &Url,
        timeout: Duration,
    ) -> Result<Url, FetchFailure> {
        let body = get_document(client, discovery, timeout).await?;
        let shown = display_url(discovery);
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| FetchFailure::Upstream(format!("{shown}: not JSON: {e}")))?;
        // OpenID Connect Discovery 1.0 §4.3: the document's issuer must be the one configured.
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(FetchFailure::Upstream(format!(
                "{shown}: `issuer` does not match the configured issuer"
            )));
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| FetchFailure::Upstream(format!("{shown}: no `jwks_uri`")))?;
        let url = Url::parse(jwks_uri)
            .map_err(|e| FetchFailure::Upstream(format!("{shown}: bad `jwks_uri`: {e}")))?;
        check_url_scheme(&url, self.allow_http).map_err(FetchFailure::Upstream)?;
        Ok(url)
    }
}

/// GETs a JSON document with a timeout on the whole exchange and a size limit on the body.
async fn get_document(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
) -> Result<Vec<u8>, FetchFailure> {
    let shown = display_url(url);
    let map_err = |e: reqwest::Error| {
        if e.is_timeout() {
            FetchFailure::Timeout
        } else {
            FetchFailure::Upstream(format!("{shown}: {}", e.without_url()))
        }
    };
    let exchange = async {
        let mut response = client
            .get(url.clone())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(map_err)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchFailure::Upstream(format!(
                "{shown}: answered HTTP {status}"
            )));
        }
        let too_large = || {
            FetchFailure::Upstream(format!(
                "{shown}: document larger than {MAX_DOCUMENT_BYTES} bytes"
            ))
        };
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(map_err)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(FetchFailure::Timeout),
    }
}

/// A URL without its credentials, query or fragment, for errors and logs.
pub(crate) fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// Keys must come over HTTPS; plain HTTP only to a loopback host or when explicitly allowed.
pub(crate) fn check_url_scheme(url: &Url, allow_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{} uses plain HTTP (allowed only for loopback hosts or with allow_insecure_http)",
            display_url(url)
        )),
        other => Err(format!(
            "{}: unsupported scheme `{other}`",
            display_url(url)
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_n() -> String {
        URL_SAFE_NO_PAD.encode([0xC5u8; 256])
    }

    #[test]
    fn rsa_key_without_alg_allows_only_rsa_algorithms() {
        let body = json!({"keys": [{"kty": "RSA", "kid": "r", "n": rsa_n(), "e": "AQAB"}]});
        let (set, skipped) = KeySet::from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!((set.len(), skipped), (1, 0));
        assert!(matches!(
            set.lookup(Some("r"), Algorithm::PS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("r"), Algorithm::HS256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.lookup(Some("r"), Algorithm::ES256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.lookup(Some("x"), Algorithm::RS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn symmetric_encryption_small_and_contradictory_keys_are_skipped() {
        let body = json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(), "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode([7u8; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "es", "alg": "ES256", "n": rsa_n(), "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": rsa_n(), "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "weird"},
            "not an object",
            {"kty": "RSA", "kid": "ok", "alg": "RS256", "n": rsa_n(), "e": "AQAB"}
        ]});
        let (set, skipped) = KeySet::from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!((set.len(), skipped), (1, 8));
        assert!(matches!(
            set.lookup(Some("ok"), Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("ok"), Algorithm::PS256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.lookup(Some("h"), Algorithm::HS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn documents_that_are_not_jwk_sets_are_errors() {
        assert!(KeySet::from_json(b"[]").is_err());
        assert!(KeySet::from_json(b"{\"keys\": 3}").is_err());
        assert!(KeySet::from_json(b"<html>").is_err());
    }

    #[test]
    fn plain_http_only_for_loopback_or_when_allowed() {
        let ok = |u: &str, allow| check_url_scheme(&Url::parse(u).unwrap(), allow).is_ok();
        assert!(ok("https://idp.example/jwks", false));
        assert!(ok("http://127.0.0.1:8080/jwks", false));
        assert!(ok("http://[::1]/jwks", false));
        assert!(ok("http://localhost/jwks", false));
        assert!(!ok("http://idp.example/jwks", false));
        assert!(ok("http://idp.example/jwks", true));
        assert!(!ok("file:///etc/passwd", true));
    }

    #[test]
    fn displayed_urls_hide_credentials_and_query() {
        let url = Url::parse("https://user:pw@idp.example/jwks?token=abc#frag").unwrap();
        assert_eq!(display_url(&url), "https://idp.example/jwks");
    }
}
