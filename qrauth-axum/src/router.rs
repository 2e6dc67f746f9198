//! The QR login routes as an axum [`Router`].

use axum::extract::{Path, Request};
use axum::routing::any;
use axum::{Extension, Router};
use qrauth_core::{QrAuthService, Route};

use crate::convert::{handle, handle_extension};

/// Every qrauth route (`/qrcode`, `/qrcode/status`, `/qrcode/events`, `/qrcode/exchange`, the
/// built-in provider's phone routes and `/.well-known/*`), ready to `nest` under a prefix or
/// `merge` at the root.
///
/// Unknown paths under `/qrcode/` and wrong methods answer qrauth's JSON errors.
///
/// ```
/// # fn demo(qrauth: qrauth_axum::QrAuthService) {
/// let app: axum::Router = axum::Router::new().nest("/auth", qrauth_axum::routes(qrauth));
/// # }
/// ```
pub fn routes<S>(service: QrAuthService) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut router = Router::new();
    for (path, route) in Route::ALL {
        let service = service.clone();
        router = router.route(
            path,
            any(move |request: Request| handle(service.clone(), route, request)),
        );
    }
    router.route(
        "/qrcode/{*rest}",
        any(move |Path(rest): Path<String>, request: Request| {
            handle_extension(service.clone(), rest, request)
        }),
    )
}

/// Mounting qrauth on a [`Router`] in one call: the routes under a prefix, and the service in
/// the request extensions of every route added so far, so that
/// [`AuthenticatedUser`](crate::AuthenticatedUser) works in all of them.
///
/// Like any axum layer, it covers the routes added before it: call it last.
///
/// ```
/// use axum::{Router, routing::get};
/// use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt};
///
/// # fn demo(qrauth: qrauth_axum::QrAuthService) {
/// let app: Router = Router::new()
///     .route("/me", get(|user: AuthenticatedUser| async move { user.claims.sub.clone() }))
///     .qrauth("/auth", qrauth);
/// # }
/// ```
pub trait QrAuthRouterExt {
    /// Nests [`routes`] under `prefix` (`"/"`: at the root) and makes `service` available to
    /// the extractors.
    fn qrauth(self, prefix: &str, service: QrAuthService) -> Self;
}

impl<S> QrAuthRouterExt for Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    fn qrauth(self, prefix: &str, service: QrAuthService) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let mounted = if prefix.is_empty() {
            self.merge(routes(service.clone()))
        } else {
            self.nest(prefix, routes(service.clone()))
        };
        mounted.layer(Extension(service))
    }
}
