//! How a [`SessionRecord`] is laid out in its Redis hash.
//!
//! One field per record field, all text: numbers in decimal, hashes and nonces in lowercase
//! hex, the scanner as JSON. Optional fields that are empty are absent rather than stored
//! empty, which keeps a pending session's hash small (it stays a listpack). The record's id is
//! the key's suffix and is not repeated inside.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::record::{Initiator, Scanner, SessionRecord};
use crate::secret::{QrCodeId, SecretHash};
use crate::types::QrState;

/// Hash field names. Part of the storage format: renaming one orphans live sessions.
pub(super) mod field {
    pub const STATE: &str = "state";
    pub const VERSION: &str = "version";
    pub const CREATED: &str = "created";
    pub const EXPIRES: &str = "expires";
    pub const BINDING: &str = "bind";
    pub const IP: &str = "ip";
    pub const DEVICE: &str = "device";
    pub const NONCE: &str = "nonce";
    pub const SCANNER: &str = "scanner";
    pub const CONFIRM_HASH: &str = "confirm";
    pub const CONFIRM_EXPIRES: &str = "confirm_exp";
    pub const TICKET_NONCE: &str = "ticket_nonce";
    pub const TICKET_EXPIRES: &str = "ticket_exp";
    pub const FAILED: &str = "failed";
    pub const MATCH_CODE: &str = "match";
    pub const PROVIDER_DATA: &str = "data";
    pub const QR_CONTENT: &str = "qr";
    pub const UPSTREAM_LOST: &str = "lost";
}

