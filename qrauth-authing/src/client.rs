//! The HTTP client for Authing's QR-login API: requests, envelopes, and the mapping of Authing's
//! answers to qrauth's typed errors.
//!
//! Wire facts follow `authing-api.md` (Authing/authing-node-sdk `src/AuthenticationClient.ts`,
//! Authing/authing-golang-sdk `authentication/authentication_client.go`, authing-js-sdk 4.23.10
//! `QrCodeAuthenticationClient.ts`, and the seeds).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::StatusCode;
use serde_json::{Map, Value, json};

use qrauth_core::provider::{BodyError, read_bounded_body};
use qrauth_core::{Error, Result, SharedClock, TokenSet, UserInfo};

use crate::config::{ApiVersion, AuthingConfig, TokenAuthMethod};
use crate::fastpass::FastpassRequest;

/// Authing's code for "QR code does not exist" (V2 `code`; used as V3 `apiCode` too).
///
/// A check that Authing answers with it ends the session: its browser gets
/// `404 unknown_qrcode`, not `410 expired_qrcode`.
///
/// ```
/// assert_eq!(qrauth_authing::QRCODE_NOT_FOUND, 2241);
/// ```
pub const QRCODE_NOT_FOUND: i64 = 2241;

/// Which call an answer belongs to: the same business code means different things per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    Gene,
    Check,
    Exchange,
    Fastpass,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Gene => "gene-qrcode",
            Call::Check => "check-qrcode-status",
            Call::Exchange => "exchange-ticket",
            Call::Fastpass => "gene-fastpass-qrcode-info",
        }
    }
}

/// Authing's view of a QR code, reduced to what qrauth uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UpstreamStatus {
    Pending,
    Scanned(UserInfo),
    Authorized { ticket: String, user: UserInfo },
    Cancelled,
    Expired,
}

/// A QR code Authing created.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamQr {
    /// V3 `qrcodeId` / V2 `random`.
    pub id: String,
    /// V2 `expiresIn` (V3 does not say).
    pub expires_in: Option<u64>,
}

/// The largest answer qrauth reads from Authing (its envelopes are well under 8 KiB).
const MAX_REPLY_BYTES: usize = 64 * 1024;

pub(crate) struct AuthingClient {
    http: reqwest::Client,
    config: AuthingConfig,
    clock: SharedClock,
}

