//! A small client for the open platform's OAuth2 API.
//!
//! Every call is a `POST` with a form body; every reply is `{status, message, data}`:
//!
//! - `status` arrives as a number (`2000`) or a string (`"2000"`); both are accepted;
//! - `2000` is success with an object in `data`, `2011` is success without data;
//! - on errors `data` is `[]`; `4102` (invalid code or credential), `4103` (no permission) and
//!   `4104` (the user has not added the app) become distinct [`OpenPlatformError`] variants, any
//!   other status becomes [`OpenPlatformError::Api`];
//! - leaf values may be strings even when they are numbers (`"expires_in": "7200"`).
//!
//! The upstream `message` is kept in the error for logs. Form bodies (which carry the `secret`,
//! codes and tokens) are never logged, and credentials in the returned values have a redacting
//! `Debug`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use qrauth_core::provider::{BodyError, read_bounded_body};
use serde_json::{Map, Value};

use crate::error::{OpenPlatformError, Result};

/// The platform's public API host.
pub const DEFAULT_BASE_URL: &str = "https://oauth.yuanzhibang.com";

/// `POST /OAuth2/token`: a JS SDK `code` → the user's `open_id`.
pub const TOKEN_PATH: &str = "/OAuth2/token";
/// `POST /OAuth2/ticket`: the server access_token → a `js_ticket`.
pub const TICKET_PATH: &str = "/OAuth2/ticket";
/// `POST /OAuth2/checkCode`: is an access_token or js_ticket still valid?
pub const CHECK_CODE_PATH: &str = "/OAuth2/checkCode";

/// Default path of the server access_token endpoint.
///
/// **Not documented in the OAuth2 API pages this crate was written from**: the path, and the
/// form fields sent to it (`app_id`, `secret`, `grant_type=client_credential`), are an
/// assumption modelled on the other endpoints. Check your platform console's documentation and
/// set the real path with [`OpenPlatformClientBuilder::server_access_token_path`].
pub const DEFAULT_SERVER_ACCESS_TOKEN_PATH: &str = "/OAuth2/accessToken";

/// Default timeout of one whole call (connect, send, read).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest reply body read from the platform.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// A string that never shows up in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Redacted(pub(crate) String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// What `/OAuth2/token` returns for a user's code.
///
/// The user access_token and refresh_token are, per the platform, of no use yet; they are kept
/// (redacted in `Debug`) only for completeness.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UserAuthorization {
    /// The user's id for this app: qrauth's `sub`.
    pub open_id: String,
    /// The user's access token lifetime, if given.
    pub expires_in: Option<Duration>,
    /// The granted scope, e.g. `sns_base`.
    pub scope: Option<String>,
    access_token: Option<Redacted>,
    refresh_token: Option<Redacted>,
}

impl UserAuthorization {
    /// The user's access token (not needed to log in).
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_ref().map(|t| t.0.as_str())
    }

    /// The user's refresh token (not needed to log in).
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(|t| t.0.as_str())
    }
}

/// A server credential (access_token or js_ticket) and its lifetime.
#[derive(Clone)]
pub struct ServerCredential {
    value: Redacted,
    /// Its lifetime, from the reply's `expires_in` (seconds).
    pub expires_in: Duration,
}

impl ServerCredential {
    /// The credential itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.value.0
    }
}

impl fmt::Debug for ServerCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCredential")
            .field("value", &self.value)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Which kind of value `/OAuth2/checkCode` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeKind {
    /// A server access_token, or a user's access_token when `open_id` is given.
    AccessToken,
    /// A js_ticket.
    JsTicket,
}

impl CodeKind {
    fn as_str(self) -> &'static str {
        match self {
            CodeKind::AccessToken => "access_token",
            CodeKind::JsTicket => "js_ticket",
        }
    }
}

/// The answer of `/OAuth2/checkCode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// Valid; `expires_at` is the reply's `expires_in`, which is an **absolute** Unix time
    /// (seconds), not a duration. `None` when the platform answered `2011` (no data).
    Valid {
        /// When the value expires.
        expires_at: Option<SystemTime>,
    },
    /// `4102`: invalid or expired.
    Invalid,
}

