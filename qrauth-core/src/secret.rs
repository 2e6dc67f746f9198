//! Random identifiers and secrets: the QR id, the browser-binding secret, the phone's confirm
//! token and the one-time ticket.
//!
//! All four are drawn from the operating system's CSPRNG and encoded as base64url without
//! padding. None of them implements `PartialEq`: compare them with [`ct_eq`](QrCodeId::ct_eq),
//! which runs in constant time. `Debug` never prints the value.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn os_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| Error::Internal(format!("OS random generator failed: {e}")))
}

/// `len` random bytes from the OS CSPRNG, base64url-encoded without padding.
pub(crate) fn random_token(len: usize) -> Result<String> {
    let mut buf = vec![0u8; len];
    os_random(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(&buf))
}

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Constant-time equality of two byte strings (the length itself is not secret).
/// The six bits a base64url character stands for; `None` for any other byte.
pub(crate) fn base64url_sextet(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'-' => Some(62),
        b'_' => Some(63),
        _ => None,
    }
}

/// Whether `value` is base64url without padding that decodes, strictly (unused bits zero), to
/// whole bytes: what `URL_SAFE_NO_PAD.decode` accepts, checked without decoding (ids are parsed
/// on every authenticated request).
fn is_canonical_base64url(value: &str) -> bool {
    let bytes = value.as_bytes();
    let Some(&last) = bytes.last() else {
        return true;
    };
    // A final group of 2 or 3 characters leaves 4 or 2 bits unused; 1 character is no byte.
    let unused_mask = match bytes.len() % 4 {
        0 => 0,
        2 => 0b1111,
        3 => 0b11,
        _ => return false,
    };
    bytes.iter().all(|&c| base64url_sextet(c).is_some())
        && base64url_sextet(last).is_some_and(|bits| bits & unused_mask == 0)
}

pub(crate) fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The SHA-256 of a secret: what the stores keep instead of the secret itself.
#[derive(Clone, Copy)]
pub struct SecretHash(pub(crate) [u8; 32]);

impl SecretHash {
    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Builds a hash from 32 bytes (e.g. read back from a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &SecretHash) -> bool {
        ct_eq_bytes(&self.0, &other.0)
    }

    /// Hex encoding, for stores that keep text.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident, bytes = $bytes:expr) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(String);

        impl $name {
            /// Number of random bytes in a freshly generated value.
            pub const RANDOM_BYTES: usize = $bytes;

            /// A fresh value from the OS CSPRNG.
            pub fn generate() -> Result<Self> {
                random_token(Self::RANDOM_BYTES).map(Self)
            }

            /// Parses a value received from a client.
            ///
            /// Accepts base64url without padding that decodes to 16..=64 bytes; anything else
            /// is [`Error::InvalidRequest`] (callers that must not reveal why map it further).
            pub fn parse(value: &str) -> Result<Self> {
                if !(22..=86).contains(&value.len()) {
                    return Err(Error::InvalidRequest(
                        concat!("malformed ", stringify!($name)).to_owned(),
                    ));
                }
                // 22 characters or more are 16 bytes or more.
                if is_canonical_base64url(value) {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(Error::InvalidRequest(
                        concat!("malformed ", stringify!($name)).to_owned(),
                    ))
                }
            }

            /// The encoded value. Handle with care: this is what must never reach a log.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }

            /// Constant-time equality.
            pub fn ct_eq(&self, other: &Self) -> bool {
                ct_eq_bytes(self.0.as_bytes(), other.0.as_bytes())
            }

