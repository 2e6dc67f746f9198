//! The three calls to the IdP: discovery, the device authorization request (RFC 8628 §3.1)
//! and the token request (§3.4), each with a timeout and a bounded answer.

use base64::Engine as _;
use qrauth_core::TokenSet;
use qrauth_core::provider::{BodyError, read_bounded_body};
use serde_json::{Map, Value};
use tokio::sync::OnceCell;

use crate::config::{ClientAuth, Config};
use crate::error::{OidcError, shortened};

/// The RFC 8628 grant type.
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Longest `device_code`, `user_code`, URI accepted from the IdP.
const MAX_FIELD: usize = 2048;

/// The endpoints discovery found.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub device_authorization: String,
    pub token: String,
}

/// A device authorization the IdP granted.
pub(crate) struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: Option<u64>,
}

/// What the token endpoint said about a device code.
pub(crate) enum Poll {
    Tokens(TokenSet),
    Pending,
    SlowDown,
    Denied,
    Expired,
    /// `invalid_grant`: the code is unknown or used up.
    InvalidGrant,
}

pub(crate) struct Client {
    http: reqwest::Client,
    pub config: Config,
    endpoints: OnceCell<Endpoints>,
}

struct Answer {
    status: u16,
    body: Option<Map<String, Value>>,
}

