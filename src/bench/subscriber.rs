//! One subscriber: connects, counts what it receives, resumes after drops.
//!
//! Each subscriber is a task with its own connection and one [`SeqTracker`]
//! per topic it must receive (a topic subscriber has one; a chat user one
//! per room it is in: a stamp of any other room is misrouted). It
//! follows a shared [`Control`] (reconnect now, publishing finished, stop) and
//! records into the group's [`GroupStats`]. When the server closes its stream
//! it resumes after the last event it saw, as a real client would.
//!
//! Hot path: the connection hands every delivery of one wake-up to the
//! subscriber's [`State`] synchronously; the delivery count and latencies are
//! collected locally and added to the shared counters once per wake-up, and
//! the control channel is watched by one long-lived future per connection,
//! not re-armed per read.

use super::args::Transport;
use super::error::BenchError;
use super::h2_pool::H2Pool;
use super::histogram::{AtomicHistogram, Batch};
use super::ledger::{Receipt, SeqTracker, TopicExpectation};
use super::payload::{Stamp, unix_micros};
use super::protocol::{Snapshot, note_problem};
use super::stream::{Cursor, Received, ReceivedSink, StreamConn};
use super::target::Target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Shared instructions from the group to its subscribers.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Incremented for every reconnect command.
    pub reconnect_epoch: u64,
    /// When the latest reconnect command arrived (unix µs).
    pub reconnect_at_us: u64,
    /// Set once publishing has stopped: what each topic must have delivered.
    pub expect: Option<Arc<Vec<TopicExpectation>>>,
    /// Close and finish now.
    pub stop: bool,
}

/// Counters and histograms shared by the subscribers of one group.
#[derive(Debug, Default)]
pub struct GroupStats {
    /// First connection attempts finished.
    pub attempted: AtomicU64,
    /// Open connections.
    pub connected: AtomicU64,
    /// Failed first connection attempts.
    pub connect_failures: AtomicU64,
    /// Bench events received.
    pub deliveries: AtomicU64,
    /// Repeated deliveries.
    pub duplicates: AtomicU64,
    /// Successful re-connections.
    pub reconnects: AtomicU64,
    /// Subscribers caught up after a reconnect command.
    pub caught_up: AtomicU64,
    /// Frames that carried bench events.
    pub frames: AtomicU64,
    /// Sequence numbers out of any plausible range.
    pub out_of_range: AtomicU64,
    /// Events for another topic.
    pub misrouted: AtomicU64,
    /// Events without a stamp.
    pub foreign: AtomicU64,
    /// Announced history gaps.
    pub gaps: AtomicU64,
    /// Error frames.
    pub server_errors: AtomicU64,
    /// Streams ended by the server.
    pub server_closes: AtomicU64,
    /// Failed reads.
    pub read_errors: AtomicU64,
    /// Publish-to-delivery latency (µs).
    pub latency: AtomicHistogram,
    /// Time to connect and subscribe (µs).
    pub connect_time: AtomicHistogram,
    /// Time from a reconnect command until caught up (µs).
    pub catch_up: AtomicHistogram,
    /// First few distinct problems.
    pub problems: Mutex<Vec<String>>,
    /// Signalled after each first connection attempt.
    pub attempted_changed: Notify,
}

/// Adds one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl GroupStats {
    /// The counters reported while running.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            attempted: read(&self.attempted),
            connected: read(&self.connected),
            connect_failures: read(&self.connect_failures),
            deliveries: read(&self.deliveries),
            duplicates: read(&self.duplicates),
            reconnects: read(&self.reconnects),
            caught_up: read(&self.caught_up),
            frames: read(&self.frames),
        }
    }

    /// Remembers a problem message (the first few distinct ones).
    pub fn problem(&self, message: &str) {
        if let Ok(mut problems) = self.problems.lock() {
            note_problem(&mut problems, message);
        }
    }

    /// The problems noted so far.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

/// What every subscriber of a group shares.
#[derive(Debug)]
pub struct Context {
    /// The server.
    pub target: Target,
    /// SSE or WebSocket.
    pub transport: Transport,
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
    /// The shared HTTP/2 connections of SSE streams (`--http2`); `None`: one HTTP/1.1 connection each.
    pub h2: Option<H2Pool>,
    /// Where results go.
    pub stats: GroupStats,
}

