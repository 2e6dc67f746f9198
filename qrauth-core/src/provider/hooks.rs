//! The values that cross the provider hooks.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::builtin::PhoneAuthenticator;
use super::{ProviderRoutes, TokenRenewal, UpstreamDriver};
use crate::record::{Initiator, SessionRecord};
use crate::secret::{QrCodeId, SessionId};
use crate::signed_in::SignedInSession;
use crate::types::{Claims, TokenSet, UserInfo};

/// A session that is starting, as [`QrAuthProvider::start`](super::QrAuthProvider::start)
/// sees it.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SessionStart<'a> {
    /// The new session's public id (already minted by the service).
    pub id: &'a QrCodeId,
    /// Who is asking: the browser's address and description.
    pub initiator: &'a Initiator,
    /// The OIDC `nonce` the browser asked for.
    pub nonce: Option<&'a str>,
    /// The provider fields of the `POST /qrcode` body: every top-level field but `nonce`
    /// (Authing's `scene` and `userDefinedData`, for instance). Bounded by the 4 KiB body limit.
    pub extensions: &'a Map<String, Value>,
    /// Now, Unix ms.
    pub now_ms: u64,
    /// When the session stops being scannable, Unix ms.
    pub expire_at_ms: u64,
}

/// What the QR of a new session carries, from
/// [`QrAuthProvider::start`](super::QrAuthProvider::start).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QrContent {
    /// The text to encode in the QR.
    pub content: String,
    /// A code the browser shows beside the QR for the user to compare or type (RFC 8628
    /// `user_code`); answered as `userCode`.
    pub user_code: Option<String>,
    /// Opaque data kept with the session for the provider's later hooks (an upstream QR id, a
    /// device code); never sent to a browser.
    pub provider_data: Option<String>,
}

impl QrContent {
    /// A QR that shows `content`.
    pub fn new(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            user_code: None,
            provider_data: None,
        }
    }

    /// Keeps `data` with the session (see [`QrContent::provider_data`]).
    pub fn provider_data(mut self, data: impl Into<String>) -> Self {
        self.provider_data = Some(data.into());
        self
    }

    /// Shows `code` beside the QR (see [`QrContent::user_code`]).
    pub fn user_code(mut self, code: impl Into<String>) -> Self {
        self.user_code = Some(code.into());
        self
    }
}

/// A confirmed login whose ticket the bound browser just redeemed, for
/// [`QrAuthProvider::issue_tokens`](super::QrAuthProvider::issue_tokens).
#[derive(Debug, Clone, Copy)]
pub struct ConfirmedLogin<'a> {
    record: &'a SessionRecord,
    session: &'a SessionId,
    now_ms: u64,
    ticket_lifetime_ms: u64,
    id_token_lifetime_secs: u64,
}

impl<'a> ConfirmedLogin<'a> {
    pub(crate) fn new(
        record: &'a SessionRecord,
        session: &'a SessionId,
        now_ms: u64,
        lifetimes: &crate::Lifetimes,
    ) -> Self {
        Self {
            record,
            session,
            now_ms,
            ticket_lifetime_ms: lifetimes.ticket.as_millis() as u64,
            id_token_lifetime_secs: lifetimes.id_token.as_secs(),
        }
    }

