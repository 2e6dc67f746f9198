//! The application's own error responses: what a renderer set with
//! [`QrAuthServiceBuilder::render_errors`](super::QrAuthServiceBuilder::render_errors) is told
//! ([`ErrorContext`]), and what qrauth keeps on whatever it answers.

use std::sync::Arc;

use http::header::{
    ACCEPT, ALLOW, AsHeaderName, CACHE_CONTROL, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderMap, Method, StatusCode};

use super::{ApiResponse, QrAuthService, Route};
use crate::error::Error;

/// The renderer set with [`render_errors`](super::QrAuthServiceBuilder::render_errors).
pub(crate) type ErrorRenderer = Arc<dyn Fn(&ErrorContext<'_>) -> Option<ApiResponse> + Send + Sync>;

/// What qrauth refused.
///
/// ```
/// use qrauth_core::{Refused, Route};
///
/// fn is_qr_login_api(refused: Refused) -> bool {
///     matches!(refused, Refused::Route(_))
/// }
/// assert!(is_qr_login_api(Refused::Route(Route::Status)));
/// assert!(!is_qr_login_api(Refused::Authentication));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refused {
    /// The request had no valid id_token: the adapters' `AuthenticatedUser` extractor, axum's
    /// `RequireAuthenticationLayer` or actix-web's `require_authentication` refused it
    /// (through [`QrAuthService::unauthorized_for`]).
    Authentication,
    /// One of qrauth's own routes answered with an error.
    Route(Route),
}

/// An error qrauth is about to answer, as the application's renderer sees it: the error, what
/// was refused, what is known of the request (method and headers) and the response qrauth would
/// send.
///
/// ```
/// use http::{HeaderMap, HeaderValue, Method, header::ACCEPT};
/// use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, TokenError};
///
/// let mut headers = HeaderMap::new();
/// headers.insert(ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,*/*;q=0.8"));
/// headers.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
/// let error = Error::InvalidToken(TokenError::Missing);
/// let default = ApiResponse::from_error(&error);
/// let context = ErrorContext::new(&error, Refused::Authentication, Some(&Method::GET), &headers, &default);
/// assert!(context.wants_html());
/// assert_eq!(context.status(), 401);
/// assert_eq!(context.error().code(), "invalid_token");
/// ```
pub struct ErrorContext<'a> {
    error: &'a Error,
    refused: Refused,
    method: Option<&'a Method>,
    headers: &'a HeaderMap,
    default: &'a ApiResponse,
}

impl std::fmt::Debug for ErrorContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErrorContext")
            .field("error", &self.error.code())
            .field("refused", &self.refused)
            .field("method", &self.method)
            .field("headers", &super::RedactedHeaders(self.headers))
            .field("default", self.default)
            .finish()
    }
}

impl<'a> ErrorContext<'a> {
    /// A context (qrauth builds them; public so that applications can unit-test their
    /// renderer).
    ///
    /// ```
    /// use http::{HeaderMap, Method};
    /// use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, Route};
    ///
    /// let default = ApiResponse::from_error(&Error::NotBound);
    /// let headers = HeaderMap::new();
    /// let context = ErrorContext::new(
    ///     &Error::NotBound,
    ///     Refused::Route(Route::Status),
    ///     Some(&Method::GET),
    ///     &headers,
    ///     &default,
    /// );
    /// assert_eq!(context.refused(), Refused::Route(Route::Status));
    /// ```
    pub fn new(
        error: &'a Error,
        refused: Refused,
        method: Option<&'a Method>,
        headers: &'a HeaderMap,
        default: &'a ApiResponse,
    ) -> Self {
        Self {
            error,
            refused,
            method,
            headers,
            default,
        }
    }

