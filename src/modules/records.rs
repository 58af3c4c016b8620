//! What every module's stored records and their validation share: JSON
//! encoding for the store, and the errors for missing, forbidden and
//! over-limit input.
//!
//! Invariants: a stored record that cannot be read back is a 500 naming the
//! failure (never a default value); over-limit input is a 400
//! `VALIDATION_ERROR` naming the field or count, the flag that sets the
//! limit and the limit.

use crate::core::store::Store;
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use serde::Serialize;
use serde_json::json;

/// 404 naming what was not found (also for what the caller may not see).
pub fn not_found(what: &str) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such {what}"))
}

/// 403 with `message`.
pub fn forbidden(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message.to_string())
}

/// 400 for a count over a limit, naming the flag and the limit.
pub fn over_limit(what: &str, flag: &str, limit: usize) -> ApiError {
    ApiError::validation(format!("{what}: the most is {limit} (--{flag})"))
        .with_details(json!({ "limit": flag, "max": limit }))
}

/// 400 when `value` is longer than `max` characters, naming the field, the
/// flag that sets the limit, and the limit.
pub fn check_chars(field: &str, value: &str, max: usize, flag: &str) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length <= max {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "`{field}` is {length} characters; the most is {max} (--{flag})"
    ))
    .with_details(json!({ "field": field, "limit": flag, "maxChars": max, "actualChars": length })))
}

/// Decodes a stored record.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::internal(format!("a stored record is unreadable: {err}")))
}

/// Encodes a record for the store.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value)
        .map_err(|err| ApiError::internal(format!("encoding a record for the store: {err}")))
}

/// A view of stored records: a writer change (what the change sees, its own
/// writes included) or the store (committed state), so writes and reads
/// load, decode and judge records with the same code.
pub trait Records {
    /// The value stored under `key`.
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError>;
}

impl Records for Change<'_> {
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        self.get(key)
    }
}

impl Records for Store {
    fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        self.get_blocking(key)
            .map(|value| value.map(|bytes| bytes.to_vec()))
            .map_err(|err| err.into_api("reading stored records failed"))
    }
}

/// The record under `key`, decoded; 404 naming `what` when missing.
pub fn load<T: serde::de::DeserializeOwned>(
    records: &impl Records,
    key: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    let bytes = records.record(key)?.ok_or_else(|| not_found(what))?;
    decode(&bytes)
}
