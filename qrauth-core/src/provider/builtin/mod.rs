//! The built-in provider: no account anywhere. The application's own phone app confirms logins
//! (through a [`PhoneAuthenticator`] the application implements), and qrauth signs the
//! id_tokens and publishes the JWKS.

mod keys;
mod phone;

pub use keys::{KeyRing, SigningAlgorithm, SigningKey};
pub use phone::{PhoneAuthenticator, PhoneUser};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::provider::{
    ConfirmContext, GenerateRequest, IssuerDocuments, PhoneApi, PhoneRequest, QrAuthProvider,
    ScanOutcome,
};
use crate::secret::{BindingSecret, ConfirmToken, QrCodeId, Ticket};
use crate::session::Scanner;
use crate::sessions::Sessions;
use crate::types::{Claims, QrCode, QrState, QrStatus, TokenSet};
use crate::verify::{IdTokenVerifier, IssuerConfig};

/// The embedded default provider.
///
/// ```
/// use std::sync::Arc;
/// use qrauth_core::provider::builtin::{BuiltinProvider, PhoneAuthenticator, PhoneUser};
///
/// struct MyPhoneApp;
/// #[async_trait::async_trait]
/// impl PhoneAuthenticator for MyPhoneApp {
///     async fn authenticate(&self, authorization: &str) -> qrauth_core::Result<PhoneUser> {
///         // Check the phone app's session token here.
///         match authorization.strip_prefix("Bearer ") {
///             Some("token-of-alice") => Ok(PhoneUser::new("alice").nickname("Alice")),
///             _ => Err(qrauth_core::Error::Unauthenticated),
///         }
///     }
/// }
///
/// let provider = BuiltinProvider::builder(Arc::new(MyPhoneApp))
///     .issuer("https://example.com/auth")
///     .audience("example-web")
///     .phone_url("https://example.com/m/confirm")
///     .build()
///     .unwrap();
/// # let _ = provider;
/// ```
pub struct BuiltinProvider {
    sessions: Sessions,
    authenticator: Arc<dyn PhoneAuthenticator>,
    keys: KeyRing,
    verifier: RwLock<IdTokenVerifier>,
    issuer: String,
    audience: String,
    phone_url: Option<String>,
    app_name: String,
    token_lifetime: Duration,
}

impl std::fmt::Debug for BuiltinProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinProvider")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// Configures a [`BuiltinProvider`].
pub struct BuiltinProviderBuilder {
    authenticator: Arc<dyn PhoneAuthenticator>,
    sessions: Option<Sessions>,
    key: Option<SigningKey>,
    algorithm: SigningAlgorithm,
    issuer: String,
    audience: String,
    phone_url: Option<String>,
    app_name: String,
    token_lifetime: Duration,
    number_matching: bool,
}

impl BuiltinProvider {
    /// Starts configuring a provider whose phone users are authenticated by `authenticator`.
    pub fn builder(authenticator: Arc<dyn PhoneAuthenticator>) -> BuiltinProviderBuilder {
        BuiltinProviderBuilder {
            authenticator,
            sessions: None,
            key: None,
            algorithm: SigningAlgorithm::default(),
            issuer: "http://127.0.0.1:3000".to_owned(),
            audience: "qrauth".to_owned(),
            phone_url: None,
            app_name: "qrauth".to_owned(),
            token_lifetime: Duration::from_secs(3600),
            number_matching: false,
        }
    }

    /// The flow underneath.
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The issuer URL (`iss`).
    pub fn issuer_url(&self) -> &str {
        &self.issuer
    }

    /// The audience (`aud`) of issued id_tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Starts signing with `next`; the old key stays in the JWKS until its last token expires.
    pub fn rotate_key(&self, next: SigningKey) -> Result<()> {
        let keep_until = self.sessions.clock().now_secs() + self.token_lifetime.as_secs() + 60;
        self.keys.rotate(next, keep_until);
        let verifier = build_verifier(&self.issuer, &self.audience, &self.keys, &self.sessions)?;
        match self.verifier.write() {
            Ok(mut v) => *v = verifier,
            Err(poisoned) => *poisoned.into_inner() = verifier,
        }
        Ok(())
    }

