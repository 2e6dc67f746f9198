//! The values of a login: states, users, token sets, claims.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::{QrCodeId, Ticket};

/// Where a QR login session stands.
///
/// `Pending → Scanned → Confirmed | Cancelled`, any live state → `Expired`, and
/// `Confirmed → Consumed` once the bound browser has exchanged its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QrState {
    /// Shown, not scanned yet.
    Pending,
    /// A phone user scanned it and sees the confirm screen.
    Scanned,
    /// The phone user confirmed; the bound browser may fetch and exchange its ticket.
    Confirmed,
    /// The phone user (or the abuse limits) cancelled it.
    Cancelled,
    /// Its lifetime ended before it was confirmed and exchanged.
    Expired,
    /// The ticket was exchanged: the login is complete and the QR can never log anyone in again.
    Consumed,
}

impl QrState {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            QrState::Pending => "pending",
            QrState::Scanned => "scanned",
            QrState::Confirmed => "confirmed",
            QrState::Cancelled => "cancelled",
            QrState::Expired => "expired",
            QrState::Consumed => "consumed",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => QrState::Pending,
            "scanned" => QrState::Scanned,
            "confirmed" => QrState::Confirmed,
            "cancelled" => QrState::Cancelled,
            "expired" => QrState::Expired,
            "consumed" => QrState::Consumed,
            _ => return None,
        })
    }

    /// No further transition can leave this state (except `Confirmed → Consumed`, which is not
    /// visible to a waiting browser as a change it cares about).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            QrState::Cancelled | QrState::Expired | QrState::Consumed
        )
    }

    /// The session can still expire.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            QrState::Pending | QrState::Scanned | QrState::Confirmed
        )
    }
}

/// What the browser may learn about the phone user once they scanned: a display name and a
/// picture, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    /// Picture URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo: Option<String>,
}

/// What a bound browser may know about a session.
#[derive(Debug, Clone)]
pub(crate) struct QrStatus {
    /// The session id.
    pub id: QrCodeId,
    /// Its state.
    pub state: QrState,
    /// Incremented by every transition; SSE event ids and long-poll `since` use it.
    pub version: u64,
    /// The scanning user's display info, once scanned (never after consumption).
    pub user: Option<UserInfo>,
    /// The one-time ticket, only when confirmed and only for the bound browser.
    pub ticket: Option<Ticket>,
    /// With number matching, the code the phone must send, while scanned.
    pub match_code: Option<String>,
    /// Absolute expiry, Unix milliseconds.
    pub expire_at_ms: u64,
    /// The QR to show now, while pending, for a QR that rotates.
    pub qr: Option<crate::flow::ShownQr>,
}

/// The tokens a completed login yields (OAuth 2.0 token response).
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenSet {
    /// The access token.
    pub access_token: String,
    /// The OpenID Connect id_token; [`AuthenticatedUser`-style extractors] verify it.
    pub id_token: String,
    /// Refresh token, when the provider issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Always `Bearer`.
    pub token_type: String,
    /// Access token lifetime, seconds.
    pub expires_in: u64,
    /// Granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"<redacted>")
            .field("id_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// `aud`: one string or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `aud` names this audience.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}

/// The verified claims of an id_token: the registered ones typed, every other claim kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user's id at the issuer.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// When the user authenticated, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// The nonce from the authentication request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Claims {
    /// The signed-in session of a token qrauth signed (its `sid` claim), e.g. to revoke it
    /// with [`QrAuthService::revoke_session`](crate::QrAuthService::revoke_session) when the
    /// application's own session ends.
    ///
    /// ```
    /// let claims: qrauth_core::Claims = serde_json::from_value(serde_json::json!({
    ///     "iss": "https://example.com", "sub": "alice", "aud": "web", "exp": 1,
    ///     "sid": "AAAAAAAAAAAAAAAAAAAAAA",
    /// })).unwrap();
    /// assert_eq!(claims.session_id().unwrap().as_str(), "AAAAAAAAAAAAAAAAAAAAAA");
    /// ```
    pub fn session_id(&self) -> Option<crate::SessionId> {
        self.extra
            .get("sid")
            .and_then(Value::as_str)
            .and_then(|s| crate::SessionId::parse(s).ok())
    }
}
