//! The users' notification streams of a run, as tasks of this process (the
//! multi-threaded runtime spreads them over its threads; one process holds
//! up to [`super::args::MAX_USERS`] of them).
//!
//! User `i` opens its stream at `i / connect-rate` seconds; every
//! notification it reads becomes a [`Receipt`] (the user, the notification,
//! when its bytes were read), kept for the accounting at the end. A stream
//! the server ends (or that breaks) is reopened with `Last-Event-ID` of
//! its last notification, as a browser's `EventSource` does, until the run
//! stops the listeners.
//!
//! Invariants: every user makes exactly one first attempt, counted in
//! [`Stats::attempted`]; receipts are kept in arrival order per user.

use super::identity::Realm;
use super::notice::Notice;
use super::stream::{Incoming, NotificationStream};
use crate::bench::error::BenchError;
use crate::bench::payload::unix_micros;
use crate::bench::progress::Progress;
use crate::bench::protocol::note_problem;
use crate::bench::report::shout;
use crate::bench::target::Target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Longest pause between two attempts to reopen a stream.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Progress refresh while connecting.
const TICK: Duration = Duration::from_millis(200);

/// Slack beyond the last stream's connect timeout before waiting gives up.
const CONNECT_SLACK: Duration = Duration::from_secs(5);

/// One notification as a user received it.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// The user's index.
    pub user: u32,
    /// The notification.
    pub notice: Notice,
    /// When its bytes were read (unix µs).
    pub received_us: u64,
}

/// Live counters of the streams.
#[derive(Debug, Default)]
pub struct Stats {
    /// First attempts finished.
    pub attempted: AtomicU64,
    /// Streams open now.
    pub connected: AtomicU64,
    /// First attempts that failed.
    pub connect_failures: AtomicU64,
    /// Streams reopened after the server ended them or they broke.
    pub reconnects: AtomicU64,
    /// Notifications received.
    pub received: AtomicU64,
    /// `error` events and unreadable notifications.
    pub problems_seen: AtomicU64,
    /// The first few distinct problems.
    problems: Mutex<Vec<String>>,
}

impl Stats {
    /// Notes a problem (the first few distinct ones are kept).
    fn problem(&self, message: &str) {
        if let Ok(mut problems) = self.problems.lock() {
            note_problem(&mut problems, message);
        }
    }

    /// The problems noted so far.
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Reads a counter.
    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// What every listener shares.
struct Shared {
    target: Target,
    realm: Realm,
    connect_timeout: Duration,
    stats: Stats,
    receipts: Mutex<Vec<Receipt>>,
}

/// How the streams are opened.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Streams opened per second.
    pub connect_rate: f64,
    /// Deadline of one open (until `connected`).
    pub connect_timeout: Duration,
}

/// The streams of a run.
pub struct Listeners {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    users: usize,
    connect_deadline: Instant,
}

impl Listeners {
    /// Starts one listener per token (user `i` holds `tokens[i]`).
    pub fn start(target: &Target, realm: &Realm, tokens: Vec<String>, pace: Pace) -> Self {
        let shared = Arc::new(Shared {
            target: target.clone(),
            realm: realm.clone(),
            connect_timeout: pace.connect_timeout,
            stats: Stats::default(),
            receipts: Mutex::new(Vec::new()),
        });
        let (stop, watcher) = watch::channel(false);
        let began = Instant::now();
        let users = tokens.len();
        let mut tasks = JoinSet::new();
        for (index, token) in tokens.into_iter().enumerate() {
            let at = began + Duration::from_secs_f64(index as f64 / pace.connect_rate);
            let user = u32::try_from(index).unwrap_or(u32::MAX);
            tasks.spawn(listen(shared.clone(), user, token, watcher.clone(), at));
        }
        let last = Duration::from_secs_f64(users as f64 / pace.connect_rate);
        Self {
            shared,
            stop,
            tasks,
            users,
            connect_deadline: began + last + pace.connect_timeout + CONNECT_SLACK,
        }
    }

