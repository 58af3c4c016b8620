//! WebSocket (RFC 6455) on hyper's HTTP/1.1 upgrade, framed by tokio-tungstenite.
//!
//! [`upgrade`] validates the handshake, answers `101 Switching Protocols`
//! and runs the surface's session on the upgraded socket as a tracked
//! lifecycle session (shutdown waits for it). Helpers here give every
//! surface the same close codes: 1000 normal, 1001 going away (shutdown,
//! keepalive timeout), 1008 policy, 1009 message too big, 1011 server error.
//! [`FrameBatch`] writes event frames from the events' shared bytes, past
//! tungstenite (which would clone, validate and copy each message).
//!
//! Invariants: the read buffer is small (`--ws-read-buffer`, a few KiB, not
//! tungstenite's 128 KiB) so idle connections stay cheap; messages over
//! `--ws-max-message` are refused with 1009, text that is not UTF-8 with
//! 1007, protocol violations with 1002; a client that stops answering
//! pings is dropped; a session never blocks the hub (it reads subscriptions
//! at its own pace and repairs from the log).
//!
//! Backpressure: tungstenite answers every ping with a pong, so a client
//! that sends pings and reads nothing would make the server queue pongs
//! without end. The write buffer is bounded (`max_write_buffer_size`), and
//! [`ReadGate`] stops reading frames while a write is blocked: the client's
//! own sends then block, nothing more is queued, and once a write has made
//! no progress for `--write-timeout` the session is closed with 1008 and
//! counted as a slow client.

use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::lifecycle::Lifecycle;
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, handshake::derive_accept_key};

/// Outgoing frames collected before a write (see [`WsSettings`] and [`FrameBatch`]).
const WRITE_BUFFER_BYTES: usize = 32 * 1024;

/// The socket a session works on.
pub type WsSocket = WebSocketStream<ReadGate<TokioIo<hyper::upgrade::Upgraded>>>;

/// Limits and timing of WebSocket sessions.
#[derive(Debug, Clone, Copy)]
pub struct WsSettings {
    /// Largest incoming message (and frame).
    pub max_message_bytes: usize,
    /// Read buffer per connection.
    pub read_buffer_bytes: usize,
    /// Interval of server pings; a client silent for two intervals is dropped.
    pub ping_interval: Duration,
    /// How a busy session paces its writes (see the SSE setting).
    pub write_interval: crate::transport::coalesce::WritePacing,
}

impl WsSettings {
    fn tungstenite_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer_bytes)
            // Frames are collected up to this size and written together on flush:
            // one write per batch of events, not one per event. The buffer grows
            // only when there is something to send.
            .write_buffer_size(WRITE_BUFFER_BYTES)
            // Room for one reply (an echoed message, an event) beyond the
            // collected frames; a pong that does not fit waits (replacing any
            // older pong) instead of growing the buffer.
            .max_write_buffer_size(WRITE_BUFFER_BYTES + 2 * self.max_message_bytes + 1024)
            .max_message_size(Some(self.max_message_bytes))
            .max_frame_size(Some(self.max_message_bytes))
    }
}

/// How a session ends because of a failed read or write: the close frame
/// to attempt and the reason to count (`tidings_stream_ends_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// Close code sent to the client.
    pub code: CloseCode,
    /// Close reason sent to the client.
    pub reason: &'static str,
    /// Metrics label of the end.
    pub metric: &'static str,
}

/// What to tell a client whose frames failed to read or write; `None` when
/// it simply went away (nothing to send).
pub fn closing_for(err: &WsError) -> Option<Closing> {
    let closing = |code, reason, metric| {
        Some(Closing {
            code,
            reason,
            metric,
        })
    };
    match err {
        WsError::Capacity(_) => closing(CloseCode::Size, "message too big", "too-big"),
        WsError::Utf8(_) => closing(CloseCode::Invalid, "text frames must be UTF-8", "invalid"),
        WsError::Protocol(_) => closing(CloseCode::Protocol, "WebSocket protocol error", "invalid"),
        WsError::WriteBufferFull(_) => slow_client(),
        WsError::Io(io) => closing_for_io(io),
        _ => None,
    }
}

/// Like [`closing_for`], for errors of writes made past tungstenite.
pub fn closing_for_io(err: &std::io::Error) -> Option<Closing> {
    (err.kind() == std::io::ErrorKind::TimedOut)
        .then(slow_client)
        .flatten()
}

fn slow_client() -> Option<Closing> {
    Some(Closing {
        code: CloseCode::Policy,
        reason: "the client stopped reading; disconnected after the write timeout",
        metric: "slow-client",
    })
}

/// An upgraded socket that reads nothing while a write is blocked: a peer
/// that does not read what we send (pongs included) cannot make us queue
/// answers to what it keeps sending.
///
/// Invariant: a blocked write registered the task's waker with the socket,
/// so the task wakes when the write can progress (or its deadline fails it)
/// and reading resumes after the write went through.
pub struct ReadGate<I> {
    inner: I,
    write_blocked: bool,
}

