//! The stored QR session record and its pure transitions.
//!
//! A [`SessionRecord`] is what a store keeps; the flow that drives it lives in `flow`.
//! Transitions are pure functions from one record to the next; the flow applies them with a
//! compare-and-set on [`SessionRecord::version`], so two replicas racing on one session can
//! never both win.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::secret::{ConfirmToken, QrCodeId, SecretHash};
use crate::types::{QrState, UserInfo};

/// Wrong confirm tokens or number-match codes a session tolerates before it is cancelled.
pub(crate) const MAX_FAILED_ATTEMPTS: u8 = 3;

/// Why a phone's confirm or cancel was refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// What to answer.
    pub(crate) error: Error,
    /// The attempt used a wrong confirm token and counts towards [`MAX_FAILED_ATTEMPTS`]
    /// (see [`SessionRecord::failed_attempt`]).
    pub(crate) counts_as_failed_attempt: bool,
}

impl From<Error> for Refusal {
    fn from(error: Error) -> Self {
        Self {
            error,
            counts_as_failed_attempt: false,
        }
    }
}

/// Who started the login: shown on the phone's confirm screen so the user can spot a relayed QR.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initiator {
    /// The initiating browser's address, as seen through the trusted proxies.
    pub ip: Option<IpAddr>,
    /// "Chrome on Windows": derived from the initiating User-Agent.
    pub device: String,
}

/// The phone user who scanned the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scanner {
    /// The user's stable id: becomes the id_token's `sub`.
    pub subject: String,
    /// What the browser may show once scanned.
    pub user: UserInfo,
    /// Extra claims for the id_token (name, email, …), as the phone authenticator gave them.
    pub claims: Map<String, Value>,
    /// The phone's address when it scanned.
    pub ip: Option<IpAddr>,
}

/// One QR login session as stored.
///
/// Holds hashes of the binding secret and the confirm token, never the secrets themselves; the
/// ticket is not stored at all (see [`Ticket`](crate::Ticket)), only a random nonce it is
/// derived from.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The public id.
    pub id: QrCodeId,
    /// Current state (as last written; see [`SessionRecord::effective_state`] for expiry).
    pub state: QrState,
    /// Incremented by every transition.
    pub version: u64,
    /// Creation time, Unix ms.
    pub created_at_ms: u64,
    /// When the QR stops being scannable, Unix ms.
    pub expire_at_ms: u64,
    /// SHA-256 of the browser-binding secret.
    pub binding_hash: SecretHash,
    /// Who started the login.
    pub initiator: Initiator,
    /// The OIDC `nonce` the browser asked for, echoed in the id_token.
    pub nonce: Option<String>,
    /// Set at scan.
    pub scanner: Option<Scanner>,
    /// SHA-256 of the phone's confirm token; cleared when used.
    pub confirm_token_hash: Option<SecretHash>,
    /// When the confirm token stops being accepted, Unix ms.
    pub confirm_expire_at_ms: u64,
    /// Random nonce the ticket is derived from; set at confirmation.
    pub ticket_nonce: Option<[u8; 16]>,
    /// When the ticket stops being accepted, Unix ms.
    pub ticket_expire_at_ms: u64,
    /// Wrong confirm tokens or codes so far.
    pub failed_attempts: u8,
    /// The number-match code the browser shows after scan and the phone must echo, when
    /// number matching is on.
    pub match_code: Option<String>,
    /// Opaque provider data (e.g. the upstream QR id); never sent to a browser.
    pub provider_data: Option<String>,
    /// The QR text the provider gave at start, for providers whose phone app scans through
    /// qrauth: the browser shows it with the rotating scan token attached.
    pub qr_content: Option<String>,
    /// The upstream IdP no longer knows the session (it expired as `unknown_qrcode`).
    pub upstream_lost: bool,
}

impl SessionRecord {
    /// A new pending session.
    pub fn new(
        id: QrCodeId,
        binding_hash: SecretHash,
        now_ms: u64,
        lifetime_ms: u64,
        initiator: Initiator,
    ) -> Self {
        Self {
            id,
            state: QrState::Pending,
            version: 1,
            created_at_ms: now_ms,
            expire_at_ms: now_ms.saturating_add(lifetime_ms),
            binding_hash,
            initiator,
            nonce: None,
            scanner: None,
            confirm_token_hash: None,
            confirm_expire_at_ms: 0,
            ticket_nonce: None,
            ticket_expire_at_ms: 0,
            failed_attempts: 0,
            match_code: None,
            provider_data: None,
            qr_content: None,
            upstream_lost: false,
        }
    }

