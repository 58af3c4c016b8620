//! What the benchmark publishes and how a receiver reads it back.
//!
//! Every event's `data` carries one string field, the *stamp*:
//! `"tidingsBenchStamp":"<topic index>.<sequence>.<send time, unix µs>"`,
//! followed by padding up to the requested size. Receivers find the stamp
//! with a plain substring search over the raw bytes (no UTF-8 check, no JSON
//! parse), so they neither pay for nor depend on the shape of the rest of the
//! event (field order, spacing, envelope).

use memchr::memmem;
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// The key of the stamp field inside `data`.
pub const STAMP_KEY: &str = "\"tidingsBenchStamp\"";

/// The event type the benchmark publishes.
pub const EVENT_TYPE: &str = "bench";

/// Identity and send time of one published event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Index of the topic the event was published to.
    pub topic: u32,
    /// Sequence number within that topic, from 0 without gaps.
    pub seq: u64,
    /// When the publisher sent it, in microseconds since the Unix epoch.
    pub sent_us: u64,
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The `data` object for an event of about `size` bytes (never smaller than the stamp).
pub fn data_json(stamp: Stamp, size: usize) -> String {
    let head = format!(
        "{{{STAMP_KEY}:\"{}.{}.{}\"",
        stamp.topic, stamp.seq, stamp.sent_us
    );
    const PAD_OVERHEAD: usize = ",\"pad\":\"\"}".len();
    match size.checked_sub(head.len() + PAD_OVERHEAD) {
        Some(pad) if pad > 0 => format!("{head},\"pad\":\"{}\"}}", "x".repeat(pad)),
        _ => format!("{head}}}"),
    }
}

/// One event object for a publish request: `{"type":"bench","data":{…}}`.
pub fn event_json(stamp: Stamp, size: usize) -> String {
    format!(
        "{{\"type\":\"{EVENT_TYPE}\",\"data\":{}}}",
        data_json(stamp, size)
    )
}

/// The request body for one event, or for a batch when `stamps` has several.
pub fn publish_body(stamps: &[Stamp], size: usize) -> String {
    if let [single] = stamps {
        return event_json(*single, size);
    }
    let events: Vec<String> = stamps.iter().map(|s| event_json(*s, size)).collect();
    format!("{{\"events\":[{}]}}", events.join(","))
}

/// Finds the stamp in received bytes (an SSE data line or a WebSocket frame),
/// also when the stamped data travels JSON-escaped inside a string (a
/// discussion comment's body: `\"tidingsBenchStamp\":\"…\"`).
pub fn find_stamp(text: &[u8]) -> Option<Stamp> {
    let at = STAMP_FINDER.find(text)?;
    stamp_after_key(&text[at + STAMP_NAME.len()..])
}

/// Every stamp in received bytes, in order: a chat frame groups several
/// messages, each with its own stamp. A key not followed by a readable
/// stamp is skipped.
pub fn find_stamps(text: &[u8]) -> impl Iterator<Item = Stamp> + '_ {
    STAMP_FINDER
        .find_iter(text)
        .filter_map(|at| stamp_after_key(&text[at + STAMP_NAME.len()..]))
}

/// Finds the stamp's field name.
static STAMP_FINDER: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(STAMP_NAME.as_bytes()));

/// The stamp whose field name ends where `after_name` begins.
fn stamp_after_key(after_name: &[u8]) -> Option<Stamp> {
    let after_key = strip_quote(after_name)?;
    let value = after_key.trim_ascii_start().strip_prefix(b":")?;
    let value = strip_quote(value.trim_ascii_start())?;
    let (topic, value) = leading_number(value, b".")?;
    let (seq, value) = leading_number(value, b".")?;
    let (sent_us, _) = leading_number(value, b"\"\\")?;
    Some(Stamp {
        topic: u32::try_from(topic).ok()?,
        seq,
        sent_us,
    })
}

/// The stamp's field name, found with or without escaping around it.
const STAMP_NAME: &str = "tidingsBenchStamp";

