//! One upstream status loop per live session, shared by every browser request that waits on it.
//!
//! A browser's poll, long-poll or event stream never calls Authing itself: it registers
//! interest in its session, which starts (or keeps alive) the session's one loop. The loop
//! checks Authing's status every `interval`, writes each change into the qrauth session with a
//! compare-and-set (which wakes every waiter through the store, across replicas with Redis), and
//! stops when the session leaves `pending`/`scanned` or when nobody has shown interest for
//! `linger`.
//!
//! Loops live in this process. With several replicas each replica that has waiting browsers runs
//! its own loop for the session; the writes stay consistent because every transition is a
//! compare-and-set on the stored record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::client::{AuthingClient, UpstreamStatus};
use super::state::UpstreamState;
use crate::error::{Error, Result};
use crate::secret::{ConfirmToken, QrCodeId, os_random};
use crate::session::{Scanner, SessionRecord};
use crate::sessions::Sessions;
use crate::types::{QrState, UserInfo};

/// The `sub` recorded for the scanning user: Authing's status API does not name the user; the
/// real subject comes with Authing's tokens.
const UPSTREAM_SUBJECT: &str = "authing";

/// The last upstream failure of a loop, shown to browsers until a check succeeds again.
#[derive(Debug, Clone)]
pub(crate) enum Health {
    Timeout,
    Unavailable(String),
}

impl Health {
    pub fn to_error(&self) -> Error {
        match self {
            Health::Timeout => Error::UpstreamTimeout,
            Health::Unavailable(m) => Error::Upstream(m.clone()),
        }
    }
}

/// One session's loop, as seen by the requests interested in it.
pub(crate) struct Loop {
    waiters: AtomicUsize,
    last_interest: Mutex<Instant>,
    health: watch::Sender<Option<Health>>,
}

impl Loop {
    fn touch(&self) {
        *lock(&self.last_interest) = Instant::now();
    }

    /// The current upstream failure, if the last check failed.
    pub fn failure(&self) -> Option<Error> {
        self.health.borrow().as_ref().map(Health::to_error)
    }

    /// Resolves with the next upstream failure (or the current one).
    pub async fn next_failure(&self) -> Error {
        let mut rx = self.health.subscribe();
        let failure = match rx.wait_for(Option::is_some).await {
            Ok(h) => h.as_ref().map(Health::to_error),
            Err(_) => None,
        };
        match failure {
            Some(failure) => failure,
            // The sender lives as long as `self`: not reached; wait forever to be safe.
            None => std::future::pending().await,
        }
    }
}

/// Holds a loop alive while a long-poll or event stream waits.
pub(crate) struct WaitGuard {
    pub lp: Arc<Loop>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.lp.touch();
        self.lp.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Inner {
    loops: Mutex<HashMap<String, Arc<Loop>>>,
    client: Arc<AuthingClient>,
    sessions: Sessions,
    interval: Duration,
    linger: Duration,
    started: AtomicU64,
}

/// The registry of upstream loops. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Poller {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Poller {
    pub fn new(client: Arc<AuthingClient>, sessions: Sessions, interval: Duration) -> Self {
        // Plain polls come every `poll_interval`: keep the loop over two of them.
        let linger =
            (sessions.lifetimes().poll_interval * 2).max(interval * 3) + Duration::from_secs(1);
        Self {
            inner: Arc::new(Inner {
                loops: Mutex::new(HashMap::new()),
                client,
                sessions,
                interval,
                linger,
                started: AtomicU64::new(0),
            }),
        }
    }

    /// Registers interest in `id`'s upstream status, starting its loop if none runs.
    pub fn interest(&self, id: &QrCodeId) -> Arc<Loop> {
        let mut loops = lock(&self.inner.loops);
        if let Some(lp) = loops.get(id.as_str()) {
            lp.touch();
            return lp.clone();
        }
        let (health, _) = watch::channel(None);
        let lp = Arc::new(Loop {
            waiters: AtomicUsize::new(0),
            last_interest: Mutex::new(Instant::now()),
            health,
        });
        loops.insert(id.as_str().to_owned(), lp.clone());
        drop(loops);
        self.inner.started.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(run(self.inner.clone(), id.clone(), lp.clone()));
        lp
    }

