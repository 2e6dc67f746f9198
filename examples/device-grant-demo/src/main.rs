//! `cargo run -p device-grant-demo -- --issuer URL --client-id ID [--client-secret S]
//! [--client-auth basic|post] [--scope "openid profile"] [--listen ADDR]`: QR login with your
//! OpenID Provider's device grant (RFC 8628) on http://127.0.0.1:3003.
//!
//! The QR opens the IdP's approval page on the phone; this server polls the IdP; the browser
//! that showed the QR gets the IdP's tokens and `/me` shows their claims. With no `--issuer` it
//! starts the local `oidc-provider` the tests use (`tests/oidc-provider`, needs Node.js and
//! `npm ci --prefix tests/oidc-provider`) and says so: open the QR's link in another tab and
//! log in with any name and password.

use std::sync::Arc;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt, QrAuthService};
use qrauth_oidc::{ClientAuth, DeviceGrantProvider};
use qrauth_test_support::OidcProvider;
use qrauth_test_support::oidc_provider::{CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, OpOptions};

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<link rel="icon" href="data:,"><title>Log in with your IdP — qrauth demo</title>
<style>body{font-family:system-ui,sans-serif;background:#f5f6f8;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002;text-align:center}
.local{background:#fff4d6;border:1px solid #e8c15a;padding:.6rem;border-radius:8px;font-size:.9rem}</style>
</head><body><main>
<h1>Scan to log in at __ISSUER__</h1>
__BANNER__
<div id="qrauth"></div>
</main>
<script src="/qrcode/widget.js"></script>
<script>
  QrAuth.startScanning('qrauth', {
    redirectUrl: '/me',
    onQRCodeShow: function (qr) {
      var link = document.getElementById('phone-link');
      if (link) link.href = qr.qrcodeContent;
    }
  });
</script>
</body></html>"#;

const LOCAL_BANNER: &str = r#"<p class="local">Running against the <b>local oidc-provider</b>
started by this demo (no IdP account needed). Play the phone:
<a id="phone-link" target="_blank" rel="noopener">open the QR's link in a new tab</a>, then log in
with any name and password and confirm.</p>"#;

/// The flags of this demo (besides the endpoint flags of `demo-common`).
#[derive(Default)]
struct Flags {
    issuer: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_auth: Option<String>,
    scope: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    demo_common::init_tracing();
    let mut flags = Flags::default();
    let endpoint = demo_common::lan::Endpoint::from_env_with(
        3003,
        "QRAUTH_LISTEN",
        "[--issuer URL --client-id ID [--client-secret S] [--client-auth basic|post] \
         [--scope \"openid profile\"]] ",
        |arg, rest| {
            let slot = match arg {
                "--issuer" => &mut flags.issuer,
                "--client-id" => &mut flags.client_id,
                "--client-secret" => &mut flags.client_secret,
                "--client-auth" => &mut flags.client_auth,
                "--scope" => &mut flags.scope,
                _ => return Ok(false),
            };
            *slot = Some(rest.next().ok_or_else(|| format!("{arg} needs a value"))?);
            Ok(true)
        },
    )?;
    // Kept alive for as long as the demo runs.
    let mut local_op = None;
    let mut builder = match (&flags.issuer, &flags.client_id) {
        (Some(issuer), Some(client_id)) => DeviceGrantProvider::builder(issuer, client_id),
        (None, None) => {
            let op = OidcProvider::start_with(&OpOptions::default());
            println!(
                "no --issuer: using the local oidc-provider (tests/oidc-provider) at {}, \
                 client {CONFIDENTIAL_CLIENT}",
                op.issuer()
            );
            let builder = DeviceGrantProvider::builder(op.issuer(), CONFIDENTIAL_CLIENT)
                .client_secret(CONFIDENTIAL_SECRET);
            local_op = Some(op);
            builder
        }
        _ => return Err("give --issuer and --client-id together, or neither".into()),
    };
    if let Some(secret) = &flags.client_secret {
        builder = builder.client_secret(secret);
    }
    match flags.client_auth.as_deref() {
        None => {}
        Some("basic") => builder = builder.client_auth(ClientAuth::ClientSecretBasic),
        Some("post") => builder = builder.client_auth(ClientAuth::ClientSecretPost),
        Some(other) => return Err(format!("--client-auth {other}: basic or post").into()),
    }
    if let Some(scope) = &flags.scope {
        builder = builder.scopes(scope.split_whitespace());
    }
    let provider = builder.build()?;
    // Fail now, not at the first login, on a wrong issuer or an IdP without the device grant.
    provider.discover().await?;
    let issuer = provider.issuer().to_owned();
    // Plain-HTTP demo cookies; in production drop `insecure_dev_cookies` and serve HTTPS.
    let qrauth = QrAuthService::builder(Arc::new(provider))
        .insecure_dev_cookies()
        .build()?;
    let banner = if local_op.is_some() { LOCAL_BANNER } else { "" };
    let page = PAGE
        .replace("__ISSUER__", &html_escape(&issuer))
        .replace("__BANNER__", banner);
    let app = Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route("/me", get(me))
        .qrauth("/", qrauth.clone());
    endpoint.print_startup("qrauth device-grant demo");
    demo_common::serve_axum_service(endpoint.listen, app, qrauth).await?;
    drop(local_op);
    Ok(())
}

async fn me(user: AuthenticatedUser) -> axum::Json<std::sync::Arc<qrauth_core::Claims>> {
    axum::Json(user.claims)
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
