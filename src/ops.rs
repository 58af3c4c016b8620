//! Operations endpoints: liveness, readiness, metrics and clock sync.
//!
//! * `GET /healthz`: 200 while the process serves.
//! * `GET /readyz`: 200 when the commit pipeline makes a probe write durable;
//!   503 while draining or when the pipeline or store fails.
//! * `GET /metrics`: the Prometheus (OpenMetrics) exposition.
//! * `GET /api/v1/time`: `{"data":{"now":<unix ms>,"intervalMs":250}}`.

use crate::error::ApiError;
use crate::http::response;
use crate::http::router::Router;
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::metrics::{self, Metrics};
use crate::store::PROBE_RECORD;
use crate::store::keys;
use crate::writer::Writer;
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// Length of one live-event polling interval, announced by `/api/v1/time`.
pub const INTERVAL_MS: u64 = 250;

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
}

/// Registers the operations routes.
pub fn routes(router: &mut Router, state: OpsState) {
    let state = Arc::new(state);
    router.route(Method::GET, "/healthz", |_| async {
        Ok(response::data(StatusCode::OK, &json!({ "status": "ok" })))
    });
    router.route_with(Method::GET, "/readyz", &state, |state, _| readyz(state));
    router.route_with(Method::GET, "/metrics", &state, |state, _| async move {
        let hub = state.hub.stats();
        state.metrics.set_hub_size(hub.subscriptions, hub.topics);
        state
            .metrics
            .set_hub_memory(hub.ring_bytes, hub.ring_events, hub.log_reads);
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
            &json!({ "now": crate::clock::unix_millis(), "intervalMs": INTERVAL_MS }),
        ))
    });
}

async fn readyz(state: Arc<OpsState>) -> Result<crate::http::Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::unavailable(
            "shutting down; send new traffic elsewhere",
        ));
    }
    let now = crate::clock::unix_millis();
    state
        .writer
        .commit(move |change| {
            change.put(keys::meta(PROBE_RECORD), now.to_be_bytes().to_vec());
            Ok(())
        })
        .await
        .map_err(|err| {
            ApiError::unavailable(format!(
                "the commit pipeline does not accept writes: {}",
                err.message
            ))
        })?;
    Ok(response::data(
        StatusCode::OK,
        &json!({ "status": "ready" }),
    ))
}
