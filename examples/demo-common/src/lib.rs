//! What the demo apps share: the command line, the demo phone users, the HTML pages and HTML
//! escaping, tracing set-up, and serving an axum app (TCP_NODELAY, graceful shutdown).
//! **Demo only**: the phone authenticator here accepts fixed, public credentials.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app_session;
pub mod lan;
pub mod metrics;
mod pages;

pub use pages::{LOGIN_PAGE, PHONE_PAGE, escape_html, me_page};

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::serve::ListenerExt;
use qrauth_core::store::RedisStore;
use qrauth_core::{
    BindingKey, BuiltinProvider, Error, PhoneAuthenticator, PhoneUser, QrAuthService,
    QrAuthServiceBuilder, Result, SigningAlgorithm, SigningKey,
};

/// Logs to stderr at `info`, or what `RUST_LOG` says.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Resolves on Ctrl-C or SIGTERM (what `docker stop`, systemd and Kubernetes send).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// How long [`serve_axum`] waits for connections after the signal when it has no qrauth
/// service to ask for its [grace](QrAuthService::shutdown_grace).
const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_millis(800);

/// Serves an axum app on `listen` until Ctrl-C or SIGTERM: client addresses for qrauth's limits
/// and confirm screen, and no Nagle delay (SSE events and long-poll answers are small writes
/// that must leave at once). For an app that serves a qrauth service use
/// [`serve_axum_service`], which also lets its held connections go at shutdown.
pub async fn serve_axum(listen: SocketAddr, app: axum::Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_axum_on(listener, app, None, shutdown_signal()).await
}

/// [`serve_axum`] for an app that serves `qrauth`: graceful shutdown on Ctrl-C or SIGTERM as in
/// [`serve_axum_on`].
pub async fn serve_axum_service(
    listen: SocketAddr,
    app: axum::Router,
    qrauth: QrAuthService,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    serve_axum_on(listener, app, Some(qrauth), shutdown_signal()).await
}

/// Serves an axum app on `listener` until `signal` resolves, then shuts down gracefully within
/// `qrauth`'s [shutdown grace](QrAuthService::shutdown_grace): [`QrAuthService::shutdown`]
/// (pending long-polls answer at once, event streams say `reconnect` and end), axum stops
/// accepting and closes idle connections, and whatever is still in flight when the grace is
/// over is left behind (the process exits).
pub async fn serve_axum_on(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    qrauth: Option<QrAuthService>,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stopped.await;
    });
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        served = &mut server => return served,
        () = signal => {}
    }
    let grace = qrauth
        .as_ref()
        .map_or(DEFAULT_GRACE, QrAuthService::shutdown_grace);
    if let Some(qrauth) = &qrauth {
        qrauth.shutdown();
    }
    let _ = stop.send(());
    match tokio::time::timeout(grace, server).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!(
                ?grace,
                "shutdown grace over: leaving the remaining connections"
            );
            Ok(())
        }
    }
}

/// Serves the actix-web app that `configure` sets up on `listener` until `signal` resolves,
/// like the actix demo: TCP_NODELAY, no half-closed connections (so that a client that goes
/// away is noticed at once, not at the next keep-alive write), and graceful shutdown within
/// `qrauth`'s [shutdown grace](QrAuthService::shutdown_grace): stop accepting,
/// [`QrAuthService::shutdown`], wait until qrauth's requests in flight are
/// [drained](QrAuthService::drained), then drop every connection (idle keep-alive ones
/// included, which actix-web's own graceful stop would wait for).
///
/// Run it on an actix `System` (`#[actix_web::main]`). `workers`: actix-web's worker count
/// (default: one per core).
pub async fn serve_actix<F>(
    listener: std::net::TcpListener,
    configure: F,
    qrauth: QrAuthService,
    workers: Option<usize>,
    signal: impl Future<Output = ()> + 'static,
) -> std::io::Result<()>
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    use actix_web::{App, HttpServer};
    let mut server = HttpServer::new(move || App::new().configure(configure.clone()))
        .on_connect(qrauth_actix::tcp_nodelay)
        .h1_allow_half_closed(false)
        .disable_signals();
    if let Some(workers) = workers {
        server = server.workers(workers);
    }
    let server = server.listen(listener)?.run();
    let handle = server.handle();
    actix_web::rt::spawn(async move {
        signal.await;
        handle.pause().await;
        qrauth.shutdown();
        qrauth.drained().await;
        handle.stop(false).await;
    });
    server.await
}

/// **Demo only.** Three fixed phone users whose "credential" is the public string
/// `Bearer demo-<name>`. A real application checks its phone app's session token instead.
#[derive(Debug, Default, Clone, Copy)]
pub struct DemoPhoneAuthenticator;

