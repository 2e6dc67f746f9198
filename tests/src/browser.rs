//! The desktop browser of a login.

use reqwest::header::{COOKIE, USER_AGENT};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use crate::{
    BROWSER_UA, CLIENT_TIMEOUT, Resp, STREAM_TIMEOUT, TestServer, assert_status_shape, client,
};

/// A `POST /qrcode` that succeeded.
#[derive(Debug, Clone)]
pub struct Qr {
    /// The session id.
    pub id: String,
    /// The whole 201 body.
    pub body: Value,
    /// The response.
    pub response: Resp,
}

/// The desktop browser: sends a Chrome-on-Windows User-Agent and keeps its binding cookie by
/// hand (no cookie store), so tests can assert on it, replay it or leave it out.
#[derive(Debug, Clone)]
pub struct Browser {
    client: reqwest::Client,
    stream_client: reqwest::Client,
    base: String,
    binding_name: String,
    /// The binding cookie's value, once a `POST /qrcode` set it.
    pub binding: Option<String>,
    /// Extra `name=value` cookies sent along (e.g. a pre-login session cookie).
    pub extra_cookies: Vec<String>,
}

impl Browser {
    /// A browser for `server`, without cookies.
    pub fn new(server: &TestServer) -> Self {
        Self::at(&server.base, &server.binding_cookie_name())
    }

    /// A browser for the server at `base` whose binding cookie is `binding_name`, without
    /// cookies (for servers the harness did not start).
    pub fn at(base: &str, binding_name: &str) -> Self {
        Self {
            client: client(CLIENT_TIMEOUT),
            stream_client: client(STREAM_TIMEOUT),
            base: base.to_owned(),
            binding_name: binding_name.to_owned(),
            binding: None,
            extra_cookies: Vec::new(),
        }
    }

    /// The same browser (same cookies) talking to the server at `base`.
    pub fn on_base(&self, base: &str) -> Self {
        let mut other = self.clone();
        other.base = base.to_owned();
        other
    }

    /// The same browser state without the binding cookie (another client that only knows ids).
    pub fn without_binding(&self) -> Self {
        let mut other = self.clone();
        other.binding = None;
        other
    }

    /// The same browser (same cookies) talking to another replica.
    pub fn on(&self, server: &TestServer) -> Self {
        let mut other = self.clone();
        other.base = server.base.clone();
        other
    }

    /// The `Cookie` header this browser sends, if any.
    pub fn cookie_header(&self) -> Option<String> {
        let mut cookies: Vec<String> = self
            .binding
            .iter()
            .map(|b| format!("{}={b}", self.binding_name))
            .collect();
        cookies.extend(self.extra_cookies.iter().cloned());
        (!cookies.is_empty()).then(|| cookies.join("; "))
    }

    fn build(&self, client: &reqwest::Client, method: Method, path: &str) -> RequestBuilder {
        let mut request = client
            .request(method, format!("{}{path}", self.base))
            .header(USER_AGENT, BROWSER_UA);
        if let Some(cookie) = self.cookie_header() {
            request = request.header(COOKIE, cookie);
        }
        request
    }

    /// A request with the User-Agent and the cookies, not yet sent.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.build(&self.client, method, path)
    }

    /// `POST /qrcode` with no body; asserts 201 and keeps the binding cookie.
    pub async fn generate(&mut self) -> Qr {
        let response = Resp::send(self.request(Method::POST, "/qrcode")).await;
        self.accept_qr(response)
    }

    /// Checks a `POST /qrcode` answer and keeps its binding cookie.
    #[track_caller]
    pub fn accept_qr(&mut self, response: Resp) -> Qr {
        let body = response.assert_json(201);
        let id = body["qrcodeId"]
            .as_str()
            .unwrap_or_else(|| panic!("qrcodeId in {body}"))
            .to_owned();
        let cookie = response
            .set_cookie(&self.binding_name)
            .unwrap_or_else(|| panic!("{} not set: {:?}", self.binding_name, response.headers));
        assert!(!cookie.value.is_empty(), "binding cookie value");
        self.binding = Some(cookie.value);
        qrauth_test_support::screen::show_answer(&body);
        Qr { id, body, response }
    }

    /// `GET /qrcode/status?qrcodeId=…`, saying which rotation of the QR this browser shows
    /// (and showing the new one the answer carries).
    pub async fn status(&self, id: &str) -> Resp {
        let rotation = qrauth_test_support::screen::rotation_query(id);
        self.status_query(&format!("qrcodeId={id}{rotation}")).await
    }

    /// `GET /qrcode/status?{query}` (long-polls allowed); a new QR the answer carries is shown.
    pub async fn status_query(&self, query: &str) -> Resp {
        let response = Resp::send(self.build(
            &self.stream_client,
            Method::GET,
            &format!("/qrcode/status?{query}"),
        ))
        .await;
        if response.status == 200
            && let Ok(body) = serde_json::from_slice::<Value>(&response.body)
        {
            qrauth_test_support::screen::show_answer(&body);
        }
        response
    }

    /// A bound status poll that must succeed: asserts 200, the allow-listed keys and the
    /// Authing flags agreeing with `status`.
    pub async fn bound_status(&self, id: &str) -> Value {
        let body = self.status(id).await.assert_json(200);
        assert_status_shape(&body);
        body
    }

    /// `GET /qrcode/events?qrcodeId=…`, optionally with `Last-Event-ID`; the response is not read.
    pub async fn events(&self, id: &str, last_event_id: Option<u64>) -> reqwest::Response {
        let mut request = self.build(
            &self.stream_client,
            Method::GET,
            &format!("/qrcode/events?qrcodeId={id}"),
        );
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last.to_string());
        }
        request.send().await.expect("events request failed")
    }

    /// `POST /qrcode/exchange {"ticket": …}`.
    pub async fn exchange(&self, ticket: &str) -> Resp {
        Resp::send(
            self.request(Method::POST, "/qrcode/exchange")
                .json(&json!({ "ticket": ticket })),
        )
        .await
    }

    /// `GET path` with the cookies.
    pub async fn get(&self, path: &str) -> Resp {
        Resp::send(self.request(Method::GET, path)).await
    }
}
