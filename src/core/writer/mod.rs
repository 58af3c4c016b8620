//! The commit pipeline: the one place that writes to the store.
//!
//! Callers hand a change (a closure) and its [`Footprint`] to
//! [`Writer::commit`]. A dedicated thread ([`pipeline`]) takes every queued
//! change at once (up to `--writer-batch`), runs each against the store plus
//! what earlier changes of the same group wrote, assigns event ids, applies
//! the whole group with one atomic batch, makes it durable with one flush,
//! raises the durable mark, publishes the events to the hub in id order, runs
//! the changes' after-commit hooks in commit order, and only then answers each
//! caller.
//!
//! Invariants:
//! * acknowledged means durable: no caller hears success before the flush;
//! * nothing is visible to subscribers or log readers, and no after-commit
//!   hook runs, before it is durable;
//! * a change that fails (error or panic) fails alone and leaves no trace; the
//!   rest of its group commits;
//! * a group applies atomically: after a crash either all of it or none of it
//!   is present, so no change is ever half-applied;
//! * a group that fails to become durable is answered 503 "outcome unknown",
//!   never published, and undone before the store takes writes again (see
//!   [`pipeline`]); meanwhile every write gets 503 with `Retry-After`;
//! * ids increase strictly in commit order across all topics and restarts
//!   (the newest id is stored with every group);
//! * the queue is bounded by changes (`--writer-queue`) and by the bytes the
//!   changes declared (`--writer-queue-bytes`); beyond either, 503.
//!
//! The writer also owns time: durable timers a change schedules, fired once
//! by the writer thread as changes of their own ([`timers`]), and counters
//! folded into one change per period ([`periodic`]). An online backup taps
//! it: every durable batch is journaled while the backup scans ([`tap`]).
//!
//! A cluster writer ([`Writer::start_replicated`]) also numbers every
//! durable batch and stages its outbox row in the same sled batch (see
//! [`crate::cluster::outbox`]); its writes are refused while the outbox is
//! full or the writer is fenced. Without it, this costs one `Option` check.

mod change;
#[cfg(debug_assertions)]
pub mod faults;
mod health;
mod periodic;
mod pipeline;
mod tap;
mod timers;

pub use change::{Change, EventObserver};
pub use health::{StoreState, WriterStatus};
// Periodic commits are platform API; only the debug test routes use them yet.
#[cfg_attr(not(debug_assertions), allow(unused_imports))]
pub use periodic::{Counters, Counts, DEFAULT_PERIOD};
pub use pipeline::RecoverySettings;
pub use tap::JournalHandle;
pub use timers::{PREFIX as TIMERS_PREFIX, Timer, TimerId, TimerRegistry};

use crate::cluster::outbox::Outbox;
use crate::core::hub::Hub;
use crate::core::log::ids::IdGenerator;
use crate::core::log::{DurableMark, LogEvent};
use crate::core::store::{Store, StoreError, layout};
use crate::error::ApiError;
use change::Observers;
use health::Health;
use pipeline::Pipeline;
use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tap::Tap;
use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

/// Name of the record holding the newest id ever issued.
const NEWEST_ID_RECORD: &str = "newest-id";

type ChangeFn = Box<dyn FnOnce(&mut Change<'_>) -> Result<Box<dyn Any + Send>, ApiError> + Send>;
/// A change's own value (type-erased) and the events it appended.
type Answer = (Box<dyn Any + Send>, Vec<Arc<LogEvent>>);
type Reply = oneshot::Sender<Result<Answer, ApiError>>;

struct Job {
    change: ChangeFn,
    reply: Reply,
    /// What the caller declared in its [`Footprint`].
    bytes: usize,
}

/// Sizes of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Changes that may wait for the writer; further callers get 503.
    pub queue: usize,
    /// Bytes the waiting changes may hold together; further callers get 503.
    pub queue_bytes: usize,
    /// Most changes committed with one flush.
    pub batch: usize,
    /// Recovery after a failed group.
    pub recovery: RecoverySettings,
}

/// The memory a queued change holds until the writer takes it, declared by
/// the caller so the queue can be bounded by bytes. Every commit states one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint(usize);

/// What any queued change costs besides its data (closure, channel, job).
const CHANGE_OVERHEAD: usize = 256;

