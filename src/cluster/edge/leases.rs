//! An edge's stream leases: ticket claims and per-user stream slots taken
//! from the writer ([`crate::auth::leases`]) over HTTP with the edge's
//! `--writer-key`, renewed every [`RENEW_PERIOD`] while the stream lives
//! and released when it ends.
//!
//! Invariants: every lease this edge holds is in `held` from its grant to
//! the drop of its guard; a dropped guard's lease is released (best
//! effort: a release that does not arrive expires on the writer within
//! [`crate::auth::leases::LeaseSettings::expiry`]); an edge that stops renewing (it
//! died, or cannot reach the writer) loses its leases within that time;
//! a writer that cannot be reached is a 503 `SERVICE_UNAVAILABLE`, its
//! refusals keep their status, code and `Retry-After`.

use super::settings::WriterKey;
use super::writer_client::WriterClient;
use crate::auth::leases::{
    Claimed, Granting, Grants, Hold, LeaseIds, Lost, RELEASE_PATH, RENEW_PATH, RENEW_PERIOD,
    SLOT_PATH, SlotGrant, SlotRequest, TICKET_PATH, TicketGrant, TicketRequest,
};
use crate::auth::tickets::Target;
use crate::core::lifecycle::Lifecycle;
use crate::error::{ApiError, ErrorCode};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use uuid::Uuid;

/// Longest wait for the writer's answer to a lease call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer read from a lease call.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Leases from the writer, as the edge's [`Grants`].
#[derive(Clone)]
pub struct WriterLeases {
    inner: Arc<Inner>,
}

struct Inner {
    writer: WriterClient,
    key: WriterKey,
    held: Mutex<HashSet<Uuid>>,
}

/// Holds one lease; dropping it releases the lease.
struct LeaseGuard {
    id: Uuid,
    inner: Arc<Inner>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.inner.lock().remove(&self.id);
        let (inner, id) = (self.inner.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let ids = LeaseIds { leases: vec![id] };
                if let Err(err) = inner.call::<_, Lost>(RELEASE_PATH, &ids).await {
                    tracing::debug!(error = %err, "releasing a stream lease failed; it expires on the writer");
                }
            });
        }
    }
}

impl WriterLeases {
    /// Leases from the writer behind `writer`, asked with `key`.
    pub fn new(writer: WriterClient, key: WriterKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                writer,
                key,
                held: Mutex::default(),
            }),
        }
    }

    /// How many leases this edge holds.
    pub fn held(&self) -> usize {
        self.inner.lock().len()
    }

    /// Renews the held leases every [`RENEW_PERIOD`] until the server stops.
    pub async fn renew_until_stopped(self, lifecycle: Arc<Lifecycle>) {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RENEW_PERIOD) => {}
                () = lifecycle.stopping() => return,
            }
            self.renew_once().await;
        }
    }

    async fn renew_once(&self) {
        let leases: Vec<Uuid> = self.inner.lock().iter().copied().collect();
        if leases.is_empty() {
            return;
        }
        match self
            .inner
            .call::<_, Lost>(RENEW_PATH, &LeaseIds { leases })
            .await
        {
            Ok(Lost { lost }) if !lost.is_empty() => {
                tracing::warn!(
                    lost = lost.len(),
                    "the writer no longer holds some stream leases (it restarted, or they expired): those streams are not counted until they reconnect"
                );
                let mut held = self.inner.lock();
                for id in &lost {
                    held.remove(id);
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "renewing stream leases failed; retrying");
            }
        }
    }

    fn guard(&self, id: Uuid) -> LeaseGuard {
        self.inner.lock().insert(id);
        LeaseGuard {
            id,
            inner: self.inner.clone(),
        }
    }
}

