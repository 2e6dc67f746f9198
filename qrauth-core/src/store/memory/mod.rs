mod signed_in;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache;
use tokio::sync::Notify;
use tokio::time::Instant;

use self::signed_in::MemorySignedIn;
use super::{SessionStore, SignedInStore, keeps_waiting};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::limits::{MemoryRateLimiter, RateLimiter};
use crate::record::SessionRecord;
use crate::secret::{QrCodeId, SecretHash};

/// The embedded session store: one process, bounded memory, entries dropped after their
/// retention time.
///
/// Cheap to clone; clones share the same sessions.
///
/// ```
/// use qrauth_core::store::MemoryStore;
///
/// let store = MemoryStore::builder().max_sessions(50_000).build();
/// # let _ = store;
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Cache<String, Arc<Slot>>,
    tickets: Cache<[u8; 32], Arc<TicketSlot>>,
    clock: SharedClock,
    waiters: AtomicUsize,
    limiter: Arc<MemoryRateLimiter>,
    signed_in: Arc<MemorySignedIn>,
    /// Lease name → (holder, until). Holds one entry per live upstream loop; lapsed entries
    /// are dropped when the map grows.
    leases: Mutex<std::collections::HashMap<String, (String, StdInstant)>>,
}

struct Slot {
    record: Mutex<SessionRecord>,
    retain_until_ms: u64,
    /// Woken on every version change. A `Notify` rather than a `watch` channel: the version
    /// already lives in the record, and a `watch` would add ~350 bytes to every session.
    changed: Notify,
}

/// What a stored session costs beyond its variable parts: the record, the slot, the cache
/// entry (measured in the core bench: about 840 bytes per pending session all told).
const SLOT_BYTES: usize = 640;

impl Slot {
    /// The bytes this session takes, as weighed at insertion (by then every client-supplied
    /// field is in: later transitions add only what the server's own authenticator returns).
    fn weight(&self, id: &str) -> u32 {
        let variable = self.record.try_lock().map_or(0, |r| {
            r.nonce.as_ref().map_or(0, String::len)
                + r.initiator.device.len()
                + r.provider_data.as_ref().map_or(0, String::len)
                + r.qr_content.as_ref().map_or(0, String::len)
                + r.match_code.as_ref().map_or(0, String::len)
        });
        u32::try_from(SLOT_BYTES + id.len() + variable).unwrap_or(u32::MAX)
    }
}

struct TicketSlot {
    id: QrCodeId,
    expire_at_ms: u64,
}

/// Configures a [`MemoryStore`].
#[derive(Default)]
pub struct MemoryStoreBuilder {
    max_sessions: Option<u64>,
    max_bytes: Option<u64>,
    max_signed_in: Option<u64>,
    clock: Option<SharedClock>,
}

impl MemoryStoreBuilder {
    /// Upper bound on stored sessions, as a byte budget of `max` KiB (default 200 000, i.e.
    /// about 200 MiB); see [`max_bytes`](Self::max_bytes).
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = Some(max);
        self
    }

    /// Upper bound on the bytes the stored QR sessions take (default: 1 KiB ×
    /// [`max_sessions`](Self::max_sessions)); beyond it the least useful entries are evicted,
    /// so memory stays bounded under a flood however large each session is. A session weighs
    /// its fixed size plus everything a client or provider put in it when it was created
    /// (nonce, browser label, provider data).
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = Some(max);
        self
    }

    /// Upper bound on stored signed-in sessions (default 1 000 000); beyond it the sessions
    /// nearest their end are dropped (signed out) first.
    pub fn max_signed_in_sessions(mut self, max: u64) -> Self {
        self.max_signed_in = Some(max);
        self
    }

    /// The clock that decides retention (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let max = self.max_sessions.unwrap_or(200_000);
        let max_bytes = self.max_bytes.unwrap_or(max.saturating_mul(1024));
        let sessions = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|id: &String, slot: &Arc<Slot>| slot.weight(id))
            .expire_after(RetainUntil {
                clock: clock.clone(),
            })
            .build();
        let tickets = Cache::builder()
            .max_capacity(max)
            .expire_after(RetainUntil {
                clock: clock.clone(),
            })
            .build();
        let signed_in = Arc::new(MemorySignedIn::new(
            self.max_signed_in.unwrap_or(1_000_000),
            clock.clone(),
        ));
        MemoryStore {
            inner: Arc::new(Inner {
                sessions,
                tickets,
                signed_in,
                clock,
                waiters: AtomicUsize::new(0),
                limiter: Arc::new(MemoryRateLimiter::default()),
                leases: Mutex::default(),
            }),
        }
    }
}