impl Footprint {
    /// A small change of a few records, whose data is no larger than a few
    /// hundred bytes (a ticket, a key, a probe, a delivery outcome).
    pub const SMALL: Self = Self(CHANGE_OVERHEAD + 512);

    /// A change carrying `bytes` of caller data (typically the request body
    /// it was parsed from, whose decoded form is about as large).
    pub fn data(bytes: usize) -> Self {
        Self(CHANGE_OVERHEAD.saturating_add(bytes.saturating_mul(2)))
    }

    /// A change carrying these JSON values: what they hold in memory (each
    /// node, plus its strings' and keys' bytes), counted without encoding.
    pub fn json<'a>(values: impl IntoIterator<Item = &'a serde_json::Value>) -> Self {
        let held: usize = values.into_iter().map(json_bytes).sum();
        Self(CHANGE_OVERHEAD.saturating_add(held))
    }

    /// The bytes counted against `--writer-queue-bytes`.
    pub fn bytes(self) -> usize {
        self.0
    }
}

/// What a committed change produced.
#[derive(Debug)]
pub struct Committed<T> {
    /// The change's own result.
    pub value: T,
    /// The events it appended, durable and published.
    pub events: Vec<Arc<LogEvent>>,
}

/// Handle for submitting changes; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    durable: Arc<DurableMark>,
    health: Arc<Health>,
    limits: WriterLimits,
    /// Set when this node must not write (see [`Writer::start_refusing`]).
    refusal: Option<&'static str>,
    observers: Arc<Observers>,
    timers: Arc<TimerRegistry>,
    periodic: Arc<Mutex<Vec<Arc<periodic::Registration>>>>,
    tap: Arc<Tap>,
    /// The replication outbox of a cluster writer.
    outbox: Option<Arc<Outbox>>,
    #[cfg(debug_assertions)]
    faults: Arc<faults::Faults>,
}

/// A started writer: its handle, the hub it publishes to, and its thread
/// (which ends only when the store cannot be recovered or the thread
/// panicked; the caller supervises it).
pub struct Started {
    /// The handle for submitting changes.
    pub writer: Writer,
    /// The hub fed by the writer.
    pub hub: Arc<Hub>,
    /// The writer thread; its result says why it ended.
    pub thread: std::thread::JoinHandle<Result<(), String>>,
}

impl Writer {
    /// Starts the writer thread with the durable mark seeded with the newest
    /// stored id, and the hub `hub_factory` builds on that mark.
    pub fn start(
        store: Store,
        hub_factory: impl FnOnce(Arc<DurableMark>) -> Arc<Hub>,
        limits: WriterLimits,
    ) -> Result<Started, StoreError> {
        Self::launch(store, hub_factory, limits, None)
    }

    /// [`Writer::start`] for the writer of a cluster: every durable batch
    /// also gets its number and its row in `outbox`, and writes are refused
    /// while the outbox is full or the writer is fenced.
    pub fn start_replicated(
        store: Store,
        hub_factory: impl FnOnce(Arc<DurableMark>) -> Arc<Hub>,
        limits: WriterLimits,
        outbox: Arc<Outbox>,
    ) -> Result<Started, StoreError> {
        Self::launch(store, hub_factory, limits, Some(outbox))
    }

