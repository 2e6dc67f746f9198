//! # qrauth-authing
//!
//! The Authing provider for [qrauth](qrauth_core): the same QR, scanned by the same Authing
//! app, for the same users and tokens as Authing's own web SDK ("APP 扫码登录"), with the ticket
//! kept on the server and push (long-poll, SSE) to the browser instead of 800 ms polling. It
//! uses qrauth-core's public API only.
//!
//! ```
//! use std::sync::Arc;
//! use qrauth_authing::{AuthingProvider, TokenAuthMethod};
//! use qrauth_core::QrAuthService;
//!
//! let provider = AuthingProvider::builder(
//!     "6342b8537axxxx047d314109",          // app id
//!     "4203d30e5e915xxxxxx26c31c9adce68",  // app secret
//!     "https://example.authing.cn",        // app host
//!     "62e221xxxxxxxxxxx5b8f6f1",          // user pool id
//! )
//! .token_auth_method(TokenAuthMethod::ClientSecretBasic) // as configured at Authing
//! .build()?;
//! // Store, lifetimes, limits and cookies are the service's settings.
//! let qrauth = QrAuthService::builder(Arc::new(provider)).build()?;
//! // Mount it: `Router::new().qrauth("/", qrauth)` (qrauth-axum) or
//! // `App::new().configure(qrauth_actix::mount("/", qrauth))` (qrauth-actix).
//! # let _ = qrauth;
//! # Ok::<_, qrauth_core::Error>(())
//! ```
//!
//! What happens, hook by hook:
//!
//! - `POST /qrcode` ([`start`](QrAuthProvider::start)): Authing's gene-qrcode; the browser gets
//!   qrauth's own session, bound to it, and the QR carries Authing's QR payload so that the
//!   Authing app can scan it. The body may hold Authing's `scene` (`APP_AUTH` only) and
//!   `userDefinedData` (a JSON object, passed on as `customData`); any other field is refused.
//! - status: qrauth-core runs one check-qrcode-status loop per live session, however many tabs
//!   wait; Authing's status is mapped to qrauth's, `userInfo` reduced to nickname and photo,
//!   and Authing's ticket kept server-side.
//! - `POST /qrcode/exchange` ([`issue_tokens`](QrAuthProvider::issue_tokens)): qrauth's own
//!   single-use ticket is redeemed, then Authing's ticket is exchanged (V3: with the configured
//!   client authentication; V2: the ticket alone, as Authing's V2 SDK sends it) and the
//!   returned id_token verified.
//! - [`verify`](QrAuthProvider::verify): Authing id_tokens, RS256 through the discovered JWKS,
//!   HS256 with the app secret when enabled; `iss` = `<app host>/oidc`, `aud` = app id.
//! - `POST /qrcode/fastpass` (an extension route): a fastpass QR for a logged-in user
//!   (gene-fastpass-qrcode-info), with `Authorization: Bearer <access_token>` and an optional
//!   [`FastpassRequest`] body.
//!
//! What the browser sees: qrauth's own `qrcodeId`, binding cookie, status and ticket. The QR
//! image necessarily encodes Authing's QR id (the Authing app needs it); Authing's status
//! answers, its ticket and its user details never leave the server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
mod config;
mod fastpass;
mod state;
mod upstream;

/// The README's example, compiled as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use client::QRCODE_NOT_FOUND;
pub use config::{ApiVersion, AuthingProviderBuilder, TokenAuthMethod};
pub use fastpass::FastpassRequest;

use std::sync::Arc;

use async_trait::async_trait;
use qrauth_core::provider::{Capabilities, ConfirmedLogin, IssuedTokens, QrContent, SessionStart};
use qrauth_core::verify::{IdTokenVerifier, IssuerConfig};
use qrauth_core::{Claims, Error, QrAuthProvider, Result};
use serde_json::{Map, Value, json};

use self::client::AuthingClient;
use self::fastpass::FastpassRoutes;
use self::state::UpstreamState;
use self::upstream::StatusDriver;

/// The `POST /qrcode` body fields the Authing provider reads (besides qrauth's `nonce`).
const EXTENSION_FIELDS: [&str; 2] = ["scene", "userDefinedData"];

