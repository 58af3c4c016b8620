//! One subscriber connection, whatever the transport.
//!
//! [`StreamConn::open`] connects, subscribes and returns once the server has
//! confirmed the subscription (`event: connected` on SSE, `subscribed` on
//! WebSocket); [`StreamConn::read_into`] then hands every [`Received`] that
//! one wake-up brings to a [`ReceivedSink`] until the server closes. The
//! deliveries borrow from the connection's buffer: nothing is allocated per
//! event. Resuming passes the last seen event id (`Last-Event-ID` on
//! SSE, `after` on WebSocket, `?lastEventId=` on a user's chat stream,
//! [`StreamConn::open_chat`]).

use super::args::Transport;
use super::error::BenchError;
use super::h2_pool::H2Pool;
use super::payload::Stamp;
use super::sse_client::SseConn;
use super::target::Target;
use super::ws_client::WsConn;
use std::borrow::Cow;

/// Where a subscriber is in its stream: enough to resume after it.
#[derive(Debug, Clone)]
pub enum Cursor {
    /// The SSE `id:` of the last event, as received (decoded only to resume).
    Id(Vec<u8>),
    /// The last WebSocket event frame; its id is read only when needed.
    WsFrame(Vec<u8>),
}

/// A cursor borrowed from the frame being handled.
#[derive(Debug, Clone, Copy)]
pub enum CursorRef<'a> {
    /// An SSE `id:` field.
    Id(&'a [u8]),
    /// A WebSocket event frame whose id is not at the usual place.
    WsFrame(&'a [u8]),
}

impl Cursor {
    /// The event id to resume after, if it can be found.
    pub fn event_id(&self) -> Option<String> {
        match self {
            Self::Id(id) => Some(String::from_utf8_lossy(id).into_owned()),
            Self::WsFrame(text) => super::ws_client::event_id_of(text),
        }
    }

    /// Stores `new` in `slot`, reusing the allocation of an SSE id already there.
    pub fn remember(slot: &mut Option<Cursor>, new: CursorRef<'_>) {
        match (slot.as_mut(), new) {
            (Some(Self::Id(id)), CursorRef::Id(bytes)) => {
                id.clear();
                id.extend_from_slice(bytes);
            }
            (_, CursorRef::Id(bytes)) => *slot = Some(Self::Id(bytes.to_vec())),
            (_, CursorRef::WsFrame(text)) => *slot = Some(Self::WsFrame(text.to_vec())),
        }
    }
}

/// Something a subscriber received, borrowed from the connection's buffer.
#[derive(Debug, Clone)]
pub enum Received<'a> {
    /// An event the bench published.
    Event {
        /// Its stamp (topic index, sequence, send time).
        stamp: Stamp,
        /// Where to resume after it (SSE events without `id:` carry none).
        cursor: Option<CursorRef<'a>>,
    },
    /// An event without a bench stamp (someone else published on the topic).
    Foreign {
        /// Where to resume after it.
        cursor: Option<CursorRef<'a>>,
    },
    /// The server says history is missing (SSE `reset`, WebSocket `gap`).
    Gap {
        /// The server's explanation.
        reason: Cow<'a, str>,
    },
    /// The server reported an error (WebSocket `error` frame).
    ServerError {
        /// Code and message.
        message: Cow<'a, str>,
    },
    /// The server announced that it is closing the stream.
    Closing {
        /// Why (`connection-timeout`, `shutdown`, a close frame's reason).
        reason: Cow<'a, str>,
    },
    /// The start of a frame that carries bench events (a chat frame groups
    /// several messages: the events that follow it until the next `Frame`).
    Frame,
    /// A frame without bench events that moves the resume position (the
    /// chat stream's `Connected`).
    Position {
        /// Where to resume after it.
        cursor: CursorRef<'a>,
    },
    /// Anything else: heartbeats, confirmations, retry hints.
    Control,
}

/// Receives the deliveries of one read, synchronously, in order.
pub trait ReceivedSink {
    /// Handles one delivery; `received_us` is when its bytes were read (unix µs).
    fn deliver(&mut self, delivery: Received<'_>, received_us: u64);
}

/// An open, subscribed connection.
#[derive(Debug)]
pub enum StreamConn {
    /// An SSE stream.
    Sse(Box<SseConn>),
    /// A WebSocket.
    Ws(Box<WsConn>),
}

impl StreamConn {
    /// Connects to `topic`, resuming after `after` when given, and waits for
    /// the confirmation; an SSE stream is an h2 stream of `h2` when given.
    pub async fn open(
        target: &Target,
        transport: Transport,
        topic: &str,
        after: Option<&str>,
        h2: Option<&H2Pool>,
    ) -> Result<Self, BenchError> {
        match transport {
            Transport::Sse => SseConn::open(target, topic, after, h2)
                .await
                .map(|conn| Self::Sse(Box::new(conn))),
            Transport::Ws => WsConn::open(target, topic, after)
                .await
                .map(|conn| Self::Ws(Box::new(conn))),
        }
    }

    /// Opens the chat event stream of the user of `token`, resuming after
    /// `after` when given, and waits for its `Connected` frame.
    pub async fn open_chat(
        target: &Target,
        token: &str,
        after: Option<&str>,
    ) -> Result<Self, BenchError> {
        WsConn::open_chat(target, token, after)
            .await
            .map(|conn| Self::Ws(Box::new(conn)))
    }

    /// Waits until something arrives and hands everything that is ready to
    /// `sink`; `Ok(false)` once the server has closed the stream. Cancel-safe:
    /// nothing is consumed unless it is delivered in the same poll.
    pub async fn read_into(&mut self, sink: &mut impl ReceivedSink) -> Result<bool, BenchError> {
        match self {
            Self::Sse(conn) => conn.read_into(sink).await,
            Self::Ws(conn) => conn.read_into(sink).await,
        }
    }
}
