//! # qrauth-open-platform
//!
//! A [qrauth](qrauth_core) provider for the 猿之榜 (Yuanzhibang) open platform: the desktop
//! shows qrauth's QR code, the user scans it with the platform's app, the app opens your mobile
//! confirm page, and that page's JS SDK `code` identifies the user (`open_id`). qrauth then
//! signs the id_token itself (`sub` = `open_id`, issuer = your app), so the usual
//! `AuthenticatedUser` extractors accept it.
//!
//! It is written only against qrauth-core's public API, as any third-party provider would be.
//!
//! - [`client`]: the platform's `/OAuth2/token`, `/OAuth2/ticket`, `/OAuth2/checkCode` and the
//!   server access_token endpoint, with the platform's quirks handled;
//! - [`credentials`]: the server access_token and js_ticket, cached;
//! - [`signature`]: the JS SDK `config` signature;
//! - [`provider`]: the phone authenticator (JS SDK code → `open_id`) and
//!   [`OpenPlatformProvider`], which builds qrauth's built-in
//!   [`QrAuthProvider`](qrauth_core::QrAuthProvider) with it and signs the confirm page's JS SDK
//!   `config`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use qrauth_open_platform::{OpenPlatformClient, OpenPlatformProvider};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = OpenPlatformClient::builder(
//!     std::env::var("OPEN_PLATFORM_APP_ID")?,
//!     std::env::var("OPEN_PLATFORM_SECRET")?,
//! )
//! .build()?;
//! let open_platform = Arc::new(
//!     OpenPlatformProvider::builder(client)
//!         .builtin(|b| b.issuer("https://app.example/auth").phone_url("https://app.example/m/confirm"))
//!         .build()?,
//! );
//! // The provider is qrauth's built-in one, with the platform's app as its phone side.
//! let service = qrauth_core::QrAuthService::builder(open_platform.provider()).build()?;
//! // Serve open_platform.js_sdk_config(page_url) to the confirm page.
//! # let _ = service;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod credentials;
pub mod error;
pub mod provider;
pub mod signature;

pub use client::{CodeCheck, CodeKind, OpenPlatformClient, OpenPlatformClientBuilder};
pub use credentials::Credentials;
pub use error::OpenPlatformError;
pub use provider::{CodeAuthenticator, OpenPlatformProvider, OpenPlatformProviderBuilder};
pub use signature::JsSdkConfig;
