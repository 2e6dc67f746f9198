//! The verified-token cache: what a hit costs is one fast keyed hash of the token, a shared
//! read lock, a lookup, a comparison with the stored token and a shared (not cloned) claims
//! value.
//!
//! Not moka: a moka hit also reads a monotonic clock, records the read in a buffer for its
//! eviction policy and now and then drains that buffer on the request's thread, which together
//! cost more than the rest of the hit. Here a hit reads nothing but the entry; expiry is
//! decided by the Unix time the verifier read anyway, and eviction, which happens only on
//! insert when a shard is full, drops expired tokens first and then arbitrary ones: a token
//! evicted too early is only verified again.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock};

use super::keys::VerifyingKey;
use crate::error::TokenError;
use crate::types::Claims;

/// A verified token in the cache, with its validity window precomputed (leeway included).
pub(super) struct CachedToken {
    /// The token itself: a hit must be this token, not one whose hash collides with it.
    token: Box<str>,
    pub(super) claims: Arc<Claims>,
    /// The key that verified it: once that key leaves its issuer's set, the cache stops
    /// answering for the token.
    key: Arc<VerifyingKey>,
    /// Unix ms from which the token is expired.
    expired_from_ms: u64,
    /// Unix ms before which the token is not yet valid.
    valid_from_ms: u64,
    /// Unix ms from which the cache no longer answers for it (at most the expiry).
    cached_until_ms: u64,
}

