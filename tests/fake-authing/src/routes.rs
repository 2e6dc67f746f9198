//! The fake's endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::state::{Gen, Qr, QrStatus, TicketRecord};
use crate::{
    API_CODE_CLIENT_AUTH, API_CODE_INVALID_TICKET, AuthMethod, FakeUser, QRCODE_NOT_FOUND, Shared,
    random_id,
};

type S = State<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v3/gene-qrcode", post(v3_gene))
        .route("/api/v3/check-qrcode-status", get(v3_check))
        .route("/api/v3/get-qrcode-status", get(v3_check))
        .route(
            "/api/v3/exchange-tokenset-with-qrcode-ticket",
            post(v3_exchange),
        )
        .route("/api/v3/set-qrcode-status", post(v3_set_status))
        .route("/api/v3/change-qrcode-status", post(v3_change_status))
        .route("/api/v3/gene-fastpass-qrcode-info", post(v3_fastpass))
        .route("/api/v2/qrcode/gene", post(v2_gene))
        .route("/api/v2/qrcode/check", get(v2_check))
        .route("/api/v2/qrcode/userinfo", post(v2_userinfo))
        .route("/api/v2/qrcode/scanned", post(v2_scanned))
        .route("/api/v2/qrcode/confirm", post(v2_confirm))
        .route("/api/v2/qrcode/cancel", post(v2_cancel))
        .route("/oidc/.well-known/openid-configuration", get(discovery))
        .route("/oidc/.well-known/jwks.json", get(jwks))
        .route("/{app_id}/oidc/.well-known/jwks.json", get(app_jwks))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            crate::faults::layer,
        ))
        .with_state(shared)
}

// ---- envelopes ----

fn v3_ok(data: Value) -> Response {
    axum::Json(json!({
        "statusCode": 200, "message": "操作成功", "requestId": random_id(12), "data": data,
    }))
    .into_response()
}

fn v3_err(status_code: i64, api_code: i64, message: &str) -> Response {
    axum::Json(json!({
        "statusCode": status_code, "apiCode": api_code, "message": message,
        "requestId": random_id(12),
    }))
    .into_response()
}

fn v2_ok(message: &str, data: Value) -> Response {
    axum::Json(json!({ "code": 200, "message": message, "data": data })).into_response()
}

