//! One subscriber connection, whatever the transport.
//!
//! [`StreamConn::open`] connects, subscribes and returns once the server has
//! confirmed the subscription (`event: connected` on SSE, `subscribed` on
//! WebSocket); [`StreamConn::next`] then yields [`Delivery`] items until the
//! server closes. Resuming passes the last seen event id (`Last-Event-ID` on
//! SSE, `after` on WebSocket).

use super::args::Transport;
use super::error::BenchError;
use super::payload::Stamp;
use super::sse_client::SseConn;
use super::target::Target;
use super::ws_client::WsConn;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Where a subscriber is in its stream: enough to resume after it.
#[derive(Debug, Clone)]
pub enum Cursor {
    /// The SSE `id:` of the last event.
    Id(String),
    /// The last WebSocket event frame; its id is read only when needed.
    WsFrame(Utf8Bytes),
}

impl Cursor {
    /// The event id to resume after, if it can be found.
    pub fn event_id(&self) -> Option<String> {
        match self {
            Self::Id(id) => Some(id.clone()),
            Self::WsFrame(text) => super::ws_client::event_id_of(text),
        }
    }
}

/// Something a subscriber received.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event the bench published.
    Event {
        /// Its stamp (topic index, sequence, send time).
        stamp: Stamp,
        /// Where to resume after it (SSE events without `id:` carry none).
        cursor: Option<Cursor>,
    },
    /// An event without a bench stamp (someone else published on the topic).
    Foreign {
        /// Where to resume after it.
        cursor: Option<Cursor>,
    },
    /// The server says history is missing (SSE `reset`, WebSocket `gap`).
    Gap {
        /// The server's explanation.
        reason: String,
    },
    /// The server reported an error (WebSocket `error` frame).
    ServerError {
        /// Code and message.
        message: String,
    },
    /// The server announced that it is closing the stream.
    Closing {
        /// Why (`connection-timeout`, `shutdown`, a close frame's reason).
        reason: String,
    },
    /// Anything else: heartbeats, confirmations, retry hints.
    Control,
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
    /// Connects to `topic`, resuming after `after` when given, and waits for the confirmation.
    pub async fn open(
        target: &Target,
        transport: Transport,
        topic: &str,
        after: Option<&str>,
    ) -> Result<Self, BenchError> {
        match transport {
            Transport::Sse => SseConn::open(target, topic, after)
                .await
                .map(|conn| Self::Sse(Box::new(conn))),
            Transport::Ws => WsConn::open(target, topic, after)
                .await
                .map(|conn| Self::Ws(Box::new(conn))),
        }
    }

    /// The next item; `Ok(None)` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<Delivery>, BenchError> {
        match self {
            Self::Sse(conn) => conn.next().await,
            Self::Ws(conn) => conn.next().await,
        }
    }
}
