//! Framework-free HTTP requests and responses.

use std::net::IpAddr;
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, StatusCode};
use serde::Serialize;

use crate::error::{Error, TokenError};

/// An HTTP request as the adapters hand it to the core handlers.
///
/// `Debug` prints no secret: header values only for headers that never carry one (see
/// [`RedactedHeaders`]), the query's parameter names without their values, and the body's
/// length.
///
/// ```
/// let mut request = qrauth_core::ApiRequest::new(http::Method::POST);
/// request.headers.insert("cookie", "__Host-qrauth_bind=s3cr3t".parse().unwrap());
/// request.query = Some("code=upstream-code".into());
/// request.body = r#"{"ticket":"t1ck3t"}"#.into();
/// let shown = format!("{request:?}");
/// assert!(!shown.contains("s3cr3t") && !shown.contains("upstream-code") && !shown.contains("t1ck3t"));
/// ```
#[derive(Clone)]
pub struct ApiRequest {
    /// The method.
    pub method: Method,
    /// The path the client asked for, as it reached the server (before any router stripped a
    /// prefix): where qrauth is mounted is derived from it, for the refresh cookie's `Path`.
    /// Empty when unknown (then qrauth assumes it is mounted at the root).
    pub path: String,
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
            path: String::new(),
            headers: HeaderMap::new(),
            query: None,
            body: Bytes::new(),
            peer: None,
        }
    }
}

impl std::fmt::Debug for ApiRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query_keys: Option<Vec<String>> = self.query.as_deref().map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect()
        });
        f.debug_struct("ApiRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("query_keys", &query_keys)
            .field("body_len", &self.body.len())
            .field("peer", &self.peer)
            .finish()
    }
}

/// `Debug` of a header map that shows every header's name, but the value only of headers
/// that never carry a credential; `Cookie`, `Set-Cookie`, `Authorization`, `Location` and
/// every header not on the list print `<redacted>`.
///
/// ```
/// let mut headers = http::HeaderMap::new();
/// headers.insert("authorization", "Bearer t0k3n".parse().unwrap());
/// headers.insert("content-type", "application/json".parse().unwrap());
/// let shown = format!("{:?}", qrauth_core::handler::RedactedHeaders(&headers));
/// assert!(!shown.contains("t0k3n") && shown.contains("application/json"));
/// ```
pub struct RedactedHeaders<'a>(pub &'a HeaderMap);

/// Headers whose values are shown: none of them ever carries a secret.
const SHOWN_HEADERS: [&str; 14] = [
    "accept",
    "cache-control",
    "connection",
    "content-length",
    "content-type",
    "host",
    "origin",
    "referrer-policy",
    "retry-after",
    "sec-fetch-site",
    "user-agent",
    "x-content-type-options",
    "x-forwarded-for",
    "allow",
];

impl std::fmt::Debug for RedactedHeaders<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in self.0 {
            if SHOWN_HEADERS.contains(&name.as_str()) {
                map.entry(&name.as_str(), &value.to_str().unwrap_or("<binary>"));
            } else {
                map.entry(&name.as_str(), &"<redacted>");
            }
        }
        map.finish()
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
///
/// `Debug` shows the status, the headers as [`RedactedHeaders`] (no `Set-Cookie` value) and
/// the body's length only (a body may hold a ticket, a confirm token or a token set).
pub struct ApiResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers (`Set-Cookie` may repeat).
    pub headers: HeaderMap,
    /// The body.
    pub body: ApiBody,
}

impl std::fmt::Debug for ApiResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiResponse")
            .field("status", &self.status)
            .field("headers", &RedactedHeaders(&self.headers))
            .field("body", &self.body)
            .finish()
    }
}

pub(crate) const JSON: HeaderValue = HeaderValue::from_static("application/json; charset=utf-8");
const HTML: HeaderValue = HeaderValue::from_static("text/html; charset=utf-8");

/// `text` safe inside an HTML attribute or element.
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

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

    /// A response without a body (`204 No Content`, …).
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: ApiBody::Full(Bytes::new()),
        }
    }

    /// An HTML page (`text/html; charset=utf-8`), e.g. an application's own error page.
    ///
    /// ```
    /// use http::StatusCode;
    /// use qrauth_core::ApiResponse;
    ///
    /// let page = ApiResponse::html(StatusCode::UNAUTHORIZED, "<h1>Please sign in</h1>");
    /// assert_eq!(page.status, 401);
    /// assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    /// assert_eq!(page.body_bytes().unwrap().as_ref(), b"<h1>Please sign in</h1>");
    /// ```
    pub fn html(status: StatusCode, body: impl Into<String>) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HTML);
        Self {
            status,
            headers,
            body: ApiBody::Full(Bytes::from(body.into())),
        }
    }

    /// `303 See Other` to `location` (a login page, say), with a short HTML page linking
    /// there for clients that do not follow redirects. A `location` that is not valid header
    /// text gives a 500 instead.
    ///
    /// ```
    /// use qrauth_core::ApiResponse;
    ///
    /// let to_login = ApiResponse::redirect("/login?next=%2Fme");
    /// assert_eq!(to_login.status, 303);
    /// assert_eq!(to_login.headers["location"], "/login?next=%2Fme");
    /// assert_eq!(to_login.headers["content-type"], "text/html; charset=utf-8");
    /// ```
    pub fn redirect(location: &str) -> Self {
        let Ok(value) = HeaderValue::from_str(location) else {
            return Self::from_error(&Error::Internal("redirect to an invalid location".into()));
        };
        let href = html_escape(location);
        let mut response = Self::html(
            StatusCode::SEE_OTHER,
            format!(
                "<!doctype html><meta charset=\"utf-8\"><title>See other</title>\
                 <p><a href=\"{href}\">{href}</a></p>\n"
            ),
        );
        response.headers.insert(LOCATION, value);
        response
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
