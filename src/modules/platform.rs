//! The module platform: how a surface plugs into the core without editing it.
//!
//! A module implements [`Module`]: it declares its routes, the topic
//! namespace its events go to, the key prefix of its own records, the body
//! its events carry to webhooks, and its background work. It is built from one
//! [`ModuleContext`] (the shared parts of the core). `app.rs` lists the
//! modules in one place; [`Platform::assemble`] checks the declarations and
//! wires them.
//!
//! Invariants (checked at startup; a violation stops the server with an
//! error naming both modules): module names are unique; a namespace belongs
//! to one module (the public one included); key prefixes never overlap each
//! other or the core's, auth's, webhooks' or idempotency's
//! ([`KeyPrefixes`]). Every event a module appends reaches the tenant's
//! webhooks through the writer's observer, with the module's declared body,
//! in the same change; a module writes no webhook code. Background work ends
//! when the lifecycle stops and is waited for on shutdown.

use crate::auth::origins::OriginLimits;
use crate::auth::{Authenticator, Principal};
use crate::core::hub::Hub;
use crate::core::hub::HubLimits;
use crate::core::lifecycle::Lifecycle;
use crate::core::log::namespace::Namespace;
use crate::core::log::retention;
use crate::core::metrics::Metrics;
use crate::core::store::prefixes::KeyPrefixes;
use crate::core::store::{Op, Store};
use crate::core::writer::Writer;
use crate::core::writer::WriterLimits;
use crate::error::{ApiError, StartupError};
use crate::http::router::Router;
use crate::modules::channels::ChannelsLimits;
use crate::modules::chat::ChatLimits;
use crate::modules::discussions::service::DiscussionLimits;
use crate::modules::idempotency::Idempotency;
use crate::modules::live::LiveLimits;
use crate::modules::tickets::TicketsLimits;
use crate::modules::topics::TopicsLimits;
use crate::transport::socketio::SioSettings;
use crate::transport::sse::SseSettings;
use crate::transport::webhook::{BodyOf, WebhookBodies, Webhooks, whole_event};
use crate::transport::ws::WsSettings;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

/// A surface built on the core (see the module doc).
pub trait Module: Send + Sync + 'static {
    /// Unique short name, for logs and startup errors.
    fn name(&self) -> &'static str;

    /// The topic namespace its events go to; `None` when it appends none.
    /// [`Namespace::Module`] topics (`~<name>/…`) are unreachable from the
    /// generic topics API.
    fn namespace(&self) -> Option<Namespace> {
        None
    }

    /// The prefix of every key of its own records (by convention
    /// `store::layout::module(name)`); `None` when it stores none.
    fn key_prefix(&self) -> Option<Vec<u8>> {
        None
    }

    /// The POST body its events carry to webhooks (default: the whole event).
    fn webhook_body(&self) -> BodyOf {
        whole_event
    }

    /// Registers its HTTP routes.
    fn routes(self: Arc<Self>, router: &mut Router);

    /// Starts its background work on `background` (default: none).
    fn start(self: Arc<Self>, background: &Background) {
        let _ = background;
    }

    /// On a cluster's edge: the replica applied a batch record whose `ops`
    /// (its puts and deletes under [`Module::key_prefix`], in record order)
    /// are now in the store. A module that keeps in memory what its
    /// after-commit hooks maintain on the writer refreshes it here, so its
    /// memory follows the replica as it follows the store on the writer.
    /// Called on the follower's blocking thread, one record at a time, before
    /// the record's events are published and its number reported applied
    /// (default: nothing kept in memory).
    fn replicated(&self, ops: &[&Op]) {
        let _ = ops;
    }
}

