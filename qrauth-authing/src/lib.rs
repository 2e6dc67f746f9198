//! The Authing provider (feature `authing`): the same QR, scanned by the same Authing app, for
//! the same users and tokens as Authing's own web SDK, with the ticket kept on the server and
//! push (long-poll, SSE) to the browser instead of 800 ms polling.
//!
//! - generate: Authing's gene-qrcode; qrauth creates its own session bound to the browser and
//!   the QR carries Authing's QR payload so the Authing app can scan it.
//! - status: one server-side check-qrcode-status loop per live session, however many tabs
//!   wait (module `poller`); Authing's status is mapped to qrauth's, `userInfo` reduced to nickname
//!   and photo.
//! - exchange: qrauth's own single-use ticket is redeemed, then Authing's ticket (kept
//!   server-side, module `state`) is exchanged with the configured client authentication.
//! - verify: Authing id_tokens, RS256 through the discovered JWKS, HS256 with the app secret
//!   when enabled; `iss` = `<app host>/oidc`, `aud` = app id.
//! - fastpass: `POST /qrcode/fastpass` for a logged-in user (gene-fastpass-qrcode-info).
//!
//! What the browser sees: qrauth's own `qrcodeId`, binding cookie, status and ticket. The QR
//! image necessarily encodes Authing's QR id (the Authing app needs it); Authing's status
//! answers, its ticket and its user details never leave the server.

mod client;
mod config;
mod poller;
mod state;

pub use client::QRCODE_NOT_FOUND;
pub use config::{ApiVersion, AuthingProviderBuilder, TokenAuthMethod};

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;

use self::client::AuthingClient;
use self::poller::Poller;
use self::state::UpstreamState;
use crate::error::{Error, Result};
use crate::lifetimes::Lifetimes;
use crate::provider::{FastpassApi, FastpassRequest, GenerateRequest, QrAuthProvider};
use crate::secret::{BindingSecret, QrCodeId, Ticket};
use crate::sessions::Sessions;
use crate::types::{Claims, QrCode, QrState, QrStatus, TokenSet};
use crate::verify::{IdTokenVerifier, IssuerConfig};

/// Log in with the Authing app.
///
/// ```
/// use qrauth_core::provider::authing::{AuthingProvider, TokenAuthMethod};
///
/// let provider = AuthingProvider::builder(
///     "6342b8537axxxx047d314109",          // app id
///     "4203d30e5e915xxxxxx26c31c9adce68",  // app secret
///     "https://example.authing.cn",        // app host
///     "62e221xxxxxxxxxxx5b8f6f1",          // user pool id
/// )
/// .token_auth_method(TokenAuthMethod::ClientSecretBasic)
/// .build()
/// .unwrap();
/// assert_eq!(provider.issuer_url(), "https://example.authing.cn/oidc");
/// ```
pub struct AuthingProvider {
    client: Arc<AuthingClient>,
    sessions: Sessions,
    poller: Poller,
    verifier: IdTokenVerifier,
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

    /// The flow underneath.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The issuer of the application's id_tokens: `<app host>/oidc`.
    pub fn issuer_url(&self) -> String {
        self.client.config().issuer()
    }

    /// Upstream status loops running now (one per live session that someone waits on).
    pub fn live_upstream_loops(&self) -> usize {
        self.poller.live()
    }

    /// Upstream status loops started since the provider was built.
    pub fn upstream_loops_started(&self) -> u64 {
        self.poller.started()
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
        let mut payload = serde_json::Map::new();
        payload.insert("scene".into(), json!("APP_AUTH"));
        payload.insert(id_field.into(), json!(upstream_id));
        payload.insert("userPoolId".into(), json!(c.user_pool_id));
        payload.insert("createdAt".into(), json!(iso8601(created_ms)));
        payload.insert("expiresIn".into(), json!(expires_in));
        payload.insert("customData".into(), custom.clone());
        Value::Object(payload).to_string()
    }

    /// A session that Authing no longer knows answers `unknown_qrcode`, not `expired_qrcode`.
    async fn explain_expiry(&self, id: &QrCodeId, error: Error) -> Error {
        if !matches!(error, Error::ExpiredQrCode) {
            return error;
        }
        match self.sessions.load(id).await {
            Ok(record) if UpstreamState::read(&record).is_some_and(|u| u.lost) => {
                Error::UnknownQrCode
            }
            _ => error,
        }
    }

