//! In-memory fan-out per topic, with replay from the log and repair of
//! subscribers that fall behind.
//!
//! Each topic with subscribers has a [`Channel`]: a bounded ring of the most
//! recent events (`--topic-buffer`) and a `Notify`. Publishing appends each
//! event once (an `Arc`, so every subscriber shares the same bytes) and wakes
//! the waiting subscribers; each subscriber keeps its own position in the ring
//! and takes everything that is ready at once, so a transport can write it in
//! one go.
//!
//! Invariants:
//! * subscribe registers first, then replays from the log, then goes live:
//!   no gap and no duplicate (delivery skips ids at or below the last one
//!   delivered, and switching to live happens only when the ring still holds
//!   everything published since the log read began);
//! * a subscriber that falls out of the ring is repaired from the log; it
//!   never slows the publisher or other subscribers;
//! * dropping a [`Subscription`] unregisters it; a topic without subscribers
//!   has no channel and costs nothing to publish to;
//! * events are published only after they are durable, in id order.

use crate::log::read::{self, Cursor, Gap};
use crate::log::{DurableMark, LogEvent, TopicRef};
use crate::store::{Store, StoreError};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;
use ulid::Ulid;

/// Where a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Only events published from now on.
    Live,
    /// Every event still kept, then live.
    Beginning,
    /// Events after this id (a client's `Last-Event-ID`), then live.
    After(Ulid),
}

/// What a subscription yields: possibly a gap notice, then events in id order.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Set when the requested cursor could not be honoured.
    pub gap: Option<Gap>,
    /// The events, oldest first.
    pub events: Vec<Arc<LogEvent>>,
}

struct Ring {
    events: VecDeque<Arc<LogEvent>>,
    first_seq: u64,
}

impl Ring {
    fn end_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }
}

struct Channel {
    ring: Mutex<Ring>,
    notify: Notify,
    subscribers: AtomicUsize,
}

impl Channel {
    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The fan-out hub; one per server.
pub struct Hub {
    channels: RwLock<HashMap<TopicRef, Arc<Channel>>>,
    store: Store,
    durable: Arc<DurableMark>,
    topic_buffer: usize,
    subscriptions: AtomicUsize,
}

impl Hub {
    /// A hub reading history from `store` up to `durable`, keeping the last
    /// `topic_buffer` events of each subscribed topic in memory.
    pub fn new(store: Store, durable: Arc<DurableMark>, topic_buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            channels: RwLock::new(HashMap::new()),
            store,
            durable,
            topic_buffer: topic_buffer.max(1),
            subscriptions: AtomicUsize::new(0),
        })
    }

    /// The newest durable id: log reads must not look past it.
    pub fn durable_mark(&self) -> Ulid {
        self.durable.get()
    }

    /// The store history is read from.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Live subscriptions per tenant.
    pub fn subscriptions_by_tenant(&self) -> HashMap<uuid::Uuid, usize> {
        let mut counts = HashMap::new();
        for (topic, channel) in self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            *counts.entry(topic.tenant).or_insert(0) += channel.subscribers.load(Ordering::Relaxed);
        }
        counts
    }

    /// Number of topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Hands durable events (in id order) to the subscribers of their topics.
    pub fn publish(&self, events: &[Arc<LogEvent>]) {
        let mut woken: Vec<Arc<Channel>> = Vec::new();
        {
            let channels = self.channels.read().unwrap_or_else(|p| p.into_inner());
            if channels.is_empty() {
                return;
            }
            for event in events {
                let topic = TopicRef {
                    tenant: event.tenant,
                    name: event.event.topic.clone(),
                };
                let Some(channel) = channels.get(&topic) else {
                    continue;
                };
                let mut ring = channel.lock();
                ring.events.push_back(event.clone());
                if ring.events.len() > self.topic_buffer {
                    ring.events.pop_front();
                    ring.first_seq += 1;
                }
                drop(ring);
                if !woken.iter().any(|known| Arc::ptr_eq(known, channel)) {
                    woken.push(channel.clone());
                }
            }
        }
        for channel in woken {
            channel.notify.notify_waiters();
        }
    }

    /// Registers a subscriber on `topic`; it replays from `start`, then goes live.
    pub fn subscribe(self: &Arc<Self>, topic: TopicRef, start: Start) -> Subscription {
        let channel = self.register(&topic);
        let registered_at = channel.lock().end_seq();
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        // Read after registering: every event above this mark is published
        // into the ring at or after `registered_at`.
        let durable = self.durable.get();
        let (mode, last_id) = match start {
            Start::Live => (Mode::Live, Some(durable)),
            Start::Beginning => (Mode::Repair(Cursor::Start), None),
            Start::After(id) => (Mode::Repair(Cursor::After(id)), Some(id)),
        };
        Subscription {
            hub: self.clone(),
            topic,
            channel,
            next_seq: registered_at,
            last_id,
            mode,
        }
    }

    fn register(&self, topic: &TopicRef) -> Arc<Channel> {
        if let Some(channel) = self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            // Counted under the read lock, so a concurrent last unsubscribe cannot remove it.
            channel.subscribers.fetch_add(1, Ordering::SeqCst);
            return channel.clone();
        }
        let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
        let channel = channels
            .entry(topic.clone())
            .or_insert_with(|| {
                Arc::new(Channel {
                    ring: Mutex::new(Ring {
                        events: VecDeque::new(),
                        first_seq: 0,
                    }),
                    notify: Notify::new(),
                    subscribers: AtomicUsize::new(0),
                })
            })
            .clone();
        channel.subscribers.fetch_add(1, Ordering::SeqCst);
        channel
    }

    fn unregister(&self, topic: &TopicRef, channel: &Arc<Channel>) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        if channel.subscribers.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
        let still_unused = channels.get(topic).is_some_and(|current| {
            Arc::ptr_eq(current, channel) && current.subscribers.load(Ordering::SeqCst) == 0
        });
        if still_unused {
            channels.remove(topic);
        }
    }
}

