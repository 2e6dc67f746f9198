//! A short, human description of the browser that started a login, for the phone's confirm
//! screen: "a login request from **Chrome on Windows**".
//!
//! This is a small dependency-free heuristic, not a full User-Agent parser: it recognizes the
//! common browsers (Edge, Chrome, Firefox, Safari, Opera, WeChat's in-app browser, curl) and
//! operating systems (Windows, macOS, iOS, Android, Linux, ChromeOS) and says nothing about the
//! rest. The labels are fixed strings chosen here, never text copied from the header, so an
//! attacker who controls the User-Agent cannot write arbitrary text on the confirm screen (they
//! can still pretend to be another browser: the label is a hint, not a proof).

use std::fmt;

use serde::Serialize;

/// How much of a User-Agent is examined; the rest is ignored.
pub const MAX_USER_AGENT_LEN: usize = 512;

/// The browser and operating system guessed from a User-Agent; see [`describe`].
///
/// Serializes as `{"browser": "Chrome", "os": "Windows"}` (a field is `null` when unknown);
/// displays as `Chrome on Windows`, `curl`, `Unknown browser on Android` or `Unknown browser`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceLabel {
    /// The browser (or client) name, e.g. `Chrome`, `Safari`, `WeChat`, `curl`.
    pub browser: Option<String>,
    /// The operating system, e.g. `Windows`, `macOS`, `iOS`, `Android`, `Linux`, `ChromeOS`.
    pub os: Option<String>,
}

impl DeviceLabel {
    /// Whether neither the browser nor the operating system was recognized.
    #[cfg(test)]
    pub fn is_unknown(&self) -> bool {
        self.browser.is_none() && self.os.is_none()
    }
}

impl fmt::Display for DeviceLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.browser.as_deref().unwrap_or("Unknown browser"))?;
        if let Some(os) = &self.os {
            write!(f, " on {os}")?;
        }
        Ok(())
    }
}

