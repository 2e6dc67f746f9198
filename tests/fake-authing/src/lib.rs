//! A fake Authing server for qrauth's tests and demo: the QR-login API of an Authing
//! application (V3 and V2), the ticket exchange with the three client authentication methods,
//! OIDC discovery and JWKS, fastpass, plus fault switches and helpers that play the Authing app.
//!
//! It listens on `127.0.0.1:0` only.
//!
//! # What it follows
//! Wire facts come from `reference/authing-api.md`, which cites Authing/authing-node-sdk
//! (`src/AuthenticationClient.ts` L1934-2090, `src/models/*.ts`), Authing/authing-golang-sdk
//! (`authentication/authentication_client.go` L1282-1392, `dto/`), authing-js-sdk 4.23.10
//! (`src/lib/authentication/QrCodeAuthenticationClient.ts`: V2 gene L679, check L716, userinfo
//! L742) and the seeds (`authing-exchange-tokenset-with-qrcode-ticket.md`,
//! `authing-gene-fastpass-qrcode-info.md`, `authing-web-sdk-app-qrcode.md`):
//! - V3: `POST /api/v3/gene-qrcode`, `GET /api/v3/check-qrcode-status` and
//!   `/api/v3/get-qrcode-status` (`PENDING SCANNED AUTHORIZED CANCELLED EXPIRED`, `briefUserInfo`
//!   `{displayName, photo}`, `ticket` only when authorized), `POST
//!   /api/v3/exchange-tokenset-with-qrcode-ticket` (`expire_in`, `token_type: "bearer"`,
//!   `refresh_token` only with `offline_access`), app side `POST /api/v3/set-qrcode-status` and
//!   `/api/v3/change-qrcode-status` (`SCAN`, then `CONFIRM` or `CANCEL`), `POST
//!   /api/v3/gene-fastpass-qrcode-info`; envelope `{statusCode, message, apiCode?, requestId?,
//!   data}`, HTTP 200 with the business code.
//! - V2: `POST /api/v2/qrcode/gene` (`random`, `expiresIn: 120`), `GET
//!   /api/v2/qrcode/check?random=` (status 0 / 1 / 2 / 3 / -1, `userInfo {nickname, photo}`),
//!   `POST /api/v2/qrcode/userinfo`, app side `/api/v2/qrcode/{scanned,confirm,cancel}`;
//!   envelope `{code, message, data}`; unknown id → `code 2241 "二维码不存在"`.
//! - OIDC: discovery at `/oidc/.well-known/openid-configuration` (issuer `<base>/oidc`), JWKS at
//!   `/oidc/.well-known/jwks.json` and `/{appId}/oidc/.well-known/jwks.json`; RS256 with `kid`,
//!   or HS256 keyed with the app secret.
//! - Lifetimes: QR 120 s, ticket 300 s (both configurable), ticket single use.
//! - User tokens in `authorization` are accepted raw (node/Go SDK) or with `Bearer `.
//!
//! # Judged by Authing's SDKs
//! `tests/tests/authing_sdk.rs` runs Authing's own Node SDKs against the fake over loopback
//! (pinned in `tests/authing-sdk/package-lock.json`) and asserts on what they parse, so a change
//! of the fake's wire format fails there; [`FakeAuthing::recorded`] then shows what they sent,
//! and qrauth-authing must send the same. What the SDKs send, and the fake accepts:
//! - authing-node-sdk 4.0.1 (V3), `new AuthenticationClient({appId, appSecret, appHost,
//!   tokenEndPointAuthMethod})`: only `x-authing-app-id` (plus `authorization` where below);
//!   `geneQrCode` → `POST /api/v3/gene-qrcode` `{type, autoMergeQrCode?, customData?}`;
//!   `getQrCodeStatus` / `checkQrCodeStatus` (deprecated) → `GET
//!   /api/v3/{get,check}-qrcode-status?qrcodeId=`; `exchangeTokenSetWithQrCodeTicket` → `POST
//!   /api/v3/exchange-tokenset-with-qrcode-ticket` with `{ticket}` and `authorization: Basic
//!   base64(appId:appSecret)` (`client_secret_basic`, added by the SDK), `{ticket, client_id,
//!   client_secret}` (`client_secret_post`: the caller puts them in the body, as the SDK's
//!   documentation says) or `{ticket}` (`none`); `parseIDToken` / `parseAccessToken` fetch `GET
//!   /oidc/.well-known/jwks.json` (not the app-scoped path) and pick the key by `kid`.
//! - authing-js-sdk 4.23.55 (V2), `new AuthenticationClient({appId, appHost, secret})`:
//!   `x-authing-app-id`, `x-authing-request-from: sdk`, `x-authing-sdk-version: js:4.21.8` (its
//!   stale constant), `x-authing-lang: zh-CN`, and **no** `x-authing-userpool-id` (its options
//!   have no pool id); `qrcode.geneCode` → `POST /api/v2/qrcode/gene` `{autoMergeQrCode: false,
//!   scene: "APP_AUTH", params?}` (its other fields, `context extIdpConnId withCustomData`, only
//!   when given); `qrcode.checkStatus` → `GET /api/v2/qrcode/check?random=` (not URL-encoded);
//!   `qrcode.exchangeUserInfo` → `POST /api/v2/qrcode/userinfo` `{ticket}` with **no client
//!   credential** (the `secret` is never sent). It unwraps `data` of a `code: 200` envelope,
//!   polls on `status` 0 / 1 / 2 / 3 / -1, and throws `{code, message, data}` otherwise.
//!
//! # Where it may differ from real Authing (the reference was unsure or silent)
//! - The V3 `apiCode` for an unknown QR (the fake uses 2241, V2's code), for a bad ticket
//!   ([`API_CODE_INVALID_TICKET`]) and for failed client authentication
//!   ([`API_CODE_CLIENT_AUTH`]) are the fake's own choices; so are the messages.
//! - The real HTTP status of business errors is unknown; the fake answers HTTP 200 with the
//!   business code (as the SDKs assume), and 500 only under the `server_error` fault.
//! - The QR payload of V3 QR codes is not documented; the fake (and qrauth) use V2's documented
//!   JSON with `qrcodeId` in place of `random`.
//! - Whether a ticket can be used twice is undocumented; the fake makes it single use.
//! - V2 `userinfo`: Authing's docs say it is for servers only by default ("需要使用用户池密钥
//!   初始化"), but authing-js-sdk 4.x's `exchangeUserInfo` sends the ticket with the app's
//!   headers and no credential at all, so what the real server checks is unknown. The fake asks
//!   for no client authentication there (and ignores any sent); it only wants the call to name
//!   the app or its pool. V3's exchange keeps enforcing the configured [`AuthMethod`].
//! - Whether an `AUTHORIZED` QR later reads `EXPIRED` is unknown; the fake keeps it
//!   `AUTHORIZED`.
//! - Access-token `aud` is assumed to be the app id (qrauth verifies fastpass callers' access
//!   tokens with it).
//! - `briefUserInfo` is also sent with `AUTHORIZED`; the fastpass `scene` value (`FASTPASS`) is
//!   invented (the DTO only says "string").
//! - V2 gene reads custom data from `params` (js SDK 4.23.10); Authing's docs call it
//!   `customeData`.
//! - Headers: V3 gene checks `x-authing-app-id`; V2 gene and userinfo want
//!   `x-authing-app-id` (what the js SDK sends on the app host) **or** `x-authing-userpool-id`
//!   (what the docs show for `core.authing.cn`) to name this app or pool — which of them the
//!   real app host requires is a guess. Other `x-authing-*` headers are ignored, as the
//!   reference suggests.
//! - `check-qrcode-status` is deprecated in the node SDK as "返回格式不规范" (irregular format);
//!   how it differs from `get-qrcode-status` is not documented, so the fake answers both with
//!   the `CheckQRCodeStatusRespDto` shape.
//! - The V2 `userinfo` user carries `id userPoolId email emailVerified username nickname photo
//!   token tokenExpiredAt phone loginsCount signedUp blocked isDeleted`; the js SDK's `User`
//!   type has many more (`arn`, `oauth`, `lastIP`, …), which the fake leaves out.

