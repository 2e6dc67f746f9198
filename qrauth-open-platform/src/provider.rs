//! The provider: qrauth's built-in provider, with the open platform's app as the phone.
//!
//! The platform's app scans the QR and opens the application's mobile confirm page inside the
//! platform. That page gets a login-free `code` from the platform's JS SDK (configured with
//! [`OpenPlatformProvider::js_sdk_config`]) and calls qrauth's phone routes (`/qrcode/scan`,
//! then `/qrcode/confirm` or `/qrcode/cancel`) with
//!
//! ```text
//! Authorization: OpenPlatform <code>
//! ```
//!
//! The [`CodeAuthenticator`] exchanges the code at `/OAuth2/token` for the user's `open_id`,
//! which becomes the id_token's `sub`; qrauth signs the id_token itself (issuer = the app).
//!
//! **No provider type of its own.** The open platform only identifies the user, so the
//! [`QrAuthProvider`](qrauth_core::QrAuthProvider) is qrauth's [`BuiltinProvider`] built with the
//! [`CodeAuthenticator`] as its phone authenticator ([`OpenPlatformProvider::provider`]): the
//! service owns the session flow, the built-in provider makes the QR, signs and verifies the
//! id_tokens and serves the JWKS. [`OpenPlatformProvider`] holds it beside what the platform adds:
//! the cached server credentials and the JS SDK signature of the confirm page.
//!
//! **Why the code is remembered.** A code is single use upstream, while a login takes two
//! phone calls (scan, then confirm). The authenticator exchanges a code once and remembers
//! `SHA-256(code) → open_id` for a short window ([`DEFAULT_CODE_REUSE_WINDOW`]), so the page
//! can send the same code to scan and confirm, or get a fresh code for each call (both work).
//! The alternative, a separate endpoint that swaps the code for a phone credential of our own,
//! adds a route, a secret and a store entry for no gain: the code already is a short-lived,
//! server-verified credential. Only the hash is kept, concurrent calls with one code share one
//! exchange, and failures are not remembered (a refused code is asked again, and refused again).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use qrauth_core::token_cache::{Fetched, TokenCache};
use qrauth_core::{BuiltinProvider, BuiltinProviderBuilder, PhoneAuthenticator, PhoneUser};

use crate::client::{OpenPlatformClient, UserAuthorization, unix_now};
use crate::credentials::Credentials;
use crate::error::{OpenPlatformError, Result};
use crate::signature::{JsSdkConfig, sha256_hex};

/// The `Authorization` scheme of the mobile confirm page's calls: `OpenPlatform <code>`.
pub const AUTHORIZATION_SCHEME: &str = "OpenPlatform";

/// Default time a code, once exchanged, keeps authenticating the same user (for the scan and
/// the confirm of one login).
pub const DEFAULT_CODE_REUSE_WINDOW: Duration = Duration::from_secs(120);

/// Longest code accepted (longer ones are refused without asking the platform).
const MAX_CODE_LEN: usize = 512;

type MapUser = dyn Fn(&UserAuthorization) -> PhoneUser + Send + Sync;

/// A [`PhoneAuthenticator`] for `Authorization: OpenPlatform <code>`: exchanges the JS SDK code
/// for the user's `open_id` (see the [module docs](self) for why a code is remembered briefly).
pub struct CodeAuthenticator {
    client: OpenPlatformClient,
    seen: TokenCache<String, PhoneUser>,
    window: Duration,
    map_user: Arc<MapUser>,
}

