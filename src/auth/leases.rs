//! Leases: how a ticket's first use and the per-user stream limit hold
//! across a cluster. The writer owns both (its [`Tickets`] and
//! [`StreamLimits`]); an edge takes what a stream holds — a ticket session,
//! a per-user slot — as a lease from the writer, renews it while the stream
//! lives and releases it when the stream ends.
//!
//! * [`Grants`]: how the [`super::Authenticator`] of an edge asks for a
//!   lease (implemented over HTTP in `cluster::edge::leases`);
//! * [`LeaseTable`]: the writer's leases, each holding what it grants (a
//!   [`TicketSession`] or a [`UserSlot`]) until it is released or expires;
//! * [`routes`]: the writer's internal endpoints under
//!   `/admin/v1/cluster/leases/…`, for the instance admin key only (an
//!   edge's `--writer-key`).
//!
//! Invariants: a ticket is claimed only on the writer thread (one first
//! use cluster-wide, one open session at a time); a lease counts in the
//! same per-user limit as the writer's own streams; a lease not renewed
//! within its expiry ([`LeaseSettings::expiry`], `--lease-expiry`) is
//! dropped by the next sweep (at most the expiry + [`SWEEP_PERIOD`] after
//! its last renewal), which frees its slot or session; the table holds at
//! most [`LeaseSettings::max`] leases (`--max-leases`; further grants are
//! 503), so what edges (and the clients behind them) can make the writer
//! hold is bounded: per user by the stream limit, in all by that cap.

use super::limits::{StreamLimits, UserSlot};
use super::tickets::{Target, Ticket, TicketSession, Tickets};
use super::{Authenticator, Principal};
use crate::core::lifecycle::Lifecycle;
use crate::error::{ApiError, ErrorCode};
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How often an edge renews its leases.
pub const RENEW_PERIOD: Duration = Duration::from_secs(3);
/// The shortest `--lease-expiry`: two renewals, so one lost renewal does
/// not expire a live stream's lease.
pub const MIN_EXPIRY: Duration = Duration::from_secs(6);
/// How often the writer drops expired leases.
pub const SWEEP_PERIOD: Duration = Duration::from_secs(1);

/// The writer's lease settings (flags `--lease-expiry`, `--max-leases`).
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// A lease not renewed for this long expires (at least [`MIN_EXPIRY`]).
    pub expiry: Duration,
    /// Most leases the writer holds at once (all edges together); also the
    /// most lease ids one renewal or release names.
    pub max: usize,
}

impl Default for LeaseSettings {
    /// 10 s and 100 000 (about 20 MB of leases).
    fn default() -> Self {
        Self {
            expiry: Duration::from_secs(10),
            max: 100_000,
        }
    }
}

/// Something a stream holds until it ends; dropping it lets go of it (a
/// ticket session, a per-user slot, a lease on the writer).
pub type Hold = Box<dyn Send + Sync>;

/// A ticket claimed for a stream.
pub struct Claimed {
    /// The ticket as claimed.
    pub ticket: Ticket,
    /// When the session must end (unix seconds).
    pub ends_at: u64,
    /// Holds the session open until dropped.
    pub hold: Hold,
}

impl From<TicketSession> for Claimed {
    fn from(session: TicketSession) -> Self {
        Self {
            ticket: session.ticket.clone(),
            ends_at: session.ends_at,
            hold: Box::new(session),
        }
    }
}

/// A future answering a lease request.
pub type Granting<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Where an edge's streams take what they hold: the writer.
pub trait Grants: Send + Sync {
    /// Claims (first use or resume) the ticket `secret` for `target`.
    fn ticket<'a>(&'a self, secret: &'a str, target: &'a Target) -> Granting<'a, Claimed>;
    /// Takes one of `user`'s stream slots (429 at the limit).
    fn slot<'a>(&'a self, tenant: Uuid, user: &'a str) -> Granting<'a, Hold>;
}

