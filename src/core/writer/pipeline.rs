//! The writer thread: takes queued changes in groups, runs them, makes each
//! group durable with one flush, publishes, runs after-commit hooks, answers;
//! and, when a group fails to become durable, recovers the store before it
//! accepts anything again.
//!
//! Invariants:
//! * a group's pre-images (what its keys held before it) are read before it
//!   is applied; they equal what is on disk, because every earlier group was
//!   flushed; keys of events the group appended are not read, since ids are
//!   never reused, so such a key did not exist before;
//! * after a failed apply or flush nothing more is applied: the store is
//!   closed (sled refuses work after an I/O error and its memory may hold the
//!   failed group), queued changes are refused with 503, and every
//!   `--store-recovery-interval` the writer reopens the store from disk and
//!   writes and flushes the pre-images back (the failed group may have reached
//!   the disk, e.g. when sled flushed it while closing); only then is the store
//!   healthy again, so the failed group is never published, replayed or
//!   delivered by this process;
//! * the failed group's ids stay used (the newest-id record keeps them), so ids
//!   are never reused;
//! * when recovery does not succeed within `--store-recovery-timeout`, `run`
//!   returns an error and the process exits non-zero;
//! * the thread sleeps until a change arrives or a timer may be due; due
//!   timers run first in a group (the room the group's client changes
//!   leave, and at least half of `--writer-batch`, so neither starves the
//!   other), so their reads see exactly the store, and are part of the
//!   group's fate;
//! * every group's batch is written through the backup [`Tap`], which
//!   journals it once durable; a recovery fails the attached journal first;
//! * a cluster writer's batch also carries its number and its outbox row
//!   ([`Outbox::stage`]); both keys' pre-images join the group's, so a
//!   failed batch's undo restores the previous number and removes the row,
//!   and the number counts as used ([`Outbox::made_durable`]) only once
//!   the batch is durable, before any caller is answered; such a writer
//!   takes into a group changes declaring at most the outbox's group budget
//!   (plus the last one taken), so that a batch's record fits one message.

use super::change::{Change, Hook, Observers, Writes};
use super::health::{Health, StoreState};
use super::tap::Tap;
use super::timers::{self, TimerQueue};
use super::{Job, NEWEST_ID_RECORD};
use crate::cluster::outbox::{Outbox, Staged};
use crate::core::hub::{FanOut, Hub};
use crate::core::log::DurableMark;
use crate::core::log::LogEvent;
use crate::core::log::ids::IdGenerator;
use crate::core::store::{Store, StoreError, WriteBatch, layout};
use crate::error::ApiError;
use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How the writer recovers from a failed group.
#[derive(Debug, Clone, Copy)]
pub struct RecoverySettings {
    /// Time between two recovery attempts.
    pub interval: Duration,
    /// Give up (and end the process) when not recovered after this long.
    pub timeout: Duration,
}

/// What a change produced, before its group is durable.
struct Applied {
    value: Box<dyn Any + Send>,
    events: Vec<Arc<LogEvent>>,
    hooks: Vec<Hook>,
}

struct Outcome {
    reply: super::Reply,
    result: Result<Applied, ApiError>,
}

/// What the keys of a failed group held before it (`None`: absent).
struct Undo {
    pre_images: Vec<(Vec<u8>, Option<sled::IVec>)>,
}

