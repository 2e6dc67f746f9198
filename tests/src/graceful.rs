//! The demos' own serve functions on loopback ports, stopped the way SIGTERM stops them, and the
//! process's view of their sockets.
//!
//! [`spawn_graceful`] serves exactly what the demo binaries serve, through exactly their serve
//! functions (`demo_common::serve_axum_on`, `demo_common::serve_actix`), with the shutdown
//! signal in the test's hands instead of the process's: [`GracefulServer::stop`] is SIGTERM.
//! [`server_sockets`] counts, from `/proc`, the server-side TCP sockets of a port that this
//! process holds descriptors for, and those in `CLOSE_WAIT` (the peer closed, the server did
//! not yet).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use qrauth_core::QrAuthService;

use crate::{Browser, Phone, ServerKind, ServerOptions, build_service};

/// A demo served by its own serve function, with a shutdown signal the test sends.
pub struct GracefulServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port it listens on.
    pub port: u16,
    /// Which framework serves it.
    pub kind: ServerKind,
    /// The qrauth service it serves.
    pub service: QrAuthService,
    signal: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
}

impl std::fmt::Debug for GracefulServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GracefulServer")
            .field("base", &self.base)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl GracefulServer {
    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A browser without cookies.
    pub fn browser(&self) -> Browser {
        Browser::at(&self.base, &self.service.cookies().binding_name())
    }

    /// Alice's phone.
    pub fn alice(&self) -> Phone {
        Phone::at(&self.base, Some("Bearer demo-alice"))
    }

    /// Sends the shutdown signal (what SIGTERM does to the demo) and waits, at most `bound`,
    /// for the serve function to return; returns how long that took. Panics if it did not
    /// return in time or returned an error.
    pub async fn stop(&mut self, bound: Duration) -> Duration {
        let started = Instant::now();
        if let Some(signal) = self.signal.take() {
            let _ = signal.send(());
        }
        let done = self.done.take().expect("stopped only once");
        match tokio::time::timeout(bound, done).await {
            Ok(Ok(Ok(()))) => started.elapsed(),
            Ok(Ok(Err(e))) => panic!("{:?} demo: serve failed: {e}", self.kind),
            Ok(Err(_)) => panic!("{:?} demo: serve thread gone", self.kind),
            Err(_) => panic!("{:?} demo did not stop within {bound:?}", self.kind),
        }
    }
}

impl Drop for GracefulServer {
    fn drop(&mut self) {
        if let Some(signal) = self.signal.take() {
            let _ = signal.send(());
        }
    }
}

/// Serves the demo of `kind` (a qrauth service built like [`build_service`] for `public`, the
/// URL browsers use: default the server's own) through the demo's serve function, on
/// `127.0.0.1:0`.
pub async fn spawn_graceful(
    kind: ServerKind,
    public: Option<&str>,
    options: &ServerOptions,
) -> GracefulServer {
    let (listener, base) = qrauth_test_support::serve::bind();
    let port = listener.local_addr().expect("local addr").port();
    let service = build_service(public.unwrap_or(&base), options).await;
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let (finished, done) = tokio::sync::oneshot::channel();
    let stopped = async move {
        let _ = signalled.await;
    };
    match kind {
        ServerKind::Axum => {
            listener.set_nonblocking(true).expect("non-blocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let app = axum_demo::app(service.clone());
            let qrauth = service.clone();
            tokio::spawn(async move {
                let served = demo_common::serve_axum_on(listener, app, Some(qrauth), stopped).await;
                let _ = finished.send(served);
            });
        }
        ServerKind::Actix => {
            let qrauth = service.clone();
            std::thread::Builder::new()
                .name("actix-graceful-demo".into())
                .spawn(move || {
                    let app = {
                        let qrauth = qrauth.clone();
                        move |config: &mut actix_web::web::ServiceConfig| {
                            actix_demo::configure(qrauth.clone())(config)
                        }
                    };
                    let served = actix_web::rt::System::new().block_on(demo_common::serve_actix(
                        listener, app, qrauth, None, stopped,
                    ));
                    let _ = finished.send(served);
                })
                .expect("actix thread");
        }
    }
    let server = GracefulServer {
        base,
        port,
        kind,
        service,
        signal: Some(signal),
        done: Some(done),
    };
    // Served once it answers.
    let client = crate::client(Duration::from_secs(2));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = client.get(server.url("/qrcode/widget.js")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kind:?} demo did not answer within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server
}

/// Server-side TCP sockets of one listening port, as this process holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSockets {
    /// Accepted connections (any state but `LISTEN`) this process has a descriptor for.
    pub held: usize,
    /// Of those, the ones in `CLOSE_WAIT`: the client closed, the server has not.
    pub close_wait: usize,
}

/// The inodes of the sockets this process has descriptors for.
fn socket_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(entry.path())
            && let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        {
            inodes.insert(inode);
        }
    }
    inodes
}

/// Counts the server-side sockets of `port` that this process holds (from `/proc/net/tcp` and
/// `/proc/net/tcp6`, joined with `/proc/self/fd` by inode).
pub fn server_sockets(port: u16) -> ServerSockets {
    const LISTEN: &str = "0A";
    const CLOSE_WAIT: &str = "08";
    let mine = socket_inodes();
    let mut counts = ServerSockets {
        held: 0,
        close_wait: 0,
    };
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port != Some(port) || *state == LISTEN {
                continue;
            }
            if inode.parse::<u64>().is_ok_and(|i| mine.contains(&i)) {
                counts.held += 1;
                if *state == CLOSE_WAIT {
                    counts.close_wait += 1;
                }
            }
        }
    }
    counts
}

/// How many socket descriptors this process has open (cheaper than [`server_sockets`]).
pub fn open_sockets() -> usize {
    socket_inodes().len()
}

/// How many descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}
