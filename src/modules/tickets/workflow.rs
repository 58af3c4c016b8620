//! The ticket workflow's writes: status, assignee, escalation and merge,
//! each one writer change with its notifications and list updates.
//!
//! * status (agents; a requester may close their own ticket or reopen it
//!   from `resolved`): `resolution` when it becomes `resolved` (and
//!   `resolvedAt` is set), `reopened` when it goes from `resolved`/`closed`
//!   to `open`, `statusChange` otherwise; each with `previousStatus` and
//!   `newStatus`, to the followers;
//! * assignee (agents): `assignment` to the new assignee, `reassignment` to
//!   the previous one;
//! * escalate (agents): `escalationLevel` + 1, `escalation` to the
//!   followers and the queue's agents;
//! * merge (agents): the source is closed and points at the target
//!   (`mergedInto`), its watchers join the target's, `merge` to the
//!   source's followers.
//!
//! Invariants: the workflow of [`Status::may_become`] is the only way a
//! status moves (409 otherwise); an agent other than the requester moving
//! a ticket out of `new` or assigning it sets `firstResponseAt` once
//! ([`super::ticket::first_response`]); a write that changes nothing
//! (same assignee) stores and notifies nothing; merged tickets take no
//! writes (409), and a ticket is never merged into itself.

use super::model::{Metadata, NotificationType, Status, Ticket};
use super::notify::Cause;
use super::recipients;
use super::service::{Acting, check_user, now};
use super::ticket::{distinct_watchers, first_response, raise, raise_cause, save, writable};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::{check_chars, forbidden};
use serde::Deserialize;

/// `PUT /ticket/{ticketId}/status` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusInput {
    /// The status to move to.
    pub status: Status,
}

/// `PUT /ticket/{ticketId}/assignee` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssigneeInput {
    /// The new assignee; `null` unassigns.
    pub assignee: Option<String>,
}