impl fmt::Debug for CodeAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeAuthenticator")
            .field("client", &self.client)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl CodeAuthenticator {
    /// An authenticator that remembers exchanged codes for `window`; users get only their
    /// `open_id` as subject.
    pub fn new(client: OpenPlatformClient, window: Duration) -> Self {
        Self {
            client,
            seen: TokenCache::builder()
                .max_capacity(100_000)
                .refresh_margin(Duration::ZERO)
                .build(),
            window,
            map_user: Arc::new(|user: &UserAuthorization| PhoneUser::new(user.open_id.clone())),
        }
    }

    /// The code in an `Authorization` value, if it is `OpenPlatform <code>` with a plausible
    /// code (visible ASCII, at most 512 bytes).
    ///
    /// ```
    /// use qrauth_open_platform::provider::CodeAuthenticator;
    ///
    /// assert_eq!(CodeAuthenticator::code_of("OpenPlatform abc123"), Some("abc123"));
    /// assert_eq!(CodeAuthenticator::code_of("Bearer abc123"), None);
    /// assert_eq!(CodeAuthenticator::code_of("OpenPlatform "), None);
    /// ```
    pub fn code_of(authorization: &str) -> Option<&str> {
        let (scheme, code) = authorization.trim().split_once(' ')?;
        let code = code.trim();
        let plausible = !code.is_empty()
            && code.len() <= MAX_CODE_LEN
            && code.bytes().all(|b| b.is_ascii_graphic());
        (scheme.eq_ignore_ascii_case(AUTHORIZATION_SCHEME) && plausible).then_some(code)
    }

    /// Exchanges `code` (or finds it among the recently exchanged ones).
    pub async fn user_for_code(&self, code: &str) -> Result<PhoneUser> {
        let client = &self.client;
        let window = self.window;
        let map_user = &self.map_user;
        self.seen
            .get_or_fetch(sha256_hex(code), || async move {
                let user = client.exchange_code(code).await?;
                Ok::<_, OpenPlatformError>(Fetched::new(map_user(&user), window))
            })
            .await
            .map_err(Arc::unwrap_or_clone)
    }
}

#[async_trait]
impl PhoneAuthenticator for CodeAuthenticator {
    async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
        let code = Self::code_of(authorization).ok_or(qrauth_core::Error::Unauthenticated)?;
        self.user_for_code(code).await.map_err(|e| {
            tracing::warn!(error = %e, "open platform code not accepted");
            e.to_core()
        })
    }
}

/// QR login through the open platform's app, built only on qrauth-core's public API.
///
/// It is not itself a [`QrAuthProvider`](qrauth_core::QrAuthProvider): the provider to build the
/// service with is [`provider`](Self::provider), qrauth's [`BuiltinProvider`] with a
/// [`CodeAuthenticator`] as its phone authenticator. Beside it this holds what the mobile confirm
/// page needs from the platform: the cached server credentials and the JS SDK signature
/// ([`js_sdk_config`](Self::js_sdk_config)).
///
/// ```no_run
/// use qrauth_open_platform::{OpenPlatformClient, OpenPlatformProvider};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = OpenPlatformClient::builder("app-id", "secret").build()?;
/// let provider = OpenPlatformProvider::builder(client)
///     .builtin(|b| {
///         b.issuer("https://app.example/auth")
///             .audience("app-web")
///             .app_name("Example")
///             .phone_url("https://app.example/m/confirm")
///     })
///     .build()?;
/// let service = qrauth_core::QrAuthService::builder(provider.provider()).build()?;
/// // For the confirm page's JS SDK `config`:
/// let config = provider.js_sdk_config("https://app.example/m/confirm?qrcodeId=x").await?;
/// # let _ = (config, service);
/// # Ok(()) }
/// ```
pub struct OpenPlatformProvider {
    builtin: Arc<BuiltinProvider>,
    credentials: Credentials,
    authenticator: Arc<CodeAuthenticator>,
    page_origins: Vec<String>,
}

impl fmt::Debug for OpenPlatformProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenPlatformProvider")
            .field("builtin", &self.builtin)
            .field("credentials", &self.credentials)
            .field("page_origins", &self.page_origins)
            .finish()
    }
}

type Configure = Box<dyn FnOnce(BuiltinProviderBuilder) -> BuiltinProviderBuilder + Send>;

/// Configures an [`OpenPlatformProvider`].
#[must_use]
pub struct OpenPlatformProviderBuilder {
    client: OpenPlatformClient,
    refresh_margin: Duration,
    js_ticket_max_age: Duration,
    code_window: Duration,
    page_origins: Option<Vec<String>>,
    configure: Option<Configure>,
    map_user: Option<Arc<MapUser>>,
}

impl fmt::Debug for OpenPlatformProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenPlatformProviderBuilder")
            .field("client", &self.client)
            .field("code_window", &self.code_window)
            .finish_non_exhaustive()
    }
}

