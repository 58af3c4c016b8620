//! [`Change`]: what a change closure sees of the store while the writer
//! thread runs it, and what it leaves behind (writes, events, after-commit
//! hooks); [`EventObserver`]: what reacts to every appended event inside the
//! change that appends it (webhooks stage their outbox rows so).
//!
//! Invariants: reads see the store plus earlier changes of the same group plus
//! the change's own writes; nothing a change does reaches the store, the hub or
//! its hooks unless the change succeeds and its group becomes durable; every
//! registered observer sees every appended event, in the same change, so what
//! it writes commits with the event or not at all (an observer's error fails
//! the change).

use super::timers::TimerId;
use crate::core::log::ids::IdGenerator;
use crate::core::log::{Event, LogEvent, TopicRecord, TopicRef, validate_event_type};
use crate::core::store::{Store, layout};
use crate::error::ApiError;
use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use ulid::Ulid;

/// Pending writes: a value to put, or `None` to delete.
pub(super) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Key-value pairs read from the store.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Work to run once the change that registered it is durable.
pub(super) type Hook = Box<dyn FnOnce() + Send>;

/// Reacts to each event appended by any change, inside that change: what it
/// writes joins the change's batch, and its error fails the change (nothing
/// of it is written). Registered once at startup with
/// [`super::Writer::observe`], before anything is served.
pub trait EventObserver: Send + Sync {
    /// Called by [`Change::append`] once `event` is appended (its id is
    /// final once committed). Runs on the writer thread: it must be quick,
    /// must not wait for the writer, and must not append events itself.
    fn appended(&self, change: &mut Change<'_>, event: &LogEvent) -> Result<(), ApiError>;
}

/// The registered observers; each change runs with the list as it was when
/// the change started.
#[derive(Default)]
pub(super) struct Observers {
    list: RwLock<Arc<[Arc<dyn EventObserver>]>>,
}

impl Observers {
    pub(super) fn add(&self, observer: Arc<dyn EventObserver>) {
        let mut list = self
            .list
            .write()
            .unwrap_or_else(|poison| poison.into_inner());
        *list = list.iter().cloned().chain([observer]).collect();
    }

