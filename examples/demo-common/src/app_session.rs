//! What the two "application with its own sessions" examples share (`axum-app-session` with
//! `tower-sessions` + `axum-login`, `actix-app-session` with `actix-session`); the recipe is
//! `docs/app-sessions.md`.
//!
//! After the QR login the application's own session is authoritative: qrauth's browser cookies
//! are deleted ([`QrSessions::hand_over_cookies`]) and qrauth's signed-in session stays behind
//! only as the handle that the phone (and [`QrAuthService::revoke_session`]) can end. So the
//! application checks on each request that it is still alive ([`QrSessions::is_signed_in`]),
//! and ends it when the user signs out of the application ([`QrSessions::sign_out`]).

use std::sync::Arc;
use std::time::Duration;

use qrauth_core::store::{MemoryStore, SessionStore, SignedInStore};
use qrauth_core::{Claims, Lifetimes, QrAuthService, Result, SessionId, SharedClock, SystemClock};
use serde::{Deserialize, Serialize};

use crate::escape_html;

/// The login page of the app-session examples: the QR widget, and once the login is
/// confirmed, `POST /login/qr` to move it into the application's session, then `/me`.
pub const APP_LOGIN_PAGE: &str = include_str!("app_login.html");

/// How long an application session lives without a request (the examples' own idle timeout).
pub const APP_IDLE_TIMEOUT: Duration = Duration::from_secs(7 * 86_400);

/// What the application's session remembers of a QR login (both examples store it as is).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QrLogin {
    /// qrauth's signed-in session (`sid`): checked on each request, revoked at sign-out.
    pub sid: String,
    /// The user (`sub`).
    pub subject: String,
    /// The name to greet the user with.
    pub name: String,
}

impl QrLogin {
    /// The login of a verified qrauth token's claims; `None` without a `sid`.
    pub fn from_claims(claims: &Claims) -> Option<Self> {
        let sid = claims.session_id()?;
        let name = ["nickname", "name"]
            .iter()
            .find_map(|k| claims.extra.get(*k).and_then(|v| v.as_str()))
            .unwrap_or(&claims.sub);
        Some(Self {
            sid: sid.as_str().to_owned(),
            subject: claims.sub.clone(),
            name: name.to_owned(),
        })
    }
}

impl std::fmt::Display for QrLogin {
    /// What axum-login records in its traces (the login is its user id): the subject, never
    /// the session handle.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.subject)
    }
}

/// qrauth's side of an application session: the service, and its signed-in sessions' store
/// for the per-request liveness check.
#[derive(Clone)]
pub struct QrSessions {
    service: QrAuthService,
    signed_in: Arc<dyn SignedInStore>,
    clock: SharedClock,
}

impl std::fmt::Debug for QrSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QrSessions")
    }
}

impl QrSessions {
    /// The demo service for `public_url` (see [`crate::demo_service`]) on a memory store the
    /// application keeps a handle to. The application sessions of the examples live in memory
    /// too, so this is one process; on several replicas both would live in a shared store
    /// (qrauth's `RedisStore`, and the session crate's Redis store).
    ///
    /// Lifetimes: qrauth's idle clock only restarts when qrauth renews a token, which no
    /// longer happens once the application owns the session; so qrauth's idle timeout is set
    /// to the absolute lifetime (30 days) and the application's session does the idle part
    /// ([`APP_IDLE_TIMEOUT`]).
    pub fn new(public_url: &str) -> Result<Self> {
        Self::with_lifetimes(public_url, Lifetimes::default())
    }

    /// [`QrSessions::new`] with other lifetimes (the idle timeout is still set to `signed_in`).
    pub fn with_lifetimes(public_url: &str, lifetimes: Lifetimes) -> Result<Self> {
        let clock: SharedClock = Arc::new(SystemClock);
        let store: Arc<dyn SessionStore> =
            Arc::new(MemoryStore::builder().clock(clock.clone()).build());
        let lifetimes = lifetimes.idle_timeout(lifetimes.signed_in);
        let service = crate::demo_service_builder(public_url, None)?
            .shared_store(store.clone())
            .clock(clock.clone())
            .lifetimes(lifetimes)
            .build()?;
        Ok(Self {
            service,
            signed_in: store.signed_in(),
            clock,
        })
    }

