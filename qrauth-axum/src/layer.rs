//! A tower layer that requires authentication on a whole router.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::Response;
use qrauth_core::QrAuthService;
use tower_layer::Layer;
use tower_service::Service;

use crate::convert::into_response;
use crate::extract::AuthenticatedUser;

/// Requires a valid id_token on every request of the wrapped service; puts the
/// [`AuthenticatedUser`] in the request extensions for handlers that want it. Refusals are
/// [`QrAuthService::unauthorized_for`]: qrauth's 401 or the application's own response.
///
/// ```
/// use axum::{Router, routing::get};
/// use qrauth_axum::{AuthenticatedUser, RequireAuthenticationLayer};
///
/// # fn demo(qrauth: qrauth_axum::QrAuthService) {
/// let admin: Router = Router::new()
///     .route("/stats", get(|user: AuthenticatedUser| async move { user.claims.sub.clone() }))
///     .layer(RequireAuthenticationLayer::new(qrauth));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RequireAuthenticationLayer {
    service: QrAuthService,
}

impl RequireAuthenticationLayer {
    /// A layer that verifies tokens with `service`'s provider.
    pub fn new(service: QrAuthService) -> Self {
        Self { service }
    }
}

impl<S> Layer<S> for RequireAuthenticationLayer {
    type Service = RequireAuthentication<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireAuthentication {
            inner,
            service: self.service.clone(),
        }
    }
}

/// The service made by [`RequireAuthenticationLayer`].
#[derive(Debug, Clone)]
pub struct RequireAuthentication<S> {
    inner: S,
    service: QrAuthService,
}

impl<S> Service<Request> for RequireAuthentication<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let service = self.service.clone();
        Box::pin(async move {
            match service.authenticate(request.headers()).await {
                Ok(claims) => {
                    request
                        .extensions_mut()
                        .insert(AuthenticatedUser { claims });
                    request.extensions_mut().insert(service);
                    inner.call(request).await
                }
                Err(error) => Ok(into_response(service.unauthorized_for(
                    request.method(),
                    request.headers(),
                    &error,
                ))),
            }
        })
    }
}
