//! Replay reads shared between the subscribers of a topic.
//!
//! A subscriber that resumes (or repairs after falling out of the ring)
//! reads the log one page at a time. When thousands resume from the same
//! place at once (a reconnect storm), they share one read: each channel
//! keeps a few recent pages keyed by cursor ([`PageCache`]); the first
//! subscriber to ask reads, the others wait for that read (single flight)
//! or take its result while it is fresh. All log reads of the hub go through
//! [`Readers`], a fixed number of permits, so a storm cannot flood the
//! blocking pool.
//!
//! Invariants: a [`SharedPage`] is a consistent snapshot: `mark` is the
//! ring position captured before the durable mark the page was read up to,
//! so every event after the page's last one is in the ring from `mark` on;
//! a page is reused only while the ring still holds everything from `mark`
//! and for at most [`PAGE_TTL`]; a read holds its permit until the blocking
//! read returns, even when the subscriber waiting for it went away.

use crate::log::read::{self, Cursor, Page, PageLimit};
use crate::log::{DurableMark, TopicRef};
use crate::store::{Store, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// How much one replay page holds.
pub(super) const REPLAY_PAGE: PageLimit = PageLimit {
    events: 512,
    bytes: 1 << 20,
};
/// How long a page read for one subscriber may serve others.
pub(super) const PAGE_TTL: Duration = Duration::from_secs(2);
/// Pages a channel keeps for sharing.
const PAGES_PER_CHANNEL: usize = 8;

/// A page of the log as read for one or more subscribers.
#[derive(Debug)]
pub(super) struct SharedPage {
    /// The events, any gap, and whether more follow.
    pub(super) page: Page,
    /// Ring position captured before the page's durable mark was read.
    pub(super) mark: u64,
}

type Slot = Arc<OnceCell<Arc<SharedPage>>>;

struct Entry {
    cursor: Cursor,
    created: Instant,
    slot: Slot,
}

/// A channel's recent pages, keyed by cursor.
#[derive(Default)]
pub(super) struct PageCache {
    entries: VecDeque<Entry>,
}

impl PageCache {
    /// The slot for `cursor`: a fresh page or read in flight, else a new
    /// empty one. `first_seq` is the ring's oldest position now.
    pub(super) fn slot(&mut self, cursor: Cursor, first_seq: u64) -> Slot {
        self.entries.retain(|entry| {
            entry.created.elapsed() < PAGE_TTL
                && entry
                    .slot
                    .get()
                    .is_none_or(|shared| shared.mark >= first_seq)
        });
        if let Some(entry) = self.entries.iter().find(|entry| entry.cursor == cursor) {
            return entry.slot.clone();
        }
        if self.entries.len() == PAGES_PER_CHANNEL {
            self.entries.pop_front();
        }
        let slot = Slot::default();
        self.entries.push_back(Entry {
            cursor,
            created: Instant::now(),
            slot: slot.clone(),
        });
        slot
    }
}

/// The hub's log reads: a bounded number at a time, counted.
pub(super) struct Readers {
    store: Store,
    durable: Arc<DurableMark>,
    permits: Arc<Semaphore>,
    reads: AtomicU64,
}

impl Readers {
    /// At most `concurrency` reads of `store` at a time, up to `durable`.
    pub(super) fn new(store: Store, durable: Arc<DurableMark>, concurrency: usize) -> Self {
        Self {
            store,
            durable,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            reads: AtomicU64::new(0),
        }
    }

    /// The newest durable id.
    pub(super) fn durable(&self) -> ulid::Ulid {
        self.durable.get()
    }

    /// The store read from.
    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    /// Log reads made so far.
    pub(super) fn count(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Reads one page after `cursor`; `before_durable` runs once the read may
    /// start, right before the durable mark is taken (it returns the ring mark).
    pub(super) async fn read(
        &self,
        topic: &TopicRef,
        cursor: Cursor,
        limit: PageLimit,
        before_durable: impl FnOnce() -> u64,
    ) -> Result<SharedPage, StoreError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError("the hub's readers are closed".into()))?;
        let mark = before_durable();
        let durable = self.durable.get();
        let topic = topic.clone();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let page = self
            .store
            .run(move |store| {
                let _permit = permit;
                read::read_page(store, &topic, cursor, limit, durable)
            })
            .await?;
        Ok(SharedPage { page, mark })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(mark: u64) -> Slot {
        let slot = Slot::default();
        slot.set(Arc::new(SharedPage {
            page: Page::default(),
            mark,
        }))
        .unwrap();
        slot
    }

    #[test]
    fn a_cursor_shares_its_slot_until_the_ring_moves_past_the_page() {
        let mut cache = PageCache::default();
        let cursor = Cursor::After(ulid::Ulid::from_parts(1, 1));
        let first = cache.slot(cursor, 0);
        first
            .set(filled(5).get().unwrap().clone())
            .expect("empty slot");
        assert!(Arc::ptr_eq(&first, &cache.slot(cursor, 5)));
        let other = cache.slot(Cursor::Start, 5);
        assert!(!Arc::ptr_eq(&first, &other));
        let after_move = cache.slot(cursor, 6);
        assert!(
            !Arc::ptr_eq(&first, &after_move),
            "a page the ring no longer covers is read again"
        );
    }

    #[test]
    fn the_cache_keeps_a_few_pages() {
        let mut cache = PageCache::default();
        for n in 0..20 {
            cache.slot(Cursor::After(ulid::Ulid::from_parts(n, 0)), 0);
        }
        assert_eq!(cache.entries.len(), PAGES_PER_CHANNEL);
    }
}
