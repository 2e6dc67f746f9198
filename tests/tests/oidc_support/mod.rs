//! What the device-grant tests share: the OP, qrauth replicas on it, a browser that keeps its
//! binding cookie by hand (`tests/oidc.rs`, `tests/oidc_logs.rs`).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use qrauth_core::store::{MemoryStore, SessionStore};
use qrauth_core::{Lifetimes, Limits, QrAuthService};
use qrauth_oidc::{DeviceGrantProvider, DeviceGrantProviderBuilder};
use qrauth_test_support::oidc_provider::{CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, OpOptions};
use qrauth_test_support::{Framework as Kind, OidcProvider, Served};
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{Value, json};

/// No test may take longer than this.
pub const TEST_DEADLINE: Duration = Duration::from_secs(90);

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("not JSON: {}", self.text))
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text);
        self.json()
    }

    #[track_caller]
    pub fn error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.json()["error"], code, "body: {}", self.text);
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all(SET_COOKIE).iter().find_map(|v| {
            let v = v.to_str().ok()?;
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (n, value) = pair.split_once('=')?;
            (n.trim() == name).then(|| value.trim().to_owned())
        })
    }
}

/// One qrauth server (a replica) on the device-grant provider.
pub struct App {
    pub base: String,
    pub service: QrAuthService,
    pub provider: Arc<DeviceGrantProvider>,
    pub _served: Served,
}

/// The OP, one or more qrauth replicas, and what every browser received.
pub struct Env {
    pub op: OidcProvider,
    pub apps: Vec<App>,
    pub http: reqwest::Client,
    pub seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Default)]
pub struct Browser {
    pub binding: Option<String>,
}

pub fn builder(op: &OidcProvider) -> DeviceGrantProviderBuilder {
    DeviceGrantProvider::builder(op.issuer(), CONFIDENTIAL_CLIENT)
        .client_secret(CONFIDENTIAL_SECRET)
        .timeouts(Duration::from_secs(5), Duration::from_secs(2))
}

pub async fn app(kind: Kind, provider: DeviceGrantProvider, store: Arc<dyn SessionStore>) -> App {
    let provider = Arc::new(provider);
    let service = QrAuthService::builder(provider.clone())
        .shared_store(store)
        .lifetimes(Lifetimes::default().poll_interval(Duration::from_secs(1)))
        .limits(Limits::unlimited())
        .insecure_dev_cookies()
        .build()
        .expect("service");
    let (listener, base) = qrauth_test_support::serve::bind();
    let served = qrauth_test_support::serve::qrauth_app(kind, listener, service.clone()).await;
    App {
        base,
        service,
        provider,
        _served: served,
    }
}

impl Env {
    /// An OP advertising `interval: 1` and one qrauth server of `kind` on it.
    pub async fn new(kind: Kind) -> Self {
        Self::with(kind, OpOptions::default(), |b| b).await
    }

    pub async fn with(
        kind: Kind,
        options: OpOptions,
        tweak: impl FnOnce(DeviceGrantProviderBuilder) -> DeviceGrantProviderBuilder,
    ) -> Self {
        let op = OidcProvider::start_with(&options);
        op.advertise_interval(1).await;
        let provider = tweak(builder(&op)).build().expect("provider");
        let app = app(kind, provider, Arc::new(MemoryStore::new())).await;
        Self::of(op, vec![app])
    }

    pub fn of(op: OidcProvider, apps: Vec<App>) -> Self {
        Self {
            op,
            apps,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            seen: Arc::default(),
        }
    }

    pub fn app(&self, replica: usize) -> &App {
        &self.apps[replica]
    }

    pub async fn send(
        &self,
        browser: &Browser,
        replica: usize,
        request: reqwest::RequestBuilder,
    ) -> Resp {
        let name = self.app(replica).service.cookies().binding_name();
        let request = match &browser.binding {
            Some(b) => request.header(COOKIE, format!("{name}={b}")),
            None => request,
        };
        let response = request.send().await.expect("request to qrauth");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        self.seen.lock().expect("seen").push(text.clone());
        Resp {
            status,
            headers,
            text,
        }
    }

    /// `POST /qrcode` at `replica`; keeps the binding cookie.
    pub async fn generate(&self, browser: &mut Browser, replica: usize) -> Resp {
        let request = self.http.post(format!("{}/qrcode", self.app(replica).base));
        let response = self.send(browser, replica, request).await;
        let name = self.app(replica).service.cookies().binding_name();
        if let Some(cookie) = response.cookie(&name) {
            browser.binding = Some(cookie);
        }
        response
    }

    pub async fn status(
        &self,
        browser: &Browser,
        replica: usize,
        id: &str,
        wait: Option<u64>,
    ) -> Resp {
        let query = match wait {
            Some(w) => format!("qrcodeId={id}&wait={w}"),
            None => format!("qrcodeId={id}"),
        };
        let request = self
            .http
            .get(format!("{}/qrcode/status?{query}", self.app(replica).base));
        self.send(browser, replica, request).await
    }

    /// Long-polls `replica` until the status is `want`.
    pub async fn wait_for(&self, browser: &Browser, replica: usize, id: &str, want: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let response = self.status(browser, replica, id, Some(2)).await;
            if response.status == 200 {
                let body = response.json();
                if body["status"] == want {
                    return body;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last = response.text;
        }
        panic!("status never became {want}; last: {last}");
    }

    /// Long-polls `replica` until the status request fails with `status`/`code`.
    pub async fn wait_for_error(
        &self,
        browser: &Browser,
        replica: usize,
        id: &str,
        status: u16,
        code: &str,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            let response = self.status(browser, replica, id, Some(2)).await;
            if response.status == status {
                response.error(status, code);
                return;
            }
            assert_eq!(response.status, 200, "{}", response.text);
            last = response.text;
        }
        panic!("status never failed with {status} {code}; last: {last}");
    }

    pub async fn exchange(&self, browser: &Browser, replica: usize, ticket: &str) -> Resp {
        let request = self
            .http
            .post(format!("{}/qrcode/exchange", self.app(replica).base))
            .json(&json!({ "ticket": ticket }));
        self.send(browser, replica, request).await
    }

    pub async fn me(&self, replica: usize, cookie: Option<&str>, bearer: Option<&str>) -> Resp {
        let app = self.app(replica);
        let mut request = self.http.get(format!("{}/api/me", app.base));
        if let Some(c) = cookie {
            request = request.header(
                COOKIE,
                format!("{}={c}", app.service.cookies().session_name()),
            );
        }
        if let Some(t) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        self.send(&Browser::default(), replica, request).await
    }

    /// A QR at `replica` for `browser`: (qrcodeId, qrcodeContent, userCode).
    pub async fn qr(&self, browser: &mut Browser, replica: usize) -> (String, String, String) {
        let qr = self.generate(browser, replica).await.ok(201);
        let field = |name: &str| {
            qr[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} in {qr}"))
                .to_owned()
        };
        (field("qrcodeId"), field("qrcodeContent"), field("userCode"))
    }
}

/// Runs `body` under [`TEST_DEADLINE`].
pub async fn bounded(body: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_DEADLINE, body)
        .await
        .expect("test finished in time");
}
