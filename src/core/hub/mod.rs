//! In-memory fan-out per topic, with replay from the log and repair of
//! subscribers that fall behind.
//!
//! Each topic with subscribers has a [`Channel`]: a ring of the most recent
//! events ([`ring`], bounded by `--topic-buffer` events, `--topic-buffer-bytes`
//! per topic and `--hub-buffer-bytes` for all rings together, which the
//! largest ring gives way to first), a `Notify` for its subscriptions, the
//! bells of callers following it among many topics ([`Merged`]: one bell per
//! caller, rung once per publish), and
//! a few recent log pages its subscribers share ([`replay`]). Publishing
//! appends each event once (an `Arc`, so every subscriber shares the same
//! bytes) and wakes the waiting subscribers; each subscriber
//! ([`subscription`]) keeps its own position in the ring and takes everything
//! that is ready at once, so a transport can write it in one go.
//!
//! Invariants:
//! * subscribe registers first, then replays from the log, then goes live:
//!   no gap and no duplicate (delivery skips ids at or below the last one
//!   delivered, and switching to live happens only when the ring still holds
//!   everything published since the log read began);
//! * a subscription starts at a position: the client's cursor, or the
//!   durable mark read right after registering (every event above it reaches
//!   the ring after the registration); a client that resumes from that
//!   position misses nothing and gets nothing twice;
//! * a subscriber that falls out of the ring is repaired from the log; it
//!   never slows the publisher or other subscribers; rings drop their oldest
//!   events to stay within their bounds, never the publisher's;
//! * dropping a [`Subscription`] unregisters it; a topic without subscribers
//!   has no channel and costs nothing to publish to;
//! * events are published only after they are durable, in id order;
//! * a log read whose cursor is after the durable mark first waits up to
//!   the hub's cursor patience ([`Hub::wait_for_cursors`]; zero, so no
//!   wait, unless the server is a cluster edge whose replica may not yet
//!   hold a cursor another node gave) for the mark to reach it; a cursor
//!   still after the mark then is `unknown`, as without the wait.
//!
//! The hub is the in-process implementation of the [`FanOut`] boundary, whose
//! contract (`fan_out.rs`) any other implementation must keep.

mod fan_out;
#[cfg(test)]
mod invariants;
mod merged;
mod replay;
mod ring;
mod steps;
mod subscription;

pub use fan_out::{Batch, FanOut, Feed, Start};
pub use merged::{Merged, MergedItem};
pub use subscription::Subscription;

use crate::core::lifecycle::Lifecycle;
use crate::core::log::read::{Cursor, Page, PageLimit};
use crate::core::log::{DurableMark, LogEvent, TopicRef};
use crate::core::store::{Store, StoreError};
use replay::{PageCache, Readers, SharedPage};
use ring::Ring;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;
use steps::{Step, Steps};
use tokio::sync::Notify;
use ulid::Ulid;

/// How much the hub keeps in memory and reads at once.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    /// Most events a topic's ring holds.
    pub topic_events: usize,
    /// Most bytes a topic's ring is charged for.
    pub topic_bytes: usize,
    /// Most bytes all rings together are charged for.
    pub total_bytes: usize,
    /// Most log reads (replay and history) running at once.
    pub readers: usize,
}

impl HubLimits {
    /// The least a hub can work with: for tools that never subscribe.
    pub fn minimal() -> Self {
        Self {
            topic_events: 1,
            topic_bytes: 0,
            total_bytes: 0,
            readers: 1,
        }
    }
}

/// Sizes the hub reports as metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Live subscriptions.
    pub subscriptions: usize,
    /// Topics with at least one subscriber.
    pub topics: usize,
    /// Bytes charged for the events held in all rings.
    pub ring_bytes: usize,
    /// Events held in all rings.
    pub ring_events: usize,
    /// Log reads made for replay, repair and history.
    pub log_reads: u64,
}