mod faults;
mod record;
mod routes;
mod state;
mod tokens;

pub use faults::Faults;
pub use record::RecordedRequest;
pub use tokens::IdTokenAlg;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use state::State;

/// Authing's "QR code does not exist" code (V2 `code`; the fake's V3 `apiCode` too).
pub const QRCODE_NOT_FOUND: i64 = 2241;
/// The fake's V3 `apiCode` for an unknown, expired or used ticket.
pub const API_CODE_INVALID_TICKET: i64 = 2242;
/// The fake's V3 `apiCode` for failed client authentication at the ticket exchange.
pub const API_CODE_CLIENT_AUTH: i64 = 2243;

/// How the application authenticates at the V3 ticket exchange (V2's `userinfo` asks for no
/// client authentication: authing-js-sdk 4.x sends none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// `client_id` + `client_secret` in the body (Authing's default).
    #[default]
    ClientSecretPost,
    /// `authorization: Basic base64(id:secret)`.
    ClientSecretBasic,
    /// Nothing (SPA and native apps).
    None,
}

/// The fake application's settings.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// The app id (`aud` of its tokens).
    pub app_id: String,
    /// The app secret (32 hex chars like Authing's; HS256 key).
    pub app_secret: String,
    /// The user pool id.
    pub user_pool_id: String,
    /// The exchange's client authentication.
    pub auth_method: AuthMethod,
    /// The id_token signing algorithm.
    pub id_token_alg: IdTokenAlg,
    /// QR lifetime (Authing: 120 s).
    pub qr_lifetime: Duration,
    /// Ticket lifetime (Authing: 300 s).
    pub ticket_lifetime: Duration,
    /// Token lifetime (`expire_in`, the seed's example: 7200).
    pub token_lifetime: Duration,
    /// Scope granted by the QR ticket exchange.
    pub scope: String,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            app_id: "6342b8537a1b2c047d314109".into(),
            app_secret: "4203d30e5e9150a8b5e26c31c9adce68".into(),
            user_pool_id: "62e221f85f5ac5cc47f2d5b8".into(),
            auth_method: AuthMethod::default(),
            id_token_alg: IdTokenAlg::default(),
            qr_lifetime: Duration::from_secs(120),
            ticket_lifetime: Duration::from_secs(300),
            token_lifetime: Duration::from_secs(7200),
            scope: "openid profile".into(),
        }
    }
}

