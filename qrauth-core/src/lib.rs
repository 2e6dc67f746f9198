//! # qrauth-core
//!
//! The engine behind "scan the QR code with your phone app to log in": the session flow
//! (pending → scanned → confirmed | cancelled | expired → consumed), the session stores, the
//! provider hooks with the built-in provider, id_token verification and the framework-free
//! HTTP handlers that `qrauth-axum` and `qrauth-actix` translate.
//!
//! Most applications use an adapter crate and touch this one only to pick a provider and a
//! store:
//!
//! ```
//! use std::sync::Arc;
//! use qrauth_core::{BuiltinProvider, PhoneAuthenticator, PhoneUser, QrAuthService};
//!
//! struct MyPhoneApp;
//! #[async_trait::async_trait]
//! impl PhoneAuthenticator for MyPhoneApp {
//!     async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
//!         match authorization {
//!             "Bearer token-of-alice" => Ok(PhoneUser::new("alice").nickname("Alice")),
//!             _ => Err(qrauth_core::Error::Unauthenticated),
//!         }
//!     }
//! }
//!
//! # fn main() -> qrauth_core::Result<()> {
//! let provider = BuiltinProvider::builder(Arc::new(MyPhoneApp))
//!     .issuer("https://example.com/auth")
//!     .audience("example-web")
//!     .build()?;
//! let qrauth = QrAuthService::builder(Arc::new(provider)).build()?;
//! # let _ = qrauth; Ok(()) }
//! ```
//!
//! Where things are: [`handler`] (the routes: browser, phone, authentication), [`provider`]
//! (the hooks a provider implements, and the built-in provider), [`store`] (memory and Redis),
//! [`verify`] (the id_token verifier), [`token_cache`] (provider-side credentials).
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod error;
mod flow;
pub mod handler;
mod lifetimes;
mod limits;
pub mod metrics;
pub mod provider;
mod qr;
mod record;
pub mod risk;
mod secret;
mod signed_in;
pub mod store;
pub mod token_cache;
mod types;
mod user_agent;
pub mod verify;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{Error, Result, TokenError};
pub use flow::UpstreamControl;
pub use handler::{
    ApiRequest, ApiResponse, ErrorContext, QrAuthService, QrAuthServiceBuilder, Refused, Route,
    SignIn,
};
pub use lifetimes::Lifetimes;
pub use limits::Limits;
pub use provider::QrAuthProvider;
pub use provider::builtin::{
    BuiltinProvider, BuiltinProviderBuilder, PhoneAuthenticator, PhoneUser, SigningAlgorithm,
    SigningKey,
};
pub use secret::{
    BindingKey, BindingSecret, ConfirmToken, QrCodeId, SecretHash, SessionId, Ticket,
};
pub use signed_in::SignedInSession;
pub use types::{Audience, Claims, QrState, TokenSet, UserInfo};
pub use verify::{IdTokenVerifier, IdTokenVerifierBuilder, IssuerConfig};

/// The examples of `docs/writing-a-provider.md`, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/writing-a-provider.md")]
mod writing_a_provider {}

/// The examples of this crate's README.md, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
