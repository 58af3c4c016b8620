//! The `actor` of an event published through the topics API.
//!
//! The server sets it from the credential: `{"name": <key name, or "admin">}`.
//! A publisher may add a claim about the end user it publishes for, and
//! nothing else: `"actor": {"id"?: string, "display"?: string}`, each at most
//! [`MAX_CLAIM_BYTES`]. The stored actor is then
//! `{"name", "id"?, "display"?}`: a claim is the publisher's word (it is
//! recorded next to the credential that made it), never a credential.
//!
//! Invariant: `name` always comes from the credential; unknown claim fields,
//! non-string values and over-long strings are refused with 400.

use crate::error::ApiError;
use crate::field_limits::check_optional;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Longest claimed `id` or `display`, in bytes.
pub const MAX_CLAIM_BYTES: usize = 200;

/// What a publisher may claim about the actor.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActorClaim {
    /// The end user's id on the publisher's side.
    #[serde(default)]
    pub id: Option<String>,
    /// A name to show for the end user.
    #[serde(default)]
    pub display: Option<String>,
}

impl ActorClaim {
    /// 400 when a claimed string is over its limit.
    pub fn check(&self) -> Result<(), ApiError> {
        check_optional("actor.id", self.id.as_deref(), MAX_CLAIM_BYTES)?;
        check_optional("actor.display", self.display.as_deref(), MAX_CLAIM_BYTES)
    }
}

/// The stored actor: the credential's name plus the publisher's claim.
pub fn stored(credential_name: &str, claim: Option<&ActorClaim>) -> Value {
    let mut actor = Map::new();
    actor.insert("name".into(), Value::from(credential_name));
    if let Some(claim) = claim {
        if let Some(id) = &claim.id {
            actor.insert("id".into(), Value::from(id.as_str()));
        }
        if let Some(display) = &claim.display {
            actor.insert("display".into(), Value::from(display.as_str()));
        }
    }
    Value::Object(actor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_name_comes_from_the_credential_and_claims_are_bounded() {
        assert_eq!(stored("backend", None), json!({ "name": "backend" }));
        let claim: ActorClaim =
            serde_json::from_value(json!({ "id": "u-1", "display": "Ada" })).unwrap();
        assert_eq!(
            stored("backend", Some(&claim)),
            json!({ "name": "backend", "id": "u-1", "display": "Ada" })
        );
        assert!(serde_json::from_value::<ActorClaim>(json!({ "name": "admin" })).is_err());
        assert!(serde_json::from_value::<ActorClaim>(json!("admin")).is_err());
        let long = ActorClaim {
            id: Some("x".repeat(MAX_CLAIM_BYTES + 1)),
            display: None,
        };
        assert_eq!(
            long.check().unwrap_err().details.unwrap()["field"],
            "actor.id"
        );
    }
}
