//! An in-process browser and phone for a `QrAuthService`: every call is one request through
//! `QrAuthService::handle`, its answer decoded into typed values, and an error answer decoded
//! back into the `Error` it encodes (code and status must agree), so that tests of the session
//! flow assert on `Error` variants as they did when the flow was public.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, RETRY_AFTER, SET_COOKIE, USER_AGENT};
use http::{HeaderValue, Method, StatusCode};
use qrauth_core::{
    ApiRequest, ApiResponse, BindingSecret, ConfirmToken, Error, QrAuthService, QrCodeId, QrState,
    Route, Ticket, TokenSet, UserInfo,
};
use serde_json::{Value, json};

/// A User-Agent the service describes as "Chrome on Windows".
pub const CHROME_ON_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36";

/// What `POST /qrcode` answered.
#[derive(Debug, Clone)]
pub struct Qr {
    /// `qrcodeId`.
    pub id: QrCodeId,
    /// `qrcodeContent`.
    pub content: String,
    /// `expiresIn`, seconds.
    pub expires_in: u64,
    /// The whole body.
    pub body: Value,
}

/// What `GET /qrcode/status` answered to the bound browser.
#[derive(Debug, Clone)]
pub struct Status {
    /// `status`.
    pub state: QrState,
    /// `version`.
    pub version: u64,
    /// `userInfo`.
    pub user: Option<UserInfo>,
    /// `ticket`.
    pub ticket: Option<Ticket>,
    /// `matchCode`.
    pub match_code: Option<String>,
}

pub use qrauth_core::provider::ConfirmContext;

/// What `POST /qrcode/scan` answered.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// `confirmToken`.
    pub confirm_token: ConfirmToken,
    /// `context`.
    pub context: ConfirmContext,
}

/// The JSON body of a full response.
pub fn body_json(response: &ApiResponse) -> Value {
    serde_json::from_slice(response.body_bytes().expect("a full body")).expect("a JSON body")
}

/// The `Error` an error response encodes. The status must be the one `Error::status` gives the
/// decoded error; codes no test here expects come back as `Error::Internal` naming the code.
pub fn error_of(response: &ApiResponse) -> Error {
    let body = body_json(response);
    let code = body["error"].as_str().expect("an error code").to_owned();
    let description = body["error_description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let error = match code.as_str() {
        "invalid_request" => Error::InvalidRequest(description),
        "unsupported_media_type" => Error::UnsupportedMediaType,
        "payload_too_large" => Error::PayloadTooLarge,
        "unknown_qrcode" => Error::UnknownQrCode,
        "expired_qrcode" => Error::ExpiredQrCode,
        "not_bound" => Error::NotBound,
        "invalid_ticket" => Error::InvalidTicket,
        "conflict" => Error::Conflict(description),
        "access_denied" => Error::Forbidden(description),
        "unauthenticated" => Error::Unauthenticated,
        "slow_down" => {
            let secs = response
                .headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .expect("slow_down carries Retry-After");
            Error::SlowDown {
                retry_after: Duration::from_secs(secs),
            }
        }
        "upstream_unavailable" if response.status == StatusCode::GATEWAY_TIMEOUT => {
            Error::UpstreamTimeout
        }
        "upstream_unavailable" => Error::Upstream(description),
        "store_unavailable" => Error::StoreUnavailable(description),
        "not_found" => Error::NotFound,
        "method_not_allowed" => Error::MethodNotAllowed,
        other => {
            return Error::Internal(format!("{} {other}: {description}", response.status));
        }
    };
    assert_eq!(
        response.status,
        error.status(),
        "{code} answered with the wrong status"
    );
    error
}

fn answer(response: ApiResponse, success: StatusCode) -> qrauth_core::Result<Value> {
    if response.status == success {
        Ok(body_json(&response))
    } else {
        Err(error_of(&response))
    }
}

/// A `POST` with a JSON body.
pub fn json_request(body: &Value) -> ApiRequest {
    json_text_request(Method::POST, &body.to_string())
}

/// A request with `body` as its `application/json` body, as sent (possibly malformed).
pub fn json_text_request(method: Method, body: &str) -> ApiRequest {
    let mut request = ApiRequest::new(method);
    request
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    request.body = Bytes::from(body.to_owned());
    request
}

