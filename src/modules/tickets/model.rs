//! Tickets, queues, SLA policies, notifications and per-user preferences as
//! stored and as served; the workflow of ticket statuses; the module's
//! limits.
//!
//! Invariants: served objects have camelCase fields; ticket ids are numbers
//! issued per tenant in increasing order and served as strings (the spec's
//! `ticketId` is a string); a ticket's number (`INC-2026-000042`) comes from
//! the same durable sequence, so it is never reused; priorities and
//! statuses are closed sets (anything else is a 400); a notification's
//! priority is the higher of its type's typical priority and its ticket's
//! (see [`NotificationType::priority_for`]).

use crate::error::ApiError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits and timing of the tickets module (flags `--tickets-*`).
#[derive(Debug, Clone, Copy)]
pub struct TicketsLimits {
    /// Longest title, in characters.
    pub max_title_chars: usize,
    /// Longest description or comment, in characters.
    pub max_text_chars: usize,
    /// Most watchers of one ticket.
    pub max_watchers: usize,
    /// Most agents of one queue.
    pub max_queue_agents: usize,
    /// Notifications kept per user (the oldest go first).
    pub inbox_max: usize,
    /// Notification streams one user may hold open at once.
    pub max_streams_per_user: usize,
    /// Interval of the `heartbeat` event on both SSE streams.
    pub heartbeat: Duration,
    /// The length of one "minute" of SLA policies (`--tickets-sla-unit`,
    /// shorter in tests).
    pub sla_unit: Duration,
}

/// Longest user id (a JWT subject or an id a backend names), in characters.
pub const MAX_USER_CHARS: usize = 256;
/// Longest display name or avatar URL, in characters.
pub const MAX_PROFILE_CHARS: usize = 500;
/// Longest category or queue name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A ticket's or a notification's priority, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Low.
    Low,
    /// Medium (a new ticket's default).
    #[default]
    Medium,
    /// High.
    High,
    /// Urgent.
    Urgent,
}

impl Priority {
    /// The four priorities, lowest first.
    pub const ALL: [Priority; 4] = [
        Priority::Low,
        Priority::Medium,
        Priority::High,
        Priority::Urgent,
    ];

    /// The lowercase name, as served.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
}

/// A ticket's status. The workflow ([`Status::may_become`]): `new` →
/// `open`, `pending`, `resolved` or `closed`; `open` ⇄ `pending`; both →
/// `resolved` or `closed`; `resolved` → `closed`; `resolved` and `closed`
/// reopen to `open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, nobody has acted on it yet.
    #[default]
    New,
    /// Being worked on.
    Open,
    /// Waiting on someone outside the team.
    Pending,
    /// Solved; may reopen.
    Resolved,
    /// Done; may reopen.
    Closed,
}

impl Status {
    /// The lowercase name, as served.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Open => "open",
            Status::Pending => "pending",
            Status::Resolved => "resolved",
            Status::Closed => "closed",
        }
    }

    /// True for `resolved` and `closed`.
    pub fn is_done(self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }

    /// Whether the workflow allows going from `self` to `next`.
    pub fn may_become(self, next: Status) -> bool {
        use Status::*;
        match (self, next) {
            (from, to) if from == to => false,
            (New, _) => true,
            (Open | Pending, Open | Pending | Resolved | Closed) => true,
            (Resolved, Closed | Open) => true,
            (Closed, Open) => true,
            _ => false,
        }
    }

    /// 409 unless the workflow allows going from `self` to `next`.
    pub fn check_transition(self, next: Status) -> Result<(), ApiError> {
        if self.may_become(next) {
            return Ok(());
        }
        Err(ApiError::new(
            crate::error::ErrorCode::Conflict,
            format!(
                "a {} ticket cannot become {} (workflow: new → open|pending|resolved|closed; open ⇄ pending; open|pending → resolved|closed; resolved → closed; resolved|closed → open)",
                self.as_str(),
                next.as_str()
            ),
        ))
    }
}

/// Someone who acts, as notifications name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The user id (JWT `sub`, or the id a backend acts for).
    pub id: String,
    /// Display name (the token's `name` claim; the id when absent).
    pub name: String,
    /// Avatar URL, if known.
    pub avatar: Option<String>,
}

/// A ticket's SLA deadlines and the timers that watch them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlaState {
    /// First response due (unix ms), while no agent has responded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_due_ms: Option<u64>,
    /// Resolution due (unix ms), while the ticket is not resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_due_ms: Option<u64>,
    /// Pending durable timers (their ids as ULID strings), cancelled when
    /// the deadlines are recomputed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timers: Vec<String>,
    /// When the resolution clock last started (unix ms): the last reopening;
    /// absent until the ticket is reopened (the clock then runs from its
    /// creation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution_start_ms: Option<u64>,
    /// `slaWarning` was raised for the current response deadline.
    #[serde(default, skip_serializing_if = "is_false")]
    pub response_warned: bool,
    /// `slaBreach` was raised for the current response deadline.
    #[serde(default, skip_serializing_if = "is_false")]
    pub response_breached: bool,
    /// `slaWarning` was raised for the current resolution deadline.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resolution_warned: bool,
    /// `slaBreach` was raised for the current resolution deadline.
    #[serde(default, skip_serializing_if = "is_false")]
    pub resolution_breached: bool,
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

