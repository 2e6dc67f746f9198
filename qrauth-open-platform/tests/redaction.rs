//! The secret, codes and tokens never reach the logs, at any level.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qrauth_core::provider::builtin::PhoneAuthenticator;
use qrauth_fake_open_platform::{Endpoint, Fault};
use qrauth_open_platform::OpenPlatformProvider;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secret_codes_and_tokens_are_not_logged() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

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

    let logs = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
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
