//! The fake application's signing keys and the tokens it issues.
//!
//! RS256 with a `kid` published in the JWKS, or HS256 keyed with the app secret (Authing docs
//! `OIDCProvider/authorize.md`; node SDK `parseIDToken` L1256-1272). Signed with `jsonwebtoken`
//! directly, independently of qrauth's own signing code.

use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// Which algorithm signs the id_tokens (the application's "id_token 签名算法").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdTokenAlg {
    /// RS256 with the key in the JWKS (Authing's default).
    #[default]
    Rs256,
    /// HS256 keyed with the app secret.
    Hs256,
}

pub(crate) struct Keys {
    rsa: EncodingKey,
    pub jwk: Jwk,
    pub kid: String,
}

impl Keys {
    pub fn generate() -> Result<Self, String> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .map_err(|e| e.to_string())?;
        let der = pair.as_der().map_err(|e| e.to_string())?;
        let body = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        let rsa = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        let mut jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).map_err(|e| e.to_string())?;
        let kid = crate::random_id(12);
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { rsa, jwk, kid })
    }

    pub fn sign_rs256(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.rsa).unwrap_or_default()
    }

    pub fn sign(&self, alg: IdTokenAlg, secret: &str, claims: &Value) -> String {
        match alg {
            IdTokenAlg::Rs256 => self.sign_rs256(claims),
            IdTokenAlg::Hs256 => jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                claims,
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap_or_default(),
        }
    }
}
