//! Object-safe forms of [`Namespace`] and [`SocketHandler`], so one session
//! can hold sockets of namespaces of different types.
//!
//! Invariant: a signal is stored by [`DynSocket::wait_signal`] only when
//! its future completes, and handed to the handler by the next
//! [`DynSocket::on_signal`]; a wait dropped before completing loses nothing
//! (the handler's `next_signal` is cancel-safe).

use super::namespace::{
    ClientAck, ClientEvent, ConnectRefusal, Handshake, Namespace, SocketCtx, SocketHandler,
};
use crate::auth::Admission;
use crate::core::log::LogEvent;
use crate::core::log::read::Gap;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde_json::Value;
use std::borrow::Cow;

/// What a CONNECT gives: the socket and what admitted it.
pub(crate) type Connected = (Box<dyn DynSocket>, Option<Admission>);

/// A [`Namespace`] of any type.
pub(crate) trait DynNamespace: Send + Sync {
    /// See [`Namespace::connect`].
    fn connect<'a>(
        &'a self,
        handshake: &'a Handshake,
        auth: Option<Value>,
    ) -> BoxFuture<'a, Result<Connected, ConnectRefusal>>;
}

impl<N: Namespace> DynNamespace for N {
    fn connect<'a>(
        &'a self,
        handshake: &'a Handshake,
        auth: Option<Value>,
    ) -> BoxFuture<'a, Result<Connected, ConnectRefusal>> {
        Box::pin(async move {
            let (socket, admission) = Namespace::connect(self, handshake, auth).await?;
            let socket: Box<dyn DynSocket> = Box::new(Erased {
                handler: socket,
                signal: None,
            });
            Ok((socket, admission))
        })
    }
}

/// A [`SocketHandler`] of any type.
pub(crate) trait DynSocket: Send {
    /// See [`SocketHandler::on_connect`].
    fn on_connect<'a>(&'a mut self, ctx: &'a mut SocketCtx<'_>) -> BoxFuture<'a, ()>;
    /// See [`SocketHandler::on_event`].
    fn on_event<'a>(
        &'a mut self,
        event: ClientEvent,
        ctx: &'a mut SocketCtx<'_>,
    ) -> BoxFuture<'a, ()>;
    /// See [`SocketHandler::on_ack`].
    fn on_ack<'a>(&'a mut self, ack: ClientAck, ctx: &'a mut SocketCtx<'_>) -> BoxFuture<'a, ()>;
    /// Waits for the handler's next signal and keeps it.
    fn wait_signal(&mut self) -> BoxFuture<'_, ()>;
    /// Hands the kept signal to the handler.
    fn on_signal<'a>(&'a mut self, ctx: &'a mut SocketCtx<'_>) -> BoxFuture<'a, ()>;
    /// See [`SocketHandler::event_packet`].
    fn event_packet<'e>(&self, key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>>;
    /// See [`SocketHandler::gap_packet`].
    fn gap_packet(&self, key: &str, gap: &Gap) -> Option<String>;
}

/// A handler and the signal it was given but has not handled yet.
struct Erased<S: SocketHandler> {
    handler: S,
    signal: Option<S::Signal>,
}

impl<S: SocketHandler> DynSocket for Erased<S> {
    fn on_connect<'a>(&'a mut self, ctx: &'a mut SocketCtx<'_>) -> BoxFuture<'a, ()> {
        Box::pin(self.handler.on_connect(ctx))
    }

    fn on_event<'a>(
        &'a mut self,
        event: ClientEvent,
        ctx: &'a mut SocketCtx<'_>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(self.handler.on_event(event, ctx))
    }

    fn on_ack<'a>(&'a mut self, ack: ClientAck, ctx: &'a mut SocketCtx<'_>) -> BoxFuture<'a, ()> {
        Box::pin(self.handler.on_ack(ack, ctx))
    }

    fn wait_signal(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let signal = self.handler.next_signal().await;
            self.signal = Some(signal);
        })
    }

    fn on_signal<'a>(&'a mut self, ctx: &'a mut SocketCtx<'_>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Some(signal) = self.signal.take() {
                self.handler.on_signal(signal, ctx).await;
            }
        })
    }

    fn event_packet<'e>(&self, key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>> {
        self.handler.event_packet(key, event)
    }

    fn gap_packet(&self, key: &str, gap: &Gap) -> Option<String> {
        self.handler.gap_packet(key, gap)
    }
}
