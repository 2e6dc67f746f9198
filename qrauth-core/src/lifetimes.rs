//! How long each part of a login lives.

use std::time::Duration;

use crate::error::{Error, Result};

/// Lifetimes of QR sessions, confirm tokens, tickets and signed-in sessions, the id_tokens
/// qrauth signs, and the advertised poll interval.
///
/// ```
/// use std::time::Duration;
/// use qrauth_core::Lifetimes;
///
/// let lifetimes = Lifetimes::default().qr_code(Duration::from_secs(60)).validate().unwrap();
/// assert_eq!(lifetimes.qr_code, Duration::from_secs(60));
/// assert!(Lifetimes::default().qr_code(Duration::from_secs(5)).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifetimes {
    /// How long a QR can be scanned: 120 s by default, 30–300 s (tests may go lower with
    /// `Lifetimes::allow_short_for_tests`, feature `test-util`).
    pub qr_code: Duration,
    /// How often the QR a browser shows is replaced while it waits for a scan, for providers
    /// whose phone app scans through qrauth: 30 s, 10–30 s. Only the QR on screen (and, for
    /// 5 s after it was replaced, the one before) can be scanned, so a relayed QR goes stale.
    pub qr_rotation: Duration,
    /// How long the phone's confirm token is accepted after scan: 60 s, at most 60 s.
    pub confirm_token: Duration,
    /// How long a ticket can be exchanged after confirmation: 60 s, at most 300 s.
    pub ticket: Duration,
    /// The interval plain status polls should keep: 2 s.
    pub poll_interval: Duration,
    /// How long a finished session stays readable (so the browser can learn it expired or was
    /// consumed) before the store drops it: 30 s.
    pub retention_grace: Duration,
    /// How long an id_token qrauth signs is valid: 10 min by default, 1 min – 1 h. A browser in
    /// use renews it before it expires (`POST /qrcode/refresh`).
    pub id_token: Duration,
    /// The absolute lifetime of a signed-in session, however often it renews: 30 days.
    pub signed_in: Duration,
    /// A signed-in session that does not renew for this long ends: 7 days (at least
    /// `id_token`, at most `signed_in`).
    pub idle_timeout: Duration,
    /// How long the refresh secret just replaced stays acceptable, for a second tab of the same
    /// browser that renewed at the same moment (it gets a fresh id_token, nothing rotates): 10 s,
    /// at most 60 s. Any later reuse revokes the session.
    pub refresh_reuse_grace: Duration,
    short_for_tests: bool,
}

/// The longest id_token lifetime: the built-in provider keeps a retired signing key in its
/// JWKS this long (plus leeway) after a rotation.
pub(crate) const MAX_ID_TOKEN: Duration = Duration::from_secs(3600);

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            qr_code: Duration::from_secs(120),
            qr_rotation: Duration::from_secs(30),
            confirm_token: Duration::from_secs(60),
            ticket: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            retention_grace: Duration::from_secs(30),
            id_token: Duration::from_secs(600),
            signed_in: DAY * 30,
            idle_timeout: DAY * 7,
            refresh_reuse_grace: Duration::from_secs(10),
            short_for_tests: false,
        }
    }
}

impl Lifetimes {
    /// Sets the QR lifetime.
    pub fn qr_code(mut self, d: Duration) -> Self {
        self.qr_code = d;
        self
    }

    /// Sets how often the QR rotates.
    pub fn qr_rotation(mut self, d: Duration) -> Self {
        self.qr_rotation = d;
        self
    }

    /// Sets the confirm token lifetime.
    pub fn confirm_token(mut self, d: Duration) -> Self {
        self.confirm_token = d;
        self
    }

    /// Sets the ticket lifetime.
    pub fn ticket(mut self, d: Duration) -> Self {
        self.ticket = d;
        self
    }

    /// Sets the advertised poll interval.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d;
        self
    }

    /// Sets how long finished sessions stay readable.
    pub fn retention_grace(mut self, d: Duration) -> Self {
        self.retention_grace = d;
        self
    }

    /// Sets the lifetime of the id_tokens qrauth signs.
    pub fn id_token(mut self, d: Duration) -> Self {
        self.id_token = d;
        self
    }

    /// Sets the absolute lifetime of signed-in sessions.
    pub fn signed_in(mut self, d: Duration) -> Self {
        self.signed_in = d;
        self
    }

    /// Sets the idle timeout of signed-in sessions.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Sets how long a just-replaced refresh secret stays acceptable.
    pub fn refresh_reuse_grace(mut self, d: Duration) -> Self {
        self.refresh_reuse_grace = d;
        self
    }

    /// Lifts the 30 s minimum QR lifetime and the 1 min minimum id_token lifetime, so expiry tests need not wait half a minute.
    #[cfg(feature = "test-util")]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn allow_short_for_tests(mut self) -> Self {
        self.short_for_tests = true;
        self
    }

    /// Checks the bounds.
    pub fn validate(self) -> Result<Self> {
        let min_qr = if self.short_for_tests { 1 } else { 30 };
        let secs = self.qr_code.as_secs_f64();
        if !(min_qr as f64..=300.0).contains(&secs) {
            return Err(Error::Config(format!(
                "QR lifetime must be {min_qr}-300 s, got {secs} s"
            )));
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(30)).contains(&self.qr_rotation) {
            return Err(Error::Config(format!(
                "QR rotation must be 10-30 s, got {} s",
                self.qr_rotation.as_secs_f64()
            )));
        }
        if self.ticket.is_zero() || self.ticket > Duration::from_secs(300) {
            return Err(Error::Config("ticket lifetime must be 1-300 s".into()));
        }
        if self.confirm_token.is_zero() || self.confirm_token > Duration::from_secs(60) {
            return Err(Error::Config(
                "confirm token lifetime must be 1-60 s".into(),
            ));
        }
        let min_token = if self.short_for_tests { 1 } else { 60 };
        if self.id_token < Duration::from_secs(min_token) || self.id_token > MAX_ID_TOKEN {
            return Err(Error::Config(format!(
                "id_token lifetime must be {min_token}-3600 s"
            )));
        }
        if self.idle_timeout < self.id_token || self.idle_timeout > self.signed_in {
            return Err(Error::Config(
                "idle timeout must be at least the id_token lifetime and at most the signed-in \
                 session lifetime"
                    .into(),
            ));
        }
        if self.refresh_reuse_grace > Duration::from_secs(60) {
            return Err(Error::Config(
                "refresh reuse grace must be at most 60 s".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(Error::Config("poll interval must be positive".into()));
        }
        Ok(self)
    }
}
