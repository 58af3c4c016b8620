//! The cluster writer's replication outbox: batch numbers, the outbox row
//! staged in every durable batch, what waits for the stream, the gate that
//! refuses writes while the outbox is full or the writer is fenced, and the
//! state the publisher reports (for `/readyz`, `/metrics` and the
//! `Tidings-Batch` response header).
//!
//! Shared by the writer thread (numbers and stages every batch, records it
//! once durable), the publisher task (reads durable rows, deletes the ones
//! the stream acknowledged, reports the link's state) and the write path.
//!
//! Invariants:
//! * batch numbers are 1, 2, 3 … with no hole: a batch takes `last + 1`, and
//!   `last` rises only once that batch is durable; a batch that fails is
//!   undone on disk (its number record and row are among the pre-images the
//!   writer restores), so its number is taken again by the next one;
//! * a batch stores its number (`m batch-number`, 8 bytes big-endian) and
//!   its outbox row (`o <number>`) in the same sled batch as its data; the
//!   row is the [`BatchRecord`] of every other operation of the batch, the
//!   number record included (so a replica applying it lands on the number);
//! * the publisher is handed durable rows only (numbers up to `last`);
//! * the pending rows and bytes equal the `o` rows in the store: counted at
//!   start, raised by the writer after each durable batch, lowered as the
//!   publisher deletes rows, recounted after a store recovery, each under
//!   one lock, so nothing is counted twice or missed;
//! * only the publisher deletes rows, and only rows the stream holds;
//! * fencing is final for the process: once fenced, every write is refused;
//! * the gate applies once the node serves ([`Outbox::arm_gate`]): the
//!   writes of its start (the registry, the modules' setup) always go
//!   through, so a writer restarted with a full outbox still starts.

use crate::cluster::record::BatchRecord;
use crate::core::store::{Store, StoreError, WriteBatch, decode_u64, layout};
use crate::error::ApiError;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::Notify;

/// Name of the store record holding the last durable batch number.
pub const BATCH_NUMBER_RECORD: &str = "batch-number";
/// The group budget before the publisher learned the NATS server's
/// `max_payload`: the server's default (1 MiB).
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;
/// Rows read or deleted per store call.
const ROWS_PER_STEP: usize = 1024;
/// `Retry-After` of a write refused because the outbox is full.
const FULL_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A batch numbered and staged, not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staged {
    /// The batch's number.
    pub number: u64,
    /// The size of its outbox row's value.
    pub bytes: u64,
}

/// What a key held before a batch (`None`: absent), for undoing it.
pub type PreImage = (Vec<u8>, Option<sled::IVec>);

/// The outbox rows in the store, counted.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    rows: u64,
    bytes: u64,
}

/// A snapshot of the writer's replication state.
#[derive(Debug, Clone)]
pub struct OutboxStatus {
    /// The last durable batch number (0: none yet).
    pub last_batch: u64,
    /// The last batch number the stream is known to hold.
    pub published_batch: u64,
    /// Outbox rows waiting for the stream.
    pub rows: u64,
    /// Bytes of those rows.
    pub bytes: u64,
    /// Why this writer is fenced, if it is.
    pub fenced: Option<String>,
    /// Whether the NATS connection is up.
    pub connected: bool,
    /// Batches the stream acknowledged since the start.
    pub published_total: u64,
    /// Failed publish or reconcile attempts since the start.
    pub publish_errors: u64,
    /// The last publish failure, until a publish succeeds again.
    pub problem: Option<String>,
}

