//! A middleware that requires authentication on a scope.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError};
use qrauth_core::{Error, QrAuthService};

use crate::extract::{Unauthorized, authenticate};

/// Refuses every request without a valid id_token (401 with `WWW-Authenticate`, or the
/// application's own response from the service's
/// [`render_errors`](qrauth_core::QrAuthServiceBuilder::render_errors)), and puts the
/// [`AuthenticatedUser`](crate::AuthenticatedUser) in the request extensions for handlers.
/// Use it with [`actix_web::middleware::from_fn`]; the [`QrAuthService`] must be app data.
///
/// ```
/// use actix_web::{App, middleware::from_fn, web};
/// use qrauth_actix::{AuthenticatedUser, require_authentication};
///
/// # fn demo(qrauth: qrauth_actix::QrAuthService) {
/// let app = App::new().app_data(qrauth).service(
///     web::scope("/admin")
///         .wrap(from_fn(require_authentication))
///         .route("/stats", web::get().to(|user: AuthenticatedUser| async move { user.claims.sub.clone() })),
/// );
/// # }
/// ```
pub async fn require_authentication<B: MessageBody + 'static>(
    request: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let Some(service) = request.app_data::<QrAuthService>().cloned() else {
        let refusal = Unauthorized::new(
            Error::Config("QrAuthService missing from app data".into()),
            None,
            request.method(),
            request.headers(),
        );
        return Ok(request
            .into_response(refusal.error_response())
            .map_into_right_body());
    };
    match authenticate(&service, request.method(), request.headers()).await {
        Ok(user) => {
            request.extensions_mut().insert(user);
            next.call(request)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(refusal) => Ok(request
            .into_response(refusal.error_response())
            .map_into_right_body()),
    }
}
