//! The Redis store's signed-in sessions, and the local liveness view that keeps
//! `AuthenticatedUser` at a memory lookup.
//!
//! Layout (default prefix `qrauth:`):
//!
//! | key | type | holds | expiry |
//! | --- | --- | --- | --- |
//! | `qrauth:si:{sid}` | hash | `sub`, `prov`, `br`, `ip`, `c`, `ls`, `exp`, `idle`, `at`, `cl` (claims JSON), `rh`/`ph` (SHA-256 of the current/previous refresh secret, raw), `rot` | `PEXPIREAT` its end (idle or absolute, whichever is first) |
//! | `qrauth:su:{hex(SHA-256(subject))}` | sorted set | the subject's session ids, scored by creation | its newest session's absolute end |
//! | `qrauth:sa:{hex(SHA-256(token))}` | string | the session id of an upstream id_token | the token's `exp` |
//! | `qrauth:ev:~out:{sid}` | pub/sub channel | published when a session ends early | — |

use std::collections::HashMap;
use std::time::Duration;

use ::redis::Script;
use async_trait::async_trait;
use moka::sync::Cache;

use super::RedisStore;
use super::codec::hex;
use super::waiters::SIGNED_OUT_CHANNEL;
use crate::error::{Error, Result};
use crate::secret::{SecretHash, SessionId, sha256};
use crate::signed_in::{Rotation, SignedInSession};
use crate::store::signed_in::{MAX_SESSIONS_PER_SUBJECT, SignedInStore};

/// How long a replica trusts that a session it read is alive without reading it again, even
/// with the subscription up: a bound on what a lost message could cost.
const TRUST_ALIVE_FOR: Duration = Duration::from_secs(30);
/// How long a replica remembers that a session ended (longer than [`TRUST_ALIVE_FOR`], so that
/// an "alive" entry cached by a read racing the revocation always expires first).
const REMEMBER_ENDED_FOR: Duration = Duration::from_secs(120);
/// Sessions a replica keeps in its liveness view.
const LIVENESS_CAPACITY: u64 = 100_000;

/// Indexes a new session under its subject and drops the subject's oldest sessions beyond
/// the cap from the index, returning their ids (the caller ends them: on a cluster they live
/// in other slots).
///
/// KEYS[1] subject index; ARGV[1] created (score), ARGV[2] sid, ARGV[3] cap, ARGV[4] index
/// expiry (Unix ms), ARGV[5] now.
const INDEX_LUA: &str = r"
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
local evicted = {}
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if extra > 0 then
  evicted = redis.call('ZRANGE', KEYS[1], 0, extra - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, extra - 1)
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or tonumber(ARGV[5]) + ttl < tonumber(ARGV[4]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
end
return evicted
";

/// Rotates the refresh secret, in one step.
///
/// KEYS[1] session key; ARGV[1] presented hash, ARGV[2] next hash, ARGV[3] now, ARGV[4] reuse
/// grace (ms), ARGV[5] signed-out channel. Returns `{0}` unknown or ended, `{1, fields}`
/// rotated, `{2, fields}` concurrent, `{3}` reused (the session is deleted).
const ROTATE_LUA: &str = r"
local f = redis.call('HMGET', KEYS[1], 'rh', 'ph', 'rot', 'exp', 'ls', 'idle')
if not f[1] then return {0} end
local now = tonumber(ARGV[3])
local exp = tonumber(f[4])
local idle = tonumber(f[6])
if now >= math.min(exp, tonumber(f[5]) + idle) then
  redis.call('DEL', KEYS[1])
  return {0}
end
local state
if f[1] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'rh', ARGV[2], 'ph', ARGV[1], 'rot', ARGV[3], 'ls', ARGV[3])
  state = 1
elseif f[2] == ARGV[1] and now - tonumber(f[3]) <= tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'ls', ARGV[3])
  state = 2
else
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[5], 'out')
  return {3}
end
redis.call('PEXPIREAT', KEYS[1], string.format('%d', math.min(exp, now + idle)))
return {state, redis.call('HGETALL', KEYS[1])}
";

