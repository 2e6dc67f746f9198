//! Extension routes: paths under `/qrcode/` that belong to the provider (Authing's fastpass).

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::handler::{ApiRequest, ApiResponse, QrAuthService};
use crate::metrics::Limit;

/// Routes of a provider's own under `/qrcode/{path}`, for requests that match none of
/// qrauth's routes. Answer [`Error::NotFound`](crate::Error::NotFound) for paths you do not
/// serve. Every answer gets qrauth's headers (`Cache-Control: no-store`, …), and an
/// `invalid_token` error its `WWW-Authenticate` challenge.
#[async_trait]
pub trait ProviderRoutes: Send + Sync {
    /// Answers `path` (after `/qrcode/`, e.g. `fastpass`).
    async fn handle(&self, path: &str, request: RouteContext<'_>) -> Result<ApiResponse>;
}

/// One request to an extension route, with the guards qrauth's own routes use.
#[derive(Clone, Copy)]
pub struct RouteContext<'a> {
    service: &'a QrAuthService,
    request: &'a ApiRequest,
}

impl std::fmt::Debug for RouteContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteContext")
            .field("method", &self.request.method)
            .finish_non_exhaustive()
    }
}

impl<'a> RouteContext<'a> {
    pub(crate) fn new(service: &'a QrAuthService, request: &'a ApiRequest) -> Self {
        Self { service, request }
    }

    /// The request.
    pub fn request(&self) -> &'a ApiRequest {
        self.request
    }

    /// The token of `Authorization: Bearer <token>`, if present.
    pub fn bearer_token(&self) -> Option<&'a str> {
        crate::handler::bearer_token(&self.request.headers)
    }

    /// The JSON body (`application/json` only, ≤ 4 KiB), or `T::default()` for an empty body.
    pub fn json_or_default<T: DeserializeOwned + Default>(&self) -> Result<T> {
        if crate::handler::body_is_empty(self.request) {
            Ok(T::default())
        } else {
            crate::handler::parse_json(self.request)
        }
    }

    /// Refuses a foreign `Origin`, like the phone routes.
    pub fn check_origin(&self) -> Result<()> {
        self.service.check_origin(&self.request.headers)
    }

    /// The client's address, through the trusted proxies.
    pub fn client_ip(&self) -> Option<IpAddr> {
        self.service.client_ip(self.request)
    }

    /// Counts a hit on the service's shared limiter under `key` (prefixed with the provider's
    /// own namespace by the caller); beyond `limit` per `window` it is `429 slow_down`.
    pub async fn limit(&self, key: &str, limit: u32, window: Duration) -> Result<()> {
        self.service
            .limit(format!("ext:{key}"), limit, window)
            .await
            .inspect_err(|e| self.service.metrics().limit_refused(Limit::Extension, e))
    }

    /// The phone limit per minute configured on the service (for routes that act for a user).
    pub fn phone_limit_per_minute(&self) -> u32 {
        self.service.limits().phone_per_minute
    }
}
