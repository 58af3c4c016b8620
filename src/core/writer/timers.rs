//! Durable timers: a change schedules work to run at a wall-clock time; the
//! writer thread fires it, once, as a change of its own.
//!
//! Key layout (the prefix [`PREFIX`], owned by the writer and claimed at
//! start-up like every other owner's):
//!
//! ```text
//! x d <due ms:8> <id:16>    timer: <handler name length:1> <handler name> <payload>
//! x i <id:16>               index by id: <due ms:8> (cancel, reschedule)
//! ```
//!
//! Due times and ids are big-endian, so the `x d` range is in firing order
//! (due time, then scheduling order: ids come from the writer's generator).
//!
//! Invariants:
//! * a timer is stored by the change that schedules it, in the same atomic
//!   group, so it exists exactly when that change committed;
//! * firing runs the handler as a change that also deletes the timer's rows:
//!   its writes and the deletion are durable together or not at all, so a
//!   crash or a failed flush never fires a timer twice nor loses it (an undone
//!   group leaves the timer due, and it fires after recovery);
//! * a handler that fails (error or panic) has its writes discarded; its timer
//!   is then deleted by a change of its own and the failure is logged: a
//!   timer is attempted once, never retried in a loop;
//! * a due timer whose handler is not registered is logged once, kept in the
//!   store and parked (not fired) until a later start registers its handler;
//! * nothing fires before [`TimerRegistry::arm`] (every module registered its
//!   handlers), so late timers at start-up never meet a missing handler;
//! * a payload is at most [`MAX_PAYLOAD`] bytes (scheduling more fails);
//! * the writer keeps only the earliest due time it knows of (a lower bound:
//!   waking early costs one range read) and the ids of parked timers, never
//!   the pending timers themselves; a wake reads only the due part of the range.

use super::change::{Change, Writes};
use crate::core::store::{Store, StoreError};
use crate::error::ApiError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use ulid::Ulid;

/// First byte of every timer key.
const TIMER: u8 = b'x';
/// The key prefix of durable timers.
pub const PREFIX: &[u8] = &[TIMER];

/// Kind of the timer rows ordered by due time.
const DUE: u8 = b'd';
/// Kind of the index of timers by id.
const BY_ID: u8 = b'i';
/// Longest handler name (its length is stored in one byte).
const MAX_HANDLER_NAME: usize = 64;
/// Largest payload: an id or a small record (a wake reads up to a whole
/// group of due timers at once, so this bounds that read).
pub const MAX_PAYLOAD: usize = 64 << 10;
/// How long the writer waits before reading the timers again after a read failed.
const RETRY_AFTER_READ_FAILURE: Duration = Duration::from_secs(1);

/// The id of a scheduled timer: kept by the module to cancel or reschedule it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub Ulid);

/// A timer as its handler receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// Its id.
    pub id: TimerId,
    /// When it was due (unix ms).
    pub due_ms: u64,
    /// The name of its handler.
    pub handler: String,
    /// What the scheduling change gave it.
    pub payload: Vec<u8>,
}

/// A timer handler: runs on the writer thread as a change (see [`Change`]).
pub type Handler = Arc<dyn Fn(&mut Change<'_>, &Timer) -> Result<(), ApiError> + Send + Sync>;

/// Counters describing the timers since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimerStats {
    /// Timers whose handler ran and committed.
    pub fired: u64,
    /// Timers whose handler failed (deleted, failure logged).
    pub failed: u64,
    /// Due timers kept unfired because their handler is not registered.
    pub parked: usize,
    /// Timer rows read while looking for due timers (the cost of wakes).
    pub scanned: u64,
}

/// The handlers modules registered by name, shared by the [`super::Writer`]
/// handles and the writer thread, and what the thread reports back.
#[derive(Default)]
pub struct TimerRegistry {
    handlers: RwLock<HashMap<String, Handler>>,
    armed: AtomicBool,
    fired: AtomicU64,
    failed: AtomicU64,
    parked: AtomicUsize,
    scanned: AtomicU64,
}

