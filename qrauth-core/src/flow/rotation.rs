//! The rotating QR: while a session waits for a scan, the QR its browser shows is replaced
//! every [`Lifetimes::qr_rotation`](crate::Lifetimes::qr_rotation), and only the QR on screen
//! (or, for [`GRACE_MS`] after it was replaced, the one before it) can be scanned.
//!
//! Why: a QR relayed to a victim (QRLJacking) goes stale within one rotation, so an attacker
//! must keep relaying a live copy; the session, its id and the browser's binding stay the same.
//!
//! Each QR carries a scan token, `HMAC-SHA256(binding key, id ‖ rotation)` truncated to 128 bits,
//! so every replica that shares the key computes the same token and nothing is stored. The
//! rotations of one session follow a schedule of its own: its phase comes from the session id,
//! so sessions created together do not all rotate (and all re-render) at the same instant.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};
use crate::secret::{BindingKey, QrCodeId, base64url_sextet, ct_eq_bytes};

/// How long the QR just replaced can still be scanned: the phone may have taken its picture a
/// moment before the browser changed it.
pub(crate) const GRACE_MS: u64 = 5_000;

/// The QR a browser should show now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShownQr {
    /// Which rotation this is (the session's schedule; not a count from zero).
    pub rotation: u64,
    /// The QR's text: the provider's content with this rotation's scan token.
    pub content: String,
    /// When the next rotation replaces it, Unix ms.
    pub rotates_at_ms: u64,
}

/// Scan tokens and the rotation schedule.
#[derive(Clone)]
pub(crate) struct QrRotation {
    key: BindingKey,
    period_ms: u64,
}

