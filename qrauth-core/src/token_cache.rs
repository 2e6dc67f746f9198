//! A cache for provider-side credentials: an identity provider's app access token, a WeChat
//! `js_ticket`, anything that is fetched from upstream with an `expires_in` and reused until then.
//!
//! [`TokenCache`] gives three guarantees:
//!
//! - **Early refresh.** A cached credential is dropped [`refresh_margin`] before it really
//!   expires (default 60 s, but never more than half of its lifetime), so a value handed out by
//!   the cache still has at least that margin to live and is never stale when it reaches the
//!   provider.
//! - **No stampede.** When the credential is missing or due for refresh, concurrent callers of
//!   [`get_or_fetch`] for the same key share *one* in-flight fetch; the others wait for it.
//! - **No poisoning.** A failed fetch is returned to the caller that ran it and to every caller
//!   waiting on it, and nothing is cached: the next call fetches again.
//!
//! [`refresh_margin`]: TokenCacheBuilder::refresh_margin
//! [`get_or_fetch`]: TokenCache::get_or_fetch
//!
//! Errors are shared between the waiters of one fetch, so they come back as `Arc<E>`. With
//! qrauth's own [`Error`] (which is not `Clone`), [`into_owned_error`] turns the `Arc` back into
//! an owned error that keeps its code and HTTP status.
//!
//! By default the cache measures time with the monotonic clock of the standard library (it only
//! deals in relative lifetimes). [`TokenCacheBuilder::clock`] makes it measure time with an
//! injectable [`Clock`](crate::Clock) instead, so that tests can move time forward without
//! sleeping.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::Op;

use crate::clock::SharedClock;
use crate::error::Error;

/// Default number of credentials a cache holds.
pub const DEFAULT_MAX_CAPACITY: u64 = 1024;

/// Default time before a credential's real expiry at which it is refreshed.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// What a fetch returns: the credential and how long the issuer says it is valid.
///
/// `expires_in` is counted from the moment the fetch started (the issuer's clock started somewhere
/// between the request and the response, so this is the conservative choice).
///
/// ```
/// use std::time::Duration;
/// use qrauth_core::token_cache::Fetched;
///
/// // An upstream answered `{"access_token": "…", "expires_in": 7200}`.
/// let fetched = Fetched::new("app-token".to_owned(), Duration::from_secs(7200));
/// assert_eq!(fetched.expires_in, Duration::from_secs(7200));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched<V> {
    /// The credential.
    pub value: V,
    /// How long the credential is valid, as reported by its issuer.
    pub expires_in: Duration,
}

impl<V> Fetched<V> {
    /// A credential valid for `expires_in`.
    pub fn new(value: V, expires_in: Duration) -> Self {
        Self { value, expires_in }
    }

    /// A credential whose issuer reported its lifetime in whole seconds (the usual
    /// `"expires_in": 7200` of an OAuth-style token response).
    pub fn with_expires_in_secs(value: V, expires_in_secs: u64) -> Self {
        Self::new(value, Duration::from_secs(expires_in_secs))
    }
}

/// What the moka cache holds: the credential and how long it may be served.
#[derive(Clone)]
struct Slot<V> {
    value: V,
    /// Time from insertion until moka drops the credential (due for refresh); `None` with an
    /// injected clock, which decides alone (see `fresh_until_ms`).
    expire_after: Option<Duration>,
    /// With an injected clock: when the credential is due for refresh, on that clock (Unix ms).
    fresh_until_ms: Option<u64>,
}

impl<V> Slot<V> {
    /// Whether the credential may still be served at `now_ms` of the injected clock.
    fn is_fresh(&self, now_ms: u64) -> bool {
        self.fresh_until_ms.is_none_or(|until| now_ms < until)
    }
}

/// Per-entry expiry: each entry lives exactly as long as its own `expire_after`.
struct RefreshExpiry;

impl<K, V> Expiry<K, Slot<V>> for RefreshExpiry {
    fn expire_after_create(&self, _: &K, slot: &Slot<V>, _: Instant) -> Option<Duration> {
        slot.expire_after
    }

