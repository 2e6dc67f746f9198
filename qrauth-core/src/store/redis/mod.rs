//! [`RedisStore`]: sessions shared by every replica through Redis (feature `redis`).

mod codec;
mod limiter;
mod waiters;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ErrorKind, RedisError, RedisResult, Script};
use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::limiter::RedisRateLimiter;
use self::waiters::{Fanout, Subscription};
use super::{SessionStore, keeps_waiting};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::secret::{QrCodeId, SecretHash, os_random};
use crate::limits::RateLimiter;
use crate::record::SessionRecord;

/// Default bound on every Redis call.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default key prefix.
const DEFAULT_PREFIX: &str = "qrauth:";
/// While the subscriber is down, waiters re-read this often.
const FALLBACK_POLL: Duration = Duration::from_millis(500);

/// Creates the session hash only if the key does not exist.
///
/// KEYS[1] session key; ARGV[1] `PEXPIREAT` (Unix ms); ARGV[2..] field, value pairs.
const INSERT_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
return 1
";

/// Takes a ticket handle and reads its session, in one step.
///
/// KEYS[1] ticket key; ARGV[1] session key prefix. Returns `{id, {field, value, …}}`, or nil
/// when the handle is unknown (never issued, already taken, or expired).
const TAKE_TICKET_LUA: &str = r"
local id = redis.call('GETDEL', KEYS[1])
if not id then return false end
return {id, redis.call('HGETALL', ARGV[1] .. id)}
";

