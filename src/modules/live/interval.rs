//! Closing intervals: once an interval's 250 ms have passed, one writer
//! change per tick builds the body of every stream's just-ended interval
//! from what was committed for it (chats, quiz events) and what was counted
//! in memory (viewers, hearts, discounts, answers), stores the bytes, and
//! after the change is durable hands them to waiting polls.
//!
//! Invariants:
//! * an item (chat, quiz event) is assigned, inside the change committing
//!   it, to [`open_interval`]: the interval of the writer's clock, but never
//!   one already closed; the close of `T` runs in a later change that reads
//!   every item of `T` as it sees the store (earlier changes of its group
//!   included), so every acknowledged item is in exactly the interval its
//!   answer named, and in no other;
//! * a closed interval's body is written once (`v` row) and never changed;
//!   the newest closed interval (`c` row) only grows;
//! * counters go into the newest interval of a close; a close that does not
//!   commit gives them back (see `state.rs`);
//! * after a gap (the server was down), intervals before the process
//!   started, or older than [`FULL_CLOSE_SPAN_MS`] before the newest, are
//!   closed only if items were committed for them; the others stay without
//!   a row and are served as empty intervals (nobody counted anything while
//!   the server was down).

use super::LiveModule;
use super::layout;
use super::model::{INTERVAL_MS, IntervalBody, Item, StreamRecord, interval_of};
use super::state::{Closed, Harvest, LiveStream};
use crate::core::store::decode_u64;
use crate::core::writer::{Change, Footprint};
use crate::error::ApiError;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How far behind the newest due interval a close still builds full
/// intervals (with the view count); older ones are built only for items.
pub const FULL_CLOSE_SPAN_MS: u64 = 20 * INTERVAL_MS;

/// How long after an interval's end its close starts.
const CLOSE_GRACE: Duration = Duration::from_millis(1);

