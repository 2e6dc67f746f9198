//! The one error type of qrauth-core and its mapping to HTTP.

use std::time::Duration;

use http::StatusCode;

/// Why an id_token (or a phone credential) was refused.
///
/// Kept separate from [`Error`] so that an application can log the precise reason while the
/// client only ever sees `invalid_token`.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented.
    #[error("no token presented")]
    Missing,
    /// The token is larger than the configured maximum.
    #[error("token too large")]
    TooLarge,
    /// The token is not three base64url segments of JSON.
    #[error("malformed token")]
    Malformed,
    /// The header names an algorithm this verifier never accepts (`none`, or one no key allows).
    #[error("algorithm not allowed")]
    AlgorithmNotAllowed,
    /// The header's `kid` matches no key, even after a JWKS refresh.
    #[error("unknown key id")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the expected issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` does not contain the expected audience.
    #[error("wrong audience")]
    WrongAudience,
    /// A required claim is missing or has the wrong type.
    #[error("missing or invalid claim `{0}`")]
    InvalidClaim(&'static str),
    /// The token's signed-in session was signed out, revoked or has ended.
    #[error("session signed out or ended")]
    SessionEnded,
}

/// Everything that can go wrong in qrauth, each variant mapped to the error code and HTTP status
/// of the HTTP contract (see [`Error::code`] and [`Error::status`]).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed: bad JSON, missing or unknown fields, bad query string.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The request body is not `application/json`.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// The request body is larger than the route accepts.
    #[error("request body too large")]
    PayloadTooLarge,
    /// No QR session with this id exists (only reachable by bound callers: unbound callers get
    /// [`Error::NotBound`] whatever the id, so that ids cannot be probed).
    #[error("unknown QR code")]
    UnknownQrCode,
    /// The QR session's lifetime has ended.
    #[error("QR code expired")]
    ExpiredQrCode,
    /// The phone scanned a QR the browser no longer shows: the QR rotates (see
    /// [`Lifetimes::qr_rotation`](crate::Lifetimes::qr_rotation)) and this one was replaced.
    /// Answered like an expired QR (`410 expired_qrcode`): scan the one on screen.
    #[error("this QR code was replaced by a newer one")]
    StaleQrCode,
    /// The caller does not hold the browser-binding secret of this QR session.
    #[error("this browser is not bound to the QR code")]
    NotBound,
    /// The ticket is unknown, expired or already used.
    #[error("invalid ticket")]
    InvalidTicket,
    /// The transition is not allowed from the session's current state (e.g. a second scan).
    #[error("{0}")]
    Conflict(String),
    /// The caller is authenticated but not allowed to do this (another phone user, foreign origin).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The phone credential is missing or invalid.
    #[error("phone credential missing or invalid")]
    Unauthenticated,
    /// The id_token (or bearer token) was refused.
    #[error("invalid token: {0}")]
    InvalidToken(#[from] TokenError),
    /// The caller is too fast; try again after the given delay.
    #[error("slow down")]
    SlowDown {
        /// How long the caller should wait.
        retry_after: Duration,
    },
    /// The identity provider (or a JWKS endpoint) failed or answered garbage.
    #[error("upstream unavailable: {0}")]
    Upstream(String),
    /// The identity provider (or a JWKS endpoint) did not answer in time.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The session store cannot be reached.
    #[error("session store unavailable: {0}")]
    StoreUnavailable(String),
    /// No signed-in session with this handle belongs to the caller (unknown, malformed, ended
    /// or another user's: the same answer for each).
    #[error("unknown session")]
    UnknownSession,
    /// The refresh credential is missing, unknown, expired or was already used.
    #[error("invalid grant: the refresh credential is missing, unknown, expired or reused")]
    InvalidGrant,
    /// No route matches under the qrauth prefix.
    #[error("not found")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A configuration value is invalid (reported when building, never per request).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A bug or an unexpected local failure.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `Result` with qrauth's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The snake_case error code sent in the JSON body's `error` field.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::PayloadTooLarge => "payload_too_large",
            Error::UnknownQrCode => "unknown_qrcode",
            Error::ExpiredQrCode | Error::StaleQrCode => "expired_qrcode",
            Error::NotBound => "not_bound",
            Error::InvalidTicket => "invalid_ticket",
            Error::Conflict(_) => "conflict",
            Error::Forbidden(_) => "access_denied",
            Error::Unauthenticated => "unauthenticated",
            Error::InvalidToken(_) => "invalid_token",
            Error::SlowDown { .. } => "slow_down",
            Error::Upstream(_) | Error::UpstreamTimeout => "upstream_unavailable",
            Error::StoreUnavailable(_) => "store_unavailable",
            Error::UnknownSession => "unknown_session",
            Error::InvalidGrant => "invalid_grant",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed => "method_not_allowed",
            Error::Config(_) | Error::Internal(_) => "server_error",
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidRequest(_) | Error::InvalidTicket | Error::InvalidGrant => {
                StatusCode::BAD_REQUEST
            }
            Error::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnknownQrCode | Error::UnknownSession | Error::NotFound => StatusCode::NOT_FOUND,
            Error::ExpiredQrCode | Error::StaleQrCode => StatusCode::GONE,
            Error::NotBound | Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unauthenticated | Error::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Error::SlowDown { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Upstream(_) => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Error::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::Config(_) | Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The text sent to clients in `error_description`.
    ///
    /// Server-side failures get a generic text: upstream messages and internal details belong in
    /// logs, never in a browser.
    pub fn public_description(&self) -> String {
        match self {
            Error::Upstream(_) | Error::UpstreamTimeout => {
                "the identity provider is unavailable".to_owned()
            }
            Error::StoreUnavailable(_) => "the session store is unavailable".to_owned(),
            Error::Config(_) | Error::Internal(_) => "internal server error".to_owned(),
            Error::InvalidToken(_) => "the access token is missing, invalid or expired".to_owned(),
            other => other.to_string(),
        }
    }

    /// Seconds for a `Retry-After` header, for errors that carry one.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Error::SlowDown { retry_after } => {
                Some(retry_after.as_secs_f64().ceil().max(1.0) as u64)
            }
            Error::StoreUnavailable(_) => Some(1),
            _ => None,
        }
    }

    /// Whether the failure is another service's (an upstream IdP, the session store) and
    /// trying again later may succeed.
    ///
    /// ```
    /// use qrauth_core::Error;
    /// assert!(Error::UpstreamTimeout.is_transient());
    /// assert!(!Error::InvalidTicket.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Upstream(_) | Error::UpstreamTimeout | Error::StoreUnavailable(_)
        )
    }

    /// Whether the client caused this error (4xx).
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }
}
