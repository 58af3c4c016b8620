//! Wires the store, metrics, routes and server together and runs them until a
//! signal stops the process.
//!
//! The modules are listed in one place, `modules()`; [`Platform`] checks
//! their declarations (names, topic namespaces, key prefixes, which every
//! owner of records claims before the store is opened) and wires their
//! routes, their webhook bodies and their background work.
//!
//! Shutdown order (first SIGTERM or SIGINT): readiness turns 503 → after
//! `--drain-delay` the listener closes, long-lived streams are told to end,
//! webhook lanes abandon their attempt in flight (it stays pending) and
//! background work ends → in-flight requests get up to `--shutdown-grace`
//! (live intervals keep closing meanwhile) → the drain is marked finished
//! (the live module closes its last interval) → lanes and background work
//! get up to `--shutdown-grace` → the store is flushed → `run` returns. A second signal exits at once (exit code 1); nothing
//! acknowledged is lost by that, because acknowledged writes are already durable.

use crate::auth::Authenticator;
use crate::auth::leases::{self, Grants, LeaseTable};
use crate::auth::limits::StreamLimits;
use crate::auth::registry::Registry;
use crate::auth::tickets::Tickets;
use crate::auth::token_cache::TokenCache;
use crate::cluster::edge::{self, Edge, Fed, Running, counts};
use crate::cluster::outbox::{self, Outbox};
use crate::cluster::publisher;
use crate::config::ServeConfig;
use crate::core::datadir::InstanceConfig;
use crate::core::datadir::{self, DataDir};
use crate::core::hub::Hub;
use crate::core::lifecycle::Lifecycle;
use crate::core::log::DurableMark;
use crate::core::metrics::Metrics;
use crate::core::store::Store;
use crate::core::store::prefixes::KeyPrefixes;
use crate::core::writer::{Started, Writer};
use crate::error::StartupError;
use crate::http::cors::Cors;
use crate::http::router::Router;
use crate::http::server::{self, ServerContext};
use crate::http::service::HttpService;
use crate::http::tls::TlsSetting;
use crate::http::tls::{self, ReloadableCertificate};
use crate::modules::admin::AdminApi;
use crate::modules::channels::ChannelsModule;
use crate::modules::chat::ChatModule;
use crate::modules::discussions::DiscussionsApi;
use crate::modules::idempotency::Idempotency;
use crate::modules::live::LiveModule;
use crate::modules::platform::CoreSettings;
use crate::modules::platform::{
    Background, Module, ModuleContext, Platform, ReplicaFeed, WriterLink,
};
use crate::modules::shared_counts::SharedCounts;
use crate::modules::tickets::TicketsModule;
use crate::modules::topics::TopicsApi;
use crate::ops::pruner;
use crate::ops::{EdgeProbe, OpsState};
use crate::transport::webhook::{self, Webhooks};
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::oneshot;

/// Creates the data directory and its config without serving (`tidings init`).
pub fn init(data_dir: &std::path::Path) -> Result<String, StartupError> {
    let dir = DataDir::open(data_dir)?;
    let loaded = dir.load_or_create_config()?;
    Ok(if loaded.created {
        datadir::first_run_summary(&dir, &loaded.config)
    } else {
        format!(
            "{} already exists; nothing changed (the admin key is in that file)",
            dir.config_path().display()
        )
    })
}

