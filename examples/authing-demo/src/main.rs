//! `cargo run -p authing-demo`: QR login with the Authing app on http://127.0.0.1:3001.
//!
//! With `AUTHING_APP_ID`, `AUTHING_APP_SECRET`, `AUTHING_APP_HOST` and `AUTHING_USERPOOL_ID`
//! set (optionally `AUTHING_API_VERSION=v2`, `AUTHING_TOKEN_AUTH_METHOD=client_secret_basic`,
//! `AUTHING_HS256=1`), it talks to that Authing application: scan the QR with the Authing app.
//! With none set it starts the fake Authing server in-process and the page offers buttons that
//! play the Authing app, so it runs with no account. `QRAUTH_LISTEN` (or `--listen`) changes the
//! address; `--lan` serves it to other machines (the phone itself talks to Authing, not to it).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use qrauth_authing::{ApiVersion, AuthingProvider, TokenAuthMethod};
use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt, QrAuthService};
use qrauth_fake_authing::{FakeAuthing, FakeConfig};
use serde_json::{Value, json};

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<link rel="icon" href="data:,"><title>Log in with Authing — qrauth demo</title>
<style>body{font-family:system-ui,sans-serif;background:#f5f6f8;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002;text-align:center}
.fake{background:#fff4d6;border:1px solid #e8c15a;padding:.6rem;border-radius:8px;font-size:.9rem}</style>
</head><body><main>
<h1>Scan with the Authing app</h1>
__BANNER__
<div id="qrauth"></div>
</main>
<script src="/qrcode/widget.js"></script>
<script>
  var content = null;
  QrAuth.startScanning('qrauth', {
    redirectUrl: '/me',
    onQRCodeShow: function (qr) { content = qr.qrcodeContent; }
  });
  function app(action) {
    fetch('/fake-app/' + action, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ qrcodeContent: content }) });
  }
</script>
</body></html>"#;

const FAKE_BANNER: &str = r#"<p class="fake">Running against the <b>fake Authing server</b> started in this
process (no Authing account). Play the Authing app as Alice:
<button onclick="app('scan')">scan</button> <button onclick="app('confirm')">confirm</button>
<button onclick="app('cancel')">cancel</button></p>"#;

const REAL_BANNER: &str = r#"<p>Connected to the Authing application configured by the
<code>AUTHING_*</code> environment variables.</p>"#;

#[derive(Clone)]
struct Demo {
    fake: Option<Arc<FakeAuthing>>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let endpoint = demo_common::lan::Endpoint::from_env(3001, "QRAUTH_LISTEN")?;
    let real = (
        env("AUTHING_APP_ID"),
        env("AUTHING_APP_SECRET"),
        env("AUTHING_APP_HOST"),
        env("AUTHING_USERPOOL_ID"),
    );
    let (provider, fake) = match real {
        (Some(id), Some(secret), Some(host), Some(pool)) => {
            let mut builder = AuthingProvider::builder(id, secret, host, pool);
            if env("AUTHING_API_VERSION").is_some_and(|v| v.eq_ignore_ascii_case("v2")) {
                builder = builder.api_version(ApiVersion::V2);
            }
            if env("AUTHING_TOKEN_AUTH_METHOD").as_deref() == Some("client_secret_basic") {
                builder = builder.token_auth_method(TokenAuthMethod::ClientSecretBasic);
            }
            if env("AUTHING_HS256").is_some() {
                builder = builder.hs256_id_tokens(true);
            }
            (builder.build()?, None)
        }
        (None, None, None, None) => {
            let fake = FakeAuthing::spawn(FakeConfig::default()).await?;
            println!(
                "no AUTHING_* variables: using the in-process fake Authing server at {}",
                fake.base_url()
            );
            let c = fake.config();
            let provider = AuthingProvider::builder(
                &c.app_id,
                &c.app_secret,
                fake.base_url(),
                &c.user_pool_id,
            )
            .build()?;
            (provider, Some(Arc::new(fake)))
        }
        _ => {
            return Err(
                "set all of AUTHING_APP_ID, AUTHING_APP_SECRET, AUTHING_APP_HOST and \
                        AUTHING_USERPOOL_ID, or none"
                    .into(),
            );
        }
    };
    // Plain-HTTP demo cookies; in production drop `insecure_dev_cookies` and serve HTTPS.
    let qrauth = QrAuthService::builder(Arc::new(provider))
        .insecure_dev_cookies()
        .build()?;
    let banner = if fake.is_some() {
        FAKE_BANNER
    } else {
        REAL_BANNER
    };
    let page = PAGE.replace("__BANNER__", banner);
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/me", get(me))
        .route("/fake-app/{action}", post(fake_app))
        .with_state(Demo { fake })
        .qrauth("/", qrauth.clone());
    endpoint.print_startup("qrauth Authing demo");
    demo_common::serve_axum_service(endpoint.listen, app, qrauth).await?;
    Ok(())
}

async fn me(user: AuthenticatedUser) -> Json<std::sync::Arc<qrauth_core::Claims>> {
    Json(user.claims)
}

/// Plays the Authing app (fake mode only).
async fn fake_app(
    State(demo): State<Demo>,
    Path(action): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some(fake) = demo.fake else {
        return (StatusCode::NOT_FOUND, "not running against the fake").into_response();
    };
    let content = body["qrcodeContent"].as_str().unwrap_or("");
    let alice = fake.alice();
    let result = match action.as_str() {
        "scan" => fake.app_scan(content, &alice).await,
        "confirm" => fake.app_confirm(content, &alice).await,
        "cancel" => fake.app_cancel(content, &alice).await,
        _ => Err("unknown action".into()),
    };
    match result {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            Json(json!({ "ok": false, "error": e })),
        )
            .into_response(),
    }
}
