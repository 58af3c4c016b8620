//! API keys for backends (`X-API-Key: ek_…`).
//!
//! Invariants: a key's secret is shown exactly once, when it is created; only
//! its SHA-256 is stored and kept in memory (a 256-bit random secret needs no
//! slow hash); each key belongs to one tenant and carries explicit scopes;
//! a revoked key is refused from the next request on.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Prefix of every API key secret.
pub const KEY_PREFIX: &str = "ek";

/// What a key may do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Publish events and mint stream tickets.
    Publish,
    /// Read history and open streams.
    Read,
    /// Manage the tenant's keys and realms.
    Admin,
}

/// A stored API key (never the secret itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Key id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant: Uuid,
    /// Human name (also the actor of what the key writes).
    pub name: String,
    /// Allowed scopes.
    pub scopes: Vec<Scope>,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    /// The first characters of the secret, to recognise it in listings.
    pub prefix: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Revocation time, once revoked.
    #[serde(default)]
    pub revoked_at: Option<String>,
    /// Last time the key authenticated a request (recorded at most once a minute).
    #[serde(default)]
    pub last_used_at: Option<String>,
}

impl ApiKey {
    /// True while the key is usable.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// True when the key has `scope`.
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// SHA-256 of a presented secret, hex.
pub fn hash_secret(secret: &str) -> String {
    crate::secret::hex(&Sha256::digest(secret.as_bytes()))
}

/// The part of a secret shown in listings (`ek_1a2b3c4d…`).
pub fn display_prefix(secret: &str) -> String {
    let end = secret.len().min(KEY_PREFIX.len() + 1 + 8);
    format!("{}…", &secret[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_stable_hex_and_prefixes_hide_the_secret() {
        let hash = hash_secret("ek_abc");
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, hash_secret("ek_abc"));
        assert_ne!(hash, hash_secret("ek_abd"));
        assert_eq!(display_prefix("ek_0123456789abcdef"), "ek_01234567…");
    }
}
