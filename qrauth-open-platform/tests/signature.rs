//! The JS SDK signature against a vector computed outside this crate (`sha1sum` over the
//! hand-written input string), and against the fake platform's own check.

mod support;

use std::time::Duration;

use qrauth_fake_open_platform::PageConfig;
use qrauth_open_platform::signature::{sign, signature_url};
use qrauth_open_platform::{Credentials, JsSdkConfig};

/// `printf '%s' 'js_ticket=36bd…ab4c&nonce_str=Wm3WZYTPz0wzccnW&timestamp=1414587457&url=https://app.example/m/confirm' | sha1sum`
const VECTOR: &str = "3a6f8f1ca91fee9b5ad9af7e32d92d8b9d58b6b2";
const TICKET: &str = "36bd5645fbadaf5e3ef4a889f0ac26ee14fa7ab0578e8e0108519a4706f2ab4c";

#[test]
fn signature_matches_the_independent_vector() {
    for url in [
        "https://app.example/m/confirm",
        "https://app.example/m/confirm/",
        "https://app.example/m/confirm?qrcodeId=abc&x=1",
        "https://app.example/m/confirm#frag",
        "https://app.example/m/confirm/?q=1#f",
    ] {
        assert_eq!(
            sign(TICKET, "Wm3WZYTPz0wzccnW", 1414587457, url),
            VECTOR,
            "{url}"
        );
    }
    assert_ne!(
        sign(
            TICKET,
            "Wm3WZYTPz0wzccnX",
            1414587457,
            "https://app.example/m/confirm"
        ),
        VECTOR
    );
    assert_ne!(
        sign(
            TICKET,
            "Wm3WZYTPz0wzccnW",
            1414587458,
            "https://app.example/m/confirm"
        ),
        VECTOR
    );
    assert_eq!(
        signature_url("https://app.example/m/confirm/?a"),
        "https://app.example/m/confirm"
    );
}

fn page_config(c: &JsSdkConfig) -> PageConfig {
    serde_json::from_value(serde_json::to_value(c).expect("serialize")).expect("fake reads it")
}

#[tokio::test]
async fn old_ticket_signatures_work_inside_the_grace_only() {
    let fake = support::fake().await;
    let credentials = Credentials::new(support::client_for(&fake, Duration::from_secs(5)));
    let page = "https://app.example/m/confirm?qrcodeId=q1";
    let t1 = credentials.js_ticket().await.expect("ticket 1");
    let c1 = JsSdkConfig::new(fake.app_id(), &t1, 1_700_000_000, page).expect("config");
    assert!(fake.js_sdk_code("u", page, &page_config(&c1)).is_ok());
    // A tampered signature is refused by the fake's JS SDK.
    let mut bad = page_config(&c1);
    bad.nonce_str.push('x');
    assert!(fake.js_sdk_code("u", page, &bad).is_err());

    // Re-fetch: t1 is demoted to the 10-minute grace.
    credentials.invalidate_js_ticket().await;
    let t2 = credentials.js_ticket().await.expect("ticket 2");
    assert_ne!(t1, t2);
    assert_eq!(fake.counters().ticket, 2);
    let c2 = JsSdkConfig::new(fake.app_id(), &t2, 1_700_000_000, page).expect("config");
    fake.advance(Duration::from_secs(590));
    assert!(fake.ticket_is_valid(&t1));
    assert!(
        fake.js_sdk_code("u", page, &page_config(&c1)).is_ok(),
        "old ticket inside the grace"
    );
    fake.advance(Duration::from_secs(20));
    assert!(!fake.ticket_is_valid(&t1));
    assert!(
        fake.js_sdk_code("u", page, &page_config(&c1)).is_err(),
        "old ticket after the grace"
    );
    assert!(
        fake.js_sdk_code("u", page, &page_config(&c2)).is_ok(),
        "new ticket still valid"
    );
}
