//! Operating the server: the probes and metrics endpoints (this file), the
//! JSON stats sample ([`stats`]), the web console ([`console`]), background
//! retention ([`pruner`]), log output ([`logging`]), backup and restore
//! ([`backup`]).
//!
//! Endpoints: liveness, readiness, metrics and clock sync; `GET
//! /admin/v1/stats` and `GET /console` (see their modules).
//!
//! * `GET /healthz`: 200 while the process serves and the store is healthy;
//!   503 while the store has failed or is recovering (the process exits by
//!   itself when recovery is impossible). The body names the store's state.
//! * `GET /readyz`: 200 when the store is healthy, the write queue has room
//!   and a group became durable within [`PROBE_AFTER`]; 503 (with
//!   `Retry-After`) while draining, while the store has failed or recovers, or
//!   when the queue is nearly full. Readiness is read from the writer's recent
//!   state: a probe is a read, never a write, except that when nothing was
//!   committed for [`PROBE_AFTER`] one probe write goes through the pipeline
//!   (one at a time, so a flood of probes adds at most one write per
//!   [`PROBE_AFTER`]). On a cluster writer the body has `cluster` (role,
//!   NATS connection, outbox rows and bytes, last and published batch,
//!   fenced), and it is 503 while the writer is fenced or its outbox full.
//!   On a cluster edge it is the edge's replication ([`EdgeProbe`]): an
//!   edge commits nothing itself, so no probe write.
//! * `GET /metrics`: the Prometheus (OpenMetrics) exposition.
//! * `GET /api/v1/time`: `{"data":{"now":<unix ms>,"intervalMs":250}}`.

pub mod backup;
pub mod console;
pub mod logging;
pub mod pruner;
pub mod stats;

use crate::auth::Authenticator;
use crate::core::hub::Hub;
use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::{self, Metrics};
use crate::core::store::PROBE_RECORD;
use crate::core::store::layout;
use crate::core::writer::{Footprint, StoreState, Writer, WriterStatus};
use crate::error::ApiError;
use crate::http::response;
use crate::http::router::Router;
use crate::modules::platform::{Module, ModuleContext};
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// With no durable group for this long, `/readyz` proves the pipeline with
/// one probe write.
pub const PROBE_AFTER: Duration = Duration::from_secs(10);

/// Longest wait for the probe write before `/readyz` answers 503.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the operations endpoints look at.
pub struct OpsState {
    /// The commit pipeline probed by `/readyz` (a durable write of a probe record).
    pub writer: Writer,
    /// The metrics rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The lifecycle consulted by `/readyz`.
    pub lifecycle: Arc<Lifecycle>,
    /// The hub whose size `/metrics` reports.
    pub hub: Arc<Hub>,
    /// The authenticator whose verified-token cache `/metrics` reports.
    pub auth: Authenticator,
    /// Held while a readiness probe write is in flight (one at a time).
    pub probing: tokio::sync::Mutex<()>,
    /// Set on a cluster edge.
    pub edge: Option<Arc<dyn EdgeProbe>>,
}

/// A cluster edge's part of `/readyz` and `/metrics` (an edge commits
/// nothing itself: its readiness is its replication's).
pub trait EdgeProbe: Send + Sync + 'static {
    /// `/readyz`'s `cluster` object, and whether the edge is ready (with
    /// the reason when not).
    fn readiness(&self) -> (serde_json::Value, Result<(), String>);

    /// Brings the edge's series up to date before a scrape.
    fn update_metrics(&self, metrics: &Metrics);
}

impl OpsState {
    /// The operations endpoints on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            writer: context.writer.clone(),
            metrics: context.metrics.clone(),
            lifecycle: context.lifecycle.clone(),
            hub: context.hub.clone(),
            auth: context.auth.clone(),
            probing: tokio::sync::Mutex::new(()),
            edge: None,
        }
    }

    /// The same endpoints on a cluster edge.
    pub fn with_edge(mut self, edge: Option<Arc<dyn EdgeProbe>>) -> Self {
        self.edge = edge;
        self
    }
}

impl Module for OpsState {
    fn name(&self) -> &'static str {
        "ops"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        routes(router, self);
    }
}

/// Registers the operations routes.
fn routes(router: &mut Router, state: Arc<OpsState>) {
    stats::routes(router, &state);
    console::routes(router);
    router.route_with(Method::GET, "/healthz", &state, |state, _| async move {
        healthz(&state.writer.status())
    });
    router.route_with(Method::GET, "/readyz", &state, |state, _| readyz(state));
    router.route_with(Method::GET, "/metrics", &state, |state, _| async move {
        let hub = state.hub.stats();
        state.metrics.set_hub_size(hub.subscriptions, hub.topics);
        state
            .metrics
            .set_hub_memory(hub.ring_bytes, hub.ring_events, hub.log_reads);
        state.metrics.set_writer(&state.writer.status());
        let timers = state.writer.timers().stats();
        state
            .metrics
            .set_timers(timers.fired, timers.failed, timers.parked, timers.scanned);
        let tokens = state.auth.verified_tokens().stats();
        state.metrics.set_jwt_cache(tokens.hits, tokens.misses);
        if let Some(outbox) = state.writer.outbox() {
            state.metrics.set_cluster_writer(&outbox.status());
        }
        if let Some(edge) = &state.edge {
            edge.update_metrics(&state.metrics);
        }
        let text = state.metrics.render();
        Ok(response::with_content_type(
            StatusCode::OK,
            metrics::CONTENT_TYPE,
            text,
        ))
    });
    router.route(Method::GET, "/api/v1/time", |_| async {
        Ok(response::data(
            StatusCode::OK,
            &json!({ "now": crate::core::clock::unix_millis(), "intervalMs": crate::modules::live::model::INTERVAL_MS }),
        ))
    });
}

