//! Cached server credentials against the fake platform over loopback.

mod support;

use std::sync::Arc;
use std::time::Duration;

use qrauth_core::{Clock, ManualClock, SystemClock};
use qrauth_fake_open_platform::{Endpoint, FakeConfig, FakeOpenPlatform, Fault};
use qrauth_open_platform::{Credentials, OpenPlatformError};
use support::{client_for, fake};

/// A manual clock at a whole second of the current time: the fake counts in whole seconds, so
/// both read the same time whatever the tests advance.
fn manual_clock() -> ManualClock {
    ManualClock::new(SystemClock.now_millis() / 1000 * 1000)
}

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_callers_share_one_ticket_request() {
    let fake = fake().await;
    // Slow enough that all callers arrive while the first fetch is in flight.
    fake.set_fault(
        Endpoint::Ticket,
        Some(Fault::Slow(Duration::from_millis(300))),
    );
    let credentials = Arc::new(Credentials::new(client_for(&fake, T)));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = credentials.clone();
            tokio::spawn(async move { c.js_ticket().await })
        })
        .collect();
    let mut tickets = Vec::new();
    for t in tasks {
        tickets.push(t.await.expect("task").expect("ticket"));
    }
    assert!(tickets.iter().all(|t| t == &tickets[0]));
    assert_eq!(fake.counters().ticket, 1);
    assert_eq!(fake.counters().access_token, 1);
    // And cached afterwards.
    credentials.js_ticket().await.expect("cached");
    assert_eq!(fake.counters().ticket, 1);
}

#[tokio::test]
async fn revoked_access_token_is_refreshed_and_the_call_retried_once() {
    let fake = fake().await;
    let credentials = Credentials::new(client_for(&fake, T));
    credentials.server_access_token().await.expect("token");
    fake.revoke_access_tokens();
    let ticket = credentials
        .js_ticket()
        .await
        .expect("ticket after one retry");
    assert!(fake.ticket_is_valid(&ticket));
    let c = fake.counters();
    assert_eq!((c.access_token, c.ticket), (2, 2));
}

#[tokio::test]
async fn persistent_4102_retries_once_then_fails_and_is_not_cached() {
    let fake = fake().await;
    let credentials = Credentials::new(client_for(&fake, T));
    fake.set_fault(Endpoint::Ticket, Some(Fault::Status(4102)));
    let e = credentials.js_ticket().await;
    assert!(
        matches!(e, Err(OpenPlatformError::CredentialRejected { .. })),
        "{e:?}"
    );
    assert_eq!(e.unwrap_err().to_core().status(), 502);
    let c = fake.counters();
    assert_eq!((c.access_token, c.ticket), (2, 2));
    // Errors are not cached: once the platform recovers, the next call works.
    fake.set_fault(Endpoint::Ticket, None);
    credentials.js_ticket().await.expect("recovered");
    assert_eq!(fake.counters().ticket, 3);
}

#[tokio::test]
async fn bad_secret_on_the_access_token_endpoint_is_not_retried() {
    let fake = fake().await;
    fake.set_fault(Endpoint::AccessToken, Some(Fault::Status(4102)));
    let credentials = Credentials::new(client_for(&fake, T));
    let e = credentials.js_ticket().await;
    assert!(
        matches!(e, Err(OpenPlatformError::CredentialRejected { .. })),
        "{e:?}"
    );
    assert_eq!(fake.counters().access_token, 1);
    assert_eq!(fake.counters().ticket, 0);
}

#[tokio::test]
async fn ticket_is_refreshed_early() {
    // One clock for the cache and the fake: time moves only when the test says so.
    let clock = manual_clock();
    let fake = FakeOpenPlatform::start_with(FakeConfig {
        ticket_ttl: 4,
        clock: Some(clock.clone()),
        ..FakeConfig::default()
    })
    .await
    .expect("fake");
    // Margin 1 s: a 4 s ticket is served for 3 s.
    let credentials = Credentials::builder(client_for(&fake, T))
        .refresh_margin(Duration::from_secs(1))
        .clock(Arc::new(clock.clone()))
        .build();
    let t1 = credentials.js_ticket().await.expect("t1");
    clock.advance(Duration::from_millis(2000));
    assert_eq!(credentials.js_ticket().await.expect("cached"), t1);
    assert_eq!(fake.counters().ticket, 1);
    clock.advance(Duration::from_millis(1300));
    let t2 = credentials.js_ticket().await.expect("t2");
    assert_ne!(t1, t2, "refreshed before the ticket's real expiry");
    assert!(fake.ticket_is_valid(&t1), "the old one had not expired yet");
    assert_eq!(fake.counters().ticket, 2);
    assert_eq!(fake.counters().access_token, 1);
}

#[tokio::test]
async fn ticket_lifetime_is_capped_at_the_grace() {
    let fake = fake().await; // tickets live 7200 s upstream
    let clock = manual_clock();
    let credentials = Credentials::builder(client_for(&fake, T))
        .js_ticket_max_age(Duration::from_secs(2))
        .refresh_margin(Duration::ZERO)
        .clock(Arc::new(clock.clone()))
        .build();
    let t1 = credentials.js_ticket().await.expect("t1");
    clock.advance(Duration::from_millis(2200));
    let t2 = credentials.js_ticket().await.expect("t2");
    assert_ne!(t1, t2);
}
