//! The `sla` mode's tickets and their verdict.
//!
//! Deadlines run from a ticket's creation, so tickets created over several
//! seconds fall due in one second only if their targets make up for it:
//! the policy gives the four priorities response targets `D, D − 1, D − 2,
//! D − 3` units (`D` = `--due-in` / `--sla-unit`), and the due tickets are
//! created in four one-second windows starting at a whole second `s0`,
//! window `j` with the priority whose target is `D − j`; all of them are due
//! in the second `s0 + D`. The other tickets come after them, their
//! priorities round robin, so their deadlines are all later. Resolution
//! targets are `10 × D` (after the run). Ticket `g` belongs to agent
//! `g mod agents`, who creates it assigned to itself: its SLA
//! notifications (raised by the system) go to that agent only.
//!
//! The verdict ([`judge`]) reads the SLA notifications the agents got:
//! every due ticket's response `slaBreach` must arrive exactly once, never
//! before its deadline; how late after the deadline it arrived is measured
//! (from the stream's receive time, or from the notification's `createdAt`
//! when read back from the inbox after a restart).

use super::api::Api;
use super::identity::{Identity, Population, Realm};
use super::listeners::Receipt;
use super::notice::{Deadline, Kind, Notice};
use crate::bench::error::BenchError;
use crate::bench::histogram::Histogram;
use crate::bench::progress::Progress;
use crate::bench::protocol::note_problem;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Creation windows (one per priority).
pub const WINDOWS: usize = 4;

/// The priority of creation window `j` (target `D − j`): the longest target first.
const WINDOW_PRIORITIES: [&str; WINDOWS] = ["low", "medium", "high", "urgent"];

/// Resolution targets are this many times the due target (after the run).
const RESOLUTION_FACTOR: u64 = 10;

/// Label of the agents' subjects.
pub const AGENT_LABEL: &str = "agent";

/// The SLA policy of a run whose due tickets have target `due_units`.
pub fn policy(due_units: u64) -> Value {
    let mut policy = serde_json::Map::new();
    for (window, priority) in WINDOW_PRIORITIES.iter().enumerate() {
        policy.insert(
            (*priority).to_string(),
            json!({
                "responseMinutes": due_units - window as u64,
                "resolutionMinutes": due_units * RESOLUTION_FACTOR,
            }),
        );
    }
    Value::Object(policy)
}

/// A ticket whose response breach falls due in the measured second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DueTicket {
    /// Its id.
    pub id: u64,
    /// Its agent's index.
    pub agent: u32,
    /// When its first response is due (unix ms, as the server answered).
    pub due_ms: u64,
}

/// What a run created: enough for a later `--observe-only` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaState {
    /// The run's id (in the agents' subjects).
    pub run: String,
    /// Number of agents.
    pub agents: usize,
    /// Tickets created.
    pub created: u64,
    /// The second every due ticket was planned to fall due in (unix ms).
    pub due_second_ms: u64,
    /// The due tickets.
    pub due: Vec<DueTicket>,
    /// When the last due ticket falls due (unix ms).
    pub last_due_ms: u64,
}

