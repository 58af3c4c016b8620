//! The durable outbox: one row per delivery (an event for one endpoint),
//! written in the same atomic change as the event, and every later state
//! change of it, each through the writer.
//!
//! A row is `[meta length: u32 BE][meta JSON][body]`: the body is kept
//! byte for byte as the module gave it, because that is what is signed and
//! sent. Rows live under `w p <endpoint> <delivery id>` while pending and
//! `w f <endpoint> <delivery id>` once given up.
//!
//! Invariants: a row is staged only in the change that appends its event,
//! so an event and its deliveries are durable together or not at all;
//! delivery ids come from the writer's generator, so an endpoint's pending
//! rows are ordered as they were committed; a delivered row is deleted and
//! a given-up row moved to failed in one change with its endpoint's status;
//! nothing is written for an endpoint that no longer exists.

use super::endpoints::{self, Endpoint};
use super::layout;
use crate::core::log::{Event, ulid_text};
use crate::core::store::{Store, StoreError};
use crate::core::writer::Change;
use crate::error::{ApiError, ErrorCode};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use ulid::Ulid;
use uuid::Uuid;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for (or in) an attempt.
    Pending,
    /// Given up; kept until re-delivered or the endpoint is deleted.
    Failed,
}

impl Status {
    /// Parses `pending` or `failed`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
        }
    }

    fn key(self, endpoint: &Uuid, id: Option<Ulid>) -> Vec<u8> {
        let kind = match self {
            Self::Pending => layout::PENDING,
            Self::Failed => layout::FAILED,
        };
        layout::delivery(kind, endpoint, id.map(u128::from))
    }
}

/// What is known about one delivery besides its body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Delivery id (sent as `Tidings-Delivery-Id`, kept across retries).
    #[serde(with = "ulid_text")]
    pub id: Ulid,
    /// Target endpoint.
    pub endpoint: Uuid,
    /// The endpoint's tenant.
    pub tenant: Uuid,
    /// The event delivered.
    #[serde(with = "ulid_text")]
    pub event_id: Ulid,
    /// Its type.
    pub event_type: String,
    /// When it was queued (unix ms).
    pub created_at_ms: u64,
    /// Start of the retry window (queued or re-delivered; unix ms).
    pub window_start_ms: u64,
    /// Failed attempts in this window.
    pub attempts: u32,
    /// When the last attempt ended (unix ms).
    pub last_attempt_at_ms: Option<u64>,
    /// HTTP status of the last attempt, when there was a response.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Not to be tried before this time (unix ms).
    pub next_attempt_at_ms: Option<u64>,
    /// When it was given up (unix ms).
    pub failed_at_ms: Option<u64>,
}

impl Delivery {
    /// The delivery as the admin API shows it.
    pub fn to_json(&self) -> Value {
        let time = |ms: Option<u64>| ms.map(crate::core::clock::rfc3339_millis);
        let status = if self.failed_at_ms.is_some() {
            Status::Failed
        } else {
            Status::Pending
        };
        json!({
            "id": self.id.to_string(), "endpoint": self.endpoint,
            "eventId": self.event_id.to_string(), "eventType": self.event_type,
            "status": status.as_str(), "createdAt": time(Some(self.created_at_ms)),
            "attempts": self.attempts, "lastAttemptAt": time(self.last_attempt_at_ms),
            "lastStatus": self.last_status, "lastError": self.last_error,
            "nextAttemptAt": time(self.next_attempt_at_ms), "failedAt": time(self.failed_at_ms),
        })
    }
}

/// A stored delivery with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Its state.
    pub delivery: Delivery,
    /// The exact bytes POSTed.
    pub body: Bytes,
}

impl Row {
    /// `[meta length: u32 BE][meta JSON][body]`.
    pub fn encode(&self) -> Result<Vec<u8>, ApiError> {
        let meta = serde_json::to_vec(&self.delivery)
            .map_err(|err| ApiError::internal(format!("encoding a delivery: {err}")))?;
        let length = u32::try_from(meta.len())
            .map_err(|_| ApiError::internal("delivery metadata too large"))?;
        let mut out = Vec::with_capacity(4 + meta.len() + self.body.len());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Decodes a stored row.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let unreadable =
            |why: String| StoreError::new(format!("webhook delivery unreadable: {why}"));
        let length: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| unreadable("truncated".into()))?;
        let end = 4 + u32::from_be_bytes(length) as usize;
        let meta = bytes
            .get(4..end)
            .ok_or_else(|| unreadable("truncated".into()))?;
        let delivery = serde_json::from_slice(meta).map_err(|err| unreadable(err.to_string()))?;
        Ok(Self {
            delivery,
            body: Bytes::copy_from_slice(&bytes[end..]),
        })
    }
}