    /// The live counters.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Waits until every stream has made its first attempt; fails (after
    /// stopping them all) when any could not open.
    pub async fn wait_connected(&mut self, progress: &mut Progress) -> Result<(), BenchError> {
        let total = self.users as u64;
        loop {
            let stats = self.stats();
            let attempted = Stats::read(&stats.attempted);
            if attempted >= total {
                break;
            }
            if Instant::now() > self.connect_deadline {
                stats
                    .connect_failures
                    .fetch_add(total - attempted, Ordering::Relaxed);
                stats.problem(&format!(
                    "only {attempted} of {total} streams finished opening by the deadline"
                ));
                break;
            }
            progress.update(&format!(
                "opening notification streams {attempted}/{total} · open {} · failed {}",
                Stats::read(&stats.connected),
                Stats::read(&stats.connect_failures)
            ));
            tokio::time::sleep(TICK).await;
        }
        let failed = Stats::read(&self.stats().connect_failures);
        if failed == 0 {
            return Ok(());
        }
        let message = format!(
            "{failed} of {total} notification streams could not open: {}",
            self.stats().problems().join("; ")
        );
        self.stop().await;
        eprintln!("{}", shout("tickets", std::slice::from_ref(&message)));
        Err(BenchError::run(message))
    }

    /// Stops every listener, waits for them, and returns every receipt.
    pub async fn stop(&mut self) -> Vec<Receipt> {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        self.shared
            .receipts
            .lock()
            .map(|mut receipts| std::mem::take(&mut *receipts))
            .unwrap_or_default()
    }
}

/// Opens a stream within the connect timeout.
async fn open(
    shared: &Shared,
    token: &str,
    after: Option<&str>,
) -> Result<NotificationStream, BenchError> {
    let attempt = NotificationStream::open(&shared.target, &shared.realm, token, after);
    tokio::time::timeout(shared.connect_timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(BenchError::run(format!(
                "opening the notification stream took longer than {:?}",
                shared.connect_timeout
            )))
        })
}

/// Keeps what one read brought.
fn keep(shared: &Shared, user: u32, batch: &mut Vec<Incoming>) {
    let received_us = unix_micros();
    let stats = &shared.stats;
    let mut receipts = Vec::new();
    for incoming in batch.drain(..) {
        match incoming {
            Incoming::Notification(notice) => receipts.push(Receipt {
                user,
                notice,
                received_us,
            }),
            Incoming::Problem(problem) => {
                stats.problems_seen.fetch_add(1, Ordering::Relaxed);
                stats.problem(&problem);
            }
            Incoming::Control => {}
        }
    }
    if receipts.is_empty() {
        return;
    }
    stats
        .received
        .fetch_add(receipts.len() as u64, Ordering::Relaxed);
    if let Ok(mut all) = shared.receipts.lock() {
        all.extend(receipts);
    }
}

/// Reopens a stream after `after`, with backoff, until it opens or the run stops.
async fn reopen(
    shared: &Shared,
    token: &str,
    after: Option<&str>,
    stop: &mut watch::Receiver<bool>,
) -> Option<NotificationStream> {
    let mut backoff = Duration::from_millis(50);
    while !*stop.borrow() {
        match open(shared, token, after).await {
            Ok(stream) => return Some(stream),
            Err(err) => shared.stats.problem(&format!("reopening failed: {err}")),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            changed = stop.changed() => if changed.is_err() { return None },
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    None
}

/// One user's listener: open at `start_at`, read until stopped, reopen when ended.
async fn listen(
    shared: Arc<Shared>,
    user: u32,
    token: String,
    mut stop: watch::Receiver<bool>,
    start_at: Instant,
) {
    tokio::time::sleep_until(start_at).await;
    let stats = &shared.stats;
    let first = open(&shared, &token, None).await;
    stats.attempted.fetch_add(1, Ordering::Relaxed);
    let mut stream = match first {
        Ok(stream) => stream,
        Err(err) => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            stats.problem(&format!("open failed: {err}"));
            return;
        }
    };
    stats.connected.fetch_add(1, Ordering::Relaxed);
    let mut batch = Vec::new();
    loop {
        let read = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            read = stream.read(&mut batch) => read,
        };
        keep(&shared, user, &mut batch);
        match read {
            Ok(true) => continue,
            Ok(false) => stats.problem("the server ended a notification stream"),
            Err(err) => stats.problem(&format!("reading a notification stream: {err}")),
        }
        stats.connected.fetch_sub(1, Ordering::Relaxed);
        let after = stream.last_id().map(str::to_string);
        let Some(reopened) = reopen(&shared, &token, after.as_deref(), &mut stop).await else {
            return;
        };
        stream = reopened;
        stats.connected.fetch_add(1, Ordering::Relaxed);
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
    }
    stats.connected.fetch_sub(1, Ordering::Relaxed);
}
