//! Wires the store, metrics, routes and server together and runs them until a
//! signal stops the process.
//!
//! Shutdown order (first SIGTERM or SIGINT): readiness turns 503 → after
//! `--drain-delay` the listener closes and long-lived streams are told to end →
//! in-flight requests get up to `--shutdown-grace` → the store is flushed →
//! `run` returns. A second signal exits at once (exit code 1); nothing
//! acknowledged is lost by that, because acknowledged writes are already durable.

use crate::config::{ServeConfig, TlsSetting};
use crate::datadir::{self, DataDir};
use crate::error::StartupError;
use crate::http::router::Router;
use crate::http::server::{self, ServerContext};
use crate::http::service::HttpService;
use crate::http::tls::{self, ReloadableCertificate};
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::ops::{self, OpsState};
use crate::store::Store;
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};

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
    let metrics = Arc::new(Metrics::new());
    let lifecycle = Arc::new(Lifecycle::new());
    let router = build_router(&config, store.clone(), metrics.clone(), lifecycle.clone());
    let listener = TcpListener::bind(config.listen)
        .await
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

    stops.next().await;
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
    drain(server, config.shutdown_grace).await;
    store
        .flush()
        .await
        .map_err(|err| StartupError::Io(format!("final store flush: {err}")))?;
    tracing::info!("stopped cleanly");
    Ok(())
}

fn build_router(
    config: &ServeConfig,
    store: Store,
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
) -> Router {
    let mut router = Router::new();
    ops::routes(
        &mut router,
        OpsState {
            store,
            metrics,
            lifecycle: lifecycle.clone(),
        },
    );
    #[cfg(debug_assertions)]
    if config.test_routes {
        crate::test_routes::routes(&mut router, lifecycle);
    }
    #[cfg(not(debug_assertions))]
    let _ = (config, lifecycle);
    router
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
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
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
