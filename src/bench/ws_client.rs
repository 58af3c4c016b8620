//! WebSocket subscriber: connects to `/api/v1/topics/ws` on its own TCP
//! connection, sends `{"op":"subscribe"}` for one topic and classifies the
//! server's frames into [`Delivery`] items.
//!
//! Event frames are recognised by the bench stamp without parsing the JSON;
//! the event id is parsed only when a resume needs it ([`event_id_of`]).
//! [`WsConn::read_into`] drains every message that is ready in one poll, so
//! a burst of events costs one task wake-up, not one per message.

use super::error::BenchError;
use super::http::connect_tcp;
use super::payload::{find_stamp, unix_micros};
use super::stream::{CursorRef, Delivery, DeliverySink};
use super::target::Target;
use futures_util::{SinkExt, StreamExt};
use http::HeaderValue;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

/// Read buffer per connection: small, so that many idle connections stay cheap.
const READ_BUFFER: usize = 4096;

/// Messages handled in one wake-up before yielding to other subscribers.
const MESSAGES_PER_WAKE: usize = 256;

/// An open, subscribed WebSocket.
#[derive(Debug)]
pub struct WsConn {
    ws: WebSocketStream<TcpStream>,
    /// Frames that arrived before the subscription was confirmed, delivered first.
    early: VecDeque<Utf8Bytes>,
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
        let tcp = connect_tcp(target).await?;
        let url = format!("ws://{}{}", target.authority, target.ws_path());
        let mut request = url
            .into_client_request()
            .map_err(|err| BenchError::context("building the WebSocket request", err))?;
        let key = HeaderValue::from_str(&target.api_key)
            .map_err(|_| BenchError::usage("the API key is not a valid header value"))?;
        request.headers_mut().insert("x-api-key", key);
        let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
        let (ws, _) = tokio_tungstenite::client_async_with_config(request, tcp, Some(config))
            .await
            .map_err(describe_handshake_error)?;
        let mut conn = Self {
            ws,
            early: VecDeque::new(),
        };
        conn.subscribe(topic, after).await?;
        Ok(conn)
    }

    /// Sends the subscribe op and waits for its confirmation.
    async fn subscribe(&mut self, topic: &str, after: Option<&str>) -> Result<(), BenchError> {
        let mut op = serde_json::json!({ "op": "subscribe", "topic": topic });
        if let Some(id) = after {
            op["after"] = serde_json::Value::from(id);
        }
        self.ws
            .send(Message::text(op.to_string()))
            .await
            .map_err(|err| BenchError::context("sending subscribe", err))?;
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

    /// The next text frame; `Ok(None)` once the connection is closed.
    async fn read_text(&mut self) -> Result<Option<Utf8Bytes>, BenchError> {
        loop {
            match self.ws.next().await {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => return Ok(Some(text)),
                Some(Ok(_)) => continue,
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => return Ok(None),
                Some(Err(err)) => return Err(BenchError::context("reading the WebSocket", err)),
            }
        }
    }

    /// Waits for a message, then delivers every message that is ready;
    /// `Ok(false)` once the connection is closed.
    pub async fn read_into(&mut self, sink: &mut impl DeliverySink) -> Result<bool, BenchError> {
        if !self.early.is_empty() {
            let now = unix_micros();
            for text in std::mem::take(&mut self.early) {
                sink.deliver(classify(&text), now);
            }
            return Ok(true);
        }
        poll_fn(|cx| self.poll_read_into(cx, sink)).await
    }

    /// Delivers ready messages (up to [`MESSAGES_PER_WAKE`]).
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut impl DeliverySink,
    ) -> Poll<Result<bool, BenchError>> {
        let mut received = None;
        for _ in 0..MESSAGES_PER_WAKE {
            let message = match self.ws.poll_next_unpin(cx) {
                Poll::Pending if received.is_some() => return Poll::Ready(Ok(true)),
                Poll::Pending => return Poll::Pending,
                Poll::Ready(message) => message,
            };
            match message {
                None | Some(Ok(Message::Close(_))) => return Poll::Ready(Ok(false)),
                Some(Ok(Message::Text(text))) => {
                    let at = *received.get_or_insert_with(unix_micros);
                    sink.deliver(classify(&text), at);
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(Ok(false));
                }
                Some(Err(err)) => {
                    return Poll::Ready(Err(BenchError::context("reading the WebSocket", err)));
                }
            }
        }
        if received.is_none() {
            // Only control messages so far and more are ready: come back soon.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(true))
    }
}

