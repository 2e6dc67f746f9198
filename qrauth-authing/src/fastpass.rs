//! `POST /qrcode/fastpass`: a fastpass QR for a user who is already logged in (Authing's
//! gene-fastpass-qrcode-info), served as an extension route of the Authing provider.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::header::ALLOW;
use http::{Method, StatusCode};
use qrauth_core::provider::{ProviderRoutes, RouteContext};
use qrauth_core::verify::IdTokenVerifier;
use qrauth_core::{ApiResponse, Error, Result, TokenError};
use serde::Deserialize;
use serde_json::Value;

use crate::client::AuthingClient;

/// What a logged-in user asks for in the JSON body of `POST /qrcode/fastpass` (Authing's
/// `SignInFastpassOptionsDto`); every field is optional and unknown fields are refused.
///
/// ```
/// let request: qrauth_authing::FastpassRequest = serde_json::from_value(serde_json::json!({
///     "scope": "openid profile",
///     "context": { "source": "utm" },
///     "customData": { "school": "pku" },
/// }))?;
/// assert_eq!(request.scope.as_deref(), Some("openid profile"));
/// assert!(serde_json::from_str::<qrauth_authing::FastpassRequest>(r#"{"other":1}"#).is_err());
/// # Ok::<_, serde_json::Error>(())
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
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

/// The provider's extension routes: `fastpass` only.
pub(crate) struct FastpassRoutes {
    pub(crate) client: Arc<AuthingClient>,
    pub(crate) verifier: IdTokenVerifier,
}

#[async_trait]
impl ProviderRoutes for FastpassRoutes {
    async fn handle(&self, path: &str, request: RouteContext<'_>) -> Result<ApiResponse> {
        if path != "fastpass" {
            return Err(Error::NotFound);
        }
        if request.request().method != Method::POST {
            return Ok(ApiResponse::from_error(&Error::MethodNotAllowed)
                .with_header(ALLOW, Method::POST.as_str()));
        }
        self.fastpass(request).await
    }
}

impl FastpassRoutes {
    /// `Authorization: Bearer <access_token>` of the logged-in user, optional JSON body
    /// [`FastpassRequest`].
    async fn fastpass(&self, request: RouteContext<'_>) -> Result<ApiResponse> {
        request.check_origin()?;
        let token = request
            .bearer_token()
            .ok_or(Error::InvalidToken(TokenError::Missing))?;
        let body: FastpassRequest = request.json_or_default()?;
        request
            .limit(
                &format!("fastpass:{}", hex_sha256(token)),
                request.phone_limit_per_minute(),
                Duration::from_secs(60),
            )
            .await?;
        // Only this application's users: the access token must verify like an id_token
        // (Authing signs both with the application's key; `aud` is the app id).
        self.verifier.verify(token).await?;
        if body
            .scope
            .as_deref()
            .is_some_and(|s| !s.split_whitespace().any(|p| p == "openid"))
        {
            return Err(Error::InvalidRequest("scope must contain openid".into()));
        }
        let data = self.client.fastpass(token, &body).await?;
        Ok(ApiResponse::json(StatusCode::OK, &data))
    }
}

/// Hex SHA-256 of a client-supplied value, for limit keys that must not hold it in clear.
fn hex_sha256(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            use std::fmt::Write;
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_sha256_of_known_input() {
        assert_eq!(
            super::hex_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
