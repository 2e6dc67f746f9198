//! The session flow the service owns: create, read with binding checks, wait, scan, confirm,
//! cancel, redeem tickets, and the transitions an upstream IdP reports.
//!
//! Every provider goes through this one flow, so binding, single use and atomicity are the same
//! for all of them. Providers never touch it directly: phone-direct providers get it through
//! the service's phone routes, upstream-confirmed ones through [`UpstreamControl`].

mod rotation;
mod upstream;

pub(crate) use rotation::{QrRotation, ShownQr};
pub use upstream::{OwnedUpstreamSession, UpstreamControl};
pub(crate) use upstream::{UpstreamLoops, waits_for_upstream};

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::SharedClock;
use crate::error::{Error, Result};
use crate::lifetimes::Lifetimes;
use crate::metrics::Metrics;
use crate::record::{Initiator, Refusal, Scanner, SessionRecord};
use crate::secret::{BindingSecret, ConfirmToken, QrCodeId, Ticket, os_random};
use crate::store::SessionStore;
use crate::types::{QrState, QrStatus};

/// Transitions retried this many times when other writers keep winning the compare-and-set.
const MAX_CAS_ATTEMPTS: usize = 16;

/// The QR login flow over a session store. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SessionFlow {
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    lifetimes: Lifetimes,
    number_matching: bool,
    rotation: QrRotation,
    metrics: Metrics,
}

impl SessionFlow {
    pub(crate) fn new(
        store: Arc<dyn SessionStore>,
        clock: SharedClock,
        lifetimes: Lifetimes,
        number_matching: bool,
        rotation_key: crate::BindingKey,
    ) -> Self {
        Self {
            store,
            clock,
            rotation: QrRotation::new(rotation_key, lifetimes.qr_rotation),
            lifetimes,
            number_matching,
            metrics: Metrics::default(),
        }
    }

    /// Labels the flow's metrics (and those of whoever records through [`Self::metrics`]).
    pub(crate) fn with_metrics_label(mut self, provider: &'static str) -> Self {
        self.metrics = Metrics::new(provider);
        self
    }

    pub(crate) fn metrics(&self) -> Metrics {
        self.metrics
    }

