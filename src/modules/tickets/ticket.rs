//! Ticket writes, each inside one writer change with the notifications and
//! list updates it causes: create, edit (`PATCH`), and [`save`], which
//! every write of a ticket goes through (the workflow's writes are in
//! [`super::workflow`], watchers in [`super::watchers`]). The requester
//! watches their ticket from its creation (so the followers'
//! notifications reach them).
//!
//! Invariants: a ticket's number is `<prefix>-<year>-<id, 6 digits or
//! more>` from the tenant's ticket counter (durable, never reused); a new
//! ticket notifies only its assignee (`assignment`): its queue's agents
//! see it arrive on their list stream (`ticketCreated`), not as a
//! notification; every saved change of a ticket publishes its list updates
//! and moves its list-index rows in the same change
//! ([`super::lists::publish`], [`super::index::update`]); a merged ticket
//! takes no further writes ([`writable`], 409); an edit that changes
//! nothing stores and publishes nothing.

use super::layout::{self, Counter};
use super::model::{Metadata, NotificationType, Priority, SlaState, Status, Ticket};
use super::notify::{self, Cause};
use super::service::{self, Acting, check_user, next_id, now, save as save_record};
use super::{index, lists};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::{Records, check_chars, forbidden, over_limit};
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

/// `PATCH /ticket/{ticketId}` body: the fields to change.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketEdit {
    /// New subject.
    #[serde(default)]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New category (agents only).
    #[serde(default)]
    pub category: Option<String>,
    /// New priority (agents only).
    #[serde(default)]
    pub priority: Option<Priority>,
    /// New queue (agents only).
    #[serde(default)]
    pub queue_id: Option<u64>,
}

/// 400 unless `title` is non-blank and within `--tickets-max-title-chars`.
fn check_title(acting: &Acting, title: &str) -> Result<(), ApiError> {
    if title.trim().is_empty() {
        return Err(ApiError::validation("`title` must not be empty"));
    }
    let max = acting.limits.max_title_chars;
    check_chars("title", title, max, "tickets-max-title-chars")
}

/// 400 unless `description` is within `--tickets-max-text-chars`.
fn check_description(acting: &Acting, description: &str) -> Result<(), ApiError> {
    let max = acting.limits.max_text_chars;
    check_chars("description", description, max, "tickets-max-text-chars")
}

/// 400 unless `category` is within [`super::model::MAX_NAME_CHARS`].
fn check_category(category: &str) -> Result<(), ApiError> {
    service::fixed_chars("category", category, super::model::MAX_NAME_CHARS)
}

/// Checks a title, a description and a category against the limits.
pub fn check_texts(
    acting: &Acting,
    title: &str,
    description: &str,
    category: &str,
) -> Result<(), ApiError> {
    check_title(acting, title)?;
    check_description(acting, description)?;
    check_category(category)
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

/// Watchers named by a write: distinct, valid, within `--tickets-max-watchers`.
pub fn distinct_watchers(acting: &Acting, watchers: Vec<String>) -> Result<Vec<String>, ApiError> {
    let limit = (acting.limits.max_watchers, "tickets-max-watchers");
    distinct_users("watchers", watchers, limit, "watchers of a ticket")
}

/// User ids named in `field`: each valid, duplicates dropped (first kept),
/// at most `limit.0` of them (400 naming `what` and the flag `limit.1`).
pub fn distinct_users(
    field: &str,
    users: Vec<String>,
    limit: (usize, &str),
    what: &str,
) -> Result<Vec<String>, ApiError> {
    let mut distinct: Vec<String> = Vec::with_capacity(users.len().min(limit.0 + 1));
    for user in users {
        check_user(field, &user)?;
        if !distinct.contains(&user) {
            distinct.push(user);
        }
        if distinct.len() > limit.0 {
            return Err(over_limit(what, limit.1, limit.0));
        }
    }
    Ok(distinct)
}

/// A ticket the caller sees (404 otherwise) and that takes writes (409
/// once merged).
pub fn writable(records: &impl Records, acting: &Acting, id: u64) -> Result<Ticket, ApiError> {
    let ticket = service::visible_ticket(records, acting, id)?;
    ticket.check_not_merged()?;
    Ok(ticket)
}

/// Edits a ticket's fields: agents any of them; its requester only the
/// title and description, and only while it is `new`.
pub fn update(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    edit: TicketEdit,
) -> Result<Ticket, ApiError> {
    let before = writable(change, acting, id)?;
    may_edit(acting, &before, &edit)?;
    let mut ticket = before.clone();
    if let Some(title) = edit.title {
        check_title(acting, &title)?;
        ticket.title = title;
    }
    if let Some(description) = edit.description {
        check_description(acting, &description)?;
        ticket.description = description;
    }
    if let Some(category) = edit.category {
        check_category(&category)?;
        ticket.category = category;
    }
    if let Some(queue) = edit.queue_id {
        service::queue(change, &acting.tenant, queue)?;
        ticket.queue_id = Some(queue);
    }
    ticket.priority = edit.priority.unwrap_or(ticket.priority);
    if ticket == before {
        return Ok(before);
    }
    ticket.updated_at = now(change);
    save(change, acting, Some(&before), ticket)
}

/// 403 unless the caller may make `edit` to `ticket`.
fn may_edit(acting: &Acting, ticket: &Ticket, edit: &TicketEdit) -> Result<(), ApiError> {
    if acting.is_agent() {
        return Ok(());
    }
    if ticket.requester.id != acting.person.id || ticket.status != Status::New {
        return Err(forbidden(
            "a requester edits only their own ticket, and only while it is new",
        ));
    }
    if edit.category.is_some() || edit.priority.is_some() || edit.queue_id.is_some() {
        return Err(forbidden(
            "a requester edits only the title and description: category, priority and queueId need the agent role",
        ));
    }
    Ok(())
}

/// Sets `firstResponseAt` to `at` when an agent other than the requester
/// acts on the ticket for the first time (moving it out of `new`,
/// assigning it).
pub fn first_response(acting: &Acting, ticket: &mut Ticket, at: &str) {
    let responder = acting.is_agent() && acting.person.id != ticket.requester.id;
    if responder && ticket.first_response_at.is_none() {
        ticket.first_response_at = Some(at.to_string());
    }
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
    index::update(change, &tenant, before, &ticket);
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
    raise_cause(change, acting, &cause, recipients)
}

/// Raises `cause` (with its metadata and detail) for `recipients`.
pub fn raise_cause<'r>(
    change: &mut Change<'_>,
    acting: &Acting,
    cause: &Cause<'_>,
    recipients: impl IntoIterator<Item = &'r str>,
) -> Result<Vec<String>, ApiError> {
    let inbox_max = acting.limits.inbox_max;
    notify::notify(change, &acting.tenant, inbox_max, recipients, cause)
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
