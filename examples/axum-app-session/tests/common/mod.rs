//! The HTTP cases both app-session examples must pass (`axum-app-session` and, through
//! `#[path]`, `actix-app-session`): a real server on loopback, a browser whose cookies the test
//! holds by hand (to plant and replay them), the demo phone over HTTP.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use demo_common::app_session::QrSessions;
use qrauth_test_support::Served;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The application session's cookie, in both examples.
pub const APP_COOKIE: &str = "app_session";

/// A running example app.
pub struct App {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// qrauth's side, for the server API checks.
    pub qr: QrSessions,
    /// Stops the server on drop.
    pub _served: Served,
}

/// One answer: status, the `Set-Cookie` values, the body as JSON (`Null` if it is not).
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub json: Value,
}

impl Answer {
    /// The value `name` is set to, `Some("")` for a deletion, `None` if not mentioned.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (n, v) = pair.split_once('=')?;
            if n.trim() != name {
                return None;
            }
            let deleted = attrs.to_ascii_lowercase().contains("max-age=0");
            Some(if deleted {
                String::new()
            } else {
                v.trim().to_owned()
            })
        })
    }
}

/// A browser: its cookies by name (paths ignored), updated from every answer.
#[derive(Default, Clone)]
pub struct Browser {
    pub cookies: BTreeMap<String, String>,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

impl Browser {
    /// A browser that holds only the application's session cookie `value`.
    pub fn with_app_cookie(value: &str) -> Self {
        let mut b = Self::default();
        b.cookies.insert(APP_COOKIE.into(), value.into());
        b
    }

    /// The application session cookie's value.
    pub fn app_cookie(&self) -> Option<String> {
        self.cookies.get(APP_COOKIE).cloned()
    }

    /// Sends a request with the cookies; JSON `body` with its content type if given.
    pub async fn send(
        &mut self,
        app: &App,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = client().request(method, format!("{}{path}", app.base));
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(COOKIE, jar.join("; "));
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request to the example app");
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let text = response.text().await.expect("response body");
        let answer = Answer {
            status,
            location,
            set_cookies,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
        };
        let names: Vec<String> = answer
            .set_cookies
            .iter()
            .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim().to_owned()))
            .collect();
        for name in names {
            match answer.cookie(&name) {
                Some(v) if !v.is_empty() => {
                    self.cookies.insert(name, v);
                }
                _ => {
                    self.cookies.remove(&name);
                }
            }
        }
        answer
    }

    pub async fn get(&mut self, app: &App, path: &str) -> Answer {
        self.send(app, Method::GET, path, None, &[]).await
    }

    /// `POST path` with `{}` as the page's `fetch` sends it.
    pub async fn post_json(&mut self, app: &App, path: &str) -> Answer {
        self.send(
            app,
            Method::POST,
            path,
            Some(&json!({})),
            &[("sec-fetch-site", "same-origin")],
        )
        .await
    }

    /// The widget's part of a QR login for the demo phone user `user` (`alice`): QR, phone
    /// scan and confirm, status, exchange. Returns the id_token; qrauth's cookies are set.
    pub async fn qr_login(&mut self, app: &App, user: &str) -> String {
        let qr = self
            .send(app, Method::POST, "/qrcode", Some(&json!({})), &[])
            .await;
        assert_eq!(qr.status, 201, "POST /qrcode: {}", qr.json);
        let id = qr.json["qrcodeId"].as_str().expect("qrcodeId").to_owned();
        let phone = Phone::new(user);
        let content = qr.json["qrcodeContent"].as_str().expect("qrcodeContent");
        let scan = phone
            .post(
                app,
                "/qrcode/scan",
                &qrauth_test_support::screen::scan_body_of(content),
            )
            .await;
        assert_eq!(scan.status, 200, "scan: {}", scan.json);
        let token = scan.json["confirmToken"].as_str().expect("confirmToken");
        let body = json!({ "qrcodeId": id, "confirmToken": token });
        let confirm = phone.post(app, "/qrcode/confirm", &body).await;
        assert_eq!(confirm.status, 200, "confirm: {}", confirm.json);
        let status = self
            .get(app, &format!("/qrcode/status?qrcodeId={id}"))
            .await;
        assert_eq!(status.json["status"], "confirmed", "{}", status.json);
        let ticket = status.json["ticket"].as_str().expect("ticket").to_owned();
        let exchange = self
            .send(
                app,
                Method::POST,
                "/qrcode/exchange",
                Some(&json!({ "ticket": ticket })),
                &[],
            )
            .await;
        assert_eq!(exchange.status, 200, "exchange: {}", exchange.json);
        exchange.json["id_token"]
            .as_str()
            .expect("id_token")
            .to_owned()
    }

    /// [`Browser::qr_login`], then `POST /login/qr`: the application's session.
    pub async fn app_login(&mut self, app: &App, user: &str) -> (String, Answer) {
        let id_token = self.qr_login(app, user).await;
        let login = self.post_json(app, "/login/qr").await;
        assert_eq!(login.status, 200, "POST /login/qr: {}", login.json);
        (id_token, login)
    }
}