impl Undo {
    /// Reads the pre-images of `group`, whose events all have ids above
    /// `issued_before` (the newest id issued before the group ran).
    fn read(store: &Store, group: &Writes, issued_before: u128) -> Result<Self, StoreError> {
        let pre_images = group
            .keys()
            .map(|key| {
                let previous = if is_new_event(key, issued_before) {
                    None
                } else {
                    store.get_blocking(key)?
                };
                Ok((key.clone(), previous))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Self { pre_images })
    }

    fn none() -> Self {
        Self {
            pre_images: Vec::new(),
        }
    }

    fn batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for (key, value) in &self.pre_images {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        batch
    }
}

/// True for the key of an event with an id above `issued_before`: it was
/// appended by the running group and did not exist before.
fn is_new_event(key: &[u8], issued_before: u128) -> bool {
    key.first() == Some(&layout::EVENT)
        && layout::event_id(key).is_some_and(|id| id > issued_before)
}

/// A group that did not become durable.
struct Failure {
    undo: Undo,
    error: StoreError,
}

pub(super) struct Pipeline {
    pub(super) store: Store,
    pub(super) hub: Arc<Hub>,
    pub(super) durable: Arc<DurableMark>,
    pub(super) ids: IdGenerator,
    pub(super) max_batch: usize,
    pub(super) health: Arc<Health>,
    pub(super) recovery: RecoverySettings,
    pub(super) observers: Arc<Observers>,
    pub(super) timers: TimerQueue,
    pub(super) tap: Arc<Tap>,
    pub(super) outbox: Option<Arc<Outbox>>,
    #[cfg(debug_assertions)]
    pub(super) faults: Arc<super::faults::Faults>,
}

/// Why the writer thread woke up.
enum Wake {
    /// A change arrived.
    Job(Job),
    /// A timer may be due.
    Time,
    /// Every [`super::Writer`] is gone.
    Closed,
}

/// Waits for the next change, or at most `sleep` (when a timer may be due).
async fn next_wake(receiver: &mut mpsc::Receiver<Job>, sleep: Option<Duration>) -> Wake {
    let received = match sleep {
        None => receiver.recv().await,
        Some(sleep) => match tokio::time::timeout(sleep, receiver.recv()).await {
            Ok(received) => received,
            Err(_) => return Wake::Time,
        },
    };
    received.map_or(Wake::Closed, Wake::Job)
}

impl Pipeline {
    /// Commits groups until every [`super::Writer`] is gone; an error means
    /// the store could not be recovered.
    pub(super) fn run(mut self, mut receiver: mpsc::Receiver<Job>) -> Result<(), String> {
        let clock = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|err| format!("starting the writer's timer clock: {err}"))?;
        loop {
            let sleep = self.timers.sleep_for(crate::core::clock::unix_millis());
            let jobs = match clock.block_on(next_wake(&mut receiver, sleep)) {
                Wake::Job(first) => self.take_group(first, &mut receiver),
                Wake::Time => Vec::new(),
                Wake::Closed => return Ok(()),
            };
            #[cfg(debug_assertions)]
            if self.faults.take_panic() {
                panic!("injected fault: the writer thread panics outside any change");
            }
            if let Err(failure) = self.commit_group(jobs) {
                self.recover(failure, &mut receiver)?;
            }
        }
    }