struct Channel {
    topic: TopicRef,
    ring: Mutex<Ring>,
    /// Wakes the subscriptions waiting in [`Feed::next`].
    notify: Notify,
    /// Bells of callers following the topic among many (rung once each per publish).
    bells: Mutex<Vec<Arc<Notify>>>,
    subscribers: AtomicUsize,
    pages: Mutex<PageCache>,
}

impl Channel {
    fn new(topic: TopicRef) -> Self {
        Self {
            topic,
            ring: Mutex::new(Ring::default()),
            notify: Notify::new(),
            bells: Mutex::new(Vec::new()),
            subscribers: AtomicUsize::new(0),
            pages: Mutex::new(PageCache::default()),
        }
    }

    fn pages(&self) -> MutexGuard<'_, PageCache> {
        self.pages.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bells(&self) -> MutexGuard<'_, Vec<Arc<Notify>>> {
        self.bells.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attach_bell(&self, bell: Arc<Notify>) {
        self.bells().push(bell);
    }

    /// Removes one attachment of `bell` (a caller may attach it once per feed).
    fn detach_bell(&self, bell: &Arc<Notify>) {
        let mut bells = self.bells();
        if let Some(index) = bells.iter().position(|known| Arc::ptr_eq(known, bell)) {
            bells.swap_remove(index);
        }
    }

