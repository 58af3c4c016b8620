//! Reading a topic's history: "events of topic T after cursor X, up to N".
//!
//! Invariants: a reader never sees an event that is not yet durable (reads
//! stop at the writer's durable watermark); a cursor that is not an event of
//! the topic is reported as a [`Gap`] (expired when retention removed it,
//! unknown otherwise) together with the oldest id still kept, and the page
//! then starts at the oldest kept event, never silently in the middle.

use super::{LogEvent, TopicRecord, TopicRef};
use crate::store::{Store, StoreError, keys};
use serde::Serialize;
use std::sync::Arc;
use ulid::Ulid;

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// Before the oldest kept event.
    Start,
    /// Right after this id, which a client got from this topic: it must still be
    /// stored, otherwise the read reports a gap.
    After(Ulid),
    /// After this id, which need not be an event of the topic (a subscriber's
    /// own position): a gap only when retention removed events after it.
    Since(Ulid),
}

/// Why a cursor could not be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GapReason {
    /// Retention removed the cursor's event.
    Expired,
    /// The cursor was never an event of this topic.
    Unknown,
}

/// A cursor that could not be honoured, and where history now begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Gap {
    /// Why.
    pub reason: GapReason,
    /// The oldest id still kept, or null when the topic is empty.
    #[serde(serialize_with = "optional_ulid")]
    pub oldest_id: Option<Ulid>,
}

fn optional_ulid<S: serde::Serializer>(
    id: &Option<Ulid>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => serializer.serialize_str(&id.to_string()),
        None => serializer.serialize_none(),
    }
}

/// One page of history.
#[derive(Debug, Default)]
pub struct Page {
    /// Events in id order.
    pub events: Vec<Arc<LogEvent>>,
    /// Set when the cursor was a gap (the page then starts at the oldest kept event).
    pub gap: Option<Gap>,
    /// True when more durable events follow this page.
    pub more: bool,
}

/// Reads up to `limit` durable events (ids up to `durable`) after `cursor` (blocking).
pub fn read_page(
    store: &Store,
    topic: &TopicRef,
    cursor: Cursor,
    limit: usize,
    durable: Ulid,
) -> Result<Page, StoreError> {
    let prefix = keys::event_prefix(&topic.tenant, &topic.name);
    let (start_key, gap) = match cursor {
        Cursor::Start => (None, None),
        Cursor::After(id) => {
            let key = keys::event(&topic.tenant, &topic.name, u128::from(id));
            if id <= durable && store.get_blocking(&key)?.is_some() {
                (Some(key), None)
            } else {
                (None, Some(classify_gap(store, topic, &prefix, id)?))
            }
        }
        Cursor::Since(id) => {
            if topic_record(store, topic)?.pruned_through > u128::from(id) {
                (None, Some(classify_gap(store, topic, &prefix, id)?))
            } else {
                (
                    Some(keys::event(&topic.tenant, &topic.name, u128::from(id))),
                    None,
                )
            }
        }
    };
    let pairs = store.scan_blocking(&prefix, start_key.as_deref(), limit.saturating_add(1))?;
    let mut page = Page {
        gap,
        ..Page::default()
    };
    for (key, value) in pairs {
        let id = keys::event_id(&key).map(Ulid::from).unwrap_or_default();
        if id > durable {
            break;
        }
        if page.events.len() == limit {
            page.more = true;
            break;
        }
        let event = LogEvent::decode(topic.tenant, &value)
            .map_err(|err| StoreError(format!("stored event {id} is unreadable: {err}")))?;
        page.events.push(Arc::new(event));
    }
    Ok(page)
}

/// The topic's bookkeeping record (empty when the topic has no events yet).
pub fn topic_record(store: &Store, topic: &TopicRef) -> Result<TopicRecord, StoreError> {
    Ok(store
        .get_blocking(&keys::topic(&topic.tenant, &topic.name))?
        .map(|bytes| TopicRecord::decode(&bytes))
        .unwrap_or_default())
}

fn classify_gap(
    store: &Store,
    topic: &TopicRef,
    prefix: &[u8],
    cursor: Ulid,
) -> Result<Gap, StoreError> {
    let record = topic_record(store, topic)?;
    let reason = if record.pruned_through != 0 && u128::from(cursor) <= record.pruned_through {
        GapReason::Expired
    } else {
        GapReason::Unknown
    };
    let oldest_id = store
        .first_blocking(prefix)?
        .and_then(|(key, _)| keys::event_id(&key))
        .map(Ulid::from);
    Ok(Gap { reason, oldest_id })
}
