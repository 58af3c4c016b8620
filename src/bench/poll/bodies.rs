//! Byte-identity of interval bodies: every 200 answer for one interval must
//! be the same bytes, whoever asked and whenever.
//!
//! The first body seen for an interval becomes its reference; every later
//! one is compared with it byte for byte. Shared by all viewer tasks behind
//! one mutex (a lookup and a `memcmp` of ~250 bytes per poll).

use std::collections::HashMap;
use std::sync::Mutex;

/// What the comparisons found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity {
    /// Distinct intervals that had a 200 answer.
    pub intervals: u64,
    /// Bodies compared with their interval's reference (all 200 answers).
    pub compared: u64,
    /// Bodies that differed from their interval's reference.
    pub mismatched: u64,
    /// Intervals with at least one differing body.
    pub mismatched_intervals: u64,
}

#[derive(Debug)]
struct Reference {
    body: Vec<u8>,
    mismatched: bool,
}

/// The reference body of every interval seen so far.
#[derive(Debug, Default)]
pub struct IntervalBodies {
    state: Mutex<(HashMap<i64, Reference>, Identity)>,
}

impl IntervalBodies {
    /// Records a 200 body of `interval`; false when it differs from the reference.
    pub fn check(&self, interval: i64, body: &[u8]) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (references, identity) = &mut *guard;
        identity.compared += 1;
        let reference = references.entry(interval).or_insert_with(|| {
            identity.intervals += 1;
            Reference {
                body: body.to_vec(),
                mismatched: false,
            }
        });
        if reference.body == body {
            return true;
        }
        identity.mismatched += 1;
        if !reference.mismatched {
            reference.mismatched = true;
            identity.mismatched_intervals += 1;
        }
        false
    }

    /// The totals so far.
    pub fn identity(&self) -> Identity {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_body_is_the_reference_per_interval() {
        let bodies = IntervalBodies::default();
        assert!(bodies.check(250, b"a"));
        assert!(bodies.check(250, b"a"));
        assert!(bodies.check(500, b"b"));
        assert!(!bodies.check(250, b"b"));
        assert!(!bodies.check(250, b"c"));
        assert_eq!(
            bodies.identity(),
            Identity {
                intervals: 2,
                compared: 5,
                mismatched: 2,
                mismatched_intervals: 1,
            }
        );
    }
}
