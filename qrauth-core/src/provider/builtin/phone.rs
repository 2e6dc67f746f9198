use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::error::Result;

/// Authenticates the phone app's user from the credential it sends in `Authorization`.
///
/// The application implements it with whatever its phone app already uses (a session token, an
/// OAuth access token, …). qrauth takes the phone user's identity only from here, never from a
/// request body.
#[async_trait]
pub trait PhoneAuthenticator: Send + Sync + 'static {
    /// Returns the user the credential belongs to, or
    /// [`Error::Unauthenticated`](crate::Error::Unauthenticated).
    async fn authenticate(&self, authorization: &str) -> Result<PhoneUser>;
}

/// A phone user as the application knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneUser {
    /// Stable user id: the id_token's `sub`.
    pub subject: String,
    /// Display name shown to the browser after scanning.
    pub nickname: Option<String>,
    /// Picture URL shown to the browser after scanning.
    pub photo: Option<String>,
    /// Extra id_token claims (e.g. `name`, `email`).
    pub claims: Map<String, Value>,
}

impl PhoneUser {
    /// A user with only a subject.
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            nickname: None,
            photo: None,
            claims: Map::new(),
        }
    }

    /// Sets the display name.
    pub fn nickname(mut self, nickname: impl Into<String>) -> Self {
        self.nickname = Some(nickname.into());
        self
    }

    /// Sets the picture URL.
    pub fn photo(mut self, photo: impl Into<String>) -> Self {
        self.photo = Some(photo.into());
        self
    }

    /// Adds an id_token claim.
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.insert(name.into(), value.into());
        self
    }
}