/// Explains a failed WebSocket handshake, with the HTTP status when there was one.
fn describe_handshake_error(err: WsError) -> BenchError {
    match err {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_ref()
                .map(|bytes| {
                    String::from_utf8_lossy(bytes)
                        .chars()
                        .take(300)
                        .collect::<String>()
                })
                .unwrap_or_default();
            BenchError::run(format!(
                "WebSocket upgrade refused with {}: {body}",
                response.status()
            ))
        }
        other => BenchError::context("WebSocket handshake", other),
    }
}

/// Parses a non-event frame.
fn parse_control(text: &str) -> Option<ControlFrame> {
    serde_json::from_str(text).ok()
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

/// Classifies one server text frame.
fn classify(text: &Utf8Bytes) -> Delivery<'_> {
    if let Some(stamp) = find_stamp(text.as_bytes()) {
        return Delivery::Event {
            stamp,
            cursor: Some(CursorRef::WsFrame(text)),
        };
    }
    let Some(frame) = parse_control(text) else {
        return Delivery::ServerError {
            message: Cow::Owned(format!(
                "unreadable frame: {}",
                text.chars().take(200).collect::<String>()
            )),
        };
    };
    match frame.op.as_str() {
        "event" => Delivery::Foreign {
            cursor: Some(CursorRef::WsFrame(text)),
        },
        "gap" => Delivery::Gap {
            reason: Cow::Owned(frame.reason.unwrap_or_else(|| "gap".into())),
        },
        "error" => Delivery::ServerError {
            message: Cow::Owned(error_text(&frame)),
        },
        "closing" | "shutdown" => Delivery::Closing {
            reason: Cow::Owned(frame.reason.or(frame.topic).unwrap_or(frame.op)),
        },
        _ => Delivery::Control,
    }
}

/// The `event.id` of an event frame.
pub fn event_id_of(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Frame {
        event: EventId,
    }
    #[derive(Deserialize)]
    struct EventId {
        id: String,
    }
    serde_json::from_str::<Frame>(text)
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
        let event = Utf8Bytes::from(event);
        match classify(&event) {
            Delivery::Event { stamp, cursor } => {
                assert_eq!((stamp.topic, stamp.seq, stamp.sent_us), (1, 9, 5));
                let mut slot = None;
                Cursor::remember(&mut slot, cursor.expect("a cursor"));
                assert_eq!(slot.and_then(|c| c.event_id()), Some("01J".into()));
            }
            other => panic!("expected an event, got {other:?}"),
        }
        let foreign = r#"{"op":"event","event":{"id":"01K","data":{}}}"#;
        assert!(matches!(
            classify(&Utf8Bytes::from(foreign)),
            Delivery::Foreign { .. }
        ));
        let gap = r#"{"op":"gap","topic":"t","reason":"expired","oldestId":"01A"}"#;
        assert!(
            matches!(classify(&Utf8Bytes::from(gap)), Delivery::Gap { reason } if reason == "expired")
        );
        let error = r#"{"op":"error","code":"FORBIDDEN","message":"no"}"#;
        assert!(matches!(
            classify(&Utf8Bytes::from(error)),
            Delivery::ServerError { message } if message == "FORBIDDEN: no"
        ));
        assert!(matches!(
            classify(&Utf8Bytes::from(r#"{"op":"subscribed","topic":"t"}"#)),
            Delivery::Control
        ));
        assert!(matches!(
            classify(&Utf8Bytes::from("not json")),
            Delivery::ServerError { .. }
        ));
    }

    #[test]
    fn event_ids_are_read_lazily() {
        assert_eq!(
            event_id_of(r#"{"op":"event","event":{"id":"01J","data":{}}}"#),
            Some("01J".into())
        );
        assert_eq!(event_id_of(r#"{"op":"gap"}"#), None);
    }
}