fn healthz(status: &WriterStatus) -> Result<crate::http::Response, ApiError> {
    let store = status.state.as_str();
    if status.state != StoreState::Healthy {
        return Err(ApiError::unavailable(format!(
            "the store is {store}: writes are refused until it has recovered"
        ))
        .with_details(json!({ "store": store })));
    }
    Ok(response::data(
        StatusCode::OK,
        &json!({ "status": "ok", "store": store }),
    ))
}

async fn readyz(state: Arc<OpsState>) -> Result<crate::http::Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::unavailable(
            "shutting down; send new traffic elsewhere",
        ));
    }
    let writer = &state.writer;
    if let Some(edge) = &state.edge {
        return edge_readyz(edge.as_ref(), writer);
    }
    let cluster = cluster_state(writer);
    let with_cluster = |err: ApiError| match &cluster {
        Some(cluster) => err.with_details(json!({ "cluster": cluster })),
        None => err,
    };
    let status = not_ready_reason(writer).map_err(with_cluster)?;
    if let Some(outbox) = writer.outbox() {
        outbox.admit().map_err(with_cluster)?;
    }
    if since_last_commit(&status) >= PROBE_AFTER {
        probe(&state).await.map_err(with_cluster)?;
    }
    let mut body = json!({ "status": "ready", "store": status.state.as_str(), "queuedChanges": status.queued_changes });
    if let Some(cluster) = cluster {
        body["cluster"] = cluster;
    }
    Ok(response::data(StatusCode::OK, &body))
}

/// An edge's `/readyz`: ready once its replica caught up with the shared
/// log (see `cluster::edge::status`).
fn edge_readyz(edge: &dyn EdgeProbe, writer: &Writer) -> Result<crate::http::Response, ApiError> {
    let (cluster, verdict) = edge.readiness();
    if let Err(reason) = verdict {
        return Err(ApiError::unavailable_for(reason, Duration::from_secs(1))
            .with_details(json!({ "cluster": cluster })));
    }
    let store = writer.status().state.as_str();
    Ok(response::data(
        StatusCode::OK,
        &json!({ "status": "ready", "store": store, "queuedChanges": 0, "cluster": cluster }),
    ))
}

/// A cluster writer's replication state, for `/readyz`.
fn cluster_state(writer: &Writer) -> Option<serde_json::Value> {
    let status = writer.outbox()?.status();
    let nats = if status.connected {
        "connected"
    } else {
        "disconnected"
    };
    Some(json!({
        "role": "writer",
        "nats": nats,
        "outbox": { "rows": status.rows, "bytes": status.bytes },
        "lastBatch": status.last_batch,
        "publishedBatch": status.published_batch,
        "fenced": status.fenced.is_some(),
        "problem": status.fenced.or(status.problem),
    }))
}

/// The writer's status when it can take writes; else why not (503).
fn not_ready_reason(writer: &Writer) -> Result<WriterStatus, ApiError> {
    let status = writer.status();
    let limits = writer.limits();
    let retry = limits.recovery.interval;
    if status.state != StoreState::Healthy {
        return Err(ApiError::unavailable_for(
            format!("the store is {}", status.state.as_str()),
            retry,
        ));
    }
    let nearly_full =
        |queued: usize, limit: usize| queued.saturating_mul(10) >= limit.saturating_mul(9);
    if nearly_full(status.queued_changes, limits.queue)
        || nearly_full(status.queued_bytes, limits.queue_bytes)
    {
        return Err(ApiError::unavailable_for(
            "the write queue is nearly full",
            Duration::from_secs(1),
        ));
    }
    Ok(status)
}

fn since_last_commit(status: &WriterStatus) -> Duration {
    Duration::from_millis(crate::core::clock::unix_millis().saturating_sub(status.last_commit_ms))
}

/// Proves the pipeline with one durable write, unless another probe is
/// doing so or just did.
async fn probe(state: &OpsState) -> Result<(), ApiError> {
    let _probing = state.probing.lock().await;
    if since_last_commit(&state.writer.status()) < PROBE_AFTER {
        return Ok(());
    }
    let now = crate::core::clock::unix_millis();
    let write = state.writer.commit(Footprint::SMALL, move |change| {
        change.put(layout::meta(PROBE_RECORD), now.to_be_bytes().to_vec());
        Ok(())
    });
    match tokio::time::timeout(PROBE_TIMEOUT, write).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(ApiError::unavailable(format!(
            "the commit pipeline does not accept writes: {}",
            err.message
        ))),
        Err(_) => Err(ApiError::unavailable(format!(
            "the commit pipeline did not make a probe durable within {}",
            humantime::format_duration(PROBE_TIMEOUT)
        ))),
    }
}
