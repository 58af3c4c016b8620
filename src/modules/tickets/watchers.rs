//! A ticket's watchers: adding (`watchAdded` to the watcher added) and
//! removing, each one writer change with its list updates.
//!
//! Invariants: agents add or remove anyone; other users only themselves,
//! on a ticket they see; a ticket has at most `--tickets-max-watchers`
//! watchers (400 beyond); adding a watcher already there changes nothing
//! and notifies nobody; removing someone who is not a watcher is a 404.

use super::model::{NotificationType, Ticket};
use super::service::{Acting, check_user, now};
use super::ticket::{distinct_watchers, raise, save, writable};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::{forbidden, not_found};
use serde::Deserialize;

/// `POST /ticket/{ticketId}/watchers` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatcherInput {
    /// The user to add.
    pub user_id: String,
}

/// 403 unless the caller is an agent or names themselves.
fn may_change(acting: &Acting, user: &str) -> Result<(), ApiError> {
    if acting.is_agent() || acting.person.id == user {
        Ok(())
    } else {
        Err(forbidden(
            "only agents change other users' watching; anyone may add or remove themselves",
        ))
    }
}

/// Adds a watcher to a ticket.
pub fn add(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    input: WatcherInput,
) -> Result<Ticket, ApiError> {
    check_user("userId", &input.user_id)?;
    let before = writable(change, acting, id)?;
    may_change(acting, &input.user_id)?;
    let mut ticket = before.clone();
    let named = [&before.watchers[..], std::slice::from_ref(&input.user_id)].concat();
    ticket.watchers = distinct_watchers(acting, named)?;
    if ticket.watchers == before.watchers {
        return Ok(before);
    }
    ticket.updated_at = now(change);
    let ticket = save(change, acting, Some(&before), ticket)?;
    raise(
        change,
        acting,
        &ticket,
        NotificationType::WatchAdded,
        [input.user_id.as_str()],
    )?;
    Ok(ticket)
}

/// Removes a watcher from a ticket.
pub fn remove(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    user: &str,
) -> Result<Ticket, ApiError> {
    check_user("userId", user)?;
    let before = writable(change, acting, id)?;
    may_change(acting, user)?;
    let Some(position) = before.watchers.iter().position(|watcher| watcher == user) else {
        return Err(not_found("watcher of this ticket"));
    };
    let mut ticket = before.clone();
    ticket.watchers.remove(position);
    ticket.updated_at = now(change);
    save(change, acting, Some(&before), ticket)
}
