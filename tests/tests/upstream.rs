//! An upstream-confirmed provider (the test-only `ScriptedIdp`, written on qrauth-core's public
//! API only) through both adapters: the service runs one upstream loop per waited-on session,
//! applies what the IdP reports, and the bound browser gets qrauth's ticket.

use std::sync::Arc;
use std::time::Duration;

use qrauth_core::provider::{UpstreamEvent, UpstreamLogin};
use qrauth_core::{Error, Lifetimes, Limits, QrAuthService, UserInfo};
use qrauth_test_support::provider::ScriptedIdp;
use qrauth_tests::{Resp, ServerKind, TestServer, jwt_payload, spawn_service};
use reqwest::Method;
use reqwest::header::AUTHORIZATION;

const AUDIENCE: &str = "scripted-web";

async fn server(kind: ServerKind) -> (TestServer, Arc<ScriptedIdp>) {
    let mut idp = None;
    let server = spawn_service(kind, |base| {
        let provider = ScriptedIdp::new(base, AUDIENCE, Duration::from_millis(50));
        idp = Some(provider.clone());
        QrAuthService::builder(provider)
            .lifetimes(Lifetimes::default().poll_interval(Duration::from_secs(1)))
            .limits(Limits::unlimited())
            .insecure_dev_cookies()
            .build()
            .expect("service")
    })
    .await;
    (server, idp.expect("provider"))
}

fn alice() -> UserInfo {
    UserInfo {
        nickname: Some("Alice".into()),
        photo: None,
    }
}

async fn upstream_login_reaches_the_bound_browser(kind: ServerKind) {
    let (server, idp) = server(kind).await;
    let mut browser = server.browser();
    let qr = browser.generate().await;
    assert_eq!(
        qr.body["userCode"], "WDJB-MJHT",
        "the provider's user code is shown"
    );
    assert_eq!(
        qr.body["qrcodeContent"],
        format!("scripted-idp://qr/{}", qr.id)
    );
    idp.script(&qr.id, Ok(UpstreamEvent::Scanned(alice())));
    let scanned = browser
        .status_query(&format!("qrcodeId={}&wait=10&since=1", qr.id))
        .await
        .assert_json(200);
    assert_eq!(scanned["status"], "scanned");
    assert_eq!(scanned["userInfo"]["nickname"], "Alice");
    let version = scanned["version"].as_u64().expect("version");

    idp.script(
        &qr.id,
        Ok(UpstreamEvent::Confirmed(
            UpstreamLogin::new(alice()).subject("alice@idp"),
        )),
    );
    let confirmed = browser
        .status_query(&format!("qrcodeId={}&wait=10&since={version}", qr.id))
        .await
        .assert_json(200);
    assert_eq!(confirmed["status"], "confirmed");
    let ticket = confirmed["ticket"]
        .as_str()
        .expect("ticket for the bound browser");

    // Another browser with only the qrcodeId learns nothing.
    server
        .browser()
        .status(&qr.id)
        .await
        .assert_error(403, "not_bound");

    let tokens = browser.exchange(ticket).await.assert_json(200);
    let id_token = tokens["id_token"].as_str().expect("id_token");
    assert_eq!(jwt_payload(id_token)["sub"], "alice@idp");
    let me = Resp::send(
        browser
            .request(Method::GET, "/api/me")
            .header(AUTHORIZATION, format!("Bearer {id_token}")),
    )
    .await
    .assert_app_json(200);
    assert_eq!(me["sub"], "alice@idp");
    browser
        .exchange(ticket)
        .await
        .assert_error(400, "invalid_ticket");
}

async fn refusal_expiry_loss_and_outage_map_to_the_contract(kind: ServerKind) {
    let (server, idp) = server(kind).await;
    let wait = |browser: &qrauth_tests::Browser, id: &str| {
        let query = format!("qrcodeId={id}&wait=10&since=1");
        let browser = browser.clone();
        async move { browser.status_query(&query).await }
    };

    let mut browser = server.browser();
    let qr = browser.generate().await;
    idp.script(&qr.id, Ok(UpstreamEvent::Cancelled));
    let cancelled = wait(&browser, &qr.id).await.assert_json(200);
    assert_eq!(cancelled["status"], "cancelled");

    let qr = browser.generate().await;
    idp.script(&qr.id, Ok(UpstreamEvent::Expired));
    wait(&browser, &qr.id)
        .await
        .assert_error(410, "expired_qrcode");

    let qr = browser.generate().await;
    idp.script(&qr.id, Ok(UpstreamEvent::Vanished));
    wait(&browser, &qr.id)
        .await
        .assert_error(404, "unknown_qrcode");

    // An IdP outage reaches the waiting browser as 502, without its message; the session is
    // still alive and completes once the IdP is back.
    let qr = browser.generate().await;
    idp.script(
        &qr.id,
        Err(Error::Upstream("idp exploded: secret detail".into())),
    );
    let outage = wait(&browser, &qr.id).await;
    let body = outage.assert_error(502, "upstream_unavailable");
    assert!(!body.to_string().contains("secret detail"));
    idp.script(
        &qr.id,
        Ok(UpstreamEvent::Confirmed(
            UpstreamLogin::new(alice()).subject("a"),
        )),
    );
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        let r = wait(&browser, &qr.id).await;
        if r.status == 200 {
            status = r.json();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "confirmed", "{status}");
}

async fn one_upstream_loop_for_three_tabs(kind: ServerKind) {
    let (server, idp) = server(kind).await;
    let mut browser = server.browser();
    let qr = browser.generate().await;
    let tabs: Vec<_> = (0..3)
        .map(|_| {
            let browser = browser.clone();
            let query = format!("qrcodeId={}&wait=2&since=1", qr.id);
            tokio::spawn(async move { browser.status_query(&query).await })
        })
        .collect();
    for tab in tabs {
        let r = tab.await.expect("tab");
        assert_eq!(r.json()["status"], "pending");
    }
    let (live, started) = server.service.upstream_loops();
    assert_eq!(
        started, 1,
        "one loop for the session, however many tabs wait"
    );
    assert!(live <= 1);
    // ~2 s of waiting at a 50 ms interval: one loop makes about 40 checks, three would make 120.
    let checks = idp.checks();
    assert!(
        (10..=60).contains(&checks),
        "{checks} upstream checks for 2 s of three waiting tabs"
    );
}

macro_rules! on_both_adapters {
    ($($name:ident),+ $(,)?) => {
        mod axum {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(qrauth_tests::ServerKind::Axum).await;
                }
            )+
        }
        mod actix {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(qrauth_tests::ServerKind::Actix).await;
                }
            )+
        }
    };
}

on_both_adapters!(
    upstream_login_reaches_the_bound_browser,
    refusal_expiry_loss_and_outage_map_to_the_contract,
    one_upstream_loop_for_three_tabs,
);
