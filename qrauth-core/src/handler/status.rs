//! The status JSON: an allow-list of fields (a struct, so nothing else can slip in), Authing's
//! flags agreeing with `status`.

use serde::Serialize;

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
