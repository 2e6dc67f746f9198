//! The HTTP handlers, free of any web framework.
//!
//! [`QrAuthService`] takes an [`ApiRequest`] for a [`Route`] and returns an [`ApiResponse`]:
//! every status code, header, cookie and JSON body of the HTTP contract is decided here, so
//! the axum and actix-web adapters are thin translations of the same code.

mod client_ip;
mod cookies;
mod events;
mod response;
mod widget;

pub use cookies::CookieSettings;
pub use response::{ApiBody, ApiRequest, ApiResponse, BodyStream};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, REFERRER_POLICY, SET_COOKIE,
    USER_AGENT, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::limits::{Limits, MemoryRateLimiter, RateLimiter};
use crate::provider::{GenerateRequest, PhoneRequest, QrAuthProvider};
use crate::secret::{BindingSecret, ConfirmToken, QrCodeId, Ticket};
use crate::session::Initiator;
use crate::types::{Claims, QrState, QrStatus};

/// The routes qrauth serves, relative to wherever the application mounts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `POST /qrcode`
    Generate,
    /// `GET /qrcode/status`
    Status,
    /// `GET /qrcode/events`
    Events,
    /// `POST /qrcode/exchange`
    Exchange,
    /// `POST /qrcode/scan` (phone)
    Scan,
    /// `POST /qrcode/confirm` (phone)
    Confirm,
    /// `POST /qrcode/cancel` (phone)
    Cancel,
    /// `GET /qrcode/widget.js`: the browser widget.
    Widget,
    /// `GET /.well-known/jwks.json`
    Jwks,
    /// `GET /.well-known/openid-configuration`
    OpenIdConfiguration,
    /// `POST /qrcode/fastpass`: a fastpass QR for a logged-in user (providers with
    /// [`fastpass`](crate::provider::QrAuthProvider::fastpass) only).
    Fastpass,
    /// Anything else under `/qrcode/`.
    NotFound,
}

impl Route {
    /// Every route with its path, for adapters to mount.
    pub const ALL: [(&'static str, Route); 11] = [
        ("/qrcode", Route::Generate),
        ("/qrcode/status", Route::Status),
        ("/qrcode/events", Route::Events),
        ("/qrcode/exchange", Route::Exchange),
        ("/qrcode/scan", Route::Scan),
        ("/qrcode/confirm", Route::Confirm),
        ("/qrcode/cancel", Route::Cancel),
        ("/qrcode/widget.js", Route::Widget),
        ("/qrcode/fastpass", Route::Fastpass),
        ("/.well-known/jwks.json", Route::Jwks),
        (
            "/.well-known/openid-configuration",
            Route::OpenIdConfiguration,
        ),
    ];

    /// The one method the route answers.
    pub fn method(self) -> Option<Method> {
        match self {
            Route::Generate
            | Route::Exchange
            | Route::Scan
            | Route::Confirm
            | Route::Cancel
            | Route::Fastpass => Some(Method::POST),
            Route::Status
            | Route::Events
            | Route::Widget
            | Route::Jwks
            | Route::OpenIdConfiguration => Some(Method::GET),
            Route::NotFound => None,
        }
    }

    /// Documents anyone may cache: they hold no secret and nothing about a session.
    fn is_public_document(self) -> bool {
        matches!(
            self,
            Route::Widget | Route::Jwks | Route::OpenIdConfiguration
        )
    }
}

/// A completed QR login, for notifications ("you just signed in on Chrome on Windows").
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SignIn {
    /// The verified claims of the issued id_token.
    pub claims: Claims,
    /// The signed-in browser and OS, e.g. "Chrome on Windows".
    pub browser: String,
    /// The signed-in browser's address.
    pub ip: Option<IpAddr>,
}

/// Called once per successful ticket exchange.
pub type SignInHook = Arc<dyn Fn(&SignIn) + Send + Sync>;

/// Configures a [`QrAuthService`].
pub struct QrAuthServiceBuilder {
    inner: Inner,
}

impl QrAuthServiceBuilder {
    /// Drops `Secure` and the `__Host-` prefix from cookies so that a plain-HTTP `localhost`
    /// demo works. Never use it in production.
    pub fn insecure_dev_cookies(mut self) -> Self {
        self.inner.cookies.secure = false;
        self
    }

