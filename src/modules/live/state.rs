//! What the live module keeps in memory per stream: the record, the viewers
//! seen within the window, the counters of the open interval (hearts,
//! discounts, quiz answers), the newest closed intervals' bytes, and the
//! watch that wakes polls waiting for an interval to close.
//!
//! Invariants: memory follows the store, never leads it: a closed interval
//! enters the ring and the watch only after the change that stored it is
//! durable (an after-commit hook); a counter taken for a close that did not
//! commit is given back ([`LiveStream::give_back`]), so an increment is
//! counted once, in the interval it is folded into; the viewers map holds at
//! most `max_viewers` subjects (a saturated stream counts no new viewer);
//! the ring holds at most `ring_len` intervals.

use super::model::{QuizRecord, StreamRecord};
use crate::error::{ApiError, ErrorCode};
use bytes::Bytes;
use http::HeaderValue;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

/// A closed interval's bytes and their strong validator.
#[derive(Clone)]
pub struct Closed {
    /// The interval (unix ms).
    pub interval: u64,
    /// The body served.
    pub body: Bytes,
    /// Its `ETag` (quoted), ready for the header.
    pub etag: HeaderValue,
}

impl Closed {
    /// A closed interval with the ETag of its bytes.
    pub fn new(interval: u64, body: Bytes) -> Self {
        let etag = etag_of(&body);
        Self {
            interval,
            body,
            etag,
        }
    }
}

/// A strong ETag for `body`: 64 bits of SHA-256, hex (stable across
/// processes and versions, so a restart keeps validators).
pub fn etag_of(body: &[u8]) -> HeaderValue {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(body);
    let hex: String = digest[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"\""))
}

/// The `Cache-Control` of a stream's closed intervals: immutable for its
/// retention, `public` (a CDN may keep them) when the stream is.
fn cache_control(record: &StreamRecord) -> HeaderValue {
    let visibility = if record.public { "public" } else { "private" };
    let value = format!(
        "{visibility}, max-age={}, immutable",
        record.retention_seconds
    );
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("private"))
}

/// The quiz open in a stream, with its answers so far.
pub struct OpenQuiz {
    /// The record (counts as last persisted).
    pub record: QuizRecord,
    /// Answers per choice, every answer accepted so far.
    pub counts: Vec<u64>,
    /// Who answered (hashed subjects).
    answered: HashSet<u64>,
    /// Answers accepted since the last persisted interval.
    pending: Vec<Answer>,
    /// True once the close began: no answer is accepted after it.
    pub closed: bool,
}

/// One viewer's answer: (subject, choice index).
pub type Answer = (String, u8);

/// A quiz's final counts and the answers not stored yet, taken by its close.
pub struct Finals {
    /// Answers per choice.
    pub totals: Vec<u64>,
    /// Answers taken since the last stored interval.
    pub unstored: Vec<Answer>,
}

/// Why an answer was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum AnswerRefused {
    /// No such quiz is open in the stream.
    NotOpen,
    /// The quiz has closed.
    Closed,
    /// This subject answered already.
    AlreadyAnswered,
}

/// Counters and answers taken for one close.
#[derive(Debug, Default, Clone)]
pub struct Harvest {
    /// Distinct viewers within the window.
    pub viewers: u64,
    /// Hearts since the last close.
    pub hearts: u64,
    /// Discounts since the last close.
    pub discounts: u64,
    /// The open quiz's answers since the last close and its totals now.
    pub answers: Option<QuizAnswers>,
}

/// A quiz's answers taken for one close.
#[derive(Debug, Clone)]
pub struct QuizAnswers {
    /// The quiz.
    pub quiz: Uuid,
    /// New answers.
    pub new: Vec<Answer>,
    /// Totals per choice including the new ones.
    pub totals: Vec<u64>,
}

impl Harvest {
    /// What it holds, for the writer queue's byte bound.
    pub fn bytes(&self) -> usize {
        self.answers.as_ref().map_or(0, |answers| {
            answers
                .new
                .iter()
                .map(|(subject, _)| subject.len() + 32)
                .sum()
        })
    }
}