impl AuthingClient {
    pub fn new(
        config: AuthingConfig,
        http: Option<reqwest::Client>,
        clock: SharedClock,
    ) -> Result<Self> {
        let http = match http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| Error::Config(format!("Authing HTTP client: {e}")))?,
        };
        Ok(Self {
            http,
            config,
            clock,
        })
    }

    pub fn config(&self) -> &AuthingConfig {
        &self.config
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.config.app_host)
    }

    fn request(&self, method: http::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_url(method, self.url(path))
    }

    fn request_url(&self, method: http::Method, url: String) -> reqwest::RequestBuilder {
        let c = &self.config;
        self.http
            .request(method, url)
            .timeout(c.timeout)
            .header("x-authing-app-id", &c.app_id)
            .header("x-authing-userpool-id", &c.user_pool_id)
            .header("x-authing-request-from", "qrauth")
            .header(
                "x-authing-sdk-version",
                concat!("qrauth:", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::ACCEPT, "application/json")
    }

    /// Sends, reads the envelope, and returns its `data` (or the mapped error).
    async fn send(
        &self,
        call: Call,
        envelope: ApiVersion,
        request: reqwest::RequestBuilder,
    ) -> Result<Value> {
        let response = request.send().await.map_err(|e| transport(call, e))?;
        let http_status = response.status();
        // Read with a bound: an envelope is a few hundred bytes, and a broken or hostile
        // upstream must not make qrauth buffer whatever it sends.
        let too_large = || {
            Error::Upstream(format!(
                "{}: answer larger than {MAX_REPLY_BYTES} bytes",
                call.name()
            ))
        };
        let bytes = match read_bounded_body(response, MAX_REPLY_BYTES).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge { .. }) => return Err(too_large()),
            Err(BodyError::Transport(e)) => return Err(transport(call, e)),
        };
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(Value::Object(body)) => Value::Object(body),
            _ => {
                tracing::warn!(
                    call = call.name(),
                    http_status = http_status.as_u16(),
                    "Authing answered something that is not a JSON envelope"
                );
                return Err(Error::Upstream(format!(
                    "{}: HTTP {http_status}, body is not a JSON envelope",
                    call.name()
                )));
            }
        };
        let (code_field, api_code) = match envelope {
            ApiVersion::V3 => ("statusCode", body.get("apiCode").and_then(Value::as_i64)),
            ApiVersion::V2 => ("code", None),
        };
        let Some(code) = body.get(code_field).and_then(Value::as_i64) else {
            tracing::warn!(
                call = call.name(),
                http_status = http_status.as_u16(),
                "Authing envelope without `{code_field}`"
            );
            return Err(Error::Upstream(format!(
                "{}: envelope without {code_field}",
                call.name()
            )));
        };
        let message = body.get("message").and_then(Value::as_str).unwrap_or("");
        if code == 200 && http_status.is_success() {
            return Ok(body.get("data").cloned().unwrap_or(Value::Null));
        }
        let request_id = body.get("requestId").and_then(Value::as_str).unwrap_or("");
        let error = map_error(call, http_status, code, api_code, message);
        let level_error = !error.is_client_error();
        if level_error {
            tracing::warn!(
                call = call.name(),
                http_status = http_status.as_u16(),
                code,
                api_code,
                request_id,
                upstream_message = message,
                "Authing call failed"
            );
        } else {
            tracing::info!(
                call = call.name(),
                http_status = http_status.as_u16(),
                code,
                api_code,
                request_id,
                upstream_message = message,
                "Authing refused the call"
            );
        }
        Err(error)
    }

    /// Creates a QR code at Authing (not retried: every call makes a new QR code).
    pub async fn gene(&self, custom_data: Option<&Value>) -> Result<UpstreamQr> {
        let version = self.config.api_version;
        // V3 GenerateQrcodeDto: `type` MOBILE_APP is the self-built app's APP_AUTH scene; V2
        // (js SDK 4.23.10 L679-690): `scene`, with the custom data in `params`.
        let (path, mut body, data_field, id_field) = match version {
            ApiVersion::V3 => (
                "/api/v3/gene-qrcode",
                json!({ "type": "MOBILE_APP", "autoMergeQrCode": false }),
                "customData",
                "qrcodeId",
            ),
            ApiVersion::V2 => (
                "/api/v2/qrcode/gene",
                json!({ "scene": "APP_AUTH", "autoMergeQrCode": false }),
                "params",
                "random",
            ),
        };
        if let (Some(obj), Some(data)) = (body.as_object_mut(), custom_data) {
            obj.insert(data_field.into(), data.clone());
        }
        let request = self.request(http::Method::POST, path).json(&body);
        let data = self.send(Call::Gene, version, request).await?;
        Ok(UpstreamQr {
            id: required_str(&data, id_field, Call::Gene)?,
            expires_in: data.get("expiresIn").and_then(Value::as_u64),
        })
    }

    /// Authing's status of a QR code; a read, so one failed attempt is retried once.
    pub async fn check(&self, upstream_id: &str) -> Result<UpstreamStatus> {
        match self.check_once(upstream_id).await {
            Err(Error::Upstream(_) | Error::UpstreamTimeout) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                self.check_once(upstream_id).await
            }
            other => other,
        }
    }

    async fn check_once(&self, upstream_id: &str) -> Result<UpstreamStatus> {
        let version = self.config.api_version;
        let (path, param) = match version {
            ApiVersion::V3 => ("/api/v3/check-qrcode-status", "qrcodeId"),
            ApiVersion::V2 => ("/api/v2/qrcode/check", "random"),
        };
        let mut url = url::Url::parse(&self.url(path))
            .map_err(|e| Error::Internal(format!("Authing URL: {e}")))?;
        url.query_pairs_mut().append_pair(param, upstream_id);
        let request = self.request_url(http::Method::GET, url.into());
        let data = self.send(Call::Check, version, request).await?;
        match version {
            ApiVersion::V3 => parse_v3_status(&data),
            ApiVersion::V2 => parse_v2_status(&data),
        }
    }

    /// Exchanges Authing's ticket for the user's tokens (never retried: tickets are single use).
    ///
    /// V3 authenticates the client as the application is configured, as authing-node-sdk does:
    /// `client_id` + `client_secret` in the body, `authorization: Basic …`, or nothing. V2's
    /// `userinfo` takes the ticket alone, with the app's headers: authing-js-sdk 4.x
    /// (`qrcode.exchangeUserInfo`) sends no client credential, so qrauth sends none either.
    pub async fn exchange(&self, ticket: &str) -> Result<TokenSet> {
        let c = &self.config;
        let mut body = Map::new();
        body.insert("ticket".into(), json!(ticket));
        let (path, auth_method) = match c.api_version {
            ApiVersion::V3 => (
                "/api/v3/exchange-tokenset-with-qrcode-ticket",
                c.auth_method,
            ),
            ApiVersion::V2 => ("/api/v2/qrcode/userinfo", TokenAuthMethod::None),
        };
        let mut request = self.request(http::Method::POST, path);
        match auth_method {
            TokenAuthMethod::ClientSecretPost => {
                body.insert("client_id".into(), json!(c.app_id));
                body.insert("client_secret".into(), json!(c.app_secret.0));
            }
            TokenAuthMethod::ClientSecretBasic => {
                let credentials = STANDARD.encode(format!("{}:{}", c.app_id, c.app_secret.0));
                request =
                    request.header(http::header::AUTHORIZATION, format!("Basic {credentials}"));
            }
            TokenAuthMethod::None => {}
        }
        let request = request.json(&Value::Object(body));
        let data = self.send(Call::Exchange, c.api_version, request).await?;
        let now = self.clock.now_secs();
        match c.api_version {
            ApiVersion::V3 => parse_token_set(&data, now),
            ApiVersion::V2 => parse_v2_user(&data, now),
        }
    }

    /// gene-fastpass-qrcode-info with the user's access token (`authorization: <token>`, no
    /// `Bearer `, as the node and Go SDKs send it).
    pub async fn fastpass(&self, access_token: &str, options: &FastpassRequest) -> Result<Value> {
        let mut opts = Map::new();
        if let Some(scope) = &options.scope {
            opts.insert("scope".into(), json!(scope));
        }
        if let Some(context) = &options.context {
            opts.insert("context".into(), context.clone());
        }
        if let Some(data) = &options.custom_data {
            opts.insert("customData".into(), data.clone());
        }
        let request = self
            .request(http::Method::POST, "/api/v3/gene-fastpass-qrcode-info")
            .header(http::header::AUTHORIZATION, access_token)
            .json(&json!({ "options": opts }));
        let data = self.send(Call::Fastpass, ApiVersion::V3, request).await?;
        Ok(fastpass_view(&data))
    }
}

