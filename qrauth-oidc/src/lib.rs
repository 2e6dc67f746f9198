//! # qrauth-oidc
//!
//! QR login with any OpenID Provider that offers the OAuth 2.0 Device Authorization Grant
//! (RFC 8628): Keycloak, Auth0, Okta, Microsoft Entra ID, Google, panva's `oidc-provider`, …
//! The QR opens the IdP's own approval page on the phone; the server, never the browser, polls
//! the IdP's token endpoint; the browser that showed the QR (and only that one) gets the IdP's
//! tokens. It uses qrauth-core's public API only.
//!
//! ```
//! use std::sync::Arc;
//! use qrauth_core::QrAuthService;
//! use qrauth_oidc::DeviceGrantProvider;
//!
//! let provider = DeviceGrantProvider::builder("https://login.example.com/realms/main", "qrauth-web")
//!     .client_secret("the client's secret")
//!     .build()?;
//! let qrauth = QrAuthService::builder(Arc::new(provider)).build()?;
//! // Mount it: `Router::new().qrauth("/", qrauth)` (qrauth-axum) or
//! // `App::new().configure(qrauth_actix::mount("/", qrauth))` (qrauth-actix).
//! # let _ = qrauth;
//! # Ok::<_, qrauth_core::Error>(())
//! ```
//!
//! What happens, hook by hook:
//!
//! - `POST /qrcode` ([`start`](QrAuthProvider::start)): discovery (once, cached; the
//!   document's `issuer` must be the configured one), then the device authorization request
//!   with the configured client authentication, scopes and extra parameters. The QR carries
//!   `verification_uri_complete`, or `verification_uri` when the IdP omits it (GitHub and
//!   Entra do); the answer's `userCode` is the IdP's `user_code`, for the page to show beside
//!   the QR (RFC 8628 §3.3.1) — the user compares it with the one on the IdP's page. The body
//!   of `POST /qrcode` takes no provider fields, and no `nonce` (the device grant has none).
//! - status: qrauth-core runs one poll loop per session that a browser waits on (one across
//!   replicas, through a lease in the store). It polls the token endpoint at the IdP's
//!   `interval` (5 s when it says none), 5 s slower after each `slow_down`;
//!   `authorization_pending` → pending, `access_denied` → cancelled, `expired_token` (or a
//!   code past its `expires_in`) → expired, `invalid_grant` → unknown. Tokens are verified
//!   (the id_token against the JWKS from discovery: signature, `iss`, `aud` = client id,
//!   `exp`, `nbf`, and `azp` = client id when `aud` names several) before the session is
//!   confirmed. There is no `scanned` state: the IdP says nothing until the user decides.
//! - `POST /qrcode/exchange` ([`issue_tokens`](QrAuthProvider::issue_tokens)): qrauth's own
//!   single-use ticket is redeemed and the IdP's token set returned (`expires_in` counted down
//!   to now); the id_token is verified again on the way out.
//! - [`verify`](QrAuthProvider::verify): the IdP's id_tokens, as above; `AuthenticatedUser`
//!   accepts them, under qrauth's signed-in session rules.
//!
//! What the browser sees: qrauth's own `qrcodeId`, binding cookie, status and ticket, the
//! verification URI and the user code. The `device_code`, the IdP's answers and its tokens stay
//! on the server until the bound browser redeems its ticket. The IdP's `error` and
//! `error_description` go to the log; a browser gets `502`/`504 upstream_unavailable`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod config;
mod error;
mod state;

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use config::{
    ClientAuth, DEFAULT_CONNECT_TIMEOUT, DEFAULT_INTERVAL, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT, DeviceGrantProviderBuilder, SLOW_DOWN_STEP,
};
pub use error::OidcError;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qrauth_core::provider::{
    Capabilities, ConfirmedLogin, IssuedTokens, QrContent, SessionStart, UpstreamDriver,
    UpstreamEvent, UpstreamLogin, UpstreamSession,
};
use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
use qrauth_core::{Audience, Claims, Error, QrAuthProvider, Result, SharedClock, UserInfo};

use self::client::{Client, Poll};
use self::state::DeviceState;

/// Log in with any OpenID Provider's device grant: a [`QrAuthProvider`] whose users approve
/// on the IdP's own page.
///
/// ```
/// use qrauth_oidc::{ClientAuth, DeviceGrantProvider};
///
/// // A public client (no secret), as Entra and Google register device-flow clients.
/// let provider = DeviceGrantProvider::builder("https://idp.example", "qrauth-web")
///     .scopes(["openid", "profile", "email"])
///     .build()?;
/// assert_eq!(provider.client_id(), "qrauth-web");
/// # Ok::<_, qrauth_core::Error>(())
/// ```
pub struct DeviceGrantProvider {
    inner: Arc<Inner>,
    driver: TokenPoller,
}