    /// The signed-in session this login creates: tokens a provider signs carry it as `sid`.
    pub fn session_id(&self) -> &'a SessionId {
        self.session
    }

    /// How long the id_tokens a provider signs should live, seconds (the service's
    /// [`Lifetimes::id_token`](crate::Lifetimes::id_token)).
    pub fn id_token_lifetime_secs(&self) -> u64 {
        self.id_token_lifetime_secs
    }

    /// The session id.
    pub fn id(&self) -> &'a QrCodeId {
        &self.record.id
    }

    /// The confirming user's subject: the phone user's for phone-direct providers, the one the
    /// upstream reported (possibly empty, when the IdP names the user only in its tokens).
    pub fn subject(&self) -> &'a str {
        self.record
            .scanner
            .as_ref()
            .map_or("", |s| s.subject.as_str())
    }

    /// What the browser was shown about the user (nickname, photo).
    pub fn user(&self) -> Option<&'a UserInfo> {
        self.record.scanner.as_ref().map(|s| &s.user)
    }

    /// Extra claims for the id_token, as the phone authenticator or the upstream gave them.
    pub fn claims(&self) -> Option<&'a Map<String, Value>> {
        self.record.scanner.as_ref().map(|s| &s.claims)
    }

    /// The OIDC `nonce` the browser asked for, to echo in the id_token.
    pub fn nonce(&self) -> Option<&'a str> {
        self.record.nonce.as_deref()
    }

    /// What the provider kept with the session.
    pub fn provider_data(&self) -> Option<&'a str> {
        self.record.provider_data.as_deref()
    }

    /// Who started the login.
    pub fn initiator(&self) -> &'a Initiator {
        &self.record.initiator
    }

    /// Now, Unix seconds (the service's clock).
    pub fn now_secs(&self) -> u64 {
        self.now_ms / 1000
    }

    /// When the user confirmed, Unix seconds (the id_token's `auth_time`).
    pub fn auth_time_secs(&self) -> u64 {
        self.record
            .ticket_expire_at_ms
            .saturating_sub(self.ticket_lifetime_ms)
            / 1000
    }
}

/// A signed-in session that renews, for [`TokenRenewal::renew`].
#[derive(Debug, Clone, Copy)]
pub struct RenewingSession<'a> {
    session: &'a SignedInSession,
    now_ms: u64,
    id_token_lifetime_secs: u64,
}

impl<'a> RenewingSession<'a> {
    pub(crate) fn new(
        session: &'a SignedInSession,
        now_ms: u64,
        lifetimes: &crate::Lifetimes,
    ) -> Self {
        Self {
            session,
            now_ms,
            id_token_lifetime_secs: lifetimes.id_token.as_secs(),
        }
    }

    /// The session (`sid`).
    pub fn session_id(&self) -> &'a SessionId {
        &self.session.id
    }

    /// The signed-in user.
    pub fn subject(&self) -> &'a str {
        &self.session.subject
    }

    /// The claims of the session's first id_token besides the registered ones.
    pub fn claims(&self) -> &'a Map<String, Value> {
        &self.session.claims
    }

    /// When the user confirmed the QR login, Unix seconds (`auth_time` stays the same).
    pub fn auth_time_secs(&self) -> u64 {
        self.session.auth_time
    }

    /// Now, Unix seconds (the service's clock).
    pub fn now_secs(&self) -> u64 {
        self.now_ms / 1000
    }

    /// How long the new id_token should live, seconds.
    pub fn id_token_lifetime_secs(&self) -> u64 {
        self.id_token_lifetime_secs
    }
}

/// The tokens of a login and the claims of its id_token, from
/// [`QrAuthProvider::issue_tokens`](super::QrAuthProvider::issue_tokens): the service hands the
/// claims to the sign-in hook without verifying the token again.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IssuedTokens {
    /// What the browser receives.
    pub tokens: TokenSet,
    /// The id_token's verified claims.
    pub claims: Claims,
}

impl IssuedTokens {
    /// Tokens with the claims of their id_token.
    pub fn new(tokens: TokenSet, claims: Claims) -> Self {
        Self { tokens, claims }
    }
}

/// The phone side of a provider whose phone app talks to qrauth itself: the service serves
/// `/qrcode/scan`, `/qrcode/confirm` and `/qrcode/cancel` with it.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct PhoneSide<'a> {
    /// Who the phone user is, from the `Authorization` credential.
    pub authenticator: &'a dyn PhoneAuthenticator,
    /// The application's name, for the confirm screen.
    pub app_name: &'a str,
    /// The application's origin (`scheme://host[:port]`), for the confirm screen.
    pub origin: Option<&'a str>,
}

