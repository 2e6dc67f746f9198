//! Sessions that an upstream IdP confirms: the public control handle, and one status loop per
//! live session, shared by every browser request that waits on it.
//!
//! A browser's poll, long-poll or event stream never calls the IdP itself: it registers
//! interest in its session, which starts (or keeps alive) the session's one loop. The loop asks
//! the provider's [`UpstreamDriver`](crate::provider::UpstreamDriver) every interval, writes
//! each change into the session with a compare-and-set (which wakes every waiter through the
//! store, across replicas with Redis), and stops when the session leaves `pending`/`scanned`
//! or when nobody has shown interest for a while.
//!
//! Loops live in this process. With several replicas each replica that has waiting browsers
//! runs its own loop for the session, but only the one holding the session's lease in the
//! store (`SessionStore::lease`, renewed every round) asks the IdP; the others only re-read the
//! session, and take over when the holder's loop stops (it releases the lease) or its replica
//! dies (the lease lapses). Writes stay consistent because every transition is a
//! compare-and-set on the stored record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::SessionFlow;
use crate::error::{Error, Result};
use crate::provider::{QrAuthProvider, UpstreamEvent, UpstreamSession};
use crate::secret::QrCodeId;
use crate::types::QrState;

/// Moves sessions on behalf of an upstream IdP: what a provider whose users confirm at the IdP
/// (Authing, an RFC 8628 device grant, a webhook) uses to report the IdP's answer.
///
/// Got from [`QrAuthService::upstream`](crate::QrAuthService::upstream). Every call is a
/// compare-and-set on the stored session: a report that comes after the session moved on (it
/// was cancelled, expired or already confirmed) changes nothing and answers `Ok(false)`.
/// Cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # use std::sync::Arc;
/// # use http::Method;
/// # use qrauth_core::{ApiRequest, BuiltinProvider, PhoneAuthenticator, PhoneUser, QrAuthService, Route};
/// # struct Nobody;
/// # #[async_trait::async_trait]
/// # impl PhoneAuthenticator for Nobody {
/// #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> {
/// #         Err(qrauth_core::Error::Unauthenticated)
/// #     }
/// # }
/// # let provider = BuiltinProvider::builder(Arc::new(Nobody))
/// #     .algorithm(qrauth_core::SigningAlgorithm::Es256)
/// #     .build()?;
/// # let service = QrAuthService::builder(Arc::new(provider)).build()?;
/// # let created = service.handle(Route::Generate, ApiRequest::new(Method::POST)).await;
/// # let body: serde_json::Value = serde_json::from_slice(created.body_bytes().unwrap()).unwrap();
/// # let id = QrCodeId::parse(body["qrcodeId"].as_str().unwrap())?;
/// use qrauth_core::provider::{UpstreamEvent, UpstreamLogin};
/// use qrauth_core::{QrCodeId, QrState, UserInfo};
///
/// // The IdP tells us (a webhook, say) that alice confirmed the session `id`.
/// let control = service.upstream();
/// let login = UpstreamLogin::new(UserInfo::default()).subject("alice");
/// assert!(control.report(&id, UpstreamEvent::Confirmed(login)).await?);
/// let session = control.session(&id).await?.expect("the session exists");
/// assert_eq!(session.state, QrState::Confirmed);
///
/// // A late report changes nothing: the session already moved on.
/// assert!(!control.report(&id, UpstreamEvent::Cancelled).await?);
/// // Neither does a report about a session that does not exist.
/// let unknown = QrCodeId::generate()?;
/// assert!(control.session(&unknown).await?.is_none());
/// assert!(!control.report(&unknown, UpstreamEvent::Cancelled).await?);
/// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct UpstreamControl {
    flow: SessionFlow,
}

impl std::fmt::Debug for UpstreamControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamControl").finish_non_exhaustive()
    }
}

impl UpstreamControl {
    pub(crate) fn new(flow: SessionFlow) -> Self {
        Self { flow }
    }

    /// Applies what the IdP says about session `id`; returns whether the session moved.
    pub async fn report(&self, id: &QrCodeId, event: UpstreamEvent) -> Result<bool> {
        self.flow.apply_upstream(id, &event).await
    }