/// The demo phone of one user, over HTTP.
pub struct Phone {
    authorization: String,
}

impl Phone {
    pub fn new(user: &str) -> Self {
        Self {
            authorization: format!("Bearer demo-{user}"),
        }
    }

    pub async fn post(&self, app: &App, path: &str, body: &Value) -> Answer {
        let mut browser = Browser::default();
        let auth = self.authorization.clone();
        browser
            .send(
                app,
                Method::POST,
                path,
                Some(body),
                &[(AUTHORIZATION.as_str(), &auth)],
            )
            .await
    }

    /// The `sessionId`s of `GET /qrcode/devices`.
    pub async fn devices(&self, app: &App) -> Vec<String> {
        let auth = self.authorization.clone();
        let list = Browser::default()
            .send(
                app,
                Method::GET,
                "/qrcode/devices",
                None,
                &[(AUTHORIZATION.as_str(), &auth)],
            )
            .await;
        assert_eq!(list.status, 200, "devices: {}", list.json);
        list.json["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .map(|s| s["sessionId"].as_str().expect("sessionId").to_owned())
            .collect()
    }
}

/// The `sid` claim of an id_token.
pub fn sid_of(id_token: &str) -> String {
    let payload = id_token.split('.').nth(1).expect("JWT payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON");
    claims["sid"].as_str().expect("sid").to_owned()
}

/// `AuthenticatedUser` on a bare qrauth token: `POST /login/qr` with it as bearer.
async fn bearer_status(app: &App, id_token: &str) -> StatusCode {
    let bearer = format!("Bearer {id_token}");
    Browser::default()
        .send(
            app,
            Method::POST,
            "/login/qr",
            Some(&json!({})),
            &[(AUTHORIZATION.as_str(), &bearer)],
        )
        .await
        .status
}

/// Login: a pre-login session cookie (planted by `/me`) is replaced by a new id, keeps what it
/// held (`next`), and no longer signs anyone in; qrauth's cookies are deleted; qrauth's
/// session is the one the app holds.
pub async fn login_cycles_the_session_id_and_hands_over(app: App) {
    let mut browser = Browser::default();
    let before = browser.get(&app, "/me").await;
    assert!(
        before.status.is_redirection(),
        "anonymous /me: {}",
        before.status
    );
    assert_eq!(before.location.as_deref(), Some("/"));
    let planted = browser.app_cookie().expect("a pre-login session cookie");

    let id_token = browser.qr_login(&app, "alice").await;
    assert!(browser.cookies.contains_key("qrauth_session"));
    let login = browser.post_json(&app, "/login/qr").await;
    assert_eq!(login.status, 200, "{}", login.json);
    assert_eq!(
        login.json["next"], "/me",
        "the pre-login session's data survives"
    );
    let after = login
        .cookie(APP_COOKIE)
        .expect("the login sets the app cookie");
    assert!(!after.is_empty());
    assert_ne!(after, planted, "the session id changes at login");
    // qrauth's cookies are deleted: the app session is the only credential.
    assert_eq!(login.cookie("qrauth_session").as_deref(), Some(""));
    assert_eq!(login.cookie("qrauth_refresh").as_deref(), Some(""));
    assert!(!browser.cookies.contains_key("qrauth_session"));
    assert!(!browser.cookies.contains_key("qrauth_refresh"));

    let me = browser.get(&app, "/api/me").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json["sub"], "user-alice");
    assert_eq!(browser.get(&app, "/me").await.status, 200);
    assert_eq!(
        browser.get(&app, "/").await.location.as_deref(),
        Some("/me")
    );

    // The planted cookie signs nobody in.
    let mut attacker = Browser::with_app_cookie(&planted);
    assert_eq!(attacker.get(&app, "/api/me").await.status, 401);

    let sessions = app
        .qr
        .service()
        .signed_in_sessions("user-alice")
        .await
        .expect("list");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].id.as_str(), sid_of(&id_token));
}

/// A second QR login in a browser signed in already (another user): the session id changes
/// again (axum-login alone would keep it, the user being signed in), the first user's cookie
/// no longer works and the first qrauth session ends.
pub async fn a_second_login_cycles_again_and_ends_the_first(app: App) {
    let mut browser = Browser::default();
    browser.app_login(&app, "alice").await;
    let alice = browser.app_cookie().expect("app cookie");
    browser.app_login(&app, "bob").await;
    let bob = browser.app_cookie().expect("app cookie");
    assert_ne!(alice, bob, "the session id changes at the second login");
    let me = browser.get(&app, "/api/me").await;
    assert_eq!(me.json["sub"], "user-bob");
    assert_eq!(
        Browser::with_app_cookie(&alice)
            .get(&app, "/api/me")
            .await
            .status,
        401
    );
    let service = app.qr.service();
    assert!(
        service
            .signed_in_sessions("user-alice")
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        service
            .signed_in_sessions("user-bob")
            .await
            .expect("list")
            .len(),
        1
    );
}

