//! A QR login handed over to the application's own session, on actix-web with
//! `actix-session` (`CookieSessionStore`: the session state lives in a private, encrypted
//! cookie). The recipe: `docs/app-sessions.md`.
//!
//! - `POST /login/qr` (the login page calls it once the widget's exchange succeeded) takes
//!   qrauth's [`AuthenticatedUser`], [renews](Session::renew) the application's session (no
//!   fixation), keeps the login with qrauth's `sid` in it and deletes qrauth's cookies: from here
//!   on the application's session cookie is the credential.
//! - [`SignedIn`], the extractor of the protected handlers, checks on each request that qrauth's
//!   session is still alive: one revoked from the phone [purges](Session::purge) the
//!   application's session at its next request. With a cookie store this check is also what
//!   makes sign-out final: a copy of the cookie taken before sign-out still decrypts, but names
//!   a revoked `sid`.
//! - `POST /logout` ends both: qrauth's session, then the application's.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::pin::Pin;

use actix_session::config::{PersistentSession, TtlExtensionPolicy};
use actix_session::storage::CookieSessionStore;
use actix_session::{Session, SessionExt, SessionMiddleware};
use actix_web::cookie::time::Duration;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Payload;
use actix_web::http::header::{CONTENT_TYPE, ContentType, LOCATION, SET_COOKIE};
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use demo_common::app_session::{APP_IDLE_TIMEOUT, QrLogin, QrSessions, is_same_origin_json};
use qrauth_actix::AuthenticatedUser;
use serde_json::json;

/// The application session's cookie.
pub const SESSION_COOKIE: &str = "app_session";

/// The session key of the QR login.
const LOGIN_KEY: &str = "qr_login";

/// Where `/me` asks to come back after the login (kept in the pre-login session).
const NEXT_KEY: &str = "next";

/// The signed-in user of the application's session, if any: its QR login, checked against
/// qrauth on each request. A login whose qrauth session ended (signed out, revoked from the
/// phone, expired) purges the application's session and is `None`. A store that cannot tell
/// is a 503 (fail closed).
#[derive(Debug, Clone)]
pub struct SignedIn(pub Option<QrLogin>);

impl FromRequest for SignedIn {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = request.get_session();
        let qr = request.app_data::<web::Data<QrSessions>>().cloned();
        Box::pin(async move {
            let Some(qr) = qr else {
                return Err(actix_web::error::ErrorInternalServerError(
                    "QrSessions missing from app data",
                ));
            };
            signed_in(&qr, &session).await.map(SignedIn)
        })
    }
}

async fn signed_in(qr: &QrSessions, session: &Session) -> actix_web::Result<Option<QrLogin>> {
    let login = match session.get::<QrLogin>(LOGIN_KEY) {
        Ok(login) => login,
        // State this version cannot read: start over.
        Err(_) => {
            session.purge();
            return Ok(None);
        }
    };
    let Some(login) = login else {
        return Ok(None);
    };
    match qr.is_signed_in(&login.sid).await {
        Ok(true) => Ok(Some(login)),
        Ok(false) => {
            session.purge();
            Ok(None)
        }
        Err(e) => Err(unavailable(&e)),
    }
}

/// The application's session middleware: `CookieSessionStore`, the cookie encrypted with
/// `key` (give every worker and replica the same key), `Secure` as `secure`, `SameSite=Strict`,
/// ending after [`APP_IDLE_TIMEOUT`] without a request.
pub fn session_middleware(key: Key, secure: bool) -> SessionMiddleware<CookieSessionStore> {
    let idle = Duration::seconds(i64::try_from(APP_IDLE_TIMEOUT.as_secs()).unwrap_or(i64::MAX));
    SessionMiddleware::builder(CookieSessionStore::default(), key)
        .cookie_name(SESSION_COOKIE.to_owned())
        .cookie_secure(secure)
        .cookie_same_site(SameSite::Strict)
        .session_lifecycle(
            PersistentSession::default()
                .session_ttl(idle)
                .session_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
        )
        .build()
}

/// The example app: qrauth's routes at the root, the demo phone page at `/phone`, and in a
/// scope with the session middleware the login page at `/`, the application's `/me` (HTML)
/// and `/api/me` (JSON), `POST /login/qr` and `POST /logout`. `key`: the session cookie's
/// encryption key; `secure_cookies`: `Secure` on it (off only for plain-HTTP development).
pub fn configure(
    qr: QrSessions,
    key: Key,
    secure_cookies: bool,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |config| {
        config
            .app_data(web::Data::new(qr.clone()))
            .route(
                "/phone",
                web::get().to(|| async { html(demo_common::PHONE_PAGE.to_owned()) }),
            )
            .configure(qrauth_actix::configure(qr.service().clone()))
            // Registered last: an empty-prefix scope matches every path left.
            .service(
                web::scope("")
                    .wrap(session_middleware(key.clone(), secure_cookies))
                    .route("/", web::get().to(login_page))
                    .route("/me", web::get().to(me_page))
                    .route("/api/me", web::get().to(me_json))
                    .route("/login/qr", web::post().to(login_qr))
                    .route("/logout", web::post().to(logout)),
            );
    }
}

