//! Reading a topic's history: "events of topic T after cursor X, up to N".
//!
//! A cursor is a *position* in the global id order: ids are ULIDs, strictly
//! increasing in commit order across all topics, so "the events of T after
//! X" is well defined whether or not X is an event of T (a stream that was
//! quiet resumes from the durable mark it was given when it connected).
//!
//! Invariants: a reader never sees an event that is not yet durable (reads
//! stop at the writer's durable watermark); a cursor is honoured exactly
//! when nothing after it can be missing: it is not after the durable mark
//! and not before the topic's pruned-through id. Otherwise the read reports
//! a [`Gap`] (`expired` when retention removed events after the cursor,
//! `unknown` when the cursor is after everything durable) together with the
//! oldest id still kept, and the page then starts at the oldest kept event,
//! never silently in the middle. A page holds at most `limit` events and
//! stops early (with `more`) once it holds `max_bytes` of stored JSON.

use super::{LogEvent, TopicRecord, TopicRef};
use crate::core::store::{Store, StoreError, layout};
use serde::Serialize;
use std::sync::Arc;
use ulid::Ulid;

/// Where a read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cursor {
    /// Before the oldest kept event.
    Start,
    /// Right after this position: an event id a client got from this topic,
    /// or a position it was given on connecting (any durable id).
    After(Ulid),
}

/// Why a cursor could not be honoured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GapReason {
    /// Retention removed events after the cursor.
    Expired,
    /// The cursor is after every durable event (another server's, or a
    /// data directory restored from an older backup).
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

/// How much one page may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLimit {
    /// Most events.
    pub events: usize,
    /// Stored JSON bytes after which the page stops (it always holds at
    /// least one event when one follows the cursor).
    pub bytes: usize,
}

/// Reads one page of durable events (ids up to `durable`) after `cursor` (blocking).
pub fn read_page(
    store: &Store,
    topic: &TopicRef,
    cursor: Cursor,
    limit: PageLimit,
    durable: Ulid,
) -> Result<Page, StoreError> {
    let Cursor::After(id) = cursor else {
        return scan(store, topic, None, limit, durable);
    };
    if id > durable {
        return with_gap(store, topic, GapReason::Unknown, limit, durable);
    }
    let after = layout::event(&topic.tenant, &topic.name, u128::from(id));
    let page = scan(store, topic, Some(&after), limit, durable)?;
    // Checked after the scan: when nothing after the cursor had been pruned
    // by now, the scan saw every event after it.
    if topic_record(store, topic)?.pruned_through > u128::from(id) {
        return with_gap(store, topic, GapReason::Expired, limit, durable);
    }
    Ok(page)
}

/// A page from the oldest kept event, announcing a gap.
fn with_gap(
    store: &Store,
    topic: &TopicRef,
    reason: GapReason,
    limit: PageLimit,
    durable: Ulid,
) -> Result<Page, StoreError> {
    let mut page = scan(store, topic, None, limit, durable)?;
    let oldest_id = store
        .first_blocking(&layout::event_prefix(&topic.tenant, &topic.name))?
        .and_then(|(key, _)| layout::event_id(&key))
        .map(Ulid::from);
    page.gap = Some(Gap { reason, oldest_id });
    Ok(page)
}

/// Durable events of `topic` after the key `after` (from the oldest when `None`).
fn scan(
    store: &Store,
    topic: &TopicRef,
    after: Option<&[u8]>,
    limit: PageLimit,
    durable: Ulid,
) -> Result<Page, StoreError> {
    let prefix = layout::event_prefix(&topic.tenant, &topic.name);
    let pairs = store.scan_blocking(&prefix, after, limit.events.saturating_add(1))?;
    let mut page = Page::default();
    let mut bytes = 0usize;
    for (key, value) in pairs {
        let id = layout::event_id(&key).map(Ulid::from).unwrap_or_default();
        if id > durable {
            break;
        }
        if page.events.len() == limit.events || (bytes >= limit.bytes && !page.events.is_empty()) {
            page.more = true;
            break;
        }
        bytes += value.len();
        let event = LogEvent::decode(topic.tenant, &value)
            .map_err(|err| StoreError::new(format!("stored event {id} is unreadable: {err}")))?;
        page.events.push(Arc::new(event));
    }
    Ok(page)
}

/// The topic's bookkeeping record (empty when the topic has no events yet).
pub fn topic_record(store: &Store, topic: &TopicRef) -> Result<TopicRecord, StoreError> {
    Ok(store
        .get_blocking(&layout::topic(&topic.tenant, &topic.name))?
        .map(|bytes| TopicRecord::decode(&bytes))
        .unwrap_or_default())
}
