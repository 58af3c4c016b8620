//! Small pieces every module's REST handlers share: numeric path and query
//! parameters, a JSON body read as an endpoint's input, and a write's
//! request read once with the claim of its idempotency key.
//!
//! Invariants: a malformed parameter or body is a 400 `VALIDATION_ERROR`
//! naming what was wrong, never a panic or a default.

use crate::auth::Principal;
use crate::core::writer::{Change, Footprint, Writer};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::modules::idempotency::{self, Claim, Idempotency, Reply};
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A numeric path parameter, or 400.
pub fn id_param(request: &Request, name: &str) -> Result<u64, ApiError> {
    let text = request.param(name).unwrap_or_default();
    text.parse()
        .map_err(|_| ApiError::validation(format!("{name} `{text}` is not a number")))
}

/// An optional numeric query parameter, or 400.
pub fn id_query(request: &Request, name: &str) -> Result<Option<u64>, ApiError> {
    request
        .query_param(name)
        .filter(|text| !text.is_empty())
        .map(|text| {
            text.parse()
                .map_err(|_| ApiError::validation(format!("{name} `{text}` is not a number")))
        })
        .transpose()
}

/// A JSON body as the endpoint's input; 400 when it does not have its shape.
pub fn json_input<T: DeserializeOwned>(body: Value) -> Result<T, ApiError> {
    serde_json::from_value(body).map_err(|err| {
        ApiError::validation(format!(
            "the JSON body does not have the expected shape: {err}"
        ))
    })
}

/// Whether a write takes a JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The input is the JSON body.
    Json,
    /// No input (a body, if any, is not read).
    None,
}

/// A write's request, read once.
pub struct WriteRequest {
    /// The JSON body (`null` without one), the idempotency field taken out.
    pub body: Value,
    /// The claim of the request's idempotency key, if it sent one.
    pub claim: Option<Claim>,
    /// The body's size as sent on, for the writer's queue accounting.
    pub bytes: usize,
}

/// Reads a write's body and claims its idempotency key (an
/// `Idempotency-Key` header or an `idempotencyKey` body field) for
/// `operation`, fingerprinted by method, path and body.
pub async fn write_request(
    idempotency: &Idempotency,
    request: &mut Request,
    principal: &Principal,
    operation: &str,
    body: Body,
) -> Result<WriteRequest, ApiError> {
    let mut body: Value = match body {
        Body::Json => request.json().await?,
        Body::None => Value::Null,
    };
    let key = idempotency::requested(request.headers(), idempotency::take_field(&mut body))?;
    let text = body.to_string();
    let claim = idempotency.claim(
        key,
        principal,
        operation,
        &[
            request.method().as_str().as_bytes(),
            request.uri().path().as_bytes(),
            text.as_bytes(),
        ],
    );
    Ok(WriteRequest {
        body,
        claim,
        bytes: text.len(),
    })
}

/// Runs `operation` in one atomic writer change of `bytes`, idempotently
/// under `claim` (a retried key replays the first reply), and replies
/// `{"data": value}` with the status it chose.
pub async fn commit_reply<T, F>(
    writer: &Writer,
    claim: Option<Claim>,
    bytes: usize,
    operation: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: FnOnce(&mut Change<'_>) -> Result<(StatusCode, T), ApiError> + Send + 'static,
{
    let committed = writer
        .commit(Footprint::data(bytes), move |change| {
            idempotency::protect(claim.as_ref(), change, |change| {
                let (status, value) = operation(change)?;
                let body = serde_json::to_vec(&value).map_err(|err| {
                    ApiError::internal(format!("encoding the reply failed: {err}"))
                })?;
                Ok(Reply::new(status, body))
            })
        })
        .await?;
    Ok(idempotency::reply_response(&committed.value))
}

/// A prepared write: who acts (the module's own type), the claim of its
/// idempotency key, its input, and the bytes it holds while it waits for
/// the writer.
pub struct PreparedWrite<A, T> {
    /// Who acts.
    pub acting: A,
    /// The claim of the request's idempotency key, if it sent one.
    pub claim: Option<Claim>,
    /// The request's input.
    pub input: T,
    /// What the change holds while queued.
    pub bytes: usize,
}

impl<A: Send + 'static, T: Send + 'static> PreparedWrite<A, T> {
    /// Runs `operation` as the write's actor in one atomic change,
    /// idempotently, and replies `{"data": value}` with `status`.
    pub async fn commit<V, F>(
        self,
        writer: &Writer,
        status: StatusCode,
        operation: F,
    ) -> Result<Response, ApiError>
    where
        V: Serialize,
        F: FnOnce(&mut Change<'_>, &A, T) -> Result<V, ApiError> + Send + 'static,
    {
        let Self {
            acting,
            claim,
            input,
            bytes,
        } = self;
        commit_reply(writer, claim, bytes, move |change| {
            Ok((status, operation(change, &acting, input)?))
        })
        .await
    }
}
