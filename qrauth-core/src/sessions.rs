//! The login flow on top of a [`SessionStore`]: what every provider shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::lifetimes::Lifetimes;
use crate::secret::{BindingSecret, ConfirmToken, QrCodeId, Ticket, os_random};
use crate::session::{Initiator, Refusal, Scanner, SessionRecord};
use crate::store::{MemoryStore, SessionStore};
use crate::types::{QrState, QrStatus};

/// Transitions retried this many times when other writers keep winning the compare-and-set.
const MAX_CAS_ATTEMPTS: usize = 16;

/// The QR login flow over a session store: create, read with binding checks, wait, scan,
/// confirm, cancel, and redeem tickets.
///
/// Providers build on it so that binding, single use and atomicity are the same for all of
/// them. Cheap to clone.
///
/// ```
/// # tokio_test_block(async {
/// use qrauth_core::{BindingSecret, sessions::Sessions, session::Initiator};
///
/// let sessions = Sessions::in_memory();
/// let binding = BindingSecret::generate()?;
/// let record = sessions.create(&binding, Initiator::default(), None, None).await?;
/// let status = sessions.status(&record.id, &binding).await?;
/// assert_eq!(status.state, qrauth_core::QrState::Pending);
/// # Ok::<_, qrauth_core::Error>(()) });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn SessionStore>,
    clock: SharedClock,
    lifetimes: Lifetimes,
    number_matching: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("lifetimes", &self.lifetimes)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A flow over `store`.
    pub fn new(store: Arc<dyn SessionStore>, lifetimes: Lifetimes) -> Result<Self> {
        Ok(Self {
            store,
            clock: Arc::new(SystemClock),
            lifetimes: lifetimes.validate()?,
            number_matching: false,
        })
    }

    /// A flow over a fresh [`MemoryStore`] with default lifetimes.
    pub fn in_memory() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(SystemClock),
            lifetimes: Lifetimes::default(),
            number_matching: false,
        }
    }

    /// Uses another clock (the store should use the same one).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Turns number matching on: after scan the bound browser shows a two-digit code that the
    /// phone must send with confirm (a defence against relayed QR codes).
    pub fn with_number_matching(mut self, on: bool) -> Self {
        self.number_matching = on;
        self
    }

    /// The lifetimes in force.
    pub fn lifetimes(&self) -> &Lifetimes {
        &self.lifetimes
    }

    /// The clock in use.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    fn now(&self) -> u64 {
        self.clock.now_millis()
    }

    /// Creates a pending session bound to `binding`.
    pub async fn create(
        &self,
        binding: &BindingSecret,
        initiator: Initiator,
        nonce: Option<String>,
        provider_data: Option<String>,
    ) -> Result<SessionRecord> {
        let now = self.now();
        let mut record = SessionRecord::new(
            QrCodeId::generate()?,
            binding.hash(),
            now,
            millis(self.lifetimes.qr_code),
            initiator,
        );
        record.nonce = nonce;
        record.provider_data = provider_data;
        let retain = record.expire_at_ms
            + millis(self.lifetimes.ticket)
            + millis(self.lifetimes.retention_grace);
        self.store.insert(&record, retain).await?;
        tracing::debug!(state = "pending", "QR session created");
        Ok(record)
    }

    /// Loads a session, for provider code that has already authenticated the caller (phone
    /// side). Browser-facing reads go through [`Sessions::status`].
    pub async fn load(&self, id: &QrCodeId) -> Result<SessionRecord> {
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
    pub async fn status(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus> {
        let record = self.bound(self.store.load(id).await?, binding)?;
        self.view(record, binding).await
    }

    /// Waits until the session's version differs from `since_version` (or it expires, or
    /// `deadline` passes), then answers like [`Sessions::status`].
    pub async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since_version: u64,
        deadline: Instant,
    ) -> Result<QrStatus> {
        // Check the binding before waiting: an unbound caller must not hold a waiter.
        let first = self.bound(self.store.load(id).await?, binding)?;
        if first.version != since_version {
            return self.view(first, binding).await;
        }
        let record = self.bound(
            self.store
                .wait_for_change(id, since_version, deadline)
                .await?,
            binding,
        )?;
        self.view(record, binding).await
    }

    async fn view(&self, record: SessionRecord, binding: &BindingSecret) -> Result<QrStatus> {
        let now = self.now();
        let state = record.effective_state(now);
        if state == QrState::Expired {
            return Err(Error::ExpiredQrCode);
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
        Ok(QrStatus {
            id: record.id,
            state,
            version: record.version,
            user,
            ticket,
            match_code,
            created_at_ms: record.created_at_ms,
            expire_at_ms,
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
                        return Err(refusal.error);
                    }
                }
            }
        }
        Err(Error::Conflict(
            "the QR code is changing too fast, try again".into(),
        ))
    }

    /// Applies a provider-defined transition with compare-and-set, re-reading and retrying
    /// when another writer won the race (like every transition of this type).
    ///
    /// For providers that mirror an upstream state machine (e.g. Authing's QR status): build
    /// the next record from the current one with [`SessionRecord`]'s transition methods, or
    /// fail to leave the session untouched. The next record must carry a higher `version`.
    pub async fn update<F>(&self, id: &QrCodeId, mut transition: F) -> Result<SessionRecord>
    where
        F: FnMut(&SessionRecord, u64) -> Result<SessionRecord>,
    {
        self.transition(id, |r, now| transition(r, now).map_err(Refusal::from))
            .await
    }

    /// `pending → scanned` for `scanner`; returns the record and the phone's confirm token.
    pub async fn scan(
        &self,
        id: &QrCodeId,
        scanner: Scanner,
    ) -> Result<(SessionRecord, ConfirmToken)> {
        let token = ConfirmToken::generate()?;
        let ttl = millis(self.lifetimes.confirm_token);
        let code = if self.number_matching {
            Some(match_code()?)
        } else {
            None
        };
        let record = self
            .transition(id, |r, now| {
                let mut next = r.scan(now, scanner.clone(), &token, ttl)?;
                next.match_code = code.clone();
                Ok(next)
            })
            .await?;
        Ok((record, token))
    }

    /// `scanned → confirmed` by the scanning user `subject` holding `token` (and, with number
    /// matching, the code the browser shows).
    pub async fn confirm(
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
    pub async fn cancel(
        &self,
        id: &QrCodeId,
        subject: &str,
        token: &ConfirmToken,
    ) -> Result<SessionRecord> {
        self.transition(id, |r, now| r.cancel(now, subject, token))
            .await
    }

    /// Counts a failed attempt (e.g. a wrong number-match code) against the session; the third
    /// cancels it.
    pub async fn record_failed_attempt(&self, id: &QrCodeId) -> Result<SessionRecord> {
        self.transition(id, |r, _| Ok(r.failed_attempt())).await
    }

    /// Redeems a ticket presented with `binding`: takes the ticket (exactly once), checks the
    /// binding, and moves the session to `consumed`. Returns the consumed record, whose
    /// `scanner` says who logged in.
    ///
    /// A ticket presented with the wrong binding is burnt and answers [`Error::NotBound`].
    pub async fn redeem(&self, ticket: &Ticket, binding: &BindingSecret) -> Result<SessionRecord> {
        let Some(id) = self.store.take_ticket(&ticket.hash()).await? else {
            return Err(Error::InvalidTicket);
        };
        let Some(record) = self.store.load(&id).await? else {
            return Err(Error::NotBound);
        };
        if !record.binding_hash.ct_eq(&binding.hash()) {
            // Another browser holds this session's ticket: the login is compromised. The ticket
            // is already burnt; cancel the session so that a re-read cannot mint it again.
            tracing::warn!("ticket presented by a browser not bound to its session; cancelled");
            let _ = self.transition(&id, |r, _| Ok(r.revoke()?)).await;
            return Err(Error::NotBound);
        }
        // The handle matched, but it must also be this session's current ticket.
        let genuine = record
            .ticket_nonce
            .is_some_and(|nonce| Ticket::derive(binding, &id, &nonce).ct_eq(ticket));
        if !genuine {
            return Err(Error::InvalidTicket);
        }
        self.transition(&id, |r, now| match r.consume(now) {
            Ok(next) => Ok(next),
            Err(Error::ExpiredQrCode | Error::Conflict(_)) => Err(Error::InvalidTicket.into()),
            Err(other) => Err(other.into()),
        })
        .await
    }

    /// How long a plain poll should wait before the next.
    pub fn poll_interval(&self) -> Duration {
        self.lifetimes.poll_interval
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
