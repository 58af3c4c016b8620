//! The task of one Engine.IO session: it owns the transport (an owned
//! WebSocket, or the long-polling queue that GETs drain and POSTs feed),
//! the heartbeat and the application's session, in one select loop.
//!
//! Heartbeat: a ping `2` one `pingInterval` after the open (never right
//! after it) and one interval after each pong; no pong within
//! `pingTimeout` of a ping ends the session.
//!
//! Invariants: a step (a client packet, a POST's payload, the application's
//! work, a ping) is handled completely and its output written before the
//! next one is taken; output leaves in the order it was produced; on an
//! upgrade everything queued for polling goes out first, once, over the
//! WebSocket; every end is counted once under `socketio` with its reason,
//! and the client is told (close packet to a waiting GET, or a WebSocket
//! close frame; shutdown also sends the close packet over WebSocket).
//!
//! Memory: the task's state is what every idle session costs, so the paths
//! a WebSocket session seldom or never takes (the application's message
//! handling, long-polling input, the upgrade) are boxed futures, made only
//! while they run.

use super::packet::{self, CLOSE, ClientPacket, Message, Outgoing, PING};
use super::polling::{Inbound, Polling, PollingInput};
use super::registry::SessionSlot;
use super::upgrade::ProbeEvent;
use super::{AppEnd, SessionApp};
use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::Metrics;
use crate::transport::socketio::settings::SioSettings;
use crate::transport::ws::WsSocket;
use crate::transport::ws::close::{self, Closing, End};
use crate::transport::ws::frames::FrameBatch;
use futures_util::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};

/// Transport label of Engine.IO sessions in metrics.
pub(crate) const TRANSPORT: &str = "socketio";
/// Output buffer capacity kept between steps (a bigger one is released).
const KEPT_OUTPUT: usize = 16;

/// What every session needs from its endpoint.
pub(crate) struct Runtime {
    /// Limits and timing.
    pub settings: SioSettings,
    /// Shutdown.
    pub lifecycle: Arc<Lifecycle>,
    /// Stream counts and end reasons.
    pub metrics: Arc<Metrics>,
}

/// The transport a session is on.
pub(crate) enum Link {
    /// HTTP long-polling (possibly probing an upgrade).
    Polling(Box<Polling>),
    /// WebSocket (from the start, or after an upgrade).
    WebSocket(Box<WsSocket>),
}

/// What woke the session on its transport.
enum Input {
    Polling(PollingInput),
    WebSocket(Option<Result<WsMessage, tungstenite::Error>>),
}

impl Link {
    async fn next_input(&mut self) -> Input {
        match self {
            Self::Polling(polling) => Input::Polling(polling.next_input().await),
            Self::WebSocket(socket) => Input::WebSocket(socket.next().await),
        }
    }
}

/// How a session ended.
enum EngineEnd {
    /// The client sent the close packet.
    ClientClose,
    /// The WebSocket failed or the client went away.
    Gone(End),
    /// No pong within `pingTimeout`.
    PingTimeout,
    /// The server is stopping.
    Shutdown,
    /// The client broke the protocol.
    Invalid(&'static str),
    /// A payload over `maxPayload`.
    TooLarge,
    /// A polling client let more than `--sio-max-buffer` bytes queue up.
    BufferFull,
    /// The application ended it.
    App(AppEnd),
}

impl EngineEnd {
    fn metric(&self) -> &'static str {
        match self {
            Self::ClientClose => "client",
            Self::Gone(end) => end.metric(),
            Self::PingTimeout => "keepalive",
            Self::Shutdown => "shutdown",
            Self::Invalid(_) => "invalid",
            Self::TooLarge => "too-big",
            Self::BufferFull => "slow-client",
            Self::App(end) => end.metric,
        }
    }

    /// How a WebSocket session closes.
    fn websocket_end(self) -> End {
        let closing = |code, reason: &'static str, metric| {
            End::Close(Closing {
                code,
                reason: reason.into(),
                metric,
            })
        };
        match self {
            Self::ClientClose => closing(CloseCode::Normal, "", "client"),
            Self::Gone(end) => end,
            Self::PingTimeout => End::Close(Closing::keepalive()),
            Self::Shutdown => End::Close(Closing::shutdown()),
            Self::Invalid(reason) => closing(CloseCode::Policy, reason, "invalid"),
            Self::TooLarge => closing(CloseCode::Size, "payload too large", "too-big"),
            Self::BufferFull => closing(CloseCode::Policy, "too much queued", "slow-client"),
            Self::App(end) => End::Close(Closing {
                metric: end.metric,
                ..Closing::policy(end.message)
            }),
        }
    }
}