/// What a lease holds on the writer.
enum Held {
    Slot(#[allow(dead_code)] UserSlot),
    Session(#[allow(dead_code)] Box<TicketSession>),
}

struct Lease {
    _held: Held,
    expires: Instant,
}

/// The writer's leases, by id.
pub struct LeaseTable {
    leases: Mutex<HashMap<Uuid, Lease>>,
    limits: Arc<StreamLimits>,
    settings: LeaseSettings,
}

impl LeaseTable {
    /// Leases counting in the writer's per-user `limits`, expiring and
    /// capped as `settings` say.
    pub fn new(limits: Arc<StreamLimits>, settings: LeaseSettings) -> Self {
        Self {
            leases: Mutex::default(),
            limits,
            settings,
        }
    }

    /// Claims a ticket of `tickets` under a new lease.
    pub async fn claim(
        &self,
        tickets: &Tickets,
        secret: &str,
        target: &Target,
    ) -> Result<TicketGrant, ApiError> {
        self.room()?;
        let session = tickets.claim(secret, target).await?;
        let (ticket, ends_at) = (session.ticket.clone(), session.ends_at);
        let lease = self.insert(Held::Session(Box::new(session)))?;
        Ok(TicketGrant {
            lease,
            ticket,
            ends_at,
        })
    }

    /// Takes a stream slot of `user` under a new lease.
    pub fn slot(&self, tenant: Uuid, user: &str) -> Result<Uuid, ApiError> {
        self.room()?;
        let slot = self.limits.acquire(tenant, user)?;
        self.insert(Held::Slot(slot))
    }

    /// Extends `ids`; returns those unknown (expired or released).
    pub fn renew(&self, ids: &[Uuid]) -> Vec<Uuid> {
        let expires = Instant::now() + self.settings.expiry;
        let mut leases = self.lock();
        ids.iter()
            .filter(|id| match leases.get_mut(id) {
                Some(lease) => {
                    lease.expires = expires;
                    false
                }
                None => true,
            })
            .copied()
            .collect()
    }

    /// Ends `ids` now.
    pub fn release(&self, ids: &[Uuid]) {
        let gone: Vec<Lease> = {
            let mut leases = self.lock();
            ids.iter().filter_map(|id| leases.remove(id)).collect()
        };
        drop(gone);
    }

    /// Drops the leases past their expiry; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        let gone: Vec<Lease> = {
            let mut leases = self.lock();
            let expired: Vec<Uuid> = leases
                .iter()
                .filter(|(_, lease)| lease.expires <= now)
                .map(|(id, _)| *id)
                .collect();
            expired.iter().filter_map(|id| leases.remove(id)).collect()
        };
        // Dropped outside the lock: a ticket session records its end.
        gone.len()
    }

    /// How many leases are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no lease is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sweeps every [`SWEEP_PERIOD`] until the server stops.
    pub async fn sweep_until_stopped(self: Arc<Self>, lifecycle: Arc<Lifecycle>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(SWEEP_PERIOD) => {}
                () = lifecycle.stopping() => return,
            }
            let expired = self.sweep(Instant::now());
            if expired > 0 {
                tracing::info!(
                    expired,
                    "stream leases of edges expired (an edge stopped renewing them)"
                );
            }
        }
    }

    fn room(&self) -> Result<(), ApiError> {
        if self.len() >= self.settings.max {
            return Err(full(self.settings.max));
        }
        Ok(())
    }

    fn insert(&self, held: Held) -> Result<Uuid, ApiError> {
        let id = Uuid::new_v4();
        let lease = Lease {
            _held: held,
            expires: Instant::now() + self.settings.expiry,
        };
        let mut leases = self.lock();
        if leases.len() >= self.settings.max {
            drop(leases);
            return Err(full(self.settings.max));
        }
        leases.insert(id, lease);
        Ok(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Lease>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn full(max: usize) -> ApiError {
    ApiError::unavailable_for(
        format!("the writer holds its most stream leases ({max}, --max-leases); retry shortly"),
        Duration::from_secs(5),
    )
}

/// Path of a ticket claim.
pub const TICKET_PATH: &str = "/admin/v1/cluster/leases/ticket";
/// Path of a slot request.
pub const SLOT_PATH: &str = "/admin/v1/cluster/leases/slot";
/// Path of a renewal.
pub const RENEW_PATH: &str = "/admin/v1/cluster/leases/renew";
/// Path of a release.
pub const RELEASE_PATH: &str = "/admin/v1/cluster/leases/release";

/// Body of a ticket claim.
#[derive(Debug, Serialize, Deserialize)]
pub struct TicketRequest {
    /// The ticket's secret.
    pub ticket: String,
    /// What the stream opens.
    pub target: Target,
}

/// Answer to a ticket claim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketGrant {
    /// The lease holding the session.
    pub lease: Uuid,
    /// The ticket as claimed.
    pub ticket: Ticket,
    /// When the session must end (unix seconds).
    pub ends_at: u64,
}

/// Body of a slot request.
#[derive(Debug, Serialize, Deserialize)]
pub struct SlotRequest {
    /// The user's tenant.
    pub tenant: Uuid,
    /// The user.
    pub user: String,
}

/// Answer to a slot request.
#[derive(Debug, Serialize, Deserialize)]
pub struct SlotGrant {
    /// The lease holding the slot.
    pub lease: Uuid,
}

/// Body of a renewal or release.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LeaseIds {
    /// The leases.
    pub leases: Vec<Uuid>,
}

