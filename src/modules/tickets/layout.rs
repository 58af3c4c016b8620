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
//! v <user> <view> <status> <ticket>
//!                           a user's ticket-list row (empty value; view 1 byte: r requested,
//!                           a assigned, w watching; status 1 byte: 0 new … 4 closed)
//! w <queue> <status> <ticket>
//!                           a queue's ticket-list row (empty value)
//! ```
//!
//! Invariants: ids are issued in increasing order per tenant; every key
//! starts with the tenant, so one tenant's keys never reach another's; an
//! inbox's keys sort oldest first (ULIDs), so the newest is the last key;
//! the `c` row always equals what the `i` rows of the user hold (written in
//! the same change as them); a ticket has exactly the `v`/`w` rows its
//! requester, assignee, watchers, queue and status give it (written in the
//! change that saves it), so a list is a backward scan of a few prefixes
//! (newest ticket first); these encodings never change once released
//! (the tests pin the bytes).

use super::model::{Priority, Status};
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

/// A user's ticket list, as named in its `v` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum UserList {
    /// Tickets the user asked.
    Requested,
    /// Tickets assigned to the user.
    Assigned,
    /// Tickets the user watches.
    Watching,
}

impl UserList {
    fn byte(self) -> u8 {
        match self {
            UserList::Requested => b'r',
            UserList::Assigned => b'a',
            UserList::Watching => b'w',
        }
    }
}

/// A status's byte in list rows (stable: never renumbered).
fn status_byte(status: Status) -> u8 {
    match status {
        Status::New => 0,
        Status::Open => 1,
        Status::Pending => 2,
        Status::Resolved => 3,
        Status::Closed => 4,
    }
}

/// Prefix of a user's list rows of one status.
pub fn user_list(tenant: &Uuid, user: &UserKey, list: UserList, status: Status) -> Vec<u8> {
    let mut key = user_key(tenant, b'v', user);
    key.extend_from_slice(&[list.byte(), status_byte(status)]);
    key
}

/// Prefix of a queue's list rows of one status.
pub fn queue_list(tenant: &Uuid, queue: u64, status: Status) -> Vec<u8> {
    let mut key = key(tenant, b'w', &[queue]);
    key.push(status_byte(status));
    key
}

/// A list row: a list's prefix (of the ticket's status) and the ticket.
pub fn list_row(list_prefix: &[u8], ticket: u64) -> Vec<u8> {
    [list_prefix, &ticket.to_be_bytes()].concat()
}

/// The ticket of a list row (its last 8 bytes).
pub fn ticket_of_row(row: &[u8]) -> Option<u64> {
    let start = row.len().checked_sub(8)?;
    row[start..].try_into().ok().map(u64::from_be_bytes)
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
        let row = list_row(
            &user_list(&tenant, &user, UserList::Watching, Status::Resolved),
            5,
        );
        assert_eq!(
            row,
            [&base[..], b"v", &user.0, b"w", &[3], &5u64.to_be_bytes()].concat()
        );
        assert_eq!(ticket_of_row(&row), Some(5));
        assert_eq!(
            list_row(&queue_list(&tenant, 2, Status::New), 6),
            [
                &base[..],
                b"w",
                &2u64.to_be_bytes(),
                &[0],
                &6u64.to_be_bytes()
            ]
            .concat()
        );
        assert_eq!(
            user_list(&tenant, &user, UserList::Requested, Status::Closed),
            [&base[..], b"v", &user.0, b"r", &[4]].concat()
        );
        assert_eq!(
            user_list(&tenant, &user, UserList::Assigned, Status::Open)[base.len() + 17..],
            [b'a', 1]
        );
        assert_eq!(
            queue_list(&tenant, 1, Status::Pending).last(),
            Some(&2),
            "pending"
        );
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
