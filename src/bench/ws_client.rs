//! WebSocket subscriber: connects to `/api/v1/topics/ws` on its own
//! connection (plain or TLS), sends `{"op":"subscribe"}` for one topic and classifies the
//! server's frames into [`Received`] items; or, as a chat user, connects to
//! the chat event stream `/api/v1/events` with its JWT (frames read by
//! [`super::chat::frames`]).
//!
//! Like the SSE client, it reads its socket in its own task and decodes in
//! place (see [`super::ws_frame`]): per event the hot path is one socket read
//! (often many frames), a frame header, and a substring search for the bench
//! stamp; no allocation, no UTF-8 check, no JSON parse. Pings are answered,
//! a close frame ends the stream. The event id is taken from the frame's
//! fixed prefix, or parsed only when a resume needs it ([`event_id_of`]).

use super::error::BenchError;
use super::h1;
use super::payload::{find_stamp, unix_micros};
use super::socket::Socket;
use super::stream::{CursorRef, Received, ReceivedSink};
use super::target::Target;
use super::tls::Alpn;
use super::ws_frame::{self, FrameSpan, OP_CLOSE, OP_PING, OP_TEXT};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;

/// First read size: small, so that idle connections stay cheap.
const FIRST_READ: usize = 4 << 10;

/// Largest read size, reached when reads keep filling the buffer.
const MAX_READ: usize = 64 << 10;

/// Reads handled in one wake-up before yielding to other subscribers.
const READS_PER_WAKE: usize = 16;

/// How every event frame of the topics API starts; the event id follows.
const EVENT_PREFIX: &[u8] = br#"{"op":"event","event":{"id":""#;

/// An open, subscribed WebSocket.
#[derive(Debug)]
pub struct WsConn {
    stream: Socket,
    /// Bytes read; complete frames start at `start`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes offered to the next read; doubles while reads fill it.
    read_size: usize,
    /// Frames to send (pongs, the close reply) not yet accepted by the socket.
    out: Vec<u8>,
    /// The server sent a close frame or closed the connection.
    closed: bool,
    /// Text messages that arrived before the subscription was confirmed, delivered first.
    early: VecDeque<Vec<u8>>,
    /// Which stream's frames these are.
    dialect: Dialect,
}

/// The frames a connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    /// The topics API (`{"op":…}` frames).
    Topics,
    /// A user's chat event stream (`{"type","id","data"}` frames).
    Chat,
}

/// One frame taken from the buffer, as far as the subscriber cares.
enum Taken {
    /// A text message: `buf[start..end]`.
    Text(usize, usize),
    /// Anything handled already (ping, pong) or ignored.
    Other,
}

/// A server frame other than an event, as far as the bench cares.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ControlFrame {
    op: String,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

impl WsConn {
    /// Connects, subscribes to `topic` (after `after` when given) and waits for `subscribed`.
    pub async fn open(
        target: &Target,
        topic: &str,
        after: Option<&str>,
    ) -> Result<Self, BenchError> {
        let mut headers = Vec::new();
        if !target.api_key.is_empty() {
            headers.push(("X-API-Key", target.api_key.as_str()));
        }
        let mut conn = Self::upgrade(target, &target.ws_path(), &headers, Dialect::Topics).await?;
        conn.subscribe(topic, after).await?;
        Ok(conn)
    }

    /// Opens the chat event stream of the user of `token` (resuming after
    /// `after` when given) and waits for its `Connected` frame, which is
    /// delivered first (it carries the position to resume from).
    pub async fn open_chat(
        target: &Target,
        token: &str,
        after: Option<&str>,
    ) -> Result<Self, BenchError> {
        let bearer = format!("Bearer {token}");
        let path = match after {
            Some(id) => format!("{}?lastEventId={id}", target.chat_events_path()),
            None => target.chat_events_path(),
        };
        let headers = [("Authorization", bearer.as_str())];
        let mut conn = Self::upgrade(target, &path, &headers, Dialect::Chat).await?;
        let Some(first) = conn.read_text().await? else {
            return Err(BenchError::run(
                "the chat stream closed before its Connected frame",
            ));
        };
        if !super::chat::frames::is_connected(&first) {
            return Err(BenchError::run(format!(
                "the chat stream began with {}",
                String::from_utf8_lossy(&first)
                    .chars()
                    .take(300)
                    .collect::<String>()
            )));
        }
        conn.early.push_back(first);
        Ok(conn)
    }

