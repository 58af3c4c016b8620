//! The core's own records in the one sled tree, and the prefix of module state.
//!
//! ```text
//! m <name>                                   store records: schema version, newest id, probe
//! t <tenant:16> <topic>                      topic record: event count, pruned-through id
//! e <tenant:16> <topic> 0x00 <id:16>         event (JSON), ordered by id within a topic
//! s <module> 0x00 …                          module state (laid out by each module)
//! o <batch:8>                                replication outbox (cluster writer only)
//! ```
//!
//! Every other record belongs to the code that owns it, under a prefix it
//! claims in [`super::prefixes::KeyPrefixes`] at startup: auth (`a`,
//! `auth::layout`), webhooks (`w`, `transport::webhook::layout`),
//! idempotency (`i`, `idempotency::layout`), and each module's `s <name> 0x00`.
//! The store reads and writes bytes; it never interprets another owner's keys.
//!
//! Invariants: topic names never contain 0x00 (they are validated to
//! `[A-Za-z0-9._:/-]`, or are a module's own `~<module>/<id>`), so `<topic> 0x00`
//! is a prefix of exactly one topic's events; ids are big-endian ULIDs, so byte
//! order is id order; these encodings never change (existing data
//! directories are read as they are; the tests pin the bytes).

use uuid::Uuid;

/// Prefix of store records.
pub const META: u8 = b'm';
/// Prefix of topic records.
pub const TOPIC: u8 = b't';
/// Prefix of events.
pub const EVENT: u8 = b'e';

/// Prefix of module state.
pub const MODULE: u8 = b's';
/// Prefix of the replication outbox: one row per batch a cluster writer
/// made durable and has not yet seen acknowledged by the shared log.
pub const OUTBOX: u8 = b'o';

/// The prefixes of the core's own records, claimed by the store.
pub const CORE_PREFIXES: [(&str, &[u8]); 4] = [
    ("store records", &[META]),
    ("topic records", &[TOPIC]),
    ("events", &[EVENT]),
    ("replication outbox", &[OUTBOX]),
];

/// Key of the outbox row of batch `number` (big-endian: key order is batch
/// order).
pub fn outbox(number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(9);
    key.push(OUTBOX);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

/// Prefix of everything module `name` stores: `s <name> 0x00`.
pub fn module(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + name.len());
    key.push(MODULE);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// Prefix of one kind of record of one tenant in module `name`:
/// `s <name> 0x00 <tenant:16> <kind>` (the convention modules follow).
pub fn module_kind(name: &str, tenant: &Uuid, kind: u8) -> Vec<u8> {
    let mut key = module(name);
    key.extend_from_slice(tenant.as_bytes());
    key.push(kind);
    key
}

/// Key of a store record.
pub fn meta(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + name.len());
    key.push(META);
    key.extend_from_slice(name.as_bytes());
    key
}

/// Key of a topic's record.
pub fn topic(tenant: &Uuid, topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(17 + topic.len());
    key.push(TOPIC);
    key.extend_from_slice(tenant.as_bytes());
    key.extend_from_slice(topic.as_bytes());
    key
}

/// Splits a topic record key back into tenant and topic.
pub fn parse_topic(key: &[u8]) -> Option<(Uuid, String)> {
    let rest = key.strip_prefix(&[TOPIC])?;
    let tenant = Uuid::from_slice(rest.get(..16)?).ok()?;
    let topic = std::str::from_utf8(rest.get(16..)?).ok()?;
    Some((tenant, topic.to_string()))
}

/// Prefix shared by every event of one topic.
pub fn event_prefix(tenant: &Uuid, topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(34 + topic.len());
    key.push(EVENT);
    key.extend_from_slice(tenant.as_bytes());
    key.extend_from_slice(topic.as_bytes());
    key.push(0);
    key
}

/// Key of one event.
pub fn event(tenant: &Uuid, topic: &str, id: u128) -> Vec<u8> {
    let mut key = event_prefix(tenant, topic);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// The id at the end of an event key.
pub fn event_id(key: &[u8]) -> Option<u128> {
    let tail: [u8; 16] = key.get(key.len().checked_sub(16)?..)?.try_into().ok()?;
    Some(u128::from_be_bytes(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_order_by_id_and_stay_inside_their_topic() {
        let tenant = Uuid::new_v4();
        let first = event(&tenant, "room", 1);
        let second = event(&tenant, "room", 2);
        assert!(first < second);
        assert!(first.starts_with(&event_prefix(&tenant, "room")));
        assert!(!event(&tenant, "room2", 1).starts_with(&event_prefix(&tenant, "room")));
        assert_eq!(event_id(&second), Some(2));
    }

    #[test]
    fn encodings_are_byte_for_byte_those_of_existing_data_dirs() {
        let tenant = Uuid::from_bytes([0x11; 16]);
        let t = [0x11u8; 16];
        assert_eq!(meta("schema-version"), b"mschema-version");
        assert_eq!(topic(&tenant, "a/b"), [&b"t"[..], &t, b"a/b"].concat());
        assert_eq!(
            event(&tenant, "a/b", 0x0102),
            [&b"e"[..], &t, b"a/b\0", &0x0102u128.to_be_bytes()].concat()
        );
        assert_eq!(module("discussions"), b"sdiscussions\0");
    }

    #[test]
    fn topic_keys_round_trip() {
        let tenant = Uuid::new_v4();
        assert_eq!(
            parse_topic(&topic(&tenant, "a/b")),
            Some((tenant, "a/b".into()))
        );
    }
}
