//! Event ids: ULIDs from one monotonic generator owned by the writer.
//!
//! Invariants: every id is greater than every id issued before it, by this
//! process or (after [`IdGenerator::resume_after`] with the newest stored id)
//! by any earlier process on the same data; a wall clock that goes backwards
//! only makes ids advance by one within the last millisecond used.

use ulid::Ulid;

/// Issues strictly increasing ULIDs.
#[derive(Debug)]
pub struct IdGenerator {
    last: Ulid,
}

impl IdGenerator {
    /// A generator whose ids all follow `newest` (the newest id ever stored).
    pub fn resume_after(newest: Ulid) -> Self {
        Self { last: newest }
    }

    /// The next id for an event committed at `now_ms`.
    pub fn next(&mut self, now_ms: u64) -> Ulid {
        let next = if now_ms > self.last.timestamp_ms() {
            Ulid::from_parts(now_ms, fresh_random())
        } else {
            match self.last.increment() {
                Ok(next) => next,
                // The random part is exhausted in this millisecond: move to the next one.
                Err(_) => Ulid::from_parts(self.last.timestamp_ms() + 1, fresh_random()),
            }
        };
        self.last = next;
        next
    }

    /// The newest id issued.
    pub fn last(&self) -> Ulid {
        self.last
    }
}

/// Random bits for a new millisecond, with the top bits clear so that
/// increments within the millisecond practically never overflow.
fn fresh_random() -> u128 {
    let mut bytes = [0u8; 8];
    // Without randomness ids stay unique and ordered (one writer); only less opaque.
    let _ = getrandom::fill(&mut bytes);
    u128::from(u64::from_be_bytes(bytes) >> 1) << 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond_and_across_restarts() {
        let mut ids = IdGenerator::resume_after(Ulid::nil());
        let first = ids.next(1_000);
        let second = ids.next(1_000);
        let third = ids.next(1_001);
        assert!(first < second && second < third);
        let mut resumed = IdGenerator::resume_after(third);
        assert!(resumed.next(1_001) > third);
    }

    #[test]
    fn a_clock_going_backwards_keeps_ids_increasing() {
        let mut ids = IdGenerator::resume_after(Ulid::nil());
        let late = ids.next(5_000);
        let early = ids.next(4_000);
        assert!(early > late);
        assert_eq!(early.timestamp_ms(), 5_000);
    }

    #[test]
    fn an_exhausted_millisecond_moves_to_the_next() {
        let mut ids = IdGenerator::resume_after(Ulid::from_parts(7, u128::MAX >> 48));
        let next = ids.next(7);
        assert_eq!(next.timestamp_ms(), 8);
    }
}
