//! Graceful shutdown: held connections (long-polls, event streams) are let go at once, so that
//! a deploy does not wait for them and the browser moves to another replica.
//!
//! After [`QrAuthService::shutdown`], a pending long-poll answers at once with the current
//! status (the browser re-polls, through the load balancer, on a replica that stays), and an
//! event stream sends `event: reconnect` (data `{}`) and ends (the widget reopens it after a
//! short jittered delay). Every other route keeps working while the server drains: a confirm
//! that arrives now is one atomic store transition, applied or not, and the adapters answer
//! with `Connection: close` so that no connection stays idle on a replica that is leaving.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::QrAuthService;

/// The default [shutdown grace](crate::QrAuthServiceBuilder::shutdown_grace).
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_millis(800);

/// The shutdown state shared by every clone of one service.
#[derive(Debug)]
pub(crate) struct Shutdown {
    grace: Duration,
    state: Arc<State>,
}

#[derive(Debug, Default)]
struct State {
    signalled: AtomicBool,
    /// Woken once, when shutdown begins.
    started: Notify,
    /// Requests of qrauth's routes that adapters have in flight (bodies included).
    in_flight: AtomicUsize,
    /// Woken whenever `in_flight` drops to zero.
    idle: Notify,
}

impl Shutdown {
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            grace,
            state: Arc::new(State::default()),
        }
    }

    pub(crate) fn is_signalled(&self) -> bool {
        self.state.signalled.load(Ordering::Acquire)
    }

    /// Resolves once shutdown has begun (at once if it already has).
    pub(crate) async fn started(&self) {
        let notified = self.state.started.notified();
        // `notify_waiters` reaches every `Notified` created before it, polled or not: checking
        // the flag after creating it loses no wake-up.
        if self.is_signalled() {
            return;
        }
        notified.await;
    }
}

/// One request of qrauth's routes in flight, from [`QrAuthService::request_in_flight`]; counted
/// until it is dropped. Adapters keep it alive with a streamed body, until the stream ends or
/// the client goes away.
#[must_use = "the request counts as in flight only while the guard lives"]
#[derive(Debug)]
pub struct InFlight {
    state: Arc<State>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.state.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.state.idle.notify_waiters();
        }
    }
}

impl QrAuthService {
    /// Begins a graceful shutdown (idempotent): pending long-polls answer at once with the
    /// current status, event streams send a final `event: reconnect` and end, long-polls and
    /// streams that start from now on do the same straight away, and the adapters answer every
    /// qrauth route with `Connection: close`. Other routes keep working, so a login in flight
    /// completes here or, after the browser re-polls, on another replica.
    ///
    /// Call it when the process is told to stop (SIGTERM), together with the web server's own
    /// graceful shutdown, and give the server at most [`shutdown_grace`](Self::shutdown_grace)
    /// to finish (docs/deploying.md has the actix-web recipe too):
    ///
    /// ```no_run
    /// # async fn demo(
    /// #     qrauth: qrauth_core::QrAuthService,
    /// #     listener: tokio::net::TcpListener,
    /// #     app: axum::Router,
    /// #     sigterm: impl std::future::Future<Output = ()>,
    /// # ) {
    /// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    /// let server = tokio::spawn(async move {
    ///     axum::serve(listener, app)
    ///         .with_graceful_shutdown(async move {
    ///             let _ = stopped.await;
    ///         })
    ///         .await
    /// });
    /// sigterm.await;
    /// qrauth.shutdown(); // long-polls answer now, event streams say "reconnect" and end
    /// let _ = stop.send(()); // axum stops accepting and closes idle connections
    /// let _ = tokio::time::timeout(qrauth.shutdown_grace(), server).await;
    /// # }
    /// ```
    pub fn shutdown(&self) {
        let state = &self.inner.shutdown.state;
        if !state.signalled.swap(true, Ordering::AcqRel) {
            tracing::info!("qrauth shutting down: releasing held connections");
            state.started.notify_waiters();
        }
    }

    /// Whether [`shutdown`](Self::shutdown) has been called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_signalled()
    }

    /// How long a server lets qrauth's requests in flight finish after
    /// [`shutdown`](Self::shutdown) before it drops their connections (default 800 ms; see
    /// [`QrAuthServiceBuilder::shutdown_grace`](crate::QrAuthServiceBuilder::shutdown_grace)).
    pub fn shutdown_grace(&self) -> Duration {
        self.inner.shutdown.grace
    }

    /// Requests of qrauth's routes in flight in the adapters (streamed bodies included): a
    /// gauge.
    pub fn requests_in_flight(&self) -> usize {
        self.inner.shutdown.state.in_flight.load(Ordering::Acquire)
    }

    /// For adapters: counts one request as in flight until the guard drops (keep it with a
    /// streamed body), for [`drained`](Self::drained).
    pub fn request_in_flight(&self) -> InFlight {
        let state = self.inner.shutdown.state.clone();
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight { state }
    }

    /// Resolves when no request of qrauth's routes is in flight any more, or when
    /// [`shutdown_grace`](Self::shutdown_grace) has passed since this call, whichever comes
    /// first. After [`shutdown`](Self::shutdown) held connections end at once, so this is
    /// quick unless a confirm or an exchange is still talking to the store.
    pub async fn drained(&self) {
        let state = &self.inner.shutdown.state;
        let wait = async {
            loop {
                let idle = state.idle.notified();
                if state.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(self.inner.shutdown.grace, wait).await;
    }
}