    /// Cookie settings.
    pub fn cookies(mut self, cookies: CookieSettings) -> Self {
        self.inner.cookies = cookies;
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(mut self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.inner.trusted_proxies = proxies.into_iter().collect();
        self
    }

    /// Origins the phone routes accept in an `Origin` header (default: the request's own
    /// `Host`). Requests without `Origin` (native apps) are accepted.
    pub fn allowed_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.inner.allowed_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Long-poll wait when the client asks for `wait` without a value (default 25 s), and the
    /// cap on what it may ask (default 30 s).
    pub fn long_poll(mut self, default: Duration, max: Duration) -> Self {
        self.inner.max_wait = max;
        self.inner.default_wait = default.min(max);
        self
    }

    /// Abuse limits (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.inner.limits = limits;
        self
    }

    /// Where limit counters live (default: this process's memory). Give every replica the
    /// same shared limiter so that limits hold across replicas.
    pub fn rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.inner.limiter = limiter;
        self
    }

    /// Calls `hook` once for every completed login (after the ticket exchange), with the
    /// signed-in device's description: send the user a "new sign-in" notification from here.
    ///
    /// ```
    /// # fn demo(builder: qrauth_core::handler::QrAuthServiceBuilder) {
    /// let service = builder
    ///     .on_sign_in(|sign_in| println!("{} signed in on {}", sign_in.claims.sub, sign_in.browser))
    ///     .build();
    /// # }
    /// ```
    pub fn on_sign_in(mut self, hook: impl Fn(&SignIn) + Send + Sync + 'static) -> Self {
        self.inner.on_sign_in = Some(Arc::new(hook));
        self
    }

    /// Interval of SSE keep-alive comments (default 15 s).
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.inner.keep_alive = interval;
        self
    }

    /// Builds the service.
    pub fn build(self) -> QrAuthService {
        QrAuthService {
            inner: Arc::new(self.inner),
        }
    }
}

/// The QR login HTTP service: every route of the contract, for any web framework.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use http::Method;
/// use qrauth_core::handler::{ApiRequest, QrAuthService, Route};
/// # use qrauth_core::provider::builtin::{BuiltinProvider, PhoneAuthenticator, PhoneUser};
/// # struct Nobody;
/// # #[async_trait::async_trait]
/// # impl PhoneAuthenticator for Nobody {
/// #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> {
/// #         Err(qrauth_core::Error::Unauthenticated)
/// #     }
/// # }
/// # let provider = BuiltinProvider::builder(Arc::new(Nobody)).algorithm(qrauth_core::provider::builtin::SigningAlgorithm::Es256).build().unwrap();
///
/// let service = QrAuthService::builder(Arc::new(provider)).build();
/// let response = service.handle(Route::Generate, ApiRequest::new(Method::POST)).await;
/// assert_eq!(response.status, 201);
/// # });
/// ```
#[derive(Clone)]
pub struct QrAuthService {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<dyn QrAuthProvider>,
    on_sign_in: Option<SignInHook>,
    limits: Limits,
    limiter: Arc<dyn RateLimiter>,
    cookies: CookieSettings,
    trusted_proxies: Vec<IpAddr>,
    allowed_origins: Vec<String>,
    default_wait: Duration,
    max_wait: Duration,
    keep_alive: Duration,
}

impl std::fmt::Debug for QrAuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrAuthService")
            .field("cookies", &self.inner.cookies)
            .finish_non_exhaustive()
    }
}

const MAX_BODY_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GenerateBody {
    scene: Option<String>,
    user_defined_data: Option<Value>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExchangeBody {
    ticket: String,
}

/// Phone bodies ignore unknown fields: a user id smuggled in the body is simply not read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneBody {
    qrcode_id: String,
    confirm_token: Option<String>,
    match_code: Option<String>,
}

impl QrAuthService {
    /// Starts configuring a service around `provider`.
    pub fn builder(provider: Arc<dyn QrAuthProvider>) -> QrAuthServiceBuilder {
        QrAuthServiceBuilder {
            inner: Inner {
                provider,
                on_sign_in: None,
                limits: Limits::default(),
                limiter: Arc::new(MemoryRateLimiter::default()),
                cookies: CookieSettings::default(),
                trusted_proxies: Vec::new(),
                allowed_origins: Vec::new(),
                default_wait: Duration::from_secs(25),
                max_wait: Duration::from_secs(30),
                keep_alive: Duration::from_secs(15),
            },
        }
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn QrAuthProvider> {
        &self.inner.provider
    }

    /// The cookie settings.
    pub fn cookies(&self) -> &CookieSettings {
        &self.inner.cookies
    }

    /// The largest request body qrauth's routes accept; adapters stop reading beyond it and
    /// answer [`Error::PayloadTooLarge`].
    pub fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }

