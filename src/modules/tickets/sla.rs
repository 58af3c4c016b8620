//! SLA policies and the durable timers that watch a ticket's deadlines.
//!
//! A tenant's policy gives each priority a response and a resolution
//! target in "minutes" (one minute lasts `--tickets-sla-unit`, default
//! `1m`); a priority without a target has no SLA. The response deadline
//! runs from the ticket's creation until an agent first responds; the
//! resolution deadline from its creation (or its last reopening, with the
//! full target) until it is resolved or closed. Every ticket write goes
//! through [`replan`] (called by `ticket::save`), which recomputes the
//! deadlines when the ticket is created, re-prioritized, reopened,
//! responded to or done, and schedules one `tickets.sla` timer per phase
//! still to come: the warning at `slaWarningPercent` of the target, the
//! breach at the deadline (a time already past fires at once).
//!
//! Invariants: policy changes apply to tickets created or re-prioritized
//! afterwards (deadlines are stored in the ticket); while a ticket's
//! deadlines stay the same its timers are left alone, and when they change
//! every pending timer of the ticket is cancelled in the same change and
//! the unfired phases are scheduled anew; a deadline's `slaWarning` and
//! `slaBreach` are each raised at most once (flags in [`SlaState`], reset
//! only when that deadline changes); a timer fires only while the deadline
//! it was scheduled for is still the ticket's current one, so a stale timer
//! never raises anything; its firing, the flag, the notifications and the
//! ticket's timer list are one change.

use super::layout;
use super::model::{
    Metadata, NotificationType, Priority, SlaState, SlaTarget, Ticket, TicketsLimits,
};
use super::notify::{self, Cause};
use super::recipients;
use super::service::{self, Acting, Role};
use crate::core::writer::{Change, Timer, TimerId};
use crate::error::ApiError;
use crate::modules::records::{Records, decode, encode};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use uuid::Uuid;

/// Name of the SLA timers' handler.
pub const SLA_TIMER: &str = "tickets.sla";
/// Longest target, in policy minutes (ten years of real minutes).
pub const MAX_TARGET_MINUTES: u64 = 5_256_000;

/// A tenant's SLA policy: a target per priority (`null`: no SLA).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    /// Low priority.
    #[serde(default)]
    pub low: Option<SlaTarget>,
    /// Medium priority.
    #[serde(default)]
    pub medium: Option<SlaTarget>,
    /// High priority.
    #[serde(default)]
    pub high: Option<SlaTarget>,
    /// Urgent priority.
    #[serde(default)]
    pub urgent: Option<SlaTarget>,
}

impl SlaPolicy {
    /// The target of `priority`.
    pub fn target(&self, priority: Priority) -> Option<SlaTarget> {
        match priority {
            Priority::Low => self.low,
            Priority::Medium => self.medium,
            Priority::High => self.high,
            Priority::Urgent => self.urgent,
        }
    }

    fn slot(&mut self, priority: Priority) -> &mut Option<SlaTarget> {
        match priority {
            Priority::Low => &mut self.low,
            Priority::Medium => &mut self.medium,
            Priority::High => &mut self.high,
            Priority::Urgent => &mut self.urgent,
        }
    }

