//! The `AuthenticatedUser` extractor.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use qrauth_core::{Claims, Error, QrAuthService};

use crate::convert::{credentials, headers, into_response};

/// The verified user of a request: the id_token from `Authorization: Bearer …` or from the
/// session cookie set at login, verified by the provider.
///
/// Needs the [`QrAuthService`] as app data: [`mount`](crate::mount) (or
/// [`configure`](crate::configure)) puts it there, as does the
/// [`require_authentication`](crate::require_authentication) middleware.
///
/// For pages that serve anonymous visitors too, take [`MaybeAuthenticatedUser`]: `None` for
/// anonymous requests and refused tokens, but a verifier outage is still an error. (actix-web's
/// own `Option<AuthenticatedUser>` turns every error into `None`, outages included.)
///
/// ```
/// use actix_web::{App, web};
/// use qrauth_actix::AuthenticatedUser;
///
/// async fn me(user: AuthenticatedUser) -> String {
///     format!("signed in as {}", user.claims.sub)
/// }
///
/// let app = App::new().route("/me", web::get().to(me));
/// ```
#[derive(Debug, Clone)]
pub struct AuthenticatedUser {
    /// The id_token's verified claims, shared with the verifier's cache (cloning the user
    /// clones an `Arc`).
    pub claims: Arc<Claims>,
}

/// Why [`AuthenticatedUser`] refused a request: renders as a 401 with
/// `WWW-Authenticate: Bearer …` and the JSON error body, or as the application's own response
/// from the service's [`render_errors`](qrauth_core::QrAuthServiceBuilder::render_errors).
pub struct Unauthorized {
    /// The underlying error.
    pub error: Error,
    service: Option<QrAuthService>,
    /// The refused request's method and headers, for the application's renderer.
    method: Method,
    headers: HeaderMap,
}

impl Unauthorized {
    pub(crate) fn new(
        error: Error,
        service: Option<QrAuthService>,
        method: &Method,
        headers: &HeaderMap,
    ) -> Self {
        Self {
            error,
            service,
            method: method.clone(),
            headers: headers.clone(),
        }
    }
}

impl fmt::Debug for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unauthorized")
            .field("error", &self.error)
            .finish()
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl ResponseError for Unauthorized {
    fn status_code(&self) -> actix_web::http::StatusCode {
        actix_web::http::StatusCode::from_u16(self.error.status().as_u16())
            .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED)
    }

    fn error_response(&self) -> HttpResponse {
        let Some(service) = &self.service else {
            return into_response(qrauth_core::ApiResponse::from_error(&self.error));
        };
        // actix-web's http 0.2 method and headers, in core's http 1 types.
        match http::Method::from_bytes(self.method.as_str().as_bytes()) {
            Ok(method) => into_response(service.unauthorized_for(
                &method,
                &headers(&self.headers),
                &self.error,
            )),
            Err(_) => into_response(service.unauthorized(&self.error)),
        }
    }
}

pub(crate) async fn authenticate(
    service: &QrAuthService,
    method: &Method,
    request_headers: &HeaderMap,
) -> Result<AuthenticatedUser, Unauthorized> {
    let credentials = credentials(request_headers);
    match service.authenticate(&credentials).await {
        Ok(claims) => Ok(AuthenticatedUser { claims }),
        Err(error) => Err(Unauthorized::new(
            error,
            Some(service.clone()),
            method,
            request_headers,
        )),
    }
}

impl FromRequest for AuthenticatedUser {
    type Error = Unauthorized;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        if let Some(user) = request.extensions().get::<AuthenticatedUser>() {
            let user = user.clone();
            return Box::pin(async move { Ok(user) });
        }
        // A clone of the request is a reference count, not atomic: nothing is copied from it
        // unless the token is refused.
        let request = request.clone();
        Box::pin(async move {
            let Some(service) = request.app_data::<QrAuthService>() else {
                return Err(Unauthorized::new(
                    Error::Config(
                        "QrAuthService missing from app data: mount the routes with \
                         .configure(qrauth_actix::mount(path, service))"
                            .into(),
                    ),
                    None,
                    request.method(),
                    request.headers(),
                ));
            };
            authenticate(service, request.method(), request.headers()).await
        })
    }
}

/// The verified user, if any: `None` for anonymous requests and refused tokens; a failure of
/// the verifier itself (JWKS endpoint down, store unreachable) is still an error, as on axum's
/// `Option<AuthenticatedUser>`.
///
/// ```
/// use actix_web::{App, web};
/// use qrauth_actix::MaybeAuthenticatedUser;
///
/// async fn home(MaybeAuthenticatedUser(user): MaybeAuthenticatedUser) -> &'static str {
///     if user.is_some() { "welcome back" } else { "please scan the QR code" }
/// }
///
/// let app = App::new().route("/", web::get().to(home));
/// ```
#[derive(Debug, Clone)]
pub struct MaybeAuthenticatedUser(pub Option<AuthenticatedUser>);

impl FromRequest for MaybeAuthenticatedUser {
    type Error = Unauthorized;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let user = AuthenticatedUser::from_request(request, payload);
        Box::pin(async move {
            match user.await {
                Ok(user) => Ok(Self(Some(user))),
                Err(rejection) if matches!(rejection.error, Error::InvalidToken(_)) => {
                    Ok(Self(None))
                }
                Err(rejection) => Err(rejection),
            }
        })
    }
}
