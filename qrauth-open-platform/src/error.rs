//! The provider's own error type and its mapping to qrauth's HTTP errors.

use qrauth_core::Error as CoreError;

/// Everything that can go wrong talking to the open platform.
///
/// The platform's `message` is kept (for logs) in the variants that carry one; it is never shown
/// to browsers: converting into [`qrauth_core::Error`] replaces it with a fixed text.
///
/// ```
/// use qrauth_open_platform::OpenPlatformError;
///
/// let err = OpenPlatformError::AppNotAdded { message: "user not add app".into() };
/// let http: qrauth_core::Error = err.into();
/// assert_eq!(http.status(), 403);
/// assert!(!http.public_description().contains("user not add app"));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenPlatformError {
    /// Status `4102`: the code (or a credential sent with the call) is invalid, expired or used.
    #[error("open platform: invalid code or credential (4102): {message}")]
    InvalidCode {
        /// The platform's `message`.
        message: String,
    },
    /// Status `4103`: the app has no permission for this call or this user.
    #[error("open platform: no permission (4103): {message}")]
    NoPermission {
        /// The platform's `message`.
        message: String,
    },
    /// Status `4104`: the user has not added the app in the platform.
    #[error("open platform: the user has not added the app (4104): {message}")]
    AppNotAdded {
        /// The platform's `message`.
        message: String,
    },
    /// The server's own credential (access_token or js_ticket) was refused with `4102` even
    /// after fetching a fresh one.
    #[error("open platform refused the server credential (4102) after a refresh: {message}")]
    CredentialRejected {
        /// The platform's `message`.
        message: String,
    },
    /// Any other non-success status (`4000` and unknown ones).
    #[error("open platform answered status {status}: {message}")]
    Api {
        /// The `status` field, as a number.
        status: u32,
        /// The platform's `message`.
        message: String,
    },
    /// Success (`2000`/`2011`) but without the data this call needs.
    #[error("open platform answered {endpoint} without data")]
    MissingData {
        /// The endpoint's path.
        endpoint: String,
    },
    /// The reply is not the `{status, message, data}` JSON this call expects.
    #[error("open platform answered {endpoint} with a malformed reply: {detail}")]
    Malformed {
        /// The endpoint's path.
        endpoint: String,
        /// What was wrong (never the body itself).
        detail: String,
    },
    /// The platform answered with a non-2xx HTTP status.
    #[error("open platform answered {endpoint} with HTTP {status}")]
    Http {
        /// The endpoint's path.
        endpoint: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The platform did not answer within the configured timeout.
    #[error("open platform did not answer {endpoint} in time")]
    Timeout {
        /// The endpoint's path.
        endpoint: String,
    },
    /// The request could not be sent or the reply not read (connection refused, TLS, …).
    #[error("open platform unreachable at {endpoint}: {detail}")]
    Transport {
        /// The endpoint's path.
        endpoint: String,
        /// The transport error (it never contains the form body).
        detail: String,
    },
    /// The page URL given for a JS SDK signature is not absolute http(s) or not allowed.
    #[error("page URL not allowed for a JS SDK signature: {0}")]
    PageNotAllowed(String),
    /// Invalid configuration.
    #[error("invalid open platform configuration: {0}")]
    Config(String),
}

/// `Result` with [`OpenPlatformError`].
pub type Result<T, E = OpenPlatformError> = std::result::Result<T, E>;

/// What a browser or a phone may read about a `4103`.
pub const NO_PERMISSION_DESCRIPTION: &str =
    "open_platform_no_permission: the open platform does not allow this app to sign you in";
/// What a browser or a phone may read about a `4104`.
pub const APP_NOT_ADDED_DESCRIPTION: &str =
    "open_platform_app_not_added: add this app in the open platform's app, then try again";

impl OpenPlatformError {
    /// The HTTP-facing error: the upstream `message` is dropped (it stays in this value for
    /// logs).
    ///
    /// - `4102` on a user's code → [`Unauthenticated`](CoreError::Unauthenticated) (401): the
    ///   phone may get a fresh code and retry;
    /// - `4103` / `4104` → [`Forbidden`](CoreError::Forbidden) (403) with the fixed texts
    ///   [`NO_PERMISSION_DESCRIPTION`] / [`APP_NOT_ADDED_DESCRIPTION`], which a confirm page can
    ///   show;
    /// - a timeout → [`UpstreamTimeout`](CoreError::UpstreamTimeout) (504);
    /// - every other upstream failure → [`Upstream`](CoreError::Upstream) (502);
    /// - [`PageNotAllowed`](Self::PageNotAllowed) → `InvalidRequest` (400); configuration
    ///   errors → `Config` (500).
    pub fn to_core(&self) -> CoreError {
        match self {
            Self::InvalidCode { .. } => CoreError::Unauthenticated,
            Self::NoPermission { .. } => CoreError::Forbidden(NO_PERMISSION_DESCRIPTION.into()),
            Self::AppNotAdded { .. } => CoreError::Forbidden(APP_NOT_ADDED_DESCRIPTION.into()),
            Self::Timeout { .. } => CoreError::UpstreamTimeout,
            Self::PageNotAllowed(_) => {
                CoreError::InvalidRequest("page URL not allowed for a JS SDK signature".into())
            }
            Self::Config(detail) => CoreError::Config(detail.clone()),
            other => CoreError::Upstream(other.to_string()),
        }
    }

    /// The numeric `status` the platform answered, when this error comes from one.
    pub fn upstream_status(&self) -> Option<u32> {
        match self {
            Self::InvalidCode { .. } | Self::CredentialRejected { .. } => Some(4102),
            Self::NoPermission { .. } => Some(4103),
            Self::AppNotAdded { .. } => Some(4104),
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<OpenPlatformError> for CoreError {
    fn from(err: OpenPlatformError) -> Self {
        err.to_core()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_mapping_hides_upstream_messages() {
        let secretish = "upstream says something private";
        let cases = [
            (
                OpenPlatformError::InvalidCode {
                    message: secretish.into(),
                },
                401,
            ),
            (
                OpenPlatformError::NoPermission {
                    message: secretish.into(),
                },
                403,
            ),
            (
                OpenPlatformError::AppNotAdded {
                    message: secretish.into(),
                },
                403,
            ),
            (
                OpenPlatformError::CredentialRejected {
                    message: secretish.into(),
                },
                502,
            ),
            (
                OpenPlatformError::Api {
                    status: 4000,
                    message: secretish.into(),
                },
                502,
            ),
            (
                OpenPlatformError::Timeout {
                    endpoint: "/OAuth2/token".into(),
                },
                504,
            ),
        ];
        for (err, status) in cases {
            let core = err.to_core();
            assert_eq!(core.status().as_u16(), status, "{err}");
            assert!(!core.public_description().contains(secretish), "{err}");
        }
    }

    #[test]
    fn distinct_forbidden_texts() {
        let a = OpenPlatformError::NoPermission {
            message: "x".into(),
        }
        .to_core();
        let b = OpenPlatformError::AppNotAdded {
            message: "x".into(),
        }
        .to_core();
        assert_ne!(a.public_description(), b.public_description());
        assert!(
            b.public_description()
                .contains("open_platform_app_not_added")
        );
    }
}
