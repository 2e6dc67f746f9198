//! `GET /qrcode/events`: server-sent events, one per status change.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use super::QrAuthService;
use super::response::{ApiBody, ApiResponse};
use super::status::{needs_new_qr, status_body, status_for};
use crate::error::Error;
use crate::secret::{BindingSecret, QrCodeId};
use crate::types::{QrState, QrStatus};

/// Milliseconds a browser waits before reconnecting a dropped stream.
const RETRY_MS: u64 = 2000;

/// The last event of a stream cut short by [`QrAuthService::shutdown`]: reconnect (the load
/// balancer sends the new stream to a replica that stays).
const RECONNECT: &[u8] = b"event: reconnect\ndata: {}\n\n";

enum Phase {
    /// Send `retry:` and the first snapshot (unless the client already has it: the version
    /// of its `Last-Event-ID`, and the QR it shows).
    Start(QrStatus, Option<u64>),
    /// Wait for the next change after this version.
    Waiting(u64),
    /// The stream is over.
    Done,
}

struct State {
    service: QrAuthService,
    id: QrCodeId,
    binding: BindingSecret,
    /// Held for the stream's life: the stream caps count it until the client goes away.
    _slot: super::streams::StreamSlot,
    keep_alive: Duration,
    /// The rotation of the QR the browser shows, when it follows rotations.
    shown: Option<u64>,
    phase: Phase,
}

impl State {
    /// The event of `status`, with the new QR when the browser needs it.
    fn event(&mut self, status: &QrStatus) -> Bytes {
        let with_qr = needs_new_qr(status, self.shown);
        let body = status_for(status, self.shown);
        if with_qr && body.is_ok() {
            self.shown = status.qr.as_ref().map(|qr| qr.rotation);
        }
        let data = body
            .and_then(|b| serde_json::to_string(&b).map_err(|e| Error::Internal(e.to_string())))
            .unwrap_or_default();
        Bytes::from(format!("id: {}\ndata: {data}\n\n", status.version))
    }
}

fn event(status: &QrStatus) -> Bytes {
    let data = serde_json::to_string(&status_body(status)).unwrap_or_default();
    Bytes::from(format!("id: {}\ndata: {data}\n\n", status.version))
}

/// A status-shaped event for a session that ended in a way `poll` reports as an error.
fn final_event(id: &QrCodeId, state: QrState, version: u64) -> Bytes {
    let status = QrStatus {
        id: id.clone(),
        state,
        version,
        user: None,
        ticket: None,
        match_code: None,
        expire_at_ms: 0,
        qr: None,
    };
    event(&status)
}

/// Confirmed is final for the browser too: it has its ticket and goes to exchange it.
fn ends_stream(state: QrState) -> bool {
    state.is_terminal() || state == QrState::Confirmed
}

pub(super) fn stream(
    service: QrAuthService,
    (id, binding, slot): (QrCodeId, BindingSecret, super::streams::StreamSlot),
    first: QrStatus,
    (last_event_id, shown): (Option<u64>, Option<u64>),
    keep_alive: Duration,
) -> ApiResponse {
    let state = State {
        service,
        id,
        binding,
        _slot: slot,
        keep_alive,
        shown,
        phase: Phase::Start(first, last_event_id),
    };
    let body = stream::unfold(state, |mut s| async move {
        match std::mem::replace(&mut s.phase, Phase::Done) {
            Phase::Done => None,
            Phase::Start(first, last_seen) => {
                let mut chunk = format!("retry: {RETRY_MS}\n\n").into_bytes();
                if last_seen != Some(first.version) || needs_new_qr(&first, s.shown) {
                    chunk.extend_from_slice(&s.event(&first));
                }
                s.phase = if ends_stream(first.state) {
                    Phase::Done
                } else if s.service.is_shutting_down() {
                    chunk.extend_from_slice(RECONNECT);
                    Phase::Done
                } else {
                    Phase::Waiting(first.version)
                };
                Some((Bytes::from(chunk), s))
            }
            Phase::Waiting(version) => {
                let deadline = Instant::now() + s.keep_alive;
                let next = s
                    .service
                    .wait_for_news(&s.id, &s.binding, (Some(version), s.shown), deadline)
                    .await;
                let chunk = match next {
                    // Shutdown answers the wait at once: say "reconnect" (after the change, if
                    // there was one) and end.
                    Ok(status) if s.service.is_shutting_down() && !ends_stream(status.state) => {
                        let mut chunk = Vec::new();
                        if status.version != version {
                            chunk.extend_from_slice(&s.event(&status));
                        }
                        chunk.extend_from_slice(RECONNECT);
                        Bytes::from(chunk)
                    }
                    Ok(status) if status.version == version => {
                        s.phase = Phase::Waiting(version);
                        if needs_new_qr(&status, s.shown) {
                            s.event(&status)
                        } else {
                            Bytes::from_static(b": keep-alive\n\n")
                        }
                    }
                    Ok(status) => {
                        s.phase = if ends_stream(status.state) {
                            Phase::Done
                        } else {
                            Phase::Waiting(status.version)
                        };
                        s.event(&status)
                    }
                    Err(Error::ExpiredQrCode) => final_event(&s.id, QrState::Expired, version + 1),
                    Err(e) => {
                        tracing::debug!(error = %e, "event stream ended");
                        let data = serde_json::json!({
                            "error": e.code(), "error_description": e.public_description(),
                        });
                        Bytes::from(format!("event: error\ndata: {data}\n\n"))
                    }
                };
                Some((chunk, s))
            }
        }
    });
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    ApiResponse {
        status: StatusCode::OK,
        headers,
        body: ApiBody::Stream(Box::pin(body)),
    }
}