            /// SHA-256 of the encoded value: what stores keep.
            pub fn hash(&self) -> SecretHash {
                SecretHash(sha256(self.0.as_bytes()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}

secret_type!(
    /// The QR session's public id: it is printed in the QR code, so it identifies a session but
    /// grants nothing on its own. 128 random bits.
    ///
    /// ```
    /// let id = qrauth_core::QrCodeId::generate().unwrap();
    /// assert_eq!(id.as_str().len(), 22);
    /// assert!(!format!("{id:?}").contains(id.as_str()));
    /// ```
    QrCodeId,
    bytes = 16
);

impl QrCodeId {
    /// The id as text (it is public: it is in the QR code).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

secret_type!(
    /// The secret that binds a QR session to the browser that created it. Travels only in the
    /// `HttpOnly` binding cookie; stores keep its SHA-256. 256 random bits.
    BindingSecret,
    bytes = 32
);

/// The server key under which qrauth MACs the binding cookies it mints, so that `POST /qrcode`
/// adopts only a binding that qrauth itself issued (for the same client network), and the scan
/// tokens of its rotating QR codes, so that only the QR on screen can be scanned.
///
/// Every replica behind one load balancer must use the same key
/// ([`QrAuthServiceBuilder::binding_key`](crate::QrAuthServiceBuilder::binding_key)); the
/// default is a random key per process, with which a replica replaces the bindings the others
/// minted (the browser's other tabs then lose their pending QR codes). `Debug` never prints it.
///
/// ```
/// let key = qrauth_core::BindingKey::from_bytes(&[7u8; 32]).unwrap();
/// assert!(!format!("{key:?}").contains('7'));
/// assert!(qrauth_core::BindingKey::from_bytes(b"too short").is_err());
/// ```
#[derive(Clone)]
pub struct BindingKey(aws_lc_rs::hmac::Key);

impl BindingKey {
    /// The shortest key accepted, in bytes.
    pub const MIN_BYTES: usize = 32;

    /// A key from `bytes` (at least [`MIN_BYTES`](Self::MIN_BYTES), e.g. 32 bytes from a secret
    /// manager, shared by every replica).
    ///
    /// # Errors
    /// [`Error::Config`] for a shorter key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < Self::MIN_BYTES {
            return Err(Error::Config(format!(
                "the binding key needs at least {} bytes",
                Self::MIN_BYTES
            )));
        }
        Ok(Self(aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            bytes,
        )))
    }

    /// A fresh random key from the OS CSPRNG (the per-process default).
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        os_random(&mut bytes)?;
        Self::from_bytes(&bytes)
    }

    /// The scan token of rotation `rotation` of the QR of session `id`: the same on every
    /// replica that shares the key, without anything stored.
    pub(crate) fn scan_mac(&self, id: &QrCodeId, rotation: u64) -> [u8; BINDING_MAC_BYTES] {
        self.tag(
            b"qrauth scan v1\0",
            id.0.as_bytes(),
            &rotation.to_be_bytes(),
        )
    }

    fn mac(&self, random: &[u8], network: &[u8]) -> [u8; BINDING_MAC_BYTES] {
        self.tag(b"qrauth binding v1\0", random, network)
    }

    /// The truncated HMAC of `label ‖ first ‖ "\0" ‖ second`: the label keeps the uses of the
    /// one key apart.
    fn tag(&self, label: &[u8], first: &[u8], second: &[u8]) -> [u8; BINDING_MAC_BYTES] {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.0);
        ctx.update(label);
        ctx.update(first);
        ctx.update(b"\0");
        ctx.update(second);
        let tag = ctx.sign();
        let mut out = [0u8; BINDING_MAC_BYTES];
        out.copy_from_slice(&tag.as_ref()[..BINDING_MAC_BYTES]);
        out
    }
}

impl fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingKey(<redacted>)")
    }
}

/// Random bytes of a minted binding; the MAC follows them in the cookie value.
const BINDING_RANDOM_BYTES: usize = 32;
/// Truncated HMAC-SHA256: 128 bits are plenty for a tag checked online.
const BINDING_MAC_BYTES: usize = 16;