/// Deletes a session and announces it. KEYS[1] session key; ARGV[1] signed-out channel.
const REVOKE_LUA: &str = r"
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], 'out')
return n
";

/// The scripts of this module, loaded (and so checked) when the store connects.
pub(super) struct Scripts {
    index: Script,
    /// Creates the session's hash only if absent: the QR sessions' insert script.
    create: Script,
    rotate: Script,
    revoke: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            index: Script::new(INDEX_LUA),
            create: Script::new(super::INSERT_LUA),
            rotate: Script::new(ROTATE_LUA),
            revoke: Script::new(REVOKE_LUA),
        }
    }

    pub(super) fn all(&self) -> [&Script; 3] {
        [&self.index, &self.rotate, &self.revoke]
    }
}

/// A replica's view of which signed-in sessions are alive, kept true by the `~out:` messages
/// of the store's subscription. It only ever answers "alive" from memory while the
/// subscription is up; otherwise the store is read (and a store that cannot be read is an
/// error, never "alive").
pub(super) struct Liveness {
    /// sid → alive until (Unix ms).
    alive: Cache<String, u64>,
    /// sids known to have ended.
    ended: Cache<String, ()>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            alive: Cache::builder()
                .max_capacity(LIVENESS_CAPACITY)
                .time_to_live(TRUST_ALIVE_FOR)
                .build(),
            ended: Cache::builder()
                .max_capacity(LIVENESS_CAPACITY)
                .time_to_live(REMEMBER_ENDED_FOR)
                .build(),
        }
    }
}

impl Liveness {
    pub(super) fn signed_out(&self, sid: &str) {
        self.ended.insert(sid.to_owned(), ());
        self.alive.invalidate(sid);
    }

    pub(super) fn forget_alive(&self) {
        self.alive.invalidate_all();
    }

    #[cfg(test)]
    pub(super) fn is_ended(&self, sid: &str) -> bool {
        self.ended.contains_key(sid)
    }
}

mod field {
    pub(super) const SUBJECT: &str = "sub";
    pub(super) const PROVIDER: &str = "prov";
    pub(super) const BROWSER: &str = "br";
    pub(super) const IP: &str = "ip";
    pub(super) const CREATED: &str = "c";
    pub(super) const LAST_SEEN: &str = "ls";
    pub(super) const EXPIRES: &str = "exp";
    pub(super) const IDLE: &str = "idle";
    pub(super) const AUTH_TIME: &str = "at";
    pub(super) const CLAIMS: &str = "cl";
    pub(super) const REFRESH: &str = "rh";
    pub(super) const PREVIOUS: &str = "ph";
    pub(super) const ROTATED: &str = "rot";
}

fn encode(session: &SignedInSession) -> Result<Vec<(&'static str, Vec<u8>)>> {
    let claims = serde_json::to_vec(&session.claims)
        .map_err(|e| Error::Internal(format!("claims do not encode: {e}")))?;
    let mut fields = vec![
        (field::SUBJECT, session.subject.clone().into_bytes()),
        (field::PROVIDER, session.provider.clone().into_bytes()),
        (field::BROWSER, session.browser.clone().into_bytes()),
        (
            field::CREATED,
            session.created_at_ms.to_string().into_bytes(),
        ),
        (
            field::LAST_SEEN,
            session.last_seen_at_ms.to_string().into_bytes(),
        ),
        (
            field::EXPIRES,
            session.expire_at_ms.to_string().into_bytes(),
        ),
        (
            field::IDLE,
            session.idle_timeout_ms.to_string().into_bytes(),
        ),
        (field::AUTH_TIME, session.auth_time.to_string().into_bytes()),
        (field::CLAIMS, claims),
        (field::REFRESH, session.refresh_hash.as_bytes().to_vec()),
        (
            field::ROTATED,
            session.rotated_at_ms.to_string().into_bytes(),
        ),
    ];
    if let Some(ip) = session.ip {
        fields.push((field::IP, ip.to_string().into_bytes()));
    }
    if let Some(previous) = &session.previous_refresh_hash {
        fields.push((field::PREVIOUS, previous.as_bytes().to_vec()));
    }
    Ok(fields)
}

