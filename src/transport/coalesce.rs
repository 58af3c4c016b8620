//! Write coalescing for event streams (SSE and WebSocket): when a stream
//! that has something to send writes it.
//!
//! Writing every delivery at once costs one wake-up and one `write(2)` per
//! event and connection: at high fan-out that, not the bytes, caps the
//! server. Holding a busy stream's events briefly and writing them together
//! removes most of it, while a quiet stream must not be slowed:
//!
//! * **idle**: nothing was written for at least the longest hold: the
//!   delivery is written at once. The first event after a quiet spell is
//!   never delayed.
//! * **busy**: the connection wrote within the longest hold: the delivery
//!   waits until `last write + hold`, and everything that arrived meanwhile
//!   goes out in the same write.
//! * **in flight**: a write that has not finished holds the stream anyway
//!   (transports await it); what arrives meanwhile is taken with the next.
//!
//! The hold of a busy write is the interval with [`WritePacing::Fixed`] (the
//! default, 20 ms: a busy stream writes at most once per interval; zero
//! writes every delivery at once). With [`WritePacing::Adaptive`] it starts
//! at [`FIRST_HOLD`] and doubles with each busy write up to the longest; a
//! pause (an idle write) halves it, and a quiet spell of [`QUIET_RESET`]
//! longest holds starts it over: a burst after a pause is held about a
//! millisecond. Measured on a loaded 2-core machine, the adaptive ramp
//! delivered less than the fixed interval at high fan-out (more, smaller
//! writes), so it is not the default.
//!
//! Invariants: a delivery is never held past `last write + longest hold`; the
//! policy only decides *when* to write: events stay in their subscription
//! until taken, so holding never drops or reorders anything.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;
use tokio::time::Instant;

/// The hold of the first busy write after a quiet spell (adaptive pacing).
pub const FIRST_HOLD: Duration = Duration::from_millis(1);
/// A quiet spell this many longest holds long starts the hold over from
/// [`FIRST_HOLD`]; a shorter one only halves it.
pub const QUIET_RESET: u32 = 4;
/// The longest hold of `adaptive` pacing unless configured.
pub const ADAPTIVE_LONGEST_HOLD: Duration = Duration::from_millis(20);

/// How busy streams pace their writes (`--stream-write-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePacing {
    /// Hold a busy stream from [`FIRST_HOLD`], doubling per busy write up to `longest`.
    Adaptive {
        /// The longest hold; also how long a stream must be quiet to count as idle.
        longest: Duration,
    },
    /// A busy stream writes at most once per interval (zero: every delivery at once).
    Fixed(Duration),
}

impl WritePacing {
    /// The longest a delivery can be held.
    pub fn longest(self) -> Duration {
        match self {
            Self::Adaptive { longest } | Self::Fixed(longest) => longest,
        }
    }
}

impl Default for WritePacing {
    /// A fixed 20 ms: the best fan-out measured (see the module doc).
    fn default() -> Self {
        Self::Fixed(Duration::from_millis(20))
    }
}

/// `adaptive`, `adaptive:<longest hold>` or a fixed interval (`20ms`, `0`).
impl FromStr for WritePacing {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let duration = |text: &str| {
            humantime::parse_duration(text.trim())
                .map_err(|err| format!("`{text}` is not a duration ({err})"))
        };
        match text.trim() {
            "adaptive" => Ok(Self::Adaptive {
                longest: ADAPTIVE_LONGEST_HOLD,
            }),
            "0" => Ok(Self::Fixed(Duration::ZERO)),
            other => match other.strip_prefix("adaptive:") {
                Some(longest) => Ok(Self::Adaptive {
                    longest: duration(longest)?,
                }),
                None => duration(other).map(Self::Fixed),
            },
        }
    }
}

impl fmt::Display for WritePacing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Adaptive { longest } if *longest == ADAPTIVE_LONGEST_HOLD => {
                f.write_str("adaptive")
            }
            Self::Adaptive { longest } => {
                write!(f, "adaptive:{}", humantime::format_duration(*longest))
            }
            Self::Fixed(interval) => write!(f, "{}", humantime::format_duration(*interval)),
        }
    }
}

/// One connection's coalescing state.
#[derive(Debug, Clone)]
pub struct Coalescer {
    pacing: WritePacing,
    hold: Duration,
    last_write: Option<Instant>,
}

impl Coalescer {
    /// A coalescer pacing one stream's writes.
    pub fn new(pacing: WritePacing) -> Self {
        Self {
            pacing,
            hold: Duration::ZERO,
            last_write: None,
        }
    }

