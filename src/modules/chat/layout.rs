//! The chat module's key space, inside `s chat 0x00 <tenant:16>` (every
//! number a big-endian u64):
//!
//! ```text
//! n <kind>                              counter: last id issued (kind r rooms, m messages, u users)
//! u <sub>                               user id of a JWT subject
//! U <user>                              subject of a user id
//! r <room>                              room (JSON)
//! o <room>                              public room index (empty value)
//! m <room> <user>                       member of a room: role and join time (JSON)
//! p <user> <room>                       membership history: spans (32 bytes each)
//! g <room> <message>                    message (JSON)
//! t <room> <parent> <message>           thread index (parent 0 = top level; empty value)
//! c <room> <user>                       read receipt (JSON)
//! ```
//!
//! Invariants: ids are issued in increasing order per tenant, so an index
//! lists oldest first; every key starts with the tenant, so one tenant's keys
//! never reach another's; these encodings never change once released (the
//! tests pin the bytes).

use crate::core::store::layout as store_layout;
use uuid::Uuid;

/// The module's name in the store.
const MODULE: &str = "chat";

/// The kind of a numeric id, as named in its counter key.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// Room ids.
    Room,
    /// Message ids.
    Message,
    /// User ids.
    User,
}

/// The prefix of every key of the module: `s chat 0x00`.
pub fn prefix() -> Vec<u8> {
    store_layout::module(MODULE)
}

fn key(tenant: &Uuid, kind: u8, numbers: &[u64]) -> Vec<u8> {
    let mut key = store_layout::module_kind(MODULE, tenant, kind);
    for number in numbers {
        key.extend_from_slice(&number.to_be_bytes());
    }
    key
}

/// Key of an id counter.
pub fn counter(tenant: &Uuid, counter: Counter) -> Vec<u8> {
    let mut key = key(tenant, b'n', &[]);
    key.push(match counter {
        Counter::Room => b'r',
        Counter::Message => b'm',
        Counter::User => b'u',
    });
    key
}

/// Key of the user id of JWT subject `sub`.
pub fn user_by_sub(tenant: &Uuid, sub: &str) -> Vec<u8> {
    let mut key = key(tenant, b'u', &[]);
    key.extend_from_slice(sub.as_bytes());
    key
}

/// Key of the subject of user `user`.
pub fn sub_of_user(tenant: &Uuid, user: u64) -> Vec<u8> {
    key(tenant, b'U', &[user])
}

/// Key of a room.
pub fn room(tenant: &Uuid, room: u64) -> Vec<u8> {
    key(tenant, b'r', &[room])
}

/// Prefix of the public rooms index.
pub fn public_rooms(tenant: &Uuid) -> Vec<u8> {
    key(tenant, b'o', &[])
}

/// Key of a public room's index entry.
pub fn public_room(tenant: &Uuid, room: u64) -> Vec<u8> {
    key(tenant, b'o', &[room])
}

/// Prefix of a room's members.
pub fn members(tenant: &Uuid, room: u64) -> Vec<u8> {
    key(tenant, b'm', &[room])
}

/// Key of one member of a room.
pub fn member(tenant: &Uuid, room: u64, user: u64) -> Vec<u8> {
    key(tenant, b'm', &[room, user])
}

/// Prefix of one user's membership histories.
pub fn memberships(tenant: &Uuid, user: u64) -> Vec<u8> {
    key(tenant, b'p', &[user])
}

/// Key of one user's membership history of one room.
pub fn membership(tenant: &Uuid, user: u64, room: u64) -> Vec<u8> {
    key(tenant, b'p', &[user, room])
}

/// Prefix of a room's messages.
pub fn messages(tenant: &Uuid, room: u64) -> Vec<u8> {
    key(tenant, b'g', &[room])
}

/// Key of a message.
pub fn message(tenant: &Uuid, room: u64, message: u64) -> Vec<u8> {
    key(tenant, b'g', &[room, message])
}

/// Prefix of a room's thread index (every thread, top level included).
pub fn threads(tenant: &Uuid, room: u64) -> Vec<u8> {
    key(tenant, b't', &[room])
}

/// Prefix of the messages under `parent` (0: top-level messages).
pub fn thread(tenant: &Uuid, room: u64, parent: u64) -> Vec<u8> {
    key(tenant, b't', &[room, parent])
}

/// Key of one thread index entry.
pub fn thread_entry(tenant: &Uuid, room: u64, parent: u64, message: u64) -> Vec<u8> {
    key(tenant, b't', &[room, parent, message])
}

/// Prefix of a room's read receipts.
pub fn receipts(tenant: &Uuid, room: u64) -> Vec<u8> {
    key(tenant, b'c', &[room])
}

/// Key of one user's read receipt in a room.
pub fn receipt(tenant: &Uuid, room: u64, user: u64) -> Vec<u8> {
    key(tenant, b'c', &[room, user])
}

/// The number ending a key (a room, user or message id), if the key is long enough.
pub fn last_number(key: &[u8]) -> Option<u64> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_byte_for_byte_those_of_existing_data_dirs() {
        let tenant = Uuid::from_bytes([0x77; 16]);
        let base = [&b"schat\0"[..], &[0x77; 16]].concat();
        let k = |tail: &[u8]| [&base[..], tail].concat();
        let (one, two, three) = (1u64.to_be_bytes(), 2u64.to_be_bytes(), 3u64.to_be_bytes());
        assert_eq!(counter(&tenant, Counter::Room), k(b"nr"));
        assert_eq!(counter(&tenant, Counter::Message), k(b"nm"));
        assert_eq!(counter(&tenant, Counter::User), k(b"nu"));
        assert_eq!(user_by_sub(&tenant, "ann"), k(b"uann"));
        assert_eq!(sub_of_user(&tenant, 1), k(&[&b"U"[..], &one].concat()));
        assert_eq!(room(&tenant, 1), k(&[&b"r"[..], &one].concat()));
        assert_eq!(public_room(&tenant, 1), k(&[&b"o"[..], &one].concat()));
        assert_eq!(member(&tenant, 1, 2), k(&[&b"m"[..], &one, &two].concat()));
        assert_eq!(
            membership(&tenant, 2, 1),
            k(&[&b"p"[..], &two, &one].concat())
        );
        assert_eq!(message(&tenant, 1, 2), k(&[&b"g"[..], &one, &two].concat()));
        assert_eq!(
            thread_entry(&tenant, 1, 2, 3),
            k(&[&b"t"[..], &one, &two, &three].concat())
        );
        assert_eq!(receipt(&tenant, 1, 2), k(&[&b"c"[..], &one, &two].concat()));
    }

    #[test]
    fn indexes_sort_by_id_and_nest_by_prefix() {
        let tenant = Uuid::new_v4();
        let (a, b) = (
            thread_entry(&tenant, 1, 0, 255),
            thread_entry(&tenant, 1, 0, 256),
        );
        assert!(a < b && a.starts_with(&thread(&tenant, 1, 0)));
        assert!(a.starts_with(&threads(&tenant, 1)));
        assert!(!thread_entry(&tenant, 1, 5, 6).starts_with(&thread(&tenant, 1, 0)));
        assert!(member(&tenant, 1, 9).starts_with(&members(&tenant, 1)));
        assert!(!member(&tenant, 10, 9).starts_with(&members(&tenant, 1)));
        assert_eq!(last_number(&b), Some(256));
        assert_eq!(last_number(b"short"), None);
    }
}
