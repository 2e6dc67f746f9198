//! Framework-free HTTP requests and responses.

use std::net::IpAddr;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;

use crate::error::{Error, TokenError};

/// An HTTP request as the adapters hand it to the core handlers.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// All request headers.
    pub headers: HeaderMap,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// The body, already limited to [`QrAuthService::max_body_bytes`](super::QrAuthService::max_body_bytes).
    pub body: Bytes,
    /// The TCP peer's address.
    pub peer: Option<IpAddr>,
}

impl ApiRequest {
    /// A request with no body, headers or query.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            headers: HeaderMap::new(),
            query: None,
            body: Bytes::new(),
            peer: None,
        }
    }
}

/// A stream of body chunks (server-sent events).
pub type BodyStream = Pin<Box<dyn Stream<Item = Bytes> + Send + 'static>>;

/// A response body.
pub enum ApiBody {
    /// A complete body.
    Full(Bytes),
    /// A streamed body that ends when the stream does.
    Stream(BodyStream),
}

impl std::fmt::Debug for ApiBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiBody::Full(b) => f.debug_tuple("Full").field(&b.len()).finish(),
            ApiBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// An HTTP response the adapters turn into their framework's type.
#[derive(Debug)]
pub struct ApiResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers (`Set-Cookie` may repeat).
    pub headers: HeaderMap,
    /// The body.
    pub body: ApiBody,
}

pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");

impl ApiResponse {
    /// A JSON response.
    pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, JSON);
                Self {
                    status,
                    headers,
                    body: ApiBody::Full(Bytes::from(body)),
                }
            }
            Err(e) => Self::from_error(&Error::Internal(format!("serialising response: {e}"))),
        }
    }

    /// The JSON error body `{ "error", "error_description" }` with the error's status and,
    /// where it has one, `Retry-After`.
    pub fn from_error(error: &Error) -> Self {
        if !error.is_client_error() {
            tracing::warn!(error = %error, "request failed");
        }
        let mut response = Self::json(
            error.status(),
            &serde_json::json!({
                "error": error.code(),
                "error_description": error.public_description(),
            }),
        );
        if let Some(secs) = error.retry_after() {
            response
                .headers
                .insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = bearer_challenge(error) {
            response.headers.insert(WWW_AUTHENTICATE, challenge);
        }
        response
    }

    /// Adds a header; values that are not valid header text are dropped.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.append(name, v);
        }
        self
    }

    /// Sets `Cache-Control`.
    pub(crate) fn cache(mut self, value: &'static str) -> Self {
        self.headers
            .insert(CACHE_CONTROL, HeaderValue::from_static(value));
        self
    }

    /// The body bytes of a full response (tests and benchmarks).
    pub fn body_bytes(&self) -> Option<&Bytes> {
        match &self.body {
            ApiBody::Full(b) => Some(b),
            ApiBody::Stream(_) => None,
        }
    }
}

/// The RFC 6750 challenge of a bearer-token refusal: every `invalid_token` answer carries it,
/// whichever route gave it.
fn bearer_challenge(error: &Error) -> Option<HeaderValue> {
    match error {
        Error::InvalidToken(TokenError::Missing) => {
            Some(HeaderValue::from_static(r#"Bearer realm="qrauth""#))
        }
        Error::InvalidToken(_) => Some(HeaderValue::from_static(
            r#"Bearer realm="qrauth", error="invalid_token", error_description="the access token is missing, invalid or expired""#,
        )),
        _ => None,
    }
}