/// One stream in memory.
pub struct LiveStream {
    /// Its tenant.
    pub tenant: Uuid,
    /// Its id.
    pub id: Uuid,
    record: RwLock<(Arc<StreamRecord>, HeaderValue)>,
    viewers: Mutex<HashMap<u64, u64>>,
    hearts: AtomicU64,
    discounts: AtomicU64,
    quiz: Mutex<Option<OpenQuiz>>,
    chats_in_interval: Mutex<ChatCount>,
    chats_in_flight: Mutex<HashSet<u64>>,
    ring: RwLock<VecDeque<Closed>>,
    closed_through: watch::Sender<u64>,
    expired_through: AtomicU64,
    viewer_count: AtomicU64,
    hasher: RandomState,
    ring_len: usize,
    ring_bytes: usize,
    max_viewers: usize,
}

/// A viewer's chat waiting for the writer (see [`LiveStream::chat_in_flight`]).
pub struct InFlight {
    stream: Arc<LiveStream>,
    key: u64,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.stream.chats_in_flight).remove(&self.key);
    }
}

/// Chats counted in the open interval: all, and per viewer.
#[derive(Default)]
struct ChatCount {
    interval: u64,
    total: u32,
    by_viewer: HashMap<u64, u32>,
}

/// The per-interval chat bounds.
#[derive(Debug, Clone, Copy)]
pub struct ChatBounds {
    /// Most chats in one interval.
    pub per_interval: u32,
    /// Most chats of one viewer in one interval.
    pub per_viewer: u32,
}

impl LiveStream {
    /// A stream whose newest closed interval is `closed_through`.
    pub fn new(
        tenant: Uuid,
        record: StreamRecord,
        closed_through: u64,
        limits: &StreamMemory,
    ) -> Self {
        Self {
            tenant,
            id: record.id,
            record: RwLock::new((Arc::new(record.clone()), cache_control(&record))),
            viewers: Mutex::new(HashMap::new()),
            hearts: AtomicU64::new(0),
            discounts: AtomicU64::new(0),
            quiz: Mutex::new(None),
            chats_in_interval: Mutex::new(ChatCount::default()),
            chats_in_flight: Mutex::new(HashSet::new()),
            ring: RwLock::new(VecDeque::new()),
            closed_through: watch::Sender::new(closed_through),
            expired_through: AtomicU64::new(0),
            viewer_count: AtomicU64::new(0),
            hasher: RandomState::new(),
            ring_len: limits.ring_len.max(1),
            ring_bytes: limits.ring_bytes,
            max_viewers: limits.max_viewers,
        }
    }

    /// The record now.
    pub fn record(&self) -> Arc<StreamRecord> {
        self.record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The `Cache-Control` of its closed intervals now.
    pub fn cache_control(&self) -> HeaderValue {
        self.record
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .clone()
    }

    /// Replaces the record (after the change storing it committed).
    pub fn set_record(&self, record: StreamRecord) {
        let cache = cache_control(&record);
        *self.record.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(record), cache);
        self.closed_through.send_modify(|_| {});
    }

    /// True when intervals up to `due` remain to close: a live stream's,
    /// or an ended one's up to its last interval.
    pub fn needs_closing(&self, due: u64) -> bool {
        let record = self.record();
        let newest = record.last_interval.map_or(due, |last| last.min(due));
        self.closed_through() < newest
    }

    /// Notes that `subject` polled at `now_ms`.
    pub fn saw_viewer(&self, subject: &str, now_ms: u64) {
        let key = self.hasher.hash_one(subject);
        let mut viewers = lock(&self.viewers);
        let room = viewers.len() < self.max_viewers;
        if let Some(seen) = viewers.get_mut(&key) {
            *seen = now_ms;
        } else if room {
            viewers.insert(key, now_ms);
        }
    }

