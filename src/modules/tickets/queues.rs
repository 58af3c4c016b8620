//! Queues: named groups of agents a ticket can be put in. Admins create and
//! change them (one writer change each); agents read them.
//!
//! Invariants: a name is 1 to [`MAX_NAME_CHARS`] characters, not blank;
//! agents are valid user ids, distinct (a repeated one is kept once), at
//! most `--tickets-max-queue-agents`; queue ids come from the tenant's
//! counter; changing a queue's agents publishes nothing for its tickets
//! (see [`super::lists`]); a page of queues is bounded by `limit`.

use super::layout::{self, Counter};
use super::model::{MAX_NAME_CHARS, Queue};
use super::query::Page;
use super::service::{self, Acting, fixed_chars, next_id, save};
use super::ticket::distinct_users;
use crate::core::store::Store;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::modules::records::decode;
use serde::Deserialize;

/// `POST /queue` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewQueue {
    /// Name.
    pub name: String,
    /// Agents' user ids.
    #[serde(default)]
    pub agents: Vec<String>,
}

/// `PUT /queue/{queueId}` body: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueEdit {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// The new list of agents (replaces the old one).
    #[serde(default)]
    pub agents: Option<Vec<String>>,
}

/// 400 unless `name` is a queue name.
fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::validation("`name` must not be empty"));
    }
    fixed_chars("name", name, MAX_NAME_CHARS)
}

/// Agents named by a write: distinct, valid, within the limit.
fn agents(acting: &Acting, agents: Vec<String>) -> Result<Vec<String>, ApiError> {
    let limit = (acting.limits.max_queue_agents, "tickets-max-queue-agents");
    distinct_users("agents", agents, limit, "agents of a queue")
}

/// Creates a queue (admins).
pub fn create(
    change: &mut Change<'_>,
    acting: &Acting,
    input: NewQueue,
) -> Result<Queue, ApiError> {
    acting.require_admin()?;
    check_name(&input.name)?;
    let agents = agents(acting, input.agents)?;
    let queue = Queue {
        id: next_id(change, &acting.tenant, Counter::Queue)?,
        name: input.name,
        agents,
    };
    save(change, layout::queue(&acting.tenant, queue.id), &queue)?;
    Ok(queue)
}

/// Changes a queue's name or agents (admins).
pub fn update(
    change: &mut Change<'_>,
    acting: &Acting,
    id: u64,
    edit: QueueEdit,
) -> Result<Queue, ApiError> {
    acting.require_admin()?;
    let mut queue = service::queue(change, &acting.tenant, id)?;
    if let Some(name) = edit.name {
        check_name(&name)?;
        queue.name = name;
    }
    if let Some(named) = edit.agents {
        queue.agents = agents(acting, named)?;
    }
    save(change, layout::queue(&acting.tenant, id), &queue)?;
    Ok(queue)
}

/// One queue (agents).
pub fn get(store: &Store, acting: &Acting, id: u64) -> Result<Queue, ApiError> {
    acting.require_agent()?;
    service::queue(store, &acting.tenant, id)
}

/// Up to `limit` queues after the id `cursor`, in id order (agents).
pub fn page(
    store: &Store,
    acting: &Acting,
    cursor: Option<u64>,
    limit: usize,
) -> Result<Page<Queue>, ApiError> {
    acting.require_agent()?;
    let prefix = layout::queues(&acting.tenant);
    let after = cursor.map(|id| layout::queue(&acting.tenant, id));
    let rows = store
        .scan_blocking(&prefix, after.as_deref(), limit + 1)
        .map_err(|err| err.into_api("reading queues failed"))?;
    let items = rows
        .iter()
        .map(|(_, value)| decode::<Queue>(value))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::of(items, limit, |queue| queue.id))
}
