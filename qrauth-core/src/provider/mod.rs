//! Identity providers: who confirms a login and who issues the tokens.
//!
//! [`QrAuthProvider`] is the extension point. The [`builtin`] provider runs the whole flow
//! itself (the application's own phone app confirms, qrauth signs the id_tokens); others proxy
//! an external IdP. Every provider builds on [`Sessions`](crate::sessions::Sessions), so
//! binding, single use and atomic transitions behave the same everywhere.

#[cfg(feature = "authing")]
pub mod authing;
pub mod builtin;

use std::net::IpAddr;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::error::Result;
use crate::lifetimes::Lifetimes;
use crate::secret::{BindingSecret, ConfirmToken, QrCodeId, Ticket};
use crate::session::Initiator;
use crate::types::{Claims, QrCode, QrState, QrStatus, TokenSet};

/// What the browser asked for when it requested a QR code.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GenerateRequest {
    /// The browser's binding secret: the session is bound to it.
    pub binding: BindingSecret,
    /// Who is asking (shown on the phone's confirm screen).
    pub initiator: Initiator,
    /// Authing's `scene` (e.g. `APP_AUTH`); providers without scenes ignore it.
    pub scene: Option<String>,
    /// Authing's `userDefinedData`: passed through to providers that support it.
    pub user_defined_data: Option<Value>,
    /// OIDC nonce to echo in the id_token.
    pub nonce: Option<String>,
}

impl GenerateRequest {
    /// A request with only the binding and the initiator.
    pub fn new(binding: BindingSecret, initiator: Initiator) -> Self {
        Self {
            binding,
            initiator,
            scene: None,
            user_defined_data: None,
            nonce: None,
        }
    }
}

/// A QR login identity provider.
///
/// Implement it to plug another IdP into qrauth: see the built-in provider for the reference
/// implementation on top of [`Sessions`](crate::sessions::Sessions).
#[async_trait]
pub trait QrAuthProvider: Send + Sync + 'static {
    /// Starts a session bound to the requesting browser and says what to show in the QR.
    async fn generate(&self, request: GenerateRequest) -> Result<QrCode>;

    /// The session's status as the bound browser may see it.
    async fn poll(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus>;

    /// Waits until the session's version differs from `since_version` or `deadline` passes,
    /// then answers like [`poll`](QrAuthProvider::poll). Providers that can be notified of
    /// changes override it; the default answers at once.
    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since_version: u64,
        deadline: Instant,
    ) -> Result<QrStatus> {
        let _ = (since_version, deadline);
        self.poll(id, binding).await
    }

    /// Exchanges a ticket presented by the bound browser for tokens; a ticket works once.
    async fn exchange(&self, ticket: &Ticket, binding: &BindingSecret) -> Result<TokenSet>;

    /// Verifies an id_token this provider issued (signature, `iss`, `aud`, `exp`, `nbf`).
    async fn verify(&self, id_token: &str) -> Result<Claims>;

    /// The lifetimes and poll interval this provider's sessions follow (used for abuse
    /// limits); the default is [`Lifetimes::default`].
    fn lifetimes(&self) -> Lifetimes {
        Lifetimes::default()
    }

    /// The phone-side API, for providers whose phone app talks to qrauth itself.
    fn phone(&self) -> Option<&dyn PhoneApi> {
        None
    }

    /// The issuer's discovery and JWKS documents, for providers that sign tokens themselves.
    fn issuer(&self) -> Option<&dyn IssuerDocuments> {
        None
    }

    /// "Fastpass" QR codes for users who are already logged in (Authing's
    /// gene-fastpass-qrcode-info), served at `POST /qrcode/fastpass`; `None` (the default)
    /// answers that route with 404.
    fn fastpass(&self) -> Option<&dyn FastpassApi> {
        None
    }
}

/// What a logged-in user asks for when requesting a fastpass QR code: Authing's
/// `SignInFastpassOptionsDto`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct FastpassRequest {
    /// Requested scope (space separated, must contain `openid`).
    pub scope: Option<String>,
    /// Extra context for the IdP's pipelines.
    pub context: Option<Value>,
    /// Custom user data to set.
    pub custom_data: Option<Value>,
}

/// Fastpass QR codes for an already logged-in user.
#[async_trait]
pub trait FastpassApi: Send + Sync {
    /// Returns the QR data for the IdP's token app to scan. `access_token` is the logged-in
    /// user's access token as presented (without the `Bearer ` prefix); implementations verify
    /// it and answer [`Error::InvalidToken`](crate::Error::InvalidToken) when it is not valid.
    async fn fastpass(&self, access_token: &str, request: FastpassRequest) -> Result<Value>;
}

/// The phone app's request context.
#[derive(Clone, Copy)]
pub struct PhoneRequest<'a> {
    /// The phone user's credential: the `Authorization` header value, as sent.
    pub authorization: &'a str,
    /// The phone's address.
    pub ip: Option<IpAddr>,
    /// The number-match code the user typed on the phone (confirm only).
    pub match_code: Option<&'a str>,
}

impl std::fmt::Debug for PhoneRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneRequest")
            .field("authorization", &"<redacted>")
            .field("ip", &self.ip)
            .field("match_code", &self.match_code.map(|_| "<redacted>"))
            .finish()
    }
}

/// What the phone's confirm screen shows, so that the user can tell whether the login request
/// is their own.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmContext {
    /// The application's name.
    pub app_name: String,
    /// The application's origin (`scheme://host[:port]`).
    pub origin: Option<String>,
    /// The initiating browser and OS, e.g. "Chrome on Windows".
    pub browser: String,
    /// The initiating browser's IP address.
    pub ip: Option<String>,
    /// When the QR was created, Unix ms.
    pub created_at: u64,
    /// The phone and the browser are on different networks (a hint of a relayed QR).
    pub network_mismatch: bool,
}

/// The result of a successful scan.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// The token the phone must send with confirm or cancel.
    pub confirm_token: ConfirmToken,
    /// What to show on the confirm screen.
    pub context: ConfirmContext,
}

/// The phone side of a provider whose phone app talks to qrauth directly.
#[async_trait]
pub trait PhoneApi: Send + Sync {
    /// Claims a pending session for the authenticated phone user.
    async fn scan(&self, id: &QrCodeId, phone: PhoneRequest<'_>) -> Result<ScanOutcome>;

    /// Confirms the login; only the scanning user, with the confirm token.
    async fn confirm(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        phone: PhoneRequest<'_>,
    ) -> Result<QrState>;

    /// Refuses the login; only the scanning user, with the confirm token.
    async fn cancel(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        phone: PhoneRequest<'_>,
    ) -> Result<QrState>;
}

/// Documents an issuer serves so that anyone can verify its tokens.
pub trait IssuerDocuments: Send + Sync {
    /// The JWKS document.
    fn jwks(&self) -> Value;
    /// The OpenID Connect discovery document.
    fn openid_configuration(&self) -> Value;
}
