//! Fault injection: latency, 5xx, malformed JSON, dropped connections; and the layer that
//! counts and records every request.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::Shared;
use crate::record::RecordedRequest;

/// What goes wrong, for the requests it applies to.
///
/// By default faults hit every web-side call (gene, status, exchange, userinfo, fastpass) and
/// never the app-side calls (`set-qrcode-status`, V2 `scanned/confirm/cancel`) or OIDC, so that
/// tests can still drive the Authing app; `only` narrows them to paths containing it.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Delay before answering.
    pub latency: Option<Duration>,
    /// Answer HTTP 500 with a `statusCode: 500` envelope.
    pub server_error: bool,
    /// Answer HTTP 200 with a body that is not JSON.
    pub malformed_json: bool,
    /// Start the answer, then cut the connection.
    pub drop_connection: bool,
    /// Only paths containing this.
    pub only: Option<String>,
}

fn app_side(path: &str) -> bool {
    path.ends_with("/set-qrcode-status")
        || path.ends_with("/change-qrcode-status")
        || path.ends_with("/qrcode/scanned")
        || path.ends_with("/qrcode/confirm")
        || path.ends_with("/qrcode/cancel")
        || path.contains("/oidc/")
}

/// The largest body the fake reads (Authing's calls carry small JSON bodies).
const MAX_BODY: usize = 1 << 20;
/// How many recorded requests the fake keeps (the demo runs it for long): past this, the older
/// half is forgotten.
pub(crate) const MAX_RECORDED: usize = 10_000;

/// Counts and records every request, then applies the faults.
pub(crate) async fn layer(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            "fake Authing: body too large or cut short",
        )
            .into_response();
    };
    let recorded = RecordedRequest::new(
        parts.method.as_str(),
        &path,
        parts.uri.query(),
        &parts.headers,
        &body,
    );
    let request = Request::from_parts(parts, Body::from(body));
    let faults = {
        let mut state = shared.state();
        *state.counts.entry(path.clone()).or_insert(0) += 1;
        if state.recorded.len() >= MAX_RECORDED {
            state.recorded.drain(..MAX_RECORDED / 2);
        }
        state.recorded.push(recorded);
        let line = format!(
            "{} {}",
            request.method(),
            request
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("")
        );
        state.log.push(line);
        let applies = match &state.faults.only {
            Some(only) => path.contains(only.as_str()),
            None => !app_side(&path),
        };
        if applies {
            state.faults.clone()
        } else {
            Faults::default()
        }
    };
    if let Some(latency) = faults.latency {
        tokio::time::sleep(latency).await;
    }
    if faults.server_error {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({ "statusCode": 500, "code": 500, "message": "服务器内部错误", "requestId": crate::random_id(8) })),
        )
            .into_response();
    }
    if faults.malformed_json {
        return (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            "{\"statusCode\": 200, \"data\": {\"status\": ",
        )
            .into_response();
    }
    if faults.drop_connection {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"statusCode\": 200, ")),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault: connection dropped",
            )),
        ];
        return Response::builder()
            .header(axum::http::header::CONTENT_TYPE, "application/json")
            .body(Body::from_stream(futures_util::stream::iter(chunks)))
            .unwrap_or_else(|_| Response::new(Body::empty()));
    }
    next.run(request).await
}