enum Mode {
    /// Reading the log from this cursor.
    Repair(Cursor),
    /// Reading the ring from `next_seq`.
    Live,
}

/// One subscriber's position on one topic. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    topic: TopicRef,
    channel: Arc<Channel>,
    next_seq: u64,
    last_id: Option<Ulid>,
    mode: Mode,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &TopicRef {
        &self.topic
    }

    /// The id of the last event delivered (or the starting cursor).
    pub fn last_id(&self) -> Option<Ulid> {
        self.last_id
    }

    /// Waits until something can be delivered and returns all of it (at most
    /// `max` events). Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self, max: usize) -> Result<Delivery, StoreError> {
        let max = max.max(1);
        loop {
            if let Mode::Repair(cursor) = self.mode {
                let delivery = self.repair(cursor, max).await?;
                if delivery.gap.is_some() || !delivery.events.is_empty() {
                    return Ok(delivery);
                }
                continue;
            }
            let channel = self.channel.clone();
            let notified = channel.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let events = self.take_from_ring(max);
            if !events.is_empty() {
                return Ok(Delivery { gap: None, events });
            }
            if matches!(self.mode, Mode::Live) {
                notified.await;
            }
        }
    }

    /// Takes what is ready right now without waiting (nothing while repairing).
    /// Transports use it to add late arrivals to a write they are about to make.
    pub fn take_ready(&mut self, max: usize) -> Vec<Arc<LogEvent>> {
        match self.mode {
            Mode::Live => self.take_from_ring(max),
            Mode::Repair(_) => Vec::new(),
        }
    }

    /// Takes what is ready in the ring; switches to repair when the ring moved past us.
    fn take_from_ring(&mut self, max: usize) -> Vec<Arc<LogEvent>> {
        let ring = self.channel.lock();
        if self.next_seq < ring.first_seq {
            drop(ring);
            self.mode = Mode::Repair(match self.last_id {
                Some(id) => Cursor::Since(id),
                None => Cursor::Start,
            });
            return Vec::new();
        }
        let mut events = Vec::new();
        let start = usize::try_from(self.next_seq - ring.first_seq).unwrap_or(usize::MAX);
        for event in ring.events.iter().skip(start) {
            if events.len() == max {
                break;
            }
            self.next_seq += 1;
            if self.last_id.is_some_and(|last| event.id() <= last) {
                continue;
            }
            self.last_id = Some(event.id());
            events.push(event.clone());
        }
        events
    }

    /// Reads one page of the log; goes live when the ring covers the rest.
    async fn repair(&mut self, cursor: Cursor, max: usize) -> Result<Delivery, StoreError> {
        let mark = self.channel.lock().end_seq();
        let topic = self.topic.clone();
        let durable = self.hub.durable.get();
        let page = self
            .hub
            .store
            .run(move |store| read::read_page(store, &topic, cursor, max, durable))
            .await?;
        if let Some(last) = page.events.last() {
            self.last_id = Some(last.id());
        }
        if page.gap.is_some() && page.events.is_empty() {
            // Nothing kept at all: continue from the beginning of what will come.
            self.last_id = None;
        }
        let next_cursor = match self.last_id {
            Some(id) => Cursor::Since(id),
            None => Cursor::Start,
        };
        self.mode = Mode::Repair(next_cursor);
        if !page.more {
            let ring = self.channel.lock();
            if ring.first_seq <= mark {
                self.next_seq = mark;
                self.mode = Mode::Live;
            }
        }
        Ok(Delivery {
            gap: page.gap,
            events: page.events,
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unregister(&self.topic, &self.channel);
    }
}