    /// The qrauth service (its routes, `AuthenticatedUser`, the server API).
    pub fn service(&self) -> &QrAuthService {
        &self.service
    }

    /// Whether qrauth's signed-in session `sid` is still alive: not signed out, not revoked
    /// from the phone or by [`QrAuthService::revoke_all_sessions`], not expired. The same
    /// check `AuthenticatedUser` makes, answered from memory (qrauth's Redis store answers it
    /// from a local cache kept current by pub/sub). A malformed `sid` is not alive; a store
    /// that cannot tell is an error (fail closed: do not treat it as signed in).
    pub async fn is_signed_in(&self, sid: &str) -> Result<bool> {
        let Ok(sid) = SessionId::parse(sid) else {
            return Ok(false);
        };
        self.signed_in
            .is_active(&sid, self.clock.now_millis())
            .await
    }

    /// Ends qrauth's signed-in session `sid` (idempotent; a malformed `sid` names nothing).
    pub async fn sign_out(&self, sid: &str) -> Result<()> {
        if let Ok(sid) = SessionId::parse(sid) {
            self.service.revoke_session(&sid).await?;
        }
        Ok(())
    }

    /// The `Set-Cookie` values that delete qrauth's cookies in the browser (qrauth mounted at
    /// the root): the id_token cookie and both copies of the refresh cookie. Sent with the
    /// application's login answer, so that the application's session cookie is the only
    /// credential the browser holds afterwards.
    pub fn hand_over_cookies(&self) -> [String; 3] {
        let cookies = self.service.cookies();
        let [refresh, logout] = cookies.clear_refresh("");
        [cookies.clear_session(), refresh, logout]
    }
}

/// Whether a state-changing request (`POST /login/qr`, `POST /logout`) may be served: a JSON
/// body (a cross-site form cannot send one without a CORS preflight the application never
/// allows) and no `Sec-Fetch-Site` naming another site. Login CSRF and forced sign-out are
/// refused this way without a token.
///
/// ```
/// use demo_common::app_session::is_same_origin_json;
/// assert!(is_same_origin_json(Some("application/json"), Some("same-origin")));
/// assert!(is_same_origin_json(Some("application/json; charset=utf-8"), None));
/// assert!(!is_same_origin_json(Some("application/x-www-form-urlencoded"), None));
/// assert!(!is_same_origin_json(Some("application/json"), Some("cross-site")));
/// assert!(!is_same_origin_json(None, None));
/// ```
pub fn is_same_origin_json(content_type: Option<&str>, sec_fetch_site: Option<&str>) -> bool {
    let json = content_type.is_some_and(|c| {
        c.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    let same_site = sec_fetch_site.is_none_or(|s| matches!(s, "same-origin" | "none"));
    json && same_site
}

/// The application's protected page: who is signed in to the application's session, and a
/// sign-out button (`POST /logout`).
pub fn app_home_page(framework: &str, name: &str, subject: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><link rel="icon" href="data:,">
<title>Signed in — qrauth {framework} app-session example</title><style>{STYLE}</style></head><body><main>
<h1 id="welcome">Signed in as {name}</h1>
<p>This page is served from the application's own session ({framework}); the QR login handed
over to it. Subject: <code>{subject}</code>.</p>
<p>Signing out here also ends the signed-in session on the phone's list of browsers; revoking
this browser on the phone signs it out here at its next request.</p>
<p><button id="logout" type="button">Sign out</button></p></main>
<script>
  document.getElementById('logout').addEventListener('click', function () {{
    fetch('/logout', {{ method: 'POST', credentials: 'same-origin',
      headers: {{ 'Content-Type': 'application/json' }}, body: '{{}}' }})
      .then(function () {{ location.replace('/'); }});
  }});
</script></body></html>"#,
        framework = escape_html(framework),
        name = escape_html(name),
        subject = escape_html(subject),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f5f6f8;margin:0}main{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:12px;box-shadow:0 1px 4px #0002}";