/// A user of the fake user pool, logged in on the Authing app.
#[derive(Debug, Clone)]
pub struct FakeUser {
    /// User id (`sub`).
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Avatar URL.
    pub photo: String,
    /// Email (must never reach a browser before the exchange).
    pub email: String,
    /// The app's login token (what the Authing app sends in `authorization`).
    pub app_token: String,
}

pub(crate) struct Shared {
    pub base: String,
    pub config: FakeConfig,
    pub keys: tokens::Keys,
    pub state: Mutex<State>,
    pub users: Vec<FakeUser>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub fn issuer(&self) -> String {
        format!("{}/oidc", self.base)
    }

    pub fn user_by_token(&self, authorization: &str) -> Option<&FakeUser> {
        let token = authorization.trim();
        let token = token
            .strip_prefix("Bearer ")
            .or_else(|| token.strip_prefix("bearer "))
            .unwrap_or(token);
        self.users.iter().find(|u| u.app_token == token)
    }
}

/// A running fake Authing server; stops when dropped.
pub struct FakeAuthing {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    http: reqwest::Client,
}

impl Drop for FakeAuthing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for FakeAuthing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAuthing")
            .field("base", &self.shared.base)
            .finish_non_exhaustive()
    }
}

/// Random base64url text of `bytes` random bytes.
pub(crate) fn random_id(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Tests only: fall back to the clock rather than fail.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{t:x}");
    }
    URL_SAFE_NO_PAD.encode(buf)
}

