//! Providers whose users confirm at the IdP: the driver the service asks, and what it answers.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Result;
use crate::secret::QrCodeId;
use crate::types::{QrState, UserInfo};

/// A session waiting for the IdP, as an [`UpstreamDriver`] sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct UpstreamSession<'a> {
    /// The session id.
    pub id: &'a QrCodeId,
    /// `Pending` or `Scanned`.
    pub state: QrState,
    /// What the provider kept when the session started (the IdP's QR id, a device code).
    pub provider_data: Option<&'a str>,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
    /// When the QR stops being scannable, Unix ms.
    pub expire_at_ms: u64,
}

/// A login the IdP confirmed.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct UpstreamLogin {
    /// The user's subject, when the IdP names it now (otherwise it comes with the tokens).
    pub subject: Option<String>,
    /// What the bound browser may show about the user.
    pub user: UserInfo,
    /// Extra claims for the provider's `issue_tokens`.
    pub claims: Map<String, Value>,
    /// Replaces the session's provider data (e.g. to keep the IdP's ticket server-side), when
    /// set.
    pub provider_data: Option<String>,
}

impl UpstreamLogin {
    /// A confirmed login showing `user`.
    pub fn new(user: UserInfo) -> Self {
        Self {
            user,
            ..Self::default()
        }
    }

    /// Names the user's subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Keeps `data` with the session instead of what [`start`](super::QrAuthProvider::start)
    /// stored.
    pub fn provider_data(mut self, data: impl Into<String>) -> Self {
        self.provider_data = Some(data.into());
        self
    }
}

/// What the IdP says about a session.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum UpstreamEvent {
    /// Nothing new.
    Pending,
    /// The IdP's app scanned the QR; the browser may show the user.
    Scanned(UserInfo),
    /// The user confirmed at the IdP: the bound browser gets qrauth's ticket.
    Confirmed(UpstreamLogin),
    /// The user refused at the IdP.
    Cancelled,
    /// The IdP's side of the session expired.
    Expired,
    /// The IdP no longer knows the session: the browser is answered `unknown_qrcode`.
    Vanished,
}

/// Asks the IdP where a session stands, for providers whose users confirm at the IdP.
///
/// The service runs one loop per live session that a browser waits on (however many tabs),
/// calls [`check`](UpstreamDriver::check) every
/// [`session_interval`](UpstreamDriver::session_interval) (by default
/// [`interval`](UpstreamDriver::interval)), and writes what it answers into the session. With
/// several replicas on one shared store, each session's loop holds a lease in the store
/// ([`SessionStore::lease`](crate::store::SessionStore::lease)): only the replica holding it
/// calls `check`, the others follow the session through the store. A check that fails with
/// [`Error::SlowDown`](crate::Error::SlowDown) lengthens the interval of that loop by its
/// `retry_after` (RFC 8628 §3.5); other errors are shown to the waiting browsers
/// (`upstream_unavailable`) until a check succeeds again.
#[async_trait]
pub trait UpstreamDriver: Send + Sync {
    /// Time between two checks of one session.
    fn interval(&self) -> Duration;

    /// Time between two checks of `session`, for IdPs that say per session how often they
    /// may be asked (the RFC 8628 `interval` of a device authorization, kept in its provider
    /// data). Asked once when a session's loop starts; defaults to
    /// [`interval`](Self::interval).
    fn session_interval(&self, session: &UpstreamSession<'_>) -> Duration {
        let _ = session;
        self.interval()
    }

    /// One check of `session` at the IdP.
    async fn check(&self, session: UpstreamSession<'_>) -> Result<UpstreamEvent>;
}
