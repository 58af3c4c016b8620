//! The Socket.IO state of one Engine.IO session: its namespace sockets,
//! their subscriptions and admissions, the packet awaiting its binary
//! attachments, and the connect timeout. It is the session task's
//! application ([`SessionApp`]), so it runs inside that one task.
//!
//! Invariants: a namespace is joined at most once per session; packets for
//! a namespace not joined, a client CONNECT_ERROR, a malformed packet or
//! attachments out of turn close the session (as the reference server
//! does); CONNECT to an unknown namespace is answered `Invalid namespace`
//! and the session stays; while no namespace is joined (from the start, or
//! after the last one left) the session closes after `connectTimeout`; a
//! socket whose admission expires or is revoked gets DISCONNECT, and the
//! session closes when it was the last one.

use super::engine::{AppEnd, Handshake, Message, Outgoing, SessionApp, new_id};
use super::erased::{DynNamespace, DynSocket};
use super::lapse::{Lapse, Watch, watch};
use super::namespace::{ClientAck, ClientEvent, FollowKey, Follows, SocketCtx, SocketState};
use super::packet::{self, Kind, Packet};
use super::settings::MAX_NAMESPACES_PER_SESSION;
use crate::core::hub::Batch;
use crate::core::metrics::{DeliveryCounter, Metrics};
use crate::core::store::StoreError;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The namespaces of an endpoint by name.
pub(crate) type Table = HashMap<String, Arc<dyn DynNamespace>>;

/// What the session waits for besides client packets.
pub(crate) enum Work {
    /// No namespace joined within the connect timeout.
    ConnectTimeout,
    /// The admission of the socket in this slot lapsed.
    Lapsed(u32, Lapse),
    /// The socket in this slot has a signal.
    Signal(u32),
    /// A subscription delivered.
    Delivery(FollowKey, Result<Batch, StoreError>, DeliveryCounter),
}

/// A joined namespace.
struct NsSocket {
    handler: Box<dyn DynSocket>,
    state: SocketState,
    watch: Option<Watch>,
}

/// A packet waiting for its binary attachments.
struct Partial {
    packet: Packet,
    attachments: Vec<Bytes>,
}

/// The Socket.IO side of one Engine.IO session.
pub(crate) struct SioSession {
    table: Arc<Table>,
    handshake: Arc<Handshake>,
    sockets: Vec<NsSocket>,
    follows: Follows,
    metrics: Arc<Metrics>,
    partial: Option<Partial>,
    connect_timeout: Duration,
    connect_deadline: Option<Pin<Box<Sleep>>>,
    next_slot: u32,
}

fn invalid(reason: &'static str) -> AppEnd {
    AppEnd::new("invalid", reason)
}

