//! The phone of a login.

use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use serde_json::{Value, json};

use crate::{CLIENT_TIMEOUT, PHONE_UA, Resp, TestServer, client};

/// The phone app: sends its user's credential in `Authorization` and JSON bodies, with a
/// User-Agent that is not the browser's.
#[derive(Debug, Clone)]
pub struct Phone {
    client: reqwest::Client,
    base: String,
    /// The `Authorization` header value, if any.
    pub authorization: Option<String>,
}

impl Phone {
    /// A phone for `server` with this credential.
    pub fn new(server: &TestServer, authorization: Option<&str>) -> Self {
        Self::at(&server.base, authorization)
    }

    /// A phone for the server at `base` (one the harness did not start).
    pub fn at(base: &str, authorization: Option<&str>) -> Self {
        Self {
            client: client(CLIENT_TIMEOUT),
            base: base.to_owned(),
            authorization: authorization.map(str::to_owned),
        }
    }

    /// A `POST` with the User-Agent and the credential, no body yet.
    pub fn request(&self, path: &str) -> RequestBuilder {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header(USER_AGENT, PHONE_UA);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        request
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        Resp::send(
            self.request(path)
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(body).expect("JSON")),
        )
        .await
    }

    /// `POST /qrcode/scan` of the QR the browser of session `id` shows (see
    /// [`qrauth_test_support::screen`]).
    pub async fn scan(&self, id: &str) -> Resp {
        self.post("/qrcode/scan", &qrauth_test_support::screen::scan_body(id))
            .await
    }

    /// `POST /qrcode/scan` of the QR `content` (one the browser may no longer show).
    pub async fn scan_content(&self, content: &str) -> Resp {
        self.post(
            "/qrcode/scan",
            &qrauth_test_support::screen::scan_body_of(content),
        )
        .await
    }

    /// A scan that must succeed; returns the confirm token and the whole body.
    pub async fn scan_ok(&self, id: &str) -> (String, Value) {
        let body = self.scan(id).await.assert_json(200);
        let token = body["confirmToken"]
            .as_str()
            .unwrap_or_else(|| panic!("confirmToken in {body}"))
            .to_owned();
        (token, body)
    }

    /// `POST /qrcode/confirm`.
    pub async fn confirm(&self, id: &str, token: &str) -> Resp {
        self.post(
            "/qrcode/confirm",
            &json!({ "qrcodeId": id, "confirmToken": token }),
        )
        .await
    }

    /// `POST /qrcode/cancel`.
    pub async fn cancel(&self, id: &str, token: &str) -> Resp {
        self.post(
            "/qrcode/cancel",
            &json!({ "qrcodeId": id, "confirmToken": token }),
        )
        .await
    }

    /// Scan and confirm; asserts both succeed.
    pub async fn scan_and_confirm(&self, id: &str) {
        let (token, _) = self.scan_ok(id).await;
        let body = self.confirm(id, &token).await.assert_json(200);
        assert_eq!(body, json!({ "status": "confirmed" }));
    }
}