    /// The error; [`Error::code`] is the `error` field of qrauth's JSON body.
    ///
    /// ```
    /// # use http::HeaderMap;
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, Route};
    /// # let default = ApiResponse::from_error(&Error::NotBound);
    /// # let headers = HeaderMap::new();
    /// # let context = ErrorContext::new(&Error::NotBound, Refused::Route(Route::Status), None, &headers, &default);
    /// assert!(matches!(context.error(), Error::NotBound));
    /// ```
    pub fn error(&self) -> &'a Error {
        self.error
    }

    /// What was refused: authentication, or one of qrauth's routes.
    ///
    /// ```
    /// # use http::HeaderMap;
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, TokenError};
    /// # let error = Error::InvalidToken(TokenError::Missing);
    /// # let default = ApiResponse::from_error(&error);
    /// # let headers = HeaderMap::new();
    /// # let context = ErrorContext::new(&error, Refused::Authentication, None, &headers, &default);
    /// assert_eq!(context.refused(), Refused::Authentication);
    /// ```
    pub fn refused(&self) -> Refused {
        self.refused
    }

    /// The request's method, where the adapter knew it (not for
    /// [`QrAuthService::unauthorized`] or [`QrAuthService::error_response`]).
    ///
    /// ```
    /// # use http::{HeaderMap, Method};
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, Route};
    /// # let default = ApiResponse::from_error(&Error::NotBound);
    /// # let headers = HeaderMap::new();
    /// # let context = ErrorContext::new(&Error::NotBound, Refused::Route(Route::Status), Some(&Method::GET), &headers, &default);
    /// assert_eq!(context.method(), Some(&Method::GET));
    /// ```
    pub fn method(&self) -> Option<&'a Method> {
        self.method
    }

    /// The request's headers (empty where the adapter did not pass them: see
    /// [`method`](Self::method)).
    ///
    /// ```
    /// # use http::HeaderMap;
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, Route};
    /// # let default = ApiResponse::from_error(&Error::NotBound);
    /// # let headers = HeaderMap::new();
    /// # let context = ErrorContext::new(&Error::NotBound, Refused::Route(Route::Status), None, &headers, &default);
    /// assert!(context.headers().is_empty());
    /// ```
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// One request header as text (`None` when absent or not visible ASCII).
    ///
    /// ```
    /// # use http::{HeaderMap, HeaderValue};
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, Route};
    /// # let default = ApiResponse::from_error(&Error::NotBound);
    /// let mut headers = HeaderMap::new();
    /// headers.insert("x-requested-with", HeaderValue::from_static("XMLHttpRequest"));
    /// # let context = ErrorContext::new(&Error::NotBound, Refused::Route(Route::Status), None, &headers, &default);
    /// assert_eq!(context.header("x-requested-with"), Some("XMLHttpRequest"));
    /// ```
    pub fn header(&self, name: impl AsHeaderName) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The response qrauth would send: its JSON error body, status and headers
    /// (`WWW-Authenticate`, `Retry-After`, `Allow`), for renderers that keep some of it.
    ///
    /// ```
    /// # use http::HeaderMap;
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, TokenError};
    /// # let error = Error::InvalidToken(TokenError::Missing);
    /// # let default = ApiResponse::from_error(&error);
    /// # let headers = HeaderMap::new();
    /// # let context = ErrorContext::new(&error, Refused::Authentication, None, &headers, &default);
    /// assert!(context.default_response().headers.contains_key("www-authenticate"));
    /// ```
    pub fn default_response(&self) -> &'a ApiResponse {
        self.default
    }

    /// The status qrauth would answer with.
    ///
    /// ```
    /// # use http::HeaderMap;
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, Route};
    /// # let default = ApiResponse::from_error(&Error::NotBound);
    /// # let headers = HeaderMap::new();
    /// # let context = ErrorContext::new(&Error::NotBound, Refused::Route(Route::Status), None, &headers, &default);
    /// assert_eq!(context.status(), 403);
    /// ```
    pub fn status(&self) -> StatusCode {
        self.default.status
    }

    /// Whether the request is a browser navigation that wants a page: `Accept` names
    /// `text/html` (not merely `*/*`), and `Sec-Fetch-Mode` is `navigate` or absent (older
    /// browsers). A `fetch()` from a page (`Sec-Fetch-Mode: cors`) or an API client asking for
    /// JSON is not.
    ///
    /// ```
    /// # use http::{HeaderMap, HeaderValue, header::ACCEPT};
    /// # use qrauth_core::{ApiResponse, Error, ErrorContext, Refused, TokenError};
    /// # let error = Error::InvalidToken(TokenError::Missing);
    /// # let default = ApiResponse::from_error(&error);
    /// let mut headers = HeaderMap::new();
    /// headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    /// # let context = ErrorContext::new(&error, Refused::Authentication, None, &headers, &default);
    /// assert!(!context.wants_html());
    /// ```
    pub fn wants_html(&self) -> bool {
        let navigation = self
            .headers
            .get("sec-fetch-mode")
            .is_none_or(|mode| mode.as_bytes().eq_ignore_ascii_case(b"navigate"));
        navigation && accepts(self.headers, "text/html")
    }
}