/// Serves until SIGTERM/SIGINT, then drains and flushes.
pub async fn run(config: ServeConfig) -> Result<(), StartupError> {
    let (mut stops, hangup) = install_signals()?;
    let dir = DataDir::open(&config.data_dir)?;
    let prefixes = claim_key_prefixes()?;
    let edge = match config.edge.clone() {
        Some(settings) => Some(Edge::connect(settings).await?),
        None => None,
    };
    // An edge's store comes from the writer (see `cluster::edge::bootstrap`).
    let replica = match &edge {
        Some(edge) => Some(edge.prepare_store(&dir, config.store_cache_bytes).await?),
        None => None,
    };
    let loaded = dir.load_or_create_config()?;
    if loaded.created {
        eprintln!("{}", datadir::first_run_summary(&dir, &loaded.config));
    }
    let store = match replica {
        Some(store) => store,
        None => Store::open(&dir.db_path(), config.store_cache_bytes)?,
    };
    let certificate = load_tls(&config.tls, &dir)?;
    let tls = match &certificate {
        Some(certificate) => Some(tokio_rustls::TlsAcceptor::from(
            certificate.server_config()?,
        )),
        None => None,
    };
    let grants = edge.as_ref().map(Edge::grants);
    let mut core = Core::start(&config, store.clone(), &loaded.config, grants).await?;
    if let (Some(settings), Some(outbox)) = (&config.cluster_writer, core.writer.outbox()) {
        publisher::start(settings, store.clone(), outbox.clone());
    }
    let background = Background::default();
    if let Some((nats, subject)) = counts_link(&config, edge.as_ref()).await? {
        background.spawn(counts::share(
            nats,
            subject,
            core.shared.clone(),
            core.lifecycle.clone(),
        ));
    }
    let running = match edge {
        Some(edge) => Some(
            edge.start(core.fed(), &background)
                .map_err(|err| StartupError::io("reading the replica", err))?,
        ),
        None => None,
    };
    let (forward, edge, link, mut ended) = match running {
        Some(Running {
            forward,
            link,
            probe,
            ended,
        }) => (Some(forward), Some(probe), Some(link), ended),
        None => (
            None,
            None,
            None,
            core.writer_ended
                .take()
                .expect("the writer is supervised once"),
        ),
    };
    let router = assemble(&core, &config, prefixes, &background, edge, link)?;
    if forward.is_none() {
        // Every module registered its timer handlers while it was assembled.
        core.writer.arm_timers().await;
    }
    let metrics = core.metrics.clone();
    let lifecycle = core.lifecycle.clone();
    let webhooks = core.webhooks.clone();
    let writer = core.writer.clone();
    if let Some(outbox) = writer.outbox() {
        outbox.arm_gate();
    }
    let listener = bind(config.listen, config.listen_backlog)
        .map_err(|err| StartupError::io(format!("listening on {}", config.listen), err))?;
    let address = listener
        .local_addr()
        .map_err(|err| StartupError::io("reading the bound address", err))?;
    let mut service = HttpService::new(router, metrics.clone(), config.limits)
        .with_cors(Cors::new(Arc::new(core.auth.clone()), config.cors));
    if let Some(forward) = forward {
        service = service.with_forwarding(forward);
    }
    if let Some(outbox) = core.writer.outbox() {
        service = service.with_batch_header(outbox.last_durable_cell());
    }
    let context = Arc::new(ServerContext {
        service: Arc::new(service),
        metrics,
        lifecycle: lifecycle.clone(),
        limits: config.limits,
        tls,
    });
    let server = tokio::spawn(server::serve(listener, context));
    announce_listening(address, certificate.is_some())?;
    tokio::spawn(reload_on_sighup(hangup, certificate));

    tokio::select! {
        () = stops.next() => {}
        reason = &mut ended => return Err(cannot_go_on(reason)),
    }
    tokio::spawn(async move {
        // Only a failure sends; a writer (or an edge's follower) ending
        // because the process is exiting drops the sender instead.
        if let Ok(reason) = ended.await {
            tracing::error!("{}", cannot_go_on(Ok(reason)));
            std::process::exit(1);
        }
    });
    tracing::info!("shutdown requested: draining (a second signal exits at once)");
    lifecycle.begin_drain();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tokio::spawn(async move {
        stops.next().await;
        tracing::warn!("second signal: exiting without waiting for the drain");
        std::process::exit(1);
    });
    tokio::time::sleep(config.drain_delay).await;
    lifecycle.stop();
    drain(server, &lifecycle, config.shutdown_grace).await;
    lifecycle.finish_drain();
    let background_work = async { tokio::join!(webhooks.finished(), background.finished()) };
    if tokio::time::timeout(config.shutdown_grace, background_work)
        .await
        .is_err()
    {
        tracing::warn!(
            "webhook lanes or background work still busy after the shutdown grace; pending deliveries stay pending"
        );
    }
    writer.fold_pending().await;
    store
        .flush()
        .await
        .map_err(|err| StartupError::Io(format!("final store flush: {err}")))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The shared parts every surface is built from.
struct Core {
    store: Store,
    writer: Writer,
    /// Resolves (with the reason) if the writer thread ever ends.
    writer_ended: Option<oneshot::Receiver<String>>,
    /// On an edge (no writer thread): the durable mark its replica raises.
    durable: Option<Arc<DurableMark>>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    auth: Authenticator,
    webhooks: Arc<Webhooks>,
    /// On an edge: where the replica's records reach the modules.
    feed: Arc<ReplicaFeed>,
    /// Per-node counters summed over a cluster's nodes.
    shared: Arc<SharedCounts>,
}

impl Core {
    async fn start(
        config: &ServeConfig,
        store: Store,
        instance: &InstanceConfig,
        grants: Option<Arc<dyn Grants>>,
    ) -> Result<Self, StartupError> {
        let (writer, hub, pipeline) = start_writer(config, &store)?;
        let (writer_ended, durable) = match pipeline {
            Pipeline::Thread(thread) => (Some(supervise_writer(thread)?), None),
            Pipeline::Refusing(durable) => (None, Some(durable)),
        };
        let registry = Registry::load(&store, writer.clone(), instance)
            .await
            .map_err(|err| StartupError::io("loading tenants, keys and realms", err))?;
        let tickets = Arc::new(Tickets::new(writer.clone(), config.tickets));
        let limits = Arc::new(StreamLimits::new(config.max_streams_per_user));
        let mut auth = Authenticator::new(
            instance.admin_key.clone(),
            config.base_domain.clone(),
            registry,
            tickets,
            limits,
            TokenCache::new(config.jwt_cache_entries),
        );
        if let Some(grants) = grants {
            auth = auth.with_grants(grants);
        }
        let mut metrics = Metrics::new();
        if writer.outbox().is_some() {
            metrics.register_cluster_writer();
        }
        if writer.is_refusing() {
            metrics.register_cluster_edge();
        }
        let metrics = Arc::new(metrics);
        let lifecycle = Arc::new(Lifecycle::new());
        let webhooks = Webhooks::start(
            config.webhooks.clone(),
            webhook::Dependencies {
                store: store.clone(),
                writer: writer.clone(),
                metrics: metrics.clone(),
                lifecycle: lifecycle.clone(),
            },
        )
        .await?;
        Ok(Self {
            store,
            writer,
            writer_ended,
            durable,
            hub,
            metrics,
            lifecycle,
            auth,
            webhooks,
            feed: Arc::new(ReplicaFeed::default()),
            shared: Arc::new(SharedCounts::default()),
        })
    }

    /// What an edge's replica feeds.
    fn fed(&self) -> Fed {
        Fed {
            store: self.store.clone(),
            hub: self.hub.clone(),
            durable: self
                .durable
                .clone()
                .expect("an edge's writer handle refuses changes"),
            registry: self.auth.registry().clone(),
            lifecycle: self.lifecycle.clone(),
            feed: self.feed.clone(),
        }
    }

    /// The shared parts modules are built from.
    fn context(
        &self,
        settings: &CoreSettings,
        writer_link: Option<Arc<dyn WriterLink>>,
    ) -> ModuleContext {
        ModuleContext {
            writer: self.writer.clone(),
            hub: self.hub.clone(),
            auth: self.auth.clone(),
            lifecycle: self.lifecycle.clone(),
            metrics: self.metrics.clone(),
            idempotency: Idempotency::new(settings.idempotency_window),
            webhooks: self.webhooks.clone(),
            settings: Arc::new(settings.clone()),
            writer_link,
            shared: self.shared.clone(),
        }
    }

    /// Background work of the core: retention (events, tickets, idempotency
    /// records; not on an edge, whose writer handle refuses changes) and the
    /// hub's expiry of replay pages.
    fn start_background(&self, context: &ModuleContext, background: &Background) {
        background.spawn(self.hub.clone().expire_pages(self.lifecycle.clone()));
        if self.writer.is_refusing() {
            return;
        }
        background.spawn(pruner::run(
            self.store.clone(),
            self.writer.clone(),
            Arc::new(context.settings.retention.clone()),
            self.auth.tickets().clone(),
            context.idempotency,
            context.settings.prune_interval,
            self.lifecycle.clone(),
        ));
    }
}

/// The NATS connection and subject a cluster's node shares its counts on
/// (an edge's own connection; the writer's second one); `None` on a single
/// node.
async fn counts_link(
    config: &ServeConfig,
    edge: Option<&Edge>,
) -> Result<Option<(async_nats::Client, String)>, StartupError> {
    if let Some(edge) = edge {
        return Ok(Some((edge.nats().clone(), counts::subject(edge.stream()))));
    }
    let Some(writer) = &config.cluster_writer else {
        return Ok(None);
    };
    let nats = counts::connect(writer.servers.clone()).await?;
    Ok(Some((nats, counts::subject(&writer.stream.name))))
}

/// The application's modules, all in this one list. Adding a module is one
/// line here (see ARCHITECTURE.md, "Adding a module").
fn modules(
    context: &ModuleContext,
    config: &ServeConfig,
    edge: Option<Arc<dyn EdgeProbe>>,
) -> Vec<Arc<dyn Module>> {
    #[cfg_attr(not(debug_assertions), allow(unused_mut))]
    let mut modules: Vec<Arc<dyn Module>> = vec![
        Arc::new(OpsState::new(context).with_edge(edge)),
        Arc::new(TopicsApi::new(context)),
        Arc::new(DiscussionsApi::new(context)),
        Arc::new(ChatModule::new(context)),
        Arc::new(ChannelsModule::new(context)),
        Arc::new(TicketsModule::new(context)),
        Arc::new(LiveModule::new(context)),
        Arc::new(AdminApi::new(context)),
    ];
    #[cfg(debug_assertions)]
    if config.test_routes {
        modules.push(Arc::new(crate::modules::sample::SampleModule::new(context)));
    }
    #[cfg(not(debug_assertions))]
    let _ = config;
    modules
}

/// Checks and wires the modules: their declarations (names, namespaces, key
/// prefixes), the webhook body of each namespace, their routes (and the
/// debug test routes), their background work (none on an edge).
fn assemble(
    core: &Core,
    config: &ServeConfig,
    mut prefixes: KeyPrefixes,
    background: &Background,
    edge: Option<Arc<dyn EdgeProbe>>,
    link: Option<Arc<dyn WriterLink>>,
) -> Result<Router, StartupError> {
    let context = core.context(&config.core, link);
    let platform = Platform::assemble(modules(&context, config, edge), &mut prefixes)?;
    core.writer
        .observe(core.webhooks.stager(platform.webhook_bodies()));
    let mut router = Router::new();
    platform.routes(&mut router);
    if config.cluster_writer.is_some() {
        let table = Arc::new(LeaseTable::new(core.auth.limits().clone(), config.leases));
        leases::routes(&mut router, &core.auth, table.clone());
        background.spawn(table.sweep_until_stopped(core.lifecycle.clone()));
    }
    #[cfg(debug_assertions)]
    if config.test_routes {
        let runtime = crate::transport::ws::WsRuntime {
            settings: context.ws(),
            hub: core.hub.clone(),
            lifecycle: core.lifecycle.clone(),
            metrics: core.metrics.clone(),
        };
        crate::test_routes::routes(
            &mut router,
            runtime,
            context.sio(),
            core.auth.clone(),
            core.writer.clone(),
        );
    }
    if core.writer.is_refusing() {
        platform.feed(&core.feed);
        platform.start(&Background::none());
    } else {
        platform.start(background);
    }
    core.start_background(&context, background);
    Ok(router)
}

/// The owners of records below the modules claim their key prefixes before
/// the store is opened (modules claim theirs in [`Platform::assemble`]); two
/// that overlap stop the start.
fn claim_key_prefixes() -> Result<KeyPrefixes, StartupError> {
    let mut prefixes = KeyPrefixes::with_core();
    let owners: [(&str, &[u8]); 4] = [
        ("timers", crate::core::writer::TIMERS_PREFIX),
        ("auth", crate::auth::layout::PREFIX),
        ("webhooks", webhook::layout::PREFIX),
        ("idempotency", crate::modules::idempotency::layout::PREFIX),
    ];
    for (owner, prefix) in owners {
        prefixes
            .claim(owner, prefix)
            .map_err(|clash| StartupError::Config(format!("key prefixes: {clash}")))?;
    }
    Ok(prefixes)
}

/// How the store is written: by the writer thread, or (an edge) by the
/// replica, the writer handle refusing changes.
enum Pipeline {
    /// The writer thread, to supervise.
    Thread(std::thread::JoinHandle<Result<(), String>>),
    /// No thread; the durable mark the replica raises.
    Refusing(Arc<DurableMark>),
}

/// Starts the writer: a cluster's writer (numbering batches into its
/// outbox) with `--nats`, an edge's handle (no thread, refusing changes)
/// with `--role edge`, else a single node's.
fn start_writer(
    config: &ServeConfig,
    store: &Store,
) -> Result<(Writer, Arc<Hub>, Pipeline), StartupError> {
    let hub_store = store.clone();
    let hub_limits = config.core.hub;
    let hub = |durable| Hub::new(hub_store, durable, hub_limits);
    if config.edge.is_some() {
        let (writer, hub, durable) =
            Writer::start_refusing(store, hub, config.core.writer, edge::REFUSAL)
                .map_err(|err| StartupError::io("reading the replica", err))?;
        return Ok((writer, hub, Pipeline::Refusing(durable)));
    }
    let started = match &config.cluster_writer {
        Some(cluster) => {
            let outbox = Outbox::open(store, cluster.outbox_max_bytes)
                .map_err(|err| StartupError::io("reading the replication outbox", err))?;
            Writer::start_replicated(store.clone(), hub, config.core.writer, outbox)
        }
        None => {
            outbox::warn_if_former_writer(store)
                .map_err(|err| StartupError::io("reading the batch number", err))?;
            Writer::start(store.clone(), hub, config.core.writer)
        }
    };
    let Started {
        writer,
        hub,
        thread,
    } = started.map_err(|err| StartupError::io("starting the writer", err))?;
    Ok((writer, hub, Pipeline::Thread(thread)))
}

/// Watches the writer thread: the receiver resolves with the reason when the
/// thread fails (the store cannot be recovered, or the thread panicked), so
/// the process can exit non-zero instead of answering 503 forever. When the
/// thread ends normally (every handle dropped, as the process exits) the
/// sender is dropped instead.
fn supervise_writer(
    thread: std::thread::JoinHandle<Result<(), String>>,
) -> Result<oneshot::Receiver<String>, StartupError> {
    let (ended, receiver) = oneshot::channel();
    std::thread::Builder::new()
        .name("tidings-writer-watch".into())
        .spawn(move || {
            let reason = match thread.join() {
                Ok(Ok(())) => return,
                Ok(Err(reason)) => reason,
                Err(panic) => format!("the writer thread panicked: {}", panic_message(&panic)),
            };
            let _ = ended.send(format!(
                "the commit pipeline stopped, so no write can succeed: {reason}"
            ));
        })
        .map_err(|err| StartupError::io("starting the writer's watcher", err))?;
    Ok(receiver)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The error ending the process when the writer thread (or an edge's
/// follower) could not go on: `reason` says why.
fn cannot_go_on(reason: Result<String, oneshot::error::RecvError>) -> StartupError {
    let reason = reason.unwrap_or_else(|_| "the commit pipeline stopped".into());
    StartupError::Io(format!(
        "{reason}; exiting for a supervisor to restart the process"
    ))
}

/// Binds the listening socket with an explicit accept backlog (the kernel caps
/// it at `net.core.somaxconn`), so connection bursts are not dropped.
fn bind(address: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(backlog)
}

fn load_tls(
    setting: &TlsSetting,
    dir: &DataDir,
) -> Result<Option<Arc<ReloadableCertificate>>, StartupError> {
    let (cert, key) = match setting {
        TlsSetting::Off => return Ok(None),
        TlsSetting::Files { cert, key } => (cert.clone(), key.clone()),
        TlsSetting::SelfSigned => tls::ensure_self_signed(&dir.tls_dir())?,
    };
    ReloadableCertificate::load(&cert, &key).map(Some)
}

fn announce_listening(address: std::net::SocketAddr, tls: bool) -> Result<(), StartupError> {
    let scheme = if tls { "https" } else { "http" };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {scheme}://{address}")
        .and_then(|()| stdout.flush())
        .map_err(|err| StartupError::io("writing to stdout", err))?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(%address, scheme, "serving");
    Ok(())
}

async fn drain(
    server: tokio::task::JoinHandle<tokio_util::task::TaskTracker>,
    lifecycle: &Lifecycle,
    grace: std::time::Duration,
) {
    let tracker = match server.await {
        Ok(tracker) => tracker,
        Err(err) => {
            tracing::error!(error = %err, "the accept loop failed");
            return;
        }
    };
    let open = tracker.len();
    let everything = async {
        tracker.wait().await;
        lifecycle.sessions_finished().await;
    };
    if tokio::time::timeout(grace, everything).await.is_err() {
        tracing::warn!(
            still_open = tracker.len(),
            grace = %humantime::format_duration(grace),
            "connections still busy after the shutdown grace; closing them"
        );
    } else {
        tracing::info!(drained = open, "all connections finished");
    }
}

async fn reload_on_sighup(mut hangup: Signal, certificate: Option<Arc<ReloadableCertificate>>) {
    while hangup.recv().await.is_some() {
        let Some(certificate) = &certificate else {
            tracing::info!("SIGHUP: no TLS certificate to reload");
            continue;
        };
        match certificate.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "SIGHUP: TLS reload failed; keeping the previous certificate")
            }
        }
    }
}