impl<'a> PhoneSide<'a> {
    /// A phone side authenticating users with `authenticator`, for the app `app_name`.
    pub fn new(authenticator: &'a dyn PhoneAuthenticator, app_name: &'a str) -> Self {
        Self {
            authenticator,
            app_name,
            origin: None,
        }
    }

    /// The application's origin, shown on the confirm screen.
    pub fn origin(mut self, origin: Option<&'a str>) -> Self {
        self.origin = origin;
        self
    }
}

impl std::fmt::Debug for PhoneSide<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PhoneSide")
            .field("app_name", &self.app_name)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// Documents an issuer serves so that anyone can verify its tokens.
pub trait IssuerDocuments: Send + Sync {
    /// The JWKS document.
    fn jwks(&self) -> Value;
    /// The OpenID Connect discovery document.
    fn openid_configuration(&self) -> Value;
}

/// What a provider offers beyond the three hooks, from
/// [`QrAuthProvider::capabilities`](super::QrAuthProvider::capabilities).
///
/// ```
/// use qrauth_core::provider::Capabilities;
/// let nothing = Capabilities::none();
/// assert!(nothing.phone.is_none() && nothing.upstream.is_none());
/// ```
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub struct Capabilities<'a> {
    /// Its phone app confirms through qrauth's phone routes.
    pub phone: Option<PhoneSide<'a>>,
    /// It signs tokens itself and serves `/.well-known/jwks.json` and
    /// `/.well-known/openid-configuration`.
    pub issuer: Option<&'a dyn IssuerDocuments>,
    /// The IdP confirms on its side; the service asks it through this driver.
    pub upstream: Option<&'a dyn UpstreamDriver>,
    /// Routes under `/qrcode/` that are the provider's own (e.g. Authing's fastpass).
    pub routes: Option<&'a dyn ProviderRoutes>,
    /// It issues fresh tokens for a signed-in session (`POST /qrcode/refresh`); without it a
    /// signed-in session lasts as long as its first id_token.
    pub renewal: Option<&'a dyn TokenRenewal>,
}

impl<'a> Capabilities<'a> {
    /// No capability beyond the hooks.
    pub fn none() -> Self {
        Self::default()
    }

    /// With a phone side.
    pub fn phone(mut self, phone: PhoneSide<'a>) -> Self {
        self.phone = Some(phone);
        self
    }

    /// With issuer documents.
    pub fn issuer(mut self, issuer: &'a dyn IssuerDocuments) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// With an upstream driver.
    pub fn upstream(mut self, driver: &'a dyn UpstreamDriver) -> Self {
        self.upstream = Some(driver);
        self
    }

    /// With extension routes.
    pub fn routes(mut self, routes: &'a dyn ProviderRoutes) -> Self {
        self.routes = Some(routes);
        self
    }

    /// With token renewal for signed-in sessions.
    pub fn renewal(mut self, renewal: &'a dyn TokenRenewal) -> Self {
        self.renewal = Some(renewal);
        self
    }
}

impl std::fmt::Debug for Capabilities<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capabilities")
            .field("phone", &self.phone)
            .field("issuer", &self.issuer.is_some())
            .field("upstream", &self.upstream.is_some())
            .field("routes", &self.routes.is_some())
            .field("renewal", &self.renewal.is_some())
            .finish()
    }
}

/// What the phone's confirm screen shows, so that the user can tell whether the login request
/// is their own.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
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
    /// The [risk signal](crate::risk::RiskSignal)'s verdict on this login, to show.
    pub risk: crate::risk::Risk,
    /// Whether confirm needs the two-digit code the browser shows, for this login (always with
    /// [`number_matching`](crate::QrAuthServiceBuilder::number_matching); from a risk level
    /// with [`number_matching_from`](crate::QrAuthServiceBuilder::number_matching_from)).
    pub number_matching: bool,
}
