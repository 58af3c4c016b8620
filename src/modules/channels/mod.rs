//! Channels (spec 003): channel posts and channel discussions for
//! unmodified `socket.io-client` apps, with an access policy, sync by event
//! id, REST as the source of truth and the push hand-off of broadcast posts.
//!
//! * [`model`]: records and limits; [`layout`]: the module's key space;
//! * [`access`]: the access policy (pure functions);
//! * [`events`]: rooms, event types, payloads and the client envelope;
//! * [`service`]: who acts and records as a change or the store sees them;
//! * `settings`, `posts`, `messages`, `people`: the writes, each inside one
//!   writer change with its events; `push`: broadcast recipients listed by a
//!   durable timer;
//! * [`query`]: the read side and sync;
//! * `api`: the REST frame; `channel_api` and `content_api` its handlers;
//! * [`socket`]: `/socket.io/`, the Socket.IO namespace `/` (joins, leaves,
//!   syncs and the room events) on the Socket.IO transport.
//!
//! Routes (all under `/api/v1/communication`): `channels[/{channelId}]`,
//! `…/discussion`, `…/members[/{userId}]`, `…/posts[/{postId}[/pin]]`,
//! `discussions/{discussionId}/messages[/{messageId}[/restore]]`,
//! `discussions/{discussionId}/bans/{userId}`,
//! `users/{userId}/grants|entitlements/{key}|features/{key}`.
//!
//! Invariants: every state change and its events are one writer change; a
//! room's events go to its own topic in the module's namespace
//! (`~channels/c<id>`, `~channels/d<id>`), unreachable from the topics API;
//! webhooks get each event's envelope.

pub mod access;
mod api;
mod channel_api;
mod content_api;
pub mod events;
pub mod layout;
mod messages;
pub mod model;
mod people;
mod posts;
mod push;
pub mod query;
pub mod service;
mod settings;
pub mod socket;

use crate::core::log::LogEvent;
use crate::core::log::namespace::Namespace;
use crate::http::router::Router;
use crate::modules::platform::{Background, Module, ModuleContext};
use crate::transport::webhook::BodyOf;
use bytes::Bytes;
pub use model::ChannelsLimits;
use std::sync::Arc;

/// Everything the channels module uses.
pub struct ChannelsModule {
    /// The core's shared parts.
    pub core: ModuleContext,
    /// Module limits.
    pub limits: ChannelsLimits,
}

impl ChannelsModule {
    /// The channels module on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            core: context.clone(),
            limits: context.settings.channels,
        }
    }
}

/// A webhook's body: the event's client envelope.
fn webhook_envelope(event: &LogEvent) -> Bytes {
    event.encoded(&events::ENVELOPE).into_owned()
}

impl Module for ChannelsModule {
    fn name(&self) -> &'static str {
        events::NAME
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(events::NAMESPACE)
    }

    fn key_prefix(&self) -> Option<Vec<u8>> {
        Some(layout::prefix())
    }

    /// Webhooks receive the envelope clients get.
    fn webhook_body(&self) -> BodyOf {
        webhook_envelope
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        channel_api::routes(router, &self);
        content_api::routes(router, &self);
        socket::routes(router, &self);
    }

    /// Registers the push hand-off timer ([`push`]).
    fn start(self: Arc<Self>, _background: &Background) {
        let grace = self.limits.entitlement_grace.as_millis() as u64;
        let registered = self
            .core
            .writer
            .timers()
            .register(push::PUSH_TIMER, move |change, timer| {
                push::on_timer(change, timer, grace)
            });
        if let Err(err) = registered {
            tracing::error!(error = %err, "the channels push timer could not be registered");
        }
    }
}
