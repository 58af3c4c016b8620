//! Tenants: an id (UUID) and a slug (used as `{slug}.base-domain`).
//!
//! Invariants: slugs are unique, 1–63 characters of `a-z 0-9 -` (a DNS label),
//! not starting or ending with `-`; the default tenant from `config.json`
//! always exists and cannot be deleted.

use super::origins::AllowedOrigins;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    /// Tenant id (the `x-tenantid` header).
    pub id: Uuid,
    /// DNS-label slug.
    pub slug: String,
    /// Human name.
    #[serde(default)]
    pub name: String,
    /// Creation time (RFC 3339).
    pub created_at: String,
    /// Browser origins whose pages may use the API as this tenant (none by default).
    #[serde(default)]
    pub allowed_origins: AllowedOrigins,
}

/// Checks a slug.
pub fn validate_slug(slug: &str) -> Result<(), String> {
    let valid = !slug.is_empty()
        && slug.len() <= 63
        && !slug.starts_with('-')
        && !slug.ends_with('-')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err("a slug is 1 to 63 characters of a-z 0-9 and -, not starting or ending with -".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_dns_labels() {
        assert!(validate_slug("acme-news").is_ok());
        assert!(validate_slug("").is_err());
        assert!(validate_slug("-x").is_err());
        assert!(validate_slug("Upper").is_err());
        assert!(validate_slug(&"a".repeat(64)).is_err());
    }
}
