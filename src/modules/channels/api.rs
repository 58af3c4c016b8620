//! The channels REST API's frame (all under `/api/v1/communication`): who
//! calls, reads of committed state with the position to sync from, and
//! idempotent writes. Handlers: [`super::channel_api`] (channels,
//! discussions, members, bans, grants) and [`super::content_api`] (posts,
//! discussion messages).
//!
//! Who calls: the tenant's backend with an API key (writes need the
//! `publish` scope, reads `read`; a write may name who acted on the
//! customer's side in an `actorId` body field, which events carry as
//! `actor.id`), or a user with a JWT of the tenant's realm (reads what the
//! access policy lets them, writes discussion messages). The instance admin
//! key and stream tickets get 403.
//!
//! Invariants: every write is one writer change, idempotent under an
//! `Idempotency-Key` header or `idempotencyKey` body field; every answer is
//! `{"data": …}` or the shared error envelope.

use super::ChannelsModule;
use super::access::Reader;
use super::model::check_user;
use super::query::Viewer;
use super::service::Acting;
use crate::auth::api_keys::Scope;
use crate::auth::{Credential, Principal};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::{Request, Response, response};
use crate::modules::records::forbidden;
pub(super) use crate::modules::rest::Body;
use crate::modules::rest::{PreparedWrite, WriteRequest, json_input, write_request};
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use ulid::Ulid;

/// Entries in a page unless `limit` says otherwise.
pub(super) const DEFAULT_PAGE: usize = 50;
/// Most entries in a page.
pub(super) const MAX_PAGE: usize = 200;
/// What a change holds besides its body while it waits for the writer.
const CHANGE_BYTES: usize = 4096;
/// The body field naming who acted on the customer's side (backend writes).
const ACTOR_FIELD: &str = "actorId";

/// A prepared write of this module.
pub(super) type Write<T> = PreparedWrite<Acting, T>;

/// The reader behind a principal: a user (JWT) or the backend (API key
/// with `scope`); others get 403.
pub fn reader_of(principal: &Principal, scope: Scope) -> Result<Reader, ApiError> {
    match &principal.credential {
        Credential::Token(claims) => Ok(Reader::User {
            sub: claims.sub.clone(),
            entitlements: claims.entitlements.clone(),
            features: claims.features.clone(),
        }),
        Credential::Key(_) => {
            principal.require(scope)?;
            Ok(Reader::Backend)
        }
        Credential::Admin => Err(forbidden(
            "the instance admin key does not act in channels: use a tenant API key or a user's JWT",
        )),
        Credential::Ticket(_) => Err(forbidden("a stream ticket only opens its stream")),
    }
}

impl ChannelsModule {
    /// Who reads (API key with `read`, or a JWT).
    pub(super) fn viewer(&self, request: &Request) -> Result<Viewer, ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        Ok(Viewer {
            tenant: principal.tenant,
            reader: reader_of(&principal, Scope::Read)?,
        })
    }

    /// Runs a blocking read of committed state and answers `{"data": …}`.
    /// The read gets the log position read before it (see [`super::query`]).
    pub(super) async fn answer<T, F>(&self, operation: F) -> Result<Response, ApiError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&crate::core::store::Store, Ulid) -> Result<T, ApiError> + Send + 'static,
    {
        let latest = self.core.hub.durable_mark();
        let value = self
            .core
            .read("reading channels failed", move |store| {
                operation(store, latest)
            })
            .await?;
        Ok(response::data(StatusCode::OK, &value))
    }

    /// Prepares a write to `operation`: the caller, the claim of the key,
    /// the backend's `actorId` and the input.
    pub(super) async fn prepare<T: DeserializeOwned>(
        &self,
        request: &mut Request,
        operation: &str,
        body: Body,
    ) -> Result<Write<T>, ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        let reader = reader_of(&principal, Scope::Publish)?;
        let WriteRequest {
            mut body,
            claim,
            bytes,
        } = write_request(&self.core.idempotency, request, &principal, operation, body).await?;
        let actor = actor_of(&reader, &mut body)?;
        let input = json_input(body)?;
        Ok(Write {
            acting: Acting {
                tenant: principal.tenant,
                reader,
                actor,
                limits: self.limits,
            },
            claim,
            input,
            bytes: bytes + CHANGE_BYTES,
        })
    }

    /// Runs `operation` in one atomic change, idempotently, and replies
    /// `{"data": value}` with `status`.
    pub(super) async fn commit<I, T, F>(
        &self,
        write: Write<I>,
        status: StatusCode,
        operation: F,
    ) -> Result<Response, ApiError>
    where
        I: Send + 'static,
        T: Serialize,
        F: FnOnce(&mut Change<'_>, &Acting, I) -> Result<T, ApiError> + Send + 'static,
    {
        write.commit(&self.core.writer, status, operation).await
    }
}

/// Who events name: a user themselves, or whom the backend's `actorId` names.
fn actor_of(reader: &Reader, body: &mut Value) -> Result<Option<String>, ApiError> {
    let named = body
        .as_object_mut()
        .and_then(|fields| fields.remove(ACTOR_FIELD));
    match (reader, named) {
        (Reader::User { sub, .. }, None) => Ok(Some(sub.clone())),
        (Reader::User { .. }, Some(_)) => Err(forbidden("only the backend names an `actorId`")),
        (Reader::Backend, None | Some(Value::Null)) => Ok(None),
        (Reader::Backend, Some(Value::String(actor))) => {
            check_user(ACTOR_FIELD, &actor)?;
            Ok(Some(actor))
        }
        (Reader::Backend, Some(_)) => Err(ApiError::validation("`actorId` must be a string")),
    }
}
