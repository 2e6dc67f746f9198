//! axum ⇄ qrauth-core request and response translation.

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use qrauth_core::handler::{ApiBody, ApiRequest, ApiResponse};
use qrauth_core::{Error, QrAuthService, Route};

/// Reads the request (body limited to what qrauth accepts) into an [`ApiRequest`].
pub(crate) async fn api_request(
    service: &QrAuthService,
    request: Request,
) -> Result<ApiRequest, Error> {
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, service.max_body_bytes())
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Error::PayloadTooLarge
            } else {
                Error::InvalidRequest("unreadable request body".into())
            }
        })?
        .to_bytes();
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
