//! Chat (spec 002): rooms (public or private), members with roles,
//! messages with one level of threads, read receipts and unread counts, for
//! the users of a tenant's JWT realm (numeric ids per tenant) and its backend
//! (API key, user 0).
//!
//! * [`model`]: records, limits, roles; [`layout`]: the module's key space;
//! * [`directory`]: users' ids and membership history (what the stream's
//!   resume reads); [`events`]: the stored events and their order;
//! * [`service`]: who acts and the permission rules; `rooms`, `members`,
//!   `messages`: the writes, each inside one writer change; `purge`: a
//!   deleted room's messages removed in bounded steps by a durable timer;
//! * [`query`]: the read side;
//! * `api`: the REST frame (route table, callers, idempotent writes) and its
//!   handlers by concept: `room_api` (rooms), `member_api` (members, roles,
//!   `me`), `message_api` (messages, threads, read receipts);
//! * `feed`: one user's events of all their rooms in commit order,
//!   steered by membership events; `stream`: `GET /api/v1/events`, the
//!   WebSocket on the shared session runner.
//!
//! Routes (all under `/api/v1`): `rooms`, `rooms/public`, `rooms/{roomId}`,
//! `…/members[/{userId}]`, `…/join`, `…/leave`, `…/messages[/{messageId}[/thread]]`,
//! `…/read`, `…/receipts`, `me`.
//!
//! Invariants: every state change and its events are one writer change
//! (nothing visible before durable, never half applied); a room's events go
//! to `~chat/r<roomId>` and a user's membership events to `~chat/u<userId>`
//! (the module's namespace, unreachable from the topics API; webhooks get
//! the event's `data`); private rooms are invisible (404) to non-members.

mod api;
pub mod directory;
pub mod events;
mod feed;
pub mod layout;
mod member_api;
mod members;
mod message_api;
mod messages;
pub mod model;
mod purge;
pub mod query;
mod room_api;
mod rooms;
pub mod service;
mod stream;

use crate::core::log::namespace::Namespace;
use crate::http::router::Router;
use crate::modules::platform::{Background, Module, ModuleContext};
use crate::transport::webhook::{BodyOf, event_data};
pub use model::ChatLimits;
use std::sync::Arc;

/// Everything the chat module uses.
pub struct ChatModule {
    /// The core's shared parts (writer, hub, auth, lifecycle, metrics,
    /// idempotency, stream settings).
    pub core: ModuleContext,
    /// Module limits.
    pub limits: ChatLimits,
}

impl ChatModule {
    /// The chat module on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            core: context.clone(),
            limits: context.settings.chat,
        }
    }
}

impl Module for ChatModule {
    fn name(&self) -> &'static str {
        events::NAME
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(events::NAMESPACE)
    }

    fn key_prefix(&self) -> Option<Vec<u8>> {
        Some(layout::prefix())
    }

    /// Webhooks receive the payload the contract shows (the event's `data`).
    fn webhook_body(&self) -> BodyOf {
        event_data
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        api::routes(router, &self);
        stream::routes(&self, router);
    }

    /// Registers the purge of deleted rooms' messages ([`purge`]).
    fn start(self: Arc<Self>, _background: &Background) {
        let registered = self
            .core
            .writer
            .timers()
            .register(purge::PURGE_TIMER, purge::on_timer);
        if let Err(err) = registered {
            tracing::error!(error = %err, "the chat purge timer could not be registered");
        }
    }
}
