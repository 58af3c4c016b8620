//! Reading the chat event stream's frames (`GET /api/v1/events`) as the
//! bench's subscribers do.
//!
//! Frames are `{"type","id","data"}`, keys in that order. A message frame
//! (`TextMessagesCreated`) may group several messages of one room, each with
//! its own stamp in its text: it is delivered as one [`Received::Frame`]
//! followed by one [`Received::Event`] per stamp, all with the frame's id as
//! their cursor. The hot path is byte searches only: a message frame is
//! recognised by its fixed start, the id is the first `"id":"…"` of the frame
//! (it comes before `data`). Other frames are rare and parsed as JSON.

use crate::bench::payload::find_stamps;
use crate::bench::stream::{CursorRef, Received, ReceivedSink};
use memchr::memmem;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// How a message frame starts; its id follows.
const MESSAGES_PREFIX: &[u8] = br#"{"type":"TextMessagesCreated","id":""#;

/// The key of a frame's id.
const ID_KEY: &[u8] = br#""id":""#;

/// The parts of a non-message frame the bench reads.
#[derive(Debug, Deserialize)]
struct Other {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Value,
}

/// Whether `text` is the stream's first frame, `Connected`.
pub fn is_connected(text: &[u8]) -> bool {
    serde_json::from_slice::<Other>(text).is_ok_and(|frame| frame.kind == "Connected")
}

/// The id of a frame, borrowed from it.
pub fn frame_id(text: &[u8]) -> Option<&[u8]> {
    let rest = &text[memmem::find(text, ID_KEY)? + ID_KEY.len()..];
    rest.get(..memchr::memchr(b'"', rest)?)
}

/// Hands everything one chat frame holds to `sink`.
pub fn deliver(text: &[u8], at: u64, sink: &mut impl ReceivedSink) {
    let cursor = frame_id(text).map(CursorRef::Id);
    if text.starts_with(MESSAGES_PREFIX) {
        let mut stamps = find_stamps(text).peekable();
        if stamps.peek().is_none() {
            sink.deliver(Received::Foreign { cursor }, at);
            return;
        }
        sink.deliver(Received::Frame, at);
        for stamp in stamps {
            sink.deliver(Received::Event { stamp, cursor }, at);
        }
        return;
    }
    sink.deliver(classify_other(text, cursor), at);
}

/// A frame other than messages.
fn classify_other<'a>(text: &'a [u8], cursor: Option<CursorRef<'a>>) -> Received<'a> {
    let Ok(frame) = serde_json::from_slice::<Other>(text) else {
        return Received::ServerError {
            message: Cow::Owned(format!(
                "unreadable chat frame: {}",
                String::from_utf8_lossy(text)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
        };
    };
    let data = &frame.data;
    match (frame.kind.as_str(), cursor) {
        ("Connected", Some(cursor)) => Received::Position { cursor },
        ("Gap", _) => Received::Gap {
            reason: Cow::Owned(format!(
                "room {}: {}",
                data["roomId"],
                data["reason"].as_str().unwrap_or("gap")
            )),
        },
        ("Error", _) => Received::ServerError {
            message: Cow::Owned(format!(
                "{}: {}",
                data["code"].as_str().unwrap_or("error"),
                data["message"].as_str().unwrap_or("")
            )),
        },
        ("Pong", _) => Received::Control,
        (_, cursor) => Received::Foreign { cursor },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::payload::{Stamp, data_json};
    use serde_json::json;

    /// Collects what a frame delivers, as short labels.
    #[derive(Default)]
    struct Labels(Vec<String>);

    impl ReceivedSink for Labels {
        fn deliver(&mut self, delivery: Received<'_>, _at: u64) {
            let id = |cursor: Option<CursorRef<'_>>| match cursor {
                Some(CursorRef::Id(id)) => String::from_utf8_lossy(id).into_owned(),
                _ => "-".into(),
            };
            self.0.push(match delivery {
                Received::Frame => "frame".into(),
                Received::Event { stamp, cursor } => {
                    format!("event {}.{} @{}", stamp.topic, stamp.seq, id(cursor))
                }
                Received::Position { cursor } => format!("position @{}", id(Some(cursor))),
                Received::Foreign { cursor } => format!("foreign @{}", id(cursor)),
                Received::Gap { reason } => format!("gap {reason}"),
                Received::ServerError { message } => format!("error {message}"),
                Received::Closing { .. } => "closing".into(),
                Received::Control => "control".into(),
            });
        }
    }

    fn labels(frame: &str) -> Vec<String> {
        let mut sink = Labels::default();
        deliver(frame.as_bytes(), 0, &mut sink);
        sink.0
    }

    fn message(room: u32, seq: u64) -> Value {
        let stamp = Stamp {
            topic: room,
            seq,
            sent_us: 7,
        };
        json!({ "messageId": seq + 1, "roomId": 40, "text": data_json(stamp, 90) })
    }

    #[test]
    fn single_and_grouped_message_frames_deliver_every_stamp() {
        let single = format!(
            r#"{{"type":"TextMessagesCreated","id":"01AAA","data":{{"messages":[{}]}}}}"#,
            message(3, 0)
        );
        assert_eq!(labels(&single), vec!["frame", "event 3.0 @01AAA"]);
        let grouped = format!(
            r#"{{"type":"TextMessagesCreated","id":"01BBB","data":{{"messages":[{},{}]}}}}"#,
            message(3, 1),
            message(3, 2)
        );
        assert_eq!(
            labels(&grouped),
            vec!["frame", "event 3.1 @01BBB", "event 3.2 @01BBB"]
        );
        let unstamped = format!(
            r#"{{"type":"TextMessagesCreated","id":"01CCC","data":{{"messages":[{}]}}}}"#,
            json!({ "text": "hello \"id\":\"x\"" })
        );
        assert_eq!(labels(&unstamped), vec!["foreign @01CCC"]);
    }

    #[test]
    fn other_frames_are_classified() {
        let connected = r#"{"type":"Connected","id":"01DDD","data":{"userId":4,"rooms":[1]}}"#;
        assert!(is_connected(connected.as_bytes()));
        assert_eq!(labels(connected), vec!["position @01DDD"]);
        let updated = r#"{"type":"RoomUpdated","id":"01EEE","data":{"room":{"roomId":1}}}"#;
        assert!(!is_connected(updated.as_bytes()));
        assert_eq!(labels(updated), vec!["foreign @01EEE"]);
        let gap = json!({ "type": "Gap", "data": { "roomId": 5, "reason": "expired", "oldestId": "01A" } });
        assert_eq!(labels(&gap.to_string()), vec!["gap room 5: expired"]);
        let error = json!({ "type": "Error", "data": { "code": "VALIDATION", "message": "no" } });
        assert_eq!(labels(&error.to_string()), vec!["error VALIDATION: no"]);
        assert_eq!(labels(r#"{"type":"Pong"}"#), vec!["control"]);
        assert!(labels("nope")[0].starts_with("error unreadable"));
    }
}
