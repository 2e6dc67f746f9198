//! The application's own error responses (`QrAuthServiceBuilder::render_errors`, issue 18), on
//! both adapters: a browser that opens a protected page without a session is sent to the login
//! page, an API client gets the application's JSON with the RFC 6750 challenge still on it, and
//! qrauth's route errors come out as the application's JSON with qrauth's status. Without a
//! renderer nothing changes.
//!
//! Every test runs against the demo app (`spawn`, `/api/me` behind `AuthenticatedUser`, `/me`
//! behind the optional extractor) and, for axum's `RequireAuthenticationLayer` and actix-web's
//! `require_authentication`, a small app of its own.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use qrauth_core::{ApiResponse, ErrorContext, Refused, Route};
use qrauth_tests::{
    CLIENT_TIMEOUT, JSON_CT, Resp, ServerKind, ServerOptions, build_service, client, login, spawn,
};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE};
use serde_json::json;

/// No test may take longer than this, whatever the server does.
const TEST_DEADLINE: Duration = Duration::from_secs(50);

/// What Chrome sends when the user opens a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,\
     image/avif,image/webp,*/*;q=0.8";

/// A bearer token no issuer signed.
const BAD_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.c2lnbmF0dXJl";

/// The application's renderer: browsers that open a protected page go to `/login`; API clients
/// get `{ message, code }`; qrauth's route errors get `{ message, code, method }` with qrauth's
/// status, except the exchange route, whose errors keep qrauth's own body (`None`). `calls`
/// counts the renderings.
fn app_renderer(
    calls: Arc<AtomicUsize>,
) -> impl Fn(&ErrorContext<'_>) -> Option<ApiResponse> + Send + Sync + 'static {
    move |error| {
        calls.fetch_add(1, Ordering::SeqCst);
        match error.refused() {
            Refused::Authentication if error.wants_html() => Some(ApiResponse::redirect("/login")),
            Refused::Authentication => Some(ApiResponse::json(
                error.status(),
                &json!({ "message": "sign in first", "code": error.error().code() }),
            )),
            Refused::Route(Route::Exchange) => None,
            // qrauth's routes (and whatever `Refused` may grow).
            _ => Some(ApiResponse::json(
                error.status(),
                &json!({
                    "message": "QR login failed",
                    "code": error.error().code(),
                    "method": error.method().map(|m| m.as_str()),
                }),
            )),
        }
    }
}

fn options_with_renderer(calls: &Arc<AtomicUsize>) -> ServerOptions {
    ServerOptions::default().render_errors(app_renderer(calls.clone()))
}

/// A top-level navigation to `url`, as a browser sends it.
fn navigate(url: &str) -> reqwest::RequestBuilder {
    client(CLIENT_TIMEOUT)
        .get(url)
        .header(ACCEPT, BROWSER_ACCEPT)
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
}

/// An API call to `url` that asks for JSON.
fn api_call(url: &str) -> reqwest::RequestBuilder {
    client(CLIENT_TIMEOUT)
        .get(url)
        .header(ACCEPT, "application/json")
}

/// The renderer's login redirect: 303 to `/login`, an HTML body linking there, no challenge,
/// never cached.
#[track_caller]
fn assert_login_redirect(response: &Resp, what: &str) {
    assert_eq!(
        response.status,
        303,
        "{what}: expected the login redirect, got {}: {}",
        response.status,
        response.text()
    );
    assert_eq!(response.header("location"), Some("/login"), "{what}");
    assert_eq!(
        response.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{what}"
    );
    assert!(
        response.text().contains(r#"<a href="/login">"#),
        "{what}: HTML body links to the login page: {}",
        response.text()
    );
    assert!(
        response.header("www-authenticate").is_none(),
        "{what}: a login redirect is not a challenge"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"), "{what}");
}

/// The renderer's API refusal: 401, the application's JSON, and qrauth's challenge.
#[track_caller]
fn assert_app_refusal(response: &Resp, challenge_error: bool, what: &str) {
    assert_eq!(
        response.status,
        401,
        "{what}: got {}: {}",
        response.status,
        response.text()
    );
    assert_eq!(response.header("content-type"), Some(JSON_CT), "{what}");
    assert_eq!(
        response.json(),
        json!({ "message": "sign in first", "code": "invalid_token" }),
        "{what}: the application's own JSON"
    );
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: WWW-Authenticate kept: {:?}", response.headers));
    assert!(challenge.starts_with("Bearer "), "{what}: {challenge}");
    assert!(
        challenge.contains(r#"realm="qrauth""#),
        "{what}: {challenge}"
    );
    assert_eq!(
        challenge.contains(r#"error="invalid_token""#),
        challenge_error,
        "{what}: RFC 6750 §3.1 — error=\"invalid_token\" only when a token was sent: {challenge}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"), "{what}");
}

mod cases {
    use super::*;

    /// (a) A browser that opens the protected page without a session, or with a session cookie
    /// that does not verify, is sent to the login page; a `fetch()` from a page is not.
    pub async fn browser_navigation_is_redirected_to_login(kind: ServerKind) {
        let calls = Arc::new(AtomicUsize::new(0));
        let server = spawn(kind, options_with_renderer(&calls)).await;

        let anonymous = Resp::send(navigate(&server.url("/api/me"))).await;
        assert_login_redirect(&anonymous, "anonymous navigation");

        let stale_cookie = format!("{}={BAD_TOKEN}", server.session_cookie_name());
        let stale = Resp::send(navigate(&server.url("/api/me")).header(COOKIE, stale_cookie)).await;
        assert_login_redirect(
            &stale,
            "navigation with a session cookie that does not verify",
        );

        // A script on the page asks for HTML too, but it is not a navigation: JSON, challenge.
        let fetch = Resp::send(
            client(CLIENT_TIMEOUT)
                .get(server.url("/api/me"))
                .header(ACCEPT, "text/html")
                .header("sec-fetch-mode", "cors"),
        )
        .await;
        assert_app_refusal(&fetch, false, "fetch() asking for HTML");
        assert_eq!(calls.load(Ordering::SeqCst), 3, "one rendering per refusal");

        // The optional extractor (`/me`) never renders: anonymous visitors are `None`, and the
        // demo page redirects to its own login at `/`.
        let page = Resp::send(navigate(&server.url("/me"))).await;
        assert_eq!(page.status, 303, "{}", page.text());
        assert_eq!(
            page.header("location"),
            Some("/"),
            "the demo's own redirect"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "optional user: no rendering"
        );

        // A signed-in browser gets the page.
        let (_browser, tokens) = login(&server).await;
        let id_token = tokens["id_token"].as_str().expect("id_token");
        let me = Resp::send(
            navigate(&server.url("/api/me")).header(AUTHORIZATION, format!("Bearer {id_token}")),
        )
        .await
        .assert_app_json(200);
        assert_eq!(me["sub"], "user-alice");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "a signed-in request renders nothing"
        );
    }

    /// (b) An API client gets the application's JSON with qrauth's status, and the RFC 6750
    /// challenge that the application's response did not carry.
    pub async fn api_refusal_is_app_json_with_the_challenge(kind: ServerKind) {
        let calls = Arc::new(AtomicUsize::new(0));
        let server = spawn(kind, options_with_renderer(&calls)).await;

        let bad_token = Resp::send(
            api_call(&server.url("/api/me")).header(AUTHORIZATION, format!("Bearer {BAD_TOKEN}")),
        )
        .await;
        assert_app_refusal(&bad_token, true, "bad bearer token");

        let no_token = Resp::send(api_call(&server.url("/api/me"))).await;
        assert_app_refusal(&no_token, false, "no token");

        // A client that sends no Accept at all is no browser either.
        let bare = Resp::send(
            client(CLIENT_TIMEOUT)
                .get(server.url("/api/me"))
                .header(AUTHORIZATION, format!("Bearer {BAD_TOKEN}")),
        )
        .await;
        assert_app_refusal(&bare, true, "no Accept header");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// (c) qrauth's own route errors: the application's JSON with qrauth's status and headers
    /// (`Allow` of a 405 kept); `None` keeps qrauth's body.
    pub async fn route_errors_are_app_json_with_the_original_status(kind: ServerKind) {
        let calls = Arc::new(AtomicUsize::new(0));
        let server = spawn(kind, options_with_renderer(&calls)).await;
        let mut browser = server.browser();
        let qr = browser.generate().await;

        // Polling without the binding cookie: not_bound, 403, in the application's words.
        let unbound = Resp::send(
            browser
                .without_binding()
                .request(Method::GET, &format!("/qrcode/status?qrcodeId={}", qr.id))
                .header(ACCEPT, "application/json"),
        )
        .await;
        assert_eq!(unbound.status, 403, "{}", unbound.text());
        assert_eq!(unbound.header("content-type"), Some(JSON_CT));
        assert_eq!(
            unbound.json(),
            json!({ "message": "QR login failed", "code": "not_bound", "method": "GET" })
        );
        assert_eq!(unbound.header("cache-control"), Some("no-store"));
        assert_eq!(unbound.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(unbound.header("referrer-policy"), Some("no-referrer"));

        // The wrong method: 405, the application's JSON, and still `Allow: GET`.
        let wrong_method = Resp::send(browser.request(Method::DELETE, "/qrcode/status")).await;
        assert_eq!(wrong_method.status, 405, "{}", wrong_method.text());
        assert_eq!(wrong_method.json()["code"], "method_not_allowed");
        assert_eq!(wrong_method.json()["method"], "DELETE");
        assert_eq!(wrong_method.header("allow"), Some("GET"));

        // The renderer leaves the exchange route alone: qrauth's own error body.
        browser
            .exchange("not-a-ticket")
            .await
            .assert_error(400, "invalid_ticket");

        // A good poll renders nothing.
        browser.bound_status(&qr.id).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "three errors, three renderings"
        );
    }

    /// The control: without a renderer the defaults are unchanged — qrauth's JSON error and the
    /// challenge, for browsers too.
    pub async fn without_a_renderer_the_defaults_hold(kind: ServerKind) {
        let server = spawn(kind, ServerOptions::default()).await;

        let navigation = Resp::send(navigate(&server.url("/api/me"))).await;
        navigation.assert_error(401, "invalid_token");
        assert_eq!(
            navigation.header("www-authenticate"),
            Some(r#"Bearer realm="qrauth""#)
        );
        assert_eq!(navigation.header("cache-control"), Some("no-store"));

        let bad_token = Resp::send(
            api_call(&server.url("/api/me")).header(AUTHORIZATION, format!("Bearer {BAD_TOKEN}")),
        )
        .await;
        bad_token.assert_error(401, "invalid_token");
        assert!(
            bad_token
                .header("www-authenticate")
                .is_some_and(|c| c.starts_with("Bearer ") && c.contains(r#"error="invalid_token""#)),
            "{:?}",
            bad_token.headers
        );

        let mut browser = server.browser();
        let qr = browser.generate().await;
        browser
            .without_binding()
            .status(&qr.id)
            .await
            .assert_error(403, "not_bound");
    }

    /// axum's `RequireAuthenticationLayer` and actix-web's `require_authentication` render
    /// through the same service setting.
    pub async fn require_authentication_renders_too(kind: ServerKind) {
        let calls = Arc::new(AtomicUsize::new(0));
        let (listener, base) = qrauth_test_support::serve::bind();
        let service = build_service(&base, &options_with_renderer(&calls)).await;
        let _served = match kind {
            ServerKind::Axum => {
                use qrauth_axum::{AuthenticatedUser, QrAuthRouterExt, RequireAuthenticationLayer};
                let admin = axum::Router::new()
                    .route(
                        "/admin/stats",
                        axum::routing::get(|user: AuthenticatedUser| async move {
                            user.claims.sub.clone()
                        }),
                    )
                    .layer(RequireAuthenticationLayer::new(service.clone()));
                let app = axum::Router::new()
                    .merge(admin)
                    .qrauth("/", service.clone());
                qrauth_test_support::serve::axum(listener, app)
            }
            ServerKind::Actix => {
                let service = service.clone();
                qrauth_test_support::serve::actix(listener, move |config| {
                    use actix_web::middleware::from_fn;
                    use actix_web::web;
                    use qrauth_actix::{AuthenticatedUser, require_authentication};
                    config
                        .service(
                            web::scope("/admin")
                                .wrap(from_fn(require_authentication))
                                .route(
                                    "/stats",
                                    web::get().to(|user: AuthenticatedUser| async move {
                                        user.claims.sub.clone()
                                    }),
                                ),
                        )
                        .configure(qrauth_actix::configure(service.clone()));
                })
                .await
            }
        };
        let url = format!("{base}/admin/stats");

        let navigation = Resp::send(navigate(&url)).await;
        assert_login_redirect(&navigation, "navigation to a page behind the middleware");

        let api =
            Resp::send(api_call(&url).header(AUTHORIZATION, format!("Bearer {BAD_TOKEN}"))).await;
        assert_app_refusal(&api, true, "API call behind the middleware");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}

/// Runs a test body under [`TEST_DEADLINE`].
async fn bounded(name: &str, body: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("{name} did not finish within {TEST_DEADLINE:?}");
    }
}

/// Expands every case for one adapter.
macro_rules! error_pages_suite {
    (@tests $kind:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::bounded(stringify!($name), super::cases::$name($kind)).await;
            }
        )+
    };
    ($kind:expr) => {
        error_pages_suite!(@tests $kind;
            browser_navigation_is_redirected_to_login,
            api_refusal_is_app_json_with_the_challenge,
            route_errors_are_app_json_with_the_original_status,
            without_a_renderer_the_defaults_hold,
            require_authentication_renders_too,
        );
    };
}

mod axum_adapter {
    use super::ServerKind;
    error_pages_suite!(ServerKind::Axum);
}

mod actix_adapter {
    use super::ServerKind;
    error_pages_suite!(ServerKind::Actix);
}
