//! Who acts on a discussion: a reader (through the backend's API key plus
//! `X-External-User-Id`, or with a JWT of the tenant's realm whose `sub` is the
//! external user id) or the backend/operator itself.
//!
//! Invariants: a reader's internal id is created on first use inside the
//! same atomic change as the action, and never changes afterwards; moderators
//! are API keys with the `admin` scope acting as themselves, the instance
//! admin key, and JWTs with a `moderator` or `admin` role.

use super::layout;
use super::model::{Reader, decode, encode};
use crate::auth::api_keys::Scope;
use crate::auth::{Credential, Principal};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::Request;
use uuid::Uuid;

/// Header naming the reader a backend acts for.
pub const EXTERNAL_USER_HEADER: &str = "x-external-user-id";
/// Longest external user id, in characters.
pub const MAX_EXTERNAL_USER_ID: usize = 200;
/// Longest display name (given with a comment, or a token's `name` claim),
/// in characters: every comment of the reader carries it.
pub const MAX_DISPLAY_NAME: usize = 100;
/// JWT roles that may moderate.
const MODERATOR_ROLES: [&str; 2] = ["moderator", "admin"];

/// The actor of a request, before its internal id is looked up.
#[derive(Debug, Clone)]
pub struct Actor {
    /// The tenant acted on.
    pub tenant: Uuid,
    /// The reader, when a reader acts.
    pub reader: Option<ReaderRef>,
    /// May moderate (approve, reject, pin, lock, edit and delete any comment).
    pub moderator: bool,
    /// The credential's name (key name, token subject, `admin`).
    pub name: String,
}

/// A reader named by the backend or a token.
#[derive(Debug, Clone)]
pub struct ReaderRef {
    /// The backend's user id.
    pub external_id: String,
    /// Display name, when given.
    pub display_name: Option<String>,
}

/// An actor whose reader (if any) has its internal id.
#[derive(Debug, Clone)]
pub struct Acting {
    /// The reader.
    pub reader: Option<Reader>,
    /// May moderate.
    pub moderator: bool,
    /// The credential's name.
    pub name: String,
}

impl Acting {
    /// The reader's internal id (`None` for the backend or an operator).
    pub fn user_id(&self) -> Option<Uuid> {
        self.reader.as_ref().map(|reader| reader.id)
    }

    /// The reader, or 400 when the action needs one.
    pub fn require_reader(&self) -> Result<&Reader, ApiError> {
        self.reader.as_ref().ok_or_else(|| {
            ApiError::validation(format!(
                "this action is a reader's: send the reader's id in {EXTERNAL_USER_HEADER} or use the reader's JWT"
            ))
        })
    }

    /// 403 unless the actor may moderate.
    pub fn require_moderator(&self) -> Result<(), ApiError> {
        require_moderator(self.moderator, "do this")
    }

    /// True when the actor wrote `author` or moderates.
    pub fn may_change(&self, author: Uuid) -> bool {
        self.moderator || self.user_id() == Some(author)
    }
}

impl Actor {
    /// 403 unless the actor may moderate; the message says moderators only
    /// may `action`.
    pub fn require_moderator(&self, action: &str) -> Result<(), ApiError> {
        require_moderator(self.moderator, action)
    }

    /// The actor of an authenticated request; `write` asks for the `publish`
    /// scope from keys acting for a reader.
    pub fn of(principal: &Principal, request: &Request, write: bool) -> Result<Self, ApiError> {
        let (reader, moderator) = match &principal.credential {
            Credential::Token(claims) => {
                let name = claims.extra.get("name").and_then(|v| v.as_str());
                let moderator = claims
                    .roles
                    .iter()
                    .any(|role| MODERATOR_ROLES.contains(&role.as_str()));
                (Some(reader_ref(&claims.sub, name)?), moderator)
            }
            Credential::Admin | Credential::Key(_) => match request.header(EXTERNAL_USER_HEADER) {
                Some(id) => {
                    let scope = if write { Scope::Publish } else { Scope::Read };
                    principal.require(scope)?;
                    (Some(reader_ref(id, None)?), false)
                }
                None => {
                    principal.require(Scope::Read)?;
                    (None, principal.has(Scope::Admin))
                }
            },
            Credential::Ticket(_) => {
                return Err(ApiError::new(
                    crate::error::ErrorCode::Forbidden,
                    "a stream ticket only opens its stream",
                ));
            }
        };
        Ok(Self {
            tenant: principal.tenant,
            reader,
            moderator,
            name: principal.name.clone(),
        })
    }

    /// Overrides the reader's display name (e.g. given with a comment);
    /// 400 when it is longer than [`MAX_DISPLAY_NAME`].
    pub fn with_display_name(mut self, name: Option<String>) -> Result<Self, ApiError> {
        if let (Some(reader), Some(name)) = (self.reader.as_mut(), name) {
            crate::field_limits::check_chars("displayName", &name, MAX_DISPLAY_NAME)?;
            reader.display_name = Some(name);
        }
        Ok(self)
    }

    /// Looks up (or creates) the reader's internal id inside `change`.
    pub fn resolve(&self, change: &mut Change<'_>) -> Result<Acting, ApiError> {
        let reader = match &self.reader {
            Some(reader) => Some(resolve_reader(change, &self.tenant, reader)?),
            None => None,
        };
        Ok(Acting {
            reader,
            moderator: self.moderator,
            name: self.name.clone(),
        })
    }
}

/// 403 unless `moderator`, saying that only moderators may `action`.
fn require_moderator(moderator: bool, action: &str) -> Result<(), ApiError> {
    if moderator {
        Ok(())
    } else {
        Err(ApiError::new(
            crate::error::ErrorCode::Forbidden,
            format!(
                "only moderators may {action} (an API key with the admin scope, or a JWT with the moderator role)"
            ),
        ))
    }
}

fn reader_ref(external_id: &str, display_name: Option<&str>) -> Result<ReaderRef, ApiError> {
    super::model::require_text("externalUserId", external_id, MAX_EXTERNAL_USER_ID, false)?;
    if let Some(name) = display_name {
        crate::field_limits::check_chars("displayName", name, MAX_DISPLAY_NAME)?;
    }
    Ok(ReaderRef {
        external_id: external_id.to_string(),
        display_name: display_name.map(str::to_string),
    })
}

/// The stored reader for `reference`, created (or renamed) as needed.
fn resolve_reader(
    change: &mut Change<'_>,
    tenant: &Uuid,
    reference: &ReaderRef,
) -> Result<Reader, ApiError> {
    let key = layout::reader(tenant, &reference.external_id);
    let stored: Option<Reader> = change.get(&key)?.map(|b| decode(&b)).transpose()?;
    let renamed = reference.display_name.is_some()
        && stored.as_ref().map(|r| &r.display_name) != Some(&reference.display_name);
    let reader = match stored {
        Some(reader) if !renamed => return Ok(reader),
        Some(reader) => Reader {
            display_name: reference.display_name.clone(),
            ..reader
        },
        None => Reader {
            id: Uuid::new_v4(),
            external_user_id: reference.external_id.clone(),
            display_name: reference.display_name.clone(),
        },
    };
    change.put(key, encode(&reader)?);
    Ok(reader)
}
