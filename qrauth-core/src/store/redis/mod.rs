//! [`RedisStore`]: sessions shared by every replica through Redis (feature `redis`).

mod builder;
mod codec;
mod connection;
mod limiter;
mod sharded;
mod signed_in;
mod waiters;

pub use self::builder::RedisStoreBuilder;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{ErrorKind, RedisError, RedisResult, Script};
use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::connection::Connection;
pub use self::limiter::RedisRateLimiter;
use self::sharded::ShardedChannels;
use self::waiters::Fanout;
use super::{SessionStore, SignedInStore, keeps_waiting};
use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::limits::RateLimiter;
use crate::record::SessionRecord;
use crate::secret::{QrCodeId, SecretHash};

/// Default bound on every Redis call.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default key prefix.
pub(super) const DEFAULT_PREFIX: &str = "qrauth:";
/// While the subscriber is down, waiters re-read this often.
const FALLBACK_POLL: Duration = Duration::from_millis(500);

/// Creates the session hash only if the key does not exist.
///
/// KEYS[1] session key; ARGV[1] `PEXPIREAT` (Unix ms); ARGV[2..] field, value pairs.
pub(super) const INSERT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
";

/// Takes a ticket handle and reads its session, in one step (one Redis only: on a cluster the
/// ticket and the session live in different hash slots, see [`RedisStore`]'s layout).
///
/// KEYS[1] ticket key; ARGV[1] session key prefix. Returns `{id, {field, value, …}}`, or nil
/// when the handle is unknown (never issued, already taken, or expired).
pub(super) const TAKE_TICKET_LUA: &str = r"
local id = redis.call('GETDEL', KEYS[1])
if not id then return false end
return {id, redis.call('HGETALL', ARGV[1] .. '{' .. id .. '}')}
";

/// Compare-and-set on `version`, write, publish: one atomic step.
///
/// KEYS[1] session key; ARGV[1] expected version; ARGV[2] new version; ARGV[3] `PUBLISH`, or
/// `SPUBLISH` on a cluster with sharded pub/sub (the channel is in the session's slot);
/// ARGV[4] channel; ARGV[5] n; ARGV[6 .. 5+2n] field, value pairs to write; ARGV[6+2n ..]
/// fields to remove. `HSET`/`HDEL` keep the key's expiry. Returns 1 if applied, 0 if the
/// version differs or the session is gone.
pub(super) const CAS_LUA: &str = r"
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[5])
redis.call('HSET', KEYS[1], unpack(ARGV, 6, 5 + 2 * n))
if #ARGV > 5 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 6 + 2 * n)) end
if ARGV[2] ~= ARGV[1] then
  if ARGV[3] == 'SPUBLISH' then
    redis.call('SPUBLISH', ARGV[4], ARGV[2])
  else
    redis.call('PUBLISH', ARGV[4], ARGV[2])
  end
end
return 1
";

