//! Prometheus metrics: one registry per server, rendered at `GET /metrics`.
//!
//! Series (all prefixed `tidings_` except the standard `process_*` ones):
//! build info; process resident memory and open file descriptors (read from
//! `/proc` at scrape time); open connections by protocol; requests by route,
//! method and status; request latency by route; webhook delivery attempts by
//! outcome, their duration, and endpoints disabled for failing; the store's
//! state (`tidings_store_state`: 0 healthy, 1 failed, 2 recovering), groups
//! the writer made durable, the events they held
//! (`tidings_writer_events_total`) and the time their writes and flushes
//! took (`tidings_writer_flush_seconds_total`; divided by the groups: the
//! mean flush latency), and the changes and bytes waiting for it; events
//! written to clients by transport and surface
//! (`tidings_deliveries_total{transport,surface}`: `sse`, `ws`, `socketio`
//! × `topics` or the module owning the topic, counted per written batch); the
//! hub's subscriptions, ring memory and log reads; durable timers fired,
//! failed, parked and rows scanned; live events-streams being closed,
//! polls waiting for their interval, intervals closed and closes that
//! failed; idempotent replays; refused connections; JWTs answered from the
//! verified-token cache and those it had to verify
//! (`tidings_jwt_cache_hits_total`, `…_misses_total`); on a cluster writer
//! only ([`Metrics::register_cluster_writer`]), its outbox's rows and bytes,
//! the batches the stream acknowledged, failed publishes, whether it is
//! fenced and whether NATS is connected (`tidings_cluster_*`); on a cluster
//! edge only ([`Metrics::register_cluster_edge`]), the batch records applied
//! to its replica, the batch it holds and how far it is behind the stream
//! (`tidings_cluster_applied_batches_total`, `tidings_cluster_replica_batch`,
//! `tidings_cluster_replica_lag_batches`). Route labels are the
//! router's patterns (`/api/v1/topics/{topic}/events`), never raw paths, so
//! label cardinality stays bounded.
//!
//! The exposition is the OpenMetrics text format, which Prometheus scrapes natively.

use crate::cluster::outbox::OutboxStatus;
use crate::core::log::namespace::{Namespace, NamespaceOf};
use crate::core::writer::WriterStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Metric, Registry};
use serde_json::{Value, json};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// Registers `metric` as `name` with `help` and returns the handle to update it.
fn registered<M: Metric + Clone>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabels {
    transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    transport: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    transport: &'static str,
    surface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms … ~4 s in doublings.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    resident_memory: Gauge<u64, AtomicU64>,
    open_fds: Gauge,
    connections: Family<ProtocolLabels, Gauge>,
    connections_refused: Family<RefusalLabels, Counter>,
    idempotent_replays: Counter,
    streams: Family<TransportLabels, Gauge>,
    stream_ends: Family<ReasonLabels, Counter>,
    hub_subscriptions: Gauge,
    hub_topics: Gauge,
    hub_memory: HubMemoryMetrics,
    edge: Option<EdgeSeries>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    webhook_attempts: Family<OutcomeLabels, Counter>,
    webhook_duration: Histogram,
    webhook_disabled: Counter,
    writer: WriterSeries,
    deliveries: DeliverySeries,
    timers: TimerSeries,
    jwt_cache_hits: Counter,
    jwt_cache_misses: Counter,
    live: LiveSeries,
    cluster_writer: Option<ClusterWriterSeries>,
}

/// A cluster writer's replication series, set from its outbox at scrape time.
struct ClusterWriterSeries {
    outbox_rows: Gauge,
    outbox_bytes: Gauge,
    published: Counter,
    publish_errors: Counter,
    fenced: Gauge,
    nats_connected: Gauge,
}

