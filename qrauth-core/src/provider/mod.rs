//! The provider hooks: what differs between identity providers.
//!
//! The [`QrAuthService`](crate::QrAuthService) owns the session flow (binding, transitions,
//! tickets, waiting, limits). A [`QrAuthProvider`] only says what differs:
//!
//! - [`start`](QrAuthProvider::start): what the QR carries when a session starts;
//! - [`issue_tokens`](QrAuthProvider::issue_tokens): the tokens of a confirmed login;
//! - [`verify`](QrAuthProvider::verify): how its id_tokens verify;
//! - [`capabilities`](QrAuthProvider::capabilities): what else it offers — a phone side (its
//!   own phone app confirms through qrauth's phone routes), issuer documents (JWKS and
//!   discovery), an upstream driver (the IdP confirms on its side, see [`UpstreamDriver`]),
//!   extension routes under `/qrcode/`, token renewal for signed-in sessions
//!   ([`TokenRenewal`]).
//!
//! The [`builtin`] provider is the embedded default: the application's own phone app confirms
//! and qrauth signs the id_tokens. `docs/writing-a-provider.md` in the repository walks through
//! both kinds of provider.

mod body;
pub mod builtin;
pub(crate) mod hooks;
mod renewal;
mod routes;
mod upstream;

pub use crate::flow::OwnedUpstreamSession;
pub use body::{BodyError, read_bounded_body};
pub use hooks::{
    Capabilities, ConfirmContext, ConfirmedLogin, IssuedTokens, IssuerDocuments, PhoneSide,
    QrContent, RenewingSession, SessionStart,
};
pub use renewal::TokenRenewal;
pub use routes::{ProviderRoutes, RouteContext};
pub use upstream::{UpstreamDriver, UpstreamEvent, UpstreamLogin, UpstreamSession};

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::Claims;

/// A QR login identity provider: the hooks the service calls.
///
/// Every method is required: a provider states each capability it has, and none silently
/// falls back to a default behaviour.
#[async_trait]
pub trait QrAuthProvider: Send + Sync + 'static {
    /// A session is starting: what the QR shows (and what to keep server-side for later hooks).
    ///
    /// `session.extensions` holds the provider fields of the `POST /qrcode` body (everything
    /// but `nonce`); refuse fields you do not know with
    /// [`Error::InvalidRequest`](crate::Error::InvalidRequest).
    async fn start(&self, session: SessionStart<'_>) -> Result<QrContent>;

    /// The login of `login` was confirmed and its ticket redeemed by the bound browser: issue
    /// (or fetch from the IdP) its tokens, with their verified claims.
    async fn issue_tokens(&self, login: ConfirmedLogin<'_>) -> Result<IssuedTokens>;

    /// Verifies an id_token this provider issued (signature, `iss`, `aud`, `exp`, `nbf`).
    /// Shared claims: a cached verification (see [`IdTokenVerifier`](crate::IdTokenVerifier))
    /// hands out the same value every time, without copying it.
    async fn verify(&self, id_token: &str) -> Result<Arc<Claims>>;

    /// What else the provider offers; [`Capabilities::none`] for nothing.
    fn capabilities(&self) -> Capabilities<'_>;
}
