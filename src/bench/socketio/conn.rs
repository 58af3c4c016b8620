//! One Socket.IO client session over a WebSocket (`transport=websocket`
//! only, no HTTP long-polling): the upgrade, the Engine.IO open packet, the
//! CONNECT with auth, requests answered by acks, and the server's events.
//!
//! The WebSocket framing is [`crate::bench::ws_frame`]'s; the messages are
//! read from the connection's own buffer in place: per event one frame
//! header and the byte searches of [`super::post::read_event`].
//!
//! Invariants: every Engine.IO ping is answered with a pong and every
//! WebSocket ping with a pong, whatever the caller is waiting for; events
//! that arrive while a request waits for its ack go to the same sink as all
//! others (none is dropped or held back); [`SioConn::read_into`] is
//! cancel-safe (its only await is one socket read); ack ids increase from 0
//! per session; the buffer holds at most one incomplete frame (at most the
//! frame limit of [`crate::bench::ws_frame`]) beyond [`MAX_READ`].

use super::packet::{self, Packet};
use super::post::{Delivery, read_event};
use crate::bench::error::BenchError;
use crate::bench::h1;
use crate::bench::payload::unix_micros;
use crate::bench::socket::Socket;
use crate::bench::target::Target;
use crate::bench::tls::Alpn;
use crate::bench::ws_frame::{self, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use serde_json::{Value, json};
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::client::generate_key;

/// The Engine.IO endpoint, WebSocket transport straight away.
pub const ENDPOINT: &str = "/socket.io/?EIO=4&transport=websocket";

/// First read size: small, so that idle sessions stay cheap.
const FIRST_READ: usize = 4 << 10;

/// Largest read size, reached while reads keep filling the buffer.
const MAX_READ: usize = 64 << 10;

/// Who the client is: the JWT sent in the CONNECT's auth (`{"token":…}`),
/// and the realm that verifies it (the `realmname` header of the upgrade).
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// The user's JWT (`None`: CONNECT without auth).
    pub token: Option<String>,
    /// The JWT realm, when not the server's `default`.
    pub realm: Option<String>,
}

/// Receives what the server sends, in order.
pub trait Sink {
    /// One event; `received_us` is when its bytes were read (unix µs).
    fn deliver(&mut self, delivery: Delivery<'_>, received_us: u64);
}

/// An open, connected Socket.IO session.
#[derive(Debug)]
pub struct SioConn {
    stream: Socket,
    /// Bytes read; complete frames start at `start`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes offered to the next read; doubles while reads fill it.
    read_size: usize,
    /// Frames to send (pongs, requests) not yet taken by the socket.
    out: Vec<u8>,
    /// The server closed the session (Engine.IO close, Socket.IO disconnect, WebSocket close, EOF).
    closed: bool,
    /// The next request's ack id.
    next_ack: u64,
}

/// What handling one message asks of the caller.
enum Step {
    /// Nothing: go on.
    Handled,
    /// The ack of request `id`, its JSON at `buf[range]`.
    Ack(u64, Range<usize>),
    /// The Engine.IO open packet, its JSON at `buf[range]`.
    Open(Range<usize>),
    /// The server accepted the CONNECT.
    Connected,
    /// The server refused the CONNECT, its JSON at `buf[range]`.
    Refused(Range<usize>),
}

impl SioConn {
    /// Upgrades, reads the open packet, sends CONNECT with `login`'s token
    /// and waits for the server to accept it (a refusal is an error with its message).
    pub async fn connect(target: &Target, login: &Login) -> Result<Self, BenchError> {
        let mut conn = Self::upgrade(target, login).await?;
        let Step::Open(range) = conn.handshake_packet().await? else {
            return Err(BenchError::run(
                "the Engine.IO session did not start with an open packet",
            ));
        };
        let sid = packet::handshake(&conn.buf[range])
            .map_err(BenchError::run)?
            .sid;
        let auth = login.token.as_ref().map(|token| json!({ "token": token }));
        conn.queue(packet::connect(auth.as_ref()).as_bytes());
        conn.flush().await?;
        match conn.handshake_packet().await? {
            Step::Connected => Ok(conn),
            Step::Refused(range) => Err(BenchError::run(format!(
                "the server refused the Socket.IO CONNECT of session {sid}: {}",
                packet::excerpt(&conn.buf[range])
            ))),
            _ => Err(BenchError::run(format!(
                "session {sid} answered the CONNECT with something else than 40 or 44"
            ))),
        }
    }