    pub(crate) fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    pub(crate) fn rotation(&self) -> &QrRotation {
        &self.rotation
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// Creates a pending session `id` bound to `binding`. With `qr_content` (providers whose
    /// phone app scans through qrauth) its QR rotates.
    pub(crate) async fn create(
        &self,
        id: QrCodeId,
        binding: &BindingSecret,
        initiator: Initiator,
        nonce: Option<String>,
        (provider_data, qr_content): (Option<String>, Option<String>),
    ) -> Result<SessionRecord> {
        let now = self.now();
        let mut record = SessionRecord::new(
            id,
            binding.hash(),
            now,
            millis(self.lifetimes.qr_code),
            initiator,
        );
        record.nonce = nonce;
        record.provider_data = provider_data;
        record.qr_content = qr_content;
        let retain = record.expire_at_ms
            + millis(self.lifetimes.ticket)
            + millis(self.lifetimes.retention_grace);
        self.store.insert(&record, retain).await?;
        self.metrics.started();
        tracing::debug!(state = "pending", "QR session created");
        Ok(record)
    }

    /// Loads a session, for callers that have already authenticated themselves (phone side,
    /// upstream loops). Browser-facing reads go through [`SessionFlow::status`].
    pub(crate) async fn load(&self, id: &QrCodeId) -> Result<SessionRecord> {
        self.store.load(id).await?.ok_or(Error::UnknownQrCode)
    }

    /// Checks that `binding` is the session's binding secret, in constant time.
    ///
    /// Unknown sessions and foreign bindings give the same [`Error::NotBound`], so a browser
    /// cannot learn whether an id exists.
    fn bound(
        &self,
        record: Option<SessionRecord>,
        binding: &BindingSecret,
    ) -> Result<SessionRecord> {
        match record {
            Some(r) if r.binding_hash.ct_eq(&binding.hash()) => Ok(r),
            _ => Err(Error::NotBound),
        }
    }

    /// What the bound browser may know about the session.
    pub(crate) async fn status(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus> {
        let record = self.bound(self.store.load(id).await?, binding)?;
        self.view(record, binding).await
    }

    /// Waits until the session's version differs from `since_version` (the current one when
    /// `None`), or it expires, or `deadline` passes, then answers like
    /// [`SessionFlow::status`]. One store read before waiting; an unbound caller never holds a
    /// waiter (the store returns at once for a foreign binding).
    pub(crate) async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since_version: Option<u64>,
        deadline: Instant,
    ) -> Result<QrStatus> {
        let hash = binding.hash();
        let waited_from = self.now();
        let record = self
            .store
            .wait_for_change(id, &hash, since_version, deadline)
            .await?;
        let record = self.bound(record, binding)?;
        self.metrics.delivered(
            &record,
            since_version,
            waited_from,
            self.now(),
            self.lifetimes.ticket,
        );
        self.view(record, binding).await
    }

    async fn view(&self, record: SessionRecord, binding: &BindingSecret) -> Result<QrStatus> {
        let now = self.now();
        let state = record.effective_state(now);
        if state == QrState::Expired {
            self.metrics.expired();
            return Err(if record.upstream_lost {
                Error::UnknownQrCode
            } else {
                Error::ExpiredQrCode
            });
        }
        let ticket = match (state, record.ticket_nonce) {
            (QrState::Confirmed, Some(nonce)) => {
                let ticket = Ticket::derive(binding, &record.id, &nonce);
                self.store
                    .put_ticket(&ticket.hash(), &record.id, record.ticket_expire_at_ms)
                    .await?;
                Some(ticket)
            }
            _ => None,
        };
        let user = match state {
            QrState::Scanned | QrState::Confirmed => {
                record.scanner.as_ref().map(|s| s.user.clone())
            }
            _ => None,
        };
        let match_code = match state {
            QrState::Scanned => record.match_code.clone(),
            _ => None,
        };
        let expire_at_ms = record.deadline_ms();
        let qr = match (state, &record.qr_content) {
            (QrState::Pending, Some(content)) => {
                Some(self.rotation.shown(&record.id, content, now))
            }
            _ => None,
        };
        Ok(QrStatus {
            id: record.id,
            state,
            version: record.version,
            user,
            ticket,
            match_code,
            expire_at_ms,
            qr,
        })
    }

    /// Applies `transition` with compare-and-set, re-reading and retrying when another writer
    /// won the race. The transition decides on the freshest record each time, so an action
    /// that became illegal meanwhile fails instead of overwriting.
    async fn transition<F>(&self, id: &QrCodeId, mut transition: F) -> Result<SessionRecord>
    where
        F: FnMut(&SessionRecord, u64) -> std::result::Result<SessionRecord, Refusal>,
    {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let current = self.load(id).await?;
            match transition(&current, self.now()) {
                Ok(next) => {
                    if self.store.compare_and_swap(current.version, &next).await? {
                        self.metrics.transition(current.state, next.state);
                        tracing::debug!(
                            from = current.state.as_str(),
                            to = next.state.as_str(),
                            version = next.version,
                            "QR session transition"
                        );
                        return Ok(next);
                    }
                }
                Err(refusal) if !refusal.counts_as_failed_attempt => return Err(refusal.error),
                Err(refusal) => {
                    let counted = current.failed_attempt();
                    if self
                        .store
                        .compare_and_swap(current.version, &counted)
                        .await?
                    {
                        self.metrics.transition(current.state, counted.state);
                        return Err(refusal.error);
                    }
                }
            }
        }
        Err(Error::Conflict(
            "the QR code is changing too fast, try again".into(),
        ))
    }