impl Grants for WriterLeases {
    fn ticket<'a>(&'a self, secret: &'a str, target: &'a Target) -> Granting<'a, Claimed> {
        Box::pin(async move {
            let body = TicketRequest {
                ticket: secret.to_string(),
                target: target.clone(),
            };
            let grant: TicketGrant = self.inner.call(TICKET_PATH, &body).await?;
            Ok(Claimed {
                ticket: grant.ticket,
                ends_at: grant.ends_at,
                hold: Box::new(self.guard(grant.lease)),
            })
        })
    }

    fn slot<'a>(&'a self, tenant: Uuid, user: &'a str) -> Granting<'a, Hold> {
        Box::pin(async move {
            let body = SlotRequest {
                tenant,
                user: user.to_string(),
            };
            let grant: SlotGrant = self.inner.call(SLOT_PATH, &body).await?;
            Ok(Box::new(self.guard(grant.lease)) as Hold)
        })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Uuid>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// POSTs `body` to `path` on the writer; the `data` of its answer.
    async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<R, ApiError> {
        let request = self.request(path, body)?;
        let sent = tokio::time::timeout(CALL_TIMEOUT, self.writer.http.request(request)).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(err)) => return Err(unreachable(&err.to_string())),
            Err(_) => return Err(unreachable("no answer within 5s")),
        };
        let (parts, body) = response.into_parts();
        let bytes = read_limited(body).await?;
        if parts.status != StatusCode::OK {
            return Err(refusal(parts.status, &parts.headers, &bytes));
        }
        #[derive(serde::Deserialize)]
        struct Data<R> {
            data: R,
        }
        serde_json::from_slice::<Data<R>>(&bytes)
            .map(|data| data.data)
            .map_err(|err| ApiError::internal(format!("the writer's lease answer: {err}")))
    }

    fn request<B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<http::Request<Full<Bytes>>, ApiError> {
        let uri = self
            .writer
            .address
            .uri(path)
            .map_err(|err| ApiError::internal(format!("lease call {path}: {err}")))?;
        let json = serde_json::to_vec(body)
            .map_err(|err| ApiError::internal(format!("lease call {path}: {err}")))?;
        http::Request::post(uri)
            .header("x-api-key", self.key.expose())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(json)))
            .map_err(|err| ApiError::internal(format!("lease call {path}: {err}")))
    }
}

async fn read_limited(body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, MAX_ANSWER_BYTES);
    match tokio::time::timeout(CALL_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) => Err(unreachable(&err.to_string())),
        Err(_) => Err(unreachable("its answer did not arrive within 5s")),
    }
}

fn unreachable(reason: &str) -> ApiError {
    ApiError::unavailable_for(
        format!(
            "the writer, which holds ticket sessions and stream slots, did not answer ({reason}); retry shortly"
        ),
        Duration::from_secs(1),
    )
}

/// The writer's refusal as this edge's: its status, code, message and
/// `Retry-After`.
pub(super) fn refusal(status: StatusCode, headers: &http::HeaderMap, body: &[u8]) -> ApiError {
    let envelope: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let error = &envelope["error"];
    let code = code_named(error["code"].as_str().unwrap_or_default(), status);
    let message = error["message"]
        .as_str()
        .unwrap_or("the writer refused the stream lease");
    let mut refused = ApiError::new(code, message).with_status(status);
    if let Some(details) = error.get("details") {
        refused = refused.with_details(details.clone());
    }
    if let Some(after) = headers.get(header::RETRY_AFTER) {
        refused = refused.with_header(header::RETRY_AFTER, HeaderValue::clone(after));
    }
    refused
}

/// The error code named `name` (the writer's envelope), else one fitting `status`.
fn code_named(name: &str, status: StatusCode) -> ErrorCode {
    const CODES: [ErrorCode; 11] = [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::ValidationError,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::ServiceUnavailable,
        ErrorCode::IntervalExpired,
        ErrorCode::StreamEnded,
        ErrorCode::Internal,
    ];
    CODES
        .into_iter()
        .find(|code| code.as_str() == name)
        .or_else(|| {
            CODES
                .into_iter()
                .find(|code| code.default_status() == status)
        })
        .unwrap_or(ErrorCode::Internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writer_refusal_keeps_its_status_code_and_retry_after() {
        let mut headers = http::HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        let body = br#"{"error":{"code":"RATE_LIMITED","message":"at most 2"}}"#;
        let refused = refusal(StatusCode::TOO_MANY_REQUESTS, &headers, body);
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.message, "at most 2");
        assert_eq!(refused.headers.len(), 1);
        let garbled = refusal(StatusCode::CONFLICT, &http::HeaderMap::new(), b"<html>");
        assert_eq!(garbled.code, ErrorCode::Conflict);
    }
}
