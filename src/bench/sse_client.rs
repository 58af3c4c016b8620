//! SSE subscriber: `GET /api/v1/topics/{topic}/stream` over its own HTTP/1.1
//! connection, frames parsed with [`SseParser`] and classified into
//! [`Delivery`] items.

use super::error::BenchError;
use super::http::{Body, HttpClient, Protocol};
use super::payload::find_stamp;
use super::sse::{SseFrame, SseItem, SseParser};
use super::stream::{Cursor, Delivery};
use super::target::Target;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::collections::VecDeque;

/// An open SSE stream.
#[derive(Debug)]
pub struct SseConn {
    /// Keeps the connection's sending half alive while the body streams.
    _client: HttpClient,
    body: Incoming,
    parser: SseParser,
    pending: VecDeque<SseItem>,
}

impl SseConn {
    /// Opens the stream of `topic` (after `after` when given) and waits for `event: connected`.
    pub async fn open(
        target: &Target,
        topic: &str,
        after: Option<&str>,
    ) -> Result<Self, BenchError> {
        let mut client = HttpClient::connect(target, Protocol::Http1).await?;
        let mut request = client
            .request(Method::GET, &target.stream_path(topic))
            .header(header::ACCEPT, "text/event-stream");
        if let Some(id) = after {
            request = request.header("last-event-id", id);
        }
        let request = request
            .body(Body::default())
            .map_err(|err| BenchError::context("building the stream request", err))?;
        let response = client.send(request).await?;
        let status = response.status();
        let (_, body) = response.into_parts();
        if status != StatusCode::OK {
            let excerpt = read_excerpt(body).await;
            return Err(BenchError::run(format!(
                "GET stream of {topic} answered {status}: {excerpt}"
            )));
        }
        let mut conn = Self {
            _client: client,
            body,
            parser: SseParser::new(),
            pending: VecDeque::new(),
        };
        conn.await_connected(topic).await?;
        Ok(conn)
    }

    /// Reads until the `connected` frame, keeping any earlier items queued.
    async fn await_connected(&mut self, topic: &str) -> Result<(), BenchError> {
        let mut scanned = 0;
        loop {
            if let Some(at) = self.pending.iter().skip(scanned).position(is_connected) {
                self.pending.remove(scanned + at);
                return Ok(());
            }
            scanned = self.pending.len();
            if !self.read_chunk().await? {
                return Err(BenchError::run(format!(
                    "the stream of {topic} closed before `event: connected`"
                )));
            }
        }
    }

    /// Reads one body chunk into the parser; false at the end of the stream.
    async fn read_chunk(&mut self) -> Result<bool, BenchError> {
        loop {
            match self.body.frame().await {
                None => return Ok(false),
                Some(Err(err)) => return Err(BenchError::context("reading the SSE stream", err)),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.parser
                            .feed(&data, &mut self.pending)
                            .map_err(|err| BenchError::run(err.to_string()))?;
                        return Ok(true);
                    }
                }
            }
        }
    }

    /// The next delivery; `Ok(None)` when the server ended the stream.
    pub async fn next(&mut self) -> Result<Option<Delivery>, BenchError> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(Some(classify(item)));
            }
            if !self.read_chunk().await? {
                return Ok(None);
            }
        }
    }
}

/// Whether an item is the `event: connected` frame.
fn is_connected(item: &SseItem) -> bool {
    matches!(item, SseItem::Frame(frame) if frame.event.as_deref() == Some("connected"))
}

/// Turns a parsed item into a delivery.
fn classify(item: SseItem) -> Delivery {
    let SseItem::Frame(frame) = item else {
        return Delivery::Control;
    };
    match frame.event.as_deref() {
        Some("connected") => Delivery::Control,
        Some("reset") => Delivery::Gap { reason: frame.data },
        Some(reason @ ("connection-timeout" | "shutdown")) => Delivery::Closing {
            reason: reason.to_string(),
        },
        _ => classify_event(frame),
    }
}

/// An ordinary frame: a bench event, someone else's event, or a bare control frame.
fn classify_event(frame: SseFrame) -> Delivery {
    let cursor = frame.id.map(Cursor::Id);
    match find_stamp(&frame.data) {
        Some(stamp) => Delivery::Event { stamp, cursor },
        None if cursor.is_some() => Delivery::Foreign { cursor },
        None => Delivery::Control,
    }
}

/// The start of an error body, for messages.
async fn read_excerpt(body: Incoming) -> String {
    match body.collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            String::from_utf8_lossy(&bytes).chars().take(300).collect()
        }
        Err(err) => format!("(body unreadable: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(event: Option<&str>, id: Option<&str>, data: &str) -> SseItem {
        SseItem::Frame(SseFrame {
            id: id.map(str::to_string),
            event: event.map(str::to_string),
            data: data.to_string(),
            retry: None,
        })
    }

    #[test]
    fn frames_are_classified() {
        let stamped = r#"{"id":"01J","data":{"tidingsBenchStamp":"0.5.100"}}"#;
        match classify(frame(Some("bench"), Some("01J"), stamped)) {
            Delivery::Event { stamp, cursor } => {
                assert_eq!(stamp.seq, 5);
                assert_eq!(cursor.and_then(|c| c.event_id()), Some("01J".to_string()));
            }
            other => panic!("expected an event, got {other:?}"),
        }
        assert!(matches!(
            classify(frame(Some("other"), Some("01K"), "{}")),
            Delivery::Foreign { .. }
        ));
        assert!(matches!(
            classify(frame(Some("reset"), None, r#"{"reason":"expired"}"#)),
            Delivery::Gap { .. }
        ));
        assert!(matches!(
            classify(frame(Some("shutdown"), None, "{}")),
            Delivery::Closing { .. }
        ));
        assert!(matches!(
            classify(frame(Some("connected"), None, "{}")),
            Delivery::Control
        ));
        assert!(matches!(
            classify(SseItem::Comment("hb".into())),
            Delivery::Control
        ));
        assert!(is_connected(&frame(Some("connected"), None, "")));
    }
}
