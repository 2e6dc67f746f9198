//! The built-in issuer's signing keys and the JWKS it publishes.

use std::sync::{Arc, PoisonError, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey};

use crate::error::{Error, Result};
use crate::secret::random_token;

/// The signature algorithms the built-in issuer can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key: the fastest to verify and accepted by
    /// every OIDC client.
    #[default]
    Rs256,
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            SigningAlgorithm::Rs256 => Algorithm::RS256,
            SigningAlgorithm::Es256 => Algorithm::ES256,
            SigningAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// One private signing key with its key id and public JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    signer: Arc<Signer>,
    public: Jwk,
}

/// The parsed private key. Parsed once: re-parsing (and re-checking) an RSA key per signature
/// costs more than the signature itself.
enum Signer {
    Rsa(RsaKeyPair),
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl Signer {
    fn from_der(algorithm: SigningAlgorithm, label: &str, der: &[u8]) -> Result<Self> {
        Ok(match algorithm {
            SigningAlgorithm::Rs256 if label == "RSA PRIVATE KEY" => {
                Signer::Rsa(RsaKeyPair::from_der(der).map_err(key_error)?)
            }
            SigningAlgorithm::Rs256 => Signer::Rsa(RsaKeyPair::from_pkcs8(der).map_err(key_error)?),
            SigningAlgorithm::Es256 => Signer::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(key_error)?,
            ),
            SigningAlgorithm::EdDsa => {
                Signer::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(key_error)?)
            }
        })
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let failed = |_| Error::Internal("signing failed".into());
        match self {
            Signer::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(failed)?;
                Ok(signature)
            }
            Signer::Es256(key) => Ok(key
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Signer::EdDsa(key) => Ok(key.sign(message).as_ref().to_vec()),
        }
    }
}

/// The label and DER body of the first PEM block.
fn pem_der(pem: &[u8]) -> Result<(String, Vec<u8>)> {
    let text = std::str::from_utf8(pem).map_err(key_error)?;
    let begin = text
        .find("-----BEGIN ")
        .ok_or_else(|| key_error("no PEM block"))?;
    let rest = &text[begin + 11..];
    let label_end = rest
        .find("-----")
        .ok_or_else(|| key_error("bad PEM header"))?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end = rest
        .find("-----END ")
        .ok_or_else(|| key_error("no PEM footer"))?;
    let body: String = rest
        .get(body_start..end)
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = STANDARD.decode(body).map_err(key_error)?;
    Ok((label, der))
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn key_error(e: impl std::fmt::Display) -> Error {
    Error::Config(format!("signing key: {e}"))
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

impl SigningKey {
    /// A fresh key from the OS CSPRNG.
    ///
    /// ```
    /// use qrauth_core::provider::builtin::{SigningAlgorithm, SigningKey};
    /// let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    /// assert_eq!(key.public_jwk().common.key_id.as_deref(), Some(key.kid()));
    /// ```
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self> {
        let pkcs8_pem = match algorithm {
            SigningAlgorithm::Rs256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(key_error)?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair.as_der().map_err(key_error)?;
                pem("PRIVATE KEY", der.as_ref())
            }
            SigningAlgorithm::Es256 => {
                let doc = EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(key_error)?;
                pem("PRIVATE KEY", doc.as_ref())
            }
            SigningAlgorithm::EdDsa => {
                let doc =
                    Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).map_err(key_error)?;
                pem("PRIVATE KEY", doc.as_ref())
            }
        };
        Self::from_pem(algorithm, pkcs8_pem.as_bytes(), None)
    }

    /// Loads a PKCS#8 (or, for RSA, PKCS#1) PEM private key, so that several replicas sign with
    /// the same key. Without a `kid`, one is derived from the public key (RFC 7638 thumbprint).
    pub fn from_pem(algorithm: SigningAlgorithm, pem: &[u8], kid: Option<&str>) -> Result<Self> {
        let alg = algorithm.jwt();
        let (label, der) = pem_der(pem)?;
        let signer = Signer::from_der(algorithm, &label, &der)?;
        // jsonwebtoken derives the public JWK; signing uses the parsed key above.
        let encoding = match algorithm {
            SigningAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
            SigningAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
            SigningAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
        }
        .map_err(key_error)?;
        let mut public = Jwk::from_encoding_key(&encoding, alg).map_err(key_error)?;
        let kid = match kid {
            Some(kid) => kid.to_owned(),
            None => {
                let thumb = public
                    .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                    .map_err(key_error)?;
                thumb.chars().take(16).collect()
            }
        };
        public.common.key_id = Some(kid.clone());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        let key = Self {
            kid,
            algorithm: alg,
            signer: Arc::new(signer),
            public,
        };
        // Make sure the key signs, and that its signatures verify against the published JWK
        // (so a PEM and a kid that do not belong together fail here, not in production).
        let probe = key.sign("JWT", &serde_json::json!({}))?;
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&key.public).map_err(key_error)?;
        let mut validation = jsonwebtoken::Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(&probe, &decoding, &validation)
            .map_err(|e| key_error(format!("self-check failed: {e}")))?;
        Ok(key)
    }

    /// The key id published in the JWKS and put in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as a JWK.
    pub fn public_jwk(&self) -> &Jwk {
        &self.public
    }

    /// Signs `claims` as a compact JWS with this key, `typ` in the header.
    pub fn sign<T: serde::Serialize>(&self, typ: &str, claims: &T) -> Result<String> {
        let json = |e: serde_json::Error| Error::Internal(format!("serialising JWT: {e}"));
        let header = serde_json::json!({ "alg": self.algorithm, "kid": self.kid, "typ": typ });
        let mut token = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(json)?);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(json)?));
        let signature = self.signer.sign(token.as_bytes())?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(token)
    }
}