impl SioSession {
    /// A session with no namespace joined yet.
    pub(crate) fn new(
        table: Arc<Table>,
        handshake: Arc<Handshake>,
        follows: Follows,
        metrics: Arc<Metrics>,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            table,
            handshake,
            sockets: Vec::new(),
            follows,
            metrics,
            partial: None,
            connect_timeout,
            connect_deadline: Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + connect_timeout,
            ))),
            next_slot: 0,
        }
    }

    /// The packet (and its attachments) a message completes, if any.
    fn assemble(&mut self, message: Message) -> Result<Option<(Packet, Vec<Bytes>)>, AppEnd> {
        match message {
            Message::Text(text) => {
                if self.partial.is_some() {
                    return Err(invalid(
                        "a packet came before the attachments of the last one",
                    ));
                }
                let packet = packet::decode(&text).map_err(|err| invalid(err.0))?;
                if packet.attachments == 0 {
                    return Ok(Some((packet, Vec::new())));
                }
                let attachments = Vec::with_capacity(packet.attachments);
                self.partial = Some(Partial {
                    packet,
                    attachments,
                });
                Ok(None)
            }
            Message::Binary(data) => {
                let partial = self
                    .partial
                    .as_mut()
                    .ok_or(invalid("binary data without a packet"))?;
                partial.attachments.push(data);
                if partial.attachments.len() < partial.packet.attachments {
                    return Ok(None);
                }
                Ok(self
                    .partial
                    .take()
                    .map(|partial| (partial.packet, partial.attachments)))
            }
        }
    }

    async fn dispatch(
        &mut self,
        packet: Packet,
        attachments: Vec<Bytes>,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), AppEnd> {
        if packet.kind == Kind::Connect {
            return self.connect(packet.nsp, packet.data, out).await;
        }
        let index = self
            .sockets
            .iter()
            .position(|socket| *socket.state.nsp == packet.nsp)
            .ok_or(invalid("a packet for a namespace not joined"))?;
        match packet.kind {
            Kind::Disconnect => {
                self.leave(index, None);
                return Ok(());
            }
            Kind::Event | Kind::BinaryEvent => {
                let (name, args) = split_event(packet.data)?;
                let event = ClientEvent {
                    name,
                    args,
                    attachments,
                    ack: packet.id,
                };
                let socket = &mut self.sockets[index];
                let mut ctx = SocketCtx::new(&mut socket.state, &mut self.follows, out);
                socket.handler.on_event(event, &mut ctx).await;
            }
            Kind::Ack | Kind::BinaryAck => {
                let socket = &mut self.sockets[index];
                let Some(id) = packet.id.filter(|id| socket.state.acks.take(*id)) else {
                    return Ok(());
                };
                let args = match packet.data {
                    Some(Value::Array(args)) => args,
                    _ => Vec::new(),
                };
                let ack = ClientAck {
                    id,
                    args,
                    attachments,
                };
                let mut ctx = SocketCtx::new(&mut socket.state, &mut self.follows, out);
                socket.handler.on_ack(ack, &mut ctx).await;
            }
            Kind::Connect | Kind::ConnectError => {
                return Err(invalid("a client may not send CONNECT_ERROR"));
            }
        }
        self.after_handler(index, out);
        Ok(())
    }

    async fn connect(
        &mut self,
        nsp: String,
        auth: Option<Value>,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), AppEnd> {
        if self.sockets.iter().any(|socket| *socket.state.nsp == nsp) {
            return Err(invalid("CONNECT to a namespace already joined"));
        }
        let Some(namespace) = self.table.get(&nsp).cloned() else {
            out.push(connect_error(&nsp, "Invalid namespace", None));
            return Ok(());
        };
        if self.sockets.len() >= MAX_NAMESPACES_PER_SESSION {
            out.push(connect_error(
                &nsp,
                "Too many namespaces on one connection",
                None,
            ));
            return Ok(());
        }
        let (handler, admission) = match namespace.connect(&self.handshake, auth).await {
            Ok(connected) => connected,
            Err(refusal) => {
                out.push(connect_error(&nsp, &refusal.message, refusal.data));
                return Ok(());
            }
        };
        let sid = new_id().ok_or_else(|| AppEnd::new("error", "no randomness for a socket id"))?;
        out.push(Outgoing::Text(packet::encode(
            Kind::Connect,
            &nsp,
            0,
            None,
            Some(&json!({ "sid": sid })),
        )));
        let watch = admission.as_ref().map(watch);
        let slot = self.next_slot;
        self.next_slot = self.next_slot.wrapping_add(1);
        let state = SocketState {
            slot,
            nsp: Arc::from(nsp),
            sid: sid.into_boxed_str(),
            admission,
            acks: Default::default(),
            disconnect: false,
        };
        // One slot at a time: a socket is large (its admission inline) and
        // most sessions join one namespace, so no spare room is kept.
        self.sockets.reserve_exact(1);
        self.sockets.push(NsSocket {
            handler,
            state,
            watch,
        });
        self.connect_deadline = None;
        let index = self.sockets.len() - 1;
        let socket = &mut self.sockets[index];
        let mut ctx = SocketCtx::new(&mut socket.state, &mut self.follows, out);
        socket.handler.on_connect(&mut ctx).await;
        self.after_handler(index, out);
        Ok(())
    }

    /// Disconnects the socket when its handler asked to.
    fn after_handler(&mut self, index: usize, out: &mut Vec<Outgoing>) {
        if self.sockets[index].state.disconnect {
            self.leave(index, Some(out));
        }
    }

    /// Removes a socket (telling the client when `out` is given) and arms
    /// the connect timeout when it was the last one.
    fn leave(&mut self, index: usize, out: Option<&mut Vec<Outgoing>>) {
        let socket = self.sockets.remove(index);
        self.follows.remove_slot(socket.state.slot);
        if let Some(out) = out {
            out.push(Outgoing::Text(packet::encode(
                Kind::Disconnect,
                &socket.state.nsp,
                0,
                None,
                None,
            )));
        }
        if self.sockets.is_empty() {
            let deadline = Instant::now() + self.connect_timeout;
            self.connect_deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
    }

    fn index_of(&self, slot: u32) -> Option<usize> {
        self.sockets
            .iter()
            .position(|socket| socket.state.slot == slot)
    }

    fn deliver(
        &mut self,
        key: FollowKey,
        delivery: Result<Batch, StoreError>,
        delivered: &DeliveryCounter,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), AppEnd> {
        let batch = delivery.map_err(|err| {
            tracing::error!(error = %err, key = %key.key, "Socket.IO subscription could not read the log");
            AppEnd::new("error", "the server could not read the event log; reconnect")
        })?;
        let Some(index) = self.index_of(key.slot) else {
            return Ok(());
        };
        let handler = &self.sockets[index].handler;
        if let Some(gap) = &batch.gap {
            let gap_key = batch.gap_key.as_deref().unwrap_or(&key.key);
            if let Some(text) = handler.gap_packet(gap_key, gap) {
                out.push(Outgoing::Text(Bytes::from(text)));
            }
        }
        let mut written = 0;
        for event in &batch.events {
            if let Some(text) = handler.event_packet(&key.key, event) {
                out.push(Outgoing::Text(text.into_owned()));
                written += 1;
            }
        }
        if let Some(first) = batch.events.first() {
            delivered.add(&self.metrics, &first.event.topic, written);
        }
        Ok(())
    }
}