    /// Answers one request.
    pub async fn handle(&self, route: Route, request: ApiRequest) -> ApiResponse {
        let response = match route.method() {
            None => Err(Error::NotFound),
            Some(method) if method != request.method => Err(Error::MethodNotAllowed),
            Some(_) => self.dispatch(route, &request).await,
        };
        let mut response = response.unwrap_or_else(|e| {
            let mut r = ApiResponse::from_error(&e);
            if let (Error::MethodNotAllowed, Some(m)) = (&e, route.method()) {
                r = r.with_header(ALLOW, m.as_str());
            }
            r
        });
        self.finish(route, &mut response);
        response
    }

    /// The error response adapters send when they cannot even build an [`ApiRequest`] (body
    /// too large, unreadable body), with the same headers as every other response of `route`.
    ///
    /// After [`Error::PayloadTooLarge`] the body may not have been read to its end, so the
    /// response says `Connection: close`: clients must not reuse the connection.
    pub fn error_response(&self, route: Route, error: &Error) -> ApiResponse {
        let mut response = ApiResponse::from_error(error);
        if matches!(error, Error::PayloadTooLarge) {
            response
                .headers
                .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.finish(route, &mut response);
        response
    }

    fn finish(&self, route: Route, response: &mut ApiResponse) {
        let h = &mut response.headers;
        // Public documents set their own caching; everything else is never stored.
        if !route.is_public_document() || !h.contains_key(CACHE_CONTROL) {
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }

    async fn dispatch(&self, route: Route, request: &ApiRequest) -> Result<ApiResponse> {
        match route {
            Route::Generate => self.generate(request).await,
            Route::Status => self.status(request).await,
            Route::Events => self.events(request).await,
            Route::Exchange => self.exchange(request).await,
            Route::Scan | Route::Confirm | Route::Cancel => self.phone(route, request).await,
            Route::Widget => Ok(widget::response(&request.headers)),
            Route::Jwks => self.issuer_document(|d| d.jwks()),
            Route::OpenIdConfiguration => self.issuer_document(|d| d.openid_configuration()),
            Route::Fastpass => self.fastpass(request).await,
            Route::NotFound => Err(Error::NotFound),
        }
    }

    fn client_ip(&self, request: &ApiRequest) -> Option<IpAddr> {
        client_ip::client_ip(request.peer, &request.headers, &self.inner.trusted_proxies)
    }

    fn binding(&self, headers: &HeaderMap) -> Option<BindingSecret> {
        cookies::read_cookie(headers, &self.inner.cookies.binding_name())
            .and_then(|v| BindingSecret::parse(v).ok())
    }

    fn require_binding(&self, headers: &HeaderMap) -> Result<BindingSecret> {
        self.binding(headers).ok_or(Error::NotBound)
    }

    /// Counts a hit; over the limit is `429 slow_down` with `Retry-After`.
    async fn limit(&self, key: String, limit: u32, window: Duration) -> Result<()> {
        if limit == u32::MAX {
            return Ok(());
        }
        match self.inner.limiter.hit(&key, limit, window).await? {
            None => Ok(()),
            Some(retry_after) => Err(Error::SlowDown { retry_after }),
        }
    }

    /// Plain polls may come once per advertised interval, with some slack for network jitter.
    fn poll_window(&self) -> Duration {
        let interval = self.inner.provider.lifetimes().poll_interval;
        interval
            .saturating_sub(Duration::from_millis(250))
            .max(Duration::from_millis(100))
    }

    fn caller_key(&self, request: &ApiRequest) -> String {
        match self.client_ip(request) {
            Some(ip) => ip.to_string(),
            None => "unknown".to_owned(),
        }
    }

    async fn generate(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let limits = self.inner.limits;
        self.limit(
            format!("gen:{}", self.caller_key(request)),
            limits.generate_per_minute,
            Duration::from_secs(60),
        )
        .await?;
        let body: GenerateBody = if request.body.iter().all(u8::is_ascii_whitespace) {
            GenerateBody {
                scene: None,
                user_defined_data: None,
                nonce: None,
            }
        } else {
            parse_json(request)?
        };
        // Reuse the browser's binding so its other tabs keep working; mint one otherwise.
        let binding = match self.binding(&request.headers) {
            Some(b) => b,
            None => BindingSecret::generate()?,
        };
        self.limit(
            format!("bind:{}", binding.hash().to_hex()),
            limits.sessions_per_binding,
            self.inner.provider.lifetimes().qr_code,
        )
        .await?;
        let user_agent = header_str(&request.headers, USER_AGENT).unwrap_or("");
        let initiator = Initiator {
            ip: self.client_ip(request),
            device: crate::user_agent::describe(user_agent).to_string(),
        };
        let mut generate = GenerateRequest::new(binding.clone(), initiator);
        generate.scene = body.scene;
        generate.user_defined_data = body.user_defined_data;
        generate.nonce = body.nonce;
        let qr = self.inner.provider.generate(generate).await?;
        let image = crate::qr::svg_data_url(&qr.content)?;
        let mut response = ApiResponse::json(
            StatusCode::CREATED,
            &json!({
                "qrcodeId": qr.id.as_str(),
                "qrcodeContent": qr.content,
                "image": image,
                "expiresIn": qr.expires_in,
                "expireAt": qr.expire_at_ms,
                "interval": qr.interval,
            }),
        );
        // Re-sent every time so that it outlives the newest QR (plus a ticket's lifetime).
        let cookie_age = qr.expires_in + 300;
        let cookie = self
            .inner
            .cookies
            .set_binding(binding.expose_secret(), cookie_age);
        response = response.with_header(SET_COOKIE, &cookie);
        Ok(response)
    }

    fn query_id(&self, request: &ApiRequest) -> Result<Option<QrCodeId>> {
        match query_param(request, "qrcodeId") {
            None => Err(Error::InvalidRequest("qrcodeId is required".into())),
            Some(raw) => Ok(QrCodeId::parse(&raw).ok()),
        }
    }

    async fn status(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let id = self.query_id(request)?;
        let wait = match query_param(request, "wait") {
            None => None,
            Some(w) if w.is_empty() => Some(self.inner.default_wait),
            Some(w) => Some(
                w.parse::<u64>()
                    .map(|s| Duration::from_secs(s).min(self.inner.max_wait))
                    .map_err(|_| {
                        Error::InvalidRequest("wait must be a number of seconds".into())
                    })?,
            ),
        };
        let since = match query_param(request, "since") {
            None => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| Error::InvalidRequest("since must be a version number".into()))?,
            ),
        };
        if wait.is_none_or(|w| w.is_zero()) && self.inner.limits.enforce_poll_interval {
            // Before any lookup, keyed by what the caller presents: unknown, foreign and expired
            // ids cost the same budget.
            let caller = match self.binding(&request.headers) {
                Some(b) => b.hash().to_hex(),
                None => self.caller_key(request),
            };
            let presented = query_param(request, "qrcodeId").unwrap_or_default();
            self.limit(
                format!("poll:{caller}:{}", hex_sha256(&presented)),
                1,
                self.poll_window(),
            )
            .await?;
        }
        let binding = self.require_binding(&request.headers)?;
        let id = id.ok_or(Error::NotBound)?;
        let provider = &self.inner.provider;
        let status = match wait {
            Some(wait) if !wait.is_zero() => {
                let since = match since {
                    Some(v) => v,
                    None => provider.poll(&id, &binding).await?.version,
                };
                provider
                    .wait_for_change(&id, &binding, since, Instant::now() + wait)
                    .await?
            }
            _ => provider.poll(&id, &binding).await?,
        };
        Ok(ApiResponse::json(StatusCode::OK, &status_body(&status)))
    }