/// Takes or renews a lease: KEYS[1] lease key; ARGV[1] holder; ARGV[2] ttl (ms). Returns 1 if
/// the holder holds it now.
pub(super) const LEASE_LUA: &str = r"
local current = redis.call('GET', KEYS[1])
if current == false or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Releases a lease if the holder holds it: KEYS[1] lease key; ARGV[1] holder.
pub(super) const RELEASE_LEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// The session store for several replicas: state in Redis, transitions as Lua scripts,
/// single-use tickets with `GETDEL`, wake-ups over pub/sub.
///
/// Cheap to clone; clones share one multiplexed connection (which reconnects by itself) and
/// one subscriber connection. Needs Redis ≥ 6.2 (or a compatible Valkey or Dragonfly), checked
/// by [`connect`](RedisStore::connect). Must be created inside a Tokio runtime.
///
/// # Layout
///
/// With the default prefix `qrauth:`:
///
/// | key | type | holds | expiry |
/// | --- | --- | --- | --- |
/// | `qrauth:s:{<id>}` | hash | one session: `state`, `version`, `created`, `expires`, `bind` (SHA-256 of the binding secret, hex), `ip`, `device`, `nonce`, `scanner` (JSON), `confirm` (SHA-256 of the confirm token, hex), `confirm_exp`, `ticket_nonce`, `ticket_exp`, `failed`, `match`, `data` | `PEXPIREAT` the retention time given to `insert` |
/// | `qrauth:t:<hex(SHA-256(ticket))>` | string | the session id of a ticket | `PXAT` the ticket's expiry |
/// | `qrauth:ev:{<id>}` | pub/sub channel (a shard channel on a cluster of Redis ≥ 7) | the new version after each transition | — |
/// | `qrauth:si:{<sid>}` | hash | one signed-in session: `sub`, `prov`, `br`, `ip`, `c`, `ls`, `exp`, `idle`, `at`, `cl` (claims JSON), `rh`/`ph` (SHA-256 of the current and previous refresh secret), `rot` | `PEXPIREAT` its idle or absolute end, whichever comes first |
/// | `qrauth:su:<hex(SHA-256(subject))>` | sorted set | the subject's signed-in session ids by creation | the newest session's absolute end |
/// | `qrauth:sa:<hex(SHA-256(id_token))>` | string | the signed-in session of an upstream IdP's id_token | `PXAT` the token's `exp` |
/// | `qrauth:l:<name>` | string | the holder of a lease (one session's upstream status loop: `up:<id>`) | `PX` the lease's time to live |
/// | `qrauth:ev:~out:{<sid>}` | pub/sub channel | a signed-in session ended early (sign-out, revocation, reuse) | — |
/// | `qrauth:rl:<hex(SHA-256(key))>` | string | an abuse-limit counter ([`RedisRateLimiter`]) | its window |
///
/// The braces are literal: `{<id>}` is a Redis Cluster hash tag, so a session's hash and its
/// channel (and a signed-in session's hash and its channel) hash to one slot, and every script
/// touches the keys of one slot only. Keys of different sessions spread over every primary.
/// A ticket names no session until it is taken, so its key hashes to a slot of its own; a
/// subject's index lives in the slot of the subject's hash.
///
/// No secret is stored: only SHA-256 hashes of the binding secret, the confirm token and the
/// ticket (the ticket itself is never known to the store; see [`Ticket`](crate::Ticket)).
///
/// # Atomicity
///
/// `insert` and `compare_and_swap` are one Lua script each: `insert` creates the hash only if
/// the key is absent; `compare_and_swap` checks the stored `version`, writes every field
/// (keeping the key's expiry) and publishes the new version, in one step, so two replicas can
/// never both win a transition. Tickets are created with `SET NX PXAT` and taken with `GETDEL`
/// (Redis ≥ 6.2, checked when connecting), so exactly one caller gets a ticket.
///
/// On a cluster, `take_ticket` is `GETDEL` on the ticket's key and then a read of the session
/// (two slots, two commands): the ticket stays single-use, and the exchange's compare-and-set
/// on the record's version still lets one caller consume the session. A signed-in session is
/// created with two scripts, the subject's index first (a crash in between leaves an index
/// entry that `list` drops, never a session that "sign out everywhere" misses), and the
/// subject's sessions beyond [`MAX_SESSIONS_PER_SUBJECT`](crate::store::MAX_SESSIONS_PER_SUBJECT)
/// are ended one by one. The same code runs on one Redis.
///
/// # Waiting
///
/// Each store keeps one pub/sub connection (`PSUBSCRIBE {prefix}ev:*`; on a cluster, to one
/// node at a time, moving on to the next seed node when it fails: plain `PUBLISH`es reach
/// every node of a cluster) and a local map of
/// waiters. A waiter registers, reads the hash, waits for a message (or its deadline, or the
/// session's own deadline), and re-reads: the message is only a hint. When the subscriber's
/// connection drops, every waiter is woken and polls until it is back; when it is back,
/// every waiter is woken again to re-read what it may have missed. A new subscription counts
/// as up only once a probe published on `{prefix}ev:~probe:{random}` has come back through it.
/// Keyspace notifications are not used.
///
/// On a cluster of Redis ≥ 7 (unless [`sharded_pubsub(false)`](RedisStoreBuilder::sharded_pubsub)),
/// session changes go over sharded pub/sub instead: the transition's script `SPUBLISH`es on
/// `{prefix}ev:{id}` (the session's slot), and a second, RESP3 connection `SSUBSCRIBE`s to the
/// channel of each session with a local waiter before the waiter reads, and `SUNSUBSCRIBE`s
/// about a second after its last waiter left. When the server ends a shard subscription (its
/// slot moved) or a node connection closes, the waiters concerned subscribe again (following
/// the slot to its new primary) and re-read. Sign-outs (`{prefix}ev:~out:{sid}`) stay on plain
/// pub/sub, which every replica hears.
///
/// # Server requirements
///
/// One Redis ≥ 6.2 primary (or Valkey, or Dragonfly), or a Redis Cluster / Valkey cluster of
/// Redis ≥ 6.2 nodes ([`RedisStore::cluster`]; also managed cluster modes such as ElastiCache or
/// MemoryStore). A single-node store refuses a cluster node at connect. With ACLs, the user
/// needs `EVAL`/`EVALSHA`/`SCRIPT LOAD`, `HGETALL`, `HMGET`, `SET`, `GET`, `DEL`, `GETDEL`, `ZADD`,
/// `ZREVRANGE`, `ZREM`, `PUBLISH`, `PSUBSCRIBE`, `PING` and `INFO` (and `CLUSTER SLOTS`,
/// `SPUBLISH`, `SSUBSCRIBE` and `SUNSUBSCRIBE` on a cluster) on keys and channels `{prefix}*`.
///
/// # On a cluster
///
/// The client routes each command to the primary of its key's slot, follows `MOVED` and `ASK`
/// (slot migrations), and re-reads the slot map when a node fails. While a primary is down
/// and before its replica takes over (`cluster-node-timeout` plus the election), calls on its
/// slots fail with [`Error::StoreUnavailable`] and every other slot works. Replication is
/// asynchronous, as with any Redis primary and its replicas: a write acknowledged within the
/// replication lag (well under a millisecond on a healthy link) before its primary crashes is
/// lost with it. For a confirm, the phone confirms again; for an exchange, the same bound
/// browser could exchange its ticket once more. qrauth does not call `WAIT`.
///
/// # Failures
///
/// Every command is bounded by the command timeout (2 s by default). A timeout or a connection
/// failure is [`Error::StoreUnavailable`] (HTTP 503 `store_unavailable` with `Retry-After`);
/// the store never falls back to memory. The connection reconnects by itself, so calls work
/// again as soon as Redis is back.
///
/// # Example
///
/// ```no_run
/// # async fn demo(provider: std::sync::Arc<dyn qrauth_core::QrAuthProvider>) -> qrauth_core::Result<()> {
/// use qrauth_core::QrAuthService;
/// use qrauth_core::store::RedisStore;
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// // Sessions, tickets and the abuse-limit counters all live in this Redis.
/// let service = QrAuthService::builder(provider).store(store).build()?;
/// # let _ = service;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