    /// Connects and upgrades `path` to a WebSocket.
    async fn upgrade(
        target: &Target,
        path: &str,
        extra: &[(&str, &str)],
        dialect: Dialect,
    ) -> Result<Self, BenchError> {
        let mut stream = Socket::connect(target, Alpn::Http1).await?;
        let key = generate_key();
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key.as_str()),
        ];
        headers.extend_from_slice(extra);
        h1::send_get(&mut stream, &target.authority, path, &headers).await?;
        let head = h1::read_head(&mut stream).await?;
        if head.status != 101 {
            let excerpt = String::from_utf8_lossy(&head.leftover)
                .chars()
                .take(300)
                .collect::<String>();
            return Err(BenchError::run(format!(
                "WebSocket upgrade refused with {}: {excerpt}",
                head.status
            )));
        }
        Ok(Self {
            stream,
            buf: head.leftover,
            start: 0,
            read_size: FIRST_READ,
            out: Vec::new(),
            closed: false,
            early: VecDeque::new(),
            dialect,
        })
    }

    /// Sends the subscribe op and waits for its confirmation.
    async fn subscribe(&mut self, topic: &str, after: Option<&str>) -> Result<(), BenchError> {
        let mut op = serde_json::json!({ "op": "subscribe", "topic": topic });
        if let Some(id) = after {
            op["after"] = serde_json::Value::from(id);
        }
        ws_frame::encode_client(OP_TEXT, op.to_string().as_bytes(), &mut self.out);
        self.send_out().await?;
        loop {
            let Some(text) = self.read_text().await? else {
                return Err(BenchError::run(format!(
                    "the WebSocket closed before confirming the subscription to {topic}"
                )));
            };
            match parse_control(&text) {
                Some(frame) if frame.op == "subscribed" => return Ok(()),
                Some(frame) if frame.op == "error" => {
                    return Err(BenchError::run(format!(
                        "subscribing to {topic} failed: {}",
                        error_text(&frame)
                    )));
                }
                _ => self.early.push_back(text),
            }
        }
    }

    /// Writes the queued frames.
    async fn send_out(&mut self) -> Result<(), BenchError> {
        let out = std::mem::take(&mut self.out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|err| BenchError::context("writing to the WebSocket", err))
    }

    /// The next text message, owned; `Ok(None)` once the connection is closed.
    async fn read_text(&mut self) -> Result<Option<Vec<u8>>, BenchError> {
        loop {
            while let Some(taken) = self.take_frame()? {
                if let Taken::Text(start, end) = taken {
                    return Ok(Some(self.buf[start..end].to_vec()));
                }
            }
            if !self.out.is_empty() {
                self.send_out().await?;
            }
            if self.closed || !poll_fn(|cx| self.poll_fill(cx)).await? {
                return Ok(None);
            }
        }
    }

    /// Waits for data, then delivers every complete message; `Ok(false)` once the connection is closed.
    pub async fn read_into(&mut self, sink: &mut impl ReceivedSink) -> Result<bool, BenchError> {
        if !self.early.is_empty() {
            let now = unix_micros();
            for text in std::mem::take(&mut self.early) {
                deliver(self.dialect, &text, now, sink);
            }
            return Ok(true);
        }
        let mut now = None;
        self.deliver_buffered(sink, &mut now)?;
        if now.is_some() {
            return Ok(true);
        }
        if self.closed {
            return Ok(false);
        }
        poll_fn(|cx| self.poll_read_into(cx, sink)).await
    }

    /// Delivers the complete messages buffered, all stamped with one clock reading.
    fn deliver_buffered(
        &mut self,
        sink: &mut impl ReceivedSink,
        now: &mut Option<u64>,
    ) -> Result<(), BenchError> {
        while let Some(taken) = self.take_frame()? {
            if let Taken::Text(start, end) = taken {
                let at = *now.get_or_insert_with(unix_micros);
                deliver(self.dialect, &self.buf[start..end], at, sink);
            }
        }
        self.try_send_out()
    }

    /// Reads while data is ready (up to [`READS_PER_WAKE`]), delivering as it goes.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut impl ReceivedSink,
    ) -> Poll<Result<bool, BenchError>> {
        let mut now = None;
        for _ in 0..READS_PER_WAKE {
            let open = match self.poll_fill(cx) {
                Poll::Pending if now.is_none() => return Poll::Pending,
                Poll::Pending => break,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(open)) => open,
            };
            if let Err(err) = self.deliver_buffered(sink, &mut now) {
                return Poll::Ready(Err(err));
            }
            if !open || self.closed {
                return Poll::Ready(Ok(false));
            }
        }
        if now.is_some() {
            return Poll::Ready(Ok(true));
        }
        // Only control frames in many reads: yield, then read on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Takes the next complete frame off the buffer; `Ok(None)` when none is complete.
    fn take_frame(&mut self) -> Result<Option<Taken>, BenchError> {
        if self.closed {
            return Ok(None);
        }
        let rest = &self.buf[self.start..];
        let Some(span) = ws_frame::parse_frame(rest).map_err(BenchError::run)? else {
            return Ok(None);
        };
        let taken = self.handle(span)?;
        self.start += span.len;
        Ok(Some(taken))
    }

    /// Acts on a frame at `start` (answers pings, notes a close).
    fn handle(&mut self, span: FrameSpan) -> Result<Taken, BenchError> {
        let payload = span.payload(&self.buf[self.start..]);
        if !span.fin {
            return Err(BenchError::run(
                "the server sent a fragmented message (not expected from Tidings)",
            ));
        }
        match span.opcode {
            OP_TEXT => Ok(Taken::Text(
                self.start + span.payload_start,
                self.start + span.len,
            )),
            OP_PING => {
                ws_frame::encode_client(ws_frame::OP_PONG, payload, &mut self.out);
                Ok(Taken::Other)
            }
            OP_CLOSE => {
                let code = payload.get(..2).unwrap_or_default().to_vec();
                ws_frame::encode_client(OP_CLOSE, &code, &mut self.out);
                self.closed = true;
                Ok(Taken::Other)
            }
            _ => Ok(Taken::Other),
        }
    }

    /// Writes queued frames without waiting; what the socket does not take now waits for the next time.
    fn try_send_out(&mut self) -> Result<(), BenchError> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(written) => drop(self.out.drain(..written)),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(BenchError::context("writing to the WebSocket", err)),
            }
        }
        Ok(())
    }

    /// One socket read into the buffer (consumed frames dropped first); `Ok(false)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, BenchError>> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(self.read_size);
        let offered = self.buf.capacity() - self.buf.len();
        let read = std::pin::pin!(self.stream.read_buf(&mut self.buf)).poll(cx);
        match read {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => {
                Poll::Ready(Err(BenchError::context("reading the WebSocket", err)))
            }
            Poll::Ready(Ok(count)) => {
                if count == offered {
                    self.read_size = (self.read_size * 2).min(MAX_READ);
                }
                Poll::Ready(Ok(count > 0))
            }
        }
    }
}

