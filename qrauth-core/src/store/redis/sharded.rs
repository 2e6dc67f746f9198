//! Sharded wake-ups on a Redis Cluster (Redis ≥ 7): `SSUBSCRIBE` to the channels of the
//! sessions someone here waits on, instead of one pattern subscription that hears everything.
//!
//! A plain `PUBLISH` on a cluster is broadcast over the cluster bus to every node, so its cost
//! grows with the cluster and every subscriber hears every session's changes. A shard channel
//! lives in one slot: `SPUBLISH {prefix}ev:{id}` (inside the transition's script, same slot as
//! the session's hash) reaches only the primary of that slot and the replicas subscribed to
//! that one channel.
//!
//! One RESP3 cluster connection, used for nothing but `SSUBSCRIBE`/`SUNSUBSCRIBE` (the client
//! pairs replies with requests per node connection, and the server also sends `sunsubscribe`
//! on its own when a slot moves away; keeping commands off this connection keeps such a push
//! from standing in for a command's reply). Messages arrive through the push sender:
//!
//! - `smessage`: wake the local waiters of that session (only a hint: they re-read);
//! - `sunsubscribe` for a channel still wanted (the slot migrated, or the node lost it): forget
//!   it and wake its waiters, whose next [`ShardedChannels::ensure`] subscribes again and so
//!   follows the slot to its new owner;
//! - `disconnection` (a node connection closed; which one is not said): forget every channel
//!   and wake every waiter, which re-subscribe before they re-read.
//!
//! A waiter calls `ensure` before each read, so a change published after its subscription is
//! never missed; channels nobody waits on any more are unsubscribed by a reaper once a second,
//! under the write side of a lock whose read side `ensure` holds while it subscribes (so an
//! unsubscribe never overtakes a subscribe made for a new waiter).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{PushInfo, PushKind, RedisResult, Value};
use tokio::sync::RwLock;

use super::waiters::Fanout;

/// How often channels without local waiters are unsubscribed.
pub(super) const REAP_EVERY: Duration = Duration::from_secs(1);

/// What the push sender and the store share.
struct Shared {
    /// Session ids whose channel this process is subscribed to.
    subscribed: Mutex<HashSet<String>>,
    /// Bumped by every `disconnection`: a subscribe that was in flight across one may have
    /// been made on the connection that closed, and is not recorded.
    epoch: AtomicU64,
    /// `{prefix}ev:`
    channel_prefix: String,
    fanout: Arc<Fanout>,
}

impl Shared {
    fn subscribed(&self) -> MutexGuard<'_, HashSet<String>> {
        // Every update is one insert, removal or clear: consistent whatever panicked.
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session id of a channel `{prefix}ev:{id}`.
    fn id_of<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(channel)
            .ok()?
            .strip_prefix(self.channel_prefix.as_str())
            .and_then(super::waiters::untag)
    }

    /// Runs on the connection's driver: must not block (two short mutex sections).
    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::SMessage => {
                if let Some(Value::BulkString(channel)) = push.data.first()
                    && let Some(id) = self.id_of(channel)
                {
                    self.fanout.wake(id);
                }
            }
            PushKind::SUnsubscribe => {
                if let Some(Value::BulkString(channel)) = push.data.first()
                    && let Some(id) = self.id_of(channel)
                    && self.subscribed().remove(id)
                {
                    // Still wanted (the reaper forgets a channel before unsubscribing it): the
                    // server dropped it, e.g. its slot moved. The waiters subscribe again.
                    self.fanout.wake(id);
                }
            }
            PushKind::Disconnection => {
                self.epoch.fetch_add(1, Ordering::AcqRel);
                self.subscribed().clear();
                self.fanout.wake_all();
            }
            _ => {}
        }
    }
}