    fn expire_after_update(
        &self,
        _: &K,
        slot: &Slot<V>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        slot.expire_after
    }
}

/// How long a credential fetched `elapsed` ago with lifetime `expires_in` may still be served
/// when it should be refreshed `margin` before expiry (the margin capped at half the lifetime).
fn fresh_for(expires_in: Duration, elapsed: Duration, margin: Duration) -> Duration {
    let remaining = expires_in.saturating_sub(elapsed);
    let margin = margin.min(remaining / 2);
    remaining.saturating_sub(margin)
}

/// Builder for a [`TokenCache`]; see [`TokenCache::builder`].
#[derive(Clone)]
#[must_use]
pub struct TokenCacheBuilder {
    max_capacity: u64,
    refresh_margin: Duration,
    clock: Option<SharedClock>,
}

impl Default for TokenCacheBuilder {
    fn default() -> Self {
        Self {
            max_capacity: DEFAULT_MAX_CAPACITY,
            refresh_margin: DEFAULT_REFRESH_MARGIN,
            clock: None,
        }
    }
}

impl fmt::Debug for TokenCacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("refresh_margin", &self.refresh_margin)
            .field("clock", &self.clock.as_ref().map(|_| "injected"))
            .finish()
    }
}

impl TokenCacheBuilder {
    /// The most credentials (keys) the cache holds; beyond it the least useful are evicted.
    /// Default [`DEFAULT_MAX_CAPACITY`].
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// How long before a credential's real expiry the cache stops serving it and fetches a new
    /// one. Default [`DEFAULT_REFRESH_MARGIN`] (60 s). For each credential the margin is capped
    /// at half of its lifetime, so that a short-lived credential is still reused for a while.
    pub fn refresh_margin(mut self, refresh_margin: Duration) -> Self {
        self.refresh_margin = refresh_margin;
        self
    }

    /// Measures lifetimes with `clock` instead of the standard library's monotonic clock, so
    /// that a test can move time forward (with a [`ManualClock`](crate::ManualClock)) instead
    /// of sleeping.
    ///
    /// The clock alone then decides when a credential is due for refresh: a cached credential
    /// is served while the clock reads less than its fetch time plus its lifetime minus the
    /// margin, and dropped when read after that (or when the capacity evicts it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use qrauth_core::ManualClock;
    /// use qrauth_core::token_cache::{Fetched, TokenCache};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let clock = ManualClock::new(1_000_000);
    /// let cache: TokenCache<(), u32> = TokenCache::builder()
    ///     .refresh_margin(Duration::from_secs(1))
    ///     .clock(Arc::new(clock.clone()))
    ///     .build();
    /// let fetch = |n: u32| async move { Ok::<_, ()>(Fetched::with_expires_in_secs(n, 4)) };
    /// assert_eq!(cache.get_or_fetch((), || fetch(1)).await, Ok(1));
    /// clock.advance(Duration::from_millis(2_999));
    /// assert_eq!(cache.get_or_fetch((), || fetch(2)).await, Ok(1)); // 4 s - 1 s margin
    /// clock.advance(Duration::from_millis(1));
    /// assert_eq!(cache.get_or_fetch((), || fetch(2)).await, Ok(2));
    /// # }
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the cache.
    pub fn build<K, V>(self) -> TokenCache<K, V>
    where
        K: Hash + Eq + Send + Sync + 'static,
        V: Clone + Send + Sync + 'static,
    {
        let inner = Cache::builder()
            .name("qrauth-token-cache")
            .max_capacity(self.max_capacity)
            .expire_after(RefreshExpiry)
            .build();
        TokenCache {
            inner,
            refresh_margin: self.refresh_margin,
            clock: self.clock,
        }
    }
}