/// Answer to a renewal: the leases the writer no longer holds.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Lost {
    /// Expired or released leases.
    pub lost: Vec<Uuid>,
}

/// The writer's lease endpoints (see the module doc).
pub fn routes(router: &mut Router, auth: &Authenticator, table: Arc<LeaseTable>) {
    let state = Arc::new((auth.clone(), table));
    router.route_with(Method::POST, TICKET_PATH, &state, claim_ticket);
    router.route_with(Method::POST, SLOT_PATH, &state, take_slot);
    router.route_with(Method::POST, RENEW_PATH, &state, renew);
    router.route_with(Method::POST, RELEASE_PATH, &state, release);
}

type State = Arc<(Authenticator, Arc<LeaseTable>)>;

fn instance_admin(auth: &Authenticator, request: &Request) -> Result<Principal, ApiError> {
    let principal = auth.authenticate(request)?;
    if !principal.is_instance_admin() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "stream leases are for edges (the instance admin key)",
        ));
    }
    Ok(principal)
}

async fn claim_ticket(state: State, mut request: Request) -> Result<Response, ApiError> {
    instance_admin(&state.0, &request)?;
    let body: TicketRequest = request.json().await?;
    let grant = state
        .1
        .claim(state.0.tickets(), &body.ticket, &body.target)
        .await?;
    Ok(response::data(StatusCode::OK, &grant))
}

async fn take_slot(state: State, mut request: Request) -> Result<Response, ApiError> {
    instance_admin(&state.0, &request)?;
    let body: SlotRequest = request.json().await?;
    let lease = state.1.slot(body.tenant, &body.user)?;
    Ok(response::data(StatusCode::OK, &SlotGrant { lease }))
}

async fn renew(state: State, mut request: Request) -> Result<Response, ApiError> {
    instance_admin(&state.0, &request)?;
    let body = lease_ids(&mut request, &state.1).await?;
    let lost = state.1.renew(&body.leases);
    Ok(response::data(StatusCode::OK, &Lost { lost }))
}

async fn release(state: State, mut request: Request) -> Result<Response, ApiError> {
    instance_admin(&state.0, &request)?;
    let body = lease_ids(&mut request, &state.1).await?;
    state.1.release(&body.leases);
    Ok(response::data(StatusCode::OK, &Lost::default()))
}

async fn lease_ids(request: &mut Request, table: &LeaseTable) -> Result<LeaseIds, ApiError> {
    let body: LeaseIds = request.json().await?;
    let max = table.settings.max;
    if body.leases.len() > max {
        return Err(ApiError::validation(format!(
            "at most {max} leases per call (--max-leases)"
        )));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewed_leases_live_and_others_expire_freeing_their_slots() {
        let limits = Arc::new(StreamLimits::new(1));
        let table = leases_over(limits.clone());
        let tenant = Uuid::nil();
        let kept = table.slot(tenant, "a").unwrap();
        let dropped = table.slot(tenant, "b").unwrap();
        assert_eq!(
            table.slot(tenant, "a").unwrap_err().status.as_u16(),
            429,
            "a lease counts in the user's limit"
        );
        let expiry = LeaseSettings::default().expiry;
        let later = Instant::now() + expiry / 2;
        assert!(table.renew(&[kept]).is_empty());
        assert_eq!(table.sweep(later), 0);
        let past = Instant::now() + expiry + Duration::from_millis(1);
        assert_eq!(table.renew(&[dropped, kept]).len(), 0);
        table.release(&[dropped]);
        assert_eq!(table.renew(&[dropped]), vec![dropped]);
        assert!(
            limits.acquire(tenant, "b").is_ok(),
            "a release frees the slot"
        );
        assert_eq!(table.sweep(past + expiry), 1);
        assert!(table.is_empty());
        assert!(limits.acquire(tenant, "a").is_ok(), "expiry frees the slot");
    }

    #[test]
    fn the_table_holds_at_most_its_cap() {
        let settings = LeaseSettings {
            max: 2,
            ..LeaseSettings::default()
        };
        let table = LeaseTable::new(Arc::new(StreamLimits::new(10)), settings);
        table.slot(Uuid::nil(), "a").unwrap();
        table.slot(Uuid::nil(), "b").unwrap();
        let refused = table.slot(Uuid::nil(), "c").unwrap_err();
        assert_eq!(refused.status.as_u16(), 503);
        assert!(
            refused.message.contains("--max-leases"),
            "{}",
            refused.message
        );
    }

    fn leases_over(limits: Arc<StreamLimits>) -> LeaseTable {
        LeaseTable::new(limits, LeaseSettings::default())
    }
}
