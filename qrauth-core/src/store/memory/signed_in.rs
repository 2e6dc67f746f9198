//! The memory store's signed-in sessions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant as StdInstant};

use async_trait::async_trait;
use moka::Expiry;
use moka::notification::RemovalCause;
use moka::sync::Cache;

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::secret::{SecretHash, SessionId};
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

    fn is_alive(&self, now_ms: u64) -> bool {
        now_ms
            < self
                .expire_at_ms
                .min(self.last_seen_at_ms.saturating_add(self.idle_timeout_ms))
    }
}

/// Signed-in sessions in one process: bounded, dropped at their absolute expiry.
pub(super) struct MemorySignedIn {
    /// By `sid`: random 128-bit values, so a fast hash serves (this lookup is on every
    /// authenticated request); only qrauth inserts.
    sessions: Cache<String, Arc<Mutex<Compact>>, foldhash::quality::RandomState>,
    /// Subject → its session ids, oldest first. Pruned when a session leaves the cache.
    subjects: Arc<Mutex<HashMap<String, Vec<String>>>>,
    aliases: Cache<[u8; 32], Arc<Alias>>,
}

struct Alias {
    id: SessionId,
    expire_at_ms: u64,
}

struct UntilEnd {
    clock: SharedClock,
}

impl UntilEnd {
    fn until(&self, at_ms: u64) -> Option<Duration> {
        Some(Duration::from_millis(
            at_ms.saturating_sub(self.clock.now_millis()),
        ))
    }
}

impl Expiry<String, Arc<Mutex<Compact>>> for UntilEnd {
    fn expire_after_create(
        &self,
        _: &String,
        value: &Arc<Mutex<Compact>>,
        _: StdInstant,
    ) -> Option<Duration> {
        self.until(lock(value).expire_at_ms)
    }
}

impl Expiry<[u8; 32], Arc<Alias>> for UntilEnd {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &Arc<Alias>,
        _: StdInstant,
    ) -> Option<Duration> {
        self.until(value.expire_at_ms)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single assignment: a panic cannot leave them torn.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemorySignedIn {
    pub(super) fn new(max_sessions: u64, clock: SharedClock) -> Self {
        let subjects: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let index = subjects.clone();
        let sessions = Cache::builder()
            .max_capacity(max_sessions)
            .expire_after(UntilEnd {
                clock: clock.clone(),
            })
            .eviction_listener(
                move |id: Arc<String>, session: Arc<Mutex<Compact>>, cause| {
                    if cause == RemovalCause::Replaced {
                        return;
                    }
                    let subject = lock(&session).subject.to_string();
                    let mut subjects = lock(&index);
                    if let Some(ids) = subjects.get_mut(&subject) {
                        ids.retain(|i| i != id.as_str());
                        if ids.is_empty() {
                            subjects.remove(&subject);
                        }
                    }
                },
            )
            .build_with_hasher(foldhash::quality::RandomState::default());
        let aliases = Cache::builder()
            .max_capacity(max_sessions)
            .expire_after(UntilEnd { clock })
            .build();
        Self {
            sessions,
            subjects,
            aliases,
        }
    }

    fn live(&self, id: &SessionId, now_ms: u64) -> Option<Arc<Mutex<Compact>>> {
        let entry = self.sessions.get(id.as_str())?;
        if lock(&entry).is_alive(now_ms) {
            Some(entry)
        } else {
            self.sessions.invalidate(id.as_str());
            None
        }
    }

    /// Signed-in sessions held (after dropping the expired ones): a gauge for memory checks.
    pub(super) fn len(&self) -> u64 {
        self.sessions.run_pending_tasks();
        self.sessions.entry_count()
    }
}

#[async_trait]
impl SignedInStore for MemorySignedIn {
    async fn create(&self, session: &SignedInSession) -> Result<()> {
        let id = session.id.as_str().to_owned();
        let oldest = {
            let mut subjects = lock(&self.subjects);
            let ids = subjects.entry(session.subject.clone()).or_default();
            ids.push(id.clone());
            if ids.len() > MAX_SESSIONS_PER_SUBJECT {
                Some(ids.remove(0))
            } else {
                None
            }
        };
        if let Some(oldest) = oldest {
            self.sessions.invalidate(&oldest);
        }
        let entry = self
            .sessions
            .entry(id)
            .or_insert(Arc::new(Mutex::new(Compact::new(session)?)));
        if entry.is_fresh() {
            Ok(())
        } else {
            Err(Error::Conflict("session id collision".into()))
        }
    }

    async fn load(&self, id: &SessionId, now_ms: u64) -> Result<Option<SignedInSession>> {
        Ok(self.live(id, now_ms).map(|e| lock(&e).expand(id)))
    }

    async fn is_active(&self, id: &SessionId, now_ms: u64) -> Result<bool> {
        Ok(self.live(id, now_ms).is_some())
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
        let mut session = lock(&entry);
        if session.refresh_hash.ct_eq(presented) {
            session.previous_refresh_hash = Some(session.refresh_hash);
            session.refresh_hash = *next;
            session.rotated_at_ms = now_ms;
            session.last_seen_at_ms = now_ms;
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
            return Ok(Rotation::Concurrent(session.expand(id)));
        }
        drop(session);
        self.sessions.invalidate(id.as_str());
        Ok(Rotation::Reused)
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        Ok(self.sessions.remove(id.as_str()).is_some())
    }

    async fn list(&self, subject: &str, now_ms: u64) -> Result<Vec<SignedInSession>> {
        let ids = lock(&self.subjects)
            .get(subject)
            .cloned()
            .unwrap_or_default();
        let mut sessions: Vec<SignedInSession> = ids
            .iter()
            .filter_map(|id| SessionId::parse(id).ok())
            .filter_map(|id| self.live(&id, now_ms).map(|e| lock(&e).expand(&id)))
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
