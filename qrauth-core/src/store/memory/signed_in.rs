//! The memory store's signed-in sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant as StdInstant};

use async_trait::async_trait;
use moka::Expiry;
use moka::sync::Cache;

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::secret::{SecretHash, SessionId, base64url_sextet};
use crate::signed_in::{Rotation, SignedInSession};
use crate::store::signed_in::{MAX_SESSIONS_PER_SUBJECT, SignedInStore};

/// A signed-in session as this store keeps it: boxed strings and the claims as JSON text (a
/// `serde_json::Map` is a B-tree whose smallest node holds room for eleven entries, which
/// would double the size of a session).
struct Compact {
    subject: Box<str>,
    provider: Box<str>,
    browser: Box<str>,
    ip: Option<std::net::IpAddr>,
    created_at_ms: u64,
    last_seen_at_ms: u64,
    expire_at_ms: u64,
    idle_timeout_ms: u64,
    auth_time: u64,
    claims: Box<str>,
    refresh_hash: SecretHash,
    previous_refresh_hash: Option<SecretHash>,
    rotated_at_ms: u64,
}

impl Compact {
    fn new(s: &SignedInSession) -> Result<Self> {
        Ok(Self {
            subject: s.subject.as_str().into(),
            provider: s.provider.as_str().into(),
            browser: s.browser.as_str().into(),
            ip: s.ip,
            created_at_ms: s.created_at_ms,
            last_seen_at_ms: s.last_seen_at_ms,
            expire_at_ms: s.expire_at_ms,
            idle_timeout_ms: s.idle_timeout_ms,
            auth_time: s.auth_time,
            claims: serde_json::to_string(&s.claims)
                .map_err(|e| Error::Internal(format!("claims do not encode: {e}")))?
                .into(),
            refresh_hash: s.refresh_hash,
            previous_refresh_hash: s.previous_refresh_hash,
            rotated_at_ms: s.rotated_at_ms,
        })
    }

    fn expand(&self, id: &SessionId) -> SignedInSession {
        SignedInSession {
            id: id.clone(),
            subject: self.subject.to_string(),
            provider: self.provider.to_string(),
            browser: self.browser.to_string(),
            ip: self.ip,
            created_at_ms: self.created_at_ms,
            last_seen_at_ms: self.last_seen_at_ms,
            expire_at_ms: self.expire_at_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            auth_time: self.auth_time,
            // Written by `new` from a map: it parses back.
            claims: serde_json::from_str(&self.claims).unwrap_or_default(),
            refresh_hash: self.refresh_hash,
            previous_refresh_hash: self.previous_refresh_hash,
            rotated_at_ms: self.rotated_at_ms,
        }
    }

    fn alive_until_ms(&self) -> u64 {
        self.expire_at_ms
            .min(self.last_seen_at_ms.saturating_add(self.idle_timeout_ms))
    }
}

/// Shards of the session map: a power of two, so that a key picks its shard with a mask.
const SHARDS: usize = 16;

/// One stored session: when it stops being alive, readable without its lock (the check behind
/// every authenticated request reads only this), and the rest.
struct Entry {
    /// Unix ms from which the session is over: its absolute end or its idle end, whichever
    /// comes first. Written under `session`'s lock, read without it.
    alive_until_ms: AtomicU64,
    session: Mutex<Compact>,
}

impl Entry {
    fn new(session: Compact) -> Self {
        Entry {
            alive_until_ms: AtomicU64::new(session.alive_until_ms()),
            session: Mutex::new(session),
        }
    }

    fn is_alive(&self, now_ms: u64) -> bool {
        now_ms < self.alive_until_ms.load(Ordering::Acquire)
    }

    /// The session for an update; `Entry::touched` must follow a change of its times.
    fn lock(&self) -> MutexGuard<'_, Compact> {
        lock(&self.session)
    }

    fn touched(&self, session: &Compact) {
        self.alive_until_ms
            .store(session.alive_until_ms(), Ordering::Release);
    }
}

type Shard = HashMap<Box<str>, Arc<Entry>, foldhash::quality::RandomState>;

/// Signed-in sessions in one process: bounded, a dead one dropped when it is next looked up
/// or when its shard is full.
///
/// Not moka: the liveness check runs on every authenticated request, and a moka hit also reads
/// a monotonic clock and records the read for its eviction policy, which cost more than the
/// lookup. Here a check is a shared read lock, one lookup by a fast keyed hash of the `sid`
/// (random 128-bit values that only qrauth inserts) and one atomic load.
pub(super) struct MemorySignedIn {
    shards: Box<[RwLock<Shard>]>,
    /// Sessions one shard holds at most.
    per_shard: usize,
    /// Subject → its session ids, oldest first. Pruned when a session is removed.
    subjects: Mutex<HashMap<String, Vec<String>>>,
    aliases: Cache<[u8; 32], Arc<Alias>>,
    clock: SharedClock,
}

