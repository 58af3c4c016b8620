//! Who owns which part of the key space: every owner of records in the one
//! sled tree (the core, auth, webhooks, idempotency, each module) claims its
//! key prefix here at startup, before anything is read or written.
//!
//! Invariant: no claimed prefix is a prefix of another (equal included), so
//! no key can belong to two owners and a scan of one owner's prefix never
//! returns another owner's records. A clash is refused with an error naming
//! both owners, and the server does not start.

use super::layout::CORE_PREFIXES;
use std::fmt;

/// The claimed prefixes.
#[derive(Debug)]
pub struct KeyPrefixes {
    claims: Vec<Claim>,
}

#[derive(Debug, Clone)]
struct Claim {
    owner: String,
    prefix: Vec<u8>,
}

/// Two owners whose prefixes overlap (or an empty prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixClash(String);

impl fmt::Display for PrefixClash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PrefixClash {}

impl KeyPrefixes {
    /// A registry holding the store's own prefixes (records, topics, events).
    pub fn with_core() -> Self {
        let mut prefixes = Self { claims: Vec::new() };
        for (owner, prefix) in CORE_PREFIXES {
            prefixes
                .claim(owner, prefix)
                .expect("the core's own prefixes are distinct");
        }
        prefixes
    }

    /// Gives `prefix` to `owner`; refused when it is empty, or when it and a
    /// prefix already claimed start one another.
    pub fn claim(&mut self, owner: &str, prefix: &[u8]) -> Result<(), PrefixClash> {
        if prefix.is_empty() {
            return Err(PrefixClash(format!(
                "`{owner}` claims the empty key prefix, which overlaps every other owner"
            )));
        }
        if let Some(taken) = self
            .claims
            .iter()
            .find(|claim| claim.prefix.starts_with(prefix) || prefix.starts_with(&claim.prefix))
        {
            return Err(PrefixClash(format!(
                "`{owner}` claims the key prefix \"{}\", which overlaps \"{}\" of `{}`: two owners could write the same key",
                prefix.escape_ascii(),
                taken.prefix.escape_ascii(),
                taken.owner
            )));
        }
        self.claims.push(Claim {
            owner: owner.to_string(),
            prefix: prefix.to_vec(),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::store::layout;

    #[test]
    fn distinct_prefixes_are_given_out() {
        let mut prefixes = KeyPrefixes::with_core();
        prefixes.claim("auth", b"a").unwrap();
        prefixes.claim("one", &layout::module("one")).unwrap();
        prefixes
            .claim("one-two", &layout::module("one-two"))
            .unwrap();
    }

    #[test]
    fn overlapping_prefixes_are_refused_naming_both_owners() {
        let mut prefixes = KeyPrefixes::with_core();
        prefixes.claim("chat", b"sch").unwrap();
        let longer = prefixes.claim("chatter", b"schat").unwrap_err();
        assert!(longer.0.contains("`chatter`") && longer.0.contains("`chat`"));
        let shorter = prefixes.claim("s", b"s").unwrap_err();
        assert!(shorter.0.contains("\"sch\" of `chat`"), "{shorter}");
        let equal = prefixes.claim("events again", b"e").unwrap_err();
        assert!(equal.0.contains("`events`"), "{equal}");
        assert!(prefixes.claim("everything", b"").is_err());
    }
}
