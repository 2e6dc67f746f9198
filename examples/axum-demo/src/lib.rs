//! The axum demo app as a router, so tests can serve exactly what `cargo run -p axum-demo`
//! serves.

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt, QrAuthService};

/// The demo: login page at `/`, phone page at `/phone`, the protected `/me` (HTML) and
/// `/api/me` (JSON), and qrauth's routes at the root.
pub fn app(qrauth: QrAuthService) -> Router {
    Router::new()
        .route("/", get(|| async { Html(demo_common::LOGIN_PAGE) }))
        .route("/phone", get(|| async { Html(demo_common::PHONE_PAGE) }))
        .route("/me", get(me_page))
        .route("/api/me", get(me_json))
        .qrauth("/", qrauth)
}

async fn me_page(user: Option<AuthenticatedUser>) -> Response {
    match user {
        Some(user) => Html(demo_common::me_page(&user.claims)).into_response(),
        None => Redirect::to("/").into_response(),
    }
}

async fn me_json(user: AuthenticatedUser) -> Json<qrauth_core::Claims> {
    Json(user.claims)
}
