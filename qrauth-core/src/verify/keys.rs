//! JWK sets parsed into verification keys, each pinned to the algorithms its `kty`, `crv` and
//! `alg` allow.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use super::jwks::MAX_KEYS;

/// Most keys tried for a token that names no `kid`.
const MAX_CANDIDATES: usize = 8;

/// Which algorithms a key may verify: decided by the key (its `kty`, `crv` and `alg`), never by a
/// token's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowedAlgorithms {
    /// Exactly this algorithm.
    Exactly(Algorithm),
    /// An RSA key without `alg`: any RSA signature algorithm (RS256/384/512, PS256/384/512).
    AnyRsa,
}

impl AllowedAlgorithms {
    pub(crate) fn allows(self, alg: Algorithm) -> bool {
        match self {
            AllowedAlgorithms::Exactly(a) => a == alg,
            AllowedAlgorithms::AnyRsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
        }
    }
}

/// One public key (or the configured HS256 secret), ready to verify signatures.
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<String>,
    pub(crate) algorithms: AllowedAlgorithms,
    pub(crate) key: DecodingKey,
    /// The public parameters as published: tells the same key in a refetched set from another
    /// key under the same `kid`.
    material: Box<str>,
    /// Set once the key has left its issuer's set: the tokens it verified are not believed any
    /// more, cached or not.
    retired: AtomicBool,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// The configured HS256 shared secret.
    pub(crate) fn hs256(secret: &[u8]) -> Self {
        Self {
            kid: None,
            algorithms: AllowedAlgorithms::Exactly(Algorithm::HS256),
            key: DecodingKey::from_secret(secret),
            // Never in a key set, so never compared: no trace of the secret is kept.
            material: Box::default(),
            retired: AtomicBool::new(false),
        }
    }

    /// Whether the key has left its issuer's set.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    fn is_same_key_as(&self, other: &VerifyingKey) -> bool {
        self.kid == other.kid
            && self.algorithms == other.algorithms
            && self.material == other.material
    }
}

/// What a key set says about a (`kid`, `alg`) pair.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// Keys that may verify this token.
    Found(Vec<Arc<VerifyingKey>>),
    /// The `kid` exists, but its key does not allow the header's algorithm.
    WrongAlgorithm,
    /// No such key.
    NotFound,
}

/// The usable keys of one issuer, by `kid`.
#[derive(Debug, Default)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<Arc<VerifyingKey>>>,
    all: Vec<Arc<VerifyingKey>>,
}

impl KeySet {
    /// Number of usable keys.
    pub(crate) fn len(&self) -> usize {
        self.all.len()
    }

    /// Whether no key is usable.
    pub(crate) fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    fn push(&mut self, key: VerifyingKey) {
        self.push_shared(Arc::new(key));
    }

