//! What the demo apps share: the command line, the demo phone users, the HTML pages and HTML
//! escaping, tracing set-up, and serving an axum app (TCP_NODELAY, graceful shutdown).
//! **Demo only**: the phone authenticator here accepts fixed, public credentials.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod metrics;
mod pages;

pub use pages::{LOGIN_PAGE, PHONE_PAGE, escape_html, me_page};

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::serve::ListenerExt;
use qrauth_core::store::RedisStore;
use qrauth_core::{
    BuiltinProvider, Error, PhoneAuthenticator, PhoneUser, QrAuthService, QrAuthServiceBuilder,
    Result, SigningAlgorithm, SigningKey,
};

/// Logs to stderr at `info`, or what `RUST_LOG` says.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

/// Serves an axum app on `listen` until Ctrl-C: client addresses for qrauth's limits and
/// confirm screen, and no Nagle delay (SSE events and long-poll answers are small writes that
/// must leave at once).
pub async fn serve_axum(listen: SocketAddr, app: axum::Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
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
    /// `http://<listen>`. Set it to a LAN address to scan with a real phone.
    pub public_url: String,
    /// A PKCS#8 PEM private key to sign id_tokens with (`--signing-key FILE`,
    /// `QRAUTH_SIGNING_KEY`), so that several replicas issue tokens every replica accepts.
    /// Without it a fresh RS256 key is generated at start.
    pub signing_key: Option<std::path::PathBuf>,
    /// A Redis to keep sessions and abuse-limit counters in (`--redis URL`, `REDIS_URL`), so
    /// that several replicas serve one login; default: in memory.
    pub redis: Option<String>,
}

impl DemoArgs {
    /// Reads `--listen ADDR` / `--public-url URL` (or the environment), defaulting to
    /// `127.0.0.1:<default_port>`.
    pub fn from_env(default_port: u16) -> std::result::Result<Self, String> {
        let mut listen = std::env::var("QRAUTH_DEMO_LISTEN").ok();
        let mut public_url = std::env::var("QRAUTH_DEMO_PUBLIC_URL").ok();
        let mut signing_key = std::env::var("QRAUTH_SIGNING_KEY").ok();
        let mut redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--listen" => listen = args.next(),
                "--public-url" => public_url = args.next(),
                "--signing-key" => signing_key = args.next(),
                "--redis" => redis = args.next(),
                "--help" | "-h" => {
                    return Err(
                        "usage: [--listen 127.0.0.1:PORT] [--public-url http://HOST:PORT] \
                         [--signing-key PKCS8.pem] [--redis redis://HOST:PORT/]"
                            .into(),
                    );
                }
                other => return Err(format!("unknown argument {other}; try --help")),
            }
        }
        let listen: SocketAddr = listen
            .unwrap_or_else(|| format!("127.0.0.1:{default_port}"))
            .parse()
            .map_err(|e| format!("--listen: {e}"))?;
        let public_url = public_url
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            listen,
            public_url,
            signing_key: signing_key.map(Into::into),
            redis,
        })
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
    let Some(url) = &args.redis else {
        return demo_service_builder(&args.public_url, key)?.build();
    };
    if key.is_none() {
        eprintln!(
            "warning: --redis without --signing-key: this replica signs with a key of its own, \
             so tokens it issues fail on other replicas"
        );
    }
    let store = RedisStore::builder(url.as_str())
        .key_prefix("qrauth-demo:")
        .connect()
        .await?;
    demo_service_builder(&args.public_url, key)?
        .store(store)
        .build()
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
