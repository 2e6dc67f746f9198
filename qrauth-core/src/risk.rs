//! How risky a login looks when a phone scans its QR code: the signal behind the confirm
//! screen's warning, and what can make number matching mandatory for that one login.
//!
//! A relayed QR code (QRLJacking) is scanned by a victim far from the browser that shows it.
//! The default [`NetworkMismatch`] signal compares the browser's and the phone's networks; an
//! application with GeoIP or ASN data plugs in its own [`RiskSignal`] with
//! [`QrAuthServiceBuilder::risk_signal`](crate::QrAuthServiceBuilder::risk_signal), and
//! [`number_matching_from`](crate::QrAuthServiceBuilder::number_matching_from) makes the
//! browser's two-digit code mandatory for logins at or above a level.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// What a [`RiskSignal`] sees of a login at scan time.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LoginAttempt<'a> {
    /// The address the QR code was requested from (the browser), if known.
    pub browser_ip: Option<IpAddr>,
    /// The address of the phone that scanned it, if known.
    pub phone_ip: Option<IpAddr>,
    /// The browser and OS that requested the QR code, e.g. "Chrome on Windows".
    pub browser: &'a str,
    /// The phone user (the subject their authenticator answered).
    pub subject: &'a str,
}

impl<'a> LoginAttempt<'a> {
    /// An attempt, for tests of a signal.
    ///
    /// ```
    /// use qrauth_core::risk::{LoginAttempt, NetworkMismatch, RiskLevel, RiskSignal};
    ///
    /// let near = LoginAttempt::new(Some([10, 0, 0, 2].into()), Some([10, 0, 0, 9].into()), "Firefox on Linux", "alice");
    /// assert_eq!(NetworkMismatch.assess(&near).level, RiskLevel::Low);
    /// ```
    pub fn new(
        browser_ip: Option<IpAddr>,
        phone_ip: Option<IpAddr>,
        browser: &'a str,
        subject: &'a str,
    ) -> Self {
        Self {
            browser_ip,
            phone_ip,
            browser,
            subject,
        }
    }
}

/// How risky a login looks, from [`RiskLevel::Low`] up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RiskLevel {
    /// Nothing unusual.
    Low,
    /// Something the user should look at (the default signal: another network).
    Elevated,
    /// Likely not the user's own login.
    High,
}

/// A signal's verdict: the level and why, as short machine-readable reasons (e.g.
/// `network_mismatch`, `another_country`) that the phone's confirm screen turns into words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Risk {
    /// How risky.
    pub level: RiskLevel,
    /// Why; empty at [`RiskLevel::Low`].
    pub reasons: Vec<String>,
}

impl Risk {
    /// Nothing unusual.
    ///
    /// ```
    /// assert!(qrauth_core::risk::Risk::low().reasons.is_empty());
    /// ```
    pub fn low() -> Self {
        Self {
            level: RiskLevel::Low,
            reasons: Vec::new(),
        }
    }

    /// A verdict at `level` for one reason.
    ///
    /// ```
    /// use qrauth_core::risk::{Risk, RiskLevel};
    /// let risk = Risk::new(RiskLevel::High, "another_country");
    /// assert_eq!(risk.reasons, ["another_country"]);
    /// ```
    pub fn new(level: RiskLevel, reason: impl Into<String>) -> Self {
        Self {
            level,
            reasons: vec![reason.into()],
        }
    }
}

/// Judges a login when its QR code is scanned. Called once per scan, on the request's thread:
/// keep it to local lookups (a GeoIP or ASN database), not network calls.
///
/// ```
/// use qrauth_core::risk::{LoginAttempt, Risk, RiskLevel, RiskSignal};
///
/// /// Flags phones outside the office network.
/// struct Office;
///
/// impl RiskSignal for Office {
///     fn assess(&self, attempt: &LoginAttempt<'_>) -> Risk {
///         let inside = attempt.phone_ip.is_some_and(|ip| match ip {
///             std::net::IpAddr::V4(v4) => v4.octets()[..2] == [10, 8],
///             _ => false,
///         });
///         if inside { Risk::low() } else { Risk::new(RiskLevel::High, "outside_the_office") }
///     }
/// }
///
/// let attempt = LoginAttempt::new(None, Some([192, 0, 2, 1].into()), "Safari on macOS", "alice");
/// assert_eq!(Office.assess(&attempt).level, RiskLevel::High);
/// ```
pub trait RiskSignal: Send + Sync {
    /// The verdict on one login.
    fn assess(&self, attempt: &LoginAttempt<'_>) -> Risk;
}

/// The default signal: [`RiskLevel::Elevated`] with reason `network_mismatch` when the phone
/// and the browser are on different networks (another IPv4 /24 or IPv6 /48, or another address
/// family). Unknown addresses are no evidence.
///
/// ```
/// use qrauth_core::risk::{LoginAttempt, NetworkMismatch, RiskLevel, RiskSignal};
///
/// let far = LoginAttempt::new(Some([198, 51, 100, 7].into()), Some([203, 0, 113, 9].into()), "Chrome on Windows", "alice");
/// let risk = NetworkMismatch.assess(&far);
/// assert_eq!((risk.level, risk.reasons[0].as_str()), (RiskLevel::Elevated, "network_mismatch"));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NetworkMismatch;

impl RiskSignal for NetworkMismatch {
    fn assess(&self, attempt: &LoginAttempt<'_>) -> Risk {
        if networks_differ(attempt.browser_ip, attempt.phone_ip) {
            Risk::new(RiskLevel::Elevated, "network_mismatch")
        } else {
            Risk::low()
        }
    }
}

/// Whether the phone and the browser look like different networks: different /24 for IPv4,
/// different /48 for IPv6, or different families. Unknown addresses are no evidence.
pub(crate) fn networks_differ(browser: Option<IpAddr>, phone: Option<IpAddr>) -> bool {
    match (browser, phone) {
        (Some(IpAddr::V4(a)), Some(IpAddr::V4(b))) => a.octets()[..3] != b.octets()[..3],
        (Some(IpAddr::V6(a)), Some(IpAddr::V6(b))) => a.segments()[..3] != b.segments()[..3],
        (Some(_), Some(_)) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_differ_by_prefix() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(!networks_differ(ip("10.1.2.3"), ip("10.1.2.200")));
        assert!(networks_differ(ip("10.1.2.3"), ip("10.1.3.3")));
        assert!(!networks_differ(
            ip("2001:db8:1::1"),
            ip("2001:db8:1:ff::2")
        ));
        assert!(networks_differ(ip("2001:db8:1::1"), ip("2001:db8:2::1")));
        assert!(networks_differ(ip("10.0.0.1"), ip("2001:db8::1")));
        assert!(!networks_differ(None, ip("10.0.0.1")));
    }

    #[test]
    fn levels_are_ordered() {
        assert!(RiskLevel::Low < RiskLevel::Elevated && RiskLevel::Elevated < RiskLevel::High);
        assert_eq!(
            serde_json::to_value(RiskLevel::Elevated).unwrap(),
            "elevated"
        );
    }
}
