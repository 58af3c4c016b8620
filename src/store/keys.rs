//! The key space of the one sled tree that holds everything.
//!
//! ```text
//! m <name>                                   store records: schema version, newest id, probe
//! t <tenant:16> <topic>                      topic record: event count, pruned-through id
//! e <tenant:16> <topic> 0x00 <id:16>         event (JSON), ordered by id within a topic
//! a t <tenant:16>                           tenant (JSON)
//! a k <key id:16>                            API key record (JSON, secret hashed)
//! a r <tenant:16> <realm name>               JWT realm (JSON)
//! a x <ticket hash>                          stream ticket (JSON, secret hashed)
//! s <module> 0x00 …                          module state (owned by each module)
//! w e <tenant:16> <endpoint:16>              webhook endpoint (JSON, with its signing secret)
//! w p <endpoint:16> <delivery:16>            pending webhook delivery (outbox row), in delivery order
//! w f <endpoint:16> <delivery:16>            failed webhook delivery (given up), same layout
//! i r <tenant:16> <scope:32>                 idempotency record: the reply of a keyed write
//! i x <created ms:8> <tenant:16> <scope:32>  idempotency expiry index, oldest first
//! x …                                        durable timers (layout in writer/timers.rs)
//! ```
//!
//! Invariants: topic names never contain 0x00 (they are validated to
//! `[A-Za-z0-9._:/-]`, or are a module's own `~<module>/<id>`), so `<topic> 0x00`
//! is a prefix of exactly one topic's events; ids are big-endian ULIDs, so byte
//! order is id order. Delivery ids come from the writer's id generator, so an
//! endpoint's pending rows are in the order they were committed. An
//! idempotency expiry entry ends with the tail of its record's key, and its
//! big-endian creation time orders the index oldest first.

use uuid::Uuid;

/// Prefix of store records.
pub const META: u8 = b'm';
/// Prefix of topic records.
pub const TOPIC: u8 = b't';
/// Prefix of events.
pub const EVENT: u8 = b'e';

/// Prefix of module state.
pub const MODULE: u8 = b's';

/// Prefix of durable timers (layout owned by `writer::timers`).
pub const TIMER: u8 = b'x';

/// Prefix of everything module `name` stores: `s <name> 0x00`.
pub fn module(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + name.len());
    key.push(MODULE);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// Prefix of auth records.
pub const AUTH: u8 = b'a';
/// Auth record kind: tenant.
pub const AUTH_TENANT: u8 = b't';
/// Auth record kind: API key.
pub const AUTH_KEY: u8 = b'k';
/// Auth record kind: JWT realm.
pub const AUTH_REALM: u8 = b'r';

/// Auth record kind: stream ticket.
pub const AUTH_TICKET: u8 = b'x';

/// Prefix of webhook records.
pub const WEBHOOK: u8 = b'w';
/// Webhook record kind: endpoint.
pub const WEBHOOK_ENDPOINT: u8 = b'e';
/// Webhook record kind: pending delivery.
pub const WEBHOOK_PENDING: u8 = b'p';
/// Webhook record kind: failed delivery.
pub const WEBHOOK_FAILED: u8 = b'f';

/// Key of a webhook endpoint; `None` for the prefix of every endpoint of
/// `tenant`. With no tenant either, the prefix of all endpoints.
pub fn webhook_endpoint(tenant: Option<&Uuid>, endpoint: Option<&Uuid>) -> Vec<u8> {
    let mut key = vec![WEBHOOK, WEBHOOK_ENDPOINT];
    for id in [tenant, endpoint].into_iter().flatten() {
        key.extend_from_slice(id.as_bytes());
    }
    key
}

/// Key of a delivery of `kind` ([`WEBHOOK_PENDING`] or [`WEBHOOK_FAILED`]);
/// `None` for the prefix of all of an endpoint's deliveries of that kind.
pub fn webhook_delivery(kind: u8, endpoint: &Uuid, delivery: Option<u128>) -> Vec<u8> {
    let mut key = Vec::with_capacity(34);
    key.push(WEBHOOK);
    key.push(kind);
    key.extend_from_slice(endpoint.as_bytes());
    if let Some(delivery) = delivery {
        key.extend_from_slice(&delivery.to_be_bytes());
    }
    key
}