    /// When this session stops being usable in its current state, Unix ms: the ticket's expiry
    /// once confirmed, the QR's otherwise.
    pub fn deadline_ms(&self) -> u64 {
        match self.state {
            QrState::Confirmed => self.ticket_expire_at_ms,
            _ => self.expire_at_ms,
        }
    }

    /// The state at `now_ms`: a live session past its deadline is `Expired` even before anyone
    /// wrote that down.
    pub fn effective_state(&self, now_ms: u64) -> QrState {
        if self.state.is_live() && now_ms >= self.deadline_ms() {
            QrState::Expired
        } else {
            self.state
        }
    }

    fn next(&self, state: QrState) -> Self {
        let mut next = self.clone();
        next.state = state;
        next.version = self.version + 1;
        next
    }

    fn require(&self, now_ms: u64, allowed: &[QrState], action: &str) -> Result<()> {
        let state = self.effective_state(now_ms);
        if state == QrState::Expired {
            return Err(Error::ExpiredQrCode);
        }
        if allowed.contains(&state) {
            Ok(())
        } else {
            Err(Error::Conflict(format!(
                "cannot {action} a QR code that is {}",
                state.as_str()
            )))
        }
    }

    /// `pending → scanned`: the first phone claims the session and gets a confirm token.
    pub(crate) fn scan(
        &self,
        now_ms: u64,
        scanner: Scanner,
        confirm_token: &ConfirmToken,
        confirm_ttl_ms: u64,
    ) -> Result<Self> {
        self.require(now_ms, &[QrState::Pending], "scan")?;
        let mut next = self.next(QrState::Scanned);
        next.scanner = Some(scanner);
        next.confirm_token_hash = Some(confirm_token.hash());
        next.confirm_expire_at_ms = now_ms.saturating_add(confirm_ttl_ms);
        Ok(next)
    }

    /// Checks that `subject` is the scanning user and `token` is the live confirm token.
    ///
    /// A wrong token is a refusal that counts as a failed attempt; the caller records it with
    /// [`SessionRecord::failed_attempt`].
    fn check_phone(
        &self,
        now_ms: u64,
        subject: &str,
        token: &ConfirmToken,
    ) -> std::result::Result<(), Refusal> {
        self.require(now_ms, &[QrState::Scanned], "confirm or cancel")?;
        let scanner_matches = self
            .scanner
            .as_ref()
            .is_some_and(|s| crate::secret::ct_eq_bytes(s.subject.as_bytes(), subject.as_bytes()));
        if !scanner_matches {
            return Err(
                Error::Forbidden("only the user who scanned may confirm or cancel".into()).into(),
            );
        }
        let token_ok = self
            .confirm_token_hash
            .as_ref()
            .is_some_and(|h| h.ct_eq(&token.hash()))
            && now_ms < self.confirm_expire_at_ms;
        if token_ok {
            return Ok(());
        }
        Err(Refusal {
            error: Error::Forbidden("invalid or expired confirm token".into()),
            counts_as_failed_attempt: true,
        })
    }

    /// Counts one failed confirm attempt; the third cancels the session.
    pub(crate) fn failed_attempt(&self) -> Self {
        let attempts = self.failed_attempts.saturating_add(1);
        // The version moves even when the state does not: two failures racing on one version
        // must not both be written as the first.
        let mut next = if attempts >= MAX_FAILED_ATTEMPTS {
            let mut cancelled = self.next(QrState::Cancelled);
            cancelled.confirm_token_hash = None;
            cancelled
        } else {
            self.next(self.state)
        };
        next.failed_attempts = attempts;
        next
    }

    /// `scanned → confirmed`: mints the ticket nonce. Only the scanning user, with the live
    /// confirm token, may do this; the token is used up.
    pub(crate) fn confirm(
        &self,
        now_ms: u64,
        subject: &str,
        token: &ConfirmToken,
        ticket_nonce: [u8; 16],
        ticket_ttl_ms: u64,
    ) -> std::result::Result<Self, Refusal> {
        self.check_phone(now_ms, subject, token)?;
        let mut next = self.next(QrState::Confirmed);
        next.confirm_token_hash = None;
        next.ticket_nonce = Some(ticket_nonce);
        next.ticket_expire_at_ms = now_ms.saturating_add(ticket_ttl_ms);
        Ok(next)
    }

