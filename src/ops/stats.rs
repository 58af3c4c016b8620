//! `GET /admin/v1/stats`: one JSON sample of the server's counters and
//! gauges, for the web console's live overview and for scripts.
//!
//! Counters (`writer.commits`, `writer.events`, `writer.flushSeconds`,
//! `deliveries`, `webhooks.attempts`) only grow while the process runs, so
//! a client polling every second gets rates from the deltas of two samples
//! (`at` is the sample's unix ms); gauges (`open`, `subscriptions`,
//! `writer.queued*`, `webhooks.pending`, `process`) are the value now.
//!
//! Who sees what: the instance admin key gets the whole server; an API key
//! with the `admin` scope gets `viewer` (its tenant and its own key, which
//! is how the console learns what a key may do) and its tenant's
//! subscriptions, nothing of other tenants; anything else is 403. Nothing
//! here writes. The webhook backlog is counted over at most `BACKLOG_CAP`
//! (10 000) pending keys, keeping none, so a sample costs a bounded store read.

use crate::auth::Credential;
use crate::auth::api_keys::{ApiKey, Scope};
use crate::core::metrics::{process_open_fds, process_resident_bytes, surface_of};
use crate::error::{ApiError, ErrorCode};
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use crate::ops::OpsState;
use crate::transport::webhook::layout as webhook_layout;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// Most pending webhook rows one sample counts.
const BACKLOG_CAP: usize = 10_000;

/// Registers `GET /admin/v1/stats`.
pub(super) fn routes(router: &mut Router, state: &Arc<OpsState>) {
    router.route_with(Method::GET, "/admin/v1/stats", state, stats);
}

async fn stats(state: Arc<OpsState>, request: Request) -> Result<Response, ApiError> {
    let principal = state.auth.authenticate(&request)?;
    let body = match &principal.credential {
        Credential::Admin => instance(&state).await,
        Credential::Key(key) if key.allows(Scope::Admin) => tenant(&state, key)?,
        _ => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "stats need the instance admin key or a key with the admin scope",
            ));
        }
    };
    Ok(response::data(StatusCode::OK, &body))
}

/// The whole server's sample.
async fn instance(state: &OpsState) -> Value {
    let hub = &state.hub;
    let mut topics = 0usize;
    let mut by_tenant: HashMap<Uuid, usize> = HashMap::new();
    let mut by_surface: HashMap<String, usize> = HashMap::new();
    hub.visit_subscriptions(|topic, subscribers| {
        topics += 1;
        *by_tenant.entry(topic.tenant).or_insert(0) += subscribers;
        let surface = surface_of(&topic.name);
        match by_surface.get_mut(surface) {
            Some(count) => *count += subscribers,
            None => {
                by_surface.insert(surface.to_string(), subscribers);
            }
        }
    });
    let by_tenant: serde_json::Map<String, Value> = by_tenant
        .into_iter()
        .map(|(tenant, count)| (tenant.to_string(), json!(count)))
        .collect();
    let by_surface: serde_json::Map<String, Value> = by_surface
        .into_iter()
        .map(|(surface, count)| (surface, json!(count)))
        .collect();
    let writer = state.writer.status();
    let mut webhooks = webhook_backlog(state).await;
    webhooks["attempts"] = state.metrics.webhook_outcomes();
    json!({
        "at": crate::core::clock::unix_millis(),
        "viewer": { "instanceAdmin": true },
        "open": state.metrics.open_counts(),
        "subscriptions": hub.subscription_count(),
        "topics": topics,
        "subscriptionsByTenant": by_tenant,
        "subscriptionsBySurface": by_surface,
        "writer": {
            "state": writer.state.as_str(),
            "commits": writer.commits,
            "events": writer.events,
            "flushSeconds": writer.flush_micros as f64 / 1e6,
            "queuedChanges": writer.queued_changes,
            "queuedBytes": writer.queued_bytes,
        },
        "deliveries": state.metrics.delivery_totals(),
        "webhooks": webhooks,
        "process": {
            "residentBytes": process_resident_bytes(),
            "openFds": process_open_fds(),
        },
    })
}

/// A tenant admin's sample: who it is and its tenant's subscriptions.
fn tenant(state: &OpsState, key: &ApiKey) -> Result<Value, ApiError> {
    let tenant = state
        .auth
        .registry()
        .tenant(&key.tenant)
        .ok_or_else(|| ApiError::not_found("no such tenant"))?;
    let mut subscriptions = 0;
    state.hub.visit_subscriptions(|topic, subscribers| {
        if topic.tenant == key.tenant {
            subscriptions += subscribers;
        }
    });
    Ok(json!({
        "at": crate::core::clock::unix_millis(),
        "viewer": {
            "instanceAdmin": false,
            "tenant": tenant,
            "key": { "id": key.id, "name": key.name, "scopes": key.scopes },
        },
        "subscriptions": subscriptions,
    }))
}

/// Pending webhook deliveries of every endpoint, counted up to
/// [`BACKLOG_CAP`] (`pendingCapped`: the count stopped there); `null`
/// while the store cannot be read (failed, recovering), so the rest of the
/// sample still answers.
async fn webhook_backlog(state: &OpsState) -> Value {
    let prefix = [webhook_layout::PREFIX[0], webhook_layout::PENDING];
    let counted = state
        .hub
        .store()
        .run(move |store| store.count_prefix_blocking(&prefix, BACKLOG_CAP + 1))
        .await;
    match counted {
        Ok(count) => json!({
            "pending": count.min(BACKLOG_CAP),
            "pendingCapped": count > BACKLOG_CAP,
        }),
        Err(_) => json!({ "pending": null, "pendingCapped": false }),
    }
}