    fn push_shared(&mut self, key: Arc<VerifyingKey>) {
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(Arc::clone(&key));
        }
        self.all.push(key);
    }

    /// Makes this set the successor of `previous`: a key both hold stays the same key (what it
    /// verified stays believed), and every key of `previous` that this set no longer holds is
    /// retired, so that the tokens it verified stop verifying, from the verified-token cache
    /// too.
    pub(crate) fn succeed(self, previous: &KeySet) -> KeySet {
        let mut next = KeySet::default();
        for key in self.all {
            let kept = previous.all.iter().find(|old| old.is_same_key_as(&key));
            next.push_shared(kept.map_or(key, Arc::clone));
        }
        for old in &previous.all {
            if !next.all.iter().any(|k| Arc::ptr_eq(k, old)) {
                old.retired.store(true, Ordering::Release);
            }
        }
        next
    }

    /// Builds a key set from parsed JWKs, skipping every key that cannot be used safely for
    /// signature verification. Returns the set and how many keys were skipped.
    pub(crate) fn from_jwk_set(set: &JwkSet) -> (Self, usize) {
        let mut keys = KeySet::default();
        let mut skipped = 0;
        for jwk in &set.keys {
            if keys.len() >= MAX_KEYS {
                skipped += 1;
                continue;
            }
            let raw_alg = jwk
                .common
                .key_algorithm
                .map(|a| a.to_string())
                .filter(|a| a != "UNKNOWN_ALGORITHM");
            // jsonwebtoken collapses unknown `alg` values; a key whose `alg` is one it does not
            // know is one we do not use.
            let unknown_alg = jwk.common.key_algorithm.is_some() && raw_alg.is_none();
            let usable = !unknown_alg
                && jwk_is_for_signatures(jwk)
                && verifying_key(jwk, raw_alg.as_deref())
                    .map(|k| keys.push(k))
                    .is_some();
            if !usable {
                skipped += 1;
            }
        }
        (keys, skipped)
    }

    /// Parses a JWKS document received from the network. Keys that do not parse or cannot be
    /// used are skipped; a document that is not a JWK set is an error.
    pub(crate) fn from_json(body: &[u8]) -> Result<(Self, usize), String> {
        let doc: Value =
            serde_json::from_slice(body).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("JWKS has no `keys` array".to_owned());
        };
        let mut keys = KeySet::default();
        let mut skipped = 0;
        for entry in entries {
            if keys.len() >= MAX_KEYS {
                skipped += 1;
                continue;
            }
            // Read `alg` from the raw JSON: jsonwebtoken maps unknown names (e.g. "Ed25519")
            // to a catch-all, and we want to decide on the real value.
            let raw_alg = match entry.get("alg") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    skipped += 1;
                    continue;
                }
            };
            let key = serde_json::from_value::<Jwk>(entry.clone())
                .ok()
                .filter(jwk_is_for_signatures)
                .and_then(|jwk| verifying_key(&jwk, raw_alg.as_deref()));
            match key {
                Some(key) => keys.push(key),
                None => skipped += 1,
            }
        }
        Ok((keys, skipped))
    }

    /// The keys that may verify a token with this `kid` and header algorithm.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => Lookup::NotFound,
                Some(keys) => {
                    let found: Vec<_> = keys
                        .iter()
                        .filter(|k| k.algorithms.allows(alg))
                        .cloned()
                        .collect();
                    if found.is_empty() {
                        Lookup::WrongAlgorithm
                    } else {
                        Lookup::Found(found)
                    }
                }
            },
            None => {
                if self.all.is_empty() {
                    return Lookup::NotFound;
                }
                let found: Vec<_> = self
                    .all
                    .iter()
                    .filter(|k| k.algorithms.allows(alg))
                    .take(MAX_CANDIDATES)
                    .cloned()
                    .collect();
                if found.is_empty() {
                    Lookup::WrongAlgorithm
                } else {
                    Lookup::Found(found)
                }
            }
        }
    }
}

/// `use` must be absent or `sig`; `key_ops`, when present, must include `verify`.
fn jwk_is_for_signatures(jwk: &Jwk) -> bool {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let use_ok = matches!(
        jwk.common.public_key_use,
        None | Some(PublicKeyUse::Signature)
    );
    let ops_ok = jwk
        .common
        .key_operations
        .as_ref()
        .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    use_ok && ops_ok
}

fn b64_len(value: &str) -> Option<usize> {
    URL_SAFE_NO_PAD.decode(value).ok().map(|v| v.len())
}