/// The current signing key plus retired keys whose tokens may still be alive.
///
/// Rotation keeps the previous public key in the JWKS until every token it signed has expired.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<RwLock<Ring>>,
}

struct Ring {
    current: SigningKey,
    retired: Vec<(Jwk, u64)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring with one key.
    pub fn new(current: SigningKey) -> Self {
        Self {
            inner: Arc::new(RwLock::new(Ring {
                current,
                retired: Vec::new(),
            })),
        }
    }

    /// The key new tokens are signed with.
    pub fn current(&self) -> SigningKey {
        match self.inner.read() {
            Ok(ring) => ring.current.clone(),
            Err(poisoned) => poisoned.into_inner().current.clone(),
        }
    }

    /// Makes `next` the signing key; the old public key stays published until
    /// `keep_old_until_secs` (Unix seconds: the expiry of the last token it signed).
    pub fn rotate(&self, next: SigningKey, keep_old_until_secs: u64) {
        let mut ring = match self.inner.write() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = std::mem::replace(&mut ring.current, next);
        ring.retired.push((old.public, keep_old_until_secs));
    }

    /// Drops the retired keys no longer needed at `now_secs`; returns the JWKS to publish and
    /// when the next retired key leaves it (Unix seconds), if one is published.
    pub(crate) fn prune(&self, now_secs: u64) -> (JwkSet, Option<u64>) {
        let next_retirement = {
            let mut ring = self.inner.write().unwrap_or_else(PoisonError::into_inner);
            ring.retired.retain(|(_, until)| *until > now_secs);
            ring.retired.iter().map(|(_, until)| *until).min()
        };
        (self.jwks(now_secs), next_retirement)
    }

    /// The JWKS to publish at `now_secs`: the current key and the retired keys still needed.
    pub fn jwks(&self, now_secs: u64) -> JwkSet {
        let ring = match self.inner.read() {
            Ok(ring) => ring,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut keys = vec![ring.current.public.clone()];
        keys.extend(
            ring.retired
                .iter()
                .filter(|(_, until)| *until > now_secs)
                .map(|(jwk, _)| jwk.clone()),
        );
        JwkSet { keys }
    }
}

/// A random `jti`.
pub(crate) fn token_id() -> Result<String> {
    random_token(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_generates_a_key_that_signs_and_publishes_a_jwk() {
        for alg in [
            SigningAlgorithm::Rs256,
            SigningAlgorithm::Es256,
            SigningAlgorithm::EdDsa,
        ] {
            let key = SigningKey::generate(alg).unwrap();
            let token = key.sign("JWT", &serde_json::json!({"sub": "x"})).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(key.kid()));
            assert_eq!(header.alg, alg.jwt());
            let jwk_json = serde_json::to_string(key.public_jwk()).unwrap();
            assert!(
                !jwk_json.contains("\"d\""),
                "private part published: {jwk_json}"
            );
        }
    }

    #[test]
    fn rotation_keeps_the_old_key_until_its_tokens_expire() {
        let ring = KeyRing::new(SigningKey::generate(SigningAlgorithm::Es256).unwrap());
        let old_kid = ring.current().kid().to_owned();
        ring.rotate(
            SigningKey::generate(SigningAlgorithm::Es256).unwrap(),
            1_000,
        );
        assert_ne!(ring.current().kid(), old_kid);
        assert!(ring.jwks(999).find(&old_kid).is_some());
        assert!(ring.jwks(1_000).find(&old_kid).is_none());
        assert_eq!(ring.jwks(1_000).keys.len(), 1);
    }
}
