//! The verified-token cache: what a hit costs is one fast keyed hash of the token, a lookup,
//! a comparison with the stored token and a shared (not cloned) claims value.

use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::TokenError;
use crate::types::Claims;

/// A verified token in the cache, with its validity window precomputed (leeway included).
pub(super) struct CachedToken {
    /// The token itself: a hit must be this token, not one whose hash collides with it.
    token: Box<str>,
    pub(super) claims: Arc<Claims>,
    /// Unix ms from which the token is expired.
    pub(super) expired_from_ms: u64,
    /// Unix ms before which the token is not yet valid.
    pub(super) valid_from_ms: u64,
    /// How long the cache keeps it.
    pub(super) ttl: Duration,
}

impl CachedToken {
    pub(super) fn new(
        token: &str,
        claims: Claims,
        expired_from_ms: u64,
        valid_from_ms: u64,
        ttl: Duration,
    ) -> Self {
        CachedToken {
            token: token.into(),
            claims: Arc::new(claims),
            expired_from_ms,
            valid_from_ms,
            ttl,
        }
    }

    pub(super) fn check_time(&self, now_ms: u64) -> std::result::Result<(), TokenError> {
        if now_ms >= self.expired_from_ms {
            Err(TokenError::Expired)
        } else if now_ms < self.valid_from_ms {
            Err(TokenError::NotYetValid)
        } else {
            Ok(())
        }
    }
}

/// Verified tokens by a keyed 64-bit hash of the token.
///
/// SHA-256 of a ~1 KiB token costs more than everything else a hit does, and buys nothing
/// here: a hit also compares the whole token with the stored one, so a collision is a miss
/// (the token is then verified in full), never another token's claims. The hash is keyed
/// with 64 CSPRNG bits per cache, so nobody can aim tokens at one bucket; and only tokens
/// that verified are ever inserted. The comparison need not be constant-time: to time it an
/// attacker would first need a token whose keyed hash equals a cached one's.
pub(super) struct TokenCache {
    entries: moka::sync::Cache<u64, Arc<CachedToken>, BuildHasherDefault<PrehashedKey>>,
    hasher: foldhash::quality::FixedState,
}

impl TokenCache {
    pub(super) fn new(capacity: u64) -> Self {
        let mut seed = [0u8; 8];
        // Without OS randomness the key is fixed: collisions still only miss (see above).
        let _ = getrandom::fill(&mut seed);
        TokenCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(CacheExpiry)
                .build_with_hasher(BuildHasherDefault::<PrehashedKey>::default()),
            hasher: foldhash::quality::FixedState::with_seed(u64::from_le_bytes(seed)),
        }
    }

    /// Where `token` is (or would be) cached.
    pub(super) fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token.as_bytes())
    }

    /// The cached verification of exactly `token`.
    pub(super) fn get(&self, key: u64, token: &str) -> Option<Arc<CachedToken>> {
        self.entries
            .get(&key)
            .filter(|hit| hit.token.as_bytes() == token.as_bytes())
    }

    pub(super) fn insert(&self, key: u64, verified: Arc<CachedToken>) {
        self.entries.insert(key, verified);
    }

    pub(super) fn invalidate(&self, key: u64) {
        self.entries.invalidate(&key);
    }

    /// Drops every cached verification (a key left the JWKS: what it verified must be
    /// verified again).
    #[allow(dead_code)]
    pub(super) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

/// The cache keys are already keyed hashes: the map uses them as they are.
#[derive(Default)]
pub(super) struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here, through `write_u64`; fold anything else anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

struct CacheExpiry;

impl moka::Expiry<u64, Arc<CachedToken>> for CacheExpiry {
    fn expire_after_create(
        &self,
        _key: &u64,
        value: &Arc<CachedToken>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Claims {
        serde_json::from_value(serde_json::json!({
            "iss": "https://issuer.example", "sub": sub, "aud": "web", "exp": 2_000_000_000u64,
        }))
        .expect("claims")
    }

    fn cached(token: &str, sub: &str) -> Arc<CachedToken> {
        Arc::new(CachedToken::new(
            token,
            claims(sub),
            u64::MAX,
            0,
            Duration::from_secs(60),
        ))
    }

    #[test]
    fn a_hit_is_the_same_token_and_shares_its_claims() {
        let cache = TokenCache::new(10);
        let key = cache.key("token-a");
        cache.insert(key, cached("token-a", "alice"));
        let first = cache.get(key, "token-a").expect("hit");
        let second = cache.get(key, "token-a").expect("hit");
        assert_eq!(first.claims.sub, "alice");
        assert!(
            Arc::ptr_eq(&first.claims, &second.claims),
            "claims are shared"
        );
    }

    #[test]
    fn another_token_under_the_same_key_is_a_miss() {
        let cache = TokenCache::new(10);
        // As if "token-b" collided with "token-a": the stored token decides.
        let key = cache.key("token-a");
        cache.insert(key, cached("token-a", "alice"));
        assert!(cache.get(key, "token-b").is_none());
        assert!(cache.get(key, "token-a\0").is_none());
        assert!(cache.get(key, "token-").is_none());
    }

    #[test]
    fn keys_are_keyed_per_cache() {
        let (one, two) = (TokenCache::new(1), TokenCache::new(1));
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(one.key(token), one.key(token));
        // Two random 64-bit keys agree with probability 2^-64.
        assert_ne!(one.key(token), two.key(token));
    }
}
