//! Reading a token before its signature is checked: the JOSE header, base64url segments, and
//! the registered claims.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::TokenError;
use crate::types::Audience;

/// The parts of a JOSE header qrauth reads.
#[derive(Deserialize)]
pub(super) struct RawHeader {
    pub(super) alg: String,
    #[serde(default)]
    pub(super) kid: Option<String>,
    #[serde(default)]
    pub(super) typ: Option<String>,
    #[serde(default)]
    pub(super) crit: Option<serde::de::IgnoredAny>,
}

pub(super) fn b64(segment: &str) -> std::result::Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TokenError::Malformed)
}

/// The header's algorithm, if it is one qrauth ever verifies.
pub(super) fn header_algorithm(name: &str) -> std::result::Result<Algorithm, TokenError> {
    match Algorithm::from_str(name) {
        Ok(
            alg @ (Algorithm::HS256
            | Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA),
        ) => Ok(alg),
        _ => Err(TokenError::AlgorithmNotAllowed),
    }
}

/// Whether a JOSE `typ` names an explicitly typed JWT that is not an id_token (`at+jwt`,
/// `logout+jwt`, `dpop+jwt`, …). `JWT` and no `typ` at all are what id_tokens carry.
pub(super) fn is_other_token_type(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    typ.ends_with("+jwt")
}

/// A NumericDate claim as whole seconds (fractions are truncated); `None` when absent.
pub(super) fn numeric_date(
    claims: &mut Map<String, Value>,
    name: &'static str,
) -> std::result::Result<Option<u64>, TokenError> {
    let Some(value) = claims.get_mut(name) else {
        return Ok(None);
    };
    let secs = match &*value {
        Value::Null => return Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(secs), _) => secs,
            (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => f as u64,
            _ => return Err(TokenError::InvalidClaim(name)),
        },
        _ => return Err(TokenError::InvalidClaim(name)),
    };
    // Normalise so that `Claims` deserialises it as an integer.
    *value = Value::from(secs);
    Ok(Some(secs))
}

pub(super) fn audience(claims: &Map<String, Value>) -> std::result::Result<Audience, TokenError> {
    match claims.get("aud") {
        Some(Value::String(a)) => Ok(Audience::One(a.clone())),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Audience::Many)
            .ok_or(TokenError::InvalidClaim("aud")),
        _ => Err(TokenError::InvalidClaim("aud")),
    }
}
