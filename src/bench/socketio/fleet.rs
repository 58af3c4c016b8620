//! All clients of one run, as tasks of this process: the multi-threaded
//! runtime spreads them over its worker threads (one per core), so one
//! process holds every client (up to [`MAX_CLIENTS`], under `ulimit -n`).
//!
//! Client `i` starts at `i / --connect-rate` seconds; the fleet waits until
//! every first attempt has finished, then steers all clients at once through
//! one watch channel ([`Control`]): reconnect now, here is what to expect,
//! stop.

use super::api::Server;
use super::client::{self, Control, Outcome, Shared, Stats};
use crate::bench::error::BenchError;
use crate::bench::ledger::TopicExpectation;
use crate::bench::payload::unix_micros;
use crate::bench::progress::Progress;
use crate::bench::report::shout;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Most clients one run may have (each is one socket; stay under `ulimit -n`).
pub const MAX_CLIENTS: usize = 19_000;

/// How often the progress line is refreshed while waiting.
const TICK: Duration = Duration::from_millis(200);

/// How the clients connect.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// New sessions per second.
    pub connect_rate: f64,
    /// Deadline of one connect-and-join.
    pub connect_timeout: Duration,
}

/// The clients' merged final figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ending {
    /// Acknowledged posts never applied, over all clients.
    pub lost: u64,
    /// Clients that lost at least one post.
    pub incomplete: u64,
    /// Clients whose task ended abnormally (a panic).
    pub crashed: u64,
}

/// The clients of a run.
pub struct Fleet {
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
    tasks: JoinSet<Outcome>,
    clients: usize,
    /// When every first attempt must have ended (the last start plus its timeout).
    connect_deadline: Instant,
}

/// Slack beyond the last client's connect timeout before the fleet gives up waiting.
const CONNECT_SLACK: Duration = Duration::from_secs(5);

impl Fleet {
    /// Starts `clients` clients of `server` at `pace`.
    pub fn start(server: Arc<Server>, clients: usize, pace: Pace) -> Self {
        let shared = Arc::new(Shared {
            server,
            connect_timeout: pace.connect_timeout,
            stats: Stats::default(),
        });
        let (control, watcher) = watch::channel(Control::default());
        let began = Instant::now();
        let mut tasks = JoinSet::new();
        for index in 0..clients {
            let start_at = began + Duration::from_secs_f64(index as f64 / pace.connect_rate);
            tasks.spawn(client::run(
                shared.clone(),
                index,
                watcher.clone(),
                start_at,
            ));
        }
        let last_start = Duration::from_secs_f64(clients as f64 / pace.connect_rate);
        Self {
            shared,
            control,
            tasks,
            clients,
            connect_deadline: began + last_start + pace.connect_timeout + CONNECT_SLACK,
        }
    }

    /// The live figures.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// Waits until every client has tried to connect; fails (after
    /// stopping them all) when any could not connect and join.
    pub async fn wait_connected(&mut self, progress: &mut Progress) -> Result<(), BenchError> {
        let total = self.clients as u64;
        loop {
            let stats = self.stats();
            let attempted = stats.attempted.load(Ordering::Relaxed);
            let failed = stats.connect_failures.load(Ordering::Relaxed);
            if attempted >= total {
                break;
            }
            if Instant::now() > self.connect_deadline {
                stats.problem(&format!(
                    "only {attempted} of {total} clients finished connecting by the deadline"
                ));
                stats
                    .connect_failures
                    .fetch_add(total - attempted, Ordering::Relaxed);
                break;
            }
            progress.update(&format!(
                "connecting {attempted}/{total} · joined {} · failed {failed}",
                stats.connected.load(Ordering::Relaxed)
            ));
            tokio::time::sleep(TICK).await;
        }
        let failed = self.stats().connect_failures.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let message = format!(
            "{failed} of {total} clients could not connect and join: {}",
            self.stats().problems().join("; ")
        );
        self.stop().await;
        eprintln!("{}", shout("socketio", std::slice::from_ref(&message)));
        Err(BenchError::run(message))
    }

    /// Tells every client to drop its session and resume now.
    pub fn reconnect(&self) {
        self.control.send_modify(|control| {
            control.epoch += 1;
            control.reconnect_at_us = unix_micros();
        });
    }

    /// Tells every client what it must have; complete clients finish.
    pub fn expect(&self, expectation: TopicExpectation) {
        self.control
            .send_modify(|control| control.expect = Some(Arc::new(expectation)));
    }

    /// Waits up to `drain` for every client to finish, then stops the rest;
    /// returns when all have ended.
    pub async fn drain(&mut self, drain: Duration, progress: &mut Progress) -> Ending {
        let deadline = Instant::now() + drain;
        let mut ending = Ending::default();
        loop {
            let next = tokio::select! {
                next = self.tasks.join_next() => next,
                _ = tokio::time::sleep_until(deadline) => break,
            };
            let Some(joined) = next else {
                return ending;
            };
            note(&mut ending, joined);
            progress.update(&format!(
                "draining · {} clients still waiting",
                self.tasks.len()
            ));
        }
        let rest = self.stop().await;
        Ending {
            lost: ending.lost + rest.lost,
            incomplete: ending.incomplete + rest.incomplete,
            crashed: ending.crashed + rest.crashed,
        }
    }

    /// Stops every client and waits for them.
    pub async fn stop(&mut self) -> Ending {
        self.control.send_modify(|control| control.stop = true);
        let mut ending = Ending::default();
        while let Some(joined) = self.tasks.join_next().await {
            note(&mut ending, joined);
        }
        ending
    }
}

/// Adds one client's outcome.
fn note(ending: &mut Ending, joined: Result<Outcome, tokio::task::JoinError>) {
    match joined {
        Ok(outcome) => {
            ending.lost += outcome.lost;
            ending.incomplete += u64::from(outcome.lost > 0);
        }
        Err(_) => ending.crashed += 1,
    }
}
