//! A fake 猿之榜 open platform for qrauth's tests and the open-platform demo.
//!
//! It serves, on `127.0.0.1:<random port>` only, the OAuth2 API with the real platform's wire
//! format and quirks:
//!
//! - `POST /OAuth2/token` (a JS SDK code → `open_id`; codes are single use and expire),
//! - `POST /OAuth2/ticket` (server access_token → js_ticket; a new ticket leaves the previous
//!   ones valid for the grace only),
//! - `POST /OAuth2/checkCode` (`expires_in` is an absolute Unix time),
//! - `POST /OAuth2/accessToken` (the server access_token; this path is an assumption, as in
//!   the client),
//!
//! all taking form bodies and answering `{status, message, data}` with `data: []` on errors.
//! [`FakeOpenPlatform`] also plays the platform's app and JS SDK ([`FakeOpenPlatform::mint_code`],
//! [`FakeOpenPlatform::js_sdk_code`], which checks the page's `config` signature), and has
//! switches to be slow, fail with 5xx, answer a given status or send malformed JSON, plus
//! per-endpoint request counters and a clock that tests can move forward.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Form, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use qrauth_core::{Clock, ManualClock};
use serde::Deserialize;
use serde_json::{Value, json};

/// Path of the (undocumented, assumed) server access_token endpoint.
pub const ACCESS_TOKEN_PATH: &str = "/OAuth2/accessToken";

/// The fake's settings.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The registered app id.
    pub app_id: String,
    /// The app's secret.
    pub secret: String,
    /// Lifetime of server access_tokens, seconds.
    pub access_token_ttl: u64,
    /// Lifetime of js_tickets, seconds.
    pub ticket_ttl: u64,
    /// Lifetime of JS SDK codes, seconds.
    pub code_ttl: u64,
    /// How long the previous js_tickets stay valid after a new one is fetched, seconds.
    pub ticket_grace: u64,
    /// The clock the fake reads instead of the system's (e.g. the one the code under test
    /// reads, so that one `advance` moves both); [`FakeOpenPlatform::advance`] still adds to it.
    pub clock: Option<ManualClock>,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            app_id: "fake-app".to_owned(),
            secret: "fake-secret".to_owned(),
            access_token_ttl: 7200,
            ticket_ttl: 7200,
            code_ttl: 300,
            ticket_grace: 600,
            clock: None,
        }
    }
}

/// An endpoint of the fake, for faults and counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/OAuth2/token`.
    Token,
    /// `/OAuth2/ticket`.
    Ticket,
    /// `/OAuth2/checkCode`.
    CheckCode,
    /// The server access_token endpoint.
    AccessToken,
}

/// What an endpoint does instead of (or before) its normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Wait this long, then answer normally.
    Slow(Duration),
    /// HTTP 500 with an HTML body.
    ServerError,
    /// `{"status": "<n>", "message": "forced by the test", "data": []}`.
    Status(u32),
    /// A truncated JSON body with HTTP 200.
    Malformed,
    /// `{"status": "2000", "message": "ok", "data": []}`: success without data.
    EmptyData,
}

/// How leaf values are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// As the seed's examples: `/OAuth2/token` numbers, other `status` strings.
    #[default]
    Seed,
    /// Every leaf a string (the platform's specification).
    Strings,
    /// Every numeric leaf a number.
    Numbers,
}

/// A user's standing towards the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserState {
    /// Added the app, allowed.
    #[default]
    Ok,
    /// Has not added the app: `4104`.
    NotAdded,
    /// No permission: `4103`.
    NoPermission,
}

/// Requests served per endpoint (faulted ones included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// `/OAuth2/token`.
    pub token: u64,
    /// `/OAuth2/ticket`.
    pub ticket: u64,
    /// `/OAuth2/checkCode`.
    pub check_code: u64,
    /// The server access_token endpoint.
    pub access_token: u64,
}

/// The JS SDK `config` a page passes (as qrauth-open-platform's `JsSdkConfig` serializes it).
#[derive(Debug, Clone, Deserialize)]
pub struct PageConfig {
    /// The app id.
    pub app_id: String,
    /// Unix seconds.
    pub timestamp: u64,
    /// The nonce.
    pub nonce_str: String,
    /// The signature.
    pub signature: String,
}