/// Prefix of idempotency records.
pub const IDEMPOTENCY: u8 = b'i';
/// Idempotency record kind: a recorded reply.
pub const IDEMPOTENCY_RECORD: u8 = b'r';
/// Idempotency record kind: the expiry index.
pub const IDEMPOTENCY_EXPIRY: u8 = b'x';

/// Key of the idempotency record of `scope` (a digest of principal,
/// operation and key) in `tenant`.
pub fn idempotency_record(tenant: &Uuid, scope: &[u8; 32]) -> Vec<u8> {
    let mut key = Vec::with_capacity(50);
    key.extend_from_slice(&[IDEMPOTENCY, IDEMPOTENCY_RECORD]);
    key.extend_from_slice(tenant.as_bytes());
    key.extend_from_slice(scope);
    key
}

/// Key of the expiry index entry of a record created at `created_ms`.
pub fn idempotency_expiry(created_ms: u64, record: &[u8]) -> Vec<u8> {
    let tail = record.get(2..).unwrap_or_default();
    let mut key = Vec::with_capacity(10 + tail.len());
    key.extend_from_slice(&[IDEMPOTENCY, IDEMPOTENCY_EXPIRY]);
    key.extend_from_slice(&created_ms.to_be_bytes());
    key.extend_from_slice(tail);
    key
}

/// Splits an expiry index key into the record's creation time and key.
pub fn parse_idempotency_expiry(key: &[u8]) -> Option<(u64, Vec<u8>)> {
    let rest = key.strip_prefix(&[IDEMPOTENCY, IDEMPOTENCY_EXPIRY])?;
    let created_ms = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let mut record = vec![IDEMPOTENCY, IDEMPOTENCY_RECORD];
    record.extend_from_slice(rest.get(8..)?);
    Some((created_ms, record))
}

/// Key of a ticket record by the hex hash of its secret.
pub fn auth_ticket(hash: &str) -> Vec<u8> {
    let mut key = vec![AUTH, AUTH_TICKET];
    key.extend_from_slice(hash.as_bytes());
    key
}

/// Key of a realm record.
pub fn auth_realm(tenant: &Uuid, name: &str) -> Vec<u8> {
    let mut key = auth(AUTH_REALM, tenant);
    key.extend_from_slice(name.as_bytes());
    key
}

/// Key of an auth record of `kind` with a 16-byte id.
pub fn auth(kind: u8, id: &Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.push(AUTH);
    key.push(kind);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Prefix of every auth record of `kind`.
pub fn auth_prefix(kind: u8) -> [u8; 2] {
    [AUTH, kind]
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

/// The id at the end of an event or webhook delivery key.
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
    fn webhook_keys_nest_and_order_deliveries_by_id() {
        let (tenant, endpoint) = (Uuid::new_v4(), Uuid::new_v4());
        let record = webhook_endpoint(Some(&tenant), Some(&endpoint));
        assert!(record.starts_with(&webhook_endpoint(Some(&tenant), None)));
        assert!(record.starts_with(&webhook_endpoint(None, None)));
        let first = webhook_delivery(WEBHOOK_PENDING, &endpoint, Some(1));
        let second = webhook_delivery(WEBHOOK_PENDING, &endpoint, Some(2));
        assert!(first < second);
        assert!(first.starts_with(&webhook_delivery(WEBHOOK_PENDING, &endpoint, None)));
        assert_eq!(event_id(&second), Some(2));
        assert!(!first.starts_with(&webhook_delivery(WEBHOOK_FAILED, &endpoint, None)));
    }

    #[test]
    fn idempotency_expiry_keys_order_by_time_and_name_their_record() {
        let tenant = Uuid::new_v4();
        let record = idempotency_record(&tenant, &[7; 32]);
        let older = idempotency_expiry(1_000, &record);
        let newer = idempotency_expiry(2_000, &idempotency_record(&tenant, &[1; 32]));
        assert!(older < newer);
        assert_eq!(parse_idempotency_expiry(&older), Some((1_000, record)));
        assert!(older.starts_with(&[IDEMPOTENCY, IDEMPOTENCY_EXPIRY]));
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