/// Sign-out ends both: the app session (even a copy of its cookie) is refused, and qrauth's
/// token is 401 on `AuthenticatedUser`.
pub async fn sign_out_ends_both_sessions(app: App) {
    let mut browser = Browser::default();
    let (id_token, _) = browser.app_login(&app, "alice").await;
    let copy = browser.app_cookie().expect("app cookie");
    assert_eq!(
        bearer_status(&app, &id_token).await,
        200,
        "the token works before"
    );
    // (That bearer login made a second app session for the same qrauth session; harmless.)

    let out = browser.post_json(&app, "/logout").await;
    assert_eq!(out.status, 204);
    assert_eq!(
        out.cookie(APP_COOKIE).as_deref(),
        Some(""),
        "the app cookie is deleted"
    );
    assert_eq!(browser.get(&app, "/api/me").await.status, 401);
    let page = browser.get(&app, "/me").await;
    assert_eq!(page.location.as_deref(), Some("/"));

    let mut replay = Browser::with_app_cookie(&copy);
    assert_eq!(
        replay.get(&app, "/api/me").await.status,
        401,
        "a copy of the cookie"
    );
    assert_eq!(bearer_status(&app, &id_token).await, 401, "qrauth's token");
    let sessions = app
        .qr
        .service()
        .signed_in_sessions("user-alice")
        .await
        .expect("list");
    assert!(sessions.is_empty(), "qrauth's session ended: {sessions:?}");

    // Idempotent.
    assert_eq!(browser.post_json(&app, "/logout").await.status, 204);
}

/// The phone revokes one browser: that browser's app session is signed out at its next
/// request, the other browser of the same user stays; revoke all signs out the rest.
pub async fn phone_revocation_signs_the_app_session_out(app: App) {
    let mut first = Browser::default();
    let mut second = Browser::default();
    let (first_token, _) = first.app_login(&app, "alice").await;
    let (second_token, _) = second.app_login(&app, "alice").await;
    let phone = Phone::new("alice");
    let mut devices = phone.devices(&app).await;
    devices.sort();
    let mut expected = vec![sid_of(&first_token), sid_of(&second_token)];
    expected.sort();
    assert_eq!(devices, expected, "the phone lists both app sessions");
    let copy = first.app_cookie().expect("app cookie");

    let revoked = phone
        .post(
            &app,
            "/qrcode/devices/revoke",
            &json!({ "sessionId": sid_of(&first_token) }),
        )
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.json);
    assert_eq!(revoked.json["revoked"], 1);

    let next = first.get(&app, "/api/me").await;
    assert_eq!(next.status, 401, "signed out at the next request");
    assert!(first.app_cookie().is_none(), "and its app session is gone");
    assert_eq!(
        Browser::with_app_cookie(&copy)
            .get(&app, "/api/me")
            .await
            .status,
        401
    );
    assert_eq!(
        second.get(&app, "/api/me").await.status,
        200,
        "the other browser"
    );

    let all = phone
        .post(&app, "/qrcode/devices/revoke", &json!({ "all": true }))
        .await;
    assert_eq!(all.status, 200);
    assert_eq!(second.get(&app, "/api/me").await.status, 401);
    assert!(phone.devices(&app).await.is_empty());
}

/// Login and sign-out refuse what a cross-site page could send; a refused sign-out leaves the
/// session alone.
pub async fn cross_site_requests_are_refused(app: App) {
    let mut browser = Browser::default();
    browser.qr_login(&app, "alice").await;
    let form = browser
        .send(
            &app,
            Method::POST,
            "/login/qr",
            None,
            &[(CONTENT_TYPE.as_str(), "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(form.status, 403);
    let cross = browser
        .send(
            &app,
            Method::POST,
            "/login/qr",
            Some(&json!({})),
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status, 403);
    assert!(
        browser.app_cookie().is_none(),
        "no app session from refused logins"
    );

    let login = browser.post_json(&app, "/login/qr").await;
    assert_eq!(login.status, 200);
    let cross_logout = browser
        .send(
            &app,
            Method::POST,
            "/logout",
            Some(&json!({})),
            &[("sec-fetch-site", "same-site")],
        )
        .await;
    assert_eq!(cross_logout.status, 403);
    assert_eq!(
        browser.get(&app, "/api/me").await.status,
        200,
        "still signed in"
    );
    // Without qrauth's cookies (handed over) and without a token: 401.
    let mut anonymous = Browser::default();
    assert_eq!(anonymous.post_json(&app, "/login/qr").await.status, 401);
}

/// Defines one `#[tokio::test]` per case above, each on a fresh app from `$start`.
macro_rules! app_session_cases {
    ($start:path) => {
        app_session_cases!($start;
            login_cycles_the_session_id_and_hands_over,
            a_second_login_cycles_again_and_ends_the_first,
            sign_out_ends_both_sessions,
            phone_revocation_signs_the_app_session_out,
            cross_site_requests_are_refused,
        );
    };
    ($start:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let app = $start().await;
                let run = common::$case(app);
                tokio::time::timeout(std::time::Duration::from_secs(60), run)
                    .await
                    .unwrap_or_else(|_| panic!("{} did not finish in 60 s", stringify!($case)));
            }
        )+
    };
}