/// A record as hash fields: the ones to write and the ones to remove.
pub(super) struct Encoded {
    pub set: Vec<(&'static str, Vec<u8>)>,
    pub unset: Vec<&'static str>,
}

impl Encoded {
    fn put(&mut self, name: &'static str, value: Option<Vec<u8>>) {
        match value {
            Some(v) => self.set.push((name, v)),
            None => self.unset.push(name),
        }
    }
}

fn nonzero(v: u64) -> Option<Vec<u8>> {
    (v != 0).then(|| v.to_string().into_bytes())
}

/// Encodes every field of `record`.
pub(super) fn encode(record: &SessionRecord) -> Result<Encoded> {
    // Destructured without `..`: a new field on `SessionRecord` must be given a place here.
    let SessionRecord {
        id: _,
        state,
        version,
        created_at_ms,
        expire_at_ms,
        binding_hash,
        initiator,
        nonce,
        scanner,
        confirm_token_hash,
        confirm_expire_at_ms,
        ticket_nonce,
        ticket_expire_at_ms,
        failed_attempts,
        match_code,
        provider_data,
        qr_content,
        upstream_lost,
    } = record;
    let Initiator { ip, device } = initiator;
    let scanner =
        match scanner {
            Some(s) => Some(serde_json::to_vec(s).map_err(|e| {
                Error::Internal(format!("cannot encode the session's scanner: {e}"))
            })?),
            None => None,
        };
    let mut out = Encoded {
        set: Vec::with_capacity(16),
        unset: Vec::new(),
    };
    out.put(field::STATE, Some(state.as_str().as_bytes().to_vec()));
    out.put(field::VERSION, Some(version.to_string().into_bytes()));
    out.put(field::CREATED, Some(created_at_ms.to_string().into_bytes()));
    out.put(field::EXPIRES, Some(expire_at_ms.to_string().into_bytes()));
    out.put(field::BINDING, Some(binding_hash.to_hex().into_bytes()));
    out.put(field::IP, ip.map(|ip| ip.to_string().into_bytes()));
    out.put(
        field::DEVICE,
        (!device.is_empty()).then(|| device.as_bytes().to_vec()),
    );
    out.put(field::NONCE, nonce.as_ref().map(|n| n.as_bytes().to_vec()));
    out.put(field::SCANNER, scanner);
    out.put(
        field::CONFIRM_HASH,
        confirm_token_hash.map(|h| h.to_hex().into_bytes()),
    );
    out.put(field::CONFIRM_EXPIRES, nonzero(*confirm_expire_at_ms));
    out.put(
        field::TICKET_NONCE,
        ticket_nonce.map(|n| hex(&n).into_bytes()),
    );
    out.put(field::TICKET_EXPIRES, nonzero(*ticket_expire_at_ms));
    out.put(field::FAILED, nonzero(u64::from(*failed_attempts)));
    out.put(
        field::MATCH_CODE,
        match_code.as_ref().map(|c| c.as_bytes().to_vec()),
    );
    out.put(
        field::PROVIDER_DATA,
        provider_data.as_ref().map(|d| d.as_bytes().to_vec()),
    );
    out.put(
        field::QR_CONTENT,
        qr_content.as_ref().map(|c| c.as_bytes().to_vec()),
    );
    out.put(field::UPSTREAM_LOST, upstream_lost.then(|| b"1".to_vec()));
    Ok(out)
}

/// The fields of one stored hash, by name.
struct Fields(Vec<(String, Vec<u8>)>);

impl Fields {
    fn raw(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    fn text(&self, name: &'static str) -> Result<Option<&str>> {
        self.raw(name)
            .map(|v| std::str::from_utf8(v).map_err(|_| corrupt(name)))
            .transpose()
    }

    fn required(&self, name: &'static str) -> Result<&str> {
        self.text(name)?.ok_or_else(|| corrupt(name))
    }

    fn number(&self, name: &'static str) -> Result<u64> {
        match self.text(name)? {
            Some(v) => v.parse().map_err(|_| corrupt(name)),
            None => Ok(0),
        }
    }

    fn owned(&self, name: &'static str) -> Result<Option<String>> {
        Ok(self.text(name)?.map(str::to_owned))
    }
}

fn corrupt(name: &str) -> Error {
    Error::Internal(format!("corrupt session record in Redis: field `{name}`"))
}

/// Rebuilds the record stored under `id` from its hash fields (`None` for an empty hash: the
/// key does not exist).
pub(super) fn decode(
    id: &QrCodeId,
    fields: Vec<(String, Vec<u8>)>,
) -> Result<Option<SessionRecord>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let f = Fields(fields);
    let state = QrState::parse(f.required(field::STATE)?).ok_or_else(|| corrupt(field::STATE))?;
    let version = f
        .required(field::VERSION)?
        .parse()
        .map_err(|_| corrupt(field::VERSION))?;
    let created_at_ms = f
        .required(field::CREATED)?
        .parse()
        .map_err(|_| corrupt(field::CREATED))?;
    let expire_at_ms = f
        .required(field::EXPIRES)?
        .parse()
        .map_err(|_| corrupt(field::EXPIRES))?;
    let binding_hash = SecretHash::from_bytes(
        unhex::<32>(f.required(field::BINDING)?).ok_or_else(|| corrupt(field::BINDING))?,
    );
    let ip = match f.text(field::IP)? {
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| corrupt(field::IP))?),
        None => None,
    };
    let device = f.owned(field::DEVICE)?.unwrap_or_default();
    let scanner = match f.raw(field::SCANNER) {
        Some(json) => {
            Some(serde_json::from_slice::<Scanner>(json).map_err(|_| corrupt(field::SCANNER))?)
        }
        None => None,
    };
    let confirm_token_hash = match f.text(field::CONFIRM_HASH)? {
        Some(h) => Some(SecretHash::from_bytes(
            unhex::<32>(h).ok_or_else(|| corrupt(field::CONFIRM_HASH))?,
        )),
        None => None,
    };
    let ticket_nonce = match f.text(field::TICKET_NONCE)? {
        Some(n) => Some(unhex::<16>(n).ok_or_else(|| corrupt(field::TICKET_NONCE))?),
        None => None,
    };
    let failed_attempts =
        u8::try_from(f.number(field::FAILED)?).map_err(|_| corrupt(field::FAILED))?;
    Ok(Some(SessionRecord {
        id: id.clone(),
        state,
        version,
        created_at_ms,
        expire_at_ms,
        binding_hash,
        initiator: Initiator { ip, device },
        nonce: f.owned(field::NONCE)?,
        scanner,
        confirm_token_hash,
        confirm_expire_at_ms: f.number(field::CONFIRM_EXPIRES)?,
        ticket_nonce,
        ticket_expire_at_ms: f.number(field::TICKET_EXPIRES)?,
        failed_attempts,
        match_code: f.owned(field::MATCH_CODE)?,
        provider_data: f.owned(field::PROVIDER_DATA)?,
        qr_content: f.owned(field::QR_CONTENT)?,
        upstream_lost: f.raw(field::UPSTREAM_LOST).is_some(),
    }))
}