    /// Distinct viewers seen since `since_ms`, forgetting older ones.
    pub fn count_viewers(&self, since_ms: u64) -> u64 {
        let mut viewers = lock(&self.viewers);
        viewers.retain(|_, seen| *seen >= since_ms);
        let count = viewers.len() as u64;
        self.viewer_count.store(count, Ordering::Release);
        count
    }

    /// Distinct viewers seen since `since_ms` (nothing forgotten).
    pub fn viewers_since(&self, since_ms: u64) -> u64 {
        lock(&self.viewers)
            .values()
            .filter(|seen| **seen >= since_ms)
            .count() as u64
    }

    /// Distinct viewers as of the last close (what the newest interval says).
    pub fn viewer_count(&self) -> u64 {
        self.viewer_count.load(Ordering::Acquire)
    }

    /// Sets what [`LiveStream::viewer_count`] says: the whole cluster's
    /// count of the last close (on the writer as it closes, on an edge from
    /// the replicated interval).
    pub fn set_viewer_count(&self, count: u64) {
        self.viewer_count.store(count, Ordering::Release);
    }

    /// Marks `viewer`'s chat as waiting for the writer until the guard
    /// drops; 429 while another of theirs waits. One chat in flight per
    /// viewer keeps a flooding viewer from filling the writer's queue (the
    /// per-interval bounds are checked inside the change, in order).
    pub fn chat_in_flight(self: &Arc<Self>, viewer: &str) -> Result<InFlight, ApiError> {
        let key = self.hasher.hash_one(viewer);
        if !lock(&self.chats_in_flight).insert(key) {
            return Err(too_many(
                "one chat at a time: wait for the answer to the previous one".into(),
            ));
        }
        Ok(InFlight {
            stream: self.clone(),
            key,
        })
    }

    /// Counts `viewer`'s chat going into `interval`; 429 when the interval
    /// holds its most chats, or the viewer's most. Called inside the chat's
    /// change (a chat whose change then fails still counts: the bound errs
    /// on the safe side). Memory: at most `per_interval` viewers counted.
    pub fn count_chat(
        &self,
        viewer: &str,
        interval: u64,
        bounds: ChatBounds,
    ) -> Result<(), ApiError> {
        let mut counted = lock(&self.chats_in_interval);
        if counted.interval != interval {
            *counted = ChatCount {
                interval,
                ..ChatCount::default()
            };
        }
        if counted.total >= bounds.per_interval {
            return Err(too_many(format!(
                "this events-stream takes at most {} chats an interval (--live-max-chats-per-interval)",
                bounds.per_interval
            )));
        }
        let of_viewer = counted
            .by_viewer
            .entry(self.hasher.hash_one(viewer))
            .or_default();
        if *of_viewer >= bounds.per_viewer {
            return Err(too_many(format!(
                "a viewer may post at most {} chats an interval (--live-max-chats-per-viewer-interval)",
                bounds.per_viewer
            )));
        }
        *of_viewer += 1;
        counted.total += 1;
        Ok(())
    }

    /// Adds hearts to the open interval.
    pub fn add_hearts(&self, count: u64) {
        saturating_add(&self.hearts, count);
    }

    /// Adds discounts to the open interval.
    pub fn add_discounts(&self, count: u64) {
        saturating_add(&self.discounts, count);
    }

    /// Takes what the open interval counted, for a close.
    pub fn harvest(&self, viewers_since_ms: u64) -> Harvest {
        let answers = lock(&self.quiz).as_mut().and_then(|quiz| {
            (!quiz.pending.is_empty()).then(|| QuizAnswers {
                quiz: quiz.record.id,
                new: std::mem::take(&mut quiz.pending),
                totals: quiz.counts.clone(),
            })
        });
        Harvest {
            viewers: self.count_viewers(viewers_since_ms),
            hearts: self.hearts.swap(0, Ordering::AcqRel),
            discounts: self.discounts.swap(0, Ordering::AcqRel),
            answers,
        }
    }

