//! axum ⇄ qrauth-core request and response translation.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, OriginalUri, Request};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use qrauth_core::handler::{ApiBody, ApiRequest, ApiResponse, InFlight};
use qrauth_core::{Error, QrAuthService, Route};

/// Reads the request (body limited to what qrauth accepts) into an [`ApiRequest`].
pub(crate) async fn api_request(
    service: &QrAuthService,
    request: Request,
) -> Result<ApiRequest, Error> {
    let (parts, mut body) = request.into_parts();
    let limit = service.max_body_bytes();
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Error::InvalidRequest("unreadable request body".into()))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if bytes.len() + data.len() > limit {
            drain(&mut body).await;
            return Err(Error::PayloadTooLarge);
        }
        bytes.extend_from_slice(&data);
    }
    let body = bytes.freeze();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    // Under `Router::nest` the URI is stripped of the nest prefix; the original one is not.
    let path = parts
        .extensions
        .get::<OriginalUri>()
        .map_or_else(|| parts.uri.path(), |OriginalUri(uri)| uri.path())
        .to_owned();
    Ok(ApiRequest {
        method: parts.method,
        path,
        headers: parts.headers,
        query: parts.uri.query().map(str::to_owned),
        body,
        peer,
    })
}

/// How much of an oversized body is read and thrown away before the 413 goes out.
const MAX_DRAIN_BYTES: usize = 8 << 20;

/// Reads (and discards) the rest of an oversized body, up to [`MAX_DRAIN_BYTES`].
///
/// hyper closes a connection whose request body was left unread, and a close with unread data
/// resets it: a client still sending would get a broken pipe instead of the 413.
async fn drain(body: &mut Body) {
    let mut drained = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        drained += frame.data_ref().map_or(0, |d| d.len());
        if drained > MAX_DRAIN_BYTES {
            break;
        }
    }
}

/// Turns a core response into an axum one.
pub(crate) fn into_response(api: ApiResponse) -> Response {
    into_response_held(api, None, false)
}

/// [`into_response`] for a request of qrauth's routes: `in_flight` lives as long as the body
/// (a stream's until it ends or hyper drops it with the connection), and `closing` (the
/// service is shutting down) closes the connection after the response.
fn into_response_held(api: ApiResponse, in_flight: Option<InFlight>, closing: bool) -> Response {
    let body = match api.body {
        ApiBody::Full(bytes) => Body::from(bytes),
        ApiBody::Stream(stream) => Body::from_stream(stream.map(move |chunk| {
            let _held = &in_flight;
            Ok::<_, Infallible>(chunk)
        })),
    };
    let mut response = Response::new(body);
    *response.status_mut() = api.status;
    *response.headers_mut() = api.headers;
    if closing {
        // hyper closes the connection after a response that says so: none stays idle on a
        // replica that is leaving.
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Handles one request for `route`.
pub(crate) async fn handle(service: QrAuthService, route: Route, request: Request) -> Response {
    let in_flight = service.request_in_flight();
    let api = match api_request(&service, request).await {
        Ok(api) => service.handle(route, api).await,
        Err(error) => service.error_response(route, &error),
    };
    into_response_held(api, Some(in_flight), service.is_shutting_down()).into_response()
}

/// Handles a request for `rest`, a path under `/qrcode/` that is none of qrauth's routes.
pub(crate) async fn handle_extension(
    service: QrAuthService,
    rest: String,
    request: Request,
) -> Response {
    let in_flight = service.request_in_flight();
    let api = match api_request(&service, request).await {
        Ok(api) => service.handle_extension(&rest, api).await,
        Err(error) => service.error_response(Route::Extension, &error),
    };
    into_response_held(api, Some(in_flight), service.is_shutting_down()).into_response()
}
