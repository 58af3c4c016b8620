//! Single-use stream tickets (spec 000): a backend mints one per viewer with its
//! API key; the browser opens one stream with it and nothing else.
//!
//! Invariants:
//! * the secret is random (256 bits), shown once, stored only as a hash;
//! * a ticket is bound to its tenant, its target and the viewer the backend
//!   named (id and name of bounded length);
//! * first use happens within `--ticket-ttl` (60 s) and is atomic: the claim runs
//!   on the writer thread, so of concurrent first uses exactly one succeeds;
//! * afterwards the ticket names that one stream session: it may resume it
//!   (EventSource reconnecting with `Last-Event-ID`) while no other connection
//!   holds it and within `--ticket-resume-window` (24 h) of its last connection;
//! * ticket state is durable (it survives restarts); which session is open right
//!   now is in memory (after a restart nothing is held), marked by a guard
//!   that the claiming change creates and whoever ends up holding it drops:
//!   a claim whose request is cancelled before its answer releases it too;
//! * tickets that can never open a stream again are swept by the pruner.

use super::api_keys::hash_secret;
use super::layout;
use crate::core::store::{Store, StoreError};
use crate::core::writer::{Footprint, Writer};
use crate::error::{ApiError, ErrorCode};
use crate::field_limits::check_optional;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Prefix of ticket secrets.
pub const TICKET_PREFIX: &str = "tk";

/// What a ticket opens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "id", rename_all = "lowercase")]
pub enum Target {
    /// A topic of the generic topics API.
    Topic(String),
    /// A discussion (spec 000).
    Discussion(String),
}

/// Who watches, as the backend said.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Viewer {
    /// The viewer's id on the backend's side.
    #[serde(default)]
    pub id: Option<String>,
    /// A display name.
    #[serde(default)]
    pub name: Option<String>,
}

/// Longest viewer id, in bytes.
pub const MAX_VIEWER_ID_BYTES: usize = 200;
/// Longest viewer name, in bytes.
pub const MAX_VIEWER_NAME_BYTES: usize = 200;

impl Viewer {
    /// 400 when the id or name is over its limit; the fields are reported
    /// under the names the request used.
    pub fn check(&self, id_field: &str, name_field: &str) -> Result<(), ApiError> {
        check_optional(id_field, self.id.as_deref(), MAX_VIEWER_ID_BYTES)?;
        check_optional(name_field, self.name.as_deref(), MAX_VIEWER_NAME_BYTES)
    }
}

/// A stored ticket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// Owning tenant.
    pub tenant: Uuid,
    /// What it opens.
    pub target: Target,
    /// Who watches.
    pub viewer: Viewer,
    /// Unix ms by which the first use must happen.
    pub first_use_by: u64,
    /// Unix ms of the first use.
    pub first_used_at: Option<u64>,
    /// Unix ms of the last connect or disconnect.
    pub last_seen_at: Option<u64>,
}

/// Ticket lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct TicketSettings {
    /// Time to first use.
    pub ttl: Duration,
    /// Resume window after the last connection.
    pub resume_window: Duration,
}

/// Mints and claims tickets.
pub struct Tickets {
    writer: Writer,
    settings: TicketSettings,
    held: Arc<Mutex<HashSet<String>>>,
}

/// A ticket session marked open (in the `held` set) for as long as this
/// guard lives.
struct HeldSession {
    hash: String,
    held: Arc<Mutex<HashSet<String>>>,
}

impl HeldSession {
    /// Marks the session of ticket `hash` open; `None` when it already is.
    fn mark(held: Arc<Mutex<HashSet<String>>>, hash: String) -> Option<Self> {
        let inserted = held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash.clone());
        // Lazily: a guard built and dropped here would unmark the holder's session.
        inserted.then(|| Self { hash, held })
    }
}

impl Drop for HeldSession {
    fn drop(&mut self) {
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.hash);
    }
}