impl BindingSecret {
    /// Mints a binding for a client of `network` (see
    /// [`QrAuthService`](crate::QrAuthService)'s limit keys): 256 random bits followed by a
    /// 128-bit MAC of them and of `network` under `key`.
    pub(crate) fn mint(key: &BindingKey, network: &str) -> Result<Self> {
        let mut bytes = [0u8; BINDING_RANDOM_BYTES + BINDING_MAC_BYTES];
        os_random(&mut bytes[..BINDING_RANDOM_BYTES])?;
        let mac = key.mac(&bytes[..BINDING_RANDOM_BYTES], network.as_bytes());
        bytes[BINDING_RANDOM_BYTES..].copy_from_slice(&mac);
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Whether qrauth minted this binding under `key` for a client of `network`; the tag is
    /// compared in constant time. Any other value (all zeros, another network's, a forged one)
    /// is `false`.
    pub(crate) fn is_minted(&self, key: &BindingKey, network: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(&self.0) else {
            return false;
        };
        if bytes.len() != BINDING_RANDOM_BYTES + BINDING_MAC_BYTES {
            return false;
        }
        let (random, tag) = bytes.split_at(BINDING_RANDOM_BYTES);
        ct_eq_bytes(&key.mac(random, network.as_bytes()), tag)
    }
}

secret_type!(
    /// The phone's proof that it scanned a session: returned by `scan`, required by `confirm`
    /// and `cancel`, single use. 256 random bits.
    ConfirmToken,
    bytes = 32
);

secret_type!(
    /// The one-time ticket the bound browser exchanges for a token set. 256 bits.
    ///
    /// A ticket is `HMAC-SHA256(binding secret, "qrauth ticket" ‖ qrcodeId ‖ nonce)` where the
    /// nonce is 128 CSPRNG bits drawn at confirmation. Deriving it from the binding secret is
    /// what lets the store keep only hashes: only the bound browser's request can reproduce the
    /// ticket, and the store never holds it.
    Ticket,
    bytes = 32
);

impl Ticket {
    /// Derives the ticket of a confirmed session for the browser holding `binding`.
    pub(crate) fn derive(binding: &BindingSecret, id: &QrCodeId, nonce: &[u8]) -> Self {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, binding.0.as_bytes());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"qrauth ticket\0");
        ctx.update(id.0.as_bytes());
        ctx.update(b"\0");
        ctx.update(nonce);
        Self(URL_SAFE_NO_PAD.encode(ctx.sign().as_ref()))
    }
}

secret_type!(
    /// A signed-in session's id (`sid` in the id_tokens qrauth signs; the phone's handle in
    /// `GET /qrcode/devices`). 128 random bits, unrelated to the QR code id and the ticket. It
    /// names a session but grants nothing on its own: renewing needs the refresh secret,
    /// revoking needs the session's phone user or the application.
    ///
    /// ```
    /// let sid = qrauth_core::SessionId::generate().unwrap();
    /// assert_eq!(sid.as_str().len(), 22);
    /// ```
    SessionId,
    bytes = 16
);

impl SessionId {
    /// The id as text (it is in the session's id_tokens).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// In a module of its own so that the generated methods it does not use are not dead code.
#[allow(dead_code)]
mod refresh {
    use super::*;

    secret_type!(
        /// The rotating refresh secret of a signed-in session: travels only in the `HttpOnly`
        /// refresh cookie; stores keep its SHA-256. 256 random bits, replaced at every renewal.
        RefreshSecret,
        bytes = 32
    );
}
pub(crate) use refresh::RefreshSecret;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn hundred_thousand_ids_and_secrets_are_unique_and_at_least_128_bits() {
        let mut seen = HashSet::new();
        for _ in 0..25_000 {
            let values = [
                QrCodeId::generate().unwrap().0,
                BindingSecret::generate().unwrap().0,
                ConfirmToken::generate().unwrap().0,
                Ticket::derive(
                    &BindingSecret::generate().unwrap(),
                    &QrCodeId::generate().unwrap(),
                    &[1; 16],
                )
                .0,
            ];
            for v in values {
                assert!(URL_SAFE_NO_PAD.decode(&v).unwrap().len() >= 16);
                assert!(seen.insert(v), "duplicate value");
            }
        }
        assert_eq!(seen.len(), 100_000);
    }

    #[test]
    fn secrets_are_not_prefixes_of_each_other() {
        let id = QrCodeId::generate().unwrap();
        let bind = BindingSecret::generate().unwrap();
        let ticket = Ticket::derive(&bind, &id, &[7; 16]);
        for (a, b) in [(&id.0, &bind.0), (&id.0, &ticket.0), (&bind.0, &ticket.0)] {
            assert!(!a.starts_with(b.as_str()) && !b.starts_with(a.as_str()));
            assert!(!a.contains(&b[..8]) && !b.contains(&a[..8]));
        }
    }