    async fn events(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let id = self.query_id(request)?;
        let binding = self.require_binding(&request.headers)?;
        let id = id.ok_or(Error::NotBound)?;
        let last_event_id = header_str(&request.headers, "last-event-id")
            .and_then(|v| v.trim().parse::<u64>().ok());
        // Check binding and existence before committing to a stream.
        let first = self.inner.provider.poll(&id, &binding).await?;
        Ok(events::stream(
            self.inner.provider.clone(),
            id,
            binding,
            first,
            last_event_id,
            self.inner.keep_alive,
        ))
    }

    async fn exchange(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let body: ExchangeBody = parse_json(request)?;
        let binding = self.require_binding(&request.headers)?;
        let ticket = Ticket::parse(&body.ticket).map_err(|_| Error::InvalidTicket)?;
        let tokens = self.inner.provider.exchange(&ticket, &binding).await?;
        if let Some(hook) = &self.inner.on_sign_in {
            match self.inner.provider.verify(&tokens.id_token).await {
                Ok(claims) => hook(&SignIn {
                    claims,
                    browser: crate::user_agent::describe(
                        header_str(&request.headers, USER_AGENT).unwrap_or(""),
                    )
                    .to_string(),
                    ip: self.client_ip(request),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "sign-in hook skipped: issued token did not verify")
                }
            }
        }
        let max_age = self
            .inner
            .cookies
            .session_max_age
            .unwrap_or(tokens.expires_in);
        let session = self.inner.cookies.set_session(&tokens.id_token, max_age);
        let clear = self.inner.cookies.clear_binding();
        Ok(ApiResponse::json(StatusCode::OK, &tokens)
            .with_header(SET_COOKIE, &session)
            .with_header(SET_COOKIE, &clear))
    }

