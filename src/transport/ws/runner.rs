//! The session runner: one loop per WebSocket session that serves a
//! surface's [`WsProtocol`].
//!
//! The runner owns everything that is the same for every surface: the
//! admission (per-user stream slot, ticket session), keepalive (a ping every
//! `--ws-ping-interval`; a client silent for two intervals gets 1001),
//! shutdown (1001), credential expiry (4001) and revocation (1008), the
//! subscriptions (polled together, no task or queue per subscription), write
//! pacing ([`Coalescer`]) and frame batching from the events' shared bytes
//! ([`FrameBatch`]), close codes for bad input (1009, 1007, 1002), the write
//! deadline (a write stuck for `--write-timeout` gives 1008 `slow-client`)
//! and lifecycle tracking: shutdown waits for the session, and
//! `tidings_open_streams` / `tidings_stream_ends_total` count it under the
//! protocol's transport label.
//!
//! Invariants: every delivery ready when a write starts goes out in that
//! write (whole frames, in order per key); a session never blocks the hub (a
//! slow one repairs from the log); a message is handled completely (its
//! reply sent) before the next is read.

use super::close::{self, Closing, End};
use super::frames::FrameBatch;
use super::handshake::{WsSettings, upgrade};
use super::protocol::{Follows, Outcome, Ready, Session, WsProtocol};
use super::socket::WsSocket;
use crate::auth::Admission;
use crate::core::hub::Hub;
use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::Metrics;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::transport::coalesce::Coalescer;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

/// Transport label of WebSocket sessions in metrics.
pub(super) const TRANSPORT: &str = "ws";

/// Most events framed before the write buffer is checked: a full buffer is
/// written before it grows much past its size.
const FRAMED_AT_ONCE: usize = 128;

/// What every session needs from the server.
#[derive(Clone)]
pub struct WsRuntime {
    /// Limits and timing.
    pub settings: WsSettings,
    /// Subscriptions.
    pub hub: Arc<Hub>,
    /// Shutdown (sessions are tracked and told to end).
    pub lifecycle: Arc<Lifecycle>,
    /// Stream counts and end reasons.
    pub metrics: Arc<Metrics>,
}

/// Answers the WebSocket handshake of `request` and runs `protocol` as the
/// session of `admission` on the upgraded socket.
pub fn serve<P: WsProtocol>(
    request: &mut Request,
    runtime: &WsRuntime,
    admission: Admission,
    protocol: P,
) -> Result<Response, ApiError> {
    let runtime = runtime.clone();
    let lifecycle = runtime.lifecycle.clone();
    upgrade(request, runtime.settings, &lifecycle, move |socket| {
        Runner {
            follows: Follows::new(runtime.hub.clone()),
            coalescer: Coalescer::new(runtime.settings.write_interval),
            runtime,
            protocol,
            admission,
            socket,
        }
        .run()
    })
}

struct Runner<P> {
    runtime: WsRuntime,
    protocol: P,
    admission: Admission,
    socket: WsSocket,
    follows: Follows,
    coalescer: Coalescer,
}

impl<P: WsProtocol> Runner<P> {
    /// The whole session. Not an `async fn`: an `async fn` keeps its
    /// argument in its future twice (as the argument and as the local it is
    /// moved into), and every open WebSocket holds this future for its whole
    /// life; captured by the block, the runner is stored once.
    fn run(self) -> impl Future<Output = ()> + Send {
        let mut runner = self;
        async move {
            let metrics = runner.runtime.metrics.clone();
            let _open = metrics.stream_opened(TRANSPORT);
            let Err(end) = runner.serve().await;
            runner.follows.clear();
            close::finish(&mut runner.socket, &end).await;
            metrics.stream_ended(TRANSPORT, end.metric());
        }
    }