/// Ping timing: the next ping, or the deadline of the pong awaited.
struct Heartbeat {
    timer: Pin<Box<Sleep>>,
    awaiting_pong: bool,
}

/// One Engine.IO session.
pub(crate) struct Session<S> {
    runtime: Runtime,
    app: S,
    link: Link,
    out: Vec<Outgoing>,
    heartbeat: Heartbeat,
    _slot: SessionSlot,
}

impl<S: SessionApp> Session<S> {
    /// A session of `app` on `link`, holding `slot`; its first ping is one
    /// interval away.
    pub(crate) fn new(runtime: Runtime, app: S, link: Link, slot: SessionSlot) -> Self {
        let first_ping = Instant::now() + runtime.settings.ping_interval;
        Self {
            runtime,
            app,
            link,
            out: Vec::new(),
            heartbeat: Heartbeat {
                timer: Box::pin(tokio::time::sleep_until(first_ping)),
                awaiting_pong: false,
            },
            _slot: slot,
        }
    }

    /// Sends `packet` first (the open packet of a WebSocket-only session).
    pub(crate) fn greet(&mut self, packet: Outgoing) {
        self.out.push(packet);
    }

    /// Serves the session to its end.
    ///
    /// Not an `async fn`: one would hold the session twice in its state (the
    /// argument, and its move into the body); the block holds it once.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would hold the session twice in every session's task"
    )]
    pub(crate) fn run(mut self) -> impl Future<Output = ()> + Send {
        async move {
            let metrics = self.runtime.metrics.clone();
            let _open = metrics.stream_opened(TRANSPORT);
            let end = self.serve().await;
            let metric = end.metric();
            self.finish(end).await;
            metrics.stream_ended(TRANSPORT, metric);
        }
    }

    /// Writes what the session opened with (the open packet), then serves
    /// client input, the application's work and the heartbeat to the end.
    async fn serve(&mut self) -> EngineEnd {
        if let Err(end) = self.flush().await {
            return end;
        }
        let lifecycle = self.runtime.lifecycle.clone();
        loop {
            let step = tokio::select! {
                biased;
                () = lifecycle.stopping() => Err(EngineEnd::Shutdown),
                () = self.heartbeat.timer.as_mut() => self.beat(),
                input = self.link.next_input() => self.on_input(input).await,
                work = self.app.next_work() => {
                    self.app.on_work(work, &mut self.out).await.map_err(EngineEnd::App)
                }
            };
            if let Err(end) = step {
                return end;
            }
            if let Err(end) = self.flush().await {
                return end;
            }
        }
    }

    /// The heartbeat timer fired: ping, or end when the pong is overdue.
    fn beat(&mut self) -> Result<(), EngineEnd> {
        if self.heartbeat.awaiting_pong {
            return Err(EngineEnd::PingTimeout);
        }
        self.heartbeat.awaiting_pong = true;
        let deadline = Instant::now() + self.runtime.settings.ping_timeout;
        self.heartbeat.timer.as_mut().reset(deadline);
        self.out.push(PING);
        Ok(())
    }

    fn on_pong(&mut self) {
        if self.heartbeat.awaiting_pong {
            self.heartbeat.awaiting_pong = false;
            let next = Instant::now() + self.runtime.settings.ping_interval;
            self.heartbeat.timer.as_mut().reset(next);
        }
    }

    async fn on_input(&mut self, input: Input) -> Result<(), EngineEnd> {
        match input {
            Input::WebSocket(message) => self.on_websocket(message).await,
            // Boxed, as the WebSocket steady state needs none of them.
            Input::Polling(PollingInput::Inbound(inbound)) => {
                Box::pin(self.on_inbound(inbound)).await
            }
            Input::Polling(PollingInput::Probe(event)) => Box::pin(self.on_probe(event)).await,
        }
    }

    async fn on_websocket(
        &mut self,
        message: Option<Result<WsMessage, tungstenite::Error>>,
    ) -> Result<(), EngineEnd> {
        let packet = match message {
            None | Some(Ok(WsMessage::Close(_))) => return Err(EngineEnd::Gone(End::Client)),
            Some(Err(err)) => return Err(EngineEnd::Gone(End::after_error(&err))),
            Some(Ok(WsMessage::Text(text))) => {
                packet::decode_text(text.as_str()).map_err(|_| EngineEnd::Invalid("parse error"))?
            }
            Some(Ok(WsMessage::Binary(data))) => ClientPacket::Message(Message::Binary(data)),
            Some(Ok(_)) => return Ok(()),
        };
        self.on_packet(packet).await
    }

    async fn on_inbound(&mut self, inbound: Option<Inbound>) -> Result<(), EngineEnd> {
        let Link::Polling(polling) = &mut self.link else {
            return Ok(());
        };
        match inbound {
            None => Err(EngineEnd::Gone(End::Client)),
            Some(Inbound::Poll(answer)) => polling.on_poll(answer).map_err(EngineEnd::Invalid),
            Some(Inbound::Payload(payload)) => self.on_payload(&payload).await,
            Some(Inbound::TooLarge) => Err(EngineEnd::TooLarge),
            Some(Inbound::Probe(socket)) => {
                polling.start_probe(socket);
                Ok(())
            }
        }
    }

    async fn on_payload(&mut self, payload: &[u8]) -> Result<(), EngineEnd> {
        let packets =
            packet::decode_payload(payload).map_err(|_| EngineEnd::Invalid("parse error"))?;
        for packet in packets {
            self.on_packet(packet).await?;
        }
        Ok(())
    }

    async fn on_packet(&mut self, packet: ClientPacket) -> Result<(), EngineEnd> {
        match packet {
            ClientPacket::Close => Err(EngineEnd::ClientClose),
            ClientPacket::Ping(_) => Err(EngineEnd::Invalid("the server pings, not the client")),
            ClientPacket::Pong => {
                self.on_pong();
                Ok(())
            }
            // Boxed: the application's message handling (a namespace
            // CONNECT, an event and its handler) is the largest state of the
            // session; inline, every idle session would carry its room.
            ClientPacket::Message(message) => {
                let handled = Box::pin(self.app.on_message(message, &mut self.out));
                handled.await.map_err(EngineEnd::App)
            }
            ClientPacket::Upgrade | ClientPacket::Noop => Ok(()),
        }
    }

    /// Moves the upgrade on; once the client completed it, the session
    /// continues on the WebSocket with what polling left to do.
    async fn on_probe(&mut self, event: ProbeEvent) -> Result<(), EngineEnd> {
        let Link::Polling(polling) = &mut self.link else {
            return Ok(());
        };
        let Some(socket) = polling.on_probe(event).await else {
            return Ok(());
        };
        if let Link::Polling(polling) = std::mem::replace(&mut self.link, Link::WebSocket(socket)) {
            let (payloads, queued) = polling.into_upgrade();
            self.out.extend(queued);
            for payload in payloads {
                self.on_payload(&payload).await?;
            }
        }
        Ok(())
    }

    /// Writes the step's output to the transport.
    async fn flush(&mut self) -> Result<(), EngineEnd> {
        if self.out.is_empty() {
            return Ok(());
        }
        let written = match &mut self.link {
            Link::WebSocket(socket) => write_frames(socket, &self.out)
                .await
                .map_err(|err| EngineEnd::Gone(End::after_io_error(&err))),
            Link::Polling(polling) => {
                let queued = self
                    .out
                    .drain(..)
                    .try_for_each(|packet| polling.push(packet));
                polling.flush();
                queued.map_err(|_| EngineEnd::BufferFull)
            }
        };
        self.out.clear();
        if self.out.capacity() > KEPT_OUTPUT {
            self.out = Vec::new();
        }
        written
    }

    /// Tells the client the session ended (what was produced last included).
    async fn finish(&mut self, end: EngineEnd) {
        match &mut self.link {
            Link::Polling(polling) => {
                for packet in self.out.drain(..) {
                    let _ = polling.push(packet);
                }
                polling.finish(matches!(end, EngineEnd::ClientClose));
            }
            Link::WebSocket(socket) => {
                if matches!(end, EngineEnd::Shutdown) {
                    self.out.push(CLOSE);
                }
                if !matches!(end, EngineEnd::Gone(_)) {
                    let _ = write_frames(socket, &self.out).await;
                }
                close::finish(socket, &end.websocket_end()).await;
            }
        }
    }
}

/// Writes packets as WebSocket frames (text packets as text frames, binary
/// messages as binary frames), in as few writes as the batch size allows.
async fn write_frames(socket: &mut WsSocket, packets: &[Outgoing]) -> std::io::Result<()> {
    let mut batch = FrameBatch::new();
    for packet in packets {
        match packet {
            Outgoing::Text(text) => batch.push_text(text),
            Outgoing::Binary(data) => batch.push_binary(data),
        }
        if batch.is_full() {
            batch.write_to(socket).await?;
        }
    }
    batch.write_to(socket).await
}
