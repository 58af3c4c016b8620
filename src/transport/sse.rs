//! Server-Sent Events: one subscription streamed as `text/event-stream`.
//!
//! Wire contract: first `retry: <ms>`, then the surface's `connected` frame
//! with `id: <position>` (the subscription's position: the client's cursor,
//! or the durable mark when it connected without one, so that a client that
//! has seen no event yet still resumes exactly with `Last-Event-ID`); then
//! events (`id:`, `event:`, `data:` with one line of JSON); a `reset` frame
//! with `{"reason","oldestId"}` when the resume cursor is a gap; a heartbeat
//! every [`SseSettings::heartbeat`] (`--sse-heartbeat`, or a surface's own
//! interval): a `: heartbeat` comment, or the surface's own frame
//! ([`SseFormat::heartbeat`]); after `--sse-lifetime` a
//! `connection-timeout` frame and a clean end (the browser reconnects with
//! `Last-Event-ID`); when the credential that opened the stream expires, an
//! `error` frame `{"code":"TOKEN_EXPIRED"}`, and when it is revoked (or its
//! realm or tenant deleted) an `error` frame `{"code":"CREDENTIAL_REVOKED"}`,
//! then the end; on server shutdown a `shutdown` frame and a clean end; when
//! the log cannot be read, an `error` frame (data from
//! [`SseFormat::read_failure`]) and the end.
//!
//! Invariants: every frame batch is one body chunk; a chunk is written as soon
//! as it is ready unless the stream is busy, when [`Coalescer`] holds it
//! briefly so later events join it (the first event after a quiet spell is
//! never delayed; events are never dropped or reordered); `data:` never
//! contains a raw newline (JSON is encoded on one line); each event's frame
//! bytes are built once and shared.

use crate::auth::Admission;
use crate::core::hub::{Batch, Feed, Start, Subscription};
use crate::core::lifecycle::Lifecycle;
use crate::core::log::LogEvent;
use crate::core::log::encoding::{DATA_JSON, Encoding};
use crate::core::log::read::Gap;
use crate::core::metrics::{DeliveryCounter, Metrics, OpenGuard};
use crate::error::ApiError;
use crate::http::{Body, Request, Response};
use crate::transport::coalesce::{Coalescer, WritePacing};
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;
use ulid::Ulid;

/// Transport label in metrics.
const TRANSPORT: &str = "sse";

/// Stream timing and batching.
#[derive(Debug, Clone, Copy)]
pub struct SseSettings {
    /// Reconnection delay announced to the client.
    pub retry_ms: u64,
    /// Interval of heartbeats.
    pub heartbeat: Duration,
    /// Lifetime after which the connection is cycled.
    pub lifetime: Duration,
    /// Most events written in one chunk.
    pub max_batch: usize,
    /// How a busy stream holds deliveries so that later events join its
    /// chunk (see [`Coalescer`]).
    pub write_interval: WritePacing,
}

/// How one surface names its framing events and encodes its events.
pub trait SseFormat: Send + Sync + 'static {
    /// Data of the `connected` frame.
    fn connected(&self) -> Value;
    /// The frame for an event, or `None` to skip it for this client.
    fn event(&self, event: &LogEvent) -> Option<Bytes>;

    /// The keep-alive written every heartbeat interval: a `: heartbeat`
    /// comment unless the surface's spec shows an event.
    fn heartbeat(&self) -> Bytes {
        Bytes::from_static(b": heartbeat\n\n")
    }

    /// Data of the final `error` frame when the event log cannot be read
    /// (`message` says so): `{"reason", "reconnect": true}` unless the
    /// surface's spec shows another shape.
    fn read_failure(&self, message: &str) -> Value {
        json!({ "reason": message, "reconnect": true })
    }
}

/// The generic format of the topics API: the stored event JSON as data.
pub struct GenericFormat {
    /// Data of the `connected` frame.
    pub connected: Value,
}

impl SseFormat for GenericFormat {
    fn connected(&self) -> Value {
        self.connected.clone()
    }

    fn event(&self, event: &LogEvent) -> Option<Bytes> {
        Some(event.encoded(&EVENT_FRAME).into_owned())
    }
}

/// The generic SSE encoding of an event: `id:`, `event:` and `data:` with the
/// stored event JSON.
pub static EVENT_FRAME: Encoding =
    Encoding::new("sse.event", |event| event_frame(event, &event.json));

/// The SSE frame of an event whose `data:` is the event's own `data` (the
/// payload a surface's spec shows), `event:` its type.
pub static DATA_FRAME: Encoding = Encoding::new("sse.data", |event| {
    event_frame(event, &event.encoded(&DATA_JSON))
});

