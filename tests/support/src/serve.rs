//! Real servers on loopback ports: axum on the calling runtime, actix-web on a thread with its
//! own `System`. The port is bound before the app is built, so that issuer and phone URLs can
//! name it.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// The web framework a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// `axum::serve`.
    Axum,
    /// actix-web's `HttpServer`.
    Actix,
}

enum Stopper {
    Axum(tokio::task::JoinHandle<()>),
    Actix(actix_web::dev::ServerHandle),
}

/// A running server. Dropping it stops the server.
pub struct Served {
    stopper: Stopper,
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Served")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        match &self.stopper {
            Stopper::Axum(task) => task.abort(),
            // `stop` sends the command at once; the returned future only awaits completion.
            Stopper::Actix(handle) => drop(handle.stop(false)),
        }
    }
}

/// A listener on `127.0.0.1:0` and its base URL (`http://127.0.0.1:PORT`).
pub fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    (listener, format!("http://{addr}"))
}

/// Serves `app` on `listener` with client addresses and TCP_NODELAY, like the demos.
pub fn axum(listener: TcpListener, app: axum::Router) -> Served {
    use axum::serve::ListenerExt;
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener)
        .expect("tokio listener")
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
    Served {
        stopper: Stopper::Axum(tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        })),
    }
}

/// Serves the app that `configure` sets up on `listener`, one worker, TCP_NODELAY.
pub async fn actix<F>(listener: TcpListener, configure: F) -> Served
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    use actix_web::{App, HttpServer};
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("actix-test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(1)
                    .on_connect(qrauth_actix::tcp_nodelay)
                    // As the demos and the adapter's docs: a vanished client is noticed at once.
                    .h1_allow_half_closed(false)
                    .listen(listener);
                let server = match server {
                    Ok(server) => server.run(),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(server.handle()));
                let _ = server.await;
            });
        })
        .expect("actix thread");
    let handle = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("actix server started in time")
        .expect("actix thread alive")
        .expect("actix server listens");
    Served {
        stopper: Stopper::Actix(handle),
    }
}

/// Serves qrauth's routes for `service` at the root on `framework`, beside `/api/me` (the
/// verified claims as JSON, through `AuthenticatedUser`).
pub async fn qrauth_app(
    framework: Framework,
    listener: TcpListener,
    service: qrauth_core::QrAuthService,
) -> Served {
    match framework {
        Framework::Axum => {
            use qrauth_axum::QrAuthRouterExt;
            let app = axum::Router::new()
                .route(
                    "/api/me",
                    axum::routing::get(|user: qrauth_axum::AuthenticatedUser| async move {
                        axum::Json(user.claims)
                    }),
                )
                .qrauth("/", service);
            axum(listener, app)
        }
        Framework::Actix => {
            actix(listener, move |config| {
                config
                    .route(
                        "/api/me",
                        actix_web::web::get().to(
                            |user: qrauth_actix::AuthenticatedUser| async move {
                                actix_web::HttpResponse::Ok().json(user.claims)
                            },
                        ),
                    )
                    .configure(qrauth_actix::configure(service.clone()));
            })
            .await
        }
    }
}
