//! A QR login handed over to the application's own session, on axum with `tower-sessions`
//! (memory store) and `axum-login`. The recipe: `docs/app-sessions.md`.
//!
//! - `POST /login/qr` (the login page calls it once the widget's exchange succeeded) takes
//!   qrauth's [`AuthenticatedUser`], logs the user in to the application's session with
//!   axum-login (the session id is cycled: no fixation), keeps qrauth's `sid` in it and deletes
//!   qrauth's cookies: from here on the application's session cookie is the credential.
//! - Every request checks that qrauth's session is still alive ([`QrBackend::get_user`]): one
//!   revoked from the phone signs the application's session out at its next request.
//! - `POST /logout` ends both: qrauth's session, then the application's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use axum::Json;
use axum::Router;
use axum::http::header::{CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_login::{AuthManagerLayerBuilder, AuthUser, AuthnBackend};
use demo_common::app_session::{APP_IDLE_TIMEOUT, QrLogin, QrSessions, is_same_origin_json};
use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt};
use serde_json::json;
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, MemoryStore, SessionManagerLayer};

/// The application session's cookie.
pub const SESSION_COOKIE: &str = "app_session";

/// Where `/me` asks to come back after the login (kept in the pre-login session).
const NEXT_KEY: &str = "next";

/// axum-login's user: the login, and the "auth hash" that keeps its session valid.
#[derive(Clone, Debug)]
pub struct User {
    /// The QR login.
    pub login: QrLogin,
    /// The `sid` while qrauth's session is alive, empty once it ended (see
    /// [`QrBackend::get_user`]).
    auth_hash: Vec<u8>,
}

impl AuthUser for User {
    type Id = QrLogin;

    fn id(&self) -> QrLogin {
        self.login.clone()
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

/// axum-login's backend: users are QR logins, alive while qrauth's session is.
#[derive(Clone, Debug)]
pub struct QrBackend {
    qr: QrSessions,
}

impl AuthnBackend for QrBackend {
    type User = User;
    /// The QR login `POST /login/qr` read from qrauth's verified token.
    type Credentials = QrLogin;
    type Error = qrauth_core::Error;

    async fn authenticate(&self, login: QrLogin) -> Result<Option<User>, Self::Error> {
        let user = self.get_user(&login).await?;
        Ok(user.filter(|u| !u.auth_hash.is_empty()))
    }

    /// Called by axum-login on every request of a signed-in session. A login whose qrauth
    /// session ended (signed out, revoked from the phone, expired) comes back with an empty
    /// auth hash: it no longer matches the one stored at login, so axum-login flushes the
    /// application's session, as it does for a changed password. A store that cannot tell is
    /// an error (axum-login answers 500): fail closed.
    async fn get_user(&self, login: &QrLogin) -> Result<Option<User>, Self::Error> {
        let alive = self.qr.is_signed_in(&login.sid).await?;
        Ok(Some(User {
            login: login.clone(),
            auth_hash: if alive {
                login.sid.as_bytes().to_vec()
            } else {
                Vec::new()
            },
        }))
    }
}

/// axum-login's session of a request.
pub type AuthSession = axum_login::AuthSession<QrBackend>;

/// The example app: login page at `/`, the application's `/me` (HTML) and `/api/me` (JSON),
/// `POST /login/qr` and `POST /logout`, the demo phone page at `/phone`, and qrauth's routes
/// at the root. `secure_cookies`: `Secure` on the application's session cookie (off only for
/// plain-HTTP development).
pub fn app(qr: QrSessions, secure_cookies: bool) -> Router {
    let idle = Duration::seconds(i64::try_from(APP_IDLE_TIMEOUT.as_secs()).unwrap_or(i64::MAX));
    let sessions = SessionManagerLayer::new(MemoryStore::default())
        .with_name(SESSION_COOKIE)
        .with_secure(secure_cookies)
        .with_same_site(SameSite::Strict)
        .with_expiry(Expiry::OnInactivity(idle));
    let auth = AuthManagerLayerBuilder::new(QrBackend { qr: qr.clone() }, sessions).build();
    let service = qr.service().clone();
    Router::new()
        .route("/", get(login_page))
        .route("/me", get(me_page))
        .route("/api/me", get(me_json))
        .route("/login/qr", post(login_qr))
        .route("/logout", post(logout))
        .layer(auth)
        .route("/phone", get(|| async { Html(demo_common::PHONE_PAGE) }))
        .with_state(qr)
        .qrauth("/", service)
}

async fn login_page(auth: AuthSession) -> Response {
    match auth.user {
        Some(_) => Redirect::to("/me").into_response(),
        None => Html(demo_common::app_session::APP_LOGIN_PAGE).into_response(),
    }
}

async fn me_page(auth: AuthSession) -> Response {
    match auth.user {
        Some(user) => Html(demo_common::app_session::app_home_page(
            "axum",
            &user.login.name,
            &user.login.subject,
        ))
        .into_response(),
        None => {
            // Where to come back to: the pre-login session (its id changes at login).
            if let Err(e) = auth.session.insert(NEXT_KEY, "/me").await {
                return failure(&e);
            }
            Redirect::to("/").into_response()
        }
    }
}

async fn me_json(auth: AuthSession) -> Response {
    match auth.user {
        Some(user) => {
            Json(json!({ "sub": user.login.subject, "name": user.login.name })).into_response()
        }
        None => (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "unauthenticated" })),
        )
            .into_response(),
    }
}