impl TimerRegistry {
    /// Registers `handler` under `name` (`[a-z0-9._-]`, 1-64 bytes); fails
    /// for a name already taken or after [`TimerRegistry::arm`].
    pub fn register(
        &self,
        name: &str,
        handler: impl Fn(&mut Change<'_>, &Timer) -> Result<(), ApiError> + Send + Sync + 'static,
    ) -> Result<(), String> {
        validate_handler_name(name)?;
        if self.is_armed() {
            return Err(format!(
                "timer handler {name:?} registered after the timers were armed"
            ));
        }
        let mut handlers = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        if handlers.contains_key(name) {
            return Err(format!("timer handler {name:?} is registered twice"));
        }
        handlers.insert(name.to_string(), Arc::new(handler));
        Ok(())
    }

    /// Lets timers fire: every handler is registered.
    pub(super) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    pub(super) fn is_armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    fn handler(&self, name: &str) -> Option<Handler> {
        self.handlers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The counters now.
    pub fn stats(&self) -> TimerStats {
        TimerStats {
            fired: self.fired.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
            scanned: self.scanned.load(Ordering::Relaxed),
        }
    }
}

/// What the timers of one group did.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    /// Handlers that ran.
    pub(super) fired: u64,
    /// Handlers that failed (their timers deleted).
    pub(super) failed: u64,
}

fn validate_handler_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_HANDLER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "timer handler name {name:?} must be 1-{MAX_HANDLER_NAME} bytes of [a-z0-9._-]"
        ))
    }
}

