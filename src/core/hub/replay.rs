//! Replay reads shared between the subscribers of a topic.
//!
//! A subscriber that resumes (or repairs after falling out of the ring)
//! reads the log one page at a time. When thousands resume from about the
//! same place at once (a reconnect storm), they share reads: each channel
//! keeps a few recent pages ([`PageCache`]); the first subscriber to ask
//! reads, the others wait for that read (single flight) or take its result
//! while it is fresh. A page read after cursor `A` also serves a cursor `B`
//! after `A` that it covers (it delivers the events after `B`), so
//! subscribers a few events apart share one read too. All log reads of the hub go through
//! [`Readers`], a fixed number of permits, so a storm cannot flood the
//! blocking pool.
//!
//! Invariants: a [`SharedPage`] is a consistent snapshot: `mark` is the
//! ring position captured before the durable mark the page was read up to,
//! so every event after the page's last one is in the ring from `mark` on;
//! a page is reused only while the ring still holds everything from `mark`
//! and for at most [`PAGE_TTL`], and a channel holds it no longer than
//! about twice that (the hub's sweep); it serves another cursor only when it
//! reported no gap, that cursor is not after the durable mark, and the page
//! holds everything after it up to its end; a read holds its permit until
//! the blocking read returns, even when the subscriber waiting for it went away.

use super::steps::{Step, Steps};
use crate::core::log::read::{self, Cursor, Page, PageLimit};
use crate::core::log::{DurableMark, TopicRef};
use crate::core::store::{Store, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};
use ulid::Ulid;

/// How much one replay page holds.
pub(super) const REPLAY_PAGE: PageLimit = PageLimit {
    events: 512,
    bytes: 1 << 20,
};
/// How long a page read for one subscriber may serve others (and how often
/// [`super::Hub::expire_pages`] drops older ones).
pub const PAGE_TTL: Duration = Duration::from_secs(2);
/// Pages a channel keeps for sharing.
const PAGES_PER_CHANNEL: usize = 16;

/// A page of the log as read for one or more subscribers.
#[derive(Debug)]
pub(super) struct SharedPage {
    /// The cursor it was read after.
    pub(super) cursor: Cursor,
    /// The events, any gap, and whether more follow.
    pub(super) page: Page,
    /// Ring position captured before the page's durable mark was read.
    pub(super) mark: u64,
}

impl SharedPage {
    /// Where a subscriber at `cursor` starts in this page, or `None` when the
    /// page cannot serve it (then it needs a read of its own).
    pub(super) fn offset_for(&self, cursor: Cursor) -> Option<usize> {
        if cursor == self.cursor {
            return Some(0);
        }
        let (Cursor::After(read_after), Cursor::After(wanted)) = (self.cursor, cursor) else {
            return None;
        };
        let covers = !self.page.more
            || self
                .page
                .events
                .last()
                .is_some_and(|last| wanted < last.id());
        (self.page.gap.is_none() && read_after <= wanted && covers).then(|| {
            self.page
                .events
                .partition_point(|event| event.id() <= wanted)
        })
    }
}

type Slot = Arc<OnceCell<Arc<SharedPage>>>;

struct Entry {
    cursor: Cursor,
    created: Instant,
    slot: Slot,
}

impl Entry {
    fn is_fresh(&self) -> bool {
        self.created.elapsed() < PAGE_TTL
    }
}

/// A channel's recent pages, keyed by cursor.
#[derive(Default)]
pub(super) struct PageCache {
    entries: VecDeque<Entry>,
}

impl PageCache {
    /// The slot to serve `cursor` from: a fresh page that serves it, else a
    /// read in flight that may (after the nearest cursor at or before it),
    /// else a new empty one. `first_seq` is the ring's oldest position now,
    /// `durable` the durable mark.
    pub(super) fn slot(&mut self, cursor: Cursor, first_seq: u64, durable: Ulid) -> Slot {
        self.entries.retain(|entry| {
            entry.is_fresh()
                && entry
                    .slot
                    .get()
                    .is_none_or(|shared| shared.mark >= first_seq)
        });
        if let Some(slot) = self.serving(cursor, durable) {
            return slot;
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

    /// Drops the pages older than [`PAGE_TTL`] (subscribers replaying one
    /// keep it alive), so an idle topic holds no pages.
    pub(super) fn expire(&mut self) {
        self.entries.retain(Entry::is_fresh);
    }

    /// Pages kept (read or being read).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    fn serving(&self, cursor: Cursor, durable: Ulid) -> Option<Slot> {
        if let Some(exact) = self.entries.iter().find(|entry| entry.cursor == cursor) {
            return Some(exact.slot.clone());
        }
        let Cursor::After(wanted) = cursor else {
            return None;
        };
        if wanted > durable {
            return None;
        }
        let earlier = |entry: &&Entry| matches!(entry.cursor, Cursor::After(id) if id <= wanted);
        let nearest = |entries: Vec<&Entry>| {
            entries
                .into_iter()
                .max_by_key(|entry| entry.cursor)
                .map(|entry| entry.slot.clone())
        };
        let (done, in_flight): (Vec<&Entry>, Vec<&Entry>) = self
            .entries
            .iter()
            .filter(earlier)
            .partition(|entry| entry.slot.initialized());
        let serves = |entry: &&Entry| {
            entry
                .slot
                .get()
                .is_some_and(|shared| shared.offset_for(cursor).is_some())
        };
        nearest(done.into_iter().filter(serves).collect()).or_else(|| nearest(in_flight))
    }
}

/// The hub's log reads: a bounded number at a time, counted.
pub(super) struct Readers {
    store: Store,
    durable: Arc<DurableMark>,
    permits: Arc<Semaphore>,
    reads: AtomicU64,
    steps: Steps,
}

impl Readers {
    /// At most `concurrency` reads of `store` at a time, up to `durable`.
    pub(super) fn new(
        store: Store,
        durable: Arc<DurableMark>,
        concurrency: usize,
        steps: Steps,
    ) -> Self {
        Self {
            store,
            durable,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            reads: AtomicU64::new(0),
            steps,
        }
    }

