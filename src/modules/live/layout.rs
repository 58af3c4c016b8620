//! The live module's key space, inside `s live 0x00 <tenant:16>`:
//!
//! ```text
//! s <stream:16>                          stream record (JSON)
//! c <stream:16>                          newest closed interval (u64, unix ms)
//! x <stream:16>                          newest expired interval (u64, unix ms; only grows)
//! i <stream:16> <interval:8> <id:16>     an item waiting for its interval (JSON)
//! v <stream:16> <interval:8>             a closed interval's body (the bytes served)
//! q <quiz:16>                            quiz record (JSON)
//! a <quiz:16> <subject>                  one viewer's answer (choice index, 1 byte)
//! ```
//!
//! Invariants: every key starts with the tenant, so one tenant's keys never
//! reach another's; intervals are big-endian so a stream's items and bodies
//! sort by interval; a `v` row is written once and never changed (only
//! deleted when it falls out of the stream's retention); these encodings
//! never change (the tests pin the bytes).

use crate::core::store::layout as store_layout;
use uuid::Uuid;

/// The module's name in the store.
pub const MODULE: &str = "live";

/// The prefix of every key of the module: `s live 0x00`.
pub fn prefix() -> Vec<u8> {
    store_layout::module(MODULE)
}

/// The prefix of every key of one kind for a tenant.
fn base(tenant: &Uuid, kind: u8) -> Vec<u8> {
    store_layout::module_kind(MODULE, tenant, kind)
}

fn with_id(tenant: &Uuid, kind: u8, id: &Uuid) -> Vec<u8> {
    let mut key = base(tenant, kind);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The prefix of every stream record of a tenant.
pub fn streams(tenant: &Uuid) -> Vec<u8> {
    base(tenant, b's')
}

/// The record of one stream.
pub fn stream(tenant: &Uuid, stream: &Uuid) -> Vec<u8> {
    with_id(tenant, b's', stream)
}

/// The newest closed interval of a stream.
pub fn closed_through(tenant: &Uuid, stream: &Uuid) -> Vec<u8> {
    with_id(tenant, b'c', stream)
}

/// The newest expired interval of a stream (its body is or will be deleted).
pub fn expired_through(tenant: &Uuid, stream: &Uuid) -> Vec<u8> {
    with_id(tenant, b'x', stream)
}

/// The prefix of every item waiting in a stream.
pub fn items(tenant: &Uuid, stream: &Uuid) -> Vec<u8> {
    with_id(tenant, b'i', stream)
}

/// An item waiting for `interval`.
pub fn item(tenant: &Uuid, stream: &Uuid, interval: u64, id: u128) -> Vec<u8> {
    let mut key = items(tenant, stream);
    key.extend_from_slice(&interval.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The interval of an item key under [`items`].
pub fn item_interval(items_prefix: &[u8], key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(items_prefix)?;
    Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

/// The prefix of every closed interval's body of a stream.
pub fn bodies(tenant: &Uuid, stream: &Uuid) -> Vec<u8> {
    with_id(tenant, b'v', stream)
}

/// The body of a closed interval.
pub fn body(tenant: &Uuid, stream: &Uuid, interval: u64) -> Vec<u8> {
    let mut key = bodies(tenant, stream);
    key.extend_from_slice(&interval.to_be_bytes());
    key
}

/// The prefix of every quiz record of a tenant.
pub fn quizzes(tenant: &Uuid) -> Vec<u8> {
    base(tenant, b'q')
}

/// A quiz record.
pub fn quiz(tenant: &Uuid, quiz: &Uuid) -> Vec<u8> {
    with_id(tenant, b'q', quiz)
}

/// The prefix of every answer to a quiz.
pub fn answers(tenant: &Uuid, quiz: &Uuid) -> Vec<u8> {
    with_id(tenant, b'a', quiz)
}

/// One viewer's answer to a quiz.
pub fn answer(tenant: &Uuid, quiz: &Uuid, subject: &str) -> Vec<u8> {
    let mut key = answers(tenant, quiz);
    key.extend_from_slice(subject.as_bytes());
    key
}

/// A key of the module taken apart: tenant, kind byte, the id after the
/// kind (a stream's or a quiz's) and what follows it.
pub struct KeyParts<'a> {
    /// The tenant.
    pub tenant: Uuid,
    /// The kind byte (`s`, `c`, `x`, `i`, `v`, `q`, `a`).
    pub kind: u8,
    /// The stream or quiz id.
    pub id: Uuid,
    /// The bytes after the id (an interval, a subject, …).
    pub rest: &'a [u8],
}

/// Takes apart a key under [`prefix`]; `None` for any other key.
pub fn parse(key: &[u8]) -> Option<KeyParts<'_>> {
    let rest = key.strip_prefix(prefix().as_slice())?;
    let tenant = Uuid::from_slice(rest.get(..16)?).ok()?;
    let kind = *rest.get(16)?;
    let id = Uuid::from_slice(rest.get(17..33)?).ok()?;
    Some(KeyParts {
        tenant,
        kind,
        id,
        rest: &rest[33..],
    })
}

/// The interval a body key's rest names.
pub fn interval_in(rest: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(rest.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_bytes() {
        let tenant = Uuid::from_u128(1);
        let stream = Uuid::from_u128(2);
        let mut expected = b"slive\0".to_vec();
        expected.extend_from_slice(tenant.as_bytes());
        expected.push(b'v');
        expected.extend_from_slice(stream.as_bytes());
        expected.extend_from_slice(&1_000u64.to_be_bytes());
        assert_eq!(body(&tenant, &stream, 1_000), expected);
        assert!(super::stream(&tenant, &stream).starts_with(&streams(&tenant)));
        let prefix = items(&tenant, &stream);
        assert_eq!(
            item_interval(&prefix, &item(&tenant, &stream, 750, 9)),
            Some(750)
        );
    }

    #[test]
    fn keys_parse_back_into_their_parts() {
        let (tenant, stream) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let key = body(&tenant, &stream, 1_000);
        let parts = parse(&key).unwrap();
        assert_eq!((parts.tenant, parts.kind, parts.id), (tenant, b'v', stream));
        assert_eq!(interval_in(parts.rest), Some(1_000));
        assert!(parse(&answer(&tenant, &stream, "sub")).is_some_and(|p| p.rest == b"sub"));
        assert!(parse(b"slive\0short").is_none());
        assert!(parse(b"other").is_none());
    }
}