fn v2_err(code: i64, message: &str) -> Response {
    axum::Json(json!({ "code": code, "message": message, "data": null })).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn body_json(body: &Bytes) -> Option<Value> {
    if body.is_empty() {
        return Some(json!({}));
    }
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// `2020-11-13T06:23:25.000Z` for Unix time `secs` (UTC; the format of Authing's V2 dates).
fn iso8601(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---- tokens ----

pub(crate) fn id_token(shared: &Shared, user: &FakeUser, nonce: Option<&str>) -> String {
    let now = now_secs();
    let mut claims = json!({
        "sub": user.id, "aud": shared.config.app_id, "iss": shared.issuer(),
        "iat": now, "exp": now + shared.config.token_lifetime.as_secs(),
        "name": user.display_name, "nickname": user.display_name, "picture": user.photo,
        "email": user.email,
    });
    if let (Some(obj), Some(nonce)) = (claims.as_object_mut(), nonce) {
        obj.insert("nonce".into(), json!(nonce));
    }
    shared.keys.sign(
        shared.config.id_token_alg,
        &shared.config.app_secret,
        &claims,
    )
}

pub(crate) fn access_token(shared: &Shared, user: &FakeUser) -> String {
    let now = now_secs();
    let token = shared.keys.sign_rs256(&json!({
        "jti": random_id(12), "sub": user.id, "iat": now,
        "exp": now + shared.config.token_lifetime.as_secs(),
        "scope": shared.config.scope, "iss": shared.issuer(), "aud": shared.config.app_id,
    }));
    shared.state().access_tokens.insert(token.clone());
    token
}

fn token_set(shared: &Shared, user: &FakeUser) -> Value {
    let scope = &shared.config.scope;
    let mut data = json!({
        "scope": scope,
        "access_token": access_token(shared, user),
        "id_token": id_token(shared, user, None),
        "token_type": "bearer",
        "expire_in": shared.config.token_lifetime.as_secs(),
    });
    if scope.split_whitespace().any(|s| s == "offline_access")
        && let Some(obj) = data.as_object_mut()
    {
        obj.insert("refresh_token".into(), json!(random_id(24)));
    }
    data
}

/// Checks the application's client authentication; `Err` is the reason.
fn client_auth(shared: &Shared, headers: &HeaderMap, body: &Value) -> Result<(), &'static str> {
    let c = &shared.config;
    match c.auth_method {
        AuthMethod::None => Ok(()),
        AuthMethod::ClientSecretPost => {
            let id = body.get("client_id").and_then(Value::as_str);
            let secret = body.get("client_secret").and_then(Value::as_str);
            if id == Some(c.app_id.as_str()) && secret == Some(c.app_secret.as_str()) {
                Ok(())
            } else {
                Err("client_secret_post: client_id / client_secret missing or wrong")
            }
        }
        AuthMethod::ClientSecretBasic => {
            use base64::Engine;
            let expected = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", c.app_id, c.app_secret))
            );
            if header(headers, "authorization") == expected {
                Ok(())
            } else {
                Err("client_secret_basic: authorization header missing or wrong")
            }
        }
    }
}

/// Takes a ticket: unknown, expired or used → `None`. Single use.
fn take_ticket(shared: &Shared, ticket: &str) -> Option<usize> {
    let mut state = shared.state();
    let record: &mut TicketRecord = state.tickets.get_mut(ticket)?;
    if record.used || Instant::now() >= record.expires {
        return None;
    }
    record.used = true;
    Some(record.user)
}

// ---- V3 ----

fn new_qr(shared: &Shared, generation: Gen) -> String {
    let id = random_id(18);
    shared.state().qrs.insert(
        id.clone(),
        Qr {
            generation,
            status: QrStatus::Pending,
            user: None,
            ticket: None,
            expires: Instant::now() + shared.config.qr_lifetime,
        },
    );
    id
}

async fn v3_gene(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    if header(&headers, "x-authing-app-id") != shared.config.app_id {
        return v3_err(400, 1001, "应用不存在");
    }
    let Some(body) = body_json(&body) else {
        return v3_err(400, 1002, "请求体不是合法的 JSON");
    };
    match body.get("type").and_then(Value::as_str) {
        Some("MOBILE_APP" | "WECHAT_MINIPROGRAM" | "WECHAT_OFFICIAL_ACCOUNT") => {}
        _ => return v3_err(400, 1003, "type 参数错误"),
    }
    shared.state().last_gene_body = Some(body);
    let id = new_qr(&shared, Gen::V3);
    v3_ok(json!({
        "qrcodeId": id,
        "url": format!("https://files.authing.co/user-contents/qrcode/{}/{id}.png", shared.config.user_pool_id),
    }))
}

/// Authing's view of a QR, with expiry applied.
fn qr_now(shared: &Shared, id: &str, generation: Gen) -> Option<(Qr, bool)> {
    let state = shared.state();
    let qr = state
        .qrs
        .get(id)
        .filter(|q| q.generation == generation)?
        .clone();
    let expired = qr.expired(Instant::now());
    Some((qr, expired))
}

async fn v3_check(State(shared): S, Query(query): Query<HashMap<String, String>>) -> Response {
    let id = query.get("qrcodeId").map(String::as_str).unwrap_or("");
    let Some((qr, expired)) = qr_now(&shared, id, Gen::V3) else {
        return v3_err(404, QRCODE_NOT_FOUND, "二维码不存在");
    };
    let brief = qr.user.map(|u| {
        let user = &shared.users[u];
        json!({ "displayName": user.display_name, "photo": user.photo })
    });
    let mut data = json!({ "status": match (expired, qr.status) {
        (true, _) => "EXPIRED",
        (false, QrStatus::Pending) => "PENDING",
        (false, QrStatus::Scanned) => "SCANNED",
        (false, QrStatus::Authorized) => "AUTHORIZED",
        (false, QrStatus::Cancelled) => "CANCELLED",
    }});
    if let Some(obj) = data.as_object_mut() {
        if let (Some(brief), false) = (brief, expired) {
            obj.insert("briefUserInfo".into(), brief);
        }
        if qr.status == QrStatus::Authorized {
            obj.insert("ticket".into(), json!(qr.ticket));
        }
    }
    v3_ok(data)
}

async fn v3_exchange(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let Some(body) = body_json(&body) else {
        return v3_err(400, 1002, "请求体不是合法的 JSON");
    };
    if let Err(reason) = client_auth(&shared, &headers, &body) {
        return v3_err(401, API_CODE_CLIENT_AUTH, reason);
    }
    let ticket = body.get("ticket").and_then(Value::as_str).unwrap_or("");
    match take_ticket(&shared, ticket) {
        Some(user) => v3_ok(token_set(&shared, &shared.users[user])),
        None => v3_err(
            400,
            API_CODE_INVALID_TICKET,
            "ticket 不存在、已过期或已被使用",
        ),
    }
}

/// The app side: `action` by the user of `authorization` on QR `id`.
fn app_action(
    shared: &Shared,
    authorization: &str,
    id: &str,
    action: &str,
) -> Result<(), (i64, &'static str)> {
    let user = shared
        .user_by_token(authorization)
        .and_then(|u| shared.users.iter().position(|x| x.id == u.id))
        .ok_or((401, "用户未登录"))?;
    let mut state = shared.state();
    let qr = state.qrs.get_mut(id).ok_or((404, "二维码不存在"))?;
    if qr.expired(Instant::now()) {
        return Err((400, "二维码已过期"));
    }
    match (action, qr.status) {
        ("SCAN", QrStatus::Pending) => {
            qr.status = QrStatus::Scanned;
            qr.user = Some(user);
            Ok(())
        }
        ("CONFIRM", QrStatus::Scanned) if qr.user == Some(user) => {
            let ticket = random_id(24);
            qr.status = QrStatus::Authorized;
            qr.ticket = Some(ticket.clone());
            let expires = Instant::now() + shared.config.ticket_lifetime;
            state.tickets.insert(
                ticket,
                TicketRecord {
                    user,
                    expires,
                    used: false,
                },
            );
            Ok(())
        }
        ("CANCEL", QrStatus::Scanned) if qr.user == Some(user) => {
            qr.status = QrStatus::Cancelled;
            Ok(())
        }
        _ => Err((400, "二维码状态不正确")),
    }
}

fn v3_app(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Result<(), (i64, &'static str)> {
    let body = body_json(body).ok_or((400, "请求体不是合法的 JSON"))?;
    let id = body.get("qrcodeId").and_then(Value::as_str).unwrap_or("");
    let action = body.get("action").and_then(Value::as_str).unwrap_or("");
    app_action(shared, header(headers, "authorization"), id, action)
}

async fn v3_set_status(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    match v3_app(&shared, &headers, &body) {
        Ok(()) => v3_ok(json!({ "success": true })),
        Err((404, m)) => v3_err(404, QRCODE_NOT_FOUND, m),
        Err((code, m)) => v3_err(code, 1100, m),
    }
}

async fn v3_change_status(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    match v3_app(&shared, &headers, &body) {
        Ok(()) => axum::Json(json!({ "statusCode": 200, "message": "操作成功" })).into_response(),
        Err((404, m)) => v3_err(404, QRCODE_NOT_FOUND, m),
        Err((code, m)) => v3_err(code, 1100, m),
    }
}

async fn v3_fastpass(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    let raw = header(&headers, "authorization").trim();
    let token = raw.strip_prefix("Bearer ").unwrap_or(raw);
    let known = shared.state().access_tokens.contains(token);
    // Which user: the `sub` of the token the fake issued.
    let user = known
        .then(|| {
            let payload = token.split('.').nth(1)?;
            use base64::Engine;
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .ok()?;
            let claims: Value = serde_json::from_slice(&bytes).ok()?;
            let sub = claims.get("sub")?.as_str()?.to_owned();
            shared.users.iter().find(|u| u.id == sub).cloned()
        })
        .flatten();
    let Some(user) = user else {
        return v3_err(401, 2020, "用户未登录");
    };
    let Some(body) = body_json(&body) else {
        return v3_err(400, 1002, "请求体不是合法的 JSON");
    };
    shared.state().last_fastpass_options = body.get("options").cloned();
    v3_ok(json!({
        "scene": "FASTPASS",
        "qrcodeId": random_id(30),
        "apiHost": shared.base,
        "user": { "id": user.id, "displayName": user.display_name, "photo": user.photo },
        "appId": shared.config.app_id,
        "userpool": { "id": shared.config.user_pool_id, "displayName": "Fake pool", "photo": "" },
    }))
}

// ---- V2 ----

/// Whether a V2 call names this application (`x-authing-app-id`, what authing-js-sdk 4.x
/// sends on the app host) or its user pool (`x-authing-userpool-id`, what Authing's docs show
/// for `core.authing.cn`).
fn names_app_or_pool(shared: &Shared, headers: &HeaderMap) -> bool {
    header(headers, "x-authing-app-id") == shared.config.app_id
        || header(headers, "x-authing-userpool-id") == shared.config.user_pool_id
}

async fn v2_gene(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    if !names_app_or_pool(&shared, &headers) {
        return v2_err(2004, "用户池不存在");
    }
    let Some(body) = body_json(&body) else {
        return v2_err(400, "请求体不是合法的 JSON");
    };
    if body.get("scene").and_then(Value::as_str) != Some("APP_AUTH") {
        return v2_err(400, "scene 参数错误");
    }
    shared.state().last_gene_body = Some(body);
    let random = random_id(22);
    let id = new_qr(&shared, Gen::V2);
    // Re-key under a V2-looking id.
    {
        let mut state = shared.state();
        if let Some(qr) = state.qrs.remove(&id) {
            state.qrs.insert(random.clone(), qr);
        }
    }
    v2_ok(
        "获取二维码成功",
        json!({
            "random": random,
            "expiresIn": shared.config.qr_lifetime.as_secs(),
            "url": format!("https://files.authing.co/user-contentsqrcode/{}/{random}.png", shared.config.user_pool_id),
        }),
    )
}

async fn v2_check(State(shared): S, Query(query): Query<HashMap<String, String>>) -> Response {
    let id = query.get("random").map(String::as_str).unwrap_or("");
    let Some((qr, expired)) = qr_now(&shared, id, Gen::V2) else {
        return v2_err(QRCODE_NOT_FOUND, "二维码不存在");
    };
    let status = match (expired, qr.status) {
        (true, _) => -1,
        (false, QrStatus::Pending) => 0,
        (false, QrStatus::Scanned) => 1,
        (false, QrStatus::Authorized) => 2,
        (false, QrStatus::Cancelled) => 3,
    };
    let user_info = match qr.user {
        Some(u) if !expired => {
            let user = &shared.users[u];
            json!({ "nickname": user.display_name, "photo": user.photo })
        }
        _ => json!({}),
    };
    v2_ok(
        "查询二维码状态成功！",
        json!({
            "random": id, "userInfo": user_info, "status": status,
            "ticket": if qr.status == QrStatus::Authorized { json!(qr.ticket) } else { Value::Null },
            "scannedUserId": qr.user.map(|u| shared.users[u].id.clone()),
        }),
    )
}

/// `POST /api/v2/qrcode/userinfo` `{ticket}`. authing-js-sdk 4.x (`exchangeUserInfo`) sends
/// the ticket with the app's headers and no client credential at all, so none is asked for
/// here (and any sent is ignored); the call must name the app or its pool.
async fn v2_userinfo(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    if !names_app_or_pool(&shared, &headers) {
        return v2_err(2004, "用户池不存在");
    }
    let Some(body) = body_json(&body) else {
        return v2_err(400, "请求体不是合法的 JSON");
    };
    let ticket = body.get("ticket").and_then(Value::as_str).unwrap_or("");
    let Some(user) = take_ticket(&shared, ticket) else {
        return v2_err(400, "ticket 不存在、已过期或已被使用");
    };
    let user = &shared.users[user];
    let token_expired_at = iso8601(now_secs() + shared.config.token_lifetime.as_secs());
    v2_ok(
        "换取用户信息成功",
        json!({
            "id": user.id, "userPoolId": shared.config.user_pool_id, "email": user.email,
            "emailVerified": true, "username": user.display_name.to_lowercase(),
            "nickname": user.display_name, "photo": user.photo, "token": id_token(&shared, user, None),
            "tokenExpiredAt": token_expired_at, "phone": null, "loginsCount": 1,
            "signedUp": "2020-11-13T06:23:25.396Z", "blocked": false, "isDeleted": false,
        }),
    )
}

async fn v2_app(
    shared: Arc<Shared>,
    headers: HeaderMap,
    body: Bytes,
    action: &str,
    status: i64,
    message: &str,
) -> Response {
    let Some(json) = body_json(&body) else {
        return v2_err(400, "请求体不是合法的 JSON");
    };
    let random = json
        .get("random")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    {
        let state = shared.state();
        if state
            .qrs
            .get(&random)
            .is_some_and(|q| q.generation != Gen::V2)
        {
            return v2_err(QRCODE_NOT_FOUND, "二维码不存在");
        }
    }
    match app_action(&shared, header(&headers, "authorization"), &random, action) {
        Ok(()) => v2_ok(
            message,
            json!({ "random": random, "status": status, "description": message }),
        ),
        Err((404, m)) => v2_err(QRCODE_NOT_FOUND, m),
        Err((code, m)) => v2_err(code, m),
    }
}

async fn v2_scanned(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    v2_app(shared, headers, body, "SCAN", 0, "二维码扫描确认成功").await
}

async fn v2_confirm(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    v2_app(shared, headers, body, "CONFIRM", 1, "授权登录成功").await
}

async fn v2_cancel(State(shared): S, headers: HeaderMap, body: Bytes) -> Response {
    v2_app(shared, headers, body, "CANCEL", -1, "取消授权成功").await
}

// ---- OIDC ----

async fn discovery(State(shared): S) -> Response {
    let issuer = shared.issuer();
    axum::Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/me"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{issuer}/session/end"),
        "revocation_endpoint": format!("{issuer}/token/revocation"),
        "introspection_endpoint": format!("{issuer}/token/introspection"),
        "scopes_supported": ["openid", "profile", "email", "phone", "offline_access"],
        "response_types_supported": ["code", "id_token", "code id_token"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "id_token_signing_alg_values_supported": ["RS256", "HS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        "subject_types_supported": ["public"],
    }))
    .into_response()
}

async fn jwks(State(shared): S) -> Response {
    axum::Json(json!({ "keys": [shared.keys.jwk] })).into_response()
}

async fn app_jwks(State(shared): S, Path(app_id): Path<String>) -> Response {
    if app_id != shared.config.app_id {
        return (axum::http::StatusCode::NOT_FOUND, "not found").into_response();
    }
    jwks(State(shared)).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso8601(1_605_248_605), "2020-11-13T06:23:25.000Z");
        assert_eq!(super::iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
    }
}