    /// The newest durable id.
    pub(super) fn durable(&self) -> Ulid {
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
            .map_err(|_| StoreError::new("the hub's readers are closed"))?;
        let mark = before_durable();
        let durable = self.durable.get();
        self.steps.reached(Step::PageBounded);
        let topic = topic.clone();
        self.reads.fetch_add(1, Ordering::Relaxed);
        let page = self
            .store
            .run(move |store| {
                let _permit = permit;
                read::read_page(store, &topic, cursor, limit, durable)
            })
            .await?;
        Ok(SharedPage { cursor, page, mark })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::log::read::Gap;
    use crate::core::log::{Event, LogEvent};

    fn id(n: u64) -> Ulid {
        Ulid::from_parts(n, 0)
    }

    fn page(cursor: Cursor, ids: &[u64], more: bool, mark: u64) -> Arc<SharedPage> {
        let events = ids
            .iter()
            .map(|&n| {
                let event = Event {
                    id: id(n),
                    topic: "t".into(),
                    event_type: "e".into(),
                    occurred_at: String::new(),
                    actor: serde_json::Value::Null,
                    data: serde_json::Value::Null,
                };
                Arc::new(LogEvent::new(uuid::Uuid::nil(), event, Default::default()))
            })
            .collect();
        Arc::new(SharedPage {
            cursor,
            page: Page {
                events,
                gap: None,
                more,
            },
            mark,
        })
    }

    #[test]
    fn a_page_serves_later_cursors_it_covers_and_no_earlier_ones() {
        let last = page(Cursor::After(id(10)), &[11, 12, 13], false, 0);
        assert_eq!(last.offset_for(Cursor::After(id(10))), Some(0));
        assert_eq!(last.offset_for(Cursor::After(id(12))), Some(2));
        assert_eq!(
            last.offset_for(Cursor::After(id(20))),
            Some(3),
            "beyond the last page: nothing from it, then live"
        );
        assert_eq!(last.offset_for(Cursor::After(id(9))), None);
        assert_eq!(last.offset_for(Cursor::Start), None);
        let full = page(Cursor::After(id(10)), &[11, 12, 13], true, 0);
        assert_eq!(full.offset_for(Cursor::After(id(12))), Some(2));
        assert_eq!(
            full.offset_for(Cursor::After(id(13))),
            None,
            "what follows a full page is not in it"
        );
        let mut gap = page(Cursor::After(id(10)), &[11], false, 0);
        Arc::get_mut(&mut gap).unwrap().page.gap = Some(Gap {
            reason: crate::core::log::read::GapReason::Expired,
            oldest_id: Some(id(11)),
        });
        assert_eq!(gap.offset_for(Cursor::After(id(10))), Some(0));
        assert_eq!(
            gap.offset_for(Cursor::After(id(10).increment().unwrap())),
            None
        );
    }

    #[test]
    fn a_cursor_shares_a_slot_until_the_ring_moves_past_the_page() {
        let mut cache = PageCache::default();
        let durable = id(100);
        let first = cache.slot(Cursor::After(id(10)), 0, durable);
        first
            .set(page(Cursor::After(id(10)), &[11, 12], false, 5))
            .expect("empty slot");
        assert!(Arc::ptr_eq(
            &first,
            &cache.slot(Cursor::After(id(10)), 5, durable)
        ));
        assert!(
            Arc::ptr_eq(&first, &cache.slot(Cursor::After(id(11)), 5, durable)),
            "a later cursor the page covers"
        );
        assert!(!Arc::ptr_eq(
            &first,
            &cache.slot(Cursor::After(id(9)), 5, durable)
        ));
        assert!(
            !Arc::ptr_eq(&first, &cache.slot(Cursor::After(id(101)), 5, durable)),
            "a cursor after the durable mark reads (and gets its gap)"
        );
        assert!(
            !Arc::ptr_eq(&first, &cache.slot(Cursor::After(id(10)), 6, durable)),
            "a page the ring no longer covers is read again"
        );
    }

    #[test]
    fn a_later_cursor_waits_for_the_nearest_read_in_flight() {
        let mut cache = PageCache::default();
        let durable = id(100);
        let early = cache.slot(Cursor::After(id(5)), 0, durable);
        let near = cache.slot(Cursor::After(id(8)), 0, durable);
        assert!(Arc::ptr_eq(
            &near,
            &cache.slot(Cursor::After(id(9)), 0, durable)
        ));
        assert!(Arc::ptr_eq(
            &early,
            &cache.slot(Cursor::After(id(6)), 0, durable)
        ));
    }

    #[test]
    fn the_cache_keeps_a_few_pages() {
        let mut cache = PageCache::default();
        for n in 0..40 {
            cache.slot(Cursor::After(id(40 - n)), 0, id(100));
        }
        assert_eq!(cache.entries.len(), PAGES_PER_CHANNEL);
    }
}