/// The shared replication state of a cluster writer.
pub struct Outbox {
    last_durable: Arc<AtomicU64>,
    tally: Mutex<Tally>,
    /// Mirrors the tally's bytes, for the lock-free gate.
    pending_bytes: AtomicU64,
    max_bytes: u64,
    fenced: OnceLock<String>,
    gate_armed: AtomicBool,
    woken: Notify,
    connected: AtomicBool,
    published: AtomicU64,
    published_total: AtomicU64,
    publish_errors: AtomicU64,
    problem: Mutex<Option<String>>,
    max_payload: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// The batch number of an outbox row's key.
fn row_number(key: &[u8]) -> u64 {
    key.get(1..).map_or(0, decode_u64)
}

impl Outbox {
    /// The outbox of the store: its last batch number and its rows, counted
    /// (blocking); writes are refused while its rows hold more than
    /// `max_bytes`.
    pub fn open(store: &Store, max_bytes: u64) -> Result<Arc<Self>, StoreError> {
        let last = store
            .get_blocking(&layout::meta(BATCH_NUMBER_RECORD))?
            .map_or(0, |bytes| decode_u64(&bytes));
        let outbox = Arc::new(Self {
            last_durable: Arc::new(AtomicU64::new(last)),
            tally: Mutex::default(),
            pending_bytes: AtomicU64::new(0),
            max_bytes,
            fenced: OnceLock::new(),
            gate_armed: AtomicBool::new(false),
            woken: Notify::new(),
            connected: AtomicBool::new(false),
            published: AtomicU64::new(0),
            published_total: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            problem: Mutex::new(None),
            max_payload: AtomicUsize::new(DEFAULT_MAX_PAYLOAD),
        });
        outbox.recount(store)?;
        Ok(outbox)
    }

    /// Numbers `batch` (everything the writer is about to apply) and adds
    /// its number record and its outbox row to it; returns the staged batch
    /// and the pre-images of the two keys added. Writer thread only.
    pub fn stage(&self, batch: &mut WriteBatch) -> (Staged, [PreImage; 2]) {
        let last = self.last_durable.load(Ordering::Acquire);
        let number = last + 1;
        let number_key = layout::meta(BATCH_NUMBER_RECORD);
        batch.put(&number_key, number.to_be_bytes());
        let record = BatchRecord::encode_ops(number, batch.ops());
        let bytes = record.len() as u64;
        let row_key = layout::outbox(number);
        batch.put(&row_key, record);
        let previous = (last > 0).then(|| sled::IVec::from(&last.to_be_bytes()[..]));
        (
            Staged { number, bytes },
            [(number_key, previous), (row_key, None)],
        )
    }

    /// Records that `staged` is durable: its number becomes the last, its
    /// row is counted, and the publisher is woken. Writer thread only.
    pub fn made_durable(&self, staged: Staged) {
        {
            let mut tally = lock(&self.tally);
            tally.rows += 1;
            tally.bytes += staged.bytes;
            self.pending_bytes.store(tally.bytes, Ordering::Release);
        }
        self.last_durable.store(staged.number, Ordering::Release);
        self.woken.notify_one();
    }

    /// Counts the rows in the store again (blocking): at start, and after a
    /// store recovery, which may bring back rows whose deletion was not yet
    /// flushed.
    pub fn recount(&self, store: &Store) -> Result<(), StoreError> {
        let mut tally = lock(&self.tally);
        let mut counted = Tally::default();
        store.for_each_blocking(&[layout::OUTBOX], |_, value| {
            counted.rows += 1;
            counted.bytes += value.len() as u64;
            Ok(())
        })?;
        *tally = counted;
        self.pending_bytes.store(counted.bytes, Ordering::Release);
        Ok(())
    }

    /// Makes [`Outbox::admit`] refuse writes from now on when the writer is
    /// fenced or the outbox full (called once the node is about to serve).
    pub fn arm_gate(&self) {
        self.gate_armed.store(true, Ordering::Release);
    }

    /// Refuses a write while the writer is fenced or the outbox is full
    /// (once the gate is armed).
    pub fn admit(&self) -> Result<(), ApiError> {
        if !self.gate_armed.load(Ordering::Acquire) {
            return Ok(());
        }
        if let Some(reason) = self.fenced.get() {
            return Err(ApiError::unavailable(format!(
                "this node is fenced and read-only: {reason}; nothing was written"
            )));
        }
        let bytes = self.pending_bytes.load(Ordering::Acquire);
        if bytes > self.max_bytes {
            return Err(ApiError::unavailable_for(
                format!(
                    "the replication outbox holds {bytes} bytes, more than --outbox-max-bytes ({}): \
                     the shared log (NATS) is unreachable or slow; nothing was written; retry shortly",
                    self.max_bytes
                ),
                FULL_RETRY_AFTER,
            ));
        }
        Ok(())
    }

    /// The last durable batch number, shared (the HTTP layer reads it for
    /// the `Tidings-Batch` header).
    pub fn last_durable_cell(&self) -> Arc<AtomicU64> {
        self.last_durable.clone()
    }

    /// The last durable batch number.
    pub fn last_durable(&self) -> u64 {
        self.last_durable.load(Ordering::Acquire)
    }