    fn take_group(&self, first: Job, receiver: &mut mpsc::Receiver<Job>) -> Vec<Job> {
        self.health.release(first.bytes);
        let budget = self
            .outbox
            .as_ref()
            .map_or(usize::MAX, |o| o.group_budget());
        let mut bytes = first.bytes;
        let mut jobs = vec![first];
        while jobs.len() < self.max_batch && bytes < budget {
            match receiver.try_recv() {
                Ok(job) => {
                    self.health.release(job.bytes);
                    bytes = bytes.saturating_add(job.bytes);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        jobs
    }

    fn commit_group(&mut self, jobs: Vec<Job>) -> Result<(), Failure> {
        let now_ms = crate::core::clock::unix_millis();
        let issued_before = u128::from(self.ids.last());
        let mut group = Writes::new();
        let room = self.max_batch.saturating_sub(jobs.len());
        let (mut outcomes, tally) = self.fire_due_timers(&mut group, now_ms, room);
        for job in jobs {
            let result = self.apply_one(job.change, &mut group, now_ms);
            outcomes.push(Outcome {
                reply: job.reply,
                result,
            });
        }
        if !group.is_empty() {
            self.timers.note_committed(&group);
            let started = std::time::Instant::now();
            let staged = match self.persist(group, issued_before) {
                Ok(staged) => staged,
                Err(failure) => {
                    // Its timers (fired or scheduled) are undone: read them again.
                    self.timers.reread_soon();
                    tracing::error!(error = %failure.error, "commit failed; the store stops taking writes until it has recovered");
                    // Failed before anyone hears of the failure: a caller that
                    // got its 503 and asks /readyz at once must see it too.
                    self.health.set_state(StoreState::Failed);
                    refuse_unknown(outcomes, &failure.error, self.recovery.interval);
                    return Err(failure);
                }
            };
            if let (Some(outbox), Some(staged)) = (&self.outbox, staged) {
                outbox.made_durable(staged);
            }
            self.health.record_commit(started.elapsed());
            self.timers.record(tally);
        }
        self.publish_and_answer(outcomes);
        Ok(())
    }

    /// Runs the handlers of the timers due at `now_ms` as the group's first
    /// changes (the group is empty, so their reads are exact): at most the
    /// `room` its client changes leave, but at least half a group, so queued
    /// client changes never starve timers nor timers them. A handler that
    /// fails is replaced by a change that only deletes its timer.
    fn fire_due_timers(
        &mut self,
        group: &mut Writes,
        now_ms: u64,
        room: usize,
    ) -> (Vec<Outcome>, timers::Tally) {
        let limit = room.max(self.max_batch / 2).max(1);
        let mut tally = timers::Tally::default();
        let mut outcomes = Vec::new();
        for (timer, handler) in self.timers.take_due(&self.store, now_ms, limit) {
            let consumed = timers::consuming(timer.clone());
            let (id, name) = (timer.id.0, timer.handler.clone());
            let result = match self.apply_one(timers::firing(timer, handler), group, now_ms) {
                Ok(applied) => {
                    tally.fired += 1;
                    Ok(applied)
                }
                Err(err) => {
                    tracing::error!(timer = %id, handler = %name, error = %err, "a timer's handler failed; its writes are discarded and the timer is deleted");
                    tally.failed += 1;
                    self.apply_one(consumed, group, now_ms)
                }
            };
            // Nobody waits for a timer's answer.
            let (reply, _) = tokio::sync::oneshot::channel();
            outcomes.push(Outcome { reply, result });
        }
        (outcomes, tally)
    }

    fn publish_and_answer(&self, mut outcomes: Vec<Outcome>) {
        let events: Vec<Arc<LogEvent>> = outcomes
            .iter()
            .filter_map(|outcome| outcome.result.as_ref().ok())
            .flat_map(|applied| applied.events.iter().cloned())
            .collect();
        if let Some(newest) = events.last() {
            self.durable.raise(newest.id());
        }
        self.health.record_events(events.len());
        self.hub.publish(&events);
        for outcome in &mut outcomes {
            if let Ok(applied) = &mut outcome.result {
                run_hooks(std::mem::take(&mut applied.hooks));
            }
        }
        #[cfg(debug_assertions)]
        std::thread::sleep(self.faults.answer_delay());
        for outcome in outcomes {
            // A caller that went away no longer needs the answer; the write
            // stands, and whatever its value held (guards) is dropped here.
            let _ = outcome.reply.send(
                outcome
                    .result
                    .map(|applied| (applied.value, applied.events)),
            );
        }
    }

    fn apply_one(
        &mut self,
        change: super::ChangeFn,
        group: &mut Writes,
        now_ms: u64,
    ) -> Result<Applied, ApiError> {
        let observers = self.observers.current();
        let mut ctx = Change {
            store: &self.store,
            group,
            own: Writes::new(),
            events: Vec::new(),
            hooks: Vec::new(),
            ids: &mut self.ids,
            now_ms,
            observers: &observers,
        };
        let value = match std::panic::catch_unwind(AssertUnwindSafe(|| change(&mut ctx))) {
            Ok(result) => result?,
            Err(_) => {
                return Err(ApiError::internal(
                    "the change panicked; nothing was written",
                ));
            }
        };
        let Change {
            own, events, hooks, ..
        } = ctx;
        group.extend(own);
        Ok(Applied {
            value,
            events,
            hooks,
        })
    }

    /// Applies and flushes the group as one batch; a cluster writer's batch
    /// is numbered and staged (returned).
    fn persist(&self, group: Writes, issued_before: u128) -> Result<Option<Staged>, Failure> {
        let mut undo = Undo::read(&self.store, &group, issued_before).map_err(|error| Failure {
            undo: Undo::none(),
            error,
        })?;
        let mut batch = WriteBatch::default();
        for (key, value) in group {
            match value {
                Some(value) => batch.put(key, value),
                None => batch.delete(key),
            }
        }
        self.stamp_newest_id(&mut batch);
        let staged = self.outbox.as_ref().map(|outbox| {
            let (staged, pre_images) = outbox.stage(&mut batch);
            undo.pre_images.extend(pre_images);
            staged
        });
        let written = self.tap.write(batch, |batch| {
            self.store
                .apply_blocking(batch)
                .and_then(|()| self.injected_flush_failure())
                .and_then(|()| self.store.flush_blocking())
        });
        written.map_err(|error| Failure { undo, error })?;
        Ok(staged)
    }

    fn stamp_newest_id(&self, batch: &mut WriteBatch) {
        batch.put(
            layout::meta(NEWEST_ID_RECORD),
            u128::from(self.ids.last()).to_be_bytes(),
        );
    }

    #[cfg(debug_assertions)]
    fn injected_flush_failure(&self) -> Result<(), StoreError> {
        if self.faults.take_flush_failure() {
            return Err(StoreError::new("injected fault: the flush failed"));
        }
        Ok(())
    }

    #[cfg(not(debug_assertions))]
    fn injected_flush_failure(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Closes the store, then reopens it and undoes the failed group at every
    /// interval until that works or the timeout passes.
    fn recover(
        &mut self,
        failure: Failure,
        receiver: &mut mpsc::Receiver<Job>,
    ) -> Result<(), String> {
        self.health.set_state(StoreState::Failed);
        // A backup attached before the failure was seen cannot span it.
        self.tap.interrupt();
        self.store.close();
        let started = Instant::now();
        for attempt in 1.. {
            self.refuse_queued_for(self.recovery.interval, receiver);
            self.health.set_state(StoreState::Recovering);
            match self.undo_on_disk(&failure.undo) {
                Ok(()) => {
                    self.health.set_state(StoreState::Healthy);
                    tracing::info!(attempt, "the store recovered; writes are accepted again");
                    return Ok(());
                }
                Err(err) => {
                    self.store.close();
                    self.health.set_state(StoreState::Failed);
                    tracing::warn!(attempt, error = %err, "store recovery failed; retrying");
                }
            }
            if started.elapsed() >= self.recovery.timeout {
                return Err(format!(
                    "the store did not recover within {} (first failure: {}); exiting so a supervisor restarts the process",
                    humantime::format_duration(self.recovery.timeout),
                    failure.error
                ));
            }
        }
        unreachable!("the recovery loop only ends by returning")
    }

    /// Reopens the store from disk and writes back the failed group's
    /// pre-images, durably; a cluster writer then counts its outbox again
    /// (deletions of acknowledged rows not yet flushed may be back).
    fn undo_on_disk(&self, undo: &Undo) -> Result<(), StoreError> {
        self.store.reopen_blocking()?;
        let mut batch = undo.batch();
        self.stamp_newest_id(&mut batch);
        self.store.apply_blocking(&batch)?;
        self.injected_flush_failure()?;
        self.store.flush_blocking()?;
        match &self.outbox {
            Some(outbox) => outbox.recount(&self.store),
            None => Ok(()),
        }
    }

    /// Answers every change that arrives during `period` with 503.
    fn refuse_queued_for(&self, period: Duration, receiver: &mut mpsc::Receiver<Job>) {
        let until = Instant::now() + period;
        loop {
            while let Ok(job) = receiver.try_recv() {
                self.health.release(job.bytes);
                let _ = job.reply.send(Err(recovering(period)));
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

fn recovering(interval: Duration) -> ApiError {
    ApiError::unavailable_for(
        "the store failed and is recovering; nothing was written; retry shortly",
        interval,
    )
}

/// Answers the changes of a group that did not become durable: the outcome
/// of those that ran is unknown to their callers until the store recovers.
fn refuse_unknown(outcomes: Vec<Outcome>, error: &StoreError, interval: Duration) {
    for outcome in outcomes {
        let result = match outcome.result {
            Ok(_) => Err(ApiError::unavailable_for(
                format!(
                    "the store failed while making this write durable ({error}); its outcome is unknown: \
                     the server undoes it before it takes writes again, unless the process dies first; \
                     retry with the same Idempotency-Key, or read back to find out"
                ),
                interval,
            )
            .with_details(serde_json::json!({ "outcome": "unknown" }))),
            Err(err) => Err(err),
        };
        let _ = outcome.reply.send(result);
    }
}

fn run_hooks(hooks: Vec<Hook>) {
    for hook in hooks {
        if std::panic::catch_unwind(AssertUnwindSafe(hook)).is_err() {
            tracing::error!("an after-commit hook panicked; the change itself is committed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_events_issued_by_the_running_group_count_as_new() {
        let tenant = uuid::Uuid::nil();
        assert!(is_new_event(&layout::event(&tenant, "t", 11), 10));
        assert!(
            !is_new_event(&layout::event(&tenant, "t", 10), 10),
            "an older event (pruned)"
        );
        assert!(
            !is_new_event(&layout::topic(&tenant, "t"), 0),
            "not an event key"
        );
    }
}