    fn qr_content(&self, id: &QrCodeId) -> String {
        match &self.phone_url {
            Some(url) => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}qrcodeId={}", id.as_str())
            }
            None => id.as_str().to_owned(),
        }
    }

    fn origin(&self) -> Option<String> {
        let url = url::Url::parse(&self.issuer).ok()?;
        Some(url.origin().ascii_serialization())
    }

    fn issue_tokens(
        &self,
        scanner: &Scanner,
        auth_time: u64,
        nonce: Option<&str>,
    ) -> Result<TokenSet> {
        let key = self.keys.current();
        let now = self.sessions.clock().now_secs();
        let exp = now + self.token_lifetime.as_secs();
        let mut id_claims = scanner.claims.clone();
        for reserved in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "nbf",
            "auth_time",
            "nonce",
            "jti",
        ] {
            id_claims.remove(reserved);
        }
        if let Some(nick) = &scanner.user.nickname {
            id_claims.entry("nickname").or_insert_with(|| json!(nick));
        }
        if let Some(photo) = &scanner.user.photo {
            id_claims.entry("picture").or_insert_with(|| json!(photo));
        }
        let mut id_token = json!({
            "iss": self.issuer, "sub": scanner.subject, "aud": self.audience,
            "iat": now, "exp": exp, "auth_time": auth_time, "jti": keys::token_id()?,
        });
        if let (Some(obj), Some(nonce)) = (id_token.as_object_mut(), nonce) {
            obj.insert("nonce".into(), json!(nonce));
        }
        if let Some(obj) = id_token.as_object_mut() {
            obj.extend(id_claims);
        }
        let access = json!({
            "iss": self.issuer, "sub": scanner.subject, "aud": self.audience,
            "client_id": self.audience, "iat": now, "exp": exp, "jti": keys::token_id()?,
            "scope": "openid profile",
        });
        Ok(TokenSet {
            access_token: key.sign("at+jwt", &access)?,
            id_token: key.sign("JWT", &id_token)?,
            refresh_token: None,
            token_type: "Bearer".to_owned(),
            expires_in: self.token_lifetime.as_secs(),
            scope: Some("openid profile".to_owned()),
        })
    }

    async fn phone_user(&self, phone: PhoneRequest<'_>) -> Result<PhoneUser> {
        let user = self.authenticator.authenticate(phone.authorization).await?;
        if user.subject.is_empty() {
            return Err(Error::Unauthenticated);
        }
        Ok(user)
    }
}

fn build_verifier(
    issuer: &str,
    audience: &str,
    keys: &KeyRing,
    sessions: &Sessions,
) -> Result<IdTokenVerifier> {
    let now = sessions.clock().now_secs();
    IdTokenVerifier::builder()
        .issuer(IssuerConfig::new(issuer, audience).static_jwks(keys.jwks(now)))
        .clock(sessions.clock().clone())
        .build()
}

impl BuiltinProviderBuilder {
    /// The session flow (store and lifetimes); default: in memory, default lifetimes.
    pub fn sessions(mut self, sessions: Sessions) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The signing key; default: a fresh key of [`algorithm`](Self::algorithm) generated at
    /// start. Several replicas must share one key: load it with [`SigningKey::from_pem`].
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The algorithm of the generated key (default RS256).
    pub fn algorithm(mut self, algorithm: SigningAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The issuer URL: where the routes are mounted, as the outside world reaches them.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into().trim_end_matches('/').to_owned();
        self
    }

    /// The audience of issued id_tokens (the web application's client id).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// The phone confirm page the QR points to; the QR carries `?qrcodeId=…` appended. Without
    /// it the QR carries the bare id (for native apps that scan and call the API).
    pub fn phone_url(mut self, url: impl Into<String>) -> Self {
        self.phone_url = Some(url.into());
        self
    }

    /// The name the phone's confirm screen shows.
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self
    }

    /// Lifetime of issued tokens (default 1 hour).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Number matching: after scan the browser shows a two-digit code that the phone user must
    /// type in before confirming (default off).
    pub fn number_matching(mut self, on: bool) -> Self {
        self.number_matching = on;
        self
    }

    /// Builds the provider.
    pub fn build(self) -> Result<BuiltinProvider> {
        if url::Url::parse(&self.issuer).is_err() {
            return Err(Error::Config(format!(
                "issuer is not a URL: {}",
                self.issuer
            )));
        }
        if self.audience.is_empty() {
            return Err(Error::Config("audience must not be empty".into()));
        }
        let key = match self.key {
            Some(key) => key,
            None => SigningKey::generate(self.algorithm)?,
        };
        let keys = KeyRing::new(key);
        let sessions = self
            .sessions
            .unwrap_or_else(Sessions::in_memory)
            .with_number_matching(self.number_matching);
        let verifier = build_verifier(&self.issuer, &self.audience, &keys, &sessions)?;
        Ok(BuiltinProvider {
            sessions,
            authenticator: self.authenticator,
            keys,
            verifier: RwLock::new(verifier),
            issuer: self.issuer,
            audience: self.audience,
            phone_url: self.phone_url,
            app_name: self.app_name,
            token_lifetime: self.token_lifetime,
        })
    }
}

