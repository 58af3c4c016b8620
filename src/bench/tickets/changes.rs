//! The agent's ticket changes, each owing notifications to known users:
//!
//! * create: `POST /ticket` with `assignee` = the next user round robin,
//!   who is owed an `assignment`;
//! * reassign: `PUT /ticket/{id}/assignee` of a ticket of the set-up pool
//!   (created unassigned, so it notified nobody) to the next user: the new
//!   assignee is owed an `assignment`, the previous one (if any) a
//!   `reassignment`;
//! * mixed: change `i` creates when `i` is even, reassigns when odd.
//!
//! `senders` tasks send the changes: sender `k` sends changes `k, k + W,
//! k + 2W, …` one at a time, change `i` at `i / rate` seconds (at once when
//! it is late, or when there is no rate), and reassigns only its own pool
//! tickets, so one ticket never has two changes in flight and its previous
//! assignee is always known. The actor (the agent) never notifies itself.
//!
//! Invariants: an expectation is recorded only for an acknowledged change,
//! with the time its request was sent; a failed change owes nothing (its
//! outcome is unknown) and fails the run; after [`MAX_FAILURES`] failures
//! every sender stops.

use super::api::Api;
use super::identity::Identity;
use super::ledger::Expected;
use super::notice::Kind;
use crate::bench::error::BenchError;
use crate::bench::histogram::Histogram;
use crate::bench::payload::unix_micros;
use crate::bench::progress::Progress;
use crate::bench::protocol::note_problem;
use clap::ValueEnum;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Pool tickets each sender reassigns in turn.
pub const POOL_PER_SENDER: usize = 4;

/// Failed changes after which every sender stops.
pub const MAX_FAILURES: u64 = 100;

/// Progress refresh while changing.
const TICK: Duration = Duration::from_millis(250);

/// Which changes an agent makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChangeKind {
    /// Create a ticket assigned to the user.
    Create,
    /// Reassign a pool ticket to the user (the previous assignee is told too).
    Reassign,
    /// Alternately create and reassign.
    Mixed,
}

impl ChangeKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Reassign => "reassign",
            Self::Mixed => "mixed",
        }
    }

    /// Whether change `index` creates a ticket.
    fn creates(self, index: u64) -> bool {
        match self {
            Self::Create => true,
            Self::Reassign => false,
            Self::Mixed => index.is_multiple_of(2),
        }
    }
}

/// What to change, how fast and until when.
#[derive(Debug, Clone, Copy)]
pub struct ChangePlan<'a> {
    /// The changes.
    pub kind: ChangeKind,
    /// Who notifications go to: the recipients' subjects, by index.
    pub recipients: &'a [String],
    /// Changes per second over all senders (`None`: as fast as answered).
    pub rate: Option<f64>,
    /// Stop scheduling changes after this long.
    pub duration: Option<Duration>,
    /// Stop once the acknowledged changes owe this many notifications.
    pub owed_target: Option<u64>,
    /// Concurrent senders.
    pub senders: usize,
    /// The run's id (in the titles).
    pub run: &'a str,
}

/// What the changes did.
#[derive(Debug, Clone, Default)]
pub struct ChangeOutcome {
    /// Changes sent.
    pub sent: u64,
    /// Changes acknowledged.
    pub acknowledged: u64,
    /// Changes that failed.
    pub failed: u64,
    /// The first few distinct failures.
    pub problems: Vec<String>,
    /// Request → acknowledgement, µs.
    pub ack_latency: Histogram,
    /// The notifications the acknowledged changes owe.
    pub expected: Vec<Expected>,
    /// From the first change until the last acknowledgement.
    pub window: Duration,
    /// How long creating the reassignment pool took.
    pub pool_setup: Duration,
}

impl ChangeOutcome {
    fn merge(&mut self, other: ChangeOutcome) {
        self.sent += other.sent;
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
        for problem in &other.problems {
            note_problem(&mut self.problems, problem);
        }
        self.ack_latency.merge(&other.ack_latency);
        self.expected.extend(other.expected);
    }
}

/// A pool ticket and its current assignee.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u64,
    assignee: Option<u32>,
}

/// Live counters over all senders.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    owed: AtomicU64,
}

/// What every sender shares.
struct Shared<'a> {
    api: &'a Api,
    agent: &'a Identity,
    plan: &'a ChangePlan<'a>,
    counters: Counters,
    start: Instant,
}

/// Makes the changes of `plan` as `agent`; returns what they owe.
pub async fn run(
    api: &Api,
    agent: &Identity,
    plan: &ChangePlan<'_>,
    progress: &mut Progress,
) -> Result<ChangeOutcome, BenchError> {
    let began = Instant::now();
    let pool = match plan.kind {
        ChangeKind::Create => Vec::new(),
        _ => create_pool(api, agent, plan).await?,
    };
    let pool_setup = began.elapsed();
    let shared = Shared {
        api,
        agent,
        plan,
        counters: Counters::default(),
        start: Instant::now(),
    };
    let senders = (0..plan.senders).map(|k| {
        let slots = pool
            .iter()
            .skip(k * POOL_PER_SENDER)
            .take(POOL_PER_SENDER)
            .map(|id| Slot {
                id: *id,
                assignee: None,
            })
            .collect();
        send(&shared, k, slots)
    });
    let all = futures_util::future::join_all(senders);
    tokio::pin!(all);
    let mut ticker = tokio::time::interval(TICK);
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut all => break outcomes,
            _ = ticker.tick() => show(&shared, progress),
        }
    };
    let mut total = ChangeOutcome {
        window: shared.start.elapsed(),
        pool_setup,
        ..ChangeOutcome::default()
    };
    for outcome in outcomes {
        total.merge(outcome);
    }
    Ok(total)
}

