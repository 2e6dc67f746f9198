//! What the provider keeps with a session (its `provider_data`, server-side only): the device
//! code, the poll interval the IdP asked for, when the code expires, and, once the user
//! approved, the IdP's tokens until the bound browser redeems its ticket.

use qrauth_core::{Error, Result, TokenSet};
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct DeviceState {
    /// The RFC 8628 `device_code`.
    #[serde(rename = "dc")]
    pub device_code: String,
    /// The poll interval the IdP asked for, seconds (5 when it said nothing).
    #[serde(rename = "iv")]
    pub interval_secs: u64,
    /// When the device code expires, Unix ms (the service's clock).
    #[serde(rename = "ex")]
    pub expires_at_ms: u64,
    /// The IdP's tokens, once it issued them.
    #[serde(rename = "tok", default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenSet>,
    /// When the tokens were received, Unix ms (to count their `expires_in` down).
    #[serde(rename = "at", default, skip_serializing_if = "Option::is_none")]
    pub received_at_ms: Option<u64>,
}

impl DeviceState {
    pub fn read(data: Option<&str>) -> Option<Self> {
        serde_json::from_str(data?).ok()
    }

    pub fn write(&self) -> Result<String> {
        serde_json::to_string(self)
            .map_err(|e| Error::Internal(format!("device grant state does not encode: {e}")))
    }
}

impl std::fmt::Debug for DeviceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceState")
            .field("device_code", &"<redacted>")
            .field("interval_secs", &self.interval_secs)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("tokens", &self.tokens)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_hides_the_device_code() {
        let state = DeviceState {
            device_code: "dc-secret".into(),
            interval_secs: 5,
            expires_at_ms: 1_000,
            tokens: None,
            received_at_ms: None,
        };
        let text = state.write().unwrap();
        let back = DeviceState::read(Some(&text)).unwrap();
        assert_eq!(back.device_code, "dc-secret");
        assert!(!format!("{back:?}").contains("dc-secret"));
        assert!(DeviceState::read(Some("garbage")).is_none());
        assert!(DeviceState::read(None).is_none());
    }
}
