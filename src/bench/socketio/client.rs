//! One Socket.IO client of the run: connects, joins the channel's posts
//! room, accounts for every post it receives, and on the fleet's reconnect
//! command drops its session, reconnects, rejoins and syncs from its last
//! event id (page by page) while live posts already arrive again.
//!
//! Accounting, per post number (the stamp's sequence): a post is *applied*
//! the first time it arrives by either way; it is a *duplicate* when the
//! same way (live, or sync) brings it twice, and an *overlap* when it
//! arrives both live and by sync (what the spec's clients dedupe by
//! `eventId`: posts between the rejoin and the sync's answer come both
//! ways). Lost: acknowledged posts never applied.
//!
//! The resume point ([`State::cursor`]) is the id the next sync starts
//! after: once a sync has completed it is the last live event (everything
//! before it came live after the join or by the sync), while a sync is
//! still paging it is that sync's last event.

use super::conn::{Login, Sink, SioConn};
use super::post::{Delivery, Post, PostStamp, from_envelope};
use crate::bench::error::BenchError;
use crate::bench::histogram::{AtomicHistogram, Batch};
use crate::bench::ledger::{Receipt, SeqTracker, TopicExpectation};
use crate::bench::payload::unix_micros;
use crate::bench::protocol::note_problem;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// The join request.
pub const JOIN: &str = "communication:join_channel_posts";

/// The sync request.
pub const SYNC: &str = "communication:sync_channel_posts";

/// Posts asked for per sync page.
pub const SYNC_PAGE: u64 = 100;

/// Most sync pages one resync may take (a server that pages forever is an error).
const MAX_SYNC_PAGES: u64 = 100_000;

/// Longest pause between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What the fleet tells every client.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Incremented by every reconnect command.
    pub epoch: u64,
    /// When the latest reconnect command was given (unix µs).
    pub reconnect_at_us: u64,
    /// Set once posting has stopped: what every client must have.
    pub expect: Option<Arc<TopicExpectation>>,
    /// Close and finish now.
    pub stop: bool,
}

/// Counters and histograms of all clients.
#[derive(Debug, Default)]
pub struct Stats {
    /// First connection attempts finished.
    pub attempted: AtomicU64,
    /// Sessions open and joined.
    pub connected: AtomicU64,
    /// First connection attempts that failed.
    pub connect_failures: AtomicU64,
    /// Posts received live (each counted once; received posts: live + synced − overlap).
    pub live: AtomicU64,
    /// Posts received by sync (each counted once).
    pub synced: AtomicU64,
    /// Posts brought twice the same way.
    pub duplicates: AtomicU64,
    /// Posts brought both live and by sync (deduplicated by the client).
    pub overlap: AtomicU64,
    /// Post numbers no publisher can have sent.
    pub out_of_range: AtomicU64,
    /// Events that are not bench posts.
    pub foreign: AtomicU64,
    /// Successful reconnections.
    pub reconnects: AtomicU64,
    /// Clients caught up after a reconnect command.
    pub caught_up: AtomicU64,
    /// Sync pages received.
    pub sync_pages: AtomicU64,
    /// Syncs answered `too_old` or `unknown` (a real client would refetch over REST).
    pub sync_refusals: AtomicU64,
    /// Sessions the server ended.
    pub server_closes: AtomicU64,
    /// Sessions that failed (read errors, protocol errors).
    pub read_errors: AtomicU64,
    /// Post→receipt latency of live posts (µs).
    pub latency: AtomicHistogram,
    /// Time to connect and join (µs).
    pub connect_time: AtomicHistogram,
    /// Time from the reconnect command until caught up (µs).
    pub catch_up: AtomicHistogram,
    /// First few distinct problems.
    pub problems: Mutex<Vec<String>>,
}

/// Adds one to a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Stats {
    /// Remembers a problem (the first few distinct ones).
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