    /// The most declared bytes the writer takes into one group: the NATS
    /// server's `max_payload`, so that a group's record (about half its
    /// declared bytes) fits one message.
    pub fn group_budget(&self) -> usize {
        self.max_payload.load(Ordering::Relaxed)
    }

    /// Waits until a batch is made durable (returns at once when one was
    /// since the last wait).
    pub async fn durable_batch(&self) {
        self.woken.notified().await;
    }

    /// Durable rows with numbers above `after`, in number order, at most
    /// `limit` (blocking).
    pub fn rows_after(
        &self,
        store: &Store,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, sled::IVec)>, StoreError> {
        let through = self.last_durable();
        let rows = store.scan_blocking(&[layout::OUTBOX], Some(&layout::outbox(after)), limit)?;
        Ok(rows
            .into_iter()
            .map(|(key, value)| (row_number(&key), value))
            .take_while(|(number, _)| *number <= through)
            .collect())
    }

    /// The row of batch `number`, if still in the outbox (blocking).
    pub fn row(&self, store: &Store, number: u64) -> Result<Option<sled::IVec>, StoreError> {
        store.get_blocking(&layout::outbox(number))
    }

    /// The smallest row number in the outbox, if any (blocking).
    pub fn first_row(&self, store: &Store) -> Result<Option<u64>, StoreError> {
        Ok(store
            .first_blocking(&[layout::OUTBOX])?
            .map(|(key, _)| row_number(&key)))
    }

    /// Deletes every row numbered up to `number`: the stream holds those
    /// batches (blocking; not flushed: a row that comes back after a crash
    /// is found in the stream and deleted again).
    pub fn remove_through(&self, store: &Store, number: u64) -> Result<(), StoreError> {
        let mut tally = lock(&self.tally);
        loop {
            let rows = store.scan_blocking(&[layout::OUTBOX], None, ROWS_PER_STEP)?;
            let mut batch = WriteBatch::default();
            let mut bytes = 0;
            for (key, value) in rows.iter().take_while(|(key, _)| row_number(key) <= number) {
                batch.delete(key);
                bytes += value.len() as u64;
            }
            if batch.is_empty() {
                return Ok(());
            }
            store.apply_blocking(&batch)?;
            tally.rows = tally.rows.saturating_sub(batch.len() as u64);
            tally.bytes = tally.bytes.saturating_sub(bytes);
            self.pending_bytes.store(tally.bytes, Ordering::Release);
        }
    }

    /// Fences this writer for good: every write is refused from now on.
    /// Logged once.
    pub fn fence(&self, reason: String) {
        if self.fenced.set(reason.clone()).is_ok() {
            tracing::error!(
                reason = %reason,
                "this writer is fenced: another writer published to the stream, or this data \
                 directory is older than the stream; it is read-only from now on"
            );
        }
    }

    /// Whether this writer is fenced.
    pub fn is_fenced(&self) -> bool {
        self.fenced.get().is_some()
    }

    /// Records whether the NATS connection is up.
    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// Records the NATS server's `max_payload` (the group budget).
    pub fn set_max_payload(&self, bytes: usize) {
        self.max_payload.store(bytes.max(1), Ordering::Relaxed);
    }

    /// Records that the stream holds every batch up to `number` (found at a
    /// reconcile).
    pub fn stream_holds(&self, number: u64) {
        self.published.store(number, Ordering::Relaxed);
    }

    /// Records that the stream acknowledged batch `number`.
    pub fn acknowledged(&self, number: u64) {
        self.published.store(number, Ordering::Relaxed);
        self.published_total.fetch_add(1, Ordering::Relaxed);
        let mut problem = lock(&self.problem);
        if problem.is_some() {
            *problem = None;
        }
    }

    /// Records a failed publish or reconcile.
    pub fn failed(&self, problem: String) {
        self.publish_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.problem) = Some(problem);
    }

    /// The state now.
    pub fn status(&self) -> OutboxStatus {
        let tally = *lock(&self.tally);
        OutboxStatus {
            last_batch: self.last_durable(),
            published_batch: self.published.load(Ordering::Relaxed),
            rows: tally.rows,
            bytes: tally.bytes,
            fenced: self.fenced.get().cloned(),
            connected: self.connected.load(Ordering::Relaxed),
            published_total: self.published_total.load(Ordering::Relaxed),
            publish_errors: self.publish_errors.load(Ordering::Relaxed),
            problem: lock(&self.problem).clone(),
        }
    }
}

