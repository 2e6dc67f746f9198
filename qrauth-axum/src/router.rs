//! The QR login routes as an axum [`Router`].

use axum::Router;
use axum::extract::Request;
use axum::routing::any;
use qrauth_core::{QrAuthService, Route};

use crate::convert::handle;

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
        any(move |request: Request| handle(service.clone(), Route::NotFound, request)),
    )
}
