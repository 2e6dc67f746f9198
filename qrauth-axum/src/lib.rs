//! # qrauth-axum
//!
//! "Scan the QR code with your phone app to log in" for [axum] applications: mount
//! the routes under any prefix with [`QrAuthRouterExt::qrauth`] (or [`routes`]), and protect handlers with the [`AuthenticatedUser`]
//! extractor or the [`RequireAuthenticationLayer`].
//!
//! ```no_run
//! use std::{net::SocketAddr, sync::Arc};
//! use axum::{Router, routing::get};
//! use qrauth_axum::{AuthenticatedUser, BuiltinProvider, QrAuthRouterExt, QrAuthService};
//! # use qrauth_axum::{PhoneAuthenticator, PhoneUser};
//! # struct MyPhoneApp;
//! # #[async_trait::async_trait]
//! # impl PhoneAuthenticator for MyPhoneApp {
//! #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> { Err(qrauth_core::Error::Unauthenticated) }
//! # }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! let provider = BuiltinProvider::builder(Arc::new(MyPhoneApp))   // your PhoneAuthenticator
//!     .issuer("https://example.com/auth").audience("example-web")
//!     .phone_url("https://example.com/m/confirm").build()?;
//! let qrauth = QrAuthService::builder(Arc::new(provider)).build()?;
//!
//! let app = Router::new()
//!     .route("/me", get(|user: AuthenticatedUser| async move { user.claims.sub.clone() }))
//!     .qrauth("/auth", qrauth);
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod extract;
mod layer;
mod router;

pub use extract::{AuthenticatedUser, MaybeAuthenticatedUser, Unauthorized};
pub use layer::{RequireAuthentication, RequireAuthenticationLayer};
pub use qrauth_core::{BuiltinProvider, PhoneAuthenticator, PhoneUser, QrAuthService};
pub use router::{QrAuthRouterExt, routes};

/// The examples of this crate's README.md, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
