//! The status JSON: an allow-list of fields (a struct, so nothing else can slip in), Authing's
//! flags agreeing with `status`.

use serde::Serialize;

use crate::error::Result;
use crate::types::{QrState, QrStatus, UserInfo};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusBody<'a> {
    qrcode_id: &'a str,
    status: &'static str,
    scanned: bool,
    expired: bool,
    success: bool,
    canceled: bool,
    user_info: Option<&'a UserInfo>,
    ticket: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    match_code: Option<&'a str>,
    description: &'static str,
    version: u64,
    expire_at: u64,
    /// While pending, for a QR that rotates: the rotation on screen now and when it ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    rotation: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rotates_at: Option<u64>,
    /// The new QR, when the browser shows another rotation than `rotation`.
    #[serde(skip_serializing_if = "Option::is_none")]
    qrcode_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

/// The status for a browser showing rotation `shown` of the QR: with the QR on screen now when
/// the browser needs it (a browser that does not say what it shows does not follow rotations:
/// it gets none).
pub(crate) fn status_for(status: &QrStatus, shown: Option<u64>) -> Result<StatusBody<'_>> {
    let mut body = status_body(status);
    if let Some(qr) = status.qr.as_ref().filter(|_| needs_new_qr(status, shown)) {
        body.image = Some(crate::qr::svg_data_url(&qr.content)?);
        body.qrcode_content = Some(&qr.content);
    }
    Ok(body)
}

/// Whether a browser showing rotation `shown` needs the QR of `status`.
pub(crate) fn needs_new_qr(status: &QrStatus, shown: Option<u64>) -> bool {
    matches!((&status.qr, shown), (Some(qr), Some(shown)) if qr.rotation != shown)
}

pub(crate) fn status_body(status: &QrStatus) -> StatusBody<'_> {
    let state = status.state;
    StatusBody {
        qrcode_id: status.id.as_str(),
        status: state.as_str(),
        scanned: matches!(state, QrState::Scanned | QrState::Confirmed),
        expired: state == QrState::Expired,
        success: state == QrState::Confirmed,
        canceled: state == QrState::Cancelled,
        user_info: status.user.as_ref(),
        ticket: status.ticket.as_ref().map(|t| t.expose_secret()),
        match_code: status.match_code.as_deref(),
        description: describe(state),
        version: status.version,
        expire_at: status.expire_at_ms,
        rotation: status.qr.as_ref().map(|qr| qr.rotation),
        rotates_at: status.qr.as_ref().map(|qr| qr.rotates_at_ms),
        qrcode_content: None,
        image: None,
    }
}

fn describe(state: QrState) -> &'static str {
    match state {
        QrState::Pending => "waiting for a scan",
        QrState::Scanned => "scanned; waiting for confirmation on the phone",
        QrState::Confirmed => "confirmed; exchange the ticket",
        QrState::Cancelled => "cancelled on the phone",
        QrState::Expired => "the QR code expired",
        QrState::Consumed => "this QR code was already used to log in",
    }
}