    /// Gives back what a close that did not commit had taken.
    pub fn give_back(&self, harvest: Harvest) {
        self.add_hearts(harvest.hearts);
        self.add_discounts(harvest.discounts);
        let Some(answers) = harvest.answers else {
            return;
        };
        if let Some(quiz) = lock(&self.quiz).as_mut()
            && quiz.record.id == answers.quiz
            && !quiz.closed
        {
            let mut back = answers.new;
            back.append(&mut quiz.pending);
            quiz.pending = back;
        }
    }

    /// Opens `record` as the stream's quiz with the answers already stored.
    pub fn open_quiz(&self, record: QuizRecord, answered: impl IntoIterator<Item = String>) {
        let answered = answered
            .into_iter()
            .map(|subject| self.hasher.hash_one(subject))
            .collect();
        let counts = record.counts.clone();
        *lock(&self.quiz) = Some(OpenQuiz {
            record,
            counts,
            answered,
            pending: Vec::new(),
            closed: false,
        });
    }

    /// Takes `subject`'s answer `choice` to quiz `quiz` at `now_ms`.
    pub fn answer(
        &self,
        quiz: Uuid,
        subject: &str,
        choice: u8,
        now_ms: u64,
    ) -> Result<(), AnswerRefused> {
        let mut open = lock(&self.quiz);
        let open = open
            .as_mut()
            .filter(|open| open.record.id == quiz)
            .ok_or(AnswerRefused::NotOpen)?;
        if open.closed || now_ms >= open.record.close_interval {
            return Err(AnswerRefused::Closed);
        }
        if !open.answered.insert(self.hasher.hash_one(subject)) {
            return Err(AnswerRefused::AlreadyAnswered);
        }
        if let Some(count) = open.counts.get_mut(usize::from(choice)) {
            *count += 1;
        }
        open.pending.push((subject.to_string(), choice));
        Ok(())
    }

    /// Stops taking answers for `quiz` and returns its final counts and the
    /// answers not yet stored; `None` when it is not the open quiz.
    pub fn close_quiz(&self, quiz: Uuid) -> Option<Finals> {
        let mut open = lock(&self.quiz);
        let open = open.as_mut().filter(|open| open.record.id == quiz)?;
        open.closed = true;
        Some(Finals {
            totals: open.counts.clone(),
            unstored: std::mem::take(&mut open.pending),
        })
    }

    /// Forgets the quiz once its close is durable.
    pub fn forget_quiz(&self, quiz: Uuid) {
        let mut open = lock(&self.quiz);
        if open.as_ref().is_some_and(|open| open.record.id == quiz) {
            *open = None;
        }
    }

    /// The open quiz's record, if any.
    pub fn open_quiz_record(&self) -> Option<QuizRecord> {
        lock(&self.quiz)
            .as_ref()
            .filter(|open| !open.closed)
            .map(|open| open.record.clone())
    }

    /// Publishes closed intervals (after their change is durable).
    pub fn publish(&self, closed: Vec<Closed>, closed_through: u64) {
        {
            let mut ring = self.ring.write().unwrap_or_else(|p| p.into_inner());
            for interval in closed {
                ring.push_back(interval);
            }
            let mut bytes: usize = ring.iter().map(|closed| closed.body.len()).sum();
            while ring.len() > self.ring_len || (bytes > self.ring_bytes && ring.len() > 1) {
                if let Some(evicted) = ring.pop_front() {
                    bytes -= evicted.body.len();
                }
            }
        }
        self.closed_through.send_if_modified(|through| {
            let newer = closed_through > *through;
            *through = (*through).max(closed_through);
            newer
        });
    }

    /// The newest expired interval: it and older ones are answered 410
    /// whatever the retention says now (their bodies are or will be gone).
    pub fn expired_through(&self) -> u64 {
        self.expired_through.load(Ordering::Acquire)
    }

    /// Raises the expired mark (after the change storing it committed, or at start).
    pub fn raise_expired(&self, through: u64) {
        self.expired_through.fetch_max(through, Ordering::AcqRel);
    }

    /// The newest closed interval.
    pub fn closed_through(&self) -> u64 {
        *self.closed_through.borrow()
    }

