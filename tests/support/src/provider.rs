//! [`ScriptedIdp`]: a test-only upstream-confirmed provider, written on qrauth-core's public API
//! only. The test says what "the IdP" answers for each session; the service's upstream loop asks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use qrauth_core::provider::{
    Capabilities, ConfirmedLogin, IssuedTokens, QrContent, SessionStart, UpstreamDriver,
    UpstreamEvent, UpstreamSession,
};
use qrauth_core::{
    BuiltinProvider, Claims, Error, QrAuthProvider, Result, SigningAlgorithm, SigningKey,
};

use crate::phone::TestPhones;

/// An IdP that confirms on its side: `start` makes up an upstream QR id, every `check` answers
/// the next event the test [scripted](ScriptedIdp::script) for the session (or `Pending`), and
/// tokens are signed by a built-in signer once the upstream named the user.
pub struct ScriptedIdp {
    signer: BuiltinProvider,
    interval: Duration,
    script: Mutex<HashMap<String, Vec<Result<UpstreamEvent>>>>,
    checks: AtomicU64,
}

impl std::fmt::Debug for ScriptedIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedIdp").finish_non_exhaustive()
    }
}

impl ScriptedIdp {
    /// An IdP whose tokens name `issuer` and `audience`, checked every `interval`.
    pub fn new(issuer: &str, audience: &str, interval: Duration) -> Arc<Self> {
        let signer = BuiltinProvider::builder(Arc::new(TestPhones))
            .signing_key(SigningKey::generate(SigningAlgorithm::Es256).expect("ES256 key"))
            .issuer(issuer)
            .audience(audience)
            .build()
            .expect("signer");
        Arc::new(Self {
            signer,
            interval,
            script: Mutex::new(HashMap::new()),
            checks: AtomicU64::new(0),
        })
    }

    /// Queues what the IdP answers to the next check of session `qrcode_id`.
    pub fn script(&self, qrcode_id: &str, answer: Result<UpstreamEvent>) {
        if let Ok(mut script) = self.script.lock() {
            script.entry(qrcode_id.to_owned()).or_default().push(answer);
        }
    }

    /// Checks the service made so far (all sessions).
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl UpstreamDriver for ScriptedIdp {
    fn interval(&self) -> Duration {
        self.interval
    }

    async fn check(&self, session: UpstreamSession<'_>) -> Result<UpstreamEvent> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let expected = format!("upstream-{}", session.id.as_str());
        if session.provider_data != Some(expected.as_str()) {
            return Err(Error::Internal("session lost its upstream id".into()));
        }
        let next = self.script.lock().ok().and_then(|mut script| {
            let queue = script.get_mut(session.id.as_str())?;
            (!queue.is_empty()).then(|| queue.remove(0))
        });
        next.unwrap_or(Ok(UpstreamEvent::Pending))
    }
}

#[async_trait]
impl QrAuthProvider for ScriptedIdp {
    async fn start(&self, session: SessionStart<'_>) -> Result<QrContent> {
        if let Some(field) = session.extensions.keys().next() {
            return Err(Error::InvalidRequest(format!("unknown field `{field}`")));
        }
        Ok(
            QrContent::new(format!("scripted-idp://qr/{}", session.id.as_str()))
                .user_code("WDJB-MJHT")
                .provider_data(format!("upstream-{}", session.id.as_str())),
        )
    }

    async fn issue_tokens(&self, login: ConfirmedLogin<'_>) -> Result<IssuedTokens> {
        if login.subject().is_empty() {
            return Err(Error::Upstream("the IdP named no user".into()));
        }
        self.signer.issue_tokens(login).await
    }

    async fn verify(&self, id_token: &str) -> Result<Arc<Claims>> {
        self.signer.verify(id_token).await
    }

    fn capabilities(&self) -> Capabilities<'_> {
        Capabilities::none().upstream(self)
    }
}