/// Queues `event` for `endpoint` inside the event's own change.
pub fn stage(
    change: &mut Change<'_>,
    endpoint: &Endpoint,
    event: &Event,
    body: &[u8],
    now_ms: u64,
) -> Result<(), ApiError> {
    let id = change.next_id();
    let row = Row {
        delivery: Delivery {
            id,
            endpoint: endpoint.id,
            tenant: endpoint.tenant,
            event_id: event.id,
            event_type: event.event_type.clone(),
            created_at_ms: now_ms,
            window_start_ms: now_ms,
            attempts: 0,
            last_attempt_at_ms: None,
            last_status: None,
            last_error: None,
            next_attempt_at_ms: None,
            failed_at_ms: None,
        },
        body: Bytes::copy_from_slice(body),
    };
    change.put(Status::Pending.key(&endpoint.id, Some(id)), row.encode()?);
    Ok(())
}

/// The oldest pending row of an endpoint (blocking).
pub fn head(store: &Store, endpoint: &Uuid) -> Result<Option<Row>, StoreError> {
    store
        .first_blocking(&Status::Pending.key(endpoint, None))?
        .map(|(_, value)| Row::decode(&value))
        .transpose()
}

/// Up to `limit` deliveries of a status after `after`, oldest first, and
/// whether more follow (blocking).
pub fn page(
    store: &Store,
    endpoint: &Uuid,
    status: Status,
    after: Option<Ulid>,
    limit: usize,
) -> Result<(Vec<Delivery>, bool), StoreError> {
    let prefix = status.key(endpoint, None);
    let after = after.map(|id| status.key(endpoint, Some(id)));
    let mut rows = store.scan_blocking(&prefix, after.as_deref(), limit.saturating_add(1))?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let deliveries = rows
        .iter()
        .map(|(_, value)| Row::decode(value).map(|row| row.delivery))
        .collect::<Result<_, _>>()?;
    Ok((deliveries, more))
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// The response status, when there was a response.
    pub status: Option<u16>,
    /// What happened, for operators.
    pub message: String,
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx response.
    Delivered,
    /// Failed; try again at this time (unix ms).
    Retry(AttemptError, u64),
    /// Failed, and its retry window is over.
    GiveUp(AttemptError),
}

/// What recording an outcome changed.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The endpoint, when its record changed.
    pub endpoint: Option<Endpoint>,
    /// True when this outcome disabled the endpoint.
    pub disabled: bool,
}

/// Records an attempt's outcome in one change: the row (deleted, rescheduled
/// or moved to failed) and the endpoint's status. Nothing is written when
/// the endpoint was deleted meanwhile.
pub fn record(
    change: &mut Change<'_>,
    mut row: Row,
    outcome: Outcome,
    disable_after: u32,
    now_ms: u64,
) -> Result<Recorded, ApiError> {
    let (tenant, endpoint) = (row.delivery.tenant, row.delivery.endpoint);
    let Some(current) = endpoints::read(change, tenant, endpoint)? else {
        return Ok(Recorded::default());
    };
    let pending_key = Status::Pending.key(&endpoint, Some(row.delivery.id));
    let error = match outcome {
        Outcome::Delivered => {
            change.delete(pending_key);
            if current.consecutive_failures == 0 {
                return Ok(Recorded::default());
            }
            let endpoint = endpoints::modify(change, tenant, endpoint, |e| {
                e.consecutive_failures = 0;
                Ok(())
            })?;
            return Ok(Recorded {
                endpoint,
                disabled: false,
            });
        }
        Outcome::Retry(error, at_ms) => {
            note_failure(&mut row.delivery, &error, now_ms);
            row.delivery.next_attempt_at_ms = Some(at_ms);
            change.put(pending_key, row.encode()?);
            return Ok(Recorded {
                endpoint: endpoints::modify(change, tenant, endpoint, |e| {
                    note_endpoint_error(e, &error, now_ms);
                    Ok(())
                })?,
                disabled: false,
            });
        }
        Outcome::GiveUp(error) => error,
    };
    note_failure(&mut row.delivery, &error, now_ms);
    row.delivery.next_attempt_at_ms = None;
    row.delivery.failed_at_ms = Some(now_ms);
    change.delete(pending_key);
    change.put(
        Status::Failed.key(&endpoint, Some(row.delivery.id)),
        row.encode()?,
    );
    let mut disabled = false;
    let endpoint = endpoints::modify(change, tenant, endpoint, |e| {
        note_endpoint_error(e, &error, now_ms);
        e.consecutive_failures = e.consecutive_failures.saturating_add(1);
        disabled = disable_after > 0 && e.enabled && e.consecutive_failures >= disable_after;
        if disabled {
            e.enabled = false;
            e.disabled_at = Some(crate::core::clock::rfc3339_millis(now_ms));
            e.disabled_reason = Some(format!(
                "{} deliveries in a row were given up (--webhook-disable-after {disable_after}); last error: {}",
                e.consecutive_failures, error.message
            ));
        }
        Ok(())
    })?;
    Ok(Recorded { endpoint, disabled })
}

