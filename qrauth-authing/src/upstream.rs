//! The upstream driver: one check of Authing's QR status, mapped to what the service records.
//!
//! qrauth-core runs the loop (one per live session that a browser waits on, however many tabs)
//! and writes each event into the session with a compare-and-set; this module only asks
//! Authing and translates its answer. Authing's status answers, its ticket and its user
//! details beyond nickname and photo never reach a browser: the ticket goes into the session's
//! server-side provider data.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qrauth_core::provider::{UpstreamDriver, UpstreamEvent, UpstreamLogin, UpstreamSession};
use qrauth_core::{Error, Result};

use crate::client::{AuthingClient, UpstreamStatus};
use crate::state::UpstreamState;

/// Asks Authing's check-qrcode-status (V3) or `qrcode/check` (V2) for the service's loop.
pub(crate) struct StatusDriver {
    pub(crate) client: Arc<AuthingClient>,
}

#[async_trait]
impl UpstreamDriver for StatusDriver {
    fn interval(&self) -> Duration {
        self.client.config().poll_interval
    }

    async fn check(&self, session: UpstreamSession<'_>) -> Result<UpstreamEvent> {
        let Some(upstream) = UpstreamState::read(session.provider_data) else {
            // Not reachable through `start`; a session that cannot be followed at Authing is
            // ended as unknown, so that its browser starts over with a new QR.
            tracing::error!("Authing status check: session without Authing QR id");
            return Ok(UpstreamEvent::Vanished);
        };
        let status = match self.client.check(&upstream.qr).await {
            Ok(status) => status,
            // Authing no longer knows the QR (2241): the browser gets `unknown_qrcode`.
            Err(Error::UnknownQrCode) => return Ok(UpstreamEvent::Vanished),
            Err(Error::ExpiredQrCode) => return Ok(UpstreamEvent::Expired),
            Err(e) => return Err(e),
        };
        Ok(match status {
            UpstreamStatus::Pending => UpstreamEvent::Pending,
            UpstreamStatus::Scanned(user) => UpstreamEvent::Scanned(user),
            UpstreamStatus::Authorized { ticket, user } => {
                // Authing's status names no user: the subject comes with Authing's tokens.
                let kept = UpstreamState {
                    ticket: Some(ticket),
                    ..upstream
                };
                UpstreamEvent::Confirmed(UpstreamLogin::new(user).provider_data(kept.write()?))
            }
            UpstreamStatus::Cancelled => UpstreamEvent::Cancelled,
            UpstreamStatus::Expired => UpstreamEvent::Expired,
        })
    }
}
