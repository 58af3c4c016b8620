//! What a surface supplies to run on WebSocket: its protocol.
//!
//! The runner ([`super::runner`]) owns the socket, keepalive, close codes,
//! expiry, revocation, shutdown, write pacing and the subscriptions; a
//! surface implements [`WsProtocol`]: what a client's message means, what the
//! server itself tells an open session (a [`WsProtocol::Signal`], e.g. a
//! membership change), which topics the session follows (through
//! [`Session`], from the start or while it is open) and how events and gaps
//! are framed. No tungstenite type crosses this boundary.
//!
//! Invariants: a session's subscriptions are polled by the session itself
//! (a `StreamMap`, no task or queue per subscription); following a key again
//! replaces its subscription; dropping a subscription (unfollow, end of the
//! session) unsubscribes it from the hub.

use super::frames::FrameBatch;
use super::runner::TRANSPORT;
use crate::auth::{Admission, Principal};
use crate::core::hub::{Batch, FanOut, Feed, Hub, Start, Subscription};
use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::core::metrics::DeliveryCounter;
use crate::core::store::StoreError;
use bytes::Bytes;
use futures_util::Stream;
use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_stream::StreamMap;
use ulid::Ulid;

/// Most events taken from a subscription at once.
const MAX_BATCH: usize = 512;

/// What the session does after a message, a signal or the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to send.
    Continue,
    /// Send this text frame.
    Text(String),
    /// End the session with close code 1008 and this reason.
    Close(Cow<'static, str>),
}

/// A surface's WebSocket protocol, one value per session.
pub trait WsProtocol: Send + 'static {
    /// What the server tells an open session without a client message
    /// (e.g. "the user joined room R"); `Infallible` when nothing.
    type Signal: Send;

    /// Runs when the session starts, before any client message: follow the
    /// topics the server sets, greet the client.
    fn open(&mut self, session: &mut Session<'_>) -> impl Future<Output = Outcome> + Send {
        let _ = session;
        std::future::ready(Outcome::Continue)
    }

    /// A text message from the client.
    fn on_text(
        &mut self,
        text: &str,
        session: &mut Session<'_>,
    ) -> impl Future<Output = Outcome> + Send;

    /// A binary message from the client (refused by default).
    fn on_binary(
        &mut self,
        data: &[u8],
        session: &mut Session<'_>,
    ) -> impl Future<Output = Outcome> + Send {
        let _ = (data, session);
        std::future::ready(Outcome::Close("this endpoint takes text frames".into()))
    }

    /// Waits for the next signal from the server (never, by default). The
    /// runner drops this future whenever another event wins its loop and
    /// asks again, so it must be cancel-safe (e.g. one `mpsc::Receiver::recv`).
    fn next_signal(&mut self) -> impl Future<Output = Self::Signal> + Send {
        std::future::pending()
    }

    /// Acts on a signal: follow or unfollow topics, tell the client.
    fn on_signal(
        &mut self,
        signal: Self::Signal,
        session: &mut Session<'_>,
    ) -> impl Future<Output = Outcome> + Send {
        let _ = (signal, session);
        std::future::ready(Outcome::Continue)
    }

    /// The text frame of `event` delivered on `key` (from the event's shared
    /// encoding), or `None` to skip it for this session.
    fn event_text<'e>(&self, key: &str, event: &'e LogEvent) -> Option<Cow<'e, Bytes>>;

    /// Frames the events of one delivery on `key`, in order: one frame per
    /// event from [`WsProtocol::event_text`] unless the protocol groups
    /// several events into one frame.
    fn frame_events(&self, key: &str, events: &[Arc<LogEvent>], frames: &mut FrameBatch) {
        for event in events {
            if let Some(text) = self.event_text(key, event) {
                frames.push_text(&text);
            }
        }
    }

    /// The text frame announcing that `key` resumed past a gap.
    fn gap_text(&self, key: &str, gap: &Gap) -> String;
}

/// One subscription (or a protocol's own feed) as a stream of deliveries.
pub(crate) type Deliveries = Pin<Box<dyn Stream<Item = Result<Batch, StoreError>> + Send>>;