/// A ticket as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// Per-tenant id, served as a string.
    #[serde(with = "id_string")]
    pub id: u64,
    /// `INC-<year>-<6 digits>`.
    pub number: String,
    /// Subject.
    pub title: String,
    /// Description.
    pub description: String,
    /// Category (free text).
    pub category: String,
    /// Priority.
    pub priority: Priority,
    /// Status.
    pub status: Status,
    /// Who asked.
    pub requester: Person,
    /// The agent it is assigned to.
    pub assignee: Option<String>,
    /// The queue it is in.
    pub queue_id: Option<u64>,
    /// Watchers' user ids.
    pub watchers: Vec<String>,
    /// Times escalated.
    pub escalation_level: u32,
    /// The ticket this one was merged into.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<u64>,
    /// When an agent first responded (RFC 3339).
    pub first_response_at: Option<String>,
    /// When it was last resolved (RFC 3339).
    pub resolved_at: Option<String>,
    /// SLA deadlines.
    #[serde(default)]
    pub sla: SlaState,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl Ticket {
    /// 409 once the ticket was merged into another (it takes no further writes).
    pub fn check_not_merged(&self) -> Result<(), ApiError> {
        match self.merged_into {
            Some(target) => Err(ApiError::new(
                crate::error::ErrorCode::Conflict,
                format!(
                    "ticket {} was merged into ticket {target} and takes no further writes",
                    self.id
                ),
            )),
            None => Ok(()),
        }
    }
}

/// A queue and the agents who work it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    /// Per-tenant id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Agents' user ids.
    pub agents: Vec<String>,
}

/// Response and resolution targets of one priority, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlaTarget {
    /// Minutes from creation to an agent's first response.
    pub response_minutes: u64,
    /// Minutes from creation to resolution.
    pub resolution_minutes: u64,
}

/// A tenant's settings for the module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantSettings {
    /// The prefix of ticket numbers (`INC`).
    #[serde(default = "default_number_prefix")]
    pub number_prefix: String,
    /// The notification's `actionUrl`: `{ticketId}` and `{ticketNumber}`
    /// are replaced.
    #[serde(default = "default_action_url")]
    pub action_url_template: String,
    /// JWT roles of which a user needs one to open the notification streams
    /// (empty: any user of the tenant).
    #[serde(default)]
    pub notification_roles: Vec<String>,
    /// Share of an SLA target after which `slaWarning` is raised, percent.
    #[serde(default = "default_warning_percent")]
    pub sla_warning_percent: u8,
}

fn default_number_prefix() -> String {
    "INC".into()
}

fn default_action_url() -> String {
    "/tickets/{ticketId}".into()
}

fn default_warning_percent() -> u8 {
    80
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            number_prefix: default_number_prefix(),
            action_url_template: default_action_url(),
            notification_roles: Vec::new(),
            sla_warning_percent: default_warning_percent(),
        }
    }
}

impl TenantSettings {
    /// The `actionUrl` of a ticket.
    pub fn action_url(&self, ticket: &Ticket) -> String {
        self.action_url_template
            .replace("{ticketId}", &ticket.id.to_string())
            .replace("{ticketNumber}", &ticket.number)
    }
}

/// The 14 notification types of the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NotificationType {
    /// Ticket assigned to the user.
    Assignment,
    /// Ticket reassigned away from the user.
    Reassignment,
    /// Ticket status updated.
    StatusChange,
    /// New comment on a ticket the user follows.
    Comment,
    /// The user was @mentioned in a comment.
    Mention,
    /// An SLA breach approaches.
    SlaWarning,
    /// An SLA was breached.
    SlaBreach,
    /// Approval requested from the user.
    Approval,
    /// An approval request was decided.
    ApprovalDecision,
    /// Ticket escalated.
    Escalation,
    /// Ticket merged into another.
    Merge,
    /// Ticket resolved.
    Resolution,
    /// Ticket reopened.
    Reopened,
    /// The user was added as a watcher.
    WatchAdded,
}

impl NotificationType {
    /// Every type, in the spec's order.
    pub const ALL: [NotificationType; 14] = [
        NotificationType::Assignment,
        NotificationType::Reassignment,
        NotificationType::StatusChange,
        NotificationType::Comment,
        NotificationType::Mention,
        NotificationType::SlaWarning,
        NotificationType::SlaBreach,
        NotificationType::Approval,
        NotificationType::ApprovalDecision,
        NotificationType::Escalation,
        NotificationType::Merge,
        NotificationType::Resolution,
        NotificationType::Reopened,
        NotificationType::WatchAdded,
    ];

