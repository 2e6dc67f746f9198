//! The phone's routes, for providers with a [phone side](crate::provider::PhoneSide):
//! `POST /qrcode/scan`, `/qrcode/confirm`, `/qrcode/cancel`.
//!
//! The phone user's identity comes only from the `Authorization` credential, through the
//! provider's [`PhoneAuthenticator`](crate::PhoneAuthenticator); never from a body.

use std::time::Duration;

use http::StatusCode;
use http::header::AUTHORIZATION;
use serde::Deserialize;
use serde_json::json;

use super::request::{header_str, hex_sha256, parse_json};
use super::{ApiRequest, ApiResponse, QrAuthService, Route};
use crate::error::{Error, Result};
use crate::metrics::Limit;
use crate::provider::builtin::PhoneUser;
use crate::provider::{ConfirmContext, PhoneSide};
use crate::record::Scanner;
use crate::risk::{LoginAttempt, Risk, networks_differ};
use crate::secret::{ConfirmToken, QrCodeId};
use crate::types::UserInfo;

/// Phone bodies ignore unknown fields: a user id smuggled in the body is simply not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneBody {
    qrcode_id: String,
    /// The rotating QR's scan token (from the QR), for `scan`.
    scan_token: Option<String>,
    confirm_token: Option<String>,
    match_code: Option<String>,
}

impl QrAuthService {
    pub(super) async fn phone(&self, route: Route, request: &ApiRequest) -> Result<ApiResponse> {
        let phone = self
            .inner
            .provider
            .capabilities()
            .phone
            .ok_or(Error::NotFound)?;
        self.check_origin(&request.headers)?;
        let body: PhoneBody = parse_json(request)?;
        let user = self.phone_caller(phone, request).await?;
        let id = QrCodeId::parse(&body.qrcode_id).map_err(|_| Error::UnknownQrCode)?;
        let flow = &self.inner.flow;
        if route == Route::Scan {
            let phone_ip = self.client_ip(request);
            let subject = user.subject.clone();
            let scanner = Scanner {
                subject: user.subject,
                user: UserInfo {
                    nickname: user.nickname,
                    photo: user.photo,
                },
                claims: user.claims,
                ip: phone_ip,
            };
            let (signal, threshold) = (&self.inner.risk_signal, self.inner.number_matching_from);
            let mut risk = Risk::low();
            let (record, confirm_token) = flow
                .scan(&id, body.scan_token.as_deref(), scanner, |session| {
                    risk = signal.assess(&LoginAttempt::new(
                        session.initiator.ip,
                        phone_ip,
                        &session.initiator.device,
                        &subject,
                    ));
                    threshold.is_some_and(|level| risk.level >= level)
                })
                .await?;
            let context = ConfirmContext {
                app_name: phone.app_name.to_owned(),
                origin: phone.origin.map(str::to_owned),
                browser: record.initiator.device.clone(),
                ip: record.initiator.ip.map(|ip| ip.to_string()),
                created_at: record.created_at_ms,
                network_mismatch: networks_differ(record.initiator.ip, phone_ip),
                risk,
                number_matching: record.match_code.is_some(),
            };
            return Ok(ApiResponse::json(
                StatusCode::OK,
                &json!({
                    "confirmToken": confirm_token.expose_secret(),
                    "context": context,
                }),
            ));
        }
        let token = body
            .confirm_token
            .ok_or_else(|| Error::InvalidRequest("confirmToken is required".into()))?;
        let token = ConfirmToken::parse(&token)
            .map_err(|_| Error::Forbidden("invalid or expired confirm token".into()))?;
        let record = if route == Route::Confirm {
            flow.confirm(&id, &user.subject, &token, body.match_code.as_deref())
                .await?
        } else {
            flow.cancel(&id, &user.subject, &token).await?
        };
        Ok(ApiResponse::json(
            StatusCode::OK,
            &json!({ "status": record.state.as_str() }),
        ))
    }
}

impl QrAuthService {
    /// The phone user of a phone route, from the `Authorization` credential, within the phone
    /// limit.
    pub(super) async fn phone_caller(
        &self,
        phone: PhoneSide<'_>,
        request: &ApiRequest,
    ) -> Result<PhoneUser> {
        // Per client address first, before anything else runs: random credentials would
        // otherwise each buy a fresh budget of authenticator (and upstream) calls. Every
        // request counts, the failed authentications included.
        self.limit_client(
            "phone-addr",
            request,
            self.inner.limits.phone_per_address_per_minute,
            Duration::from_secs(60),
        )
        .await
        .inspect_err(|e| self.metrics().limit_refused(Limit::Phone, e))?;
        let authorization = header_str(&request.headers, AUTHORIZATION)
            .filter(|v| !v.trim().is_empty())
            .ok_or(Error::Unauthenticated)?;
        self.limit(
            format!("phone:{}", hex_sha256(authorization)),
            self.inner.limits.phone_per_minute,
            Duration::from_secs(60),
        )
        .await
        .inspect_err(|e| self.metrics().limit_refused(Limit::Phone, e))?;
        phone_user(phone, authorization).await
    }
}

async fn phone_user(phone: PhoneSide<'_>, authorization: &str) -> Result<PhoneUser> {
    let user = phone.authenticator.authenticate(authorization).await?;
    if user.subject.is_empty() {
        return Err(Error::Unauthenticated);
    }
    Ok(user)
}
