//! Requirement 32: the routes work behind a `TimeoutLayer` longer than the longest long-poll.
//! A 25 s long-poll through a 30 s `TimeoutLayer` answers 200 with the unchanged status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use qrauth_axum::QrAuthService;
use qrauth_core::Error;
use qrauth_core::{BuiltinProvider, PhoneAuthenticator, PhoneUser, SigningAlgorithm};
use tower_http::timeout::TimeoutLayer;

struct NoPhones;

#[async_trait::async_trait]
impl PhoneAuthenticator for NoPhones {
    async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> {
        Err(Error::Unauthenticated)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_25_second_long_poll_passes_a_30_second_timeout_layer() {
    let provider = BuiltinProvider::builder(Arc::new(NoPhones))
        .algorithm(SigningAlgorithm::Es256)
        .build()
        .unwrap();
    let qrauth = QrAuthService::builder(Arc::new(provider))
        .insecure_dev_cookies()
        .build()
        .unwrap();
    let app: Router = Router::new()
        .nest("/auth", qrauth_axum::routes(qrauth))
        .layer(TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let created = client
        .post(format!("{base}/auth/qrcode"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let cookie = created
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let body: serde_json::Value = created.json().await.unwrap();
    let id = body["qrcodeId"].as_str().unwrap();

    let started = Instant::now();
    let polled = client
        .get(format!(
            "{base}/auth/qrcode/status?qrcodeId={id}&wait=25&since=1"
        ))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(polled.status(), 200, "not cut off by the timeout layer");
    let status: serde_json::Value = polled.json().await.unwrap();
    assert_eq!(status["status"], "pending");
    assert!(waited >= Duration::from_secs(24), "held for {waited:?}");
}
