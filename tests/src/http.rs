//! Talking HTTP to a test server: the client, and responses read to the end.

use std::time::Duration;

use reqwest::RequestBuilder;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::Value;

use crate::JSON_CT;

/// A reqwest client with a timeout, no proxy, no redirects and no cookie store.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client")
}

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Resp {
    /// Sends `request` and reads the whole response; panics on a transport error (a reset
    /// connection or a timeout is a failure, never an expected outcome).
    pub async fn send(request: RequestBuilder) -> Resp {
        let response = request.send().await.expect("HTTP request failed");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .expect("reading body failed")
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {}",
                self.status,
                self.text()
            )
        })
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie`, parsed.
    pub fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(SetCookie::parse)
            .collect()
    }

    /// The `Set-Cookie` for cookie `name`.
    pub fn set_cookie(&self, name: &str) -> Option<SetCookie> {
        self.set_cookies().into_iter().find(|c| c.name == name)
    }

    /// Asserts the status and the JSON error body `{error: code, error_description}` with the
    /// JSON content type; returns the body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status} {code}, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(
            self.header("content-type"),
            Some(JSON_CT),
            "error {code} content type"
        );
        let body = self.json();
        assert_eq!(body["error"], code, "error code in {body}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "error_description in {body}"
        );
        body
    }

    /// Asserts the status and a JSON body of any JSON content type (the demo app's own
    /// routes, e.g. `/api/me`, are not bound by qrauth's `charset=utf-8` rule); returns it.
    #[track_caller]
    pub fn assert_app_json(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "JSON content type: {:?}",
            self.headers
        );
        self.json()
    }

    /// Asserts the status and a JSON body with qrauth's content type; returns the body.
    #[track_caller]
    pub fn assert_json(&self, status: u16) -> Value {
        assert_eq!(
            self.status,
            status,
            "expected {status}, got {}: {}",
            self.status,
            self.text()
        );
        assert_eq!(self.header("content-type"), Some(JSON_CT));
        self.json()
    }
}

/// One `Set-Cookie` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// The whole header value.
    pub raw: String,
    /// The cookie name.
    pub name: String,
    /// The cookie value.
    pub value: String,
    /// Attributes in order: (lower-case name, value).
    pub attributes: Vec<(String, Option<String>)>,
}

impl SetCookie {
    /// Parses a `Set-Cookie` value.
    pub fn parse(raw: &str) -> SetCookie {
        let mut parts = raw.split(';');
        let (name, value) = parts
            .next()
            .and_then(|nv| nv.split_once('='))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .unwrap_or_default();
        let attributes = parts
            .map(|a| {
                let a = a.trim();
                match a.split_once('=') {
                    Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim().to_owned())),
                    None => (a.to_ascii_lowercase(), None),
                }
            })
            .collect();
        SetCookie {
            raw: raw.to_owned(),
            name,
            value,
            attributes,
        }
    }

    /// Whether the attribute is present (case-insensitive name).
    pub fn has(&self, attribute: &str) -> bool {
        let attribute = attribute.to_ascii_lowercase();
        self.attributes.iter().any(|(k, _)| *k == attribute)
    }

    /// The attribute's value.
    pub fn attr(&self, attribute: &str) -> Option<&str> {
        let attribute = attribute.to_ascii_lowercase();
        self.attributes
            .iter()
            .find(|(k, _)| *k == attribute)
            .and_then(|(_, v)| v.as_deref())
    }
}