    /// When to write a delivery that is ready at `now`: `None` means at once,
    /// otherwise gather what arrives until the returned instant and write it
    /// all then. Call once per write.
    pub fn hold_until(&mut self, now: Instant) -> Option<Instant> {
        let last_write = self.last_write?;
        let longest = self.pacing.longest();
        let quiet = now.saturating_duration_since(last_write);
        if longest.is_zero() || quiet >= longest {
            self.hold = if quiet >= longest * QUIET_RESET {
                Duration::ZERO
            } else {
                self.hold / 2
            };
            return None;
        }
        self.hold = match self.pacing {
            WritePacing::Fixed(interval) => interval,
            WritePacing::Adaptive { longest } => {
                (self.hold * 2).clamp(FIRST_HOLD.min(longest), longest)
            }
        };
        let until = last_write + self.hold;
        (until > now).then_some(until)
    }

    /// Records that a write was made at `at`.
    pub fn wrote(&mut self, at: Instant) {
        self.last_write = Some(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONGEST: Duration = Duration::from_millis(20);

    fn adaptive() -> WritePacing {
        WritePacing::Adaptive { longest: LONGEST }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_first_write_and_writes_after_a_quiet_spell_are_not_held() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(adaptive());
        assert_eq!(coalescer.hold_until(start), None);
        coalescer.wrote(start);
        assert_eq!(coalescer.hold_until(start + LONGEST), None);
        coalescer.wrote(start + LONGEST);
        assert_eq!(coalescer.hold_until(start + ms(100)), None);
    }

    #[test]
    fn a_busy_stream_holds_longer_with_every_write_up_to_the_longest_hold() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(adaptive());
        coalescer.wrote(start);
        let mut last = start;
        let mut holds = Vec::new();
        for _ in 0..8 {
            let ready = last + Duration::from_micros(100);
            let until = coalescer.hold_until(ready).expect("busy: held");
            holds.push(until - last);
            coalescer.wrote(until);
            last = until;
        }
        assert_eq!(
            holds,
            [ms(1), ms(2), ms(4), ms(8), ms(16), ms(20), ms(20), ms(20)]
        );
    }

    #[test]
    fn a_quiet_spell_starts_the_hold_over() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(adaptive());
        coalescer.wrote(start);
        for step in 1..6 {
            let now = start + ms(step);
            let until = coalescer.hold_until(now).unwrap_or(now);
            coalescer.wrote(until);
        }
        let quiet = start + ms(500);
        assert_eq!(coalescer.hold_until(quiet), None);
        coalescer.wrote(quiet);
        let busy = quiet + Duration::from_micros(10);
        assert_eq!(coalescer.hold_until(busy), Some(quiet + FIRST_HOLD));
    }

    #[test]
    fn a_short_pause_halves_the_hold() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(adaptive());
        coalescer.wrote(start);
        let mut last = start;
        for _ in 0..6 {
            let until = coalescer.hold_until(last + ms(1)).unwrap_or(last + ms(1));
            coalescer.wrote(until);
            last = until;
        }
        // Held 20 ms by now; a 30 ms pause writes at once and halves the hold.
        let after_pause = last + ms(30);
        assert_eq!(coalescer.hold_until(after_pause), None);
        coalescer.wrote(after_pause);
        let busy = after_pause + ms(1);
        assert_eq!(coalescer.hold_until(busy), Some(after_pause + LONGEST));
    }

    #[test]
    fn a_hold_already_served_writes_at_once_and_never_beyond_the_longest() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(adaptive());
        coalescer.wrote(start);
        // Ready 5 ms after the last write: the 1 ms hold has passed.
        assert_eq!(coalescer.hold_until(start + ms(5)), None);
        for _ in 0..10 {
            let held = coalescer.hold_until(start + ms(1));
            assert!(held.is_none_or(|until| until <= start + LONGEST));
        }
    }

    #[test]
    fn zero_turns_coalescing_off() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(WritePacing::Fixed(Duration::ZERO));
        coalescer.wrote(start);
        assert_eq!(coalescer.hold_until(start), None);
        assert_eq!(coalescer.hold_until(start + Duration::from_nanos(1)), None);
    }

    #[test]
    fn a_fixed_interval_holds_a_busy_stream_for_the_whole_interval() {
        let start = Instant::now();
        let mut coalescer = Coalescer::new(WritePacing::Fixed(ms(400)));
        coalescer.wrote(start);
        assert_eq!(coalescer.hold_until(start + ms(1)), Some(start + ms(400)));
        assert_eq!(coalescer.hold_until(start + ms(400)), None);
    }

    #[test]
    fn pacing_parses_and_prints() {
        for (text, pacing) in [
            ("adaptive", adaptive()),
            ("20ms", WritePacing::default()),
            ("adaptive:40ms", WritePacing::Adaptive { longest: ms(40) }),
            ("20ms", WritePacing::Fixed(ms(20))),
            ("0", WritePacing::Fixed(Duration::ZERO)),
            ("0ms", WritePacing::Fixed(Duration::ZERO)),
        ] {
            assert_eq!(text.parse::<WritePacing>(), Ok(pacing), "{text}");
            assert_eq!(pacing.to_string().parse::<WritePacing>(), Ok(pacing));
        }
        assert!("fast".parse::<WritePacing>().is_err());
        assert!("adaptive:soon".parse::<WritePacing>().is_err());
    }
}
