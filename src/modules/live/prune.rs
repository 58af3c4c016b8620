//! Removing what the live module no longer needs, in the background: the
//! bodies of intervals older than their stream's retention (the close of
//! each interval removes the one that just expired; this pass catches what
//! that misses: streams that ended, retention shortened, intervals expiring
//! while the server was down) and the per-viewer answer rows of closed
//! quizzes (they only guard against a second answer while a quiz is open).
//!
//! Invariants: it deletes only rows nothing reads any more: before
//! deleting a stream's bodies it raises the stream's expired mark over them
//! (a poll at or below the mark is 410, whatever the retention becomes); each commit deletes at most [`PRUNE_BATCH`] rows, so a large
//! backlog never makes one huge change; it runs every
//! [`PRUNE_EVERY`] and once at start, and ends when the server stops.

use super::LiveModule;
use super::interval::expire_through;
use super::layout;
use super::model::{INTERVAL_MS, interval_of};
use crate::core::store::{Store, StoreError};
use crate::core::writer::Footprint;
use std::sync::Arc;
use std::time::Duration;

/// How often the pass runs.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// Most rows one commit deletes.
const PRUNE_BATCH: usize = 1_000;

/// Runs the pass at start and every [`PRUNE_EVERY`] until the server stops.
pub async fn run(module: Arc<LiveModule>) {
    let lifecycle = module.core.lifecycle.clone();
    loop {
        if let Err(err) = prune_once(&module).await {
            tracing::warn!(error = %err, "pruning live intervals failed; retrying later");
        }
        tokio::select! {
            () = tokio::time::sleep(PRUNE_EVERY) => {}
            () = lifecycle.stopping() => return,
        }
    }
}

/// One pass over every stream and every closed quiz; returns the rows deleted.
pub async fn prune_once(module: &LiveModule) -> Result<usize, crate::error::ApiError> {
    let now = crate::core::clock::unix_millis();
    let mut deleted = 0;
    for stream in module.streams.all() {
        let record = stream.record();
        let kept = record.retention_ms().saturating_add(INTERVAL_MS);
        let Some(cutoff) = now.checked_sub(kept).map(interval_of).filter(|c| *c > 0) else {
            continue;
        };
        let marked = stream.clone();
        module
            .core
            .writer
            .commit(Footprint::SMALL, move |change| {
                expire_through(change, &marked, cutoff - INTERVAL_MS)
            })
            .await?;
        let prefix = layout::bodies(&stream.tenant, &stream.id);
        let end = layout::body(&stream.tenant, &stream.id, cutoff);
        deleted += delete_rows(module, prefix, Some(end)).await?;
    }
    for (tenant, quiz) in closed_quizzes(module).await? {
        deleted += delete_rows(module, layout::answers(&tenant, &quiz), None).await?;
    }
    Ok(deleted)
}

/// Every closed quiz of every tenant.
async fn closed_quizzes(
    module: &LiveModule,
) -> Result<Vec<(uuid::Uuid, uuid::Uuid)>, crate::error::ApiError> {
    let tenants: Vec<uuid::Uuid> = module
        .core
        .auth
        .registry()
        .tenants()
        .iter()
        .map(|tenant| tenant.id)
        .collect();
    module
        .core
        .hub
        .store()
        .run(move |store| {
            let mut closed = Vec::new();
            for tenant in tenants {
                store.for_each_blocking(&layout::quizzes(&tenant), |_, value| {
                    if let Ok(quiz) = super::decode_json::<super::model::QuizRecord>(value, "quiz")
                        && quiz.closed
                    {
                        closed.push((tenant, quiz.id));
                    }
                    Ok(())
                })?;
            }
            Ok(closed)
        })
        .await
        .map_err(|err| err.into_api("reading quizzes failed"))
}

/// Deletes the rows under `prefix` (below `end` when given), a batch per commit.
async fn delete_rows(
    module: &LiveModule,
    prefix: Vec<u8>,
    end: Option<Vec<u8>>,
) -> Result<usize, crate::error::ApiError> {
    let mut deleted = 0;
    loop {
        let (scan_prefix, scan_end) = (prefix.clone(), end.clone());
        let keys = module
            .core
            .hub
            .store()
            .run(move |store| keys_below(store, &scan_prefix, scan_end.as_deref()))
            .await
            .map_err(|err| err.into_api("reading live rows failed"))?;
        if keys.is_empty() {
            return Ok(deleted);
        }
        let count = keys.len();
        let held = keys.iter().map(Vec::len).sum();
        module
            .core
            .writer
            .commit(Footprint::data(held), move |change| {
                for key in keys {
                    change.delete(key);
                }
                Ok(())
            })
            .await?;
        deleted += count;
        if count < PRUNE_BATCH {
            return Ok(deleted);
        }
    }
}

/// Up to [`PRUNE_BATCH`] keys under `prefix`, below `end` when given.
fn keys_below(
    store: &Store,
    prefix: &[u8],
    end: Option<&[u8]>,
) -> Result<Vec<Vec<u8>>, StoreError> {
    Ok(store
        .scan_blocking(prefix, None, PRUNE_BATCH)?
        .into_iter()
        .map(|(key, _)| key.to_vec())
        .take_while(|key| end.is_none_or(|end| key.as_slice() < end))
        .collect())
}