    fn launch(
        store: Store,
        hub_factory: impl FnOnce(Arc<DurableMark>) -> Arc<Hub>,
        limits: WriterLimits,
        outbox: Option<Arc<Outbox>>,
    ) -> Result<Started, StoreError> {
        let newest = newest_stored_id(&store)?;
        let durable = Arc::new(DurableMark::new(newest));
        let hub = hub_factory(durable.clone());
        let (jobs, receiver) = mpsc::channel(limits.queue.max(1));
        let writer = Self::handle(jobs, durable.clone(), limits, outbox, None);
        let pipeline = Pipeline {
            store,
            hub: hub.clone(),
            durable,
            ids: IdGenerator::resume_after(newest),
            max_batch: limits.batch.max(1),
            health: writer.health.clone(),
            recovery: limits.recovery,
            observers: writer.observers.clone(),
            timers: timers::TimerQueue::new(writer.timers.clone()),
            tap: writer.tap.clone(),
            outbox: writer.outbox.clone(),
            #[cfg(debug_assertions)]
            faults: writer.faults.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tidings-writer".into())
            .spawn(move || pipeline.run(receiver))
            .map_err(|err| StoreError::new(format!("starting the writer thread: {err}")))?;
        Ok(Started {
            writer,
            hub,
            thread,
        })
    }

    /// A handle for a node whose store something else writes (an edge: its
    /// replication follower): no writer thread runs, and every change is
    /// refused with 503 and `refusal`. The durable mark (also returned: the
    /// store's owner raises it) starts at the newest id stored, and the hub
    /// `hub_factory` builds is fed by that owner too.
    pub fn start_refusing(
        store: &Store,
        hub_factory: impl FnOnce(Arc<DurableMark>) -> Arc<Hub>,
        limits: WriterLimits,
        refusal: &'static str,
    ) -> Result<(Writer, Arc<Hub>, Arc<DurableMark>), StoreError> {
        let durable = Arc::new(DurableMark::new(newest_stored_id(store)?));
        let hub = hub_factory(durable.clone());
        // No thread takes changes: the receiver is dropped at once.
        let (jobs, _) = mpsc::channel(1);
        let writer = Self::handle(jobs, durable.clone(), limits, None, Some(refusal));
        Ok((writer, hub, durable))
    }

    fn handle(
        jobs: mpsc::Sender<Job>,
        durable: Arc<DurableMark>,
        limits: WriterLimits,
        outbox: Option<Arc<Outbox>>,
        refusal: Option<&'static str>,
    ) -> Self {
        Self {
            jobs,
            durable,
            health: Arc::new(Health::new()),
            limits,
            refusal,
            observers: Arc::default(),
            timers: Arc::default(),
            periodic: Arc::default(),
            tap: Arc::default(),
            outbox,
            #[cfg(debug_assertions)]
            faults: Arc::default(),
        }
    }

    /// Whether this handle refuses every change (see [`Writer::start_refusing`]).
    pub fn is_refusing(&self) -> bool {
        self.refusal.is_some()
    }

    /// Registers `observer` for every event appended from now on (see
    /// [`EventObserver`]); done at startup, before anything is served.
    pub fn observe(&self, observer: Arc<dyn EventObserver>) {
        self.observers.add(observer);
    }

    /// Commits `change` durably and returns its result and events.
    /// `footprint` is what the change holds while it waits (see [`Footprint`]).
    pub async fn commit<T, F>(
        &self,
        footprint: Footprint,
        change: F,
    ) -> Result<Committed<T>, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Change<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let answer = self.enqueue(
            footprint,
            Box::new(move |ctx| change(ctx).map(|value| Box::new(value) as Box<dyn Any + Send>)),
        )?;
        let (value, events) = answer.await.map_err(|_| {
            ApiError::unavailable_for(
                "the writer stopped before answering",
                Duration::from_secs(1),
            )
        })??;
        let value = value
            .downcast::<T>()
            .map_err(|_| ApiError::internal("writer returned a value of the wrong type"))?;
        Ok(Committed {
            value: *value,
            events,
        })
    }

    fn enqueue(
        &self,
        footprint: Footprint,
        change: ChangeFn,
    ) -> Result<oneshot::Receiver<Result<Answer, ApiError>>, ApiError> {
        if let Some(refusal) = self.refusal {
            return Err(ApiError::unavailable_for(refusal, Duration::from_secs(1)));
        }
        let state = self.health.state();
        if state != StoreState::Healthy {
            return Err(ApiError::unavailable_for(
                format!(
                    "the store is {}: it failed and is recovering; nothing was written; retry shortly",
                    state.as_str()
                ),
                self.limits.recovery.interval,
            ));
        }
        if let Some(outbox) = &self.outbox {
            outbox.admit()?;
        }
        let bytes = footprint.bytes();
        if !self.health.reserve(bytes, self.limits.queue_bytes) {
            return Err(queue_full(
                "the write queue holds its most bytes (--writer-queue-bytes)",
            ));
        }
        let (reply, answer) = oneshot::channel();
        let job = Job {
            change,
            reply,
            bytes,
        };
        self.jobs.try_send(job).map_err(|err| {
            self.health.release(bytes);
            match err {
                mpsc::error::TrySendError::Full(_) => {
                    queue_full("the write queue holds its most changes (--writer-queue)")
                }
                mpsc::error::TrySendError::Closed(_) => {
                    ApiError::unavailable_for("the writer has stopped", Duration::from_secs(1))
                }
            }
        })?;
        Ok(answer)
    }