impl SlaState {
    /// Writes the state file.
    pub fn save(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string(self)
            .map_err(|err| BenchError::context("encoding the sla state", err))?;
        std::fs::write(path, text)
            .map_err(|err| BenchError::context(format!("writing {}", path.display()), err))
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<Self, BenchError> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| BenchError::usage(format!("reading {}: {err}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|err| BenchError::usage(format!("{} is no sla state: {err}", path.display())))
    }

    /// Due tickets whose deadline is inside the planned second.
    pub fn due_in_second(&self) -> usize {
        let second = self.due_second_ms..self.due_second_ms + 1000;
        self.due
            .iter()
            .filter(|t| second.contains(&t.due_ms))
            .count()
    }

    /// First to last deadline of the due tickets, ms.
    pub fn due_spread_ms(&self) -> u64 {
        let first = self.due.iter().map(|t| t.due_ms).min().unwrap_or(0);
        self.last_due_ms.saturating_sub(first)
    }

    /// The agents' identities (the same subjects as when the tickets were made).
    pub fn agents(&self, realm: &Realm, lifetime: Duration) -> Result<Population, BenchError> {
        Population::mint(
            realm,
            &self.run,
            AGENT_LABEL,
            self.agents,
            &["agent"],
            lifetime,
        )
    }
}

/// The shape of an `sla` creation.
#[derive(Debug, Clone, Copy)]
pub struct SlaPlan {
    /// Tickets created.
    pub tickets: usize,
    /// Of which due in the measured second (created first).
    pub due: usize,
    /// The due tickets' target, in policy units.
    pub due_units: u64,
    /// How long one unit lasts on the server.
    pub unit: Duration,
    /// Creations in flight.
    pub in_flight: usize,
}

/// What creating the tickets took.
#[derive(Debug, Clone)]
pub struct Creation {
    /// The run's state.
    pub state: SlaState,
    /// From the first creation to the last.
    pub took: Duration,
    /// Whether every creation ended before the first due ticket fell due.
    pub done_before_due: bool,
}

/// Unix ms now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The tokio instant of unix time `at_ms`.
fn instant_of(at_ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

/// Creates ticket `g` as its agent, with `priority`; its response deadline.
async fn create_one(
    api: &Api,
    agents: &[Identity],
    run: &str,
    g: usize,
    priority: &str,
) -> Result<DueTicket, BenchError> {
    let agent = &agents[g % agents.len()];
    let ticket = json!({
        "title": format!("bench {run} sla {g}"),
        "priority": priority,
        "assignee": agent.subject,
    });
    let created = api.create_ticket(g, agent, ticket).await?;
    let due_ms = created.response_due_ms.ok_or_else(|| {
        BenchError::run(format!(
            "ticket {} has no sla.responseDueMs: does the server apply the SLA policy?",
            created.id
        ))
    })?;
    Ok(DueTicket {
        id: created.id,
        agent: u32::try_from(g % agents.len()).unwrap_or(u32::MAX),
        due_ms,
    })
}

/// Creates tickets `range` with `priority_of(g)`, `in_flight` at a time.
async fn create_all(
    api: &Api,
    agents: &[Identity],
    run: &str,
    range: std::ops::Range<usize>,
    priority_of: impl Fn(usize) -> &'static str,
    in_flight: usize,
) -> Result<Vec<DueTicket>, BenchError> {
    let made: Vec<_> = futures_util::stream::iter(range)
        .map(|g| create_one(api, agents, run, g, priority_of(g)))
        .buffered(in_flight)
        .collect()
        .await;
    made.into_iter().collect()
}

/// Sets the policy, then creates the due tickets in their windows and the rest after.
pub async fn create(
    api: &Api,
    admin: &Identity,
    agents: &[Identity],
    run: &str,
    plan: SlaPlan,
    progress: &mut Progress,
) -> Result<Creation, BenchError> {
    api.put_sla_policy(admin, policy(plan.due_units)).await?;
    let s0 = (now_ms() / 1000 + 2) * 1000;
    let unit_ms = u64::try_from(plan.unit.as_millis()).unwrap_or(u64::MAX);
    let due_second_ms = s0 + plan.due_units * unit_ms;
    let began = Instant::now();
    let mut due = Vec::with_capacity(plan.due);
    let mut first = 0;
    for (window, priority) in WINDOW_PRIORITIES.iter().enumerate() {
        let count = plan.due / WINDOWS + usize::from(window < plan.due % WINDOWS);
        tokio::time::sleep_until(instant_of(s0 + 1000 * window as u64)).await;
        progress.note(&format!(
            "sla: window {window}: {count} {priority} tickets, due {} s after window 0",
            plan.due_units * unit_ms / 1000
        ));
        let made = create_all(
            api,
            agents,
            run,
            first..first + count,
            |_| priority,
            plan.in_flight,
        );
        due.extend(made.await?);
        first += count;
    }
    progress.note(&format!(
        "sla: {} more tickets, due later…",
        plan.tickets - plan.due
    ));
    let rest = plan.due..plan.tickets;
    create_all(
        api,
        agents,
        run,
        rest,
        |g| WINDOW_PRIORITIES[g % WINDOWS],
        plan.in_flight,
    )
    .await?;
    let last_due_ms = due.iter().map(|t| t.due_ms).max().unwrap_or(due_second_ms);
    let first_due_ms = due.iter().map(|t| t.due_ms).min().unwrap_or(due_second_ms);
    Ok(Creation {
        took: began.elapsed(),
        done_before_due: now_ms() < first_due_ms,
        state: SlaState {
            run: run.to_string(),
            agents: agents.len(),
            created: plan.tickets as u64,
            due_second_ms,
            due,
            last_due_ms,
        },
    })
}

/// Sleeps until unix time `at_ms` (at once when it has passed).
pub async fn sleep_until_ms(at_ms: u64) {
    tokio::time::sleep_until(instant_of(at_ms)).await;
}

/// An SLA notification an agent got, and when it was seen (unix µs).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The notification.
    pub notice: Notice,
    /// When it was seen: received on a stream, or raised (`createdAt`) for an inbox read.
    pub at_us: u64,
}

impl Seen {
    /// The SLA notifications among stream receipts.
    pub fn of_receipts(receipts: Vec<Receipt>) -> Vec<Self> {
        receipts
            .into_iter()
            .map(|receipt| Seen {
                notice: receipt.notice,
                at_us: receipt.received_us,
            })
            .collect()
    }
}

/// Reads every agent's whole inbox; each notification seen at its `createdAt`.
pub async fn read_inboxes(
    api: &Api,
    agents: &[Identity],
    in_flight: usize,
) -> Result<Vec<Seen>, BenchError> {
    let pages: Vec<Result<Vec<Seen>, BenchError>> =
        futures_util::stream::iter(agents.iter().enumerate())
            .map(|(lane, agent)| read_inbox(api, lane, agent))
            .buffer_unordered(in_flight)
            .collect()
            .await;
    let mut seen = Vec::new();
    for page in pages {
        seen.extend(page?);
    }
    Ok(seen)
}

/// Every notification of one inbox.
async fn read_inbox(api: &Api, lane: usize, agent: &Identity) -> Result<Vec<Seen>, BenchError> {
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = api.inbox_page(lane, agent, cursor.as_deref()).await?;
        for item in &items {
            let notice = Notice::from_value(item).map_err(BenchError::run)?;
            let at_us = notice.created_ms.unwrap_or(0) * 1000;
            seen.push(Seen { notice, at_us });
        }
        match next {
            Some(next) if !items.is_empty() => cursor = Some(next),
            _ => return Ok(seen),
        }
    }
}

/// The verdict on the SLA notifications of a run.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Due tickets.
    pub due: u64,
    /// Due tickets whose response breach arrived.
    pub fired: u64,
    /// Due tickets whose response breach never arrived.
    pub lost: u64,
    /// SLA notifications beyond the first of their (ticket, type, deadline), or an id seen again.
    pub duplicated: u64,
    /// Breaches seen before their deadline.
    pub early: u64,
    /// Due tickets whose breach came within 1 s of the deadline.
    pub within_second: u64,
    /// How late after its deadline each due breach came, µs.
    pub lateness: Histogram,
    /// SLA notifications seen (all tickets, all types).
    pub sla_notices: u64,
    /// A few examples of what went wrong.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether every due breach came exactly once, none early.
    pub fn is_exact(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.early == 0
    }
}