/// Parses a non-event frame.
fn parse_control(text: &[u8]) -> Option<ControlFrame> {
    serde_json::from_slice(text).ok()
}

/// `CODE: message` of an error frame.
fn error_text(frame: &ControlFrame) -> String {
    let code = frame
        .code
        .as_ref()
        .map(|code| {
            code.as_str()
                .map_or_else(|| code.to_string(), str::to_string)
        })
        .unwrap_or_else(|| "error".into());
    format!("{code}: {}", frame.message.as_deref().unwrap_or(""))
}

/// Hands what one server text frame holds to `sink`.
fn deliver(dialect: Dialect, text: &[u8], at: u64, sink: &mut impl ReceivedSink) {
    match dialect {
        Dialect::Topics => sink.deliver(classify(text), at),
        Dialect::Chat => super::chat::frames::deliver(text, at, sink),
    }
}

/// Classifies one server text frame of the topics API.
fn classify(text: &[u8]) -> Received<'_> {
    if let Some(stamp) = find_stamp(text) {
        return Received::Event {
            stamp,
            cursor: Some(cursor_of(text)),
        };
    }
    let Some(frame) = parse_control(text) else {
        return Received::ServerError {
            message: Cow::Owned(format!(
                "unreadable frame: {}",
                String::from_utf8_lossy(text)
                    .chars()
                    .take(200)
                    .collect::<String>()
            )),
        };
    };
    match frame.op.as_str() {
        "event" => Received::Foreign {
            cursor: Some(cursor_of(text)),
        },
        "gap" => Received::Gap {
            reason: Cow::Owned(frame.reason.unwrap_or_else(|| "gap".into())),
        },
        "error" => Received::ServerError {
            message: Cow::Owned(error_text(&frame)),
        },
        "closing" | "shutdown" => Received::Closing {
            reason: Cow::Owned(frame.reason.or(frame.topic).unwrap_or(frame.op)),
        },
        _ => Received::Control,
    }
}

