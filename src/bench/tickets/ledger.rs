//! Exact accounting of the `notify` mode: every acknowledged change owes
//! its notifications, each an [`Expected`] (ticket, recipient, type, when
//! the change was sent); [`settle`] matches the receipts against them.
//!
//! Rules: a notification id received twice is a duplicate (only the first
//! counts); receipts of one (ticket, user, type) are paired in order with
//! the sends of that key in order (a ticket may move to the same user
//! again later), each pair giving one change→notification latency; sends
//! left unpaired are lost, receipts left unpaired are extra (more
//! notifications than changes), and receipts of a key nobody expected are
//! unexpected.

use super::listeners::Receipt;
use super::notice::Kind;
use crate::bench::histogram::Histogram;
use std::collections::{HashMap, HashSet};

/// A notification an acknowledged change owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// The ticket.
    pub ticket: u64,
    /// The recipient's index.
    pub user: u32,
    /// The type.
    pub kind: Kind,
    /// When the change was sent (unix µs).
    pub sent_us: u64,
}

/// What the receipts made of the expectations.
#[derive(Debug, Clone, Default)]
pub struct Settled {
    /// Notifications owed.
    pub expected: u64,
    /// Owed notifications received (paired with their change).
    pub delivered: u64,
    /// Owed notifications never received.
    pub lost: u64,
    /// Receipts of a notification id already received.
    pub duplicated: u64,
    /// Receipts beyond the changes of their (ticket, user, type).
    pub extra: u64,
    /// Receipts of a (ticket, user, type) no change owed.
    pub unexpected: u64,
    /// Change sent → notification received, µs.
    pub latency: Histogram,
}

impl Settled {
    /// Whether every owed notification arrived exactly once and nothing else did.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.extra == 0 && self.unexpected == 0
    }
}

/// The key receipts and sends are matched by.
type Key = (u64, u32, Kind);

/// Matches `receipts` against `expected`.
pub fn settle(expected: &[Expected], receipts: &[Receipt]) -> Settled {
    let mut sends: HashMap<Key, Vec<u64>> = HashMap::new();
    for owed in expected {
        sends
            .entry((owed.ticket, owed.user, owed.kind))
            .or_default()
            .push(owed.sent_us);
    }
    let mut settled = Settled {
        expected: expected.len() as u64,
        ..Settled::default()
    };
    let mut ids = HashSet::new();
    let mut got: HashMap<Key, Vec<u64>> = HashMap::new();
    for receipt in receipts {
        if !ids.insert(receipt.notice.id.as_str()) {
            settled.duplicated += 1;
            continue;
        }
        let notice = &receipt.notice;
        got.entry((notice.ticket, receipt.user, notice.kind))
            .or_default()
            .push(receipt.received_us);
    }
    for (key, mut received) in got {
        let Some(sent) = sends.get_mut(&key) else {
            settled.unexpected += received.len() as u64;
            continue;
        };
        sent.sort_unstable();
        received.sort_unstable();
        for (sent_us, received_us) in sent.iter().zip(&received) {
            settled.latency.record(received_us.saturating_sub(*sent_us));
        }
        let paired = sent.len().min(received.len()) as u64;
        settled.delivered += paired;
        settled.extra += received.len() as u64 - paired;
    }
    settled.lost = settled.expected - settled.delivered;
    settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tickets::notice::Notice;

    fn owed(ticket: u64, user: u32, kind: Kind, sent_us: u64) -> Expected {
        Expected {
            ticket,
            user,
            kind,
            sent_us,
        }
    }

    fn receipt(id: &str, ticket: u64, user: u32, kind: Kind, received_us: u64) -> Receipt {
        Receipt {
            user,
            notice: Notice {
                id: id.into(),
                ticket,
                kind,
                created_ms: None,
                sla_target_ms: None,
            },
            received_us,
        }
    }

    #[test]
    fn every_owed_notification_is_paired_once() {
        let expected = [
            owed(1, 0, Kind::Assignment, 100),
            owed(2, 1, Kind::Assignment, 200),
            owed(2, 0, Kind::Reassignment, 200),
            owed(2, 1, Kind::Assignment, 900),
        ];
        let receipts = [
            receipt("a", 1, 0, Kind::Assignment, 150),
            receipt("b", 2, 1, Kind::Assignment, 260),
            receipt("c", 2, 0, Kind::Reassignment, 300),
            receipt("d", 2, 1, Kind::Assignment, 1000),
        ];
        let settled = settle(&expected, &receipts);
        assert!(settled.is_exact(), "{settled:?}");
        assert_eq!((settled.expected, settled.delivered), (4, 4));
        assert_eq!(settled.latency.count(), 4);
        assert_eq!(settled.latency.max(), 100);
        assert_eq!(settled.latency.min(), 50);
    }

    #[test]
    fn loss_duplicates_extras_and_strangers_are_counted_apart() {
        let expected = [
            owed(1, 0, Kind::Assignment, 100),
            owed(2, 1, Kind::Assignment, 200),
        ];
        let receipts = [
            receipt("a", 1, 0, Kind::Assignment, 150),
            receipt("a", 1, 0, Kind::Assignment, 151),
            receipt("b", 1, 0, Kind::Assignment, 160),
            receipt("c", 9, 0, Kind::Assignment, 170),
            receipt("d", 2, 0, Kind::Assignment, 210),
        ];
        let settled = settle(&expected, &receipts);
        assert_eq!(settled.delivered, 1);
        assert_eq!(settled.lost, 1, "user 1 never got ticket 2");
        assert_eq!(settled.duplicated, 1);
        assert_eq!(settled.extra, 1);
        assert_eq!(
            settled.unexpected, 2,
            "ticket 9, and ticket 2 at the wrong user"
        );
        assert!(!settled.is_exact());
    }
}