/// Settings of the event core, its streams and the modules, each part a
/// type owned by the layer that uses it; `config` fills it from flags.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// What the hub keeps in memory and reads at once.
    pub hub: HubLimits,
    /// The commit pipeline's queue, groups and recovery.
    pub writer: WriterLimits,
    /// Limits of the topics API.
    pub topics: TopicsLimits,
    /// Retention policy.
    pub retention: retention::Policy,
    /// Pruning interval.
    pub prune_interval: Duration,
    /// How long idempotency keys are remembered.
    pub idempotency_window: Duration,
    /// SSE timing and write pacing.
    pub sse: SseSettings,
    /// WebSocket limits, timing and write pacing.
    pub ws: WsSettings,
    /// Socket.IO limits and timing.
    pub sio: SioSettings,
    /// Limits of the discussions module.
    pub discussions: DiscussionLimits,
    /// Limits of the chat module.
    pub chat: ChatLimits,
    /// Limits of the channels module.
    pub channels: ChannelsLimits,
    /// Limits and timing of the tickets module.
    pub tickets: TicketsLimits,
    /// Limits of tenants' allowed browser origins.
    pub origin_limits: OriginLimits,
    /// Limits and timing of the live events-streams.
    pub live: LiveLimits,
    /// Online backups (`GET /admin/v1/backup`).
    pub backup: crate::ops::backup::BackupSettings,
}

/// The shared parts of the core a module is built from.
#[derive(Clone)]
pub struct ModuleContext {
    /// The commit pipeline (every write).
    pub writer: Writer,
    /// Fan-out, history and the store for reads.
    pub hub: Arc<Hub>,
    /// Credentials, tenants, tickets, per-user limits.
    pub auth: Authenticator,
    /// Server phases (streams and background work end on stop).
    pub lifecycle: Arc<Lifecycle>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Idempotency keys of writes.
    pub idempotency: Idempotency,
    /// Tenants' webhook endpoints (for the admin API; modules do not stage).
    pub webhooks: Arc<Webhooks>,
    /// The core's settings (limits, stream timing).
    pub settings: Arc<CoreSettings>,
    /// On a cluster's edge: the way to the writer for writes made outside
    /// a forwarded request (a WebSocket publish); `None` elsewhere.
    pub writer_link: Option<Arc<dyn WriterLink>>,
    /// Per-node counters summed over a cluster's nodes (on a single node,
    /// the other nodes count 0).
    pub shared: Arc<crate::modules::shared_counts::SharedCounts>,
}

/// A write sent to the writer on behalf of a principal: the writer's
/// success answer with the JSON of its `data` as the body, or its refusal
/// as an error (status, code, message and `Retry-After` kept).
pub type LinkAnswer<'a> =
    Pin<Box<dyn Future<Output = Result<http::Response<bytes::Bytes>, ApiError>> + Send + 'a>>;

/// How an edge's module sends a write it received outside a forwarded HTTP
/// request to the writer: as the equivalent HTTP request of the same
/// principal, answered once the edge's replica holds the result (so the
/// module answers as a single node would). Modules see only this trait.
pub trait WriterLink: Send + Sync {
    /// Sends `method path` with the JSON `body` and `headers` as `principal`.
    fn send<'a>(
        &'a self,
        principal: &'a Principal,
        method: http::Method,
        path: String,
        headers: http::HeaderMap,
        body: bytes::Bytes,
    ) -> LinkAnswer<'a>;

    /// Sends `POST path` with the JSON `body` as the edge itself (its
    /// `--writer-key`, the instance admin) for `tenant`: for a module's
    /// internal endpoint that only the instance admin may call, doing on
    /// the writer what a read on the edge needs written (a chat user's id
    /// created on first use). Never for a client's own write: those go as
    /// their principal ([`WriterLink::send`]).
    fn post_as_node(&self, tenant: uuid::Uuid, path: String, body: bytes::Bytes) -> LinkAnswer<'_>;
}

impl ModuleContext {
    /// SSE timing and write pacing.
    pub fn sse(&self) -> SseSettings {
        self.settings.sse
    }

    /// WebSocket limits, timing and write pacing.
    pub fn ws(&self) -> WsSettings {
        self.settings.ws
    }

    /// Socket.IO limits and timing.
    pub fn sio(&self) -> SioSettings {
        self.settings.sio
    }

    /// Runs a blocking read of committed state off the async threads; a
    /// store failure becomes a 500 saying `failed` (e.g. "reading chat failed").
    pub async fn read<T, F>(&self, failed: &'static str, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, ApiError> + Send + 'static,
    {
        self.hub
            .store()
            .run(move |store| Ok(operation(store)))
            .await
            .map_err(|err| err.into_api(failed))?
    }
}

/// Background work of the modules and the core: tasks tracked from their
/// start, each ending by itself once the lifecycle stops (it watches
/// [`Lifecycle::stopping`]), waited for on shutdown within the grace.
pub struct Background {
    tasks: TaskTracker,
    runs: bool,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            tasks: TaskTracker::new(),
            runs: true,
        }
    }
}