/// Judges the SLA notifications `seen` against the due tickets of `state`.
pub fn judge(state: &SlaState, seen: &[Seen]) -> Verdict {
    let mut verdict = Verdict {
        due: state.due.len() as u64,
        ..Verdict::default()
    };
    let mut ids = HashSet::new();
    let mut counts: HashMap<(u64, Kind), u64> = HashMap::new();
    let mut breaches: HashMap<u64, (u64, Option<u64>)> = HashMap::new();
    for one in seen {
        let notice = &one.notice;
        if !matches!(notice.kind, Kind::SlaWarning(_) | Kind::SlaBreach(_)) {
            continue;
        }
        verdict.sla_notices += 1;
        let count = counts.entry((notice.ticket, notice.kind)).or_default();
        *count += 1;
        if !ids.insert(notice.id.as_str()) || *count > 1 {
            verdict.duplicated += 1;
            note_problem(
                &mut verdict.problems,
                &format!("ticket {} got {} twice", notice.ticket, notice.kind.name()),
            );
            continue;
        }
        if notice.kind == Kind::SlaBreach(Deadline::Response) {
            breaches.insert(notice.ticket, (one.at_us, notice.sla_target_ms));
        }
    }
    for ticket in &state.due {
        let Some((at_us, target_ms)) = breaches.get(&ticket.id) else {
            verdict.lost += 1;
            continue;
        };
        verdict.fired += 1;
        let due_us = target_ms.unwrap_or(ticket.due_ms) * 1000;
        if *at_us + 1000 < due_us {
            verdict.early += 1;
            note_problem(
                &mut verdict.problems,
                &format!("ticket {}'s breach came before its deadline", ticket.id),
            );
        }
        let late = at_us.saturating_sub(due_us);
        verdict.lateness.record(late);
        verdict.within_second += u64::from(late <= 1_000_000);
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_targets_make_up_for_the_creation_second() {
        let policy = policy(120);
        assert_eq!(policy["low"]["responseMinutes"], 120);
        assert_eq!(policy["urgent"]["responseMinutes"], 117);
        assert_eq!(policy["medium"]["resolutionMinutes"], 1200);
        assert_eq!(policy.as_object().map(|p| p.len()), Some(WINDOWS));
    }

    fn state() -> SlaState {
        SlaState {
            run: "r".into(),
            agents: 2,
            created: 10,
            due_second_ms: 10_000,
            due: vec![
                DueTicket {
                    id: 1,
                    agent: 0,
                    due_ms: 10_100,
                },
                DueTicket {
                    id: 2,
                    agent: 1,
                    due_ms: 10_900,
                },
                DueTicket {
                    id: 3,
                    agent: 0,
                    due_ms: 11_200,
                },
            ],
            last_due_ms: 11_200,
        }
    }

    fn seen(id: &str, ticket: u64, kind: Kind, at_ms: u64) -> Seen {
        Seen {
            notice: Notice {
                id: id.into(),
                ticket,
                kind,
                created_ms: None,
                sla_target_ms: None,
            },
            at_us: at_ms * 1000,
        }
    }

    #[test]
    fn due_breaches_are_judged_exactly_once_and_on_time() {
        let state = state();
        assert_eq!(state.due_in_second(), 2);
        assert_eq!(state.due_spread_ms(), 1_100);
        let breach = Kind::SlaBreach(Deadline::Response);
        let all = [
            seen("a", 1, breach, 10_150),
            seen("b", 2, breach, 12_400),
            seen("c", 3, breach, 11_200),
            seen("d", 1, Kind::SlaWarning(Deadline::Response), 9_000),
            seen("e", 9, Kind::Assignment, 9_000),
        ];
        let verdict = judge(&state, &all);
        assert!(verdict.is_exact(), "{verdict:?}");
        assert_eq!((verdict.fired, verdict.within_second), (3, 2));
        assert_eq!(verdict.sla_notices, 4);
        assert_eq!(verdict.lateness.max(), 1_500_000);
    }

    #[test]
    fn missing_repeated_and_early_breaches_fail() {
        let breach = Kind::SlaBreach(Deadline::Response);
        let all = [
            seen("a", 1, breach, 9_000),
            seen("a", 1, breach, 9_000),
            seen("b", 2, breach, 11_000),
            seen("c", 2, breach, 11_500),
        ];
        let verdict = judge(&state(), &all);
        assert_eq!(verdict.lost, 1, "ticket 3");
        assert_eq!(verdict.duplicated, 2);
        assert_eq!(verdict.early, 1);
        assert!(!verdict.is_exact());
    }

    #[test]
    fn the_state_file_round_trips() {
        let path =
            std::env::temp_dir().join(format!("tidings-sla-state-{}.json", std::process::id()));
        state().save(&path).expect("saves");
        assert_eq!(SlaState::load(&path).expect("loads"), state());
        std::fs::remove_file(&path).expect("cleanup");
        assert!(SlaState::load(&path).is_err());
    }
}
