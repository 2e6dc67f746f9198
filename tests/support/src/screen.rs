//! What the tests' browsers show: the newest QR each session's browser was given, so that a
//! test's phone scans the QR on screen, as a real phone does.
//!
//! qrauth's QR rotates: each one carries a scan token, and only the one on screen (or the one it
//! just replaced) scans. The browsers of the test harnesses record every QR they receive here;
//! the phones look the session up by id. A session no browser was shown (an unknown or made-up
//! id) is scanned without a token.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::{Value, json};

/// Per session id: the QR content on screen and its rotation (for QR codes that rotate).
type Screens = HashMap<String, (String, Option<u64>)>;

static SHOWN: Mutex<Option<Screens>> = Mutex::new(None);

/// Records that the browser of session `id` now shows the QR `content`, rotation `rotation`.
pub fn show(id: &str, content: &str, rotation: Option<u64>) {
    let mut shown = SHOWN.lock().unwrap_or_else(PoisonError::into_inner);
    shown
        .get_or_insert_with(HashMap::new)
        .insert(id.to_owned(), (content.to_owned(), rotation));
}

/// Records the QR of a `POST /qrcode` answer or a status answer, if it carries one.
pub fn show_answer(body: &Value) {
    if let (Some(id), Some(content)) = (body["qrcodeId"].as_str(), body["qrcodeContent"].as_str()) {
        show(id, content, body["rotation"].as_u64());
    }
}

/// The QR the browser of session `id` shows, if any.
pub fn shown(id: &str) -> Option<String> {
    let shown = SHOWN.lock().unwrap_or_else(PoisonError::into_inner);
    shown
        .as_ref()
        .and_then(|s| s.get(id))
        .map(|(c, _)| c.clone())
}

/// `&rotation=…` for a status or events query of the browser of `id`, which follows the
/// rotations of its QR; empty when the QR does not rotate.
pub fn rotation_query(id: &str) -> String {
    let shown = SHOWN.lock().unwrap_or_else(PoisonError::into_inner);
    match shown.as_ref().and_then(|s| s.get(id)).and_then(|(_, r)| *r) {
        Some(rotation) => format!("&rotation={rotation}"),
        None => String::new(),
    }
}

/// The session id and scan token a phone reads from QR `content`: the `qrcodeId` and
/// `scanToken` query parameters of a URL, or `id.token` for a bare QR.
pub fn read(content: &str) -> (String, Option<String>) {
    if let Ok(url) = url::Url::parse(content)
        && url.has_host()
    {
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        return (param("qrcodeId").unwrap_or_default(), param("scanToken"));
    }
    match content.split_once('.') {
        Some((id, token)) => (id.to_owned(), Some(token.to_owned())),
        None => (content.to_owned(), None),
    }
}

/// The scan token in QR `content`.
pub fn scan_token(content: &str) -> Option<String> {
    read(content).1
}

/// The body of `POST /qrcode/scan` for a phone scanning QR `content`.
pub fn scan_body_of(content: &str) -> Value {
    let (id, token) = read(content);
    match token {
        Some(token) => json!({ "qrcodeId": id, "scanToken": token }),
        None => json!({ "qrcodeId": id }),
    }
}

/// The body of `POST /qrcode/scan` for a phone scanning the QR the browser of `id` shows.
pub fn scan_body(id: &str) -> Value {
    match shown(id) {
        Some(content) => {
            let token = scan_token(&content);
            json!({ "qrcodeId": id, "scanToken": token })
        }
        None => json!({ "qrcodeId": id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_urls_and_bare_qr_codes() {
        assert_eq!(
            read("https://a.example/m?qrcodeId=abc&scanToken=T"),
            ("abc".to_owned(), Some("T".to_owned()))
        );
        assert_eq!(read("abc.T"), ("abc".to_owned(), Some("T".to_owned())));
        assert_eq!(read("abc"), ("abc".to_owned(), None));
    }
}
