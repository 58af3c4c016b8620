//! [`Change`]: what a change closure sees of the store while the writer
//! thread runs it, and what it leaves behind (writes, events, after-commit
//! hooks).
//!
//! Invariants: reads see the store plus earlier changes of the same group plus
//! the change's own writes; nothing a change does reaches the store, the hub or
//! its hooks unless the change succeeds and its group becomes durable.

use super::timers::TimerId;
use crate::error::ApiError;
use crate::log::ids::IdGenerator;
use crate::log::{Event, LogEvent, TopicRecord, TopicRef, validate_event_type};
use crate::store::{Store, keys};
use bytes::Bytes;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use ulid::Ulid;

/// Pending writes: a value to put, or `None` to delete.
pub(super) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Work to run once the change that registered it is durable.
pub(super) type Hook = Box<dyn FnOnce() + Send>;

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
