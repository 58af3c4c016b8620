//! One feed over several topics, in commit order across them.
//!
//! A per-user stream (chat: every room the user is in) needs the events of
//! several topics as one sequence in id order, so that the id of the last
//! event a client saw is a position in all of them. [`Merged`] holds one
//! [`Feed`] per topic (each under a key chosen by its owner) and hands out
//! their events one at a time, always the smallest id that no member can
//! still undercut.
//!
//! How: each member knows how far its topic is *complete*: every event of the
//! topic up to that id is in its pending queue or already handed out. A live
//! member is complete up to the published mark read before taking from its
//! ring (the fan-out appends all of a group before raising the mark, in id
//! order); a member replaying or repairing from the log only up to the last
//! event it returned. The *frontier* is the lowest of these; only pending
//! events at or below it are handed out, the smallest first.
//!
//! Invariants: events come out in strictly increasing id order across all
//! members, each exactly once (each member's feed keeps the fan-out's
//! contract); a member's gap notice comes out before its later events;
//! following a key again or unfollowing it drops what it had pending, so a
//! caller can stop a topic at an exact position (e.g. a membership ending)
//! and nothing of it after that position comes out; a member holds at most
//! [`MEMBER_PENDING`] events and all members together about
//! [`MERGED_PENDING`] (a member with nothing pending may always take one
//! more, so the member holding the frontier back can always move it);
//! beyond that their feeds fall behind and repair from the log;
//! [`Merged::ready`] is cancel-safe.

use super::{Batch, FanOut, Feed, Hub, Start};
use crate::core::log::read::Gap;
use crate::core::log::{LogEvent, TopicRef};
use crate::core::store::StoreError;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::Notify;
use ulid::Ulid;

/// Most events a member holds while waiting for the frontier.
pub const MEMBER_PENDING: usize = 512;
/// Most events all members hold together (plus one per empty member).
pub const MERGED_PENDING: usize = 4096;

/// What a merged feed hands out next.
#[derive(Debug)]
pub enum MergedItem<K> {
    /// The member's cursor could not be honoured (see [`Gap`]).
    Gap(K, Gap),
    /// The next event in id order, from the member under this key.
    Event(K, Arc<LogEvent>),
}

/// One followed topic.
struct Member<K, F> {
    key: K,
    feed: F,
    pending: VecDeque<Arc<LogEvent>>,
    /// Boxed: rare, and every member carries the slot.
    gap: Option<Box<Gap>>,
    /// Every event of the topic up to here is pending or handed out.
    complete: Ulid,
}

impl<K, F: Feed> Member<K, F> {
    /// How many more events the member may take when all members together
    /// hold `held`: an empty member may always take one, since it may be
    /// the one holding the frontier back.
    fn room(&self, held: usize) -> usize {
        let own = MEMBER_PENDING.saturating_sub(self.pending.len());
        let shared = MERGED_PENDING.saturating_sub(held);
        let least = usize::from(self.pending.is_empty());
        own.min(shared).max(least)
    }

    /// Takes a delivery of the member's feed into its pending queue.
    fn accept(&mut self, batch: Batch) {
        if let Some(gap) = batch.gap {
            self.gap = Some(Box::new(gap));
        }
        if let Some(last) = batch.events.last() {
            self.complete = self.complete.max(last.id());
        }
        self.pending.extend(batch.events);
    }

    /// Takes what the ring has; `published` was read before.
    fn take_ready(&mut self, published: Ulid, held: usize) {
        let room = self.room(held);
        if room == 0 {
            return;
        }
        let taken = self.feed.take_ready(room);
        let hit_max = taken.len() == room;
        self.accept(Batch {
            events: taken,
            ..Batch::default()
        });
        if self.feed.is_live() && !hit_max {
            self.complete = self.complete.max(published);
        }
    }
}

/// What woke a waiting merged feed.
enum Woke {
    /// A member replaying from the log delivered.
    Member(usize, Result<Batch, StoreError>),
    /// A member's topic or the published mark moved: take from the rings.
    Changed,
}

type Waiting<'a> = Pin<Box<dyn Future<Output = Woke> + Send + 'a>>;