/// Compare-and-set on `version`, write, publish: one atomic step.
///
/// KEYS[1] session key; ARGV[1] expected version; ARGV[2] new version; ARGV[3] channel;
/// ARGV[4] n; ARGV[5 .. 4+2n] field, value pairs to write; ARGV[5+2n ..] fields to remove.
/// `HSET`/`HDEL` keep the key's expiry. Returns 1 if applied, 0 if the version differs or the
/// session is gone.
const CAS_LUA: &str = r"
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
redis.call('HSET', KEYS[1], unpack(ARGV, 5, 4 + 2 * n))
if #ARGV > 4 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 5 + 2 * n)) end
if ARGV[2] ~= ARGV[1] then redis.call('PUBLISH', ARGV[3], ARGV[2]) end
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
/// | `qrauth:s:{id}` | hash | one session: `state`, `version`, `created`, `expires`, `bind` (SHA-256 of the binding secret, hex), `ip`, `device`, `nonce`, `scanner` (JSON), `confirm` (SHA-256 of the confirm token, hex), `confirm_exp`, `ticket_nonce`, `ticket_exp`, `failed`, `match`, `data` | `PEXPIREAT` the retention time given to `insert` |
/// | `qrauth:t:{hex(SHA-256(ticket))}` | string | the session id of a ticket | `PXAT` the ticket's expiry |
/// | `qrauth:ev:{id}` | pub/sub channel | the new version after each transition | — |
///
/// No secret is stored: only SHA-256 hashes of the binding secret, the confirm token and the
/// ticket (the ticket itself is never known to the store; see [`Ticket`](crate::Ticket)).
///
/// # Atomicity
///
/// `insert` and `compare_and_swap` are one Lua script each: `insert` creates the hash only if
/// the key is absent; `compare_and_swap` checks the stored `version`, writes every field
/// (keeping the key's expiry) and `PUBLISH`es the new version, in one step, so two replicas can
/// never both win a transition. Tickets are created with `SET NX PXAT` and taken with `GETDEL`
/// (Redis ≥ 6.2, checked when connecting), so exactly one caller gets a ticket.
///
/// # Waiting
///
/// Each store keeps one pub/sub connection (`PSUBSCRIBE {prefix}ev:*`) and a local map of
/// waiters. A waiter registers, reads the hash, waits for a message (or its deadline, or the
/// session's own deadline), and re-reads: the message is only a hint. When the subscriber's
/// connection drops, every waiter is woken and polls until it is back; when it is back,
/// every waiter is woken again to re-read what it may have missed. A new subscription counts
/// as up only once a probe published on `{prefix}ev:~probe:{random}` has come back through it.
/// Keyspace notifications are not used.
///
/// # Server requirements
///
/// One Redis ≥ 6.2 primary (or Valkey, or Dragonfly); Redis Cluster is not supported. With
/// ACLs, the user needs `EVAL`/`EVALSHA`/`SCRIPT LOAD`, `HGETALL`, `SET`, `GETDEL`, `PUBLISH`,
/// `PSUBSCRIBE`, `PING` and `INFO` on keys and channels `{prefix}*`.
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
/// # async fn demo() -> qrauth_core::Result<()> {
/// use std::sync::Arc;
/// use qrauth_core::store::RedisStore;
/// use qrauth_core::{Lifetimes, Sessions};
///
/// let store = RedisStore::connect("redis://127.0.0.1:6379/").await?;
/// let sessions = Sessions::new(Arc::new(store), Lifetimes::default())?;
/// # let _ = sessions;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    clock: SharedClock,
    insert: Script,
    cas: Script,
    take_ticket: Script,
    fanout: Arc<Fanout>,
    subscriber: JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.subscriber.abort();
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
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisStore`].
///
/// ```no_run
/// # async fn demo() -> qrauth_core::Result<()> {
/// use std::time::Duration;
/// use qrauth_core::store::RedisStore;
///
/// let store = RedisStore::builder("redis://:password@redis.internal:6379/0")
///     .key_prefix("shop-login:")
///     .command_timeout(Duration::from_millis(500))
///     .connect()
///     .await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    timeout: Duration,
    clock: Option<SharedClock>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Prefix of every key and channel (default `qrauth:`), so that several applications can
    /// share one Redis. Must not contain the glob characters `*?[]\`.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::builder("redis://127.0.0.1/")
    ///     .key_prefix("app-a:qr:")
    ///     .connect()
    ///     .await?;
    /// assert_eq!(store.key_prefix(), "app-a:qr:");
    /// # Ok(()) }
    /// ```
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Bound on every Redis call, including connecting (default 2 s). A call that takes
    /// longer fails with [`Error::StoreUnavailable`].
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// use std::time::Duration;
    /// let store = qrauth_core::store::RedisStore::builder("redis://127.0.0.1/")
    ///     .command_timeout(Duration::from_millis(300))
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock used to compute when a waiting session's own deadline passes (default: the
    /// system clock). Key expiry is always Redis's clock.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// use std::sync::Arc;
    /// use qrauth_core::SystemClock;
    /// let store = qrauth_core::store::RedisStore::builder("redis://127.0.0.1/")
    ///     .clock(Arc::new(SystemClock))
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Connects, checks that the server supports `GETDEL` (Redis ≥ 6.2) and Lua scripts, and
    /// starts the subscriber.
    ///
    /// Fails with [`Error::Config`] for a bad URL or prefix, or a server that lacks `GETDEL`
    /// or scripting, and with [`Error::StoreUnavailable`] when Redis cannot be reached within
    /// the command timeout.
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::builder("redis://127.0.0.1/")
    ///     .connect()
    ///     .await?;
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub async fn connect(self) -> Result<RedisStore> {
        if self.prefix.contains(['*', '?', '[', ']', '\\']) {
            return Err(Error::Config(
                "the Redis key prefix must not contain any of *?[]\\".into(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config(
                "the Redis command timeout must be positive".into(),
            ));
        }
        let timeout = self.timeout;
        let client = Client::open(self.url.as_str())
            .map_err(|e| Error::Config(format!("invalid Redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1));
        let connection = bounded(
            timeout,
            "connect",
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await?;
        let insert = Script::new(INSERT_LUA);
        let cas = Script::new(CAS_LUA);
        let take_ticket = Script::new(TAKE_TICKET_LUA);
        let mut conn = connection.clone();
        check_server(&mut conn, &self.prefix, timeout, &[&insert, &cas, &take_ticket]).await?;

        let subscription = Subscription {
            client,
            pattern: format!("{}ev:*", self.prefix),
            channel_prefix: format!("{}ev:", self.prefix),
            timeout,
            publisher: connection.clone(),
        };
        let fanout = Arc::new(Fanout::default());
        let first = subscription.connect(&fanout).await.map_err(|e| {
            if is_server_refusal(&e) {
                Error::Config(format!(
                    "Redis refuses PSUBSCRIBE/PUBLISH on {}ev:* ({e}); check the ACL \
                         channel permissions",
                    self.prefix
                ))
            } else {
                store_error("subscribe", &e)
            }
        })?;
        let subscriber = tokio::spawn(subscription.run(fanout.clone(), first));
        Ok(RedisStore {
            inner: Arc::new(Inner {
                connection,
                prefix: self.prefix,
                timeout,
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                insert,
                cas,
                take_ticket,
                fanout,
                subscriber,
            }),
        })
    }
}

/// Fails unless the server has `GETDEL` (Redis ≥ 6.2) and accepts the scripts.
async fn check_server(
    conn: &mut ConnectionManager,
    prefix: &str,
    timeout: Duration,
    scripts: &[&Script],
) -> Result<()> {
    let mut random = [0u8; 16];
    os_random(&mut random)?;
    let probe = format!("{prefix}probe:{}", codec::hex(&random));
    let mut getdel = ::redis::cmd("GETDEL");
    getdel.arg(&probe);
    match tokio::time::timeout(timeout, getdel.query_async::<Option<Vec<u8>>>(conn)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if is_server_refusal(&e) => {
            let version = server_version(conn, timeout).await;
            return Err(Error::Config(format!(
                "Redis at version {version} does not support GETDEL ({e}); qrauth needs \
                 Redis >= 6.2 (or a compatible Valkey or Dragonfly)"
            )));
        }
        Ok(Err(e)) => return Err(store_error("GETDEL check", &e)),
        Err(_) => return Err(timed_out("GETDEL check", timeout)),
    }
    for script in scripts {
        let invocation = script.prepare_invoke();
        match tokio::time::timeout(timeout, invocation.load_async(conn)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if is_server_refusal(&e) => {
                return Err(Error::Config(format!(
                    "Redis refuses Lua scripts ({e}); qrauth needs EVAL/EVALSHA"
                )));
            }
            Ok(Err(e)) => return Err(store_error("SCRIPT LOAD", &e)),
            Err(_) => return Err(timed_out("SCRIPT LOAD", timeout)),
        }
    }
    Ok(())
}

/// The server's `redis_version` from `INFO server`, or `unknown`.
async fn server_version(conn: &mut ConnectionManager, timeout: Duration) -> String {
    let mut info = ::redis::cmd("INFO");
    info.arg("server");
    match tokio::time::timeout(timeout, info.query_async::<String>(conn)).await {
        Ok(Ok(info)) => info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .map_or_else(|| "unknown".to_owned(), |v| v.trim().to_owned()),
        _ => "unknown".to_owned(),
    }
}

/// An error reply from a reachable server (e.g. `ERR unknown command`), as opposed to a
/// network failure.
fn is_server_refusal(e: &RedisError) -> bool {
    matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension)
}

fn timed_out(op: &str, timeout: Duration) -> Error {
    Error::StoreUnavailable(format!(
        "Redis {op} timed out after {} ms",
        timeout.as_millis()
    ))
}

fn store_error(op: &str, e: &RedisError) -> Error {
    match e.kind() {
        ErrorKind::UnexpectedReturnType => {
            Error::Internal(format!("unexpected Redis reply to {op}: {e}"))
        }
        _ => Error::StoreUnavailable(format!("Redis {op} failed: {e}")),
    }
}

/// Runs one Redis call with the timeout, mapping every failure to a qrauth error.
async fn bounded<T>(
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
        RedisStoreBuilder {
            url: url.into(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            clock: None,
        }
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
    pub fn key_of_session(&self, id: &QrCodeId) -> String {
        self.session_key(id)
    }

    pub(crate) fn session_key(&self, id: &QrCodeId) -> String {
        format!("{}s:{}", self.inner.prefix, id.as_str())
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

    fn connection(&self) -> ConnectionManager {
        self.inner.connection.clone()
    }

    fn ticket_key(&self, ticket: &SecretHash) -> String {
        format!("{}t:{}", self.inner.prefix, ticket.to_hex())
    }

    fn channel(&self, id: &QrCodeId) -> String {
        format!("{}ev:{}", self.inner.prefix, id.as_str())
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
        let mut conn = self.inner.connection.clone();
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
        let mut conn = self.inner.connection.clone();
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
            .arg(self.channel(&record.id))
            .arg(encoded.set.len());
        for (name, value) in &encoded.set {
            invocation.arg(*name).arg(value.as_slice());
        }
        for name in &encoded.unset {
            invocation.arg(*name);
        }
        let mut conn = self.inner.connection.clone();
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
        let mut conn = self.inner.connection.clone();
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
        let mut invocation = self.inner.take_ticket.key(self.ticket_key(ticket));
        invocation.arg(format!("{}s:", self.inner.prefix));
        let mut conn = self.inner.connection.clone();
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
            let subscribed = self.inner.fanout.subscribed();
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
            let until_expiry =
                Duration::from_millis(current.deadline_ms().saturating_sub(now_ms));
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