impl<I> ReadGate<I> {
    fn new(inner: I) -> Self {
        Self {
            inner,
            write_blocked: false,
        }
    }

    fn track<T>(&mut self, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        self.write_blocked = poll.is_pending();
        poll
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ReadGate<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.write_blocked {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ReadGate<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.track(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Answers the upgrade handshake and runs `session` on the socket.
pub fn upgrade<F, Fut>(
    request: &mut Request,
    settings: WsSettings,
    lifecycle: &Arc<Lifecycle>,
    session: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(WsSocket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let accept = accept_key(request)?;
    let on_upgrade = request
        .take_upgrade()
        .ok_or_else(|| ApiError::validation("WebSocket needs an HTTP/1.1 upgrade request"))?;
    lifecycle.spawn_session(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = ReadGate::new(TokioIo::new(upgraded));
                let socket = WebSocketStream::from_raw_socket(
                    io,
                    Role::Server,
                    Some(settings.tungstenite_config()),
                )
                .await;
                session(socket).await;
            }
            Err(err) => tracing::debug!(error = %err, "WebSocket upgrade did not complete"),
        }
    });
    let mut response = response::with_content_type(
        StatusCode::SWITCHING_PROTOCOLS,
        "text/plain",
        bytes::Bytes::new(),
    );
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept =
        HeaderValue::from_str(&accept).map_err(|_| ApiError::internal("bad accept key"))?;
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// Checks the client's handshake headers and derives `Sec-WebSocket-Accept`.
fn accept_key(request: &Request) -> Result<String, ApiError> {
    let has_token = |name: &str, token: &str| {
        request.header(name).is_some_and(|value| {
            value
                .split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    };
    if !has_token("connection", "upgrade") || !has_token("upgrade", "websocket") {
        return Err(ApiError::validation(
            "this endpoint speaks WebSocket: send Connection: Upgrade and Upgrade: websocket",
        )
        .with_status(StatusCode::UPGRADE_REQUIRED)
        .with_header(header::UPGRADE, HeaderValue::from_static("websocket")));
    }
    if request.header("sec-websocket-version") != Some("13") {
        return Err(
            ApiError::validation("only WebSocket version 13 is supported")
                .with_status(StatusCode::UPGRADE_REQUIRED)
                .with_header(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                ),
        );
    }
    let key = request
        .header("sec-websocket-key")
        .filter(|key| !key.trim().is_empty())
        .ok_or_else(|| ApiError::validation("Sec-WebSocket-Key is missing"))?;
    Ok(derive_accept_key(key.trim().as_bytes()))
}

/// Server text frames collected from borrowed payloads and written straight
/// to the socket: no per-message allocation, reference count or UTF-8 check,
/// one write per [`WRITE_BUFFER_BYTES`].
///
/// Invariant: only whole frames reach the socket, and only after everything
/// tungstenite had buffered was flushed, so the two writers never interleave
/// inside a frame.
pub struct FrameBatch {
    bytes: Vec<u8>,
}

impl FrameBatch {
    /// An empty batch (allocates on the first frame).
    pub fn new() -> Self {
        Self { bytes: Vec::new() }
    }

    /// Adds an unmasked, final text frame carrying `text`, which must be UTF-8
    /// (it is: event JSON and notices are built by serde_json).
    pub fn push_text(&mut self, text: &[u8]) {
        if self.bytes.capacity() == 0 {
            self.bytes
                .reserve(WRITE_BUFFER_BYTES.min(text.len() * 8 + 16));
        }
        self.bytes.push(0x81);
        match text.len() {
            len @ 0..=125 => self.bytes.push(len as u8),
            len @ 126..=0xFFFF => {
                self.bytes.push(126);
                self.bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                self.bytes.push(127);
                self.bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        self.bytes.extend_from_slice(text);
    }

    /// Whether the batch has reached the write size.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= WRITE_BUFFER_BYTES
    }

    /// Writes the collected frames (after tungstenite's pending output) and empties the batch.
    pub async fn write_to(&mut self, socket: &mut WsSocket) -> std::io::Result<()> {
        use futures_util::SinkExt;
        use tokio::io::AsyncWriteExt;
        if self.bytes.is_empty() {
            return Ok(());
        }
        socket.flush().await.map_err(|err| match err {
            WsError::Io(io) => io,
            other => std::io::Error::other(other),
        })?;
        socket.get_mut().write_all(&self.bytes).await?;
        self.bytes.clear();
        Ok(())
    }
}

impl Default for FrameBatch {
    fn default() -> Self {
        Self::new()
    }
}

/// How long a closing session waits for the client's close reply.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the closing handshake with `code` and `reason` and waits (briefly)
/// for the client's reply, so the TCP connection ends cleanly.
pub async fn close(socket: &mut WsSocket, code: CloseCode, reason: &str) {
    use futures_util::{SinkExt, StreamExt};
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, drain).await;
}

/// Completes a closing handshake the client started (flushes our close reply).
pub async fn finish_client_close(socket: &mut WsSocket) {
    use futures_util::SinkExt;
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, socket.flush()).await;
}