/// The open platform's OAuth2 API.
///
/// ```no_run
/// use qrauth_open_platform::OpenPlatformClient;
///
/// # async fn run() -> Result<(), qrauth_open_platform::OpenPlatformError> {
/// let client = OpenPlatformClient::builder("my-app-id", "my-secret")
///     .timeout(std::time::Duration::from_secs(3))
///     .build()?;
/// let user = client.exchange_code("code-from-the-js-sdk").await?;
/// println!("open_id {}", user.open_id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OpenPlatformClient {
    http: reqwest::Client,
    base_url: String,
    app_id: String,
    secret: Redacted,
    access_token_path: String,
}

impl fmt::Debug for OpenPlatformClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenPlatformClient")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

/// Configures an [`OpenPlatformClient`].
#[must_use]
pub struct OpenPlatformClientBuilder {
    base_url: String,
    app_id: String,
    secret: Redacted,
    timeout: Duration,
    access_token_path: String,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for OpenPlatformClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenPlatformClientBuilder")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("secret", &self.secret)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OpenPlatformClientBuilder {
    /// The API base URL (default [`DEFAULT_BASE_URL`]); a fake server's in tests.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The timeout of one whole call (default [`DEFAULT_TIMEOUT`]). Ignored when an HTTP client
    /// is supplied with [`http_client`](Self::http_client) (set it there).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The path of the server access_token endpoint (default
    /// [`DEFAULT_SERVER_ACCESS_TOKEN_PATH`], an assumption: see there).
    pub fn server_access_token_path(mut self, path: impl Into<String>) -> Self {
        self.access_token_path = path.into();
        self
    }

    /// Uses this reqwest client (it must have its own timeout).
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<OpenPlatformClient> {
        let base = url::Url::parse(&self.base_url)
            .map_err(|e| OpenPlatformError::Config(format!("base URL {}: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(OpenPlatformError::Config(
                "base URL must be http(s)".to_owned(),
            ));
        }
        if self.app_id.is_empty() || self.secret.0.is_empty() {
            return Err(OpenPlatformError::Config(
                "app_id and secret must not be empty".to_owned(),
            ));
        }
        if !self.access_token_path.starts_with('/') {
            return Err(OpenPlatformError::Config(
                "the server access_token path must start with /".to_owned(),
            ));
        }
        if self.timeout.is_zero() {
            return Err(OpenPlatformError::Config(
                "timeout must not be zero".to_owned(),
            ));
        }
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout.min(Duration::from_secs(3)))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| OpenPlatformError::Config(format!("HTTP client: {e}")))?,
        };
        Ok(OpenPlatformClient {
            http,
            base_url: self.base_url,
            app_id: self.app_id,
            secret: self.secret,
            access_token_path: self.access_token_path,
        })
    }
}