    /// Registers a waiter: the loop runs at least until the guard is dropped.
    pub fn wait(&self, id: &QrCodeId) -> WaitGuard {
        let loops = lock(&self.inner.loops);
        let lp = match loops.get(id.as_str()) {
            Some(lp) => {
                lp.waiters.fetch_add(1, Ordering::AcqRel);
                lp.clone()
            }
            None => {
                drop(loops);
                let lp = self.interest(id);
                lp.waiters.fetch_add(1, Ordering::AcqRel);
                lp
            }
        };
        WaitGuard { lp }
    }

    /// Loops running now.
    pub fn live(&self) -> usize {
        lock(&self.inner.loops).len()
    }

    /// Loops started since the provider was built.
    pub fn started(&self) -> u64 {
        self.inner.started.load(Ordering::Relaxed)
    }
}

impl Inner {
    /// Removes the loop if nobody is interested any more; under the registry lock, so that an
    /// interest registered concurrently either keeps this loop or starts a new one.
    fn retire_if_idle(&self, id: &QrCodeId, lp: &Arc<Loop>) -> bool {
        let mut loops = lock(&self.loops);
        let idle = lp.waiters.load(Ordering::Acquire) == 0
            && lock(&lp.last_interest).elapsed() >= self.linger;
        if idle {
            remove(&mut loops, id, lp);
        }
        idle
    }

    fn retire(&self, id: &QrCodeId, lp: &Arc<Loop>) {
        remove(&mut lock(&self.loops), id, lp);
    }
}

fn remove(loops: &mut HashMap<String, Arc<Loop>>, id: &QrCodeId, lp: &Arc<Loop>) {
    if loops.get(id.as_str()).is_some_and(|l| Arc::ptr_eq(l, lp)) {
        loops.remove(id.as_str());
    }
}

async fn run(inner: Arc<Inner>, id: QrCodeId, lp: Arc<Loop>) {
    tracing::debug!("Authing status loop started");
    loop {
        if !step(&inner, &id, &lp).await {
            inner.retire(&id, &lp);
            break;
        }
        tokio::time::sleep(inner.interval).await;
        if inner.retire_if_idle(&id, &lp) {
            break;
        }
    }
    tracing::debug!("Authing status loop stopped");
}

/// One upstream check; returns whether the loop should go on.
async fn step(inner: &Inner, id: &QrCodeId, lp: &Loop) -> bool {
    let record = match inner.sessions.load(id).await {
        Ok(record) => record,
        Err(Error::UnknownQrCode) => return false,
        Err(e) => {
            tracing::warn!(error = %e, "Authing status loop: session store failed");
            return true;
        }
    };
    let now = inner.sessions.clock().now_millis();
    if !matches!(
        record.effective_state(now),
        QrState::Pending | QrState::Scanned
    ) {
        return false;
    }
    let Some(upstream) = UpstreamState::read(&record) else {
        tracing::error!("Authing status loop: session without Authing QR id");
        return false;
    };
    let outcome = inner.client.check(&upstream.qr).await;
    let result = match outcome {
        Ok(status) => {
            lp.health.send_replace(None);
            apply(inner, id, status).await
        }
        Err(Error::UnknownQrCode) => {
            lp.health.send_replace(None);
            end(inner, id, true).await.map(|_| false)
        }
        Err(Error::ExpiredQrCode) => {
            lp.health.send_replace(None);
            end(inner, id, false).await.map(|_| false)
        }
        Err(e) => {
            let health = match e {
                Error::UpstreamTimeout => Health::Timeout,
                other => Health::Unavailable(other.to_string()),
            };
            lp.health.send_replace(Some(health));
            Ok(true)
        }
    };
    match result {
        Ok(go_on) => go_on,
        Err(e) => {
            tracing::warn!(error = %e, "Authing status loop: could not record the change");
            true
        }
    }
}