/// Guesses the browser and operating system from a `User-Agent` header value.
///
/// Only the first [`MAX_USER_AGENT_LEN`] bytes are examined (cut at a character boundary).
///
/// ```text
/// "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)
///  Chrome/124.0.0.0 Safari/537.36"                      → Chrome on Windows (browser "Chrome")
/// ""                                                     → Unknown browser
/// ```
///
/// (The module is private: the unit tests below check these and more.)
pub fn describe(user_agent: &str) -> DeviceLabel {
    let ua = truncate(user_agent, MAX_USER_AGENT_LEN);
    DeviceLabel {
        browser: browser(ua).map(str::to_owned),
        os: os(ua).map(str::to_owned),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

fn browser(ua: &str) -> Option<&'static str> {
    let has = |token: &str| ua.contains(token);
    // Order matters: most browsers also claim to be the ones they are derived from (Edge and
    // Opera say "Chrome", Chrome says "Safari", WeChat's web view says whatever it embeds).
    if ua.trim_start().starts_with("curl/") {
        Some("curl")
    } else if has("MicroMessenger") || has("WindowsWechat") || has("MacWechat") {
        Some("WeChat")
    } else if has("Edg/") || has("Edge/") || has("EdgA/") || has("EdgiOS/") {
        Some("Edge")
    } else if has("OPR/") || has("Opera") || has("OPiOS/") || has("OPT/") {
        Some("Opera")
    } else if has("Firefox/") || has("FxiOS/") {
        Some("Firefox")
    } else if has("Chrome/") || has("CriOS/") || has("Chromium/") {
        Some("Chrome")
    } else if has("Safari/") && has("Version/") && !has("Android") {
        Some("Safari")
    } else {
        None
    }
}

fn os(ua: &str) -> Option<&'static str> {
    let has = |token: &str| ua.contains(token);
    // iOS user agents say "like Mac OS X", Android and ChromeOS ones say "Linux".
    if has("iPhone") || has("iPad") || has("iPod") {
        Some("iOS")
    } else if has("Android") {
        Some("Android")
    } else if has("CrOS") {
        Some("ChromeOS")
    } else if has("Windows") {
        Some("Windows")
    } else if has("Macintosh") || has("Mac OS X") {
        Some("macOS")
    } else if has("Linux") {
        Some("Linux")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(ua: &str) -> String {
        describe(ua).to_string()
    }

    #[test]
    fn desktop_browsers() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36",
                "Chrome on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/70.0.3538.102 Safari/537.36 Edge/18.19045",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36 OPR/110.0.0.0",
                "Opera on Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 \
                 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
                "Chrome on macOS",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.4; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Firefox on macOS",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36",
                "Chrome on ChromeOS",
            ),
            (
                "Opera/9.80 (Windows NT 6.1; WOW64) Presto/2.12.388 Version/12.18",
                "Opera on Windows",
            ),
        ];
        for (ua, expected) in cases {
            assert_eq!(label(ua), expected, "{ua}");
        }
    }

    #[test]
    fn mobile_browsers() {
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
                "Safari on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
                "Chrome on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) FxiOS/125.0 Mobile/15E148 Safari/605.1.15",
                "Firefox on iOS",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.0 EdgiOS/124.2478.71 Mobile/15E148 Safari/605.1.15",
                "Edge on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Mobile Safari/537.36",
                "Chrome on Android",
            ),
            (
                "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
                "Firefox on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Mobile Safari/537.36 EdgA/124.0.2478.64",
                "Edge on Android",
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; VOG-L29) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Mobile Safari/537.36 OPR/81.1.4292.78446",
                "Opera on Android",
            ),
        ];
        for (ua, expected) in cases {
            assert_eq!(label(ua), expected, "{ua}");
        }
    }

    #[test]
    fn wechat_in_app_browser() {
        let cases = [
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003129) \
                 NetType/WIFI Language/zh_CN",
                "WeChat on iOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; V2219A Build/TP1A.220624.014; wv) \
                 AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/111.0.5563.116 \
                 Mobile Safari/537.36 XWEB/1160065 MMWEBSDK/20231202 MMWEBID/2247 \
                 MicroMessenger/8.0.47.2560(0x28002F30) WeChat/arm64 Weixin NetType/WIFI \
                 Language/zh_CN ABI/arm64",
                "WeChat on Android",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; WOW64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/81.0.4044.138 Safari/537.36 NetType/WIFI MicroMessenger/7.0.20.1781(0x6700143B) \
                 WindowsWechat(0x6309092b) XWEB/9129 Flue",
                "WeChat on Windows",
            ),
        ];
        for (ua, expected) in cases {
            assert_eq!(label(ua), expected, "{ua}");
        }
    }

    #[test]
    fn curl_and_unknown_clients() {
        assert_eq!(label("curl/8.5.0"), "curl");
        assert_eq!(describe("curl/8.5.0").os, None);
        assert_eq!(label(""), "Unknown browser");
        assert!(describe("").is_unknown());
        assert_eq!(label("python-requests/2.31.0"), "Unknown browser");
        // An in-app web view on iOS without a browser token.
        assert_eq!(
            label(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Mobile/15E148"
            ),
            "Unknown browser on iOS"
        );
        // The stock Android browser is not Safari.
        assert_eq!(
            label(
                "Mozilla/5.0 (Linux; U; Android 4.0.3; en-us) AppleWebKit/534.30 \
                 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30"
            ),
            "Unknown browser on Android"
        );
    }

    #[test]
    fn serializes_in_camel_case_with_nulls() {
        let json = serde_json::to_value(describe(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        ))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "browser": "Firefox", "os": "Windows" })
        );
        let json = serde_json::to_value(describe("curl/8.5.0")).unwrap();
        assert_eq!(json, serde_json::json!({ "browser": "curl", "os": null }));
    }

    #[test]
    fn only_the_first_512_bytes_are_examined() {
        let padding = "x".repeat(MAX_USER_AGENT_LEN);
        assert_eq!(
            label(&format!("{padding} Chrome/124 (Windows NT 10.0)")),
            "Unknown browser"
        );
        assert_eq!(
            label(&format!("Firefox/125.0 (Windows NT 10.0) {padding}")),
            "Firefox on Windows"
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        // Multi-byte characters straddling the 512-byte limit must not panic.
        for offset in 0..4 {
            let ua = format!("{}{}", "a".repeat(offset), "€".repeat(400));
            let cut = truncate(&ua, MAX_USER_AGENT_LEN);
            assert!(cut.len() <= MAX_USER_AGENT_LEN && cut.len() > MAX_USER_AGENT_LEN - 4);
            assert!(ua.starts_with(cut));
            assert_eq!(describe(&ua), DeviceLabel::default());
        }
        assert_eq!(truncate("short", MAX_USER_AGENT_LEN), "short");
        assert_eq!(truncate("€", 2), "");
    }
}