struct Inner {
    client: Client,
    verifier: IdTokenVerifier,
    clock: SharedClock,
}

impl std::fmt::Debug for DeviceGrantProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceGrantProvider")
            .field("config", &self.inner.client.config)
            .finish_non_exhaustive()
    }
}

impl DeviceGrantProvider {
    /// Starts configuring a provider for the client `client_id` at the OpenID Provider
    /// `issuer` (its exact `iss`, e.g. `https://login.example.com/realms/main`; discovery is
    /// at `{issuer}/.well-known/openid-configuration`).
    pub fn builder(
        issuer: impl Into<String>,
        client_id: impl Into<String>,
    ) -> DeviceGrantProviderBuilder {
        DeviceGrantProviderBuilder::new(issuer.into(), client_id.into())
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.inner.client.config.issuer
    }

    /// The client id (the `aud` of the IdP's id_tokens).
    pub fn client_id(&self) -> &str {
        &self.inner.client.config.client_id
    }

    /// Fetches the discovery document and the JWKS now rather than at the first login: at
    /// start-up, to fail early on a wrong issuer or an IdP without the device grant.
    ///
    /// # Errors
    /// [`Error::Upstream`] or [`Error::UpstreamTimeout`] when discovery or the JWKS fail, the
    /// document's issuer differs, or it advertises no `device_authorization_endpoint`.
    pub async fn discover(&self) -> Result<()> {
        self.inner.client.endpoints().await?;
        self.inner.verifier.prefetch().await
    }
}

impl DeviceGrantProviderBuilder {
    /// Checks the configuration and builds the provider. Does no network I/O (see
    /// [`DeviceGrantProvider::discover`]).
    ///
    /// # Errors
    /// [`Error::Config`] for an empty client id, an issuer that is not `https` (plain HTTP
    /// only to loopback, or with [`allow_insecure_http`](Self::allow_insecure_http)), a
    /// secret-based [`ClientAuth`] without a secret, a protocol parameter among the extra
    /// parameters, or bad bounds.
    ///
    /// ```
    /// use qrauth_oidc::{ClientAuth, DeviceGrantProvider};
    /// let no_secret = DeviceGrantProvider::builder("https://idp.example", "web")
    ///     .client_auth(ClientAuth::ClientSecretBasic);
    /// assert!(no_secret.build().is_err());
    /// assert!(DeviceGrantProvider::builder("http://idp.example", "web").build().is_err());
    /// ```
    pub fn build(mut self) -> Result<DeviceGrantProvider> {
        self.check()?;
        let config = self.config;
        let issuer = IssuerConfig::new(config.issuer.clone(), config.client_id.clone())
            .discovery_url(config.issuer.clone())
            .allow_insecure_http(config.allow_insecure_http);
        let mut verifier = IdTokenVerifier::builder()
            .issuer(issuer)
            .clock(self.clock.clone())
            .http_timeout(config.timeout);
        if let Some(interval) = config.jwks_refetch_interval {
            verifier = verifier.refetch_interval(interval);
        }
        if let Some(http) = &self.http_client {
            verifier = verifier.http_client(http.clone());
        }
        let verifier = verifier.build()?;
        let inner = Arc::new(Inner {
            client: Client::new(config, self.http_client)?,
            verifier,
            clock: self.clock,
        });
        Ok(DeviceGrantProvider {
            driver: TokenPoller {
                inner: inner.clone(),
            },
            inner,
        })
    }
}

impl Inner {
    /// The id_token's claims, verified, with `azp` checked when `aud` names several
    /// audiences (OpenID Connect Core §3.1.3.7).
    async fn verify(&self, id_token: &str) -> Result<Arc<Claims>> {
        let claims = self.verifier.verify(id_token).await?;
        let client_id = &self.client.config.client_id;
        let several = matches!(&claims.aud, Audience::Many(list) if list.len() > 1);
        let azp = claims.extra.get("azp").and_then(serde_json::Value::as_str);
        match azp {
            Some(azp) if azp != client_id => Err(Error::InvalidToken(
                qrauth_core::TokenError::InvalidClaim("azp"),
            )),
            None if several => Err(Error::InvalidToken(qrauth_core::TokenError::InvalidClaim(
                "azp",
            ))),
            _ => Ok(claims),
        }
    }