/// The SSE frame of `event` carrying `data` (one line of JSON: the event
/// itself, or the payload a surface's spec shows): `id:` is the event's id,
/// `event:` its type. Surfaces cache it with an [`Encoding`] of their own.
pub fn event_frame(event: &LogEvent, data: &[u8]) -> Bytes {
    let id = event.id().to_string();
    let event_type = event.event.event_type.as_bytes();
    let mut frame = Vec::with_capacity(data.len() + event_type.len() + 48);
    frame.extend_from_slice(b"id: ");
    frame.extend_from_slice(id.as_bytes());
    frame.extend_from_slice(b"\nevent: ");
    frame.extend_from_slice(event_type);
    frame.extend_from_slice(b"\ndata: ");
    frame.extend_from_slice(data);
    frame.extend_from_slice(b"\n\n");
    Bytes::from(frame)
}

/// The resume cursor of a request: `Last-Event-ID` header, else `lastEventId` query.
pub fn resume_start(request: &Request) -> Result<Start, ApiError> {
    let supplied = request
        .header("last-event-id")
        .map(str::to_string)
        .or_else(|| request.query_param("lastEventId"));
    match supplied.as_deref().map(str::trim) {
        None | Some("") => Ok(Start::Live),
        Some(text) => Ulid::from_string(text).map(Start::After).map_err(|_| {
            ApiError::validation(format!("Last-Event-ID `{text}` is not an event id"))
        }),
    }
}

/// A framing event: `event: <name>` with JSON data.
pub fn frame(name: &str, data: &Value) -> Bytes {
    frame_with_id(None, name, data)
}

/// A framing event that also sets the client's `Last-Event-ID` to `id`.
fn frame_with_id(id: Option<Ulid>, name: &str, data: &Value) -> Bytes {
    match id {
        Some(id) => Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
    }
}

/// Everything one stream needs.
pub struct SseStream {
    /// The subscription to stream.
    pub subscription: Subscription,
    /// The surface's format.
    pub format: Arc<dyn SseFormat>,
    /// Timing and batching.
    pub settings: SseSettings,
    /// Server lifecycle (shutdown ends the stream).
    pub lifecycle: Arc<Lifecycle>,
    /// Metrics for stream counts and end reasons.
    pub metrics: Arc<Metrics>,
    /// Who opened the stream and what it holds until it ends (ticket session,
    /// per-user slot); its expiry ends the stream with an `error` event
    /// carrying `TOKEN_EXPIRED`.
    pub admission: Admission,
}

/// The `200 text/event-stream` response carrying the stream.
pub fn response(stream: SseStream) -> Response {
    let body = body(stream);
    let mut response = http::Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct State {
    stream: SseStream,
    heartbeat: Interval,
    lifetime: Pin<Box<Sleep>>,
    stopping: Pin<Box<WaitForCancellationFutureOwned>>,
    expiry: Pin<Box<dyn Future<Output = ()> + Send + Sync>>,
    revoked: Pin<Box<WaitForCancellationFutureOwned>>,
    coalescer: Coalescer,
    /// The events written, under the stream's transport and surface.
    delivered: DeliveryCounter,
    opened: bool,
    finished: bool,
    _open: OpenGuard,
}

fn body(stream: SseStream) -> Body {
    let settings = stream.settings;
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + settings.heartbeat, settings.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = State {
        _open: stream.metrics.stream_opened(TRANSPORT),
        lifetime: Box::pin(tokio::time::sleep(settings.lifetime)),
        stopping: Box::pin(stream.lifecycle.stopping_owned()),
        expiry: Box::pin(crate::core::clock::sleep_until_or_forever(
            stream
                .admission
                .expires_at
                .map(crate::core::clock::instant_of_unix_seconds),
        )),
        revoked: Box::pin(stream.admission.revoked()),
        coalescer: Coalescer::new(settings.write_interval),
        delivered: DeliveryCounter::new(TRANSPORT),
        heartbeat,
        stream,
        opened: false,
        finished: false,
    };
    let chunks = futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), state))
    });
    StreamBody::new(chunks).boxed()
}