impl MemoryStore {
    /// A store with default settings.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Configures a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder::default()
    }

    /// How many sessions are stored, after dropping those past their retention: a gauge for
    /// memory checks and metrics.
    ///
    /// ```
    /// let store = qrauth_core::store::MemoryStore::new();
    /// assert_eq!(store.stored_sessions(), 0);
    /// ```
    pub fn stored_sessions(&self) -> u64 {
        self.inner.sessions.run_pending_tasks();
        self.inner.tickets.run_pending_tasks();
        self.inner.sessions.entry_count()
    }

    /// How many signed-in sessions are stored, after dropping the expired ones: a gauge.
    ///
    /// ```
    /// let store = qrauth_core::store::MemoryStore::new();
    /// assert_eq!(store.stored_signed_in_sessions(), 0);
    /// ```
    pub fn stored_signed_in_sessions(&self) -> u64 {
        self.inner.signed_in.len()
    }

    /// Every stored record and ticket handle, for tests that check what the store holds.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn dump(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .sessions
            .iter()
            .filter_map(|(_, slot)| slot.record.lock().ok().map(|r| format!("{r:?}")))
            .collect();
        out.extend(
            self.inner
                .tickets
                .iter()
                .map(|(k, t)| format!("{k:?} {:?} {}", t.id.as_str(), t.expire_at_ms)),
        );
        out
    }

    fn slot(&self, id: &QrCodeId) -> Option<Arc<Slot>> {
        self.inner.sessions.get(id.as_str())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

trait Retained {
    fn retain_until_ms(&self) -> u64;
}
impl Retained for Arc<Slot> {
    fn retain_until_ms(&self) -> u64 {
        self.retain_until_ms
    }
}
impl Retained for Arc<TicketSlot> {
    fn retain_until_ms(&self) -> u64 {
        self.expire_at_ms
    }
}

struct RetainUntil {
    clock: SharedClock,
}

impl<K, V: Retained> Expiry<K, V> for RetainUntil {
    fn expire_after_create(
        &self,
        _key: &K,
        value: &V,
        _created_at: StdInstant,
    ) -> Option<Duration> {
        let now = self.clock.now_millis();
        Some(Duration::from_millis(
            value.retain_until_ms().saturating_sub(now),
        ))
    }
}

fn poisoned() -> Error {
    Error::Internal("session lock poisoned".into())
}

/// Decrements the waiter gauge however the wait ends, including when the future is dropped
/// because the client went away.
struct WaiterGuard<'a>(&'a AtomicUsize);
impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn insert(&self, record: &SessionRecord, retain_until_ms: u64) -> Result<()> {
        let slot = Arc::new(Slot {
            record: Mutex::new(record.clone()),
            retain_until_ms,
            changed: Notify::new(),
        });
        let entry = self
            .inner
            .sessions
            .entry(record.id.as_str().to_owned())
            .or_insert(slot);
        if entry.is_fresh() {
            Ok(())
        } else {
            Err(Error::Conflict("QR code id collision".into()))
        }
    }

    async fn load(&self, id: &QrCodeId) -> Result<Option<SessionRecord>> {
        match self.slot(id) {
            Some(slot) => Ok(Some(slot.record.lock().map_err(|_| poisoned())?.clone())),
            None => Ok(None),
        }
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &SessionRecord,
    ) -> Result<bool> {
        let Some(slot) = self.slot(&record.id) else {
            return Ok(false);
        };
        let mut current = slot.record.lock().map_err(|_| poisoned())?;
        if current.version != expected_version {
            return Ok(false);
        }
        *current = record.clone();
        drop(current);
        if record.version != expected_version {
            slot.changed.notify_waiters();
        }
        Ok(true)
    }

    async fn put_ticket(
        &self,
        ticket: &SecretHash,
        id: &QrCodeId,
        expire_at_ms: u64,
    ) -> Result<()> {
        self.inner
            .tickets
            .entry(*ticket.as_bytes())
            .or_insert_with(|| {
                Arc::new(TicketSlot {
                    id: id.clone(),
                    expire_at_ms,
                })
            });
        Ok(())
    }

    async fn take_ticket(&self, ticket: &SecretHash) -> Result<Option<SessionRecord>> {
        let now = self.inner.clock.now_millis();
        let Some(ticket) = self
            .inner
            .tickets
            .remove(ticket.as_bytes())
            .filter(|t| now < t.expire_at_ms)
        else {
            return Ok(None);
        };
        self.load(&ticket.id).await
    }

    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &SecretHash,
        since_version: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<SessionRecord>> {
        let Some(slot) = self.slot(id) else {
            return Ok(None);
        };
        self.inner.waiters.fetch_add(1, Ordering::Relaxed);
        let _guard = WaiterGuard(&self.inner.waiters);
        // Register first, then read: a change after the read still wakes this waiter.
        let notified = slot.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let current = slot.record.lock().map_err(|_| poisoned())?.clone();
        let since = since_version.unwrap_or(current.version);
        let now = self.inner.clock.now_millis();
        if !keeps_waiting(&current, binding, since, now) {
            return Ok(Some(current));
        }
        // The session expires without anyone writing: wake at its deadline too.
        let until_expiry = Duration::from_millis(current.deadline_ms().saturating_sub(now));
        let wake = deadline.min(Instant::now() + until_expiry);
        // Both outcomes (changed, or deadline) end in a re-read.
        let _ = tokio::time::timeout_at(wake, notified).await;
        let latest = slot.record.lock().map_err(|_| poisoned())?.clone();
        Ok(Some(latest))
    }

    fn live_waiters(&self) -> usize {
        self.inner.waiters.load(Ordering::Relaxed)
    }

    fn rate_limiter(&self) -> Arc<dyn RateLimiter> {
        self.inner.limiter.clone()
    }

    fn signed_in(&self) -> Arc<dyn SignedInStore> {
        self.inner.signed_in.clone()
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let now = StdInstant::now();
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases.len() >= 1024 {
            leases.retain(|_, (_, until)| *until > now);
        }
        let free = match leases.get(name) {
            Some((current, until)) => current == holder || *until <= now,
            None => true,
        };
        if free {
            leases.insert(name.to_owned(), (holder.to_owned(), now + ttl));
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        if leases
            .get(name)
            .is_some_and(|(current, _)| current == holder)
        {
            leases.remove(name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod byte_budget_tests {
    use super::*;
    use crate::record::Initiator;
    use crate::secret::BindingSecret;

    fn insert_all(store: &MemoryStore, n: usize, provider_data: usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for _ in 0..n {
                let mut record = SessionRecord::new(
                    QrCodeId::generate().unwrap(),
                    BindingSecret::generate().unwrap().hash(),
                    store.inner.clock.now_millis(),
                    120_000,
                    Initiator::default(),
                );
                record.nonce = Some("n".repeat(256));
                record.provider_data = Some("p".repeat(provider_data));
                store.insert(&record, u64::MAX).await.unwrap();
            }
        });
    }

    /// Issue 16: the memory store is bounded by bytes, not only by entries: large sessions
    /// fill the budget sooner.
    #[test]
    fn memory_store_is_bounded_by_bytes() {
        let budget = 200 * 1024;
        let small = MemoryStore::builder().max_bytes(budget).build();
        insert_all(&small, 2_000, 0);
        let small_count = small.stored_sessions();
        let large = MemoryStore::builder().max_bytes(budget).build();
        insert_all(&large, 2_000, 3_000);
        let large_count = large.stored_sessions();
        // ~1 KiB each: about 200 fit; ~4 KiB each: about 50.
        assert!(
            (100..=260).contains(&small_count),
            "{small_count} small sessions"
        );
        assert!(large_count <= 70, "{large_count} large sessions");
        assert!(
            large_count * 3 < small_count,
            "{large_count} vs {small_count}"
        );
    }
}
