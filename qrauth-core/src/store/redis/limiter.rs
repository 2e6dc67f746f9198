//! [`RedisRateLimiter`]: abuse-limit counters shared by every replica through Redis.

use std::fmt;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;

use super::{RedisStore, bounded};
use crate::error::Result;
use crate::limits::RateLimiter;

/// Counts one hit in a fixed window that opens at the key's first hit.
///
/// KEYS[1] counter key; ARGV[1] window (ms). Returns `{hits, remaining window in ms}`. The
/// `PTTL < 0` branch repairs a counter that lost its expiry (it must never live forever).
const HIT_LUA: &str = r"
local hits = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if hits == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {hits, ttl}
";

/// A [`RateLimiter`] whose counters live in Redis, so that limits hold across replicas:
/// the 21st `POST /qrcode` of a minute is refused whichever replica it reaches.
///
/// A [`RedisStore`] hands it to the service with the sessions
/// ([`SessionStore::rate_limiter`](crate::store::SessionStore::rate_limiter)): it shares the
/// store's connection, prefix and command timeout. Each hit is one Lua script (`INCR` +
/// `PEXPIRE`). Keys are `{prefix}rl:{hex(SHA-256(key))}`, so client addresses are not stored in
/// clear. When Redis is unreachable a hit fails with
/// [`Error::StoreUnavailable`](crate::Error::StoreUnavailable): the request is answered `503`,
/// never let through uncounted.
#[derive(Clone)]
pub struct RedisRateLimiter {
    store: RedisStore,
    script: Script,
}

impl fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.store.key_prefix())
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    pub(super) fn new(store: RedisStore) -> Self {
        Self {
            store,
            script: Script::new(HIT_LUA),
        }
    }

    /// The Redis key counting hits on `key`.
    pub(crate) fn counter_key(&self, key: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        format!(
            "{}rl:{}",
            self.store.key_prefix(),
            super::codec::hex(digest.as_ref())
        )
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<Option<Duration>> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut invocation = self.script.prepare_invoke();
        invocation.key(self.counter_key(key)).arg(window_ms);
        let mut conn = self.store.connection();
        let (hits, ttl_ms): (u64, i64) = bounded(
            self.store.command_timeout(),
            "rate limit",
            invocation.invoke_async(&mut conn),
        )
        .await?;
        if hits <= u64::from(limit) {
            return Ok(None);
        }
        let retry_ms = u64::try_from(ttl_ms)
            .unwrap_or(window_ms)
            .clamp(1, window_ms);
        Ok(Some(Duration::from_millis(retry_ms)))
    }
}