    /// The spec's typical priority of the type.
    pub fn typical_priority(self) -> Priority {
        use NotificationType::*;
        match self {
            SlaBreach => Priority::Urgent,
            Assignment | Mention | SlaWarning | Approval | Escalation => Priority::High,
            Reassignment | StatusChange | Comment | ApprovalDecision | Resolution | Reopened => {
                Priority::Medium
            }
            Merge | WatchAdded => Priority::Low,
        }
    }

    /// A notification's priority: the type's typical one, raised to the
    /// ticket's when the ticket's is higher.
    pub fn priority_for(self, ticket: Priority) -> Priority {
        self.typical_priority().max(ticket)
    }

    /// The camelCase name, as served.
    pub fn as_str(self) -> &'static str {
        use NotificationType::*;
        match self {
            Assignment => "assignment",
            Reassignment => "reassignment",
            StatusChange => "statusChange",
            Comment => "comment",
            Mention => "mention",
            SlaWarning => "slaWarning",
            SlaBreach => "slaBreach",
            Approval => "approval",
            ApprovalDecision => "approvalDecision",
            Escalation => "escalation",
            Merge => "merge",
            Resolution => "resolution",
            Reopened => "reopened",
            WatchAdded => "watchAdded",
        }
    }
}

/// A notification's `metadata`: only the fields its type uses are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// For `statusChange`, `resolution`, `reopened`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<String>,
    /// For `statusChange`, `resolution`, `reopened`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_status: Option<String>,
    /// `response` or `resolution`, for SLA events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_type: Option<String>,
    /// The SLA deadline (RFC 3339), for SLA events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla_target: Option<String>,
    /// For `comment` and `mention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_id: Option<String>,
    /// For `approval` and `approvalDecision`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
}

/// A notification as stored in an inbox and served, field for field as
/// the spec's schema. `id` is the notification event's id as a UUID (its
/// SSE `id:` is the same event's ULID).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// UUID.
    pub id: String,
    /// One of the 14 types.
    #[serde(rename = "type")]
    pub kind: NotificationType,
    /// The ticket's id.
    pub ticket_id: String,
    /// The ticket's number.
    pub ticket_number: String,
    /// The ticket's title.
    pub title: String,
    /// Human-readable, per type.
    pub message: String,
    /// See [`NotificationType::priority_for`].
    pub priority: Priority,
    /// The ticket's category.
    pub category: String,
    /// RFC 3339 with milliseconds.
    pub created_at: String,
    /// Marked read by the user.
    pub read: bool,
    /// Deep link from the tenant's template.
    pub action_url: String,
    /// Who caused it (for SLA events: the system).
    pub actor: Person,
    /// Type-specific details.
    pub metadata: Metadata,
}

/// The types a user does not want (everything else is delivered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    /// Types switched off.
    pub disabled: Vec<NotificationType>,
}

impl Preferences {
    /// Whether the user receives `kind`.
    pub fn wants(&self, kind: NotificationType) -> bool {
        !self.disabled.contains(&kind)
    }
}

/// Serves a numeric id as a string and reads it back from either.
pub mod id_string {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the id as a string.
    pub fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    /// Reads the id from a string or a number.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(deserializer)? {
            Either::Number(id) => Ok(id),
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_allows_exactly_its_transitions() {
        use Status::*;
        let all = [New, Open, Pending, Resolved, Closed];
        let allowed: Vec<(Status, Status)> = all
            .iter()
            .flat_map(|from| all.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.may_become(*to))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (New, Open),
                (New, Pending),
                (New, Resolved),
                (New, Closed),
                (Open, Pending),
                (Open, Resolved),
                (Open, Closed),
                (Pending, Open),
                (Pending, Resolved),
                (Pending, Closed),
                (Resolved, Open),
                (Resolved, Closed),
                (Closed, Open),
            ]
        );
    }

    #[test]
    fn a_notification_takes_the_higher_of_its_type_and_ticket_priority() {
        assert_eq!(
            NotificationType::Merge.priority_for(Priority::Low),
            Priority::Low
        );
        assert_eq!(
            NotificationType::Merge.priority_for(Priority::High),
            Priority::High
        );
        assert_eq!(
            NotificationType::SlaBreach.priority_for(Priority::Low),
            Priority::Urgent
        );
        assert_eq!(
            NotificationType::Assignment.priority_for(Priority::Medium),
            Priority::High
        );
    }

    #[test]
    fn type_names_are_the_specs() {
        for kind in NotificationType::ALL {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
        }
    }

    #[test]
    fn ticket_ids_are_served_as_strings() {
        #[derive(Serialize, Deserialize)]
        struct Wrapped {
            #[serde(with = "id_string")]
            id: u64,
        }
        assert_eq!(
            serde_json::to_string(&Wrapped { id: 12345 }).unwrap(),
            r#"{"id":"12345"}"#
        );
        let back: Wrapped = serde_json::from_str(r#"{"id":"7"}"#).unwrap();
        assert_eq!(back.id, 7);
    }
}
