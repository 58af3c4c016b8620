//! JWT realms: a tenant's named sets of verification keys (`realmname` header).
//!
//! Invariants: a realm is stored only if a [`Verifier`] can be built from it
//! (every key parses, allow-lists are explicit); names are 1–64 characters of
//! `A-Z a-z 0-9 . _ -`; every stored string has a length limit ([`validate`]); the default realm of the default tenant holds the
//! HS256 secret from `config.json`.

use super::jwt::{RealmPolicy, VerificationKey, Verifier};
use crate::error::ApiError;
use crate::field_limits::{check_len, check_optional};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

/// Name of the realm used when a request names none.
pub const DEFAULT_REALM: &str = "default";
/// Leeway applied to `exp`/`nbf` unless a realm sets its own.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 30;

/// A stored realm.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Realm {
    /// Owning tenant.
    pub tenant: Uuid,
    /// Realm name.
    pub name: String,
    /// Verification keys.
    pub keys: Vec<VerificationKey>,
    /// Accepted audiences (checked when set).
    #[serde(default)]
    pub audience: Option<Vec<String>>,
    /// Required issuer (checked when set).
    #[serde(default)]
    pub issuer: Option<String>,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
}

fn default_leeway() -> u64 {
    DEFAULT_LEEWAY_SECONDS
}

impl Realm {
    /// Builds the verifier, or says which key is unusable.
    pub fn verifier(&self) -> Result<Verifier, String> {
        Verifier::new(&RealmPolicy {
            keys: self.keys.clone(),
            audience: self.audience.clone(),
            issuer: self.issuer.clone(),
            leeway: Duration::from_secs(self.leeway_seconds),
        })
    }
}

/// Longest `kid`, issuer or audience entry, in bytes.
pub const MAX_CLAIM_BYTES: usize = 256;
/// Most accepted audiences of a realm.
pub const MAX_AUDIENCES: usize = 32;
/// Most verification keys of a realm.
pub const MAX_KEYS: usize = 16;
/// Longest key material (an HS256 secret or a PEM public key), in bytes.
pub const MAX_KEY_MATERIAL_BYTES: usize = 16 * 1024;

/// Checks a realm's name and the length of every stored string (the keys
/// themselves are checked by [`Realm::verifier`]).
pub fn validate(realm: &Realm) -> Result<(), ApiError> {
    validate_name(&realm.name).map_err(ApiError::validation)?;
    if realm.keys.len() > MAX_KEYS {
        return Err(too_many("keys", MAX_KEYS));
    }
    for key in &realm.keys {
        check_optional("kid", key.kid.as_deref(), MAX_CLAIM_BYTES)?;
        check_len("material", &key.material, MAX_KEY_MATERIAL_BYTES)?;
    }
    check_optional("issuer", realm.issuer.as_deref(), MAX_CLAIM_BYTES)?;
    let audience = realm.audience.as_deref().unwrap_or_default();
    if audience.len() > MAX_AUDIENCES {
        return Err(too_many("audience", MAX_AUDIENCES));
    }
    for entry in audience {
        check_len("audience", entry, MAX_CLAIM_BYTES)?;
    }
    Ok(())
}

fn too_many(field: &str, max: usize) -> ApiError {
    ApiError::validation(format!("at most {max} entries in {field}"))
        .with_details(json!({ "field": field, "maxItems": max }))
}

/// Checks a realm name.
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err("a realm name is 1 to 64 characters of A-Z a-z 0-9 . _ -".into())
    }
}
