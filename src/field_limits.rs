//! Length limits of stored strings (names, ids, bodies) and the one error
//! they produce.
//!
//! Invariants: a limit counts UTF-8 bytes (what the store and every reader
//! pay for), or characters where a product limit is stated in characters
//! (discussion titles, comments, names); a string over its limit is refused
//! with 400 `VALIDATION_ERROR` whose `details` name the field and the limit
//! (`{"field","maxBytes","actualBytes"}` or `{"field","maxChars","actualChars"}`),
//! before anything is written.

use crate::error::ApiError;
use serde_json::json;

/// 400 unless `value` is at most `max_bytes` long.
pub fn check_len(field: &str, value: &str, max_bytes: usize) -> Result<(), ApiError> {
    if value.len() <= max_bytes {
        return Ok(());
    }
    Err(
        ApiError::validation(format!("{field} is longer than {max_bytes} bytes")).with_details(
            json!({ "field": field, "maxBytes": max_bytes, "actualBytes": value.len() }),
        ),
    )
}

/// 400 unless `value` is at most `max_chars` characters long.
pub fn check_chars(field: &str, value: &str, max_chars: usize) -> Result<(), ApiError> {
    let length = value.chars().count();
    if length <= max_chars {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "`{field}` is {length} characters; the most is {max_chars}"
    ))
    .with_details(json!({ "field": field, "maxChars": max_chars, "actualChars": length })))
}

/// [`check_len`] for an optional value (absent passes).
pub fn check_optional(field: &str, value: Option<&str>, max_bytes: usize) -> Result<(), ApiError> {
    value.map_or(Ok(()), |value| check_len(field, value, max_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_bytes_and_name_the_field() {
        assert!(check_len("name", "abc", 3).is_ok());
        let err = check_len("name", "é", 1).unwrap_err();
        let details = err.details.unwrap();
        assert_eq!(details["field"], "name");
        assert_eq!(details["maxBytes"], 1);
        assert_eq!(details["actualBytes"], 2);
        assert!(check_optional("id", None, 0).is_ok());
    }
}
