//! The HTTP handlers, free of any web framework.
//!
//! [`QrAuthService`] takes an [`ApiRequest`] for a [`Route`] and returns an [`ApiResponse`]:
//! every status code, header, cookie and JSON body of the HTTP contract
//! (`docs/protocol.md`) is decided here, so the axum and actix-web adapters are thin
//! translations of the same code.
//!
//! By file: `route` (the routes), `builder` (settings), `browser` (generate, status, events,
//! exchange), `phone` (scan, confirm, cancel), `authenticate` (the `AuthenticatedUser` check
//! and its 401), `signed_in` (sign-in at exchange, refresh, logout, the session check and the
//! server API), `devices` (the phone's list of signed-in browsers), `render` (the application's own error responses), `request` (parsing and
//! guards), `status` (the status body allow-list).

mod authenticate;
mod browser;
mod builder;
mod client_ip;
mod cookies;
mod devices;
mod events;
mod phone;
mod render;
mod request;
mod response;
mod route;
mod shutdown;
mod signed_in;
mod status;
mod streams;
mod widget;

pub use builder::{QrAuthServiceBuilder, SignIn};
pub use cookies::CookieSettings;
pub use render::{ErrorContext, Refused};
pub use response::{ApiBody, ApiRequest, ApiResponse, BodyStream, RedactedHeaders};
pub use route::Route;
pub use shutdown::InFlight;

pub(crate) use request::{bearer_token, body_is_empty, parse_json};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use http::header::{ALLOW, CACHE_CONTROL, REFERRER_POLICY};
use serde_json::Value;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::flow::{SessionFlow, UpstreamControl, UpstreamLoops};
use crate::limits::{Limits, RateLimiter};
use crate::provider::{IssuerDocuments, QrAuthProvider, RouteContext};
use crate::verify::IdTokenVerifier;

/// The QR login HTTP service: every route of the contract, for any web framework. It owns the
/// session flow; the provider only fills in its hooks.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use http::Method;
/// use qrauth_core::{ApiRequest, BuiltinProvider, QrAuthService, Route, SigningAlgorithm};
/// # use qrauth_core::{PhoneAuthenticator, PhoneUser};
/// # struct Nobody;
/// # #[async_trait::async_trait]
/// # impl PhoneAuthenticator for Nobody {
/// #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> {
/// #         Err(qrauth_core::Error::Unauthenticated)
/// #     }
/// # }
/// let provider = BuiltinProvider::builder(Arc::new(Nobody))
///     .algorithm(SigningAlgorithm::Es256)
///     .build()?;
/// let service = QrAuthService::builder(Arc::new(provider)).build()?;
/// let response = service.handle(Route::Generate, ApiRequest::new(Method::POST)).await;
/// assert_eq!(response.status, 201);
/// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct QrAuthService {
    inner: Arc<Inner>,
}

struct Inner {
    provider: Arc<dyn QrAuthProvider>,
    flow: SessionFlow,
    upstream_loops: UpstreamLoops,
    limiter: Arc<dyn RateLimiter>,
    on_sign_in: Option<builder::SignInHook>,
    limits: Limits,
    cookies: CookieSettings,
    trusted_proxies: Vec<IpAddr>,
    allowed_origins: Vec<String>,
    default_wait: Duration,
    max_wait: Duration,
    keep_alive: Duration,
    shutdown: shutdown::Shutdown,
    other_verifier: Option<IdTokenVerifier>,
    render_errors: Option<render::ErrorRenderer>,
    signed_in: Arc<dyn crate::store::SignedInStore>,
    /// SHA-256 of a provider token that carries no live `sid` → its session (from the store's
    /// aliases), so that such tokens cost one store read per replica, not one per request.
    token_sessions: moka::sync::Cache<[u8; 32], Option<crate::SessionId>>,
    /// MACs the binding cookies this service mints.
    binding_key: crate::BindingKey,
    /// The long-polls and event streams open now, per session, binding and address.
    streams: Arc<streams::StreamSlots>,
    /// Judges each login at scan.
    risk_signal: Arc<dyn crate::risk::RiskSignal>,
    /// Number matching for logins judged at this level or above.
    number_matching_from: Option<crate::risk::RiskLevel>,
}

impl std::fmt::Debug for QrAuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QrAuthService")
            .field("cookies", &self.inner.cookies)
            .field("lifetimes", self.inner.flow.lifetimes())
            .finish_non_exhaustive()
    }
}

/// The largest request body qrauth's routes accept.
const MAX_BODY_BYTES: usize = 4096;

impl QrAuthService {
    /// Starts configuring a service around `provider`.
    pub fn builder(provider: Arc<dyn QrAuthProvider>) -> QrAuthServiceBuilder {
        QrAuthServiceBuilder::new(provider)
    }

    /// The provider.
    pub fn provider(&self) -> &Arc<dyn QrAuthProvider> {
        &self.inner.provider
    }

    /// The cookie settings.
    pub fn cookies(&self) -> &CookieSettings {
        &self.inner.cookies
    }

