//! Delivering the outbox: one lane (a task) per endpoint, attempts bounded
//! by a shared concurrency limit, outcomes recorded through the writer.
//!
//! A lane reads its endpoint's oldest pending row from the store, waits
//! until that row's next attempt is due, POSTs it (signed, under
//! `--webhook-timeout`), and records the outcome; then the next row. With
//! nothing to do it sleeps until poked: by the after-commit hook of a change
//! that staged rows for it, or by an admin change (re-delivery, re-enabling,
//! update).
//!
//! Invariants:
//! * in order per endpoint: a lane has one attempt in flight at most and
//!   moves past a row only once the row was delivered or given up, durably;
//! * a lane is woken only for rows that are durable: the writer runs the
//!   staging change's after-commit hook only once that change is durable,
//!   and never for a change that failed; a lane woken otherwise (a retry
//!   timer, an admin poke) never attempts a row whose event is above the
//!   writer's durable mark (a group in flight, or a failed group about to
//!   be undone);
//! * stopping never loses anything: an attempt in flight is abandoned and
//!   its row stays pending, to be delivered after the next start.

use super::WebhookSettings;
use super::client::{self, HttpClient};
use super::endpoints::{Endpoint, Index};
use super::outbox::{self, AttemptError, Outcome, Recorded, Row};
use super::signature;
use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::Metrics;
use crate::core::store::Store;
use crate::core::writer::{Footprint, Writer};
use http::{HeaderName, HeaderValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// Pause after the store or the writer failed, before a lane tries again.
const TROUBLE_PAUSE: Duration = Duration::from_secs(1);

/// One endpoint's delivery task handle.
struct Lane {
    tenant: Uuid,
    endpoint: Uuid,
    poke: Notify,
    cancel: CancellationToken,
}

/// What a lane does next.
enum Step {
    /// Look again at once.
    Again,
    /// Sleep until poked.
    Idle,
    /// Sleep until poked or this much time passed.
    Pause(Duration),
    /// End the lane.
    Stop,
}

/// What the dispatcher works with.
pub(super) struct Parts {
    /// Outbox reads.
    pub store: Store,
    /// Outcome writes.
    pub writer: Writer,
    /// Endpoints as the lanes see them.
    pub index: Arc<Index>,
    /// Outbound HTTP.
    pub client: HttpClient,
    /// Timeout, retry policy, disable rule, concurrency.
    pub settings: WebhookSettings,
    /// Attempt and disable counters.
    pub metrics: Arc<Metrics>,
    /// Lanes end when the server stops.
    pub lifecycle: Arc<Lifecycle>,
}

/// The lanes and what they share.
pub(super) struct Dispatcher {
    parts: Parts,
    permits: Semaphore,
    lanes: Mutex<HashMap<Uuid, Arc<Lane>>>,
    tasks: TaskTracker,
}

impl Dispatcher {
    /// A dispatcher with no lanes yet.
    pub fn new(parts: Parts) -> Arc<Self> {
        Arc::new(Self {
            permits: Semaphore::new(parts.settings.concurrency),
            parts,
            lanes: Mutex::default(),
            tasks: TaskTracker::new(),
        })
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Arc<Lane>>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the lane of an endpoint (once).
    pub fn start_lane(self: &Arc<Self>, tenant: Uuid, endpoint: Uuid) {
        let lane = Arc::new(Lane {
            tenant,
            endpoint,
            poke: Notify::new(),
            cancel: CancellationToken::new(),
        });
        if self.lanes().insert(endpoint, lane.clone()).is_some() {
            tracing::warn!(%endpoint, "webhook lane started twice; the newer one replaces the other");
        }
        self.tasks.spawn(self.clone().run(lane));
    }

    /// Ends the lane of an endpoint (an attempt in flight is abandoned).
    pub fn stop_lane(&self, endpoint: &Uuid) {
        if let Some(lane) = self.lanes().remove(endpoint) {
            lane.cancel.cancel();
        }
    }

    /// Makes a lane look at its endpoint and rows again.
    pub fn poke(&self, endpoint: &Uuid) {
        if let Some(lane) = self.lanes().get(endpoint) {
            lane.poke.notify_one();
        }
    }

    /// Completes when every lane ended (after the server began stopping).
    pub async fn finished(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }

    async fn run(self: Arc<Self>, lane: Arc<Lane>) {
        loop {
            let pause = match self.step(&lane).await {
                Step::Again => continue,
                Step::Idle => None,
                Step::Pause(pause) => Some(tokio::time::Instant::now() + pause),
                Step::Stop => return,
            };
            tokio::select! {
                () = lane.poke.notified() => {}
                () = crate::core::clock::sleep_until_or_forever(pause) => {}
                () = self.stopped(&lane) => return,
            }
        }
    }

    /// Completes when the lane is cancelled or the server stops.
    async fn stopped(&self, lane: &Lane) {
        tokio::select! {
            () = lane.cancel.cancelled() => {}
            () = self.parts.lifecycle.stopping() => {}
        }
    }

    async fn step(&self, lane: &Lane) -> Step {
        if lane.cancel.is_cancelled() || self.parts.lifecycle.is_stopping() {
            return Step::Stop;
        }
        let Some(endpoint) = self.parts.index.get(&lane.tenant, &lane.endpoint) else {
            return Step::Stop;
        };
        if !endpoint.enabled {
            return Step::Idle;
        }
        let id = lane.endpoint;
        // Read before the row: a row of a failed group read just before the
        // store closed must not pass against a mark raised after recovery.
        let durable = self.parts.writer.durable_mark();
        let row = match self
            .parts
            .store
            .run(move |store| outbox::head(store, &id))
            .await
        {
            Ok(Some(row)) => row,
            Ok(None) => return Step::Idle,
            Err(err) => {
                tracing::error!(endpoint = %id, error = %err, "reading the webhook outbox failed");
                return Step::Pause(TROUBLE_PAUSE);
            }
        };
        if row.delivery.event_id > durable {
            // Staged by a group not durable (yet): its after-commit hook pokes
            // the lane once it is; a failed group's row is undone instead.
            return Step::Pause(TROUBLE_PAUSE);
        }
        let now = crate::core::clock::unix_millis();
        if let Some(due) = row.delivery.next_attempt_at_ms.filter(|due| *due > now) {
            return Step::Pause(Duration::from_millis(due - now));
        }
        let Some((result, elapsed)) = self.attempt(lane, &endpoint, &row).await else {
            return Step::Stop;
        };
        self.record(row, result, elapsed).await
    }

    /// One attempt under the concurrency limit and the timeout, and how long
    /// it took; `None` when the lane stopped meanwhile.
    async fn attempt(
        &self,
        lane: &Lane,
        endpoint: &Endpoint,
        row: &Row,
    ) -> Option<(Result<(), AttemptError>, Duration)> {
        let _permit = tokio::select! {
            permit = self.permits.acquire() => permit.ok()?,
            () = self.stopped(lane) => return None,
        };
        let started = Instant::now();
        let timeout = self.parts.settings.timeout;
        let send = async {
            let headers = headers(endpoint, row)?;
            client::post(
                &self.parts.client,
                &self.parts.settings.address_policy,
                &endpoint.url,
                headers,
                row.body.clone(),
            )
            .await
        };
        let result = tokio::select! {
            result = tokio::time::timeout(timeout, send) => result.unwrap_or_else(|_| Err(AttemptError {
                status: None,
                message: format!(
                    "no response within {} (--webhook-timeout)",
                    humantime::format_duration(timeout)
                ),
            })),
            () = self.stopped(lane) => return None,
        };
        Some((result, started.elapsed()))
    }

    async fn record(&self, row: Row, result: Result<(), AttemptError>, elapsed: Duration) -> Step {
        let now = crate::core::clock::unix_millis();
        let delivery = &row.delivery;
        let (outcome, label) = match result {
            Ok(()) => (Outcome::Delivered, "delivered"),
            Err(error) => {
                let failed = delivery.attempts.saturating_add(1);
                match self.parts.settings.retry.next_attempt_ms(
                    failed,
                    delivery.window_start_ms,
                    now,
                ) {
                    Some(at) => (Outcome::Retry(error, at), "retry"),
                    None => (Outcome::GiveUp(error), "failed"),
                }
            }
        };
        self.parts.metrics.webhook_attempt(label, elapsed);
        log_outcome(delivery, &outcome);
        let disable_after = self.parts.settings.disable_after;
        let committed = self
            .parts
            .writer
            .commit(Footprint::SMALL, move |change| {
                outbox::record(change, row, outcome, disable_after, now)
            })
            .await;
        match committed {
            Ok(committed) => {
                self.apply(committed.value);
                Step::Again
            }
            Err(err) => {
                tracing::error!(error = %err, "recording a webhook outcome failed; the delivery will be tried again");
                Step::Pause(TROUBLE_PAUSE)
            }
        }
    }

    fn apply(&self, recorded: Recorded) {
        let Some(endpoint) = recorded.endpoint else {
            return;
        };
        if recorded.disabled {
            self.parts.metrics.webhook_endpoint_disabled();
            tracing::warn!(
                endpoint = %endpoint.id, tenant = %endpoint.tenant, url = %endpoint.url,
                reason = endpoint.disabled_reason.as_deref().unwrap_or_default(),
                "webhook endpoint disabled; re-enable it through the admin API"
            );
        }
        self.parts.index.update(endpoint);
    }
}

fn log_outcome(delivery: &outbox::Delivery, outcome: &Outcome) {
    let (endpoint, id) = (delivery.endpoint, delivery.id);
    match outcome {
        Outcome::Delivered => {}
        Outcome::Retry(error, _) => {
            tracing::debug!(%endpoint, delivery = %id, error = %error.message, "webhook attempt failed; will retry");
        }
        Outcome::GiveUp(error) => tracing::warn!(
            %endpoint, delivery = %id, error = %error.message,
            "webhook delivery given up after its retry window; kept as failed"
        ),
    }
}

/// The headers naming and signing one attempt.
fn headers(endpoint: &Endpoint, row: &Row) -> Result<Vec<(HeaderName, HeaderValue)>, AttemptError> {
    let unix_seconds = crate::core::clock::unix_millis() / 1000;
    let delivery = &row.delivery;
    let signed = signature::signature_header(&endpoint.secret, unix_seconds, &row.body);
    let values = [
        (
            signature::EVENT_TYPE_HEADER,
            Ok(delivery.event_type.clone()),
        ),
        (
            signature::EVENT_ID_HEADER,
            Ok(delivery.event_id.to_string()),
        ),
        (signature::DELIVERY_ID_HEADER, Ok(delivery.id.to_string())),
        (
            signature::SIGNATURE_HEADER,
            signed.map_err(|err| err.to_string()),
        ),
    ];
    values
        .into_iter()
        .map(|(name, value)| {
            let value =
                value.and_then(|value| HeaderValue::try_from(value).map_err(|err| err.to_string()));
            value
                .map(|value| (HeaderName::from_static(name), value))
                .map_err(|err| AttemptError {
                    status: None,
                    message: format!("building the {name} header: {err}"),
                })
        })
        .collect()
}
