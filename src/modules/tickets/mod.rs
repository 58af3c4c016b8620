//! Tickets (spec 004): a small help-desk core (tickets, queues, comments
//! with mentions, approvals, escalation, merge, SLA policies with durable
//! timers) whose changes raise per-user notifications, served by the
//! notification SSE stream, the ticket-list update stream and the
//! notification REST API.
//!
//! * [`model`]: records, the status workflow, notification types and
//!   limits; [`layout`]: the module's key space;
//! * [`events`]: per-user topics and the notification's wire JSON;
//! * [`service`]: who acts (role) and records as a change or the store sees them;
//! * [`notify`]: raising notifications into inboxes and topics;
//! * [`lists`]: ticket-list updates; [`recipients`]: who each type notifies;
//! * `tickets`: ticket writes, each inside one writer change;
//! * `api`: the REST frame; `ticket_api`: its ticket handlers;
//! * [`stream`]: the notification and ticket-list SSE streams;
//! * [`inbox`]: a user's inbox (counts, pages, marking read) and
//!   preferences; `inbox_api`: their REST handlers.
//!
//! Routes (all under `/api/v2/ticketing`): `ticket`, `ticket/{ticketId}`,
//! `ticket/sse/notifications`, `ticket/sse/list/updates`,
//! `ticket/notification/count|list|read`, `user/preference`.
//!
//! Invariants: every state change, its notifications and its list updates
//! are one writer change; a user's events go to their own topics in the
//! module's namespace (`~tickets/n<userKey>`, `~tickets/l<userKey>`),
//! unreachable from the topics API; webhooks get notification events as the
//! served notification object.

mod api;
pub mod events;
pub mod inbox;
mod inbox_api;
pub mod layout;
pub mod lists;
pub mod model;
pub mod notify;
pub mod recipients;
pub mod service;
pub mod stream;
mod ticket_api;
mod tickets;

use crate::auth::limits::StreamLimits;
use crate::core::log::LogEvent;
use crate::core::log::encoding::DATA_JSON;
use crate::core::log::namespace::Namespace;
use crate::http::router::Router;
use crate::modules::platform::{Module, ModuleContext};
use crate::transport::webhook::BodyOf;
use bytes::Bytes;
pub use model::TicketsLimits;
use std::sync::Arc;

/// Everything the tickets module uses.
pub struct TicketsModule {
    /// The core's shared parts.
    pub core: ModuleContext,
    /// Module limits.
    pub limits: TicketsLimits,
    /// Open notification and list-update streams per user
    /// (`--tickets-max-streams-per-user`).
    pub streams: StreamLimits,
}

impl TicketsModule {
    /// The tickets module on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            core: context.clone(),
            limits: context.settings.tickets,
            streams: StreamLimits::new(context.settings.tickets.max_streams_per_user),
        }
    }
}

/// A webhook's body: the notification object, or a list update's data.
fn webhook_body(event: &LogEvent) -> Bytes {
    if event.event.event_type == events::NOTIFICATION {
        event.encoded(&events::NOTIFICATION_JSON).into_owned()
    } else {
        event.encoded(&DATA_JSON).into_owned()
    }
}

impl Module for TicketsModule {
    fn name(&self) -> &'static str {
        events::NAME
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(events::NAMESPACE)
    }

    fn key_prefix(&self) -> Option<Vec<u8>> {
        Some(layout::prefix())
    }

    /// Webhooks receive what the streams carry.
    fn webhook_body(&self) -> BodyOf {
        webhook_body
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        ticket_api::routes(router, &self);
        stream::routes(router, &self);
        inbox_api::routes(router, &self);
    }
}