pub(super) struct Inner {
    connection: Connection,
    prefix: String,
    timeout: Duration,
    clock: SharedClock,
    insert: Script,
    cas: Script,
    take_ticket: Script,
    lease: Script,
    release_lease: Script,
    signed_in: signed_in::Scripts,
    fanout: Arc<Fanout>,
    subscriber: JoinHandle<()>,
    /// On a cluster with sharded pub/sub: the per-session subscriptions and their reaper.
    sharded: Option<(Arc<ShardedChannels>, JoinHandle<()>)>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.subscriber.abort();
        if let Some((_, reaper)) = &self.sharded {
            reaper.abort();
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL is left out: it may carry a password.
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("subscribed", &self.inner.fanout.subscribed())
            .field("live_waiters", &self.inner.fanout.live())
            .field(
                "shard_channels",
                &self.inner.sharded.as_ref().map(|(c, _)| c.len()),
            )
            .finish_non_exhaustive()
    }
}

/// An error reply from a reachable server (e.g. `ERR unknown command`), as opposed to a
/// network failure.
pub(super) fn is_server_refusal(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

pub(super) fn timed_out(op: &str, timeout: Duration) -> Error {
    Error::StoreUnavailable(format!(
        "Redis {op} timed out after {} ms",
        timeout.as_millis()
    ))
}

pub(super) fn store_error(op: &str, e: &RedisError) -> Error {
    match e.kind() {
        ErrorKind::UnexpectedReturnType => {
            Error::Internal(format!("unexpected Redis reply to {op}: {e}"))
        }
        _ => Error::StoreUnavailable(format!("Redis {op} failed: {e}")),
    }
}

/// Runs one Redis call with the timeout, mapping every failure to a qrauth error.
pub(super) async fn bounded<T>(
    timeout: Duration,
    op: &'static str,
    call: impl Future<Output = RedisResult<T>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(store_error(op, &e)),
        Err(_) => Err(timed_out(op, timeout)),
    }
}

