//! Held connections under churn and deploys (issue 20), on both demos served by their own serve
//! functions (`demo_common::serve_axum_on`, `demo_common::serve_actix`) on loopback ports:
//!
//! - churn: a client opens and drops 1 000 event streams and 1 000 long-polls, one after the
//!   other; each one's waiter and server-side socket are gone within a second of the drop
//!   (never left in `CLOSE_WAIT` until a keep-alive write), and afterwards the process has no
//!   descriptor more than before;
//! - shutdown: 500 held long-polls and 500 event streams, then the signal SIGTERM sends: every
//!   long-poll gets its answer (the current status), every stream a final `event: reconnect`
//!   and a clean end, and the serve function returns in under a second;
//! - a login confirmed during the shutdown, on replica A, completes on replica B (both on one
//!   `redis-server`): the transition is applied once, never half.
//!
//! The tests of this file run one at a time (they count the process's descriptors).

use std::time::{Duration, Instant};

use qrauth_tests::{
    GracefulServer, RedisServer, ServerKind, ServerOptions, SseReader, open_fds, open_sockets,
    server_sockets, spawn_graceful, version,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Opened and dropped per kind of held request.
const CHURN: usize = 1000;
/// Held per kind of held request when the shutdown signal comes.
const HELD: usize = 500;
/// A dropped client's waiter and socket are gone within this (issue 20).
const RELEASE_BOUND: Duration = Duration::from_secs(1);
/// The serve function returns within this of the signal (issue 20).
const STOP_BOUND: Duration = Duration::from_secs(1);
/// Both replicas sign and verify as this issuer (a load balancer's public URL).
const ISSUER: &str = "https://login.example.com";

/// The tests count the process's descriptors: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Polls `done` every millisecond until it holds or `bound` passes; returns how long it took.
async fn within(bound: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    loop {
        if done() {
            return Some(started.elapsed());
        }
        if started.elapsed() > bound {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A raw HTTP/1.1 `GET path` with the browser's cookie on a fresh connection.
async fn raw_get(server: &GracefulServer, path: &str, cookie: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port))
        .await
        .expect("connect to the demo");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {cookie}\r\nAccept: */*\r\n\r\n",
        server.port
    );
    tcp.write_all(request.as_bytes()).await.expect("send");
    tcp
}

/// Reads until the first status event of a stream has arrived, then whatever else is buffered,
/// so that dropping the socket sends a FIN (unread data would make it a reset).
async fn read_first_event(tcp: &mut TcpStream) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            let n = tcp.read(&mut buf).await.expect("read the stream");
            assert!(n > 0, "stream closed before its first event: {seen:?}");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(at) = text.find("\ndata: ")
                && text[at..].contains("\n\n")
            {
                assert!(text.starts_with("HTTP/1.1 200"), "{text}");
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("first event within 5 s");
    // The chunk's trailing CRLF may follow in a segment of its own.
    tokio::time::sleep(Duration::from_millis(1)).await;
    while let Ok(n) = tcp.try_read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Waits until this request's waiter is the only one of the server.
async fn held(server: &GracefulServer, what: &str, i: usize) {
    let service = &server.service;
    within(Duration::from_secs(5), || service.live_waiters() == 1)
        .await
        .unwrap_or_else(|| panic!("{what} {i}: no waiter on the server within 5 s"));
}

/// Waits until the dropped client's waiter, request and socket are gone (the process holds
/// no more sockets than `sockets`, the idle count); returns how long.
async fn released(server: &GracefulServer, sockets: usize, what: &str, i: usize) -> Duration {
    let service = &server.service;
    within(RELEASE_BOUND, || {
        service.live_waiters() == 0
            && service.requests_in_flight() == 0
            && open_sockets() <= sockets
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{what} {i}: still held {RELEASE_BOUND:?} after the client went away: {} waiters, \
             {} requests in flight, {} sockets (idle: {sockets}), {:?}",
            service.live_waiters(),
            service.requests_in_flight(),
            open_sockets(),
            server_sockets(server.port)
        )
    })
}

async fn churn(kind: ServerKind) {
    let _serial = SERIAL.lock().await;
    let server = spawn_graceful(kind, None, &ServerOptions::default()).await;
    let (id, cookie) = {
        let mut browser = server.browser();
        let qr = browser.generate().await;
        (qr.id, browser.cookie_header().expect("binding cookie"))
    };
    let events = format!("/qrcode/events?qrcodeId={id}");
    let long_poll = format!("/qrcode/status?qrcodeId={id}&wait=30");
    // One of each first, so that whatever the servers open lazily is in the baseline.
    let mut tcp = raw_get(&server, &events, &cookie).await;
    read_first_event(&mut tcp).await;
    drop(tcp);
    let tcp = raw_get(&server, &long_poll, &cookie).await;
    held(&server, "warm-up long-poll", 0).await;
    drop(tcp);
    let service = &server.service;
    within(RELEASE_BOUND, || {
        service.live_waiters() == 0 && server_sockets(server.port).held == 0
    })
    .await
    .expect("warm-up released");
    let baseline = open_fds();
    let sockets = open_sockets();

    let started = Instant::now();
    let mut slowest = [Duration::ZERO; 2];
    for i in 0..CHURN {
        let mut tcp = raw_get(&server, &events, &cookie).await;
        read_first_event(&mut tcp).await;
        held(&server, "stream", i).await;
        drop(tcp);
        slowest[0] = slowest[0].max(released(&server, sockets, "stream", i).await);

        let tcp = raw_get(&server, &long_poll, &cookie).await;
        held(&server, "long-poll", i).await;
        drop(tcp);
        slowest[1] = slowest[1].max(released(&server, sockets, "long-poll", i).await);
        if i % 100 == 0 {
            let left = server_sockets(server.port);
            assert_eq!((left.held, left.close_wait), (0, 0), "after {i}: {left:?}");
        }
    }
    let churned = started.elapsed();

    // After a second nothing is left: no CLOSE_WAIT, no waiter, no extra descriptor.
    let port = server.port;
    let settled = within(RELEASE_BOUND, || {
        server_sockets(port).close_wait == 0
            && service.live_waiters() == 0
            && open_fds() <= baseline
    })
    .await;
    assert!(
        settled.is_some(),
        "{kind:?}: {RELEASE_BOUND:?} after the churn: {:?}, {} waiters, {} descriptors (baseline \
         {baseline})",
        server_sockets(port),
        service.live_waiters(),
        open_fds()
    );
    println!(
        "{kind:?}: {CHURN} streams + {CHURN} long-polls opened and dropped in {churned:?}; \
         slowest release: stream {:?}, long-poll {:?}; descriptors {} (baseline {baseline})",
        slowest[0],
        slowest[1],
        open_fds()
    );
}

/// What one held client got when the server shut down.
enum Held {
    LongPoll(qrauth_tests::Resp),
    Stream(Vec<qrauth_tests::SseEvent>),
}

async fn shutdown_with_held_connections(kind: ServerKind) {
    let _serial = SERIAL.lock().await;
    let mut server = spawn_graceful(kind, None, &ServerOptions::default()).await;
    let mut browser = server.browser();
    let qr = browser.generate().await;
    let v = version(&browser.bound_status(&qr.id).await);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..HELD {
        let (poller, id) = (browser.clone(), qr.id.clone());
        clients.spawn(async move {
            let query = format!("qrcodeId={id}&wait=30&since={v}");
            Held::LongPoll(poller.status_query(&query).await)
        });
        let (streamer, id) = (browser.clone(), qr.id.clone());
        clients.spawn(async move {
            let response = streamer.events(&id, Some(v)).await;
            assert_eq!(response.status().as_u16(), 200);
            Held::Stream(SseReader::new(response).rest().await)
        });
    }
    let service = server.service.clone();
    within(Duration::from_secs(60), || {
        service.live_waiters() == 2 * HELD
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{kind:?}: only {} of {} held within 60 s",
            service.live_waiters(),
            2 * HELD
        )
    });

    let stopped = server.stop(Duration::from_secs(10)).await;

    let (mut answered, mut ended) = (0, 0);
    let collect = async {
        while let Some(client) = clients.join_next().await {
            match client.expect("every held client finishes cleanly") {
                Held::LongPoll(response) => {
                    let body = response.assert_json(200);
                    assert_eq!(body["status"], "pending", "{body}");
                    assert_eq!(version(&body), v, "the current status: {body}");
                    let connection = response.headers.get("connection");
                    assert_eq!(
                        connection.and_then(|c| c.to_str().ok()),
                        Some("close"),
                        "answered with Connection: close"
                    );
                    answered += 1;
                }
                Held::Stream(events) => {
                    let last = events.last().expect("events");
                    assert_eq!(last.event.as_deref(), Some("reconnect"), "{events:?}");
                    assert_eq!(last.data.as_deref(), Some("{}"), "{events:?}");
                    ended += 1;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), collect)
        .await
        .expect("every client finished within 20 s");
    assert_eq!((answered, ended), (HELD, HELD));
    println!(
        "{kind:?}: stopped {stopped:?} after the signal with {HELD} long-polls and {HELD} streams held"
    );
    assert!(
        stopped < STOP_BOUND,
        "{kind:?}: the server took {stopped:?} to stop (bound {STOP_BOUND:?})"
    );
}

async fn confirm_during_shutdown(kind: ServerKind) {
    let _serial = SERIAL.lock().await;
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("redis-server start");
    let options = ServerOptions::default().redis(redis.url()).issuer(ISSUER);
    let mut a = spawn_graceful(kind, None, &options).await;
    let other = match kind {
        ServerKind::Axum => ServerKind::Actix,
        ServerKind::Actix => ServerKind::Axum,
    };
    let b = qrauth_tests::spawn(other, options).await;

    let mut browser = a.browser();
    let qr = browser.generate().await;
    let phone = a.alice();
    let (token, _) = phone.scan_ok(&qr.id).await;
    let scanned = browser.bound_status(&qr.id).await;
    assert_eq!(scanned["status"], "scanned");
    let v = version(&scanned);

    // The browser waits on A, by long-poll and by stream.
    let poll = {
        let (browser, id) = (browser.clone(), qr.id.clone());
        tokio::spawn(async move {
            browser
                .status_query(&format!("qrcodeId={id}&wait=30&since={v}"))
                .await
        })
    };
    let stream = {
        let (browser, id) = (browser.clone(), qr.id.clone());
        tokio::spawn(async move {
            let response = browser.events(&id, Some(v)).await;
            SseReader::new(response).rest().await
        })
    };
    let service = a.service.clone();
    within(Duration::from_secs(10), || service.live_waiters() == 2)
        .await
        .expect("both waits held on A");

    // A is told to shut down (what its serve function does first on SIGTERM) ...
    let signalled = Instant::now();
    a.service.shutdown();
    let answer = tokio::time::timeout(Duration::from_secs(1), poll)
        .await
        .expect("the long-poll answers at once")
        .expect("long-poll task");
    let body = answer.assert_json(200);
    assert_eq!(
        (body["status"].clone(), version(&body)),
        (json!("scanned"), v),
        "the current status: {body}"
    );
    let events = tokio::time::timeout(Duration::from_secs(1), stream)
        .await
        .expect("the stream ends at once")
        .expect("stream task");
    assert_eq!(
        events.last().and_then(|e| e.event.as_deref()),
        Some("reconnect")
    );
    println!(
        "{kind:?}: held connections let go {:?} after the signal",
        signalled.elapsed()
    );

    // ... and the phone's confirm arrives while it drains: applied, once, or refused retryably.
    let confirm = phone.confirm(&qr.id, &token).await;
    match confirm.status {
        200 => assert_eq!(confirm.json(), json!({ "status": "confirmed" })),
        503 => {
            assert!(confirm.headers.contains_key("retry-after"), "retryable");
            let retried = qrauth_tests::Phone::at(&b.base, Some("Bearer demo-alice"))
                .confirm(&qr.id, &token)
                .await;
            assert_eq!(retried.json(), json!({ "status": "confirmed" }));
        }
        other => panic!("confirm during shutdown: {other} {}", confirm.text()),
    }

    // The browser re-polls through the load balancer, which now sends it to B.
    let on_b = browser.on_base(&b.base);
    let answer = on_b
        .status_query(&format!("qrcodeId={}&wait=30&since={v}", qr.id))
        .await;
    let body: Value = answer.assert_json(200);
    assert_eq!(body["status"], "confirmed", "{body}");
    assert_eq!(version(&body), v + 1, "one transition, not two: {body}");
    let ticket = body["ticket"].as_str().expect("ticket");
    let tokens = on_b.exchange(ticket).await.assert_json(200);
    assert!(tokens["id_token"].is_string(), "{tokens}");
    // A confirm retried on B after all (its answer from A lost) changes nothing.
    let again = qrauth_tests::Phone::at(&b.base, Some("Bearer demo-alice"))
        .confirm(&qr.id, &token)
        .await;
    assert!(
        (400..500).contains(&again.status),
        "a repeated confirm is refused: {} {}",
        again.status,
        again.text()
    );

    let stopped = a.stop(Duration::from_secs(10)).await;
    assert!(stopped < STOP_BOUND, "{kind:?}: A took {stopped:?} to stop");
    drop(b);
    drop(redis);
}

macro_rules! suite {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn churn_leaves_nothing_behind() {
            super::churn($kind).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn shutdown_with_held_connections() {
            super::shutdown_with_held_connections($kind).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn confirm_during_shutdown_completes_on_another_replica() {
            super::confirm_during_shutdown($kind).await;
        }
    };
}

mod axum {
    suite!(qrauth_tests::ServerKind::Axum);
}

mod actix {
    suite!(qrauth_tests::ServerKind::Actix);
}