/// Transport failures: timeouts are 504, everything else (refused, reset, cut short) 502.
fn transport(call: Call, e: reqwest::Error) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        tracing::warn!(call = call.name(), "Authing did not answer in time");
        Error::UpstreamTimeout
    } else {
        tracing::warn!(call = call.name(), error = %e, "Authing unreachable");
        Error::Upstream(format!("{}: {e}", call.name()))
    }
}

/// Maps a failed envelope to qrauth's error for this call.
fn map_error(
    call: Call,
    http_status: StatusCode,
    code: i64,
    api_code: Option<i64>,
    message: &str,
) -> Error {
    let upstream = || Error::Upstream(format!("{}: {code} {message}", call.name()));
    if code == QRCODE_NOT_FOUND || api_code == Some(QRCODE_NOT_FOUND) {
        return match call {
            Call::Gene | Call::Check => Error::UnknownQrCode,
            Call::Exchange => Error::InvalidTicket,
            Call::Fastpass => upstream(),
        };
    }
    // HTTP-like codes 5xx; V2 business codes (e.g. 2004) are four digits.
    if http_status.is_server_error() || (500..600).contains(&code) {
        return upstream();
    }
    let lower = message.to_ascii_lowercase();
    let expired = message.contains("过期") || lower.contains("expire");
    match call {
        Call::Check if expired => Error::ExpiredQrCode,
        Call::Check if code == 404 => Error::UnknownQrCode,
        // Wrong client credentials are qrauth's misconfiguration, not the browser's fault.
        Call::Exchange if code == 401 || code == 403 => upstream(),
        Call::Exchange if (400..500).contains(&code) => Error::InvalidTicket,
        Call::Fastpass if code == 401 || code == 403 => Error::Unauthenticated,
        _ => upstream(),
    }
}

fn required_str(data: &Value, field: &str, call: Call) -> Result<String> {
    data.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| Error::Upstream(format!("{}: answer without `{field}`", call.name())))
}

