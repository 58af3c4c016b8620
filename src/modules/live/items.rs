//! Items: what is committed for an interval before it closes (chats, quiz
//! events), and the rule that assigns them an interval.
//!
//! Invariant: an item is assigned, inside the writer change that commits
//! it, to the interval of the writer's clock but never one already closed
//! (the stream's closed mark as that change sees it), so every
//! acknowledged item is in exactly the interval its answer named (the
//! close of that interval reads its items in a later change).

use super::layout;
use super::model::{INTERVAL_MS, Item, StreamRecord, interval_of};
use crate::core::store::decode_u64;
use crate::core::writer::Change;
use crate::error::ApiError;
use std::collections::BTreeMap;
use uuid::Uuid;

/// The newest closed interval of a stream as `change` sees it.
pub fn closed_through(
    change: &Change<'_>,
    tenant: &Uuid,
    record: &StreamRecord,
) -> Result<u64, ApiError> {
    Ok(change
        .get(&layout::closed_through(tenant, &record.id))?
        .map_or(record.initial_closed_through(), |bytes| decode_u64(&bytes)))
}

/// The interval an item committed by `change` belongs to: the interval of
/// the writer's clock, or the one after the newest closed, whichever is later.
pub fn open_interval(
    change: &Change<'_>,
    tenant: &Uuid,
    record: &StreamRecord,
) -> Result<u64, ApiError> {
    let through = closed_through(change, tenant, record)?;
    Ok(interval_of(change.now_ms()).max(through + INTERVAL_MS))
}

/// Stores `item` for `interval` in `change`.
pub fn put_item(
    change: &mut Change<'_>,
    tenant: &Uuid,
    stream: &Uuid,
    interval: u64,
    item: &Item,
) -> Result<(), ApiError> {
    let id = u128::from(change.next_id());
    let json = serde_json::to_vec(item)
        .map_err(|err| ApiError::internal(format!("encoding an interval item: {err}")))?;
    change.put(layout::item(tenant, stream, interval, id), json);
    Ok(())
}

/// Takes (reads and deletes) every item waiting for an interval up to
/// `newest`, by interval, in commit order.
pub fn take_items_through(
    change: &mut Change<'_>,
    tenant: &Uuid,
    stream: &Uuid,
    newest: u64,
) -> Result<BTreeMap<u64, Vec<Item>>, ApiError> {
    let prefix = layout::items(tenant, stream);
    let mut items: BTreeMap<u64, Vec<Item>> = BTreeMap::new();
    for (key, value) in change.scan_prefix(&prefix)? {
        let Some(interval) = layout::item_interval(&prefix, &key) else {
            continue;
        };
        if interval > newest {
            break;
        }
        change.delete(key);
        match serde_json::from_slice::<Item>(&value) {
            Ok(item) => items.entry(interval).or_default().push(item),
            Err(err) => tracing::error!(error = %err, "an unreadable live item was dropped"),
        }
    }
    Ok(items)
}
