//! A subscribed topic's ring: the most recent events, bounded by count and by bytes.
//!
//! Each event is charged an estimate of the memory it holds while the ring
//! keeps it ([`footprint`]): the event itself, its stored JSON, its parsed
//! form, and two wire encodings (the most any surface builds for one event).
//!
//! Invariants: positions (`seq`) only grow, so a subscriber's position stays
//! meaningful while older events are dropped; `bytes` is the sum of the
//! charges of the events held; dropping an event never loses it (it is in
//! the log; a subscriber that needs it repairs from there).

use crate::core::log::LogEvent;
use serde_json::Value;
use std::collections::VecDeque;
use std::mem::size_of;
use std::sync::Arc;

/// Wire encodings an event may hold at once (e.g. an SSE frame and a WebSocket text).
const ENCODINGS: usize = 2;
/// Bytes a wire encoding adds around the event JSON (field names, id, type).
const FRAME_OVERHEAD: usize = 64;
/// Bytes of bookkeeping per object entry of a parsed JSON value.
const ENTRY_OVERHEAD: usize = size_of::<String>() + 16;

/// The ring of one channel.
#[derive(Default)]
pub(super) struct Ring {
    events: VecDeque<(Arc<LogEvent>, usize)>,
    first_seq: u64,
    bytes: usize,
}

impl Ring {
    /// Position of the oldest event held.
    pub(super) fn first_seq(&self) -> u64 {
        self.first_seq
    }

    /// Position the next event will take.
    pub(super) fn end_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }

    /// Events held.
    pub(super) fn len(&self) -> usize {
        self.events.len()
    }

    /// Bytes charged for the events held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends `event`, charged `charge` bytes.
    pub(super) fn push(&mut self, event: Arc<LogEvent>, charge: usize) {
        self.bytes += charge;
        self.events.push_back((event, charge));
    }

    /// Drops the oldest event; returns the bytes freed (`None` when empty).
    pub(super) fn pop_front(&mut self) -> Option<usize> {
        let (_, charge) = self.events.pop_front()?;
        self.first_seq += 1;
        self.bytes -= charge;
        Some(charge)
    }

    /// Drops everything; returns the bytes freed.
    pub(super) fn clear(&mut self) -> usize {
        let freed = self.bytes;
        self.first_seq = self.end_seq();
        self.events.clear();
        self.bytes = 0;
        freed
    }

    /// The events from position `seq` on (`seq` at least `first_seq`).
    pub(super) fn since(&self, seq: u64) -> impl Iterator<Item = &Arc<LogEvent>> {
        let skip = usize::try_from(seq.saturating_sub(self.first_seq)).unwrap_or(usize::MAX);
        self.events.iter().skip(skip).map(|(event, _)| event)
    }
}

/// The bytes a ring is charged for holding `event`.
pub(super) fn footprint(event: &LogEvent) -> usize {
    let inner = &event.event;
    let json = event.json.len();
    size_of::<LogEvent>()
        + inner.topic.len()
        + inner.event_type.len()
        + inner.occurred_at.len()
        + json
        + value_bytes(&inner.actor)
        + value_bytes(&inner.data)
        + ENCODINGS * (json + FRAME_OVERHEAD + inner.event_type.len())
}

/// Heap bytes of a parsed JSON value (the value itself counted by its parent).
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.capacity(),
        Value::Array(items) => {
            items.capacity() * size_of::<Value>() + items.iter().map(value_bytes).sum::<usize>()
        }
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| {
                ENTRY_OVERHEAD + key.capacity() + size_of::<Value>() + value_bytes(value)
            })
            .sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::Event;
    use bytes::Bytes;
    use ulid::Ulid;

    fn event(n: u64, text_len: usize) -> Arc<LogEvent> {
        let inner = Event {
            id: Ulid::from_parts(n, 0),
            topic: "t".into(),
            event_type: "e".into(),
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            actor: Value::Null,
            data: Value::String("x".repeat(text_len)),
        };
        let json = Bytes::from(serde_json::to_vec(&inner).unwrap());
        Arc::new(LogEvent::new(uuid::Uuid::nil(), inner, json))
    }

    #[test]
    fn a_footprint_covers_the_json_its_parsed_form_and_two_encodings() {
        let big = event(1, 10_000);
        let charge = footprint(&big);
        assert!(charge >= 4 * 10_000, "{charge}");
        assert!(charge < 5 * 10_000, "{charge}");
    }

    #[test]
    fn positions_survive_dropping_and_bytes_add_up() {
        let mut ring = Ring::default();
        for n in 0..3 {
            let event = event(n, 100);
            let charge = footprint(&event);
            ring.push(event, charge);
        }
        let total = ring.bytes();
        let freed = ring.pop_front().unwrap();
        assert_eq!(ring.bytes(), total - freed);
        assert_eq!((ring.first_seq(), ring.end_seq(), ring.len()), (1, 3, 2));
        let ids: Vec<u64> = ring
            .since(2)
            .map(|event| event.id().timestamp_ms())
            .collect();
        assert_eq!(ids, [2]);
        assert_eq!(ring.clear(), total - freed);
        assert_eq!((ring.first_seq(), ring.end_seq(), ring.bytes()), (3, 3, 0));
    }
}