fn opt_str(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Refuses a status answer that carries the user's credentials: with the console switch
/// "Web 轮询接口返回完整用户信息" on, Authing's unauthenticated status API hands the user's
/// tokens to anyone who knows the QR code's id (it is in the QR image), so qrauth will not
/// run a login on such an application, and nothing of the answer goes further.
fn refuse_credentials(call: &str, carried: bool) -> Result<()> {
    if carried {
        return Err(Error::Upstream(format!(
            "{call}: the status answer carries the user's token; turn off \
             'Web 轮询接口返回完整用户信息' for this application at Authing"
        )));
    }
    Ok(())
}

/// Whether `v` has `field` with any value but null.
fn has(v: &Value, field: &str) -> bool {
    v.get(field).is_some_and(|f| !f.is_null())
}

fn parse_v3_status(data: &Value) -> Result<UpstreamStatus> {
    refuse_credentials("check-qrcode-status", has(data, "tokenSet"))?;
    let brief = data.get("briefUserInfo").unwrap_or(&Value::Null);
    let user = UserInfo {
        nickname: opt_str(brief, "displayName"),
        photo: opt_str(brief, "photo"),
    };
    let status = data.get("status").and_then(Value::as_str).unwrap_or("");
    Ok(match status {
        "PENDING" => UpstreamStatus::Pending,
        "SCANNED" => UpstreamStatus::Scanned(user),
        "AUTHORIZED" => UpstreamStatus::Authorized {
            ticket: required_str(data, "ticket", Call::Check).map_err(|_| {
                Error::Upstream(
                    "check-qrcode-status: AUTHORIZED without a ticket (turn off \
                     'Web 轮询接口返回完整用户信息' for this application)"
                        .into(),
                )
            })?,
            user,
        },
        "CANCELLED" => UpstreamStatus::Cancelled,
        "EXPIRED" => UpstreamStatus::Expired,
        other => {
            return Err(Error::Upstream(format!(
                "check-qrcode-status: status {other:?}"
            )));
        }
    })
}

fn parse_v2_status(data: &Value) -> Result<UpstreamStatus> {
    let info = data.get("userInfo").unwrap_or(&Value::Null);
    refuse_credentials("qrcode/check", has(info, "token"))?;
    let user = UserInfo {
        nickname: opt_str(info, "nickname"),
        photo: opt_str(info, "photo"),
    };
    Ok(match data.get("status").and_then(Value::as_i64) {
        Some(0) => UpstreamStatus::Pending,
        Some(1) => UpstreamStatus::Scanned(user),
        Some(2) => UpstreamStatus::Authorized {
            ticket: required_str(data, "ticket", Call::Check)?,
            user,
        },
        Some(3) => UpstreamStatus::Cancelled,
        Some(-1) => UpstreamStatus::Expired,
        other => {
            return Err(Error::Upstream(format!("qrcode/check: status {other:?}")));
        }
    })
}

/// V3 `LoginTokenResponseDataDto` (note `expire_in`, not `expires_in`).
fn parse_token_set(data: &Value, now: u64) -> Result<TokenSet> {
    let access_token = required_str(data, "access_token", Call::Exchange)?;
    let id_token = required_str(data, "id_token", Call::Exchange)?;
    let expires_in = data
        .get("expire_in")
        .or_else(|| data.get("expires_in"))
        .and_then(Value::as_u64)
        .or_else(|| seconds_left(&id_token, now))
        .unwrap_or(0);
    Ok(TokenSet {
        access_token,
        id_token,
        refresh_token: opt_str(data, "refresh_token"),
        token_type: opt_str(data, "token_type").unwrap_or_else(|| "Bearer".into()),
        expires_in,
        scope: opt_str(data, "scope"),
    })
}

/// V2 `userinfo`: a user whose `token` is the user's id_token.
fn parse_v2_user(data: &Value, now: u64) -> Result<TokenSet> {
    let token = required_str(data, "token", Call::Exchange)?;
    let expires_in = seconds_left(&token, now).unwrap_or(0);
    Ok(TokenSet {
        access_token: token.clone(),
        id_token: token,
        refresh_token: None,
        token_type: "Bearer".into(),
        expires_in,
        scope: None,
    })
}

/// Seconds from `now` until the (unverified) `exp` of a JWT.
fn seconds_left(token: &str, now: u64) -> Option<u64> {
    jwt_exp(token).map(|exp| exp.saturating_sub(now))
}

/// The unverified `exp` of a JWT (only to report `expires_in`; the token is verified later).
fn jwt_exp(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_u64()
}

/// `GeneFastpassQRCodeInfoDto`, allow-listed.
fn fastpass_view(data: &Value) -> Value {
    let who = |v: Option<&Value>| {
        let v = v.unwrap_or(&Value::Null);
        json!({
            "id": v.get("id").cloned().unwrap_or(Value::Null),
            "displayName": v.get("displayName").cloned().unwrap_or(Value::Null),
            "photo": v.get("photo").cloned().unwrap_or(Value::Null),
        })
    };
    json!({
        "scene": data.get("scene").cloned().unwrap_or(Value::Null),
        "qrcodeId": data.get("qrcodeId").cloned().unwrap_or(Value::Null),
        "apiHost": data.get("apiHost").cloned().unwrap_or(Value::Null),
        "appId": data.get("appId").cloned().unwrap_or(Value::Null),
        "user": who(data.get("user")),
        "userpool": who(data.get("userpool")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_codes_map_per_call() {
        let ok = StatusCode::OK;
        assert!(matches!(
            map_error(Call::Check, ok, 2241, None, "二维码不存在"),
            Error::UnknownQrCode
        ));
        assert!(matches!(
            map_error(Call::Check, ok, 400, Some(2241), "x"),
            Error::UnknownQrCode
        ));
        assert!(matches!(
            map_error(Call::Check, ok, 400, None, "二维码已过期"),
            Error::ExpiredQrCode
        ));
        assert!(matches!(
            map_error(Call::Exchange, ok, 400, Some(1), "ticket 无效"),
            Error::InvalidTicket
        ));
        assert!(matches!(
            map_error(Call::Exchange, ok, 401, None, "client"),
            Error::Upstream(_)
        ));
        assert!(matches!(
            map_error(Call::Gene, StatusCode::BAD_GATEWAY, 200, None, ""),
            Error::Upstream(_)
        ));
        assert!(matches!(
            map_error(Call::Check, ok, 503, None, "busy"),
            Error::Upstream(_)
        ));
        assert!(matches!(
            map_error(Call::Fastpass, ok, 401, None, "token"),
            Error::Unauthenticated
        ));
    }

    #[test]
    fn statuses_of_both_generations() {
        let v3 =
            json!({"status": "SCANNED", "briefUserInfo": {"displayName": "Alice", "photo": "p"}});
        assert_eq!(
            parse_v3_status(&v3).ok(),
            Some(UpstreamStatus::Scanned(UserInfo {
                nickname: Some("Alice".into()),
                photo: Some("p".into())
            }))
        );
        assert!(parse_v3_status(&json!({"status": "AUTHORIZED"})).is_err());
        assert!(parse_v3_status(&json!({"status": "ERROR"})).is_err());
        assert_eq!(
            parse_v2_status(&json!({"status": -1})).ok(),
            Some(UpstreamStatus::Expired)
        );
        assert_eq!(
            parse_v2_status(&json!({"status": 3})).ok(),
            Some(UpstreamStatus::Cancelled)
        );
    }

    #[test]
    fn a_status_answer_carrying_the_users_token_is_refused_without_echoing_it() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl";
        let v2 = json!({"status": 2, "ticket": "t", "userInfo": {"nickname": "A", "token": token}});
        let v3 = json!({"status": "AUTHORIZED", "ticket": "t",
            "tokenSet": {"access_token": token, "id_token": token}});
        for refused in [parse_v2_status(&v2), parse_v3_status(&v3)] {
            let Err(Error::Upstream(message)) = refused else {
                panic!("accepted: {refused:?}");
            };
            assert!(message.contains("完整用户信息"), "{message}");
            assert!(!message.contains(token), "{message}");
        }
        // The same answers without the token go through.
        let v2 = json!({"status": 2, "ticket": "t", "userInfo": {"nickname": "A", "token": null}});
        assert!(matches!(
            parse_v2_status(&v2),
            Ok(UpstreamStatus::Authorized { .. })
        ));
        let v3 = json!({"status": "AUTHORIZED", "ticket": "t", "briefUserInfo": {}});
        assert!(matches!(
            parse_v3_status(&v3),
            Ok(UpstreamStatus::Authorized { .. })
        ));
    }
}
