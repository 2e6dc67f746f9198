//! The QR login routes as an actix-web `Scope` or service configuration.

use actix_web::{HttpRequest, Scope, web};
use qrauth_core::{QrAuthService, Route};

use crate::convert::{handle, handle_extension};

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
            handle_extension(service.clone(), request, payload)
        }),
    );
}

/// Every qrauth route under `path` (e.g. `"/auth"`), and the service as app data of the whole
/// application, so that [`AuthenticatedUser`] works in every handler: for `App::configure`.
///
/// [`AuthenticatedUser`]: crate::AuthenticatedUser
///
/// ```
/// # fn demo(qrauth: qrauth_actix::QrAuthService) {
/// let app = actix_web::App::new().configure(qrauth_actix::mount("/auth", qrauth));
/// # }
/// ```
pub fn mount(path: &str, service: QrAuthService) -> impl FnOnce(&mut web::ServiceConfig) {
    let path = path.to_owned();
    move |config| {
        config.app_data(service.clone());
        config.service(scope(&path, service));
    }
}

/// Every qrauth route under `path` (e.g. `"/auth"`), as a [`Scope`] with the service as its
/// app data. Handlers outside the scope need the service as app data of their own:
/// [`mount`] does both.
///
/// A scope matches every path under its prefix: to mount at the root use [`configure`].
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

/// Every qrauth route at the application's root, and the service as app data of the whole
/// application: for `App::configure`.
///
/// ```
/// # fn demo(qrauth: qrauth_actix::QrAuthService) {
/// let app = actix_web::App::new().configure(qrauth_actix::configure(qrauth));
/// # }
/// ```
pub fn configure(service: QrAuthService) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.app_data(service.clone());
        register(&service, |p, r| {
            config.route(p, r);
        });
    }
}