struct Alias {
    id: SessionId,
    expire_at_ms: u64,
}

struct UntilEnd {
    clock: SharedClock,
}

impl Expiry<[u8; 32], Arc<Alias>> for UntilEnd {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &Arc<Alias>,
        _: StdInstant,
    ) -> Option<Duration> {
        Some(Duration::from_millis(
            value.expire_at_ms.saturating_sub(self.clock.now_millis()),
        ))
    }
}

/// The bits of a session id's first character that pick its shard (any other byte passes
/// through: only valid ids are ever stored).
fn shard_index(first: u8) -> usize {
    usize::from(base64url_sextet(first).unwrap_or(first))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment: a panic cannot leave them torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemorySignedIn {
    pub(super) fn new(max_sessions: u64, clock: SharedClock) -> Self {
        let capacity = usize::try_from(max_sessions).unwrap_or(usize::MAX).max(1);
        // Small stores keep one shard, so that their capacity is what was asked for.
        let shards = if capacity < SHARDS * 8 { 1 } else { SHARDS };
        let aliases = Cache::builder()
            .max_capacity(max_sessions)
            .expire_after(UntilEnd {
                clock: clock.clone(),
            })
            .build();
        Self {
            shards: (0..shards)
                .map(|_| RwLock::new(Shard::with_hasher(Default::default())))
                .collect(),
            per_shard: capacity.div_ceil(shards),
            subjects: Mutex::default(),
            aliases,
            clock,
        }
    }

    fn shard(&self, id: &str) -> &RwLock<Shard> {
        // Session ids are base64url of CSPRNG bytes: the six bits of their first character are
        // uniform (the last character's are not: it holds the padding bits).
        let first = id.as_bytes().first().copied().unwrap_or(0);
        &self.shards[shard_index(first) & (self.shards.len() - 1)]
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        let shard = self
            .shard(id)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(id).cloned()
    }

    /// The session if it is alive at `now_ms`; a dead one is dropped.
    fn live(&self, id: &SessionId, now_ms: u64) -> Option<Arc<Entry>> {
        let entry = self.entry(id.as_str())?;
        if entry.is_alive(now_ms) {
            Some(entry)
        } else {
            self.remove(id.as_str());
            None
        }
    }

    /// Drops a session from its shard and from its subject's list; returns it.
    fn remove(&self, id: &str) -> Option<Arc<Entry>> {
        let removed = self
            .shard(id)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)?;
        let subject = removed.lock().subject.to_string();
        self.forget(&subject, id);
        Some(removed)
    }

    /// Prunes an id from its subject's list (locks only the subject index).
    fn forget(&self, subject: &str, id: &str) {
        let mut subjects = lock(&self.subjects);
        if let Some(list) = subjects.get_mut(subject) {
            list.retain(|i| i != id);
            if list.is_empty() {
                subjects.remove(subject);
            }
        }
    }

    /// Makes room in a full shard: drops the dead sessions, and if none was dead, the one
    /// that would end soonest. Returns what was dropped, as (subject, id), for the index.
    fn make_room(shard: &mut Shard, now_ms: u64) -> Vec<(String, Box<str>)> {
        let mut dropped = Vec::new();
        Self::drop_dead(shard, now_ms, &mut dropped);
        if dropped.is_empty() {
            let soonest = shard
                .iter()
                .min_by_key(|(_, e)| e.alive_until_ms.load(Ordering::Acquire))
                .map(|(id, _)| id.clone());
            if let Some(entry) = soonest.and_then(|id| shard.remove_entry(&id)) {
                dropped.push((entry.1.lock().subject.to_string(), entry.0));
            }
        }
        dropped
    }

    /// Drops the sessions of `shard` that are over at `now_ms`, noting (subject, id) of each.
    fn drop_dead(shard: &mut Shard, now_ms: u64, dropped: &mut Vec<(String, Box<str>)>) {
        shard.retain(|id, entry| {
            let alive = entry.is_alive(now_ms);
            if !alive {
                dropped.push((entry.lock().subject.to_string(), id.clone()));
            }
            alive
        });
    }

    /// Signed-in sessions held (after dropping the dead ones): a gauge for memory checks.
    pub(super) fn len(&self) -> u64 {
        let now_ms = self.clock.now_millis();
        let mut dropped = Vec::new();
        let mut held = 0;
        for shard in &self.shards {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            Self::drop_dead(&mut shard, now_ms, &mut dropped);
            held += shard.len() as u64;
        }
        for (subject, id) in &dropped {
            self.forget(subject, id);
        }
        held
    }
}

