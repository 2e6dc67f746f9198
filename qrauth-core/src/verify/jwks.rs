//! JWK sets: parsing into verification keys pinned to one algorithm, fetching them over HTTP
//! (directly or through OpenID Connect discovery), and the per-issuer key cache.
//!
//! Reads go through an atomically swapped `Arc<KeySet>`: a reader clones the `Arc` under a
//! `std::sync::RwLock` that is only ever write-locked for the swap itself, never across a network
//! call. Only the refetch path takes the issuer's async mutex, so a slow JWKS endpoint can delay
//! verifications that need a *new* key, never those whose key is already known.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::Value;
use url::Url;

pub(crate) use super::keys::{KeySet, Lookup, VerifyingKey};
use crate::clock::SharedClock;
use crate::error::{Error, TokenError};
use crate::provider::{BodyError, read_bounded_body};

/// Largest JWKS or discovery document accepted from the network.
pub(crate) const MAX_DOCUMENT_BYTES: usize = 512 * 1024;
/// Most keys kept from one JWK set.
pub(crate) const MAX_KEYS: usize = 100;
/// After a failed fetch, new requests reuse its error for this long (bounded by the refetch
/// interval) instead of hammering a failing endpoint. Measured on the monotonic clock, so that
/// a frozen test clock cannot make a transient failure permanent.
const FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// The path of the OpenID Connect discovery document under an issuer.
pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

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
    /// Fetched keys older than this are fetched again before use.
    pub(crate) max_age_ms: u64,
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
    /// Clock time of the last successful fetch (0: never).
    fetched_at_ms: AtomicU64,
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
            fetched_at_ms: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    /// The current key set (a cheap `Arc` clone; never waits for a fetch).
    pub(crate) fn snapshot(&self) -> Arc<KeySet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Replaces the key set; the keys that are not in `keys` any more are retired.
    pub(crate) fn install(&self, keys: KeySet) {
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let next = keys.succeed(&current);
        *current = Arc::new(next);
    }

    /// Where the keys come from.
    #[cfg(test)]
    pub(crate) fn source(&self) -> &KeySource {
        &self.source
    }

    /// When the fetched keys stop being believed without a new fetch; `None` for static keys
    /// and for keys never fetched.
    pub(crate) fn stale_at_ms(&self, ctx: &FetchContext) -> Option<u64> {
        let fetched_at = self.fetched_at_ms.load(Ordering::Acquire);
        (self.is_remote() && fetched_at > 0).then(|| fetched_at.saturating_add(ctx.max_age_ms))
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
        if self
            .stale_at_ms(ctx)
            .is_some_and(|stale_at| ctx.clock.now_millis() >= stale_at)
        {
            // Too old to believe: fetch again first. Best effort: if the issuer cannot be
            // reached, the keys held are still the best knowledge there is.
            let _ = self.refresh(attempts_seen, false, ctx).await;
        }
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
        if let Some(at) = state.last_success_ms
            && elapsed_since(at).is_some_and(|e| e < ctx.refetch_interval_ms)
        {
            // Rate limited: the caller reports the key as unknown.
            return Ok(());
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
                self.fetched_at_ms.store(now.max(1), Ordering::Release);
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
        let response = client
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
        match read_bounded_body(response, MAX_DOCUMENT_BYTES).await {
            Ok(body) => Ok(body),
            Err(BodyError::TooLarge { .. }) => Err(too_large()),
            Err(BodyError::Transport(e)) => Err(map_err(e)),
        }
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