/// A delivery ready to be written, with the key it was followed under.
pub(super) type Ready = (Arc<str>, (Result<Batch, StoreError>, DeliveryCounter));

/// A subscription as the stream of its deliveries (at most [`MAX_BATCH`] events each).
pub(crate) fn deliveries(subscription: Subscription) -> Deliveries {
    Box::pin(futures_util::stream::unfold(
        subscription,
        |mut subscription| async move {
            let delivery = subscription.next(MAX_BATCH).await;
            Some((delivery, subscription))
        },
    ))
}

/// A followed stream of deliveries and the counter of the events written
/// from it, looked up once per follow (on its first events).
pub(crate) struct Followed {
    deliveries: Deliveries,
    counter: DeliveryCounter,
}

impl Followed {
    /// `deliveries`, counted under `transport`.
    pub(crate) fn new(deliveries: Deliveries, transport: &'static str) -> Self {
        Self {
            deliveries,
            counter: DeliveryCounter::new(transport),
        }
    }
}

impl Stream for Followed {
    type Item = (Result<Batch, StoreError>, DeliveryCounter);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.deliveries
            .as_mut()
            .poll_next(cx)
            .map(|item| item.map(|delivery| (delivery, this.counter.clone())))
    }
}

/// The topics a session follows, each under a key chosen by the protocol.
pub(super) struct Follows {
    hub: Arc<Hub>,
    subscriptions: StreamMap<Arc<str>, Followed>,
}

impl Follows {
    pub(super) fn new(hub: Arc<Hub>) -> Self {
        Self {
            hub,
            subscriptions: StreamMap::new(),
        }
    }

    /// The subscriptions, polled together by the runner.
    pub(super) fn streams(&mut self) -> &mut StreamMap<Arc<str>, Followed> {
        &mut self.subscriptions
    }

    /// Unsubscribes everything.
    pub(super) fn clear(&mut self) {
        self.subscriptions.clear();
    }
}

/// What a protocol sees of its session: who opened it and what it follows.
pub struct Session<'a> {
    admission: &'a Admission,
    follows: &'a mut Follows,
}

impl<'a> Session<'a> {
    pub(super) fn new(admission: &'a Admission, follows: &'a mut Follows) -> Self {
        Self { admission, follows }
    }

    /// Who opened the session.
    pub fn principal(&self) -> &Principal {
        &self.admission.principal
    }

    /// Follows `topic` under `key` from `start` (replacing what `key`
    /// followed); returns the subscription's position (see
    /// [`Subscription::last_id`]): resuming after it misses nothing.
    pub fn follow(&mut self, key: &str, topic: TopicRef, start: Start) -> Option<Ulid> {
        let subscription = self.follows.hub.subscribe(topic, start);
        let position = subscription.last_id();
        self.follows.subscriptions.insert(
            Arc::from(key),
            Followed::new(deliveries(subscription), TRANSPORT),
        );
        position
    }

    /// Follows a feed the protocol built itself (e.g. several topics merged
    /// in commit order) under `key`, replacing what `key` followed. The
    /// runner writes its deliveries like a subscription's; a gap notice
    /// carrying [`Batch::gap_key`] is framed under that key.
    pub fn follow_stream(
        &mut self,
        key: &str,
        deliveries: impl Stream<Item = Result<Batch, StoreError>> + Send + 'static,
    ) {
        self.follows.subscriptions.insert(
            Arc::from(key),
            Followed::new(Box::pin(deliveries), TRANSPORT),
        );
    }

    /// Stops following `key`; false when it was not followed.
    pub fn unfollow(&mut self, key: &str) -> bool {
        self.follows.subscriptions.remove(key).is_some()
    }

    /// Whether `key` is followed.
    pub fn follows(&self, key: &str) -> bool {
        self.follows.subscriptions.contains_key(key)
    }

    /// The keys followed, in no particular order.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub fn followed(&self) -> impl Iterator<Item = &str> {
        self.follows.subscriptions.keys().map(|key| &**key)
    }

    /// How many keys are followed.
    pub fn following(&self) -> usize {
        self.follows.subscriptions.len()
    }
}
