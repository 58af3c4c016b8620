//! Ticket writes, each inside one writer change with the notifications and
//! list updates it causes: create, and [`save`], which every write of a
//! ticket goes through. The requester watches their ticket from its
//! creation (so the followers' notifications reach them).
//!
//! Invariants: a ticket's number is `<prefix>-<year>-<id, 6 digits or
//! more>` from the tenant's ticket counter (durable, never reused); a new
//! ticket notifies its queue's agents and its assignee (`assignment`);
//! every saved change of a ticket publishes its list updates in the same
//! change ([`super::lists::publish`]).

use super::layout::{self, Counter};
use super::lists;
use super::model::{Metadata, NotificationType, Priority, SlaState, Status, Ticket};
use super::notify::{self, Cause};
use super::service::{self, Acting, check_user, next_id, now, save as save_record};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::check_chars;
use serde::Deserialize;

/// `POST /ticket` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewTicket {
    /// Subject.
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Category.
    #[serde(default)]
    pub category: String,
    /// Priority (default medium).
    #[serde(default)]
    pub priority: Priority,
    /// Queue.
    #[serde(default)]
    pub queue_id: Option<u64>,
    /// Assignee (agents only).
    #[serde(default)]
    pub assignee: Option<String>,
    /// Initial watchers.
    #[serde(default)]
    pub watchers: Vec<String>,
}

/// Checks a title, a description and a category against the limits.
pub fn check_texts(
    acting: &Acting,
    title: &str,
    description: &str,
    category: &str,
) -> Result<(), ApiError> {
    if title.trim().is_empty() {
        return Err(ApiError::validation("`title` must not be empty"));
    }
    let limits = &acting.limits;
    check_chars(
        "title",
        title,
        limits.max_title_chars,
        "tickets-max-title-chars",
    )?;
    check_chars(
        "description",
        description,
        limits.max_text_chars,
        "tickets-max-text-chars",
    )?;
    service::fixed_chars("category", category, super::model::MAX_NAME_CHARS)
}

/// Creates a ticket asked by the caller.
pub fn create(
    change: &mut Change<'_>,
    acting: &Acting,
    input: NewTicket,
) -> Result<Ticket, ApiError> {
    check_texts(acting, &input.title, &input.description, &input.category)?;
    if input.assignee.is_some() {
        acting.require_agent()?;
    }
    if let Some(assignee) = &input.assignee {
        check_user("assignee", assignee)?;
    }
    let mut watchers = input.watchers;
    watchers.insert(0, acting.person.id.clone());
    let watchers = distinct_watchers(acting, watchers)?;
    if let Some(queue) = input.queue_id {
        service::queue(change, &acting.tenant, queue)?;
    }
    let tenant = acting.tenant;
    let id = next_id(change, &tenant, Counter::Ticket)?;
    let settings = service::settings(change, &tenant)?;
    let at = now(change);
    let ticket = Ticket {
        id,
        number: number(&settings.number_prefix, &at, id),
        title: input.title,
        description: input.description,
        category: input.category,
        priority: input.priority,
        status: Status::New,
        requester: acting.person.clone(),
        assignee: input.assignee,
        queue_id: input.queue_id,
        watchers,
        escalation_level: 0,
        merged_into: None,
        first_response_at: None,
        resolved_at: None,
        sla: SlaState::default(),
        created_at: at.clone(),
        updated_at: at,
    };
    let ticket = save(change, acting, None, ticket)?;
    if let Some(assignee) = ticket.assignee.clone() {
        raise(
            change,
            acting,
            &ticket,
            NotificationType::Assignment,
            [assignee.as_str()],
        )?;
    }
    Ok(ticket)
}

/// Watchers named by a write: distinct, valid, within the limit.
pub fn distinct_watchers(acting: &Acting, watchers: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut distinct: Vec<String> = Vec::with_capacity(watchers.len());
    for watcher in watchers {
        check_user("watchers", &watcher)?;
        if !distinct.contains(&watcher) {
            distinct.push(watcher);
        }
    }
    if distinct.len() > acting.limits.max_watchers {
        return Err(crate::modules::records::over_limit(
            "watchers of a ticket",
            "tickets-max-watchers",
            acting.limits.max_watchers,
        ));
    }
    Ok(distinct)
}

/// `INC-2026-000042`: the prefix, the year of `created_at`, the id.
fn number(prefix: &str, created_at: &str, id: u64) -> String {
    let year = created_at.get(..4).unwrap_or("0000");
    format!("{prefix}-{year}-{id:06}")
}

/// Stores `ticket` (coming from `before`, `None` when new) with its SLA
/// deadlines re-planned ([`super::sla::replan`]) and publishes its list
/// updates; returns it as stored.
pub fn save(
    change: &mut Change<'_>,
    acting: &Acting,
    before: Option<&Ticket>,
    mut ticket: Ticket,
) -> Result<Ticket, ApiError> {
    let tenant = acting.tenant;
    super::sla::replan(change, acting, before, &mut ticket)?;
    save_record(change, layout::ticket(&tenant, ticket.id), &ticket)?;
    lists::publish(change, &tenant, before, &ticket)?;
    Ok(ticket)
}

/// Raises a notification of `kind` with no metadata for `recipients`.
pub fn raise<'r>(
    change: &mut Change<'_>,
    acting: &Acting,
    ticket: &Ticket,
    kind: NotificationType,
    recipients: impl IntoIterator<Item = &'r str>,
) -> Result<Vec<String>, ApiError> {
    let cause = Cause {
        kind,
        ticket,
        actor: &acting.person,
        metadata: Metadata::default(),
        detail: None,
    };
    notify::notify(
        change,
        &acting.tenant,
        acting.limits.inbox_max,
        recipients,
        &cause,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_prefix_year_and_a_padded_id() {
        assert_eq!(
            number("INC", "2026-12-03T10:00:00.000Z", 42),
            "INC-2026-000042"
        );
        assert_eq!(
            number("REQ", "2026-12-03T10:00:00.000Z", 1_234_567),
            "REQ-2026-1234567"
        );
    }
}