    /// `pending → scanned` for `scanner`; returns the record and the phone's confirm token.
    /// `needs_code` decides, from the session, whether this login needs number matching when
    /// the flow does not require it for every login.
    pub(crate) async fn scan(
        &self,
        id: &QrCodeId,
        scan_token: Option<&str>,
        scanner: Scanner,
        mut needs_code: impl FnMut(&SessionRecord) -> bool,
    ) -> Result<(SessionRecord, ConfirmToken)> {
        let token = ConfirmToken::generate()?;
        let ttl = millis(self.lifetimes.confirm_token);
        let code = match_code()?;
        let record = self
            .transition(id, |r, now| {
                let mut next = r.scan(now, scanner.clone(), &token, ttl)?;
                // Only the QR on screen scans: a relayed copy goes stale with the next rotation.
                if r.qr_content.is_some() {
                    self.rotation.check(&r.id, scan_token, now)?;
                }
                if self.number_matching || needs_code(r) {
                    next.match_code = Some(code.clone());
                }
                Ok(next)
            })
            .await?;
        Ok((record, token))
    }

    /// `scanned → confirmed` by the scanning user `subject` holding `token` (and, with number
    /// matching, the code the browser shows).
    pub(crate) async fn confirm(
        &self,
        id: &QrCodeId,
        subject: &str,
        token: &ConfirmToken,
        match_code: Option<&str>,
    ) -> Result<SessionRecord> {
        let mut nonce = [0u8; 16];
        os_random(&mut nonce)?;
        let ttl = millis(self.lifetimes.ticket);
        self.transition(id, |r, now| {
            let next = r.confirm(now, subject, token, nonce, ttl)?;
            r.check_match_code(match_code)?;
            Ok(next)
        })
        .await
    }

    /// `scanned → cancelled` by the scanning user.
    pub(crate) async fn cancel(
        &self,
        id: &QrCodeId,
        subject: &str,
        token: &ConfirmToken,
    ) -> Result<SessionRecord> {
        self.transition(id, |r, now| r.cancel(now, subject, token))
            .await
    }

    /// Redeems a ticket presented with `binding`: takes the ticket (exactly once), checks the
    /// binding, and moves the session to `consumed`. Returns the consumed record, whose
    /// `scanner` says who logged in, with what [`restore`](Self::restore) needs.
    ///
    /// A ticket presented with the wrong binding is burnt and answers [`Error::NotBound`].
    pub(crate) async fn redeem(
        &self,
        ticket: &Ticket,
        binding: &BindingSecret,
    ) -> Result<Redeemed> {
        // One round trip takes the handle and reads the session; one more consumes it.
        let Some(record) = self.store.take_ticket(&ticket.hash()).await? else {
            return Err(Error::InvalidTicket);
        };
        let id = record.id.clone();
        if !record.binding_hash.ct_eq(&binding.hash()) {
            // Another browser holds this session's ticket: the login is compromised. The ticket
            // is already burnt; cancel the session so that a re-read cannot mint it again.
            tracing::warn!("ticket presented by a browser not bound to its session; cancelled");
            let _ = self.transition(&id, |r, _| Ok(r.revoke()?)).await;
            return Err(Error::NotBound);
        }
        // The handle matched, but it must also be this session's current ticket.
        let Some(nonce) = record
            .ticket_nonce
            .filter(|nonce| Ticket::derive(binding, &id, nonce).ct_eq(ticket))
        else {
            return Err(Error::InvalidTicket);
        };
        let consume = |r: &SessionRecord, now| match r.consume(now) {
            Ok(next) => Ok(next),
            Err(Error::ExpiredQrCode | Error::Conflict(_)) => {
                Err(Refusal::from(Error::InvalidTicket))
            }
            Err(other) => Err(other.into()),
        };
        let next = consume(&record, self.now()).map_err(|r| r.error)?;
        let record = if self.store.compare_and_swap(record.version, &next).await? {
            self.metrics.transition(record.state, next.state);
            next
        } else {
            // Another writer moved the session between the read and the write: decide again
            // on the freshest record.
            self.transition(&id, consume).await?
        };
        Ok(Redeemed { record, nonce })
    }

