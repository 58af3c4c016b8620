//! Operations endpoints: liveness, readiness, metrics and clock sync.
//!
//! * `GET /healthz`: 200 while the process serves.
//! * `GET /readyz`: 200 when the store accepts a durable write; 503 while
//!   draining or when the store fails.
//! * `GET /metrics`: the Prometheus (OpenMetrics) exposition.
//! * `GET /api/v1/time`: `{"data":{"now":<unix ms>,"intervalMs":250}}`.

use crate::error::ApiError;
use crate::http::response;
use crate::http::router::Router;
use crate::hub::Hub;
use crate::lifecycle::Lifecycle;
use crate::metrics::{self, Metrics};
use crate::store::Store;
use http::{Method, StatusCode};
use serde_json::json;
use std::sync::Arc;

/// Length of one live-event polling interval, announced by `/api/v1/time`.
pub const INTERVAL_MS: u64 = 250;

/// What the operations endpoints look at.
#[derive(Clone)]
pub struct OpsState {
    /// The store probed by `/readyz`.
    pub store: Store,
    /// The metrics rendered by `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The lifecycle consulted by `/readyz`.
    pub lifecycle: Arc<Lifecycle>,
    /// The hub whose size `/metrics` reports.
    pub hub: Arc<Hub>,
}

/// Registers the operations routes.
pub fn routes(router: &mut Router, state: OpsState) {
    router.route(Method::GET, "/healthz", |_| async {
        Ok(response::data(StatusCode::OK, &json!({ "status": "ok" })))
    });
    let ready_state = state.clone();
    router.route(Method::GET, "/readyz", move |_| readyz(ready_state.clone()));
    let metrics_state = state.clone();
    router.route(Method::GET, "/metrics", move |_| {
        let hub = &metrics_state.hub;
        metrics_state
            .metrics
            .set_hub_size(hub.subscription_count(), hub.topic_count());
        let text = metrics_state.metrics.render();
        async move {
            Ok(response::with_content_type(
                StatusCode::OK,
                metrics::CONTENT_TYPE,
                text,
            ))
        }
    });
    router.route(Method::GET, "/api/v1/time", |_| async {
        Ok(response::data(
            StatusCode::OK,
            &json!({ "now": crate::clock::unix_millis(), "intervalMs": INTERVAL_MS }),
        ))
    });
}

async fn readyz(state: OpsState) -> Result<crate::http::Response, ApiError> {
    if state.lifecycle.is_draining() {
        return Err(ApiError::unavailable(
            "shutting down; send new traffic elsewhere",
        ));
    }
    state.store.check_writable().await.map_err(|reason| {
        ApiError::unavailable(format!("the store does not accept writes: {reason}"))
    })?;
    Ok(response::data(
        StatusCode::OK,
        &json!({ "status": "ready" }),
    ))
}
