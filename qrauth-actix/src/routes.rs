//! The QR login routes as an actix-web `Scope` or service configuration.

use actix_web::{HttpRequest, Scope, web};
use qrauth_core::{QrAuthService, Route};

use crate::convert::handle;

fn register(service: &QrAuthService, mut add: impl FnMut(&str, actix_web::Route)) {
    for (path, route) in Route::ALL {
        let service = service.clone();
        add(
            path,
            web::to(move |request: HttpRequest, payload: web::Payload| {
                handle(service.clone(), route, request, payload)
            }),
        );
    }
    let service = service.clone();
    add(
        "/qrcode/{tail:.*}",
        web::to(move |request: HttpRequest, payload: web::Payload| {
            handle(service.clone(), Route::NotFound, request, payload)
        }),
    );
}

/// Every qrauth route under `path` (e.g. `"/auth"`), as a [`Scope`].
///
/// Also registers the service as app data of the scope, so [`AuthenticatedUser`] works
/// inside it; add `.app_data(service)` to the `App` for handlers outside.
///
/// A scope matches every path under its prefix: to mount at the root use [`configure`].
///
/// [`AuthenticatedUser`]: crate::AuthenticatedUser
///
/// ```
/// # fn demo(qrauth: qrauth_actix::QrAuthService) {
/// let app = actix_web::App::new().service(qrauth_actix::scope("/auth", qrauth));
/// # }
/// ```
pub fn scope(path: &str, service: QrAuthService) -> Scope {
    let mut scope = Some(web::scope(path).app_data(service.clone()));
    register(&service, |p, r| {
        scope = scope.take().map(|s| s.route(p, r));
    });
    scope.unwrap_or_else(|| web::scope(path))
}

/// Every qrauth route at the application's root, for `App::configure`.
///
/// ```
/// # fn demo(qrauth: qrauth_actix::QrAuthService) {
/// let app = actix_web::App::new()
///     .app_data(qrauth.clone())
///     .configure(qrauth_actix::configure(qrauth));
/// # }
/// ```
pub fn configure(service: QrAuthService) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        register(&service, |p, r| {
            config.route(p, r);
        });
    }
}
