//! Live events-streams (spec 001): viewers poll a stream's 250 ms intervals
//! (`GET /api/v1/events-streams/{streamId}?interval=T`) and get what
//! happened in each: the view count, chats, hearts, discounts, quizzes,
//! their results and winners. Producers (API keys) create, update and end
//! streams and run quizzes; viewers (JWTs) post chats, send hearts and
//! answer quizzes.
//!
//! * [`model`]: records and the interval body; [`layout`]: the key space;
//! * [`state`]: what is kept in memory per stream;
//! * [`items`]: what waits for an interval and which interval it gets;
//! * [`interval`]: closing intervals (a writer change per stream and tick);
//! * [`quiz`]: opening, answering and closing quizzes (a durable timer);
//! * `poll`: the read path; `api`: the write side and the snapshot;
//!   `recovery`: loading streams at start; `prune`: removing expired
//!   intervals and closed quizzes' answer rows; `follow`: on a cluster's
//!   edge, memory following the replica (there is no after-commit hook);
//! * [`viewers`]: viewer counts summed over a cluster's nodes.
//!
//! Invariants: a closed interval's bytes are built once, stored, and served
//! unchanged forever (from memory or the store), also across restarts, or
//! answered 410 once expired (never again as something else); a chat is
//! acknowledged only once durable and is in exactly the interval its answer
//! named; counters (viewers, hearts, discounts, answers) are counted in
//! memory first and stored once per interval, so a crash loses at most the
//! open interval's; everything else in memory (records, quizzes, closed
//! intervals, marks) follows the store: it changes in an after-commit hook
//! of the change that stored it (a quiz's close also stops answers at once,
//! before its change commits).

mod api;
mod follow;
pub mod interval;
pub mod items;
pub mod layout;
pub mod model;
mod poll;
mod prune;
pub mod quiz;
mod recovery;
pub mod state;
pub mod viewers;

use crate::core::log::namespace::Namespace;
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::modules::platform::{Background, Module, ModuleContext};
use crate::transport::webhook::{BodyOf, event_data};
use bytes::Bytes;
use http::Method;
use model::{QuizRecord, StreamRecord};
use serde::Serialize;
use serde::de::DeserializeOwned;
use state::{LiveStream, StreamMemory, Streams};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The module's topic namespace: chats go to `~live/<streamId>`.
pub const NAMESPACE: Namespace = Namespace::Module(layout::MODULE);

/// Limits and timing of the live module (flags `--live-*`).
#[derive(Debug, Clone, Copy)]
pub struct LiveLimits {
    /// How far ahead of the server's clock a poll may ask and wait.
    pub max_ahead: Duration,
    /// Viewers count when they polled within this window.
    pub viewer_window: Duration,
    /// Most distinct viewers tracked per stream.
    pub max_viewers: usize,
    /// Closed intervals kept in memory per stream.
    pub interval_cache: usize,
    /// Longest retention a stream may ask for.
    pub max_retention: Duration,
    /// Most hearts in one request.
    pub max_hearts_per_request: u64,
    /// Most chats in one interval of one stream.
    pub max_chats_per_interval: u32,
    /// Most chats of one viewer in one interval of one stream.
    pub max_chats_per_viewer_interval: u32,
    /// Bytes of closed intervals kept in memory per stream.
    pub interval_cache_bytes: usize,
    /// Longest chat text, in characters.
    pub max_chat_chars: usize,
}

impl LiveLimits {
    fn memory(&self) -> StreamMemory {
        StreamMemory {
            ring_len: self.interval_cache,
            ring_bytes: self.interval_cache_bytes,
            max_viewers: self.max_viewers,
        }
    }
}

/// The live module.
pub struct LiveModule {
    /// The core's shared parts.
    pub core: ModuleContext,
    /// Its limits.
    pub limits: LiveLimits,
    /// Every stream in memory.
    pub streams: Streams,
    /// When the module started (unix ms): earlier intervals were not counted.
    pub started_ms: u64,
    /// Store reads of polls and answers in flight (the blocking pool is
    /// shared by the whole server): at most [`STORE_READERS`].
    store_reads: tokio::sync::Semaphore,
    /// Held while streams are loaded from the store (at start, and on an
    /// edge for each replicated record), so loads never interleave.
    following: std::sync::Mutex<()>,
}

/// Most store reads the live routes run at once; further ones wait.
pub const STORE_READERS: usize = 16;

