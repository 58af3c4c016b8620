//! An edge node (`serve --role edge`): it holds client connections for
//! every surface over a replica of the writer's store, and forwards writes
//! to the writer.
//!
//! * [`settings`]: the writer's address and key, the shared log;
//! * [`bootstrap`]: the first copy of the writer's data (its online
//!   backup), and a fresh one when the replica is older than the stream;
//! * [`replica`]: the replica, advanced one batch record at a time, the
//!   events of each handed to the edge's hub;
//! * [`follower`]: reads the stream into the replica ([`position`]: where
//!   a batch is in the stream);
//! * [`forward`]: writes and admin requests go to the writer
//!   ([`writer_client`]), answered once the replica holds them;
//! * [`leases`]: ticket claims and per-user stream slots, leased from
//!   the writer and renewed while the stream lives;
//! * [`counts`]: the modules' per-node counters shared over core NATS (the
//!   writer runs it too);
//! * [`status`]: `/readyz` and `/metrics`.
//!
//! What runs on an edge: the follower, a flush of the replica every
//! [`FLUSH_PERIOD`], a reload of the auth registry after records that change
//! tenants, keys or realms, a check of the writer every
//! [`WRITER_CHECK_PERIOD`]. What does not: the writer thread (the edge's
//! [`crate::core::writer::Writer`] handle refuses every change with
//! [`REFUSAL`]), durable timers, the pruner, webhook deliveries and every
//! module's background work (they all write; the writer does them and
//! their results arrive with the records).
//!
//! Invariants: only the follower writes the replica, one record at a time
//! in number order without a gap; a record's events reach the hub after
//! the record is in the replica; a cursor this replica has yet to reach
//! (another edge's, a client moving between edges) is waited for up to
//! [`CURSOR_PATIENCE`] before it counts as `unknown`.

pub mod bootstrap;
pub mod counts;
pub mod follower;
pub mod forward;
pub mod leases;
pub mod position;
pub mod replica;
pub mod settings;
pub mod status;
pub mod writer_client;

pub use settings::{EdgeSettings, WriterAddress, WriterKey};

use crate::auth::registry::Registry;
use crate::core::datadir::DataDir;
use crate::core::hub::Hub;
use crate::core::lifecycle::Lifecycle;
use crate::core::log::DurableMark;
use crate::core::store::{Store, StoreError};
use crate::error::StartupError;
use crate::http::forward::Forward;
use crate::modules::platform::Background;
use crate::ops::EdgeProbe;
use follower::{Follower, Progress};
use replica::Replica;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::oneshot;
use writer_client::WriterClient;

/// What an edge answers (503) to a change submitted on it: its requests
/// that write are forwarded and its stream admissions lease from the
/// writer, so this reaches only writes made outside a forwarded request.
pub const REFUSAL: &str = "this node is an edge; writes go to the writer";
/// How often the replica is flushed (when it changed).
pub const FLUSH_PERIOD: Duration = Duration::from_secs(1);
/// How long the edge waits for an answer of the JetStream API: a request
/// that met a frozen node (or a consumer placed on one) is retried sooner.
pub const NATS_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a read waits for the replica to reach its cursor.
pub const CURSOR_PATIENCE: Duration = forward::Forwarder::REPLICA_WAIT;
/// How often the edge checks that the writer answers.
pub const WRITER_CHECK_PERIOD: Duration = Duration::from_secs(5);

/// An edge before it serves: its connections.
pub struct Edge {
    settings: EdgeSettings,
    nats: async_nats::Client,
    writer: WriterClient,
    leases: leases::WriterLeases,
}

/// The parts of the core an edge feeds.
pub struct Fed {
    /// The replica's store.
    pub store: Store,
    /// The hub the replica's events go to.
    pub hub: Arc<Hub>,
    /// The hub's durable mark.
    pub durable: Arc<DurableMark>,
    /// The auth registry reloaded after auth records.
    pub registry: Arc<Registry>,
    /// Server phases (the edge's tasks end on stop).
    pub lifecycle: Arc<Lifecycle>,
    /// Where applied records reach the modules' memory.
    pub feed: Arc<crate::modules::platform::ReplicaFeed>,
}

/// A serving edge, as the rest of the server sees it.
pub struct Running {
    /// The forwarding hook of the HTTP service.
    pub forward: Arc<dyn Forward>,
    /// Writes made outside a forwarded request, for the modules.
    pub link: Arc<dyn crate::modules::platform::WriterLink>,
    /// The edge's part of `/readyz` and `/metrics`.
    pub probe: Arc<dyn EdgeProbe>,
    /// Resolves with the reason when the edge cannot go on (the replica is
    /// too old for the stream, or cannot be written): the process exits.
    pub ended: oneshot::Receiver<String>,
}

