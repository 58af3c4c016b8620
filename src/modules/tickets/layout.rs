//! The tickets module's key space, inside `stickets 0x00 <tenant:16>`
//! (every number a big-endian u64; `<user>` the 16-byte [`UserKey`] of a
//! user id):
//!
//! ```text
//! n <kind>                  counter: last id issued (t tickets, q queues, c comments, a approvals)
//! t <ticket>                ticket (JSON)
//! q <queue>                 queue (JSON)
//! m <ticket> <comment>      comment (JSON)
//! a <ticket> <approval>     approval (JSON)
//! l <priority>              SLA target of a priority (JSON; 1 byte: 0 low … 3 urgent)
//! o                         the tenant's settings (JSON)
//! i <user> <event:16>       a notification in the user's inbox (JSON), by its event's ULID
//! c <user>                  the user's inbox counts: unread, total (two u64)
//! p <user>                  the user's preferences (JSON)
//! ```
//!
//! Invariants: ids are issued in increasing order per tenant; every key
//! starts with the tenant, so one tenant's keys never reach another's; an
//! inbox's keys sort oldest first (ULIDs), so the newest is the last key;
//! the `c` row always equals what the `i` rows of the user hold (written in
//! the same change as them); these encodings never change once released
//! (the tests pin the bytes).

use super::model::Priority;
use crate::core::store::layout as store_layout;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The module's name in the store and its topics' namespace.
pub const MODULE: &str = "tickets";

/// A user's 16-byte key: the first half of SHA-256 of the user id, so ids
/// of any length and alphabet make fixed keys and topic names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserKey(pub [u8; 16]);

impl UserKey {
    /// The key of a user id.
    pub fn of(user: &str) -> Self {
        let digest = Sha256::digest(user.as_bytes());
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        Self(key)
    }

    /// 32 lowercase hex digits (topic names).
    pub fn hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// The kind of a numeric id, as named in its counter key.
#[derive(Debug, Clone, Copy)]
pub enum Counter {
    /// Ticket ids (and numbers).
    Ticket,
    /// Queue ids.
    Queue,
    /// Comment ids.
    Comment,
    /// Approval ids.
    Approval,
}

/// The prefix of every key of the module: `stickets 0x00`.
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

fn user_key(tenant: &Uuid, kind: u8, user: &UserKey) -> Vec<u8> {
    let mut key = store_layout::module_kind(MODULE, tenant, kind);
    key.extend_from_slice(&user.0);
    key
}

/// Key of an id counter.
pub fn counter(tenant: &Uuid, counter: Counter) -> Vec<u8> {
    let mut key = key(tenant, b'n', &[]);
    key.push(match counter {
        Counter::Ticket => b't',
        Counter::Queue => b'q',
        Counter::Comment => b'c',
        Counter::Approval => b'a',
    });
    key
}

/// Key of a ticket.
pub fn ticket(tenant: &Uuid, ticket: u64) -> Vec<u8> {
    key(tenant, b't', &[ticket])
}

/// Prefix of every ticket of a tenant.
pub fn tickets(tenant: &Uuid) -> Vec<u8> {
    key(tenant, b't', &[])
}

/// Key of a queue.
pub fn queue(tenant: &Uuid, queue: u64) -> Vec<u8> {
    key(tenant, b'q', &[queue])
}

/// Prefix of every queue of a tenant.
pub fn queues(tenant: &Uuid) -> Vec<u8> {
    key(tenant, b'q', &[])
}

/// Key of a comment.
pub fn comment(tenant: &Uuid, ticket: u64, comment: u64) -> Vec<u8> {
    key(tenant, b'm', &[ticket, comment])
}

/// Prefix of a ticket's comments.
pub fn comments(tenant: &Uuid, ticket: u64) -> Vec<u8> {
    key(tenant, b'm', &[ticket])
}

/// Key of an approval.
pub fn approval(tenant: &Uuid, ticket: u64, approval: u64) -> Vec<u8> {
    key(tenant, b'a', &[ticket, approval])
}

/// Prefix of a ticket's approvals.
pub fn approvals(tenant: &Uuid, ticket: u64) -> Vec<u8> {
    key(tenant, b'a', &[ticket])
}

/// Key of the SLA target of a priority.
pub fn sla_target(tenant: &Uuid, priority: Priority) -> Vec<u8> {
    let mut key = key(tenant, b'l', &[]);
    key.push(priority as u8);
    key
}

/// Key of the tenant's settings.
pub fn settings(tenant: &Uuid) -> Vec<u8> {
    key(tenant, b'o', &[])
}

/// Key of a notification in a user's inbox.
pub fn notification(tenant: &Uuid, user: &UserKey, event: u128) -> Vec<u8> {
    let mut key = user_key(tenant, b'i', user);
    key.extend_from_slice(&event.to_be_bytes());
    key
}

/// Prefix of a user's inbox.
pub fn inbox(tenant: &Uuid, user: &UserKey) -> Vec<u8> {
    user_key(tenant, b'i', user)
}

/// Key of a user's inbox counts.
pub fn inbox_counts(tenant: &Uuid, user: &UserKey) -> Vec<u8> {
    user_key(tenant, b'c', user)
}

/// Key of a user's preferences.
pub fn preferences(tenant: &Uuid, user: &UserKey) -> Vec<u8> {
    user_key(tenant, b'p', user)
}

/// A user's inbox counts, as stored in the `c` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxCounts {
    /// Notifications not marked read.
    pub unread: u64,
    /// Notifications kept.
    pub total: u64,
}

impl InboxCounts {
    /// The row's 16 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = self.unread.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.total.to_be_bytes());
        bytes
    }

    /// Reads a row; a row of another length is zero counts.
    pub fn decode(bytes: &[u8]) -> Self {
        let number = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0)
        };
        Self {
            unread: number(0..8),
            total: number(8..16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pinned_byte_for_byte() {
        let tenant = Uuid::from_bytes([0x55; 16]);
        let base = [b"stickets\0".as_slice(), &[0x55; 16]].concat();
        assert_eq!(
            ticket(&tenant, 7),
            [&base[..], b"t", &7u64.to_be_bytes()].concat()
        );
        assert_eq!(
            counter(&tenant, Counter::Ticket),
            [&base[..], b"nt"].concat()
        );
        assert_eq!(
            comment(&tenant, 1, 2),
            [&base[..], b"m", &1u64.to_be_bytes(), &2u64.to_be_bytes()].concat()
        );
        assert_eq!(
            sla_target(&tenant, Priority::Urgent),
            [&base[..], b"l", &[3]].concat()
        );
        let user = UserKey::of("u1");
        assert_eq!(
            notification(&tenant, &user, 9),
            [&base[..], b"i", &user.0, &9u128.to_be_bytes()].concat()
        );
        assert_eq!(
            inbox_counts(&tenant, &user),
            [&base[..], b"c", &user.0].concat()
        );
        assert_eq!(settings(&tenant), [&base[..], b"o"].concat());
    }

    #[test]
    fn user_keys_are_the_first_half_of_sha256() {
        assert_eq!(UserKey::of("abc").hex(), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn inbox_counts_round_trip() {
        let counts = InboxCounts {
            unread: 3,
            total: 9,
        };
        assert_eq!(InboxCounts::decode(&counts.encode()), counts);
        assert_eq!(InboxCounts::decode(b""), InboxCounts::default());
    }
}
