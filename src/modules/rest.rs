//! Small pieces every module's REST handlers share: numeric path and query
//! parameters and a JSON body read as an endpoint's input.
//!
//! Invariants: a malformed parameter or body is a 400 `VALIDATION_ERROR`
//! naming what was wrong, never a panic or a default.

use crate::error::ApiError;
use crate::http::Request;
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
