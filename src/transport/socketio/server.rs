//! [`SocketIoServer`]: one Socket.IO endpoint (its Engine.IO sessions and
//! its namespaces). A module builds one, adds its namespaces, and routes
//! `GET` and `POST` of its path (with a trailing `/`, as clients send it) to
//! [`SocketIoServer::handle`].
//!
//! Invariant: the namespace table is fixed once the server is shared
//! (`handle` takes `&Arc<Self>`); every session reads the same table.

use super::engine::{Application, EngineServer, Handshake};
use super::erased::DynNamespace;
use super::namespace::{Follows, Namespace};
use super::session::{SioSession, Table};
use super::settings::SioSettings;
use crate::core::hub::Hub;
use crate::core::metrics::Metrics;
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::transport::ws::WsRuntime;
use std::sync::Arc;
use std::time::Duration;

/// The Socket.IO application of an endpoint.
struct Namespaces {
    table: Arc<Table>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    connect_timeout: Duration,
}

impl Application for Namespaces {
    type Session = SioSession;

    fn open(&self, handshake: Arc<Handshake>) -> SioSession {
        let follows = Follows::new(self.hub.clone());
        let metrics = self.metrics.clone();
        SioSession::new(
            self.table.clone(),
            handshake,
            follows,
            metrics,
            self.connect_timeout,
        )
    }
}

/// A Socket.IO endpoint: settings, sessions, namespaces.
pub struct SocketIoServer {
    engine: EngineServer<Namespaces>,
}

impl SocketIoServer {
    /// An endpoint without namespaces; `runtime` gives the hub (for
    /// subscriptions), the lifecycle (shutdown) and metrics.
    pub fn new(settings: SioSettings, runtime: WsRuntime) -> Self {
        let namespaces = Namespaces {
            table: Arc::new(Table::new()),
            hub: runtime.hub,
            metrics: runtime.metrics.clone(),
            connect_timeout: settings.connect_timeout,
        };
        Self {
            engine: EngineServer::new(settings, runtime.lifecycle, runtime.metrics, namespaces),
        }
    }

    /// Serves `namespace` under `name` (`/` the main one; a name without a
    /// leading `/` gets one), replacing one of that name.
    pub fn namespace<N: Namespace>(mut self, name: &str, namespace: Arc<N>) -> Self {
        let name = if name.starts_with('/') {
            name.to_string()
        } else {
            format!("/{name}")
        };
        let namespace: Arc<dyn DynNamespace> = namespace;
        Arc::make_mut(&mut self.engine.app_mut().table).insert(name, namespace);
        self
    }

    /// Answers one request of the endpoint.
    pub async fn handle(self: &Arc<Self>, request: Request) -> Result<Response, ApiError> {
        self.engine.handle(request).await
    }
}