/// The progress line.
fn show(shared: &Shared<'_>, progress: &mut Progress) {
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let counters = &shared.counters;
    progress.update(&format!(
        "changes sent {} · acknowledged {} · failed {} · notifications owed {}",
        read(&counters.sent),
        read(&counters.acknowledged),
        read(&counters.failed),
        read(&counters.owed)
    ));
}

/// Creates the unassigned tickets the senders reassign.
async fn create_pool(
    api: &Api,
    agent: &Identity,
    plan: &ChangePlan<'_>,
) -> Result<Vec<u64>, BenchError> {
    let count = plan.senders * POOL_PER_SENDER;
    let run = plan.run;
    futures_util::stream::iter(0..count)
        .map(|index| async move {
            let ticket = json!({ "title": format!("bench {run} pool {index}") });
            api.create_ticket(index, agent, ticket)
                .await
                .map(|created| created.id)
        })
        .buffered(plan.senders)
        .try_collect()
        .await
}

/// Whether sender loops must stop before change `index`; sleeps until its time.
async fn wait_turn(shared: &Shared<'_>, index: u64) -> bool {
    let plan = shared.plan;
    let counters = &shared.counters;
    if counters.failed.load(Ordering::Relaxed) >= MAX_FAILURES
        || plan
            .owed_target
            .is_some_and(|target| counters.owed.load(Ordering::Relaxed) >= target)
    {
        return false;
    }
    let offset = plan
        .rate
        .map(|rate| Duration::from_secs_f64(index as f64 / rate));
    let due = offset.unwrap_or_else(|| shared.start.elapsed());
    if plan.duration.is_some_and(|duration| due >= duration) {
        return false;
    }
    if let Some(offset) = offset {
        tokio::time::sleep_until(shared.start + offset).await;
    }
    true
}

/// Sender `k`: changes `k, k + W, …` one at a time.
async fn send(shared: &Shared<'_>, k: usize, mut slots: Vec<Slot>) -> ChangeOutcome {
    let senders = shared.plan.senders as u64;
    let mut outcome = ChangeOutcome::default();
    let mut reassigned = 0usize;
    for index in (k as u64..).step_by(senders as usize) {
        if !wait_turn(shared, index).await {
            break;
        }
        let counters = &shared.counters;
        counters.sent.fetch_add(1, Ordering::Relaxed);
        outcome.sent += 1;
        let sent_us = unix_micros();
        let began = Instant::now();
        let result = if shared.plan.kind.creates(index) || slots.is_empty() {
            create(shared, index, sent_us).await
        } else {
            let at = reassigned % slots.len();
            let slot = &mut slots[at];
            reassigned += 1;
            reassign(shared, index, slot, sent_us).await
        };
        match result {
            Ok(owed) => {
                outcome
                    .ack_latency
                    .record(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
                outcome.acknowledged += 1;
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                counters
                    .owed
                    .fetch_add(owed.len() as u64, Ordering::Relaxed);
                outcome.expected.extend(owed);
            }
            Err(err) => {
                outcome.failed += 1;
                counters.failed.fetch_add(1, Ordering::Relaxed);
                note_problem(&mut outcome.problems, &err.to_string());
            }
        }
    }
    outcome
}

/// The recipient of change `index` (round robin), never `previous`.
fn recipient(index: u64, users: usize, previous: Option<u32>) -> u32 {
    let users = users.max(2) as u64;
    let mut user = (index % users) as u32;
    if previous == Some(user) {
        user = ((u64::from(user) + 1) % users) as u32;
    }
    user
}

/// Creates a ticket assigned to the next user.
async fn create(
    shared: &Shared<'_>,
    index: u64,
    sent_us: u64,
) -> Result<Vec<Expected>, BenchError> {
    let plan = shared.plan;
    let user = recipient(index, plan.recipients.len(), None);
    let ticket = json!({
        "title": format!("bench {} change {index}", plan.run),
        "assignee": plan.recipients[user as usize],
    });
    let created = shared
        .api
        .create_ticket(index as usize, shared.agent, ticket)
        .await?;
    Ok(vec![Expected {
        ticket: created.id,
        user,
        kind: Kind::Assignment,
        sent_us,
    }])
}

/// Reassigns a pool ticket to the next user.
async fn reassign(
    shared: &Shared<'_>,
    index: u64,
    slot: &mut Slot,
    sent_us: u64,
) -> Result<Vec<Expected>, BenchError> {
    let plan = shared.plan;
    let previous = slot.assignee;
    let user = recipient(index, plan.recipients.len(), previous);
    shared
        .api
        .reassign(
            index as usize,
            shared.agent,
            slot.id,
            &plan.recipients[user as usize],
        )
        .await?;
    slot.assignee = Some(user);
    let owe = |user, kind| Expected {
        ticket: slot.id,
        user,
        kind,
        sent_us,
    };
    let mut owed = vec![owe(user, Kind::Assignment)];
    owed.extend(previous.map(|previous| owe(previous, Kind::Reassignment)));
    Ok(owed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_go_round_robin_and_never_stay() {
        assert_eq!(recipient(0, 3, None), 0);
        assert_eq!(recipient(4, 3, None), 1);
        assert_eq!(recipient(4, 3, Some(1)), 2);
        assert_eq!(recipient(5, 3, Some(2)), 0);
    }

    #[test]
    fn mixed_changes_alternate() {
        assert!(ChangeKind::Mixed.creates(0));
        assert!(!ChangeKind::Mixed.creates(1));
        assert!(ChangeKind::Create.creates(1));
        assert!(!ChangeKind::Reassign.creates(0));
    }
}