/// Several topics' feeds merged in id order (see the module doc).
pub struct Merged<K, H: FanOut = Hub> {
    fan_out: Arc<H>,
    members: Vec<Member<K, H::Feed>>,
    /// Attached to every member's feed: rung by a publish to any of them.
    bell: Arc<Notify>,
    /// The published mark read by the last take from the rings.
    seen_published: Ulid,
}

impl<K: Clone + PartialEq + Send, H: FanOut> Merged<K, H> {
    /// An empty merged feed on `fan_out`.
    #[cfg(test)]
    pub fn new(fan_out: Arc<H>) -> Self {
        Self::with_capacity(fan_out, 0)
    }

    /// An empty merged feed on `fan_out` with room for `members` topics
    /// (a feed held open for hours should not carry a doubled vector).
    pub fn with_capacity(fan_out: Arc<H>, members: usize) -> Self {
        Self {
            fan_out,
            members: Vec::with_capacity(members),
            bell: Arc::new(Notify::new()),
            seen_published: Ulid::nil(),
        }
    }

    /// Follows `topic` under `key` from `start` (replacing what `key`
    /// followed, with whatever it had pending); returns the position.
    pub fn follow(&mut self, key: K, topic: TopicRef, start: Start) -> Option<Ulid> {
        self.unfollow(&key);
        let mut feed = self.fan_out.subscribe(topic, start);
        feed.attach_bell(self.bell.clone());
        let position = feed.last_id();
        if self.members.len() == self.members.capacity() {
            // Grows by an eighth, not double: members live as long as the feed.
            self.members.reserve_exact(self.members.len().div_ceil(8));
        }
        self.members.push(Member {
            key,
            feed,
            pending: VecDeque::new(),
            gap: None,
            complete: position.unwrap_or(Ulid::nil()),
        });
        position
    }

    /// Stops following `key`, dropping what it had pending; false when it
    /// was not followed.
    pub fn unfollow(&mut self, key: &K) -> bool {
        let before = self.members.len();
        self.members.retain(|member| &member.key != key);
        self.members.len() != before
    }

    /// Whether `key` is followed.
    pub fn follows(&self, key: &K) -> bool {
        self.members.iter().any(|member| &member.key == key)
    }