/// Turns one JWK into a verifying key with its algorithm pinned, or `None` if the key is not a
/// public signature key of a supported type, or if its `alg` contradicts its type.
fn verifying_key(jwk: &Jwk, alg: Option<&str>) -> Option<VerifyingKey> {
    let algorithms = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            // RSA keys below 2048 bits are refused (aws-lc would refuse them too).
            let n_len = b64_len(&rsa.n)?;
            let e_len = b64_len(&rsa.e)?;
            if n_len < 256 || e_len == 0 || e_len > 8 {
                return None;
            }
            match alg {
                None => AllowedAlgorithms::AnyRsa,
                Some(name) => {
                    let alg = Algorithm::from_str(name).ok()?;
                    if !AllowedAlgorithms::AnyRsa.allows(alg) {
                        return None;
                    }
                    AllowedAlgorithms::Exactly(alg)
                }
            }
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (curve_alg, coordinate_len) = match ec.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 32),
                EllipticCurve::P384 => (Algorithm::ES384, 48),
                _ => return None,
            };
            if b64_len(&ec.x)? != coordinate_len || b64_len(&ec.y)? != coordinate_len {
                return None;
            }
            if alg.is_some_and(|a| Algorithm::from_str(a).ok() != Some(curve_alg)) {
                return None;
            }
            AllowedAlgorithms::Exactly(curve_alg)
        }
        AlgorithmParameters::OctetKeyPair(okp) => {
            if okp.curve != EllipticCurve::Ed25519 || b64_len(&okp.x)? != 32 {
                return None;
            }
            if alg.is_some_and(|a| a != "EdDSA" && a != "Ed25519") {
                return None;
            }
            AllowedAlgorithms::Exactly(Algorithm::EdDSA)
        }
        // Symmetric keys are never taken from a JWK set: a published secret is no secret, and
        // HS256 is only accepted with an explicitly configured shared secret.
        AlgorithmParameters::OctetKey(_) | AlgorithmParameters::Other(_) => return None,
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(VerifyingKey {
        kid: jwk.common.key_id.clone(),
        algorithms,
        key,
        material: serde_json::to_string(&jwk.algorithm).ok()?.into(),
        retired: AtomicBool::new(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa_n() -> String {
        URL_SAFE_NO_PAD.encode([0xC5u8; 256])
    }

    fn set(keys: &[(&str, u8)]) -> KeySet {
        let keys: Vec<Value> = keys
            .iter()
            .map(|(kid, fill)| {
                json!({"kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode([*fill; 256]), "e": "AQAB"})
            })
            .collect();
        KeySet::from_json(json!({ "keys": keys }).to_string().as_bytes())
            .unwrap()
            .0
    }

    fn found(set: &KeySet, kid: &str) -> Arc<VerifyingKey> {
        match set.lookup(Some(kid), Algorithm::RS256) {
            Lookup::Found(mut keys) => keys.remove(0),
            other => panic!("{kid}: {other:?}"),
        }
    }

    #[test]
    fn a_successor_set_keeps_unchanged_keys_and_retires_the_others() {
        let first = set(&[("a", 0xC5), ("b", 0xC6), ("c", 0xC7)]);
        let (a, b, c) = (found(&first, "a"), found(&first, "b"), found(&first, "c"));
        // "a" unchanged, "b" replaced by another key under the same kid, "c" withdrawn.
        let next = set(&[("a", 0xC5), ("b", 0xD6)]).succeed(&first);
        assert!(
            Arc::ptr_eq(&found(&next, "a"), &a),
            "the same key stays the same"
        );
        assert!(!a.is_retired());
        assert!(!Arc::ptr_eq(&found(&next, "b"), &b));
        assert!(
            b.is_retired(),
            "new material under an old kid is another key"
        );
        assert!(c.is_retired());
        assert!(!found(&next, "b").is_retired());
        assert!(matches!(
            next.lookup(Some("c"), Algorithm::RS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn rsa_key_without_alg_allows_only_rsa_algorithms() {
        let body = json!({"keys": [{"kty": "RSA", "kid": "r", "n": rsa_n(), "e": "AQAB"}]});
        let (set, skipped) = KeySet::from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!((set.len(), skipped), (1, 0));
        assert!(matches!(
            set.lookup(Some("r"), Algorithm::PS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("r"), Algorithm::HS256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.lookup(Some("r"), Algorithm::ES256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.lookup(Some("x"), Algorithm::RS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn symmetric_encryption_small_and_contradictory_keys_are_skipped() {
        let body = json!({"keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0", "alg": "HS256"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": rsa_n(), "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode([7u8; 128]), "e": "AQAB"},
            {"kty": "RSA", "kid": "es", "alg": "ES256", "n": rsa_n(), "e": "AQAB"},
            {"kty": "RSA", "kid": "oaep", "alg": "RSA-OAEP", "n": rsa_n(), "e": "AQAB"},
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "weird"},
            "not an object",
            {"kty": "RSA", "kid": "ok", "alg": "RS256", "n": rsa_n(), "e": "AQAB"}
        ]});
        let (set, skipped) = KeySet::from_json(body.to_string().as_bytes()).unwrap();
        assert_eq!((set.len(), skipped), (1, 8));
        assert!(matches!(
            set.lookup(Some("ok"), Algorithm::RS256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("ok"), Algorithm::PS256),
            Lookup::WrongAlgorithm
        ));
        assert!(matches!(
            set.lookup(Some("h"), Algorithm::HS256),
            Lookup::NotFound
        ));
    }

    #[test]
    fn documents_that_are_not_jwk_sets_are_errors() {
        assert!(KeySet::from_json(b"[]").is_err());
        assert!(KeySet::from_json(b"{\"keys\": 3}").is_err());
        assert!(KeySet::from_json(b"<html>").is_err());
    }
}
