//! Cross-replica wake-ups: one pub/sub connection per store, fanned out to local waiters.
//!
//! Every transition publishes the session's new version on `{prefix}ev:{id}`. The subscriber
//! task `PSUBSCRIBE`s to `{prefix}ev:*` and wakes the local waiters of that id. Messages are only
//! hints: a waiter always re-reads the hash, and when the subscriber reconnects (messages may
//! have been lost meanwhile) it wakes every local waiter so that each one re-reads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::{PubSubSink, PubSubStream};
use ::redis::{Client, RedisError, RedisResult};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

/// First delay before retrying a failed subscriber connection; doubled up to
/// [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest delay between two subscriber connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A connection that lived less than this before dropping counts as a failed attempt (no
/// tight reconnect loop against a server that accepts and then drops us).
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// How often an idle subscriber connection is pinged, to notice a half-open TCP connection.
const HEALTH_CHECK: Duration = Duration::from_secs(15);

/// Channels under `{prefix}ev:` that announce a signed-in session's end: `~out:{sid}`.
/// (`~` never occurs in a QR code id, so no waiter matches them.)
pub(super) const SIGNED_OUT_CHANNEL: &str = "~out:";

/// The local waiters, by session id, and the local view of signed-in sessions that the same
/// subscription keeps true.
#[derive(Default)]
pub(super) struct Fanout {
    slots: Mutex<HashMap<String, Slot>>,
    live: AtomicUsize,
    subscribed: AtomicBool,
    /// Bumped whenever the subscription goes up or down: a liveness read that started in
    /// another epoch may have missed a revocation and is not cached.
    epoch: AtomicU64,
    pub(super) liveness: super::signed_in::Liveness,
}

struct Slot {
    notify: Arc<Notify>,
    waiters: usize,
}

impl Fanout {
    fn slots(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        // The map stays consistent whatever panicked while holding the lock: every update is
        // a single insert, increment or removal.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a waiter for `id`; it stays registered until the guard is dropped.
    pub(super) fn register(self: &Arc<Self>, id: &str) -> WaiterGuard {
        let notify = {
            let mut slots = self.slots();
            let slot = slots.entry(id.to_owned()).or_insert_with(|| Slot {
                notify: Arc::new(Notify::new()),
                waiters: 0,
            });
            slot.waiters += 1;
            slot.notify.clone()
        };
        self.live.fetch_add(1, Ordering::Relaxed);
        WaiterGuard {
            fanout: self.clone(),
            id: id.to_owned(),
            notify,
        }
    }

    /// Wakes the waiters of `id`, if any.
    pub(super) fn wake(&self, id: &str) {
        let notify = self.slots().get(id).map(|s| s.notify.clone());
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }

    /// Wakes every local waiter, so that each re-reads its session.
    pub(super) fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = self.slots().values().map(|s| s.notify.clone()).collect();
        for notify in all {
            notify.notify_waiters();
        }
    }

    /// Waiters currently registered.
    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Whether `id` has a local waiter.
    pub(super) fn is_watched(&self, id: &str) -> bool {
        self.slots().contains_key(id)
    }

    /// Sessions with at least one waiter.
    pub(super) fn watched(&self) -> usize {
        self.slots().len()
    }

    /// Whether the subscriber connection is up and subscribed.
    pub(super) fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Acquire)
    }

    /// The subscription epoch (see [`Fanout::epoch`] field docs).
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn set_subscribed(&self, up: bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.subscribed.store(up, Ordering::Release);
        // Revocations published while the subscription was changing may be lost: forget
        // every session known to be alive (those known to be revoked stay revoked).
        self.liveness.forget_alive();
    }

    /// Dispatches one message of the `{prefix}ev:*` subscription. Channels end in the id as
    /// hash tag: `ev:{id}`, `ev:~out:{sid}`.
    fn deliver(&self, channel_suffix: &str) {
        match channel_suffix.strip_prefix(SIGNED_OUT_CHANNEL) {
            Some(sid) => {
                if let Some(sid) = untag(sid) {
                    self.liveness.signed_out(sid);
                }
            }
            None => {
                if let Some(id) = untag(channel_suffix) {
                    self.wake(id);
                }
            }
        }
    }
}

/// The session id in a channel suffix `{id}` (the hash tag that puts the channel in the
/// session's slot).
pub(super) fn untag(suffix: &str) -> Option<&str> {
    suffix.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
}

/// One registered waiter. Dropping it (also when the waiting future is dropped because the
/// client went away) unregisters it and removes the session's entry with its last waiter.
pub(super) struct WaiterGuard {
    fanout: Arc<Fanout>,
    id: String,
    notify: Arc<Notify>,
}

