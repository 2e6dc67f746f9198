//! The phone users of the tests: `Bearer alice` and `Bearer bob` are logged in to the
//! application's phone app.

use async_trait::async_trait;
use qrauth_core::{Error, PhoneAuthenticator, PhoneUser, Result};

/// `Bearer alice` (nickname, photo, email claim) and `Bearer bob` (nickname only); anything
/// else is [`Error::Unauthenticated`].
#[derive(Debug, Default, Clone, Copy)]
pub struct TestPhones;

#[async_trait]
impl PhoneAuthenticator for TestPhones {
    async fn authenticate(&self, authorization: &str) -> Result<PhoneUser> {
        match authorization.strip_prefix("Bearer ") {
            Some("alice") => Ok(PhoneUser::new("alice")
                .nickname("Alice")
                .photo("https://img.example.com/alice.png")
                .claim("email", "alice@example.com")),
            Some("bob") => Ok(PhoneUser::new("bob").nickname("Bob")),
            _ => Err(Error::Unauthenticated),
        }
    }
}
