//! [`SignedInStore`]: where signed-in sessions live, next to the QR sessions.

use async_trait::async_trait;

use crate::error::Result;
use crate::secret::{SecretHash, SessionId};
use crate::signed_in::{Rotation, SignedInSession};

/// The most sessions [`SignedInStore::list`] returns for one subject (the newest first); a
/// subject with more has the oldest ones dropped at creation.
pub const MAX_SESSIONS_PER_SUBJECT: usize = 100;

/// Storage for signed-in sessions: created at exchange, renewed with a rotating refresh
/// secret, revoked, listed per subject. Every [`SessionStore`](super::SessionStore) has one
/// ([`SessionStore::signed_in`](super::SessionStore::signed_in)), so one `.store(…)` call
/// carries QR sessions, limits and signed-in sessions.
///
/// Revocation deletes the record: a session that is gone is signed out, and a deleted session
/// never comes back. [`is_active`](SignedInStore::is_active) is on the path of every
/// authenticated request, so implementations answer it from memory where they safely can, and
/// fail closed (an error, never `true`) when they cannot tell.
#[async_trait]
pub trait SignedInStore: Send + Sync + 'static {
    /// Stores a new session (until its [`ends_at_ms`](SignedInSession::ends_at_ms)) and adds
    /// it to its subject's list.
    async fn create(&self, session: &SignedInSession) -> Result<()>;

    /// The live session with this id.
    async fn load(&self, id: &SessionId, now_ms: u64) -> Result<Option<SignedInSession>>;

    /// Whether the session is alive at `now_ms`: the check behind every `AuthenticatedUser`.
    /// A revocation on any process sharing the store is seen here within a second.
    async fn is_active(&self, id: &SessionId, now_ms: u64) -> Result<bool>;

    /// Renews the session whose current refresh secret hashes to `presented`: in one atomic
    /// step, `next` becomes the current secret, `presented` the previous one, and the session
    /// is seen at `now_ms` (its idle timeout restarts). A `presented` that is the previous
    /// secret within `grace_ms` of the rotation is [`Rotation::Concurrent`]; any other known
    /// session with a wrong secret is revoked ([`Rotation::Reused`]).
    async fn rotate(
        &self,
        id: &SessionId,
        presented: &SecretHash,
        next: &SecretHash,
        now_ms: u64,
        grace_ms: u64,
    ) -> Result<Rotation>;

    /// Ends the session; returns whether it was alive. Idempotent.
    async fn revoke(&self, id: &SessionId) -> Result<bool>;

    /// The subject's live sessions, newest first, at most [`MAX_SESSIONS_PER_SUBJECT`].
    async fn list(&self, subject: &str, now_ms: u64) -> Result<Vec<SignedInSession>>;

    /// Maps a token that does not carry the session's `sid` (an upstream IdP's id_token) to
    /// its session, until `expire_at_ms`.
    async fn put_alias(&self, token: &SecretHash, id: &SessionId, expire_at_ms: u64) -> Result<()>;

    /// The session a token was mapped to with [`put_alias`](SignedInStore::put_alias).
    async fn resolve_alias(&self, token: &SecretHash) -> Result<Option<SessionId>>;
}
