//! # qrauth-actix
//!
//! "Scan the QR code with your phone app to log in" for [actix-web] applications: mount the
//! routes with [`mount`] (under a prefix) or [`configure`] (at the root), and protect handlers
//! with the [`AuthenticatedUser`] extractor or the [`require_authentication`] middleware.
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix_web::{App, HttpServer, web};
//! use qrauth_actix::{AuthenticatedUser, BuiltinProvider, QrAuthService};
//! # use qrauth_actix::{PhoneAuthenticator, PhoneUser};
//! # struct MyPhoneApp;
//! # #[async_trait::async_trait]
//! # impl PhoneAuthenticator for MyPhoneApp {
//! #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> { Err(qrauth_core::Error::Unauthenticated) }
//! # }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = BuiltinProvider::builder(Arc::new(MyPhoneApp))
//!     .issuer("https://example.com/auth").audience("example-web")
//!     .phone_url("https://example.com/m/confirm").build()?;
//! let qrauth = QrAuthService::builder(Arc::new(provider)).build()?;
//!
//! HttpServer::new(move || {
//!     App::new()
//!         .configure(qrauth_actix::mount("/auth", qrauth.clone()))
//!         .route("/me", web::get().to(|user: AuthenticatedUser| async move { user.claims.sub.clone() }))
//! })
//! .bind("127.0.0.1:3001")?.run().await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod extract;
mod middleware;
mod routes;

pub use extract::{AuthenticatedUser, MaybeAuthenticatedUser, Unauthorized};
pub use middleware::require_authentication;
pub use qrauth_core::{BuiltinProvider, PhoneAuthenticator, PhoneUser, QrAuthService};
pub use routes::{configure, mount, scope};

/// Turns off Nagle's algorithm on each accepted connection, for
/// [`HttpServer::on_connect`](actix_web::HttpServer::on_connect).
///
/// actix-web leaves Nagle on, so a small SSE event written while the browser delays its ACK
/// waits ~40 ms; with this, a confirm reaches the browser in about a millisecond.
///
/// Serve qrauth with `h1_allow_half_closed(false)` too: otherwise actix-web notices a client
/// that closed its connection only at its next write, and keeps the socket (in `CLOSE_WAIT`),
/// the stream or the long-poll's waiter until then (up to the keep-alive interval, or the
/// whole wait). For graceful shutdown see `docs/deploying.md` in the repository.
///
/// ```no_run
/// # fn demo() -> std::io::Result<()> {
/// actix_web::HttpServer::new(|| actix_web::App::new())
///     .on_connect(qrauth_actix::tcp_nodelay)
///     .h1_allow_half_closed(false)
///     .bind("127.0.0.1:3001")?;
/// # Ok(()) }
/// ```
pub fn tcp_nodelay(connection: &dyn std::any::Any, _: &mut actix_web::dev::Extensions) {
    if let Some(tcp) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        let _ = tcp.set_nodelay(true);
    }
}

/// The examples of this crate's README.md, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
