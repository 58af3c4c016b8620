//! The WebSocket handshake and the settings of every session.
//!
//! [`upgrade`] validates the client's handshake, answers `101 Switching
//! Protocols` and runs the session on the upgraded socket as a tracked
//! lifecycle session (shutdown waits for it).
//!
//! Invariants: the read buffer is small (`--ws-read-buffer`, a few KiB, not
//! tungstenite's 128 KiB) so idle connections stay cheap; messages and frames
//! over `--ws-max-message` are refused (1009); the write buffer is bounded,
//! so a peer that reads nothing cannot make us queue pongs without end.

use super::frames::WRITE_BUFFER_BYTES;
use super::socket::{ReadGate, WsSocket};
use crate::core::lifecycle::Lifecycle;
use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::transport::coalesce::WritePacing;
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

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
    pub write_interval: WritePacing,
}

impl WsSettings {
    pub(super) fn tungstenite_config(&self) -> WebSocketConfig {
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

/// Answers the upgrade handshake and runs `session` on the raw socket.
/// Surfaces use the session runner ([`super::serve`]); the raw socket is for
/// the transport's own conformance echo.
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
    // Boxed until the upgrade completes: what the closure holds (a session
    // about to start) would otherwise stay in the task for its whole life.
    let session = Box::new(session);
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