    /// The keys followed, in the order they were followed.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.members.iter().map(|member| &member.key)
    }

    /// The next item if one can be handed out now, without waiting.
    pub fn try_next(&mut self) -> Option<MergedItem<K>> {
        if let Some(item) = self.pop() {
            return Some(item);
        }
        self.take_ready();
        self.pop()
    }

    /// Waits until [`Merged::try_next`] has an item. Cancel-safe.
    pub async fn ready(&mut self) -> Result<(), StoreError> {
        loop {
            if self.has_item() {
                return Ok(());
            }
            self.wait().await?;
        }
    }

    /// Events pending in all members together.
    fn held(&self) -> usize {
        self.members.iter().map(|member| member.pending.len()).sum()
    }

    /// Every event at or below this is pending or handed out, in every member.
    fn frontier(&self) -> Option<Ulid> {
        self.members.iter().map(|member| member.complete).min()
    }

    fn take_ready(&mut self) {
        let published = self.fan_out.published_mark();
        self.seen_published = published;
        let mut held = self.held();
        for member in &mut self.members {
            let before = member.pending.len();
            member.take_ready(published, held);
            held += member.pending.len() - before;
        }
    }

    /// The member whose pending head is the next event, if it may go out.
    fn next_member(&self) -> Option<usize> {
        let frontier = self.frontier()?;
        self.members
            .iter()
            .enumerate()
            .filter_map(|(index, member)| Some((index, member.pending.front()?.id())))
            .filter(|(_, id)| *id <= frontier)
            .min_by_key(|(_, id)| *id)
            .map(|(index, _)| index)
    }

    fn has_item(&self) -> bool {
        self.members.iter().any(|member| member.gap.is_some()) || self.next_member().is_some()
    }

    fn pop(&mut self) -> Option<MergedItem<K>> {
        if let Some(member) = self.members.iter_mut().find(|member| member.gap.is_some()) {
            let gap = member.gap.take()?;
            return Some(MergedItem::Gap(member.key.clone(), *gap));
        }
        let index = self.next_member()?;
        let member = &mut self.members[index];
        let event = member.pending.pop_front()?;
        Some(MergedItem::Event(member.key.clone(), event))
    }

    /// Waits until a member may have more: a member's topic was published
    /// to (the merged feed's one bell, enabled before a last take from the
    /// rings, so no publish falls between the take and the wait), a member
    /// replaying from the log delivered, or, when events are held while
    /// every member is live (taken from a ring during a publish, before the
    /// mark covered them), the published mark moved.
    async fn wait(&mut self) -> Result<(), StoreError> {
        let mut rung = std::pin::pin!(self.bell.clone().notified_owned());
        rung.as_mut().enable();
        self.take_ready();
        if self.has_item() {
            return Ok(());
        }
        let seen = self.seen_published;
        let held = self.held();
        let waits_for_mark = held > 0 && self.members.iter().all(|member| member.feed.is_live());
        let fan_out = self.fan_out.clone();
        let mut waiting: Vec<Waiting<'_>> = Vec::new();
        for (index, member) in self.members.iter_mut().enumerate() {
            let room = member.room(held);
            if room > 0 && !member.feed.is_live() {
                waiting.push(Box::pin(async move {
                    Woke::Member(index, member.feed.next(room).await)
                }));
            }
        }
        if waits_for_mark {
            waiting.push(Box::pin(async move {
                fan_out.published_past(seen).await;
                Woke::Changed
            }));
        }
        if waiting.is_empty() {
            rung.await;
            return Ok(());
        }
        waiting.push(Box::pin(async move {
            rung.await;
            Woke::Changed
        }));
        let (woke, _, rest) = futures_util::future::select_all(waiting).await;
        drop(rest);
        if let Woke::Member(index, delivery) = woke {
            self.members[index].accept(delivery?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::hub::HubLimits;
    use crate::core::hub::tests::start;
    use crate::core::writer::{Footprint, Writer};
    use serde_json::{Value, json};
    use std::collections::BTreeSet;

    fn topic(name: &str) -> TopicRef {
        TopicRef::new(uuid::Uuid::nil(), name).unwrap()
    }

    /// Commits one change appending one event to each of `topics`, in order.
    async fn append(writer: &Writer, topics: Vec<TopicRef>) -> Vec<(String, Ulid)> {
        let committed = writer
            .commit(Footprint::SMALL, move |change| {
                for topic in &topics {
                    change.append(topic, "test", Value::Null, json!(1))?;
                }
                Ok(())
            })
            .await
            .unwrap();
        committed
            .events
            .iter()
            .map(|event| (event.event.topic.clone(), event.id()))
            .collect()
    }

    /// Takes `count` events, asserting strictly increasing ids.
    async fn take(merged: &mut Merged<String>, count: usize) -> Vec<(String, Ulid)> {
        let mut taken: Vec<(String, Ulid)> = Vec::new();
        while taken.len() < count {
            let Some(item) = merged.try_next() else {
                tokio::time::timeout(std::time::Duration::from_secs(10), merged.ready())
                    .await
                    .expect("the merged feed stalled")
                    .unwrap();
                continue;
            };
            let MergedItem::Event(key, event) = item else {
                panic!("unexpected gap");
            };
            if let Some((_, last)) = taken.last() {
                assert!(event.id() > *last, "out of order");
            }
            assert_eq!(key, event.event.topic);
            taken.push((key, event.id()));
        }
        taken
    }

    /// Four publishers commit changes touching random topics while a merged
    /// feed follows three of the five (one of them from a cursor in its
    /// history): it gets exactly their events, in commit order.
    async fn merges_concurrent_publishers(limits: HubLimits) {
        let (_dir, writer, hub) = start(limits);
        let names = ["a", "b", "c", "d", "e"];
        let history = append(&writer, vec![topic("a"), topic("b"), topic("a")]).await;
        let mut merged = Merged::new(hub.clone());
        merged.follow("a".to_string(), topic("a"), Start::After(history[0].1));
        merged.follow("b".to_string(), topic("b"), Start::Live);
        merged.follow("c".to_string(), topic("c"), Start::Live);
        let mut publishers = Vec::new();
        for seed in 0..4u64 {
            let writer = writer.clone();
            publishers.push(tokio::spawn(async move {
                let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut all = Vec::new();
                for _ in 0..150 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let count = 1 + (state % 3) as usize;
                    let topics = (0..count)
                        .map(|n| topic(names[((state >> (8 * n)) % 5) as usize]))
                        .collect();
                    all.extend(append(&writer, topics).await);
                }
                all
            }));
        }
        // b's event in the history is before its live position.
        let mut expected = BTreeSet::from([(history[2].1, "a".to_string())]);
        for publisher in publishers {
            for (name, id) in publisher.await.unwrap() {
                if ["a", "b", "c"].contains(&name.as_str()) {
                    expected.insert((id, name));
                }
            }
        }
        let taken = take(&mut merged, expected.len()).await;
        let taken: Vec<(Ulid, String)> = taken.into_iter().map(|(name, id)| (id, name)).collect();
        assert_eq!(taken, expected.into_iter().collect::<Vec<_>>());
        assert!(merged.try_next().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merges_topics_in_commit_order_while_publishers_run() {
        merges_concurrent_publishers(HubLimits {
            topic_events: 4096,
            topic_bytes: usize::MAX,
            total_bytes: usize::MAX,
            ..HubLimits::minimal()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn merges_in_commit_order_while_members_repair_from_the_log() {
        merges_concurrent_publishers(HubLimits {
            topic_events: 3,
            ..HubLimits::minimal()
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_members_with_long_histories_stay_within_the_pending_bound() {
        let (_dir, writer, hub) = start(HubLimits {
            topic_events: 4096,
            topic_bytes: usize::MAX,
            total_bytes: usize::MAX,
            readers: 2,
        });
        let names: Vec<String> = (0..12).map(|n| format!("t{n}")).collect();
        let start_at = append(&writer, vec![topic("t0")]).await[0].1;
        let mut expected = Vec::new();
        for _ in 0..500 {
            let topics = names.iter().map(|name| topic(name)).collect();
            expected.extend(append(&writer, topics).await);
        }
        let mut merged = Merged::new(hub.clone());
        for name in &names {
            merged.follow(name.clone(), topic(name), Start::After(start_at));
        }
        let mut taken = Vec::new();
        while taken.len() < expected.len() {
            taken.extend(take(&mut merged, 1).await);
            assert!(merged.held() <= MERGED_PENDING + names.len());
        }
        assert_eq!(taken, expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unfollowing_at_an_event_drops_everything_of_the_topic_after_it() {
        let (_dir, writer, hub) = start(HubLimits::minimal());
        let mut merged = Merged::new(hub.clone());
        merged.follow("a".to_string(), topic("a"), Start::Live);
        merged.follow("b".to_string(), topic("b"), Start::Live);
        let first = append(&writer, vec![topic("a"), topic("b"), topic("a")]).await;
        let later = append(&writer, vec![topic("a"), topic("b")]).await;
        let taken = take(&mut merged, 2).await;
        assert_eq!(taken, first[..2].to_vec());
        assert!(merged.unfollow(&"a".to_string()));
        let rest = take(&mut merged, 1).await;
        assert_eq!(
            rest,
            vec![later[1].clone()],
            "a's pending and later events are gone"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_topic_followed_from_a_past_position_goes_out_in_order_with_the_others() {
        let (_dir, writer, hub) = start(HubLimits::minimal());
        let mut merged = Merged::new(hub.clone());
        merged.follow("a".to_string(), topic("a"), Start::Live);
        let joined = append(&writer, vec![topic("a")]).await;
        let events = append(&writer, vec![topic("b"), topic("a"), topic("b")]).await;
        assert_eq!(take(&mut merged, 1).await, joined);
        merged.follow("b".to_string(), topic("b"), Start::After(joined[0].1));
        assert_eq!(take(&mut merged, 3).await, events);
    }
}