    /// Undoes a redemption whose exchange failed before any token reached the browser (the
    /// upstream IdP or the store was unavailable): the session is `confirmed` again and the
    /// same ticket, still bound to the same browser, may be presented again until it expires.
    pub(crate) async fn restore(&self, ticket: &Ticket, redeemed: &Redeemed) -> Result<()> {
        let version = redeemed.record.version;
        let restored = self
            .transition(&redeemed.record.id, |r, now| {
                Ok(r.unconsume(now, version, redeemed.nonce)?)
            })
            .await?;
        self.store
            .put_ticket(&ticket.hash(), &restored.id, restored.ticket_expire_at_ms)
            .await
    }

    /// Applies what an upstream IdP reports; `Ok(false)` when the session had already moved
    /// on (a conflict is not an error here: the upstream and the session raced, the session
    /// won).
    pub(crate) async fn apply_upstream(
        &self,
        id: &QrCodeId,
        event: &crate::provider::UpstreamEvent,
    ) -> Result<bool> {
        use crate::provider::UpstreamEvent;
        let ticket_ttl = millis(self.lifetimes.ticket);
        let mut nonce = [0u8; 16];
        if matches!(event, UpstreamEvent::Confirmed(_)) {
            os_random(&mut nonce)?;
        }
        let applied = self
            .transition(id, |r, now| {
                let next = match event {
                    UpstreamEvent::Pending => return Err(Error::Conflict(String::new()).into()),
                    UpstreamEvent::Scanned(user) => {
                        if r.state != QrState::Pending {
                            return Err(Error::Conflict("already scanned".into()).into());
                        }
                        r.scan_upstream(
                            now,
                            upstream_scanner(None, user.clone(), Default::default()),
                        )?
                    }
                    UpstreamEvent::Confirmed(login) => {
                        let mut next = r.confirm_upstream(
                            now,
                            upstream_scanner(
                                login.subject.clone(),
                                login.user.clone(),
                                login.claims.clone(),
                            ),
                            nonce,
                            ticket_ttl,
                        )?;
                        if login.provider_data.is_some() {
                            next.provider_data = login.provider_data.clone();
                        }
                        next
                    }
                    UpstreamEvent::Cancelled => match r.state {
                        QrState::Pending | QrState::Scanned => r.revoke()?,
                        _ => return Err(Error::Conflict("not waiting upstream".into()).into()),
                    },
                    UpstreamEvent::Expired => r.end_upstream(now, false)?,
                    UpstreamEvent::Vanished => r.end_upstream(now, true)?,
                };
                Ok(next)
            })
            .await;
        match applied {
            Ok(_) => Ok(true),
            Err(Error::Conflict(_) | Error::ExpiredQrCode | Error::UnknownQrCode) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// How long a plain poll should wait before the next.
    pub(crate) fn poll_interval(&self) -> Duration {
        self.lifetimes.poll_interval
    }
}

fn upstream_scanner(
    subject: Option<String>,
    user: crate::types::UserInfo,
    claims: serde_json::Map<String, serde_json::Value>,
) -> Scanner {
    Scanner {
        subject: subject.unwrap_or_default(),
        user,
        claims,
        ip: None,
    }
}

/// A uniformly random two-digit code from the OS CSPRNG.
fn match_code() -> Result<String> {
    loop {
        let mut byte = [0u8; 1];
        os_random(&mut byte)?;
        // 200 = the largest multiple of 100 below 256: no modulo bias.
        if byte[0] < 200 {
            return Ok(format!("{:02}", byte[0] % 100));
        }
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// A redeemed ticket: the consumed record, and the nonce its ticket was derived from (to
/// restore it if the exchange fails).
pub(crate) struct Redeemed {
    pub(crate) record: SessionRecord,
    nonce: [u8; 16],
}