    /// Wakes everything waiting for the topic: subscriptions and bells.
    fn wake(&self) {
        self.notify.notify_waiters();
        for bell in self.bells().iter() {
            bell.notify_one();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The fan-out hub; one per server.
pub struct Hub {
    channels: RwLock<HashMap<TopicRef, Arc<Channel>>>,
    readers: Readers,
    limits: HubLimits,
    subscriptions: AtomicUsize,
    ring_bytes: AtomicUsize,
    /// The published mark ([`FanOut::published_mark`]) and its waiters.
    published: Mutex<Ulid>,
    published_changed: Notify,
    /// The cursor patience in milliseconds ([`Hub::wait_for_cursors`]).
    cursor_patience_ms: AtomicU64,
    steps: Steps,
}

impl Hub {
    /// A hub reading history from `store` up to `durable`, keeping recent
    /// events of each subscribed topic in memory within `limits`.
    pub fn new(store: Store, durable: Arc<DurableMark>, limits: HubLimits) -> Arc<Self> {
        let steps = Steps::default();
        Arc::new(Self {
            channels: RwLock::new(HashMap::new()),
            readers: Readers::new(store, durable, limits.readers, steps.clone()),
            limits: HubLimits {
                topic_events: limits.topic_events.max(1),
                ..limits
            },
            subscriptions: AtomicUsize::new(0),
            ring_bytes: AtomicUsize::new(0),
            published: Mutex::new(Ulid::nil()),
            published_changed: Notify::new(),
            cursor_patience_ms: AtomicU64::new(0),
            steps,
        })
    }

    /// The newest durable id: log reads must not look past it.
    pub fn durable_mark(&self) -> Ulid {
        self.readers.durable()
    }

    /// Makes log reads whose cursor is after the durable mark wait up to
    /// `patience` for the mark to reach it (an edge: the cursor may come
    /// from another node whose replica is ahead of this one).
    pub fn wait_for_cursors(&self, patience: Duration) {
        let millis = u64::try_from(patience.as_millis()).unwrap_or(u64::MAX);
        self.cursor_patience_ms.store(millis, Ordering::Relaxed);
    }

    /// Waits, up to the cursor patience, until the durable mark is at or
    /// after `cursor` (at once when it is, or when there is no patience).
    pub async fn reach(&self, cursor: Cursor) {
        let Cursor::After(id) = cursor else { return };
        let patience = self.cursor_patience_ms.load(Ordering::Relaxed);
        if patience == 0 || self.durable_mark() >= id {
            return;
        }
        // Published marks only durable ids: published past `id - 1` means
        // the durable mark holds `id`.
        let before = Ulid(id.0 - 1);
        let waited = Duration::from_millis(patience);
        let _ = tokio::time::timeout(waited, self.published_past(before)).await;
    }

    /// The store history is read from.
    pub fn store(&self) -> &Store {
        self.readers.store()
    }

    /// Number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Calls `visit` with every topic that has subscribers and their number
    /// (under the read lock: `visit` should be quick and not touch the hub).
    pub fn visit_subscriptions(&self, mut visit: impl FnMut(&TopicRef, usize)) {
        for (topic, channel) in self.channels().iter() {
            visit(topic, channel.subscribers.load(Ordering::Relaxed));
        }
    }

    /// Number of topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.channels().len()
    }

    /// Current sizes, for metrics.
    pub fn stats(&self) -> HubStats {
        let channels = self.channels();
        HubStats {
            subscriptions: self.subscription_count(),
            topics: channels.len(),
            ring_bytes: self.ring_bytes.load(Ordering::Relaxed),
            ring_events: channels.values().map(|channel| channel.lock().len()).sum(),
            log_reads: self.readers.count(),
        }
    }

    /// Every [`replay::PAGE_TTL`] until `lifecycle` stops, drops the replay
    /// pages channels keep past their use, so memory after a reconnect storm
    /// goes back to the rings and subscriptions alone.
    pub async fn expire_pages(self: Arc<Self>, lifecycle: Arc<Lifecycle>) {
        let mut tick = tokio::time::interval(replay::PAGE_TTL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = lifecycle.stopping() => return,
                _ = tick.tick() => {}
            }
            let channels: Vec<Arc<Channel>> = self.channels().values().cloned().collect();
            for channel in channels {
                channel.pages().expire();
            }
        }
    }

    /// Reads one page of `topic`'s history (a history request), within the
    /// hub's bound on concurrent log reads.
    pub async fn read_page(
        &self,
        topic: &TopicRef,
        cursor: Cursor,
        limit: PageLimit,
    ) -> Result<Page, StoreError> {
        self.reach(cursor).await;
        Ok(self.readers.read(topic, cursor, limit, || 0).await?.page)
    }

    /// Appends each event to its topic's ring (when the topic has
    /// subscribers); returns the channels to wake.
    fn append_to_rings(&self, events: &[Arc<LogEvent>]) -> Vec<Arc<Channel>> {
        let mut woken: Vec<Arc<Channel>> = Vec::new();
        let channels = self.channels();
        if channels.is_empty() {
            return woken;
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
            self.append(&mut ring, event);
            drop(ring);
            if !woken.iter().any(|known| Arc::ptr_eq(known, channel)) {
                woken.push(channel.clone());
            }
        }
        self.enforce_total(&channels);
        woken
    }

    /// Raises the published mark once the rings hold everything up to `id`
    /// (set after the appends and before subscribers are woken, so a woken
    /// subscriber always sees a mark covering what it takes).
    fn raise_published(&self, id: Ulid) {
        let mut published = self.published.lock().unwrap_or_else(|p| p.into_inner());
        *published = (*published).max(id);
        drop(published);
        self.published_changed.notify_waiters();
    }

    fn channels(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicRef, Arc<Channel>>> {
        self.channels.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `event` to a ring, then drops its oldest events while it is
    /// over its own bounds (count or bytes).
    fn append(&self, ring: &mut Ring, event: &Arc<LogEvent>) {
        let charge = ring::footprint(event);
        ring.push(event.clone(), charge);
        self.ring_bytes.fetch_add(charge, Ordering::Relaxed);
        while ring.len() > self.limits.topic_events || ring.bytes() > self.limits.topic_bytes {
            let Some(freed) = ring.pop_front() else { break };
            self.ring_bytes.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    /// Keeps all rings together within `--hub-buffer-bytes` by dropping the
    /// oldest events of the ring holding the most bytes: a topic filled with
    /// large events gives way first, so it cannot empty the small rings of
    /// other topics (or tenants). Subscribers of a trimmed ring repair from
    /// the log. Takes one ring lock at a time.
    fn enforce_total(&self, channels: &HashMap<TopicRef, Arc<Channel>>) {
        while self.ring_bytes.load(Ordering::Relaxed) > self.limits.total_bytes {
            let Some(largest) = channels
                .values()
                .max_by_key(|channel| channel.lock().bytes())
            else {
                return;
            };
            let mut ring = largest.lock();
            if ring.bytes() == 0 {
                return;
            }
            while self.ring_bytes.load(Ordering::Relaxed) > self.limits.total_bytes {
                let Some(freed) = ring.pop_front() else { break };
                self.ring_bytes.fetch_sub(freed, Ordering::Relaxed);
            }
        }
    }

    /// A page of `topic` that may serve `cursor` (check with
    /// [`SharedPage::offset_for`]), shared with the channel's other
    /// subscribers reading from about the same place.
    async fn shared_page(
        &self,
        channel: &Channel,
        cursor: Cursor,
    ) -> Result<Arc<SharedPage>, StoreError> {
        self.reach(cursor).await;
        let first_seq = channel.lock().first_seq();
        let durable = self.readers.durable();
        let slot = channel.pages().slot(cursor, first_seq, durable);
        let shared = slot
            .get_or_try_init(|| async {
                let read = self
                    .readers
                    .read(&channel.topic, cursor, replay::REPLAY_PAGE, || {
                        let mark = channel.lock().end_seq();
                        self.steps.reached(Step::PageMarked);
                        mark
                    });
                read.await.map(Arc::new)
            })
            .await?;
        Ok(shared.clone())
    }

    fn register(&self, topic: &TopicRef) -> Arc<Channel> {
        if let Some(channel) = self.channels().get(topic) {
            // Counted under the read lock, so a concurrent last unsubscribe cannot remove it.
            channel.subscribers.fetch_add(1, Ordering::SeqCst);
            return channel.clone();
        }
        let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
        let channel = channels
            .entry(topic.clone())
            .or_insert_with(|| Arc::new(Channel::new(topic.clone())))
            .clone();
        channel.subscribers.fetch_add(1, Ordering::SeqCst);
        channel
    }

    fn unregister(&self, channel: &Arc<Channel>) {
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        if channel.subscribers.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        let mut channels = self.channels.write().unwrap_or_else(|p| p.into_inner());
        let still_unused = channels.get(&channel.topic).is_some_and(|current| {
            Arc::ptr_eq(current, channel) && current.subscribers.load(Ordering::SeqCst) == 0
        });
        if still_unused {
            channels.remove(&channel.topic);
            let freed = channel.lock().clear();
            self.ring_bytes.fetch_sub(freed, Ordering::Relaxed);
        }
    }
}

/// The in-process fan-out: every subscriber of a topic reads its ring.
impl FanOut for Hub {
    type Feed = Subscription;

    fn published_mark(&self) -> Ulid {
        *self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn published_past(&self, id: Ulid) {
        loop {
            let changed = self.published_changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.published_mark() > id {
                return;
            }
            changed.await;
        }
    }

    fn publish(&self, events: &[Arc<LogEvent>]) {
        let woken = self.append_to_rings(events);
        if let Some(last) = events.last() {
            self.raise_published(last.id());
        }
        for channel in woken {
            channel.wake();
        }
    }

    /// Registers first, then fixes the position, then replays from the log
    /// (with a cursor) before going live.
    fn subscribe(self: &Arc<Self>, topic: TopicRef, start: Start) -> Subscription {
        let channel = self.register(&topic);
        self.steps.reached(Step::Registered);
        let registered_at = channel.lock().end_seq();
        self.steps.reached(Step::RingPositionTaken);
        self.subscriptions.fetch_add(1, Ordering::Relaxed);
        // Read after registering: every event above this mark is published
        // into the ring at or after `registered_at`.
        let durable = self.readers.durable();
        let (position, replay) = match start {
            Start::Live => (durable, false),
            // Nothing durable after the cursor: the ring will have all of it.
            Start::After(id) if id == durable => (id, false),
            Start::After(id) => (id, true),
        };
        Subscription::new(self.clone(), channel, registered_at, position, replay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::writer::{Footprint, Writer};
    use serde_json::{Value, json};

    /// A store in a temporary directory, its writer, and a hub with `limits`
    /// (for the hub's tests and its submodules').
    pub(super) fn start(limits: HubLimits) -> (tempfile::TempDir, Writer, Arc<Hub>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 16 << 20).unwrap();
        let started = Writer::start_for_tests(store, limits);
        (dir, started.writer, started.hub)
    }

    async fn append(writer: &Writer, topic: &TopicRef, data: Vec<Value>) -> Vec<Ulid> {
        let topic = topic.clone();
        let committed = writer
            .commit(Footprint::SMALL, move |change| {
                for data in data {
                    change.append(&topic, "test", Value::Null, data)?;
                }
                Ok(())
            })
            .await
            .unwrap();
        committed.events.iter().map(|event| event.id()).collect()
    }

    async fn take(subscription: &mut Subscription, count: usize) -> Vec<Ulid> {
        let mut ids = Vec::new();
        while ids.len() < count {
            let delivery = subscription.next(1024).await.unwrap();
            assert!(delivery.gap.is_none());
            ids.extend(delivery.events.iter().map(|event| event.id()));
        }
        ids
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resuming_from_the_durable_mark_reads_no_log_and_misses_nothing() {
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 16,
            topic_bytes: usize::MAX,
            total_bytes: usize::MAX,
            readers: 1,
        });
        let topic = TopicRef::new(uuid::Uuid::nil(), "quiet").unwrap();
        let before = append(&writer, &topic, vec![json!(1)]).await;
        let reads = hub.stats().log_reads;
        let mut subscription = hub.subscribe(topic.clone(), Start::After(before[0]));
        assert!(subscription.is_live(), "nothing durable after the cursor");
        let after = append(&writer, &topic, vec![json!(2), json!(3)]).await;
        assert_eq!(take(&mut subscription, 2).await, after);
        assert_eq!(hub.stats().log_reads, reads);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_ahead_of_the_durable_mark_is_unknown_at_once_or_waited_for() {
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 16,
            ..HubLimits::minimal()
        });
        let topic = TopicRef::new(uuid::Uuid::nil(), "ahead").unwrap();
        let soon = || Ulid::from_parts(crate::core::clock::unix_millis() + 100, 0);
        let mut unknown = hub.subscribe(topic.clone(), Start::After(soon()));
        let delivery = unknown.next(16).await.unwrap();
        assert_eq!(
            delivery.gap.map(|gap| gap.reason),
            Some(crate::core::log::read::GapReason::Unknown)
        );

        hub.wait_for_cursors(Duration::from_secs(5));
        let mut waiting = hub.subscribe(topic.clone(), Start::After(soon()));
        let later = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            append(&writer, &topic, vec![json!(1)]).await
        };
        let (taken, appended) = tokio::join!(take(&mut waiting, 1), later);
        assert_eq!(taken, appended, "the cursor was reached: no gap");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn subscribers_resuming_from_about_one_place_share_each_page_read() {
        let limits = HubLimits {
            readers: 2,
            ..HubLimits::minimal()
        };
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 1024,
            topic_bytes: usize::MAX,
            total_bytes: usize::MAX,
            ..limits
        });
        let topic = TopicRef::new(uuid::Uuid::nil(), "shared").unwrap();
        let ids = append(&writer, &topic, (0..700).map(|n| json!(n)).collect()).await;
        let reads = hub.stats().log_reads;
        let mut subscriptions: Vec<Subscription> = (0..100)
            .map(|_| hub.subscribe(topic.clone(), Start::After(ids[0])))
            .collect();
        for subscription in &mut subscriptions {
            assert_eq!(take(subscription, 699).await, ids[1..]);
        }
        assert_eq!(
            hub.stats().log_reads - reads,
            2,
            "two pages (512 and 187 events), each read once for 100 subscribers"
        );
        let mut nearby: Vec<(usize, Subscription)> = (0..100)
            .map(|n| {
                let from = 1 + n % 10;
                (from, hub.subscribe(topic.clone(), Start::After(ids[from])))
            })
            .collect();
        for (from, subscription) in &mut nearby {
            let expected = &ids[*from + 1..];
            assert_eq!(take(subscription, expected.len()).await, expected);
        }
        assert_eq!(
            hub.stats().log_reads - reads,
            2,
            "subscribers a few events later are served from the same pages"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replay_pages_are_dropped_once_they_expire_while_subscribers_stay() {
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 1024,
            topic_bytes: usize::MAX,
            total_bytes: usize::MAX,
            readers: 2,
        });
        let topic = TopicRef::new(uuid::Uuid::nil(), "idle-after-replay").unwrap();
        let ids = append(&writer, &topic, (0..20).map(|n| json!(n)).collect()).await;
        let mut subscription = hub.subscribe(topic.clone(), Start::After(ids[0]));
        assert_eq!(take(&mut subscription, 19).await, ids[1..]);
        let cached = |hub: &Hub| hub.channels()[&topic].pages().len();
        assert_eq!(
            cached(&hub),
            1,
            "the page read for the replay is kept to share"
        );
        let lifecycle = Arc::new(Lifecycle::new());
        let sweeper = tokio::spawn(hub.clone().expire_pages(lifecycle.clone()));
        tokio::time::sleep(replay::PAGE_TTL * 2 + std::time::Duration::from_millis(500)).await;
        assert_eq!(
            cached(&hub),
            0,
            "an expired page is dropped though the topic has a subscriber"
        );
        lifecycle.stop();
        sweeper.await.unwrap();
        let later = append(&writer, &topic, vec![json!("live")]).await;
        assert_eq!(
            take(&mut subscription, 1).await,
            later,
            "the subscriber still gets live events"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_filling_the_hub_gives_way_before_the_small_ring_of_another() {
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 1024,
            topic_bytes: 1 << 20,
            total_bytes: 64 * 1024,
            readers: 2,
        });
        let big = TopicRef::new(uuid::Uuid::nil(), "big").unwrap();
        let small = TopicRef::new(uuid::Uuid::new_v4(), "small").unwrap();
        let _big_subscriber = hub.subscribe(big.clone(), Start::Live);
        let _small_subscriber = hub.subscribe(small.clone(), Start::Live);
        let filler = "x".repeat(256);
        for n in 0..400 {
            append(&writer, &big, vec![json!({ "n": n, "filler": filler })]).await;
            assert!(hub.stats().ring_bytes <= 64 * 1024);
        }
        // The rings are full of the large topic's events: the small one's
        // event must push those out, not itself.
        let note = "y".repeat(2048);
        append(&writer, &small, vec![json!({ "n": 1, "note": note })]).await;
        assert!(hub.stats().ring_bytes <= 64 * 1024);
        let channels = hub.channels();
        assert_eq!(
            channels[&small].lock().len(),
            1,
            "the small ring kept its event"
        );
        assert!(channels[&big].lock().len() < 400, "the large ring gave way");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rings_stay_within_their_byte_bounds_and_subscribers_repair_the_rest() {
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 1024,
            topic_bytes: 64 * 1024,
            total_bytes: 96 * 1024,
            readers: 2,
        });
        let topics: Vec<TopicRef> = ["a", "b"]
            .iter()
            .map(|name| TopicRef::new(uuid::Uuid::nil(), name).unwrap())
            .collect();
        let mut subscriptions: Vec<Subscription> = topics
            .iter()
            .map(|topic| hub.subscribe(topic.clone(), Start::Live))
            .collect();
        let filler = "x".repeat(4096);
        let mut published = vec![Vec::new(), Vec::new()];
        for n in 0..60 {
            let which = n % 2;
            let data = vec![json!({ "n": n, "filler": filler })];
            published[which].extend(append(&writer, &topics[which], data).await);
            let stats = hub.stats();
            assert!(
                stats.ring_bytes > 0 && stats.ring_bytes <= 96 * 1024,
                "{stats:?}"
            );
            for channel in hub.channels().values() {
                assert!(channel.lock().bytes() <= 64 * 1024);
            }
        }
        assert!(hub.stats().ring_events < 60);
        for (subscription, ids) in subscriptions.iter_mut().zip(&published) {
            assert_eq!(&take(subscription, ids.len()).await, ids);
        }
    }
}
