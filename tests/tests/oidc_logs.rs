//! The device-grant provider's logs against a real OpenID Provider: no secret in them, and the
//! IdP's errors only there. In a test binary of its own, so that no other test's events race
//! the capture.

mod oidc_support;

use std::sync::Arc;

use oidc_support::*;
use qrauth_core::store::MemoryStore;
use qrauth_oidc::DeviceGrantProvider;
use qrauth_test_support::oidc_provider::{CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET};
use qrauth_test_support::{DevicePhone, Framework as Kind};
use serde_json::Value;

/// Logs at every level during a login and an IdP refusal hold no secret (client secret, its
/// Basic credentials, device code, IdP tokens, qrauth's ticket); the refusal's OAuth error goes
/// to the log, never to the browser.
#[tokio::test(flavor = "current_thread")]
async fn no_secret_in_logs_and_idp_errors_only_there() {
    use base64::Engine as _;
    let (capture, _guard) = qrauth_test_support::LogCapture::start();
    bounded(async {
        let env = Env::new(Kind::Axum).await;
        let mut browser = Browser::default();
        let (id, content, user_code) = env.qr(&mut browser, 0).await;
        let qr_id = qrauth_core::QrCodeId::parse(&id).expect("id");
        let data = env.app(0).service.upstream().session(&qr_id).await;
        let data = data
            .expect("store")
            .expect("session")
            .provider_data
            .expect("data");
        let device_code = serde_json::from_str::<Value>(&data).expect("state")["dc"]
            .as_str()
            .expect("device code")
            .to_owned();
        DevicePhone::new()
            .approve(&content, &user_code, "heidi")
            .await;
        let ticket = env.wait_for(&browser, 0, &id, "confirmed").await["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned();
        let body = env.exchange(&browser, 0, &ticket).await.ok(200);

        // A replica with a wrong secret: the OP refuses with `invalid_client`.
        let wrong = DeviceGrantProvider::builder(env.op.issuer(), CONFIDENTIAL_CLIENT)
            .client_secret("not-the-secret-0123456789")
            .build()
            .expect("provider");
        let other = app(Kind::Axum, wrong, Arc::new(MemoryStore::new())).await;
        let env = Env::of(env.op, vec![other]);
        let refused = env.generate(&mut Browser::default(), 0).await;
        refused.error(502, "upstream_unavailable");
        assert!(!refused.text.contains("invalid_client"), "{}", refused.text);

        let logs = capture.text();
        assert!(
            logs.contains("device-grant QR login completed"),
            "capture works"
        );
        assert!(logs.contains("invalid_client"), "the IdP's error is logged");
        let basic = |secret: &str| {
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CONFIDENTIAL_CLIENT}:{secret}"))
        };
        let secrets = [
            CONFIDENTIAL_SECRET.to_owned(),
            basic(CONFIDENTIAL_SECRET),
            "not-the-secret-0123456789".to_owned(),
            device_code,
            ticket,
            body["access_token"]
                .as_str()
                .expect("access token")
                .to_owned(),
            body["id_token"].as_str().expect("id token").to_owned(),
        ];
        for secret in &secrets {
            assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        }
    })
    .await;
}
