//! Loss and duplicate accounting by sequence number.
//!
//! The publisher numbers the events of each topic 0, 1, 2, … and, when it
//! stops, tells every receiver a [`TopicExpectation`]: how many numbers it
//! handed out and which of them the server did not acknowledge (those may or
//! may not have been stored, so they count neither as lost nor as delivered).
//! Each subscriber keeps a [`SeqTracker`]: a contiguous prefix plus a bit
//! window above it, so memory follows reordering, not the run's length.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Largest bit window a tracker keeps (in 64-bit words): 64 Mi sequence numbers.
const MAX_WINDOW_WORDS: u64 = 1 << 20;

/// What the publisher knows about one topic once publishing has stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicExpectation {
    /// Sequence numbers `0..issued` were sent.
    pub issued: u64,
    /// Sent but not acknowledged (failed or unknown outcome), sorted ascending.
    pub unacknowledged: Vec<u64>,
}

impl TopicExpectation {
    /// Number of events every subscriber of the topic must receive.
    pub fn expected_count(&self) -> u64 {
        self.issued.saturating_sub(self.unacknowledged.len() as u64)
    }
}

/// What happened to one received sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// Seen for the first time.
    New,
    /// Seen before: a duplicate delivery.
    Duplicate,
    /// Absurdly far ahead of everything else: not a number the publisher sent.
    OutOfRange,
}

/// Which sequence numbers one subscriber has received, and how many twice.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Every number below `origin` was received; `origin` is a multiple of 64.
    origin: u64,
    /// Bit `i` of word `w` is number `origin + 64 * w + i`.
    window: VecDeque<u64>,
    /// Distinct numbers received.
    unique: u64,
    /// Deliveries of a number already received.
    duplicates: u64,
}

