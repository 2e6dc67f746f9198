//! Signed-in sessions: what qrauth keeps about a browser after its QR login, so that it can be
//! signed out, revoked, renewed and listed.
//!
//! A [`SignedInSession`] is the stored record; the store keeps it (see
//! [`SignedInStore`](crate::store::SignedInStore)) and the handlers drive it
//! (`handler/signed_in.rs` for the browser, `handler/devices.rs` for the phone).

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::secret::{RefreshSecret, SecretHash, SessionId};

/// One signed-in browser: created by a successful ticket exchange, ended by sign-out,
/// revocation, or its idle or absolute expiry.
///
/// What the application's server API ([`QrAuthService::signed_in_sessions`]) and the phone's
/// device list show. It holds no token and no secret, only the SHA-256 of the current and the
/// previous refresh secret.
///
/// [`QrAuthService::signed_in_sessions`]: crate::QrAuthService::signed_in_sessions
#[derive(Clone)]
#[non_exhaustive]
pub struct SignedInSession {
    /// The session id (`sid`).
    pub id: SessionId,
    /// The signed-in user (`sub` of the session's id_tokens).
    pub subject: String,
    /// The service's `provider` label ([`metrics_label`]), to tell apart the sessions of
    /// several services on one store.
    ///
    /// [`metrics_label`]: crate::QrAuthServiceBuilder::metrics_label
    pub provider: String,
    /// "Chrome on Windows": the signed-in browser, from its User-Agent at exchange.
    pub browser: String,
    /// The browser's address at exchange (and at its latest renewal).
    pub ip: Option<IpAddr>,
    /// When the session was created, Unix ms.
    pub created_at_ms: u64,
    /// The latest exchange or renewal, Unix ms.
    pub last_seen_at_ms: u64,
    /// The absolute end of the session, Unix ms.
    pub expire_at_ms: u64,
    /// The idle timeout: the session ends this long after `last_seen_at_ms`, in ms.
    pub idle_timeout_ms: u64,
    /// When the user confirmed the login, Unix seconds (`auth_time`, kept across renewals).
    pub auth_time: u64,
    /// The claims the session's id_tokens carry besides the registered ones, re-issued at
    /// renewal.
    pub claims: Map<String, Value>,
    pub(crate) refresh_hash: SecretHash,
    pub(crate) previous_refresh_hash: Option<SecretHash>,
    pub(crate) rotated_at_ms: u64,
}

impl std::fmt::Debug for SignedInSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The claims may hold personal data (name, email): left out, like the hashes.
        f.debug_struct("SignedInSession")
            .field("id", &self.id.as_str())
            .field("subject", &self.subject)
            .field("provider", &self.provider)
            .field("browser", &self.browser)
            .field("created_at_ms", &self.created_at_ms)
            .field("last_seen_at_ms", &self.last_seen_at_ms)
            .field("expire_at_ms", &self.expire_at_ms)
            .finish_non_exhaustive()
    }
}

impl SignedInSession {
    /// When the session ends if it is not renewed before: the earlier of the absolute expiry
    /// and the idle timeout, Unix ms.
    pub fn ends_at_ms(&self) -> u64 {
        self.expire_at_ms
            .min(self.last_seen_at_ms.saturating_add(self.idle_timeout_ms))
    }

    /// A session as an exchange would create it for `subject` at `now_ms` (default lifetimes,
    /// a demo browser and claims), for store tests and benchmarks.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn sample(subject: &str, now_ms: u64) -> Result<Self> {
        let lifetimes = crate::Lifetimes::default();
        let mut claims = Map::new();
        claims.insert("name".into(), Value::from("Alice"));
        claims.insert("email".into(), Value::from("alice@demo.invalid"));
        claims.insert("nickname".into(), Value::from("Alice"));
        Ok(Self {
            id: SessionId::generate()?,
            subject: subject.to_owned(),
            provider: crate::metrics::DEFAULT_LABEL.to_owned(),
            browser: "Chrome on Windows".to_owned(),
            ip: Some(IpAddr::from([203, 0, 113, 7])),
            created_at_ms: now_ms,
            last_seen_at_ms: now_ms,
            expire_at_ms: now_ms + lifetimes.signed_in.as_millis() as u64,
            idle_timeout_ms: lifetimes.idle_timeout.as_millis() as u64,
            auth_time: now_ms / 1000,
            claims,
            refresh_hash: RefreshSecret::generate()?.hash(),
            previous_refresh_hash: None,
            rotated_at_ms: now_ms,
        })
    }

    /// Whether the session is still alive at `now_ms`.
    pub fn is_alive(&self, now_ms: u64) -> bool {
        now_ms < self.ends_at_ms()
    }
}

/// What a renewal found (see [`SignedInStore::rotate`](crate::store::SignedInStore::rotate)).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rotation {
    /// The presented secret was the current one: it is replaced by the next one.
    Rotated(SignedInSession),
    /// The presented secret was the one just replaced, within the reuse grace (another tab of
    /// the same browser renewed a moment earlier): the session goes on, nothing rotates.
    Concurrent(SignedInSession),
    /// The presented secret was already used: the session is revoked (RFC 9700 §4.14).
    Reused,
    /// No such session, or it ended.
    Unknown,
}

/// The refresh cookie's value: `{sid}.{secret}`.
pub(crate) struct RefreshCredential {
    pub(crate) session: SessionId,
    pub(crate) secret: RefreshSecret,
}

impl RefreshCredential {
    pub(crate) fn generate(session: SessionId) -> Result<Self> {
        Ok(Self {
            session,
            secret: RefreshSecret::generate()?,
        })
    }

    /// Parses a cookie value; anything malformed is [`Error::InvalidGrant`].
    pub(crate) fn parse(value: &str) -> Result<Self> {
        let (sid, secret) = value.split_once('.').ok_or(Error::InvalidGrant)?;
        Ok(Self {
            session: SessionId::parse(sid).map_err(|_| Error::InvalidGrant)?,
            secret: RefreshSecret::parse(secret).map_err(|_| Error::InvalidGrant)?,
        })
    }

    /// The cookie value. Never log it.
    pub(crate) fn expose_secret(&self) -> String {
        format!("{}.{}", self.session.as_str(), self.secret.expose_secret())
    }

    pub(crate) fn hash(&self) -> SecretHash {
        self.secret.hash()
    }
}

impl std::fmt::Debug for RefreshCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshCredential(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credential_round_trips_and_garbage_is_invalid_grant() {
        let credential = RefreshCredential::generate(SessionId::generate().unwrap()).unwrap();
        let parsed = RefreshCredential::parse(&credential.expose_secret()).unwrap();
        assert!(parsed.session.ct_eq(&credential.session));
        assert!(parsed.hash().ct_eq(&credential.hash()));
        for garbage in [
            "",
            ".",
            "abc",
            "x.y",
            &format!("{}.", credential.session.as_str()),
        ] {
            assert!(matches!(
                RefreshCredential::parse(garbage),
                Err(Error::InvalidGrant)
            ));
        }
        assert!(!format!("{credential:?}").contains(credential.secret.expose_secret()));
    }
}
