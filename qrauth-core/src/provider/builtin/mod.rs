//! The built-in provider: no account anywhere. The application's own phone app confirms logins
//! (through a [`PhoneAuthenticator`] the application implements), and qrauth signs the
//! id_tokens and publishes the JWKS.

mod keys;
mod phone;

pub use keys::{KeyRing, SigningAlgorithm, SigningKey};
pub use phone::{PhoneAuthenticator, PhoneUser};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use crate::clock::{SharedClock, SystemClock};
use crate::error::{Error, Result};
use crate::provider::{
    Capabilities, ConfirmedLogin, IssuedTokens, IssuerDocuments, PhoneSide, QrAuthProvider,
    QrContent, RenewingSession, SessionStart, TokenRenewal,
};
use crate::secret::{QrCodeId, SessionId};
use crate::types::{Claims, TokenSet};
use crate::verify::{IdTokenVerifier, IssuerConfig};

/// The embedded default provider.
///
/// ```
/// use std::sync::Arc;
/// use qrauth_core::{BuiltinProvider, PhoneAuthenticator, PhoneUser};
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
    clock: SharedClock,
    authenticator: Arc<dyn PhoneAuthenticator>,
    keys: KeyRing,
    /// Verifies with the keys the JWKS publishes, and follows them: see `follow_published_keys`.
    verifier: IdTokenVerifier,
    /// Unix seconds at which a retired key leaves the JWKS (`u64::MAX`: none will).
    next_retirement_secs: AtomicU64,
    /// Serialises key-set replacements: a replacement computed before a rotation must not
    /// land after it.
    replacing_keys: Mutex<()>,
    issuer: String,
    audience: String,
    phone_url: Option<String>,
    app_name: String,
    origin: Option<String>,
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
#[must_use]
pub struct BuiltinProviderBuilder {
    authenticator: Arc<dyn PhoneAuthenticator>,
    clock: Option<SharedClock>,
    key: Option<SigningKey>,
    algorithm: SigningAlgorithm,
    issuer: String,
    audience: String,
    phone_url: Option<String>,
    app_name: String,
}

/// Claims the built-in provider sets itself; the phone user's claims cannot override them.
const REGISTERED_CLAIMS: [&str; 10] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "auth_time",
    "nonce",
    "jti",
    "sid",
];

/// What one id_token (and its access token) says.
struct TokenContent<'a> {
    subject: &'a str,
    claims: Map<String, Value>,
    session: &'a SessionId,
    nonce: Option<&'a str>,
    auth_time: u64,
    now: u64,
    lifetime: u64,
}

impl BuiltinProvider {
    /// Starts configuring a provider whose phone users are authenticated by `authenticator`.
    pub fn builder(authenticator: Arc<dyn PhoneAuthenticator>) -> BuiltinProviderBuilder {
        BuiltinProviderBuilder {
            authenticator,
            clock: None,
            key: None,
            algorithm: SigningAlgorithm::default(),
            issuer: "http://127.0.0.1:3000".to_owned(),
            audience: "qrauth".to_owned(),
            phone_url: None,
            app_name: "qrauth".to_owned(),
        }
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
        let now = self.clock.now_secs();
        let keep_until = now + crate::lifetimes::MAX_ID_TOKEN.as_secs() + 60;
        self.keys.rotate(next, keep_until);
        self.follow_published_keys(now)
    }