fn decode(id: &SessionId, flat: Vec<Vec<u8>>) -> Result<Option<SignedInSession>> {
    if flat.is_empty() {
        return Ok(None);
    }
    let corrupt = || Error::Internal("corrupt signed-in session in Redis".into());
    let mut fields: HashMap<String, Vec<u8>> = HashMap::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        fields.insert(String::from_utf8(name).map_err(|_| corrupt())?, value);
    }
    let text = |name: &str| -> Result<String> {
        fields
            .get(name)
            .map(|v| String::from_utf8(v.clone()).map_err(|_| corrupt()))
            .unwrap_or_else(|| Ok(String::new()))
    };
    let number = |name: &str| -> Result<u64> { text(name)?.parse().map_err(|_| corrupt()) };
    let hash = |name: &str| -> Option<SecretHash> {
        fields
            .get(name)
            .and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok())
            .map(SecretHash::from_bytes)
    };
    let claims = match fields.get(field::CLAIMS) {
        Some(raw) => serde_json::from_slice(raw).map_err(|_| corrupt())?,
        None => serde_json::Map::new(),
    };
    let ip = text(field::IP)?;
    Ok(Some(SignedInSession {
        id: id.clone(),
        subject: text(field::SUBJECT)?,
        provider: text(field::PROVIDER)?,
        browser: text(field::BROWSER)?,
        ip: if ip.is_empty() {
            None
        } else {
            Some(ip.parse().map_err(|_| corrupt())?)
        },
        created_at_ms: number(field::CREATED)?,
        last_seen_at_ms: number(field::LAST_SEEN)?,
        expire_at_ms: number(field::EXPIRES)?,
        idle_timeout_ms: number(field::IDLE)?,
        auth_time: number(field::AUTH_TIME)?,
        claims,
        refresh_hash: hash(field::REFRESH).ok_or_else(corrupt)?,
        previous_refresh_hash: hash(field::PREVIOUS),
        rotated_at_ms: number(field::ROTATED)?,
    }))
}

impl RedisStore {
    fn signed_in_key(&self, id: &str) -> String {
        // `{id}` is the hash tag: the session's hash and its signed-out channel share a slot.
        format!("{}si:{{{id}}}", self.inner.prefix)
    }

    fn subject_key(&self, subject: &str) -> String {
        format!(
            "{}su:{}",
            self.inner.prefix,
            hex(&sha256(subject.as_bytes()))
        )
    }

    fn signed_out_channel(&self, id: &str) -> String {
        format!("{}ev:{SIGNED_OUT_CHANNEL}{{{id}}}", self.inner.prefix)
    }

    /// The Redis key of a signed-in session's hash, for tests that inspect Redis.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn key_of_signed_in_session(&self, id: &SessionId) -> String {
        self.signed_in_key(id.as_str())
    }

    async fn read_signed_in(&self, id: &SessionId) -> Result<Option<SignedInSession>> {
        let mut conn = self.connection();
        let flat: Vec<Vec<u8>> = self
            .call(
                "HGETALL signed-in",
                ::redis::cmd("HGETALL")
                    .arg(self.signed_in_key(id.as_str()))
                    .query_async(&mut conn),
            )
            .await?;
        decode(id, flat)
    }
}

/// The [`SignedInStore`] face of a [`RedisStore`] (its own type: both traits have a `load`).
pub(super) struct RedisSignedIn(pub(super) RedisStore);

impl RedisSignedIn {
    /// Deletes a session and announces its end; whether it existed.
    async fn end(&self, id: &str) -> Result<bool> {
        let mut invocation = self.0.inner.signed_in.revoke.key(self.0.signed_in_key(id));
        invocation.arg(self.0.signed_out_channel(id));
        let mut conn = self.0.connection();
        let deleted: i64 = self
            .0
            .call("revoke signed-in", invocation.invoke_async(&mut conn))
            .await?;
        // Also in force here at once, whatever the subscription does.
        self.0.inner.fanout.liveness.signed_out(id);
        Ok(deleted == 1)
    }
}