impl WaiterGuard {
    /// A future that completes at the next wake-up of this session (enable it before reading
    /// the state it guards).
    pub(super) fn notified(&self) -> Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        {
            let mut slots = self.fanout.slots();
            if let Some(slot) = slots.get_mut(&self.id) {
                slot.waiters = slot.waiters.saturating_sub(1);
                if slot.waiters == 0 {
                    slots.remove(&self.id);
                }
            }
        }
        self.fanout.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the subscriber task needs to (re)connect.
pub(super) struct Subscription {
    /// The server, or a cluster's seed nodes: plain pub/sub messages reach every node of a
    /// cluster, so one subscription on any node hears every channel. A failed attempt moves
    /// on to the next node.
    pub clients: Vec<Client>,
    /// The node the next attempt tries.
    pub next: usize,
    /// `{prefix}ev:*`
    pub pattern: String,
    /// `{prefix}ev:`: stripped from a channel name to get the session id.
    pub channel_prefix: String,
    /// Bound on connecting, subscribing and health pings.
    pub timeout: Duration,
    /// The command connection, to publish the probe that proves a new subscription works.
    pub publisher: super::connection::Connection,
}

fn failure(message: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(std::io::ErrorKind::TimedOut, message))
}

impl Subscription {
    /// Opens a pub/sub connection, subscribes to the pattern, and proves that the subscription
    /// works by publishing a probe and receiving it. (A refused `PSUBSCRIBE`, e.g. for lack of
    /// ACL channel permissions, is not reported as an error by the client library: without the
    /// probe the store would believe itself subscribed and never be woken.)
    pub(super) async fn connect(
        &mut self,
        fanout: &Fanout,
    ) -> RedisResult<(PubSubSink, PubSubStream)> {
        let Some(client) = self.clients.get(self.next % self.clients.len().max(1)) else {
            return Err(failure("no Redis node to subscribe on"));
        };
        let client = client.clone();
        let attempt = async {
            let (mut sink, mut stream) = client.get_async_pubsub().await?.split();
            sink.psubscribe(&self.pattern).await?;
            let probe = super::codec::probe_name(&format!("{}~probe:", self.channel_prefix))
                .map_err(|_| failure("no randomness for the subscription probe"))?;
            let mut publisher = self.publisher.clone();
            ::redis::cmd("PUBLISH")
                .arg(&probe)
                .arg("probe")
                .query_async::<i64>(&mut publisher)
                .await?;
            while let Some(message) = stream.next().await {
                let channel = message.get_channel_name();
                if channel == probe {
                    return Ok((sink, stream));
                }
                if let Some(suffix) = channel.strip_prefix(&self.channel_prefix) {
                    fanout.deliver(suffix);
                }
            }
            Err(failure("subscriber connection closed while subscribing"))
        };
        let result = match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(failure("subscribing timed out (is PSUBSCRIBE allowed?)")),
        };
        if result.is_err() {
            self.next = self.next.wrapping_add(1);
        }
        result
    }

    /// The subscriber loop: dispatches messages, and on a lost connection reconnects with
    /// backoff and wakes every local waiter. Runs until aborted.
    pub(super) async fn run(mut self, fanout: Arc<Fanout>, first: (PubSubSink, PubSubStream)) {
        let mut connection = Some(first);
        fanout.set_subscribed(true);
        let mut backoff = MIN_BACKOFF;
        loop {
            let (mut sink, mut stream) = match connection.take() {
                Some(c) => c,
                None => match self.connect(&fanout).await {
                    Ok(c) => {
                        fanout.set_subscribed(true);
                        // Changes published while we were away are lost: everyone re-reads.
                        fanout.wake_all();
                        tracing::info!("qrauth Redis subscriber reconnected");
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64,
                            "qrauth Redis subscriber cannot connect");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        continue;
                    }
                },
            };
            let since = Instant::now();
            self.dispatch(&fanout, &mut sink, &mut stream).await;
            drop((sink, stream));
            // That node may be gone for good (a failed-over cluster primary): try the next.
            self.next = self.next.wrapping_add(1);
            fanout.set_subscribed(false);
            // Waiters fall back to polling until the subscription is back.
            fanout.wake_all();
            tracing::warn!("qrauth Redis subscriber connection lost; reconnecting");
            if since.elapsed() < STABLE_AFTER {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            } else {
                backoff = MIN_BACKOFF;
            }
        }
    }

    /// Forwards messages to the waiters until the connection ends or fails a health check.
    async fn dispatch(&self, fanout: &Fanout, sink: &mut PubSubSink, stream: &mut PubSubStream) {
        let mut health = tokio::time::interval_at(Instant::now() + HEALTH_CHECK, HEALTH_CHECK);
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(message) => {
                        if let Some(suffix) = message.get_channel_name().strip_prefix(&self.channel_prefix) {
                            fanout.deliver(suffix);
                        }
                    }
                    None => return,
                },
                _ = health.tick() => {
                    let ping = tokio::time::timeout(self.timeout, sink.ping::<::redis::Value>());
                    if !matches!(ping.await, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_the_session_by_its_hash_tag() {
        let fanout = Arc::new(Fanout::default());
        let waiter = fanout.register("abc");
        let woken = waiter.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // The untagged form (a 0.1 replica's channel) and other ids wake nobody.
        fanout.deliver("abc");
        fanout.deliver("{abd}");
        assert!(futures_util::FutureExt::now_or_never(woken.as_mut()).is_none());
        fanout.deliver("{abc}");
        assert!(futures_util::FutureExt::now_or_never(woken.as_mut()).is_some());

        fanout.deliver("~out:{sid1}");
        assert!(fanout.liveness.is_ended("sid1"));
        fanout.deliver("~out:sid2");
        assert!(!fanout.liveness.is_ended("sid2"));
    }
}