    /// Wakes on every close (and record change).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.closed_through.subscribe()
    }

    /// A closed interval from the ring.
    pub fn cached(&self, interval: u64) -> Option<Closed> {
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let newest = ring.back()?.interval;
        let back =
            usize::try_from(newest.checked_sub(interval)? / super::model::INTERVAL_MS).ok()?;
        let index = ring.len().checked_sub(1 + back)?;
        ring.get(index)
            .filter(|closed| closed.interval == interval)
            .or_else(|| ring.iter().find(|closed| closed.interval == interval))
            .cloned()
    }
}

/// Memory bounds of one stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamMemory {
    /// Closed intervals kept in memory.
    pub ring_len: usize,
    /// Their most bytes (the newest is kept whatever its size).
    pub ring_bytes: usize,
    /// Most distinct viewers tracked.
    pub max_viewers: usize,
}

/// Every stream in memory, by (tenant, stream).
#[derive(Default)]
pub struct Streams {
    map: RwLock<HashMap<(Uuid, Uuid), Arc<LiveStream>>>,
}

impl Streams {
    /// The stream, if known.
    pub fn get(&self, tenant: &Uuid, stream: &Uuid) -> Option<Arc<LiveStream>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(*tenant, *stream))
            .cloned()
    }

    /// Adds a stream (after the change creating it committed, or at start).
    pub fn insert(&self, stream: LiveStream) -> Arc<LiveStream> {
        let stream = Arc::new(stream);
        self.map
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((stream.tenant, stream.id), stream.clone());
        stream
    }

    /// Every stream.
    pub fn all(&self) -> Vec<Arc<LiveStream>> {
        self.map
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

fn too_many(message: String) -> ApiError {
    ApiError::new(ErrorCode::RateLimited, message)
        .with_header(http::header::RETRY_AFTER, http::HeaderValue::from(1))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn saturating_add(counter: &AtomicU64, amount: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
        Some(now.saturating_add(amount))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::live::model::StreamStatus;

    fn stream(max_viewers: usize) -> LiveStream {
        let record = StreamRecord {
            id: Uuid::from_u128(7),
            title: "t".into(),
            public: false,
            retention_seconds: 60,
            created_at: 0,
            first_interval: 0,
            ended_at: None,
            last_interval: None,
            status: StreamStatus::Live,
            open_quiz: None,
        };
        let memory = StreamMemory {
            ring_len: 3,
            ring_bytes: 1 << 20,
            max_viewers,
        };
        LiveStream::new(Uuid::nil(), record, 0, &memory)
    }

    #[test]
    fn viewers_are_distinct_within_the_window_and_bounded() {
        let live = stream(2);
        live.saw_viewer("a", 1_000);
        live.saw_viewer("a", 2_000);
        live.saw_viewer("b", 1_500);
        live.saw_viewer("c", 2_000);
        assert_eq!(live.count_viewers(0), 2, "c is beyond the bound");
        assert_eq!(live.count_viewers(1_600), 1, "b fell out of the window");
        live.saw_viewer("c", 2_100);
        assert_eq!(live.count_viewers(0), 2, "room again after the window");
    }

    #[test]
    fn a_close_that_did_not_commit_gives_its_counts_back() {
        let live = stream(10);
        live.add_hearts(3);
        let taken = live.harvest(0);
        assert_eq!(taken.hearts, 3);
        live.add_hearts(2);
        live.give_back(taken);
        assert_eq!(live.harvest(0).hearts, 5);
    }

    #[test]
    fn the_ring_keeps_the_newest_intervals() {
        let live = stream(10);
        let closed = (1..=5)
            .map(|n| Closed::new(n * 250, Bytes::from(vec![n as u8])))
            .collect();
        live.publish(closed, 1_250);
        assert!(live.cached(500).is_none());
        assert_eq!(live.cached(1_000).unwrap().body.as_ref(), &[4]);
        assert_eq!(live.closed_through(), 1_250);
        assert_eq!(live.cached(750).unwrap().etag, etag_of(&[3]));
    }
}
