//! Webhooks' records in the store, under the prefix `w` they claim at startup:
//!
//! ```text
//! w e <tenant:16> <endpoint:16>   endpoint (JSON, with its signing secret)
//! w p <endpoint:16> <delivery:16> pending delivery (outbox row), in delivery order
//! w f <endpoint:16> <delivery:16> failed delivery (given up), same layout
//! ```
//!
//! Invariants: delivery ids come from the writer's id generator and are
//! big-endian, so an endpoint's pending rows sort in the order they were
//! committed; these encodings never change (existing data directories are
//! read as they are; the tests pin the bytes).

use uuid::Uuid;

/// The prefix of every webhook record.
pub const PREFIX: &[u8] = b"w";

/// Record kind: endpoint.
const ENDPOINT: u8 = b'e';
/// Record kind: pending delivery.
pub const PENDING: u8 = b'p';
/// Record kind: failed delivery.
pub const FAILED: u8 = b'f';

/// Key of an endpoint; `None` for the prefix of every endpoint of `tenant`.
/// With no tenant either, the prefix of all endpoints.
pub fn endpoint(tenant: Option<&Uuid>, endpoint: Option<&Uuid>) -> Vec<u8> {
    let mut key = vec![PREFIX[0], ENDPOINT];
    for id in [tenant, endpoint].into_iter().flatten() {
        key.extend_from_slice(id.as_bytes());
    }
    key
}

/// Key of a delivery of `kind` ([`PENDING`] or [`FAILED`]); `None` for the
/// prefix of all of an endpoint's deliveries of that kind.
pub fn delivery(kind: u8, endpoint: &Uuid, delivery: Option<u128>) -> Vec<u8> {
    let mut key = Vec::with_capacity(34);
    key.push(PREFIX[0]);
    key.push(kind);
    key.extend_from_slice(endpoint.as_bytes());
    if let Some(delivery) = delivery {
        key.extend_from_slice(&delivery.to_be_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_nest_and_order_deliveries_by_id() {
        let (tenant, id) = (Uuid::new_v4(), Uuid::new_v4());
        let record = endpoint(Some(&tenant), Some(&id));
        assert!(record.starts_with(&endpoint(Some(&tenant), None)));
        assert!(record.starts_with(&endpoint(None, None)));
        let first = delivery(PENDING, &id, Some(1));
        let second = delivery(PENDING, &id, Some(2));
        assert!(first < second);
        assert!(first.starts_with(&delivery(PENDING, &id, None)));
        assert!(!first.starts_with(&delivery(FAILED, &id, None)));
    }

    #[test]
    fn encodings_are_byte_for_byte_those_of_existing_data_dirs() {
        let (tenant, id) = (Uuid::from_bytes([0x33; 16]), Uuid::from_bytes([0x44; 16]));
        let (t, e) = ([0x33u8; 16], [0x44u8; 16]);
        assert_eq!(
            endpoint(Some(&tenant), Some(&id)),
            [&b"we"[..], &t, &e].concat()
        );
        assert_eq!(endpoint(None, None), b"we");
        assert_eq!(
            delivery(PENDING, &id, Some(7)),
            [&b"wp"[..], &e, &7u128.to_be_bytes()].concat()
        );
        assert_eq!(delivery(FAILED, &id, None), [&b"wf"[..], &e].concat());
    }
}