/// The sharded subscriptions of one store (see the module docs).
pub(super) struct ShardedChannels {
    shared: Arc<Shared>,
    connection: ClusterConnection,
    /// Read side: one `ensure` subscribing; write side: the reaper unsubscribing.
    ops: RwLock<()>,
    timeout: Duration,
}

impl ShardedChannels {
    /// Opens the subscription connection (RESP3, which shard channels need) to the cluster.
    pub(super) async fn connect(
        nodes: &[String],
        channel_prefix: String,
        fanout: Arc<Fanout>,
        timeout: Duration,
    ) -> RedisResult<Self> {
        let shared = Arc::new(Shared {
            subscribed: Mutex::new(HashSet::new()),
            epoch: AtomicU64::new(0),
            channel_prefix,
            fanout,
        });
        let pushes = shared.clone();
        let client = ClusterClientBuilder::new(nodes.to_vec())
            .use_protocol(::redis::ProtocolVersion::RESP3)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .push_sender(
                move |push: PushInfo| -> Result<(), ::redis::aio::SendError> {
                    pushes.on_push(push);
                    Ok(())
                },
            )
            .build()?;
        let connection = client.get_async_connection().await?;
        Ok(Self {
            shared,
            connection,
            ops: RwLock::new(()),
            timeout,
        })
    }

    fn channel(&self, id: &str) -> String {
        format!("{}{{{id}}}", self.shared.channel_prefix)
    }

    /// Makes sure this process hears changes of `id`; `false` when it cannot now (the
    /// caller polls until a later call succeeds).
    pub(super) async fn ensure(&self, id: &str) -> bool {
        if self.shared.subscribed().contains(id) {
            return true;
        }
        let _op = self.ops.read().await;
        if self.shared.subscribed().contains(id) {
            return true;
        }
        let epoch = self.shared.epoch.load(Ordering::Acquire);
        let mut connection = self.connection.clone();
        let subscribe = connection.ssubscribe(self.channel(id));
        match tokio::time::timeout(self.timeout, subscribe).await {
            Ok(Ok(())) => {
                let mut subscribed = self.shared.subscribed();
                if self.shared.epoch.load(Ordering::Acquire) != epoch {
                    return false;
                }
                subscribed.insert(id.to_owned());
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "qrauth Redis SSUBSCRIBE failed; polling meanwhile");
                false
            }
            Err(_) => {
                tracing::warn!("qrauth Redis SSUBSCRIBE timed out; polling meanwhile");
                false
            }
        }
    }

    /// Channels subscribed now.
    pub(super) fn len(&self) -> usize {
        self.shared.subscribed().len()
    }

    /// Unsubscribes every channel that has no local waiter any more.
    pub(super) async fn reap(&self) {
        let _op = self.ops.write().await;
        let idle: Vec<String> = {
            let mut subscribed = self.shared.subscribed();
            let idle: Vec<String> = subscribed
                .iter()
                .filter(|id| !self.shared.fanout.is_watched(id))
                .cloned()
                .collect();
            for id in &idle {
                subscribed.remove(id);
            }
            idle
        };
        // One channel per command: the client pairs one reply with each command, and the
        // server answers a multi-channel SUNSUBSCRIBE with one reply per channel.
        let unsubscribes = idle.iter().map(|id| {
            let mut connection = self.connection.clone();
            let channel = self.channel(id);
            async move {
                let call = connection.sunsubscribe(channel);
                tokio::time::timeout(self.timeout, call).await
            }
        });
        for result in futures_util::future::join_all(unsubscribes).await {
            if !matches!(result, Ok(Ok(()))) {
                // A lost unsubscribe costs a few unheard-of messages until the connection
                // closes; nothing waits on them.
                tracing::debug!("qrauth Redis SUNSUBSCRIBE failed");
            }
        }
    }

    /// The reaper loop; runs until aborted.
    pub(super) async fn run_reaper(self: Arc<Self>) {
        let mut every = tokio::time::interval(REAP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.reap().await;
        }
    }
}