/// SIGTERM and SIGINT, the signals that stop the server.
struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    async fn next(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// Installs the handlers before anything else starts, so no signal is missed.
fn install_signals() -> Result<(StopSignals, Signal), StartupError> {
    let install = |kind: SignalKind| {
        signal(kind).map_err(|err| StartupError::io("installing signal handlers", err))
    };
    let stops = StopSignals {
        terminate: install(SignalKind::terminate())?,
        interrupt: install(SignalKind::interrupt())?,
    };
    Ok((stops, install(SignalKind::hangup())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::platform::Declared;

    #[test]
    fn a_module_prefix_overlapping_auth_webhooks_or_idempotency_stops_the_start() {
        for (taken, owner) in [(b"ak", "auth"), (b"wq", "webhooks"), (b"ix", "idempotency")] {
            let mut prefixes = claim_key_prefixes().unwrap();
            let module = Declared {
                name: "intruder",
                namespace: None,
                prefix: Some(taken.to_vec()),
            };
            let refused = Platform::assemble(vec![Arc::new(module)], &mut prefixes)
                .map(drop)
                .unwrap_err();
            assert_eq!(refused.exit_code(), 2);
            let message = refused.to_string();
            assert!(
                message.contains("module intruder") && message.contains(&format!("`{owner}`")),
                "{message}"
            );
        }
    }
}