    /// The newest durable event id: an event above it is in a group still
    /// being committed, or in a failed group that will be undone.
    pub fn durable_mark(&self) -> Ulid {
        self.durable.get()
    }

    /// The writer's state now.
    pub fn status(&self) -> WriterStatus {
        self.health.status()
    }

    /// The limits the writer runs with.
    pub fn limits(&self) -> WriterLimits {
        self.limits
    }

    /// The replication outbox, when this is a cluster's writer.
    pub fn outbox(&self) -> Option<&Arc<Outbox>> {
        self.outbox.as_ref()
    }

    /// The timer handlers: modules register theirs at startup (see
    /// [`Change::schedule`]).
    pub fn timers(&self) -> &TimerRegistry {
        &self.timers
    }

    /// Lets timers fire, late ones first: call once every module registered
    /// its timer handlers.
    pub async fn arm_timers(&self) {
        self.timers.arm();
        // Wake the writer thread, which sleeps without a deadline until armed.
        if let Err(err) = self.commit(Footprint::SMALL, |_| Ok(())).await {
            tracing::warn!(error = %err, "waking the writer for its timers failed; they fire at its next change");
        }
    }

    /// Starts journaling every batch made durable from now on, for an
    /// online backup, holding at most `max_bytes` until taken (on the
    /// blocking pool: it waits for the batch being written). 409 while
    /// another backup runs, 503 while the store is not healthy.
    pub async fn attach_journal(&self, max_bytes: usize) -> Result<JournalHandle, ApiError> {
        let (tap, health) = (self.tap.clone(), self.health.clone());
        tokio::task::spawn_blocking(move || tap.attach(&health, max_bytes))
            .await
            .map_err(|err| ApiError::internal(format!("starting the backup failed: {err}")))?
    }

    /// The faults tests may arm (debug builds only).
    #[cfg(debug_assertions)]
    pub fn faults(&self) -> &faults::Faults {
        &self.faults
    }
}

/// The newest id the store records as issued (nil for a new store).
fn newest_stored_id(store: &Store) -> Result<Ulid, StoreError> {
    Ok(store
        .get_blocking(&layout::meta(NEWEST_ID_RECORD))?
        .and_then(|bytes| <[u8; 16]>::try_from(bytes.as_ref()).ok())
        .map(|bytes| Ulid::from(u128::from_be_bytes(bytes)))
        .unwrap_or_else(Ulid::nil))
}

/// Memory a JSON value holds: a node's size plus its strings, keys and children.
fn json_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let node = std::mem::size_of::<Value>();
    node + match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(json_bytes).sum(),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| key.len() + node + json_bytes(item))
            .sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

fn queue_full(which: &str) -> ApiError {
    ApiError::unavailable_for(
        format!("{which}; nothing was written; retry shortly"),
        Duration::from_secs(1),
    )
}

#[cfg(test)]
use crate::core::hub::HubLimits;

#[cfg(test)]
impl Writer {
    /// A writer on `store` with small limits and a fast recovery, and its
    /// hub with `hub_limits`, for unit tests of code that commits.
    pub(crate) fn start_for_tests(store: Store, hub_limits: HubLimits) -> Started {
        Self::launch_for_tests(store, hub_limits, None)
    }