impl RedisStore {
    /// Connects with the default settings (prefix `qrauth:`, 2 s command timeout); see
    /// [`RedisStoreBuilder::connect`] for what is checked.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1:6379/").await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Self> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a store for the Redis at `url` (`redis://[user:password@]host[:port][/db]`).
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::builder("redis://127.0.0.1/")
    ///     .key_prefix("qr:")
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::new(url.into())
    }

    /// Connects to a Redis Cluster (or Valkey cluster) through any of its nodes, with the
    /// default settings; see [`RedisStore::cluster`].
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect_cluster([
    ///     "redis://10.0.0.1:6379/",
    ///     "redis://10.0.0.2:6379/",
    ///     "redis://10.0.0.3:6379/",
    /// ])
    /// .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub async fn connect_cluster<I, S>(nodes: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::cluster(nodes).connect().await
    }

    /// Starts configuring a store for a Redis Cluster: `nodes` are seed URLs
    /// (`redis://[user:password@]host:port`), of which one reachable node is enough; the
    /// client learns the slot map from it, routes every command to the primary of its key's
    /// slot, follows `MOVED`/`ASK` redirects and re-reads the map after a failover.
    ///
    /// Every key of one QR session (its hash and its channel) carries the session id as hash
    /// tag, so each transition stays one Lua script on one primary, and sessions spread over
    /// all primaries. The same builder settings apply as for one Redis.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::cluster(["redis://10.0.0.1:6379/", "redis://10.0.0.2:6379/"])
    ///     .key_prefix("qr:")
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn cluster<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::new_cluster(nodes.into_iter().map(Into::into).collect())
    }

    /// Whether this store talks to a Redis Cluster.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert!(!store.is_cluster());
    /// # Ok(()) }
    /// ```
    pub fn is_cluster(&self) -> bool {
        self.inner.connection.is_cluster()
    }

    /// Whether session wake-ups use sharded pub/sub (a cluster of Redis ≥ 7 with
    /// [`sharded_pubsub`](RedisStoreBuilder::sharded_pubsub) on, the default there).
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert!(!store.uses_sharded_pubsub());
    /// # Ok(()) }
    /// ```
    pub fn uses_sharded_pubsub(&self) -> bool {
        self.inner.sharded.is_some()
    }

    /// The prefix of every key and channel this store uses.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(store.key_prefix(), "qrauth:");
    /// # Ok(()) }
    /// ```
    pub fn key_prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The bound on every Redis call.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(store.command_timeout(), std::time::Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn command_timeout(&self) -> std::time::Duration {
        self.inner.timeout
    }

    /// The Redis key of a session's hash (`{prefix}s:{id}`), for tests that inspect Redis.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn key_of_session(&self, id: &QrCodeId) -> String {
        self.session_key(id)
    }

    pub(crate) fn session_key(&self, id: &QrCodeId) -> String {
        // `{id}` is the hash tag: a session's hash and its channel share one cluster slot.
        format!("{}s:{{{}}}", self.inner.prefix, id.as_str())
    }

    /// Whether the subscriber connection is up (a readiness signal: while it is down, waiters
    /// fall back to polling the store every 500 ms).
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert!(store.subscriber_connected());
    /// # Ok(()) }
    /// ```
    pub fn subscriber_connected(&self) -> bool {
        self.inner.fanout.subscribed()
    }

    /// Sessions that have at least one local waiter: the size of the fan-out map (a gauge for
    /// leak checks).
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::connect("redis://127.0.0.1/").await?;
    /// assert_eq!(store.watched_sessions(), 0);
    /// # Ok(()) }
    /// ```
    pub fn watched_sessions(&self) -> usize {
        self.inner.fanout.watched()
    }

    fn connection(&self) -> Connection {
        self.inner.connection.clone()
    }

    fn ticket_key(&self, ticket: &SecretHash) -> String {
        format!("{}t:{}", self.inner.prefix, ticket.to_hex())
    }

    fn lease_key(&self, name: &str) -> String {
        format!("{}l:{name}", self.inner.prefix)
    }

    fn channel(&self, id: &QrCodeId) -> String {
        format!("{}ev:{{{}}}", self.inner.prefix, id.as_str())
    }

    async fn call<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        bounded(self.inner.timeout, op, call).await
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn insert(&self, record: &SessionRecord, retain_until_ms: u64) -> Result<()> {
        let encoded = codec::encode(record)?;
        let mut invocation = self.inner.insert.key(self.session_key(&record.id));
        // PEXPIREAT 0 would be refused; 1 (long past) drops the key at once, as asked.
        invocation.arg(retain_until_ms.max(1));
        for (name, value) in &encoded.set {
            invocation.arg(*name).arg(value.as_slice());
        }
        let mut conn = self.connection();
        let created: i64 = self
            .call("insert", invocation.invoke_async(&mut conn))
            .await?;
        if created == 1 {
            Ok(())
        } else {
            Err(Error::Conflict("QR code id collision".into()))
        }
    }

    async fn load(&self, id: &QrCodeId) -> Result<Option<SessionRecord>> {
        let mut conn = self.connection();
        let fields: Vec<(String, Vec<u8>)> = self
            .call(
                "HGETALL",
                ::redis::cmd("HGETALL")
                    .arg(self.session_key(id))
                    .query_async(&mut conn),
            )
            .await?;
        codec::decode(id, fields)
    }

    async fn compare_and_swap(
        &self,
        expected_version: u64,
        record: &SessionRecord,
    ) -> Result<bool> {
        let encoded = codec::encode(record)?;
        let mut invocation = self.inner.cas.key(self.session_key(&record.id));
        invocation
            .arg(expected_version)
            .arg(record.version)
            .arg(if self.inner.sharded.is_some() {
                "SPUBLISH"
            } else {
                "PUBLISH"
            })
            .arg(self.channel(&record.id))
            .arg(encoded.set.len());
        for (name, value) in &encoded.set {
            invocation.arg(*name).arg(value.as_slice());
        }
        for name in &encoded.unset {
            invocation.arg(*name);
        }
        let mut conn = self.connection();
        let applied: i64 = self
            .call("compare_and_swap", invocation.invoke_async(&mut conn))
            .await?;
        Ok(applied == 1)
    }

    async fn put_ticket(
        &self,
        ticket: &SecretHash,
        id: &QrCodeId,
        expire_at_ms: u64,
    ) -> Result<()> {
        let mut conn = self.connection();
        // NX: registering the same handle again changes nothing (not even its expiry).
        let _: Option<String> = self
            .call(
                "SET ticket",
                ::redis::cmd("SET")
                    .arg(self.ticket_key(ticket))
                    .arg(id.as_str())
                    .arg("NX")
                    .arg("PXAT")
                    .arg(expire_at_ms.max(1))
                    .query_async(&mut conn),
            )
            .await?;
        Ok(())
    }

    async fn take_ticket(&self, ticket: &SecretHash) -> Result<Option<SessionRecord>> {
        let mut conn = self.connection();
        if conn.is_cluster() {
            // The ticket's key hashes to its own slot (a ticket names no session until it is
            // taken), so no script can hold both. `GETDEL` alone makes the ticket single-use;
            // the record read after it is "as it is now", and the exchange's compare-and-set
            // on its version still lets exactly one caller consume the session.
            let id: Option<String> = self
                .call(
                    "GETDEL ticket",
                    ::redis::cmd("GETDEL")
                        .arg(self.ticket_key(ticket))
                        .query_async(&mut conn),
                )
                .await?;
            let Some(id) = id else {
                return Ok(None);
            };
            let id = QrCodeId::parse(&id)
                .map_err(|_| Error::Internal("corrupt ticket entry in Redis".into()))?;
            return self.load(&id).await;
        }
        let mut invocation = self.inner.take_ticket.key(self.ticket_key(ticket));
        invocation.arg(format!("{}s:", self.inner.prefix));
        let taken: Option<(String, Vec<Vec<u8>>)> = self
            .call("take ticket", invocation.invoke_async(&mut conn))
            .await?;
        let Some((id, flat)) = taken else {
            return Ok(None);
        };
        let id = QrCodeId::parse(&id)
            .map_err(|_| Error::Internal("corrupt ticket entry in Redis".into()))?;
        let mut fields = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
            let name = String::from_utf8(name)
                .map_err(|_| Error::Internal("corrupt session hash in Redis".into()))?;
            fields.push((name, value));
        }
        codec::decode(&id, fields)
    }

    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &SecretHash,
        since_version: Option<u64>,
        deadline: Instant,
    ) -> Result<Option<SessionRecord>> {
        // Registered for the whole wait; the guard unregisters even if this future is dropped.
        let waiter = self.inner.fanout.register(id.as_str());
        let mut since = since_version;
        loop {
            // Register for the next wake-up before reading: a change published after the read
            // still wakes us.
            let notified = waiter.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let subscribed = match &self.inner.sharded {
                Some((channels, _)) => channels.ensure(id.as_str()).await,
                None => self.inner.fanout.subscribed(),
            };
            let Some(current) = self.load(id).await? else {
                return Ok(None);
            };
            let version = *since.get_or_insert(current.version);
            let now_ms = self.inner.clock.now_millis();
            if !keeps_waiting(&current, binding, version, now_ms) {
                return Ok(Some(current));
            }
            let now = Instant::now();
            // The session expires without anyone writing: stop at its deadline too.
            let until_expiry = Duration::from_millis(current.deadline_ms().saturating_sub(now_ms));
            let end = deadline.min(now + until_expiry);
            if now >= end {
                return Ok(Some(current));
            }
            // Without a subscription no message will come: poll until it is back.
            let wake = if subscribed {
                end
            } else {
                end.min(now + FALLBACK_POLL)
            };
            if tokio::time::timeout_at(wake, notified).await.is_err() && wake == end {
                // The wait is over: one last read decides.
                return self.load(id).await;
            }
            // Woken (by a message, a reconnect or the poll timer): re-read, and wait again if
            // nothing changed.
        }
    }

    fn live_waiters(&self) -> usize {
        self.inner.fanout.live()
    }

    fn rate_limiter(&self) -> Arc<dyn RateLimiter> {
        Arc::new(RedisRateLimiter::new(self.clone()))
    }

    fn signed_in(&self) -> Arc<dyn SignedInStore> {
        Arc::new(signed_in::RedisSignedIn(self.clone()))
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let mut invocation = self.inner.lease.key(self.lease_key(name));
        invocation
            .arg(holder)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let mut conn = self.inner.connection.clone();
        let held: i64 = self
            .call("lease", invocation.invoke_async(&mut conn))
            .await?;
        Ok(held == 1)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        let mut invocation = self.inner.release_lease.key(self.lease_key(name));
        invocation.arg(holder);
        let mut conn = self.inner.connection.clone();
        let _: i64 = self
            .call("release lease", invocation.invoke_async(&mut conn))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_read_the_version_field_the_codec_writes() {
        let version = format!("'{}'", codec::field::VERSION);
        assert!(CAS_LUA.contains(&version));
    }

    #[test]
    fn store_errors_map_to_unavailable_and_keep_no_secret() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(matches!(
            store_error("GETDEL ticket", &io),
            Error::StoreUnavailable(_)
        ));
        let timeout = timed_out("HGETALL", Duration::from_millis(250));
        assert_eq!(timeout.code(), "store_unavailable");
        assert_eq!(timeout.retry_after(), Some(1));
        assert!(timeout.to_string().contains("250 ms"));
    }
}