    #[test]
    fn debug_of_every_secret_type_hides_the_value() {
        let id = QrCodeId::generate().unwrap();
        let bind = BindingSecret::generate().unwrap();
        let confirm = ConfirmToken::generate().unwrap();
        let ticket = Ticket::derive(&bind, &id, &[0; 16]);
        for (dbg, raw) in [
            (format!("{id:?}"), id.as_str().to_owned()),
            (format!("{bind:?}"), bind.expose_secret().to_owned()),
            (format!("{confirm:?}"), confirm.expose_secret().to_owned()),
            (format!("{ticket:?}"), ticket.expose_secret().to_owned()),
            (format!("{:?}", bind.hash()), bind.hash().to_hex()),
        ] {
            assert!(!dbg.contains(&raw[..10]), "{dbg} leaks {raw}");
        }
    }

    #[test]
    fn constant_time_comparison_distinguishes_values() {
        let a = BindingSecret::generate().unwrap();
        let b = BindingSecret::parse(a.expose_secret()).unwrap();
        let c = BindingSecret::generate().unwrap();
        assert!(a.ct_eq(&b));
        assert!(!a.ct_eq(&c));
        assert!(a.hash().ct_eq(&b.hash()));
        assert!(!a.hash().ct_eq(&c.hash()));
        assert!(!ct_eq_bytes(b"short", b"longer"));
    }

    #[test]
    fn parse_accepts_exactly_what_strict_base64url_decoding_accepts() {
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. ";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20_000 {
            let len = 22 + (next() % 66) as usize;
            let mut value: Vec<u8> = (0..len)
                // Mostly valid characters, so that the tail bits are what decides.
                .map(|_| alphabet[(next() % if round % 4 == 0 { 69 } else { 64 }) as usize])
                .collect();
            if round % 3 == 0 {
                // A canonical encoding of random bytes, then perhaps one flipped tail bit.
                let bytes: Vec<u8> = (0..len * 3 / 4).map(|_| next() as u8).collect();
                value = URL_SAFE_NO_PAD.encode(&bytes).into_bytes();
                if round % 2 == 0
                    && let Some(last) = value.last_mut()
                {
                    *last = alphabet[(next() % 64) as usize];
                }
            }
            let value = String::from_utf8(value).expect("ascii");
            let strict = URL_SAFE_NO_PAD.decode(&value).is_ok_and(|b| b.len() >= 16);
            assert_eq!(
                SessionId::parse(&value).is_ok(),
                strict && value.len() <= 86,
                "{value:?}"
            );
        }
    }

    #[test]
    fn parse_rejects_short_long_and_non_base64url_values() {
        for bad in [
            "",
            "abc",
            "!!!!!!!!!!!!!!!!!!!!!!!!",
            &"a".repeat(10_000),
            "AAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(QrCodeId::parse(bad).is_err(), "{bad:?} accepted");
        }
        let id = QrCodeId::generate().unwrap();
        assert!(QrCodeId::parse(id.as_str()).is_ok());
    }

    #[test]
    fn only_bindings_minted_under_the_key_for_the_network_are_recognised() {
        let key = BindingKey::generate().unwrap();
        let other = BindingKey::generate().unwrap();
        let minted = BindingSecret::mint(&key, "203.0.113.7").unwrap();
        assert!(BindingSecret::parse(minted.expose_secret()).is_ok());
        assert!(minted.is_minted(&key, "203.0.113.7"));
        assert!(!minted.is_minted(&other, "203.0.113.7"));
        assert!(!minted.is_minted(&key, "203.0.113.8"));
        let zeros = BindingSecret::parse(&"A".repeat(64)).unwrap();
        assert!(!zeros.is_minted(&key, "203.0.113.7"));
        let legacy = BindingSecret::generate().unwrap();
        assert!(!legacy.is_minted(&key, "203.0.113.7"));
    }

    #[test]
    fn ticket_derivation_depends_on_binding_id_and_nonce() {
        let id = QrCodeId::generate().unwrap();
        let b1 = BindingSecret::generate().unwrap();
        let b2 = BindingSecret::generate().unwrap();
        let t = Ticket::derive(&b1, &id, &[1; 16]);
        assert!(t.ct_eq(&Ticket::derive(&b1, &id, &[1; 16])));
        assert!(!t.ct_eq(&Ticket::derive(&b2, &id, &[1; 16])));
        assert!(!t.ct_eq(&Ticket::derive(&b1, &id, &[2; 16])));
    }
}