#[derive(Default)]
struct Inner {
    clock_offset: u64,
    style: Style,
    codes: HashMap<String, (String, u64)>,
    access_tokens: HashMap<String, u64>,
    tickets: HashMap<String, u64>,
    user_tokens: HashMap<(String, String), u64>,
    users: HashMap<String, UserState>,
    faults: HashMap<Endpoint, Fault>,
}

struct Shared {
    config: FakeConfig,
    inner: Mutex<Inner>,
    counters: [AtomicU64; 4],
    serial: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn now(&self) -> u64 {
        let real = match &self.config.clock {
            Some(clock) => clock.now_secs(),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        real + self.lock().clock_offset
    }

    fn random(&self, prefix: &str) -> String {
        let mut buf = [0u8; 16];
        // The fake's values need only be unique; fall back to the serial if the RNG fails.
        let _ = aws_lc_rs::rand::fill(&mut buf);
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{n}-{}", hex(&buf))
    }

    fn secret_ok(&self, secret: Option<&String>) -> bool {
        use subtle::ConstantTimeEq;
        secret.is_some_and(|s| bool::from(s.as_bytes().ct_eq(self.config.secret.as_bytes())))
    }
}

/// A running fake platform. Dropping it stops the server.
pub struct FakeOpenPlatform {
    base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeOpenPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeOpenPlatform")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeOpenPlatform {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOpenPlatform {
    /// Starts the fake with the default settings on a random loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(FakeConfig::default()).await
    }

    /// Starts the fake with `config` on a random loopback port.
    pub async fn start_with(config: FakeConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            config,
            inner: Mutex::new(Inner::default()),
            counters: Default::default(),
            serial: AtomicU64::new(1),
        });
        let app = Router::new()
            .route("/OAuth2/token", post(token))
            .route("/OAuth2/ticket", post(ticket))
            .route("/OAuth2/checkCode", post(check_code))
            .route(ACCESS_TOKEN_PATH, post(access_token))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base_url: format!("http://{addr}"),
            shared,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.shared.config.app_id
    }

    /// The app secret.
    pub fn secret(&self) -> &str {
        &self.shared.config.secret
    }

    /// The request counters.
    pub fn counters(&self) -> Counters {
        let c = &self.shared.counters;
        Counters {
            token: c[0].load(Ordering::SeqCst),
            ticket: c[1].load(Ordering::SeqCst),
            check_code: c[2].load(Ordering::SeqCst),
            access_token: c[3].load(Ordering::SeqCst),
        }
    }

    /// Makes `endpoint` misbehave (or, with `None`, behave again).
    pub fn set_fault(&self, endpoint: Endpoint, fault: Option<Fault>) {
        let mut inner = self.shared.lock();
        match fault {
            Some(f) => inner.faults.insert(endpoint, f),
            None => inner.faults.remove(&endpoint),
        };
    }

    /// How leaf values are written.
    pub fn set_style(&self, style: Style) {
        self.shared.lock().style = style;
    }

    /// Sets a user's standing (default [`UserState::Ok`]).
    pub fn set_user(&self, open_id: &str, state: UserState) {
        self.shared.lock().users.insert(open_id.to_owned(), state);
    }

    /// Moves the fake's clock forward.
    pub fn advance(&self, by: Duration) {
        self.shared.lock().clock_offset += by.as_secs();
    }

    /// Revokes every server access_token (the next ticket request with one gets `4102`).
    pub fn revoke_access_tokens(&self) {
        self.shared.lock().access_tokens.clear();
    }

    /// Whether `ticket` is a currently valid js_ticket.
    pub fn ticket_is_valid(&self, ticket: &str) -> bool {
        let now = self.shared.now();
        self.shared
            .lock()
            .tickets
            .get(ticket)
            .is_some_and(|exp| *exp > now)
    }

    /// Plays the platform's app: a fresh single-use code for `open_id`.
    pub fn mint_code(&self, open_id: &str) -> String {
        let code = self.shared.random("code-");
        let exp = self.shared.now() + self.shared.config.code_ttl;
        self.shared
            .lock()
            .codes
            .insert(code.clone(), (open_id.to_owned(), exp));
        code
    }

    /// Plays the JS SDK inside the platform's app: checks the page's `config` (app id and
    /// signature against every valid js_ticket, URL cut at `?`/`#` and trailing `/`), then
    /// returns a code for `open_id`.
    pub fn js_sdk_code(
        &self,
        open_id: &str,
        page_url: &str,
        config: &PageConfig,
    ) -> Result<String, String> {
        if config.app_id != self.shared.config.app_id {
            return Err("config: unknown app_id".to_owned());
        }
        let now = self.shared.now();
        let valid: Vec<String> = self
            .shared
            .lock()
            .tickets
            .iter()
            .filter(|(_, exp)| **exp > now)
            .map(|(t, _)| t.clone())
            .collect();
        let url = {
            let cut = page_url.split(['?', '#']).next().unwrap_or("");
            cut.trim_end_matches('/')
        };
        let signed = valid.iter().any(|ticket| {
            let input = format!(
                "js_ticket={ticket}&nonce_str={}&timestamp={}&url={url}",
                config.nonce_str, config.timestamp
            );
            let digest = aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
                input.as_bytes(),
            );
            hex(digest.as_ref()) == config.signature
        });
        if !signed {
            return Err("config: invalid signature".to_owned());
        }
        Ok(self.mint_code(open_id))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type FormMap = Form<HashMap<String, String>>;

