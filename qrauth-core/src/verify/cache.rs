//! The verified-token cache: tokens by SHA-256, with their validity window precomputed.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::TokenError;
use crate::types::Claims;

/// A verified token in the cache, with its validity window precomputed (leeway included).
pub(super) struct CachedToken {
    pub(super) claims: Claims,
    /// Unix ms from which the token is expired.
    pub(super) expired_from_ms: u64,
    /// Unix ms before which the token is not yet valid.
    pub(super) valid_from_ms: u64,
    /// How long moka keeps it.
    pub(super) ttl: Duration,
}

impl CachedToken {
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

/// Verified tokens by SHA-256 of the token.
pub(super) type TokenCache =
    moka::sync::Cache<[u8; 32], Arc<CachedToken>, BuildHasherDefault<DigestHasher>>;

/// The cache keys are SHA-256 digests, already uniformly distributed (and only tokens that
/// verified are inserted): their first eight bytes are the hash, no need to hash them again.
#[derive(Default)]
pub(super) struct DigestHasher(u64);

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

pub(super) struct CacheExpiry;

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
