//! Building responses: the `{"data": …}` success shape, the error envelope,
//! plain text, and streaming bodies.

use super::{Body, Response};
use crate::error::ApiError;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

const JSON: &str = "application/json";

/// A body of fixed bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// `{"data": value}` with the given status.
pub fn data<T: Serialize>(status: StatusCode, value: &T) -> Response {
    #[derive(Serialize)]
    struct Envelope<'a, T> {
        data: &'a T,
    }
    match serde_json::to_vec(&Envelope { data: value }) {
        Ok(bytes) => with_content_type(status, JSON, bytes),
        Err(err) => error(&ApiError::internal(format!(
            "encoding the response failed: {err}"
        ))),
    }
}

/// A body with an explicit content type.
pub fn with_content_type(
    status: StatusCode,
    content_type: &'static str,
    bytes: impl Into<Bytes>,
) -> Response {
    let mut response = http::Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The error envelope with the error's status and headers.
pub fn error(err: &ApiError) -> Response {
    let bytes = serde_json::to_vec(&err.to_json()).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = with_content_type(err.status, JSON, bytes);
    for (name, value) in &err.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

/// `{"data": <json>}` around JSON that is already encoded (stored events).
pub fn raw_data(status: StatusCode, json: &[u8]) -> Response {
    let mut body = Vec::with_capacity(json.len() + 9);
    body.extend_from_slice(b"{\"data\":");
    body.extend_from_slice(json);
    body.push(b'}');
    with_content_type(status, JSON, body)
}

/// Response header set on a write answered by replaying its first reply
/// (idempotency keys); the HTTP layer counts those answers.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