    /// The abuse limits in force.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The lifetimes in force.
    pub fn lifetimes(&self) -> &crate::Lifetimes {
        self.inner.flow.lifetimes()
    }

    /// Reports what an upstream IdP says about a session (for providers that confirm at the
    /// IdP); see [`UpstreamControl`].
    pub fn upstream(&self) -> UpstreamControl {
        UpstreamControl::new(self.inner.flow.clone())
    }

    /// Upstream status loops running now, and started since the service was built (gauges for
    /// providers with an upstream driver).
    pub fn upstream_loops(&self) -> (usize, u64) {
        let loops = &self.inner.upstream_loops;
        (loops.live(), loops.started())
    }

    /// Callers currently waiting for a change (long-polls and event streams): a gauge.
    pub fn live_waiters(&self) -> usize {
        self.inner.flow.store().live_waiters()
    }

    /// Where this service records its metrics (its `provider` label).
    pub(crate) fn metrics(&self) -> crate::metrics::Metrics {
        self.inner.flow.metrics()
    }

    /// The largest request body qrauth's routes accept; adapters stop reading beyond it and
    /// answer [`Error::PayloadTooLarge`].
    pub fn max_body_bytes(&self) -> usize {
        MAX_BODY_BYTES
    }

    /// Answers one request. Errors are qrauth's JSON error bodies, or what the application's
    /// [renderer](QrAuthServiceBuilder::render_errors) makes of them.
    pub async fn handle(&self, route: Route, request: ApiRequest) -> ApiResponse {
        let span = crate::metrics::request_span(route);
        let response = match route.method() {
            None => Err(Error::NotFound),
            Some(method) if method != request.method => Err(Error::MethodNotAllowed),
            Some(_) => {
                self.dispatch(route, &request)
                    .instrument(span.clone())
                    .await
            }
        };
        let mut response = response.unwrap_or_else(|e| {
            let mut r = ApiResponse::from_error(&e);
            if let (Error::MethodNotAllowed, Some(m)) = (&e, route.method()) {
                r = r.with_header(ALLOW, m.as_str());
            }
            let (method, headers) = (Some(&request.method), &request.headers);
            self.render_error(&e, Refused::Route(route), method, headers, r)
        });
        self.finish(route, &mut response);
        span.record("status", response.status.as_u16());
        response
    }

    /// Answers a request for `path` under `/qrcode/` that is none of qrauth's own routes: the
    /// provider's [extension routes](crate::provider::ProviderRoutes), or 404.
    pub async fn handle_extension(&self, path: &str, request: ApiRequest) -> ApiResponse {
        let span = crate::metrics::request_span(Route::Extension);
        let response = match self.inner.provider.capabilities().routes {
            Some(routes) => {
                let handled = routes.handle(path, RouteContext::new(self, &request));
                handled.instrument(span.clone()).await
            }
            None => Err(Error::NotFound),
        };
        let mut response = response.unwrap_or_else(|e| {
            let (method, headers) = (Some(&request.method), &request.headers);
            let r = ApiResponse::from_error(&e);
            self.render_error(&e, Refused::Route(Route::Extension), method, headers, r)
        });
        self.finish(Route::Extension, &mut response);
        span.record("status", response.status.as_u16());
        response
    }

    /// The error response adapters send when they cannot even build an [`ApiRequest`] (body
    /// too large, unreadable body), with the same headers as every other response of `route`.
    ///
    /// After [`Error::PayloadTooLarge`] the body may not have been read to its end, so the
    /// response says `Connection: close`: clients must not reuse the connection. An application
    /// [renderer](QrAuthServiceBuilder::render_errors) sees no method and no headers here.
    pub fn error_response(&self, route: Route, error: &Error) -> ApiResponse {
        let default = ApiResponse::from_error(error);
        let no_request = http::HeaderMap::new();
        let mut response =
            self.render_error(error, Refused::Route(route), None, &no_request, default);
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
            Route::Exchange => self
                .exchange(request)
                .await
                .inspect_err(|e| self.metrics().exchange_failed(e)),
            Route::Scan | Route::Confirm | Route::Cancel => self.phone(route, request).await,
            Route::Logout => self.logout(request).await,
            Route::Refresh => self.refresh(request).await,
            Route::Devices => self.devices(request).await,
            Route::RevokeDevices => self.revoke_devices(request).await,
            Route::Widget => Ok(widget::response(&request.headers)),
            Route::Jwks => self.issuer_document(|d| d.jwks()),
            Route::OpenIdConfiguration => self.issuer_document(|d| d.openid_configuration()),
            Route::Extension => Err(Error::NotFound),
        }
    }

    fn issuer_document(
        &self,
        document: impl FnOnce(&dyn IssuerDocuments) -> Value,
    ) -> Result<ApiResponse> {
        let issuer = self
            .inner
            .provider
            .capabilities()
            .issuer
            .ok_or(Error::NotFound)?;
        Ok(ApiResponse::json(http::StatusCode::OK, &document(issuer)).cache("public, max-age=300"))
    }
}
