//! One user's notification stream, `GET /api/v2/ticketing/ticket/sse/notifications`,
//! over its own HTTP/1.1 connection (plain or TLS) with the headers the
//! spec names (`Authorization`, `x-tenantid`, `realmname`, `accept`).
//!
//! Built from the SSE subscriber's parts ([`h1`] for the request and head,
//! [`SseBody`] for the body, [`SseScanner`] for frames); the frames are
//! read as the spec's events: `notification` (its `id:` is remembered, so
//! a reopened stream resumes with `Last-Event-ID`), `error` (reported),
//! `connected`, `heartbeat` and `retry` (nothing to account).
//!
//! Invariants: [`NotificationStream::open`] returns only after the
//! `connected` event (frames before it are kept and handed out first);
//! [`NotificationStream::read`] is cancel-safe: a fill takes all of one
//! read or nothing.

use super::api::BASE;
use super::identity::Realm;
use super::notice::Notice;
use crate::bench::error::BenchError;
use crate::bench::h1;
use crate::bench::socket::Socket;
use crate::bench::sse::{Frame, SseFrame, SseScanner};
use crate::bench::sse_body::SseBody;
use crate::bench::target::Target;
use crate::bench::tls::Alpn;
use std::collections::VecDeque;
use std::future::poll_fn;

/// What a frame of the stream was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A notification.
    Notification(Notice),
    /// An `error` event (`code: message`) or an unreadable notification.
    Problem(String),
    /// Anything else (`heartbeat`, a bare `retry`).
    Control,
}

/// An open notification stream.
#[derive(Debug)]
pub struct NotificationStream {
    body: SseBody,
    scanner: SseScanner,
    /// Frames that came before `connected`.
    early: VecDeque<SseFrame>,
    ended: bool,
    /// The `id:` of the last notification.
    last_id: Option<String>,
}

impl NotificationStream {
    /// Opens the stream of the user of `token` (resuming after `after`) and
    /// waits for its `connected` event.
    pub async fn open(
        target: &Target,
        realm: &Realm,
        token: &str,
        after: Option<&str>,
    ) -> Result<Self, BenchError> {
        let bearer = format!("Bearer {token}");
        let mut headers = vec![
            ("accept", "text/event-stream"),
            ("authorization", bearer.as_str()),
            ("x-tenantid", realm.tenant.as_str()),
            ("realmname", realm.name.as_str()),
        ];
        if let Some(id) = after {
            headers.push(("last-event-id", id));
        }
        let path = target.path(&format!("{BASE}/ticket/sse/notifications"));
        let mut socket = Socket::connect(target, Alpn::Http1).await?;
        h1::send_get(&mut socket, &target.authority, &path, &headers).await?;
        let head = h1::read_head(&mut socket).await?;
        let mut stream = Self {
            body: SseBody::http1(socket, head.framing),
            scanner: SseScanner::with_capacity(SseBody::first_read()),
            early: VecDeque::new(),
            ended: false,
            last_id: after.map(str::to_string),
        };
        stream.ended = !stream.body.start(&head.leftover, &mut stream.scanner)?;
        if head.status != 200 {
            let excerpt = stream.excerpt().await;
            return Err(BenchError::run(format!(
                "the notification stream answered {}: {excerpt}",
                head.status
            )));
        }
        stream.await_connected().await?;
        Ok(stream)
    }

    /// The `id:` of the last notification received (or resumed after).
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Reads until the `connected` event, keeping earlier frames.
    async fn await_connected(&mut self) -> Result<(), BenchError> {
        loop {
            while let Some(frame) = self.scanner.next_frame().map_err(sse_error)? {
                if frame.event == Some(b"connected") {
                    return Ok(());
                }
                self.early.push_back(frame.to_owned_frame());
            }
            if !self.fill().await? {
                return Err(BenchError::run(
                    "the notification stream closed before `event: connected`",
                ));
            }
        }
    }

    /// One read of the body; `Ok(false)` once it has ended.
    async fn fill(&mut self) -> Result<bool, BenchError> {
        if self.ended {
            return Ok(false);
        }
        let open = poll_fn(|cx| self.body.poll_fill(cx, &mut self.scanner)).await?;
        self.ended = !open;
        Ok(open)
    }

    /// The start of an error answer's body.
    async fn excerpt(&mut self) -> String {
        while self.scanner.buffer().len() < 300 && matches!(self.fill().await, Ok(true)) {}
        String::from_utf8_lossy(self.scanner.buffer())
            .chars()
            .take(300)
            .collect()
    }

    /// Waits for data and appends everything complete to `into`;
    /// `Ok(false)` once the server has ended the stream.
    pub async fn read(&mut self, into: &mut Vec<Incoming>) -> Result<bool, BenchError> {
        if self.drain(into)? {
            return Ok(true);
        }
        let open = self.fill().await?;
        let any = self.drain(into)?;
        Ok(open || any)
    }

    /// Moves the kept and buffered frames to `into`; whether there were any.
    fn drain(&mut self, into: &mut Vec<Incoming>) -> Result<bool, BenchError> {
        let before = into.len();
        while let Some(frame) = self.early.pop_front() {
            into.push(classify(Frame::of(&frame), &mut self.last_id));
        }
        while let Some(frame) = self.scanner.next_frame().map_err(sse_error)? {
            into.push(classify(frame, &mut self.last_id));
        }
        Ok(into.len() > before)
    }
}

/// An SSE format error as a run failure.
fn sse_error(err: crate::bench::sse::SseError) -> BenchError {
    BenchError::run(err.to_string())
}

/// Reads one frame, remembering a notification's `id:` in `last_id`.
fn classify(frame: Frame<'_>, last_id: &mut Option<String>) -> Incoming {
    match frame.event {
        Some(b"notification") => {
            if let Some(id) = frame.id {
                *last_id = Some(String::from_utf8_lossy(id).into_owned());
            }
            match Notice::parse(frame.data) {
                Ok(notice) => Incoming::Notification(notice),
                Err(problem) => Incoming::Problem(problem),
            }
        }
        Some(b"error") => Incoming::Problem(format!(
            "error event: {}",
            String::from_utf8_lossy(frame.data)
        )),
        _ => Incoming::Control,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::tickets::notice::Kind;

    fn frame<'a>(event: &'a str, id: Option<&'a str>, data: &'a str) -> Frame<'a> {
        Frame {
            id: id.map(str::as_bytes),
            event: Some(event.as_bytes()),
            data: data.as_bytes(),
            retry: None,
        }
    }

    #[test]
    fn frames_are_read_as_the_specs_events() {
        let mut last = None;
        let data = r#"{"id":"n1","type":"assignment","ticketId":"5"}"#;
        let Incoming::Notification(notice) =
            classify(frame("notification", Some("01J"), data), &mut last)
        else {
            panic!("a notification");
        };
        assert_eq!((notice.ticket, notice.kind), (5, Kind::Assignment));
        assert_eq!(last.as_deref(), Some("01J"));
        let error = classify(
            frame("error", None, r#"{"code":"TOKEN_EXPIRED","message":"m"}"#),
            &mut last,
        );
        assert!(matches!(error, Incoming::Problem(text) if text.contains("TOKEN_EXPIRED")));
        assert_eq!(
            classify(frame("heartbeat", None, "{}"), &mut last),
            Incoming::Control
        );
        assert!(matches!(
            classify(frame("notification", Some("01K"), "nope"), &mut last),
            Incoming::Problem(_)
        ));
        assert_eq!(
            last.as_deref(),
            Some("01K"),
            "an unreadable one still moves the cursor"
        );
    }
}