/// Key of a timer in the due-ordered range.
fn due_key(due_ms: u64, id: u128) -> Vec<u8> {
    let mut key = Vec::with_capacity(26);
    key.extend_from_slice(&[TIMER, DUE]);
    key.extend_from_slice(&due_ms.to_be_bytes());
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn parse_due_key(key: &[u8]) -> Option<(u64, u128)> {
    let rest = key.strip_prefix(&[TIMER, DUE])?;
    let due = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let id = u128::from_be_bytes(rest.get(8..24)?.try_into().ok()?);
    Some((due, id))
}

/// Key of a timer in the index by id.
fn index_key(id: u128) -> Vec<u8> {
    let mut key = Vec::with_capacity(18);
    key.extend_from_slice(&[TIMER, BY_ID]);
    key.extend_from_slice(&id.to_be_bytes());
    key
}

fn encode(handler: &str, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(1 + handler.len() + payload.len());
    value.push(handler.len() as u8);
    value.extend_from_slice(handler.as_bytes());
    value.extend_from_slice(payload);
    value
}

fn decode(value: &[u8]) -> Option<(String, Vec<u8>)> {
    let (&len, rest) = value.split_first()?;
    let name = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
    Some((name.to_string(), rest[usize::from(len)..].to_vec()))
}

/// Stores a timer due at `due_ms` (unix ms) for `handler` (see [`Change::schedule`]).
pub(super) fn schedule(
    change: &mut Change<'_>,
    due_ms: u64,
    handler: &str,
    payload: &[u8],
) -> Result<TimerId, ApiError> {
    validate_handler_name(handler).map_err(ApiError::internal)?;
    if payload.len() > MAX_PAYLOAD {
        return Err(ApiError::internal(format!(
            "a timer payload holds at most {MAX_PAYLOAD} bytes, not {}",
            payload.len()
        )));
    }
    let id = change.next_id();
    put_timer(change, due_ms, u128::from(id), encode(handler, payload));
    Ok(TimerId(id))
}

fn put_timer(change: &mut Change<'_>, due_ms: u64, id: u128, record: Vec<u8>) {
    change.put(due_key(due_ms, id), record);
    change.put(index_key(id), due_ms.to_be_bytes().to_vec());
}

/// The due time and record of a pending timer.
fn find(change: &Change<'_>, id: u128) -> Result<Option<(u64, Vec<u8>)>, ApiError> {
    let Some(due) = change.get(&index_key(id))? else {
        return Ok(None);
    };
    let due_ms = crate::core::store::decode_u64(&due);
    let record = change.get(&due_key(due_ms, id))?.ok_or_else(|| {
        ApiError::internal(format!("timer {} is indexed but not stored", Ulid(id)))
    })?;
    Ok(Some((due_ms, record)))
}

fn delete_rows(change: &mut Change<'_>, due_ms: u64, id: u128) {
    change.delete(due_key(due_ms, id));
    change.delete(index_key(id));
}

/// Removes a pending timer; false when it already fired or was cancelled.
pub(super) fn cancel(change: &mut Change<'_>, timer: TimerId) -> Result<bool, ApiError> {
    let id = u128::from(timer.0);
    let Some((due_ms, _)) = find(change, id)? else {
        return Ok(false);
    };
    delete_rows(change, due_ms, id);
    Ok(true)
}

/// Moves a pending timer to `due_ms`, keeping its id, handler and payload;
/// false when it already fired or was cancelled.
pub(super) fn reschedule(
    change: &mut Change<'_>,
    timer: TimerId,
    due_ms: u64,
) -> Result<bool, ApiError> {
    let id = u128::from(timer.0);
    let Some((old_due, record)) = find(change, id)? else {
        return Ok(false);
    };
    delete_rows(change, old_due, id);
    put_timer(change, due_ms, id, record);
    Ok(true)
}

/// Whether `timer` is still stored as it was read when it came due: an
/// earlier change of the same group (another timer's handler) may have
/// cancelled or moved it, and then it must not fire now.
fn still_due(change: &Change<'_>, timer: &Timer) -> Result<bool, ApiError> {
    let stored = find(change, u128::from(timer.id.0))?;
    Ok(matches!(stored, Some((due_ms, _)) if due_ms == timer.due_ms))
}

/// The change that fires `timer`: deletes its rows, then runs its handler;
/// nothing when it was cancelled or moved since it was read.
pub(super) fn firing(timer: Timer, handler: Handler) -> super::ChangeFn {
    Box::new(move |change| {
        if still_due(change, &timer)? {
            delete_rows(change, timer.due_ms, u128::from(timer.id.0));
            handler(change, &timer)?;
        }
        Ok(Box::new(()))
    })
}

/// The change that deletes `timer` after its handler failed (unless it was
/// cancelled or moved meanwhile).
pub(super) fn consuming(timer: Timer) -> super::ChangeFn {
    Box::new(move |change| {
        if still_due(change, &timer)? {
            delete_rows(change, timer.due_ms, u128::from(timer.id.0));
        }
        Ok(Box::new(()))
    })
}

/// The writer thread's view of the timers: when to wake next, and which due
/// timers to leave alone because their handler is missing.
pub(super) struct TimerQueue {
    registry: Arc<TimerRegistry>,
    /// No timer is due before this (unix ms); `None`: no pending timer is known.
    next_due: Option<u64>,
    /// Ids of due timers whose handler is not registered.
    parked: HashSet<u128>,
}

impl TimerQueue {
    /// A queue that reads the store at its first wake (timers may be due).
    pub(super) fn new(registry: Arc<TimerRegistry>) -> Self {
        Self {
            registry,
            next_due: Some(0),
            parked: HashSet::new(),
        }
    }

    /// How long the writer may sleep before a timer may be due (`None`: until
    /// a change arrives); always `None` before the timers are armed.
    pub(super) fn sleep_for(&self, now_ms: u64) -> Option<Duration> {
        if !self.registry.is_armed() {
            return None;
        }
        self.next_due
            .map(|due| Duration::from_millis(due.saturating_sub(now_ms)))
    }

    /// Notes the timers a durable group scheduled (keys of its writes).
    pub(super) fn note_committed(&mut self, group: &Writes) {
        let prefix = [TIMER, DUE];
        let earliest = group
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter(|(_, value)| value.is_some())
            .find_map(|(key, _)| parse_due_key(key))
            .map(|(due, _)| due);
        if let Some(due) = earliest {
            self.next_due = Some(self.next_due.map_or(due, |known| known.min(due)));
        }
    }

    /// Counts the timers of a durable group.
    pub(super) fn record(&self, tally: Tally) {
        let registry = &self.registry;
        registry.fired.fetch_add(tally.fired, Ordering::Relaxed);
        registry.failed.fetch_add(tally.failed, Ordering::Relaxed);
    }

    /// Makes the next wake read the store again (a group that may have
    /// fired or scheduled timers was undone).
    pub(super) fn reread_soon(&mut self) {
        self.next_due = Some(0);
    }

    /// The timers due at `now_ms` with their handlers, in firing order, at
    /// most `limit`; parks (and reports) due timers without a handler and
    /// notes when the next one is due.
    pub(super) fn take_due(
        &mut self,
        store: &Store,
        now_ms: u64,
        limit: usize,
    ) -> Vec<(Timer, Handler)> {
        if !self.registry.is_armed() || self.next_due.is_none_or(|due| due > now_ms) {
            return Vec::new();
        }
        match self.read_due(store, now_ms, limit) {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(error = %err, "reading the due timers failed; retrying shortly");
                self.next_due = Some(now_ms + RETRY_AFTER_READ_FAILURE.as_millis() as u64);
                Vec::new()
            }
        }
    }

    fn read_due(
        &mut self,
        store: &Store,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<(Timer, Handler)>, StoreError> {
        let page_size = self.parked.len() + limit + 1;
        let page = store.scan_blocking(&[TIMER, DUE], None, page_size)?;
        self.registry
            .scanned
            .fetch_add(page.len() as u64, Ordering::Relaxed);
        let mut due = Vec::new();
        // A full page of parked timers may hide due ones: read again at once.
        self.next_due = (page.len() == page_size).then_some(now_ms);
        for (key, value) in &page {
            let Some((due_ms, id)) = parse_due_key(key) else {
                continue;
            };
            if self.parked.contains(&id) {
                continue;
            }
            if due_ms > now_ms || due.len() == limit {
                self.next_due = Some(due_ms);
                break;
            }
            if let Some(ready) = self.ready(due_ms, id, value) {
                due.push(ready);
            }
        }
        self.registry
            .parked
            .store(self.parked.len(), Ordering::Relaxed);
        Ok(due)
    }

    /// The timer with its handler, or `None` after parking it (no handler,
    /// or a record this build cannot read).
    fn ready(&mut self, due_ms: u64, id: u128, value: &[u8]) -> Option<(Timer, Handler)> {
        let Some((handler_name, payload)) = decode(value) else {
            tracing::error!(timer = %Ulid(id), "a stored timer cannot be read; it is kept and not fired");
            self.parked.insert(id);
            return None;
        };
        let Some(handler) = self.registry.handler(&handler_name) else {
            tracing::warn!(
                timer = %Ulid(id),
                handler = %handler_name,
                due_ms,
                "a due timer's handler is not registered; the timer is kept and not fired"
            );
            self.parked.insert(id);
            return None;
        };
        let timer = Timer {
            id: TimerId(Ulid(id)),
            due_ms,
            handler: handler_name,
            payload,
        };
        Some((timer, handler))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::writer::{Footprint, Writer};
    use std::sync::Mutex;
    use std::time::Instant;

    /// What the test handler saw fire, in order: payloads, once durable.
    type Fired = Arc<Mutex<Vec<String>>>;

    /// A writer with a `test.record` handler (records the payload after its
    /// firing is durable and bumps a stored counter) and a `test.refuse`
    /// handler (writes, then fails), not yet armed.
    fn start(dir: &std::path::Path) -> (Writer, Store, Fired) {
        let store = Store::open(&dir.join("db"), 1 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        let fired = Fired::default();
        let seen = fired.clone();
        writer
            .timers()
            .register("test.record", move |change, timer| {
                let count = change
                    .get(b"fired-count")?
                    .map_or(0, |v| crate::core::store::decode_u64(&v));
                change.put(b"fired-count".to_vec(), (count + 1).to_be_bytes().to_vec());
                let (seen, name) = (
                    seen.clone(),
                    String::from_utf8_lossy(&timer.payload).into_owned(),
                );
                change.after_commit(move || seen.lock().unwrap().push(name));
                Ok(())
            })
            .unwrap();
        writer
            .timers()
            .register("test.refuse", |change, _| {
                change.put(b"refused-write".to_vec(), b"1".to_vec());
                Err(ApiError::validation("refused"))
            })
            .unwrap();
        (writer, store, fired)
    }

    fn now() -> u64 {
        crate::core::clock::unix_millis()
    }

    /// Schedules `(due, handler, payload)` timers in one change.
    async fn schedule(
        writer: &Writer,
        timers: &[(u64, &'static str, &'static str)],
    ) -> Vec<TimerId> {
        let timers = timers.to_vec();
        writer
            .commit(Footprint::SMALL, move |change| {
                timers
                    .iter()
                    .map(|(due, handler, payload)| {
                        change.schedule(*due, handler, payload.as_bytes())
                    })
                    .collect()
            })
            .await
            .unwrap()
            .value
    }

    /// Waits (up to 10 s) until `fired` holds `count` entries.
    async fn wait_fired(fired: &Fired, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while fired.lock().unwrap().len() < count {
            assert!(
                Instant::now() < deadline,
                "only {:?} fired",
                fired.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        fired.lock().unwrap().clone()
    }

    fn stored_timer_rows(store: &Store) -> usize {
        let mut rows = 0;
        store
            .for_each_blocking(&[TIMER], |_, _| {
                rows += 1;
                Ok(())
            })
            .unwrap();
        rows
    }

    fn fired_count(store: &Store) -> u64 {
        store
            .get_blocking(b"fired-count")
            .unwrap()
            .map_or(0, |v| crate::core::store::decode_u64(&v))
    }

    #[tokio::test]
    async fn timers_fire_once_each_in_due_order_late_ones_first() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        let t = now();
        schedule(
            &writer,
            &[(t - 10, "test.record", "c"), (t - 30, "test.record", "a")],
        )
        .await;
        schedule(&writer, &[(t - 20, "test.record", "b")]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            fired.lock().unwrap().is_empty(),
            "nothing fires before the timers are armed"
        );
        writer.arm_timers().await;
        schedule(&writer, &[(now() + 200, "test.record", "d")]).await;
        assert_eq!(wait_fired(&fired, 4).await, ["a", "b", "c", "d"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fired.lock().unwrap().len(), 4, "each fired once");
        assert_eq!(fired_count(&store), 4);
        assert_eq!(stored_timer_rows(&store), 0, "fired timers are deleted");
        assert_eq!(writer.timers().stats().fired, 4);
    }

    #[tokio::test]
    async fn a_cancelled_timer_never_fires_and_a_rescheduled_one_fires_at_its_new_time() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        writer.arm_timers().await;
        let ids = schedule(
            &writer,
            &[
                (now() + 400, "test.record", "cancelled"),
                (now() + 60_000, "test.record", "moved"),
            ],
        )
        .await;
        let (cancelled, moved) = (ids[0], ids[1]);
        let edit = move |change: &mut Change<'_>| {
            Ok((
                change.cancel(cancelled)?,
                change.cancel(cancelled)?,
                change.reschedule(moved, crate::core::clock::unix_millis() + 50)?,
            ))
        };
        let outcome = writer.commit(Footprint::SMALL, edit).await.unwrap().value;
        assert_eq!(
            outcome,
            (true, false, true),
            "cancel, cancel again, reschedule"
        );
        assert_eq!(wait_fired(&fired, 1).await, ["moved"]);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            *fired.lock().unwrap(),
            ["moved"],
            "the cancelled timer never fired"
        );
        assert_eq!(stored_timer_rows(&store), 0);
        let again = move |change: &mut Change<'_>| change.reschedule(moved, 0);
        assert!(
            !writer.commit(Footprint::SMALL, again).await.unwrap().value,
            "a fired timer cannot be rescheduled"
        );
    }

    #[tokio::test]
    async fn a_timer_cancelled_or_moved_by_an_earlier_timer_of_its_group_obeys_that() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        let target = |timer: &Timer| {
            let text = std::str::from_utf8(&timer.payload).unwrap_or_default();
            TimerId(Ulid::from_string(text).unwrap_or_default())
        };
        let timers = writer.timers();
        timers
            .register("test.cancel", move |change, timer| {
                change.cancel(target(timer)).map(drop)
            })
            .unwrap();
        timers
            .register("test.move", move |change, timer| {
                let later = crate::core::clock::unix_millis() + 300;
                change.reschedule(target(timer), later).map(drop)
            })
            .unwrap();
        let t = now();
        let ids = schedule(
            &writer,
            &[
                (t - 10, "test.record", "cancelled"),
                (t - 10, "test.record", "moved"),
            ],
        )
        .await;
        let (cancelled, moved) = (ids[0].0.to_string(), ids[1].0.to_string());
        let commanders = move |change: &mut Change<'_>| {
            change.schedule(t - 30, "test.cancel", cancelled.as_bytes())?;
            change.schedule(t - 20, "test.move", moved.as_bytes())?;
            Ok(())
        };
        writer.commit(Footprint::SMALL, commanders).await.unwrap();
        writer.arm_timers().await;
        assert_eq!(wait_fired(&fired, 1).await, ["moved"]);
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(
            *fired.lock().unwrap(),
            ["moved"],
            "the cancelled timer never fired; the moved one fired once, later"
        );
        assert_eq!(stored_timer_rows(&store), 0);
    }

    #[tokio::test]
    async fn a_timer_whose_group_failed_to_flush_fires_again_after_recovery_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        writer.arm_timers().await;
        writer.faults().fail_flushes(1);
        schedule_without_flush_failure(&writer).await;
        assert_eq!(wait_fired(&fired, 1).await, ["once"]);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(*fired.lock().unwrap(), ["once"]);
        assert_eq!(
            fired_count(&store),
            1,
            "the failed firing was undone, the retry committed"
        );
        assert_eq!(writer.timers().stats().fired, 1);
        assert_eq!(stored_timer_rows(&store), 0);
    }

    /// Schedules `once` due in 200 ms, retrying while the armed flush
    /// failure hits the scheduling change itself (so it hits the firing).
    async fn schedule_without_flush_failure(writer: &Writer) {
        writer.faults().fail_flushes(0);
        schedule(writer, &[(now() + 200, "test.record", "once")]).await;
        writer.faults().fail_flushes(1);
    }

    #[tokio::test]
    async fn a_failing_handler_leaves_no_write_and_its_timer_is_deleted_once() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        writer.arm_timers().await;
        schedule(
            &writer,
            &[
                (now(), "test.refuse", ""),
                (now() + 50, "test.record", "after"),
            ],
        )
        .await;
        assert_eq!(wait_fired(&fired, 1).await, ["after"]);
        assert_eq!(store.get_blocking(b"refused-write").unwrap(), None);
        assert_eq!(stored_timer_rows(&store), 0);
        assert_eq!(writer.timers().stats().failed, 1);
    }

    #[tokio::test]
    async fn a_timer_without_a_handler_is_kept_unfired_and_does_not_block_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        writer.arm_timers().await;
        schedule(
            &writer,
            &[
                (now() - 5, "test.gone", ""),
                (now() + 50, "test.record", "later"),
            ],
        )
        .await;
        assert_eq!(wait_fired(&fired, 1).await, ["later"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            stored_timer_rows(&store),
            2,
            "its row and its index entry are kept"
        );
        assert_eq!(writer.timers().stats().parked, 1);
        assert!(
            writer
                .timers()
                .register("test.late", |_, _| Ok(()))
                .is_err(),
            "registration closes when armed"
        );
    }

    #[tokio::test]
    async fn many_due_timers_do_not_starve_a_queued_change() {
        const DUE: usize = 600;
        let dir = tempfile::tempdir().unwrap();
        let (writer, _store, fired) = start(dir.path());
        let due = now() - 1;
        let schedule_many = move |change: &mut Change<'_>| {
            for _ in 0..DUE {
                change.schedule(due, "test.record", b"timer")?;
            }
            Ok(())
        };
        writer
            .commit(Footprint::SMALL, schedule_many)
            .await
            .unwrap();
        writer.arm_timers().await;
        let seen = fired.clone();
        let client = move |change: &mut Change<'_>| {
            change.after_commit(move || seen.lock().unwrap().push("client".into()));
            Ok(())
        };
        writer.commit(Footprint::SMALL, client).await.unwrap();
        let order = wait_fired(&fired, DUE + 1).await;
        let position = order.iter().position(|name| name == "client").unwrap();
        assert!(
            position < DUE / 2,
            "the change committed after {position} of {DUE} due timers"
        );
    }

    #[tokio::test]
    async fn a_hundred_thousand_pending_timers_cost_a_wake_only_what_is_due() {
        const PENDING: usize = 100_000;
        const PER_CHANGE: usize = 5_000;
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, fired) = start(dir.path());
        writer.arm_timers().await;
        let later = now() + 3_600_000;
        for _ in 0..PENDING / PER_CHANGE {
            let schedule_many = move |change: &mut Change<'_>| {
                for n in 0..PER_CHANGE {
                    change.schedule(later + n as u64, "test.record", b"later")?;
                }
                Ok(())
            };
            writer
                .commit(Footprint::SMALL, schedule_many)
                .await
                .unwrap();
        }
        let scanned_before = writer.timers().stats().scanned;
        schedule(
            &writer,
            &[
                (now(), "test.record", "1"),
                (now() + 100, "test.record", "2"),
                (now() + 200, "test.record", "3"),
            ],
        )
        .await;
        assert_eq!(wait_fired(&fired, 3).await, ["1", "2", "3"]);
        let stats = writer.timers().stats();
        let scanned = stats.scanned - scanned_before;
        // Each wake reads at most one page (a group plus one row).
        assert!(
            scanned < 100,
            "the wakes read {scanned} timer rows, not the {PENDING} pending ones"
        );
        assert_eq!(stats.parked, 0, "nothing pending is held in memory");
        assert_eq!(
            stored_timer_rows(&store),
            2 * PENDING,
            "every pending timer stays stored"
        );
    }

    #[test]
    fn due_keys_order_by_time_then_id_and_round_trip() {
        let early = due_key(5, u128::MAX);
        let late = due_key(6, 0);
        assert!(early < late);
        assert_eq!(parse_due_key(&late), Some((6, 0)));
        assert!(!index_key(1).starts_with(&[TIMER, DUE]));
        assert_eq!(
            decode(&encode("live.quiz-close", b"q1")),
            Some(("live.quiz-close".into(), b"q1".to_vec()))
        );
    }

    #[tokio::test]
    async fn a_payload_over_the_limit_is_refused_and_nothing_is_scheduled() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, _) = start(dir.path());
        let oversized = move |change: &mut Change<'_>| {
            change.schedule(0, "test.record", &vec![0; MAX_PAYLOAD + 1])
        };
        assert!(writer.commit(Footprint::SMALL, oversized).await.is_err());
        assert_eq!(stored_timer_rows(&store), 0);
    }

    #[test]
    fn handler_names_are_checked() {
        assert!(validate_handler_name("live.quiz-close").is_ok());
        assert!(validate_handler_name("").is_err());
        assert!(validate_handler_name("Upper").is_err());
        assert!(validate_handler_name(&"a".repeat(65)).is_err());
    }
}