impl ClusterWriterSeries {
    fn register(registry: &mut Registry) -> Self {
        Self {
            outbox_rows: registered(
                registry,
                "tidings_cluster_outbox_rows",
                "Durable batches waiting in the outbox for the stream",
                Gauge::default(),
            ),
            outbox_bytes: registered(
                registry,
                "tidings_cluster_outbox_bytes",
                "Bytes of the batches waiting in the outbox (writes get 503 beyond --outbox-max-bytes)",
                Gauge::default(),
            ),
            published: registered(
                registry,
                "tidings_cluster_published_batches",
                "Batches the stream acknowledged",
                Counter::default(),
            ),
            publish_errors: registered(
                registry,
                "tidings_cluster_publish_errors",
                "Failed publishes or reconciles with the stream (each followed by a retry)",
                Counter::default(),
            ),
            fenced: registered(
                registry,
                "tidings_cluster_fenced",
                "1 when this writer is fenced (another writer owns the stream) and read-only",
                Gauge::default(),
            ),
            nats_connected: registered(
                registry,
                "tidings_cluster_nats_connected",
                "1 while the connection to NATS is up",
                Gauge::default(),
            ),
        }
    }
}

/// The commit pipeline's series, set from its status at scrape time.
struct WriterSeries {
    store_state: Gauge,
    commits: Counter,
    events: Counter,
    flush_seconds: Counter<f64, AtomicU64>,
    queued_changes: Gauge,
    queued_bytes: Gauge,
}

impl WriterSeries {
    fn register(registry: &mut Registry) -> Self {
        Self {
            store_state: registered(
                registry,
                "tidings_store_state",
                "State of the store: 0 healthy, 1 failed (writes refused), 2 recovering",
                Gauge::default(),
            ),
            commits: registered(
                registry,
                "tidings_writer_commits",
                "Groups of changes the writer made durable",
                Counter::default(),
            ),
            events: registered(
                registry,
                "tidings_writer_events",
                "Events in the groups the writer made durable",
                Counter::default(),
            ),
            flush_seconds: registered(
                registry,
                "tidings_writer_flush_seconds",
                "Time the writer spent writing and flushing durable groups (per group: divide by tidings_writer_commits_total)",
                Counter::<f64, AtomicU64>::default(),
            ),
            queued_changes: registered(
                registry,
                "tidings_writer_queued_changes",
                "Changes waiting for the writer",
                Gauge::default(),
            ),
            queued_bytes: registered(
                registry,
                "tidings_writer_queued_bytes",
                "Bytes the changes waiting for the writer declared",
                Gauge::default(),
            ),
        }
    }
}

/// The durable timers' series, set from the writer's tallies at scrape time.
struct TimerSeries {
    fired: Counter,
    failed: Counter,
    parked: Gauge,
    scanned: Counter,
}

impl TimerSeries {
    fn register(registry: &mut Registry) -> Self {
        Self {
            fired: registered(
                registry,
                "tidings_timers_fired",
                "Durable timers whose handler ran and committed",
                Counter::default(),
            ),
            failed: registered(
                registry,
                "tidings_timers_failed",
                "Durable timers whose handler failed (deleted, failure logged)",
                Counter::default(),
            ),
            parked: registered(
                registry,
                "tidings_timers_parked",
                "Due timers kept unfired because no handler of their name is registered",
                Gauge::default(),
            ),
            scanned: registered(
                registry,
                "tidings_timers_scanned_rows",
                "Timer rows read while looking for due timers",
                Counter::default(),
            ),
        }
    }
}

/// The live events' series, bumped by the live module as it works.
struct LiveSeries {
    streams: Gauge,
    waiting_polls: Gauge,
    intervals_closed: Counter,
    close_failures: Counter,
}

