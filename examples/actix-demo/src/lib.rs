//! The actix demo app as a service configuration, so tests can serve exactly what
//! `cargo run -p actix-demo` serves.

use actix_web::http::StatusCode;
use actix_web::http::header::{ContentType, LOCATION};
use actix_web::{HttpResponse, web};
use qrauth_actix::{AuthenticatedUser, MaybeAuthenticatedUser, QrAuthService};

/// The demo: login page at `/`, phone page at `/phone`, the protected `/me` (HTML) and
/// `/api/me` (JSON), Prometheus text at `/metrics` (loopback only), and qrauth's routes at the
/// root (with the service as app data).
pub fn configure(qrauth: QrAuthService) -> impl FnOnce(&mut web::ServiceConfig) {
    demo_common::metrics::install();
    move |config| {
        config
            .route(
                "/",
                web::get().to(|| async { html(demo_common::LOGIN_PAGE.to_owned()) }),
            )
            .route(
                "/phone",
                web::get().to(|| async { html(demo_common::PHONE_PAGE.to_owned()) }),
            )
            .route("/me", web::get().to(me_page))
            .route("/api/me", web::get().to(me_json))
            .route("/metrics", web::get().to(metrics))
            .configure(qrauth_actix::configure(qrauth));
    }
}

/// Prometheus text for loopback scrapers (see `demo_common::metrics`).
async fn metrics(request: actix_web::HttpRequest) -> HttpResponse {
    let peer = request.peer_addr().map(|addr| addr.ip());
    let forwarded = demo_common::metrics::forwarded(request.headers().keys().map(|k| k.as_str()));
    let (status, body) = demo_common::metrics::scrape(peer, forwarded);
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .content_type(demo_common::metrics::CONTENT_TYPE)
        .body(body)
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(body)
}

async fn me_page(MaybeAuthenticatedUser(user): MaybeAuthenticatedUser) -> HttpResponse {
    match user {
        Some(user) => html(demo_common::me_page(&user.claims)),
        None => HttpResponse::SeeOther()
            .insert_header((LOCATION, "/"))
            .finish(),
    }
}

async fn me_json(user: AuthenticatedUser) -> HttpResponse {
    HttpResponse::Ok().json(user.claims)
}
