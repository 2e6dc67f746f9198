//! Signed-in sessions on the browser's side: created at exchange, renewed with
//! `POST /qrcode/refresh`, ended with `POST /qrcode/logout`, checked behind every
//! `AuthenticatedUser`; and the application's server API (list, revoke, revoke all).

use std::time::Duration;

use http::header::{CONTENT_TYPE, SET_COOKIE, USER_AGENT};
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

use super::request::{body_is_empty, header_str, is_json};
use super::{ApiRequest, ApiResponse, QrAuthService, Route, SignIn, cookies};
use crate::error::{Error, Result, TokenError};
use crate::provider::{ConfirmedLogin, IssuedTokens, RenewingSession};
use crate::record::SessionRecord;
use crate::secret::{SecretHash, SessionId, sha256};
use crate::signed_in::{RefreshCredential, Rotation, SignedInSession};
use crate::types::Claims;

/// Claims that belong to one token, not to the session: not carried over to renewed tokens.
const PER_TOKEN_CLAIMS: [&str; 3] = ["jti", "sid", "at_hash"];

impl QrAuthService {
    /// Where qrauth is mounted: the request path without the route's own path.
    fn mount<'a>(&self, request: &'a ApiRequest, route: Route) -> &'a str {
        route
            .path()
            .and_then(|p| request.path.strip_suffix(p))
            .unwrap_or("")
    }

    /// Refuses cross-site requests: a foreign `Origin`, or `Sec-Fetch-Site: cross-site` /
    /// `same-site` (a sibling subdomain is another site for sign-out purposes).
    fn check_same_origin(&self, headers: &HeaderMap) -> Result<()> {
        if let Some(site) = header_str(headers, "sec-fetch-site")
            && !matches!(site, "same-origin" | "none")
        {
            return Err(Error::Forbidden("cross-site request refused".into()));
        }
        self.check_origin(headers)
    }

    /// Bodies of the session routes: empty, or JSON (a cross-site form cannot send JSON).
    fn check_json_or_empty(request: &ApiRequest) -> Result<()> {
        let untyped = !request.headers.contains_key(CONTENT_TYPE);
        if is_json(&request.headers) || (untyped && body_is_empty(request)) {
            Ok(())
        } else {
            Err(Error::UnsupportedMediaType)
        }
    }

    /// The exchange's second half: the redeemed login becomes a signed-in session, and the
    /// browser gets its tokens and cookies.
    pub(super) async fn sign_in(
        &self,
        request: &ApiRequest,
        record: &SessionRecord,
    ) -> Result<ApiResponse> {
        let flow = &self.inner.flow;
        let lifetimes = flow.lifetimes();
        let sid = SessionId::generate()?;
        let now = flow.clock().now_millis();
        let login = ConfirmedLogin::new(record, &sid, now, lifetimes);
        let issued = self.inner.provider.issue_tokens(login).await?;
        let renews = self.inner.provider.capabilities().renewal.is_some();
        let credential = RefreshCredential::generate(sid.clone())?;
        let expire_at_ms = if renews {
            now.saturating_add(lifetimes.signed_in.as_millis() as u64)
        } else {
            // Nothing can renew the IdP's tokens: the session ends with its first id_token.
            issued.claims.exp.saturating_mul(1000)
        };
        let browser =
            crate::user_agent::describe(header_str(&request.headers, USER_AGENT).unwrap_or(""))
                .to_string();
        let ip = self.client_ip(request);
        let session = SignedInSession {
            id: sid.clone(),
            subject: issued.claims.sub.clone(),
            provider: self.metrics().provider().to_owned(),
            browser: browser.clone(),
            ip,
            created_at_ms: now,
            last_seen_at_ms: now,
            expire_at_ms,
            idle_timeout_ms: lifetimes.idle_timeout.as_millis() as u64,
            auth_time: issued.claims.auth_time.unwrap_or(now / 1000),
            claims: if renews {
                session_claims(&issued.claims)
            } else {
                Map::new()
            },
            refresh_hash: credential.hash(),
            previous_refresh_hash: None,
            rotated_at_ms: now,
        };
        self.inner.signed_in.create(&session).await?;
        self.remember_token(&issued, &sid).await?;
        tracing::info!("QR login completed");
        if let Some(hook) = &self.inner.on_sign_in {
            hook(&SignIn {
                claims: issued.claims,
                session_id: sid,
                browser,
                ip,
            });
        }
        let mount = self.mount(request, Route::Exchange);
        let mut response = self.token_response(&issued.tokens);
        if renews {
            let max_age = lifetimes.signed_in.as_secs();
            for cookie in
                self.inner
                    .cookies
                    .set_refresh(mount, &credential.expose_secret(), max_age)
            {
                response = response.with_header(SET_COOKIE, &cookie);
            }
        }
        Ok(response.with_header(SET_COOKIE, &self.inner.cookies.clear_binding()))
    }

    /// The token set with the session cookie that carries its id_token.
    fn token_response(&self, tokens: &crate::TokenSet) -> ApiResponse {
        let max_age = self
            .inner
            .cookies
            .session_max_age
            .unwrap_or(tokens.expires_in);
        let session = self.inner.cookies.set_session(&tokens.id_token, max_age);
        ApiResponse::json(StatusCode::OK, tokens).with_header(SET_COOKIE, &session)
    }

    /// How every replica will find the session of `issued`'s id_token: a provider that renews
    /// signs it with the `sid`; any other provider's token (an upstream IdP's) is mapped to
    /// the session in the store by its hash.
    async fn remember_token(&self, issued: &IssuedTokens, sid: &SessionId) -> Result<()> {
        if self.inner.provider.capabilities().renewal.is_some() {
            return match issued.claims.session_id() {
                Some(carried) if carried.ct_eq(sid) => Ok(()),
                _ => Err(Error::Internal(
                    "a provider with token renewal issued an id_token without the session's sid"
                        .into(),
                )),
            };
        }
        let hash = SecretHash::from_bytes(sha256(issued.tokens.id_token.as_bytes()));
        let until = issued.claims.exp.saturating_mul(1000);
        self.inner.signed_in.put_alias(&hash, sid, until).await
    }

    /// `POST /qrcode/refresh`.
    pub(super) async fn refresh(&self, request: &ApiRequest) -> Result<ApiResponse> {
        self.check_same_origin(&request.headers)?;
        Self::check_json_or_empty(request)?;
        self.limit_client(
            "refresh",
            request,
            self.inner.limits.refresh_per_minute,
            Duration::from_secs(60),
        )
        .await?;
        let mount = self.mount(request, Route::Refresh);
        let refused = || self.grant_refused(mount);
        let Some(renewal) = self.inner.provider.capabilities().renewal else {
            return Ok(refused());
        };
        let Some(presented) = self.presented_refresh(&request.headers) else {
            return Ok(refused());
        };
        let flow = &self.inner.flow;
        let now = flow.clock().now_millis();
        let next = RefreshCredential::generate(presented.session.clone())?;
        let grace = flow.lifetimes().refresh_reuse_grace.as_millis() as u64;
        let rotation = self
            .inner
            .signed_in
            .rotate(
                &presented.session,
                &presented.hash(),
                &next.hash(),
                now,
                grace,
            )
            .await?;
        let (session, rotated) = match rotation {
            Rotation::Rotated(session) => (session, true),
            Rotation::Concurrent(session) => (session, false),
            Rotation::Reused => {
                tracing::warn!("a used refresh credential was presented again; session revoked");
                return Ok(refused());
            }
            Rotation::Unknown => return Ok(refused()),
        };
        let issued = renewal
            .renew(RenewingSession::new(&session, now, flow.lifetimes()))
            .await?;
        self.remember_token(&issued, &session.id).await?;
        let mut response = self.token_response(&issued.tokens);
        if rotated {
            let max_age = session.expire_at_ms.saturating_sub(now) / 1000;
            for cookie in self
                .inner
                .cookies
                .set_refresh(mount, &next.expose_secret(), max_age)
            {
                response = response.with_header(SET_COOKIE, &cookie);
            }
        }
        Ok(response)
    }

    /// The refresh credential of the request's refresh cookie, if it is well-formed.
    fn presented_refresh(&self, headers: &HeaderMap) -> Option<RefreshCredential> {
        cookies::read_cookie(headers, &self.inner.cookies.refresh_name())
            .and_then(|v| RefreshCredential::parse(v).ok())
    }

    /// `400 invalid_grant`, deleting the cookies that can no longer sign anyone in.
    fn grant_refused(&self, mount: &str) -> ApiResponse {
        let mut response = ApiResponse::from_error(&Error::InvalidGrant)
            .with_header(SET_COOKIE, &self.inner.cookies.clear_session());
        for cookie in self.inner.cookies.clear_refresh(mount) {
            response = response.with_header(SET_COOKIE, &cookie);
        }
        response
    }

    /// `POST /qrcode/logout`: ends the session named by the refresh cookie and by the id_token
    /// (bearer or session cookie), clears qrauth's cookies. Idempotent.
    pub(super) async fn logout(&self, request: &ApiRequest) -> Result<ApiResponse> {
        self.check_same_origin(&request.headers)?;
        Self::check_json_or_empty(request)?;
        let store = &self.inner.signed_in;
        let now = self.inner.flow.clock().now_millis();
        if let Some(presented) = self.presented_refresh(&request.headers)
            && let Some(session) = store.load(&presented.session, now).await?
        {
            let hash = presented.hash();
            let known = session.refresh_hash.ct_eq(&hash)
                || session
                    .previous_refresh_hash
                    .as_ref()
                    .is_some_and(|p| p.ct_eq(&hash));
            if known {
                store.revoke(&session.id).await?;
            }
        }
        match self.token_session(&request.headers).await {
            Ok(Some(sid)) => {
                store.revoke(&sid).await?;
            }
            Ok(None) => {}
            Err(e @ Error::StoreUnavailable(_)) => return Err(e),
            // An invalid or expired token names no session to end.
            Err(_) => {}
        }
        let mount = self.mount(request, Route::Logout);
        let mut response = ApiResponse::empty(StatusCode::NO_CONTENT)
            .with_header(SET_COOKIE, &self.inner.cookies.clear_session())
            .with_header(SET_COOKIE, &self.inner.cookies.clear_binding());
        for cookie in self.inner.cookies.clear_refresh(mount) {
            response = response.with_header(SET_COOKIE, &cookie);
        }
        Ok(response)
    }

    /// The signed-in session of the request's own id_token, if it verifies with the provider.
    pub(super) async fn token_session(&self, headers: &HeaderMap) -> Result<Option<SessionId>> {
        let Some(token) = self.presented_token(headers) else {
            return Ok(None);
        };
        let claims = self.inner.provider.verify(token).await?;
        self.session_of(token, &claims).await
    }

    /// The session a verified provider token belongs to: its `sid` for providers that sign
    /// (and renew) tokens themselves, else the alias written at exchange (an upstream IdP's
    /// token carries the IdP's own `sid`, if any).
    async fn session_of(&self, token: &str, claims: &Claims) -> Result<Option<SessionId>> {
        let store = &self.inner.signed_in;
        if self.inner.provider.capabilities().renewal.is_some() {
            // A provider that renews signs its tokens itself, with the session's `sid`.
            return Ok(claims
                .extra
                .get("sid")
                .and_then(Value::as_str)
                .and_then(|s| SessionId::parse(s).ok()));
        }
        let hash = sha256(token.as_bytes());
        if let Some(known) = self.inner.token_sessions.get(&hash) {
            return Ok(known);
        }
        let resolved = store.resolve_alias(&SecretHash::from_bytes(hash)).await?;
        self.inner.token_sessions.insert(hash, resolved.clone());
        Ok(resolved)
    }

    /// The check behind every `AuthenticatedUser` for the provider's tokens: the token's
    /// signed-in session is alive. A store that cannot tell is an error (fail closed).
    pub(super) async fn require_signed_in(&self, token: &str, claims: &Claims) -> Result<()> {
        let now = self.inner.flow.clock().now_millis();
        match self.session_of(token, claims).await? {
            Some(sid) if self.inner.signed_in.is_active(&sid, now).await? => Ok(()),
            _ => Err(Error::InvalidToken(TokenError::SessionEnded)),
        }
    }

    /// The live signed-in sessions of `subject` on this service, newest first: for an
    /// account page, or to check before [`revoke_all_sessions`](Self::revoke_all_sessions).
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
    /// let sessions = service.signed_in_sessions("user-alice").await?;
    /// assert!(sessions.is_empty());
    /// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
    /// ```
    pub async fn signed_in_sessions(&self, subject: &str) -> Result<Vec<SignedInSession>> {
        let now = self.inner.flow.clock().now_millis();
        let provider = self.metrics().provider();
        let mut sessions = self.inner.signed_in.list(subject, now).await?;
        sessions.retain(|s| s.provider == provider);
        Ok(sessions)
    }

    /// Signs out one session (on every replica within a second); returns whether it was
    /// signed in. Idempotent.
    pub async fn revoke_session(&self, id: &SessionId) -> Result<bool> {
        self.inner.signed_in.revoke(id).await
    }

    /// Signs out every session of `subject` on this service (password change, account
    /// disabled); returns how many were signed in.
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
    /// assert_eq!(service.revoke_all_sessions("user-alice").await?, 0);
    /// # Ok::<_, qrauth_core::Error>(()) }).unwrap();
    /// ```
    pub async fn revoke_all_sessions(&self, subject: &str) -> Result<usize> {
        let mut revoked = 0;
        for session in self.signed_in_sessions(subject).await? {
            if self.inner.signed_in.revoke(&session.id).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }
}

/// The claims a session's renewed id_tokens carry again: everything but the registered and the
/// per-token ones.
fn session_claims(claims: &Claims) -> Map<String, Value> {
    let mut kept = claims.extra.clone();
    for name in PER_TOKEN_CLAIMS {
        kept.remove(name);
    }
    kept
}