async fn login_page(SignedIn(login): SignedIn) -> HttpResponse {
    match login {
        Some(_) => see_other("/me"),
        None => html(demo_common::app_session::APP_LOGIN_PAGE.to_owned()),
    }
}

async fn me_page(SignedIn(login): SignedIn, session: Session) -> actix_web::Result<HttpResponse> {
    Ok(match login {
        Some(login) => html(demo_common::app_session::app_home_page(
            "actix-web",
            &login.name,
            &login.subject,
        )),
        None => {
            // Where to come back to: the pre-login session (renewed at login).
            session
                .insert(NEXT_KEY, "/me")
                .map_err(|e| unavailable(&e))?;
            see_other("/")
        }
    })
}

async fn me_json(SignedIn(login): SignedIn) -> HttpResponse {
    match login {
        Some(login) => HttpResponse::Ok().json(json!({ "sub": login.subject, "name": login.name })),
        None => HttpResponse::Unauthorized().json(json!({ "error": "unauthenticated" })),
    }
}

/// `POST /login/qr`: qrauth's verified login becomes the application's session.
async fn login_qr(
    request: HttpRequest,
    qr: web::Data<QrSessions>,
    session: Session,
    user: AuthenticatedUser,
) -> actix_web::Result<HttpResponse> {
    if !same_origin_json(&request) {
        return Ok(forbidden());
    }
    let Some(login) = QrLogin::from_claims(&user.claims) else {
        return Ok(HttpResponse::BadRequest()
            .json(json!({ "error": "invalid_token", "error_description": "no sid" })));
    };
    // A browser signed in to the application already (another user, or a second scan): its
    // previous qrauth session ends, or it would stay on the phone's list with nobody using it.
    if let Ok(Some(previous)) = session.get::<QrLogin>(LOGIN_KEY)
        && previous.sid != login.sid
    {
        qr.sign_out(&previous.sid)
            .await
            .map_err(|e| unavailable(&e))?;
    }
    let next = session.remove_as::<String>(NEXT_KEY).and_then(Result::ok);
    // A new session key: no key from before this login stays valid.
    session.renew();
    session
        .insert(LOGIN_KEY, &login)
        .map_err(|e| unavailable(&e))?;
    let mut response = HttpResponse::Ok();
    hand_over(&qr, &mut response);
    Ok(response.json(json!({ "next": next.unwrap_or_else(|| "/me".into()) })))
}

/// `POST /logout`: ends qrauth's session, then the application's. Idempotent.
async fn logout(
    request: HttpRequest,
    qr: web::Data<QrSessions>,
    session: Session,
) -> actix_web::Result<HttpResponse> {
    if !same_origin_json(&request) {
        return Ok(forbidden());
    }
    // qrauth's session first: if the store fails, the application's session (and with it the
    // handle to revoke) is kept, and signing out again retries.
    if let Ok(Some(login)) = session.get::<QrLogin>(LOGIN_KEY) {
        qr.sign_out(&login.sid).await.map_err(|e| unavailable(&e))?;
    }
    session.purge();
    let mut response = HttpResponse::NoContent();
    hand_over(&qr, &mut response);
    Ok(response.finish())
}

/// Deletes qrauth's cookies in the browser.
fn hand_over(qr: &QrSessions, response: &mut actix_web::HttpResponseBuilder) {
    for cookie in qr.hand_over_cookies() {
        response.append_header((SET_COOKIE, cookie));
    }
}

fn same_origin_json(request: &HttpRequest) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    is_same_origin_json(header(CONTENT_TYPE.as_str()), header("sec-fetch-site"))
}

fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden()
        .json(json!({ "error": "forbidden", "error_description": "JSON from this origin only" }))
}

/// A session or qrauth store failure: logged, answered 503 without details.
fn unavailable(error: &dyn std::error::Error) -> actix_web::Error {
    tracing::error!(%error, "application session or qrauth store failed");
    actix_web::error::InternalError::from_response(
        "store unavailable",
        HttpResponse::ServiceUnavailable().json(json!({ "error": "store_unavailable" })),
    )
    .into()
}

fn html(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .body(body)
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((LOCATION, location))
        .finish()
}
