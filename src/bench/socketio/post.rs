//! The posts the bench publishes and how a client reads them back, live or
//! from a sync page.
//!
//! A post's `text` starts with its stamp, `bench <seq> <send time, unix µs> `,
//! and is padded with `x` to `--size` bytes. A live post arrives as
//! `42["communication.channel_post.created",{envelope}]`; the hot path finds
//! the envelope's `"eventId":"…"` and `"text":"bench …"` with byte searches
//! (no JSON parse, no allocation), which holds for any key order because a
//! key's quotes cannot occur unescaped inside a JSON string. A frame that
//! is written differently (spaces after colons) is parsed as JSON instead.

use serde::Deserialize;
use serde_json::Value;
use std::sync::LazyLock;

/// The event every new post is broadcast as.
pub const POST_CREATED: &str = "communication.channel_post.created";

/// How a stamped text starts.
const TEXT_MARK: &str = "bench ";

/// How a live post's event array starts when written without spaces.
const EVENT_START: &[u8] = br#"["communication.channel_post.created","#;

/// The envelope's event id key.
static EVENT_ID_KEY: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(br#""eventId":""#));

/// A stamped text, JSON-encoded as the frame carries it.
static TEXT_KEY: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(br#""text":"bench "#));

/// Identity and send time of one post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostStamp {
    /// The publisher's number for the post: 0, 1, 2, … without gaps.
    pub seq: u64,
    /// When the publisher sent it (unix µs).
    pub sent_us: u64,
}

/// The text of the post `stamp`, padded with `x` to `size` bytes (never shorter than the stamp).
pub fn text(stamp: PostStamp, size: usize) -> String {
    let mut text = format!("{TEXT_MARK}{} {} ", stamp.seq, stamp.sent_us);
    let pad = size.saturating_sub(text.len());
    text.extend(std::iter::repeat_n('x', pad));
    text
}

/// The stamp at the start of a post's text.
pub fn stamp_of_text(text: &[u8]) -> Option<PostStamp> {
    let rest = text.strip_prefix(TEXT_MARK.as_bytes())?;
    let (seq, rest) = number(rest)?;
    let (sent_us, _) = number(rest)?;
    Some(PostStamp { seq, sent_us })
}

/// A decimal number ended by a space, and what follows the space.
fn number(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || text.get(digits) != Some(&b' ') {
        return None;
    }
    let value = text[..digits].iter().try_fold(0u64, |value, digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })?;
    Some((value, &text[digits + 1..]))
}

/// A post read from an event or a sync page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Post<'a> {
    /// Its stamp.
    pub stamp: PostStamp,
    /// Its envelope's `eventId` (where a sync resumes after it).
    pub event_id: &'a str,
}

/// What one server event is to the bench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// A post the bench published.
    Post(Post<'a>),
    /// Any other event, or a post without a bench stamp: its name.
    Foreign(String),
}

/// Reads an event's JSON array (`["name", payload]`).
pub fn read_event(json: &[u8]) -> Delivery<'_> {
    if json.starts_with(EVENT_START)
        && let Some(post) = find_post(json)
    {
        return Delivery::Post(post);
    }
    parse_event(json)
}

/// The fast path: byte searches for the id and the stamped text.
fn find_post(json: &[u8]) -> Option<Post<'_>> {
    let id_start = EVENT_ID_KEY.find(json)? + EVENT_ID_KEY.needle().len();
    let id_len = memchr::memchr(b'"', &json[id_start..])?;
    let event_id = std::str::from_utf8(&json[id_start..id_start + id_len]).ok()?;
    let text_start = TEXT_KEY.find(json)? + TEXT_KEY.needle().len() - TEXT_MARK.len();
    let stamp = stamp_of_text(&json[text_start..])?;
    Some(Post { stamp, event_id })
}

/// An envelope as far as the bench reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<'a> {
    #[serde(borrow)]
    event_id: &'a str,
    #[serde(default)]
    data: Value,
}

