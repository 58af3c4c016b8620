//! What a module implements to serve Socket.IO: a [`Namespace`] (decides
//! CONNECTs) whose sockets are [`SocketHandler`]s (one per client per
//! namespace), acting through a [`SocketCtx`].
//!
//! Packets a handler produces are Engine.IO message texts (the leading `4`
//! included): [`SocketHandler::event_packet`] returns exactly the text that
//! goes on the wire, e.g. `42["name",{…}]` on `/`, `42/chat,["name",{…}]`
//! elsewhere (build it with [`super::packet::event_text`] inside a `static`
//! `Encoding`, so it is built once per event for every socket).
//!
//! Invariants: a handler is called for one thing at a time and its output
//! is written in order before the session takes the next client packet;
//! subscriptions followed through the context belong to the socket and end
//! with it; at most [`MAX_PENDING_ACKS`] server acks wait per socket.

use super::engine::Outgoing;
use super::engine::session::TRANSPORT;
use super::packet::{self, Kind};
use super::settings::MAX_PENDING_ACKS;
use crate::auth::{Admission, Principal};
use crate::core::hub::{Batch, FanOut, Feed, Hub, Start};
use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::core::store::StoreError;
use crate::transport::ws::protocol::{Followed, deliveries};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use tokio_stream::StreamMap;
use ulid::Ulid;

pub use super::engine::Handshake;

/// Why a namespace refuses a CONNECT: the client gets CONNECT_ERROR
/// `44{"message":…,"data":…}` (`data` left out when `None`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRefusal {
    /// What the client's `connect_error` says.
    pub message: String,
    /// Details for the client.
    pub data: Option<Value>,
}

/// An EVENT (or BINARY_EVENT) from the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientEvent {
    /// The event name.
    pub name: String,
    /// The arguments after the name (binary ones as placeholders).
    pub args: Vec<Value>,
    /// The binary attachments the placeholders refer to, in order.
    pub attachments: Vec<Bytes>,
    /// The ack id, when the client asked for an answer.
    pub ack: Option<u64>,
}

/// The client's answer to a server emit that asked for one.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientAck {
    /// The id [`SocketCtx::emit_with_ack`] returned.
    pub id: u64,
    /// The answer's arguments (binary ones as placeholders).
    pub args: Vec<Value>,
    /// The binary attachments, in order.
    pub attachments: Vec<Bytes>,
}

/// A namespace served by a module (one value shared by all its sockets).
pub trait Namespace: Send + Sync + 'static {
    /// The state of one client in this namespace.
    type Socket: SocketHandler;

    /// Decides a CONNECT: `auth` is the CONNECT payload (`None` when
    /// absent). Ok gives the socket and, if the namespace admits by
    /// credential, the [`Admission`] whose expiry, revocation and per-user
    /// slot the transport then honours (at expiry or revocation it sends
    /// DISCONNECT for the namespace and, if it was the session's last one,
    /// closes the session). Err is answered with CONNECT_ERROR.
    fn connect(
        &self,
        handshake: &Handshake,
        auth: Option<Value>,
    ) -> impl Future<Output = Result<(Self::Socket, Option<Admission>), ConnectRefusal>> + Send;
}

/// One connected socket of a namespace.
pub trait SocketHandler: Send + 'static {
    /// What the server tells an open socket (`Infallible` when nothing).
    type Signal: Send;

    /// Runs right after the CONNECT reply, before any client packet: follow
    /// topics, greet the client.
    fn on_connect(&mut self, ctx: &mut SocketCtx<'_>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        std::future::ready(())
    }

    /// A client EVENT; answer through `ctx` (ack, emit, follow…).
    fn on_event(
        &mut self,
        event: ClientEvent,
        ctx: &mut SocketCtx<'_>,
    ) -> impl Future<Output = ()> + Send;

    /// The client's answer to a server emit with ack (ignored by default).
    fn on_ack(
        &mut self,
        ack: ClientAck,
        ctx: &mut SocketCtx<'_>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ack, ctx);
        std::future::ready(())
    }

    /// Waits for the next server signal (never, by default). The session
    /// drops this future whenever something else wins its loop and asks
    /// again, so it must be cancel-safe (e.g. one `Receiver::recv`).
    fn next_signal(&mut self) -> impl Future<Output = Self::Signal> + Send {
        std::future::pending()
    }

    /// Acts on a signal.
    fn on_signal(
        &mut self,
        signal: Self::Signal,
        ctx: &mut SocketCtx<'_>,
    ) -> impl Future<Output = ()> + Send {
        let _ = (signal, ctx);
        std::future::ready(())
    }

    /// The Engine.IO message text (see the module docs) of `event`
    /// delivered on `key`, from the event's shared encoding; `None` skips
    /// it for this socket.
    fn event_packet<'e>(&self, key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>>;

    /// The Engine.IO message text telling the client `key` resumed past a
    /// gap; `None` says nothing.
    fn gap_packet(&self, key: &str, gap: &Gap) -> Option<String>;
}