    /// Serves until the session ends (the error carries how).
    async fn serve(&mut self) -> Result<Infallible, End> {
        let interval = self.runtime.settings.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let lifecycle = self.runtime.lifecycle.clone();
        let expiry = self
            .admission
            .expires_at
            .map(crate::core::clock::instant_of_unix_seconds);
        let mut expired = std::pin::pin!(crate::core::clock::sleep_until_or_forever(expiry));
        let mut revoked = std::pin::pin!(self.admission.revoked());
        let opened = self
            .protocol
            .open(&mut Session::new(&self.admission, &mut self.follows))
            .await;
        self.act(opened).await?;
        loop {
            tokio::select! {
                biased;
                () = lifecycle.stopping() => return Err(End::Close(Closing::shutdown())),
                () = expired.as_mut() => return Err(End::Close(Closing::expired())),
                () = revoked.as_mut() => return Err(End::Close(Closing::revoked())),
                incoming = self.socket.next() => {
                    last_heard = Instant::now();
                    self.receive(incoming).await?;
                }
                signal = self.protocol.next_signal() => {
                    let mut session = Session::new(&self.admission, &mut self.follows);
                    let outcome = self.protocol.on_signal(signal, &mut session).await;
                    self.act(outcome).await?;
                }
                Some(first) = self.follows.streams().next(), if !self.follows.streams().is_empty() => {
                    self.deliver(first).await?;
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > interval * 2 {
                        return Err(End::Close(Closing::keepalive()));
                    }
                    self.send(Message::Ping(bytes::Bytes::new())).await?;
                }
            }
        }
    }

    /// Hands a client's message to the protocol.
    async fn receive(
        &mut self,
        incoming: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), End> {
        let mut session = Session::new(&self.admission, &mut self.follows);
        let outcome = match incoming {
            None | Some(Ok(Message::Close(_))) => return Err(End::Client),
            Some(Err(err)) => return Err(End::after_error(&err)),
            Some(Ok(Message::Text(text))) => {
                self.protocol.on_text(text.as_str(), &mut session).await
            }
            Some(Ok(Message::Binary(data))) => self.protocol.on_binary(&data, &mut session).await,
            Some(Ok(_)) => Outcome::Continue,
        };
        self.act(outcome).await
    }

    /// Carries out what the protocol decided.
    async fn act(&mut self, outcome: Outcome) -> Result<(), End> {
        match outcome {
            Outcome::Continue => Ok(()),
            Outcome::Text(text) => self.send(Message::Text(text.into())).await,
            Outcome::Close(reason) => Err(End::Close(Closing::policy(reason))),
        }
    }

    async fn send(&mut self, message: Message) -> Result<(), End> {
        self.socket
            .send(message)
            .await
            .map_err(|err| End::after_error(&err))
    }

    /// Writes the delivery and everything else ready by the time the
    /// coalescer lets the write go, in as few writes as possible. Once a
    /// full batch went out it stops gathering, so a session that keeps up
    /// with a busy topic still returns to its loop and sees shutdown,
    /// expiry, revocation, pings and client messages between batches.
    async fn deliver(&mut self, first: Ready) -> Result<(), End> {
        let mut batch = FrameBatch::new();
        let mut hold = self.coalescer.hold_until(Instant::now());
        let mut next = Some(first);
        let mut wrote_full_batch = false;
        while let Some((key, (delivery, delivered))) = next {
            let delivery = delivery.map_err(|err| {
                tracing::error!(error = %err, key = %key, "WebSocket subscription could not read the log");
                End::Close(Closing::log_unreadable())
            })?;
            if let Some(gap) = delivery.gap {
                let gap_key = delivery.gap_key.as_deref().unwrap_or(&key);
                batch.push_text(self.protocol.gap_text(gap_key, &gap).as_bytes());
            }
            if let Some(first) = delivery.events.first() {
                let metrics = &self.runtime.metrics;
                delivered.add(metrics, &first.event.topic, delivery.events.len());
            }
            for events in delivery.events.chunks(FRAMED_AT_ONCE) {
                self.protocol.frame_events(&key, events, &mut batch);
                if batch.is_full() {
                    self.write(&mut batch).await?;
                    wrote_full_batch = true;
                }
            }
            if wrote_full_batch {
                break;
            }
            next = match self.follows.streams().next().now_or_never() {
                Some(ready) => ready,
                None => self.linger(hold.take()).await,
            };
        }
        self.coalescer.wrote(Instant::now());
        self.write(&mut batch).await
    }

    async fn write(&mut self, batch: &mut FrameBatch) -> Result<(), End> {
        batch
            .write_to(&mut self.socket)
            .await
            .map_err(|err| End::after_io_error(&err))
    }

    /// Sleeps out a hold, then takes what arrived meanwhile (sleeping, not
    /// waiting on the subscriptions: one wake-up per hold, not per publish).
    async fn linger(&mut self, hold: Option<Instant>) -> Option<Ready> {
        tokio::time::sleep_until(hold?).await;
        self.follows.streams().next().now_or_never().flatten()
    }
}