    /// The session as an upstream driver sees it, or `None` if it is unknown.
    pub async fn session(&self, id: &QrCodeId) -> Result<Option<OwnedUpstreamSession>> {
        match self.flow.load(id).await {
            Ok(record) => Ok(Some(OwnedUpstreamSession {
                state: record.effective_state(self.flow.clock().now_millis()),
                provider_data: record.provider_data,
                id: record.id,
            })),
            Err(Error::UnknownQrCode) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A session read through [`UpstreamControl::session`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct OwnedUpstreamSession {
    /// The session id.
    pub id: QrCodeId,
    /// Its state now.
    pub state: QrState,
    /// What the provider stored when the session started.
    pub provider_data: Option<String>,
}

/// The last upstream failure of a loop, shown to browsers until a check succeeds again.
#[derive(Debug, Clone)]
enum Health {
    Timeout,
    Unavailable(String),
}

impl Health {
    fn to_error(&self) -> Error {
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
    pub(crate) fn failure(&self) -> Option<Error> {
        self.health.borrow().as_ref().map(Health::to_error)
    }

    /// Resolves with the next upstream failure (or the current one).
    pub(crate) async fn next_failure(&self) -> Error {
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
    pub(crate) lp: Arc<Loop>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        self.lp.touch();
        self.lp.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Inner {
    loops: Mutex<HashMap<String, Arc<Loop>>>,
    provider: Arc<dyn QrAuthProvider>,
    flow: SessionFlow,
    linger: Duration,
    started: AtomicU64,
}

/// The registry of upstream loops of one service. Cheap to clone.
#[derive(Clone)]
pub(crate) struct UpstreamLoops {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl UpstreamLoops {
    pub(crate) fn new(provider: Arc<dyn QrAuthProvider>, flow: SessionFlow) -> Self {
        let interval = provider
            .capabilities()
            .upstream
            .map_or(Duration::from_secs(1), |d| d.interval());
        // Plain polls come every `poll_interval`: keep the loop over two of them.
        let linger =
            (flow.lifetimes().poll_interval * 2).max(interval * 3) + Duration::from_secs(1);
        Self {
            inner: Arc::new(Inner {
                loops: Mutex::new(HashMap::new()),
                provider,
                flow,
                linger,
                started: AtomicU64::new(0),
            }),
        }
    }

    /// Registers interest in `id`'s upstream status, starting its loop if none runs.
    pub(crate) fn interest(&self, id: &QrCodeId) -> Arc<Loop> {
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
    pub(crate) fn wait(&self, id: &QrCodeId) -> WaitGuard {
        let lp = self.interest(id);
        lp.waiters.fetch_add(1, Ordering::AcqRel);
        WaitGuard { lp }
    }

    /// Loops running now.
    pub(crate) fn live(&self) -> usize {
        lock(&self.inner.loops).len()
    }

    /// Loops started since the service was built.
    pub(crate) fn started(&self) -> u64 {
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

/// A lease outlives one round of its loop (a check plus the wait) by this much, so that a
/// slow check never lets another replica in; it is also how long another replica waits to take
/// over from a replica that died while holding it.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

async fn run(inner: Arc<Inner>, id: QrCodeId, lp: Arc<Loop>) {
    let Some(driver) = inner.provider.capabilities().upstream else {
        inner.retire(&id, &lp);
        return;
    };
    let base = driver.interval();
    // Unique per loop: a loop that retired and its successor in this process never share one.
    let lease = match crate::secret::random_token(16) {
        Ok(holder) => Lease {
            name: format!("up:{}", id.as_str()),
            holder,
        },
        Err(e) => {
            tracing::error!(error = %e, "upstream status loop: no lease holder id");
            inner.retire(&id, &lp);
            return;
        }
    };
    let mut pace = Pace {
        interval: None,
        slowed: Duration::ZERO,
    };
    let _running = inner.flow.metrics().upstream_loop();
    tracing::debug!("upstream status loop started");
    loop {
        match step(&inner, &id, &lp, &lease, &mut pace, base).await {
            Step::Stop => {
                inner.retire(&id, &lp);
                break;
            }
            Step::Continue => {}
            // RFC 8628 §3.5: every `slow_down` lengthens the interval for all later checks.
            Step::SlowDown(by) => pace.slowed += by,
        }
        tokio::time::sleep(pace.wait(base)).await;
        if inner.retire_if_idle(&id, &lp) {
            break;
        }
    }
    // Hand over at once to a replica whose browsers still wait, rather than after the TTL.
    if let Err(e) = inner
        .flow
        .store()
        .release_lease(&lease.name, &lease.holder)
        .await
    {
        tracing::debug!(error = %e, "upstream status loop: could not release its lease");
    }
    tracing::debug!("upstream status loop stopped");
}

/// The store lease that makes one loop, across replicas, the one that asks the IdP.
struct Lease {
    name: String,
    holder: String,
}

/// How often a loop asks: the session's interval (known after the first read of the
/// session) plus every `slow_down`.
struct Pace {
    interval: Option<Duration>,
    slowed: Duration,
}

impl Pace {
    fn wait(&self, base: Duration) -> Duration {
        self.interval.unwrap_or(base) + self.slowed
    }
}

enum Step {
    Continue,
    SlowDown(Duration),
    Stop,
}

/// One upstream check, if this loop holds the session's lease.
async fn step(
    inner: &Inner,
    id: &QrCodeId,
    lp: &Loop,
    lease: &Lease,
    pace: &mut Pace,
    base: Duration,
) -> Step {
    let Some(driver) = inner.provider.capabilities().upstream else {
        return Step::Stop;
    };
    let record = match inner.flow.load(id).await {
        Ok(record) => record,
        Err(Error::UnknownQrCode) => return Step::Stop,
        Err(e) => {
            tracing::warn!(error = %e, "upstream status loop: session store failed");
            return Step::Continue;
        }
    };
    let state = record.effective_state(inner.flow.clock().now_millis());
    if !waits_for_upstream(state) {
        return Step::Stop;
    }
    let session = UpstreamSession {
        id: &record.id,
        state,
        provider_data: record.provider_data.as_deref(),
        created_at_ms: record.created_at_ms,
        expire_at_ms: record.expire_at_ms,
    };
    if pace.interval.is_none() {
        pace.interval = Some(driver.session_interval(&session));
    }
    let ttl = pace.wait(base) * 2 + LEASE_MARGIN;
    match inner
        .flow
        .store()
        .lease(&lease.name, &lease.holder, ttl)
        .await
    {
        Ok(true) => {}
        // Another replica asks the IdP; its writes reach this replica's browsers through the
        // store.
        Ok(false) => return Step::Continue,
        Err(e) => {
            tracing::warn!(error = %e, "upstream status loop: lease failed");
            return Step::Continue;
        }
    }
    let event = match inner
        .flow
        .metrics()
        .upstream_check(driver.check(session))
        .await
    {
        Ok(event) => {
            lp.health.send_replace(None);
            event
        }
        Err(Error::SlowDown { retry_after }) => {
            lp.health.send_replace(None);
            return Step::SlowDown(retry_after);
        }
        Err(e) => {
            let health = match e {
                Error::UpstreamTimeout => Health::Timeout,
                other => Health::Unavailable(other.to_string()),
            };
            lp.health.send_replace(Some(health));
            return Step::Continue;
        }
    };
    let go_on = matches!(event, UpstreamEvent::Pending | UpstreamEvent::Scanned(_));
    if !matches!(event, UpstreamEvent::Pending)
        && let Err(e) = inner.flow.apply_upstream(id, &event).await
    {
        tracing::warn!(error = %e, "upstream status loop: could not record the change");
        return Step::Continue;
    }
    if go_on { Step::Continue } else { Step::Stop }
}

/// The states in which the IdP, not qrauth, decides what happens next.
pub(crate) fn waits_for_upstream(state: QrState) -> bool {
    matches!(state, QrState::Pending | QrState::Scanned)
}