impl FakeAuthing {
    /// Starts a fake with `config` on `127.0.0.1:0`, on the current tokio runtime.
    pub async fn spawn(config: FakeConfig) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let keys = tokens::Keys::generate().map_err(std::io::Error::other)?;
        let users = vec![
            FakeUser {
                id: "6342b85300000000a11ce001".into(),
                display_name: "Alice".into(),
                photo: "https://files.authing.co/authing-console/default-user-avatar.png".into(),
                email: "alice@example.com".into(),
                app_token: random_id(24),
            },
            FakeUser {
                id: "6342b85300000000b0b00002".into(),
                display_name: "Bob".into(),
                photo: "https://files.authing.co/authing-console/bob.png".into(),
                email: "bob@example.com".into(),
                app_token: random_id(24),
            },
        ];
        let shared = Arc::new(Shared {
            base: format!("http://{addr}"),
            config,
            keys,
            state: Mutex::new(State::default()),
            users,
        });
        let app = routes::router(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Self { shared, task, http })
    }

    /// `http://127.0.0.1:PORT`: the app host.
    pub fn base_url(&self) -> &str {
        &self.shared.base
    }

    /// The OIDC issuer: `<base>/oidc`.
    pub fn issuer(&self) -> String {
        self.shared.issuer()
    }

    /// The application's settings.
    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    /// Alice, logged in on the Authing app.
    pub fn alice(&self) -> FakeUser {
        self.shared.users[0].clone()
    }

    /// Bob, logged in on the Authing app.
    pub fn bob(&self) -> FakeUser {
        self.shared.users[1].clone()
    }

    /// Turns fault injection on (replacing the previous faults).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.state().faults = faults;
    }

    /// Turns every fault off.
    pub fn clear_faults(&self) {
        self.shared.state().faults = Faults::default();
    }

    /// Requests received on paths (without query) containing `fragment`, counted before faults
    /// apply.
    pub fn count(&self, fragment: &str) -> u64 {
        self.shared
            .state()
            .counts
            .iter()
            .filter(|(path, _)| path.contains(fragment))
            .map(|(_, n)| n)
            .sum()
    }

    /// Status checks received (V3 check/get-qrcode-status and V2 check).
    pub fn status_checks(&self) -> u64 {
        self.count("/api/v3/check-qrcode-status")
            + self.count("/api/v3/get-qrcode-status")
            + self.count("/api/v2/qrcode/check")
    }

    /// Every request received, `METHOD path?query`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.state().log.clone()
    }

    /// Every request received, in order, as [`RecordedRequest`]s: what the fake's rules read,
    /// without secrets (recorded before faults apply; the last 10 000 at most).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use qrauth_fake_authing::{FakeAuthing, FakeConfig};
    ///
    /// let fake = FakeAuthing::spawn(FakeConfig::default()).await?;
    /// let http = reqwest::Client::builder().no_proxy().build().expect("client");
    /// http.get(format!("{}/api/v3/get-qrcode-status?qrcodeId=x", fake.base_url()))
    ///     .header("authorization", "Basic eDp5")
    ///     .send()
    ///     .await
    ///     .expect("status");
    /// let seen = fake.recorded();
    /// assert_eq!(seen[0].method, "GET");
    /// assert_eq!(seen[0].query, ["qrcodeId"]);
    /// assert_eq!(seen[0].authorization.as_deref(), Some("Basic"));
    /// fake.clear_recorded();
    /// assert!(fake.recorded().is_empty());
    /// # Ok::<_, std::io::Error>(()) }).unwrap();
    /// ```
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.shared.state().recorded.clone()
    }

    /// Forgets the recorded requests (counters and [`requests`](Self::requests) stay).
    pub fn clear_recorded(&self) {
        self.shared.state().recorded.clear();
    }

    /// Every ticket the fake minted (to assert that none reaches a browser).
    pub fn tickets_issued(&self) -> Vec<String> {
        self.shared.state().tickets.keys().cloned().collect()
    }

    /// Every QR id the fake minted.
    pub fn qrcodes_issued(&self) -> Vec<String> {
        self.shared.state().qrs.keys().cloned().collect()
    }

    /// The JSON body of the last gene-qrcode call.
    pub fn last_gene_body(&self) -> Option<Value> {
        self.shared.state().last_gene_body.clone()
    }

    /// The `options` of the last fastpass call.
    pub fn last_fastpass_options(&self) -> Option<Value> {
        self.shared.state().last_fastpass_options.clone()
    }

    /// Forgets a QR code: its status then answers 2241.
    pub fn forget_qrcode(&self, upstream_id: &str) {
        self.shared.state().qrs.remove(upstream_id);
    }

    /// Makes every QR code expire now.
    pub fn expire_qrcodes(&self) {
        let now = tokio::time::Instant::now();
        for qr in self.shared.state().qrs.values_mut() {
            qr.expires = now;
        }
    }

    /// Signs tokens like the application does, with chosen claims (for wrong-`aud`,
    /// wrong-`iss` or expired tokens).
    pub fn sign_id_token(&self, alg: IdTokenAlg, claims: &Value) -> String {
        self.shared
            .keys
            .sign(alg, &self.shared.config.app_secret, claims)
    }

    /// A valid id_token of this application for `user` (as if they had logged in elsewhere).
    pub fn id_token_for(&self, user: &FakeUser) -> String {
        routes::id_token(&self.shared, user, None)
    }

    /// A valid access token of this application for `user` (a logged-in user for fastpass).
    pub fn access_token_for(&self, user: &FakeUser) -> String {
        routes::access_token(&self.shared, user)
    }

    /// The Authing QR id inside a QR payload (V3 `qrcodeId` or V2 `random`).
    pub fn qr_id_of(content: &str) -> Option<String> {
        let payload: Value = serde_json::from_str(content).ok()?;
        payload
            .get("qrcodeId")
            .or_else(|| payload.get("random"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    async fn app_action(&self, content: &str, user: &FakeUser, action: &str) -> Result<(), String> {
        let payload: Value =
            serde_json::from_str(content).map_err(|e| format!("QR payload is not JSON: {e}"))?;
        let request = if let Some(id) = payload.get("qrcodeId").and_then(Value::as_str) {
            self.http
                .post(format!("{}/api/v3/set-qrcode-status", self.shared.base))
                .header("x-authing-app-id", &self.shared.config.app_id)
                .header("authorization", &user.app_token)
                .json(&json!({ "qrcodeId": id, "action": action }))
        } else if let Some(random) = payload.get("random").and_then(Value::as_str) {
            let path = match action {
                "SCAN" => "scanned",
                "CONFIRM" => "confirm",
                _ => "cancel",
            };
            self.http
                .post(format!("{}/api/v2/qrcode/{path}", self.shared.base))
                .header("x-authing-userpool-id", &self.shared.config.user_pool_id)
                .header("authorization", &user.app_token)
                .json(&json!({ "random": random }))
        } else {
            return Err("QR payload names no qrcodeId or random".into());
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let body: Value = response.json().await.map_err(|e| e.to_string())?;
        let code = body
            .get("statusCode")
            .or_else(|| body.get("code"))
            .and_then(Value::as_i64);
        if code == Some(200) {
            Ok(())
        } else {
            Err(body.to_string())
        }
    }

    /// The Authing app scans the QR whose payload is `content` (what the browser's QR encodes).
    pub async fn app_scan(&self, content: &str, user: &FakeUser) -> Result<(), String> {
        self.app_action(content, user, "SCAN").await
    }

    /// The Authing app confirms the login.
    pub async fn app_confirm(&self, content: &str, user: &FakeUser) -> Result<(), String> {
        self.app_action(content, user, "CONFIRM").await
    }

    /// The Authing app cancels the login.
    pub async fn app_cancel(&self, content: &str, user: &FakeUser) -> Result<(), String> {
        self.app_action(content, user, "CANCEL").await
    }

    /// `Basic base64(app_id:app_secret)`.
    pub fn basic_credentials(&self) -> String {
        let c = &self.shared.config;
        format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", c.app_id, c.app_secret))
        )
    }
}
