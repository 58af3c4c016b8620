//! The backup tap: while an online backup scans the store, the writer thread
//! journals every batch it makes durable, operation by operation, so the
//! backup can replay them over its scan (see `ops::backup` for why that
//! gives an exact cut).
//!
//! Invariants:
//! * attaching and detaching a [`Journal`] happen at batch boundaries: the
//!   writer holds the slot's lock from applying a batch until it has
//!   journaled it, so [`super::Writer::attach_journal`] and
//!   [`JournalHandle::finish`] wait for the batch being written. A batch is
//!   journaled exactly when its apply began after the attach and before the
//!   detach;
//! * only durable batches are journaled (recorded after their flush
//!   succeeded); a batch that fails to apply or flush fails the attached
//!   journal, and so does a store recovery, so a backup never spans a failure;
//! * a journal is attached only while the store is healthy, at most one at a
//!   time;
//! * the batches waiting in a journal hold at most its byte bound; beyond it
//!   the journal fails (the backup's reader fell too far behind the writes);
//! * with no backup running the writer pays one uncontended lock per group.

use super::health::{Health, StoreState};
use crate::core::store::{Op, StoreError, WriteBatch};
use crate::error::{ApiError, ErrorCode};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Where the writer finds the journal of the running backup, if any.
#[derive(Default)]
pub(super) struct Tap {
    slot: Mutex<Option<Arc<Journal>>>,
}

/// Locks `mutex`, ignoring poisoning (the data stays consistent: every
/// critical section below only moves whole values).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl Tap {
    /// Writes `batch` with `write` (apply and flush), then journals it when
    /// it became durable and a journal is attached; a failed write fails the
    /// attached journal. Runs on the writer thread.
    pub(super) fn write(
        &self,
        batch: WriteBatch,
        write: impl FnOnce(&WriteBatch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut slot = lock(&self.slot);
        let result = write(&batch);
        if let Some(journal) = slot.as_ref() {
            let attached = match &result {
                Ok(()) => journal.record(batch.into_ops()),
                Err(err) => {
                    journal.fail(format!("the store failed during the backup ({err})"));
                    false
                }
            };
            if !attached {
                *slot = None;
            }
        }
        result
    }

    /// Fails the attached journal, if any: the store is being recovered.
    pub(super) fn interrupt(&self) {
        if let Some(journal) = lock(&self.slot).take() {
            journal.fail("the store failed and is being recovered".into());
        }
    }

    /// Attaches a new journal of at most `max_bytes` waiting bytes (blocking:
    /// waits for the batch being written). 409 while another backup's
    /// journal is attached, 503 while the store is not healthy.
    pub(super) fn attach(
        self: &Arc<Self>,
        health: &Health,
        max_bytes: usize,
    ) -> Result<JournalHandle, ApiError> {
        let mut slot = lock(&self.slot);
        let state = health.state();
        if state != StoreState::Healthy {
            return Err(ApiError::unavailable_for(
                format!(
                    "the store is {}; a backup can start once it has recovered",
                    state.as_str()
                ),
                Duration::from_secs(1),
            ));
        }
        if slot.as_ref().is_some_and(|journal| !journal.is_abandoned()) {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "another backup is running; only one runs at a time",
            ));
        }
        let journal = Arc::new(Journal::new(max_bytes));
        *slot = Some(journal.clone());
        Ok(JournalHandle {
            tap: self.clone(),
            journal,
        })
    }

    /// Detaches `journal` if it is the attached one (blocking).
    fn detach(&self, journal: &Arc<Journal>) {
        let mut slot = lock(&self.slot);
        if slot.as_ref().is_some_and(|held| Arc::ptr_eq(held, journal)) {
            *slot = None;
        }
    }
}

/// What the writer charges a journaled operation besides its bytes.
const OP_OVERHEAD: usize = std::mem::size_of::<Op>();

/// The durable batches of one backup, oldest first, until taken.
struct Journal {
    queue: Mutex<Queue>,
    max_bytes: usize,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Vec<Op>>,
    bytes: usize,
    failure: Option<String>,
    abandoned: bool,
}

impl Journal {
    fn new(max_bytes: usize) -> Self {
        Self {
            queue: Mutex::default(),
            max_bytes,
        }
    }

    /// Keeps a durable batch; false when the journal no longer takes any
    /// (abandoned, failed, or this batch went over the bound and failed it).
    fn record(&self, ops: Vec<Op>) -> bool {
        let mut queue = lock(&self.queue);
        if queue.abandoned || queue.failure.is_some() {
            return false;
        }
        let bytes: usize = ops.iter().map(op_bytes).sum();
        if queue.bytes.saturating_add(bytes) > self.max_bytes {
            *queue = Queue {
                failure: Some(format!(
                    "the writes made during the backup outgrew its journal (--backup-max-journal-bytes, {} bytes): \
                     the backup was read more slowly than the server was written; retry when writes are fewer or raise the bound",
                    self.max_bytes
                )),
                ..Queue::default()
            };
            return false;
        }
        queue.bytes += bytes;
        queue.batches.push_back(ops);
        true
    }

    fn fail(&self, reason: String) {
        let mut queue = lock(&self.queue);
        if queue.failure.is_none() {
            *queue = Queue {
                failure: Some(reason),
                ..Queue::default()
            };
        }
    }

    fn is_abandoned(&self) -> bool {
        lock(&self.queue).abandoned
    }

    fn take(&self) -> Result<Vec<Vec<Op>>, String> {
        let mut queue = lock(&self.queue);
        if let Some(failure) = &queue.failure {
            return Err(failure.clone());
        }
        queue.bytes = 0;
        Ok(queue.batches.drain(..).collect())
    }
}