/// A followed subscription's key in a session: the socket's slot and the
/// key the handler chose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FollowKey {
    /// The socket's slot in its session.
    pub slot: u32,
    /// The handler's key.
    pub key: Arc<str>,
}

/// The subscriptions of a session's sockets, polled together by the session.
pub(crate) struct Follows {
    hub: Arc<Hub>,
    streams: StreamMap<FollowKey, Followed>,
}

impl Follows {
    /// No subscriptions yet.
    pub(crate) fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            streams: StreamMap::new(),
        }
    }

    /// The subscriptions.
    pub(crate) fn streams(&mut self) -> &mut StreamMap<FollowKey, Followed> {
        &mut self.streams
    }

    /// Drops every subscription of the socket in `slot`.
    pub(crate) fn remove_slot(&mut self, slot: u32) {
        let keys: Vec<FollowKey> = self
            .streams
            .keys()
            .filter(|key| key.slot == slot)
            .cloned()
            .collect();
        for key in keys {
            self.streams.remove(&key);
        }
    }
}

/// The server acks a socket waits for (server-initiated acks are platform
/// API; only the debug test routes use them yet).
#[derive(Debug, Default)]
pub(crate) struct PendingAcks {
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    next_id: u64,
    waiting: VecDeque<u64>,
}

impl PendingAcks {
    /// A new ack id, waited for (the oldest is forgotten beyond the bound).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    fn issue(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.waiting.len() == MAX_PENDING_ACKS {
            self.waiting.pop_front();
        }
        self.waiting.push_back(id);
        id
    }

    /// Whether `id` was waited for (it no longer is).
    pub(crate) fn take(&mut self, id: u64) -> bool {
        let position = self.waiting.iter().position(|waiting| *waiting == id);
        position.and_then(|at| self.waiting.remove(at)).is_some()
    }
}

/// What the session keeps of a socket besides its handler.
pub(crate) struct SocketState {
    /// The socket's slot in its session (keys its subscriptions).
    pub slot: u32,
    /// Its namespace.
    pub nsp: Arc<str>,
    /// Its id (the CONNECT reply's `sid`).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub sid: Box<str>,
    /// What admitted it, if the namespace admits by credential.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub admission: Option<Admission>,
    /// Server acks waited for.
    pub acks: PendingAcks,
    /// The handler asked to disconnect it.
    pub disconnect: bool,
}

/// What a handler can do with its socket.
pub struct SocketCtx<'a> {
    state: &'a mut SocketState,
    follows: &'a mut Follows,
    out: &'a mut Vec<Outgoing>,
}

// What a handler may ask of its socket is platform API: the channels
// module uses part of it, the debug test routes the rest.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
impl<'a> SocketCtx<'a> {
    pub(crate) fn new(
        state: &'a mut SocketState,
        follows: &'a mut Follows,
        out: &'a mut Vec<Outgoing>,
    ) -> Self {
        Self {
            state,
            follows,
            out,
        }
    }

    /// Who the namespace admitted, when it admits by credential.
    pub fn principal(&self) -> Option<&Principal> {
        self.state
            .admission
            .as_ref()
            .map(|admission| &admission.principal)
    }

    /// The socket's id.
    pub fn socket_id(&self) -> &str {
        &self.state.sid
    }

    /// The socket's namespace.
    pub fn namespace(&self) -> &str {
        &self.state.nsp
    }

    /// Answers the client's event `id` (ACK).
    pub fn ack(&mut self, id: u64, args: Vec<Value>) {
        self.ack_binary(id, args, Vec::new());
    }

