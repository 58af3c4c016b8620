//! The fan-out boundary: how committed events reach subscribers.
//!
//! The writer publishes through [`FanOut::publish`]; modules and transports
//! subscribe through [`FanOut::subscribe`] and read with [`Feed`]. The only
//! implementation is the in-process [`Hub`](super::Hub). A later one (an edge
//! node fed from a shared stream, with the writer still the system of record)
//! plugs in here, and must keep this contract:
//!
//! * **Durable before visible.** Only events that are durable in the log are
//!   published, and a subscriber never receives an event that is not. Log
//!   reads never look past the durable mark.
//! * **Order.** Events are published in id order; a feed delivers the events
//!   of its topic in strictly increasing id order.
//! * **Replay from a cursor.** A subscription starts at a position: the
//!   client's cursor ([`Start::After`]), or, for [`Start::Live`], a position
//!   fixed at subscription time such that every event above it is delivered.
//!   From there the feed delivers every event of the topic after the
//!   position exactly once: no gap, no duplicate, whatever the interleaving of
//!   publishes with registration, log reads and the switch to live delivery.
//! * **Explicit gaps.** When the position cannot be honoured (retention
//!   pruned events after it, or it is after every durable id), the first
//!   batch carries a [`Gap`] notice, then everything still kept follows.
//!   That is the only way a feed skips events.
//! * **Independence.** A slow or stalled subscriber never slows the
//!   publisher or other subscribers; what it missed in memory it repairs from
//!   the log, still exactly once.
//! * **Cheap.** Publishing costs nothing for topics without subscribers; an
//!   event is shared by every subscriber (no copy, no allocation per
//!   subscriber per event).
//! * **Cancel safety.** Dropping a pending [`Feed::next`] loses nothing; the
//!   position moves only when a batch is returned. Dropping the feed
//!   unsubscribes.

use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::core::store::StoreError;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Notify;
use ulid::Ulid;

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only events published from now on (the position is the durable mark).
    Live,
    /// Events after this position (a client's `Last-Event-ID`: an event id,
    /// or the position it was given on connecting), then live.
    After(Ulid),
}

/// What a feed yields at once: possibly a gap notice, then events in id order.
#[derive(Debug, Default)]
pub struct Batch {
    /// Set when the requested cursor could not be honoured.
    pub gap: Option<Gap>,
    /// For a feed over several topics ([`super::Merged`] and what is built on
    /// it): the key of the topic the gap notice is about; `None` for a
    /// single-topic feed.
    pub gap_key: Option<Arc<str>>,
    /// The events, oldest first.
    pub events: Vec<Arc<LogEvent>>,
}

/// Publish/subscribe of committed events (see the module's contract).
pub trait FanOut: Send + Sync + 'static {
    /// A subscriber's handle.
    type Feed: Feed;

    /// Hands durable events, in id order, to the subscribers of their topics.
    fn publish(&self, events: &[Arc<LogEvent>]);

    /// Registers a subscriber on `topic` starting at `start`.
    fn subscribe(self: &Arc<Self>, topic: TopicRef, start: Start) -> Self::Feed;

    /// The published mark: every event with an id at or below it has been
    /// handed to its subscribers' feeds (a caught-up feed's
    /// [`Feed::take_ready`] returns it). Never above the durable mark; only grows.
    fn published_mark(&self) -> Ulid;

    /// Resolves once the published mark is above `id` (at once if it is).
    fn published_past(&self, id: Ulid) -> impl Future<Output = ()> + Send + '_;
}

/// One subscriber's ordered, exactly-once view of one topic.
pub trait Feed: Send {
    /// The position: the id of the last event delivered, or where the feed
    /// started. A client resuming after it misses nothing. `None` only
    /// after a gap on a topic that kept nothing.
    fn last_id(&self) -> Option<Ulid>;

    /// Waits until something can be delivered and returns all of it (at most
    /// `max` events). Cancel-safe.
    fn next(&mut self, max: usize) -> impl Future<Output = Result<Batch, StoreError>> + Send;

    /// Takes what is ready right now without waiting (possibly nothing even
    /// when more will come). Transports add it to a write they are about to make.
    fn take_ready(&mut self, max: usize) -> Vec<Arc<LogEvent>>;

    /// Whether the feed delivers from memory: then every event of its topic
    /// up to the published mark read before a [`Feed::take_ready`] was
    /// returned by that call or earlier (unless the call hit `max`). False
    /// while it replays or repairs from the log.
    fn is_live(&self) -> bool;

    /// Rings `bell` (`notify_one`) on every publish to the feed's topic
    /// from now on, until the feed is dropped; replaces a bell attached
    /// before. A caller following many live feeds gives them all one bell
    /// and waits on it (enabled before its last take), then takes with
    /// [`Feed::take_ready`]: one wake-up registration per caller, not one
    /// per feed, and no publish between its take and its wait is missed.
    fn attach_bell(&mut self, bell: Arc<Notify>);
}