impl OpenPlatformClient {
    /// Starts configuring a client for the app `app_id` with its `secret`.
    pub fn builder(
        app_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> OpenPlatformClientBuilder {
        OpenPlatformClientBuilder {
            base_url: DEFAULT_BASE_URL.to_owned(),
            app_id: app_id.into(),
            secret: Redacted(secret.into()),
            timeout: DEFAULT_TIMEOUT,
            access_token_path: DEFAULT_SERVER_ACCESS_TOKEN_PATH.to_owned(),
            http: None,
        }
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The API base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `POST /OAuth2/token` with `grant_type=authorization_code`: exchanges a JS SDK code (single
    /// use) for the user's `open_id`.
    pub async fn exchange_code(&self, code: &str) -> Result<UserAuthorization> {
        let data = self
            .post(
                TOKEN_PATH,
                &[
                    ("app_id", self.app_id.as_str()),
                    ("secret", self.secret.0.as_str()),
                    ("grant_type", "authorization_code"),
                    ("code", code),
                ],
            )
            .await?
            .ok_or_else(|| missing(TOKEN_PATH))?;
        let open_id = leaf_string(&data, "open_id")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| malformed(TOKEN_PATH, "data.open_id missing"))?;
        Ok(UserAuthorization {
            open_id,
            expires_in: leaf_u64(&data, "expires_in").map(Duration::from_secs),
            scope: leaf_string(&data, "scope"),
            access_token: leaf_string(&data, "access_token").map(Redacted),
            refresh_token: leaf_string(&data, "refresh_token").map(Redacted),
        })
    }

    /// The server access_token, from the configured (undocumented, see
    /// [`DEFAULT_SERVER_ACCESS_TOKEN_PATH`]) endpoint. Reads `data.access_token` and
    /// `data.expires_in` (seconds).
    pub async fn server_access_token(&self) -> Result<ServerCredential> {
        let path = self.access_token_path.as_str();
        let data = self
            .post(
                path,
                &[
                    ("app_id", self.app_id.as_str()),
                    ("secret", self.secret.0.as_str()),
                    ("grant_type", "client_credential"),
                ],
            )
            .await?
            .ok_or_else(|| missing(path))?;
        credential(path, &data, "access_token")
    }

    /// `POST /OAuth2/ticket` with `type=js_ticket`: a js_ticket for signing JS SDK pages.
    pub async fn js_ticket(&self, server_access_token: &str) -> Result<ServerCredential> {
        let data = self
            .post(
                TICKET_PATH,
                &[
                    ("app_id", self.app_id.as_str()),
                    ("access_token", server_access_token),
                    ("type", "js_ticket"),
                ],
            )
            .await?
            .ok_or_else(|| missing(TICKET_PATH))?;
        credential(TICKET_PATH, &data, "ticket")
    }

    /// `POST /OAuth2/checkCode`: whether an access_token or js_ticket is still valid. `open_id`
    /// is needed only for a user's access_token. `4102` is [`CodeCheck::Invalid`], not an error.
    pub async fn check_code(
        &self,
        kind: CodeKind,
        code: &str,
        open_id: Option<&str>,
    ) -> Result<CodeCheck> {
        let mut form = vec![
            ("app_id", self.app_id.as_str()),
            ("type", kind.as_str()),
            ("code", code),
        ];
        if let Some(open_id) = open_id {
            form.push(("open_id", open_id));
        }
        match self.post(CHECK_CODE_PATH, &form).await {
            Ok(None) => Ok(CodeCheck::Valid { expires_at: None }),
            Ok(Some(data)) => {
                let at = leaf_u64(&data, "expires_in")
                    .ok_or_else(|| malformed(CHECK_CODE_PATH, "data.expires_in missing"))?;
                Ok(CodeCheck::Valid {
                    expires_at: Some(UNIX_EPOCH + Duration::from_secs(at)),
                })
            }
            Err(OpenPlatformError::InvalidCode { .. }) => Ok(CodeCheck::Invalid),
            Err(e) => Err(e),
        }
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<Option<Map<String, Value>>> {
        let url = format!("{}{}", self.base_url, path);
        let started = std::time::Instant::now();
        let result = self.post_inner(&url, path, form).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &result {
            Ok(_) => tracing::debug!(endpoint = path, elapsed_ms, "open platform call succeeded"),
            Err(e) => {
                tracing::warn!(endpoint = path, elapsed_ms, error = %e, "open platform call failed")
            }
        }
        result
    }

    async fn post_inner(
        &self,
        url: &str,
        path: &str,
        form: &[(&str, &str)],
    ) -> Result<Option<Map<String, Value>>> {
        let response = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| transport(path, &e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(OpenPlatformError::Http {
                endpoint: path.to_owned(),
                status: status.as_u16(),
            });
        }
        let body = match read_bounded_body(response, MAX_REPLY_BYTES).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { .. }) => return Err(malformed(path, "reply too large")),
            Err(BodyError::Transport(e)) => return Err(transport(path, &e)),
        };
        parse_reply(path, &body)
    }
}

fn transport(path: &str, e: &reqwest::Error) -> OpenPlatformError {
    if e.is_timeout() {
        OpenPlatformError::Timeout {
            endpoint: path.to_owned(),
        }
    } else {
        // Without the URL: only the base URL and path, but keep logs short.
        let detail = {
            let mut s = e.to_string();
            if let Some(url) = e.url() {
                s = s.replace(url.as_str(), "<url>");
            }
            s
        };
        OpenPlatformError::Transport {
            endpoint: path.to_owned(),
            detail,
        }
    }
}

fn missing(path: &str) -> OpenPlatformError {
    OpenPlatformError::MissingData {
        endpoint: path.to_owned(),
    }
}

fn malformed(path: &str, detail: &str) -> OpenPlatformError {
    OpenPlatformError::Malformed {
        endpoint: path.to_owned(),
        detail: detail.to_owned(),
    }
}

fn credential(path: &str, data: &Map<String, Value>, field: &str) -> Result<ServerCredential> {
    let value = leaf_string(data, field)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| malformed(path, &format!("data.{field} missing")))?;
    let expires_in =
        leaf_u64(data, "expires_in").ok_or_else(|| malformed(path, "data.expires_in missing"))?;
    Ok(ServerCredential {
        value: Redacted(value),
        expires_in: Duration::from_secs(expires_in),
    })
}

