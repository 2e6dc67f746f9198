//! The actix-web example over HTTP: QR login into the actix-session session, sign-out of both,
//! phone revocation, cross-site refusal. The cases are the axum example's (one contract, two
//! frameworks).

#[macro_use]
#[path = "../../axum-app-session/tests/common/mod.rs"]
mod common;

use demo_common::app_session::QrSessions;
use qrauth_test_support::serve;

async fn start() -> common::App {
    let (listener, base) = serve::bind();
    let qr = QrSessions::new(&base).expect("qrauth service");
    let key = actix_web::cookie::Key::generate();
    let served = serve::actix(
        listener,
        actix_app_session::configure(qr.clone(), key, false),
    )
    .await;
    common::App {
        base,
        qr,
        _served: served,
    }
}

app_session_cases!(start);