/// A cache of provider-side credentials with early refresh and one shared fetch per key.
///
/// Cloning is cheap and the clones share the entries.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use qrauth_core::Error;
/// use qrauth_core::token_cache::{Fetched, TokenCache, into_owned_error};
///
/// async fn fetch_app_token(app_id: &str) -> Result<Fetched<String>, Error> {
///     // In real code: POST to the identity provider and parse `access_token` / `expires_in`.
///     Ok(Fetched::with_expires_in_secs(format!("token-for-{app_id}"), 7200))
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let cache: TokenCache<String, String> = TokenCache::builder()
///     .max_capacity(16)
///     .refresh_margin(Duration::from_secs(300))
///     .build();
///
/// let token = cache
///     .get_or_fetch("app-1".to_owned(), || fetch_app_token("app-1"))
///     .await
///     .map_err(into_owned_error)?;
/// assert_eq!(token, "token-for-app-1");
///
/// // Served from the cache until 300 s before the token's expiry.
/// assert_eq!(cache.get(&"app-1".to_owned()).await.as_deref(), Some("token-for-app-1"));
///
/// // The upstream rejected the token (e.g. it was revoked): drop it, the next call refetches.
/// cache.invalidate(&"app-1".to_owned()).await;
/// assert_eq!(cache.get(&"app-1".to_owned()).await, None);
/// # Ok(())
/// # }
/// ```
pub struct TokenCache<K, V> {
    /// Keyed by `Arc<K>` so that a stale entry can be dropped before a fetch without `K: Clone`.
    inner: Cache<Arc<K>, Slot<V>>,
    refresh_margin: Duration,
    clock: Option<SharedClock>,
}

impl<K, V> Clone for TokenCache<K, V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            refresh_margin: self.refresh_margin,
            clock: self.clock.clone(),
        }
    }
}

impl<K, V> fmt::Debug for TokenCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the credentials.
        f.debug_struct("TokenCache")
            .field("entries", &self.inner.entry_count())
            .field("refresh_margin", &self.refresh_margin)
            .field("clock", &self.clock.as_ref().map(|_| "injected"))
            .finish_non_exhaustive()
    }
}

impl<K, V> Default for TokenCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn default() -> Self {
        TokenCacheBuilder::default().build()
    }
}

impl TokenCache<(), ()> {
    /// A builder with the defaults: [`DEFAULT_MAX_CAPACITY`] entries, [`DEFAULT_REFRESH_MARGIN`].
    pub fn builder() -> TokenCacheBuilder {
        TokenCacheBuilder::default()
    }
}

