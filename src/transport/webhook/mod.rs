//! Webhooks: server-to-server delivery of the same events, as signed POSTs
//! to each tenant's endpoints.
//!
//! * [`endpoints`]: the endpoint record, its validation and the in-memory index.
//! * [`outbox`]: the durable outbox rows and every state change of them.
//! * [`dispatcher`]: one delivery lane per endpoint.
//! * [`client`]: outbound HTTP/HTTPS (hyper-util + rustls);
//!   [`address`]: which addresses it may connect to.
//! * [`signature`]: `Tidings-Signature` and the other headers.
//! * [`backoff`]: retry timing and giving up.
//!
//! * `staging`: the writer's event observer that stages a delivery of every
//!   appended event, of every module, in the change appending it; the
//!   change's after-commit hook wakes the lanes once it is durable. Modules
//!   write no webhook code: they declare the body of their events
//!   ([`WebhookBodies`]: [`whole_event`] or [`event_data`]).
//!
//! Invariants:
//! * an event and its deliveries are committed atomically (one change);
//! * at least once: a row is removed only after a 2xx response, or moved to
//!   failed after its retry window, each through the writer; rows survive
//!   restarts and are read back by the lanes at start (receivers dedupe on
//!   the event id);
//! * in order per endpoint: an attempt starts only after every earlier
//!   delivery of the endpoint was delivered or given up;
//! * an endpoint failing continuously (`--webhook-disable-after` deliveries
//!   given up in a row) is disabled, with the reason on its record, a warn
//!   line and `tidings_webhook_endpoints_disabled_total`; while disabled,
//!   no new deliveries are queued for it and its pending ones wait;
//! * admin changes are durable before the index (what `stage` reads)
//!   changes; a deleted endpoint is marked first, then its rows are removed,
//!   then its record, so a crash in between is finished at the next start.

pub mod address;
pub mod backoff;
pub mod client;
mod dispatcher;
pub mod endpoints;
pub mod layout;
pub mod outbox;
pub mod signature;
mod staging;

use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::Metrics;
use crate::core::store::{Store, StoreError};
use crate::core::writer::{EventObserver, Footprint, Writer};
use crate::error::{ApiError, StartupError};
use backoff::RetryPolicy;
use dispatcher::{Dispatcher, Parts};
use endpoints::{Endpoint, EndpointInput, Index};
use outbox::{Delivery, Status};
use staging::Stager;
pub use staging::{BodyOf, WebhookBodies, event_data, whole_event};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use ulid::Ulid;
use uuid::Uuid;

/// Rows removed or re-delivered per commit.
const CHUNK: usize = 200;

/// Delivery limits and timing (`--webhook-*`).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Time one attempt may take.
    pub timeout: Duration,
    /// Backoff and retry window.
    pub retry: RetryPolicy,
    /// Deliveries given up in a row that disable an endpoint (0: never).
    pub disable_after: u32,
    /// Most endpoints per tenant.
    pub max_endpoints: usize,
    /// Largest delivery body.
    pub max_body: usize,
    /// Most attempts in flight.
    pub concurrency: usize,
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Which addresses deliveries may connect to.
    pub address_policy: address::AddressPolicy,
}

/// What [`Webhooks::start`] needs from the core.
pub struct Dependencies {
    /// The database (reads).
    pub store: Store,
    /// The commit pipeline (every write).
    pub writer: Writer,
    /// Delivery metrics.
    pub metrics: Arc<Metrics>,
    /// Lanes stop with the server.
    pub lifecycle: Arc<Lifecycle>,
}

/// Tenants' webhook endpoints and the delivery of their outbox.
pub struct Webhooks {
    store: Store,
    writer: Writer,
    index: Arc<Index>,
    dispatcher: Arc<Dispatcher>,
    settings: WebhookSettings,
    /// Serialises endpoint creation and deletion (the per-tenant limit).
    admin: tokio::sync::Mutex<()>,
}

impl Webhooks {
    /// Which addresses deliveries may reach (also checked when an endpoint
    /// is registered with a literal address).
    pub fn address_policy(&self) -> &address::AddressPolicy {
        &self.settings.address_policy
    }