impl SeqTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the delivery of `seq`.
    pub fn record(&mut self, seq: u64) -> Receipt {
        if seq < self.origin {
            self.duplicates += 1;
            return Receipt::Duplicate;
        }
        let offset = seq - self.origin;
        let word = offset / 64;
        if word >= MAX_WINDOW_WORDS {
            return Receipt::OutOfRange;
        }
        let word = word as usize;
        if word >= self.window.len() {
            self.window.resize(word + 1, 0);
        }
        let bit = 1u64 << (offset % 64);
        if self.window[word] & bit != 0 {
            self.duplicates += 1;
            return Receipt::Duplicate;
        }
        self.window[word] |= bit;
        self.unique += 1;
        while self.window.front() == Some(&u64::MAX) {
            self.window.pop_front();
            self.origin += 64;
        }
        Receipt::New
    }

    /// Whether `seq` has been received.
    pub fn contains(&self, seq: u64) -> bool {
        if seq < self.origin {
            return true;
        }
        let offset = seq - self.origin;
        let Ok(word) = usize::try_from(offset / 64) else {
            return false;
        };
        self.window
            .get(word)
            .is_some_and(|bits| bits & (1u64 << (offset % 64)) != 0)
    }

    /// The first number not yet received: everything below it has arrived.
    pub fn prefix(&self) -> u64 {
        let front = self.window.front().copied().unwrap_or(0);
        self.origin + u64::from(front.trailing_ones())
    }

    /// Whether a number was received while a smaller one is still missing.
    pub fn has_holes(&self) -> bool {
        self.unique > self.prefix()
    }

    /// Distinct numbers received.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Duplicate deliveries so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Received numbers at or above `from` (numbers the publisher never sent).
    fn received_from(&self, from: u64) -> u64 {
        let window_end = self.origin + 64 * self.window.len() as u64;
        let below_origin = self.origin.saturating_sub(from);
        let in_window = (from.max(self.origin)..window_end)
            .filter(|seq| self.contains(*seq))
            .count() as u64;
        below_origin + in_window
    }

    /// Expected numbers received so far.
    fn received_expected(&self, expect: &TopicExpectation) -> u64 {
        let excused = expect
            .unacknowledged
            .iter()
            .filter(|seq| self.contains(**seq))
            .count() as u64;
        self.unique
            .saturating_sub(excused)
            .saturating_sub(self.received_from(expect.issued))
    }

    /// Acknowledged numbers that never arrived.
    pub fn lost(&self, expect: &TopicExpectation) -> u64 {
        expect
            .expected_count()
            .saturating_sub(self.received_expected(expect))
    }

    /// Whether every acknowledged number has arrived.
    pub fn is_complete(&self, expect: &TopicExpectation) -> bool {
        self.prefix() >= expect.issued || self.lost(expect) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expectation(issued: u64, unacknowledged: &[u64]) -> TopicExpectation {
        TopicExpectation {
            issued,
            unacknowledged: unacknowledged.to_vec(),
        }
    }

    fn tracker_after(seqs: &[u64]) -> SeqTracker {
        let mut tracker = SeqTracker::new();
        for seq in seqs {
            tracker.record(*seq);
        }
        tracker
    }

    #[test]
    fn a_missing_and_a_repeated_event_are_detected() {
        let tracker = tracker_after(&[0, 1, 2, 4, 4, 5]);
        let expect = expectation(6, &[]);
        assert_eq!(tracker.lost(&expect), 1);
        assert_eq!(tracker.duplicates(), 1);
        assert!(!tracker.is_complete(&expect));
    }

    #[test]
    fn a_clean_sequence_passes() {
        let tracker = tracker_after(&[0, 2, 1, 3, 4, 5]);
        let expect = expectation(6, &[]);
        assert_eq!(tracker.lost(&expect), 0);
        assert_eq!(tracker.duplicates(), 0);
        assert!(tracker.is_complete(&expect));
        assert_eq!(tracker.prefix(), 6);
    }

    #[test]
    fn duplicates_below_the_window_are_detected() {
        let seqs: Vec<u64> = (0..200).collect();
        let mut tracker = tracker_after(&seqs);
        assert_eq!(tracker.prefix(), 200);
        assert_eq!(tracker.record(3), Receipt::Duplicate);
        assert_eq!(tracker.record(130), Receipt::Duplicate);
        assert_eq!(tracker.record(199), Receipt::Duplicate);
        assert_eq!(tracker.record(200), Receipt::New);
        assert_eq!(tracker.duplicates(), 3);
        assert_eq!(tracker.lost(&expectation(201, &[])), 0);
    }

    #[test]
    fn losses_across_many_words_are_counted() {
        let seqs: Vec<u64> = (0..1000).filter(|seq| seq % 100 != 7).collect();
        let tracker = tracker_after(&seqs);
        assert_eq!(tracker.lost(&expectation(1000, &[])), 10);
        assert_eq!(tracker.prefix(), 7);
        assert!(tracker.has_holes());
        assert!(!tracker_after(&[1, 0, 2]).has_holes());
    }

    #[test]
    fn losses_at_the_end_are_counted() {
        let tracker = tracker_after(&[0, 1, 2]);
        assert_eq!(tracker.lost(&expectation(10, &[])), 7);
        assert_eq!(SeqTracker::new().lost(&expectation(4, &[])), 4);
    }

    #[test]
    fn unacknowledged_events_are_excused_either_way() {
        let expect = expectation(5, &[2, 4]);
        let without = tracker_after(&[0, 1, 3]);
        assert_eq!(without.lost(&expect), 0);
        assert!(without.is_complete(&expect));
        let with = tracker_after(&[0, 1, 2, 3, 4]);
        assert_eq!(with.lost(&expect), 0);
        let short = tracker_after(&[0, 2, 4]);
        assert_eq!(short.lost(&expect), 2);
    }

    #[test]
    fn numbers_never_sent_do_not_hide_losses() {
        let tracker = tracker_after(&[0, 1, 7, 8]);
        assert_eq!(tracker.lost(&expectation(4, &[])), 2);
    }

    #[test]
    fn absurd_numbers_are_rejected_without_allocating() {
        let mut tracker = SeqTracker::new();
        assert_eq!(tracker.record(u64::MAX), Receipt::OutOfRange);
        assert_eq!(tracker.unique(), 0);
        assert!(!tracker.contains(u64::MAX));
    }
}