/// Runs the endpoint's fault, if any: `Some(response)` replaces the normal answer.
async fn fault(shared: &Shared, endpoint: Endpoint) -> Option<Response> {
    let index = match endpoint {
        Endpoint::Token => 0,
        Endpoint::Ticket => 1,
        Endpoint::CheckCode => 2,
        Endpoint::AccessToken => 3,
    };
    shared.counters[index].fetch_add(1, Ordering::SeqCst);
    let fault = shared.lock().faults.get(&endpoint).cloned();
    match fault? {
        Fault::Slow(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::ServerError => Some(
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>502 Bad Gateway</body></html>",
            )
                .into_response(),
        ),
        Fault::Status(n) => Some(error(shared, n, "forced by the test")),
        Fault::Malformed => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status": "2000", "message": "ok", "data": {"#,
            )
                .into_response(),
        ),
        Fault::EmptyData => {
            Some(Json(json!({"status": "2000", "message": "ok", "data": []})).into_response())
        }
    }
}

fn status_value(style: Style, status: u32, numeric_in_seed: bool) -> Value {
    match style {
        Style::Numbers => json!(status),
        Style::Strings => json!(status.to_string()),
        Style::Seed if numeric_in_seed => json!(status),
        Style::Seed => json!(status.to_string()),
    }
}

fn number(style: Style, n: u64) -> Value {
    match style {
        Style::Strings => json!(n.to_string()),
        _ => json!(n),
    }
}

fn error(shared: &Shared, status: u32, message: &str) -> Response {
    let style = shared.lock().style;
    Json(json!({
        "status": status_value(style, status, false),
        "message": message,
        "data": [],
    }))
    .into_response()
}

fn ok(shared: &Shared, data: Value, numeric_in_seed: bool) -> Response {
    let style = shared.lock().style;
    Json(json!({
        "status": status_value(style, 2000, numeric_in_seed),
        "message": "ok",
        "data": data,
    }))
    .into_response()
}

fn app_ok(shared: &Shared, form: &HashMap<String, String>) -> bool {
    form.get("app_id") == Some(&shared.config.app_id)
}

