//! The phone's list of signed-in browsers: `GET /qrcode/devices` and
//! `POST /qrcode/devices/revoke`, for providers with a [phone side](crate::provider::PhoneSide),
//! authenticated like scan and confirm.

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::request::parse_json;
use super::{ApiRequest, ApiResponse, QrAuthService};
use crate::error::{Error, Result};
use crate::secret::SessionId;

/// `{ "sessionId": "…" }` or `{ "all": true }`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeBody {
    session_id: Option<String>,
    #[serde(default)]
    all: bool,
}

impl QrAuthService {
    /// `GET /qrcode/devices`: handles, browser labels, addresses and times; never a token.
    pub(super) async fn devices(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let phone = self
            .inner
            .provider
            .capabilities()
            .phone
            .ok_or(Error::NotFound)?;
        self.check_origin(&request.headers)?;
        let user = self.phone_caller(phone, request).await?;
        // The caller's own browser session, if the phone page itself is signed in.
        let current = self.token_session(&request.headers).await.ok().flatten();
        let sessions: Vec<_> = self
            .signed_in_sessions(&user.subject)
            .await?
            .into_iter()
            .map(|s| {
                json!({
                    "sessionId": s.id.as_str(),
                    "browser": s.browser,
                    "ip": s.ip.map(|ip| ip.to_string()),
                    "createdAt": s.created_at_ms,
                    "lastSeenAt": s.last_seen_at_ms,
                    "current": current.as_ref().is_some_and(|c| c.ct_eq(&s.id)),
                })
            })
            .collect();
        Ok(ApiResponse::json(
            StatusCode::OK,
            &json!({ "sessions": sessions }),
        ))
    }

    /// `POST /qrcode/devices/revoke`: one of the caller's sessions, or all of them. Another
    /// user's handle is `404 unknown_session`, the same as an unknown one.
    pub(super) async fn revoke_devices(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let phone = self
            .inner
            .provider
            .capabilities()
            .phone
            .ok_or(Error::NotFound)?;
        self.check_origin(&request.headers)?;
        let body: RevokeBody = parse_json(request)?;
        let user = self.phone_caller(phone, request).await?;
        let revoked = match (body.session_id, body.all) {
            (None, true) => self.revoke_all_sessions(&user.subject).await?,
            (Some(handle), false) => {
                let id = SessionId::parse(&handle).map_err(|_| Error::UnknownSession)?;
                let now = self.inner.flow.clock().now_millis();
                let owned = self
                    .inner
                    .signed_in
                    .load(&id, now)
                    .await?
                    .filter(|s| {
                        s.subject == user.subject && s.provider == self.metrics().provider()
                    })
                    .ok_or(Error::UnknownSession)?;
                usize::from(self.inner.signed_in.revoke(&owned.id).await?)
            }
            _ => {
                return Err(Error::InvalidRequest(
                    "give either sessionId or \"all\": true".into(),
                ));
            }
        };
        Ok(ApiResponse::json(
            StatusCode::OK,
            &json!({ "revoked": revoked }),
        ))
    }
}