/// Log in with the Authing app: a [`QrAuthProvider`] whose users confirm in the Authing app,
/// at Authing.
///
/// ```
/// use qrauth_authing::{AuthingProvider, TokenAuthMethod};
///
/// let provider = AuthingProvider::builder(
///     "6342b8537axxxx047d314109",          // app id
///     "4203d30e5e915xxxxxx26c31c9adce68",  // app secret
///     "https://example.authing.cn",        // app host
///     "62e221xxxxxxxxxxx5b8f6f1",          // user pool id
/// )
/// .token_auth_method(TokenAuthMethod::ClientSecretBasic)
/// .build()?;
/// assert_eq!(provider.issuer_url(), "https://example.authing.cn/oidc");
/// # Ok::<_, qrauth_core::Error>(())
/// ```
///
/// Fields of the `POST /qrcode` body other than `nonce`, `scene` and `userDefinedData` are
/// refused before Authing is called:
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use qrauth_authing::AuthingProvider;
/// use qrauth_core::{ApiRequest, QrAuthService, Route};
///
/// let provider = AuthingProvider::builder("app", "secret", "https://example.authing.cn", "pool")
///     .build()?;
/// let service = QrAuthService::builder(Arc::new(provider)).build()?;
/// let mut request = ApiRequest::new(http::Method::POST);
/// request.headers.insert(http::header::CONTENT_TYPE, "application/json".parse().unwrap());
/// request.body = r#"{"scene":"WEB_AUTH"}"#.into();
/// let response = service.handle(Route::Generate, request).await;
/// assert_eq!(response.status, 400); // invalid_request: scene must be APP_AUTH
/// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
/// ```
pub struct AuthingProvider {
    client: Arc<AuthingClient>,
    verifier: IdTokenVerifier,
    driver: StatusDriver,
    routes: FastpassRoutes,
}

impl std::fmt::Debug for AuthingProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthingProvider")
            .field("config", self.client.config())
            .finish_non_exhaustive()
    }
}

impl AuthingProvider {
    /// Starts configuring a provider for the Authing application `app_id` (with its secret), at
    /// `app_host` (`https://<app>.authing.cn`), in user pool `user_pool_id`.
    pub fn builder(
        app_id: impl Into<String>,
        app_secret: impl Into<String>,
        app_host: impl Into<String>,
        user_pool_id: impl Into<String>,
    ) -> AuthingProviderBuilder {
        AuthingProviderBuilder::new(
            app_id.into(),
            app_secret.into(),
            app_host.into(),
            user_pool_id.into(),
        )
    }

    /// The issuer of the application's id_tokens: `<app host>/oidc`.
    pub fn issuer_url(&self) -> String {
        self.client.config().issuer()
    }

    /// Checks the provider fields of the `POST /qrcode` body; returns the `userDefinedData` to
    /// pass to Authing as `customData`.
    fn custom_data(&self, extensions: &Map<String, Value>) -> Result<Option<Value>> {
        if let Some(unknown) = extensions
            .keys()
            .find(|k| !EXTENSION_FIELDS.contains(&k.as_str()))
        {
            return Err(Error::InvalidRequest(format!(
                "invalid JSON body: unknown field `{}`",
                shortened(unknown)
            )));
        }
        match extensions.get("scene") {
            None | Some(Value::Null) => {}
            Some(Value::String(scene)) if scene == "APP_AUTH" => {}
            Some(_) => {
                return Err(Error::InvalidRequest(
                    "scene must be APP_AUTH for the Authing provider".into(),
                ));
            }
        }
        match extensions.get("userDefinedData") {
            None | Some(Value::Null) => Ok(None),
            Some(data @ Value::Object(_)) => {
                let size = serde_json::to_vec(data)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > self.client.config().max_custom_data_bytes {
                    return Err(Error::InvalidRequest("userDefinedData is too large".into()));
                }
                Ok(Some(data.clone()))
            }
            Some(_) => Err(Error::InvalidRequest(
                "userDefinedData must be a JSON object".into(),
            )),
        }
    }

    /// The QR payload the Authing app scans: the shape of Authing's own QR
    /// (`{scene, qrcodeId|random, userPoolId, createdAt, expiresIn, customData}`,
    /// Authing docs `full-api-list.md`).
    fn qr_content(
        &self,
        upstream_id: &str,
        created_ms: u64,
        expires_in: u64,
        custom: &Value,
    ) -> String {
        let c = self.client.config();
        let id_field = match c.api_version {
            ApiVersion::V3 => "qrcodeId",
            ApiVersion::V2 => "random",
        };
        let mut payload = Map::new();
        payload.insert("scene".into(), json!("APP_AUTH"));
        payload.insert(id_field.into(), json!(upstream_id));
        payload.insert("userPoolId".into(), json!(c.user_pool_id));
        payload.insert("createdAt".into(), json!(iso8601(created_ms)));
        payload.insert("expiresIn".into(), json!(expires_in));
        payload.insert("customData".into(), custom.clone());
        Value::Object(payload).to_string()
    }
}

