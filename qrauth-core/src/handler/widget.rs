//! `GET /qrcode/widget.js`: the browser widget, embedded in the binary.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use http::{HeaderMap, StatusCode};

use super::response::{ApiBody, ApiResponse};

/// The widget's source: plain JavaScript, no build step, no third-party code.
pub const WIDGET_JS: &str = include_str!("widget.js");

fn etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| {
        let digest = crate::secret::sha256(WIDGET_JS.as_bytes());
        format!("\"{}\"", URL_SAFE_NO_PAD.encode(&digest[..16]))
    })
}

/// The script, or 304 when the browser's copy (`If-None-Match`) is current.
pub(super) fn response(request: &HeaderMap) -> ApiResponse {
    let etag = etag();
    let fresh = request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, v);
    }
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300, must-revalidate"),
    );
    if fresh {
        return ApiResponse {
            status: StatusCode::NOT_MODIFIED,
            headers,
            body: ApiBody::Full(Bytes::new()),
        };
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    ApiResponse {
        status: StatusCode::OK,
        headers,
        body: ApiBody::Full(Bytes::from_static(WIDGET_JS.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_script_with_a_strong_etag_and_answers_304_when_current() {
        let first = response(&HeaderMap::new());
        assert_eq!(first.status, StatusCode::OK);
        let tag = first
            .headers
            .get(ETAG)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            tag.starts_with('"') && !tag.starts_with("W/"),
            "strong ETag: {tag}"
        );
        assert!(
            first
                .body_bytes()
                .unwrap()
                .starts_with(b"/*! qrauth widget")
        );
        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, tag.parse().unwrap());
        let second = response(&again);
        assert_eq!(second.status, StatusCode::NOT_MODIFIED);
        assert!(second.body_bytes().unwrap().is_empty());
        let mut stale = HeaderMap::new();
        stale.insert(IF_NONE_MATCH, "\"old\"".parse().unwrap());
        assert_eq!(response(&stale).status, StatusCode::OK);
    }

    #[test]
    fn the_widget_is_a_few_kib_and_loads_nothing_from_elsewhere() {
        // The component, Authing's business calls and the session calls, unminified and
        // commented: a budget, so that it grows only on purpose.
        assert!(WIDGET_JS.len() < 40 * 1024, "{} bytes", WIDGET_JS.len());
        assert!(!WIDGET_JS.contains("http://") && !WIDGET_JS.contains("https://"));
        assert!(WIDGET_JS.contains("startScanning"));
    }
}
