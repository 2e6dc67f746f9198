//! The axum demo app as a router, so tests can serve exactly what `cargo run -p axum-demo`
//! serves.

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt, QrAuthService};

/// The demo: login page at `/`, phone page at `/phone`, the protected `/me` (HTML) and
/// `/api/me` (JSON), Prometheus text at `/metrics` (loopback only), and qrauth's routes at the
/// root.
pub fn app(qrauth: QrAuthService) -> Router {
    demo_common::metrics::install();
    Router::new()
        .route("/", get(|| async { Html(demo_common::LOGIN_PAGE) }))
        .route("/phone", get(|| async { Html(demo_common::PHONE_PAGE) }))
        .route("/me", get(me_page))
        .route("/api/me", get(me_json))
        .route("/metrics", get(metrics))
        .qrauth("/", qrauth)
}

/// Prometheus text for loopback scrapers (see `demo_common::metrics`).
async fn metrics(request: axum::extract::Request) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    let forwarded = demo_common::metrics::forwarded(request.headers().keys().map(|k| k.as_str()));
    let (status, body) = demo_common::metrics::scrape(peer, forwarded);
    let status = axum::http::StatusCode::from_u16(status)
        .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = [(
        axum::http::header::CONTENT_TYPE,
        demo_common::metrics::CONTENT_TYPE,
    )];
    (status, content_type, body).into_response()
}

async fn me_page(user: Option<AuthenticatedUser>) -> Response {
    match user {
        Some(user) => Html(demo_common::me_page(&user.claims)).into_response(),
        None => Redirect::to("/").into_response(),
    }
}

async fn me_json(user: AuthenticatedUser) -> Json<std::sync::Arc<qrauth_core::Claims>> {
    Json(user.claims)
}
