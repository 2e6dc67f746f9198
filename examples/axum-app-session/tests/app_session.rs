//! The axum example over HTTP: QR login into the tower-sessions + axum-login session,
//! sign-out of both, phone revocation, cross-site refusal (cases in `common`).

#[macro_use]
mod common;

use demo_common::app_session::QrSessions;
use qrauth_test_support::serve;

async fn start() -> common::App {
    let (listener, base) = serve::bind();
    let qr = QrSessions::new(&base).expect("qrauth service");
    let served = serve::axum(listener, axum_app_session::app(qr.clone(), false));
    common::App {
        base,
        qr,
        _served: served,
    }
}

app_session_cases!(start);