/// What every client shares.
#[derive(Debug)]
pub struct Shared {
    /// The server, its channel and how clients log in.
    pub server: Arc<super::api::Server>,
    /// Deadline of one connect-and-join.
    pub connect_timeout: Duration,
    /// Where the figures go.
    pub stats: Stats,
}

/// A client's final figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Acknowledged posts never applied.
    pub lost: u64,
}

/// One client's bookkeeping.
#[derive(Debug, Default)]
struct State {
    applied: SeqTracker,
    live: SeqTracker,
    synced: SeqTracker,
    /// Where the next sync starts after (`None`: the channel's beginning).
    cursor: Option<String>,
    /// The last live event of this session.
    live_last: String,
    /// The session's sync (if any) has completed.
    sync_done: bool,
    /// The reconnect command being followed.
    epoch: u64,
    /// When that command was given (unix µs), until caught up.
    reconnect_at: Option<u64>,
    /// The smallest post number sent after that command, once seen.
    post_drop_seq: Option<u64>,
    /// Live posts not yet added to the shared counter.
    unflushed_live: u64,
    /// Latencies not yet added to the shared histogram.
    latencies: Batch,
}

impl State {
    /// A live post.
    fn on_live(&mut self, post: Post<'_>, received_us: u64, stats: &Stats) {
        self.live_last.clear();
        self.live_last.push_str(post.event_id);
        if self.record(Way::Live, post.stamp.seq, stats) {
            self.unflushed_live += 1;
            self.latencies.push(
                received_us.saturating_sub(post.stamp.sent_us),
                &stats.latency,
            );
            self.apply(post.stamp, received_us, stats);
        }
    }

    /// A post of a sync page.
    fn on_synced(&mut self, stamp: PostStamp, received_us: u64, stats: &Stats) {
        if self.record(Way::Sync, stamp.seq, stats) {
            bump(&stats.synced);
            self.apply(stamp, received_us, stats);
        }
    }

    /// Records `seq` as come `way`; whether it is new that way.
    fn record(&mut self, way: Way, seq: u64, stats: &Stats) -> bool {
        let tracker = match way {
            Way::Live => &mut self.live,
            Way::Sync => &mut self.synced,
        };
        match tracker.record(seq) {
            Receipt::New => true,
            Receipt::Duplicate => {
                bump(&stats.duplicates);
                false
            }
            Receipt::OutOfRange => {
                bump(&stats.out_of_range);
                false
            }
        }
    }

    /// Applies a post new to its way; notes an overlap or the catch-up.
    fn apply(&mut self, stamp: PostStamp, now: u64, stats: &Stats) {
        if self.applied.record(stamp.seq) != Receipt::New {
            bump(&stats.overlap);
            return;
        }
        let Some(since) = self.reconnect_at else {
            return;
        };
        if stamp.sent_us >= since {
            self.post_drop_seq = Some(self.post_drop_seq.map_or(stamp.seq, |s| s.min(stamp.seq)));
        }
        if self
            .post_drop_seq
            .is_some_and(|seq| self.applied.prefix() > seq)
        {
            self.caught_up(now, stats);
        }
    }

    /// Records the catch-up after the reconnect command.
    fn caught_up(&mut self, now: u64, stats: &Stats) {
        if let Some(since) = self.reconnect_at.take() {
            stats.catch_up.record(now.saturating_sub(since));
            bump(&stats.caught_up);
        }
    }

    /// Adds the locally collected figures to the shared ones.
    fn flush(&mut self, stats: &Stats) {
        if self.unflushed_live > 0 {
            stats
                .live
                .fetch_add(std::mem::take(&mut self.unflushed_live), Ordering::Relaxed);
        }
        self.latencies.flush(&stats.latency);
    }

    /// Ends the session: a completed sync makes the last live event the resume point.
    fn end_session(&mut self) {
        if self.sync_done && !self.live_last.is_empty() {
            self.cursor = Some(std::mem::take(&mut self.live_last));
        }
        self.live_last.clear();
        self.sync_done = false;
    }

