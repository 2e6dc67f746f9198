//! The secret, codes and tokens never reach the logs, at any level.

mod support;

use std::time::Duration;

use qrauth_core::provider::builtin::PhoneAuthenticator;
use qrauth_fake_open_platform::{Endpoint, Fault};
use qrauth_open_platform::OpenPlatformProvider;

#[tokio::test]
async fn secret_codes_and_tokens_are_not_logged() {
    let (capture, _guard) = qrauth_test_support::LogCapture::start();

    let fake = support::fake().await;
    let provider =
        OpenPlatformProvider::builder(support::client_for(&fake, Duration::from_secs(5)))
            .builtin(|b| b.issuer("http://127.0.0.1:9"))
            .build()
            .expect("provider");
    let auth = provider.authenticator();
    let good = fake.mint_code("open-id-logged");
    auth.authenticate(&format!("OpenPlatform {good}"))
        .await
        .expect("user");
    // Reused code (4102), then an upstream failure.
    assert!(
        auth.authenticate(&format!("OpenPlatform {good}x"))
            .await
            .is_err()
    );
    fake.set_fault(Endpoint::Token, Some(Fault::ServerError));
    let failed = fake.mint_code("open-id-logged");
    assert!(
        auth.authenticate(&format!("OpenPlatform {failed}"))
            .await
            .is_err()
    );
    let ticket = provider.credentials().js_ticket().await.expect("ticket");
    let token = provider
        .credentials()
        .server_access_token()
        .await
        .expect("token");
    let config = provider
        .js_sdk_config("http://127.0.0.1:9/m?x=1")
        .await
        .expect("config");
    tracing::debug!(?provider, ?config, "state dump");

    let logs = capture.text();
    assert!(logs.contains("open platform call failed"), "{logs}");
    assert!(
        logs.contains("authorization_code is invalid"),
        "upstream message kept for logs"
    );
    for secret in [
        fake.secret(),
        good.as_str(),
        failed.as_str(),
        ticket.as_str(),
        token.as_str(),
    ] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
}
