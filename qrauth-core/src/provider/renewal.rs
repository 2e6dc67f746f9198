//! [`TokenRenewal`]: fresh tokens for a signed-in session, without a new QR login.

use async_trait::async_trait;

use super::{IssuedTokens, RenewingSession};
use crate::error::Result;

/// A provider that can issue fresh tokens for a signed-in session: what keeps a browser in use
/// signed in past its first id_token (`POST /qrcode/refresh`).
///
/// The service has already checked and rotated the session's refresh secret when it calls
/// [`renew`](TokenRenewal::renew); the provider only signs the tokens. A provider with this
/// capability signs every id_token it issues (at exchange and at renewal) with the session's
/// id as `sid` ([`ConfirmedLogin::session_id`](super::ConfirmedLogin::session_id),
/// [`RenewingSession::session_id`]): that claim is how `AuthenticatedUser` finds the session.
#[async_trait]
pub trait TokenRenewal: Send + Sync {
    /// Tokens for `session`, with the claims of the new id_token.
    async fn renew(&self, session: RenewingSession<'_>) -> Result<IssuedTokens>;
}
