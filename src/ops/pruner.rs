//! The background retention task: every `--prune-interval` it plans, per
//! topic, which oldest events exceed the retention policy and removes them
//! through the writer (so removals are ordered with appends and durable).
//!
//! It also sweeps stream tickets that can never be used again, and
//! idempotency records older than `--idempotency-window`.
//!
//! Invariants: only the oldest events of a topic are removed; the topic's
//! pruned-through id is recorded in the same commit, so readers report an
//! expired gap instead of a silent partial history. Idempotency records are
//! removed through the writer from their expiry index, oldest first, and a
//! record rewritten since its entry was made is kept.

use crate::auth::tickets::Tickets;
use crate::core::lifecycle::Lifecycle;
use crate::core::log::retention::{self, Policy};
use crate::core::log::{TopicRecord, TopicRef};
use crate::core::store::{Store, StoreError, layout};
use crate::core::writer::{Footprint, Writer};
use crate::modules::idempotency::{self, Idempotency};
use std::sync::Arc;
use std::time::Duration;

/// Most events removed per cycle, so one cycle never holds the writer long.
const MAX_REMOVALS_PER_CYCLE: usize = 100_000;
/// Most events removed by one commit.
const MAX_REMOVALS_PER_COMMIT: usize = 5_000;
/// Topic records read per store call.
const TOPIC_PAGE: usize = 1_000;
/// Expired idempotency records removed by one commit (and read per store call).
const IDEMPOTENCY_PER_COMMIT: usize = 1_000;

/// Runs until the server stops; also sweeps stream tickets that can no
/// longer be used and expired idempotency records.
pub async fn run(
    store: Store,
    writer: Writer,
    policy: Arc<Policy>,
    tickets: Arc<Tickets>,
    idempotency: Idempotency,
    interval: Duration,
    lifecycle: Arc<Lifecycle>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = lifecycle.stopping() => return,
        }
        match prune_once(&store, &writer, &policy).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "retention removed old events"),
            Err(err) => {
                tracing::error!(error = %err, "retention cycle failed; retrying next interval")
            }
        }
        match tickets.sweep(&store).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(removed, "removed stream tickets that can no longer be used")
            }
            Err(err) => {
                tracing::error!(error = %err, "ticket sweep failed; retrying next interval")
            }
        }
        match expire_idempotency(&store, &writer, idempotency.window()).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "removed expired idempotency records"),
            Err(err) => {
                tracing::error!(error = %err, "idempotency sweep failed; retrying next interval")
            }
        }
    }
}

/// Removes idempotency records older than `window` (at most
/// [`MAX_REMOVALS_PER_CYCLE`] per pass); returns how many.
pub async fn expire_idempotency(
    store: &Store,
    writer: &Writer,
    window: Duration,
) -> Result<usize, StoreError> {
    let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    let cutoff = crate::core::clock::unix_millis().saturating_sub(window_ms);
    let mut removed = 0;
    while removed < MAX_REMOVALS_PER_CYCLE {
        let entries = store
            .run(move |store| expired_entries(store, cutoff))
            .await?;
        if entries.is_empty() {
            break;
        }
        removed += entries.len();
        writer
            .commit(Footprint::data(entries.len() * 64), move |change| {
                entries
                    .iter()
                    .try_for_each(|entry| idempotency::expire(change, entry))
            })
            .await
            .map_err(|err| StoreError::new(err.message))?;
    }
    Ok(removed)
}

/// The oldest expiry entries made before `cutoff` (unix ms), one commit's worth.
fn expired_entries(store: &Store, cutoff: u64) -> Result<Vec<Vec<u8>>, StoreError> {
    let prefix = idempotency::layout::EXPIRY_PREFIX;
    let page = store.scan_blocking(&prefix, None, IDEMPOTENCY_PER_COMMIT)?;
    Ok(page
        .into_iter()
        .map(|(key, _)| key.to_vec())
        .take_while(|key| {
            idempotency::layout::parse_expiry(key).is_none_or(|(created_ms, _)| created_ms < cutoff)
        })
        .collect())
}

/// One retention pass over every topic; returns how many events were removed.
pub async fn prune_once(
    store: &Store,
    writer: &Writer,
    policy: &Arc<Policy>,
) -> Result<usize, StoreError> {
    let policy = policy.clone();
    let plans = store.run(move |store| plan_all(store, &policy)).await?;
    let mut removed = 0;
    for (topic, ids) in plans {
        for chunk in ids.chunks(MAX_REMOVALS_PER_COMMIT) {
            let chunk = chunk.to_vec();
            let topic = topic.clone();
            let count = chunk.len();
            writer
                .commit(Footprint::data(count * 16), move |change| {
                    change.prune(&topic, &chunk)
                })
                .await
                .map_err(|err| StoreError::new(err.message))?;
            removed += count;
        }
    }
    Ok(removed)
}

fn plan_all(store: &Store, policy: &Policy) -> Result<Vec<(TopicRef, Vec<u128>)>, StoreError> {
    let now_ms = crate::core::clock::unix_millis();
    let mut plans = Vec::new();
    let mut budget = MAX_REMOVALS_PER_CYCLE;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_blocking(&[layout::TOPIC], after.as_deref(), TOPIC_PAGE)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.to_vec());
        for (key, value) in &page {
            let Some((tenant, name)) = layout::parse_topic(key) else {
                continue;
            };
            let topic = TopicRef { tenant, name };
            let record = TopicRecord::decode(value);
            let limits = policy.limits_for(&topic.name);
            let ids = retention::plan(store, &topic, record.count, limits, now_ms, budget)?;
            budget -= ids.len();
            if !ids.is_empty() {
                plans.push((topic, ids));
            }
            if budget == 0 {
                return Ok(plans);
            }
        }
    }
    Ok(plans)
}