    /// The IdP's id_token, verified: the IdP's fault when it does not verify.
    async fn verify_upstream(&self, id_token: &str) -> Result<Arc<Claims>> {
        match self.verify(id_token).await {
            Err(Error::InvalidToken(reason)) => {
                Err(OidcError::InvalidIdToken(reason.to_string()).into())
            }
            other => other,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.now_millis()
    }
}

#[async_trait]
impl QrAuthProvider for DeviceGrantProvider {
    async fn start(&self, session: SessionStart<'_>) -> Result<QrContent> {
        if let Some(field) = session.extensions.keys().next() {
            let field: String = field.chars().take(64).collect();
            return Err(Error::InvalidRequest(format!(
                "invalid JSON body: unknown field `{field}`"
            )));
        }
        if session.nonce.is_some() {
            return Err(Error::InvalidRequest(
                "the device grant carries no nonce: leave `nonce` out".into(),
            ));
        }
        let grant = self.inner.client.authorize().await?;
        let state = DeviceState {
            device_code: grant.device_code,
            interval_secs: grant.interval.unwrap_or(DEFAULT_INTERVAL.as_secs()),
            expires_at_ms: self
                .inner
                .now_ms()
                .saturating_add(grant.expires_in.saturating_mul(1000)),
            tokens: None,
            received_at_ms: None,
        };
        let content = grant
            .verification_uri_complete
            .unwrap_or(grant.verification_uri);
        Ok(QrContent::new(content)
            .user_code(grant.user_code)
            .provider_data(state.write()?))
    }

    async fn issue_tokens(&self, login: ConfirmedLogin<'_>) -> Result<IssuedTokens> {
        let state = DeviceState::read(login.provider_data());
        let Some((mut tokens, received)) =
            state.and_then(|s| Some((s.tokens?, s.received_at_ms.unwrap_or(0))))
        else {
            return Err(Error::Internal(
                "confirmed device-grant session without tokens".into(),
            ));
        };
        let claims = self.inner.verify_upstream(&tokens.id_token).await?;
        let elapsed = self.inner.now_ms().saturating_sub(received) / 1000;
        tokens.expires_in = tokens.expires_in.saturating_sub(elapsed);
        tracing::info!("device-grant QR login completed");
        Ok(IssuedTokens::new(tokens, Arc::unwrap_or_clone(claims)))
    }

    async fn verify(&self, id_token: &str) -> Result<Arc<Claims>> {
        self.inner.verify(id_token).await
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none().upstream(&self.driver)
    }
}

/// Polls the token endpoint for the service's loop.
struct TokenPoller {
    inner: Arc<Inner>,
}

#[async_trait]
impl UpstreamDriver for TokenPoller {
    fn interval(&self) -> Duration {
        DEFAULT_INTERVAL
    }

    fn session_interval(&self, session: &UpstreamSession<'_>) -> Duration {
        // RFC 8628 allows `interval: 0`; one second is the least qrauth waits.
        DeviceState::read(session.provider_data).map_or(DEFAULT_INTERVAL, |s| {
            Duration::from_secs(s.interval_secs.max(1))
        })
    }

    async fn check(&self, session: UpstreamSession<'_>) -> Result<UpstreamEvent> {
        let Some(mut state) = DeviceState::read(session.provider_data) else {
            tracing::error!("device-grant poll: session without device code");
            return Ok(UpstreamEvent::Vanished);
        };
        let now = self.inner.now_ms();
        if now >= state.expires_at_ms {
            // Past `expires_in` the IdP can only say expired (or has forgotten the code).
            return Ok(UpstreamEvent::Expired);
        }
        let poll = self.inner.client.poll(&state.device_code).await?;
        Ok(match poll {
            Poll::Pending => UpstreamEvent::Pending,
            Poll::SlowDown => {
                tracing::info!("the OpenID Provider asked to slow down");
                return Err(Error::SlowDown {
                    retry_after: SLOW_DOWN_STEP,
                });
            }
            Poll::Denied => UpstreamEvent::Cancelled,
            Poll::Expired => UpstreamEvent::Expired,
            Poll::InvalidGrant => {
                tracing::warn!("device-grant poll: the IdP no longer knows the device code");
                UpstreamEvent::Vanished
            }
            Poll::Tokens(tokens) => {
                let claims = self.inner.verify_upstream(&tokens.id_token).await?;
                let text = |name: &str| {
                    claims
                        .extra
                        .get(name)
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                };
                let user = UserInfo {
                    nickname: text("name").or_else(|| text("preferred_username")),
                    photo: text("picture"),
                };
                state.tokens = Some(tokens);
                state.received_at_ms = Some(now);
                UpstreamEvent::Confirmed(
                    UpstreamLogin::new(user)
                        .subject(claims.sub.clone())
                        .provider_data(state.write()?),
                )
            }
        })
    }
}
