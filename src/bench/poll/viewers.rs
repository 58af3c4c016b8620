//! Live viewers (`--mode live`): V viewers poll every interval of one
//! stream on its boundary, by the server's clock.
//!
//! Each connection carries `--viewers-per-connection` viewers (1 by
//! default: one keep-alive connection each); their polls of an interval are
//! written together (pipelined) and answered in order. A connection asks for
//! interval `T` at `close(T) − lead` on the synced clock (`T + 250 ms` by the
//! server), so with `--lead 0` the poll leaves as `T` closes, and with a lead
//! it waits at the server for the close. For every answer the delay from
//! `close(T)` to its arrival is recorded (server clock), then the connection
//! polls `T + 250`: a viewer that fell behind asks for already-closed
//! intervals until it has caught up, so no interval is skipped.
//!
//! Figures are kept per [`Phase`]; a poll belongs to the phase current
//! when it was sent. Every 200 body is checked against its interval's
//! reference ([`IntervalBodies`]) in every phase.

use super::api::{Viewer, ViewerRequests};
use super::bodies::IntervalBodies;
use super::clock::{INTERVAL_MS, ServerClock, close_us, interval_containing};
use crate::bench::error::BenchError;
use crate::bench::histogram::{AtomicHistogram, Histogram};
use crate::bench::keepalive::KeepAlive;
use crate::bench::target::Target;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Pause before a failed connection is opened again.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);

/// The parts of a live run figures are kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connections opening, first polls: not measured.
    Warmup = 0,
    /// Polling alone.
    Quiet = 1,
    /// Polling while writers ingest hearts, chats and answers.
    Ingest = 2,
    /// Shutting down: not measured, connections stop after their poll.
    Stopping = 3,
}

impl Phase {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Warmup,
            1 => Self::Quiet,
            2 => Self::Ingest,
            _ => Self::Stopping,
        }
    }

    /// Index into the measured phases (`None` for warm-up and stopping).
    fn measured(self) -> Option<usize> {
        match self {
            Self::Quiet => Some(0),
            Self::Ingest => Some(1),
            Self::Warmup | Self::Stopping => None,
        }
    }
}

/// Counters of one measured phase.
#[derive(Debug, Default)]
struct PhaseCounters {
    delay: AtomicHistogram,
    polls: AtomicU64,
    other_status: AtomicU64,
    errors: AtomicU64,
    early: AtomicU64,
}

/// The figures of one measured phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseFigures {
    /// Delay from the interval's close to the answer, µs (server clock; 200 answers only).
    pub delay: Histogram,
    /// Answers received.
    pub polls: u64,
    /// Answers other than 200.
    pub other_status: u64,
    /// Polls that got no answer (connection errors).
    pub errors: u64,
    /// 200 answers that arrived before their interval's close by the synced
    /// clock (clock error; recorded with delay 0).
    pub early: u64,
}

/// State shared by the controller and every connection.
#[derive(Debug)]
struct Shared {
    phase: AtomicU8,
    counters: [PhaseCounters; 2],
    bodies: IntervalBodies,
    connected: AtomicU64,
    connect_failures: AtomicU64,
    problems: Mutex<Vec<String>>,
}

impl Shared {
    fn note(&self, problem: &str) {
        let mut problems = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        crate::bench::protocol::note_problem(&mut problems, problem);
    }
}

/// What the viewers need.
#[derive(Debug, Clone)]
pub struct LivePlan {
    /// The server.
    pub target: Target,
    /// Request builder for the stream.
    pub requests: ViewerRequests,
    /// Every viewer.
    pub viewers: Arc<Vec<Viewer>>,
    /// Viewers sharing one connection.
    pub per_connection: usize,
    /// Connections opened per second.
    pub connect_rate: f64,
    /// How long before an interval's close its poll is sent.
    pub lead: Duration,
    /// The server's clock.
    pub clock: ServerClock,
}

/// The running viewers.
#[derive(Debug)]
pub struct Viewers {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
    connections: usize,
}

impl Viewers {
    /// Opens the connections at the plan's rate; each starts polling once open.
    pub fn start(plan: LivePlan) -> Self {
        let shared = Arc::new(Shared {
            phase: AtomicU8::new(Phase::Warmup as u8),
            counters: Default::default(),
            bodies: IntervalBodies::default(),
            connected: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            problems: Mutex::new(Vec::new()),
        });
        let groups: Vec<Vec<Viewer>> = plan
            .viewers
            .chunks(plan.per_connection.max(1))
            .map(<[Viewer]>::to_vec)
            .collect();
        let connections = groups.len();
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        let gap = Duration::from_secs_f64(1.0 / plan.connect_rate);
        for (index, group) in groups.into_iter().enumerate() {
            let shared = Arc::clone(&shared);
            let plan = plan.clone();
            let opens_at = started + gap.mul_f64(index as f64);
            tasks.spawn(async move {
                tokio::time::sleep_until(opens_at).await;
                connection(&plan, &group, &shared).await;
            });
        }
        Self {
            shared,
            tasks,
            connections,
        }
    }