/// Parses `{status, message, data}`: `Ok(Some(data))` for `2000` with an object, `Ok(None)` for
/// `2011` (or `2000` with empty data), a typed error otherwise.
pub(crate) fn parse_reply(path: &str, body: &[u8]) -> Result<Option<Map<String, Value>>> {
    let value: Value = serde_json::from_slice(body).map_err(|_| malformed(path, "not JSON"))?;
    let Value::Object(mut reply) = value else {
        return Err(malformed(path, "not a JSON object"));
    };
    let status = reply
        .get("status")
        .and_then(leaf_as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .ok_or_else(|| malformed(path, "status missing or not a number"))?;
    let message = reply
        .get("message")
        .and_then(leaf_as_string)
        .unwrap_or_default();
    let data = match reply.remove("data") {
        Some(Value::Object(map)) if !map.is_empty() => Some(map),
        // `[]`, `{}`, null or absent: no data.
        Some(Value::Object(_)) | Some(Value::Null) | None => None,
        Some(Value::Array(a)) if a.is_empty() => None,
        Some(_) => return Err(malformed(path, "data is neither an object nor []")),
    };
    match status {
        2000 | 2011 => Ok(data),
        4102 => Err(OpenPlatformError::InvalidCode { message }),
        4103 => Err(OpenPlatformError::NoPermission { message }),
        4104 => Err(OpenPlatformError::AppNotAdded { message }),
        status => Err(OpenPlatformError::Api { status, message }),
    }
}

fn leaf_as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn leaf_as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn leaf_string(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key).and_then(leaf_as_string)
}

fn leaf_u64(map: &Map<String, Value>, key: &str) -> Option<u64> {
    map.get(key).and_then(leaf_as_u64)
}

/// The current Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Map<String, Value>>> {
        parse_reply("/t", s.as_bytes())
    }

    #[test]
    fn status_as_number_or_string() {
        let a = parse(r#"{"status":2000,"message":"ok","data":{"open_id":"u"}}"#).unwrap();
        let b = parse(r#"{"status":"2000","message":"ok","data":{"open_id":"u"}}"#).unwrap();
        assert_eq!(a, b);
        assert!(a.is_some());
    }

    #[test]
    fn error_codes_are_typed_with_data_as_empty_array() {
        assert!(matches!(
            parse(r#"{"status":"4102","message":"authorization_code is invalid","data":[]}"#),
            Err(OpenPlatformError::InvalidCode { message }) if message == "authorization_code is invalid"
        ));
        assert!(matches!(
            parse(r#"{"status":"4103","message":"m","data":[]}"#),
            Err(OpenPlatformError::NoPermission { .. })
        ));
        assert!(matches!(
            parse(r#"{"status":4104,"message":"m","data":[]}"#),
            Err(OpenPlatformError::AppNotAdded { .. })
        ));
        assert!(matches!(
            parse(r#"{"status":"4000","message":"m","data":[]}"#),
            Err(OpenPlatformError::Api { status: 4000, .. })
        ));
        assert_eq!(
            parse(r#"{"status":"2011","message":"ok","data":[]}"#),
            Ok(None)
        );
    }

    #[test]
    fn malformed_replies() {
        for body in [
            "",
            "<html>",
            "[]",
            r#"{"message":"ok"}"#,
            r#"{"status":"abc"}"#,
            r#"{"status":"2000","data":"x"}"#,
        ] {
            assert!(
                matches!(parse(body), Err(OpenPlatformError::Malformed { .. })),
                "{body}"
            );
        }
    }

    #[test]
    fn debug_redacts_credentials() {
        let c = ServerCredential {
            value: Redacted("tok-123".into()),
            expires_in: Duration::from_secs(1),
        };
        assert!(!format!("{c:?}").contains("tok-123"));
        let client = OpenPlatformClient::builder("app", "s3cr3t-value")
            .build()
            .unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t-value"));
    }
}
