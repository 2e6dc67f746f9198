//! `cargo run -p open-platform-demo`: QR login through the 猿之榜 open platform on
//! http://127.0.0.1:3002.
//!
//! Configured from `OPEN_PLATFORM_BASE_URL`, `OPEN_PLATFORM_APP_ID` and `OPEN_PLATFORM_SECRET`
//! (and `OPEN_PLATFORM_ACCESS_TOKEN_PATH`, since that endpoint's path is not documented in the
//! seed). Without `OPEN_PLATFORM_BASE_URL` it starts the fake platform in-process, so it runs
//! with no account; the mobile confirm page then simulates the platform's JS SDK.
//! `OPEN_PLATFORM_DEMO_LISTEN` (or `--listen`) changes the address (loopback by default);
//! `--lan` serves it to a phone on the same network.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use demo_common::escape_html;
use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt, QrAuthService};
use qrauth_fake_open_platform::{FakeOpenPlatform, PageConfig};
use qrauth_open_platform::{OpenPlatformClient, OpenPlatformProvider};
use serde::Deserialize;
use serde_json::json;

const LOGIN_PAGE: &str = include_str!("login.html");
const CONFIRM_PAGE: &str = include_str!("confirm.html");

#[derive(Clone)]
struct AppState {
    provider: Arc<OpenPlatformProvider>,
    fake: Option<Arc<FakeOpenPlatform>>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let endpoint = demo_common::lan::Endpoint::from_env(3002, "OPEN_PLATFORM_DEMO_LISTEN")?;
    let public_url = endpoint.public_url.clone();

    let (fake, mut client) = match env("OPEN_PLATFORM_BASE_URL") {
        Some(base) => {
            let app_id = env("OPEN_PLATFORM_APP_ID").ok_or("OPEN_PLATFORM_APP_ID is required")?;
            let secret = env("OPEN_PLATFORM_SECRET").ok_or("OPEN_PLATFORM_SECRET is required")?;
            (
                None,
                OpenPlatformClient::builder(app_id, secret).base_url(base),
            )
        }
        None => {
            let fake = FakeOpenPlatform::start().await?;
            println!(
                "no OPEN_PLATFORM_BASE_URL: using a fake open platform at {}",
                fake.base_url()
            );
            let client =
                OpenPlatformClient::builder(fake.app_id(), fake.secret()).base_url(fake.base_url());
            (Some(Arc::new(fake)), client)
        }
    };
    if let Some(path) = env("OPEN_PLATFORM_ACCESS_TOKEN_PATH") {
        client = client.server_access_token_path(path);
    }
    let issuer = format!("{public_url}/auth");
    let phone_url = format!("{public_url}/m/confirm");
    let provider = OpenPlatformProvider::builder(client.build()?)
        .builtin(move |b| {
            b.issuer(issuer)
                .audience("open-platform-demo")
                .app_name("qrauth open-platform demo")
                .phone_url(phone_url)
        })
        .build()?;
    let provider = Arc::new(provider);
    // The QR login provider is qrauth's built-in one, with the platform's app as the phone.
    let qrauth = QrAuthService::builder(provider.provider())
        .insecure_dev_cookies()
        .build()?;
    let state = AppState { provider, fake };

    let app = Router::new()
        .route("/", get(|| async { Html(LOGIN_PAGE) }))
        .route("/m/confirm", get(|| async { Html(CONFIRM_PAGE) }))
        .route("/open-platform/js-config", get(js_config))
        .route("/fake-platform/js-sdk/code", post(fake_js_sdk_code))
        .route("/me", get(me))
        .route(
            "/api/me",
            get(|u: AuthenticatedUser| async move { Json(u.claims) }),
        )
        .with_state(state)
        .qrauth("/auth", qrauth.clone());
    endpoint.print_startup("qrauth open-platform demo");
    // TCP_NODELAY, client addresses, and a shutdown that lets held connections go at once.
    demo_common::serve_axum_service(endpoint.listen, app, qrauth).await?;
    Ok(())
}

/// `GET /open-platform/js-config?url=<page URL>`: the JS SDK `config` for the confirm page.
async fn js_config(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(url) = q.get("url") else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    };
    match state.provider.js_sdk_config(url).await {
        Ok(config) => Json(config).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "JS SDK config refused");
            let e = e.to_core();
            (
                e.status(),
                Json(json!({"error": e.code(), "error_description": e.public_description()})),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SdkRequest {
    open_id: String,
    url: String,
    config: PageConfig,
}

/// **Demo only**: plays the platform's JS SDK (only when the fake platform is in use).
async fn fake_js_sdk_code(State(state): State<AppState>, Json(r): Json<SdkRequest>) -> Response {
    let Some(fake) = &state.fake else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match fake.js_sdk_code(&r.open_id, &r.url, &r.config) {
        Ok(code) => Json(json!({ "code": code })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({ "error": e }))).into_response(),
    }
}

async fn me(user: Option<AuthenticatedUser>) -> Response {
    match user {
        Some(user) => Html(format!(
            "<!doctype html><meta charset=utf-8><title>Signed in</title><h1>Signed in</h1><p>open_id: <code>{}</code></p><p><a href=\"/\">Log in again</a></p>",
            escape_html(&user.claims.sub)
        ))
        .into_response(),
        None => Redirect::to("/").into_response(),
    }
}
