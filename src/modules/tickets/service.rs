//! What every tickets operation runs with: who acts and with which role,
//! and the module's records as a change or the store sees them.
//!
//! Who acts: a user with a JWT of the tenant's realm (`sub`; the `name`
//! claim, else `preferred_username`, else the id, as display name; the
//! `picture` or `avatar` claim as avatar), whose role comes from the
//! token's `roles` (`admin` or `ticketing-admin`: [`Role::Admin`]; `agent`:
//! [`Role::Agent`]; otherwise [`Role::Requester`]); or the tenant's backend
//! with an API key (`publish` scope for writes, `read` for reads) acting
//! for the user named in `X-Acting-User-Id` (with `X-Acting-User-Name` and
//! `X-Acting-User-Avatar`), with the admin role. The instance admin key and
//! stream tickets get 403.
//!
//! Invariants: a missing ticket or queue is a 404 naming it, and so is a
//! ticket the caller may not see ([`Acting::may_see`]); ids come from
//! per-tenant counters inside the change, so they increase in commit order.

use super::layout::{self, Counter};
use super::model::{
    MAX_PROFILE_CHARS, MAX_USER_CHARS, Person, Queue, TenantSettings, Ticket, TicketsLimits,
};
use crate::auth::api_keys::Scope;
use crate::auth::jwt::ExtraClaims;
use crate::auth::{Credential, Principal};
use crate::core::store::decode_u64;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::Request;
use crate::modules::records::{Records, decode, encode, forbidden, load};
use serde_json::Value;
use uuid::Uuid;

/// Header naming the user a backend acts for.
pub const ACTING_USER_HEADER: &str = "x-acting-user-id";
/// Header naming that user's display name.
pub const ACTING_NAME_HEADER: &str = "x-acting-user-name";
/// Header naming that user's avatar URL.
pub const ACTING_AVATAR_HEADER: &str = "x-acting-user-avatar";
/// JWT roles that administer the tenant's ticketing.
const ADMIN_ROLES: [&str; 2] = ["admin", "ticketing-admin"];
/// JWT role of agents.
const AGENT_ROLE: &str = "agent";

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Opens tickets, comments on and watches their own.
    Requester,
    /// Works tickets: sees every ticket, assigns, changes status.
    Agent,
    /// An agent who also manages queues, SLA policies and settings.
    Admin,
}

/// Who acts in a change.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The tenant.
    pub tenant: Uuid,
    /// The user, as notifications name them.
    pub person: Person,
    /// The user's role.
    pub role: Role,
    /// Module limits.
    pub limits: TicketsLimits,
}

impl Acting {
    /// The caller of a request with `principal`; backends need `scope`.
    pub fn of(
        principal: &Principal,
        request: &Request,
        scope: Scope,
        limits: TicketsLimits,
    ) -> Result<Self, ApiError> {
        let (person, role) = match &principal.credential {
            Credential::Token(claims) => (
                person_of_claims(&claims.sub, &claims.extra)?,
                role_of(&claims.roles),
            ),
            Credential::Key(_) => {
                principal.require(scope)?;
                (acted_for(request)?, Role::Admin)
            }
            Credential::Admin => {
                return Err(forbidden(
                    "the instance admin key does not act in ticketing: use a tenant API key or a user's JWT",
                ));
            }
            Credential::Ticket(_) => {
                return Err(forbidden("a stream ticket only opens its stream"));
            }
        };
        Ok(Self {
            tenant: principal.tenant,
            person,
            role,
            limits,
        })
    }

    /// True for agents and admins.
    pub fn is_agent(&self) -> bool {
        self.role >= Role::Agent
    }

    /// 403 unless the caller is an agent or admin.
    pub fn require_agent(&self) -> Result<(), ApiError> {
        if self.is_agent() {
            Ok(())
        } else {
            Err(forbidden("this needs the agent role"))
        }
    }

    /// 403 unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(forbidden("this needs the admin role"))
        }
    }

    /// Whether the caller may see `ticket`: agents see every ticket,
    /// requesters the ones they asked, watch or are assigned.
    pub fn may_see(&self, ticket: &Ticket) -> bool {
        let me = self.person.id.as_str();
        self.is_agent()
            || ticket.requester.id == me
            || ticket.assignee.as_deref() == Some(me)
            || ticket.watchers.iter().any(|watcher| watcher == me)
    }
}

/// The role a token's roles give.
pub fn role_of(roles: &[String]) -> Role {
    if roles
        .iter()
        .any(|role| ADMIN_ROLES.contains(&role.as_str()))
    {
        Role::Admin
    } else if roles.iter().any(|role| role == AGENT_ROLE) {
        Role::Agent
    } else {
        Role::Requester
    }
}

fn claim<'a>(extra: &'a ExtraClaims, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| extra.get(name).and_then(Value::as_str))
        .filter(|text| !text.is_empty())
}

