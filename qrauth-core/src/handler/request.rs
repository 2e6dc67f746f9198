//! Reading requests (JSON bodies, query parameters, headers, cookies) and the guards every
//! route shares: client address, origin check, abuse limits.

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderMap;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use serde::de::DeserializeOwned;

use super::{ApiRequest, MAX_BODY_BYTES, QrAuthService, client_ip, cookies};
use crate::error::{Error, Result};
use crate::secret::{BindingSecret, SecretHash, sha256};

static NO_PEER_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl QrAuthService {
    pub(crate) fn client_ip(&self, request: &ApiRequest) -> Option<IpAddr> {
        client_ip::client_ip(request.peer, &request.headers, &self.inner.trusted_proxies)
    }

    pub(crate) fn binding(&self, headers: &HeaderMap) -> Option<BindingSecret> {
        cookies::read_cookie(headers, &self.inner.cookies.binding_name())
            .and_then(|v| BindingSecret::parse(v).ok())
    }

    pub(crate) fn require_binding(&self, headers: &HeaderMap) -> Result<BindingSecret> {
        self.binding(headers).ok_or(Error::NotBound)
    }

    /// Counts a hit; over the limit is `429 slow_down` with `Retry-After`.
    pub(crate) async fn limit(&self, key: String, limit: u32, window: Duration) -> Result<()> {
        if limit == u32::MAX {
            return Ok(());
        }
        match self.inner.limiter.hit(&key, limit, window).await? {
            None => Ok(()),
            Some(retry_after) => Err(Error::SlowDown { retry_after }),
        }
    }

    /// The network the client is counted in (its IPv4 address, or its IPv6 /64), as seen
    /// through the trusted proxies; `None` when the adapter passed no peer address.
    pub(crate) fn client_network(&self, request: &ApiRequest) -> Option<String> {
        self.client_ip(request).map(client_ip::network)
    }

    /// The key of limits per client: its network (see [`client_network`](Self::client_network)),
    /// never anything the request chooses (a binding, a credential, an id).
    ///
    /// Without a peer address there is no such key. Such requests are NOT pooled into one
    /// bucket: that bucket would be one that any client can exhaust for everyone. Instead the
    /// per-address limits do not apply to them (qrauth's adapters always pass the peer; an
    /// integration that does not is warned once) and the limits keyed on the request's own
    /// values (per binding, per credential, per id) still do.
    pub(crate) fn caller_key(&self, request: &ApiRequest) -> Option<String> {
        let key = self.client_network(request);
        if key.is_none() && !NO_PEER_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                "a request reached qrauth without a peer address: per-address abuse limits \
                 do not apply to such requests (pass ApiRequest::peer)"
            );
        }
        key
    }

    /// Counts a hit on the per-client limit `name` (see [`caller_key`](Self::caller_key)).
    pub(crate) async fn limit_client(
        &self,
        name: &str,
        request: &ApiRequest,
        limit: u32,
        window: Duration,
    ) -> Result<()> {
        match self.caller_key(request) {
            Some(key) => self.limit(format!("{name}:{key}"), limit, window).await,
            None => Ok(()),
        }
    }

    /// Refuses a request a browser sent from a cross-site context (`Sec-Fetch-Site:
    /// cross-site`) or with a foreign `Origin` (see [`check_origin`](Self::check_origin)):
    /// `403 access_denied`. Same-site and same-origin requests, and clients that send neither
    /// header (native apps, older browsers: `SameSite=Lax` keeps their cookies off cross-site
    /// POSTs anyway), pass.
    pub(crate) fn check_not_cross_site(&self, headers: &HeaderMap) -> Result<()> {
        if header_str(headers, "sec-fetch-site")
            .is_some_and(|s| s.eq_ignore_ascii_case("cross-site"))
        {
            return Err(Error::Forbidden("cross-site request refused".into()));
        }
        self.check_origin(headers)
    }

    /// Refuses a request whose `Origin` is foreign (default: not the request's own `Host`).
    /// Requests without `Origin` (native apps) pass.
    pub(crate) fn check_origin(&self, headers: &HeaderMap) -> Result<()> {
        let Some(origin) = header_str(headers, ORIGIN) else {
            return Ok(());
        };
        let allowed = if self.inner.allowed_origins.is_empty() {
            let host = header_str(headers, HOST).unwrap_or("");
            url::Url::parse(origin)
                .ok()
                .and_then(|u| {
                    let h = u.host_str()?.to_owned();
                    Some(match u.port() {
                        Some(p) => format!("{h}:{p}"),
                        None => h,
                    })
                })
                .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host))
        } else {
            self.inner.allowed_origins.iter().any(|a| a == origin)
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden("cross-origin request refused".into()))
        }
    }
}

/// The token of `Authorization: Bearer <token>`, if that is what the header holds.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, AUTHORIZATION)
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
}

/// Hex SHA-256 of a client-supplied value, for limit keys that must not store it in clear.
pub(crate) fn hex_sha256(value: &str) -> String {
    SecretHash::from_bytes(sha256(value.as_bytes())).to_hex()
}

pub(crate) fn header_str(
    headers: &HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn query_param(request: &ApiRequest, name: &str) -> Option<String> {
    let query = request.query.as_deref()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether the request says its body is `application/json` (parameters ignored).
pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    let content_type = header_str(headers, CONTENT_TYPE).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Whether the body is empty (or only whitespace): routes whose body is optional.
pub(crate) fn body_is_empty(request: &ApiRequest) -> bool {
    request.body.iter().all(u8::is_ascii_whitespace)
}

/// Parses a JSON body: `application/json` only, at most 4 KiB, errors that name the field but
/// never echo a value.
pub(crate) fn parse_json<T: DeserializeOwned>(request: &ApiRequest) -> Result<T> {
    if !is_json(&request.headers) {
        return Err(Error::UnsupportedMediaType);
    }
    if request.body.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    serde_json::from_slice(&request.body).map_err(|e| Error::InvalidRequest(json_error(&e)))
}

fn json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            // Name the field, but never echo a value from the body.
            let msg = e.to_string();
            let msg = msg.split(" at line").next().unwrap_or("");
            if msg.starts_with("unknown field") || msg.starts_with("missing field") {
                let field = msg.split(", expected").next().unwrap_or(msg);
                format!("invalid JSON body: {field}")
            } else {
                "invalid JSON body: a field has the wrong type".to_owned()
            }
        }
        Category::Syntax | Category::Eof | Category::Io => "malformed JSON body".to_owned(),
    }
}
