//! The commit pipeline: the one place that writes to the store.
//!
//! Callers hand a change (a closure) to [`Writer::commit`]. A dedicated
//! thread takes every queued change at once (up to `--writer-batch`), runs
//! each against the store plus what earlier changes of the same group wrote,
//! assigns event ids, applies the whole group with one atomic batch, makes it
//! durable with one flush, raises the durable mark, publishes the events to
//! the hub in id order, and only then answers each caller.
//!
//! Invariants:
//! * acknowledged means durable: no caller hears success before the flush;
//! * nothing is visible to subscribers or log readers before it is durable;
//! * a change that fails (error or panic) fails alone and leaves no trace; the
//!   rest of its group commits;
//! * a group applies atomically: after a crash either all of it or none of it
//!   is present, so no change is ever half-applied;
//! * ids increase strictly in commit order across all topics and restarts
//!   (the newest id is stored with every group).

use crate::error::{ApiError, ErrorCode};
use crate::hub::Hub;
use crate::log::ids::IdGenerator;
use crate::log::{DurableMark, Event, LogEvent, TopicRecord, TopicRef, validate_event_type};
use crate::store::{Store, StoreError, WriteBatch, keys};
use bytes::Bytes;
use serde_json::Value;
use std::any::Any;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use ulid::Ulid;

/// Name of the record holding the newest id ever issued.
const NEWEST_ID_RECORD: &str = "newest-id";

type ChangeFn = Box<dyn FnOnce(&mut Change<'_>) -> Result<Box<dyn Any + Send>, ApiError> + Send>;
/// A change's own value (type-erased) and the events it appended.
type Applied = (Box<dyn Any + Send>, Vec<Arc<LogEvent>>);
type Reply = oneshot::Sender<Result<Applied, ApiError>>;

struct Job {
    change: ChangeFn,
    reply: Reply,
}

/// Sizes of the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct WriterLimits {
    /// Changes that may wait for the writer; further callers get 503.
    pub queue: usize,
    /// Most changes committed with one flush.
    pub batch: usize,
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
}

impl Writer {
    /// Starts the writer thread. Returns the handle and the durable mark
    /// (seeded with the newest stored id) that readers share.
    pub fn start(
        store: Store,
        hub_factory: impl FnOnce(Arc<DurableMark>) -> Arc<Hub>,
        limits: WriterLimits,
    ) -> Result<(Self, Arc<Hub>, std::thread::JoinHandle<()>), StoreError> {
        let newest = store
            .get_blocking(&keys::meta(NEWEST_ID_RECORD))?
            .and_then(|bytes| <[u8; 16]>::try_from(bytes.as_ref()).ok())
            .map(|bytes| Ulid::from(u128::from_be_bytes(bytes)))
            .unwrap_or_else(Ulid::nil);
        let durable = Arc::new(DurableMark::new(newest));
        let hub = hub_factory(durable.clone());
        let (jobs, receiver) = mpsc::channel(limits.queue.max(1));
        let pipeline = Pipeline {
            store,
            hub: hub.clone(),
            durable,
            ids: IdGenerator::resume_after(newest),
            max_batch: limits.batch.max(1),
        };
        let thread = std::thread::Builder::new()
            .name("tidings-writer".into())
            .spawn(move || pipeline.run(receiver))
            .map_err(|err| StoreError(format!("starting the writer thread: {err}")))?;
        Ok((Self { jobs }, hub, thread))
    }

    /// Commits `change` durably and returns its result and events.
    pub async fn commit<T, F>(&self, change: F) -> Result<Committed<T>, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Change<'_>) -> Result<T, ApiError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            change: Box::new(move |ctx| {
                change(ctx).map(|value| Box::new(value) as Box<dyn Any + Send>)
            }),
            reply,
        };
        self.jobs.try_send(job).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ApiError::new(
                ErrorCode::ServiceUnavailable,
                "the write queue is full; retry shortly",
            )
            .with_header(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static("1"),
            ),
            mpsc::error::TrySendError::Closed(_) => ApiError::unavailable("the writer has stopped"),
        })?;
        let (value, events) = answer
            .await
            .map_err(|_| ApiError::unavailable("the writer stopped before answering"))??;
        let value = value
            .downcast::<T>()
            .map_err(|_| ApiError::internal("writer returned a value of the wrong type"))?;
        Ok(Committed {
            value: *value,
            events,
        })
    }
}

/// A change's view of the store: reads see the store plus earlier changes of
/// the same group plus this change's own writes.
pub struct Change<'a> {
    store: &'a Store,
    group: &'a BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    own: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    events: Vec<Arc<LogEvent>>,
    ids: &'a mut IdGenerator,
    now_ms: u64,
}