/// `POST /ticket/{ticketId}/escalate` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalateInput {
    /// Why (at most `--tickets-max-text-chars`), handed to the
    /// notification as its detail.
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /ticket/{ticketId}/merge` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MergeInput {
    /// The ticket to merge into (a string or a number).
    #[serde(with = "super::model::id_string")]
    pub into_ticket_id: u64,
}

/// Moves a ticket to another status.
pub fn set_status(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    input: StatusInput,
) -> Result<Ticket, ApiError> {
    let before = writable(change, acting, id)?;
    let next = input.status;
    may_set_status(acting, &before, next)?;
    before.status.check_transition(next)?;
    let at = now(change);
    let mut ticket = before.clone();
    ticket.status = next;
    if next == Status::Resolved {
        ticket.resolved_at = Some(at.clone());
    }
    if before.status == Status::New {
        first_response(acting, &mut ticket, &at);
    }
    ticket.updated_at = at;
    let ticket = save(change, acting, Some(&before), ticket)?;
    let cause = Cause {
        kind: status_notification(before.status, next),
        ticket: &ticket,
        actor: &acting.person,
        metadata: Metadata {
            previous_status: Some(before.status.as_str().into()),
            new_status: Some(next.as_str().into()),
            ..Metadata::default()
        },
        detail: None,
    };
    let followers = recipients::followers(change, &acting.tenant, &ticket)?;
    raise_cause(change, acting, &cause, followers.iter().map(String::as_str))?;
    Ok(ticket)
}

/// 403 unless the caller may move `ticket` to `next`: agents always; its
/// requester only to `closed`, or from `resolved` back to `open`.
fn may_set_status(acting: &Acting, ticket: &Ticket, next: Status) -> Result<(), ApiError> {
    if acting.is_agent() {
        return Ok(());
    }
    let own = ticket.requester.id == acting.person.id;
    let reopens = ticket.status == Status::Resolved && next == Status::Open;
    if own && (next == Status::Closed || reopens) {
        return Ok(());
    }
    Err(forbidden(
        "a requester may only close their own ticket or reopen it once resolved; other status changes need the agent role",
    ))
}

/// The notification a status change raises.
fn status_notification(from: Status, to: Status) -> NotificationType {
    match (from, to) {
        (_, Status::Resolved) => NotificationType::Resolution,
        (Status::Resolved | Status::Closed, Status::Open) => NotificationType::Reopened,
        _ => NotificationType::StatusChange,
    }
}

/// Assigns a ticket (or unassigns it with `null`).
pub fn assign(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    input: AssigneeInput,
) -> Result<Ticket, ApiError> {
    acting.require_agent()?;
    let before = writable(change, acting, id)?;
    if let Some(assignee) = &input.assignee {
        check_user("assignee", assignee)?;
    }
    if before.assignee == input.assignee {
        return Ok(before);
    }
    let at = now(change);
    let mut ticket = before.clone();
    ticket.assignee = input.assignee;
    if ticket.assignee.is_some() {
        first_response(acting, &mut ticket, &at);
    }
    ticket.updated_at = at;
    let ticket = save(change, acting, Some(&before), ticket)?;
    if let Some(assignee) = &ticket.assignee {
        raise(
            change,
            acting,
            &ticket,
            NotificationType::Assignment,
            [assignee.as_str()],
        )?;
    }
    if let Some(previous) = &before.assignee {
        raise(
            change,
            acting,
            &ticket,
            NotificationType::Reassignment,
            [previous.as_str()],
        )?;
    }
    Ok(ticket)
}

/// Raises a ticket's escalation level by one.
pub fn escalate(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    input: EscalateInput,
) -> Result<Ticket, ApiError> {
    acting.require_agent()?;
    let before = writable(change, acting, id)?;
    if let Some(reason) = &input.reason {
        let max = acting.limits.max_text_chars;
        check_chars("reason", reason, max, "tickets-max-text-chars")?;
    }
    let mut ticket = before.clone();
    ticket.escalation_level = ticket.escalation_level.saturating_add(1);
    ticket.updated_at = now(change);
    let ticket = save(change, acting, Some(&before), ticket)?;
    let cause = Cause {
        kind: NotificationType::Escalation,
        ticket: &ticket,
        actor: &acting.person,
        metadata: Metadata::default(),
        detail: input.reason,
    };
    let users = recipients::followers_and_queue(change, &acting.tenant, &ticket)?;
    raise_cause(change, acting, &cause, users.iter().map(String::as_str))?;
    Ok(ticket)
}

/// Merges a ticket into another; answers the merged (source) ticket.
pub fn merge(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    input: MergeInput,
) -> Result<Ticket, ApiError> {
    acting.require_agent()?;
    let into = input.into_ticket_id;
    if into == id {
        return Err(ApiError::validation(
            "`intoTicketId` must name another ticket: a ticket is not merged into itself",
        ));
    }
    let source_before = writable(change, acting, id)?;
    let target_before = writable(change, acting, into)?;
    let mut target = target_before.clone();
    let watchers = [&target.watchers[..], &source_before.watchers[..]].concat();
    target.watchers = distinct_watchers(acting, watchers)?;
    let at = now(change);
    if target != target_before {
        target.updated_at = at.clone();
        save(change, acting, Some(&target_before), target.clone())?;
    }
    let mut source = source_before.clone();
    source.merged_into = Some(into);
    source.status = Status::Closed;
    if source_before.status == Status::New {
        first_response(acting, &mut source, &at);
    }
    source.updated_at = at;
    let source = save(change, acting, Some(&source_before), source)?;
    let cause = Cause {
        kind: NotificationType::Merge,
        ticket: &source,
        actor: &acting.person,
        metadata: Metadata::default(),
        detail: Some(target.number.clone()),
    };
    let followers = recipients::followers(change, &acting.tenant, &source)?;
    raise_cause(change, acting, &cause, followers.iter().map(String::as_str))?;
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_change_raises_resolution_reopened_or_status_change() {
        use NotificationType::*;
        use Status::*;
        assert_eq!(status_notification(Open, Resolved), Resolution);
        assert_eq!(status_notification(New, Resolved), Resolution);
        assert_eq!(status_notification(Resolved, Open), Reopened);
        assert_eq!(status_notification(Closed, Open), Reopened);
        assert_eq!(status_notification(Pending, Open), StatusChange);
        assert_eq!(status_notification(Resolved, Closed), StatusChange);
        assert_eq!(status_notification(New, Open), StatusChange);
    }
}
