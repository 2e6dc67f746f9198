//! The `AuthenticatedUser` extractor.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use qrauth_core::{Claims, Error, QrAuthService};

use crate::convert::into_response;

/// The verified user of a request: the id_token from `Authorization: Bearer …` or from the
/// session cookie set at login, verified by the provider.
///
/// Needs the [`QrAuthService`] in the request extensions: mounting the routes with
/// [`QrAuthRouterExt::qrauth`](crate::QrAuthRouterExt::qrauth) puts it there, as does a
/// [`RequireAuthenticationLayer`](crate::RequireAuthenticationLayer) in front of the handler.
///
/// `Option<AuthenticatedUser>` (or [`MaybeAuthenticatedUser`], the same on both adapters) is
/// `None` for anonymous requests and refused tokens; a verifier outage is still an error.
///
/// ```
/// use axum::{Router, routing::get};
/// use qrauth_axum::AuthenticatedUser;
///
/// async fn me(user: AuthenticatedUser) -> String {
///     format!("signed in as {}", user.claims.sub)
/// }
///
/// async fn home(user: Option<AuthenticatedUser>) -> &'static str {
///     if user.is_some() { "welcome back" } else { "please scan the QR code" }
/// }
///
/// let app: Router = Router::new().route("/me", get(me)).route("/", get(home));
/// ```
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    /// The id_token's verified claims, shared with the verifier's cache (cloning the user
    /// clones an `Arc`).
    pub claims: Arc<Claims>,
}

/// Why [`AuthenticatedUser`] refused a request: a 401 with
/// `WWW-Authenticate: Bearer …` and the JSON error body (or a 5xx if the verifier itself could
/// not run), or the application's own response from the service's
/// [`render_errors`](qrauth_core::QrAuthServiceBuilder::render_errors). Public so that
/// applications can match on it.
#[derive(Debug)]
pub struct Unauthorized {
    /// The underlying error.
    pub error: Error,
    response: Option<qrauth_core::ApiResponse>,
}

impl Unauthorized {
    fn new(service: Option<&QrAuthService>, parts: &Parts, error: Error) -> Self {
        let response = service.map(|s| s.unauthorized_for(&parts.method, &parts.headers, &error));
        Self { error, response }
    }
}

/// A refused [`authenticate`]: the service that refused (if it was there) and why; turned into
/// an [`Unauthorized`] (and so rendered) only when the refusal is answered.
struct Refusal {
    service: Option<QrAuthService>,
    error: Error,
}

impl Refusal {
    fn into_rejection(self, parts: &Parts) -> Unauthorized {
        Unauthorized::new(self.service.as_ref(), parts, self.error)
    }
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        match self.response {
            Some(api) => into_response(api),
            None => into_response(qrauth_core::ApiResponse::from_error(&self.error)),
        }
    }
}

async fn authenticate(parts: &Parts) -> Result<AuthenticatedUser, Refusal> {
    if let Some(user) = parts.extensions.get::<AuthenticatedUser>() {
        return Ok(user.clone());
    }
    let Some(service) = parts.extensions.get::<QrAuthService>() else {
        return Err(Refusal {
            service: None,
            error: Error::Config(
                "QrAuthService missing from request extensions: mount the routes with .qrauth(prefix, service)"
                    .into(),
            ),
        });
    };
    match service.authenticate(&parts.headers).await {
        Ok(claims) => Ok(AuthenticatedUser { claims }),
        Err(error) => Err(Refusal {
            service: Some(service.clone()),
            error,
        }),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthenticatedUser {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        authenticate(parts)
            .await
            .map_err(|refusal| refusal.into_rejection(parts))
    }
}

/// `Option<AuthenticatedUser>`: `None` for anonymous requests or refused tokens; a failure of
/// the verifier itself (JWKS endpoint down) is still an error.
impl<S: Send + Sync> OptionalFromRequestParts<S> for AuthenticatedUser {
    type Rejection = Unauthorized;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        match authenticate(parts).await {
            Ok(user) => Ok(Some(user)),
            Err(refusal) if matches!(refusal.error, Error::InvalidToken(_)) => Ok(None),
            Err(refusal) => Err(refusal.into_rejection(parts)),
        }
    }
}

/// The verified user, if any: the same as `Option<AuthenticatedUser>`, under the name the
/// actix-web adapter uses too.
///
/// ```
/// use axum::{Router, routing::get};
/// use qrauth_axum::MaybeAuthenticatedUser;
///
/// async fn home(MaybeAuthenticatedUser(user): MaybeAuthenticatedUser) -> &'static str {
///     if user.is_some() { "welcome back" } else { "please scan the QR code" }
/// }
///
/// let app: Router = Router::new().route("/", get(home));
/// ```
#[derive(Debug, Clone)]
pub struct MaybeAuthenticatedUser(pub Option<AuthenticatedUser>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthenticatedUser {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        <AuthenticatedUser as OptionalFromRequestParts<S>>::from_request_parts(parts, state)
            .await
            .map(Self)
    }
}