    fn check_origin(&self, headers: &HeaderMap) -> Result<()> {
        let Some(origin) = header_str(headers, ORIGIN) else {
            return Ok(());
        };
        let allowed = if self.inner.allowed_origins.is_empty() {
            let host = header_str(headers, HOST).unwrap_or("");
            url::Url::parse(origin)
                .ok()
                .and_then(|u| {
                    let h = u.host_str()?.to_owned();
                    Some(match u.port() {
                        Some(p) => format!("{h}:{p}"),
                        None => h,
                    })
                })
                .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
        } else {
            self.inner.allowed_origins.iter().any(|a| a == origin)
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden("cross-origin request refused".into()))
        }
    }

    async fn phone(&self, route: Route, request: &ApiRequest) -> Result<ApiResponse> {
        let phone_api = self.inner.provider.phone().ok_or(Error::NotFound)?;
        self.check_origin(&request.headers)?;
        let body: PhoneBody = parse_json(request)?;
        let authorization = header_str(&request.headers, AUTHORIZATION)
            .filter(|v| !v.trim().is_empty())
            .ok_or(Error::Unauthenticated)?;
        self.limit(
            format!("phone:{}", hex_sha256(authorization)),
            self.inner.limits.phone_per_minute,
            Duration::from_secs(60),
        )
        .await?;
        let phone = PhoneRequest {
            authorization,
            ip: self.client_ip(request),
            match_code: body.match_code.as_deref(),
        };
        let id = QrCodeId::parse(&body.qrcode_id).map_err(|_| Error::UnknownQrCode)?;
        if route == Route::Scan {
            let outcome = phone_api.scan(&id, phone).await?;
            return Ok(ApiResponse::json(
                StatusCode::OK,
                &json!({
                    "confirmToken": outcome.confirm_token.expose_secret(),
                    "context": outcome.context,
                }),
            ));
        }
        let token = body
            .confirm_token
            .ok_or_else(|| Error::InvalidRequest("confirmToken is required".into()))?;
        let token = ConfirmToken::parse(&token)
            .map_err(|_| Error::Forbidden("invalid or expired confirm token".into()))?;
        let state = if route == Route::Confirm {
            phone_api.confirm(&id, &token, phone).await?
        } else {
            phone_api.cancel(&id, &token, phone).await?
        };
        Ok(ApiResponse::json(
            StatusCode::OK,
            &json!({ "status": state.as_str() }),
        ))
    }

    /// `POST /qrcode/fastpass`: `Authorization: Bearer <access_token>` of the logged-in user,
    /// optional JSON body `{ scope, context, customData }`.
    async fn fastpass(&self, request: &ApiRequest) -> Result<ApiResponse> {
        let api = self.inner.provider.fastpass().ok_or(Error::NotFound)?;
        self.check_origin(&request.headers)?;
        let token = header_str(&request.headers, AUTHORIZATION)
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Ok(self.unauthorized(&Error::InvalidToken(crate::error::TokenError::Missing)));
        };
        let body: crate::provider::FastpassRequest =
            if request.body.iter().all(u8::is_ascii_whitespace) {
                Default::default()
            } else {
                parse_json(request)?
            };
        self.limit(
            format!("fastpass:{}", hex_sha256(token)),
            self.inner.limits.phone_per_minute,
            Duration::from_secs(60),
        )
        .await?;
        match api.fastpass(token, body).await {
            Ok(data) => Ok(ApiResponse::json(StatusCode::OK, &data)),
            Err(e @ (Error::InvalidToken(_) | Error::Unauthenticated)) => Ok(self.unauthorized(&e)),
            Err(e) => Err(e),
        }
    }

    fn issuer_document(
        &self,
        document: impl FnOnce(&dyn crate::provider::IssuerDocuments) -> Value,
    ) -> Result<ApiResponse> {
        let issuer = self.inner.provider.issuer().ok_or(Error::NotFound)?;
        Ok(ApiResponse::json(StatusCode::OK, &document(issuer)).cache("public, max-age=300"))
    }

    /// Verifies the caller's id_token, from `Authorization: Bearer` or else the session
    /// cookie. This is what the adapters' `AuthenticatedUser` extractors call.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Claims> {
        let bearer = header_str(headers, AUTHORIZATION).and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
        let token = bearer
            .or_else(|| cookies::read_cookie(headers, &self.inner.cookies.session_name()))
            .filter(|t| !t.is_empty())
            .ok_or(Error::InvalidToken(crate::error::TokenError::Missing))?;
        self.inner.provider.verify(token).await
    }

    /// The 401 (or, when the verifier itself failed, 5xx) response for a failed
    /// [`authenticate`](Self::authenticate), with `WWW-Authenticate` per RFC 6750.
    pub fn unauthorized(&self, error: &Error) -> ApiResponse {
        let mut response = ApiResponse::from_error(error);
        let challenge = match error {
            Error::InvalidToken(crate::error::TokenError::Missing) => {
                r#"Bearer realm="qrauth""#.to_owned()
            }
            Error::InvalidToken(_) => {
                r#"Bearer realm="qrauth", error="invalid_token", error_description="the access token is missing, invalid or expired""#.to_owned()
            }
            _ => return response,
        };
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            response.headers.insert(WWW_AUTHENTICATE, v);
        }
        response
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The status JSON: an allow-list of fields (a struct, so nothing else can slip in), Authing's
/// flags agreeing with `status`.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusBody<'a> {
    qrcode_id: &'a str,
    status: &'static str,
    scanned: bool,
    expired: bool,
    success: bool,
    canceled: bool,
    user_info: Option<&'a crate::types::UserInfo>,
    ticket: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    match_code: Option<&'a str>,
    description: &'static str,
    version: u64,
    expire_at: u64,
}

