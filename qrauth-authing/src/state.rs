//! What qrauth keeps about the Authing side of a session, server-side only.
//!
//! Stored as JSON in the session record's `provider_data` (so in Redis too, with `RedisStore`,
//! where every replica can read it): Authing's QR id from the start, Authing's ticket from the
//! moment Authing reports `AUTHORIZED` until the record is dropped after its retention (the
//! ticket is single use at Authing and is spent by the exchange). `provider_data` is never
//! serialised into any browser-facing answer. That Authing no longer knows a QR (code 2241) is
//! the session's own state (`UpstreamEvent::Vanished`), not kept here.

use serde::{Deserialize, Serialize};

use qrauth_core::{Error, Result};

#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UpstreamState {
    /// Authing's QR id (V3 `qrcodeId`, V2 `random`).
    #[serde(rename = "authingQr")]
    pub qr: String,
    /// Authing's ticket, once authorized.
    #[serde(
        rename = "authingTicket",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub ticket: Option<String>,
}

impl std::fmt::Debug for UpstreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamState")
            .field("qr", &self.qr)
            .field("ticket", &self.ticket.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl UpstreamState {
    pub fn new(qr: String) -> Self {
        Self { qr, ticket: None }
    }

    /// The state kept in a session's provider data, if it holds one.
    pub fn read(provider_data: Option<&str>) -> Option<Self> {
        serde_json::from_str(provider_data?).ok()
    }

    pub fn write(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::Internal(format!("provider data: {e}")))
    }
}