/// The slow path: the event parsed as JSON.
fn parse_event(json: &[u8]) -> Delivery<'_> {
    let Ok((name, payload)) = serde_json::from_slice::<(String, Envelope<'_>)>(json) else {
        let name = serde_json::from_slice::<Vec<Value>>(json)
            .ok()
            .and_then(|args| args.first().and_then(Value::as_str).map(str::to_string));
        return Delivery::Foreign(name.unwrap_or_else(|| super::packet::excerpt(json)));
    };
    if name != POST_CREATED {
        return Delivery::Foreign(name);
    }
    match stamp_in(&payload.data) {
        Some(stamp) => Delivery::Post(Post {
            stamp,
            event_id: payload.event_id,
        }),
        None => Delivery::Foreign(name),
    }
}

/// The stamp in an envelope's `data.text`.
fn stamp_in(data: &Value) -> Option<PostStamp> {
    stamp_of_text(data.get("text")?.as_str()?.as_bytes())
}

/// A post of a sync page: its stamp and event id (`None`: not a bench post).
pub fn from_envelope(envelope: &Value) -> Option<(PostStamp, &str)> {
    let id = envelope.get("eventId")?.as_str()?;
    Some((stamp_in(envelope.get("data")?)?, id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const STAMP: PostStamp = PostStamp {
        seq: 42,
        sent_us: 1_700_000_000_123_456,
    };

    fn envelope(text: &str) -> Value {
        json!({
            "eventId": "019d-1",
            "eventType": POST_CREATED,
            "occurredAt": "2026-03-17T10:15:00.000Z",
            "data": { "postId": 5, "channelId": 1, "text": text, "authorId": "p", "createdAt": "x" },
        })
    }

    #[test]
    fn texts_carry_their_stamp_and_size() {
        let padded = text(STAMP, 200);
        assert_eq!(padded.len(), 200);
        assert_eq!(stamp_of_text(padded.as_bytes()), Some(STAMP));
        let short = text(STAMP, 1);
        assert_eq!(stamp_of_text(short.as_bytes()), Some(STAMP));
        for bad in [
            "hello",
            "bench 1",
            "bench a 2 ",
            "bench 1 2",
            "bench 99999999999999999999 1 ",
        ] {
            assert_eq!(stamp_of_text(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn live_posts_are_read_fast_or_by_parsing() {
        let frame = json!([POST_CREATED, envelope(&text(STAMP, 100))]).to_string();
        let expected = Delivery::Post(Post {
            stamp: STAMP,
            event_id: "019d-1",
        });
        assert!(frame.as_bytes().starts_with(EVENT_START));
        assert_eq!(read_event(frame.as_bytes()), expected);
        let spaced =
            serde_json::to_string_pretty(&json!([POST_CREATED, envelope(&text(STAMP, 100))]))
                .expect("json");
        assert_eq!(read_event(spaced.as_bytes()), expected);
    }

    #[test]
    fn other_events_are_foreign() {
        let unstamped = json!([POST_CREATED, envelope("hello")]).to_string();
        assert_eq!(
            read_event(unstamped.as_bytes()),
            Delivery::Foreign(POST_CREATED.into())
        );
        let updated = json!(["communication.channel_post.updated", envelope("x")]).to_string();
        assert_eq!(
            read_event(updated.as_bytes()),
            Delivery::Foreign("communication.channel_post.updated".into())
        );
        assert!(matches!(read_event(b"[1"), Delivery::Foreign(_)));
    }

    #[test]
    fn synced_envelopes_are_read() {
        let synced = envelope(&text(STAMP, 64));
        assert_eq!(from_envelope(&synced), Some((STAMP, "019d-1")));
        assert_eq!(from_envelope(&envelope("plain")), None);
        assert_eq!(from_envelope(&json!({"data": {}})), None);
    }
}
