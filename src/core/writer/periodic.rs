//! Periodic commits: a module counts high-rate increments (hearts, votes,
//! views) in memory ([`Counters`]) and the writer folds them into the store
//! with one change per period, without a request driving it.
//!
//! Every period a task takes everything counted so far (an atomic swap) and
//! commits one change running the module's fold function on it (e.g. adding
//! the counts to stored totals and appending one event). The change goes
//! through the writer's queue like any other, so it shares the group commit,
//! the queue bounds and the failure semantics of client changes.
//!
//! Invariants:
//! * nothing is committed for a period in which nothing was counted;
//! * every increment is in exactly one place: the live counters, or the
//!   taken counts of one fold in flight; an increment racing with a fold
//!   lands in the live counters and goes into the next fold, so none is lost
//!   or counted twice;
//! * a fold whose commit fails (queue full, store failed or recovering, the
//!   fold function's own error) puts its taken counts back into the live
//!   counters: every such failure means nothing was written (a group that
//!   failed to become durable is undone before the store takes writes again),
//!   and the counts go into a later fold; a process that dies loses what was
//!   counted since the last durable fold (at most one period plus a commit);
//! * [`super::Writer::fold_pending`] folds every registration at once (the
//!   server calls it while stopping, so a clean shutdown loses nothing);
//! * a registration lasts as long as the process: the writer keeps the
//!   counters, so increments made while the server stops still reach the
//!   final fold.

use super::{Change, Footprint, Writer};
use crate::error::ApiError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The period used when a module has no reason to choose another.
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub const DEFAULT_PERIOD: Duration = Duration::from_millis(250);

/// Counts taken for one fold, by the module's own keys.
pub type Counts = BTreeMap<String, u64>;

/// What a fold does with the counts of one period, as a change.
pub type Fold = Arc<dyn Fn(&mut Change<'_>, &Counts) -> Result<(), ApiError> + Send + Sync>;

/// In-memory counters folded into the store once per period; cheap to bump
/// from any task.
#[derive(Debug, Default)]
pub struct Counters {
    live: Mutex<Counts>,
}

impl Counters {
    /// Adds `amount` to the counter `key` (saturating).
    pub fn add(&self, key: &str, amount: u64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get_mut(key) {
            Some(count) => *count = count.saturating_add(amount),
            None => {
                live.insert(key.to_string(), amount);
            }
        }
    }

    /// Takes everything counted so far; `None` when nothing was.
    fn take(&self) -> Option<Counts> {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        (!live.is_empty()).then(|| std::mem::take(&mut *live))
    }

    /// Returns counts taken by a fold that did not commit.
    fn put_back(&self, taken: Counts) {
        for (key, amount) in taken {
            self.add(&key, amount);
        }
    }
}

/// One module's counters and fold.
pub(super) struct Registration {
    name: String,
    counters: Arc<Counters>,
    fold: Fold,
}

impl Registration {
    /// Folds what was counted since the last fold into one change.
    pub(super) async fn fold_once(&self, writer: &Writer) {
        let Some(taken) = self.counters.take() else {
            return;
        };
        let taken = Arc::new(taken);
        let held: usize = taken.keys().map(|key| key.len() + 8).sum();
        let (input, fold) = (taken.clone(), self.fold.clone());
        let committed = writer
            .commit(Footprint::data(held), move |change| fold(change, &input))
            .await;
        if let Err(err) = committed {
            tracing::warn!(periodic = %self.name, error = %err, "a periodic fold did not commit; its counts go into the next one");
            self.counters.put_back(Arc::unwrap_or_clone(taken));
        }
    }
}

impl Writer {
    /// Registers counters folded by `fold` every `period` (see the module
    /// doc); returns the counters the module bumps. Must be called inside
    /// the Tokio runtime (the folding task is spawned on it).
    pub fn fold_periodically(
        &self,
        name: &str,
        period: Duration,
        fold: impl Fn(&mut Change<'_>, &Counts) -> Result<(), ApiError> + Send + Sync + 'static,
    ) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        let registration = Arc::new(Registration {
            name: name.to_string(),
            counters: counters.clone(),
            fold: Arc::new(fold),
        });
        self.periodic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(registration.clone());
        tokio::spawn(fold_every(period, registration, self.clone()));
        counters
    }

    /// Folds every registration's counts now (used while stopping).
    pub async fn fold_pending(&self) {
        let registrations: Vec<Arc<Registration>> = self
            .periodic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for registration in registrations {
            registration.fold_once(self).await;
        }
    }
}

async fn fold_every(period: Duration, registration: Arc<Registration>, writer: Writer) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        registration.fold_once(&writer).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::store::{Store, decode_u64};
    use std::time::Instant;

    const TOTAL: &[u8] = b"periodic-total";
    const FOLDS: &[u8] = b"periodic-folds";

    fn read(store: &Store, key: &[u8]) -> u64 {
        store
            .get_blocking(key)
            .unwrap()
            .map_or(0, |v| decode_u64(&v))
    }

    /// Counters folded every 10 ms into a stored total and a fold count.
    fn start(dir: &std::path::Path) -> (Writer, Store, Arc<Counters>) {
        let store = Store::open(&dir.join("db"), 1 << 20).unwrap();
        let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
        let counters =
            writer.fold_periodically("test", Duration::from_millis(10), |change, counts| {
                for (key, bump) in [(TOTAL, counts["hits"]), (FOLDS, 1)] {
                    let stored = change.get(key)?.map_or(0, |v| decode_u64(&v));
                    change.put(key.to_vec(), (stored + bump).to_be_bytes().to_vec());
                }
                Ok(())
            });
        (writer, store, counters)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_increments_are_folded_once_each_even_across_a_failed_flush() {
        const TASKS: u64 = 4;
        const EACH: u64 = 5_000;
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, counters) = start(dir.path());
        let bumpers: Vec<_> = (0..TASKS)
            .map(|_| {
                let counters = counters.clone();
                tokio::spawn(async move {
                    for n in 0..EACH {
                        counters.add("hits", 1);
                        if n % 100 == 0 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                })
            })
            .collect();
        // One fold is durable before the flush fails (however loaded the machine).
        let deadline = Instant::now() + Duration::from_secs(10);
        while read(&store, FOLDS) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        writer.faults().fail_flushes(1);
        for bumper in bumpers {
            bumper.await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while read(&store, TOTAL) < TASKS * EACH && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            read(&store, TOTAL),
            TASKS * EACH,
            "no increment lost or counted twice"
        );
        let folds = read(&store, FOLDS);
        assert!(
            (2..TASKS * EACH).contains(&folds),
            "{folds} folds aggregated the increments"
        );
    }

    #[tokio::test]
    async fn nothing_is_committed_while_nothing_is_counted_and_pending_counts_fold_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, store, counters) = start(dir.path());
        let commits = writer.status().commits;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            writer.status().commits,
            commits,
            "idle periods commit nothing"
        );
        counters.add("hits", 3);
        writer.fold_pending().await;
        assert_eq!(read(&store, TOTAL), 3);
    }

    #[test]
    fn taken_counts_leave_the_live_counters_and_come_back_on_failure() {
        let counters = Counters::default();
        assert_eq!(counters.take(), None, "nothing counted");
        counters.add("hearts", 2);
        counters.add("hearts", 3);
        let taken = counters.take().unwrap();
        assert_eq!(taken["hearts"], 5);
        counters.add("hearts", 1);
        counters.put_back(taken);
        assert_eq!(counters.take().unwrap()["hearts"], 6);
        assert_eq!(counters.take(), None);
    }
}
