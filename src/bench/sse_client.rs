//! SSE subscriber: `GET /api/v1/topics/{topic}/stream` over its own
//! HTTP/1.1 connection (plain or TLS), read in the subscriber's task (see
//! [`super::h1`]), or as one stream of a shared HTTP/2 connection
//! ([`super::h2_pool`]); the body ([`SseBody`]) is scanned in place with
//! [`SseScanner`] and its frames classified into [`Received`] items.
//!
//! Per event the hot path is: one socket read (often several events), the
//! chunk framing stripped in place, a line scan with `memchr`, and a substring
//! search for the stamp; no allocation, no UTF-8 check, no JSON parse.

use super::error::BenchError;
use super::h1;
use super::h2_pool::H2Pool;
use super::payload::{find_stamp, unix_micros};
use super::socket::Socket;
use super::sse::{Frame, SseFrame, SseScanner};
use super::sse_body::SseBody;
use super::stream::{CursorRef, Received, ReceivedSink};
use super::target::Target;
use super::tls::Alpn;
use http::{Request, header};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::task::{Context, Poll};

/// Reads handled in one wake-up before yielding to other subscribers.
const READS_PER_WAKE: usize = 16;

/// An open SSE stream.
#[derive(Debug)]
pub struct SseConn {
    body: SseBody,
    scanner: SseScanner,
    /// Frames that arrived before `event: connected`, delivered first.
    early: VecDeque<SseFrame>,
    /// The body has ended (end of stream or terminating chunk).
    ended: bool,
}

impl SseConn {
    /// Opens the stream of `topic` (after `after` when given) and waits for
    /// `event: connected`: on its own connection, or as an h2 stream of `h2`.
    pub async fn open(
        target: &Target,
        topic: &str,
        after: Option<&str>,
        h2: Option<&H2Pool>,
    ) -> Result<Self, BenchError> {
        let mut headers = vec![("Accept", "text/event-stream")];
        if !target.api_key.is_empty() {
            headers.push(("X-API-Key", target.api_key.as_str()));
        }
        if let Some(id) = after {
            headers.push(("Last-Event-ID", id));
        }
        let path = target.stream_path(topic);
        let (status, body, leftover) = match h2 {
            None => request_http1(target, &path, &headers).await?,
            Some(pool) => request_http2(target, pool, &path, &headers).await?,
        };
        let mut conn = Self {
            body,
            scanner: SseScanner::with_capacity(SseBody::first_read()),
            early: VecDeque::new(),
            ended: false,
        };
        conn.ended = !conn.body.start(&leftover, &mut conn.scanner)?;
        if status != 200 {
            let excerpt = conn.read_excerpt().await;
            return Err(BenchError::run(format!(
                "GET stream of {topic} answered {status}: {excerpt}"
            )));
        }
        conn.await_connected(topic).await?;
        Ok(conn)
    }

    /// Reads until the `connected` frame, keeping any earlier frames for delivery.
    async fn await_connected(&mut self, topic: &str) -> Result<(), BenchError> {
        loop {
            while let Some(frame) = self.scanner.next_frame().map_err(run_error)? {
                if frame.event == Some(b"connected") {
                    return Ok(());
                }
                self.early.push_back(frame.to_owned_frame());
            }
            if self.ended || !poll_fn(|cx| self.poll_fill(cx)).await? {
                return Err(BenchError::run(format!(
                    "the stream of {topic} closed before `event: connected`"
                )));
            }
        }
    }

    /// The start of an error body, for messages.
    async fn read_excerpt(&mut self) -> String {
        while self.scanner.buffer().len() < 300 && !self.ended {
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(err) => return format!("(body unreadable: {err})"),
            }
        }
        String::from_utf8_lossy(self.scanner.buffer())
            .chars()
            .take(300)
            .collect()
    }

    /// Waits for data, then delivers every complete frame; `Ok(false)` at the end of the stream.
    pub async fn read_into(&mut self, sink: &mut impl ReceivedSink) -> Result<bool, BenchError> {
        if self.deliver_buffered(sink)? {
            return Ok(true);
        }
        if self.ended {
            return Ok(false);
        }
        poll_fn(|cx| self.poll_read_into(cx, sink)).await
    }

    /// Delivers frames already buffered, all stamped with one clock reading; whether there were any.
    fn deliver_buffered(&mut self, sink: &mut impl ReceivedSink) -> Result<bool, BenchError> {
        let mut now = None;
        while let Some(frame) = self.early.pop_front() {
            sink.deliver(
                classify(Frame::of(&frame)),
                *now.get_or_insert_with(unix_micros),
            );
        }
        while let Some(frame) = self.scanner.next_frame().map_err(run_error)? {
            sink.deliver(classify(frame), *now.get_or_insert_with(unix_micros));
        }
        Ok(now.is_some())
    }

    /// Reads while data is ready (up to [`READS_PER_WAKE`]), delivering as it goes.
    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut impl ReceivedSink,
    ) -> Poll<Result<bool, BenchError>> {
        let mut progressed = false;
        for _ in 0..READS_PER_WAKE {
            match self.poll_fill(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Ready(Ok(open)) => {
                    if let Err(err) = self.deliver_buffered(sink) {
                        return Poll::Ready(Err(err));
                    }
                    if !open {
                        return Poll::Ready(Ok(false));
                    }
                    progressed = true;
                }
            }
        }
        if progressed {
            Poll::Ready(Ok(true))
        } else {
            Poll::Pending
        }
    }

    /// One read of the body into the scanner; `Ok(false)` when the body has ended.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, BenchError>> {
        let open = std::task::ready!(self.body.poll_fill(cx, &mut self.scanner))?;
        self.ended = !open;
        Poll::Ready(Ok(open))
    }
}