/// The demo users: (credential suffix, subject, nickname).
pub const DEMO_USERS: [(&str, &str, &str); 3] = [
    ("alice", "user-alice", "Alice"),
    ("bob", "user-bob", "Bob"),
    ("carol", "user-carol", "Carol"),
];

#[async_trait]
impl PhoneAuthenticator for DemoPhoneAuthenticator {
    async fn authenticate(&self, authorization: &str) -> Result<PhoneUser> {
        let name = authorization
            .strip_prefix("Bearer demo-")
            .ok_or(Error::Unauthenticated)?;
        let (_, subject, nickname) = DEMO_USERS
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or(Error::Unauthenticated)?;
        Ok(PhoneUser::new(*subject)
            .nickname(*nickname)
            .claim("name", *nickname)
            .claim("email", format!("{name}@demo.invalid")))
    }
}

/// The demo's settings, from flags or environment.
#[derive(Debug, Clone)]
pub struct DemoArgs {
    /// Where to listen (`--listen`, `QRAUTH_DEMO_LISTEN`); loopback by default.
    pub listen: SocketAddr,
    /// The URL browsers and phones use (`--public-url`, `QRAUTH_DEMO_PUBLIC_URL`); default
    /// `http://<listen>`, or `http://<LAN address>:<port>` with `--lan`.
    pub public_url: String,
    /// A PKCS#8 PEM private key to sign id_tokens with (`--signing-key FILE`,
    /// `QRAUTH_SIGNING_KEY`), so that several replicas issue tokens every replica accepts.
    /// Without it a fresh RS256 key is generated at start.
    pub signing_key: Option<std::path::PathBuf>,
    /// A file of 32 or more secret bytes (`--binding-key FILE`, `QRAUTH_BINDING_KEY`), the
    /// `BindingKey` that MACs binding cookies and the rotating QR's scan tokens: replicas must
    /// share it, or a QR shown by one does not scan on another. Without it a random key per
    /// process.
    pub binding_key: Option<std::path::PathBuf>,
    /// A Redis to keep sessions and abuse-limit counters in (`--redis URL`, `REDIS_URL`), so
    /// that several replicas serve one login; default: in memory.
    pub redis: Option<String>,
    /// A Redis Cluster instead (`--redis-cluster URL,URL,…`, `REDIS_CLUSTER_URLS`): seed
    /// node URLs, of which one reachable node is enough. Wins over `--redis`.
    pub redis_cluster: Vec<String>,
    /// `--lan` (`QRAUTH_DEMO_LAN=1`): listen on all interfaces and put this machine's LAN
    /// address in the QR, to scan it with a real phone (see [`lan`]).
    pub lan: bool,
    /// Start-up warnings, printed by [`DemoArgs::print_startup`].
    pub warnings: Vec<String>,
}

impl DemoArgs {
    /// Reads the flags (see `--help` and [`lan`]) or the environment (`QRAUTH_DEMO_LISTEN`,
    /// `QRAUTH_DEMO_PUBLIC_URL`, `QRAUTH_DEMO_LAN`, …), defaulting to
    /// `127.0.0.1:<default_port>`.
    pub fn from_env(default_port: u16) -> std::result::Result<Self, String> {
        Self::parse(
            std::env::args().skip(1),
            &|name| std::env::var(name).ok(),
            default_port,
            lan::interface_addresses,
        )
    }

