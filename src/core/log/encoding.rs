//! Wire encodings of an event, defined by the transport or module that sends
//! them and cached on the event, so every subscriber shares the same bytes.
//!
//! The log does not know SSE, WebSocket envelopes or module payload shapes.
//! Their owner declares an [`Encoding`]: a `static` with a name and a function
//! `fn(&LogEvent) -> Bytes`. [`LogEvent::encoded`](super::LogEvent::encoded)
//! runs that function at most once per event and lends every caller the same
//! [`Bytes`] (no copy, no allocation; a caller that keeps them clones the
//! handle, a reference count).
//!
//! Each encoding takes one slot of a small fixed table carried by every
//! event, assigned on its first use. A process defines at most
//! [`MAX_ENCODINGS`] encodings; one defined past that still works but is not
//! cached: it is computed on every call (one allocation per subscriber), and
//! a warning names it once.
//!
//! Invariants: a slot is taken once per encoding and never reused or freed;
//! an event's cached bytes never change once set; the hot path takes no lock
//! (two atomic loads when the bytes are cached); an encoding function may ask
//! the event for another encoding (a frame of a payload), never for its own.

use super::LogEvent;
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The most encodings one process caches per event. Each one costs every
/// event 40 bytes whether or not it is used.
pub const MAX_ENCODINGS: usize = 12;

/// Slots handed out so far (it may exceed [`MAX_ENCODINGS`]; those get none).
static SLOTS_TAKEN: AtomicUsize = AtomicUsize::new(0);

/// One way to put an event on the wire. Declare it as a `static` next to the
/// code that sends it.
pub struct Encoding {
    name: &'static str,
    encode: fn(&LogEvent) -> Bytes,
    slot: OnceLock<Option<usize>>,
}

impl Encoding {
    /// An encoding called `name` (for logs), built by `encode`.
    pub const fn new(name: &'static str, encode: fn(&LogEvent) -> Bytes) -> Self {
        Self {
            name,
            encode,
            slot: OnceLock::new(),
        }
    }

    /// The encoding's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Encodes `event` without caching.
    pub(super) fn encode(&self, event: &LogEvent) -> Bytes {
        (self.encode)(event)
    }

    /// This encoding's slot in every event's table, taken on first use;
    /// `None` when all [`MAX_ENCODINGS`] slots were already taken.
    pub(super) fn slot(&self) -> Option<usize> {
        *self.slot.get_or_init(|| take_slot(&SLOTS_TAKEN, self.name))
    }
}

/// The next free slot counted by `taken`, or `None` (with a warning naming
/// `encoding`) when the table is full.
fn take_slot(taken: &AtomicUsize, encoding: &'static str) -> Option<usize> {
    let slot = taken.fetch_add(1, Ordering::Relaxed);
    if slot < MAX_ENCODINGS {
        return Some(slot);
    }
    tracing::warn!(
        encoding,
        max = MAX_ENCODINGS,
        "more wire encodings than events cache; this one is rebuilt for every subscriber"
    );
    None
}

impl std::fmt::Debug for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoding")
            .field("name", &self.name)
            .field("slot", &self.slot.get())
            .finish()
    }
}

/// The event's `data` alone as JSON, the one projection of an event that
/// several surfaces share (a payload their spec shows: discussions' SSE
/// frames and webhook bodies). What `data` holds is the module's business.
pub static DATA_JSON: Encoding = Encoding::new("event.data", |event| {
    serde_json::to_vec(&event.event.data)
        .map(Bytes::from)
        .unwrap_or_else(|_| Bytes::from_static(b"null"))
});

/// The per-event cache: one lazily filled cell per slot.
#[derive(Debug, Default)]
pub(super) struct EncodingCache {
    cells: [OnceLock<Bytes>; MAX_ENCODINGS],
}

impl EncodingCache {
    /// `encoding` of `event`, built on first request and shared afterwards.
    /// Borrowed when cached; owned only past [`MAX_ENCODINGS`].
    pub(super) fn get<'a>(&'a self, encoding: &Encoding, event: &LogEvent) -> Cow<'a, Bytes> {
        self.get_in(encoding.slot(), encoding, event)
    }

    fn get_in<'a>(
        &'a self,
        slot: Option<usize>,
        encoding: &Encoding,
        event: &LogEvent,
    ) -> Cow<'a, Bytes> {
        match slot {
            Some(slot) => Cow::Borrowed(self.cells[slot].get_or_init(|| encoding.encode(event))),
            None => Cow::Owned(encoding.encode(event)),
        }
    }

    /// Bytes held by the encodings built so far.
    pub(super) fn bytes(&self) -> usize {
        self.cells
            .iter()
            .filter_map(OnceLock::get)
            .map(Bytes::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::Event;
    use serde_json::Value;
    use std::sync::atomic::AtomicUsize;
    use ulid::Ulid;

    static BUILDS: AtomicUsize = AtomicUsize::new(0);

    fn counted_type(event: &LogEvent) -> Bytes {
        BUILDS.fetch_add(1, Ordering::SeqCst);
        Bytes::from(event.event.event_type.clone())
    }

    static TYPE_ONLY: Encoding = Encoding::new("test.type", counted_type);

    fn bracketed(event: &LogEvent) -> Bytes {
        let inner = event.encoded(&TYPE_ONLY);
        Bytes::from([b"[".as_slice(), &inner[..], b"]"].concat())
    }

    static BRACKETED: Encoding = Encoding::new("test.bracketed", bracketed);

    static ID_TEXT: Encoding =
        Encoding::new("test.id", |event| Bytes::from(event.id().to_string()));

    fn event() -> LogEvent {
        let event = Event {
            id: Ulid::from_parts(1, 2),
            topic: "t".into(),
            event_type: "ping".into(),
            occurred_at: String::new(),
            actor: Value::Null,
            data: Value::Null,
        };
        LogEvent::new(uuid::Uuid::nil(), event, Bytes::new())
    }

    #[test]
    fn an_encoding_is_built_once_per_event_and_every_caller_shares_its_bytes() {
        let logged = event();
        let first = logged.encoded(&BRACKETED);
        let second = logged.encoded(&BRACKETED);
        assert_eq!(&first[..], b"[ping]");
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "the same bytes, not a copy"
        );
        let again = logged.encoded(&TYPE_ONLY);
        assert_eq!(&again[..], b"ping");
        assert_eq!(
            BUILDS.load(Ordering::SeqCst),
            1,
            "the inner encoding was built once, though asked for twice"
        );
        assert_eq!(logged.encoded_bytes(), b"[ping]".len() + b"ping".len());
        assert_ne!(TYPE_ONLY.slot(), BRACKETED.slot());
    }

    #[test]
    fn an_encoding_past_the_table_is_still_correct_but_uncached() {
        let taken = AtomicUsize::new(0);
        let slots: Vec<Option<usize>> = (0..=MAX_ENCODINGS)
            .map(|_| take_slot(&taken, "test.extra"))
            .collect();
        assert_eq!(slots[0], Some(0));
        assert_eq!(slots[MAX_ENCODINGS - 1], Some(MAX_ENCODINGS - 1));
        assert_eq!(slots[MAX_ENCODINGS], None, "the table is full");
        let logged = event();
        let first = logged.encodings.get_in(None, &ID_TEXT, &logged);
        let second = logged.encodings.get_in(None, &ID_TEXT, &logged);
        assert_eq!(first[..], *logged.id().to_string().as_bytes());
        assert_ne!(first.as_ptr(), second.as_ptr(), "rebuilt on each call");
        assert_eq!(logged.encoded_bytes(), 0, "nothing cached");
    }
}