/// An open ticket session; dropping it releases the session and records the time.
pub struct TicketSession {
    open: HeldSession,
    writer: Writer,
    /// The claimed ticket.
    pub ticket: Ticket,
    /// When the session must end (unix seconds): the resume window from now.
    pub ends_at: u64,
}

impl Tickets {
    /// A ticket service committing through `writer`.
    pub fn new(writer: Writer, settings: TicketSettings) -> Self {
        Self {
            writer,
            settings,
            held: Arc::default(),
        }
    }

    /// The configured lifetimes.
    pub fn settings(&self) -> TicketSettings {
        self.settings
    }

    /// Creates a ticket; returns its secret (shown only now) and the record.
    pub async fn mint(
        &self,
        tenant: Uuid,
        target: Target,
        viewer: Viewer,
    ) -> Result<(String, Ticket), ApiError> {
        viewer.check("viewer.id", "viewer.name")?;
        let secret = crate::secret::generate(TICKET_PREFIX)
            .map_err(|err| ApiError::internal(err.to_string()))?;
        let ttl = u64::try_from(self.settings.ttl.as_millis()).unwrap_or(u64::MAX);
        let ticket = Ticket {
            tenant,
            target,
            viewer,
            first_use_by: crate::core::clock::unix_millis().saturating_add(ttl),
            first_used_at: None,
            last_seen_at: None,
        };
        let key = layout::ticket(&hash_secret(&secret));
        let value = encode(&ticket)?;
        self.writer
            .commit(Footprint::SMALL, move |change| {
                change.put(key, value);
                Ok(())
            })
            .await?;
        Ok((secret, ticket))
    }

    /// Opens (or resumes) the ticket's session for `target`; atomic across
    /// concurrent attempts. The session is marked open on the writer thread
    /// by a guard that travels with the answer: whoever drops it (the
    /// session, a failed commit, a caller that went away before the answer)
    /// marks the session closed again.
    pub async fn claim(&self, secret: &str, target: &Target) -> Result<TicketSession, ApiError> {
        let hash = hash_secret(secret);
        let key = layout::ticket(&hash);
        let (held, window, wanted) = (
            self.held.clone(),
            self.settings.resume_window,
            target.clone(),
        );
        let session_hash = hash.clone();
        let committed = self
            .writer
            .commit(Footprint::SMALL, move |change| {
                let bytes = change
                    .get(&key)?
                    .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "unknown ticket"))?;
                let mut ticket = decode(&bytes)?;
                let now = crate::core::clock::unix_millis();
                admit(&ticket, &wanted, now, window)?;
                let open = HeldSession::mark(held, session_hash).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::Conflict,
                        "this ticket's stream is already open elsewhere",
                    )
                })?;
                ticket.first_used_at.get_or_insert(now);
                ticket.last_seen_at = Some(now);
                change.put(key, encode(&ticket)?);
                Ok((ticket, open))
            })
            .await?;
        let (ticket, open) = committed.value;
        Ok(self.session(open, ticket))
    }

    /// Deletes tickets that can never open a stream again (unused past their
    /// first-use deadline, or past their resume window) and are not held.
    pub async fn sweep(&self, store: &Store) -> Result<usize, StoreError> {
        let window = u64::try_from(self.settings.resume_window.as_millis()).unwrap_or(u64::MAX);
        let now = crate::core::clock::unix_millis();
        let dead = store
            .run(move |store| dead_tickets(store, now, window))
            .await?;
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let doomed: Vec<Vec<u8>> = dead
            .into_iter()
            .filter(|(hash, _)| !held.contains(hash))
            .map(|(_, key)| key)
            .collect();
        let count = doomed.len();
        if count > 0 {
            self.writer
                .commit(Footprint::SMALL, move |change| {
                    for key in doomed {
                        change.delete(key);
                    }
                    Ok(())
                })
                .await
                .map_err(|err| StoreError::new(err.message))?;
        }
        Ok(count)
    }

    fn session(&self, open: HeldSession, ticket: Ticket) -> TicketSession {
        let window = self.settings.resume_window.as_secs();
        TicketSession {
            open,
            writer: self.writer.clone(),
            ends_at: crate::core::clock::unix_millis() / 1000 + window,
            ticket,
        }
    }
}