impl Background {
    /// A background that starts nothing: the modules' on a cluster edge,
    /// where every module's background work (closing intervals, pruning,
    /// backfills) would write, and only the writer writes.
    pub fn none() -> Self {
        Self {
            tasks: TaskTracker::new(),
            runs: false,
        }
    }

    /// Runs `work`, which must return soon after `lifecycle.stopping()`
    /// resolves (e.g. finishing a commit it began, then returning); on
    /// [`Background::none`], drops it unstarted.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        if self.runs {
            self.tasks.spawn(work);
        }
    }

    /// Completes when every task ended (call after the lifecycle stopped).
    pub async fn finished(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Where an edge's replica hands each applied record's operations to the
/// modules owning their keys ([`Module::replicated`]). Built before the
/// modules (the replica starts first) and bound to them once assembled;
/// records applied before that are in the store the modules load at start.
#[derive(Default)]
pub struct ReplicaFeed {
    modules: std::sync::OnceLock<Vec<Owner>>,
}

/// A module and the key prefix of its records.
type Owner = (Vec<u8>, Arc<dyn Module>);

impl ReplicaFeed {
    /// Hands `ops` to every module owning some of them (their keys under its
    /// prefix), each module once with its own, in record order.
    pub fn applied(&self, ops: &[Op]) {
        let Some(modules) = self.modules.get() else {
            return;
        };
        for (prefix, module) in modules {
            let own: Vec<&Op> = ops
                .iter()
                .filter(|(key, _)| key.starts_with(prefix))
                .collect();
            if own.is_empty() {
                continue;
            }
            let handed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                module.replicated(&own);
            }));
            if handed.is_err() {
                tracing::error!(
                    module = module.name(),
                    "a module panicked following the replica; its memory may lag until a restart"
                );
            }
        }
    }

    /// Whether `key` belongs to a bound module.
    pub fn wants(&self, key: &[u8]) -> bool {
        self.modules
            .get()
            .is_some_and(|modules| modules.iter().any(|(prefix, _)| key.starts_with(prefix)))
    }
}

/// The application's modules, checked against each other.
pub struct Platform {
    modules: Vec<Arc<dyn Module>>,
}

impl Platform {
    /// Checks the modules' declarations: unique names, one module per
    /// namespace, valid namespace names, and key prefixes claimed in
    /// `prefixes` (refused when they overlap anyone's).
    pub fn assemble(
        modules: Vec<Arc<dyn Module>>,
        prefixes: &mut KeyPrefixes,
    ) -> Result<Self, StartupError> {
        let mut names = HashSet::new();
        let mut namespaces = Vec::<(Namespace, &'static str)>::new();
        for module in &modules {
            let name = module.name();
            if !names.insert(name) {
                return Err(refused(format!("two modules are named `{name}`")));
            }
            if let Some(namespace) = module.namespace() {
                namespace
                    .validate()
                    .map_err(|err| refused(format!("module `{name}`: {err}")))?;
                if let Some((_, owner)) = namespaces.iter().find(|(n, _)| *n == namespace) {
                    return Err(refused(format!(
                        "modules `{owner}` and `{name}` both declare the topic namespace {namespace:?}"
                    )));
                }
                namespaces.push((namespace, name));
            }
            if let Some(prefix) = module.key_prefix() {
                prefixes
                    .claim(&format!("module {name}"), &prefix)
                    .map_err(|clash| refused(clash.to_string()))?;
            }
        }
        Ok(Self { modules })
    }

    /// Registers every module's routes.
    pub fn routes(&self, router: &mut Router) {
        for module in &self.modules {
            module.clone().routes(router);
        }
    }

    /// The webhook body of each module's namespace.
    pub fn webhook_bodies(&self) -> WebhookBodies {
        let mut bodies = WebhookBodies::default();
        for module in &self.modules {
            if let Some(namespace) = module.namespace() {
                bodies.declare(namespace, module.webhook_body());
            }
        }
        bodies
    }

    /// Binds `feed` to the modules that store records (call before
    /// [`Platform::start`], whose loads then see every record the feed
    /// did not hand over). A second binding is ignored.
    pub fn feed(&self, feed: &ReplicaFeed) {
        let owners = self
            .modules
            .iter()
            .filter_map(|module| Some((module.key_prefix()?, module.clone())))
            .collect();
        let _ = feed.modules.set(owners);
    }

    /// Starts every module's background work.
    pub fn start(&self, background: &Background) {
        for module in &self.modules {
            module.clone().start(background);
        }
    }
}

fn refused(reason: String) -> StartupError {
    StartupError::Config(format!("module registration: {reason}"))
}

/// A module that only declares (no routes, no work), for tests of the checks.
#[cfg(test)]
pub(crate) struct Declared {
    pub name: &'static str,
    pub namespace: Option<Namespace>,
    pub prefix: Option<Vec<u8>>,
}

#[cfg(test)]
impl Module for Declared {
    fn name(&self) -> &'static str {
        self.name
    }
    fn namespace(&self) -> Option<Namespace> {
        self.namespace
    }
    fn key_prefix(&self) -> Option<Vec<u8>> {
        self.prefix.clone()
    }
    fn routes(self: Arc<Self>, _: &mut Router) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::store::layout;

