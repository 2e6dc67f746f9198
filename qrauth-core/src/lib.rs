//! # qrauth-core
//!
//! The engine behind "scan the QR code with your phone app to log in": the QR session state
//! machine, the session stores, the providers (built-in, Authing, open platforms), id_token
//! verification and the framework-free HTTP handlers that `qrauth-axum` and `qrauth-actix`
//! translate.
//!
//! Most applications use an adapter crate and never touch this one directly except to pick a
//! provider; see the repository README for the ten-line setup.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod error;
pub mod qr;
pub mod secret;
pub mod token_cache;
pub mod types;
pub mod user_agent;
pub mod verify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{Error, Result, TokenError};
pub use secret::{BindingSecret, ConfirmToken, QrCodeId, SecretHash, Ticket};
pub use types::{Audience, Claims, QrCode, QrState, QrStatus, TokenSet, UserInfo};
pub use verify::{IdTokenVerifier, IdTokenVerifierBuilder, IssuerConfig};
pub mod handler;
pub mod lifetimes;
pub mod limits;
pub mod provider;
pub mod session;
pub mod sessions;
pub mod store;

pub use handler::{ApiRequest, ApiResponse, QrAuthService, Route};
pub use lifetimes::Lifetimes;
pub use provider::QrAuthProvider;
pub use sessions::Sessions;