/// Warns when a node served without `--nats` holds a cluster writer's batch
/// number: what it writes now never reaches the cluster's stream (blocking).
pub fn warn_if_former_writer(store: &Store) -> Result<(), StoreError> {
    if let Some(bytes) = store.get_blocking(&layout::meta(BATCH_NUMBER_RECORD))? {
        tracing::warn!(
            batch = decode_u64(&bytes),
            "this data directory was a cluster writer's: writes made without --nats never reach \
             the cluster's stream, so it cannot be the writer of that cluster again"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("db"), 1 << 20).unwrap()
    }

    fn stage_and_apply(outbox: &Outbox, store: &Store, key: &[u8]) -> Staged {
        let mut batch = WriteBatch::default();
        batch.put(key, b"value");
        let (staged, _) = outbox.stage(&mut batch);
        store.apply_blocking(&batch).unwrap();
        outbox.made_durable(staged);
        staged
    }

    #[test]
    fn rows_are_counted_read_in_order_and_removed_through_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let outbox = Outbox::open(&store, 1 << 20).unwrap();
        let staged: Vec<Staged> = (0..5u8)
            .map(|i| stage_and_apply(&outbox, &store, &[b'k', i]))
            .collect();
        assert_eq!(
            staged.iter().map(|s| s.number).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let status = outbox.status();
        assert_eq!((status.last_batch, status.rows), (5, 5));
        assert_eq!(status.bytes, staged.iter().map(|s| s.bytes).sum::<u64>());
        let after_two: Vec<u64> = outbox
            .rows_after(&store, 2, 2)
            .unwrap()
            .into_iter()
            .map(|(number, _)| number)
            .collect();
        assert_eq!(after_two, [3, 4]);
        outbox.remove_through(&store, 3).unwrap();
        assert_eq!(outbox.first_row(&store).unwrap(), Some(4));
        assert_eq!(outbox.status().rows, 2);
        let reopened = Outbox::open(&store, 1 << 20).unwrap();
        let status = reopened.status();
        assert_eq!((status.last_batch, status.rows), (5, 2));
        assert_eq!(status.bytes, staged[3].bytes + staged[4].bytes);
    }

    #[test]
    fn a_row_records_every_other_operation_of_its_batch_with_the_number() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let outbox = Outbox::open(&store, 1 << 20).unwrap();
        let mut batch = WriteBatch::default();
        batch.put(b"a", b"1");
        batch.delete(b"b");
        let (staged, pre_images) = outbox.stage(&mut batch);
        assert_eq!(staged.number, 1);
        assert_eq!(pre_images[0], (layout::meta(BATCH_NUMBER_RECORD), None));
        assert_eq!(pre_images[1], (layout::outbox(1), None));
        let ops = batch.ops();
        assert_eq!(ops.len(), 4);
        assert_eq!(&ops[3].0[..], &layout::outbox(1)[..]);
        let record = BatchRecord::decode(ops[3].1.as_ref().unwrap()).unwrap();
        assert_eq!(record.number, 1);
        assert_eq!(record.ops, ops[..3].to_vec());
        assert_eq!(
            record.ops[2],
            (
                layout::meta(BATCH_NUMBER_RECORD).into(),
                Some(1u64.to_be_bytes().to_vec().into())
            )
        );
    }

    #[test]
    fn the_gate_refuses_writes_above_the_byte_bound_and_once_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let outbox = Outbox::open(&store, 10).unwrap();
        assert!(outbox.admit().is_ok());
        stage_and_apply(&outbox, &store, b"k");
        assert!(outbox.admit().is_ok(), "the gate is not armed yet");
        outbox.arm_gate();
        let full = outbox.admit().unwrap_err();
        assert_eq!(full.code, crate::error::ErrorCode::ServiceUnavailable);
        assert!(
            full.message.contains("--outbox-max-bytes"),
            "{}",
            full.message
        );
        outbox.remove_through(&store, 1).unwrap();
        assert!(outbox.admit().is_ok(), "drained");
        outbox.fence("the stream is ahead".into());
        outbox.fence("a second reason is not kept".into());
        let fenced = outbox.admit().unwrap_err();
        assert!(
            fenced.message.contains("the stream is ahead"),
            "{}",
            fenced.message
        );
    }
}