    /// Whether every acknowledged post has been applied.
    fn is_complete(&self, control: &Control) -> bool {
        control
            .expect
            .as_ref()
            .is_some_and(|expect| self.applied.is_complete(expect))
    }

    /// Acknowledged posts never applied.
    fn lost(&self, control: &Control) -> u64 {
        control
            .expect
            .as_ref()
            .map_or(0, |expect| self.applied.lost(expect))
    }
}

/// How a post arrived.
#[derive(Debug, Clone, Copy)]
enum Way {
    Live,
    Sync,
}

/// Hands a session's events to the client's state.
struct Receiver<'a> {
    state: &'a mut State,
    stats: &'a Stats,
}

impl Sink for Receiver<'_> {
    fn deliver(&mut self, delivery: Delivery<'_>, received_us: u64) {
        match delivery {
            Delivery::Post(post) => self.state.on_live(post, received_us, self.stats),
            Delivery::Foreign(name) => {
                bump(&self.stats.foreign);
                self.stats
                    .problem(&format!("an event that is no bench post: {name}"));
            }
        }
    }
}

/// The `data` of an `{"ok":true,"data":…}` ack; an error with the server's reason otherwise.
fn ok_data(ack: Value, request: &str) -> Result<Value, BenchError> {
    if ack["ok"] == Value::Bool(true) {
        return Ok(ack["data"].clone());
    }
    Err(BenchError::run(format!("{request} was refused: {ack}")))
}

/// Connects, logs in and joins the channel's room within the connect timeout.
async fn connect_and_join(
    shared: &Shared,
    login: &Login,
    state: &mut State,
) -> Result<SioConn, BenchError> {
    let server = &shared.server;
    let attempt = async {
        let mut conn = SioConn::connect(&server.target, login).await?;
        let mut sink = Receiver {
            state: &mut *state,
            stats: &shared.stats,
        };
        let join = json!({ "channelId": server.channel_id });
        let ack = conn.request(JOIN, &join, &mut sink).await?;
        ok_data(ack, JOIN)?;
        Ok(conn)
    };
    tokio::time::timeout(shared.connect_timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(BenchError::run(format!(
                "connecting and joining took longer than {:?}",
                shared.connect_timeout
            )))
        })
}

/// Syncs from the resume point, page by page, until the server has no more.
async fn sync(conn: &mut SioConn, state: &mut State, shared: &Shared) -> Result<(), BenchError> {
    let stats = &shared.stats;
    for _ in 0..MAX_SYNC_PAGES {
        let mut request = json!({ "channelId": shared.server.channel_id, "limit": SYNC_PAGE });
        if let Some(cursor) = &state.cursor {
            request["sinceEventId"] = Value::from(cursor.as_str());
        }
        let mut sink = Receiver {
            state: &mut *state,
            stats,
        };
        let data = ok_data(conn.request(SYNC, &request, &mut sink).await?, SYNC)?;
        bump(&stats.sync_pages);
        if data["status"] != "ok" {
            bump(&stats.sync_refusals);
            stats.problem(&format!("sync answered status {}", data["status"]));
            state.sync_done = true;
            return Ok(());
        }
        let Some(events) = data["events"].as_array() else {
            return Err(BenchError::run(format!(
                "a sync page without events: {data}"
            )));
        };
        let now = unix_micros();
        for envelope in events {
            apply_synced(state, envelope, now, stats);
        }
        if data["hasMore"] != true {
            state.sync_done = true;
            return Ok(());
        }
        if events.is_empty() {
            return Err(BenchError::run(
                "a sync page says hasMore but holds no event",
            ));
        }
    }
    Err(BenchError::run(format!(
        "the sync was still paging after {MAX_SYNC_PAGES} pages"
    )))
}

/// Applies one envelope of a sync page and moves the resume point past it.
fn apply_synced(state: &mut State, envelope: &Value, now: u64, stats: &Stats) {
    match from_envelope(envelope) {
        Some((stamp, id)) => {
            state.on_synced(stamp, now, stats);
            state.cursor = Some(id.to_string());
        }
        None => {
            bump(&stats.foreign);
            if let Some(id) = envelope["eventId"].as_str() {
                state.cursor = Some(id.to_string());
            }
        }
    }
}