/// Where to resume after an event frame: its id when the frame has the
/// usual prefix, else the whole frame (parsed only if a resume needs it).
fn cursor_of(text: &[u8]) -> CursorRef<'_> {
    let id = text
        .strip_prefix(EVENT_PREFIX)
        .and_then(|rest| rest.get(..memchr::memchr(b'"', rest)?));
    id.map_or(CursorRef::WsFrame(text), CursorRef::Id)
}

/// The `event.id` of an event frame.
pub fn event_id_of(text: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Frame {
        event: EventId,
    }
    #[derive(Deserialize)]
    struct EventId {
        id: String,
    }
    serde_json::from_slice::<Frame>(text)
        .ok()
        .map(|frame| frame.event.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stream::Cursor;

    #[test]
    fn frames_are_classified() {
        let event = r#"{"op":"event","event":{"id":"01J","topic":"t","type":"bench","actor":{"id":"x"},"data":{"tidingsBenchStamp":"1.9.5"}}}"#;
        match classify(event.as_bytes()) {
            Received::Event { stamp, cursor } => {
                assert_eq!((stamp.topic, stamp.seq, stamp.sent_us), (1, 9, 5));
                let mut slot = None;
                Cursor::remember(&mut slot, cursor.expect("a cursor"));
                assert_eq!(slot.and_then(|c| c.event_id()), Some("01J".into()));
            }
            other => panic!("expected an event, got {other:?}"),
        }
        let foreign = r#"{"op":"event","event":{"id":"01K","data":{}}}"#;
        assert!(matches!(
            classify(foreign.as_bytes()),
            Received::Foreign { .. }
        ));
        let gap = r#"{"op":"gap","topic":"t","reason":"expired","oldestId":"01A"}"#;
        assert!(
            matches!(classify(gap.as_bytes()), Received::Gap { reason } if reason == "expired")
        );
        let error = r#"{"op":"error","code":"FORBIDDEN","message":"no"}"#;
        assert!(matches!(
            classify(error.as_bytes()),
            Received::ServerError { message } if message == "FORBIDDEN: no"
        ));
        assert!(matches!(
            classify(br#"{"op":"subscribed","topic":"t"}"#),
            Received::Control
        ));
        assert!(matches!(
            classify(b"not json"),
            Received::ServerError { .. }
        ));
    }

    #[test]
    fn event_ids_come_from_the_prefix_or_lazily_from_the_json() {
        let usual = br#"{"op":"event","event":{"id":"01J","data":{}}}"#;
        assert!(matches!(cursor_of(usual), CursorRef::Id(b"01J")));
        let reordered = br#"{"event":{"data":{},"id":"01K"},"op":"event"}"#;
        assert!(matches!(cursor_of(reordered), CursorRef::WsFrame(_)));
        assert_eq!(event_id_of(reordered), Some("01K".into()));
        assert_eq!(event_id_of(br#"{"op":"gap"}"#), None);
    }
}
