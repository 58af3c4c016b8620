//! One subscriber's position on one topic: replay from the log, then live
//! from the ring, back to the log when it falls behind.
//!
//! Invariants: events are delivered in id order, each once (ring events at
//! or below the last delivered id are skipped; a page continues exactly
//! after the previous one); switching to live happens only when the ring
//! still holds every event after the last page (from the page's mark);
//! `next` is cancel-safe: the position moves only when a batch is returned.

use super::replay::SharedPage;
use super::steps::Step;
use super::{Batch, Channel, Feed, Hub};
use crate::core::log::LogEvent;
use crate::core::log::read::Cursor;
use crate::core::store::StoreError;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Notify;
use ulid::Ulid;

enum Mode {
    /// The next page of the log starts after the last delivered event
    /// ([`Subscription::cursor`]).
    Repair,
    /// Delivering a page read from the log, from `offset` on.
    Replaying {
        page: Arc<SharedPage>,
        offset: usize,
    },
    /// Reading the ring from `next_seq`.
    Live,
}

/// One subscriber's position on one topic. Dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    channel: Arc<Channel>,
    /// Rung on every publish to the topic (see [`Feed::attach_bell`]).
    bell: Option<Arc<Notify>>,
    next_seq: u64,
    /// The last delivered id, as bytes: a `Ulid` is 16-byte aligned, and
    /// its padding would grow every idle subscription by 16 bytes.
    last_id: Option<[u8; 16]>,
    mode: Mode,
}

impl Subscription {
    pub(super) fn new(
        hub: Arc<Hub>,
        channel: Arc<Channel>,
        next_seq: u64,
        position: Ulid,
        replay: bool,
    ) -> Self {
        let mode = if replay { Mode::Repair } else { Mode::Live };
        Self {
            hub,
            channel,
            bell: None,
            next_seq,
            last_id: Some(position.to_bytes()),
            mode,
        }
    }

    /// [`Feed::next`]: replays pages, then reads the ring, then waits.
    async fn next_batch(&mut self, max: usize) -> Result<Batch, StoreError> {
        let max = max.max(1);
        loop {
            match &self.mode {
                Mode::Repair => {
                    let cursor = self.cursor();
                    let page = self.hub.shared_page(&self.channel, cursor).await?;
                    // A read for another cursor that turned out not to serve
                    // this one: the next lookup passes it over.
                    if let Some(offset) = page.offset_for(cursor) {
                        self.mode = Mode::Replaying { page, offset };
                    }
                }
                Mode::Replaying { .. } => {
                    let delivery = self.take_from_page(max);
                    if delivery.gap.is_some() || !delivery.events.is_empty() {
                        return Ok(delivery);
                    }
                }
                Mode::Live => {
                    let channel = self.channel.clone();
                    let notified = channel.notify.notified();
                    let mut notified = std::pin::pin!(notified);
                    notified.as_mut().enable();
                    let events = self.take_from_ring(max);
                    if !events.is_empty() {
                        return Ok(Batch {
                            events,
                            ..Batch::default()
                        });
                    }
                    if matches!(self.mode, Mode::Live) {
                        self.hub.steps.reached(Step::LiveIdle);
                        notified.await;
                    }
                }
            }
        }
    }

    /// The last delivered id.
    fn last(&self) -> Option<Ulid> {
        self.last_id.map(Ulid::from_bytes)
    }

    /// Where the log must be read from to continue after the last delivery.
    fn cursor(&self) -> Cursor {
        self.last().map_or(Cursor::Start, Cursor::After)
    }

    /// Takes what is ready in the ring; switches to repair when the ring moved past us.
    fn take_from_ring(&mut self, max: usize) -> Vec<Arc<LogEvent>> {
        let ring = self.channel.lock();
        if self.next_seq < ring.first_seq() {
            drop(ring);
            self.mode = Mode::Repair;
            return Vec::new();
        }
        let mut events = Vec::new();
        for event in ring.since(self.next_seq) {
            if events.len() == max {
                break;
            }
            self.next_seq += 1;
            if self.last().is_some_and(|last| event.id() <= last) {
                continue;
            }
            self.last_id = Some(event.id().to_bytes());
            events.push(event.clone());
        }
        events
    }

    /// Takes up to `max` events of the current page; at its end, goes live
    /// when the ring covers the rest, else on to the next page.
    fn take_from_page(&mut self, max: usize) -> Batch {
        let Mode::Replaying { page, offset } = &mut self.mode else {
            return Batch::default();
        };
        let shared = page.clone();
        let start = *offset;
        let end = (start + max).min(shared.page.events.len());
        *offset = end;
        // Only the page's own cursor can have a gap (see `offset_for`).
        let gap = if start == 0 { shared.page.gap } else { None };
        let events = shared.page.events[start..end].to_vec();
        if let Some(last) = events.last() {
            self.last_id = Some(last.id().to_bytes());
        } else if gap.is_some() {
            // Nothing kept at all: continue from the beginning of what will come.
            self.last_id = None;
        }
        if end == shared.page.events.len() {
            self.hub.steps.reached(Step::PageEnded);
            self.finish_page(&shared);
        }
        Batch {
            gap,
            events,
            ..Batch::default()
        }
    }

    fn finish_page(&mut self, shared: &SharedPage) {
        if !shared.page.more && self.channel.lock().first_seq() <= shared.mark {
            self.next_seq = shared.mark;
            self.mode = Mode::Live;
        } else {
            self.mode = Mode::Repair;
        }
    }
}

impl Feed for Subscription {
    fn last_id(&self) -> Option<Ulid> {
        self.last()
    }

    fn next(&mut self, max: usize) -> impl Future<Output = Result<Batch, StoreError>> + Send {
        self.next_batch(max)
    }

    /// Nothing while replaying or repairing: only the ring is ready at once.
    fn take_ready(&mut self, max: usize) -> Vec<Arc<LogEvent>> {
        match self.mode {
            Mode::Live => self.take_from_ring(max),
            Mode::Repair | Mode::Replaying { .. } => Vec::new(),
        }
    }

    fn is_live(&self) -> bool {
        matches!(self.mode, Mode::Live)
    }

    fn attach_bell(&mut self, bell: Arc<Notify>) {
        if let Some(old) = self.bell.take() {
            self.channel.detach_bell(&old);
        }
        self.channel.attach_bell(bell.clone());
        self.bell = Some(bell);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(bell) = self.bell.take() {
            self.channel.detach_bell(&bell);
        }
        self.hub.unregister(&self.channel);
    }
}

#[cfg(test)]
mod tests {
    /// Every open stream holds one per topic it follows: its size is part of
    /// the idle cost of a membership (no 16-byte-aligned field, no padding).
    #[test]
    fn an_idle_subscription_stays_small() {
        assert!(std::mem::size_of::<super::Subscription>() <= 80);
    }
}