    fn module(
        name: &'static str,
        namespace: Option<Namespace>,
        prefix: Option<&[u8]>,
    ) -> Arc<dyn Module> {
        Arc::new(Declared {
            name,
            namespace,
            prefix: prefix.map(<[u8]>::to_vec),
        })
    }

    fn assemble(modules: Vec<Arc<dyn Module>>) -> Result<(), String> {
        Platform::assemble(modules, &mut KeyPrefixes::with_core())
            .map(drop)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn distinct_declarations_assemble() {
        let chat = layout::module("chat");
        let chatter = layout::module("chatter");
        assert!(
            assemble(vec![
                module("topics", Some(Namespace::Public), None),
                module("chat", Some(Namespace::Module("chat")), Some(&chat)),
                module(
                    "chatter",
                    Some(Namespace::Module("chatter")),
                    Some(&chatter)
                ),
                module("admin", None, None),
            ])
            .is_ok()
        );
    }

    #[test]
    fn clashing_declarations_are_refused_naming_the_modules() {
        let twice = assemble(vec![module("a", None, None), module("a", None, None)]);
        assert!(twice.unwrap_err().contains("two modules are named `a`"));
        let shared = assemble(vec![
            module("one", Some(Namespace::Module("x")), None),
            module("two", Some(Namespace::Module("x")), None),
        ]);
        let err = shared.unwrap_err();
        assert!(err.contains("`one`") && err.contains("`two`"), "{err}");
        let public = assemble(vec![
            module("topics", Some(Namespace::Public), None),
            module("mirror", Some(Namespace::Public), None),
        ]);
        assert!(public.is_err());
        let overlapping = assemble(vec![
            module("one", None, Some(b"sone")),
            module("two", None, Some(b"sone\0x")),
        ]);
        let err = overlapping.unwrap_err();
        assert!(
            err.contains("module two") && err.contains("module one"),
            "{err}"
        );
        let core = assemble(vec![module("greedy", None, Some(b"e"))]);
        assert!(core.unwrap_err().contains("`events`"));
        let invalid = assemble(vec![module("bad", Some(Namespace::Module("a/b")), None)]);
        assert!(invalid.is_err());
    }

    #[tokio::test]
    async fn shutdown_waits_for_background_work_to_end_on_stop() {
        let lifecycle = Arc::new(Lifecycle::new());
        let background = Background::default();
        let (ended, mut has_ended) = tokio::sync::oneshot::channel();
        let watched = lifecycle.clone();
        background.spawn(async move {
            watched.stopping().await;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = ended.send(());
        });
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(100), background.finished());
        assert!(waiting.await.is_err(), "work runs until the stop");
        lifecycle.stop();
        background.finished().await;
        assert!(
            has_ended.try_recv().is_ok(),
            "finished only once the work ended"
        );
    }
}