    async fn status(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus> {
        match self.sessions.status(id, binding).await {
            Ok(status) => Ok(status),
            Err(e) => Err(self.explain_expiry(id, e).await),
        }
    }
}

fn waiting_for_authing(state: QrState) -> bool {
    matches!(state, QrState::Pending | QrState::Scanned)
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
    /// use qrauth_core::provider::authing::{AuthingProvider, TokenAuthMethod};
    /// let none = AuthingProvider::builder("app", "secret", "https://x.authing.cn", "pool")
    ///     .token_auth_method(TokenAuthMethod::None);
    /// assert!(none.build().is_err());
    /// ```
    pub fn build(self) -> Result<AuthingProvider> {
        self.check()?;
        let config = self.config;
        let sessions = self.sessions.unwrap_or_else(Sessions::in_memory);
        let issuer = config.issuer();
        let mut issuer_config = IssuerConfig::new(issuer.clone(), config.app_id.clone())
            .discovery_url(issuer)
            .allow_insecure_http(config.allow_insecure_http);
        if config.hs256 {
            issuer_config = issuer_config.hs256_secret(config.app_secret.0.as_bytes().to_vec());
        }
        let mut verifier = IdTokenVerifier::builder()
            .issuer(issuer_config)
            .clock(sessions.clock().clone())
            .http_timeout(config.timeout);
        if let Some(http) = &self.http_client {
            verifier = verifier.http_client(http.clone());
        }
        let verifier = verifier.build()?;
        let interval = config.poll_interval;
        let client = Arc::new(AuthingClient::new(config, self.http_client)?);
        let poller = Poller::new(client.clone(), sessions.clone(), interval);
        Ok(AuthingProvider {
            client,
            sessions,
            poller,
            verifier,
        })
    }
}

#[async_trait]
impl QrAuthProvider for AuthingProvider {
    async fn generate(&self, request: GenerateRequest) -> Result<QrCode> {
        if request.scene.as_deref().is_some_and(|s| s != "APP_AUTH") {
            return Err(Error::InvalidRequest(
                "scene must be APP_AUTH for the Authing provider".into(),
            ));
        }
        let custom = match request.user_defined_data {
            None | Some(Value::Null) => None,
            Some(data @ Value::Object(_)) => {
                let size = serde_json::to_vec(&data)
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                if size > self.client.config().max_custom_data_bytes {
                    return Err(Error::InvalidRequest("userDefinedData is too large".into()));
                }
                Some(data)
            }
            Some(_) => {
                return Err(Error::InvalidRequest(
                    "userDefinedData must be a JSON object".into(),
                ));
            }
        };
        let upstream = self.client.gene(custom.as_ref()).await?;
        let data = UpstreamState::new(upstream.id.clone()).write()?;
        let record = self
            .sessions
            .create(
                &request.binding,
                request.initiator,
                request.nonce,
                Some(data),
            )
            .await?;
        let now = self.sessions.clock().now_millis();
        let expires_in = record.expire_at_ms.saturating_sub(now).div_ceil(1000);
        let content = self.qr_content(
            &upstream.id,
            record.created_at_ms,
            upstream.expires_in.unwrap_or(expires_in),
            custom.as_ref().unwrap_or(&json!({})),
        );
        // Start watching Authing at once: the browser's first poll follows.
        self.poller.interest(&record.id);
        Ok(QrCode {
            content,
            expires_in,
            expire_at_ms: record.expire_at_ms,
            interval: self.sessions.poll_interval().as_secs().max(1),
            id: record.id,
        })
    }

    async fn poll(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus> {
        let status = self.status(id, binding).await?;
        if waiting_for_authing(status.state) {
            if let Some(failure) = self.poller.interest(id).failure() {
                return Err(failure);
            }
        }
        Ok(status)
    }

    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since_version: u64,
        deadline: Instant,
    ) -> Result<QrStatus> {
        let first = self.poll(id, binding).await?;
        if first.version != since_version || !waiting_for_authing(first.state) {
            return Ok(first);
        }
        let guard = self.poller.wait(id);
        tokio::select! {
            changed = self.sessions.wait_for_change(id, binding, since_version, deadline) => {
                match changed {
                    Ok(status) => Ok(status),
                    Err(e) => Err(self.explain_expiry(id, e).await),
                }
            }
            failure = guard.lp.next_failure() => Err(failure),
        }
    }

    async fn exchange(&self, ticket: &Ticket, binding: &BindingSecret) -> Result<TokenSet> {
        let record = self.sessions.redeem(ticket, binding).await?;
        let upstream_ticket = UpstreamState::read(&record)
            .and_then(|u| u.ticket)
            .ok_or_else(|| Error::Internal("confirmed session without Authing ticket".into()))?;
        let tokens = self.client.exchange(&upstream_ticket).await?;
        tracing::info!("Authing QR login completed");
        Ok(tokens)
    }

    async fn verify(&self, id_token: &str) -> Result<Claims> {
        self.verifier.verify(id_token).await
    }

    fn lifetimes(&self) -> Lifetimes {
        *self.sessions.lifetimes()
    }

    fn fastpass(&self) -> Option<&dyn FastpassApi> {
        Some(self)
    }
}

#[async_trait]
impl FastpassApi for AuthingProvider {
    async fn fastpass(&self, access_token: &str, request: FastpassRequest) -> Result<Value> {
        // Only this application's users: the access token must verify like an id_token
        // (Authing signs both with the application's key; `aud` is the app id).
        self.verifier.verify(access_token).await?;
        if request
            .scope
            .as_deref()
            .is_some_and(|s| !s.split_whitespace().any(|p| p == "openid"))
        {
            return Err(Error::InvalidRequest("scope must contain openid".into()));
        }
        self.client.fastpass(access_token, &request).await
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