/// The newest closed interval of a stream as `change` sees it.
pub fn closed_through(
    change: &Change<'_>,
    tenant: &Uuid,
    record: &StreamRecord,
) -> Result<u64, ApiError> {
    Ok(change
        .get(&layout::closed_through(tenant, &record.id))?
        .map_or(record.first_interval.saturating_sub(INTERVAL_MS), |bytes| {
            decode_u64(&bytes)
        }))
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

/// Closes intervals every tick until the server stops, then once more so
/// the interval open at the stop is closed with what it counted.
pub async fn run(module: Arc<LiveModule>) {
    let lifecycle = module.core.lifecycle.clone();
    loop {
        let now = crate::core::clock::unix_millis();
        let wait = interval_of(now) + INTERVAL_MS - now;
        let tick = tokio::time::sleep(Duration::from_millis(wait) + CLOSE_GRACE);
        tokio::select! {
            () = tick => {}
            () = lifecycle.stopping() => break,
        }
        let now = crate::core::clock::unix_millis();
        close_due(&module, interval_of(now).saturating_sub(INTERVAL_MS)).await;
    }
    let now = crate::core::clock::unix_millis();
    close_due(&module, interval_of(now)).await;
}

/// Closes, in one change, every stream's intervals up to `due`.
pub async fn close_due(module: &LiveModule, due: u64) {
    let full_from = due
        .saturating_sub(FULL_CLOSE_SPAN_MS)
        .max(interval_of(module.started_ms));
    let window = module.limits.viewer_window.as_millis() as u64;
    let since = crate::core::clock::unix_millis().saturating_sub(window);
    let closing: Vec<(Arc<LiveStream>, Harvest)> = module
        .streams
        .all()
        .into_iter()
        .filter(|stream| stream.needs_closing(due))
        .map(|stream| {
            let harvest = stream.harvest(since);
            (stream, harvest)
        })
        .collect();
    let streams = closing.len();
    if closing.is_empty() {
        module.core.metrics.live_closed(0, 0, true);
        return;
    }
    let closing = Arc::new(closing);
    let held = closing.iter().map(|(_, h)| h.bytes()).sum::<usize>() + 1024;
    let work = closing.clone();
    let committed = module
        .core
        .writer
        .commit(Footprint::data(held), move |change| {
            let mut intervals = 0;
            for (stream, harvest) in work.iter() {
                intervals += close_stream(change, stream, harvest, (full_from, due))?;
            }
            Ok(intervals)
        })
        .await;
    let metrics = &module.core.metrics;
    match &committed {
        Ok(done) => metrics.live_closed(streams, done.value, true),
        Err(_) => metrics.live_closed(streams, 0, false),
    }
    if let Err(err) = committed {
        tracing::warn!(error = %err, "closing live intervals did not commit; their counts go into the next close");
        for (stream, harvest) in Arc::unwrap_or_clone(closing) {
            stream.give_back(harvest);
        }
    }
}

/// Closes one stream's intervals up to `due` (up to its last one when it
/// ended) inside `change`; those from `full_from` on with the view count.
/// Returns how many intervals it stored.
fn close_stream(
    change: &mut Change<'_>,
    stream: &Arc<LiveStream>,
    harvest: &Harvest,
    (full_from, due): (u64, u64),
) -> Result<u64, ApiError> {
    let tenant = stream.tenant;
    let Some(record) = super::read_record(change, &tenant, &stream.id)? else {
        return Ok(0);
    };
    let through = closed_through(change, &tenant, &record)?;
    let newest = record.last_interval.map_or(due, |last| last.min(due));
    if newest <= through {
        return Ok(0);
    }
    store_answers(change, &tenant, harvest)?;
    let mut items = take_items(change, &tenant, &record.id, newest)?;
    let full_from = full_from.max(through + INTERVAL_MS);
    let sparse: Vec<u64> = items.range(..full_from).map(|(t, _)| *t).collect();
    let full = (full_from..=newest).step_by(INTERVAL_MS as usize);
    let mut closed = Vec::new();
    for interval in sparse.into_iter().chain(full) {
        let body = IntervalBody {
            interval,
            view_count: (interval >= full_from).then_some(harvest.viewers),
            hearts: if interval == newest {
                harvest.hearts
            } else {
                0
            },
            discounts: if interval == newest {
                harvest.discounts
            } else {
                0
            },
            items: items.remove(&interval).unwrap_or_default(),
        };
        let bytes = body.encode();
        change.put(layout::body(&tenant, &record.id, interval), bytes.clone());
        if let Some(expired) = interval.checked_sub(record.retention_ms()) {
            change.delete(layout::body(&tenant, &record.id, expired));
        }
        closed.push(Closed::new(interval, Bytes::from(bytes)));
    }
    change.put(
        layout::closed_through(&tenant, &record.id),
        newest.to_be_bytes().to_vec(),
    );
    let stored = closed.len() as u64;
    let stream = stream.clone();
    change.after_commit(move || stream.publish(closed, newest));
    Ok(stored)
}

/// Takes (reads and deletes) every item waiting for an interval up to
/// `newest`, by interval, in commit order.
fn take_items(
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

/// Stores the answers taken for a close: one row per viewer and the quiz's
/// totals (unless the quiz closed meanwhile: its close stored the finals).
fn store_answers(
    change: &mut Change<'_>,
    tenant: &Uuid,
    harvest: &Harvest,
) -> Result<(), ApiError> {
    let Some(answers) = &harvest.answers else {
        return Ok(());
    };
    super::quiz::store_answers(change, tenant, &answers.quiz, &answers.new)?;
    let Some(mut quiz) = super::quiz::read(change, tenant, &answers.quiz)? else {
        return Ok(());
    };
    if !quiz.closed {
        quiz.counts.clone_from(&answers.totals);
        super::quiz::write(change, tenant, &quiz)?;
    }
    Ok(())
}
