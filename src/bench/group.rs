//! A group of subscribers driven by [`Command`]s, reporting [`GroupEvent`]s.
//!
//! [`run_group`] is the same whether the group lives in the coordinating
//! process or in a worker process: it starts the subscribers at the requested
//! connection rate, says `ready` once every first attempt has finished,
//! forwards reconnect/finish/stop commands to the subscribers and reports the
//! merged figures when the last subscriber is done.

use super::error::BenchError;
use super::h2_pool::H2Pool;
use super::payload::unix_micros;
use super::protocol::{Command, GroupEvent, GroupJob, GroupResult};
use super::subscriber::{self, Context, Control, GroupStats, Outcome, Source, SubscriberSpec};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often a group reports its counters.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Runs one group until its subscribers are done, then reports `done`.
pub async fn run_group(mut commands: mpsc::Receiver<Command>, events: mpsc::Sender<GroupEvent>) {
    let job = match commands.recv().await {
        Some(Command::Start(job)) => *job,
        other => {
            let message = format!("a group must be started first, got {other:?}");
            let _ = events.send(GroupEvent::Failed { message }).await;
            return;
        }
    };
    if let Some(message) = job.problem() {
        let _ = events.send(GroupEvent::Failed { message }).await;
        return;
    }
    let specs = match specs_of(&job) {
        Ok(specs) => specs,
        Err(err) => {
            let message = err.to_string();
            let _ = events.send(GroupEvent::Failed { message }).await;
            return;
        }
    };
    let result = drive(job, specs, commands, &events).await;
    let _ = events
        .send(GroupEvent::Done {
            result: Box::new(result),
        })
        .await;
}

/// Sums of the subscribers' outcomes.
#[derive(Debug, Default)]
struct Outcomes {
    unique: u64,
    lost: u64,
    incomplete: u64,
}

impl Outcomes {
    fn add(&mut self, outcome: Outcome) {
        self.unique += outcome.unique;
        self.lost += outcome.lost;
        self.incomplete += u64::from(outcome.incomplete);
    }
}

/// What each subscriber of the job listens to: subscriber `i` to topic
/// `i mod topics`, or chat user `i` to its own stream (and its rooms).
fn specs_of(job: &GroupJob) -> Result<Vec<SubscriberSpec>, BenchError> {
    (job.first..job.first + job.count)
        .map(|index| match &job.chat {
            None => {
                let topic = index % job.topics.len();
                Ok(SubscriberSpec {
                    topics: vec![topic as u32],
                    source: Source::Topic(job.topics[topic].clone()),
                    server: (!job.edges.is_empty())
                        .then(|| job.edges[index % job.edges.len()].clone()),
                })
            }
            Some(users) => Ok(SubscriberSpec {
                topics: users.layout.rooms_of(index),
                source: Source::ChatUser(users.token(index)?),
                server: None,
            }),
        })
        .collect()
}

/// Spawns the subscribers, paced at the job's connection rate.
fn spawn_subscribers(
    job: &GroupJob,
    specs: Vec<SubscriberSpec>,
    ctx: &Arc<Context>,
    control: &watch::Receiver<Control>,
) -> JoinSet<Outcome> {
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    for (local, spec) in specs.into_iter().enumerate() {
        let at = start + Duration::from_secs_f64(local as f64 / job.connect_rate);
        tasks.spawn(subscriber::run(spec, ctx.clone(), control.clone(), at));
    }
    tasks
}

/// Applies one command; returns the drain deadline it sets, if any.
fn apply(command: Option<Command>, control: &watch::Sender<Control>) -> Option<Instant> {
    match command {
        Some(Command::Reconnect) => {
            control.send_modify(|c| {
                c.reconnect_epoch += 1;
                c.reconnect_at_us = unix_micros();
            });
            None
        }
        Some(Command::Finish { expect, drain_ms }) => {
            control.send_modify(|c| c.expect = Some(Arc::new(expect)));
            Some(Instant::now() + Duration::from_millis(drain_ms))
        }
        Some(Command::Stop) | None => {
            control.send_modify(|c| c.stop = true);
            None
        }
        Some(Command::Start(_)) => None,
    }
}

/// Sends `ready` once every subscriber has made its first attempt.
async fn announce_ready(
    ready: &mut bool,
    stats: &GroupStats,
    count: usize,
    events: &mpsc::Sender<GroupEvent>,
) {
    if *ready || stats.attempted.load(Ordering::Relaxed) < count as u64 {
        return;
    }
    *ready = true;
    let _ = events
        .send(GroupEvent::Ready {
            snapshot: stats.snapshot(),
            problems: stats.problems(),
        })
        .await;
}

/// Runs the subscribers and the command loop; returns the group's figures.
async fn drive(
    job: GroupJob,
    specs: Vec<SubscriberSpec>,
    mut commands: mpsc::Receiver<Command>,
    events: &mpsc::Sender<GroupEvent>,
) -> GroupResult {
    let ctx = Arc::new(Context {
        target: job.target.clone(),
        transport: job.transport,
        connect_timeout: Duration::from_millis(job.connect_timeout_ms),
        h2: job
            .h2_streams
            .map(|streams| H2Pool::new(job.target.clone(), streams)),
        stats: GroupStats::default(),
    });
    let (control, control_rx) = watch::channel(Control::default());
    let mut tasks = spawn_subscribers(&job, specs, &ctx, &control_rx);
    let mut ticker = tokio::time::interval(PROGRESS_EVERY);
    let mut ready = false;
    let mut commands_open = true;
    let mut deadline: Option<Instant> = None;
    let mut outcomes = Outcomes::default();
    loop {
        announce_ready(&mut ready, &ctx.stats, job.count, events).await;
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(outcome)) => outcomes.add(outcome),
                Some(Err(err)) => ctx.stats.problem(&format!("a subscriber task failed: {err}")),
            },
            command = commands.recv(), if commands_open => {
                commands_open = command.is_some();
                if let Some(at) = apply(command, &control) {
                    deadline = Some(at);
                }
            }
            _ = sleep_until_some(deadline) => {
                control.send_modify(|c| c.stop = true);
                deadline = None;
            }
            _ = ctx.stats.attempted_changed.notified(), if !ready => {}
            _ = ticker.tick() => {
                let _ = events.send(GroupEvent::Progress { snapshot: ctx.stats.snapshot() }).await;
            }
        }
    }
    announce_ready(&mut ready, &ctx.stats, job.count, events).await;
    result_of(&job, &ctx.stats, &outcomes)
}

/// Sleeps until the deadline, or forever when there is none.
pub(crate) async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The group's final figures.
fn result_of(job: &GroupJob, stats: &GroupStats, outcomes: &Outcomes) -> GroupResult {
    let read = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    GroupResult {
        totals: stats.snapshot(),
        subscribers: job.count as u64,
        unique: outcomes.unique,
        lost: outcomes.lost,
        incomplete: outcomes.incomplete,
        out_of_range: read(&stats.out_of_range),
        misrouted: read(&stats.misrouted),
        foreign: read(&stats.foreign),
        gaps: read(&stats.gaps),
        server_errors: read(&stats.server_errors),
        server_closes: read(&stats.server_closes),
        read_errors: read(&stats.read_errors),
        problems: stats.problems(),
        latency: stats.latency.snapshot(),
        connect_time: stats.connect_time.snapshot(),
        catch_up: stats.catch_up.snapshot(),
    }
}