    /// [`DemoArgs::from_env`] over given arguments, environment and interface addresses.
    pub(crate) fn parse(
        mut args: impl Iterator<Item = String>,
        env: &dyn Fn(&str) -> Option<String>,
        default_port: u16,
        interfaces: impl FnOnce() -> std::io::Result<Vec<std::net::IpAddr>>,
    ) -> std::result::Result<Self, String> {
        let mut endpoint = lan::EndpointFlags::from_env(env, "QRAUTH_DEMO_LISTEN")?;
        let mut signing_key = env("QRAUTH_SIGNING_KEY");
        let mut binding_key = env("QRAUTH_BINDING_KEY");
        let mut redis = env("REDIS_URL").filter(|u| !u.is_empty());
        let node_list = |list: String| -> Vec<String> {
            list.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut redis_cluster = env("REDIS_CLUSTER_URLS").map(node_list).unwrap_or_default();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--signing-key" => signing_key = args.next(),
                "--binding-key" => binding_key = args.next(),
                "--redis" => redis = args.next(),
                "--redis-cluster" => {
                    redis_cluster = args.next().map(node_list).unwrap_or_default();
                    if redis_cluster.is_empty() {
                        return Err("--redis-cluster needs URL,URL,…".into());
                    }
                }
                "--help" | "-h" => {
                    return Err(format!(
                        "usage: {} [--signing-key PKCS8.pem] [--binding-key FILE] [--redis redis://HOST:PORT/ | \
                         --redis-cluster redis://HOST:PORT,redis://HOST:PORT,…]",
                        lan::USAGE
                    ));
                }
                other => {
                    if !endpoint.take(other, &mut args)? {
                        return Err(format!("unknown argument {other}; try --help"));
                    }
                }
            }
        }
        let endpoint = endpoint.resolve(default_port, interfaces)?;
        Ok(Self {
            listen: endpoint.listen,
            public_url: endpoint.public_url,
            signing_key: signing_key.map(Into::into),
            binding_key: binding_key.map(Into::into),
            redis,
            redis_cluster,
            lan: endpoint.lan,
            warnings: endpoint.warnings,
        })
    }

    /// The start-up lines: the URL to open on this machine and, with `--lan`, that the phone
    /// must be on the same network, then the warnings (see [`lan::Endpoint::startup_lines`]).
    pub fn startup_lines(&self, demo: &str) -> Vec<String> {
        lan::startup_lines(
            demo,
            self.listen,
            &self.public_url,
            self.lan,
            &self.warnings,
        )
    }

    /// Prints [`DemoArgs::startup_lines`]: the URLs on stdout, the warnings on stderr.
    pub fn print_startup(&self, demo: &str) {
        lan::print_lines(&self.startup_lines(demo));
    }
}

/// The demo's qrauth service: the built-in provider with the demo phone users, mounted at the
/// root of `public_url`. Cookies drop `Secure` only when the URL is plain HTTP.
pub fn demo_service(public_url: &str) -> Result<QrAuthService> {
    demo_service_builder(public_url, None)?.build()
}

/// The service for `args`: [`demo_service`], signing with the configured key if there is one,
/// and keeping sessions and limit counters in Redis if one is configured.
pub async fn service_for(args: &DemoArgs) -> Result<QrAuthService> {
    let key = match &args.signing_key {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            // PKCS#8 PEM: try the algorithms the built-in issuer signs with.
            let key = [
                SigningAlgorithm::Rs256,
                SigningAlgorithm::Es256,
                SigningAlgorithm::EdDsa,
            ]
            .into_iter()
            .find_map(|alg| SigningKey::from_pem(alg, &pem, None).ok())
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}: not an RSA-2048+, P-256 or Ed25519 PKCS#8 PEM private key",
                    path.display()
                ))
            })?;
            Some(key)
        }
        None => None,
    };
    let signs_alone = key.is_none();
    let mut service = demo_service_builder(&args.public_url, key)?;
    if let Some(path) = &args.binding_key {
        let bytes =
            std::fs::read(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        service = service.binding_key(
            BindingKey::from_bytes(&bytes)
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?,
        );
    }
    let builder = match (&args.redis, args.redis_cluster.is_empty()) {
        (_, false) => RedisStore::cluster(args.redis_cluster.iter().cloned()),
        (Some(url), true) => RedisStore::builder(url.as_str()),
        (None, true) => return service.build(),
    };
    if signs_alone {
        eprintln!(
            "warning: --redis without --signing-key: this replica signs with a key of its own, \
             so tokens it issues fail on other replicas"
        );
    }
    if args.binding_key.is_none() {
        eprintln!(
            "warning: --redis without --binding-key: this replica MACs bindings and QR scan \
             tokens with a key of its own, so a QR it shows does not scan on other replicas"
        );
    }
    let store = builder.key_prefix("qrauth-demo:").connect().await?;
    service.store(store).build()
}

/// [`demo_service`], before `build()`, for callers that change more settings (the store, the
/// lifetimes, …), signing with `signing_key` (default: a generated key).
pub fn demo_service_builder(
    public_url: &str,
    signing_key: Option<SigningKey>,
) -> Result<QrAuthServiceBuilder> {
    let mut provider = BuiltinProvider::builder(Arc::new(DemoPhoneAuthenticator));
    if let Some(key) = signing_key {
        provider = provider.signing_key(key);
    }
    let provider = provider
        .issuer(public_url)
        .audience("qrauth-demo")
        .app_name("qrauth demo")
        .phone_url(format!("{public_url}/phone"))
        .build()?;
    let builder = QrAuthService::builder(Arc::new(provider));
    Ok(if public_url.starts_with("http://") {
        builder.insecure_dev_cookies()
    } else {
        builder
    })
}