impl Edge {
    /// Connects to NATS in the background (the edge starts and serves its
    /// replica while NATS is down) and builds the client to the writer.
    pub async fn connect(settings: EdgeSettings) -> Result<Self, StartupError> {
        let nats = async_nats::ConnectOptions::new()
            .name("tidings-edge")
            .ping_interval(crate::cluster::publisher::PING_INTERVAL)
            .request_timeout(Some(NATS_REQUEST_TIMEOUT))
            .retry_on_initial_connect()
            .connect(settings.nats.clone())
            .await
            .map_err(|err| StartupError::Config(format!("--nats: {err}")))?;
        let writer = WriterClient::new(settings.writer.clone())?;
        let leases = leases::WriterLeases::new(writer.clone(), settings.writer_key.clone());
        Ok(Self {
            settings,
            nats,
            writer,
            leases,
        })
    }

    /// Where the edge's streams take ticket sessions and per-user slots.
    pub fn grants(&self) -> Arc<dyn crate::auth::leases::Grants> {
        Arc::new(self.leases.clone())
    }

    /// The NATS connection (for the modules' shared counts).
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The name of the cluster's stream.
    pub fn stream(&self) -> &str {
        &self.settings.stream
    }

    /// Opens the edge's store in `dir`, fetching the writer's data first
    /// when needed (see [`bootstrap`]).
    pub async fn prepare_store(
        &self,
        dir: &DataDir,
        cache_bytes: u64,
    ) -> Result<Store, StartupError> {
        let nats = async_nats::jetstream::new(self.nats.clone());
        let source = bootstrap::Source {
            writer: &self.writer,
            key: &self.settings.writer_key,
            nats: &nats,
            stream: &self.settings.stream,
        };
        bootstrap::prepare(dir, &source, cache_bytes).await
    }

    /// Starts following the stream into the replica in `fed`, with the
    /// edge's other tasks on `background`.
    pub fn start(self, fed: Fed, background: &Background) -> Result<Running, StoreError> {
        fed.hub.wait_for_cursors(CURSOR_PATIENCE);
        let replica = Arc::new(Replica::new(
            fed.store.clone(),
            fed.hub,
            fed.durable,
            fed.feed,
        )?);
        let progress = Arc::new(Progress::default());
        let writer_reachable = Arc::new(AtomicBool::new(true));
        let follower = Follower::new(
            async_nats::jetstream::new(self.nats.clone()),
            self.settings.stream.clone(),
            replica.clone(),
            progress.clone(),
        );
        let (end, ended) = oneshot::channel();
        let lifecycle = fed.lifecycle.clone();
        background.spawn(async move {
            if let Err(reason) = follower.run(lifecycle).await {
                let _ = end.send(reason);
            }
        });
        background.spawn(
            replica
                .clone()
                .flush_every(FLUSH_PERIOD, fed.lifecycle.clone()),
        );
        background.spawn(reload_auth(
            replica.clone(),
            fed.registry,
            fed.store,
            fed.lifecycle.clone(),
        ));
        background.spawn(
            self.leases
                .clone()
                .renew_until_stopped(fed.lifecycle.clone()),
        );
        let stopping = fed.lifecycle.clone();
        background.spawn(forward::watch_writer(
            self.writer.clone(),
            writer_reachable.clone(),
            WRITER_CHECK_PERIOD,
            async move { stopping.stopping().await },
        ));
        let forward = Arc::new(forward::Forwarder::new(
            self.writer,
            self.settings.writer_key.clone(),
            replica.clone(),
            writer_reachable.clone(),
        ));
        let probe = status::EdgeStatus {
            replica,
            progress,
            nats: self.nats,
            writer_reachable,
        };
        Ok(Running {
            link: forward.clone(),
            forward,
            probe: Arc::new(probe),
            ended,
        })
    }
}

/// Reloads the auth registry from the replica after each burst of records
/// that changed tenants, keys or realms, until the server stops.
async fn reload_auth(
    replica: Arc<Replica>,
    registry: Arc<Registry>,
    store: Store,
    lifecycle: Arc<Lifecycle>,
) {
    loop {
        tokio::select! {
            () = replica.auth_changed().notified() => {}
            () = lifecycle.stopping() => return,
        }
        while let Err(err) = registry.reload(&store).await {
            tracing::error!(error = %err, "reloading tenants, keys and realms from the replica failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = lifecycle.stopping() => return,
            }
        }
    }
}
