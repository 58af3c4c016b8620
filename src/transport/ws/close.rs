//! How sessions end: close codes, reasons and metrics labels.
//!
//! 1000 normal (the client closed; tungstenite answers its close frame);
//! 1001 going away (shutdown, no answer to pings); 1002 protocol error; 1007
//! text that is not UTF-8; 1008 policy (a module's refusal, a revoked
//! credential, a client too slow to read); 1009 message too big; 1011 server
//! error; 4001 the credential that opened the session expired.
//!
//! Invariant: every end is counted once in `tidings_stream_ends_total` with
//! its reason label; a close frame is attempted whenever there is something
//! to tell the client, and the closing handshake is bounded in time.

use super::socket::WsSocket;
use std::borrow::Cow;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Close code sent when the credential that opened the session expires.
pub const TOKEN_EXPIRED_CLOSE: u16 = 4001;
/// How long a closing session waits for the client's close reply.
const CLOSE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest close reason (a control frame carries at most 125 bytes, 2 of them the code).
const MAX_REASON_BYTES: usize = 123;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The client closed the connection or went away (nothing to tell it).
    Client,
    /// The server closes it with a close frame.
    Close(Closing),
}

impl End {
    /// The end after a failed read or write.
    pub fn after_error(err: &WsError) -> Self {
        closing_for(err).map_or(Self::Client, Self::Close)
    }

    /// The end after a failed write made past tungstenite.
    pub fn after_io_error(err: &std::io::Error) -> Self {
        closing_for_io(err).map_or(Self::Client, Self::Close)
    }

    /// The metrics label of the end.
    pub fn metric(&self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Close(closing) => closing.metric,
        }
    }
}

/// A close frame to send and the reason to count (`tidings_stream_ends_total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    /// Close code sent to the client.
    pub code: CloseCode,
    /// Close reason sent to the client.
    pub reason: Cow<'static, str>,
    /// Metrics label of the end.
    pub metric: &'static str,
}

impl Closing {
    fn new(code: CloseCode, reason: &'static str, metric: &'static str) -> Self {
        Self {
            code,
            reason: Cow::Borrowed(reason),
            metric,
        }
    }

    /// 1001: the server is stopping.
    pub fn shutdown() -> Self {
        Self::new(
            CloseCode::Away,
            "server shutting down; reconnect",
            "shutdown",
        )
    }

    /// 1001: the client answered no ping for two intervals.
    pub fn keepalive() -> Self {
        Self::new(CloseCode::Away, "no answer to pings", "keepalive")
    }

    /// 4001: the credential that opened the session expired.
    pub fn expired() -> Self {
        Self::new(
            CloseCode::Library(TOKEN_EXPIRED_CLOSE),
            "token expired; reconnect with a fresh token",
            "expired",
        )
    }

    /// 1008: the credential was revoked (or its realm or tenant deleted).
    pub fn revoked() -> Self {
        Self::new(CloseCode::Policy, "credential revoked", "revoked")
    }

    /// 1008: the surface's protocol refuses the client (`reason` is cut to fit a close frame).
    pub fn policy(reason: impl Into<Cow<'static, str>>) -> Self {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.to_mut().truncate(end);
        }
        Self {
            code: CloseCode::Policy,
            reason,
            metric: "policy",
        }
    }

    /// 1011: the event log could not be read.
    pub fn log_unreadable() -> Self {
        Self::new(
            CloseCode::Error,
            "the server could not read the event log; reconnect",
            "error",
        )
    }

    fn slow_client() -> Self {
        Self::new(
            CloseCode::Policy,
            "the client stopped reading; disconnected after the write timeout",
            "slow-client",
        )
    }
}

/// What to tell a client whose frames failed to read or write; `None` when
/// it simply went away (nothing to send).
fn closing_for(err: &WsError) -> Option<Closing> {
    match err {
        WsError::Capacity(_) => Some(Closing::new(CloseCode::Size, "message too big", "too-big")),
        WsError::Utf8(_) => Some(Closing::new(
            CloseCode::Invalid,
            "text frames must be UTF-8",
            "invalid",
        )),
        WsError::Protocol(_) => Some(Closing::new(
            CloseCode::Protocol,
            "WebSocket protocol error",
            "invalid",
        )),
        WsError::WriteBufferFull(_) => Some(Closing::slow_client()),
        WsError::Io(io) => closing_for_io(io),
        _ => None,
    }
}

/// Like [`closing_for`], for errors of writes made past tungstenite.
fn closing_for_io(err: &std::io::Error) -> Option<Closing> {
    (err.kind() == std::io::ErrorKind::TimedOut).then(Closing::slow_client)
}

/// Ends the session on the socket: completes a closing handshake the client
/// started, or sends our close frame and waits (briefly) for the client's
/// reply, so the TCP connection ends cleanly.
pub async fn finish(socket: &mut WsSocket, end: &End) {
    use futures_util::{SinkExt, StreamExt};
    let Closing { code, reason, .. } = match end {
        End::Client => {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, socket.flush()).await;
            return;
        }
        End::Close(closing) => closing.clone(),
    };
    let frame = CloseFrame {
        code,
        reason: reason.as_ref().into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE_TIMEOUT, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_reasons_fit_a_close_frame_on_a_character_boundary() {
        let long = "é".repeat(100);
        let closing = Closing::policy(long);
        assert!(closing.reason.len() <= MAX_REASON_BYTES);
        assert!(closing.reason.chars().all(|c| c == 'é'));
        assert_eq!(Closing::policy("short").reason, "short");
        assert_eq!(u16::from(Closing::expired().code), TOKEN_EXPIRED_CLOSE);
    }

    #[test]
    fn timed_out_writes_are_slow_clients_and_other_io_errors_are_the_client_leaving() {
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(End::after_io_error(&timed_out).metric(), "slow-client");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(End::after_io_error(&reset), End::Client);
    }
}