/// Why a client stopped reading its session.
enum Pause {
    /// The fleet's instructions changed (or the fleet is gone).
    Control,
    /// Every acknowledged post has been applied.
    Complete,
    /// The server ended the session.
    Closed,
    /// Reading failed.
    Failed(BenchError),
}

/// Reads events until the session ends, the client is complete or the control changes.
async fn read_until_paused(
    conn: &mut SioConn,
    state: &mut State,
    stats: &Stats,
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
        if state.is_complete(now) {
            return Pause::Complete;
        }
    }
}

/// Reconnects, rejoins and syncs, retrying with backoff until it works or
/// the fleet stops (which also ends an attempt under way).
async fn reopen(
    shared: &Shared,
    index: usize,
    state: &mut State,
    control: &mut watch::Receiver<Control>,
) -> Option<SioConn> {
    let mut backoff = Duration::from_millis(50);
    loop {
        if control.borrow().stop {
            return None;
        }
        let attempt = async {
            let login = shared.server.login(index)?;
            let mut conn = connect_and_join(shared, &login, state).await?;
            sync(&mut conn, state, shared).await?;
            Ok::<_, BenchError>(conn)
        };
        let mut watcher = control.clone();
        let attempted = tokio::select! {
            attempted = attempt => attempted,
            _ = watcher.wait_for(|now| now.stop) => return None,
        };
        match attempted {
            Ok(conn) => return Some(conn),
            Err(err) => {
                state.end_session();
                shared.stats.problem(&format!("reconnect failed: {err}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = control.changed() => if changed.is_err() { return None },
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The first connection; `None` (counted and explained) when it failed.
async fn connect_first(shared: &Shared, index: usize, state: &mut State) -> Option<SioConn> {
    let began = Instant::now();
    let stats = &shared.stats;
    let first = match shared.server.login(index) {
        Ok(login) => connect_and_join(shared, &login, state).await,
        Err(err) => Err(err),
    };
    if first.is_ok() {
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        stats.connect_time.record(micros);
        bump(&stats.connected);
    }
    bump(&stats.attempted);
    match first {
        Ok(conn) => Some(conn),
        Err(err) => {
            bump(&stats.connect_failures);
            stats.problem(&format!("connect failed: {err}"));
            None
        }
    }
}

/// Counts a session that ended while the client still wanted it.
fn lost_session(pause: Pause, stats: &Stats) {
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

/// Runs client `index` from `start_at` until the fleet stops it or it has
/// every post; its outcome is judged against the latest expectation, even
/// when the stop came while it was still reconnecting.
pub async fn run(
    shared: Arc<Shared>,
    index: usize,
    mut control: watch::Receiver<Control>,
    start_at: Instant,
) -> Outcome {
    tokio::time::sleep_until(start_at).await;
    let mut state = State {
        sync_done: true,
        epoch: control.borrow().epoch,
        ..State::default()
    };
    let stats = &shared.stats;
    let mut conn = connect_first(&shared, index, &mut state).await;
    if conn.is_none() {
        return Outcome::default();
    }
    let mut now = control.borrow_and_update().clone();
    loop {
        if now.stop || state.is_complete(&now) {
            break;
        }
        if now.epoch != state.epoch {
            state.epoch = now.epoch;
            state.reconnect_at = Some(now.reconnect_at_us);
            state.post_drop_seq = None;
            if conn.take().is_some() {
                stats.connected.fetch_sub(1, Ordering::Relaxed);
            }
            state.end_session();
        }
        let Some(active) = conn.as_mut() else {
            conn = reopen(&shared, index, &mut state, &mut control).await;
            if conn.is_none() {
                break;
            }
            state.flush(stats);
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
                state.end_session();
                lost_session(ended, stats);
            }
        }
    }
    if conn.is_some() {
        stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
    state.flush(stats);
    let now = control.borrow().clone();
    if state.is_complete(&now) {
        state.caught_up(unix_micros(), stats);
    }
    Outcome {
        lost: state.lost(&now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(seq: u64, sent_us: u64) -> PostStamp {
        PostStamp { seq, sent_us }
    }

    fn live(state: &mut State, seq: u64, sent_us: u64, stats: &Stats) {
        let id = format!("e{seq}");
        let post = Post {
            stamp: stamp(seq, sent_us),
            event_id: &id,
        };
        state.on_live(post, sent_us + 5, stats);
        state.flush(stats);
    }

    fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn expecting(issued: u64) -> Control {
        Control {
            expect: Some(Arc::new(TopicExpectation {
                issued,
                unacknowledged: vec![],
            })),
            ..Control::default()
        }
    }

    #[test]
    fn overlap_between_live_and_sync_is_not_a_duplicate() {
        let stats = Stats::default();
        let mut state = State::default();
        live(&mut state, 0, 10, &stats);
        live(&mut state, 2, 30, &stats);
        state.on_synced(stamp(1, 20), 40, &stats);
        state.on_synced(stamp(2, 30), 40, &stats);
        assert_eq!(read(&stats.overlap), 1);
        assert_eq!(read(&stats.duplicates), 0);
        live(&mut state, 2, 30, &stats);
        state.on_synced(stamp(1, 20), 50, &stats);
        assert_eq!(read(&stats.duplicates), 2, "the same way twice");
        assert_eq!((read(&stats.live), read(&stats.synced)), (2, 2));
        assert_eq!(stats.latency.snapshot().count(), 2, "live posts only");
        assert!(state.is_complete(&expecting(3)));
        assert_eq!(state.lost(&expecting(5)), 2);
    }

    #[test]
    fn catch_up_needs_every_post_up_to_one_sent_after_the_drop() {
        let stats = Stats::default();
        let mut state = State::default();
        live(&mut state, 0, 10, &stats);
        state.reconnect_at = Some(100);
        live(&mut state, 3, 150, &stats);
        assert_eq!(read(&stats.caught_up), 0, "posts 1 and 2 missing");
        state.on_synced(stamp(1, 50), 160, &stats);
        assert_eq!(read(&stats.caught_up), 0);
        state.on_synced(stamp(2, 90), 170, &stats);
        assert_eq!(read(&stats.caught_up), 1, "the sync filled the prefix");
        assert_eq!(stats.catch_up.snapshot().max(), 70);
    }

    #[test]
    fn the_resume_point_is_the_last_live_event_only_after_a_completed_sync() {
        let stats = Stats::default();
        let mut state = State {
            sync_done: true,
            ..State::default()
        };
        live(&mut state, 0, 10, &stats);
        state.end_session();
        assert_eq!(state.cursor.as_deref(), Some("e0"));
        apply_synced(&mut state, &synced_envelope(1, "s1"), 20, &stats);
        live(&mut state, 5, 30, &stats);
        state.end_session();
        assert_eq!(
            state.cursor.as_deref(),
            Some("s1"),
            "the sync had not completed"
        );
        state.sync_done = true;
        live(&mut state, 6, 40, &stats);
        state.end_session();
        assert_eq!(state.cursor.as_deref(), Some("e6"));
    }

    fn synced_envelope(seq: u64, id: &str) -> Value {
        let text = super::super::post::text(stamp(seq, 1), 40);
        json!({ "eventId": id, "data": { "text": text } })
    }

    #[test]
    fn acks_must_say_ok() {
        assert_eq!(
            ok_data(json!({"ok": true, "data": {"room": "r"}}), JOIN).expect("ok"),
            json!({"room": "r"})
        );
        let refused = ok_data(json!({"ok": false, "error": {"code": "FORBIDDEN"}}), JOIN)
            .expect_err("refused");
        assert!(refused.to_string().contains("FORBIDDEN"));
    }
}