    /// Number of connections.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// Connections open now, and first connections that failed.
    pub fn connected(&self) -> (u64, u64) {
        (
            self.shared.connected.load(Ordering::Relaxed),
            self.shared.connect_failures.load(Ordering::Relaxed),
        )
    }

    /// Switches the phase new polls are counted in.
    pub fn set_phase(&self, phase: Phase) {
        self.shared.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Figures of a measured phase so far.
    pub fn figures(&self, phase: Phase) -> PhaseFigures {
        let Some(index) = phase.measured() else {
            return PhaseFigures::default();
        };
        let counters = &self.shared.counters[index];
        PhaseFigures {
            delay: counters.delay.snapshot(),
            polls: counters.polls.load(Ordering::Relaxed),
            other_status: counters.other_status.load(Ordering::Relaxed),
            errors: counters.errors.load(Ordering::Relaxed),
            early: counters.early.load(Ordering::Relaxed),
        }
    }

    /// The byte-identity check over every phase so far.
    pub fn identity(&self) -> super::bodies::Identity {
        self.shared.bodies.identity()
    }

    /// The first few distinct problems seen.
    pub fn problems(&self) -> Vec<String> {
        self.shared
            .problems
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops polling (each connection after its current poll) and closes the connections.
    pub async fn stop(mut self) -> Result<(), BenchError> {
        self.set_phase(Phase::Stopping);
        while let Some(joined) = self.tasks.join_next().await {
            joined.map_err(|err| BenchError::context("a viewer connection", err))?;
        }
        Ok(())
    }
}

/// One connection: opens, then polls every interval for its viewers until stopped.
async fn connection(plan: &LivePlan, group: &[Viewer], shared: &Shared) {
    let mut connection = match KeepAlive::connect(&plan.target).await {
        Ok(connection) => connection,
        Err(err) => {
            shared.connect_failures.fetch_add(1, Ordering::Relaxed);
            shared.note(&err.to_string());
            return;
        }
    };
    shared.connected.fetch_add(1, Ordering::Relaxed);
    let lead_us = i64::try_from(plan.lead.as_micros()).unwrap_or(0);
    let mut interval = interval_containing(plan.clock.now_us() + lead_us);
    loop {
        tokio::time::sleep(plan.clock.until(close_us(interval) - lead_us)).await;
        let phase = Phase::from_u8(shared.phase.load(Ordering::Relaxed));
        if phase == Phase::Stopping {
            break;
        }
        let counters = phase.measured().map(|index| &shared.counters[index]);
        if let Err(err) = poll(&mut connection, plan, group, interval, counters, shared).await {
            if let Some(counters) = counters {
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            shared.note(&err.to_string());
            match reconnect(plan, shared).await {
                Some(fresh) => connection = fresh,
                None => break,
            }
        }
        interval += INTERVAL_MS;
    }
    shared.connected.fetch_sub(1, Ordering::Relaxed);
}

/// Opens the connection again, retrying until it works or the run stops.
async fn reconnect(plan: &LivePlan, shared: &Shared) -> Option<KeepAlive> {
    loop {
        tokio::time::sleep(RECONNECT_PAUSE).await;
        if Phase::from_u8(shared.phase.load(Ordering::Relaxed)) == Phase::Stopping {
            return None;
        }
        if let Ok(connection) = KeepAlive::connect(&plan.target).await {
            return Some(connection);
        }
    }
}

/// Sends the group's polls of `interval` and reads every answer.
async fn poll(
    connection: &mut KeepAlive,
    plan: &LivePlan,
    group: &[Viewer],
    interval: i64,
    counters: Option<&PhaseCounters>,
    shared: &Shared,
) -> Result<(), BenchError> {
    let mut requests = Vec::with_capacity(group.len() * 512);
    for viewer in group {
        requests.extend_from_slice(&plan.requests.poll(interval, viewer)?);
    }
    connection.send(&requests).await?;
    for _ in group {
        let answer = connection.receive().await?;
        let delay_us = plan.clock.now_us() - close_us(interval);
        if answer.status != 200 {
            shared.note(&format!(
                "a poll of {interval} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
            ));
        } else {
            shared.bodies.check(interval, answer.body);
        }
        let Some(counters) = counters else {
            continue;
        };
        counters.polls.fetch_add(1, Ordering::Relaxed);
        if answer.status != 200 {
            counters.other_status.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if delay_us < 0 {
            counters.early.fetch_add(1, Ordering::Relaxed);
        }
        counters.delay.record(u64::try_from(delay_us).unwrap_or(0));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_quiet_and_ingest_are_measured() {
        assert_eq!(Phase::Warmup.measured(), None);
        assert_eq!(Phase::Quiet.measured(), Some(0));
        assert_eq!(Phase::Ingest.measured(), Some(1));
        assert_eq!(Phase::Stopping.measured(), None);
        for phase in [Phase::Warmup, Phase::Quiet, Phase::Ingest, Phase::Stopping] {
            assert_eq!(Phase::from_u8(phase as u8), phase);
        }
    }
}