    pub(super) fn current(&self) -> Arc<[Arc<dyn EventObserver>]> {
        self.list
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }
}

/// A change's view of the store: reads see the store plus earlier changes of
/// the same group plus this change's own writes.
pub struct Change<'a> {
    pub(super) store: &'a Store,
    pub(super) group: &'a Writes,
    pub(super) own: Writes,
    pub(super) events: Vec<Arc<LogEvent>>,
    pub(super) hooks: Vec<Hook>,
    pub(super) ids: &'a mut IdGenerator,
    pub(super) now_ms: u64,
    pub(super) observers: &'a [Arc<dyn EventObserver>],
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
            .map_err(|err| err.into_api("store read failed"))
    }

    /// Every pair under `prefix` as this change sees it (the store plus
    /// earlier changes of the group plus its own writes), in key order. It
    /// reads the whole prefix: for small key ranges only (a few hundred rows).
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, ApiError> {
        let mut seen: Writes = BTreeMap::new();
        self.store
            .for_each_blocking(prefix, |key, value| {
                seen.insert(key.to_vec(), Some(value.to_vec()));
                Ok(())
            })
            .map_err(|err| err.into_api("store read failed"))?;
        for pending in [self.group, &self.own] {
            let under = pending
                .range(prefix.to_vec()..)
                .take_while(|(key, _)| key.starts_with(prefix));
            seen.extend(under.map(|(key, value)| (key.clone(), value.clone())));
        }
        Ok(seen
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?)))
            .collect())
    }

    /// Up to `max` committed pairs under `prefix` after the key `after`
    /// (from the first when `None`), in key order, read from the store
    /// alone (this group's pending writes are not seen): for walking a
    /// range too large for one change in bounded steps, one page a change.
    pub fn stored_page(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        max: usize,
    ) -> Result<Pairs, ApiError> {
        let page = self
            .store
            .scan_blocking(prefix, after, max)
            .map_err(|err| err.into_api("store read failed"))?;
        Ok(page
            .into_iter()
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect())
    }

    /// Up to `max` stored keys under `prefix`, in key order, less those this
    /// change or an earlier one of its group deletes: for removing a range
    /// too large for one change in bounded steps (keys only written in the
    /// group are not listed).
    pub fn stored_keys(&self, prefix: &[u8], max: usize) -> Result<Vec<Vec<u8>>, ApiError> {
        let mut keys = Vec::new();
        let mut after: Option<Vec<u8>> = None;
        while keys.len() < max {
            let page = self
                .store
                .scan_blocking(prefix, after.as_deref(), max)
                .map_err(|err| err.into_api("store read failed"))?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.to_vec());
            let deleted = |key: &[u8]| {
                matches!(
                    self.own.get(key).or_else(|| self.group.get(key)),
                    Some(None)
                )
            };
            let live = page.iter().map(|(key, _)| key).filter(|key| !deleted(key));
            keys.extend(live.take(max - keys.len()).map(|key| key.to_vec()));
        }
        Ok(keys)
    }

    /// The writer's clock for this change (unix ms): the wall clock read when
    /// its group began, the time its event ids are made from. It follows the
    /// system clock, so it can step back between groups.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Writes a key.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert(key, Some(value));
    }

    /// Deletes a key.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.own.insert(key, None);
    }

    /// Runs `hook` on the writer thread once this change is durable and its
    /// events are published, in commit order with the hooks of other changes,
    /// before the caller hears the answer. A change that fails, or whose group
    /// does not become durable, never runs its hooks. Hooks must be quick and
    /// must not wait for the writer (they run on its thread).
    pub fn after_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.hooks.push(Box::new(hook));
    }

    /// Appends an event to `topic` and runs every [`EventObserver`] on it (so
    /// webhooks stage its deliveries); returns it with its stored JSON (its
    /// id is final once committed). An error leaves the event in the change
    /// without its observers' writes: the caller must fail the change with
    /// it (return the error), never commit the rest.
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
            occurred_at: crate::core::clock::rfc3339_millis(id.timestamp_ms()),
            actor,
            data,
        };
        let json = serde_json::to_vec(&event)
            .map_err(|err| ApiError::internal(format!("encoding event: {err}")))?;
        self.put(
            layout::event(&topic.tenant, &topic.name, u128::from(id)),
            json.clone(),
        );
        let record_key = layout::topic(&topic.tenant, &topic.name);
        let mut record = self
            .get(&record_key)?
            .map(|b| TopicRecord::decode(&b))
            .unwrap_or_default();
        record.count += 1;
        self.put(record_key, record.encode().to_vec());
        let appended = Arc::new(LogEvent::new(topic.tenant, event, Bytes::from(json)));
        self.events.push(appended.clone());
        let observers = self.observers;
        for observer in observers {
            observer.appended(self, &appended)?;
        }
        Ok(appended)
    }

    /// A fresh id from the pipeline's generator, for records other than
    /// events that need ids ordered by commit and never reused (webhook
    /// deliveries): greater than every id issued before, events included.
    pub fn next_id(&mut self) -> Ulid {
        self.ids.next(self.now_ms)
    }

    /// Schedules a durable timer: at `due_ms` (unix ms; a time already past
    /// fires at once) the writer runs the handler registered as `handler`
    /// with `payload`, as a change of its own, once (see `writer/timers.rs`).
    /// The timer exists only if this change commits.
    pub fn schedule(
        &mut self,
        due_ms: u64,
        handler: &str,
        payload: &[u8],
    ) -> Result<TimerId, ApiError> {
        super::timers::schedule(self, due_ms, handler, payload)
    }

    /// Cancels a pending timer; false when it already fired or was cancelled.
    pub fn cancel(&mut self, timer: TimerId) -> Result<bool, ApiError> {
        super::timers::cancel(self, timer)
    }

    /// Moves a pending timer to `due_ms`; false when it already fired or was
    /// cancelled.
    pub fn reschedule(&mut self, timer: TimerId, due_ms: u64) -> Result<bool, ApiError> {
        super::timers::reschedule(self, timer, due_ms)
    }

    /// Removes the oldest events of a topic (retention); `ids` must be stored
    /// events of the topic in ascending order.
    pub fn prune(&mut self, topic: &TopicRef, ids: &[u128]) -> Result<(), ApiError> {
        let Some(&newest) = ids.last() else {
            return Ok(());
        };
        for id in ids {
            self.delete(layout::event(&topic.tenant, &topic.name, *id));
        }
        let record_key = layout::topic(&topic.tenant, &topic.name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::writer::{Footprint, Writer};
    use crate::error::ErrorCode;
    use serde_json::json;
    use uuid::Uuid;

    /// Writes `o <event id>` for every event, and refuses events of type `refused`.
    struct Recorder;

    impl EventObserver for Recorder {
        fn appended(&self, change: &mut Change<'_>, event: &LogEvent) -> Result<(), ApiError> {
            if event.event.event_type == "refused" {
                return Err(ApiError::validation("the observer refuses it"));
            }
            change.put(record_key(event.id()), event.json.to_vec());
            Ok(())
        }
    }

    fn record_key(id: Ulid) -> Vec<u8> {
        [&b"o"[..], &u128::from(id).to_be_bytes()].concat()
    }

    async fn append(
        writer: &Writer,
        event_type: &'static str,
        fail: bool,
    ) -> Result<Ulid, ApiError> {
        let topic = TopicRef::new(Uuid::nil(), "observed").unwrap();
        writer
            .commit(Footprint::SMALL, move |change| {
                let event = change.append(&topic, event_type, json!(null), json!({}))?;
                if fail {
                    return Err(ApiError::validation("the change fails after appending"));
                }
                Ok(event.id())
            })
            .await
            .map(|committed| committed.value)
    }

    #[tokio::test]
    async fn observers_write_in_the_appending_change_and_only_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        writer.observe(Arc::new(Recorder));
        let records = || store.scan_blocking(b"o", None, 100).unwrap().len();

        let id = append(&writer, "kept", false).await.unwrap();
        let stored = store.get_blocking(&record_key(id)).unwrap().unwrap();
        assert_eq!(serde_json::from_slice::<Event>(&stored).unwrap().id, id);

        assert!(append(&writer, "kept", true).await.is_err());
        let refused = append(&writer, "refused", false).await.unwrap_err();
        assert_eq!(refused.code, ErrorCode::ValidationError);
        writer.faults().fail_flushes(1);
        let lost = append(&writer, "kept", false).await.unwrap_err();
        assert_eq!(lost.code, ErrorCode::ServiceUnavailable);
        // Wait for the recovery, then for a durable change after it.
        let after = loop {
            match append(&writer, "kept", false).await {
                Ok(id) => break id,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        };
        assert!(store.get_blocking(&record_key(after)).unwrap().is_some());
        assert_eq!(records(), 2, "only the two durable appends left a record");
    }

    #[tokio::test]
    async fn a_prefix_scan_sees_the_store_and_the_changes_own_writes_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        writer
            .commit(Footprint::SMALL, |change| {
                change.put(b"xp1".to_vec(), b"1".to_vec());
                change.put(b"xp2".to_vec(), b"2".to_vec());
                change.put(b"xq".to_vec(), b"other".to_vec());
                Ok(())
            })
            .await
            .unwrap();
        let seen = writer
            .commit(Footprint::SMALL, |change| {
                change.put(b"xp3".to_vec(), b"3".to_vec());
                change.put(b"xp2".to_vec(), b"two".to_vec());
                change.delete(b"xp1".to_vec());
                change.scan_prefix(b"xp")
            })
            .await
            .unwrap()
            .value;
        let expected: Pairs = vec![
            (b"xp2".to_vec(), b"two".to_vec()),
            (b"xp3".to_vec(), b"3".to_vec()),
        ];
        assert_eq!(seen, expected);
    }
}
