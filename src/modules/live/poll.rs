//! The read path, `GET /api/v1/events-streams/{streamId}?interval=T`: the
//! cheapest thing the server does. A closed interval is served from the
//! in-memory ring (or the store, or the canonical empty body) with a strong
//! ETag and immutable caching; the current interval (or one up to
//! `--live-max-ahead` ahead) waits for its close and then gets the same
//! bytes as every other waiter.
//!
//! Answers: 200 `{"interval":T,"events":[…]}` (not wrapped in `data`); 304
//! on a matching `If-None-Match`; 400 for a `T` that is not a multiple of
//! 250 or too far ahead (`details.serverTime`); 404 for an unknown stream;
//! 410 `INTERVAL_EXPIRED` for a `T` older than the stream's retention and
//! 410 `STREAM_ENDED` for one after its last interval; 503 when the
//! interval does not close in time (the server is stopping or the store
//! failed). Every poll registers the caller as a viewer.

use super::LiveModule;
use super::layout;
use super::model::{INTERVAL_MS, empty_body, interval_of};
use super::state::{Closed, LiveStream};
use crate::error::{ApiError, ErrorCode};
use crate::http::{Request, Response, response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// How long past its end a waited-for interval may take to close before
/// the poll gives up with 503.
const CLOSE_PATIENCE: Duration = Duration::from_secs(5);

/// `GET /api/v1/events-streams/{streamId}?interval=T`.
pub async fn poll(module: Arc<LiveModule>, request: Request) -> Result<Response, ApiError> {
    let principal = module.reader(&request, true)?;
    let stream_id = super::api::stream_param(&request)?;
    let interval = interval_param(&request)?;
    let stream = module
        .streams
        .get(&principal.tenant, &stream_id)
        .ok_or_else(|| ApiError::not_found("no such events-stream"))?;
    let now = crate::core::clock::unix_millis();
    let ahead = module.limits.max_ahead.as_millis() as u64;
    if interval > now.saturating_add(ahead) {
        return Err(ApiError::validation(format!(
            "interval {interval} is more than {ahead} ms ahead of the server's clock; sync your clock (GET /api/v1/time)"
        ))
        .with_details(json!({ "serverTime": now, "maxAheadMs": ahead })));
    }
    if stream.record().is_live() {
        stream.saw_viewer(principal.user().unwrap_or(&principal.name), now);
    }
    let closed = closed_interval(&module, &stream, interval, now).await?;
    Ok(reply(&request, &stream, closed))
}

/// The `interval` query parameter: a unix time in ms, a multiple of 250,
/// given once and in its plain decimal form (so one interval has one URL,
/// and a cache in front keeps one copy).
fn interval_param(request: &Request) -> Result<u64, ApiError> {
    let mut given = request.query_params("interval");
    let (Some(text), None) = (given.next(), given.next()) else {
        return Err(ApiError::validation(
            "give the interval query parameter once (unix ms, a multiple of 250)",
        ));
    };
    let interval: u64 = text
        .parse()
        .ok()
        .filter(|interval: &u64| interval.to_string() == text)
        .ok_or_else(|| {
            ApiError::validation(format!(
                "interval `{text}` is not a whole number of milliseconds in plain decimal"
            ))
        })?;
    if !interval.is_multiple_of(INTERVAL_MS) {
        return Err(ApiError::validation(format!(
            "interval {interval} is not a multiple of {INTERVAL_MS} ms; use {}",
            interval_of(interval)
        )));
    }
    Ok(interval)
}

/// The closed interval `interval` of `stream`, waiting for its close when
/// it is still open.
async fn closed_interval(
    module: &LiveModule,
    stream: &LiveStream,
    interval: u64,
    now: u64,
) -> Result<Closed, ApiError> {
    let record = stream.record();
    if interval < record.first_interval {
        return Ok(Closed::new(interval, Bytes::from(empty_body(interval))));
    }
    if record.last_interval.is_some_and(|last| interval > last) {
        return Err(ApiError::new(
            ErrorCode::StreamEnded,
            "this events-stream has ended; no interval follows its last one",
        )
        .with_details(json!({ "lastInterval": record.last_interval })));
    }
    if interval.saturating_add(record.retention_ms()) < now || interval <= stream.expired_through()
    {
        return Err(ApiError::new(
            ErrorCode::IntervalExpired,
            "this interval is older than the events-stream keeps",
        )
        .with_details(json!({ "retentionSeconds": record.retention_seconds })));
    }
    if stream.closed_through() < interval {
        wait_for_close(module, stream, interval, now).await?;
    }
    if let Some(closed) = stream.cached(interval) {
        return Ok(closed);
    }
    stored(module, stream, interval).await
}

/// Waits until `interval` closes (or the stream ends before it).
async fn wait_for_close(
    module: &LiveModule,
    stream: &LiveStream,
    interval: u64,
    now: u64,
) -> Result<(), ApiError> {
    let end = interval + INTERVAL_MS;
    let patience = Duration::from_millis(end.saturating_sub(now)) + CLOSE_PATIENCE;
    let _waiting = module.core.metrics.live_poll_waiting();
    let mut watch = stream.watch();
    let closed = watch.wait_for(|through| {
        *through >= interval
            || stream
                .record()
                .last_interval
                .is_some_and(|last| last < interval)
    });
    // Intervals keep closing while the server drains, so a waiting poll is
    // answered then too; only a close that never comes ends it with 503.
    match tokio::time::timeout(patience, closed).await {
        Ok(Ok(_)) => {}
        _ => return Err(not_closed()),
    }
    match stream.record().last_interval {
        Some(last) if last < interval => Err(ApiError::new(
            ErrorCode::StreamEnded,
            "this events-stream ended before the interval",
        )
        .with_details(json!({ "lastInterval": last }))),
        _ => Ok(()),
    }
}

fn not_closed() -> ApiError {
    ApiError::unavailable_for(
        "the interval did not close in time (the store is recovering, or the server stopped); poll again",
        Duration::from_secs(1),
    )
}

/// A closed interval no longer in memory: its stored bytes, or the empty
/// body when nothing was stored for it (the server was not running).
async fn stored(
    module: &LiveModule,
    stream: &LiveStream,
    interval: u64,
) -> Result<Closed, ApiError> {
    let key = layout::body(&stream.tenant, &stream.id, interval);
    let body = module
        .stored(key)
        .await?
        .unwrap_or_else(|| Bytes::from(empty_body(interval)));
    Ok(Closed::new(interval, body))
}

/// What a poll's answer says of the resource: its methods and that it
/// varies with `Accept`.
fn describe(headers: &mut http::HeaderMap) {
    headers.insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
}

/// `OPTIONS` on a stream (not a CORS preflight, which the HTTP layer
/// answers): 204 with `Allow`.
pub fn options() -> Response {
    let mut response = bare(StatusCode::NO_CONTENT);
    describe(response.headers_mut());
    response
}

/// An answer without a body.
fn bare(status: StatusCode) -> Response {
    let mut response = http::Response::new(response::full(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// 200 with the bytes, or 304 when the client holds them (any
/// `If-None-Match` line naming the ETag).
fn reply(request: &Request, stream: &LiveStream, closed: Closed) -> Response {
    let etag = closed.etag.to_str().unwrap_or_default();
    let mut response = if request.if_none_match(etag) {
        bare(StatusCode::NOT_MODIFIED)
    } else {
        response::with_content_type(StatusCode::OK, "application/json", closed.body)
    };
    let headers = response.headers_mut();
    describe(headers);
    headers.insert(header::ETAG, closed.etag);
    headers.insert(header::CACHE_CONTROL, stream.cache_control());
    response
}