/// At most 64 characters of a client-chosen name, for error messages.
fn shortened(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &name[..end]),
        None => name.to_owned(),
    }
}

impl AuthingProviderBuilder {
    /// Checks the configuration and builds the provider. Does no network I/O.
    ///
    /// # Errors
    /// [`Error::Config`] for an empty id, secret or pool id, an app host that is not an
    /// `https` URL (plain HTTP only to loopback), [`TokenAuthMethod::None`] without
    /// [`allow_none_auth`](Self::allow_none_auth), HS256 with a secret under 32 bytes, or bad
    /// timeouts.
    ///
    /// ```
    /// use qrauth_authing::{AuthingProvider, TokenAuthMethod};
    /// let none = AuthingProvider::builder("app", "secret", "https://x.authing.cn", "pool")
    ///     .token_auth_method(TokenAuthMethod::None);
    /// assert!(none.build().is_err());
    /// ```
    pub fn build(self) -> Result<AuthingProvider> {
        self.check()?;
        let config = self.config;
        let issuer = config.issuer();
        let mut issuer_config = IssuerConfig::new(issuer.clone(), config.app_id.clone())
            .discovery_url(issuer)
            .allow_insecure_http(config.allow_insecure_http);
        if config.hs256 {
            issuer_config = issuer_config.hs256_secret(config.app_secret.0.as_bytes().to_vec());
        }
        let mut verifier = IdTokenVerifier::builder()
            .issuer(issuer_config)
            .clock(self.clock.clone())
            .http_timeout(config.timeout);
        if let Some(http) = &self.http_client {
            verifier = verifier.http_client(http.clone());
        }
        let verifier = verifier.build()?;
        let client = Arc::new(AuthingClient::new(config, self.http_client, self.clock)?);
        Ok(AuthingProvider {
            driver: StatusDriver {
                client: client.clone(),
            },
            routes: FastpassRoutes {
                client: client.clone(),
                verifier: verifier.clone(),
            },
            client,
            verifier,
        })
    }
}

#[async_trait]
impl QrAuthProvider for AuthingProvider {
    async fn start(&self, session: SessionStart<'_>) -> Result<QrContent> {
        let custom = self.custom_data(session.extensions)?;
        let upstream = self.client.gene(custom.as_ref()).await?;
        let data = UpstreamState::new(upstream.id.clone()).write()?;
        let expires_in = session
            .expire_at_ms
            .saturating_sub(session.now_ms)
            .div_ceil(1000);
        let content = self.qr_content(
            &upstream.id,
            session.now_ms,
            upstream.expires_in.unwrap_or(expires_in),
            custom.as_ref().unwrap_or(&json!({})),
        );
        Ok(QrContent::new(content).provider_data(data))
    }

    async fn issue_tokens(&self, login: ConfirmedLogin<'_>) -> Result<IssuedTokens> {
        let upstream_ticket = UpstreamState::read(login.provider_data())
            .and_then(|u| u.ticket)
            .ok_or_else(|| Error::Internal("confirmed session without Authing ticket".into()))?;
        let tokens = self.client.exchange(&upstream_ticket).await?;
        let claims = match self.verifier.verify(&tokens.id_token).await {
            Ok(claims) => claims,
            // Authing's answer, not the browser's fault.
            Err(Error::InvalidToken(reason)) => {
                return Err(Error::Upstream(format!(
                    "exchange: Authing's id_token does not verify: {reason}"
                )));
            }
            Err(e) => return Err(e),
        };
        tracing::info!("Authing QR login completed");
        Ok(IssuedTokens::new(tokens, Arc::unwrap_or_clone(claims)))
    }

    async fn verify(&self, id_token: &str) -> Result<Arc<Claims>> {
        self.verifier.verify(id_token).await
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none()
            .upstream(&self.driver)
            .routes(&self.routes)
    }
}

/// `2020-11-13T06:23:25.396Z` from Unix milliseconds.
fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_matches_known_instants() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::iso8601(1_605_248_605_396),
            "2020-11-13T06:23:25.396Z"
        );
        assert_eq!(super::iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
