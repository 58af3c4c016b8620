//! An edge's replica of the writer's store, advanced one batch record at a
//! time, and the events each record appended handed to the edge's hub.
//!
//! Invariants:
//! * the replica is the writer's store as of batch [`Replica::applied`]:
//!   the number is the store record `m batch-number`, written in the same
//!   sled batch as the record's operations, so no crash separates them;
//! * record n is applied only onto batch n − 1: a lower number is a
//!   duplicate (skipped), a higher one a gap the caller fills first;
//! * the writer's outbox rows (`o …`) are never written here;
//! * after a record is applied, the events it appended (puts of event
//!   keys above the durable mark) are published in id order, the durable
//!   mark raised first, as the writer does after a flush
//!   (`core::writer::pipeline`): replay, resume and live delivery on an
//!   edge are the single-node code over the replica;
//! * records are applied without a flush each (the replica can be
//!   refetched): [`Replica::flush_every`] flushes in the background and the
//!   server flushes at shutdown; after a crash the replica holds some
//!   earlier batch, never a mix, and continues from there;
//! * the modules' memory follows the replica: a record's operations under
//!   a module's key prefix are handed to it ([`ReplicaFeed`]) once they are
//!   in the store and before the record's events are published or its
//!   number reported, so a client that waited for batch n (a forwarded
//!   write) finds the module's memory as of n;
//! * one caller applies (the follower); anyone may read the number.

use crate::auth::layout as auth_layout;
use crate::cluster::outbox::BATCH_NUMBER_RECORD;
use crate::cluster::record::BatchRecord;
use crate::core::hub::{FanOut, Hub};
use crate::core::lifecycle::Lifecycle;
use crate::core::log::{DurableMark, LogEvent};
use crate::core::store::{Op, Store, StoreError, WriteBatch, decode_u64, layout};
use crate::modules::platform::ReplicaFeed;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

/// The number of the last batch `store` holds (0: none).
pub fn stored_batch(store: &Store) -> Result<u64, StoreError> {
    Ok(store
        .get_blocking(&layout::meta(BATCH_NUMBER_RECORD))?
        .map_or(0, |bytes| decode_u64(&bytes)))
}

/// What became of a record handed to [`Replica::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Applied; its events are published.
    Applied,
    /// The replica already holds it: nothing done.
    Duplicate,
    /// Batches between the replica and it are missing: nothing done; the
    /// next record the replica needs is `next`.
    Gap {
        /// The number of the record to apply next.
        next: u64,
    },
}

/// The replica and the hub it feeds.
pub struct Replica {
    store: Store,
    hub: Arc<Hub>,
    durable: Arc<DurableMark>,
    applied: watch::Sender<u64>,
    records: AtomicU64,
    auth_changed: Notify,
    feed: Arc<ReplicaFeed>,
}

impl Replica {
    /// The replica in `store`, publishing to `hub` (whose durable mark is
    /// `durable`, seeded with the store's newest id), handing the modules'
    /// operations to `feed`.
    pub fn new(
        store: Store,
        hub: Arc<Hub>,
        durable: Arc<DurableMark>,
        feed: Arc<ReplicaFeed>,
    ) -> Result<Self, StoreError> {
        let applied = stored_batch(&store)?;
        Ok(Self {
            feed,
            store,
            hub,
            durable,
            applied: watch::Sender::new(applied),
            records: AtomicU64::new(0),
            auth_changed: Notify::new(),
        })
    }