    /// Checks the number-match code the phone sent (when the session has one), in constant
    /// time. A wrong or missing code counts as a failed attempt.
    pub(crate) fn check_match_code(&self, code: Option<&str>) -> std::result::Result<(), Refusal> {
        let Some(expected) = &self.match_code else {
            return Ok(());
        };
        if code.is_some_and(|c| crate::secret::ct_eq_bytes(c.as_bytes(), expected.as_bytes())) {
            Ok(())
        } else {
            Err(Refusal {
                error: Error::Forbidden("wrong number-match code".into()),
                counts_as_failed_attempt: true,
            })
        }
    }

    /// `scanned → cancelled` by the scanning user.
    pub(crate) fn cancel(
        &self,
        now_ms: u64,
        subject: &str,
        token: &ConfirmToken,
    ) -> std::result::Result<Self, Refusal> {
        self.check_phone(now_ms, subject, token)?;
        let mut next = self.next(QrState::Cancelled);
        next.confirm_token_hash = None;
        Ok(next)
    }

    /// `pending → scanned`, reported by an upstream IdP whose own app scanned the QR.
    pub(crate) fn scan_upstream(&self, now_ms: u64, scanner: Scanner) -> Result<Self> {
        self.require(now_ms, &[QrState::Pending], "scan")?;
        let mut next = self.next(QrState::Scanned);
        next.scanner = Some(scanner);
        Ok(next)
    }

    /// `pending | scanned → confirmed`, reported by an upstream IdP that confirmed the login on
    /// its side: mints the ticket nonce like [`confirm`](Self::confirm), without a phone token.
    pub(crate) fn confirm_upstream(
        &self,
        now_ms: u64,
        scanner: Scanner,
        ticket_nonce: [u8; 16],
        ticket_ttl_ms: u64,
    ) -> Result<Self> {
        self.require(now_ms, &[QrState::Pending, QrState::Scanned], "confirm")?;
        let mut next = self.next(QrState::Confirmed);
        next.scanner = Some(scanner);
        next.confirm_token_hash = None;
        next.ticket_nonce = Some(ticket_nonce);
        next.ticket_expire_at_ms = now_ms.saturating_add(ticket_ttl_ms);
        Ok(next)
    }

    /// `pending | scanned → expired` now, because the upstream IdP says so (`lost`: it no
    /// longer knows the session at all).
    pub(crate) fn end_upstream(&self, now_ms: u64, lost: bool) -> Result<Self> {
        self.require(now_ms, &[QrState::Pending, QrState::Scanned], "expire")?;
        let mut next = self.next(QrState::Expired);
        next.expire_at_ms = next.expire_at_ms.min(now_ms);
        next.confirm_token_hash = None;
        next.upstream_lost = lost;
        Ok(next)
    }

    /// `confirmed → consumed`: the ticket was exchanged.
    pub(crate) fn consume(&self, now_ms: u64) -> Result<Self> {
        self.require(now_ms, &[QrState::Confirmed], "exchange")?;
        let mut next = self.next(QrState::Consumed);
        next.ticket_nonce = None;
        Ok(next)
    }

    /// `consumed → confirmed` again: the exchange of the ticket failed before any token was
    /// issued (an upstream or store failure), so the bound browser may present the same
    /// ticket again while it lives. Only the redemption that consumed `expected_version` may
    /// undo it, and only once.
    pub(crate) fn unconsume(
        &self,
        now_ms: u64,
        expected_version: u64,
        ticket_nonce: [u8; 16],
    ) -> Result<Self> {
        if self.state != QrState::Consumed
            || self.version != expected_version
            || now_ms >= self.ticket_expire_at_ms
        {
            return Err(Error::Conflict("the ticket cannot be restored".into()));
        }
        let mut next = self.next(QrState::Confirmed);
        next.ticket_nonce = Some(ticket_nonce);
        Ok(next)
    }

    /// `pending | scanned | confirmed → cancelled` because the session is compromised (its
    /// ticket was presented by a browser that is not bound to it).
    pub(crate) fn revoke(&self) -> Result<Self> {
        if !self.state.is_live() {
            return Err(Error::Conflict(format!(
                "cannot revoke a QR code that is {}",
                self.state.as_str()
            )));
        }
        let mut next = self.next(QrState::Cancelled);
        next.confirm_token_hash = None;
        next.ticket_nonce = None;
        Ok(next)
    }

