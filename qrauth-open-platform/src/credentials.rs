//! The server's own credentials: the server access_token and the js_ticket, cached with
//! qrauth-core's [`TokenCache`].
//!
//! - **TTL and early refresh**: each is cached for its `expires_in` minus the cache's refresh
//!   margin (default 60 s, at most half the lifetime).
//! - **One fetch**: concurrent callers share one upstream request.
//! - **js_ticket grace**: when a js_ticket is fetched again, the platform keeps the previous one
//!   valid for 10 minutes, so pages signed just before a refresh still work. A js_ticket is
//!   served for at most [`DEFAULT_JS_TICKET_MAX_AGE`] (those same 10 minutes) by default:
//!   with several replicas, each one's fetch demotes the others' tickets to that grace, and a
//!   ticket fetched less than 10 minutes ago stays valid for at least 10 minutes after any
//!   later fetch. A single replica may raise it with
//!   [`CredentialsBuilder::js_ticket_max_age`].
//! - **4102**: a call made with the cached access_token that fails with `4102` drops it,
//!   fetches a new one and retries once ([`Credentials::with_access_token`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use qrauth_core::SharedClock;
use qrauth_core::token_cache::{Fetched, TokenCache};

use crate::client::{OpenPlatformClient, ServerCredential};
use crate::error::{OpenPlatformError, Result};

/// The platform's grace for the previous js_ticket after a new one is fetched.
pub const JS_TICKET_GRACE: Duration = Duration::from_secs(600);

/// Default longest time a js_ticket is handed out after its fetch (see the module docs).
pub const DEFAULT_JS_TICKET_MAX_AGE: Duration = JS_TICKET_GRACE;

/// Cached server access_token and js_ticket of one app.
///
/// ```no_run
/// use qrauth_open_platform::{Credentials, OpenPlatformClient};
///
/// # async fn run() -> Result<(), qrauth_open_platform::OpenPlatformError> {
/// let client = OpenPlatformClient::builder("app-id", "secret").build()?;
/// let credentials = Credentials::new(client);
/// let ticket = credentials.js_ticket().await?; // fetched once, then cached
/// # let _ = ticket;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Credentials {
    client: OpenPlatformClient,
    access: TokenCache<(), String>,
    tickets: TokenCache<(), String>,
    js_ticket_max_age: Duration,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client", &self.client)
            .field("js_ticket_max_age", &self.js_ticket_max_age)
            .finish_non_exhaustive()
    }
}

/// Configures [`Credentials`].
#[must_use]
pub struct CredentialsBuilder {
    client: OpenPlatformClient,
    refresh_margin: Duration,
    js_ticket_max_age: Duration,
    clock: Option<SharedClock>,
}

impl fmt::Debug for CredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsBuilder")
            .field("client", &self.client)
            .field("refresh_margin", &self.refresh_margin)
            .field("js_ticket_max_age", &self.js_ticket_max_age)
            .finish_non_exhaustive()
    }
}

impl CredentialsBuilder {
    /// How long before expiry a credential is refreshed (default 60 s; capped at half of each
    /// credential's lifetime by the token cache).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The longest time a js_ticket is served after its fetch (default
    /// [`DEFAULT_JS_TICKET_MAX_AGE`]).
    pub fn js_ticket_max_age(mut self, max_age: Duration) -> Self {
        self.js_ticket_max_age = max_age;
        self
    }

    /// Measures the credentials' lifetimes with `clock` (default: the monotonic clock), so
    /// that tests can move time forward instead of sleeping; see
    /// [`TokenCacheBuilder::clock`](qrauth_core::token_cache::TokenCacheBuilder::clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Credentials {
        let cache = || {
            let builder = TokenCache::builder()
                .max_capacity(1)
                .refresh_margin(self.refresh_margin);
            match &self.clock {
                Some(clock) => builder.clock(clock.clone()),
                None => builder,
            }
            .build()
        };
        Credentials {
            access: cache(),
            tickets: cache(),
            client: self.client,
            js_ticket_max_age: self.js_ticket_max_age,
        }
    }
}

impl Credentials {
    /// Credentials with the default settings.
    pub fn new(client: OpenPlatformClient) -> Self {
        Self::builder(client).build()
    }

    /// Starts configuring credentials fetched with `client`.
    pub fn builder(client: OpenPlatformClient) -> CredentialsBuilder {
        CredentialsBuilder {
            client,
            refresh_margin: qrauth_core::token_cache::DEFAULT_REFRESH_MARGIN,
            js_ticket_max_age: DEFAULT_JS_TICKET_MAX_AGE,
            clock: None,
        }
    }

    /// The client underneath.
    pub fn client(&self) -> &OpenPlatformClient {
        &self.client
    }

    /// The server access_token: cached, or fetched (once for all concurrent callers).
    pub async fn server_access_token(&self) -> Result<String> {
        let client = &self.client;
        self.access
            .get_or_fetch((), || async move {
                let fetched = client.server_access_token().await.map_err(rejected)?;
                Ok::<_, OpenPlatformError>(fetched_of(fetched, None))
            })
            .await
            .map_err(Arc::unwrap_or_clone)
    }

    /// Runs `call` with the server access_token; if it fails with `4102` (the token was
    /// revoked or expired early), drops the cached token, fetches a new one and runs `call`
    /// once more. A second `4102` is [`OpenPlatformError::CredentialRejected`].
    ///
    /// Use it for any platform API that takes the server access_token.
    pub async fn with_access_token<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let token = self.server_access_token().await?;
        match call(token).await {
            Err(OpenPlatformError::InvalidCode { message }) => {
                tracing::info!(
                    upstream_message = %message,
                    "open platform refused the cached server access_token (4102); refreshing once"
                );
                self.access.invalidate(&()).await;
                let token = self.server_access_token().await?;
                call(token).await.map_err(rejected)
            }
            other => other,
        }
    }

    /// The js_ticket: cached, or fetched (once for all concurrent callers) with the server
    /// access_token, refreshing that token once on `4102`.
    pub async fn js_ticket(&self) -> Result<String> {
        let max_age = self.js_ticket_max_age;
        self.tickets
            .get_or_fetch((), || async move {
                let fetched = self
                    .with_access_token(|token| {
                        let client = self.client.clone();
                        async move { client.js_ticket(&token).await }
                    })
                    .await?;
                Ok::<_, OpenPlatformError>(fetched_of(fetched, Some(max_age)))
            })
            .await
            .map_err(Arc::unwrap_or_clone)
    }

    /// Drops the cached js_ticket: the next [`js_ticket`](Self::js_ticket) fetches a new one
    /// (the platform keeps the old one valid for [`JS_TICKET_GRACE`]).
    pub async fn invalidate_js_ticket(&self) {
        self.tickets.invalidate(&()).await;
    }

    /// Drops the cached server access_token.
    pub async fn invalidate_server_access_token(&self) {
        self.access.invalidate(&()).await;
    }
}

fn fetched_of(credential: ServerCredential, max_age: Option<Duration>) -> Fetched<String> {
    let lifetime = match max_age {
        Some(max) => credential.expires_in.min(max),
        None => credential.expires_in,
    };
    Fetched::new(credential.expose().to_owned(), lifetime)
}

/// A `4102` on the server's own credential is not the user's fault.
fn rejected(err: OpenPlatformError) -> OpenPlatformError {
    match err {
        OpenPlatformError::InvalidCode { message } => {
            OpenPlatformError::CredentialRejected { message }
        }
        other => other,
    }
}
