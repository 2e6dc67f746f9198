//! # qrauth-axum
//!
//! "Scan the QR code with your phone app to log in" for [axum] applications: mount
//! [`routes`] under any prefix, and protect handlers with the [`AuthenticatedUser`]
//! extractor or the [`RequireAuthenticationLayer`].
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::{Extension, Router, routing::get};
//! use qrauth_axum::{AuthenticatedUser, QrAuthService};
//! # use qrauth_core::provider::builtin::{BuiltinProvider, PhoneAuthenticator, PhoneUser};
//! # struct MyPhoneApp;
//! # #[async_trait::async_trait]
//! # impl PhoneAuthenticator for MyPhoneApp {
//! #     async fn authenticate(&self, _: &str) -> qrauth_core::Result<PhoneUser> { Err(qrauth_core::Error::Unauthenticated) }
//! # }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let provider = BuiltinProvider::builder(Arc::new(MyPhoneApp)).issuer("https://example.com/auth").build()?;
//! let qrauth = QrAuthService::builder(Arc::new(provider)).build();
//!
//! let app = Router::new()
//!     .route("/me", get(|user: AuthenticatedUser| async move { format!("hello {}", user.claims.sub) }))
//!     .nest("/auth", qrauth_axum::routes(qrauth.clone()))
//!     .layer(Extension(qrauth));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod convert;
mod extract;
mod layer;
mod router;

pub use extract::{AuthenticatedUser, Unauthorized};
pub use layer::{RequireAuthentication, RequireAuthenticationLayer};
pub use qrauth_core::QrAuthService;
pub use router::routes;
