//! The ticketing REST API's frame (all under `/api/v2/ticketing`): who
//! calls ([`Acting::of`]), reads of committed state, and idempotent writes.
//!
//! Invariants: every write is one writer change, idempotent under an
//! `Idempotency-Key` header or `idempotencyKey` body field; every answer is
//! `{"data": …}` or the shared error envelope.

use super::TicketsModule;
use super::service::Acting;
use crate::auth::api_keys::Scope;
use crate::core::store::Store;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::{Request, Response, response};
pub(super) use crate::modules::rest::Body;
use crate::modules::rest::{PreparedWrite, WriteRequest, json_input, write_request};
use http::StatusCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Entries in a page unless `limit` says otherwise.
pub(super) const DEFAULT_PAGE: usize = 50;
/// Most entries in a page.
pub(super) const MAX_PAGE: usize = 200;
/// What a change holds besides its body while it waits for the writer.
const CHANGE_BYTES: usize = 4096;

/// A prepared write of this module.
pub(super) type Write<T> = PreparedWrite<Acting, T>;

impl TicketsModule {
    /// Who reads (a user's JWT, or an API key with `read` acting for a user).
    pub(super) fn reader(&self, request: &Request) -> Result<Acting, ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        Acting::of(&principal, request, Scope::Read, self.limits)
    }

    /// Runs a blocking read of committed state and answers `{"data": …}`.
    pub(super) async fn answer<T, F>(&self, operation: F) -> Result<Response, ApiError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        let value = self.core.read("reading tickets failed", operation).await?;
        Ok(response::data(StatusCode::OK, &value))
    }

    /// Prepares a write to `operation`: the caller, the claim of the key and
    /// the input.
    pub(super) async fn prepare<T: DeserializeOwned>(
        &self,
        request: &mut Request,
        operation: &str,
        body: Body,
    ) -> Result<Write<T>, ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        let acting = Acting::of(&principal, request, Scope::Publish, self.limits)?;
        let WriteRequest { body, claim, bytes } =
            write_request(&self.core.idempotency, request, &principal, operation, body).await?;
        Ok(Write {
            acting,
            claim,
            input: json_input(body)?,
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