    /// Verifies with exactly the keys published at `now_secs`: a retired key stops verifying
    /// (cached tokens included) when it leaves the JWKS, and is pruned from the ring.
    fn follow_published_keys(&self, now_secs: u64) -> Result<()> {
        let _one_at_a_time = self
            .replacing_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (jwks, next_retirement) = self.keys.prune(now_secs);
        self.verifier.replace_static_keys(&self.issuer, &jwks)?;
        self.next_retirement_secs
            .store(next_retirement.unwrap_or(u64::MAX), Ordering::Release);
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

    fn sign_tokens(&self, login: &ConfirmedLogin<'_>) -> Result<IssuedTokens> {
        let mut claims = login.claims().cloned().unwrap_or_else(Map::new);
        if let Some(user) = login.user() {
            if let Some(nick) = &user.nickname {
                claims.entry("nickname").or_insert_with(|| json!(nick));
            }
            if let Some(photo) = &user.photo {
                claims.entry("picture").or_insert_with(|| json!(photo));
            }
        }
        self.sign(TokenContent {
            subject: login.subject(),
            claims,
            session: login.session_id(),
            nonce: login.nonce(),
            auth_time: login.auth_time_secs(),
            now: login.now_secs(),
            lifetime: login.id_token_lifetime_secs(),
        })
    }

    fn sign(&self, content: TokenContent<'_>) -> Result<IssuedTokens> {
        let key = self.keys.current();
        let TokenContent {
            subject,
            mut claims,
            session,
            nonce,
            auth_time,
            now,
            lifetime,
        } = content;
        let exp = now + lifetime;
        if subject.is_empty() {
            return Err(Error::Internal(
                "confirmed session without a subject".into(),
            ));
        }
        for reserved in REGISTERED_CLAIMS {
            claims.remove(reserved);
        }
        let mut id_token = json!({
            "iss": self.issuer, "sub": subject, "aud": self.audience,
            "iat": now, "exp": exp, "auth_time": auth_time, "jti": keys::token_id()?,
            "sid": session.as_str(),
        });
        if let (Some(obj), Some(nonce)) = (id_token.as_object_mut(), nonce) {
            obj.insert("nonce".into(), json!(nonce));
        }
        if let Some(obj) = id_token.as_object_mut() {
            obj.extend(claims);
        }
        let access = json!({
            "iss": self.issuer, "sub": subject, "aud": self.audience,
            "client_id": self.audience, "iat": now, "exp": exp, "jti": keys::token_id()?,
            "sid": session.as_str(), "scope": "openid profile",
        });
        let tokens = TokenSet {
            access_token: key.sign("at+jwt", &access)?,
            id_token: key.sign("JWT", &id_token)?,
            refresh_token: None,
            token_type: "Bearer".to_owned(),
            expires_in: lifetime,
            scope: Some("openid profile".to_owned()),
        };
        let claims: Claims = serde_json::from_value(id_token)
            .map_err(|e| Error::Internal(format!("issued claims do not parse: {e}")))?;
        Ok(IssuedTokens::new(tokens, claims))
    }
}

fn build_verifier(
    issuer: &str,
    audience: &str,
    keys: &KeyRing,
    clock: &SharedClock,
) -> Result<IdTokenVerifier> {
    let now = clock.now_secs();
    IdTokenVerifier::builder()
        .issuer(IssuerConfig::new(issuer, audience).static_jwks(keys.jwks(now)))
        .clock(clock.clone())
        .build()
}

impl BuiltinProviderBuilder {
    /// The clock that stamps key retirement and checks token expiry (default: the system
    /// clock); tokens are stamped with the service's clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = Some(clock);
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
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let verifier = build_verifier(&self.issuer, &self.audience, &keys, &clock)?;
        let origin = url::Url::parse(&self.issuer)
            .ok()
            .map(|u| u.origin().ascii_serialization());
        Ok(BuiltinProvider {
            clock,
            authenticator: self.authenticator,
            keys,
            verifier,
            next_retirement_secs: AtomicU64::new(u64::MAX),
            replacing_keys: Mutex::new(()),
            issuer: self.issuer,
            audience: self.audience,
            phone_url: self.phone_url,
            app_name: self.app_name,
            origin,
        })
    }
}

/// Fields of Authing's web SDK that a `POST /qrcode` body may carry; the built-in provider
/// accepts and ignores them, so that pages written against Authing's SDK keep working.
const AUTHING_SDK_FIELDS: [&str; 2] = ["scene", "userDefinedData"];

#[async_trait]
impl QrAuthProvider for BuiltinProvider {
    async fn start(&self, session: SessionStart<'_>) -> Result<QrContent> {
        if let Some(field) = session
            .extensions
            .keys()
            .find(|k| !AUTHING_SDK_FIELDS.contains(&k.as_str()))
        {
            return Err(Error::InvalidRequest(format!(
                "invalid JSON body: unknown field `{field}`"
            )));
        }
        Ok(QrContent::new(self.qr_content(session.id)))
    }

    async fn issue_tokens(&self, login: ConfirmedLogin<'_>) -> Result<IssuedTokens> {
        self.sign_tokens(&login)
    }

    async fn verify(&self, id_token: &str) -> Result<Arc<Claims>> {
        let now = self.clock.now_secs();
        if now >= self.next_retirement_secs.load(Ordering::Acquire) {
            self.follow_published_keys(now)?;
        }
        self.verifier.verify(id_token).await
    }

    fn capabilities(&self) -> Capabilities<'_> {
        let phone = PhoneSide::new(self.authenticator.as_ref(), &self.app_name)
            .origin(self.origin.as_deref());
        Capabilities::none().phone(phone).issuer(self).renewal(self)
    }
}

#[async_trait]
impl TokenRenewal for BuiltinProvider {
    async fn renew(&self, session: RenewingSession<'_>) -> Result<IssuedTokens> {
        self.sign(TokenContent {
            subject: session.subject(),
            claims: session.claims().clone(),
            session: session.session_id(),
            nonce: None,
            auth_time: session.auth_time_secs(),
            now: session.now_secs(),
            lifetime: session.id_token_lifetime_secs(),
        })
    }
}

impl IssuerDocuments for BuiltinProvider {
    fn jwks(&self) -> Value {
        let now = self.clock.now_secs();
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
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "nickname", "picture"],
        })
    }
}