/// What a stream request answered: the status, the body, and the (still
/// encoded) body bytes that came with an HTTP/1.1 head.
type Answer = (u16, SseBody, Vec<u8>);

/// `GET path` on a connection of its own.
async fn request_http1(
    target: &Target,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, BenchError> {
    let mut socket = Socket::connect(target, Alpn::Http1).await?;
    h1::send_get(&mut socket, &target.authority, path, headers).await?;
    let head = h1::read_head(&mut socket).await?;
    let body = SseBody::http1(socket, head.framing);
    Ok((head.status, body, head.leftover))
}

/// `GET path` as a stream of one of the pool's HTTP/2 connections.
async fn request_http2(
    target: &Target,
    pool: &H2Pool,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, BenchError> {
    let mut client = pool.stream_client().await?;
    let mut request = Request::get(format!("{}://{}{path}", target.scheme(), target.authority));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Default::default())
        .map_err(|err| BenchError::context("building the stream request", err))?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    Ok((status, SseBody::Http2(response.into_body()), Vec::new()))
}

/// An SSE format error as a run failure.
fn run_error(err: super::sse::SseError) -> BenchError {
    BenchError::run(err.to_string())
}

/// Text of a frame field, borrowed when it is valid UTF-8.
fn text(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Turns a frame into a delivery.
fn classify(frame: Frame<'_>) -> Received<'_> {
    match frame.event {
        Some(b"connected") => Received::Control,
        Some(b"reset") => Received::Gap {
            reason: text(frame.data),
        },
        Some(reason @ (b"connection-timeout" | b"shutdown")) => Received::Closing {
            reason: text(reason),
        },
        _ => classify_event(frame),
    }
}

/// An ordinary frame: a bench event, someone else's event, or a bare control frame.
fn classify_event(frame: Frame<'_>) -> Received<'_> {
    let cursor = frame.id.map(CursorRef::Id);
    match find_stamp(frame.data) {
        Some(stamp) => Received::Event { stamp, cursor },
        None if cursor.is_some() => Received::Foreign { cursor },
        None => Received::Control,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stream::Cursor;

    fn frame(event: Option<&str>, id: Option<&str>, data: &str) -> SseFrame {
        SseFrame {
            id: id.map(str::to_string),
            event: event.map(str::to_string),
            data: data.to_string(),
            retry: None,
        }
    }

    fn classify_owned(frame: &SseFrame) -> Received<'_> {
        classify(Frame::of(frame))
    }

    #[test]
    fn frames_are_classified() {
        let stamped = r#"{"id":"01J","data":{"tidingsBenchStamp":"0.5.100"}}"#;
        match classify_owned(&frame(Some("bench"), Some("01J"), stamped)) {
            Received::Event { stamp, cursor } => {
                assert_eq!(stamp.seq, 5);
                let mut slot = None;
                Cursor::remember(&mut slot, cursor.expect("a cursor"));
                assert_eq!(slot.and_then(|c| c.event_id()), Some("01J".to_string()));
            }
            other => panic!("expected an event, got {other:?}"),
        }
        assert!(matches!(
            classify_owned(&frame(Some("other"), Some("01K"), "{}")),
            Received::Foreign { .. }
        ));
        assert!(matches!(
            classify_owned(&frame(Some("reset"), None, r#"{"reason":"expired"}"#)),
            Received::Gap { .. }
        ));
        assert!(matches!(
            classify_owned(&frame(Some("shutdown"), None, "{}")),
            Received::Closing { .. }
        ));
        assert!(matches!(
            classify_owned(&frame(Some("connected"), None, "{}")),
            Received::Control
        ));
        assert!(matches!(
            classify_owned(&frame(None, None, "")),
            Received::Control
        ));
    }
}
