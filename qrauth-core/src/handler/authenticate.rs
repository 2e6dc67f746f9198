//! What the adapters' `AuthenticatedUser` extractors call: the caller's id_token, from
//! `Authorization: Bearer` or else the session cookie, verified by the provider (or by the
//! other issuers the application accepts), and the RFC 6750 refusal.

use std::sync::Arc;

use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderValue, Method};

use super::request::bearer_token;
use super::{ApiResponse, QrAuthService, Refused, cookies};
use crate::error::{Error, Result, TokenError};
use crate::types::Claims;

impl QrAuthService {
    /// Verifies the caller's id_token, from `Authorization: Bearer` or else the session
    /// cookie, and, for the provider's tokens, that its signed-in session is alive (signed
    /// out, revoked or expired: `invalid_token`; a store that cannot tell: `store_unavailable`,
    /// never a pass). A token of an issuer accepted with
    /// [`accept_id_tokens_from`](crate::QrAuthServiceBuilder::accept_id_tokens_from) verifies
    /// there.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Claims>> {
        let token = self
            .presented_token(headers)
            .ok_or(Error::InvalidToken(TokenError::Missing))?;
        let verified = match self.inner.provider.verify(token).await {
            // The provider's tokens stand for signed-in sessions: a signed-out one is refused.
            Ok(claims) => self
                .require_signed_in(token, &claims)
                .await
                .map(|()| claims),
            Err(Error::InvalidToken(TokenError::WrongIssuer)) => match &self.inner.other_verifier {
                Some(other) => other.verify(token).await,
                None => Err(Error::InvalidToken(TokenError::WrongIssuer)),
            },
            Err(e) => Err(e),
        };
        verified.inspect_err(|e| self.metrics().verification_failed(e))
    }

    /// The caller's token: `Authorization: Bearer`, or else the session cookie.
    pub(super) fn presented_token<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        bearer_token(headers)
            .or_else(|| cookies::read_cookie(headers, &self.inner.cookies.session_name()))
            .filter(|t| !t.is_empty())
    }

    /// The 401 (or, when the verifier itself failed, 5xx) response for a failed
    /// [`authenticate`](Self::authenticate), with `WWW-Authenticate` per RFC 6750, for a
    /// request whose method and headers are not at hand: an application
    /// [renderer](crate::QrAuthServiceBuilder::render_errors) sees no method and no headers.
    /// The adapters call [`unauthorized_for`](Self::unauthorized_for).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use qrauth_core::{BuiltinProvider, QrAuthService, SigningAlgorithm};
    /// # use qrauth_core::{PhoneAuthenticator, PhoneUser};
    /// # struct Nobody;
    /// # #[async_trait::async_trait]
    /// # impl PhoneAuthenticator for Nobody {
    /// #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> {
    /// #         Err(qrauth_core::Error::Unauthenticated)
    /// #     }
    /// # }
    /// # let provider = BuiltinProvider::builder(Arc::new(Nobody)).algorithm(SigningAlgorithm::Es256).build()?;
    /// # let service = QrAuthService::builder(Arc::new(provider)).build()?;
    /// let refused = service.authenticate(&http::HeaderMap::new()).await.unwrap_err();
    /// let response = service.unauthorized(&refused);
    /// assert_eq!(response.status, 401);
    /// assert_eq!(response.headers["www-authenticate"], r#"Bearer realm="qrauth""#);
    /// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
    /// ```
    pub fn unauthorized(&self, error: &Error) -> ApiResponse {
        self.refusal(error, None, &HeaderMap::new())
    }

    /// The refusal of a request whose [`authenticate`](Self::authenticate) failed: qrauth's
    /// 401 (or 5xx when the verifier itself failed) with `WWW-Authenticate` per RFC 6750 and
    /// `Cache-Control: no-store`, or what the application's
    /// [renderer](crate::QrAuthServiceBuilder::render_errors) makes of it for this request
    /// (a login redirect for a browser, its own JSON for an API). What the adapters'
    /// `AuthenticatedUser` answers.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use qrauth_core::{BuiltinProvider, QrAuthService, SigningAlgorithm};
    /// # use qrauth_core::{PhoneAuthenticator, PhoneUser};
    /// # struct Nobody;
    /// # #[async_trait::async_trait]
    /// # impl PhoneAuthenticator for Nobody {
    /// #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> {
    /// #         Err(qrauth_core::Error::Unauthenticated)
    /// #     }
    /// # }
    /// # let provider = BuiltinProvider::builder(Arc::new(Nobody)).algorithm(SigningAlgorithm::Es256).build()?;
    /// use http::{HeaderMap, HeaderValue, Method, header::ACCEPT};
    /// use qrauth_core::ApiResponse;
    ///
    /// let service = QrAuthService::builder(Arc::new(provider))
    ///     .render_errors(|e| e.wants_html().then(|| ApiResponse::redirect("/login")))
    ///     .build()?;
    /// let mut headers = HeaderMap::new();
    /// headers.insert(ACCEPT, HeaderValue::from_static("text/html"));
    /// let refused = service.authenticate(&headers).await.unwrap_err();
    /// let response = service.unauthorized_for(&Method::GET, &headers, &refused);
    /// assert_eq!(response.status, 303);
    /// assert_eq!(response.headers["location"], "/login");
    /// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
    /// ```
    pub fn unauthorized_for(
        &self,
        method: &Method,
        headers: &HeaderMap,
        error: &Error,
    ) -> ApiResponse {
        self.refusal(error, Some(method), headers)
    }

    fn refusal(&self, error: &Error, method: Option<&Method>, headers: &HeaderMap) -> ApiResponse {
        let mut response = ApiResponse::from_error(error);
        response
            .headers
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        self.render_error(error, Refused::Authentication, method, headers, response)
    }
}
