//! Shared helpers: a fake platform, a client for it, and a real axum / actix-web server with the
//! provider mounted, plus a browser and a phone talking HTTP to it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use qrauth_core::{Limits, QrAuthService};
use qrauth_fake_open_platform::FakeOpenPlatform;
use qrauth_open_platform::{OpenPlatformClient, OpenPlatformProvider};
use serde_json::{Value, json};

pub async fn fake() -> FakeOpenPlatform {
    FakeOpenPlatform::start().await.expect("fake starts")
}

pub fn client_for(fake: &FakeOpenPlatform, timeout: Duration) -> OpenPlatformClient {
    OpenPlatformClient::builder(fake.app_id(), fake.secret())
        .base_url(fake.base_url())
        .timeout(timeout)
        .build()
        .expect("client")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

pub use qrauth_test_support::Framework as Kind;

pub struct Server {
    pub base: String,
    pub provider: Arc<OpenPlatformProvider>,
    _served: qrauth_test_support::Served,
}

/// A server on loopback with the open-platform provider at the root and a protected
/// `/api/me` that answers the verified claims.
pub async fn server(kind: Kind, fake: &FakeOpenPlatform, upstream_timeout: Duration) -> Server {
    let (listener, base) = qrauth_test_support::serve::bind();
    let issuer = base.clone();
    let provider = OpenPlatformProvider::builder(client_for(fake, upstream_timeout))
        .builtin(move |b| {
            b.issuer(issuer.clone())
                .audience("op-test")
                .app_name("open platform test")
                .phone_url(format!("{issuer}/m/confirm"))
        })
        .build()
        .expect("provider");
    let provider = Arc::new(provider);
    let service = QrAuthService::builder(provider.provider())
        .insecure_dev_cookies()
        .limits(Limits::unlimited())
        .build()
        .expect("service");
    let served = qrauth_test_support::serve::qrauth_app(kind, listener, service).await;
    Server {
        base,
        provider,
        _served: served,
    }
}

/// The desktop browser: keeps its binding cookie by hand.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: String,
    pub qrcode_id: String,
    /// The QR's text: the confirm page with the id and the rotating QR's scan token.
    pub qrcode_content: String,
}

impl Browser {
    pub async fn start(base: &str) -> Browser {
        let http = http();
        let r = http
            .post(format!("{base}/qrcode"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("generate");
        assert_eq!(r.status(), 201);
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.contains("qrauth_bind="))
            .and_then(|v| v.split(';').next())
            .expect("binding cookie")
            .to_owned();
        let body: Value = r.json().await.expect("json");
        let qrcode_id = body["qrcodeId"].as_str().expect("qrcodeId").to_owned();
        let qrcode_content = body["qrcodeContent"]
            .as_str()
            .expect("qrcodeContent")
            .to_owned();
        assert!(
            body["qrcodeContent"]
                .as_str()
                .is_some_and(|c| c.contains("/m/confirm?qrcodeId=")),
            "{body}"
        );
        Browser {
            http,
            base: base.to_owned(),
            cookie,
            qrcode_id,
            qrcode_content,
        }
    }

    /// The body of the phone's `POST /qrcode/scan` of this browser's QR.
    pub fn scan_body(&self) -> Value {
        qrauth_test_support::screen::scan_body_of(&self.qrcode_content)
    }

    pub async fn status(&self) -> Value {
        let r = self
            .http
            .get(format!(
                "{}/qrcode/status?qrcodeId={}",
                self.base, self.qrcode_id
            ))
            .header("cookie", &self.cookie)
            .send()
            .await
            .expect("status");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }

    pub async fn exchange(&self, ticket: &str) -> Value {
        let r = self
            .http
            .post(format!("{}/qrcode/exchange", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/json")
            .body(json!({ "ticket": ticket }).to_string())
            .send()
            .await
            .expect("exchange");
        assert_eq!(r.status(), 200);
        r.json().await.expect("json")
    }
}

/// A phone call to `/qrcode/<action>` with `Authorization: OpenPlatform <code>`: (status, body).
pub async fn phone(base: &str, action: &str, code: &str, body: Value) -> (u16, Value) {
    let r = http()
        .post(format!("{base}/qrcode/{action}"))
        .header("authorization", format!("OpenPlatform {code}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("phone call");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