/// Lowercase hex.
/// A fresh, random name under `prefix` for a probe (a key or channel used once to check the
/// server). Callers put a `~` in the prefix where it must never match a session's channel:
/// `~` never occurs in a session id (base64url).
pub(super) fn probe_name(prefix: &str) -> crate::error::Result<String> {
    let mut random = [0u8; 16];
    crate::secret::os_random(&mut random)?;
    Ok(format!("{prefix}{}", hex(&random)))
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Exactly `N` bytes from `2 * N` hex digits.
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{BindingSecret, ConfirmToken};
    use crate::types::UserInfo;

    fn full_record() -> SessionRecord {
        let mut r = SessionRecord::new(
            QrCodeId::generate().unwrap(),
            BindingSecret::generate().unwrap().hash(),
            1_700_000_000_000,
            120_000,
            Initiator {
                ip: Some("2001:db8::1".parse().unwrap()),
                device: "Chrome on Windows".into(),
            },
        );
        r.state = QrState::Confirmed;
        r.version = 7;
        r.nonce = Some("n-0S".into());
        let mut claims = serde_json::Map::new();
        claims.insert("email".into(), "a@example.com".into());
        r.scanner = Some(Scanner {
            subject: "alice".into(),
            user: UserInfo {
                nickname: Some("Alice".into()),
                photo: Some("https://img/a.png".into()),
            },
            claims,
            ip: Some("192.0.2.7".parse().unwrap()),
        });
        r.confirm_token_hash = Some(ConfirmToken::generate().unwrap().hash());
        r.confirm_expire_at_ms = 1_700_000_060_000;
        r.ticket_nonce = Some([0xab; 16]);
        r.ticket_expire_at_ms = 1_700_000_070_000;
        r.failed_attempts = 2;
        r.match_code = Some("07".into());
        r.provider_data = Some("{\"upstream\":1}".into());
        r.qr_content = Some("https://app.example/m?qrcodeId=x".into());
        r.upstream_lost = true;
        r
    }

    fn as_fields(e: &Encoded) -> Vec<(String, Vec<u8>)> {
        e.set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn every_field_round_trips() {
        let r = full_record();
        let encoded = encode(&r).unwrap();
        assert!(encoded.unset.is_empty());
        let back = decode(&r.id, as_fields(&encoded)).unwrap().unwrap();
        assert_eq!(format!("{r:?}"), format!("{back:?}"));
        assert_eq!(r.binding_hash.as_bytes(), back.binding_hash.as_bytes());
        assert_eq!(
            r.confirm_token_hash.unwrap().as_bytes(),
            back.confirm_token_hash.unwrap().as_bytes()
        );
        assert_eq!(r.id.as_str(), back.id.as_str());
    }

    #[test]
    fn empty_optional_fields_are_absent_and_decode_as_empty() {
        let r = SessionRecord::new(
            QrCodeId::generate().unwrap(),
            BindingSecret::generate().unwrap().hash(),
            5,
            10,
            Initiator::default(),
        );
        let encoded = encode(&r).unwrap();
        let names: Vec<_> = encoded.set.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            [
                field::STATE,
                field::VERSION,
                field::CREATED,
                field::EXPIRES,
                field::BINDING
            ]
        );
        let back = decode(&r.id, as_fields(&encoded)).unwrap().unwrap();
        assert_eq!(format!("{r:?}"), format!("{back:?}"));
    }

    #[test]
    fn corrupt_hashes_are_internal_errors_and_empty_ones_absent() {
        let id = QrCodeId::generate().unwrap();
        assert!(decode(&id, Vec::new()).unwrap().is_none());
        let bad = vec![("state".to_owned(), b"flying".to_vec())];
        assert!(matches!(decode(&id, bad), Err(Error::Internal(_))));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = [0x00, 0x7f, 0x80, 0xff];
        assert_eq!(hex(&bytes), "007f80ff");
        assert_eq!(unhex::<4>("007f80FF"), Some(bytes));
        assert_eq!(unhex::<4>("007f80f"), None);
        assert_eq!(unhex::<4>("007f80fg"), None);
    }
}