fn person_of_claims(sub: &str, extra: &ExtraClaims) -> Result<Person, ApiError> {
    person(
        sub,
        claim(extra, &["name", "preferred_username"]),
        claim(extra, &["picture", "avatar"]),
    )
}

fn acted_for(request: &Request) -> Result<Person, ApiError> {
    let id = request.header(ACTING_USER_HEADER).ok_or_else(|| {
        ApiError::validation(format!(
            "a backend acts for a user: send `{ACTING_USER_HEADER}` (and optionally `{ACTING_NAME_HEADER}`, `{ACTING_AVATAR_HEADER}`)"
        ))
    })?;
    person(
        id,
        request.header(ACTING_NAME_HEADER),
        request.header(ACTING_AVATAR_HEADER),
    )
}

/// A person from an id and optional name and avatar, within the limits.
pub fn person(id: &str, name: Option<&str>, avatar: Option<&str>) -> Result<Person, ApiError> {
    check_user("userId", id)?;
    let name = name.unwrap_or(id);
    fixed_chars("name", name, MAX_PROFILE_CHARS)?;
    if let Some(avatar) = avatar {
        fixed_chars("avatar", avatar, MAX_PROFILE_CHARS)?;
    }
    Ok(Person {
        id: id.to_string(),
        name: name.to_string(),
        avatar: avatar.map(str::to_string),
    })
}

/// 400 unless `user` is a user id: 1 to 256 characters, no control characters.
pub fn check_user(field: &str, user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(ApiError::validation(format!(
            "`{field}` must be a non-empty user id without control characters"
        )));
    }
    fixed_chars(field, user, MAX_USER_CHARS)
}

/// 400 when `value` is longer than a fixed limit of `max` characters.
pub fn fixed_chars(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() <= max {
        return Ok(());
    }
    Err(ApiError::validation(format!(
        "`{field}` is longer than {max} characters"
    )))
}

/// The system, as the actor of SLA notifications.
pub fn system() -> Person {
    Person {
        id: "system".into(),
        name: "SLA monitor".into(),
        avatar: None,
    }
}

/// A ticket (404 when missing).
pub fn ticket(records: &impl Records, tenant: &Uuid, id: u64) -> Result<Ticket, ApiError> {
    load(records, &layout::ticket(tenant, id), "ticket")
}

/// A ticket the caller may see (404 otherwise).
pub fn visible_ticket(
    records: &impl Records,
    acting: &Acting,
    id: u64,
) -> Result<Ticket, ApiError> {
    let ticket = ticket(records, &acting.tenant, id)?;
    if acting.may_see(&ticket) {
        Ok(ticket)
    } else {
        Err(crate::modules::records::not_found("ticket"))
    }
}

/// A queue (404 when missing).
pub fn queue(records: &impl Records, tenant: &Uuid, id: u64) -> Result<Queue, ApiError> {
    load(records, &layout::queue(tenant, id), "queue")
}

/// The tenant's settings (the defaults until an admin stores some).
pub fn settings(records: &impl Records, tenant: &Uuid) -> Result<TenantSettings, ApiError> {
    match records.record(&layout::settings(tenant))? {
        Some(bytes) => decode(&bytes),
        None => Ok(TenantSettings::default()),
    }
}

/// Stores a record.
pub fn save<T: serde::Serialize>(
    change: &mut Change<'_>,
    key: Vec<u8>,
    value: &T,
) -> Result<(), ApiError> {
    change.put(key, encode(value)?);
    Ok(())
}

/// The next id of a counter.
pub fn next_id(change: &mut Change<'_>, tenant: &Uuid, counter: Counter) -> Result<u64, ApiError> {
    let key = layout::counter(tenant, counter);
    let next = change.get(&key)?.map_or(0, |bytes| decode_u64(&bytes)) + 1;
    change.put(key, next.to_be_bytes().to_vec());
    Ok(next)
}

/// The change's time as RFC 3339 (ms).
pub fn now(change: &Change<'_>) -> String {
    crate::core::clock::rfc3339_millis(change.now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_tokens_roles() {
        let roles = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(role_of(&roles(&[])), Role::Requester);
        assert_eq!(role_of(&roles(&["viewer", "agent"])), Role::Agent);
        assert_eq!(role_of(&roles(&["agent", "ticketing-admin"])), Role::Admin);
        assert_eq!(role_of(&roles(&["admin"])), Role::Admin);
    }

    #[test]
    fn a_person_takes_name_and_avatar_claims() {
        let mut extra = serde_json::Map::new();
        assert_eq!(
            person_of_claims("u1", &extra.clone().into()).unwrap().name,
            "u1"
        );
        extra.insert("preferred_username".into(), "jane".into());
        extra.insert("picture".into(), "https://a/p.png".into());
        let person = person_of_claims("u1", &extra.into()).unwrap();
        assert_eq!(
            (person.name.as_str(), person.avatar.as_deref()),
            ("jane", Some("https://a/p.png"))
        );
        assert!(check_user("userId", "").is_err());
        assert!(check_user("userId", "a\nb").is_err());
    }
}