impl LiveSeries {
    fn register(registry: &mut Registry) -> Self {
        Self {
            streams: registered(
                registry,
                "tidings_live_streams",
                "Live events-streams whose intervals are being closed",
                Gauge::default(),
            ),
            waiting_polls: registered(
                registry,
                "tidings_live_waiting_polls",
                "Polls waiting for their interval to close",
                Gauge::default(),
            ),
            intervals_closed: registered(
                registry,
                "tidings_live_intervals_closed",
                "Live intervals closed and stored",
                Counter::default(),
            ),
            close_failures: registered(
                registry,
                "tidings_live_close_failures",
                "Streams whose interval close did not commit (their counts went into the next close)",
                Counter::default(),
            ),
        }
    }
}

/// Events written to clients by transport and surface: the registered
/// family and the counters of the pairs met so far. A stream looks its
/// counter up once ([`DeliveryCounter`]; a pair's first batch registers it),
/// so counting a written batch is a relaxed add, never a lock or allocation.
struct DeliverySeries {
    family: Family<DeliveryLabels, Counter>,
    counters: RwLock<Vec<(&'static str, Box<str>, Counter)>>,
}

impl DeliverySeries {
    fn register(registry: &mut Registry) -> Self {
        Self {
            family: registered(
                registry,
                "tidings_deliveries",
                "Events written to clients, by transport (sse, ws, socketio) and surface (topics, or the module owning the topic)",
                Family::<DeliveryLabels, Counter>::default(),
            ),
            counters: RwLock::new(Vec::new()),
        }
    }

    /// The counter of `transport` and `surface`, registered on first use.
    fn counter(&self, transport: &'static str, surface: &str) -> Counter {
        let find = |counters: &[(&'static str, Box<str>, Counter)]| {
            counters
                .iter()
                .find(|(t, s, _)| *t == transport && **s == *surface)
                .map(|(_, _, counter)| counter.clone())
        };
        if let Some(counter) = find(&self.counters.read().unwrap_or_else(|p| p.into_inner())) {
            return counter;
        }
        let mut counters = self.counters.write().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = find(&counters) {
            return counter;
        }
        let labels = DeliveryLabels {
            transport,
            surface: surface.to_string(),
        };
        let counter = self.family.get_or_create(&labels).clone();
        counters.push((transport, surface.into(), counter.clone()));
        counter
    }

    /// `{transport: {surface: events}}` of every pair met so far.
    fn totals(&self) -> Value {
        let mut totals = serde_json::Map::new();
        for (transport, surface, counter) in self
            .counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let by_surface = totals
                .entry(transport.to_string())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            by_surface[&**surface] = json!(counter.get());
        }
        Value::Object(totals)
    }
}

/// The delivery counter of one stream (or one followed key) over a
/// transport (`sse`, `ws`, `socketio`): resolved from the first events it
/// writes (a stream's events all belong to its topic's surface), after which
/// counting a written batch is one relaxed add. Clones share the counter.
#[derive(Clone)]
pub struct DeliveryCounter {
    transport: &'static str,
    counter: Arc<OnceLock<Counter>>,
}

impl DeliveryCounter {
    /// Not resolved yet: a stream that writes nothing adds no series.
    pub fn new(transport: &'static str) -> Self {
        Self {
            transport,
            counter: Arc::new(OnceLock::new()),
        }
    }

