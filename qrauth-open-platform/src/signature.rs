//! The signature of the platform JS SDK's `config` call.
//!
//! The platform's documented algorithm: SHA-1 (lowercase hex) of
//! `js_ticket=<ticket>&nonce_str=<nonce>&timestamp=<unix seconds>&url=<page URL>`, where the page
//! URL is the page's address without its query, its fragment and any trailing `/`.
//!
//! SHA-1 is the platform's choice (it is not used here for anything else); it comes from
//! aws-lc-rs, qrauth's only crypto library.

use aws_lc_rs::digest;
use serde::Serialize;

use crate::error::{OpenPlatformError, Result};

/// The page URL as it enters the signature: without query, fragment or trailing `/`.
///
/// ```
/// use qrauth_open_platform::signature::signature_url;
///
/// assert_eq!(
///     signature_url("https://app.example/m/confirm/?qrcodeId=abc#top"),
///     "https://app.example/m/confirm"
/// );
/// ```
pub fn signature_url(page_url: &str) -> &str {
    let end = page_url.find(['?', '#']).unwrap_or(page_url.len());
    page_url[..end].trim_end_matches('/')
}

/// The signature for a page: `sha1("js_ticket=…&nonce_str=…&timestamp=…&url=…")` in lowercase
/// hex, with the URL cut by [`signature_url`].
///
/// ```
/// use qrauth_open_platform::signature::sign;
///
/// let s = sign("ticket", "nonce", 1_700_000_000, "https://app.example/m?x=1");
/// assert_eq!(s.len(), 40);
/// assert_eq!(s, sign("ticket", "nonce", 1_700_000_000, "https://app.example/m/"));
/// ```
pub fn sign(js_ticket: &str, nonce_str: &str, timestamp: u64, page_url: &str) -> String {
    let input = format!(
        "js_ticket={js_ticket}&nonce_str={nonce_str}&timestamp={timestamp}&url={}",
        signature_url(page_url)
    );
    hex(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, input.as_bytes()).as_ref())
}

/// What the mobile confirm page passes to the JS SDK's `config`.
///
/// It carries no secret: the js_ticket itself never leaves the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct JsSdkConfig {
    /// The app id.
    pub app_id: String,
    /// Unix seconds used in the signature.
    pub timestamp: u64,
    /// Random string used in the signature.
    pub nonce_str: String,
    /// The signature.
    pub signature: String,
    /// The URL that was signed (without query, fragment or trailing `/`).
    pub url: String,
}

impl JsSdkConfig {
    /// Signs `page_url` with `js_ticket`, a fresh random nonce and `timestamp`.
    pub fn new(app_id: &str, js_ticket: &str, timestamp: u64, page_url: &str) -> Result<Self> {
        let nonce_str = random_hex(16)?;
        Ok(Self {
            app_id: app_id.to_owned(),
            timestamp,
            signature: sign(js_ticket, &nonce_str, timestamp, page_url),
            nonce_str,
            url: signature_url(page_url).to_owned(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// `n` random bytes from the OS CSPRNG, hex encoded.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf)
        .map_err(|_| OpenPlatformError::Config("the system random generator failed".to_owned()))?;
    Ok(hex(&buf))
}

/// SHA-256 of `s`, hex encoded (to key caches by a code without keeping the code).
pub(crate) fn sha256_hex(s: &str) -> String {
    hex(digest::digest(&digest::SHA256, s.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_is_cut_at_query_fragment_and_trailing_slash() {
        assert_eq!(signature_url("https://a.example/"), "https://a.example");
        assert_eq!(
            signature_url("https://a.example/p#x?y"),
            "https://a.example/p"
        );
        assert_eq!(
            signature_url("https://a.example/p//?q=1"),
            "https://a.example/p"
        );
        assert_eq!(signature_url("https://a.example/p"), "https://a.example/p");
    }

    #[test]
    fn nonce_is_random() {
        let a = random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, random_hex(16).unwrap());
    }
}