fn scanner(user: UserInfo) -> Scanner {
    Scanner {
        subject: UPSTREAM_SUBJECT.to_owned(),
        user,
        claims: Default::default(),
        ip: None,
    }
}

/// Writes Authing's status into the qrauth session; returns whether to keep polling.
async fn apply(inner: &Inner, id: &QrCodeId, status: UpstreamStatus) -> Result<bool> {
    let lifetimes = *inner.sessions.lifetimes();
    let confirm_ttl = millis(lifetimes.confirm_token);
    let ticket_ttl = millis(lifetimes.ticket);
    match status {
        UpstreamStatus::Pending => Ok(true),
        UpstreamStatus::Scanned(user) => {
            let token = ConfirmToken::generate()?;
            let scanned = inner
                .sessions
                .update(id, |r, now| match r.state {
                    QrState::Pending => r.scan(now, scanner(user.clone()), &token, confirm_ttl),
                    _ => Err(Error::Conflict("already scanned".into())),
                })
                .await;
            ignore_conflict(scanned)?;
            Ok(true)
        }
        UpstreamStatus::Authorized { ticket, user } => {
            let token = ConfirmToken::generate()?;
            let mut nonce = [0u8; 16];
            os_random(&mut nonce)?;
            let confirmed = inner
                .sessions
                .update(id, |r, now| {
                    let scanned: SessionRecord = match r.state {
                        QrState::Pending => {
                            r.scan(now, scanner(user.clone()), &token, confirm_ttl)?
                        }
                        QrState::Scanned => {
                            // The confirm token is qrauth-internal here (Authing's app confirms
                            // at Authing): re-arm it for this one transition.
                            let mut s = r.clone();
                            s.confirm_token_hash = Some(token.hash());
                            s.confirm_expire_at_ms = now.saturating_add(confirm_ttl);
                            s
                        }
                        _ => return Err(Error::Conflict("not waiting for Authing".into())),
                    };
                    let mut next = scanned
                        .confirm(now, UPSTREAM_SUBJECT, &token, nonce, ticket_ttl)
                        .map_err(|refusal| refusal.error)?;
                    next.provider_data = UpstreamState::read(r)
                        .map(|mut u| {
                            u.ticket = Some(ticket.clone());
                            u.write()
                        })
                        .transpose()?;
                    Ok(next)
                })
                .await;
            ignore_conflict(confirmed)?;
            Ok(false)
        }
        UpstreamStatus::Cancelled => {
            let cancelled = inner
                .sessions
                .update(id, |r, _| match r.state {
                    QrState::Pending | QrState::Scanned => r.revoke(),
                    _ => Err(Error::Conflict("not waiting for Authing".into())),
                })
                .await;
            ignore_conflict(cancelled)?;
            Ok(false)
        }
        UpstreamStatus::Expired => end(inner, id, false).await.map(|_| false),
    }
}

/// Ends a session whose Authing QR expired (or vanished: `lost`).
async fn end(inner: &Inner, id: &QrCodeId, lost: bool) -> Result<()> {
    let ended = inner
        .sessions
        .update(id, |r, now| {
            if !matches!(r.state, QrState::Pending | QrState::Scanned) {
                return Err(Error::Conflict("not waiting for Authing".into()));
            }
            let mut due = r.clone();
            due.expire_at_ms = due.expire_at_ms.min(now);
            let mut next = due.expire(now)?;
            if lost {
                next.provider_data = UpstreamState::read(r)
                    .map(|mut u| {
                        u.lost = true;
                        u.write()
                    })
                    .transpose()?;
            }
            Ok(next)
        })
        .await;
    ignore_conflict(ended)
}

fn ignore_conflict(result: Result<SessionRecord>) -> Result<()> {
    match result {
        Ok(_) | Err(Error::Conflict(_) | Error::ExpiredQrCode | Error::UnknownQrCode) => Ok(()),
        Err(e) => Err(e),
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}