impl Client {
    pub fn new(config: Config, http: Option<reqwest::Client>) -> Result<Self, qrauth_core::Error> {
        let http = match http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| qrauth_core::Error::Config(format!("IdP HTTP client: {e}")))?,
        };
        Ok(Self {
            http,
            config,
            endpoints: OnceCell::new(),
        })
    }

    /// The discovered endpoints, fetched once (a failed fetch is retried by the next caller).
    pub async fn endpoints(&self) -> Result<&Endpoints, OidcError> {
        self.endpoints.get_or_try_init(|| self.discover()).await
    }

    async fn discover(&self) -> Result<Endpoints, OidcError> {
        const CALL: &str = "discovery";
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let request = self
            .http
            .get(url)
            .header(http::header::ACCEPT, "application/json");
        let answer = self.send(CALL, request).await?;
        let malformed = |what: &str| OidcError::Malformed {
            call: CALL,
            status: answer.status,
            what: what.into(),
        };
        let Some(doc) = answer.body.as_ref().filter(|_| answer.status == 200) else {
            return Err(malformed("not a JSON object with HTTP 200"));
        };
        let issuer = doc.get("issuer").and_then(Value::as_str).unwrap_or("");
        if issuer != self.config.issuer {
            return Err(OidcError::IssuerMismatch {
                expected: self.config.issuer.clone(),
                found: shortened(issuer, 200),
            });
        }
        let endpoint = |field: &str| -> Result<String, OidcError> {
            match doc.get(field).and_then(Value::as_str) {
                Some(url) if url.len() <= MAX_FIELD && self.config.allowed_url(url) => {
                    Ok(url.to_owned())
                }
                Some(_) => Err(malformed(&format!("`{field}` is not an allowed URL"))),
                None => Err(malformed(&format!(
                    "no `{field}` (device flow not enabled?)"
                ))),
            }
        };
        let endpoints = Endpoints {
            device_authorization: endpoint("device_authorization_endpoint")?,
            token: endpoint("token_endpoint")?,
        };
        endpoint("jwks_uri")?;
        Ok(endpoints)
    }

    /// RFC 8628 §3.1.
    pub async fn authorize(&self) -> Result<DeviceAuthorization, OidcError> {
        const CALL: &str = "device_authorization";
        let endpoints = self.endpoints().await?;
        let mut form = vec![("scope".to_owned(), self.config.scopes.clone())];
        form.extend(self.config.extra_params.iter().cloned());
        let request = self.authenticated(&endpoints.device_authorization, form);
        let answer = self.send(CALL, request).await?;
        let body = self.success(CALL, &answer)?;
        let malformed = |what: &str| OidcError::Malformed {
            call: CALL,
            status: answer.status,
            what: what.into(),
        };
        let text = |field: &str| -> Result<String, OidcError> {
            match body.get(field).and_then(Value::as_str) {
                Some(v) if !v.is_empty() && v.len() <= MAX_FIELD => Ok(v.to_owned()),
                _ => Err(malformed(&format!("no valid `{field}`"))),
            }
        };
        let device_code = text("device_code")?;
        let user_code = text("user_code")?;
        if user_code.chars().count() > 64 || user_code.chars().any(char::is_control) {
            return Err(malformed("`user_code` is not a short printable code"));
        }
        // The phone opens it: only web URLs, never `javascript:` or a custom scheme.
        let web = |field: &str, uri: String| -> Result<String, OidcError> {
            match url::Url::parse(&uri) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(uri),
                _ => Err(malformed(&format!("`{field}` is not a web URL"))),
            }
        };
        // Google's device endpoint still names it `verification_url`.
        let verification_uri = match text("verification_uri") {
            Ok(uri) => uri,
            Err(e) => text("verification_url").map_err(|_| e)?,
        };
        let verification_uri = web("verification_uri", verification_uri)?;
        let verification_uri_complete = match body.get("verification_uri_complete") {
            None | Some(Value::Null) => None,
            Some(_) => Some(web(
                "verification_uri_complete",
                text("verification_uri_complete")?,
            )?),
        };
        let expires_in = match body.get("expires_in").and_then(seconds) {
            Some(s) if s > 0 => s,
            _ => return Err(malformed("no positive `expires_in`")),
        };
        let interval = match body.get("interval") {
            None | Some(Value::Null) => None,
            Some(v) => Some(seconds(v).ok_or_else(|| malformed("`interval` is not seconds"))?),
        };
        Ok(DeviceAuthorization {
            device_code,
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in,
            interval,
        })
    }

    /// RFC 8628 §3.4/§3.5.
    pub async fn poll(&self, device_code: &str) -> Result<Poll, OidcError> {
        const CALL: &str = "token";
        let endpoints = self.endpoints().await?;
        let form = vec![
            ("grant_type".to_owned(), DEVICE_GRANT.to_owned()),
            ("device_code".to_owned(), device_code.to_owned()),
        ];
        let request = self.authenticated(&endpoints.token, form);
        let answer = self.send(CALL, request).await?;
        if answer.status == 200 {
            let body = self.success(CALL, &answer)?;
            return token_set(body)
                .map(Poll::Tokens)
                .map_err(|what| OidcError::Malformed {
                    call: CALL,
                    status: 200,
                    what,
                });
        }
        let error = answer
            .body
            .as_ref()
            .and_then(|b| b.get("error"))
            .and_then(Value::as_str);
        // RFC 6749 §5.2 errors come with 400 (401 for client authentication).
        let poll = match (answer.status, error) {
            (400 | 401, Some("authorization_pending")) => Poll::Pending,
            (400 | 401, Some("slow_down")) => Poll::SlowDown,
            // Entra says `authorization_declined` and `bad_verification_code`.
            (400 | 401, Some("access_denied" | "authorization_declined")) => Poll::Denied,
            (400 | 401, Some("expired_token")) => Poll::Expired,
            (400 | 401, Some("invalid_grant" | "bad_verification_code")) => Poll::InvalidGrant,
            _ => return Err(self.refusal(CALL, &answer)),
        };
        Ok(poll)
    }

    /// A POST of `form` with the client's authentication.
    fn authenticated(&self, url: &str, pairs: Vec<(String, String)>) -> reqwest::RequestBuilder {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &pairs {
            form.append_pair(name, value);
        }
        let c = &self.config;
        let mut request = self
            .http
            .post(url)
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            );
        match (c.auth, &c.client_secret) {
            (ClientAuth::ClientSecretBasic, Some(secret)) => {
                // RFC 6749 §2.3.1: each part form-encoded before base64.
                let pair = format!("{}:{}", form_encode(&c.client_id), form_encode(&secret.0));
                let basic = base64::engine::general_purpose::STANDARD.encode(pair);
                request = request.header(http::header::AUTHORIZATION, format!("Basic {basic}"));
            }
            (ClientAuth::ClientSecretPost, Some(secret)) => {
                form.append_pair("client_id", &c.client_id);
                form.append_pair("client_secret", &secret.0);
            }
            _ => {
                form.append_pair("client_id", &c.client_id);
            }
        }
        request.body(form.finish())
    }

    /// Sends and reads at most `max_response_bytes` of the answer.
    async fn send(
        &self,
        call: &'static str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, OidcError> {
        let transport = |e: reqwest::Error| {
            if e.is_timeout() {
                OidcError::Timeout { call }
            } else {
                OidcError::Unreachable {
                    call,
                    reason: e.without_url().to_string(),
                }
            }
        };
        let request = request.timeout(self.config.timeout);
        let response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let limit = self.config.max_response_bytes;
        let bytes = match read_bounded_body(response, limit).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge { .. }) => return Err(OidcError::TooLarge { call, limit }),
            Err(BodyError::Transport(e)) => return Err(transport(e)),
        };
        let body = match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        };
        Ok(Answer { status, body })
    }

    /// The body of a 200 JSON answer, or the refusal.
    fn success<'a>(
        &self,
        call: &'static str,
        answer: &'a Answer,
    ) -> Result<&'a Map<String, Value>, OidcError> {
        match (&answer.body, answer.status) {
            (Some(body), 200) => Ok(body),
            _ => Err(self.refusal(call, answer)),
        }
    }

    /// An answer the flow cannot go on from, logged with the IdP's words (never a secret: the
    /// request is not logged, and the IdP's text is shortened and cleaned).
    fn refusal(&self, call: &'static str, answer: &Answer) -> OidcError {
        let field = |name: &str| {
            answer
                .body
                .as_ref()
                .and_then(|b| b.get(name))
                .and_then(Value::as_str)
                .map(|s| shortened(s, 200))
        };
        let error = match field("error") {
            Some(error) => OidcError::Refused {
                call,
                error,
                description: field("error_description"),
            },
            None => OidcError::Malformed {
                call,
                status: answer.status,
                what: "no OAuth error in the answer".into(),
            },
        };
        tracing::warn!(
            call,
            http_status = answer.status,
            error = %error,
            "the OpenID Provider refused"
        );
        error
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A non-negative number of seconds (some IdPs send strings).
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The token response (RFC 6749 §5.1 with OpenID Connect's `id_token`).
fn token_set(body: &Map<String, Value>) -> Result<TokenSet, String> {
    let text = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let access_token = text("access_token").ok_or("no `access_token`")?;
    let id_token = text("id_token").ok_or("no `id_token` (is `openid` granted?)")?;
    let token_type = text("token_type").unwrap_or("Bearer");
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(format!("token_type `{}`", shortened(token_type, 20)));
    }
    let expires_in = body.get("expires_in").and_then(seconds).unwrap_or(0);
    let mut tokens: TokenSet = serde_json::from_value(serde_json::json!({
        "access_token": access_token,
        "id_token": id_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
    }))
    .map_err(|e| format!("token set: {e}"))?;
    tokens.refresh_token = text("refresh_token").map(str::to_owned);
    tokens.scope = text("scope").map(str::to_owned);
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sets_need_both_tokens() {
        let ok = serde_json::json!({
            "access_token": "a", "id_token": "i", "token_type": "bearer", "expires_in": "60",
            "scope": "openid",
        });
        let t = token_set(ok.as_object().unwrap()).unwrap();
        assert_eq!((t.expires_in, t.scope.as_deref()), (60, Some("openid")));
        let no_id = serde_json::json!({ "access_token": "a", "token_type": "Bearer" });
        assert!(token_set(no_id.as_object().unwrap()).is_err());
        let mac = serde_json::json!({ "access_token": "a", "id_token": "i", "token_type": "mac" });
        assert!(token_set(mac.as_object().unwrap()).is_err());
    }

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c"), "a+b%3Ac");
    }
}