    /// The number of the last batch applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Follows [`Replica::applied`] as it grows.
    pub fn watch_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Records applied since the start.
    pub fn records_applied(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Notified (once per burst) after a record changed tenants, API keys
    /// or realms.
    pub fn auth_changed(&self) -> &Notify {
        &self.auth_changed
    }

    /// Applies `record` if it is the next batch, then publishes its events.
    pub async fn apply(&self, record: BatchRecord) -> Result<Step, StoreError> {
        let applied = self.applied();
        if record.number <= applied {
            return Ok(Step::Duplicate);
        }
        if record.number > applied + 1 {
            return Ok(Step::Gap { next: applied + 1 });
        }
        let touches_auth = record.ops.iter().any(|(key, _)| is_auth_record(key));
        let events = appended_events(&record.ops, self.durable.get());
        let modules: Vec<Op> = record
            .ops
            .iter()
            .filter(|(key, _)| self.feed.wants(key))
            .cloned()
            .collect();
        let batch = replica_batch(record);
        let number = batch.number;
        let feed = self.feed.clone();
        self.store
            .run(move |store| {
                store.apply_blocking(&batch.writes)?;
                feed.applied(&modules);
                Ok(())
            })
            .await?;
        if let Some(newest) = events.last() {
            self.durable.raise(newest.id());
        }
        self.hub.publish(&events);
        self.records.fetch_add(1, Ordering::Relaxed);
        self.applied.send_replace(number);
        if touches_auth {
            self.auth_changed.notify_one();
        }
        Ok(Step::Applied)
    }

    /// Flushes what was applied every `period`, until the server stops.
    pub async fn flush_every(self: Arc<Self>, period: Duration, lifecycle: Arc<Lifecycle>) {
        let mut flushed = self.applied();
        loop {
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = lifecycle.stopping() => return,
            }
            let applied = self.applied();
            if applied == flushed {
                continue;
            }
            match self.store.flush().await {
                Ok(()) => flushed = applied,
                Err(err) => tracing::warn!(error = %err, "flushing the replica failed; retrying"),
            }
        }
    }
}

/// A record's writes as the replica applies them.
struct ReplicaBatch {
    number: u64,
    writes: WriteBatch,
}

/// The record's operations without the writer's outbox rows, and the
/// replica's batch number.
fn replica_batch(record: BatchRecord) -> ReplicaBatch {
    let mut writes = WriteBatch::default();
    for op in record.ops {
        if op.0.first() != Some(&layout::OUTBOX) {
            writes.push(op);
        }
    }
    writes.put(
        layout::meta(BATCH_NUMBER_RECORD),
        record.number.to_be_bytes(),
    );
    ReplicaBatch {
        number: record.number,
        writes,
    }
}

/// The events `ops` appended (puts of event keys with an id above
/// `durable`), in id order. An event that does not parse is logged and
/// left out of live delivery (it stays in the log).
fn appended_events(ops: &[Op], durable: ulid::Ulid) -> Vec<Arc<LogEvent>> {
    let mut events: Vec<Arc<LogEvent>> = ops
        .iter()
        .filter_map(|(key, value)| {
            let value = value.as_ref()?;
            if key.first() != Some(&layout::EVENT) {
                return None;
            }
            let tenant = Uuid::from_slice(key.get(1..17)?).ok()?;
            match LogEvent::decode(tenant, value) {
                Ok(event) => Some(Arc::new(event)),
                Err(err) => {
                    tracing::error!(error = %err, "a replicated event does not parse; it is not delivered live");
                    None
                }
            }
        })
        .filter(|event| event.id() > durable)
        .collect();
    events.sort_by_key(|event| event.id());
    events
}

