//! Who a ticket's notifications go to, per type (the spec's five filters:
//! the assignee, watchers, users mentioned in a comment, the approver of an
//! approval request, the agents of the ticket's queue).
//!
//! * followers: the assignee and the watchers (a requester watches their
//!   own ticket from its creation), and the queue's agents while the ticket
//!   has no assignee;
//! * `statusChange`, `resolution`, `reopened`, `merge`, `comment`: the
//!   followers (a follower mentioned in the comment gets `mention` instead);
//! * `escalation`, `slaWarning`, `slaBreach`: the followers and the queue's
//!   agents;
//! * `assignment`: the new assignee; `reassignment`: the previous one;
//! * `mention`: the users mentioned; `approval`: the approver;
//!   `approvalDecision`: who asked for the approval and the assignee;
//!   `watchAdded`: the watcher added.
//!
//! The actor is removed later, by [`super::notify::notify`], as are users
//! who switched the type off.

use super::model::Ticket;
use super::service;
use crate::error::ApiError;
use crate::modules::records::Records;
use std::collections::BTreeSet;
use uuid::Uuid;

/// The agents of the ticket's queue (none without a queue).
pub fn queue_agents(
    records: &impl Records,
    tenant: &Uuid,
    ticket: &Ticket,
) -> Result<BTreeSet<String>, ApiError> {
    match ticket.queue_id {
        Some(queue) => Ok(service::queue(records, tenant, queue)?
            .agents
            .into_iter()
            .collect()),
        None => Ok(BTreeSet::new()),
    }
}

/// The assignee, the watchers, and the queue's agents while unassigned.
pub fn followers(
    records: &impl Records,
    tenant: &Uuid,
    ticket: &Ticket,
) -> Result<BTreeSet<String>, ApiError> {
    let mut users: BTreeSet<String> = ticket.watchers.iter().cloned().collect();
    match &ticket.assignee {
        Some(assignee) => {
            users.insert(assignee.clone());
        }
        None => users.extend(queue_agents(records, tenant, ticket)?),
    }
    Ok(users)
}

/// The followers and the queue's agents (escalation and SLA events).
pub fn followers_and_queue(
    records: &impl Records,
    tenant: &Uuid,
    ticket: &Ticket,
) -> Result<BTreeSet<String>, ApiError> {
    let mut users = followers(records, tenant, ticket)?;
    users.extend(queue_agents(records, tenant, ticket)?);
    Ok(users)
}