async fn token(State(shared): State<Arc<Shared>>, Form(form): FormMap) -> Response {
    if let Some(r) = fault(&shared, Endpoint::Token).await {
        return r;
    }
    if !app_ok(&shared, &form) || !shared.secret_ok(form.get("secret")) {
        return error(&shared, 4000, "app_id or secret is invalid");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return error(&shared, 4000, "grant_type is invalid");
    }
    let now = shared.now();
    let style = shared.lock().style;
    let code = form.get("code").cloned().unwrap_or_default();
    // Single use: a code is gone after its first presentation.
    let Some((open_id, exp)) = shared.lock().codes.remove(&code) else {
        return error(&shared, 4102, "authorization_code is invalid");
    };
    if exp <= now {
        return error(&shared, 4102, "authorization_code is invalid");
    }
    let user_state = shared
        .lock()
        .users
        .get(&open_id)
        .copied()
        .unwrap_or_default();
    match user_state {
        UserState::Ok => {}
        UserState::NotAdded => return error(&shared, 4104, "user not add app"),
        UserState::NoPermission => return error(&shared, 4103, "no permission"),
    }
    let user_token = shared.random("uat-");
    shared
        .lock()
        .user_tokens
        .insert((open_id.clone(), user_token.clone()), now + 7200);
    let data = json!({
        "open_id": open_id,
        "access_token": user_token,
        "expires_in": number(style, 7200),
        "refresh_token": shared.random("urt-"),
        "scope": "sns_base",
    });
    ok(&shared, data, true)
}

async fn access_token(State(shared): State<Arc<Shared>>, Form(form): FormMap) -> Response {
    if let Some(r) = fault(&shared, Endpoint::AccessToken).await {
        return r;
    }
    if !app_ok(&shared, &form) || !shared.secret_ok(form.get("secret")) {
        return error(&shared, 4000, "app_id or secret is invalid");
    }
    let now = shared.now();
    let ttl = shared.config.access_token_ttl;
    let token = shared.random("sat-");
    let style = {
        let mut inner = shared.lock();
        inner.access_tokens.insert(token.clone(), now + ttl);
        inner.style
    };
    ok(
        &shared,
        json!({ "access_token": token, "expires_in": number(style, ttl) }),
        false,
    )
}

async fn ticket(State(shared): State<Arc<Shared>>, Form(form): FormMap) -> Response {
    if let Some(r) = fault(&shared, Endpoint::Ticket).await {
        return r;
    }
    if !app_ok(&shared, &form) {
        return error(&shared, 4000, "app_id is invalid");
    }
    if form.get("type").map(String::as_str) != Some("js_ticket") {
        return error(&shared, 4000, "type is invalid");
    }
    let now = shared.now();
    let valid_token = form
        .get("access_token")
        .and_then(|t| shared.lock().access_tokens.get(t).copied())
        .is_some_and(|exp| exp > now);
    if !valid_token {
        return error(&shared, 4102, "server_access_token is invalid");
    }
    let ticket = shared.random("jst-");
    let (grace, ttl) = (shared.config.ticket_grace, shared.config.ticket_ttl);
    let style = {
        let mut inner = shared.lock();
        for exp in inner.tickets.values_mut() {
            if *exp > now {
                *exp = now + grace;
            }
        }
        inner.tickets.insert(ticket.clone(), now + ttl);
        inner.style
    };
    ok(
        &shared,
        json!({ "ticket": ticket, "expires_in": number(style, ttl) }),
        false,
    )
}

async fn check_code(State(shared): State<Arc<Shared>>, Form(form): FormMap) -> Response {
    if let Some(r) = fault(&shared, Endpoint::CheckCode).await {
        return r;
    }
    if !app_ok(&shared, &form) {
        return error(&shared, 4000, "app_id is invalid");
    }
    let code = form.get("code").cloned().unwrap_or_default();
    let now = shared.now();
    let (exp, style) = {
        let inner = shared.lock();
        let exp = match (form.get("type").map(String::as_str), form.get("open_id")) {
            (Some("js_ticket"), _) => inner.tickets.get(&code).copied(),
            (Some("access_token"), None) => inner.access_tokens.get(&code).copied(),
            (Some("access_token"), Some(open_id)) => {
                inner.user_tokens.get(&(open_id.clone(), code)).copied()
            }
            _ => None,
        };
        (exp, inner.style)
    };
    match exp {
        Some(exp) if exp > now => ok(&shared, json!({ "expires_in": number(style, exp) }), false),
        _ => error(&shared, 4102, "code is invalid"),
    }
}