    /// Counts `events` written to the client in one batch, of `topic` (which
    /// names the surface; read on the first batch only).
    pub fn add(&self, metrics: &Metrics, topic: &str, events: usize) {
        if events > 0 {
            self.counter
                .get_or_init(|| {
                    metrics
                        .deliveries
                        .counter(self.transport, surface_of(topic))
                })
                .inc_by(events as u64);
        }
    }
}

/// The surface a topic belongs to, as delivery metrics and the admin stats
/// name it: `topics` for public names, else the module owning the namespace.
pub fn surface_of(topic: &str) -> &str {
    match Namespace::of(topic) {
        NamespaceOf::Public => "topics",
        NamespaceOf::Module(module) => module,
    }
}

/// A poll counted in `tidings_live_waiting_polls` until dropped.
pub struct WaitingPoll(Gauge);

impl Drop for WaitingPoll {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every series.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let build = Info::new(BuildLabels {
            version: env!("CARGO_PKG_VERSION").to_string(),
        });
        registry.register("tidings_build", "Build information", build);
        let resident_memory = registered(
            &mut registry,
            "process_resident_memory_bytes",
            "Resident memory of the process in bytes",
            Gauge::<u64, AtomicU64>::default(),
        );
        let open_fds = registered(
            &mut registry,
            "process_open_fds",
            "Open file descriptors",
            Gauge::default(),
        );
        let connections = registered(
            &mut registry,
            "tidings_open_connections",
            "Open client connections by protocol",
            Family::<ProtocolLabels, Gauge>::default(),
        );
        let streams = registered(
            &mut registry,
            "tidings_open_streams",
            "Open long-lived streams (SSE, WebSocket) by transport",
            Family::<TransportLabels, Gauge>::default(),
        );
        let stream_ends = registered(
            &mut registry,
            "tidings_stream_ends",
            "Streams ended, by transport and reason",
            Family::<ReasonLabels, Counter>::default(),
        );
        let hub_subscriptions = registered(
            &mut registry,
            "tidings_hub_subscriptions",
            "Live topic subscriptions in the hub",
            Gauge::default(),
        );
        let hub_topics = registered(
            &mut registry,
            "tidings_hub_topics",
            "Topics with at least one subscriber",
            Gauge::default(),
        );
        let hub_memory = HubMemoryMetrics::register(&mut registry);
        let requests = registered(
            &mut registry,
            "tidings_http_requests",
            "HTTP requests by route, method and status",
            Family::<RequestLabels, Counter>::default(),
        );
        let latency = registered(
            &mut registry,
            "tidings_http_request_duration_seconds",
            "Time from request head to response head, by route",
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram as fn() -> Histogram,
            ),
        );
        let webhook_attempts = registered(
            &mut registry,
            "tidings_webhook_attempts",
            "Webhook delivery attempts by outcome (delivered, retry, failed = given up)",
            Family::<OutcomeLabels, Counter>::default(),
        );
        let webhook_duration = registered(
            &mut registry,
            "tidings_webhook_attempt_duration_seconds",
            "Time from sending a webhook delivery to its outcome",
            latency_histogram(),
        );
        let webhook_disabled = registered(
            &mut registry,
            "tidings_webhook_endpoints_disabled",
            "Webhook endpoints disabled because their deliveries kept failing",
            Counter::default(),
        );
        let connections_refused = registered(
            &mut registry,
            "tidings_connections_refused",
            "Connections closed unserved: per-ip (the address is at --max-connections-per-ip), probe-http2 (HTTP/2 on a probe slot)",
            Family::<RefusalLabels, Counter>::default(),
        );
        let idempotent_replays = registered(
            &mut registry,
            "tidings_idempotent_replays",
            "Writes answered with the recorded reply of an earlier request with the same idempotency key",
            Counter::default(),
        );
        let writer = WriterSeries::register(&mut registry);
        let deliveries = DeliverySeries::register(&mut registry);
        let timers = TimerSeries::register(&mut registry);
        let jwt_cache_hits = registered(
            &mut registry,
            "tidings_jwt_cache_hits",
            "JWTs answered from the verified-token cache",
            Counter::default(),
        );
        let jwt_cache_misses = registered(
            &mut registry,
            "tidings_jwt_cache_misses",
            "JWTs the verified-token cache did not hold (verified, and cached if valid)",
            Counter::default(),
        );
        let live = LiveSeries::register(&mut registry);
        Self {
            edge: None,
            writer,
            deliveries,
            timers,
            live,
            jwt_cache_hits,
            jwt_cache_misses,
            cluster_writer: None,
            registry,
            resident_memory,
            open_fds,
            connections,
            connections_refused,
            idempotent_replays,
            streams,
            stream_ends,
            hub_subscriptions,
            hub_topics,
            hub_memory,
            requests,
            latency,
            webhook_attempts,
            webhook_duration,
            webhook_disabled,
        }
    }

    /// Adds the `tidings_cluster_*` series of a cluster edge (before the
    /// registry is shared).
    pub fn register_cluster_edge(&mut self) {
        self.edge = Some(EdgeSeries::register(&mut self.registry));
    }

    /// Adds the `tidings_cluster_*` series of a cluster writer (before the
    /// metrics are shared).
    pub fn register_cluster_writer(&mut self) {
        self.cluster_writer = Some(ClusterWriterSeries::register(&mut self.registry));
    }

    /// Records a cluster writer's replication state (set by the `/metrics`
    /// handler before rendering; nothing on other nodes).
    pub fn set_cluster_writer(&self, status: &OutboxStatus) {
        let Some(series) = &self.cluster_writer else {
            return;
        };
        series.outbox_rows.set(gauge_value(status.rows));
        series.outbox_bytes.set(gauge_value(status.bytes));
        raise_to(&series.published, status.published_total);
        raise_to(&series.publish_errors, status.publish_errors);
        series.fenced.set(i64::from(status.fenced.is_some()));
        series.nats_connected.set(i64::from(status.connected));
    }

    /// Records one webhook delivery attempt: `delivered`, `retry` or `failed` (given up).
    pub fn webhook_attempt(&self, outcome: &'static str, elapsed: Duration) {
        self.webhook_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.webhook_duration.observe(elapsed.as_secs_f64());
    }

    /// Counts an endpoint disabled for failing continuously.
    pub fn webhook_endpoint_disabled(&self) {
        self.webhook_disabled.inc();
    }

    /// Counts a connection closed unserved, by `reason` (`per-ip`, `probe-http2`).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusalLabels { reason })
            .inc();
    }

    /// Counts a write answered by replaying its idempotency record.
    pub fn idempotent_replay(&self) {
        self.idempotent_replays.inc();
    }

    /// Counts a connection as open until the returned guard drops.
    pub fn connection_opened(&self, protocol: &'static str) -> OpenGuard {
        OpenGuard::new(
            self.connections
                .get_or_create(&ProtocolLabels { protocol })
                .clone(),
        )
    }

    /// Counts a stream as open until the returned guard drops.
    pub fn stream_opened(&self, transport: &'static str) -> OpenGuard {
        OpenGuard::new(
            self.streams
                .get_or_create(&TransportLabels { transport })
                .clone(),
        )
    }

    /// Counts why a stream ended (`timeout`, `shutdown`, `client`, `expired`…).
    pub fn stream_ended(&self, transport: &'static str, reason: &'static str) {
        self.stream_ends
            .get_or_create(&ReasonLabels { transport, reason })
            .inc();
    }

    /// Events written to clients so far, `{transport: {surface: count}}`, for the admin stats.
    pub fn delivery_totals(&self) -> Value {
        self.deliveries.totals()
    }

    /// Webhook delivery attempts so far by outcome, for the admin stats.
    pub fn webhook_outcomes(&self) -> Value {
        let count = |outcome| {
            self.webhook_attempts
                .get_or_create(&OutcomeLabels { outcome })
                .get()
        };
        json!({ "delivered": count("delivered"), "retry": count("retry"), "failed": count("failed") })
    }

    /// Open connections by protocol and open streams by transport, for the admin stats.
    pub fn open_counts(&self) -> serde_json::Value {
        let connection = |protocol| {
            self.connections
                .get_or_create(&ProtocolLabels { protocol })
                .get()
        };
        let stream = |transport| {
            self.streams
                .get_or_create(&TransportLabels { transport })
                .get()
        };
        serde_json::json!({
            "connections": { "http1": connection("http1"), "h2": connection("h2") },
            "streams": { "sse": stream("sse"), "ws": stream("ws"), "socketio": stream("socketio") },
        })
    }

    /// Records one finished request.
    pub fn observe_request(
        &self,
        route: &'static str,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method: method.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the hub's current size (set by the `/metrics` handler before rendering).
    pub fn set_hub_size(&self, subscriptions: usize, topics: usize) {
        set_size(&self.hub_subscriptions, subscriptions);
        set_size(&self.hub_topics, topics);
    }

    /// Records the commit pipeline's status (set by the `/metrics` handler
    /// before rendering): the store state, durable groups, their events and
    /// flush time so far, and what waits.
    pub fn set_writer(&self, status: &WriterStatus) {
        let series = &self.writer;
        series.store_state.set(status.state.gauge());
        raise_to(&series.commits, status.commits);
        raise_to(&series.events, status.events);
        let flushed = status.flush_micros as f64 / 1e6;
        series
            .flush_seconds
            .inc_by((flushed - series.flush_seconds.get()).max(0.0));
        set_size(&series.queued_changes, status.queued_changes);
        set_size(&series.queued_bytes, status.queued_bytes);
    }

    /// Records one tick of live closes: the streams it covered, the
    /// intervals it stored and the streams whose close did not commit.
    pub fn live_closed(&self, streams: usize, intervals: u64, failures: u64) {
        set_size(&self.live.streams, streams);
        self.live.intervals_closed.inc_by(intervals);
        self.live.close_failures.inc_by(failures);
    }

    /// Counts a poll waiting for its interval until the guard drops.
    pub fn live_poll_waiting(&self) -> WaitingPoll {
        self.live.waiting_polls.inc();
        WaitingPoll(self.live.waiting_polls.clone())
    }

    /// Records what the durable timers did (set by the `/metrics` handler
    /// before rendering).
    pub fn set_timers(&self, fired: u64, failed: u64, parked: usize, scanned: u64) {
        let series = &self.timers;
        raise_to(&series.fired, fired);
        raise_to(&series.failed, failed);
        set_size(&series.parked, parked);
        raise_to(&series.scanned, scanned);
    }

    /// Records the verified-token cache's hits and misses so far (set by
    /// the `/metrics` handler before rendering).
    pub fn set_jwt_cache(&self, hits: u64, misses: u64) {
        raise_to(&self.jwt_cache_hits, hits);
        raise_to(&self.jwt_cache_misses, misses);
    }

    /// Records an edge's replication: records applied since the start, the
    /// batch its replica holds, and the batches it lacks.
    pub fn set_edge(&self, applied_total: u64, replica_batch: u64, lag: u64) {
        let Some(series) = &self.edge else {
            return;
        };
        raise_to(&series.applied, applied_total);
        series
            .replica_batch
            .set(i64::try_from(replica_batch).unwrap_or(i64::MAX));
        series.lag.set(i64::try_from(lag).unwrap_or(i64::MAX));
    }

    /// Records what the hub's rings hold and how often it read the log (set
    /// by the `/metrics` handler before rendering).
    pub fn set_hub_memory(&self, ring_bytes: usize, ring_events: usize, log_reads: u64) {
        let memory = &self.hub_memory;
        set_size(&memory.ring_bytes, ring_bytes);
        set_size(&memory.ring_events, ring_events);
        raise_to(&memory.log_reads, log_reads);
    }

    /// The exposition text, with process figures read now.
    pub fn render(&self) -> String {
        if let Some(bytes) = process_resident_bytes() {
            self.resident_memory.set(bytes);
        }
        if let Some(count) = process_open_fds() {
            self.open_fds.set(count);
        }
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A cluster edge's replication.
struct EdgeSeries {
    applied: Counter,
    replica_batch: Gauge,
    lag: Gauge,
}

impl EdgeSeries {
    fn register(registry: &mut Registry) -> Self {
        Self {
            applied: registered(
                registry,
                "tidings_cluster_applied_batches",
                "Edge: batch records of the writer applied to this node's replica",
                Counter::default(),
            ),
            replica_batch: registered(
                registry,
                "tidings_cluster_replica_batch",
                "Edge: the number of the writer's last batch this node's replica holds",
                Gauge::default(),
            ),
            lag: registered(
                registry,
                "tidings_cluster_replica_lag_batches",
                "Edge: batches in the shared log this node's replica does not hold yet",
                Gauge::default(),
            ),
        }
    }
}

/// The hub's ring memory and log reads.
struct HubMemoryMetrics {
    ring_bytes: Gauge,
    ring_events: Gauge,
    log_reads: Counter,
}

impl HubMemoryMetrics {
    fn register(registry: &mut Registry) -> Self {
        Self {
            ring_bytes: registered(
                registry,
                "tidings_hub_ring_bytes",
                "Bytes charged for the events the hub keeps in memory for subscribers",
                Gauge::default(),
            ),
            ring_events: registered(
                registry,
                "tidings_hub_ring_events",
                "Events the hub keeps in memory for subscribers",
                Gauge::default(),
            ),
            log_reads: registered(
                registry,
                "tidings_hub_log_reads",
                "Pages the hub read from the log (replay, repair, history)",
                Counter::default(),
            ),
        }
    }
}

/// Keeps one connection or stream counted in its gauge until dropped.
pub struct OpenGuard {
    gauge: Gauge,
}

impl OpenGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        Self { gauge }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Sets a gauge to a size (saturating at `i64::MAX`).
fn set_size(gauge: &Gauge, size: usize) {
    gauge.set(i64::try_from(size).unwrap_or(i64::MAX));
}

/// A count as a gauge value (saturating at `i64::MAX`).
fn gauge_value(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Raises a counter to a total kept elsewhere (scrape-time counters).
fn raise_to(counter: &Counter, total: u64) {
    counter.inc_by(total.saturating_sub(counter.get()));
}

/// Resident set size from `/proc/self/status` (`VmRSS`, reported in KiB).
pub fn process_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Open file descriptors, counted in `/proc/self/fd`.
pub fn process_open_fds() -> Option<i64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    i64::try_from(entries.count()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_contains_every_family_and_recorded_values() {
        let metrics = Metrics::new();
        let _guard = metrics.connection_opened("http1");
        metrics.observe_request("/healthz", "GET", 200, Duration::from_millis(3));
        let text = metrics.render();
        assert!(text.contains("tidings_build_info{version=\""), "{text}");
        assert!(
            text.contains("tidings_open_connections{protocol=\"http1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "tidings_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("tidings_http_request_duration_seconds_count{route=\"/healthz\"} 1"),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
        assert!(text.contains("process_open_fds "), "{text}");
    }

    #[test]
    fn deliveries_count_by_transport_and_surface() {
        let metrics = Metrics::new();
        DeliveryCounter::new("sse").add(&metrics, "room/1", 3);
        let second = DeliveryCounter::new("sse");
        second.add(&metrics, "room/2", 1);
        second.add(&metrics, "room/2", 1);
        DeliveryCounter::new("ws").add(&metrics, "~chat/r1", 4);
        DeliveryCounter::new("ws").add(&metrics, "~discussion/9", 0);
        assert_eq!(
            metrics.delivery_totals(),
            json!({ "sse": { "topics": 5 }, "ws": { "chat": 4 } })
        );
        let text = metrics.render();
        assert!(
            text.contains("tidings_deliveries_total{transport=\"sse\",surface=\"topics\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("tidings_deliveries_total{transport=\"ws\",surface=\"chat\"} 4"),
            "{text}"
        );
    }

    #[test]
    fn connection_guard_decrements_on_drop() {
        let metrics = Metrics::new();
        drop(metrics.connection_opened("h2"));
        assert!(
            metrics
                .render()
                .contains("tidings_open_connections{protocol=\"h2\"} 0")
        );
    }
}