pub(crate) fn status_body(status: &QrStatus) -> StatusBody<'_> {
    let state = status.state;
    StatusBody {
        qrcode_id: status.id.as_str(),
        status: state.as_str(),
        scanned: matches!(state, QrState::Scanned | QrState::Confirmed),
        expired: state == QrState::Expired,
        success: state == QrState::Confirmed,
        canceled: state == QrState::Cancelled,
        user_info: status.user.as_ref(),
        ticket: status.ticket.as_ref().map(|t| t.expose_secret()),
        match_code: status.match_code.as_deref(),
        description: describe(state),
        version: status.version,
        expire_at: status.expire_at_ms,
    }
}

fn describe(state: QrState) -> &'static str {
    match state {
        QrState::Pending => "waiting for a scan",
        QrState::Scanned => "scanned; waiting for confirmation on the phone",
        QrState::Confirmed => "confirmed; exchange the ticket",
        QrState::Cancelled => "cancelled on the phone",
        QrState::Expired => "the QR code expired",
        QrState::Consumed => "this QR code was already used to log in",
    }
}

fn hex_sha256(value: &str) -> String {
    crate::secret::SecretHash::from_bytes(crate::secret::sha256(value.as_bytes())).to_hex()
}

fn header_str(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn query_param(request: &ApiRequest, name: &str) -> Option<String> {
    let query = request.query.as_deref()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn parse_json<T: DeserializeOwned>(request: &ApiRequest) -> Result<T> {
    let content_type = header_str(&request.headers, CONTENT_TYPE).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Error::UnsupportedMediaType);
    }
    if request.body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    let body: &Bytes = &request.body;
    serde_json::from_slice(body).map_err(|e| Error::InvalidRequest(json_error(&e)))
}

fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            // Name the field, but never echo a value from the body.
            let msg = e.to_string();
            let msg = msg.split(" at line").next().unwrap_or("");
            if msg.starts_with("unknown field") || msg.starts_with("missing field") {
                let field = msg.split(", expected").next().unwrap_or(msg);
                format!("invalid JSON body: {field}")
            } else {
                "invalid JSON body: a field has the wrong type".to_owned()
            }
        }
        Category::Syntax | Category::Eof | Category::Io => "malformed JSON body".to_owned(),
    }
}
