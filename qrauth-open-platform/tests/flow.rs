//! The whole QR login through real axum and actix-web servers, the fake platform over
//! loopback, and the id_token accepted by `AuthenticatedUser`.

mod support;

use std::time::Duration;

use qrauth_fake_open_platform::{Endpoint, Fault, UserState};
use serde_json::{Value, json};
use support::{Browser, Kind, fake, phone, server};

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

async fn full_flow(kind: Kind) {
    let fake = fake().await;
    let server = server(kind, &fake, UPSTREAM_TIMEOUT).await;
    let browser = Browser::start(&server.base).await;
    let id = browser.qrcode_id.clone();

    // The confirm page's JS SDK config, then the (fake) JS SDK's code.
    let page = format!("{}/m/confirm?qrcodeId={id}", server.base);
    let config = server.provider.js_sdk_config(&page).await.expect("config");
    let config =
        serde_json::from_value(serde_json::to_value(&config).expect("json")).expect("page config");
    let code = fake
        .js_sdk_code("open-id-alice", &page, &config)
        .expect("code");

    let (status, scanned) = phone(&server.base, "scan", &code, browser.scan_body()).await;
    assert_eq!(status, 200, "{scanned}");
    assert_eq!(scanned["context"]["appName"], "open platform test");
    assert_eq!(browser.status().await["status"], "scanned");
    // The same code confirms (it was exchanged once and remembered).
    let confirm_token = scanned["confirmToken"].as_str().expect("confirmToken");
    let (status, body) = phone(
        &server.base,
        "confirm",
        &code,
        json!({ "qrcodeId": id, "confirmToken": confirm_token }),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (200, json!("confirmed")),
        "{body}"
    );
    assert_eq!(
        fake.counters().token,
        1,
        "one code exchange for scan and confirm"
    );

    let st = browser.status().await;
    let ticket = st["ticket"].as_str().expect("ticket");
    let tokens = browser.exchange(ticket).await;
    let id_token = tokens["id_token"].as_str().expect("id_token");

    let me: Value = support::http()
        .get(format!("{}/api/me", server.base))
        .bearer_auth(id_token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["sub"], "open-id-alice");
    assert_eq!(me["iss"], server.base.as_str());
    assert_eq!(me["aud"], "op-test");
    // A forged token is refused by the same extractor.
    let r = support::http()
        .get(format!("{}/api/me", server.base))
        .bearer_auth(format!("{id_token}x"))
        .send()
        .await
        .expect("me");
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_axum() {
    full_flow(Kind::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_actix() {
    full_flow(Kind::Actix).await;
}

async fn scanned(
    server: &support::Server,
    fake: &qrauth_fake_open_platform::FakeOpenPlatform,
) -> (Browser, String, String) {
    let browser = Browser::start(&server.base).await;
    let code = fake.mint_code("open-id-bob");
    let (status, body) = phone(&server.base, "scan", &code, browser.scan_body()).await;
    assert_eq!(status, 200, "{body}");
    let token = body["confirmToken"].as_str().expect("token").to_owned();
    (browser, code, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_or_expired_code_fails_confirm_and_the_session_stays_scanned() {
    let fake = fake().await;
    let server = server(Kind::Axum, &fake, UPSTREAM_TIMEOUT).await;
    let (browser, good_code, token) = scanned(&server, &fake).await;
    let body = json!({ "qrcodeId": browser.qrcode_id, "confirmToken": token });

    // A code already used elsewhere (single use upstream).
    let used = fake.mint_code("open-id-bob");
    server
        .provider
        .credentials()
        .client()
        .exchange_code(&used)
        .await
        .expect("used elsewhere");
    let (status, err) = phone(&server.base, "confirm", &used, body.clone()).await;
    assert_eq!(
        (status, err["error"].clone()),
        (401, json!("unauthenticated")),
        "{err}"
    );
    assert_eq!(browser.status().await["status"], "scanned");

    // An expired code.
    let expired = fake.mint_code("open-id-bob");
    fake.advance(Duration::from_secs(301));
    let (status, err) = phone(&server.base, "confirm", &expired, body.clone()).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(browser.status().await["status"], "scanned");

    // The user retries with the code that scanned: confirmed.
    let (status, ok) = phone(&server.base, "confirm", &good_code, body).await;
    assert_eq!(
        (status, ok["status"].clone()),
        (200, json!("confirmed")),
        "{ok}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_platform_user_cannot_confirm() {
    let fake = fake().await;
    let server = server(Kind::Axum, &fake, UPSTREAM_TIMEOUT).await;
    let (browser, _, token) = scanned(&server, &fake).await;
    let mallory = fake.mint_code("open-id-mallory");
    let (status, _) = phone(
        &server.base,
        "confirm",
        &mallory,
        json!({ "qrcodeId": browser.qrcode_id, "confirmToken": token }),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(browser.status().await["status"], "scanned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_become_documented_http_errors() {
    let fake = fake().await;
    let server = server(Kind::Axum, &fake, Duration::from_millis(500)).await;
    let browser = Browser::start(&server.base).await;
    let scan = browser.scan_body();
    let cases = [
        (Some(Fault::ServerError), 502, "upstream_unavailable"),
        (Some(Fault::Malformed), 502, "upstream_unavailable"),
        (Some(Fault::EmptyData), 502, "upstream_unavailable"),
        (Some(Fault::Status(4000)), 502, "upstream_unavailable"),
        (
            Some(Fault::Slow(Duration::from_secs(2))),
            504,
            "upstream_unavailable",
        ),
        (Some(Fault::Status(4102)), 401, "unauthenticated"),
    ];
    for (fault, status, error) in cases {
        fake.set_fault(Endpoint::Token, fault.clone());
        let code = fake.mint_code("open-id-carol");
        let (got, body) = phone(&server.base, "scan", &code, scan.clone()).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{fault:?}: {body}"
        );
        let text = body.to_string();
        assert!(
            !text.contains("forced by the test") && !text.contains(fake.secret()),
            "{text}"
        );
        assert_eq!(browser.status().await["status"], "pending");
    }
    fake.set_fault(Endpoint::Token, None);
    let (got, _) = phone(&server.base, "scan", &fake.mint_code("open-id-carol"), scan).await;
    assert_eq!(got, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_not_added_and_no_permission_are_explained() {
    let fake = fake().await;
    let server = server(Kind::Axum, &fake, UPSTREAM_TIMEOUT).await;
    let browser = Browser::start(&server.base).await;
    fake.set_user("u-na", UserState::NotAdded);
    fake.set_user("u-np", UserState::NoPermission);
    let scan = browser.scan_body();
    let (s1, b1) = phone(&server.base, "scan", &fake.mint_code("u-na"), scan.clone()).await;
    let (s2, b2) = phone(&server.base, "scan", &fake.mint_code("u-np"), scan).await;
    assert_eq!((s1, s2), (403, 403));
    let d1 = b1["error_description"].as_str().unwrap_or_default();
    let d2 = b2["error_description"].as_str().unwrap_or_default();
    assert!(d1.contains("open_platform_app_not_added"), "{d1}");
    assert!(d2.contains("open_platform_no_permission"), "{d2}");
    assert!(
        !d1.contains("user not add app"),
        "upstream message leaked: {d1}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_confirm_pages_need_one_ticket() {
    let fake = fake().await;
    fake.set_fault(
        Endpoint::Ticket,
        Some(Fault::Slow(Duration::from_millis(300))),
    );
    let server = server(Kind::Axum, &fake, UPSTREAM_TIMEOUT).await;
    let page = format!("{}/m/confirm?qrcodeId=x", server.base);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let p = server.provider.clone();
            let page = page.clone();
            tokio::spawn(async move { p.js_sdk_config(&page).await })
        })
        .collect();
    for t in tasks {
        let config = t.await.expect("task").expect("config");
        assert_eq!(config.signature.len(), 40);
    }
    assert_eq!(fake.counters().ticket, 1);
    // Foreign pages are not signed.
    let e = server
        .provider
        .js_sdk_config("https://evil.example/m/confirm")
        .await;
    assert!(e.is_err());
    assert_eq!(fake.counters().ticket, 1);
}

#[tokio::test]
async fn bad_authorization_never_reaches_the_platform() {
    let fake = fake().await;
    let server = server(Kind::Axum, &fake, UPSTREAM_TIMEOUT).await;
    let browser = Browser::start(&server.base).await;
    let r = support::http()
        .post(format!("{}/qrcode/scan", server.base))
        .header("authorization", "Bearer something")
        .header("content-type", "application/json")
        .body(json!({ "qrcodeId": browser.qrcode_id }).to_string())
        .send()
        .await
        .expect("scan");
    assert_eq!(r.status(), 401);
    assert_eq!(fake.counters().token, 0);
}
