//! What the adapters' `AuthenticatedUser` extractors call: the caller's id_token, from
//! `Authorization: Bearer` or else the session cookie, verified by the provider (or by the
//! other issuers the application accepts), and the RFC 6750 refusal.

use http::HeaderMap;
use http::HeaderValue;
use http::header::CACHE_CONTROL;

use super::request::bearer_token;
use super::{ApiResponse, QrAuthService, cookies};
use crate::error::{Error, Result, TokenError};
use crate::types::Claims;

impl QrAuthService {
    /// Verifies the caller's id_token, from `Authorization: Bearer` or else the session
    /// cookie. A token of an issuer accepted with
    /// [`accept_id_tokens_from`](crate::QrAuthServiceBuilder::accept_id_tokens_from) verifies
    /// there.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Claims> {
        let token = bearer_token(headers)
            .or_else(|| cookies::read_cookie(headers, &self.inner.cookies.session_name()))
            .filter(|t| !t.is_empty())
            .ok_or(Error::InvalidToken(TokenError::Missing))?;
        match self.inner.provider.verify(token).await {
            Err(Error::InvalidToken(TokenError::WrongIssuer)) => match &self.inner.other_verifier {
                Some(other) => other.verify(token).await,
                None => Err(Error::InvalidToken(TokenError::WrongIssuer)),
            },
            verified => verified,
        }
    }

    /// The 401 (or, when the verifier itself failed, 5xx) response for a failed
    /// [`authenticate`](Self::authenticate), with `WWW-Authenticate` per RFC 6750.
    pub fn unauthorized(&self, error: &Error) -> ApiResponse {
        let mut response = ApiResponse::from_error(error);
        response
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
