//! What can go wrong talking to the OpenID Provider, kept apart from what the browser is told.

use qrauth_core::Error;

/// A failure at the OpenID Provider. The IdP's own words (`error`, `error_description`) are kept
/// for the log; converted into [`qrauth_core::Error`] for HTTP, a browser only ever sees
/// `upstream_unavailable` (502, or 504 for a timeout).
///
/// ```
/// use qrauth_oidc::OidcError;
/// let e = OidcError::Refused { call: "token", error: "invalid_client".into(), description: None };
/// assert_eq!(qrauth_core::Error::from(e).status().as_u16(), 502);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The IdP did not answer within the timeout.
    #[error("{call}: the IdP did not answer in time")]
    Timeout {
        /// Which call (`discovery`, `device_authorization`, `token`).
        call: &'static str,
    },
    /// The IdP could not be reached, or cut the connection.
    #[error("{call}: the IdP is unreachable: {reason}")]
    Unreachable {
        /// Which call.
        call: &'static str,
        /// The transport error (without URL).
        reason: String,
    },
    /// The answer was larger than the configured bound.
    #[error("{call}: the IdP's answer exceeds {limit} bytes")]
    TooLarge {
        /// Which call.
        call: &'static str,
        /// The bound, bytes.
        limit: usize,
    },
    /// The answer is not what the specification says (not JSON, a field missing or wrong).
    #[error("{call}: malformed answer (HTTP {status}): {what}")]
    Malformed {
        /// Which call.
        call: &'static str,
        /// The HTTP status.
        status: u16,
        /// What is wrong.
        what: String,
    },
    /// The IdP refused with an OAuth error (RFC 6749 §5.2) that the flow cannot go on from.
    #[error("{call}: the IdP refused: {error}{}", description.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// Which call.
        call: &'static str,
        /// The OAuth `error` code.
        error: String,
        /// The IdP's `error_description`, shortened.
        description: Option<String>,
    },
    /// The discovery document names another issuer than the configured one.
    #[error("discovery: the document's issuer `{found}` is not the configured `{expected}`")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// The IdP's id_token does not verify.
    #[error("the IdP's id_token does not verify: {0}")]
    InvalidIdToken(String),
}

impl From<OidcError> for Error {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Timeout { .. } => Error::UpstreamTimeout,
            other => Error::Upstream(other.to_string()),
        }
    }
}

/// At most `max` characters of an IdP-chosen text, control characters removed: for logs.
pub(crate) fn shortened(text: &str, max: usize) -> String {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    match clean.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &clean[..end]),
        None => clean,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_504_and_the_rest_502() {
        let timeout: Error = OidcError::Timeout { call: "token" }.into();
        assert_eq!(timeout.status().as_u16(), 504);
        let mismatch: Error = OidcError::IssuerMismatch {
            expected: "a".into(),
            found: "b".into(),
        }
        .into();
        assert_eq!(mismatch.status().as_u16(), 502);
    }

    #[test]
    fn shortened_cuts_and_cleans() {
        assert_eq!(shortened("a\nb\u{7}c", 10), "abc");
        assert_eq!(shortened("abcdef", 3), "abc…");
    }
}