impl<K, V> TokenCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache with the default settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// The configured refresh margin (before the per-credential cap at half the lifetime).
    pub fn refresh_margin(&self) -> Duration {
        self.refresh_margin
    }

    /// The credential for `key`: the cached one if it is not due for refresh, otherwise the
    /// result of `fetch`.
    ///
    /// Concurrent calls for the same key (and the same error type `E`) share one fetch: only
    /// one caller runs its `fetch`, the others wait for its result. If the fetch fails, every
    /// one of them gets the same error, nothing is cached, and the next call fetches again. If
    /// the caller running the fetch is cancelled, a waiting caller takes over with its own
    /// `fetch`.
    ///
    /// A credential whose lifetime (minus the time the fetch took) is zero is returned to the
    /// callers of this fetch but not reused.
    pub async fn get_or_fetch<F, Fut, E>(&self, key: K, fetch: F) -> Result<V, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched<V>, E>>,
        E: Send + Sync + 'static,
    {
        let margin = self.refresh_margin;
        let key = Arc::new(key);
        if let Some(clock) = &self.clock {
            self.drop_if_stale(&key, clock).await;
        }
        let clock = self.clock.clone();
        let init = async move {
            let started = Instant::now();
            let started_ms = clock.as_ref().map(|c| c.now_millis());
            let fetched = fetch().await?;
            let elapsed = match (&clock, started_ms) {
                (Some(clock), Some(started_ms)) => {
                    Duration::from_millis(clock.now_millis().saturating_sub(started_ms))
                }
                _ => started.elapsed(),
            };
            let fresh_for = fresh_for(fetched.expires_in, elapsed, margin);
            if fresh_for.is_zero() {
                tracing::warn!(
                    expires_in_ms = fetched.expires_in.as_millis() as u64,
                    "provider credential fetched already due for refresh; it will not be reused"
                );
            } else {
                tracing::debug!(
                    expires_in_ms = fetched.expires_in.as_millis() as u64,
                    fresh_for_ms = fresh_for.as_millis() as u64,
                    "provider credential fetched"
                );
            }
            let fresh_until_ms = started_ms.map(|started_ms| {
                let fresh_until = elapsed.saturating_add(fresh_for).as_millis();
                started_ms.saturating_add(u64::try_from(fresh_until).unwrap_or(u64::MAX))
            });
            Ok(Slot {
                value: fetched.value,
                expire_after: fresh_until_ms.is_none().then_some(fresh_for),
                fresh_until_ms,
            })
        };
        self.inner
            .try_get_with(key, init)
            .await
            .map(|slot| slot.value)
    }

    /// Drops the entry of `key` if the injected `clock` says it is due for refresh; a fresh
    /// entry (one a concurrent fetch just put there) is left alone.
    async fn drop_if_stale(&self, key: &Arc<K>, clock: &SharedClock) {
        let stale = self
            .inner
            .get(&**key)
            .await
            .is_some_and(|slot| !slot.is_fresh(clock.now_millis()));
        if stale {
            self.inner
                .entry(Arc::clone(key))
                .and_compute_with(|entry| {
                    let op = match entry {
                        Some(entry) if !entry.value().is_fresh(clock.now_millis()) => Op::Remove,
                        _ => Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
        }
    }

    /// The cached credential for `key`, if there is one that is not due for refresh. Never
    /// fetches.
    pub async fn get(&self, key: &K) -> Option<V> {
        let slot = self.inner.get(key).await?;
        let now_ms = self.clock.as_ref().map(|c| c.now_millis());
        now_ms
            .is_none_or(|now_ms| slot.is_fresh(now_ms))
            .then_some(slot.value)
    }

    /// Drops the cached credential for `key` (e.g. after the upstream rejected it as invalid or
    /// revoked), so that the next [`get_or_fetch`](Self::get_or_fetch) fetches a new one.
    ///
    /// A fetch already in flight is not cancelled: its result is still cached when it
    /// completes.
    pub async fn invalidate(&self, key: &K) {
        self.inner.invalidate(key).await;
    }

    /// Drops every cached credential.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }
}

/// Turns the shared error of a coalesced fetch back into an owned [`Error`].
///
/// The `Error` itself is returned when this caller holds the last reference; otherwise an
/// equivalent copy (same variant, code, status and message) is built.
///
/// ```
/// use std::sync::Arc;
/// use qrauth_core::Error;
/// use qrauth_core::token_cache::into_owned_error;
///
/// let shared = Arc::new(Error::Upstream("IdP answered 500".to_owned()));
/// let other_waiter = Arc::clone(&shared);
/// let err = into_owned_error(shared);
/// assert_eq!(err.code(), "upstream_unavailable");
/// assert_eq!(err.to_string(), other_waiter.to_string());
/// ```
pub fn into_owned_error(err: Arc<Error>) -> Error {
    Arc::try_unwrap(err).unwrap_or_else(|shared| copy_error(&shared))
}

/// A copy of `err` (qrauth's `Error` is not `Clone`).
fn copy_error(err: &Error) -> Error {
    match err {
        Error::InvalidRequest(s) => Error::InvalidRequest(s.clone()),
        Error::UnsupportedMediaType => Error::UnsupportedMediaType,
        Error::PayloadTooLarge => Error::PayloadTooLarge,
        Error::UnknownQrCode => Error::UnknownQrCode,
        Error::ExpiredQrCode => Error::ExpiredQrCode,
        Error::StaleQrCode => Error::StaleQrCode,
        Error::NotBound => Error::NotBound,
        Error::InvalidTicket => Error::InvalidTicket,
        Error::Conflict(s) => Error::Conflict(s.clone()),
        Error::Forbidden(s) => Error::Forbidden(s.clone()),
        Error::Unauthenticated => Error::Unauthenticated,
        Error::InvalidToken(e) => Error::InvalidToken(e.clone()),
        Error::SlowDown { retry_after } => Error::SlowDown {
            retry_after: *retry_after,
        },
        Error::Upstream(s) => Error::Upstream(s.clone()),
        Error::UpstreamTimeout => Error::UpstreamTimeout,
        Error::StoreUnavailable(s) => Error::StoreUnavailable(s.clone()),
        Error::UnknownSession => Error::UnknownSession,
        Error::InvalidGrant => Error::InvalidGrant,
        Error::NotFound => Error::NotFound,
        Error::MethodNotAllowed => Error::MethodNotAllowed,
        Error::Config(s) => Error::Config(s.clone()),
        Error::Internal(s) => Error::Internal(s.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_capped_at_half_the_remaining_lifetime() {
        let s = Duration::from_secs;
        assert_eq!(fresh_for(s(7200), s(0), s(60)), s(7140));
        assert_eq!(fresh_for(s(7200), s(2), s(60)), s(7138));
        assert_eq!(fresh_for(s(60), s(0), s(60)), s(30));
        assert_eq!(fresh_for(s(10), s(0), s(60)), s(5));
        assert_eq!(fresh_for(s(10), s(20), s(60)), s(0));
        assert_eq!(fresh_for(s(0), s(0), s(60)), s(0));
        assert_eq!(fresh_for(s(100), s(0), s(0)), s(100));
    }

    #[test]
    fn copy_error_keeps_code_status_and_message() {
        let errors = [
            Error::Upstream("boom".to_owned()),
            Error::UpstreamTimeout,
            Error::Config("bad".to_owned()),
            Error::SlowDown {
                retry_after: Duration::from_secs(3),
            },
            Error::InvalidToken(crate::error::TokenError::Expired),
        ];
        for err in errors {
            let shared = Arc::new(err);
            let _other = Arc::clone(&shared);
            let copy = into_owned_error(Arc::clone(&shared));
            assert_eq!(copy.code(), shared.code());
            assert_eq!(copy.status(), shared.status());
            assert_eq!(copy.to_string(), shared.to_string());
            assert_eq!(copy.retry_after(), shared.retry_after());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_an_injected_clock_a_stale_credential_is_refetched_once_for_all_callers() {
        use std::sync::atomic::{AtomicU32, Ordering};

        let clock = crate::ManualClock::new(1_000_000);
        let cache: TokenCache<&'static str, u32> = TokenCache::builder()
            .refresh_margin(Duration::from_secs(10))
            .clock(Arc::new(clock.clone()))
            .build();
        let fetches = Arc::new(AtomicU32::new(0));
        let fetch = |fetches: Arc<AtomicU32>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let n = fetches.fetch_add(1, Ordering::SeqCst) + 1;
            Ok::<_, ()>(Fetched::with_expires_in_secs(n, 100))
        };
        assert_eq!(
            cache.get_or_fetch("k", || fetch(fetches.clone())).await,
            Ok(1)
        );
        // Served for 100 s - 10 s on the injected clock, however much real time passes.
        clock.advance(Duration::from_millis(89_999));
        assert_eq!(cache.get(&"k").await, Some(1));
        clock.advance(Duration::from_millis(1));
        assert_eq!(cache.get(&"k").await, None, "due for refresh");
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let (cache, fetches) = (cache.clone(), fetches.clone());
                tokio::spawn(async move { cache.get_or_fetch("k", || fetch(fetches)).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.ok(), Some(Ok(2)));
        }
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            2,
            "one refetch for all callers"
        );
        assert_eq!(cache.get(&"k").await, Some(2));
    }

    #[test]
    fn debug_does_not_print_credentials() {
        let cache: TokenCache<&'static str, String> = TokenCache::new();
        let dbg = format!("{cache:?}");
        assert!(dbg.contains("TokenCache"));
        assert_eq!(cache.refresh_margin(), DEFAULT_REFRESH_MARGIN);
    }
}