impl LiveModule {
    /// The module on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            core: context.clone(),
            limits: context.settings.live,
            streams: Streams::default(),
            started_ms: crate::core::clock::unix_millis(),
            store_reads: tokio::sync::Semaphore::new(STORE_READERS),
            following: std::sync::Mutex::new(()),
        }
    }

    /// Excludes other loads of streams from the store while held.
    fn following(&self) -> std::sync::MutexGuard<'_, ()> {
        self.following.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A stream in memory built from its record.
    fn in_memory(
        &self,
        tenant: Uuid,
        record: StreamRecord,
        closed_through: u64,
    ) -> Arc<LiveStream> {
        self.streams.insert(LiveStream::new(
            tenant,
            record,
            closed_through,
            &self.limits.memory(),
        ))
    }

    /// Closes `quiz` of `stream` in `change` and updates the stream record;
    /// the memory follows once durable. `None` when it was not open.
    fn close_quiz_in(
        &self,
        change: &mut Change<'_>,
        stream: &Arc<LiveStream>,
        quiz: &Uuid,
    ) -> Result<Option<QuizRecord>, ApiError> {
        let Some(mut record) = read_record(change, &stream.tenant, &stream.id)? else {
            return Ok(None);
        };
        let Some(closed) = quiz::close(change, stream, &mut record, quiz)? else {
            return Ok(None);
        };
        write_record(change, &stream.tenant, &record)?;
        let stream = stream.clone();
        change.after_commit(move || stream.set_record(record));
        Ok(Some(closed))
    }
}

/// Decodes a stored JSON record (`what` names it in the error).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|err| ApiError::internal(format!("a stored {what} is unreadable: {err}")))
}

/// Reads a JSON record as `change` sees it.
pub fn read_json<T: DeserializeOwned>(
    change: &Change<'_>,
    key: &[u8],
    what: &str,
) -> Result<Option<T>, ApiError> {
    change
        .get(key)?
        .map(|bytes| decode_json(&bytes, what))
        .transpose()
}

/// Writes a JSON record in `change`.
pub fn write_json<T: Serialize>(
    change: &mut Change<'_>,
    key: Vec<u8>,
    value: &T,
    what: &str,
) -> Result<(), ApiError> {
    let json = serde_json::to_vec(value)
        .map_err(|err| ApiError::internal(format!("encoding a {what}: {err}")))?;
    change.put(key, json);
    Ok(())
}

/// Reads a stream record as `change` sees it.
pub fn read_record(
    change: &Change<'_>,
    tenant: &Uuid,
    stream: &Uuid,
) -> Result<Option<StreamRecord>, ApiError> {
    read_json(change, &layout::stream(tenant, stream), "stream")
}

/// Writes a stream record.
pub fn write_record(
    change: &mut Change<'_>,
    tenant: &Uuid,
    record: &StreamRecord,
) -> Result<(), ApiError> {
    write_json(change, layout::stream(tenant, &record.id), record, "stream")
}

impl LiveModule {
    /// A committed row, read on the blocking pool (at most
    /// [`STORE_READERS`] at once).
    async fn stored(&self, key: Vec<u8>) -> Result<Option<Bytes>, ApiError> {
        let _permit = self
            .store_reads
            .acquire()
            .await
            .map_err(|_| ApiError::unavailable("the server is stopping"))?;
        let value = self
            .core
            .hub
            .store()
            .run(move |store| store.get_blocking(&key))
            .await
            .map_err(|err| err.into_api("reading the store failed"))?;
        Ok(value.map(|bytes| Bytes::copy_from_slice(&bytes)))
    }
}

impl Module for LiveModule {
    fn name(&self) -> &'static str {
        layout::MODULE
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(NAMESPACE)
    }

    fn key_prefix(&self) -> Option<Vec<u8>> {
        Some(layout::prefix())
    }

    /// Webhooks receive the chat (the event's `data`).
    fn webhook_body(&self) -> BodyOf {
        event_data
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        const STREAMS: &str = "/api/v1/events-streams";
        const STREAM: &str = "/api/v1/events-streams/{streamId}";
        router.route_with(Method::POST, STREAMS, &self, api::create);
        router.route_with(Method::GET, STREAM, &self, poll::poll);
        router.route(Method::OPTIONS, STREAM, |_| async { Ok(poll::options()) });
        router.route_with(Method::PATCH, STREAM, &self, api::update);
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/end",
            &self,
            api::end,
        );
        router.route_with(
            Method::GET,
            "/api/v1/events-streams/{streamId}/snapshot",
            &self,
            api::snapshot,
        );
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/chats",
            &self,
            api::chat,
        );
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/hearts",
            &self,
            api::hearts,
        );
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/discounts",
            &self,
            api::discounts,
        );
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/quizzes",
            &self,
            api::open_quiz,
        );
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/quizzes/{quizId}/close",
            &self,
            api::close_quiz,
        );
        router.route_with(
            Method::POST,
            "/api/v1/events-streams/{streamId}/quizzes/{quizId}/answers",
            &self,
            api::answer,
        );
    }

    /// On an edge: memory follows the replica (see `follow`).
    fn replicated(&self, ops: &[&crate::core::store::Op]) {
        follow::replicated(self, ops);
    }

    fn start(self: Arc<Self>, background: &Background) {
        let module = self.clone();
        let registered = self
            .core
            .writer
            .timers()
            .register(quiz::CLOSE_TIMER, move |change, timer| {
                quiz::on_timer(&module, change, timer)
            });
        if let Err(err) = registered {
            tracing::error!(error = %err, "the live module's quiz timer could not be registered");
        }
        self.core.shared.contribute(self.clone());
        if let Err(err) = recovery::load(&self) {
            tracing::error!(error = %err, "live streams could not be loaded; they answer 404 until a restart");
        }
        background.spawn(prune::run(self.clone()));
        background.spawn(interval::run(self));
    }
}
