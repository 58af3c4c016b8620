//! Closing intervals: once an interval's 250 ms have passed, one writer
//! change per stream (grouped into one commit) builds the body of its just-ended interval
//! from what was committed for it (chats, quiz events) and what was counted
//! in memory (viewers, hearts, discounts, answers), stores the bytes, and
//! after the change is durable hands them to waiting polls.
//!
//! Invariants:
//! * an item (chat, quiz event) is assigned, inside the change committing
//!   it, to [`super::items::open_interval`]: the interval of the writer's clock, but never
//!   one already closed; the close of `T` runs in a later change that reads
//!   every item of `T` as it sees the store (earlier changes of its group
//!   included), so every acknowledged item is in exactly the interval its
//!   answer named, and in no other;
//! * a closed interval's body is written once (`v` row) and never changed;
//!   the newest closed interval (`c` row) only grows;
//! * hearts and discounts go into the newest interval of a close, the view
//!   count (this node's viewers plus the other nodes' latest, see
//!   [`super::viewers`]) into every full interval; a close that does not commit gives its
//!   counts back (see `state.rs`);
//! * the bodies a close deletes (older than the retention) are covered by
//!   the stream's expired mark in the same change ([`expire_through`]);
//! * after a gap (the server was down), intervals before the process
//!   started, or older than [`FULL_CLOSE_SPAN_MS`] before the newest, are
//!   closed only if items were committed for them; the others stay without
//!   a row and are served as empty intervals (nobody counted anything while
//!   the server was down).

use super::LiveModule;
use super::items::{closed_through, take_items_through};
use super::layout;
use super::model::{INTERVAL_MS, IntervalBody, interval_of};
use super::state::{Closed, Harvest, LiveStream};
use crate::core::store::decode_u64;
use crate::core::writer::{Change, Footprint};
use crate::error::ApiError;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How far behind the newest due interval a close still builds full
/// intervals (with the view count); older ones are built only for items.
pub const FULL_CLOSE_SPAN_MS: u64 = 20 * INTERVAL_MS;

/// How long after an interval's end its close starts.
const CLOSE_GRACE: Duration = Duration::from_millis(1);

/// Closes intervals every tick until the server has drained (requests
/// still in flight while it stops count and waiting polls are answered),
/// then once more so the interval open at the end is closed with what it
/// counted.
pub async fn run(module: Arc<LiveModule>) {
    let lifecycle = module.core.lifecycle.clone();
    loop {
        let now = crate::core::clock::unix_millis();
        let wait = interval_of(now) + INTERVAL_MS - now;
        let tick = tokio::time::sleep(Duration::from_millis(wait) + CLOSE_GRACE);
        tokio::select! {
            () = tick => {}
            () = lifecycle.drained() => break,
        }
        let now = crate::core::clock::unix_millis();
        close_due(&module, interval_of(now).saturating_sub(INTERVAL_MS)).await;
    }
    let now = crate::core::clock::unix_millis();
    close_due(&module, interval_of(now)).await;
}

/// Closes every stream's intervals up to `due`, one change per stream (the
/// writer groups them into one commit; a stream whose close fails, even by a
/// panic, fails alone and gets its counts back).
pub async fn close_due(module: &LiveModule, due: u64) {
    let full_from = due
        .saturating_sub(FULL_CLOSE_SPAN_MS)
        .max(interval_of(module.started_ms));
    let window = module.limits.viewer_window.as_millis() as u64;
    let since = crate::core::clock::unix_millis().saturating_sub(window);
    let closing: Vec<Arc<LiveStream>> = module
        .streams
        .all()
        .into_iter()
        .filter(|stream| stream.needs_closing(due))
        .collect();
    let streams = closing.len();
    let closes = closing
        .into_iter()
        .map(|stream| close_one(module, stream, since, (full_from, due)));
    let outcomes = futures_util::future::join_all(closes).await;
    let intervals = outcomes.iter().flatten().sum();
    let failures = outcomes.iter().filter(|outcome| outcome.is_none()).count() as u64;
    module
        .core
        .metrics
        .live_closed(streams, intervals, failures);
}

/// Closes one stream in a change of its own; the intervals it stored, or
/// `None` when the change did not commit (its counts are given back).
async fn close_one(
    module: &LiveModule,
    stream: Arc<LiveStream>,
    viewers_since: u64,
    span: (u64, u64),
) -> Option<u64> {
    let mut harvest = stream.harvest(viewers_since);
    harvest.viewers = super::viewers::total(module, &stream, harvest.viewers);
    stream.set_viewer_count(harvest.viewers);
    let harvest = Arc::new(harvest);
    let (work, taken) = (stream.clone(), harvest.clone());
    let committed = module
        .core
        .writer
        .commit(Footprint::data(harvest.bytes() + 1024), move |change| {
            close_stream(change, &work, &taken, span)
        })
        .await;
    match committed {
        Ok(done) => Some(done.value),
        Err(err) => {
            tracing::warn!(stream = %stream.id, error = %err, "closing a live stream's intervals did not commit; its counts go into the next close");
            stream.give_back(Arc::unwrap_or_clone(harvest));
            None
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
    let mut items = take_items_through(change, &tenant, &record.id, newest)?;
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
    if let Some(expired) = newest.checked_sub(record.retention_ms()) {
        expire_through(change, stream, expired)?;
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

/// Records in `change` that the intervals of `stream` up to `through` are
/// expired (the mark only grows; memory follows once durable), so they stay
/// 410 even if the retention is raised after their bodies were deleted.
pub fn expire_through(
    change: &mut Change<'_>,
    stream: &Arc<LiveStream>,
    through: u64,
) -> Result<(), ApiError> {
    let key = layout::expired_through(&stream.tenant, &stream.id);
    let stored = change.get(&key)?.map_or(0, |bytes| decode_u64(&bytes));
    if through <= stored {
        return Ok(());
    }
    change.put(key, through.to_be_bytes().to_vec());
    let stream = stream.clone();
    change.after_commit(move || stream.raise_expired(through));
    Ok(())
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
    super::quiz::store_answers(change, tenant, &answers.quiz, &answers.new);
    let Some(mut quiz) = super::quiz::read(change, tenant, &answers.quiz)? else {
        return Ok(());
    };
    if !quiz.closed {
        quiz.counts.clone_from(&answers.totals);
        super::quiz::write(change, tenant, &quiz)?;
    }
    Ok(())
}
