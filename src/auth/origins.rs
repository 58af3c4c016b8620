//! A tenant's allowed browser origins: the pages (`scheme://host[:port]`)
//! whose scripts may call the API as that tenant (CORS, see
//! `http::cors`) and open its WebSockets.
//!
//! Invariants: a stored list holds only entries [`AllowedOrigins::parse`]
//! accepted: `*` (every origin), or an origin exactly as a browser sends it
//! in the `Origin` header (lowercase scheme and host, no path, no trailing
//! slash, no default port), each at most [`OriginLimits::max_bytes`] long and
//! at most [`OriginLimits::max_per_tenant`] of them, without duplicates; a
//! new tenant allows no origin; matching is exact string equality (or `*`),
//! so without `*` the opaque origin `null` (sandboxed frames, `file://`)
//! and every unlisted origin are refused; `*` allows them all, `null` included.

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The entry that allows every origin.
pub const ANY_ORIGIN: &str = "*";

/// Limits of a tenant's origin list (`--max-origins-per-tenant`, `--max-origin-bytes`).
#[derive(Debug, Clone, Copy)]
pub struct OriginLimits {
    /// Most entries in one tenant's list.
    pub max_per_tenant: usize,
    /// Longest entry, in bytes.
    pub max_bytes: usize,
}

/// The origins a tenant allows, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Checks every entry and the count; duplicates are dropped. 400 naming
    /// the first bad entry and what is wrong with it.
    pub fn parse(entries: Vec<String>, limits: OriginLimits) -> Result<Self, ApiError> {
        if entries.len() > limits.max_per_tenant {
            return Err(ApiError::validation(format!(
                "a tenant allows at most {} origins",
                limits.max_per_tenant
            ))
            .with_details(json!({ "field": "origins", "maxItems": limits.max_per_tenant })));
        }
        let mut kept: Vec<String> = Vec::with_capacity(entries.len());
        for entry in entries {
            crate::field_limits::check_len("origins[]", &entry, limits.max_bytes)?;
            check_origin(&entry).map_err(|problem| {
                ApiError::validation(format!("origin {entry:?}: {problem}"))
                    .with_details(json!({ "field": "origins[]", "value": entry }))
            })?;
            if !kept.contains(&entry) {
                kept.push(entry);
            }
        }
        Ok(Self(kept))
    }

    /// True when a page on `origin` (an `Origin` header's value) is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.0
            .iter()
            .any(|entry| entry == ANY_ORIGIN || entry == origin)
    }

    /// The entries.
    pub fn entries(&self) -> &[String] {
        &self.0
    }
}

/// Why `entry` is not `*` nor an origin as browsers send it.
fn check_origin(entry: &str) -> Result<(), String> {
    if entry == ANY_ORIGIN {
        return Ok(());
    }
    let (scheme, rest) = entry
        .split_once("://")
        .ok_or("an origin is scheme://host[:port], e.g. https://www.example.com")?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_lowercase())
        && scheme.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.')
        });
    if !scheme_ok {
        return Err("the scheme must be lowercase letters (http, https, …)".into());
    }
    if rest.contains(['/', '?', '#']) {
        return Err("an origin has no path, query or fragment (and no trailing slash)".into());
    }
    if rest.contains('@') {
        return Err("an origin has no user information".into());
    }
    let (host, port) = split_port(rest)?;
    check_host(host)?;
    if let Some(port) = port {
        check_port(scheme, port)?;
    }
    Ok(())
}

/// `host[:port]` → host and port text; IPv6 literals stay bracketed.
fn split_port(rest: &str) -> Result<(&str, Option<&str>), String> {
    if rest.starts_with('[') {
        let end = rest.find(']').ok_or("an IPv6 host needs its closing ]")?;
        let (host, after) = rest.split_at(end + 1);
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("unexpected text after the IPv6 host".into()),
        };
    }
    Ok(match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    })
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is missing".into());
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let literal_ok = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'a'..=b'f' | b':' | b'.'));
        return if literal_ok {
            Ok(())
        } else {
            Err("an IPv6 host is hex digits and colons, lowercase".into())
        };
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("write the host in lowercase, as browsers send it".into());
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    if labels_ok {
        Ok(())
    } else {
        Err("the host must be a DNS name (a-z 0-9 - in dot-separated labels; punycode for others) or an IP address".into())
    }
}

fn check_port(scheme: &str, port: &str) -> Result<(), String> {
    let number = port
        .parse::<u16>()
        .ok()
        .filter(|number| *number > 0 && !port.starts_with('0'))
        .ok_or("the port must be a number from 1 to 65535")?;
    let default = match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    };
    if default == Some(number) {
        return Err(format!(
            "browsers omit the default port {number}: write {scheme}://host without it"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: OriginLimits = OriginLimits {
        max_per_tenant: 3,
        max_bytes: 40,
    };

    fn parse(entries: &[&str]) -> Result<AllowedOrigins, ApiError> {
        AllowedOrigins::parse(entries.iter().map(|e| e.to_string()).collect(), LIMITS)
    }

    #[test]
    fn accepts_origins_as_browsers_send_them() {
        for good in [
            "*",
            "https://www.example.com",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:5173",
            "capacitor://localhost",
            "https://xn--bcher-kva.example",
        ] {
            assert!(parse(&[good]).is_ok(), "{good} should be accepted");
        }
    }

    #[test]
    fn refuses_what_a_browser_never_sends() {
        for bad in [
            "",
            "null",
            "example.com",
            "https://example.com/",
            "https://example.com/app",
            "https://Example.com",
            "HTTPS://example.com",
            "https://example.com:443",
            "http://example.com:80",
            "http://example.com:0",
            "http://example.com:65536",
            "http://example.com:08080",
            "https://user@example.com",
            "https://exa mple.com",
            "https://",
            "https://-bad.example",
            "http://[::1",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn limits_count_and_length_and_drops_duplicates() {
        assert!(parse(&["*", "*", "*", "*"]).is_err(), "four entries");
        let long = format!("https://{}.example", "a".repeat(40));
        let err = parse(&[&long]).unwrap_err();
        assert_eq!(err.details.unwrap()["maxBytes"], 40);
        let list = parse(&["http://a.example", "http://a.example"]).unwrap();
        assert_eq!(list.entries(), ["http://a.example"]);
    }

    #[test]
    fn a_tenant_stored_before_origins_existed_allows_none() {
        let stored = r#"{"id":"7f1d4f5e-4f4b-4a57-9b7e-2d7f1f0e6a10","slug":"old","name":"","createdAt":"2026-01-01T00:00:00.000Z"}"#;
        let tenant: super::super::tenants::Tenant = serde_json::from_str(stored).unwrap();
        assert_eq!(tenant.allowed_origins, AllowedOrigins::default());
        let shown = serde_json::to_value(&tenant).unwrap();
        assert_eq!(shown["allowedOrigins"], json!([]));
    }

    #[test]
    fn matches_exactly_or_everything_with_a_star() {
        let list = parse(&["https://a.example", "http://localhost:3000"]).unwrap();
        assert!(list.allows("https://a.example"));
        assert!(list.allows("http://localhost:3000"));
        assert!(!list.allows("https://a.example:8443"));
        assert!(!list.allows("http://a.example"));
        assert!(!list.allows("null"));
        assert!(!AllowedOrigins::default().allows("https://a.example"));
        assert!(parse(&["*"]).unwrap().allows("https://anything.example"));
    }
}