#[async_trait]
impl SignedInStore for RedisSignedIn {
    async fn create(&self, session: &SignedInSession) -> Result<()> {
        // Two slots (the subject's index, the session), so two scripts. The index comes
        // first: a crash between them leaves an index entry without a session (which `list`
        // drops), never a session that "sign out everywhere" cannot find.
        let index = self.0.subject_key(&session.subject);
        let mut invocation = self.0.inner.signed_in.index.key(&index);
        invocation
            .arg(session.created_at_ms)
            .arg(session.id.as_str())
            .arg(MAX_SESSIONS_PER_SUBJECT)
            .arg(session.expire_at_ms)
            .arg(self.0.inner.clock.now_millis());
        let mut conn = self.0.connection();
        let evicted: Vec<String> = self
            .0
            .call("index signed-in", invocation.invoke_async(&mut conn))
            .await?;
        let mut invocation = self
            .0
            .inner
            .signed_in
            .create
            .key(self.0.signed_in_key(session.id.as_str()));
        invocation.arg(session.ends_at_ms().max(1));
        for (name, value) in encode(session)? {
            invocation.arg(name).arg(value);
        }
        let created: i64 = self
            .0
            .call("create signed-in", invocation.invoke_async(&mut conn))
            .await?;
        // The subject's oldest sessions beyond the cap end now.
        for old in evicted.iter().filter(|old| *old != session.id.as_str()) {
            self.end(old).await?;
        }
        if created == 1 {
            Ok(())
        } else {
            let _: i64 = self
                .0
                .call(
                    "ZREM subject",
                    ::redis::cmd("ZREM")
                        .arg(&index)
                        .arg(session.id.as_str())
                        .query_async(&mut conn),
                )
                .await?;
            Err(Error::Conflict("session id collision".into()))
        }
    }

    async fn load(&self, id: &SessionId, now_ms: u64) -> Result<Option<SignedInSession>> {
        Ok(self
            .0
            .read_signed_in(id)
            .await?
            .filter(|s| s.is_alive(now_ms)))
    }

