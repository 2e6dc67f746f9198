//! A replica stopped while the widget waits, in the system Chromium (`tests/browser/failover.mjs`):
//! two demo replicas (one axum, one actix-web, both served by the demos' own serve functions)
//! on one `redis-server`, behind a loopback TCP proxy that plays the load balancer. Mid-login
//! the test deregisters replica A at the proxy and stops it the way SIGTERM does; the page
//! still completes the login through replica B, and its status line never shows a problem.
//! Each test runs once with A on axum and once with A on actix-web, by event stream and by
//! long-poll.
//!
//! Needs what `tests/browser.rs` needs (Chromium, Node.js, `npm ci --prefix tests/browser`)
//! and `redis-server`; without them the tests fail, saying what to install.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use qrauth_tests::chromium::{chromium_and_node, run_browser_script};
use qrauth_tests::{GracefulServer, RedisServer, ServerKind, ServerOptions, spawn_graceful};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

/// The stopped replica's serve function returns within this of the signal.
const STOP_BOUND: Duration = Duration::from_secs(1);

/// The replicas' ports (filled in once they run) and which one takes new connections.
#[derive(Default)]
struct Routing {
    ports: [AtomicU16; 2],
    active: AtomicUsize,
}

/// A loopback TCP proxy: each new connection goes to the active backend (the other one if that
/// refuses), bytes copied both ways until either side closes.
async fn load_balancer(routing: Arc<Routing>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let base = format!("http://{}", listener.local_addr().expect("proxy addr"));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let first = routing.active.load(Ordering::SeqCst);
            let ports = [first, 1 - first].map(|i| routing.ports[i].load(Ordering::SeqCst));
            tokio::spawn(async move {
                let _ = client.set_nodelay(true);
                for port in ports {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = server.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    base
}

/// The test's control port: `POST /stop` deregisters replica A at the proxy, then stops it as
/// SIGTERM does, and answers how long that took.
async fn control(replica: GracefulServer, routing: Arc<Routing>) -> String {
    let replica = Arc::new(tokio::sync::Mutex::new(Some(replica)));
    let app = axum::Router::new().route(
        "/stop",
        axum::routing::post(move || {
            let (replica, routing) = (replica.clone(), routing.clone());
            async move {
                routing.active.store(1, Ordering::SeqCst);
                let mut replica = replica.lock().await.take().expect("stopped once");
                let held = replica.service.live_waiters();
                let stopped = replica.stop(Duration::from_secs(10)).await;
                axum::Json(json!({
                    "stopped": format!("{:?}", replica.kind),
                    "heldOnA": held,
                    "stoppedMs": stopped.as_secs_f64() * 1000.0,
                }))
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind control");
    let base = format!("http://{}", listener.local_addr().expect("control addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn failover(a_kind: ServerKind, transport: &'static str) {
    chromium_and_node();
    let redis = tokio::task::spawn_blocking(RedisServer::start)
        .await
        .expect("redis-server start");
    // The proxy first: its URL is the replicas' issuer and phone URL.
    let routing = Arc::new(Routing::default());
    let base = load_balancer(routing.clone()).await;
    let options = ServerOptions::default().redis(redis.url());
    let b_kind = match a_kind {
        ServerKind::Axum => ServerKind::Actix,
        ServerKind::Actix => ServerKind::Axum,
    };
    let a = spawn_graceful(a_kind, Some(&base), &options).await;
    let b = spawn_graceful(b_kind, Some(&base), &options).await;
    routing.ports[0].store(a.port, Ordering::SeqCst);
    routing.ports[1].store(b.port, Ordering::SeqCst);
    let control = control(a, routing).await;
    let result = tokio::task::spawn_blocking(move || {
        let label = format!("failover {transport}");
        run_browser_script("failover.mjs", &[&base, &control, transport], &label, None).0
    })
    .await
    .expect("runner thread");
    assert!(
        result["welcome"]
            .as_str()
            .is_some_and(|w| w.contains("Alice")),
        "{result}"
    );
    let stopped_ms = result["stoppedMs"].as_f64().expect("stoppedMs");
    assert!(
        stopped_ms < STOP_BOUND.as_secs_f64() * 1000.0,
        "replica A took {stopped_ms} ms to stop: {result}"
    );
    assert_eq!(result["consoleErrors"], json!([]), "{result}");
    drop(b);
    drop(redis);
}

macro_rules! suite {
    ($kind:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stream_survives_a_stopped_replica() {
            super::failover($kind, "sse").await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn long_poll_survives_a_stopped_replica() {
            super::failover($kind, "longpoll").await;
        }
    };
}

mod axum_stopped {
    suite!(qrauth_tests::ServerKind::Axum);
}

mod actix_stopped {
    suite!(qrauth_tests::ServerKind::Actix);
}
