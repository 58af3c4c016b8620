//! Auth's records in the store, under the prefix `a` it claims at startup:
//!
//! ```text
//! a t <tenant:16>              tenant (JSON)
//! a k <key id:16>              API key record (JSON, secret hashed)
//! a r <tenant:16> <realm name> JWT realm (JSON)
//! a x <ticket hash>            stream ticket (JSON, secret hashed)
//! ```
//!
//! Invariant: these encodings never change (existing data directories are
//! read as they are; the tests pin the bytes).

use uuid::Uuid;

/// The prefix of every auth record.
pub const PREFIX: &[u8] = b"a";

/// Record kind: tenant.
pub const TENANT: u8 = b't';
/// Record kind: API key.
pub const API_KEY: u8 = b'k';
/// Record kind: JWT realm.
pub const REALM: u8 = b'r';
/// Record kind: stream ticket.
pub const TICKET: u8 = b'x';

/// Prefix of every record of `kind`.
pub fn kind_prefix(kind: u8) -> [u8; 2] {
    [PREFIX[0], kind]
}

/// Key of a record of `kind` ([`TENANT`] or [`API_KEY`]) with a 16-byte id.
pub fn record(kind: u8, id: &Uuid) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&kind_prefix(kind));
    key.extend_from_slice(id.as_bytes());
    key
}

/// Key of a realm record.
pub fn realm(tenant: &Uuid, name: &str) -> Vec<u8> {
    let mut key = record(REALM, tenant);
    key.extend_from_slice(name.as_bytes());
    key
}

/// Key of a ticket record by the hex hash of its secret.
pub fn ticket(hash: &str) -> Vec<u8> {
    let mut key = kind_prefix(TICKET).to_vec();
    key.extend_from_slice(hash.as_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_byte_for_byte_those_of_existing_data_dirs() {
        let id = Uuid::from_bytes([0x22; 16]);
        let raw = [0x22u8; 16];
        assert_eq!(record(TENANT, &id), [&b"at"[..], &raw].concat());
        assert_eq!(record(API_KEY, &id), [&b"ak"[..], &raw].concat());
        assert_eq!(
            realm(&id, "default"),
            [&b"ar"[..], &raw, b"default"].concat()
        );
        assert_eq!(ticket("ab12"), b"axab12");
        assert_eq!(kind_prefix(TICKET), *b"ax");
    }
}