/// Whether `key` is a tenant, API key or realm record (what the auth
/// registry holds in memory).
fn is_auth_record(key: &[u8]) -> bool {
    [
        auth_layout::TENANT,
        auth_layout::API_KEY,
        auth_layout::REALM,
    ]
    .iter()
    .any(|kind| key.starts_with(&auth_layout::kind_prefix(*kind)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::{Feed, HubLimits, Start};
    use crate::core::log::{Event, TopicRecord, TopicRef};
    use ulid::Ulid;

    const TOPIC: &str = "room/1";

    fn replica(dir: &std::path::Path) -> (Replica, Arc<Hub>) {
        let store = Store::open(&dir.join("db"), 1 << 20).unwrap();
        let durable = Arc::new(DurableMark::new(Ulid::nil()));
        let hub = Hub::new(store.clone(), durable.clone(), HubLimits::minimal());
        let feed = Arc::new(ReplicaFeed::default());
        (
            Replica::new(store, hub.clone(), durable, feed).unwrap(),
            hub,
        )
    }

    /// A record like the writer's: events of `TOPIC` with these ids, the
    /// topic record, an outbox row and the batch number.
    fn record(number: u64, tenant: Uuid, ids: &[u64], kept: u64) -> BatchRecord {
        let mut ops: Vec<Op> = Vec::new();
        for &id in ids {
            let event = Event {
                id: Ulid(u128::from(id)),
                topic: TOPIC.into(),
                event_type: "m".into(),
                occurred_at: "2026-01-01T00:00:00.000Z".into(),
                actor: serde_json::Value::Null,
                data: serde_json::json!({ "n": id }),
            };
            let key = layout::event(&tenant, TOPIC, u128::from(id));
            ops.push((key.into(), Some(serde_json::to_vec(&event).unwrap().into())));
        }
        let topic = TopicRecord {
            count: kept,
            pruned_through: 0,
        };
        ops.push((
            layout::topic(&tenant, TOPIC).into(),
            Some(topic.encode().to_vec().into()),
        ));
        ops.push((layout::outbox(number).into(), Some(b"row".to_vec().into())));
        ops.push((
            layout::meta(BATCH_NUMBER_RECORD).into(),
            Some(number.to_be_bytes().to_vec().into()),
        ));
        BatchRecord { number, ops }
    }

    async fn ids(feed: &mut impl Feed, count: usize) -> Vec<u128> {
        let mut seen = Vec::new();
        while seen.len() < count {
            let batch = tokio::time::timeout(Duration::from_secs(5), feed.next(64))
                .await
                .expect("the feed delivers")
                .unwrap();
            assert!(batch.gap.is_none());
            seen.extend(batch.events.iter().map(|event| event.id().0));
        }
        seen
    }

    #[tokio::test]
    async fn records_apply_in_number_order_and_their_events_reach_the_hub_once() {
        let dir = tempfile::tempdir().unwrap();
        let (replica, hub) = replica(dir.path());
        let tenant = Uuid::new_v4();
        let topic = TopicRef::new(tenant, TOPIC).unwrap();
        let mut live = hub.subscribe(topic.clone(), Start::Live);
        assert_eq!(replica.applied(), 0);
        // Ids out of order inside a record are published in id order.
        let first = replica
            .apply(record(1, tenant, &[11, 10], 2))
            .await
            .unwrap();
        assert_eq!(first, Step::Applied);
        assert_eq!(
            replica.apply(record(3, tenant, &[30], 4)).await.unwrap(),
            Step::Gap { next: 2 }
        );
        assert_eq!(
            replica.apply(record(2, tenant, &[20], 3)).await.unwrap(),
            Step::Applied
        );
        assert_eq!(
            replica.apply(record(2, tenant, &[20], 3)).await.unwrap(),
            Step::Duplicate
        );
        assert_eq!(
            replica
                .apply(record(1, tenant, &[11, 10], 2))
                .await
                .unwrap(),
            Step::Duplicate
        );
        assert_eq!(ids(&mut live, 3).await, [10, 11, 20]);
        assert!(live.take_ready(64).is_empty(), "nothing twice");
        assert_eq!((replica.applied(), replica.records_applied()), (2, 2));
        // The log of the replica serves a resume, and the number is stored.
        let mut resumed = hub.subscribe(topic, Start::After(Ulid(10)));
        assert_eq!(ids(&mut resumed, 2).await, [11, 20]);
        assert_eq!(stored_batch(&replica.store).unwrap(), 2);
        assert!(
            replica
                .store
                .first_blocking(&[layout::OUTBOX])
                .unwrap()
                .is_none(),
            "the writer's outbox rows stay on the writer"
        );
    }

    #[tokio::test]
    async fn a_record_changing_keys_tenants_or_realms_rings_the_auth_bell() {
        let dir = tempfile::tempdir().unwrap();
        let (replica, _hub) = replica(dir.path());
        let tenant = Uuid::new_v4();
        replica.apply(record(1, tenant, &[1], 1)).await.unwrap();
        let bell = replica.auth_changed().notified();
        let mut keyed = record(2, tenant, &[2], 2);
        keyed.ops.push((
            auth_layout::record(auth_layout::API_KEY, &tenant).into(),
            None,
        ));
        replica.apply(keyed).await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), bell)
            .await
            .expect("the bell rang");
        assert!(
            !is_auth_record(&auth_layout::ticket("abc")),
            "tickets are not held in memory"
        );
    }
}