#[async_trait]
impl SignedInStore for MemorySignedIn {
    async fn create(&self, session: &SignedInSession) -> Result<()> {
        let id: Box<str> = session.id.as_str().into();
        let entry = Arc::new(Entry::new(Compact::new(session)?));
        let dropped = {
            let mut shard = self
                .shard(&id)
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if shard.contains_key(&id) {
                return Err(Error::Conflict("session id collision".into()));
            }
            let dropped = if shard.len() >= self.per_shard {
                Self::make_room(&mut shard, self.clock.now_millis())
            } else {
                Vec::new()
            };
            shard.insert(id.clone(), entry);
            dropped
        };
        for (subject, dropped_id) in &dropped {
            self.forget(subject, dropped_id);
        }
        let oldest = {
            let mut subjects = lock(&self.subjects);
            let ids = subjects.entry(session.subject.clone()).or_default();
            ids.push(id.into());
            if ids.len() > MAX_SESSIONS_PER_SUBJECT {
                Some(ids.remove(0))
            } else {
                None
            }
        };
        if let Some(oldest) = oldest {
            self.remove(&oldest);
        }
        Ok(())
    }

    async fn load(&self, id: &SessionId, now_ms: u64) -> Result<Option<SignedInSession>> {
        Ok(self.live(id, now_ms).map(|e| e.lock().expand(id)))
    }

    async fn is_active(&self, id: &SessionId, now_ms: u64) -> Result<bool> {
        // Read in place, without taking a reference to the entry: this runs on every
        // authenticated request, often for the same session from several threads.
        let alive = {
            let shard = self
                .shard(id.as_str())
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            shard.get(id.as_str()).map(|entry| entry.is_alive(now_ms))
        };
        if alive == Some(false) {
            self.remove(id.as_str());
        }
        Ok(alive == Some(true))
    }

