//! Abuse limits: how often a client may create QR codes, poll, and act from the phone.
//!
//! Counting goes through a [`RateLimiter`], so that several replicas can share their counters
//! (the in-memory [`MemoryRateLimiter`] counts for one process; `RedisRateLimiter`, with the
//! `redis` feature, counts for every replica).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use moka::sync::Cache;

use crate::error::Result;

/// The limits [`QrAuthService`](crate::QrAuthService) enforces.
///
/// ```
/// use qrauth_core::Limits;
/// let limits = Limits::default().generate_per_minute(60);
/// assert_eq!(limits.generate_per_minute, 60);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// `POST /qrcode` per client address per minute (default 20). Client addresses are
    /// counted by network: an IPv4 address, or an IPv6 /64.
    pub generate_per_minute: u32,
    /// QR sessions one browser binding may create per QR lifetime, i.e. at most this many are
    /// live at once (default 5).
    pub sessions_per_binding: u32,
    /// Answer plain status polls that come faster than the advertised interval with
    /// `429 slow_down` (default on). Long-polls are not affected.
    pub enforce_poll_interval: bool,
    /// Phone `scan`/`confirm`/`cancel` requests per phone credential per minute (default 30).
    pub phone_per_minute: u32,
    /// Phone route requests (`scan`, `confirm`, `cancel`, the devices list) per client
    /// address per minute, counted before the `PhoneAuthenticator` runs, failed
    /// authentications included (default 60).
    pub phone_per_address_per_minute: u32,
    /// `POST /qrcode/refresh` per client IP per minute (default 60; a page renews every few
    /// minutes).
    pub refresh_per_minute: u32,
    /// Long-polls and event streams open at once on one QR session (default 3: one per tab,
    /// and a reconnect overlapping the stream it replaces). Counted per replica.
    pub streams_per_session: u32,
    /// Long-polls and event streams open at once for one browser binding (default 8).
    /// Counted per replica.
    pub streams_per_binding: u32,
    /// Long-polls and event streams open at once from one client address (default 64: a
    /// whole office behind one NAT). Counted per replica.
    pub streams_per_address: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            generate_per_minute: 20,
            sessions_per_binding: 5,
            enforce_poll_interval: true,
            phone_per_minute: 30,
            phone_per_address_per_minute: 60,
            refresh_per_minute: 60,
            streams_per_session: 3,
            streams_per_binding: 8,
            streams_per_address: 64,
        }
    }
}

impl Limits {
    /// No limits at all: for tests and benchmarks only.
    pub fn unlimited() -> Self {
        Self {
            generate_per_minute: u32::MAX,
            sessions_per_binding: u32::MAX,
            enforce_poll_interval: false,
            phone_per_minute: u32::MAX,
            phone_per_address_per_minute: u32::MAX,
            refresh_per_minute: u32::MAX,
            streams_per_session: u32::MAX,
            streams_per_binding: u32::MAX,
            streams_per_address: u32::MAX,
        }
    }

    /// Sets the `POST /qrcode` budget per IP per minute.
    pub fn generate_per_minute(mut self, n: u32) -> Self {
        self.generate_per_minute = n;
        self
    }

    /// Sets the live sessions per binding.
    pub fn sessions_per_binding(mut self, n: u32) -> Self {
        self.sessions_per_binding = n;
        self
    }

    /// Turns the poll interval check on or off.
    pub fn enforce_poll_interval(mut self, on: bool) -> Self {
        self.enforce_poll_interval = on;
        self
    }

    /// Sets the phone budget per credential per minute.
    pub fn phone_per_minute(mut self, n: u32) -> Self {
        self.phone_per_minute = n;
        self
    }

    /// Sets the phone budget per client address per minute.
    pub fn phone_per_address_per_minute(mut self, n: u32) -> Self {
        self.phone_per_address_per_minute = n;
        self
    }

    /// Sets the caps on long-polls and event streams open at once: per session, per binding,
    /// per client address (`u32::MAX`: no cap).
    pub fn streams(mut self, per_session: u32, per_binding: u32, per_address: u32) -> Self {
        self.streams_per_session = per_session;
        self.streams_per_binding = per_binding;
        self.streams_per_address = per_address;
        self
    }

    /// Sets the renewal budget per IP per minute.
    pub fn refresh_per_minute(mut self, n: u32) -> Self {
        self.refresh_per_minute = n;
        self
    }
}

/// Counts hits per key in fixed windows.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Counts one hit on `key`. The key's window opens at its first hit and lasts `window`;
    /// returns `Some(retry_after)` when this hit is beyond `limit` in the current window.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<Duration>>;
}

/// A [`RateLimiter`] for one process: bounded, entries dropped when their window ends.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    windows: Cache<String, Arc<Window>>,
}

struct Window {
    hits: AtomicU32,
    ends: Instant,
}

struct UntilWindowEnds;

impl moka::Expiry<String, Arc<Window>> for UntilWindowEnds {
    fn expire_after_create(&self, _: &String, w: &Arc<Window>, now: Instant) -> Option<Duration> {
        Some(w.ends.saturating_duration_since(now))
    }
}

impl MemoryRateLimiter {
    /// A limiter tracking at most `max_keys` keys (beyond that, the least used are dropped).
    pub fn new(max_keys: u64) -> Self {
        Self {
            windows: Cache::builder()
                .max_capacity(max_keys)
                .expire_after(UntilWindowEnds)
                .build(),
        }
    }
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl std::fmt::Debug for MemoryRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimiter").finish_non_exhaustive()
    }
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<Duration>> {
        let now = Instant::now();
        let mut entry = self.windows.get_with_by_ref(key, || {
            Arc::new(Window {
                hits: AtomicU32::new(0),
                ends: now + window,
            })
        });
        if entry.ends <= now {
            // Expired but not evicted yet: start a new window.
            self.windows.invalidate(key);
            entry = self.windows.get_with_by_ref(key, || {
                Arc::new(Window {
                    hits: AtomicU32::new(0),
                    ends: now + window,
                })
            });
        }
        let hits = entry.hits.fetch_add(1, Ordering::Relaxed).saturating_add(1);
        Ok((hits > limit).then(|| entry.ends.saturating_duration_since(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hit_beyond_the_limit_is_refused_until_the_window_ends() {
        let limiter = MemoryRateLimiter::default();
        let window = Duration::from_millis(300);
        for _ in 0..3 {
            assert_eq!(limiter.hit("k", 3, window).await.unwrap(), None);
        }
        let retry = limiter.hit("k", 3, window).await.unwrap().unwrap();
        assert!(retry <= window && retry > Duration::ZERO);
        assert_eq!(limiter.hit("other", 3, window).await.unwrap(), None);
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        assert_eq!(limiter.hit("k", 3, window).await.unwrap(), None);
    }
}
