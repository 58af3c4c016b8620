//! Wires the store, metrics, routes and server together and runs them until a
//! signal stops the process.
//!
//! Shutdown order (first SIGTERM or SIGINT): readiness turns 503 → after
//! `--drain-delay` the listener closes, long-lived streams are told to end and
//! webhook lanes abandon their attempt in flight (it stays pending) →
//! in-flight requests get up to `--shutdown-grace` → the store is flushed →
//! `run` returns. A second signal exits at once (exit code 1); nothing
//! acknowledged is lost by that, because acknowledged writes are already durable.

use crate::auth::Authenticator;
use crate::auth::limits::StreamLimits;
use crate::auth::registry::Registry;
use crate::auth::tickets::Tickets;
use crate::config::{CoreSettings, ServeConfig, TlsSetting};
use crate::datadir::InstanceConfig;
use crate::datadir::{self, DataDir};
use crate::error::StartupError;
use crate::http::router::Router;
use crate::http::server::{self, ServerContext};
use crate::http::service::HttpService;
use crate::http::tls::{self, ReloadableCertificate};
use crate::hub::{Hub, HubLimits};
use crate::idempotency::Idempotency;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::modules::admin::{self, AdminApi};
use crate::modules::discussions::{self, DiscussionsApi};
use crate::modules::topics::{self, TopicsApi, TopicsLimits};
use crate::ops::{self, OpsState};
use crate::pruner;
use crate::store::Store;
use crate::transport::sse::SseSettings;
use crate::transport::webhook::{self, Webhooks};
use crate::transport::ws::WsSettings;
use crate::writer::{Started, Writer, WriterLimits};
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
    let loaded = dir.load_or_create_config()?;
    if loaded.created {
        eprintln!("{}", datadir::first_run_summary(&dir, &loaded.config));
    }
    let store = Store::open(&dir.db_path(), config.store_cache_bytes)?;
    let certificate = load_tls(&config.tls, &dir)?;
    let tls = match &certificate {
        Some(certificate) => Some(tokio_rustls::TlsAcceptor::from(
            certificate.server_config()?,
        )),
        None => None,
    };
    let mut core = Core::start(&config, store.clone(), &loaded.config).await?;
    let writer_ended = core.writer_ended.take();
    let router = core.router(&config);
    core.spawn_pruner(&config.core);
    let metrics = core.metrics.clone();
    let lifecycle = core.lifecycle.clone();
    let webhooks = core.webhooks.clone();
    let listener = bind(config.listen, config.listen_backlog)
        .map_err(|err| StartupError::io(format!("listening on {}", config.listen), err))?;
    let address = listener
        .local_addr()
        .map_err(|err| StartupError::io("reading the bound address", err))?;
    let context = Arc::new(ServerContext {
        service: Arc::new(HttpService::new(router, metrics.clone(), config.limits)),
        metrics,
        lifecycle: lifecycle.clone(),
        limits: config.limits,
        tls,
    });
    let server = tokio::spawn(server::serve(listener, context));
    announce_listening(address, certificate.is_some())?;
    tokio::spawn(reload_on_sighup(hangup, certificate));

    let mut writer_ended = writer_ended.expect("the writer is supervised once");
    tokio::select! {
        () = stops.next() => {}
        reason = &mut writer_ended => return Err(writer_death(reason)),
    }
    tokio::spawn(async move {
        // Only a failure sends; a writer ending because the process is
        // exiting drops the sender instead.
        if let Ok(reason) = writer_ended.await {
            tracing::error!("{}", writer_death(Ok(reason)));
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
    if tokio::time::timeout(config.shutdown_grace, webhooks.finished())
        .await
        .is_err()
    {
        tracing::warn!(
            "webhook lanes still busy after the shutdown grace; their deliveries stay pending"
        );
    }
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
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    auth: Authenticator,
    webhooks: Arc<Webhooks>,
}

impl Core {
    async fn start(
        config: &ServeConfig,
        store: Store,
        instance: &InstanceConfig,
    ) -> Result<Self, StartupError> {
        let limits = WriterLimits {
            queue: config.core.writer_queue,
            queue_bytes: config.core.writer_queue_bytes,
            batch: config.core.writer_batch,
            recovery: config.core.store_recovery,
        };
        let hub_store = store.clone();
        let hub_limits = HubLimits {
            topic_events: config.core.topic_buffer,
            topic_bytes: config.core.topic_buffer_bytes,
            total_bytes: config.core.hub_buffer_bytes,
            readers: config.core.replay_readers,
        };
        let Started {
            writer,
            hub,
            thread,
        } = Writer::start(
            store.clone(),
            |durable| Hub::new(hub_store, durable, hub_limits),
            limits,
        )
        .map_err(|err| StartupError::io("starting the writer", err))?;
        let writer_ended = Some(supervise_writer(thread)?);
        let registry = Registry::load(&store, writer.clone(), instance)
            .await
            .map_err(|err| StartupError::io("loading tenants, keys and realms", err))?;
        let tickets = Arc::new(Tickets::new(writer.clone(), config.tickets));
        let limits = Arc::new(StreamLimits::new(config.max_streams_per_user));
        let auth = Authenticator::new(
            instance.admin_key.clone(),
            config.base_domain.clone(),
            registry,
            tickets,
            limits,
        );
        let metrics = Arc::new(Metrics::new());
        let lifecycle = Arc::new(Lifecycle::new());
        let webhooks = Webhooks::start(
            config.webhooks.clone(),
            webhook::Core {
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
            hub,
            metrics,
            lifecycle,
            auth,
            webhooks,
        })
    }

    fn router(&self, config: &ServeConfig) -> Router {
        let mut router = Router::new();
        ops::routes(
            &mut router,
            OpsState {
                writer: self.writer.clone(),
                metrics: self.metrics.clone(),
                lifecycle: self.lifecycle.clone(),
                hub: self.hub.clone(),
                probing: tokio::sync::Mutex::new(()),
            },
        );
        topics::routes(&mut router, Arc::new(self.topics_api(&config.core)));
        discussions::routes(&mut router, Arc::new(self.discussions_api(&config.core)));
        admin::routes(
            &mut router,
            Arc::new(AdminApi {
                auth: self.auth.clone(),
                hub: self.hub.clone(),
                metrics: self.metrics.clone(),
                webhooks: self.webhooks.clone(),
            }),
        );
        #[cfg(debug_assertions)]
        if config.test_routes {
            let runtime = crate::transport::ws::WsRuntime {
                settings: ws_settings(&config.core),
                hub: self.hub.clone(),
                lifecycle: self.lifecycle.clone(),
                metrics: self.metrics.clone(),
            };
            crate::test_routes::routes(
                &mut router,
                runtime,
                self.auth.clone(),
                self.writer.clone(),
            );
        }
        router
    }

    fn discussions_api(&self, core: &CoreSettings) -> DiscussionsApi {
        DiscussionsApi {
            writer: self.writer.clone(),
            hub: self.hub.clone(),
            auth: self.auth.clone(),
            lifecycle: self.lifecycle.clone(),
            metrics: self.metrics.clone(),
            sse: sse_settings(core),
            limits: core.discussions,
            webhooks: self.webhooks.clone(),
            idempotency: Idempotency::new(core.idempotency_window),
        }
    }

    fn topics_api(&self, core: &CoreSettings) -> TopicsApi {
        TopicsApi {
            writer: self.writer.clone(),
            hub: self.hub.clone(),
            auth: self.auth.clone(),
            lifecycle: self.lifecycle.clone(),
            metrics: self.metrics.clone(),
            sse: sse_settings(core),
            ws: ws_settings(core),
            limits: TopicsLimits {
                max_batch_events: core.publish_batch_max,
                max_page: 1000,
                ws_max_topics: core.ws_max_topics,
            },
            webhooks: self.webhooks.clone(),
            idempotency: Idempotency::new(core.idempotency_window),
        }
    }

    fn spawn_pruner(&self, core: &CoreSettings) {
        tokio::spawn(pruner::run(
            self.store.clone(),
            self.writer.clone(),
            Arc::new(core.retention.clone()),
            self.auth.tickets().clone(),
            Idempotency::new(core.idempotency_window),
            core.prune_interval,
            self.lifecycle.clone(),
        ));
    }
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
            let _ = ended.send(reason);
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

fn writer_death(reason: Result<String, oneshot::error::RecvError>) -> StartupError {
    let reason = reason.unwrap_or_else(|_| "the writer thread ended".into());
    StartupError::Io(format!(
        "the commit pipeline stopped, so no write can succeed: {reason}; exiting for a supervisor to restart the process"
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

fn sse_settings(core: &CoreSettings) -> SseSettings {
    SseSettings {
        retry_ms: core.sse_retry_ms,
        heartbeat: core.sse_heartbeat,
        lifetime: core.sse_lifetime,
        max_batch: 1024,
        write_interval: core.stream_write_interval,
    }
}

fn ws_settings(core: &CoreSettings) -> WsSettings {
    WsSettings {
        max_message_bytes: core.ws_max_message,
        read_buffer_bytes: core.ws_read_buffer,
        ping_interval: core.ws_ping_interval,
        write_interval: core.stream_write_interval,
    }
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
