//! The chat REST API's frame: the route table, and what every handler
//! shares — who calls, reads of committed state, idempotent writes and path
//! and query parameters. The handlers live in [`super::room_api`] (rooms),
//! [`super::member_api`] (members, roles, `me`) and [`super::message_api`]
//! (messages, threads, read receipts).
//!
//! Who calls: a user with a JWT of the tenant's realm (its `sub`), or the
//! tenant's backend with an API key (user 0; writes need the `publish`
//! scope, reads `read`); the instance admin key and stream tickets get 403.
//!
//! Invariants: every write is one writer change, idempotent under an
//! `Idempotency-Key` header or an `idempotencyKey` body field (see
//! [`crate::modules::idempotency`]), fingerprinted by method, path and body;
//! every answer is `{"data": …}` or the shared error envelope; reads never
//! write (except `GET /me`, which creates the caller's id on first use).

use super::ChatModule;
use super::directory;
use super::model::forbidden;
use super::query::Viewer;
use super::service::{Acting, Caller};
use super::{member_api, message_api, room_api};
use crate::auth::api_keys::Scope;
use crate::auth::{Credential, Principal};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::idempotency::Claim;
pub(super) use crate::modules::rest::Body;
use crate::modules::rest::{WriteRequest, commit_reply, json_input, write_request};
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Entries in a page unless `limit` says otherwise.
pub(super) const DEFAULT_PAGE: usize = 50;
/// Most entries in a page.
pub(super) const MAX_PAGE: usize = 200;
/// What a change holds besides its body while it waits for the writer.
const CHANGE_BYTES: usize = 4096;

/// Adds every chat REST route (all under `/api/v1`) to `router`.
pub(super) fn routes(router: &mut Router, chat: &Arc<ChatModule>) {
    room_api::routes(router, chat);
    member_api::routes(router, chat);
    message_api::routes(router, chat);
}

pub(super) use crate::modules::rest::{id_param, id_query};

/// The `{roomId}` path parameter, or 400.
pub(super) fn room_id(request: &Request) -> Result<u64, ApiError> {
    id_param(request, "roomId")
}

/// A write's answer: its status and value.
pub(super) type Outcome<T> = (StatusCode, T);

/// A prepared write: who acts, its idempotency claim, its input and its size.
pub(super) struct Write<T> {
    caller: Caller,
    tenant: uuid::Uuid,
    claim: Option<Claim>,
    /// The request's input.
    pub input: T,
    bytes: usize,
}

impl ChatModule {
    /// The caller of a request: the backend (API key with `scope`) or a user (JWT).
    pub(super) fn caller(
        &self,
        request: &Request,
        scope: Scope,
    ) -> Result<(Principal, Caller), ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        let caller = match &principal.credential {
            Credential::Token(claims) => Caller::User(claims.sub.clone()),
            Credential::Key(_) => {
                principal.require(scope)?;
                Caller::Backend
            }
            Credential::Admin => {
                return Err(forbidden(
                    "the instance admin key does not act in chat: use a tenant API key or a user's JWT",
                ));
            }
            Credential::Ticket(_) => {
                return Err(forbidden("a stream ticket only opens its stream"));
            }
        };
        Ok((principal, caller))
    }

    /// Who reads: the backend, or a user by their id (none yet: a member of nothing).
    pub(super) async fn viewer(&self, request: &Request) -> Result<Viewer, ApiError> {
        let (principal, caller) = self.caller(request, Scope::Read)?;
        let tenant = principal.tenant;
        let user = match caller {
            Caller::Backend => Some(0),
            Caller::User(sub) => {
                self.read(move |store| {
                    directory::find_user(store, tenant, &sub)
                        .map_err(|err| err.into_api("reading chat failed"))
                })
                .await?
            }
        };
        Ok(Viewer { tenant, user })
    }

    /// Runs a blocking read of committed state.
    pub(super) async fn read<T, F>(&self, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::core::store::Store) -> Result<T, ApiError> + Send + 'static,
    {
        self.core.read("reading chat failed", operation).await
    }

    /// Prepares a write to `operation`: the caller, the claim of the key
    /// (header or `idempotencyKey` field, taken out of the body) and the input.
    pub(super) async fn prepare<T: DeserializeOwned>(
        &self,
        request: &mut Request,
        operation: &str,
        body: Body,
    ) -> Result<Write<T>, ApiError> {
        let (principal, caller) = self.caller(request, Scope::Publish)?;
        let WriteRequest { body, claim, bytes } =
            write_request(&self.core.idempotency, request, &principal, operation, body).await?;
        Ok(Write {
            caller,
            tenant: principal.tenant,
            claim,
            input: json_input(body)?,
            bytes: bytes + CHANGE_BYTES,
        })
    }

    /// Runs `operation` as the write's caller in one atomic change,
    /// idempotently under its claim, and replies `{"data": value}`.
    pub(super) async fn commit<I, T, F>(
        &self,
        write: Write<I>,
        operation: F,
    ) -> Result<Response, ApiError>
    where
        I: Send + 'static,
        T: Serialize,
        F: FnOnce(&mut Change<'_>, &Acting, I) -> Result<Outcome<T>, ApiError> + Send + 'static,
    {
        let limits = self.limits;
        let Write {
            caller,
            tenant,
            claim,
            input,
            bytes,
        } = write;
        commit_reply(&self.core.writer, claim, bytes, move |change| {
            let acting = Acting::resolve(change, tenant, &caller, limits)?;
            operation(change, &acting, input)
        })
        .await
    }
}