fn note_failure(delivery: &mut Delivery, error: &AttemptError, now_ms: u64) {
    delivery.attempts = delivery.attempts.saturating_add(1);
    delivery.last_attempt_at_ms = Some(now_ms);
    delivery.last_status = error.status;
    delivery.last_error = Some(error.message.clone());
}

fn note_endpoint_error(endpoint: &mut Endpoint, error: &AttemptError, now_ms: u64) {
    endpoint.last_error = Some(error.message.clone());
    endpoint.last_error_at = Some(crate::core::clock::rfc3339_millis(now_ms));
}

/// Moves a failed delivery back to pending with a fresh retry window; it
/// keeps its id, so it is the endpoint's next delivery. Returns false when
/// `id` is not a failed delivery of the endpoint.
pub fn redeliver(
    change: &mut Change<'_>,
    endpoint: &Uuid,
    id: Ulid,
    now_ms: u64,
) -> Result<bool, ApiError> {
    let failed_key = Status::Failed.key(endpoint, Some(id));
    let Some(bytes) = change.get(&failed_key)? else {
        return Ok(false);
    };
    let mut row = Row::decode(&bytes).map_err(|err| ApiError::internal(err.to_string()))?;
    row.delivery.failed_at_ms = None;
    row.delivery.next_attempt_at_ms = None;
    row.delivery.attempts = 0;
    row.delivery.window_start_ms = now_ms;
    change.delete(failed_key);
    change.put(Status::Pending.key(endpoint, Some(id)), row.encode()?);
    Ok(true)
}

/// The refusal for re-delivering something that is not a failed delivery.
pub fn not_failed(store: &Store, endpoint: &Uuid, id: Ulid) -> ApiError {
    match store.get_blocking(&Status::Pending.key(endpoint, Some(id))) {
        Ok(Some(_)) => ApiError::new(
            ErrorCode::Conflict,
            "this delivery is still pending; only failed deliveries can be re-delivered",
        ),
        _ => ApiError::not_found("no such failed delivery for this endpoint"),
    }
}

/// Keys of up to `limit` of an endpoint's rows, pending and failed (blocking).
pub fn row_keys(store: &Store, endpoint: &Uuid, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut found = Vec::new();
    for status in [Status::Pending, Status::Failed] {
        let rows = store.scan_blocking(&status.key(endpoint, None), None, limit - found.len())?;
        found.extend(rows.into_iter().map(|(key, _)| key.to_vec()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            delivery: Delivery {
                id: Ulid::from_parts(1, 2),
                endpoint: Uuid::new_v4(),
                tenant: Uuid::new_v4(),
                event_id: Ulid::from_parts(1, 1),
                event_type: "comment.created".into(),
                created_at_ms: 5,
                window_start_ms: 5,
                attempts: 2,
                last_attempt_at_ms: Some(6),
                last_status: Some(500),
                last_error: Some("HTTP 500".into()),
                next_attempt_at_ms: Some(7),
                failed_at_ms: None,
            },
            body: Bytes::from_static(b"{\"exact\": \"bytes\" }\n"),
        }
    }

    #[test]
    fn rows_round_trip_with_the_body_byte_for_byte() {
        let row = row();
        assert_eq!(Row::decode(&row.encode().unwrap()).unwrap(), row);
        let empty = Row {
            body: Bytes::new(),
            ..row
        };
        assert_eq!(Row::decode(&empty.encode().unwrap()).unwrap(), empty);
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"\x00\x00",
            b"\x00\x00\x00\x09{}",
            b"\x00\x00\x00\x02[]",
        ] {
            assert!(Row::decode(bad).is_err());
        }
    }

    #[test]
    fn the_api_shows_status_and_times() {
        let json = row().delivery.to_json();
        assert_eq!(json["status"], "pending");
        assert_eq!(json["lastStatus"], 500);
        assert_eq!(json["createdAt"], "1970-01-01T00:00:00.005Z");
        assert_eq!(Status::parse("failed"), Some(Status::Failed));
        assert_eq!(Status::parse("done"), None);
    }
}