/// What one subscriber listens to.
#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    /// Indices (in the run's topic list) of the topics it must receive every event of, ascending.
    pub topics: Vec<u32>,
    /// The stream it reads.
    pub source: Source,
    /// The server it streams from when not the group's (a cluster edge;
    /// its streams are HTTP/1.1 connections of their own).
    pub server: Option<Target>,
}

/// The stream a subscriber reads.
#[derive(Debug, Clone)]
pub enum Source {
    /// The stream of one topic, by name.
    Topic(String),
    /// A chat user's event stream, opened with the user's JWT.
    ChatUser(String),
}

/// A subscriber's final figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Distinct events received.
    pub unique: u64,
    /// Acknowledged events never received.
    pub lost: u64,
    /// Whether anything acknowledged was missing at the end.
    pub incomplete: bool,
}

/// Per-subscriber bookkeeping.
struct State {
    /// One tracker per topic the subscriber must receive, by ascending topic index.
    trackers: Vec<(u32, SeqTracker)>,
    cursor: Option<Cursor>,
    epoch: u64,
    reconnect_at: Option<u64>,
    /// Deliveries not yet added to the group's counter.
    unflushed: u64,
    /// Frames not yet added to the group's counter.
    unflushed_frames: u64,
    /// Latencies not yet added to the group's histogram.
    latencies: Batch,
}

impl State {
    /// A subscriber of `topics` (ascending) that has received nothing.
    fn new(topics: &[u32], epoch: u64) -> Self {
        Self {
            trackers: topics
                .iter()
                .map(|topic| (*topic, SeqTracker::new()))
                .collect(),
            cursor: None,
            epoch,
            reconnect_at: None,
            unflushed: 0,
            unflushed_frames: 0,
            latencies: Batch::default(),
        }
    }

    /// Accounts for one delivery whose bytes were read at `received_us`.
    fn handle(&mut self, delivery: Received<'_>, received_us: u64, stats: &GroupStats) {
        match delivery {
            Received::Event { stamp, cursor } => {
                if let Some(cursor) = cursor {
                    Cursor::remember(&mut self.cursor, cursor);
                }
                self.on_event(stamp, received_us, stats);
            }
            Received::Foreign { cursor } => {
                if let Some(cursor) = cursor {
                    Cursor::remember(&mut self.cursor, cursor);
                }
                bump(&stats.foreign);
            }
            Received::Gap { reason } => {
                bump(&stats.gaps);
                stats.problem(&format!("server announced a gap: {reason}"));
            }
            Received::ServerError { message } => {
                bump(&stats.server_errors);
                stats.problem(&format!("server error frame: {message}"));
            }
            Received::Position { cursor } => Cursor::remember(&mut self.cursor, cursor),
            Received::Frame => self.unflushed_frames += 1,
            Received::Closing { .. } | Received::Control => {}
        }
    }

    /// Accounts for one bench event.
    fn on_event(&mut self, stamp: Stamp, now: u64, stats: &GroupStats) {
        self.unflushed += 1;
        let Ok(at) = self
            .trackers
            .binary_search_by_key(&stamp.topic, |(topic, _)| *topic)
        else {
            bump(&stats.misrouted);
            return;
        };
        self.latencies
            .push(now.saturating_sub(stamp.sent_us), &stats.latency);
        let tracker = &mut self.trackers[at].1;
        match tracker.record(stamp.seq) {
            Receipt::New => {}
            Receipt::Duplicate => bump(&stats.duplicates),
            Receipt::OutOfRange => bump(&stats.out_of_range),
        }
        let covered = tracker.prefix() > stamp.seq;
        if let Some(since) = self.reconnect_at
            && stamp.sent_us >= since
            && covered
            && self.trackers.iter().all(|(_, other)| !other.has_holes())
        {
            self.caught_up(now, stats);
        }
    }

