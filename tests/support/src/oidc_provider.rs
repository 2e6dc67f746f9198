//! A real OpenID Provider for a test: panva's `oidc-provider` (npm, pinned by
//! `tests/oidc-provider/package-lock.json`) with the device flow, started by Node.js on a
//! loopback port and killed on drop; and [`DevicePhone`], an HTTP client that plays the user's
//! phone on the OP's own pages (open the verification URI, confirm the device, log in, consent).
//!
//! A missing `node` or a missing `npm ci` fails the test with the command that fixes it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::programs::{find_program, repo_root};

/// The confidential client (`client_secret_basic`; the OP accepts `client_secret_post` too).
pub const CONFIDENTIAL_CLIENT: &str = "qrauth-confidential";
/// Its secret.
pub const CONFIDENTIAL_SECRET: &str = "qrauth-confidential-secret-0123456789";
/// The public client (`none`).
pub const PUBLIC_CLIENT: &str = "qrauth-public";

/// How long the OP gets to print its issuer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One running `oidc-provider`.
pub struct OidcProvider {
    issuer: String,
    child: Child,
    http: reqwest::Client,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Options of [`OidcProvider::start_with`].
#[derive(Debug, Clone, Default)]
pub struct OpOptions {
    /// Lifetime of device codes, seconds (default: the OP's 600).
    pub device_ttl_secs: Option<u64>,
    /// A fixed port (default: any free one).
    pub port: Option<u16>,
}

impl OidcProvider {
    /// Starts an OP with the default options.
    pub fn start() -> Self {
        Self::start_with(&OpOptions::default())
    }