    /// Answers the client's event `id` with binary attachments (BINARY_ACK
    /// when there are any); `args` hold their placeholders.
    pub fn ack_binary(&mut self, id: u64, args: Vec<Value>, attachments: Vec<Bytes>) {
        self.send(Kind::Ack, Some(id), Value::Array(args), attachments);
    }

    /// Sends an EVENT.
    pub fn emit(&mut self, event: &str, args: Vec<Value>) {
        self.emit_binary(event, args, Vec::new());
    }

    /// Sends an EVENT with binary attachments (BINARY_EVENT when there are
    /// any); `args` hold their placeholders.
    pub fn emit_binary(&mut self, event: &str, args: Vec<Value>, attachments: Vec<Bytes>) {
        self.send(Kind::Event, None, event_array(event, args), attachments);
    }

    /// Sends an EVENT asking for an answer; returns the ack id the
    /// client's answer ([`SocketHandler::on_ack`]) will carry.
    pub fn emit_with_ack(&mut self, event: &str, args: Vec<Value>) -> u64 {
        self.emit_binary_with_ack(event, args, Vec::new())
    }

    /// [`SocketCtx::emit_with_ack`] with binary attachments.
    pub fn emit_binary_with_ack(
        &mut self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Bytes>,
    ) -> u64 {
        let id = self.state.acks.issue();
        self.send(Kind::Event, Some(id), event_array(event, args), attachments);
        id
    }

    fn send(&mut self, kind: Kind, id: Option<u64>, data: Value, attachments: Vec<Bytes>) {
        let kind = match (kind, attachments.is_empty()) {
            (Kind::Event, false) => Kind::BinaryEvent,
            (Kind::Ack, false) => Kind::BinaryAck,
            (kind, _) => kind,
        };
        let text = packet::encode(kind, &self.state.nsp, attachments.len(), id, Some(&data));
        self.out.push(Outgoing::Text(text));
        self.out
            .extend(attachments.into_iter().map(Outgoing::Binary));
    }

    /// Follows `topic` under `key` from `start` (replacing what `key`
    /// followed); returns the subscription's position: resuming after it
    /// misses nothing.
    pub fn follow(&mut self, key: &str, topic: TopicRef, start: Start) -> Option<Ulid> {
        let subscription = self.follows.hub.subscribe(topic, start);
        let position = subscription.last_id();
        self.follow_stream(key, deliveries(subscription));
        position
    }

    /// Follows a feed the handler built itself under `key` (replacing what
    /// `key` followed); a gap notice with [`Batch::gap_key`] is framed under that key.
    pub fn follow_stream(
        &mut self,
        key: &str,
        deliveries: impl Stream<Item = Result<Batch, StoreError>> + Send + 'static,
    ) {
        self.follows.streams.insert(
            self.key(key),
            Followed::new(Box::pin(deliveries), TRANSPORT),
        );
    }

    /// Stops following `key`; false when it was not followed.
    pub fn unfollow(&mut self, key: &str) -> bool {
        let key = self.key(key);
        self.follows.streams.remove(&key).is_some()
    }

    /// Whether `key` is followed.
    pub fn follows(&self, key: &str) -> bool {
        self.follows.streams.contains_key(&self.key(key))
    }

    /// How many keys this socket follows.
    pub fn following(&self) -> usize {
        let slot = self.state.slot;
        self.follows
            .streams
            .keys()
            .filter(|key| key.slot == slot)
            .count()
    }

    /// Disconnects the socket from its namespace (DISCONNECT to the client)
    /// once the handler returns.
    pub fn disconnect(&mut self) {
        self.state.disconnect = true;
    }

    fn key(&self, key: &str) -> FollowKey {
        FollowKey {
            slot: self.state.slot,
            key: Arc::from(key),
        }
    }
}

/// `[event, ...args]`.
fn event_array(event: &str, args: Vec<Value>) -> Value {
    let mut array = Vec::with_capacity(args.len() + 1);
    array.push(Value::from(event));
    array.extend(args);
    Value::Array(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_acks_are_bounded_and_taken_once() {
        let mut acks = PendingAcks::default();
        let first = acks.issue();
        let ids: Vec<u64> = (0..MAX_PENDING_ACKS).map(|_| acks.issue()).collect();
        assert!(!acks.take(first), "the oldest was forgotten");
        assert!(acks.take(ids[0]));
        assert!(!acks.take(ids[0]), "an ack is taken once");
        assert!(!acks.take(9999));
    }
}