/// `text` after a leading `"` or escaped `\"`.
fn strip_quote(text: &[u8]) -> Option<&[u8]> {
    text.strip_prefix(b"\\\"")
        .or_else(|| text.strip_prefix(b"\""))
}

/// A decimal number of at least one digit ended by one of `ends`, and the
/// text after that byte.
fn leading_number<'a>(text: &'a [u8], ends: &[u8]) -> Option<(u64, &'a [u8])> {
    let mut value: u64 = 0;
    for (index, byte) in text.iter().enumerate() {
        if ends.contains(byte) && index > 0 {
            return Some((value, &text[index + 1..]));
        }
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        topic: 3,
        seq: 42,
        sent_us: 1_700_000_000_123_456,
    };

    #[test]
    fn data_has_the_requested_size() {
        for size in [200, 1024] {
            let data = data_json(STAMP, size);
            assert_eq!(data.len(), size);
            let parsed: serde_json::Value = serde_json::from_str(&data).expect("valid JSON");
            assert!(parsed["pad"].is_string());
        }
        let tiny = data_json(STAMP, 1);
        assert!(serde_json::from_str::<serde_json::Value>(&tiny).is_ok());
    }

    #[test]
    fn stamp_survives_a_round_trip_through_an_event() {
        let event = format!(
            "{{\"id\":\"01J\",\"topic\":\"t\",\"type\":\"bench\",\"data\":{}}}",
            data_json(STAMP, 300)
        );
        assert_eq!(find_stamp(event.as_bytes()), Some(STAMP));
        let spaced = event.replace("Stamp\":", "Stamp\" : ");
        assert_eq!(find_stamp(spaced.as_bytes()), Some(STAMP));
    }

    #[test]
    fn foreign_or_broken_text_has_no_stamp() {
        assert_eq!(find_stamp(b"{\"data\":{\"x\":1}}"), None);
        assert_eq!(find_stamp(b"{\"tidingsBenchStamp\":\"1.2\"}"), None);
        assert_eq!(find_stamp(b"{\"tidingsBenchStamp\":\"a.b.c\"}"), None);
        assert_eq!(find_stamp(b"{\"tidingsBenchStamp\":7}"), None);
        assert_eq!(find_stamp(b"{\"tidingsBenchStamp\":\"1.2.3.4\"}"), None);
        assert_eq!(find_stamp(b"{\"tidingsBenchStamp\":\"1..3\"}"), None);
        assert_eq!(find_stamp(b"{\"tidingsBenchStamp\":\"1.2.3"), None);
        assert_eq!(
            find_stamp(b"{\"tidingsBenchStamp\":\"4294967296.2.3\"}"),
            None,
            "topic beyond u32"
        );
        assert_eq!(
            find_stamp(b"{\"tidingsBenchStamp\":\"1.99999999999999999999.3\"}"),
            None,
            "sequence beyond u64"
        );
    }

    #[test]
    fn every_stamp_of_a_grouped_frame_is_found() {
        let second = Stamp { seq: 43, ..STAMP };
        let messages: Vec<serde_json::Value> = [STAMP, second]
            .iter()
            .map(|stamp| serde_json::json!({ "text": data_json(*stamp, 120) }))
            .collect();
        let frame =
            serde_json::json!({ "type": "TextMessagesCreated", "data": { "messages": messages } });
        let text = frame.to_string();
        let found: Vec<Stamp> = find_stamps(text.as_bytes()).collect();
        assert_eq!(found, vec![STAMP, second]);
        assert_eq!(find_stamps(b"{\"tidingsBenchStamp\":7}").count(), 0);
    }

    #[test]
    fn batch_bodies_are_valid_json() {
        let single: serde_json::Value =
            serde_json::from_str(&publish_body(&[STAMP], 100)).expect("single");
        assert_eq!(single["type"], "bench");
        let stamps = [STAMP, Stamp { seq: 43, ..STAMP }];
        let batch: serde_json::Value =
            serde_json::from_str(&publish_body(&stamps, 100)).expect("batch");
        assert_eq!(batch["events"].as_array().map(Vec::len), Some(2));
    }
}