    /// 400 unless every target is between 1 and [`MAX_TARGET_MINUTES`].
    pub fn check(&self) -> Result<(), ApiError> {
        for priority in Priority::ALL {
            let Some(target) = self.target(priority) else {
                continue;
            };
            for (field, minutes) in [
                ("responseMinutes", target.response_minutes),
                ("resolutionMinutes", target.resolution_minutes),
            ] {
                if !(1..=MAX_TARGET_MINUTES).contains(&minutes) {
                    return Err(ApiError::validation(format!(
                        "`{}.{field}` must be between 1 and {MAX_TARGET_MINUTES}",
                        priority.as_str()
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The tenant's policy as `records` sees it.
pub fn policy(records: &impl Records, tenant: &Uuid) -> Result<SlaPolicy, ApiError> {
    let mut policy = SlaPolicy::default();
    for priority in Priority::ALL {
        *policy.slot(priority) = target(records, tenant, priority)?;
    }
    Ok(policy)
}

/// The target of one priority, if the policy has one.
fn target(
    records: &impl Records,
    tenant: &Uuid,
    priority: Priority,
) -> Result<Option<SlaTarget>, ApiError> {
    records
        .record(&layout::sla_target(tenant, priority))?
        .map(|bytes| decode(&bytes))
        .transpose()
}

/// Replaces the tenant's policy (admins); returns it as stored.
pub fn put_policy(
    change: &mut Change<'_>,
    acting: &Acting,
    policy: SlaPolicy,
) -> Result<SlaPolicy, ApiError> {
    acting.require_admin()?;
    policy.check()?;
    for priority in Priority::ALL {
        let key = layout::sla_target(&acting.tenant, priority);
        match policy.target(priority) {
            Some(target) => change.put(key, encode(&target)?),
            None => change.delete(key),
        }
    }
    Ok(policy)
}

/// Which deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SlaKind {
    /// An agent's first response.
    Response,
    /// Resolution.
    Resolution,
}

impl SlaKind {
    fn as_str(self) -> &'static str {
        match self {
            SlaKind::Response => "response",
            SlaKind::Resolution => "resolution",
        }
    }
}

/// Which moment of a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `slaWarningPercent` of the target has passed.
    Warning,
    /// The deadline has passed.
    Breach,
}

/// What a timer carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Payload {
    tenant: Uuid,
    ticket: u64,
    kind: SlaKind,
    phase: Phase,
    deadline_ms: u64,
}

/// A ticket's deadlines after a change (unix ms), and when its resolution
/// clock started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadlines {
    response: Option<u64>,
    resolution: Option<u64>,
    resolution_start: Option<u64>,
}

/// The deadlines of `ticket` coming from `before` (`None`: new) at `now`,
/// with `target` the policy's target for its priority now and one policy
/// minute lasting `unit_ms`.
fn plan(
    before: Option<&Ticket>,
    ticket: &Ticket,
    target: Option<SlaTarget>,
    unit_ms: u64,
    now: u64,
) -> Deadlines {
    let done = ticket.status.is_done();
    let reopened = before.is_some_and(|before| before.status.is_done()) && !done;
    let reprioritized = before.is_none_or(|before| before.priority != ticket.priority);
    let resolution_start = if reopened {
        Some(now)
    } else {
        ticket.sla.resolution_start_ms
    };
    let created = unix_ms(&ticket.created_at).unwrap_or(now);
    let after = |start: u64, minutes: u64| start.saturating_add(minutes.saturating_mul(unit_ms));
    let response = if done || ticket.first_response_at.is_some() {
        None
    } else if reprioritized {
        target.map(|target| after(created, target.response_minutes))
    } else {
        ticket.sla.response_due_ms
    };
    let resolution = if done {
        None
    } else if reprioritized || reopened {
        let start = resolution_start.unwrap_or(created);
        target.map(|target| after(start, target.resolution_minutes))
    } else {
        ticket.sla.resolution_due_ms
    };
    Deadlines {
        response,
        resolution,
        resolution_start,
    }
}

/// Unix ms of an RFC 3339 time.
fn unix_ms(rfc3339: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339(rfc3339).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// When the warning of a deadline `due` whose clock started at `start`
/// falls: `percent` of the way.
fn warning_at(start: u64, due: u64, percent: u8) -> u64 {
    let span = u128::from(due.saturating_sub(start));
    let share = span * u128::from(percent.min(100)) / 100;
    start.saturating_add(u64::try_from(share).unwrap_or(u64::MAX))
}

/// Recomputes the SLA deadlines of `ticket` (coming from `before`, `None`
/// when new) and, when they changed, replaces its timers, inside `change`.
pub fn replan(
    change: &mut Change<'_>,
    acting: &Acting,
    before: Option<&Ticket>,
    ticket: &mut Ticket,
) -> Result<(), ApiError> {
    let tenant = acting.tenant;
    let target = target(change, &tenant, ticket.priority)?;
    let unit_ms = u64::try_from(acting.limits.sla_unit.as_millis()).unwrap_or(u64::MAX);
    let planned = plan(before, ticket, target, unit_ms, change.now_ms());
    let sla = &mut ticket.sla;
    sla.resolution_start_ms = planned.resolution_start;
    let unchanged =
        sla.response_due_ms == planned.response && sla.resolution_due_ms == planned.resolution;
    if unchanged {
        return Ok(());
    }
    if sla.response_due_ms != planned.response {
        sla.response_due_ms = planned.response;
        (sla.response_warned, sla.response_breached) = (false, false);
    }
    if sla.resolution_due_ms != planned.resolution {
        sla.resolution_due_ms = planned.resolution;
        (sla.resolution_warned, sla.resolution_breached) = (false, false);
    }
    for timer in std::mem::take(&mut sla.timers) {
        if let Ok(id) = Ulid::from_string(&timer) {
            change.cancel(TimerId(id))?;
        }
    }
    let percent = service::settings(change, &tenant)?.sla_warning_percent;
    let created = unix_ms(&ticket.created_at).unwrap_or_else(|| change.now_ms());
    schedule_pending(change, &tenant, ticket, created, percent)
}

/// Schedules the phases of the ticket's deadlines not raised yet.
fn schedule_pending(
    change: &mut Change<'_>,
    tenant: &Uuid,
    ticket: &mut Ticket,
    created: u64,
    percent: u8,
) -> Result<(), ApiError> {
    let resolution_start = ticket.sla.resolution_start_ms.unwrap_or(created);
    for (kind, start) in [
        (SlaKind::Response, created),
        (SlaKind::Resolution, resolution_start),
    ] {
        let Some(due) = deadline(&ticket.sla, kind) else {
            continue;
        };
        for (phase, at) in [
            (Phase::Warning, warning_at(start, due, percent)),
            (Phase::Breach, due),
        ] {
            if *raised(&mut ticket.sla, kind, phase) {
                continue;
            }
            let payload = Payload {
                tenant: *tenant,
                ticket: ticket.id,
                kind,
                phase,
                deadline_ms: due,
            };
            let id = change.schedule(at, SLA_TIMER, &encode(&payload)?)?;
            ticket.sla.timers.push(id.0.to_string());
        }
    }
    Ok(())
}

/// The current deadline of `kind`.
fn deadline(sla: &SlaState, kind: SlaKind) -> Option<u64> {
    match kind {
        SlaKind::Response => sla.response_due_ms,
        SlaKind::Resolution => sla.resolution_due_ms,
    }
}

/// The flag saying that `phase` of the `kind` deadline was raised.
fn raised(sla: &mut SlaState, kind: SlaKind, phase: Phase) -> &mut bool {
    match (kind, phase) {
        (SlaKind::Response, Phase::Warning) => &mut sla.response_warned,
        (SlaKind::Response, Phase::Breach) => &mut sla.response_breached,
        (SlaKind::Resolution, Phase::Warning) => &mut sla.resolution_warned,
        (SlaKind::Resolution, Phase::Breach) => &mut sla.resolution_breached,
    }
}

/// The `tickets.sla` handler: drops the timer from its ticket and raises
/// `slaWarning`/`slaBreach` when its deadline is still current and that
/// phase was not raised yet.
pub fn on_timer(
    change: &mut Change<'_>,
    timer: &Timer,
    limits: TicketsLimits,
) -> Result<(), ApiError> {
    let Ok(payload) = serde_json::from_slice::<Payload>(&timer.payload) else {
        tracing::error!(timer = ?timer.id, "a tickets SLA timer has a damaged payload; dropped");
        return Ok(());
    };
    let Some(bytes) = change.get(&layout::ticket(&payload.tenant, payload.ticket))? else {
        return Ok(());
    };
    let before: Ticket = decode(&bytes)?;
    let mut ticket = before.clone();
    let id = timer.id.0.to_string();
    ticket.sla.timers.retain(|pending| *pending != id);
    let current = deadline(&ticket.sla, payload.kind) == Some(payload.deadline_ms);
    let fires = current && !*raised(&mut ticket.sla, payload.kind, payload.phase);
    if fires {
        *raised(&mut ticket.sla, payload.kind, payload.phase) = true;
    }
    if ticket == before {
        return Ok(());
    }
    let acting = Acting {
        tenant: payload.tenant,
        person: service::system(),
        role: Role::Admin,
        limits,
    };
    let ticket = super::ticket::save(change, &acting, Some(&before), ticket)?;
    if fires {
        raise(change, &acting, &ticket, &payload)?;
    }
    Ok(())
}

/// Raises the notification of a firing SLA phase to the followers and the
/// queue's agents.
fn raise(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: &Ticket,
    payload: &Payload,
) -> Result<(), ApiError> {
    let kind = match payload.phase {
        Phase::Warning => NotificationType::SlaWarning,
        Phase::Breach => NotificationType::SlaBreach,
    };
    let cause = Cause {
        kind,
        ticket,
        actor: &acting.person,
        metadata: Metadata {
            sla_type: Some(payload.kind.as_str().into()),
            sla_target: Some(crate::core::clock::rfc3339_millis(payload.deadline_ms)),
            ..Metadata::default()
        },
        detail: None,
    };
    let recipients = recipients::followers_and_queue(change, &acting.tenant, ticket)?;
    notify::notify(
        change,
        &acting.tenant,
        acting.limits.inbox_max,
        recipients.iter().map(String::as_str),
        &cause,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tickets::model::{Person, Status};

    const MINUTE: u64 = 60_000;
    const CREATED: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn ticket(priority: Priority, status: Status) -> Ticket {
        Ticket {
            id: 1,
            number: "INC-2026-000001".into(),
            title: "t".into(),
            description: String::new(),
            category: String::new(),
            priority,
            status,
            requester: Person {
                id: "r".into(),
                name: "r".into(),
                avatar: None,
            },
            assignee: None,
            queue_id: None,
            watchers: vec![],
            escalation_level: 0,
            merged_into: None,
            first_response_at: None,
            resolved_at: None,
            sla: SlaState::default(),
            created_at: crate::core::clock::rfc3339_millis(CREATED),
            updated_at: crate::core::clock::rfc3339_millis(CREATED),
        }
    }

    fn goal(response: u64, resolution: u64) -> Option<SlaTarget> {
        Some(SlaTarget {
            response_minutes: response,
            resolution_minutes: resolution,
        })
    }

    #[test]
    fn a_new_ticket_gets_deadlines_from_its_creation() {
        let new = ticket(Priority::High, Status::New);
        let planned = plan(None, &new, goal(10, 60), MINUTE, CREATED + 5);
        assert_eq!(planned.response, Some(CREATED + 10 * MINUTE));
        assert_eq!(planned.resolution, Some(CREATED + 60 * MINUTE));
        assert_eq!(plan(None, &new, None, MINUTE, CREATED).response, None);
    }

    #[test]
    fn policy_changes_reach_only_reprioritized_tickets() {
        let mut stored = ticket(Priority::High, Status::Open);
        stored.sla.response_due_ms = Some(CREATED + 10 * MINUTE);
        stored.sla.resolution_due_ms = Some(CREATED + 60 * MINUTE);
        let same = stored.clone();
        let kept = plan(Some(&stored), &same, goal(1, 2), MINUTE, CREATED + 1);
        assert_eq!(kept.response, Some(CREATED + 10 * MINUTE), "policy changed");
        let mut urgent = stored.clone();
        urgent.priority = Priority::Urgent;
        let moved = plan(Some(&stored), &urgent, goal(1, 2), MINUTE, CREATED + 1);
        assert_eq!(
            (moved.response, moved.resolution),
            (Some(CREATED + MINUTE), Some(CREATED + 2 * MINUTE))
        );
    }

    #[test]
    fn responding_and_resolving_end_deadlines_and_reopening_restarts_resolution() {
        let mut stored = ticket(Priority::High, Status::Open);
        stored.sla.response_due_ms = Some(CREATED + 10 * MINUTE);
        stored.sla.resolution_due_ms = Some(CREATED + 60 * MINUTE);
        let mut responded = stored.clone();
        responded.first_response_at = Some("2026-01-01T00:01:00.000Z".into());
        let planned = plan(Some(&stored), &responded, goal(10, 60), MINUTE, 0);
        assert_eq!(
            (planned.response, planned.resolution),
            (None, Some(CREATED + 60 * MINUTE))
        );
        let mut resolved = responded.clone();
        resolved.status = Status::Resolved;
        let planned = plan(Some(&responded), &resolved, goal(10, 60), MINUTE, 0);
        assert_eq!((planned.response, planned.resolution), (None, None));
        resolved.sla.resolution_due_ms = None;
        let mut reopened = resolved.clone();
        reopened.status = Status::Open;
        let now = CREATED + 500 * MINUTE;
        let planned = plan(Some(&resolved), &reopened, goal(10, 60), MINUTE, now);
        assert_eq!(planned.resolution, Some(now + 60 * MINUTE));
        assert_eq!(planned.resolution_start, Some(now));
        assert_eq!(planned.response, None);
    }

    #[test]
    fn warnings_fall_at_their_share_of_the_target() {
        assert_eq!(warning_at(1000, 2000, 80), 1800);
        assert_eq!(warning_at(1000, 2000, 100), 2000);
        assert_eq!(warning_at(1000, 2000, 200), 2000);
        assert_eq!(warning_at(1000, 1000, 80), 1000);
    }

    #[test]
    fn policies_refuse_targets_out_of_range() {
        let mut policy = SlaPolicy {
            high: goal(1, MAX_TARGET_MINUTES),
            ..SlaPolicy::default()
        };
        assert!(policy.check().is_ok());
        policy.low = goal(0, 5);
        assert!(policy.check().is_err());
        policy.low = goal(1, MAX_TARGET_MINUTES + 1);
        assert!(policy.check().is_err());
    }

    /// The SLA timers on a real writer and store: tickets created, changed
    /// and fired exactly as the server does it, read back from the store.
    mod timers {
        use super::super::*;
        use super::goal;
        use crate::core::hub::HubLimits;
        use crate::core::store::Store;
        use crate::core::writer::{Footprint, Writer};
        use crate::modules::tickets::layout::UserKey;
        use crate::modules::tickets::model::{Notification, Queue, Status};
        use crate::modules::tickets::service::save as save_record;
        use crate::modules::tickets::ticket::{self, NewTicket};
        use std::time::Duration;

        /// One policy minute in these tests.
        const UNIT: Duration = Duration::from_millis(100);

        struct Desk {
            _dir: tempfile::TempDir,
            store: Store,
            writer: Writer,
            agent: Acting,
        }

        fn limits() -> TicketsLimits {
            TicketsLimits {
                max_title_chars: 100,
                max_text_chars: 1000,
                max_watchers: 10,
                max_queue_agents: 10,
                inbox_max: 100,
                max_streams_per_user: 5,
                heartbeat: Duration::from_secs(30),
                sla_unit: UNIT,
            }
        }

        /// A writer with the SLA handler armed, a queue 1 worked by `q1`,
        /// and `high` targets of `high` (low: 20 / 30).
        async fn desk(high: (u64, u64)) -> Desk {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&dir.path().join("db"), 1 << 20).unwrap();
            let writer = Writer::start_for_tests(store.clone(), HubLimits::minimal()).writer;
            writer
                .timers()
                .register(SLA_TIMER, |change, timer| on_timer(change, timer, limits()))
                .unwrap();
            writer.arm_timers().await;
            let person = service::person("agent-1", None, None).unwrap();
            let agent = Acting {
                tenant: Uuid::new_v4(),
                person,
                role: Role::Admin,
                limits: limits(),
            };
            let desk = Desk {
                _dir: dir,
                store,
                writer,
                agent,
            };
            let policy = SlaPolicy {
                low: goal(20, 30),
                high: goal(high.0, high.1),
                ..SlaPolicy::default()
            };
            desk.run(move |change, acting| {
                let queue = Queue {
                    id: 1,
                    name: "desk".into(),
                    agents: vec!["q1".into()],
                };
                save_record(change, layout::queue(&acting.tenant, 1), &queue)?;
                put_policy(change, acting, policy).map(|_| ())
            })
            .await;
            desk
        }

        impl Desk {
            /// Runs `body` as the agent in one change.
            async fn run<T: Send + 'static>(
                &self,
                body: impl FnOnce(&mut Change<'_>, &Acting) -> Result<T, ApiError> + Send + 'static,
            ) -> T {
                let acting = self.agent.clone();
                self.writer
                    .commit(Footprint::SMALL, move |change| body(change, &acting))
                    .await
                    .unwrap()
                    .value
            }

            /// A ticket of `priority` in queue 1, assigned to `agent-2`,
            /// watched by `w1` (and its requester, `agent-1`).
            async fn create(&self, priority: Priority) -> Ticket {
                self.run(move |change, acting| {
                    let input = NewTicket {
                        title: "VPN down".into(),
                        description: String::new(),
                        category: String::new(),
                        priority,
                        queue_id: Some(1),
                        assignee: Some("agent-2".into()),
                        watchers: vec!["w1".into()],
                    };
                    ticket::create(change, acting, input)
                })
                .await
            }

            /// Changes the stored ticket with `edit` through `ticket::save`.
            async fn edit(
                &self,
                id: u64,
                edit: impl FnOnce(&mut Ticket) + Send + 'static,
            ) -> Ticket {
                self.run(move |change, acting| {
                    let before = service::ticket(change, &acting.tenant, id)?;
                    let mut after = before.clone();
                    edit(&mut after);
                    ticket::save(change, acting, Some(&before), after)
                })
                .await
            }

            fn ticket(&self, id: u64) -> Ticket {
                service::ticket(&self.store, &self.agent.tenant, id).unwrap()
            }

            /// `user`'s SLA notifications: (type, slaType, slaTarget).
            fn sla_seen(&self, user: &str) -> Vec<(NotificationType, String, String)> {
                let inbox = layout::inbox(&self.agent.tenant, &UserKey::of(user));
                self.store
                    .scan_blocking(&inbox, None, 100)
                    .unwrap()
                    .iter()
                    .map(|(_, value)| decode::<Notification>(value).unwrap())
                    .filter(|n| n.actor.id == "system")
                    .map(|n| {
                        let meta = n.metadata;
                        (n.kind, meta.sla_type.unwrap(), meta.sla_target.unwrap())
                    })
                    .collect()
            }

            /// Waits until `user` has `count` SLA notifications and the
            /// ticket no pending timer, then a while longer; returns them.
            async fn settled(
                &self,
                user: &str,
                id: u64,
                count: usize,
            ) -> Vec<(NotificationType, String, String)> {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while self.sla_seen(user).len() < count || !self.ticket(id).sla.timers.is_empty() {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{:?}",
                        self.sla_seen(user)
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                tokio::time::sleep(UNIT * 5).await;
                self.sla_seen(user)
            }
        }

        fn at(ms: Option<u64>) -> String {
            crate::core::clock::rfc3339_millis(ms.unwrap())
        }

        #[tokio::test]
        async fn each_deadline_warns_and_breaches_once_to_followers_and_queue_agents() {
            let desk = desk((3, 6)).await;
            let ticket = desk.create(Priority::High).await;
            assert_eq!(ticket.sla.timers.len(), 4);
            let (response, resolution) = (
                at(ticket.sla.response_due_ms),
                at(ticket.sla.resolution_due_ms),
            );
            let seen = desk.settled("agent-2", ticket.id, 4).await;
            use NotificationType::{SlaBreach, SlaWarning};
            assert_eq!(
                seen,
                [
                    (SlaWarning, "response".into(), response.clone()),
                    (SlaBreach, "response".into(), response),
                    (SlaWarning, "resolution".into(), resolution.clone()),
                    (SlaBreach, "resolution".into(), resolution),
                ]
            );
            for user in ["agent-1", "w1", "q1"] {
                assert_eq!(desk.sla_seen(user), seen, "{user}");
            }
            let sla = desk.ticket(ticket.id).sla;
            assert!(sla.response_warned && sla.response_breached);
            assert!(sla.resolution_warned && sla.resolution_breached);
        }

        #[tokio::test]
        async fn a_new_priority_replaces_the_timers_with_its_own_targets() {
            let desk = desk((2, 4)).await;
            let low = desk.create(Priority::Low).await;
            let old_timers = low.sla.timers.clone();
            assert_eq!(old_timers.len(), 4);
            let high = desk.edit(low.id, |t| t.priority = Priority::High).await;
            assert_eq!(high.sla.timers.len(), 4);
            assert!(high.sla.timers.iter().all(|id| !old_timers.contains(id)));
            assert!(high.sla.response_due_ms < low.sla.response_due_ms);
            let seen = desk.settled("w1", low.id, 4).await;
            assert_eq!(seen.len(), 4, "{seen:?}");
            tokio::time::sleep_until(tokio::time::Instant::now() + UNIT * 30).await;
            assert_eq!(
                desk.writer.timers().stats().fired,
                4,
                "the low timers were cancelled, never fired"
            );
            assert!(
                seen.iter()
                    .all(|(_, _, target)| *target == at(high.sla.response_due_ms)
                        || *target == at(high.sla.resolution_due_ms))
            );
        }

        #[tokio::test]
        async fn responding_and_resolving_cancel_and_reopening_restarts_resolution() {
            let desk = desk((5, 10)).await;
            let ticket = desk.create(Priority::High).await;
            let responded = desk
                .edit(ticket.id, |t| t.first_response_at = Some("now".into()))
                .await;
            assert_eq!(responded.sla.response_due_ms, None);
            assert_eq!(responded.sla.timers.len(), 2);
            let resolved = desk.edit(ticket.id, |t| t.status = Status::Resolved).await;
            assert_eq!(resolved.sla, SlaState::default());
            tokio::time::sleep(UNIT * 14).await;
            assert_eq!(
                desk.sla_seen("w1"),
                [],
                "nothing fires for a resolved ticket"
            );
            let reopened = desk.edit(ticket.id, |t| t.status = Status::Open).await;
            let start = reopened.sla.resolution_start_ms.unwrap();
            assert_eq!(reopened.sla.resolution_due_ms, Some(start + 10 * 100));
            let seen = desk.settled("w1", ticket.id, 2).await;
            let target = at(reopened.sla.resolution_due_ms);
            assert_eq!(
                seen,
                [
                    (
                        NotificationType::SlaWarning,
                        "resolution".into(),
                        target.clone()
                    ),
                    (NotificationType::SlaBreach, "resolution".into(), target),
                ]
            );
        }

        #[tokio::test]
        async fn a_stale_timer_only_leaves_the_tickets_list() {
            let desk = desk((1000, 2000)).await;
            let ticket = desk.create(Priority::High).await;
            let id = ticket.id;
            let tenant = desk.agent.tenant;
            let stale = |deadline_ms: u64| Payload {
                tenant,
                ticket: id,
                kind: SlaKind::Response,
                phase: Phase::Breach,
                deadline_ms,
            };
            let current = ticket.sla.response_due_ms.unwrap();
            let pending = Ulid::from_string(&ticket.sla.timers[1]).unwrap();
            let fired = [
                (stale(current - 1), Ulid::from_parts(1, 2)),
                (stale(current), pending),
            ];
            let fired = fired.map(|(payload, id)| Timer {
                id: TimerId(id),
                due_ms: 0,
                handler: SLA_TIMER.into(),
                payload: encode(&payload).unwrap(),
            });
            desk.run(move |change, _| {
                for timer in &fired {
                    on_timer(change, timer, limits())?;
                }
                on_timer(change, &fired[1], limits())
            })
            .await;
            assert_eq!(
                desk.sla_seen("w1").len(),
                1,
                "the stale deadline raised nothing, the current one once"
            );
            let sla = desk.ticket(id).sla;
            assert!(sla.response_breached && !sla.response_warned);
            assert_eq!(sla.timers.len(), 3);
        }
    }
}