impl CachedToken {
    pub(super) fn new(
        token: &str,
        claims: Claims,
        key: Arc<VerifyingKey>,
        expired_from_ms: u64,
        valid_from_ms: u64,
        cached_until_ms: u64,
    ) -> Self {
        CachedToken {
            token: token.into(),
            claims: Arc::new(claims),
            key,
            expired_from_ms,
            valid_from_ms,
            cached_until_ms: cached_until_ms.min(expired_from_ms),
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

/// What the cache knows of a token at a given time.
pub(super) enum Lookup {
    /// Verified before and valid now.
    Valid(Arc<Claims>),
    /// Verified before, but outside its validity window now (it stays cached when it is only
    /// not yet valid; an expired one is dropped).
    Invalid(TokenError),
    /// Not cached (or no longer): verify it in full.
    Miss,
}

/// Shards of the cache: a power of two, so that a key picks its shard with a mask. Enough
/// for the read locks of busy worker threads to rarely share a cache line.
const SHARDS: usize = 16;

type Shard = HashMap<u64, Arc<CachedToken>, BuildHasherDefault<PrehashedKey>>;

/// Verified tokens by a keyed 64-bit hash of the token.
///
/// SHA-256 of a ~1 KiB token costs more than everything else a hit does, and buys nothing
/// here: a hit also compares the whole token with the stored one, so a collision is a miss
/// (the token is then verified in full), never another token's claims. The hash is keyed
/// with 64 CSPRNG bits per cache, so nobody can aim tokens at one bucket; and only tokens
/// that verified are ever inserted. The comparison need not be constant-time: to time it an
/// attacker would first need a token whose keyed hash equals a cached one's.
pub(super) struct TokenCache {
    shards: Box<[RwLock<Shard>]>,
    /// Entries one shard holds at most.
    per_shard: usize,
    hasher: foldhash::quality::FixedState,
}

impl TokenCache {
    /// A cache of about `capacity` tokens (rounded up to a multiple of the shard count).
    pub(super) fn new(capacity: u64) -> Self {
        let mut seed = [0u8; 8];
        // Without OS randomness the key is fixed: collisions still only miss (see above).
        let _ = getrandom::fill(&mut seed);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        // Small caches keep one shard, so that their capacity is what was asked for.
        let shards = if capacity < SHARDS * 8 { 1 } else { SHARDS };
        TokenCache {
            shards: (0..shards).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(shards),
            hasher: foldhash::quality::FixedState::with_seed(u64::from_le_bytes(seed)),
        }
    }

    /// Where `token` is (or would be) cached.
    pub(super) fn key(&self, token: &str) -> u64 {
        self.hasher.hash_one(token.as_bytes())
    }

    fn shard(&self, key: u64) -> &RwLock<Shard> {
        // The map inside hashes by the low bits and tags by the top seven: pick the shard by
        // bits in between, so that neither loses entropy.
        &self.shards[(key >> 32) as usize & (self.shards.len() - 1)]
    }

    /// What is cached of exactly `token` at `now_ms`.
    pub(super) fn get(&self, key: u64, token: &str, now_ms: u64) -> Lookup {
        let answer = {
            let shard = self
                .shard(key)
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match shard.get(&key) {
                Some(hit) if hit.token.as_bytes() == token.as_bytes() => {
                    if now_ms >= hit.cached_until_ms || hit.key.is_retired() {
                        None
                    } else {
                        Some(match hit.check_time(now_ms) {
                            Ok(()) => Lookup::Valid(Arc::clone(&hit.claims)),
                            Err(e) => Lookup::Invalid(e),
                        })
                    }
                }
                _ => return Lookup::Miss,
            }
        };
        match answer {
            Some(lookup) => lookup,
            None => {
                self.invalidate(key);
                Lookup::Miss
            }
        }
    }

    /// Caches a verified token; `now_ms` decides which entries of a full shard have expired.
    pub(super) fn insert(&self, key: u64, verified: Arc<CachedToken>, now_ms: u64) {
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, cached| now_ms < cached.cached_until_ms);
            if shard.len() >= self.per_shard {
                // All live: drop one. Which one matters little (it is only verified again),
                // and the map's order is as good as random for keys that are keyed hashes.
                if let Some(victim) = shard.keys().next().copied() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(key, verified);
    }

    pub(super) fn invalidate(&self, key: u64) {
        self.shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    }

    /// Tokens cached, expired ones included until an insert sweeps them.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    fn claims(sub: &str) -> Claims {
        serde_json::from_value(serde_json::json!({
            "iss": "https://issuer.example", "sub": sub, "aud": "web", "exp": 2_000_000_000u64,
        }))
        .expect("claims")
    }

    fn signer() -> Arc<VerifyingKey> {
        Arc::new(VerifyingKey::hs256(
            b"a shared secret of at least 32 bytes!",
        ))
    }

    fn cached(token: &str, sub: &str) -> Arc<CachedToken> {
        Arc::new(CachedToken::new(
            token,
            claims(sub),
            signer(),
            NOW + 3_600_000,
            0,
            NOW + 60_000,
        ))
    }

    fn valid(lookup: Lookup) -> Option<Arc<Claims>> {
        match lookup {
            Lookup::Valid(claims) => Some(claims),
            _ => None,
        }
    }

    #[test]
    fn a_hit_is_the_same_token_and_shares_its_claims() {
        let cache = TokenCache::new(10);
        let key = cache.key("token-a");
        cache.insert(key, cached("token-a", "alice"), NOW);
        let first = valid(cache.get(key, "token-a", NOW)).expect("hit");
        let second = valid(cache.get(key, "token-a", NOW)).expect("hit");
        assert_eq!(first.sub, "alice");
        assert!(Arc::ptr_eq(&first, &second), "claims are shared");
    }

    #[test]
    fn another_token_under_the_same_key_is_a_miss() {
        let cache = TokenCache::new(10);
        // As if "token-b" collided with "token-a": the stored token decides.
        let key = cache.key("token-a");
        cache.insert(key, cached("token-a", "alice"), NOW);
        for other in ["token-b", "token-a\0", "token-"] {
            assert!(
                matches!(cache.get(key, other, NOW), Lookup::Miss),
                "{other}"
            );
        }
    }

    #[test]
    fn keys_are_keyed_per_cache() {
        let (one, two) = (TokenCache::new(1), TokenCache::new(1));
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert_eq!(one.key(token), one.key(token));
        // Two random 64-bit keys agree with probability 2^-64.
        assert_ne!(one.key(token), two.key(token));
    }

    #[test]
    fn an_entry_is_a_miss_from_its_cache_lifetime_on_and_is_dropped() {
        let cache = TokenCache::new(10);
        let key = cache.key("token-a");
        cache.insert(key, cached("token-a", "alice"), NOW);
        assert!(valid(cache.get(key, "token-a", NOW + 59_999)).is_some());
        assert!(matches!(
            cache.get(key, "token-a", NOW + 60_000),
            Lookup::Miss
        ));
        assert_eq!(cache.len(), 0, "the stale entry is gone");
    }

    #[test]
    fn the_time_checks_run_on_every_hit() {
        let cache = TokenCache::new(10);
        let key = cache.key("token-a");
        let entry = CachedToken::new(
            "token-a",
            claims("alice"),
            signer(),
            NOW + 1_000,
            NOW,
            NOW + 60_000,
        );
        assert_eq!(
            entry.cached_until_ms,
            NOW + 1_000,
            "never cached past its expiry"
        );
        cache.insert(key, Arc::new(entry), NOW);
        assert!(matches!(
            cache.get(key, "token-a", NOW - 1),
            Lookup::Invalid(TokenError::NotYetValid)
        ));
        assert!(valid(cache.get(key, "token-a", NOW)).is_some());
        assert!(matches!(
            cache.get(key, "token-a", NOW + 1_000),
            Lookup::Miss
        ));
    }

    #[test]
    fn a_full_cache_drops_expired_entries_first_and_stays_bounded() {
        let cache = TokenCache::new(4);
        for i in 0..4 {
            let token = format!("short-{i}");
            let entry =
                CachedToken::new(&token, claims("a"), signer(), NOW + 1_000, 0, NOW + 1_000);
            cache.insert(cache.key(&token), Arc::new(entry), NOW);
        }
        // The short-lived ones have expired: inserting sweeps them, nothing live is lost.
        let later = NOW + 2_000;
        let live: Vec<String> = (0..4).map(|i| format!("live-{i}")).collect();
        for token in &live {
            let entry = CachedToken::new(
                token,
                claims("b"),
                signer(),
                later + 60_000,
                0,
                later + 60_000,
            );
            cache.insert(cache.key(token), Arc::new(entry), later);
        }
        assert_eq!(cache.len(), 4);
        for token in &live {
            assert!(
                valid(cache.get(cache.key(token), token, later)).is_some(),
                "{token}"
            );
        }
        // Full of live tokens: one more evicts one, the size holds.
        for i in 0..100 {
            let token = format!("more-{i}");
            let entry = CachedToken::new(
                &token,
                claims("c"),
                signer(),
                later + 60_000,
                0,
                later + 60_000,
            );
            cache.insert(cache.key(&token), Arc::new(entry), later);
            assert!(cache.len() <= 4);
        }
    }

    #[test]
    fn a_large_cache_is_sharded_and_bounded_per_shard() {
        let cache = TokenCache::new(1_000);
        assert_eq!(cache.shards.len(), SHARDS);
        for i in 0..5_000 {
            let token = format!("token-{i}");
            cache.insert(cache.key(&token), cached(&token, "a"), NOW);
        }
        assert!(cache.len() <= SHARDS * 1_000usize.div_ceil(SHARDS));
        assert!(
            cache.len() >= 900,
            "the shards fill evenly: {}",
            cache.len()
        );
    }
}
