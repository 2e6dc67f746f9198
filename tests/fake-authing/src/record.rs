//! What the fake records of every request: the parts its rules look at, never a secret.

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use serde_json::Value;

/// Body fields whose values are recorded as sent: enum-like settings and the app id, never a
/// secret, a ticket, a token or user data.
const PLAIN_FIELDS: [&str; 6] = [
    "type",
    "scene",
    "action",
    "autoMergeQrCode",
    "withCustomData",
    "client_id",
];

/// One request the fake received, reduced to what its rules read (method, path, parameter
/// names, the `x-authing-*` headers, the scheme of `authorization`, the body's field names),
/// so that tests can compare what different clients send without a secret reaching a log.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use qrauth_fake_authing::{FakeAuthing, FakeConfig};
///
/// let fake = FakeAuthing::spawn(FakeConfig::default()).await?;
/// reqwest::Client::builder().no_proxy().build().expect("client")
///     .post(format!("{}/api/v3/gene-qrcode", fake.base_url()))
///     .header("x-authing-app-id", &fake.config().app_id)
///     .json(&serde_json::json!({ "type": "MOBILE_APP" }))
///     .send()
///     .await
///     .expect("gene");
/// let gene = &fake.recorded()[0];
/// assert_eq!(gene.path, "/api/v3/gene-qrcode");
/// assert_eq!(gene.body_fields["type"], "string");
/// assert_eq!(gene.body_values["type"], "MOBILE_APP");
/// assert_eq!(gene.content_type.as_deref(), Some("application/json"));
/// # Ok::<_, std::io::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The names of the query parameters, sorted (values are ids: not recorded).
    pub query: Vec<String>,
    /// Every `x-authing-*` header, name (lower case) → value; none of them carries a secret.
    pub authing_headers: BTreeMap<String, String>,
    /// The scheme of `authorization`: `Basic`, `Bearer`, or `raw` for a bare token; `None`
    /// without the header. The credentials themselves are not recorded.
    pub authorization: Option<String>,
    /// `content-type` without its parameters, lower case.
    pub content_type: Option<String>,
    /// The top-level fields of a JSON or form body: name → JSON type (`string`, `object`,
    /// `boolean`, `number`, `array`, `null`).
    pub body_fields: BTreeMap<String, String>,
    /// The values of the body fields that are plain settings (`type`, `scene`, `action`,
    /// `autoMergeQrCode`, `withCustomData`, `client_id`).
    pub body_values: BTreeMap<String, Value>,
}

impl RecordedRequest {
    pub(crate) fn new(
        method: &str,
        path: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Self {
        let mut query: Vec<String> = query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').map_or(p, |(k, _)| k).to_owned())
            .collect();
        query.sort();
        let authing_headers = headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with("x-authing-"))
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let authorization = headers.get(axum::http::header::AUTHORIZATION).map(|v| {
            match v.to_str().unwrap_or("").trim().split_once(' ') {
                Some((scheme, _)) if scheme.eq_ignore_ascii_case("basic") => "Basic".to_owned(),
                Some((scheme, _)) if scheme.eq_ignore_ascii_case("bearer") => "Bearer".to_owned(),
                Some((scheme, _)) => scheme.to_owned(),
                None => "raw".to_owned(),
            }
        });
        let content_type = headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let fields: Option<serde_json::Map<String, Value>> = if body.is_empty() {
            None
        } else if content_type.as_deref() == Some("application/x-www-form-urlencoded") {
            Some(
                String::from_utf8_lossy(body)
                    .split('&')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap_or((p, ""));
                        (k.to_owned(), Value::String(v.to_owned()))
                    })
                    .collect(),
            )
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            }
        };
        let mut body_fields = BTreeMap::new();
        let mut body_values = BTreeMap::new();
        for (name, value) in fields.unwrap_or_default() {
            let kind = match &value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            if PLAIN_FIELDS.contains(&name.as_str()) {
                body_values.insert(name.clone(), value);
            }
            body_fields.insert(name, kind.to_owned());
        }
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query,
            authing_headers,
            authorization,
            content_type,
            body_fields,
            body_values,
        }
    }

    /// The body's field names, sorted.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use qrauth_fake_authing::{FakeAuthing, FakeConfig};
    /// # let fake = FakeAuthing::spawn(FakeConfig::default()).await?;
    /// reqwest::Client::builder().no_proxy().build().expect("client")
    ///     .post(format!("{}/api/v2/qrcode/userinfo", fake.base_url()))
    ///     .json(&serde_json::json!({ "ticket": "t" }))
    ///     .send()
    ///     .await
    ///     .expect("userinfo");
    /// assert_eq!(fake.recorded()[0].field_names(), ["ticket"]);
    /// # Ok::<_, std::io::Error>(()) }).unwrap();
    /// ```
    pub fn field_names(&self) -> Vec<&str> {
        self.body_fields.keys().map(String::as_str).collect()
    }
}

impl fmt::Display for RecordedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if !self.query.is_empty() {
            write!(f, "?{}", self.query.join("&"))?;
        }
        write!(f, " headers {:?}", self.authing_headers)?;
        if let Some(scheme) = &self.authorization {
            write!(f, " authorization: {scheme} …")?;
        }
        if let Some(ct) = &self.content_type {
            write!(f, " content-type: {ct}")?;
        }
        if !self.body_fields.is_empty() {
            write!(f, " body {:?}", self.body_fields)?;
        }
        Ok(())
    }
}