impl QrRotation {
    pub(crate) fn new(key: BindingKey, period: std::time::Duration) -> Self {
        Self {
            key,
            period_ms: u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// The session's offset into the schedule: from the id's first six characters (36 random
    /// bits), the same on every replica.
    fn phase_ms(&self, id: &QrCodeId) -> u64 {
        let phase = id
            .as_str()
            .bytes()
            .take(6)
            .filter_map(base64url_sextet)
            .fold(0u64, |acc, sextet| (acc << 6) | u64::from(sextet));
        phase % self.period_ms
    }

    /// The rotation current at `now_ms`.
    pub(crate) fn rotation(&self, id: &QrCodeId, now_ms: u64) -> u64 {
        now_ms.saturating_add(self.phase_ms(id)) / self.period_ms
    }

    /// When rotation `rotation` starts, Unix ms.
    fn starts_at_ms(&self, id: &QrCodeId, rotation: u64) -> u64 {
        rotation
            .saturating_mul(self.period_ms)
            .saturating_sub(self.phase_ms(id))
    }

    /// When the rotation current at `now_ms` is replaced, Unix ms.
    pub(crate) fn rotates_at_ms(&self, id: &QrCodeId, now_ms: u64) -> u64 {
        self.starts_at_ms(id, self.rotation(id, now_ms).saturating_add(1))
    }

    fn token(&self, id: &QrCodeId, rotation: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.key.scan_mac(id, rotation))
    }

    /// The QR to show at `now_ms` for a session whose provider gave `content`.
    pub(crate) fn shown(&self, id: &QrCodeId, content: &str, now_ms: u64) -> ShownQr {
        let rotation = self.rotation(id, now_ms);
        ShownQr {
            rotation,
            content: with_scan_token(content, &self.token(id, rotation)),
            rotates_at_ms: self.starts_at_ms(id, rotation.saturating_add(1)),
        }
    }

    /// Whether `presented` is the scan token of the QR on screen at `now_ms`, or of the one it
    /// replaced less than [`GRACE_MS`] ago. Compared in constant time.
    pub(crate) fn check(&self, id: &QrCodeId, presented: Option<&str>, now_ms: u64) -> Result<()> {
        let presented = presented.ok_or_else(|| {
            Error::InvalidRequest("scanToken is required: send the one in the QR".into())
        })?;
        let current = self.rotation(id, now_ms);
        let mut accepted = ct_eq_bytes(self.token(id, current).as_bytes(), presented.as_bytes());
        if now_ms < self.starts_at_ms(id, current).saturating_add(GRACE_MS) {
            let previous = self.token(id, current.saturating_sub(1));
            accepted |= ct_eq_bytes(previous.as_bytes(), presented.as_bytes());
        }
        if accepted {
            Ok(())
        } else {
            Err(Error::StaleQrCode)
        }
    }
}

/// `content` carrying `token`: a `scanToken` query parameter of a URL, `content.token`
/// otherwise (a bare id; base64url has no `.`).
fn with_scan_token(content: &str, token: &str) -> String {
    if !content.contains("://") {
        return format!("{content}.{token}");
    }
    let (base, fragment) = match content.find('#') {
        Some(at) => content.split_at(at),
        None => (content, ""),
    };
    let separator = match base.find('?') {
        None => "?",
        Some(_) if base.ends_with('?') || base.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{base}{separator}scanToken={token}{fragment}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PERIOD: u64 = 30_000;

    fn rotation() -> QrRotation {
        QrRotation::new(
            BindingKey::generate().unwrap(),
            Duration::from_millis(PERIOD),
        )
    }

    fn token_of(content: &str) -> &str {
        content
            .rsplit_once("scanToken=")
            .map(|(_, t)| t)
            .or_else(|| content.rsplit_once('.').map(|(_, t)| t))
            .unwrap()
    }

    #[test]
    fn the_qr_changes_every_period_and_only_the_one_on_screen_scans() {
        let r = rotation();
        let id = QrCodeId::generate().unwrap();
        let now = 1_800_000_000_000;
        let first = r.shown(&id, "https://app.example/m?qrcodeId=x", now);
        assert!(first.rotates_at_ms > now && first.rotates_at_ms <= now + PERIOD);
        let second = r.shown(&id, "https://app.example/m?qrcodeId=x", first.rotates_at_ms);
        assert_eq!(second.rotation, first.rotation + 1);
        assert_eq!(second.rotates_at_ms, first.rotates_at_ms + PERIOD);
        assert_ne!(token_of(&first.content), token_of(&second.content));
        let (old, new) = (token_of(&first.content), token_of(&second.content));
        // Before the rotation only the first; after it both for the grace, then only the new.
        assert!(r.check(&id, Some(old), first.rotates_at_ms - 1).is_ok());
        assert!(matches!(
            r.check(&id, Some(new), first.rotates_at_ms - 1),
            Err(Error::StaleQrCode)
        ));
        assert!(
            r.check(&id, Some(old), first.rotates_at_ms + GRACE_MS - 1)
                .is_ok()
        );
        assert!(matches!(
            r.check(&id, Some(old), first.rotates_at_ms + GRACE_MS),
            Err(Error::StaleQrCode)
        ));
        assert!(
            r.check(&id, Some(new), first.rotates_at_ms + GRACE_MS)
                .is_ok()
        );
        assert!(matches!(
            r.check(&id, None, now),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn tokens_differ_by_session_and_by_key_and_agree_across_replicas() {
        let key = BindingKey::generate().unwrap();
        let a = QrRotation::new(key.clone(), Duration::from_millis(PERIOD));
        let b = QrRotation::new(key, Duration::from_millis(PERIOD));
        let other_key = rotation();
        let (id, other_id) = (QrCodeId::generate().unwrap(), QrCodeId::generate().unwrap());
        let now = 1_800_000_000_000;
        let shown = a.shown(&id, "bare", now);
        assert_eq!(shown, b.shown(&id, "bare", now));
        assert!(b.check(&id, Some(token_of(&shown.content)), now).is_ok());
        assert!(
            other_key
                .check(&id, Some(token_of(&shown.content)), now)
                .is_err()
        );
        assert!(
            a.check(&other_id, Some(token_of(&shown.content)), now)
                .is_err()
        );
    }

    #[test]
    fn sessions_rotate_at_different_moments() {
        let r = rotation();
        let now = 1_800_000_000_000;
        let moments: std::collections::HashSet<u64> = (0..32)
            .map(|_| r.rotates_at_ms(&QrCodeId::generate().unwrap(), now))
            .collect();
        // 32 random phases over 30 000 ms: all equal would take a broken phase.
        assert!(moments.len() > 16, "{moments:?}");
    }

    #[test]
    fn the_token_goes_where_a_phone_app_finds_it() {
        assert_eq!(with_scan_token("abc", "T"), "abc.T");
        assert_eq!(
            with_scan_token("https://a.example/m?qrcodeId=abc", "T"),
            "https://a.example/m?qrcodeId=abc&scanToken=T"
        );
        assert_eq!(
            with_scan_token("https://a.example/m", "T"),
            "https://a.example/m?scanToken=T"
        );
        assert_eq!(
            with_scan_token("https://a.example/m?id=1#confirm", "T"),
            "https://a.example/m?id=1&scanToken=T#confirm"
        );
        assert_eq!(
            with_scan_token("myapp://login?", "T"),
            "myapp://login?scanToken=T"
        );
    }
}