/// The value of the binding cookie a response sets.
pub fn binding_cookie(service: &QrAuthService, response: &ApiResponse) -> String {
    let prefix = format!("{}=", service.cookies().binding_name());
    response
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.split(';').next())
        .expect("a binding cookie")
        .to_owned()
}

fn parse_status(body: &Value) -> Status {
    crate::screen::show_answer(body);
    Status {
        state: QrState::parse(body["status"].as_str().expect("status")).expect("a known state"),
        version: body["version"].as_u64().expect("version"),
        user: serde_json::from_value(body["userInfo"].clone()).expect("userInfo"),
        ticket: body["ticket"]
            .as_str()
            .map(|t| Ticket::parse(t).expect("a well-formed ticket")),
        match_code: body["matchCode"].as_str().map(str::to_owned),
    }
}

/// A browser and a phone talking to one service.
///
/// A test names each browser by a `BindingSecret` of its own choosing; the service mints the
/// binding cookie itself (it adopts only values it minted), so the client remembers, per
/// browser, the cookie the service set and sends that one from then on, as a browser would.
#[derive(Clone)]
pub struct Client {
    /// The service every request goes to.
    pub service: QrAuthService,
}

/// The test's browser handle → the binding cookie a service minted for it. One map for the
/// process: a browser keeps its cookie when it talks to another replica (handles are random,
/// so tests cannot collide).
fn minted() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, String>> {
    static MINTED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, String>>,
    > = std::sync::OnceLock::new();
    MINTED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Client {
    /// A client of `service`.
    pub fn new(service: QrAuthService) -> Self {
        Self { service }
    }

    /// The binding cookie the browser named `binding` holds (the one the service minted).
    pub fn cookie_binding(&self, binding: &BindingSecret) -> BindingSecret {
        BindingSecret::parse(&self.cookie_value(binding)).expect("a well-formed binding")
    }

    /// The cookie value the browser named `binding` holds: the one the service minted for it,
    /// or (before its first `POST /qrcode`, or for a stranger) the handle itself.
    fn cookie_value(&self, binding: &BindingSecret) -> String {
        let key = binding.expose_secret();
        minted().get(key).cloned().unwrap_or_else(|| key.to_owned())
    }

    fn bound(&self, mut request: ApiRequest, binding: &BindingSecret) -> ApiRequest {
        let cookie = format!(
            "{}={}",
            self.service.cookies().binding_name(),
            self.cookie_value(binding)
        );
        request
            .headers
            .insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        request
    }

    /// `POST /qrcode` from the browser holding `binding` (which the service keeps).
    pub async fn generate(&self, binding: &BindingSecret) -> qrauth_core::Result<Qr> {
        self.generate_from(binding, None, None, None).await
    }

    /// `POST /qrcode` with the JSON `body`.
    pub async fn generate_with_body(
        &self,
        binding: &BindingSecret,
        body: &Value,
    ) -> qrauth_core::Result<Qr> {
        self.generate_from(binding, Some(body), None, None).await
    }

    /// `POST /qrcode` from a browser at `peer` sending `user_agent`.
    pub async fn generate_from(
        &self,
        binding: &BindingSecret,
        body: Option<&Value>,
        peer: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> qrauth_core::Result<Qr> {
        let mut request = match body {
            Some(body) => json_request(body),
            None => ApiRequest::new(Method::POST),
        };
        request.peer = peer;
        if let Some(ua) = user_agent {
            request
                .headers
                .insert(USER_AGENT, HeaderValue::from_str(ua).unwrap());
        }
        let response = self
            .service
            .handle(Route::Generate, self.bound(request, binding))
            .await;
        if response.status == StatusCode::CREATED {
            let set = binding_cookie(&self.service, &response);
            let mut minted = minted();
            if let Some(before) = minted.get(binding.expose_secret()) {
                assert_eq!(before, &set, "the service keeps the browser's binding");
            }
            minted.insert(binding.expose_secret().to_owned(), set);
        }
        let body = answer(response, StatusCode::CREATED)?;
        crate::screen::show_answer(&body);
        Ok(Qr {
            id: QrCodeId::parse(body["qrcodeId"].as_str().expect("qrcodeId")).expect("an id"),
            content: body["qrcodeContent"]
                .as_str()
                .expect("qrcodeContent")
                .to_owned(),
            expires_in: body["expiresIn"].as_u64().expect("expiresIn"),
            body,
        })
    }

    /// A plain `GET /qrcode/status` by the browser holding `binding`.
    pub async fn poll(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
    ) -> qrauth_core::Result<Status> {
        let mut request = ApiRequest::new(Method::GET);
        request.query = Some(format!(
            "qrcodeId={}{}",
            id.as_str(),
            crate::screen::rotation_query(id.as_str())
        ));
        let response = self
            .service
            .handle(Route::Status, self.bound(request, binding))
            .await;
        answer(response, StatusCode::OK).map(|body| parse_status(&body))
    }

    /// A long-poll `GET /qrcode/status?wait=…&since=…`; `wait` is rounded up to whole seconds
    /// (what the query carries).
    pub async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since: u64,
        wait: Duration,
    ) -> qrauth_core::Result<Status> {
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut request = ApiRequest::new(Method::GET);
        request.query = Some(format!(
            "qrcodeId={}&wait={secs}&since={since}{}",
            id.as_str(),
            crate::screen::rotation_query(id.as_str())
        ));
        let response = self
            .service
            .handle(Route::Status, self.bound(request, binding))
            .await;
        answer(response, StatusCode::OK).map(|body| parse_status(&body))
    }

    async fn phone(
        &self,
        route: Route,
        authorization: &str,
        body: Value,
    ) -> qrauth_core::Result<Value> {
        let mut request = json_request(&body);
        request
            .headers
            .insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        answer(self.service.handle(route, request).await, StatusCode::OK)
    }

    /// `POST /qrcode/scan` by the phone user `authorization` (e.g. `Bearer alice`).
    pub async fn scan(
        &self,
        id: &QrCodeId,
        authorization: &str,
    ) -> qrauth_core::Result<ScanOutcome> {
        let body = self
            .phone(
                Route::Scan,
                authorization,
                crate::screen::scan_body(id.as_str()),
            )
            .await?;
        Ok(ScanOutcome {
            confirm_token: ConfirmToken::parse(body["confirmToken"].as_str().expect("token"))
                .expect("a well-formed confirm token"),
            context: serde_json::from_value(body["context"].clone()).expect("context"),
        })
    }

    /// `POST /qrcode/confirm` without a match code.
    pub async fn confirm(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        authorization: &str,
    ) -> qrauth_core::Result<QrState> {
        self.confirm_with_code(id, token, authorization, None).await
    }

    /// `POST /qrcode/confirm` with the match code the phone user typed, if any.
    pub async fn confirm_with_code(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        authorization: &str,
        match_code: Option<&str>,
    ) -> qrauth_core::Result<QrState> {
        let mut body = json!({ "qrcodeId": id.as_str(), "confirmToken": token.expose_secret() });
        if let Some(code) = match_code {
            body["matchCode"] = json!(code);
        }
        let answer = self.phone(Route::Confirm, authorization, body).await?;
        Ok(QrState::parse(answer["status"].as_str().expect("status")).expect("a state"))
    }

    /// `POST /qrcode/cancel`.
    pub async fn cancel(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        authorization: &str,
    ) -> qrauth_core::Result<QrState> {
        let body = json!({ "qrcodeId": id.as_str(), "confirmToken": token.expose_secret() });
        let answer = self.phone(Route::Cancel, authorization, body).await?;
        Ok(QrState::parse(answer["status"].as_str().expect("status")).expect("a state"))
    }

    /// `POST /qrcode/exchange` by the browser holding `binding`.
    pub async fn exchange(
        &self,
        ticket: &Ticket,
        binding: &BindingSecret,
    ) -> qrauth_core::Result<TokenSet> {
        let request = json_request(&json!({ "ticket": ticket.expose_secret() }));
        let response = self
            .service
            .handle(Route::Exchange, self.bound(request, binding))
            .await;
        let body = answer(response, StatusCode::OK)?;
        Ok(serde_json::from_value(body).expect("a token set"))
    }
}