impl State {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.finished {
            return None;
        }
        if !self.opened {
            self.opened = true;
            let mut chunk =
                BytesMut::from(format!("retry: {}\n\n", self.stream.settings.retry_ms).as_bytes());
            let position = self.stream.subscription.last_id();
            chunk.extend_from_slice(&frame_with_id(
                position,
                "connected",
                &self.stream.format.connected(),
            ));
            return Some(chunk.freeze());
        }
        loop {
            let stream = &mut self.stream;
            tokio::select! {
                biased;
                () = self.stopping.as_mut() => {
                    return Some(self.finish("shutdown", "server shutting down; reconnect"));
                }
                () = self.expiry.as_mut() => {
                    return Some(self.expire());
                }
                () = self.revoked.as_mut() => {
                    return Some(self.revoke());
                }
                () = self.lifetime.as_mut() => {
                    return Some(self.finish("connection-timeout", "connection lifetime reached; reconnect"));
                }
                delivery = stream.subscription.next(stream.settings.max_batch) => match delivery {
                    Ok(delivery) => {
                        let delivery = self.coalesce(delivery).await;
                        if let Some(chunk) = self.encode(delivery) {
                            self.coalescer.wrote(Instant::now());
                            return Some(chunk);
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "SSE stream could not read the log");
                        return Some(self.fail());
                    }
                },
                _ = self.heartbeat.tick() => return Some(self.stream.format.heartbeat()),
            }
        }
    }

    /// On a busy stream, waits out the hold and adds what arrived meanwhile.
    async fn coalesce(&mut self, mut delivery: Batch) -> Batch {
        let Some(until) = self.coalescer.hold_until(Instant::now()) else {
            return delivery;
        };
        tokio::time::sleep_until(until).await;
        let room = self
            .stream
            .settings
            .max_batch
            .saturating_sub(delivery.events.len());
        delivery
            .events
            .extend(self.stream.subscription.take_ready(room));
        delivery
    }

    fn encode(&self, delivery: Batch) -> Option<Bytes> {
        let mut chunk = BytesMut::new();
        if let Some(gap) = delivery.gap {
            chunk.extend_from_slice(&reset_frame(&gap));
        }
        let mut written = 0;
        for event in &delivery.events {
            if let Some(frame) = self.stream.format.event(event) {
                chunk.extend_from_slice(&frame);
                written += 1;
            }
        }
        if let Some(first) = delivery.events.first() {
            self.delivered
                .add(&self.stream.metrics, &first.event.topic, written);
        }
        (!chunk.is_empty()).then(|| chunk.freeze())
    }

    fn expire(&mut self) -> Bytes {
        self.finished = true;
        self.stream.metrics.stream_ended(TRANSPORT, "expired");
        frame(
            "error",
            &json!({ "code": "TOKEN_EXPIRED", "message": "the token that opened this stream expired; reconnect with a fresh one" }),
        )
    }

    /// The final frame when the credential is revoked: the client's next
    /// attempt gets 401/403, which stops an EventSource for good.
    fn revoke(&mut self) -> Bytes {
        self.finished = true;
        self.stream.metrics.stream_ended(TRANSPORT, "revoked");
        frame(
            "error",
            &json!({ "code": "CREDENTIAL_REVOKED", "message": "the credential that opened this stream was revoked or its realm or tenant deleted" }),
        )
    }

    /// The final frame when the log cannot be read.
    fn fail(&mut self) -> Bytes {
        self.finished = true;
        self.stream.metrics.stream_ended(TRANSPORT, "error");
        let data = self
            .stream
            .format
            .read_failure("the server could not read the event log; reconnect");
        frame("error", &data)
    }

    fn finish(&mut self, name: &'static str, message: &str) -> Bytes {
        self.finished = true;
        let reason = match name {
            "connection-timeout" => "timeout",
            other => other,
        };
        self.stream.metrics.stream_ended(TRANSPORT, reason);
        frame(name, &json!({ "reason": message, "reconnect": true }))
    }
}

fn reset_frame(gap: &Gap) -> Bytes {
    frame("reset", &serde_json::to_value(gap).unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::Event;

    #[test]
    fn event_frames_carry_id_type_and_one_line_of_json_built_once() {
        let event = Event {
            id: Ulid::from_parts(1, 2),
            topic: "t".into(),
            event_type: "message".into(),
            occurred_at: "2026-01-01T00:00:00.000Z".into(),
            actor: Value::Null,
            data: json!({ "text": "line one\nline two" }),
        };
        let stored = Bytes::from(serde_json::to_vec(&event).unwrap());
        let logged = LogEvent::new(uuid::Uuid::nil(), event, stored.clone());
        let frame = logged.encoded(&EVENT_FRAME);
        let text = std::str::from_utf8(&frame).unwrap();
        let head = format!("id: {}\nevent: message\ndata: ", Ulid::from_parts(1, 2));
        assert_eq!(
            text.strip_prefix(&head).unwrap().as_bytes(),
            [&stored[..], b"\n\n"].concat()
        );
        assert_eq!(
            text.matches('\n').count(),
            4,
            "newlines inside data stay escaped: {text}"
        );
        assert_eq!(
            frame.as_ptr(),
            logged.encoded(&EVENT_FRAME).as_ptr(),
            "built once, shared"
        );
    }
}