    /// Starts an OP and waits until it listens.
    ///
    /// Panics with the install command when `node` or the npm packages are missing.
    pub fn start_with(options: &OpOptions) -> Self {
        let dir = repo_root().join("tests/oidc-provider");
        let Some(node) = find_program("/usr/bin/node", "node") else {
            panic!(
                "node not found: apt-get install -y nodejs npm (then npm ci --prefix tests/oidc-provider)"
            );
        };
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "oidc-provider is not installed: npm ci --prefix {}",
            dir.display()
        );
        let mut command = Command::new(node);
        command
            .arg(dir.join("server.mjs"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command.args(["--port", &options.port.unwrap_or(0).to_string()]);
        if let Some(ttl) = options.device_ttl_secs {
            command.args(["--device-ttl", &ttl.to_string()]);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node: {e} (apt-get install -y nodejs npm)"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
            // Keep reading: a closed pipe would kill the OP at its next write (EPIPE).
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("oidc-provider did not start in time");
            }
        };
        let issuer = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("oidc-provider printed {line:?} instead of its issuer")
            });
        Self {
            issuer,
            child,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    /// `http://127.0.0.1:PORT`: the issuer, exactly as in `iss`.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Requests per endpoint path (`/device/auth`, `/token`, `/jwks`, …) since the start.
    pub async fn counts(&self) -> BTreeMap<String, u64> {
        let v = self.get_counts().await;
        v["counts"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Requests to `path` since the start.
    pub async fn count(&self, path: &str) -> u64 {
        self.counts().await.get(path).copied().unwrap_or(0)
    }

    /// When each token request came, Unix ms.
    pub async fn token_times(&self) -> Vec<u64> {
        self.get_counts().await["tokenTimes"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    }

    async fn get_counts(&self) -> Value {
        self.http
            .get(format!("{}/__test/counts", self.issuer))
            .send()
            .await
            .expect("counts")
            .json()
            .await
            .expect("counts JSON")
    }

    /// Changes the test controls (see `tests/oidc-provider/server.mjs`): `omitComplete`,
    /// `interval`, `slowDown`.
    pub async fn configure(&self, change: Value) {
        let status = self
            .http
            .post(format!("{}/__test/config", self.issuer))
            .json(&change)
            .send()
            .await
            .expect("config")
            .status();
        assert_eq!(status, 200, "test control refused {change}");
    }

    /// Advertises `interval` (seconds) in every device authorization answer.
    pub async fn advertise_interval(&self, secs: u64) {
        self.configure(json!({ "interval": secs })).await;
    }

    /// Signs with a new key from now on (the old key stays in the JWKS); returns its `kid`.
    pub async fn rotate_keys(&self) -> String {
        let v: Value = self
            .http
            .post(format!("{}/__test/rotate", self.issuer))
            .send()
            .await
            .expect("rotate")
            .json()
            .await
            .expect("rotate JSON");
        v["kid"].as_str().expect("kid").to_owned()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the phone does on the OP's confirm page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Continue, log in and consent.
    Approve,
    /// Press "Abort" on the confirm page.
    Deny,
}

/// The user's phone on the OP's pages: a cookie jar of its own, redirects followed by hand.
pub struct DevicePhone {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

impl Default for DevicePhone {
    fn default() -> Self {
        Self::new()
    }
}

impl DevicePhone {
    /// A phone with an empty cookie jar.
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
            cookies: BTreeMap::new(),
        }
    }

    /// Opens `uri` (the QR's content) and goes through the OP's pages as `user`; with only the
    /// `verification_uri` (no code in it), types `user_code`. Returns the last page's title.
    pub async fn approve(&mut self, uri: &str, user_code: &str, user: &str) -> String {
        self.run(uri, user_code, user, Decision::Approve).await
    }

    /// Like [`approve`](Self::approve), but aborts on the confirm page.
    pub async fn deny(&mut self, uri: &str, user_code: &str) -> String {
        self.run(uri, user_code, "nobody", Decision::Deny).await
    }

    async fn run(&mut self, uri: &str, user_code: &str, user: &str, decision: Decision) -> String {
        let mut page = self.fetch(reqwest::Method::GET, uri, None).await;
        for _ in 0..12 {
            let title = between(&page.html, "<title>", "</title>").unwrap_or_default();
            if title.contains("Success") || page.html.contains("Sign-in Success") {
                return title;
            }
            let Some(form) = Form::first(&page.html) else {
                return title;
            };
            let mut fields = form.fields.clone();
            let has = |name: &str| form.fields.iter().any(|(n, _)| n == name);
            if has("login") {
                set(&mut fields, "login", user);
                set(&mut fields, "password", "any password");
            }
            if has("user_code") && form.field("user_code").is_none_or(str::is_empty) {
                set(&mut fields, "user_code", user_code);
            }
            let abort = title.contains("Device Login Confirmation") && decision == Decision::Deny;
            if abort {
                set(&mut fields, "abort", "yes");
            }
            let action = resolve(&page.url, &form.action);
            let body = url_encode_form(&fields);
            page = self.fetch(reqwest::Method::POST, &action, Some(body)).await;
            if abort {
                // The OP offers to enter a code again: the user walks away.
                return between(&page.html, "<title>", "</title>").unwrap_or_default();
            }
        }
        panic!("the OP's pages never ended; last page: {}", page.html);
    }

    /// A request with the jar, following redirects (GET) by hand so that every hop's cookies
    /// are kept.
    async fn fetch(&mut self, method: reqwest::Method, url: &str, body: Option<String>) -> Page {
        let mut method = method;
        let mut url = url.to_owned();
        let mut body = body;
        for _ in 0..10 {
            let mut request = self.http.request(method.clone(), &url);
            if !self.cookies.is_empty() {
                let jar: Vec<String> = self
                    .cookies
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                request = request.header(reqwest::header::COOKIE, jar.join("; "));
            }
            if let Some(b) = body.take() {
                request = request
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(b);
            }
            let response = request.send().await.expect("request to the OP");
            for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
                let Ok(value) = value.to_str() else { continue };
                let (pair, attributes) = value.split_once(';').unwrap_or((value, ""));
                if let Some((name, v)) = pair.split_once('=') {
                    let expired = attributes
                        .to_ascii_lowercase()
                        .contains("expires=thu, 01 jan 1970");
                    if expired || v.is_empty() {
                        self.cookies.remove(name.trim());
                    } else {
                        self.cookies
                            .insert(name.trim().to_owned(), v.trim().to_owned());
                    }
                }
            }
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .expect("redirect with a location")
                    .to_owned();
                url = resolve(&url, &location);
                method = reqwest::Method::GET;
                continue;
            }
            let html = response.text().await.expect("page");
            return Page { url, html };
        }
        panic!("too many redirects at the OP");
    }
}

struct Page {
    url: String,
    html: String,
}

#[derive(Clone)]
struct Form {
    action: String,
    fields: Vec<(String, String)>,
}

impl Form {
    /// The page's first form, with its inputs (`name`, `value`).
    fn first(html: &str) -> Option<Self> {
        let start = html.find("<form")?;
        let rest = &html[start..];
        let end = rest.find("</form>").unwrap_or(rest.len());
        let form = &rest[..end];
        let tag_end = form.find('>')?;
        let action = attribute(&form[..tag_end], "action").unwrap_or_default();
        let mut fields = Vec::new();
        let mut cursor = form;
        while let Some(i) = cursor.find("<input") {
            let tag = &cursor[i..];
            let close = tag.find('>').unwrap_or(tag.len());
            let tag_text = &tag[..close];
            if let Some(name) = attribute(tag_text, "name") {
                fields.push((name, attribute(tag_text, "value").unwrap_or_default()));
            }
            cursor = &tag[close..];
        }
        Some(Self { action, fields })
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn set(fields: &mut Vec<(String, String)>, name: &str, value: &str) {
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some(field) => field.1 = value.to_owned(),
        None => fields.push((name.to_owned(), value.to_owned())),
    }
}

/// `name="value"` in a tag, entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(
        tag[start..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#x2F;", "/")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let start = text.find(open)? + open.len();
    let end = text[start..].find(close)? + start;
    Some(text[start..end].trim().to_owned())
}

/// `location` relative to `base`.
fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    if location.starts_with('/') {
        format!("{}{location}", &base[..origin_end])
    } else {
        let dir_end = base
            .rfind('/')
            .filter(|&i| i >= origin_end)
            .unwrap_or(origin_end);
        format!("{}/{location}", &base[..dir_end])
    }
}

fn url_encode_form(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
