//! One user's chat events in commit order: the user's own topic (membership
//! changes) and the topic of every room the user is a member of, merged.
//!
//! The feed steers itself: membership changes come through it at their
//! exact position in the order, so a room is followed from the event that
//! began the user's membership (its user-topic `RoomCreated`) and dropped at
//! the event that ended it (the user-topic `RoomDeleted`, or the room's own
//! `RoomDeleted`), with whatever it had pending beyond that point.
//!
//! Invariants: the events delivered are exactly those of the rooms the user
//! was a member of when each was committed, plus the user topic's, after the
//! start position, each once, in id order (the last id a client saw is a
//! position in all of them); a room that began after the start position is
//! followed from its beginning, never earlier; a member's gap notice comes
//! out alone, naming the room (`r<id>`), `user`, or `stream` (a resume
//! position this server never gave: the feed starts now instead).

use super::directory::RoomSpans;
use super::events::{room_topic, user_topic};
use crate::core::hub::{Batch, Hub, Merged, MergedItem, Start};
use crate::core::log::LogEvent;
use crate::core::log::read::Gap;
use crate::core::store::StoreError;
use std::sync::Arc;
use std::time::Duration;
use ulid::Ulid;
use uuid::Uuid;

/// Most events handed out in one delivery.
const MAX_DELIVERY: usize = 512;

/// Gap key of the user topic.
pub const USER_KEY: &str = "user";
/// Gap key of the whole stream.
const STREAM_KEY: &str = "stream";

/// Which topic of the feed an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The user's membership topic.
    User,
    /// A room's topic.
    Room(u64),
    /// The stream as a whole (a gap about all of it).
    Stream,
}

impl Source {
    /// The key a gap notice names: `user` or `r<roomId>`.
    fn key(self) -> Arc<str> {
        match self {
            Source::User => Arc::from(USER_KEY),
            Source::Stream => Arc::from(STREAM_KEY),
            Source::Room(room) => Arc::from(format!("r{room}")),
        }
    }
}

/// The room a gap key names (`None` for the user topic or anything else).
pub fn room_of_key(key: &str) -> Option<u64> {
    key.strip_prefix('r')?.parse().ok()
}

/// Where a room's events start for a feed starting at `from`: at `from`
/// when the user was a member then, else at the first membership that began
/// later; `None` when the user has not been a member since.
fn room_start(spans: &RoomSpans, from: Ulid) -> Option<Ulid> {
    if spans.member_at(from) {
        return Some(from);
    }
    spans
        .spans
        .iter()
        .map(|(began, _)| *began)
        .find(|began| *began > from)
}

/// One user's merged, self-steering feed.
pub struct ChatFeed {
    tenant: Uuid,
    merged: Merged<Source>,
    /// An item taken but not yet handed out (a gap after some events).
    stashed: Option<MergedItem<Source>>,
    /// How long to linger after waking from idle before taking.
    batch_window: Duration,
    /// Whether the last delivery took everything there was (the feed idles).
    drained: bool,
}

impl ChatFeed {
    /// The feed of `user` from `from` (every event after it), given the
    /// user's membership history.
    pub fn open(hub: Arc<Hub>, tenant: Uuid, user: u64, rooms: &[RoomSpans], from: Ulid) -> Self {
        let mut merged = Merged::with_capacity(hub, rooms.len() + 1);
        merged.follow(Source::User, user_topic(tenant, user), Start::After(from));
        for spans in rooms {
            if let Some(start) = room_start(spans, from) {
                let room = Source::Room(spans.room);
                merged.follow(room, room_topic(tenant, spans.room), Start::After(start));
            }
        }
        Self {
            tenant,
            merged,
            stashed: None,
            batch_window: Duration::ZERO,
            drained: false,
        }
    }

