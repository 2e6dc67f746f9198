//! [`RedisStoreBuilder`]: connecting, and checking the server before the first session.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::cluster::ClusterClientBuilder;
use ::redis::{Client, Script};

use super::connection::Connection;

use super::sharded::ShardedChannels;
use super::waiters::{Fanout, Subscription};
use super::{
    CAS_LUA, DEFAULT_PREFIX, DEFAULT_TIMEOUT, INSERT_LUA, Inner, LEASE_LUA, RELEASE_LEASE_LUA,
    RedisStore, TAKE_TICKET_LUA, bounded, codec, is_server_refusal, store_error, timed_out,
};
use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};

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
    target: Target,
    prefix: String,
    timeout: Duration,
    clock: Option<SharedClock>,
    sharded_pubsub: bool,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("cluster", &matches!(self.target, Target::Cluster(_)))
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("sharded_pubsub", &self.sharded_pubsub)
            .finish_non_exhaustive()
    }
}

/// Where the store connects: one server, or the seed nodes of a cluster.
#[derive(Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

impl RedisStoreBuilder {
    pub(super) fn new(url: String) -> Self {
        Self::with_target(Target::Single(url))
    }

    pub(super) fn new_cluster(nodes: Vec<String>) -> Self {
        Self::with_target(Target::Cluster(nodes))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            clock: None,
            sharded_pubsub: true,
        }
    }

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

    /// On a cluster: whether session wake-ups use sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`,
    /// Redis ≥ 7.0 or Valkey; default `true`). A plain `PUBLISH` on a cluster is broadcast to
    /// every node, so every node's bus carries every login's changes; a shard channel lives in
    /// its session's slot and reaches only the replicas waiting on that session. When the
    /// servers lack `SPUBLISH` (Redis 6.2), the store uses plain pub/sub whatever this says.
    /// Ignored on one Redis (there, plain pub/sub costs nothing more).
    ///
    /// Every replica of one deployment must use the same setting: a replica on plain pub/sub
    /// does not hear sharded messages (it still sees each change at its next read).
    ///
    /// ```no_run
    /// # async fn demo() -> qrauth_core::Result<()> {
    /// let store = qrauth_core::store::RedisStore::cluster(["redis://10.0.0.1:6379/"])
    ///     .sharded_pubsub(false)
    ///     .connect()
    ///     .await?;
    /// assert!(!store.uses_sharded_pubsub());
    /// # Ok(()) }
    /// ```
    pub fn sharded_pubsub(mut self, enabled: bool) -> Self {
        self.sharded_pubsub = enabled;
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
        let (connection, clients) = match &self.target {
            Target::Single(url) => {
                let client = Client::open(url.as_str())
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
                (Connection::Single(connection), vec![client])
            }
            Target::Cluster(nodes) => {
                if nodes.is_empty() {
                    return Err(Error::Config(
                        "a Redis Cluster needs at least one node URL".into(),
                    ));
                }
                let clients = nodes
                    .iter()
                    .map(|url| Client::open(url.as_str()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Config(format!("invalid Redis Cluster node URL: {e}")))?;
                let cluster = ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()
                    .map_err(|e| Error::Config(format!("invalid Redis Cluster node URLs: {e}")))?;
                let connection =
                    bounded(timeout, "connect", cluster.get_async_connection()).await?;
                (Connection::Cluster(connection), clients)
            }
        };
        let insert = Script::new(INSERT_LUA);
        let cas = Script::new(CAS_LUA);
        let take_ticket = Script::new(TAKE_TICKET_LUA);
        let lease = Script::new(LEASE_LUA);
        let release_lease = Script::new(RELEASE_LEASE_LUA);
        let signed_in = super::signed_in::Scripts::new();
        let mut conn = connection.clone();
        let [create, rotate, revoke] = signed_in.all();
        check_server(
            &mut conn,
            &self.prefix,
            timeout,
            &[
                &insert,
                &cas,
                &take_ticket,
                &lease,
                &release_lease,
                create,
                rotate,
                revoke,
            ],
        )
        .await?;

        let mut subscription = Subscription {
            clients,
            next: 0,
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
        let sharded = match &self.target {
            Target::Cluster(nodes) if self.sharded_pubsub => {
                connect_sharded(&mut conn, nodes, &self.prefix, timeout, &fanout).await?
            }
            _ => None,
        };
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
                lease,
                release_lease,
                signed_in,
                fanout,
                subscriber,
                sharded,
            }),
        })
    }
}

/// The sharded subscriptions and their reaper, if the cluster has `SPUBLISH` (Redis ≥ 7).
async fn connect_sharded(
    conn: &mut Connection,
    nodes: &[String],
    prefix: &str,
    timeout: Duration,
    fanout: &Arc<Fanout>,
) -> Result<Option<(Arc<ShardedChannels>, tokio::task::JoinHandle<()>)>> {
    let mut probe = ::redis::cmd("SPUBLISH");
    probe
        .arg(codec::probe_name(&format!("{prefix}ev:~probe:"))?)
        .arg("probe");
    match tokio::time::timeout(timeout, probe.query_async::<i64>(conn)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if is_server_refusal(&e) => {
            tracing::info!(error = %e, "qrauth: this Redis Cluster has no SPUBLISH (Redis < 7); \
                using plain pub/sub");
            return Ok(None);
        }
        Ok(Err(e)) => return Err(store_error("SPUBLISH check", &e)),
        Err(_) => return Err(timed_out("SPUBLISH check", timeout)),
    }
    let channels = bounded(
        timeout,
        "connect (sharded pub/sub)",
        ShardedChannels::connect(nodes, format!("{prefix}ev:"), fanout.clone(), timeout),
    )
    .await?;
    let channels = Arc::new(channels);
    let reaper = tokio::spawn(channels.clone().run_reaper());
    Ok(Some((channels, reaper)))
}

/// Fails unless the server has `GETDEL` (Redis ≥ 6.2) and accepts the scripts, and unless a
/// single-server store really talks to a server outside a cluster (a cluster node would
/// answer `MOVED` for most keys).
async fn check_server(
    conn: &mut Connection,
    prefix: &str,
    timeout: Duration,
    scripts: &[&Script],
) -> Result<()> {
    let probe = codec::probe_name(&format!("{prefix}probe:"))?;
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
    if !conn.is_cluster() && info_field(conn, "cluster", "cluster_enabled", timeout).await == "1" {
        return Err(Error::Config(
            "this Redis is a cluster node: connect with RedisStore::cluster([...node URLs])".into(),
        ));
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
async fn server_version(conn: &mut Connection, timeout: Duration) -> String {
    info_field(conn, "server", "redis_version", timeout).await
}

/// One field of `INFO {section}` (of one server; of some node on a cluster), or `unknown`.
async fn info_field(conn: &mut Connection, section: &str, name: &str, timeout: Duration) -> String {
    let mut info = ::redis::cmd("INFO");
    info.arg(section);
    let prefix = format!("{name}:");
    match tokio::time::timeout(timeout, info.query_async::<String>(conn)).await {
        Ok(Ok(info)) => info
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or_else(|| "unknown".to_owned(), |v| v.trim().to_owned()),
        _ => "unknown".to_owned(),
    }
}