impl Change<'_> {
    /// Reads a key.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApiError> {
        if let Some(value) = self.own.get(key).or_else(|| self.group.get(key)) {
            return Ok(value.clone());
        }
        self.store
            .get_blocking(key)
            .map(|value| value.map(|v| v.to_vec()))
            .map_err(|err| ApiError::internal(format!("store read failed: {err}")))
    }

    /// Writes a key.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert(key, Some(value));
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.own.insert(key, None);
    }

    /// Appends an event to `topic`; returns it with its stored JSON (its id is
    /// final once committed), e.g. to stage a webhook delivery of it.
    pub fn append(
        &mut self,
        topic: &TopicRef,
        event_type: &str,
        actor: Value,
        data: Value,
    ) -> Result<Arc<LogEvent>, ApiError> {
        validate_event_type(event_type).map_err(ApiError::validation)?;
        let id = self.ids.next(self.now_ms);
        let event = Event {
            id,
            topic: topic.name.clone(),
            event_type: event_type.to_string(),
            occurred_at: crate::clock::rfc3339_millis(id.timestamp_ms()),
            actor,
            data,
        };
        let json = serde_json::to_vec(&event)
            .map_err(|err| ApiError::internal(format!("encoding event: {err}")))?;
        self.put(
            keys::event(&topic.tenant, &topic.name, u128::from(id)),
            json.clone(),
        );
        let record_key = keys::topic(&topic.tenant, &topic.name);
        let mut record = self
            .get(&record_key)?
            .map(|b| TopicRecord::decode(&b))
            .unwrap_or_default();
        record.count += 1;
        self.put(record_key, record.encode().to_vec());
        let appended = Arc::new(LogEvent::new(topic.tenant, event, Bytes::from(json)));
        self.events.push(appended.clone());
        Ok(appended)
    }

    /// A fresh id from the pipeline's generator, for records other than
    /// events that need ids ordered by commit and never reused (webhook
    /// deliveries): greater than every id issued before, events included.
    pub fn next_id(&mut self) -> Ulid {
        self.ids.next(self.now_ms)
    }

    /// Removes the oldest events of a topic (retention); `ids` must be stored
    /// events of the topic in ascending order.
    pub fn prune(&mut self, topic: &TopicRef, ids: &[u128]) -> Result<(), ApiError> {
        let Some(&newest) = ids.last() else {
            return Ok(());
        };
        for id in ids {
            self.delete(keys::event(&topic.tenant, &topic.name, *id));
        }
        let record_key = keys::topic(&topic.tenant, &topic.name);
        let mut record = self
            .get(&record_key)?
            .map(|b| TopicRecord::decode(&b))
            .unwrap_or_default();
        record.count = record.count.saturating_sub(ids.len() as u64);
        record.pruned_through = record.pruned_through.max(newest);
        self.put(record_key, record.encode().to_vec());
        Ok(())
    }
}

struct Pipeline {
    store: Store,
    hub: Arc<Hub>,
    durable: Arc<DurableMark>,
    ids: IdGenerator,
    max_batch: usize,
}

struct Outcome {
    reply: Reply,
    result: Result<Applied, ApiError>,
}

impl Pipeline {
    fn run(mut self, mut receiver: mpsc::Receiver<Job>) {
        while let Some(first) = receiver.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            self.commit_group(jobs);
        }
    }

    fn commit_group(&mut self, jobs: Vec<Job>) {
        let now_ms = crate::clock::unix_millis();
        let mut group: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let result = self.apply_one(job.change, &mut group, now_ms);
            outcomes.push(Outcome {
                reply: job.reply,
                result,
            });
        }
        if !group.is_empty()
            && let Err(err) = self.persist(group)
        {
            tracing::error!(error = %err, "commit failed; no change of this group was acknowledged");
            for outcome in &mut outcomes {
                if outcome.result.is_ok() {
                    outcome.result = Err(ApiError::unavailable(format!(
                        "the store rejected the write: {err}"
                    )));
                }
            }
            Self::answer(outcomes);
            return;
        }
        let events: Vec<Arc<LogEvent>> = outcomes
            .iter()
            .filter_map(|outcome| outcome.result.as_ref().ok())
            .flat_map(|(_, events)| events.iter().cloned())
            .collect();
        if let Some(newest) = events.last() {
            self.durable.raise(newest.id());
        }
        self.hub.publish(&events);
        Self::answer(outcomes);
    }

    fn apply_one(
        &mut self,
        change: ChangeFn,
        group: &mut BTreeMap<Vec<u8>, Option<Vec<u8>>>,
        now_ms: u64,
    ) -> Result<Applied, ApiError> {
        let mut ctx = Change {
            store: &self.store,
            group,
            own: BTreeMap::new(),
            events: Vec::new(),
            ids: &mut self.ids,
            now_ms,
        };
        let value = match std::panic::catch_unwind(AssertUnwindSafe(|| change(&mut ctx))) {
            Ok(result) => result?,
            Err(_) => {
                return Err(ApiError::internal(
                    "the change panicked; nothing was written",
                ));
            }
        };
        let Change { own, events, .. } = ctx;
        group.extend(own);
        Ok((value, events))
    }

    fn persist(&self, group: BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for (key, value) in group {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        batch.put(
            keys::meta(NEWEST_ID_RECORD),
            u128::from(self.ids.last()).to_be_bytes(),
        );
        self.store.apply_blocking(batch)?;
        self.store.flush_blocking()
    }

    fn answer(outcomes: Vec<Outcome>) {
        for outcome in outcomes {
            // A caller that went away no longer needs the answer; the write stands.
            let _ = outcome.reply.send(outcome.result);
        }
    }
}