    /// Hands out `gap` first, about the whole stream (no room): for a resume
    /// position this server never gave, the feed then starts at `from`.
    pub fn starting_with_gap(mut self, gap: Gap) -> Self {
        self.stashed = Some(MergedItem::Gap(Source::Stream, gap));
        self
    }

    /// Lingers `window` after waking from idle, so what is posted close
    /// together goes out in one delivery.
    pub fn with_batch_window(mut self, window: Duration) -> Self {
        self.batch_window = window;
        self
    }

    /// The rooms followed, in the order they were followed.
    pub fn rooms(&self) -> Vec<u64> {
        self.merged
            .keys()
            .filter_map(|source| match source {
                Source::Room(room) => Some(*room),
                Source::User | Source::Stream => None,
            })
            .collect()
    }

    /// Waits for the next delivery: a gap notice alone, or events in order.
    /// A feed that had drained waits the batch window once it has something.
    pub async fn next(&mut self) -> Result<Batch, StoreError> {
        loop {
            if self.stashed.is_none() {
                self.merged.ready().await?;
                if self.drained && !self.batch_window.is_zero() {
                    tokio::time::sleep(self.batch_window).await;
                }
            }
            let batch = self.take();
            if batch.gap.is_some() || !batch.events.is_empty() {
                return Ok(batch);
            }
        }
    }

    /// Takes what can go out now, steering on membership events.
    fn take(&mut self) -> Batch {
        let mut batch = Batch::default();
        self.drained = false;
        while batch.events.len() < MAX_DELIVERY {
            let Some(item) = self.stashed.take().or_else(|| self.merged.try_next()) else {
                self.drained = true;
                return batch;
            };
            match item {
                MergedItem::Gap(source, gap) => {
                    if !batch.events.is_empty() {
                        self.stashed = Some(MergedItem::Gap(source, gap));
                        break;
                    }
                    batch.gap = Some(gap);
                    batch.gap_key = Some(source.key());
                    break;
                }
                MergedItem::Event(source, event) => {
                    self.steer(source, &event);
                    batch.events.push(event);
                }
            }
        }
        batch
    }

    /// Follows or drops a room at the event that changes the membership.
    fn steer(&mut self, source: Source, event: &LogEvent) {
        let kind = event.event.event_type.as_str();
        let data = &event.event.data;
        match (source, kind) {
            (Source::User, "RoomCreated") => {
                let Some(room) = data["room"]["roomId"].as_u64() else {
                    return;
                };
                if !self.merged.follows(&Source::Room(room)) {
                    let topic = room_topic(self.tenant, room);
                    self.merged
                        .follow(Source::Room(room), topic, Start::After(event.id()));
                }
            }
            (Source::User, "RoomDeleted") => {
                if let Some(room) = data["roomId"].as_u64() {
                    self.merged.unfollow(&Source::Room(room));
                }
            }
            (Source::Room(room), "RoomDeleted") => {
                self.merged.unfollow(&Source::Room(room));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> Ulid {
        Ulid::from_parts(n, 0)
    }

    #[test]
    fn a_room_starts_at_the_position_or_at_the_first_membership_after_it() {
        let spans = RoomSpans {
            room: 7,
            spans: vec![(id(10), Some(id(20))), (id(30), None)],
        };
        assert_eq!(room_start(&spans, id(5)), Some(id(10)));
        assert_eq!(room_start(&spans, id(15)), Some(id(15)));
        assert_eq!(
            room_start(&spans, id(20)),
            Some(id(30)),
            "the end is exclusive"
        );
        assert_eq!(room_start(&spans, id(35)), Some(id(35)));
        let left = RoomSpans {
            room: 7,
            spans: vec![(id(10), Some(id(20)))],
        };
        assert_eq!(room_start(&left, id(25)), None);
    }

    #[test]
    fn gap_keys_name_the_room() {
        assert_eq!(room_of_key(&Source::Room(42).key()), Some(42));
        assert_eq!(room_of_key(&Source::User.key()), None);
    }
}