/// Most tickets removed by one sweep.
const MAX_SWEEP: usize = 10_000;

/// `(hash, key)` of stored tickets that can no longer be used (blocking).
fn dead_tickets(
    store: &Store,
    now: u64,
    window: u64,
) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
    let prefix = layout::kind_prefix(layout::TICKET);
    let mut dead = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    while dead.len() < MAX_SWEEP {
        let page = store.scan_blocking(&prefix, after.as_deref(), 1000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.to_vec());
        for (key, value) in &page {
            let Ok(ticket) = serde_json::from_slice::<Ticket>(value) else {
                continue;
            };
            let expired = match ticket.last_seen_at {
                None => now > ticket.first_use_by,
                Some(last) => now > last.saturating_add(window),
            };
            if expired {
                let hash = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                dead.push((hash, key.to_vec()));
            }
        }
    }
    Ok(dead)
}

/// Refuses a claim that the ticket's state does not allow.
fn admit(ticket: &Ticket, wanted: &Target, now: u64, window: Duration) -> Result<(), ApiError> {
    if ticket.target != *wanted {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this ticket opens another stream",
        ));
    }
    let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    match (ticket.first_used_at, ticket.last_seen_at) {
        (None, _) if now > ticket.first_use_by => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the ticket expired before it was used; mint a new one",
        )),
        (Some(_), Some(last)) if now > last.saturating_add(window) => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "the ticket's resume window has closed; mint a new one",
        )),
        _ => Ok(()),
    }
}

impl Drop for TicketSession {
    fn drop(&mut self) {
        // The `open` guard marks the session closed when it drops, after this.
        let key = layout::ticket(&self.open.hash);
        let writer = self.writer.clone();
        let mut ticket = self.ticket.clone();
        ticket.last_seen_at = Some(crate::core::clock::unix_millis());
        let Ok(value) = encode(&ticket) else { return };
        // The resume window counts from the end of the connection; best effort.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = writer
                    .commit(Footprint::SMALL, move |change| {
                        change.put(key, value);
                        Ok(())
                    })
                    .await;
            });
        }
    }
}

fn encode(ticket: &Ticket) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(ticket)
        .map_err(|err| ApiError::internal(format!("encoding a ticket: {err}")))
}

fn decode(bytes: &[u8]) -> Result<Ticket, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::internal(format!("stored ticket unreadable: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket(first_used_at: Option<u64>, last_seen_at: Option<u64>) -> Ticket {
        Ticket {
            tenant: Uuid::nil(),
            target: Target::Topic("t".into()),
            viewer: Viewer::default(),
            first_use_by: 1_000,
            first_used_at,
            last_seen_at,
        }
    }

    #[test]
    fn admission_follows_first_use_deadline_window_and_target() {
        let window = Duration::from_secs(10);
        let topic = Target::Topic("t".into());
        assert!(admit(&ticket(None, None), &topic, 999, window).is_ok());
        assert!(
            admit(&ticket(None, None), &topic, 1_001, window).is_err(),
            "unused after the ttl"
        );
        assert!(admit(&ticket(Some(500), Some(5_000)), &topic, 14_000, window).is_ok());
        assert!(
            admit(&ticket(Some(500), Some(5_000)), &topic, 15_001, window).is_err(),
            "window closed"
        );
        let other = Target::Topic("u".into());
        assert_eq!(
            admit(&ticket(None, None), &other, 0, window)
                .unwrap_err()
                .code,
            ErrorCode::Forbidden
        );
    }
}