    /// `pending | scanned | confirmed → expired`, written down (reads already see it).
    #[cfg(test)]
    pub(crate) fn expire(&self, now_ms: u64) -> Result<Self> {
        if self.state.is_live() && now_ms >= self.deadline_ms() {
            let mut next = self.next(QrState::Expired);
            next.confirm_token_hash = None;
            next.ticket_nonce = None;
            Ok(next)
        } else {
            Err(Error::Conflict(format!(
                "cannot expire a QR code that is {}",
                self.state.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::BindingSecret;

    const NOW: u64 = 1_000_000;

    fn pending() -> SessionRecord {
        let bind = BindingSecret::generate().unwrap();
        SessionRecord::new(
            QrCodeId::generate().unwrap(),
            bind.hash(),
            NOW,
            120_000,
            Initiator::default(),
        )
    }

    fn alice() -> Scanner {
        Scanner {
            subject: "alice".into(),
            user: UserInfo {
                nickname: Some("Alice".into()),
                photo: None,
            },
            claims: Map::new(),
            ip: None,
        }
    }

    fn scanned() -> (SessionRecord, ConfirmToken) {
        let token = ConfirmToken::generate().unwrap();
        let s = pending().scan(NOW + 1, alice(), &token, 60_000).unwrap();
        (s, token)
    }

    #[test]
    fn pending_to_scanned_increments_version_and_keeps_only_the_token_hash() {
        let p = pending();
        let (s, token) = scanned();
        assert_eq!(s.state, QrState::Scanned);
        assert_eq!(s.version, p.version + 1);
        assert!(s.confirm_token_hash.unwrap().ct_eq(&token.hash()));
    }

    #[test]
    fn scanned_to_confirmed_by_the_scanner() {
        let (s, token) = scanned();
        let c = s
            .confirm(NOW + 2, "alice", &token, [9; 16], 60_000)
            .unwrap();
        assert_eq!(c.state, QrState::Confirmed);
        assert_eq!(c.version, s.version + 1);
        assert!(
            c.confirm_token_hash.is_none(),
            "confirm token is single use"
        );
        assert_eq!(c.ticket_nonce, Some([9; 16]));
    }

    #[test]
    fn scanned_to_cancelled_by_the_scanner() {
        let (s, token) = scanned();
        let c = s.cancel(NOW + 2, "alice", &token).unwrap();
        assert_eq!(c.state, QrState::Cancelled);
        assert!(c.state.is_terminal());
    }

    #[test]
    fn confirmed_to_consumed() {
        let (s, token) = scanned();
        let c = s
            .confirm(NOW + 2, "alice", &token, [1; 16], 60_000)
            .unwrap();
        let x = c.consume(NOW + 3).unwrap();
        assert_eq!(x.state, QrState::Consumed);
        assert!(x.ticket_nonce.is_none());
    }

    #[test]
    fn only_the_redemption_that_consumed_may_restore_and_only_while_the_ticket_lives() {
        let (s, token) = scanned();
        let c = s
            .confirm(NOW + 2, "alice", &token, [1; 16], 60_000)
            .unwrap();
        let x = c.consume(NOW + 3).unwrap();
        let back = x.unconsume(NOW + 4, x.version, [1; 16]).unwrap();
        assert_eq!(back.state, QrState::Confirmed);
        assert_eq!(back.ticket_nonce, Some([1; 16]));
        assert_eq!(back.version, x.version + 1);
        assert!(
            back.unconsume(NOW + 4, x.version, [1; 16]).is_err(),
            "not twice"
        );
        assert!(
            x.unconsume(NOW + 4, x.version - 1, [1; 16]).is_err(),
            "another version"
        );
        assert!(
            x.unconsume(c.ticket_expire_at_ms, x.version, [1; 16])
                .is_err(),
            "the ticket has expired"
        );
        assert!(
            c.unconsume(NOW + 4, c.version, [1; 16]).is_err(),
            "never consumed"
        );
    }

    #[test]
    fn every_live_state_expires() {
        let p = pending();
        assert_eq!(p.effective_state(p.expire_at_ms), QrState::Expired);
        assert_eq!(p.expire(p.expire_at_ms).unwrap().state, QrState::Expired);
        let (s, token) = scanned();
        assert_eq!(s.expire(s.expire_at_ms).unwrap().state, QrState::Expired);
        let c = s
            .confirm(NOW + 2, "alice", &token, [1; 16], 60_000)
            .unwrap();
        assert_eq!(
            c.effective_state(c.ticket_expire_at_ms - 1),
            QrState::Confirmed
        );
        assert_eq!(
            c.expire(c.ticket_expire_at_ms).unwrap().state,
            QrState::Expired
        );
        assert!(p.expire(NOW + 1).is_err(), "not expired yet");
    }

    #[test]
    fn illegal_transitions_are_conflicts_and_change_nothing() {
        let p = pending();
        let token = ConfirmToken::generate().unwrap();
        let before = format!("{p:?}");
        assert!(matches!(
            p.confirm(NOW, "alice", &token, [0; 16], 1)
                .map_err(|e| e.error),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(p.consume(NOW), Err(Error::Conflict(_))));
        assert!(matches!(
            p.cancel(NOW, "alice", &token).map_err(|e| e.error),
            Err(Error::Conflict(_))
        ));
        assert_eq!(before, format!("{p:?}"));

        let (s, token) = scanned();
        assert!(matches!(
            s.scan(NOW + 2, alice(), &token, 1),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(s.consume(NOW + 2), Err(Error::Conflict(_))));
        let cancelled = s.cancel(NOW + 2, "alice", &token).unwrap();
        for r in [
            cancelled.scan(NOW + 3, alice(), &token, 1).err(),
            cancelled.consume(NOW + 3).err(),
            cancelled
                .confirm(NOW + 3, "alice", &token, [0; 16], 1)
                .err()
                .map(|e| e.error),
        ] {
            assert!(matches!(r, Some(Error::Conflict(_))), "{r:?}");
        }
        let (s, token) = scanned();
        let consumed = s
            .confirm(NOW + 2, "alice", &token, [0; 16], 60_000)
            .unwrap()
            .consume(NOW + 3)
            .unwrap();
        assert!(matches!(consumed.consume(NOW + 4), Err(Error::Conflict(_))));
        assert!(matches!(consumed.expire(u64::MAX), Err(Error::Conflict(_))));
    }

    #[test]
    fn transitions_after_expiry_answer_expired() {
        let (s, token) = scanned();
        let late = s.expire_at_ms + 1;
        assert!(matches!(
            s.confirm(late, "alice", &token, [0; 16], 1)
                .map_err(|e| e.error),
            Err(Error::ExpiredQrCode)
        ));
        assert!(matches!(
            pending().scan(u64::MAX, alice(), &token, 1),
            Err(Error::ExpiredQrCode)
        ));
    }

    #[test]
    fn another_user_cannot_confirm_or_cancel() {
        let (s, token) = scanned();
        let err = s
            .confirm(NOW + 2, "mallory", &token, [0; 16], 1)
            .unwrap_err();
        assert!(matches!(err.error, Error::Forbidden(_)));
        assert!(
            !err.counts_as_failed_attempt,
            "a foreign user does not burn the owner's attempts"
        );
        assert!(matches!(
            s.cancel(NOW + 2, "mallory", &token).unwrap_err().error,
            Error::Forbidden(_)
        ));
    }

    #[test]
    fn expired_confirm_token_is_refused() {
        let (s, token) = scanned();
        let err = s
            .confirm(s.confirm_expire_at_ms, "alice", &token, [0; 16], 1)
            .unwrap_err();
        assert!(matches!(err.error, Error::Forbidden(_)));
    }

    #[test]
    fn three_wrong_confirm_tokens_cancel_the_session() {
        let (mut s, token) = scanned();
        let wrong = ConfirmToken::generate().unwrap();
        for attempt in 1..=MAX_FAILED_ATTEMPTS {
            let refusal = s.confirm(NOW + 2, "alice", &wrong, [0; 16], 1).unwrap_err();
            assert!(matches!(refusal.error, Error::Forbidden(_)));
            assert!(refusal.counts_as_failed_attempt);
            s = s.failed_attempt();
            assert_eq!(s.failed_attempts, attempt);
        }
        assert_eq!(s.state, QrState::Cancelled);
        assert!(s.confirm(NOW + 3, "alice", &token, [0; 16], 1).is_err());
    }
}