    /// Adds the locally collected deliveries and latencies to the group's figures.
    fn flush(&mut self, stats: &GroupStats) {
        if self.unflushed > 0 {
            stats
                .deliveries
                .fetch_add(std::mem::take(&mut self.unflushed), Ordering::Relaxed);
        }
        if self.unflushed_frames > 0 {
            stats.frames.fetch_add(
                std::mem::take(&mut self.unflushed_frames),
                Ordering::Relaxed,
            );
        }
        self.latencies.flush(&stats.latency);
    }

    /// Records the catch-up after a reconnect command.
    fn caught_up(&mut self, now: u64, stats: &GroupStats) {
        if let Some(since) = self.reconnect_at.take() {
            stats.catch_up.record(now.saturating_sub(since));
            bump(&stats.caught_up);
        }
    }

    /// Each tracker with its topic's expectation, once publishing has stopped.
    fn expectations<'a>(
        &'a self,
        control: &'a Control,
    ) -> Option<impl Iterator<Item = (&'a SeqTracker, Option<&'a TopicExpectation>)>> {
        let expect = control.expect.as_ref()?;
        Some(
            self.trackers
                .iter()
                .map(|(topic, tracker)| (tracker, expect.get(*topic as usize))),
        )
    }

    /// Whether everything acknowledged has arrived.
    fn is_complete(&self, control: &Control) -> bool {
        self.expectations(control).is_some_and(|mut all| {
            all.all(|(tracker, expect)| expect.is_some_and(|e| tracker.is_complete(e)))
        })
    }

    /// Final figures.
    fn outcome(&self, control: &Control) -> Outcome {
        let lost = self.expectations(control).map_or(0, |all| {
            all.map(|(tracker, expect)| expect.map_or(0, |e| tracker.lost(e)))
                .sum()
        });
        Outcome {
            unique: self.trackers.iter().map(|(_, t)| t.unique()).sum(),
            lost,
            incomplete: lost > 0,
        }
    }
}

/// Opens a connection within the connect timeout.
async fn open(
    ctx: &Context,
    spec: &SubscriberSpec,
    after: Option<&str>,
) -> Result<StreamConn, BenchError> {
    let attempt = async {
        match &spec.source {
            Source::Topic(topic) => match &spec.server {
                Some(edge) => StreamConn::open(edge, ctx.transport, topic, after, None).await,
                None => {
                    StreamConn::open(&ctx.target, ctx.transport, topic, after, ctx.h2.as_ref())
                        .await
                }
            },
            Source::ChatUser(token) => StreamConn::open_chat(&ctx.target, token, after).await,
        }
    };
    match tokio::time::timeout(ctx.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(BenchError::run(format!(
            "connecting and subscribing took longer than {:?}",
            ctx.connect_timeout
        ))),
    }
}