    /// Loads every endpoint, starts a lane for each (pending rows are
    /// delivered from the start) and finishes interrupted deletions; on a
    /// node whose writer refuses changes (a cluster edge), none of that.
    pub async fn start(
        settings: WebhookSettings,
        core: Dependencies,
    ) -> Result<Arc<Self>, StartupError> {
        let client = client::build(
            settings.ca_file.as_deref(),
            settings.timeout,
            settings.address_policy.clone(),
        )?;
        let records = core
            .store
            .run(load_endpoints)
            .await
            .map_err(|err| StartupError::io("loading webhook endpoints", err))?;
        let index = Arc::new(Index::default());
        let dispatcher = Dispatcher::new(Parts {
            store: core.store.clone(),
            writer: core.writer.clone(),
            index: index.clone(),
            client,
            settings: settings.clone(),
            metrics: core.metrics,
            lifecycle: core.lifecycle,
        });
        let webhooks = Arc::new(Self {
            store: core.store,
            writer: core.writer,
            index,
            dispatcher,
            settings,
            admin: tokio::sync::Mutex::new(()),
        });
        // A node that cannot write (a cluster edge) delivers nothing: the
        // writer delivers, and its outcomes reach the edge's replica.
        if !webhooks.writer.is_refusing() {
            for endpoint in records {
                webhooks.resume(endpoint);
            }
        }
        Ok(webhooks)
    }

    fn resume(self: &Arc<Self>, endpoint: Endpoint) {
        if !endpoint.deleted {
            let (tenant, id) = (endpoint.tenant, endpoint.id);
            // In the index first: a lane whose endpoint is missing ends.
            self.index.insert(endpoint);
            self.dispatcher.start_lane(tenant, id);
            return;
        }
        let webhooks = self.clone();
        tokio::spawn(async move {
            if let Err(err) = webhooks.purge(&endpoint).await {
                tracing::error!(endpoint = %endpoint.id, error = %err, "finishing a webhook endpoint's deletion failed; retried at the next start");
            }
        });
    }

    /// The observer that stages a delivery of every appended event, for the
    /// writer ([`crate::core::writer::Writer::observe`]); `bodies` says what each
    /// namespace's events carry.
    pub fn stager(&self, bodies: WebhookBodies) -> Arc<dyn EventObserver> {
        Arc::new(Stager {
            index: self.index.clone(),
            dispatcher: Arc::downgrade(&self.dispatcher),
            max_body: self.settings.max_body,
            bodies,
        })
    }

    /// Completes when every lane ended (call after the server began stopping).
    pub async fn finished(&self) {
        self.dispatcher.finished().await;
    }

    /// A tenant's endpoints, oldest first.
    pub fn list(&self, tenant: &Uuid) -> Vec<Arc<Endpoint>> {
        self.index.list(tenant)
    }

    /// One endpoint of a tenant, or 404.
    pub fn get(&self, tenant: &Uuid, id: &Uuid) -> Result<Arc<Endpoint>, ApiError> {
        self.index
            .get(tenant, id)
            .ok_or_else(|| ApiError::not_found("no such webhook endpoint for this tenant"))
    }

    /// Creates an endpoint; the result holds its secret (show it once).
    pub async fn create(
        self: &Arc<Self>,
        tenant: Uuid,
        input: EndpointInput,
    ) -> Result<Endpoint, ApiError> {
        let endpoint = input.create(tenant, &now_text())?;
        let _serial = self.admin.lock().await;
        if self.index.list(&tenant).len() >= self.settings.max_endpoints {
            return Err(endpoints::too_many(self.settings.max_endpoints));
        }
        let (key, value) = (endpoint.key(), endpoint.encode()?);
        self.writer
            .commit(Footprint::SMALL, move |change| {
                change.put(key, value);
                Ok(())
            })
            .await?;
        self.index.insert(endpoint.clone());
        self.dispatcher.start_lane(tenant, endpoint.id);
        Ok(endpoint)
    }

    /// Changes an endpoint (PATCH semantics); enabling clears a disable.
    pub async fn update(
        &self,
        tenant: Uuid,
        id: Uuid,
        input: EndpointInput,
    ) -> Result<Endpoint, ApiError> {
        input.validate()?;
        let now = now_text();
        let endpoint = self
            .writer
            .commit(Footprint::SMALL, move |change| {
                endpoints::modify(change, tenant, id, |e| {
                    input.apply(e, &now);
                    Ok(())
                })
            })
            .await?
            .value
            .ok_or_else(|| ApiError::not_found("no such webhook endpoint for this tenant"))?;
        self.index.update(endpoint.clone());
        self.dispatcher.poke(&id);
        Ok(endpoint)
    }