/// `POST /login/qr`: qrauth's verified login becomes the application's session.
async fn login_qr(
    axum::extract::State(qr): axum::extract::State<QrSessions>,
    headers: HeaderMap,
    mut auth: AuthSession,
    user: AuthenticatedUser,
) -> Response {
    if !same_origin_json(&headers) {
        return forbidden();
    }
    let Some(login) = QrLogin::from_claims(&user.claims) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_token", "error_description": "no sid" })),
        )
            .into_response();
    };
    // A browser signed in to the application already (another user, or a second scan): its
    // previous qrauth session ends, or it would stay on the phone's list with nobody using it.
    if let Some(previous) = &auth.user
        && previous.login.sid != login.sid
        && let Err(e) = qr.sign_out(&previous.login.sid).await
    {
        return failure(&e);
    }
    let next: Option<String> = match auth.session.remove(NEXT_KEY).await {
        Ok(next) => next,
        Err(e) => return failure(&e),
    };
    let user = match auth.authenticate(login).await {
        Ok(Some(user)) => user,
        Ok(None) => return unauthenticated(),
        Err(e) => return failure(&e),
    };
    // axum-login cycles the session id only when the session was not signed in yet; cycle it
    // here in every case, so that no session id from before this login stays valid.
    if let Err(e) = auth.session.cycle_id().await {
        return failure(&e);
    }
    if let Err(e) = auth.login(&user).await {
        return failure(&e);
    }
    let mut response =
        Json(json!({ "next": next.unwrap_or_else(|| "/me".into()) })).into_response();
    hand_over(&qr, response.headers_mut());
    response
}

/// `POST /logout`: ends qrauth's session, then the application's. Idempotent.
async fn logout(
    axum::extract::State(qr): axum::extract::State<QrSessions>,
    headers: HeaderMap,
    mut auth: AuthSession,
) -> Response {
    if !same_origin_json(&headers) {
        return forbidden();
    }
    // qrauth's session first: if the store fails, the application's session (and with it the
    // handle to revoke) is kept, and signing out again retries.
    if let Some(user) = &auth.user
        && let Err(e) = qr.sign_out(&user.login.sid).await
    {
        return failure(&e);
    }
    if let Err(e) = auth.logout().await {
        return failure(&e);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    hand_over(&qr, response.headers_mut());
    response
}

/// Deletes qrauth's cookies in the browser.
fn hand_over(qr: &QrSessions, headers: &mut HeaderMap) {
    for cookie in qr.hand_over_cookies() {
        if let Ok(value) = cookie.parse() {
            headers.append(SET_COOKIE, value);
        }
    }
}

fn same_origin_json(headers: &HeaderMap) -> bool {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    is_same_origin_json(header(CONTENT_TYPE.as_str()), header("sec-fetch-site"))
}

fn forbidden() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({ "error": "forbidden", "error_description": "JSON from this origin only" })),
    )
        .into_response()
}

fn unauthenticated() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "unauthenticated" })),
    )
        .into_response()
}

/// A session or qrauth store failure: logged, answered 503 without details.
fn failure(error: &dyn std::error::Error) -> Response {
    tracing::error!(%error, "application session or qrauth store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": "store_unavailable" })),
    )
        .into_response()
}