/// Whether an `Accept` header of `headers` lists `media_type` itself with a non-zero quality.
fn accepts(headers: &HeaderMap, media_type: &str) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut params = range.split(';').map(str::trim);
            let listed = params
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case(media_type));
            let refused = params.any(|p| {
                p.split_once('=').is_some_and(|(k, q)| {
                    k.trim().eq_ignore_ascii_case("q") && q.trim().parse::<f32>() == Ok(0.0)
                })
            });
            listed && !refused
        })
}

/// Headers of qrauth's default error response that the protocol requires of the refusal,
/// copied onto the application's response when it lacks them (unless it redirects).
const PROTOCOL_HEADERS: [http::header::HeaderName; 3] = [WWW_AUTHENTICATE, ALLOW, RETRY_AFTER];

impl QrAuthService {
    /// `default`, or the application's rendering of it, with what qrauth guarantees either
    /// way: the protocol's headers of the refusal (`WWW-Authenticate`, `Allow`, `Retry-After`)
    /// unless the application redirects (3xx), and `Cache-Control: no-store`.
    pub(crate) fn render_error(
        &self,
        error: &Error,
        refused: Refused,
        method: Option<&Method>,
        headers: &HeaderMap,
        default: ApiResponse,
    ) -> ApiResponse {
        let Some(render) = &self.inner.render_errors else {
            return default;
        };
        let context = ErrorContext::new(error, refused, method, headers, &default);
        let Some(mut response) = render(&context) else {
            return default;
        };
        if !response.status.is_redirection() {
            for name in PROTOCOL_HEADERS {
                if !response.headers.contains_key(&name) {
                    for value in default.headers.get_all(&name) {
                        response.headers.append(name.clone(), value.clone());
                    }
                }
            }
        }
        response
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TokenError;
    use crate::{BuiltinProvider, PhoneAuthenticator, PhoneUser, SigningAlgorithm};

    struct Nobody;
    #[async_trait::async_trait]
    impl PhoneAuthenticator for Nobody {
        async fn authenticate(&self, _: &str) -> crate::Result<PhoneUser> {
            Err(Error::Unauthenticated)
        }
    }

    fn service(
        render: impl Fn(&ErrorContext<'_>) -> Option<ApiResponse> + Send + Sync + 'static,
    ) -> QrAuthService {
        let provider = BuiltinProvider::builder(Arc::new(Nobody))
            .algorithm(SigningAlgorithm::Es256)
            .build()
            .expect("provider");
        QrAuthService::builder(Arc::new(provider))
            .render_errors(render)
            .build()
            .expect("service")
    }

    const BAD_TOKEN: Error = Error::InvalidToken(TokenError::Malformed);

    #[test]
    fn the_challenge_is_kept_unless_the_application_redirects() {
        let json = service(|e| Some(ApiResponse::json(e.status(), &"sign in first")));
        let refusal = json.unauthorized_for(&Method::GET, &HeaderMap::new(), &BAD_TOKEN);
        assert_eq!(refusal.status, 401);
        assert_eq!(
            refusal.body_bytes().map(|b| b.as_ref()),
            Some(&b"\"sign in first\""[..])
        );
        let challenge = refusal.headers[WWW_AUTHENTICATE]
            .to_str()
            .unwrap_or_default();
        assert!(
            challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
        assert_eq!(refusal.headers[CACHE_CONTROL], "no-store");

        let own = service(|e| {
            Some(
                ApiResponse::json(e.status(), &"x")
                    .with_header(WWW_AUTHENTICATE, r#"Bearer realm="my-app""#)
                    .with_header(CACHE_CONTROL, "public, max-age=60"),
            )
        });
        let refusal = own.unauthorized(&BAD_TOKEN);
        let challenges: Vec<_> = refusal.headers.get_all(WWW_AUTHENTICATE).iter().collect();
        assert_eq!(
            challenges,
            [r#"Bearer realm="my-app""#],
            "the application's challenge wins"
        );
        assert_eq!(refusal.headers[CACHE_CONTROL], "no-store", "never cached");

        let redirect = service(|_| Some(ApiResponse::redirect("/login")));
        let refusal = redirect.unauthorized(&BAD_TOKEN);
        assert_eq!(refusal.status, StatusCode::SEE_OTHER);
        assert!(!refusal.headers.contains_key(WWW_AUTHENTICATE));
        assert_eq!(refusal.headers[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn none_keeps_the_default_and_route_errors_keep_their_headers() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        let service = service(move |e| {
            if let Ok(mut log) = log.lock() {
                log.push((e.refused(), e.method().cloned(), e.error().code()));
            }
            match e.refused() {
                Refused::Authentication => None,
                _ => Some(ApiResponse::html(e.status(), "<p>sorry</p>")),
            }
        });
        let default = service.unauthorized_for(&Method::POST, &HeaderMap::new(), &BAD_TOKEN);
        assert_eq!(
            default.body_bytes(),
            ApiResponse::from_error(&BAD_TOKEN).body_bytes(),
            "None keeps qrauth's body"
        );
        assert!(default.headers.contains_key(WWW_AUTHENTICATE));

        let slow = service.error_response(
            Route::Status,
            &Error::SlowDown {
                retry_after: std::time::Duration::from_secs(3),
            },
        );
        assert_eq!(slow.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            slow.headers[http::header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(slow.headers[RETRY_AFTER], "3");
        let too_large = service.error_response(Route::Exchange, &Error::PayloadTooLarge);
        assert_eq!(too_large.headers[http::header::CONNECTION], "close");

        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            [
                (Refused::Authentication, Some(Method::POST), "invalid_token"),
                (Refused::Route(Route::Status), None, "slow_down"),
                (Refused::Route(Route::Exchange), None, "payload_too_large"),
            ]
        );
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn wants_html(pairs: &[(&'static str, &'static str)]) -> bool {
        let error = Error::InvalidToken(TokenError::Missing);
        let default = ApiResponse::from_error(&error);
        let h = headers(pairs);
        ErrorContext::new(&error, Refused::Authentication, None, &h, &default).wants_html()
    }

    #[test]
    fn a_browser_navigation_wants_html_and_api_calls_do_not() {
        let chrome = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
        assert!(wants_html(&[
            ("accept", chrome),
            ("sec-fetch-mode", "navigate")
        ]));
        assert!(wants_html(&[("accept", "TEXT/HTML")]), "older browsers");
        assert!(!wants_html(&[
            ("accept", chrome),
            ("sec-fetch-mode", "cors")
        ]));
        assert!(!wants_html(&[("accept", "application/json")]));
        assert!(!wants_html(&[("accept", "*/*")]));
        assert!(!wants_html(&[(
            "accept",
            "text/html;q=0, application/json"
        )]));
        assert!(!wants_html(&[]));
    }
}