    /// Deletes an endpoint with all its deliveries, pending and failed.
    pub async fn delete(&self, tenant: Uuid, id: Uuid) -> Result<(), ApiError> {
        let _serial = self.admin.lock().await;
        let Some(current) = self.index.remove(&tenant, &id) else {
            return Err(ApiError::not_found(
                "no such webhook endpoint for this tenant",
            ));
        };
        let marked = self
            .writer
            .commit(Footprint::SMALL, move |change| {
                endpoints::modify(change, tenant, id, |e| {
                    e.deleted = true;
                    Ok(())
                })
            })
            .await;
        let marked = match marked {
            Ok(committed) => committed.value,
            Err(err) => {
                self.index.insert(Endpoint::clone(&current));
                return Err(err);
            }
        };
        self.dispatcher.stop_lane(&id);
        match marked {
            Some(endpoint) => self.purge(&endpoint).await,
            None => Ok(()),
        }
    }

    /// Deletes every endpoint of a tenant (the tenant is being deleted).
    pub async fn delete_tenant(&self, tenant: Uuid) -> Result<(), ApiError> {
        for endpoint in self.index.list(&tenant) {
            self.delete(tenant, endpoint.id).await?;
        }
        Ok(())
    }

    /// Removes a deleted endpoint's rows in chunks, then its record.
    async fn purge(&self, endpoint: &Endpoint) -> Result<(), ApiError> {
        let id = endpoint.id;
        loop {
            let keys = self
                .store
                .run(move |store| outbox::row_keys(store, &id, CHUNK))
                .await
                .map_err(store_failure)?;
            let last = keys.len() < CHUNK;
            let record = last.then(|| endpoint.key());
            self.writer
                .commit(Footprint::SMALL, move |change| {
                    keys.into_iter()
                        .chain(record)
                        .for_each(|key| change.delete(key));
                    Ok(())
                })
                .await?;
            if last {
                return Ok(());
            }
        }
    }

    /// A page of an endpoint's deliveries of one status, oldest first, and
    /// whether more follow.
    pub async fn deliveries(
        &self,
        tenant: Uuid,
        id: Uuid,
        status: Status,
        after: Option<Ulid>,
        limit: usize,
    ) -> Result<(Vec<Delivery>, bool), ApiError> {
        self.get(&tenant, &id)?;
        self.store
            .run(move |store| outbox::page(store, &id, status, after, limit))
            .await
            .map_err(store_failure)
    }

    /// Queues one failed delivery again (404 if unknown, 409 if pending).
    pub async fn redeliver(&self, tenant: Uuid, id: Uuid, delivery: Ulid) -> Result<(), ApiError> {
        self.get(&tenant, &id)?;
        let now = crate::core::clock::unix_millis();
        let moved = self
            .writer
            .commit(Footprint::SMALL, move |change| {
                outbox::redeliver(change, &id, delivery, now)
            })
            .await?
            .value;
        if !moved {
            return Err(self
                .store
                .run(move |store| Ok(outbox::not_failed(store, &id, delivery)))
                .await
                .map_err(store_failure)?);
        }
        self.dispatcher.poke(&id);
        Ok(())
    }

    /// Queues every failed delivery of an endpoint again; returns how many.
    pub async fn redeliver_failed(&self, tenant: Uuid, id: Uuid) -> Result<usize, ApiError> {
        let mut after = None;
        let mut moved = 0;
        loop {
            let (page, more) = self
                .deliveries(tenant, id, Status::Failed, after, CHUNK)
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let ids: Vec<Ulid> = page.iter().map(|delivery| delivery.id).collect();
            let now = crate::core::clock::unix_millis();
            moved += self
                .writer
                .commit(Footprint::SMALL, move |change| {
                    ids.into_iter().try_fold(0, |count, delivery| {
                        outbox::redeliver(change, &id, delivery, now)
                            .map(|moved| count + usize::from(moved))
                    })
                })
                .await?
                .value;
            self.dispatcher.poke(&id);
            if !more {
                break;
            }
        }
        Ok(moved)
    }
}

fn now_text() -> String {
    crate::core::clock::rfc3339_millis(crate::core::clock::unix_millis())
}

fn store_failure(err: StoreError) -> ApiError {
    err.into_api("reading webhook deliveries failed")
}

/// Every stored endpoint, deleted ones included (blocking).
fn load_endpoints(store: &Store) -> Result<Vec<Endpoint>, StoreError> {
    let mut out = Vec::new();
    store.for_each_blocking(&layout::endpoint(None, None), |_, value| {
        let endpoint = Endpoint::decode(value)
            .map_err(|err| StoreError::new(format!("webhook endpoint unreadable: {err}")))?;
        out.push(endpoint);
        Ok(())
    })?;
    Ok(out)
}
