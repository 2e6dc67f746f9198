//! axum ⇄ qrauth-core request and response translation.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::StreamExt;
use http_body_util::BodyExt;
use qrauth_core::handler::{ApiBody, ApiRequest, ApiResponse};
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
    Ok(ApiRequest {
        method: parts.method,
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
    let body = match api.body {
        ApiBody::Full(bytes) => Body::from(bytes),
        ApiBody::Stream(stream) => Body::from_stream(stream.map(Ok::<_, Infallible>)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = api.status;
    *response.headers_mut() = api.headers;
    response
}

/// Handles one request for `route`.
pub(crate) async fn handle(service: QrAuthService, route: Route, request: Request) -> Response {
    let api = match api_request(&service, request).await {
        Ok(api) => service.handle(route, api).await,
        Err(error) => service.error_response(route, &error),
    };
    into_response(api).into_response()
}

/// Handles a request for `rest`, a path under `/qrcode/` that is none of qrauth's routes.
pub(crate) async fn handle_extension(
    service: QrAuthService,
    rest: String,
    request: Request,
) -> Response {
    let api = match api_request(&service, request).await {
        Ok(api) => service.handle_extension(&rest, api).await,
        Err(error) => service.error_response(Route::Extension, &error),
    };
    into_response(api).into_response()
}
