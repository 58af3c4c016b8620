//! One subscriber: connects, counts what it receives, resumes after drops.
//!
//! Each subscriber is a task with its own connection and [`SeqTracker`]. It
//! follows a shared [`Control`] (reconnect now, publishing finished, stop) and
//! records into the group's [`GroupStats`]. When the server closes its stream
//! it resumes after the last event it saw, as a real client would.

use super::args::Transport;
use super::error::BenchError;
use super::histogram::AtomicHistogram;
use super::ledger::{Receipt, SeqTracker, TopicExpectation};
use super::payload::{Stamp, unix_micros};
use super::protocol::{Snapshot, note_problem};
use super::stream::{Cursor, Delivery, StreamConn};
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
    /// Where results go.
    pub stats: GroupStats,
}

/// Which topic one subscriber listens to.
#[derive(Debug, Clone)]
pub struct SubscriberSpec {
    /// Index of the topic in the run's topic list.
    pub topic_index: u32,
    /// The topic's name.
    pub topic: String,
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
    topic_index: u32,
    tracker: SeqTracker,
    cursor: Option<Cursor>,
    epoch: u64,
    reconnect_at: Option<u64>,
}

impl State {
    /// Accounts for one delivery.
    fn handle(&mut self, delivery: Delivery, stats: &GroupStats) {
        match delivery {
            Delivery::Event { stamp, cursor } => {
                if cursor.is_some() {
                    self.cursor = cursor;
                }
                self.on_event(stamp, stats);
            }
            Delivery::Foreign { cursor } => {
                if cursor.is_some() {
                    self.cursor = cursor;
                }
                bump(&stats.foreign);
            }
            Delivery::Gap { reason } => {
                bump(&stats.gaps);
                stats.problem(&format!("server announced a gap: {reason}"));
            }
            Delivery::ServerError { message } => {
                bump(&stats.server_errors);
                stats.problem(&format!("server error frame: {message}"));
            }
            Delivery::Closing { .. } | Delivery::Control => {}
        }
    }

    /// Accounts for one bench event.
    fn on_event(&mut self, stamp: Stamp, stats: &GroupStats) {
        bump(&stats.deliveries);
        if stamp.topic != self.topic_index {
            bump(&stats.misrouted);
            return;
        }
        let now = unix_micros();
        stats.latency.record(now.saturating_sub(stamp.sent_us));
        match self.tracker.record(stamp.seq) {
            Receipt::New => {}
            Receipt::Duplicate => bump(&stats.duplicates),
            Receipt::OutOfRange => bump(&stats.out_of_range),
        }
        if let Some(since) = self.reconnect_at
            && stamp.sent_us >= since
            && self.tracker.prefix() > stamp.seq
        {
            self.caught_up(now, stats);
        }
    }

    /// Records the catch-up after a reconnect command.
    fn caught_up(&mut self, now: u64, stats: &GroupStats) {
        if let Some(since) = self.reconnect_at.take() {
            stats.catch_up.record(now.saturating_sub(since));
            bump(&stats.caught_up);
        }
    }

    /// The expectation of this subscriber's topic, once publishing has stopped.
    fn expectation<'a>(&self, control: &'a Control) -> Option<&'a TopicExpectation> {
        control.expect.as_ref()?.get(self.topic_index as usize)
    }

    /// Whether everything acknowledged has arrived.
    fn is_complete(&self, control: &Control) -> bool {
        self.expectation(control)
            .is_some_and(|expect| self.tracker.is_complete(expect))
    }

    /// Final figures.
    fn outcome(&self, control: &Control) -> Outcome {
        let lost = self
            .expectation(control)
            .map_or(0, |expect| self.tracker.lost(expect));
        Outcome {
            unique: self.tracker.unique(),
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
    let attempt = StreamConn::open(&ctx.target, ctx.transport, &spec.topic, after);
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

/// Runs one subscriber until the group stops it or it has received everything.
pub async fn run(
    spec: SubscriberSpec,
    ctx: Arc<Context>,
    mut control: watch::Receiver<Control>,
    start_at: Instant,
) -> Outcome {
    tokio::time::sleep_until(start_at).await;
    let began = Instant::now();
    let first = open(&ctx, &spec, None).await;
    let stats = &ctx.stats;
    if first.is_ok() {
        stats
            .connect_time
            .record(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
        bump(&stats.connected);
    }
    bump(&stats.attempted);
    stats.attempted_changed.notify_one();
    let conn = match first {
        Ok(conn) => conn,
        Err(err) => {
            bump(&stats.connect_failures);
            stats.problem(&format!("connect failed: {err}"));
            return Outcome::default();
        }
    };
    let mut now = control.borrow_and_update().clone();
    let mut state = State {
        topic_index: spec.topic_index,
        tracker: SeqTracker::new(),
        cursor: None,
        epoch: now.reconnect_epoch,
        reconnect_at: None,
    };
    let mut conn = Some(conn);
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
        tokio::select! {
            changed = control.changed() => {
                if changed.is_err() {
                    break;
                }
                now = control.borrow_and_update().clone();
            }
            item = active.next() => match item {
                Ok(Some(delivery)) => state.handle(delivery, stats),
                Ok(None) => {
                    conn = None;
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    bump(&stats.server_closes);
                }
                Err(err) => {
                    conn = None;
                    stats.connected.fetch_sub(1, Ordering::Relaxed);
                    bump(&stats.read_errors);
                    stats.problem(&err.to_string());
                }
            },
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

    fn state() -> State {
        State {
            topic_index: 0,
            tracker: SeqTracker::new(),
            cursor: None,
            epoch: 0,
            reconnect_at: None,
        }
    }

    fn event(seq: u64, sent_us: u64) -> Delivery {
        Delivery::Event {
            stamp: Stamp {
                topic: 0,
                seq,
                sent_us,
            },
            cursor: Some(Cursor::Id(format!("id{seq}"))),
        }
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
            state.handle(event(seq, unix_micros()), &stats);
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
            Delivery::Event {
                stamp: Stamp {
                    topic: 3,
                    seq: 0,
                    sent_us: 0,
                },
                cursor: None,
            },
            &stats,
        );
        state.handle(Delivery::Foreign { cursor: None }, &stats);
        state.handle(
            Delivery::Gap {
                reason: "expired".into(),
            },
            &stats,
        );
        assert_eq!(read(&stats.misrouted), 1);
        assert_eq!(read(&stats.foreign), 1);
        assert_eq!(read(&stats.gaps), 1);
        assert_eq!(state.tracker.unique(), 0);
        assert_eq!(stats.problems().len(), 1);
    }

    #[test]
    fn catch_up_needs_a_complete_prefix_up_to_a_post_drop_event() {
        let stats = GroupStats::default();
        let mut state = state();
        state.handle(event(0, 10), &stats);
        state.reconnect_at = Some(100);
        state.handle(event(2, 150), &stats);
        assert_eq!(read(&stats.caught_up), 0, "seq 1 still missing");
        state.handle(event(1, 90), &stats);
        assert_eq!(read(&stats.caught_up), 0, "seq 1 was sent before the drop");
        state.handle(event(3, 160), &stats);
        assert_eq!(read(&stats.caught_up), 1);
        assert_eq!(stats.catch_up.snapshot().count(), 1);
    }
}