    /// Connects and upgrades to a WebSocket on the Engine.IO endpoint.
    async fn upgrade(target: &Target, login: &Login) -> Result<Self, BenchError> {
        let mut stream = Socket::connect(target, Alpn::Http1).await?;
        let key = generate_key();
        let mut headers = vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key.as_str()),
        ];
        if let Some(realm) = &login.realm {
            headers.push((crate::auth::REALM_HEADER, realm.as_str()));
        }
        h1::send_get(
            &mut stream,
            &target.authority,
            &target.path(ENDPOINT),
            &headers,
        )
        .await?;
        let head = h1::read_head(&mut stream).await?;
        if head.status != 101 {
            return Err(BenchError::run(format!(
                "the Socket.IO WebSocket upgrade was answered {}: {}",
                head.status,
                packet::excerpt(&head.leftover)
            )));
        }
        Ok(Self {
            stream,
            buf: head.leftover,
            start: 0,
            read_size: FIRST_READ,
            out: Vec::new(),
            closed: false,
            next_ack: 0,
        })
    }

    /// The next open, connected or connect-error packet (pings answered meanwhile).
    async fn handshake_packet(&mut self) -> Result<Step, BenchError> {
        let mut ignored = IgnoreEvents;
        loop {
            while let Some(step) = self.next_step(&mut ignored)? {
                match step {
                    Step::Handled => {}
                    Step::Ack(id, _) => {
                        return Err(BenchError::run(format!(
                            "an ack ({id}) before the session was connected"
                        )));
                    }
                    step => return Ok(step),
                }
            }
            self.wait_for_data("the Socket.IO handshake").await?;
        }
    }

    /// Sends event `name` with `payload` and returns the argument of its ack;
    /// events arriving meanwhile go to `sink`.
    pub async fn request(
        &mut self,
        name: &str,
        payload: &Value,
        sink: &mut impl Sink,
    ) -> Result<Value, BenchError> {
        let id = self.next_ack;
        self.next_ack += 1;
        self.queue(packet::emit(id, name, payload).as_bytes());
        self.flush().await?;
        loop {
            while let Some(step) = self.next_step(sink)? {
                match step {
                    Step::Handled => {}
                    Step::Ack(got, range) if got == id => {
                        return packet::ack_argument(&self.buf[range]).map_err(BenchError::run);
                    }
                    Step::Ack(got, _) => {
                        return Err(BenchError::run(format!(
                            "an ack for request {got} while waiting for {id} ({name})"
                        )));
                    }
                    Step::Open(_) | Step::Connected | Step::Refused(_) => {
                        return Err(BenchError::run(format!(
                            "a handshake packet while waiting for the ack of {name}"
                        )));
                    }
                }
            }
            self.flush().await?;
            self.wait_for_data(name).await?;
        }
    }

    /// Waits for data and hands every event that is ready to `sink`;
    /// `Ok(false)` once the server has ended the session. Cancel-safe.
    pub async fn read_into(&mut self, sink: &mut impl Sink) -> Result<bool, BenchError> {
        loop {
            let mut handled = false;
            while let Some(step) = self.next_step(sink)? {
                match step {
                    Step::Handled => handled = true,
                    Step::Ack(id, _) => {
                        return Err(BenchError::run(format!(
                            "an ack ({id}) for no pending request"
                        )));
                    }
                    Step::Open(_) | Step::Connected | Step::Refused(_) => {
                        return Err(BenchError::run("a handshake packet in an open session"));
                    }
                }
            }
            self.try_flush()?;
            if self.closed {
                return Ok(false);
            }
            if handled {
                return Ok(true);
            }
            if !self.fill().await? {
                return Ok(false);
            }
        }
    }

    /// Takes the next complete frame off the buffer and acts on it; `Ok(None)` when none is complete.
    fn next_step(&mut self, sink: &mut impl Sink) -> Result<Option<Step>, BenchError> {
        if self.closed {
            return Ok(None);
        }
        let Some(span) = ws_frame::parse_frame(&self.buf[self.start..]).map_err(BenchError::run)?
        else {
            return Ok(None);
        };
        if !span.fin {
            return Err(BenchError::run(
                "the server sent a fragmented WebSocket message (not expected)",
            ));
        }
        let payload = self.start + span.payload_start..self.start + span.len;
        self.start += span.len;
        match span.opcode {
            OP_TEXT => self.on_message(payload, sink).map(Some),
            OP_PING => {
                let ping = self.buf[payload].to_vec();
                ws_frame::encode_client(OP_PONG, &ping, &mut self.out);
                Ok(Some(Step::Handled))
            }
            OP_CLOSE => {
                let code = self.buf[payload].get(..2).unwrap_or_default().to_vec();
                ws_frame::encode_client(OP_CLOSE, &code, &mut self.out);
                self.closed = true;
                Ok(Some(Step::Handled))
            }
            _ => Ok(Some(Step::Handled)),
        }
    }

    /// Acts on one text message at `buf[range]`.
    fn on_message(
        &mut self,
        range: Range<usize>,
        sink: &mut impl Sink,
    ) -> Result<Step, BenchError> {
        let message = &self.buf[range.clone()];
        let offset = |part: &[u8]| {
            let from = range.start + (part.as_ptr() as usize - message.as_ptr() as usize);
            from..from + part.len()
        };
        match packet::parse(message).map_err(BenchError::run)? {
            Packet::Ping => self.queue(packet::PONG),
            Packet::Close | Packet::Disconnect => self.closed = true,
            Packet::Event { json, .. } => sink.deliver(read_event(json), unix_micros()),
            Packet::Ack { id, json } => return Ok(Step::Ack(id, offset(json))),
            Packet::Open(json) => return Ok(Step::Open(offset(json))),
            Packet::Connected(_) => return Ok(Step::Connected),
            Packet::ConnectError(json) => return Ok(Step::Refused(offset(json))),
            Packet::Other => {}
        }
        Ok(Step::Handled)
    }

    /// Queues a text message.
    fn queue(&mut self, message: &[u8]) {
        ws_frame::encode_client(OP_TEXT, message, &mut self.out);
    }

    /// Writes every queued frame.
    async fn flush(&mut self) -> Result<(), BenchError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|err| BenchError::context("writing to the Socket.IO WebSocket", err))
    }

    /// Writes what the socket takes now; the rest waits for the next time.
    fn try_flush(&mut self) -> Result<(), BenchError> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(written) => drop(self.out.drain(..written)),
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    return Err(BenchError::context(
                        "writing to the Socket.IO WebSocket",
                        err,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads more, failing when the session ends while `waiting_for` is pending.
    async fn wait_for_data(&mut self, waiting_for: &str) -> Result<(), BenchError> {
        if self.closed || !self.fill().await? {
            return Err(BenchError::run(format!(
                "the server ended the Socket.IO session while waiting for {waiting_for}"
            )));
        }
        Ok(())
    }

    /// One socket read (consumed frames dropped first); `Ok(false)` at end of stream. Cancel-safe.
    async fn fill(&mut self) -> Result<bool, BenchError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(self.read_size);
        let offered = self.buf.capacity() - self.buf.len();
        let count = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .map_err(|err| BenchError::context("reading the Socket.IO WebSocket", err))?;
        if count == offered {
            self.read_size = (self.read_size * 2).min(MAX_READ);
        }
        Ok(count > 0)
    }
}

/// The sink of the handshake, when no event can arrive yet.
struct IgnoreEvents;

impl Sink for IgnoreEvents {
    fn deliver(&mut self, _delivery: Delivery<'_>, _received_us: u64) {}
}