#[async_trait]
impl QrAuthProvider for BuiltinProvider {
    async fn generate(&self, request: GenerateRequest) -> Result<QrCode> {
        let record = self
            .sessions
            .create(&request.binding, request.initiator, request.nonce, None)
            .await?;
        let now = self.sessions.clock().now_millis();
        Ok(QrCode {
            content: self.qr_content(&record.id),
            expires_in: record.expire_at_ms.saturating_sub(now).div_ceil(1000),
            expire_at_ms: record.expire_at_ms,
            interval: self.sessions.poll_interval().as_secs().max(1),
            id: record.id,
        })
    }

    async fn poll(&self, id: &QrCodeId, binding: &BindingSecret) -> Result<QrStatus> {
        self.sessions.status(id, binding).await
    }

    async fn wait_for_change(
        &self,
        id: &QrCodeId,
        binding: &BindingSecret,
        since_version: u64,
        deadline: Instant,
    ) -> Result<QrStatus> {
        self.sessions
            .wait_for_change(id, binding, since_version, deadline)
            .await
    }

    async fn exchange(&self, ticket: &Ticket, binding: &BindingSecret) -> Result<TokenSet> {
        let record = self.sessions.redeem(ticket, binding).await?;
        let scanner = record
            .scanner
            .as_ref()
            .ok_or_else(|| Error::Internal("confirmed session without scanner".into()))?;
        let auth_time = record
            .ticket_expire_at_ms
            .saturating_sub(self.sessions.lifetimes().ticket.as_millis() as u64)
            / 1000;
        let tokens = self.issue_tokens(scanner, auth_time, record.nonce.as_deref())?;
        tracing::info!("QR login completed");
        Ok(tokens)
    }

    async fn verify(&self, id_token: &str) -> Result<Claims> {
        let verifier = match self.verifier.read() {
            Ok(v) => v.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        verifier.verify(id_token).await
    }

    fn lifetimes(&self) -> crate::Lifetimes {
        *self.sessions.lifetimes()
    }

    fn phone(&self) -> Option<&dyn PhoneApi> {
        Some(self)
    }

    fn issuer(&self) -> Option<&dyn IssuerDocuments> {
        Some(self)
    }
}

#[async_trait]
impl PhoneApi for BuiltinProvider {
    async fn scan(&self, id: &QrCodeId, phone: PhoneRequest<'_>) -> Result<ScanOutcome> {
        let user = self.phone_user(phone).await?;
        let scanner = Scanner {
            subject: user.subject,
            user: crate::types::UserInfo {
                nickname: user.nickname,
                photo: user.photo,
            },
            claims: user.claims,
            ip: phone.ip,
        };
        let (record, confirm_token) = self.sessions.scan(id, scanner).await?;
        let context = ConfirmContext {
            app_name: self.app_name.clone(),
            origin: self.origin(),
            browser: record.initiator.device.clone(),
            ip: record.initiator.ip.map(|ip| ip.to_string()),
            created_at: record.created_at_ms,
            network_mismatch: phone::network_mismatch(record.initiator.ip, phone.ip),
        };
        Ok(ScanOutcome {
            confirm_token,
            context,
        })
    }

    async fn confirm(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        phone: PhoneRequest<'_>,
    ) -> Result<QrState> {
        let user = self.phone_user(phone).await?;
        Ok(self
            .sessions
            .confirm(id, &user.subject, token, phone.match_code)
            .await?
            .state)
    }

    async fn cancel(
        &self,
        id: &QrCodeId,
        token: &ConfirmToken,
        phone: PhoneRequest<'_>,
    ) -> Result<QrState> {
        let user = self.phone_user(phone).await?;
        Ok(self.sessions.cancel(id, &user.subject, token).await?.state)
    }
}

impl IssuerDocuments for BuiltinProvider {
    fn jwks(&self) -> Value {
        let now = self.sessions.clock().now_secs();
        serde_json::to_value(self.keys.jwks(now)).unwrap_or_else(|_| json!({ "keys": [] }))
    }

    fn openid_configuration(&self) -> Value {
        let alg = self
            .keys
            .current()
            .public_jwk()
            .common
            .key_algorithm
            .map(|a| format!("{a:?}"))
            .unwrap_or_else(|| "RS256".into());
        json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [alg],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "nickname", "picture"],
        })
    }
}