/// What a journaled operation holds in memory.
fn op_bytes((key, value): &Op) -> usize {
    OP_OVERHEAD + key.len() + value.as_ref().map_or(0, |value| value.len())
}

/// A backup's hold on its journal; dropping it without
/// [`JournalHandle::finish`] abandons the journal: it is detached at once,
/// or by the writer right after the batch it is writing.
pub struct JournalHandle {
    tap: Arc<Tap>,
    journal: Arc<Journal>,
}

impl JournalHandle {
    /// The batches made durable since the last take, oldest first, each as
    /// its operations in order; the reason once the journal failed.
    pub fn take(&self) -> Result<Vec<Vec<Op>>, String> {
        self.journal.take()
    }

    /// Detaches the journal (blocking: waits for the batch being written)
    /// and returns the batches made durable since the last take: after it,
    /// the journal holds every durable batch whose apply began while it was
    /// attached.
    pub fn finish(self) -> Result<Vec<Vec<Op>>, String> {
        self.tap.detach(&self.journal);
        self.journal.take()
    }
}

impl Drop for JournalHandle {
    fn drop(&mut self) {
        {
            let mut queue = lock(&self.journal.queue);
            queue.abandoned = true;
            queue.batches.clear();
            queue.bytes = 0;
        }
        // Let go of the slot now unless a batch is being written (then the
        // writer does when it sees the journal abandoned).
        if let Ok(mut slot) = self.tap.slot.try_lock()
            && slot
                .as_ref()
                .is_some_and(|held| Arc::ptr_eq(held, &self.journal))
        {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(key: &[u8], value: Option<&[u8]>) -> WriteBatch {
        let mut batch = WriteBatch::default();
        match value {
            Some(value) => batch.put(key, value),
            None => batch.delete(key),
        }
        batch
    }

    fn keys(batches: &[Vec<Op>]) -> Vec<Vec<u8>> {
        batches
            .iter()
            .flatten()
            .map(|(key, _)| key.to_vec())
            .collect()
    }

    #[test]
    fn only_durable_batches_written_while_attached_are_journaled() {
        let tap = Arc::new(Tap::default());
        let health = Health::new();
        tap.write(batch(b"before", Some(b"1")), |_| Ok(())).unwrap();
        let handle = tap.attach(&health, 1 << 20).unwrap();
        tap.write(batch(b"a", Some(b"1")), |_| Ok(())).unwrap();
        tap.write(batch(b"b", None), |_| Ok(())).unwrap();
        assert_eq!(
            keys(&handle.take().unwrap()),
            [b"a".to_vec(), b"b".to_vec()]
        );
        tap.write(batch(b"c", Some(b"3")), |_| Ok(())).unwrap();
        let rest = handle.finish().unwrap();
        assert_eq!(keys(&rest), [b"c".to_vec()]);
        assert!(
            rest[0][0].1.as_deref() == Some(&b"3"[..]),
            "the value as written"
        );
        tap.write(batch(b"after", Some(b"1")), |_| Ok(())).unwrap();
        assert!(lock(&tap.slot).is_none(), "detached");
    }

    #[test]
    fn a_failed_write_or_a_recovery_fails_the_journal() {
        let tap = Arc::new(Tap::default());
        let health = Health::new();
        let handle = tap.attach(&health, 1 << 20).unwrap();
        let failed = tap.write(batch(b"a", Some(b"1")), |_| Err(StoreError::new("disk")));
        assert!(failed.is_err());
        let reason = handle.take().unwrap_err();
        assert!(
            reason.contains("store failed") && reason.contains("disk"),
            "{reason}"
        );
        drop(handle);

        let handle = tap.attach(&health, 1 << 20).unwrap();
        tap.interrupt();
        assert!(handle.finish().unwrap_err().contains("recovered"));

        health.set_state(StoreState::Failed);
        let refused = tap.attach(&health, 1 << 20).err().unwrap();
        assert_eq!(refused.code, ErrorCode::ServiceUnavailable);
    }

    #[test]
    fn one_journal_at_a_time_and_an_abandoned_one_makes_room() {
        let tap = Arc::new(Tap::default());
        let health = Health::new();
        let first = tap.attach(&health, 1 << 20).unwrap();
        let second = tap.attach(&health, 1 << 20).err().unwrap();
        assert_eq!(second.code, ErrorCode::Conflict);
        drop(first);
        assert!(
            lock(&tap.slot).is_none(),
            "dropping the handle lets go of the slot"
        );
        let third = tap.attach(&health, 1 << 20).unwrap();
        tap.write(batch(b"k", Some(b"v")), |_| Ok(())).unwrap();
        assert_eq!(third.take().unwrap().len(), 1);
    }

    #[test]
    fn a_journal_over_its_bound_fails_and_stops_the_tap() {
        let tap = Arc::new(Tap::default());
        let handle = tap.attach(&Health::new(), 2 * OP_OVERHEAD + 10).unwrap();
        tap.write(batch(b"k1", Some(b"v")), |_| Ok(())).unwrap();
        tap.write(batch(b"k2", Some(b"v")), |_| Ok(())).unwrap();
        tap.write(batch(b"k3", Some(&[0; 64])), |_| Ok(())).unwrap();
        assert!(lock(&tap.slot).is_none(), "the writer let go of it");
        let reason = handle.take().unwrap_err();
        assert!(reason.contains("--backup-max-journal-bytes"), "{reason}");
    }
}
