//! `QrAuthService::shutdown` through the HTTP handlers, in process (real time: a wait that a
//! paused clock skipped would pass for an early answer): pending long-polls answer at once
//! with the current status, streams end with `event: reconnect`, new ones do the same
//! straight away, a confirm during the shutdown is applied exactly once, and `drained` waits
//! for requests in flight at most the grace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::COOKIE;
use http::{HeaderValue, Method};
use qrauth_core::handler::{ApiBody, BodyStream};
use qrauth_core::provider::builtin::{BuiltinProvider, SigningAlgorithm};
use qrauth_core::{ApiRequest, BindingSecret, Limits, QrAuthService, QrState, Route};
use qrauth_test_support::phone::TestPhones;
use qrauth_test_support::service_client::Client;

const ALICE: &str = "Bearer alice";
/// What "at once" means here; the waits asked for are 30 s.
const AT_ONCE: Duration = Duration::from_secs(1);
const RECONNECT: &[u8] = b"event: reconnect\ndata: {}\n\n";

fn service(grace: Duration) -> QrAuthService {
    let provider = BuiltinProvider::builder(Arc::new(TestPhones))
        .algorithm(SigningAlgorithm::Es256)
        .issuer("https://login.example.com/auth")
        .audience("example-web")
        .phone_url("https://login.example.com/m/confirm")
        .build()
        .expect("provider");
    QrAuthService::builder(Arc::new(provider))
        .limits(Limits::unlimited())
        .shutdown_grace(grace)
        .build()
        .expect("service")
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what} within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `GET /qrcode/events` for the browser holding `binding`: the body stream.
async fn events(service: &QrAuthService, id: &str, binding: &BindingSecret) -> BodyStream {
    let mut request = ApiRequest::new(Method::GET);
    request.query = Some(format!("qrcodeId={id}"));
    let cookie = format!(
        "{}={}",
        service.cookies().binding_name(),
        binding.expose_secret()
    );
    request
        .headers
        .insert(COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    match service.handle(Route::Events, request).await.body {
        ApiBody::Stream(stream) => stream,
        ApiBody::Full(body) => panic!("not a stream: {body:?}"),
    }
}

async fn next_chunk(stream: &mut BodyStream) -> Option<Bytes> {
    tokio::time::timeout(AT_ONCE, stream.next())
        .await
        .expect("a chunk at once")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_long_polls_answer_at_once_with_the_current_status() {
    let service = service(Duration::from_millis(800));
    let client = Client::new(service.clone());
    let binding = BindingSecret::generate().expect("binding");
    let qr = client.generate(&binding).await.expect("generate");
    let v = client.poll(&qr.id, &binding).await.expect("poll").version;
    let waits: Vec<_> = (0..3)
        .map(|_| {
            let (client, id, binding) = (client.clone(), qr.id.clone(), binding.clone());
            tokio::spawn(async move {
                client
                    .wait_for_change(&id, &binding, v, Duration::from_secs(30))
                    .await
            })
        })
        .collect();
    until("three waiters", || service.live_waiters() == 3).await;
    assert!(!service.is_shutting_down());

    let signalled = Instant::now();
    service.shutdown();
    for wait in waits {
        let status = wait.await.expect("task").expect("a status, not an error");
        assert_eq!((status.state, status.version), (QrState::Pending, v));
    }
    assert!(signalled.elapsed() < AT_ONCE, "{:?}", signalled.elapsed());
    assert!(service.is_shutting_down());
    assert_eq!(service.live_waiters(), 0);

    // A long-poll that starts now answers at once too.
    let started = Instant::now();
    let status = client
        .wait_for_change(&qr.id, &binding, v, Duration::from_secs(30))
        .await
        .expect("status");
    assert_eq!(status.version, v);
    assert!(started.elapsed() < AT_ONCE);
    // Calling it again changes nothing.
    service.shutdown();
    assert!(service.is_shutting_down());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_say_reconnect_and_end() {
    let service = service(Duration::from_millis(800));
    let client = Client::new(service.clone());
    let binding = BindingSecret::generate().expect("binding");
    let qr = client.generate(&binding).await.expect("generate");
    let mut stream = events(&service, qr.id.as_str(), &client.cookie_binding(&binding)).await;
    let first = next_chunk(&mut stream).await.expect("first chunk");
    assert!(first.starts_with(b"retry: "), "{first:?}");
    // The stream now waits for a change.
    let reading = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Some(chunk) = stream.next().await {
            rest.push(chunk);
        }
        rest
    });
    until("the stream's waiter", || service.live_waiters() == 1).await;
    service.shutdown();
    let rest = tokio::time::timeout(AT_ONCE, reading)
        .await
        .expect("the stream ends at once")
        .expect("task");
    assert_eq!(rest, vec![Bytes::from_static(RECONNECT)]);

    // A stream opened during the shutdown: the snapshot, then reconnect, then the end.
    let mut stream = events(&service, qr.id.as_str(), &client.cookie_binding(&binding)).await;
    let chunk = next_chunk(&mut stream).await.expect("a chunk");
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("\ndata: {"), "{text}");
    assert!(chunk.ends_with(RECONNECT), "{text}");
    assert_eq!(next_chunk(&mut stream).await, None);
    assert_eq!(service.live_waiters(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirm_during_the_shutdown_is_applied_once() {
    let service = service(Duration::from_millis(800));
    let client = Client::new(service.clone());
    let binding = BindingSecret::generate().expect("binding");
    let qr = client.generate(&binding).await.expect("generate");
    let scan = client.scan(&qr.id, ALICE).await.expect("scan");
    let scanned = client.poll(&qr.id, &binding).await.expect("poll");
    service.shutdown();
    let state = client
        .confirm(&qr.id, &scan.confirm_token, ALICE)
        .await
        .expect("confirm applied");
    assert_eq!(state, QrState::Confirmed);
    let confirmed = client.poll(&qr.id, &binding).await.expect("poll");
    assert_eq!(confirmed.state, QrState::Confirmed);
    assert_eq!(confirmed.version, scanned.version + 1, "one transition");
    assert!(confirmed.ticket.is_some());
    // The phone's retry (its first answer lost with the connection) changes nothing.
    let again = client.confirm(&qr.id, &scan.confirm_token, ALICE).await;
    assert!(again.is_err(), "{again:?}");
    let after = client.poll(&qr.id, &binding).await.expect("poll");
    assert_eq!(after.version, confirmed.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_waits_for_requests_in_flight_at_most_the_grace() {
    let grace = Duration::from_millis(300);
    let service = service(grace);
    assert_eq!(service.shutdown_grace(), grace);
    // Nothing in flight: at once.
    let started = Instant::now();
    service.drained().await;
    assert!(started.elapsed() < grace);

    // In flight until dropped.
    let request = service.request_in_flight();
    let other = service.request_in_flight();
    assert_eq!(service.requests_in_flight(), 2);
    let drained = {
        let service = service.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            service.drained().await;
            started.elapsed()
        })
    };
    drop(request);
    assert_eq!(service.requests_in_flight(), 1);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!drained.is_finished(), "one request is still in flight");
    drop(other);
    let waited = tokio::time::timeout(AT_ONCE, drained)
        .await
        .expect("drained once the last request ended")
        .expect("task");
    assert!(waited < grace, "{waited:?}");
    assert_eq!(service.requests_in_flight(), 0);

    // A request that never ends: the grace, then no longer.
    let _stuck = service.request_in_flight();
    let started = Instant::now();
    service.drained().await;
    let waited = started.elapsed();
    assert!(
        waited >= grace && waited < grace + AT_ONCE,
        "waited {waited:?} for a grace of {grace:?}"
    );
}
