//! actix-web ⇄ qrauth-core request and response translation.

use std::convert::Infallible;

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use qrauth_core::handler::{ApiBody, ApiRequest, ApiResponse, InFlight};
use qrauth_core::{Error, QrAuthService, Route};

/// Copies actix's (http 0.2) headers into core's (http 1) header map; `only` limits the copy
/// to the named headers.
/// The request's `Authorization` and `Cookie` headers, in core's types: all that
/// [`QrAuthService::authenticate`](qrauth_core::QrAuthService::authenticate) reads.
pub(crate) fn credentials(from: &actix_web::http::header::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(2);
    for name in [http::header::AUTHORIZATION, http::header::COOKIE] {
        for value in from.get_all(name.as_str()) {
            if let Ok(value) = http::HeaderValue::from_bytes(value.as_bytes()) {
                out.append(name.clone(), value);
            }
        }
    }
    out
}

pub(crate) fn headers(from: &actix_web::http::header::HeaderMap) -> http::HeaderMap {
    let mut out = http::HeaderMap::with_capacity(from.len());
    for (name, value) in from.iter() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_str().as_bytes()),
            http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.append(n, v);
        }
    }
    out
}

async fn api_request(
    service: &QrAuthService,
    request: &HttpRequest,
    mut payload: web::Payload,
) -> Result<ApiRequest, Error> {
    let limit = service.max_body_bytes();
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| Error::InvalidRequest("unreadable request body".into()))?;
        if body.len() + chunk.len() > limit {
            drain(&mut payload).await;
            return Err(Error::PayloadTooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    let method = http::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(|_| Error::MethodNotAllowed)?;
    let query = request.query_string();
    Ok(ApiRequest {
        method,
        path: request.path().to_owned(),
        headers: headers(request.headers()),
        query: (!query.is_empty()).then(|| query.to_owned()),
        body: body.freeze(),
        peer: request.peer_addr().map(|a| a.ip()),
    })
}

/// How much of an oversized body is read and thrown away before the 413 goes out.
const MAX_DRAIN_BYTES: usize = 8 << 20;

/// Reads (and discards) the rest of an oversized body, up to [`MAX_DRAIN_BYTES`].
///
/// actix-web closes a connection whose request body was left unread, and a close with unread
/// data resets it: a client still sending would get a broken pipe instead of the 413.
async fn drain(payload: &mut web::Payload) {
    let mut drained = 0usize;
    while let Some(Ok(chunk)) = payload.next().await {
        drained += chunk.len();
        if drained > MAX_DRAIN_BYTES {
            break;
        }
    }
}

/// Turns a core response into an actix one.
pub(crate) fn into_response(api: ApiResponse) -> HttpResponse {
    into_response_held(api, None, false)
}

/// [`into_response`] for a request of qrauth's routes: `in_flight` lives as long as the body
/// (a stream's until it ends or actix drops it with the connection), and `closing` (the
/// service is shutting down) closes the connection after the response.
fn into_response_held(
    api: ApiResponse,
    in_flight: Option<InFlight>,
    closing: bool,
) -> HttpResponse {
    let status =
        StatusCode::from_u16(api.status.as_u16()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut builder = HttpResponse::build(status);
    for (name, value) in api.headers.iter() {
        // actix-web owns the Connection header: translate it into its connection type.
        if name == http::header::CONNECTION {
            if value.as_bytes().eq_ignore_ascii_case(b"close") {
                builder.force_close();
            }
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            builder.append_header((n, v));
        }
    }
    if closing {
        // No connection stays idle on a replica that is leaving: actix-web's graceful stop
        // would wait for it until the keep-alive timeout.
        builder.force_close();
    }
    match api.body {
        ApiBody::Full(bytes) => builder.body(bytes),
        ApiBody::Stream(stream) => builder.streaming(stream.map(move |chunk| {
            let _held = &in_flight;
            Ok::<_, Infallible>(chunk)
        })),
    }
}

/// Handles one request for `route`.
pub(crate) async fn handle(
    service: QrAuthService,
    route: Route,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let in_flight = service.request_in_flight();
    let api = match api_request(&service, &request, payload).await {
        Ok(api) => service.handle(route, api).await,
        Err(error) => service.error_response(route, &error),
    };
    into_response_held(api, Some(in_flight), service.is_shutting_down())
}

/// Handles a request for a path under `/qrcode/` that is none of qrauth's routes.
pub(crate) async fn handle_extension(
    service: QrAuthService,
    request: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let path = request.match_info().get("tail").unwrap_or("").to_owned();
    let in_flight = service.request_in_flight();
    let api = match api_request(&service, &request, payload).await {
        Ok(api) => service.handle_extension(&path, api).await,
        Err(error) => service.error_response(Route::Extension, &error),
    };
    into_response_held(api, Some(in_flight), service.is_shutting_down())
}