    async fn rotate(
        &self,
        id: &SessionId,
        presented: &SecretHash,
        next: &SecretHash,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<Rotation> {
        let Some(entry) = self.live(id, now_ms) else {
            return Ok(Rotation::Unknown);
        };
        let mut session = entry.lock();
        if session.refresh_hash.ct_eq(presented) {
            session.previous_refresh_hash = Some(session.refresh_hash);
            session.refresh_hash = *next;
            session.rotated_at_ms = now_ms;
            session.last_seen_at_ms = now_ms;
            entry.touched(&session);
            return Ok(Rotation::Rotated(session.expand(id)));
        }
        let recent = now_ms.saturating_sub(session.rotated_at_ms) <= grace_ms;
        if recent
            && session
                .previous_refresh_hash
                .as_ref()
                .is_some_and(|p| p.ct_eq(presented))
        {
            session.last_seen_at_ms = now_ms;
            entry.touched(&session);
            return Ok(Rotation::Concurrent(session.expand(id)));
        }
        drop(session);
        self.remove(id.as_str());
        Ok(Rotation::Reused)
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        let now_ms = self.clock.now_millis();
        Ok(self
            .remove(id.as_str())
            .is_some_and(|entry| entry.is_alive(now_ms)))
    }

    async fn list(&self, subject: &str, now_ms: u64) -> Result<Vec<SignedInSession>> {
        let ids = lock(&self.subjects)
            .get(subject)
            .cloned()
            .unwrap_or_default();
        let mut sessions: Vec<SignedInSession> = ids
            .iter()
            .filter_map(|id| SessionId::parse(id).ok())
            .filter_map(|id| self.live(&id, now_ms).map(|e| e.lock().expand(&id)))
            .collect();
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        Ok(sessions)
    }

    async fn put_alias(&self, token: &SecretHash, id: &SessionId, expire_at_ms: u64) -> Result<()> {
        self.aliases.insert(
            *token.as_bytes(),
            Arc::new(Alias {
                id: id.clone(),
                expire_at_ms,
            }),
        );
        Ok(())
    }

    async fn resolve_alias(&self, token: &SecretHash) -> Result<Option<SessionId>> {
        Ok(self.aliases.get(token.as_bytes()).map(|a| a.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};

    const NOW: u64 = 1_700_000_000_000;

    fn store(capacity: u64) -> (MemorySignedIn, ManualClock) {
        let clock = ManualClock::new(NOW);
        (
            MemorySignedIn::new(capacity, Arc::new(clock.clone())),
            clock,
        )
    }

    fn session(subject: &str, now_ms: u64, lasts_ms: u64) -> SignedInSession {
        let mut s = SignedInSession::sample(subject, now_ms).expect("session");
        s.expire_at_ms = now_ms + lasts_ms;
        s
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn a_session_is_active_until_its_end_and_not_after_a_revocation() {
        block_on(async {
            let (store, clock) = store(100);
            let a = session("alice", NOW, 10_000);
            let b = session("alice", NOW, 60_000);
            store.create(&a).await.expect("create");
            store.create(&b).await.expect("create");
            assert!(store.is_active(&a.id, NOW).await.expect("check"));
            assert_eq!(store.list("alice", NOW).await.expect("list").len(), 2);
            assert!(
                store.create(&a).await.is_err(),
                "an id is never stored twice"
            );

            clock.advance(Duration::from_secs(10));
            let now = clock.now_millis();
            assert!(!store.is_active(&a.id, now).await.expect("check"));
            assert!(store.is_active(&b.id, now).await.expect("check"));
            assert_eq!(store.list("alice", now).await.expect("list").len(), 1);
            assert!(!store.revoke(&a.id).await.expect("revoke"), "already over");

            assert!(store.revoke(&b.id).await.expect("revoke"));
            assert!(!store.is_active(&b.id, now).await.expect("check"));
            assert!(!store.revoke(&b.id).await.expect("revoke"), "idempotent");
            assert!(
                lock(&store.subjects).is_empty(),
                "the subject index is pruned"
            );
            assert_eq!(store.len(), 0);
        })
    }

    #[test]
    fn a_rotation_moves_the_idle_end() {
        block_on(async {
            let (store, _) = store(100);
            let mut s = session("alice", NOW, 3_600_000);
            s.idle_timeout_ms = 1_000;
            store.create(&s).await.expect("create");
            assert!(!store.is_active(&s.id, NOW + 1_500).await.expect("check"));

            let mut t = session("bob", NOW, 3_600_000);
            t.idle_timeout_ms = 1_000;
            store.create(&t).await.expect("create");
            let next = SecretHash::from_bytes([7; 32]);
            let rotated = store
                .rotate(&t.id, &t.refresh_hash, &next, NOW + 900, 0)
                .await
                .expect("rotate");
            assert!(matches!(rotated, Rotation::Rotated(_)));
            assert!(store.is_active(&t.id, NOW + 1_500).await.expect("check"));
            assert!(!store.is_active(&t.id, NOW + 1_900).await.expect("check"));
        })
    }

    #[test]
    fn a_full_store_drops_dead_sessions_first_then_the_one_ending_soonest() {
        block_on(async {
            let (store, clock) = store(3);
            let dead = session("alice", NOW, 1_000);
            let soon = session("bob", NOW, 10_000);
            let late = session("carol", NOW, 60_000);
            for s in [&dead, &soon, &late] {
                store.create(s).await.expect("create");
            }
            clock.advance(Duration::from_secs(2));
            let now = clock.now_millis();
            let fourth = session("dave", now, 60_000);
            store.create(&fourth).await.expect("create");
            assert!(
                !lock(&store.subjects).contains_key("alice"),
                "pruned with it"
            );
            for s in [&soon, &late, &fourth] {
                assert!(store.is_active(&s.id, now).await.expect("check"));
            }

            let fifth = session("erin", now, 60_000);
            store.create(&fifth).await.expect("create");
            assert!(!store.is_active(&soon.id, now).await.expect("check"));
            assert!(store.list("bob", now).await.expect("list").is_empty());
            for s in [&late, &fourth, &fifth] {
                assert!(store.is_active(&s.id, now).await.expect("check"));
            }
            assert_eq!(store.len(), 3);
        })
    }

    #[test]
    fn a_subject_keeps_its_newest_sessions() {
        block_on(async {
            let (store, _) = store(10_000);
            let mut ids = Vec::new();
            for i in 0..MAX_SESSIONS_PER_SUBJECT + 2 {
                let s = session("alice", NOW + i as u64, 60_000);
                store.create(&s).await.expect("create");
                ids.push(s.id);
            }
            let now = NOW + 1_000;
            assert!(!store.is_active(&ids[0], now).await.expect("check"));
            assert!(!store.is_active(&ids[1], now).await.expect("check"));
            assert!(store.is_active(&ids[2], now).await.expect("check"));
            let listed = store.list("alice", now).await.expect("list");
            assert_eq!(listed.len(), MAX_SESSIONS_PER_SUBJECT);
            assert!(listed[0].id.ct_eq(ids.last().expect("one")), "newest first");
        })
    }

    #[test]
    fn sessions_spread_over_the_shards() {
        let (store, _) = store(1_000_000);
        let mut used = [0usize; SHARDS];
        for _ in 0..1_600 {
            let id = SessionId::generate().expect("id");
            let index = shard_index(id.as_str().as_bytes()[0]) & (SHARDS - 1);
            used[index] += 1;
        }
        assert_eq!(store.shards.len(), SHARDS);
        assert!(used.iter().all(|&n| n > 50), "{used:?}");
    }
}