/// The name and arguments of an EVENT's payload (checked by the decoder).
fn split_event(data: Option<Value>) -> Result<(String, Vec<Value>), AppEnd> {
    let Some(Value::Array(array)) = data else {
        return Err(invalid("an event is an array"));
    };
    let mut items = array.into_iter();
    let name = match items.next() {
        Some(Value::String(name)) => name,
        Some(Value::Number(number)) => number.to_string(),
        _ => return Err(invalid("an event starts with its name")),
    };
    Ok((name, items.collect()))
}

/// CONNECT_ERROR `44[/nsp,]{"message"[,"data"]}`.
fn connect_error(nsp: &str, message: &str, data: Option<Value>) -> Outgoing {
    let mut body = json!({ "message": message });
    if let Some(data) = data {
        body["data"] = data;
    }
    Outgoing::Text(packet::encode(
        Kind::ConnectError,
        nsp,
        0,
        None,
        Some(&body),
    ))
}

impl SessionApp for SioSession {
    type Work = Work;

    async fn on_message(
        &mut self,
        message: Message,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), AppEnd> {
        match self.assemble(message)? {
            Some((packet, attachments)) => self.dispatch(packet, attachments, out).await,
            None => Ok(()),
        }
    }

    async fn next_work(&mut self) -> Work {
        let Self {
            sockets,
            follows,
            connect_deadline,
            ..
        } = self;
        let mut signals: Vec<(u32, BoxFuture<'_, ()>)> = Vec::with_capacity(sockets.len());
        let mut watches: Vec<(u32, &mut Watch)> = Vec::new();
        for NsSocket {
            handler,
            state,
            watch,
        } in sockets.iter_mut()
        {
            signals.push((state.slot, handler.wait_signal()));
            if let Some(watch) = watch {
                watches.push((state.slot, watch));
            }
        }
        std::future::poll_fn(|cx| {
            if let Some(deadline) = connect_deadline.as_mut()
                && deadline.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(Work::ConnectTimeout);
            }
            for (slot, watch) in &mut watches {
                if let Poll::Ready(lapse) = watch.as_mut().poll(cx) {
                    return Poll::Ready(Work::Lapsed(*slot, lapse));
                }
            }
            for (slot, signal) in &mut signals {
                if signal.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Work::Signal(*slot));
                }
            }
            let streams = follows.streams();
            if !streams.is_empty()
                && let Poll::Ready(Some((key, (delivery, delivered)))) = streams.poll_next_unpin(cx)
            {
                return Poll::Ready(Work::Delivery(key, delivery, delivered));
            }
            Poll::Pending
        })
        .await
    }

    async fn on_work(&mut self, work: Work, out: &mut Vec<Outgoing>) -> Result<(), AppEnd> {
        match work {
            Work::ConnectTimeout => {
                self.connect_deadline = None;
                if self.sockets.is_empty() {
                    return Err(AppEnd::new(
                        "connect-timeout",
                        "no namespace joined in time",
                    ));
                }
            }
            Work::Lapsed(slot, lapse) => {
                if let Some(index) = self.index_of(slot) {
                    self.leave(index, Some(out));
                }
                if self.sockets.is_empty() {
                    return Err(match lapse {
                        Lapse::Expired => {
                            AppEnd::new("expired", "token expired; reconnect with a fresh token")
                        }
                        Lapse::Revoked => AppEnd::new("revoked", "credential revoked"),
                    });
                }
            }
            Work::Signal(slot) => {
                if let Some(index) = self.index_of(slot) {
                    let socket = &mut self.sockets[index];
                    let mut ctx = SocketCtx::new(&mut socket.state, &mut self.follows, out);
                    socket.handler.on_signal(&mut ctx).await;
                    self.after_handler(index, out);
                }
            }
            Work::Delivery(key, delivery, delivered) => {
                self.deliver(key, delivery, &delivered, out)?;
            }
        }
        Ok(())
    }
}