impl OpenPlatformProviderBuilder {
    /// Configures the underlying built-in provider: issuer, audience, app name, phone URL
    /// (the mobile confirm page), signing key, token lifetime. (The session store, the
    /// lifetimes and number matching are settings of the
    /// [`QrAuthService`](qrauth_core::QrAuthService).)
    pub fn builtin(
        mut self,
        configure: impl FnOnce(BuiltinProviderBuilder) -> BuiltinProviderBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// How long an exchanged code keeps authenticating its user (default
    /// [`DEFAULT_CODE_REUSE_WINDOW`]).
    pub fn code_reuse_window(mut self, window: Duration) -> Self {
        self.code_window = window;
        self
    }

    /// How long before expiry the access_token and js_ticket are refreshed (default 60 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// The longest time a js_ticket is served (see [`crate::credentials`]).
    pub fn js_ticket_max_age(mut self, max_age: Duration) -> Self {
        self.js_ticket_max_age = max_age;
        self
    }

    /// Origins (`https://host[:port]`) whose pages may get a JS SDK signature (default: the
    /// issuer's origin).
    pub fn page_origins(mut self, origins: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.page_origins = Some(
            origins
                .into_iter()
                .map(|o| o.into().trim_end_matches('/').to_owned())
                .collect(),
        );
        self
    }

    /// Builds the phone user from the platform's answer (default: `open_id` as the subject and
    /// nothing else). Use it to add a nickname or claims known to the application.
    pub fn map_user(
        mut self,
        map: impl Fn(&UserAuthorization) -> PhoneUser + Send + Sync + 'static,
    ) -> Self {
        self.map_user = Some(Arc::new(map));
        self
    }

    /// Builds the provider.
    pub fn build(self) -> qrauth_core::Result<OpenPlatformProvider> {
        let mut authenticator = CodeAuthenticator::new(self.client.clone(), self.code_window);
        if let Some(map) = self.map_user {
            authenticator.map_user = map;
        }
        let authenticator = Arc::new(authenticator);
        let mut builder = BuiltinProvider::builder(authenticator.clone());
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let builtin = Arc::new(builder.build()?);
        let page_origins = match self.page_origins {
            Some(origins) => origins,
            None => vec![
                url::Url::parse(builtin.issuer_url())
                    .map_err(|e| qrauth_core::Error::Config(format!("issuer: {e}")))?
                    .origin()
                    .ascii_serialization(),
            ],
        };
        let credentials = Credentials::builder(self.client)
            .refresh_margin(self.refresh_margin)
            .js_ticket_max_age(self.js_ticket_max_age)
            .build();
        Ok(OpenPlatformProvider {
            builtin,
            credentials,
            authenticator,
            page_origins,
        })
    }
}

impl OpenPlatformProvider {
    /// Starts configuring a provider that talks to the platform with `client`.
    pub fn builder(client: OpenPlatformClient) -> OpenPlatformProviderBuilder {
        OpenPlatformProviderBuilder {
            client,
            refresh_margin: qrauth_core::token_cache::DEFAULT_REFRESH_MARGIN,
            js_ticket_max_age: crate::credentials::DEFAULT_JS_TICKET_MAX_AGE,
            code_window: DEFAULT_CODE_REUSE_WINDOW,
            page_origins: None,
            configure: None,
            map_user: None,
        }
    }

    /// The [`QrAuthProvider`](qrauth_core::QrAuthProvider) to build the
    /// [`QrAuthService`](qrauth_core::QrAuthService) with: the built-in provider, whose phone
    /// side is the [`CodeAuthenticator`].
    pub fn provider(&self) -> Arc<BuiltinProvider> {
        Arc::clone(&self.builtin)
    }

    /// The built-in provider underneath (keys, issuer, audience).
    pub fn builtin(&self) -> &BuiltinProvider {
        &self.builtin
    }

    /// The cached server credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The phone authenticator (code → user).
    pub fn authenticator(&self) -> &CodeAuthenticator {
        &self.authenticator
    }

    /// The JS SDK `config` data for the mobile confirm page at `page_url` (its full address;
    /// the query and fragment are not signed). Only pages on the configured origins are signed.
    ///
    /// Serve it to the page as JSON, e.g. from `GET /open-platform/js-config?url=…`; it holds
    /// no secret.
    pub async fn js_sdk_config(&self, page_url: &str) -> Result<JsSdkConfig> {
        let url = url::Url::parse(page_url)
            .map_err(|_| OpenPlatformError::PageNotAllowed("not an absolute URL".to_owned()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(OpenPlatformError::PageNotAllowed(
                "not an http(s) URL".to_owned(),
            ));
        }
        let origin = url.origin().ascii_serialization();
        if !self.page_origins.iter().any(|o| o == &origin) {
            return Err(OpenPlatformError::PageNotAllowed(format!(
                "origin {origin} is not configured"
            )));
        }
        let ticket = self.credentials.js_ticket().await?;
        JsSdkConfig::new(
            self.credentials.client().app_id(),
            &ticket,
            unix_now(),
            page_url,
        )
    }
}