/// Reconnects after the last seen event, retrying with backoff until it works or the group stops.
async fn reopen(
    ctx: &Context,
    spec: &SubscriberSpec,
    cursor: Option<&Cursor>,
    control: &mut watch::Receiver<Control>,
) -> Option<StreamConn> {
    let after = cursor.and_then(Cursor::event_id);
    let mut backoff = Duration::from_millis(50);
    loop {
        if control.borrow().stop {
            return None;
        }
        match open(ctx, spec, after.as_deref()).await {
            Ok(conn) => return Some(conn),
            Err(err) => ctx.stats.problem(&format!("reconnect failed: {err}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = control.changed() => if changed.is_err() { return None },
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Hands a connection's deliveries to a subscriber's state.
struct Receiver<'a> {
    state: &'a mut State,
    stats: &'a GroupStats,
}

impl ReceivedSink for Receiver<'_> {
    fn deliver(&mut self, delivery: Received<'_>, received_us: u64) {
        self.state.handle(delivery, received_us, self.stats);
    }
}

/// Why a subscriber stopped reading its connection.
enum Pause {
    /// The group's instructions changed (or the group is gone).
    Control,
    /// Everything acknowledged has arrived.
    Complete,
    /// The server ended the stream.
    Closed,
    /// Reading failed.
    Failed(BenchError),
}

/// Reads deliveries until the stream ends, the subscriber is complete or the control changes.
async fn read_until_paused(
    conn: &mut StreamConn,
    state: &mut State,
    stats: &GroupStats,
    control: &watch::Receiver<Control>,
    now: &Control,
) -> Pause {
    let mut watcher = control.clone();
    let changed = watcher.changed();
    tokio::pin!(changed);
    loop {
        let mut sink = Receiver {
            state: &mut *state,
            stats,
        };
        let read = tokio::select! {
            biased;
            read = conn.read_into(&mut sink) => read,
            _ = &mut changed => return Pause::Control,
        };
        state.flush(stats);
        match read {
            Ok(true) => {}
            Ok(false) => return Pause::Closed,
            Err(err) => return Pause::Failed(err),
        }
        if control.has_changed().unwrap_or(true) {
            return Pause::Control;
        }
        if now.expect.is_some() && state.is_complete(now) {
            return Pause::Complete;
        }
    }
}

/// The first connection; `None` (counted and explained) when it failed.
async fn connect_first(ctx: &Context, spec: &SubscriberSpec) -> Option<StreamConn> {
    let began = Instant::now();
    let first = open(ctx, spec, None).await;
    let stats = &ctx.stats;
    if first.is_ok() {
        stats
            .connect_time
            .record(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        bump(&stats.connected);
    }
    bump(&stats.attempted);
    stats.attempted_changed.notify_one();
    match first {
        Ok(conn) => Some(conn),
        Err(err) => {
            bump(&stats.connect_failures);
            stats.problem(&format!("connect failed: {err}"));
            None
        }
    }
}

/// Counts a connection that ended while the subscriber still wanted it.
fn lost_connection(pause: Pause, stats: &GroupStats) {
    stats.connected.fetch_sub(1, Ordering::Relaxed);
    match pause {
        Pause::Closed => bump(&stats.server_closes),
        Pause::Failed(err) => {
            bump(&stats.read_errors);
            stats.problem(&err.to_string());
        }
        Pause::Control | Pause::Complete => {}
    }
}

/// Runs one subscriber until the group stops it or it has received everything.
pub async fn run(
    spec: SubscriberSpec,
    ctx: Arc<Context>,
    mut control: watch::Receiver<Control>,
    start_at: Instant,
) -> Outcome {
    tokio::time::sleep_until(start_at).await;
    let Some(first) = connect_first(&ctx, &spec).await else {
        return Outcome::default();
    };
    let stats = &ctx.stats;
    let mut now = control.borrow_and_update().clone();
    let mut state = State::new(&spec.topics, now.reconnect_epoch);
    let mut conn = Some(first);
    loop {
        if now.stop || state.is_complete(&now) {
            break;
        }
        if now.reconnect_epoch != state.epoch {
            state.epoch = now.reconnect_epoch;
            state.reconnect_at = Some(now.reconnect_at_us);
            if conn.take().is_some() {
                stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let Some(active) = conn.as_mut() else {
            conn = reopen(&ctx, &spec, state.cursor.as_ref(), &mut control).await;
            if conn.is_none() {
                break;
            }
            bump(&stats.connected);
            bump(&stats.reconnects);
            now = control.borrow_and_update().clone();
            continue;
        };
        match read_until_paused(active, &mut state, stats, &control, &now).await {
            Pause::Control if control.has_changed().is_err() => break,
            Pause::Control => now = control.borrow_and_update().clone(),
            Pause::Complete => {}
            ended => {
                conn = None;
                lost_connection(ended, stats);
            }
        }
    }
    if conn.is_some() {
        stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
    if state.is_complete(&now) {
        state.caught_up(unix_micros(), stats);
    }
    state.outcome(&now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stream::CursorRef;

    fn state() -> State {
        State::new(&[0], 0)
    }

    /// Delivers bench event `seq` of topic 0 with SSE id `id<seq>`, flushing the figures.
    fn deliver(state: &mut State, seq: u64, sent_us: u64, stats: &GroupStats) {
        let id = format!("id{seq}");
        let event = Received::Event {
            stamp: Stamp {
                topic: 0,
                seq,
                sent_us,
            },
            cursor: Some(CursorRef::Id(id.as_bytes())),
        };
        state.handle(event, unix_micros(), stats);
        state.flush(stats);
    }

    fn control(issued: u64) -> Control {
        Control {
            expect: Some(Arc::new(vec![TopicExpectation {
                issued,
                unacknowledged: vec![],
            }])),
            ..Control::default()
        }
    }

    #[test]
    fn a_lost_and_a_duplicated_delivery_fail_the_subscriber() {
        let stats = GroupStats::default();
        let mut state = state();
        for seq in [0, 1, 2, 4, 4, 5] {
            deliver(&mut state, seq, unix_micros(), &stats);
        }
        let outcome = state.outcome(&control(6));
        assert_eq!(outcome.lost, 1);
        assert!(outcome.incomplete);
        assert_eq!(read(&stats.duplicates), 1);
        assert_eq!(read(&stats.deliveries), 6);
        assert_eq!(stats.latency.snapshot().count(), 6);
        assert!(!state.is_complete(&control(6)));
        assert_eq!(state.cursor.and_then(|c| c.event_id()), Some("id5".into()));
    }

    #[test]
    fn misrouted_and_foreign_events_are_counted_apart() {
        let stats = GroupStats::default();
        let mut state = state();
        state.handle(
            Received::Event {
                stamp: Stamp {
                    topic: 3,
                    seq: 0,
                    sent_us: 0,
                },
                cursor: None,
            },
            0,
            &stats,
        );
        state.handle(Received::Foreign { cursor: None }, 0, &stats);
        state.handle(
            Received::Gap {
                reason: "expired".into(),
            },
            0,
            &stats,
        );
        assert_eq!(read(&stats.misrouted), 1);
        assert_eq!(read(&stats.foreign), 1);
        assert_eq!(read(&stats.gaps), 1);
        assert_eq!(state.trackers[0].1.unique(), 0);
        assert_eq!(stats.problems().len(), 1);
    }

    #[test]
    fn a_chat_user_accounts_per_room_and_refuses_other_rooms() {
        let stats = GroupStats::default();
        let mut state = State::new(&[2, 5], 0);
        let event = |topic, seq, sent_us| Received::Event {
            stamp: Stamp {
                topic,
                seq,
                sent_us,
            },
            cursor: Some(CursorRef::Id(b"01F")),
        };
        state.handle(Received::Frame, 0, &stats);
        state.handle(event(2, 0, 10), 0, &stats);
        state.handle(event(5, 1, 10), 0, &stats);
        state.handle(event(3, 0, 10), 0, &stats);
        state.reconnect_at = Some(100);
        state.handle(event(2, 1, 150), 0, &stats);
        assert_eq!(read(&stats.caught_up), 0, "room 5 still misses message 0");
        state.handle(event(5, 0, 90), 0, &stats);
        state.handle(event(2, 2, 160), 0, &stats);
        state.flush(&stats);
        assert_eq!(read(&stats.caught_up), 1);
        assert_eq!(read(&stats.misrouted), 1);
        assert_eq!(read(&stats.frames), 1);
        let expect = |issued| TopicExpectation {
            issued,
            unacknowledged: vec![],
        };
        let control = Control {
            expect: Some(Arc::new(vec![
                expect(0),
                expect(0),
                expect(3),
                expect(9),
                expect(0),
                expect(3),
            ])),
            ..Control::default()
        };
        let outcome = state.outcome(&control);
        assert_eq!(
            (outcome.unique, outcome.lost),
            (5, 1),
            "room 5 lost message 2"
        );
        assert!(!state.is_complete(&control));
    }

    #[test]
    fn catch_up_needs_a_complete_prefix_up_to_a_post_drop_event() {
        let stats = GroupStats::default();
        let mut state = state();
        deliver(&mut state, 0, 10, &stats);
        state.reconnect_at = Some(100);
        deliver(&mut state, 2, 150, &stats);
        assert_eq!(read(&stats.caught_up), 0, "seq 1 still missing");
        deliver(&mut state, 1, 90, &stats);
        assert_eq!(read(&stats.caught_up), 0, "seq 1 was sent before the drop");
        deliver(&mut state, 3, 160, &stats);
        assert_eq!(read(&stats.caught_up), 1);
        assert_eq!(stats.catch_up.snapshot().count(), 1);
    }
}