    fn launch_for_tests(
        store: Store,
        hub_limits: HubLimits,
        outbox: Option<Arc<Outbox>>,
    ) -> Started {
        let hub_store = store.clone();
        let limits = WriterLimits {
            queue: 16,
            queue_bytes: 1 << 20,
            batch: 16,
            recovery: RecoverySettings {
                interval: Duration::from_millis(50),
                timeout: Duration::from_secs(10),
            },
        };
        Writer::launch(
            store,
            |durable| Hub::new(hub_store, durable, hub_limits),
            limits,
            outbox,
        )
        .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn start(dir: &std::path::Path) -> Writer {
        let store = Store::open(&dir.join("db"), 1 << 20).unwrap();
        Writer::start_for_tests(store, HubLimits::minimal()).writer
    }

    /// Commits a change that records `name` from its after-commit hook, then
    /// fails with `fail` when given.
    async fn commit_with_hook(
        writer: &Writer,
        ran: &Arc<Mutex<Vec<&'static str>>>,
        name: &'static str,
        fail: bool,
    ) -> Result<(), ApiError> {
        let ran = ran.clone();
        writer
            .commit(Footprint::SMALL, move |change| {
                change.put(name.as_bytes().to_vec(), b"1".to_vec());
                change.after_commit(move || ran.lock().unwrap().push(name));
                if fail {
                    return Err(ApiError::validation("refused"));
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn after_commit_hooks_run_in_commit_order_only_for_durable_changes() {
        let dir = tempfile::tempdir().unwrap();
        let writer = start(dir.path());
        let ran = Arc::new(Mutex::new(Vec::new()));
        commit_with_hook(&writer, &ran, "first", false)
            .await
            .unwrap();
        assert!(
            commit_with_hook(&writer, &ran, "refused", true)
                .await
                .is_err()
        );
        commit_with_hook(&writer, &ran, "second", false)
            .await
            .unwrap();
        writer.faults().fail_flushes(1);
        let lost = commit_with_hook(&writer, &ran, "not-durable", false).await;
        assert_eq!(
            lost.unwrap_err().code,
            crate::error::ErrorCode::ServiceUnavailable
        );
        assert_eq!(*ran.lock().unwrap(), ["first", "second"]);
    }

    async fn put(writer: &Writer, key: &'static [u8]) -> Result<(), ApiError> {
        writer
            .commit(Footprint::SMALL, move |change| {
                change.put(key.to_vec(), b"v".to_vec());
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn healthy_again(writer: &Writer) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while writer.status().state != StoreState::Healthy {
            assert!(std::time::Instant::now() < deadline, "no recovery");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_cluster_writer_numbers_durable_batches_without_a_hole_even_after_a_failed_one() {
        use crate::cluster::outbox::BATCH_NUMBER_RECORD;
        use crate::cluster::record::BatchRecord;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let outbox = Outbox::open(&store, 1 << 30).unwrap();
        let writer =
            Writer::launch_for_tests(store.clone(), HubLimits::minimal(), Some(outbox.clone()))
                .writer;
        for key in [&b"k1"[..], b"k2"] {
            put(&writer, key).await.unwrap();
        }
        assert_eq!(outbox.last_durable(), 2);
        writer.faults().fail_flushes(1);
        let lost = put(&writer, b"lost").await.unwrap_err();
        assert_eq!(lost.code, crate::error::ErrorCode::ServiceUnavailable);
        healthy_again(&writer).await;
        assert_eq!(outbox.last_durable(), 2, "the failed batch took no number");
        assert_eq!(store.get_blocking(&layout::outbox(3)).unwrap(), None);
        assert_eq!(store.get_blocking(b"lost").unwrap(), None);
        let number = store
            .get_blocking(&layout::meta(BATCH_NUMBER_RECORD))
            .unwrap();
        assert_eq!(number.as_deref(), Some(&2u64.to_be_bytes()[..]), "undone");
        put(&writer, b"k3").await.unwrap();
        assert_eq!(outbox.last_durable(), 3);
        let rows: Vec<(u64, sled::IVec)> = outbox.rows_after(&store, 0, 10).unwrap();
        assert_eq!(rows.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3]);
        let record = BatchRecord::decode(&rows[2].1).unwrap();
        assert_eq!(record.number, 3);
        let keys: Vec<&[u8]> = record.ops.iter().map(|(key, _)| &key[..]).collect();
        let newest = layout::meta(NEWEST_ID_RECORD);
        let number_key = layout::meta(BATCH_NUMBER_RECORD);
        assert_eq!(keys, [&b"k3"[..], &newest, &number_key]);
        assert_eq!(record.ops[2].1.as_deref(), Some(&3u64.to_be_bytes()[..]));
        assert_eq!(outbox.status().rows, 3);
    }

    #[tokio::test]
    async fn a_cluster_writer_refuses_writes_while_its_outbox_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let outbox = Outbox::open(&store, 1).unwrap();
        outbox.arm_gate();
        let writer =
            Writer::launch_for_tests(store.clone(), HubLimits::minimal(), Some(outbox.clone()))
                .writer;
        put(&writer, b"first").await.unwrap();
        let refused = put(&writer, b"second").await.unwrap_err();
        assert!(refused.message.contains("outbox"), "{}", refused.message);
        assert_eq!(store.get_blocking(b"second").unwrap(), None);
        outbox.remove_through(&store, 1).unwrap();
        put(&writer, b"second").await.unwrap();
        assert_eq!(outbox.last_durable(), 2);
    }
}