    async fn is_active(&self, id: &SessionId, now_ms: u64) -> Result<bool> {
        let fanout = &self.0.inner.fanout;
        let liveness = &fanout.liveness;
        if liveness.ended.contains_key(id.as_str()) {
            return Ok(false);
        }
        let subscribed = fanout.subscribed();
        if subscribed
            && liveness
                .alive
                .get(id.as_str())
                .is_some_and(|until| now_ms < until)
        {
            return Ok(true);
        }
        let epoch = fanout.epoch();
        let mut conn = self.0.connection();
        let (expires, last_seen, idle): (Option<u64>, Option<u64>, Option<u64>) = self
            .0
            .call(
                "HMGET signed-in",
                ::redis::cmd("HMGET")
                    .arg(self.0.signed_in_key(id.as_str()))
                    .arg(field::EXPIRES)
                    .arg(field::LAST_SEEN)
                    .arg(field::IDLE)
                    .query_async(&mut conn),
            )
            .await?;
        let (Some(expires), Some(last_seen), Some(idle)) = (expires, last_seen, idle) else {
            liveness.signed_out(id.as_str());
            return Ok(false);
        };
        let ends = expires.min(last_seen.saturating_add(idle));
        if now_ms >= ends {
            return Ok(false);
        }
        // Cache only what no revocation can have overtaken: read inside one subscription epoch.
        if subscribed && fanout.subscribed() && fanout.epoch() == epoch {
            liveness.alive.insert(id.as_str().to_owned(), ends);
            if liveness.ended.contains_key(id.as_str()) {
                // The revocation arrived while we were reading.
                liveness.alive.invalidate(id.as_str());
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn rotate(
        &self,
        id: &SessionId,
        presented: &SecretHash,
        next: &SecretHash,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<Rotation> {
        let mut invocation = self
            .0
            .inner
            .signed_in
            .rotate
            .key(self.0.signed_in_key(id.as_str()));
        invocation
            .arg(presented.as_bytes().as_slice())
            .arg(next.as_bytes().as_slice())
            .arg(now_ms)
            .arg(grace_ms)
            .arg(self.0.signed_out_channel(id.as_str()));
        let mut conn = self.0.connection();
        let reply: Vec<::redis::Value> = self
            .0
            .call("rotate signed-in", invocation.invoke_async(&mut conn))
            .await?;
        let corrupt = || Error::Internal("unexpected Redis reply to rotate".into());
        let mut reply = reply.into_iter();
        let state: i64 = reply
            .next()
            .and_then(|v| ::redis::from_redis_value(v).ok())
            .ok_or_else(corrupt)?;
        let flat: Option<Vec<Vec<u8>>> = match reply.next() {
            Some(v) => Some(::redis::from_redis_value(v).map_err(|_| corrupt())?),
            None => None,
        };
        let session = || -> Result<SignedInSession> {
            decode(id, flat.clone().unwrap_or_default())?
                .ok_or_else(|| Error::Internal("rotated session vanished".into()))
        };
        Ok(match state {
            1 => Rotation::Rotated(session()?),
            2 => Rotation::Concurrent(session()?),
            3 => {
                self.0.inner.fanout.liveness.signed_out(id.as_str());
                Rotation::Reused
            }
            _ => Rotation::Unknown,
        })
    }

    async fn revoke(&self, id: &SessionId) -> Result<bool> {
        self.end(id.as_str()).await
    }

    async fn list(&self, subject: &str, now_ms: u64) -> Result<Vec<SignedInSession>> {
        let index = self.0.subject_key(subject);
        let mut conn = self.0.connection();
        let ids: Vec<String> = self
            .0
            .call(
                "ZREVRANGE subject",
                ::redis::cmd("ZREVRANGE")
                    .arg(&index)
                    .arg(0)
                    .arg(MAX_SESSIONS_PER_SUBJECT - 1)
                    .query_async(&mut conn),
            )
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One read per session, all in flight at once: on a cluster they live in different
        // slots, so one pipeline cannot carry them.
        let reads = ids.iter().map(|id| {
            let mut conn = self.0.connection();
            let key = self.0.signed_in_key(id);
            async move {
                self.0
                    .call(
                        "HGETALL signed-in list",
                        ::redis::cmd("HGETALL")
                            .arg(key)
                            .query_async::<Vec<Vec<u8>>>(&mut conn),
                    )
                    .await
            }
        });
        let all = futures_util::future::try_join_all(reads).await?;
        let mut sessions = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, flat) in ids.iter().zip(all) {
            let parsed = SessionId::parse(id).ok();
            match parsed.map(|sid| decode(&sid, flat)).transpose()?.flatten() {
                Some(session) if session.is_alive(now_ms) => sessions.push(session),
                _ => gone.push(id.clone()),
            }
        }
        if !gone.is_empty() {
            let _: i64 = self
                .0
                .call(
                    "ZREM subject",
                    ::redis::cmd("ZREM")
                        .arg(&index)
                        .arg(&gone)
                        .query_async(&mut conn),
                )
                .await?;
        }
        Ok(sessions)
    }

    async fn put_alias(&self, token: &SecretHash, id: &SessionId, expire_at_ms: u64) -> Result<()> {
        let mut conn = self.0.connection();
        let _: Option<String> = self
            .0
            .call(
                "SET alias",
                ::redis::cmd("SET")
                    .arg(format!("{}sa:{}", self.0.inner.prefix, token.to_hex()))
                    .arg(id.as_str())
                    .arg("PXAT")
                    .arg(expire_at_ms.max(1))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn resolve_alias(&self, token: &SecretHash) -> Result<Option<SessionId>> {
        let mut conn = self.0.connection();
        let id: Option<String> = self
            .0
            .call(
                "GET alias",
                ::redis::cmd("GET")
                    .arg(format!("{}sa:{}", self.0.inner.prefix, token.to_hex()))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(id.and_then(|id| SessionId::parse(&id).ok()))
    }
}
