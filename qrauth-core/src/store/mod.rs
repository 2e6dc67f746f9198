//! Where QR sessions and signed-in sessions live: [`MemoryStore`] in one process, `RedisStore` (feature `redis`)
//! across replicas.
//!
//! A store knows nothing about the state machine: it inserts records, reads them, replaces
//! them with a compare-and-set on their `version`, keeps single-use ticket handles, wakes
//! waiters when a record changes, and counts abuse-limit hits. The service drives the flow on
//! top; an application only picks a store and hands it to
//! [`QrAuthServiceBuilder::store`](crate::QrAuthServiceBuilder::store).

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod signed_in;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use self::redis::{RedisRateLimiter, RedisStore, RedisStoreBuilder};
pub use crate::limits::{MemoryRateLimiter, RateLimiter};
pub use crate::record::{Initiator, Scanner, SessionRecord};
pub use crate::signed_in::{Rotation, SignedInSession};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use signed_in::{MAX_SESSIONS_PER_SUBJECT, SignedInStore};

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::error::Result;
use crate::secret::{QrCodeId, SecretHash};

/// Storage for QR sessions, their tickets and the abuse-limit counters.
///
/// Implementations must make [`compare_and_swap`](SessionStore::compare_and_swap) and
/// [`take_ticket`](SessionStore::take_ticket) atomic across every process that shares the
/// store.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new record, kept at least until `retain_until_ms` (Unix ms).
    ///
    /// Fails with [`Error::Conflict`](crate::Error::Conflict) if the id exists.
    async fn insert(&self, record: &SessionRecord, retain_until_ms: u64) -> Result<()>;

    /// The record with this id, or `None` if it never existed or was dropped after its
    /// retention.
    async fn load(&self, id: &QrCodeId) -> Result<Option<SessionRecord>>;

    /// Replaces the stored record by `record` if the stored version is still
    /// `expected_version`; returns whether it did. Wakes the record's waiters when the version
    /// changed.
    async fn compare_and_swap(&self, expected_version: u64, record: &SessionRecord)
    -> Result<bool>;

    /// Registers a ticket handle (the SHA-256 of a ticket) for the session, until
    /// `expire_at_ms`. Registering the same handle again is a no-op.
    async fn put_ticket(&self, ticket: &SecretHash, id: &QrCodeId, expire_at_ms: u64)
    -> Result<()>;

    /// Removes a ticket handle and returns its session's record as it is now, in one round
    /// trip: of any number of concurrent callers with the same handle, exactly one gets
    /// `Some`.
    async fn take_ticket(&self, ticket: &SecretHash) -> Result<Option<SessionRecord>>;

    /// Waits until the record's version differs from `since_version` (the version read first
    /// when `None`), the record disappears, or `deadline` passes, then returns the record as it
    /// is. A record whose binding hash is not `binding` is returned at once: only the bound
    /// browser may hold a waiter.
    ///
    /// Implementations register the waiter before their one read, so a change between the
    /// read and the wait is never lost.
    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &SecretHash,
        since_version: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<SessionRecord>>;

    /// Number of callers currently inside [`wait_for_change`](SessionStore::wait_for_change):
    /// a gauge for leak checks and metrics.
    fn live_waiters(&self) -> usize;

    /// Where the abuse-limit counters of the services on this store live: the same place as
    /// the sessions, so that several replicas on one shared store also share their limits.
    fn rate_limiter(&self) -> Arc<dyn RateLimiter>;

    /// Where the signed-in sessions of the services on this store live: the same place as
    /// the QR sessions.
    fn signed_in(&self) -> Arc<dyn SignedInStore>;

    /// Takes the lease `name` for `holder`, or renews it if `holder` already holds it, for
    /// `ttl`; returns whether `holder` holds it now. Of any number of processes sharing the
    /// store, at most one holds a lease at a time, until it lapses or is released.
    ///
    /// The service leases each session's upstream status loop, so that however many replicas
    /// have a browser waiting, exactly one of them asks the IdP (an RFC 8628 token endpoint
    /// revokes the tokens of a device code polled again after it answered). The default grants
    /// every request: right for a store that only one process uses.
    async fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        let _ = (name, holder, ttl);
        Ok(true)
    }

    /// Ends `holder`'s lease `name` early, if it holds it (a no-op otherwise).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let _ = (name, holder);
        Ok(())
    }
}

/// Whether a waiter on `record` should keep waiting for a change after `since`.
pub(crate) fn keeps_waiting(
    record: &SessionRecord,
    binding: &SecretHash,
    since: u64,
    now_ms: u64,
) -> bool {
    record.version == since && record.binding_hash.ct_eq(binding) && now_ms < record.deadline_ms()
}
