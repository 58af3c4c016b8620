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
//! * `ticket`: ticket writes (create, edit, the one `save`), each inside
//!   one writer change; `workflow`: status, assignee, escalation, merge;
//!   `watchers`: adding and removing watchers;
//! * `comments`: comments and their `@mentions`; `approvals`: approval
//!   requests and decisions; [`sla`]: SLA policies and the durable
//!   `tickets.sla` timers that raise `slaWarning`/`slaBreach`;
//! * `index`: the ticket-list index rows `save` keeps in step; `query`:
//!   ticket lists read from it, a bounded page at a time;
//! * `queues`: queues; `settings`: the tenant's settings;
//! * [`stream`]: the notification and ticket-list SSE streams;
//! * [`inbox`]: a user's inbox (counts, pages, marking read) and
//!   preferences;
//! * `api`: the REST frame; `ticket_api`: its ticket handlers;
//!   `queue_api`: queue and settings handlers; `work_api`: the comment,
//!   approval and SLA policy handlers; `inbox_api`: the inbox and
//!   preference handlers.
//!
//! Routes (all under `/api/v2/ticketing`): `ticket`, `ticket/list`,
//! `ticket/{ticketId}` (GET, PATCH), `ticket/{ticketId}/status`,
//! `…/assignee`, `…/watchers`, `…/watchers/{userId}`, `…/escalate`,
//! `…/merge`, `…/comments`, `…/approvals`, `…/approvals/{approvalId}`;
//! `queue`, `queue/{queueId}`; `settings`; `sla/policy`;
//! `ticket/sse/notifications`, `ticket/sse/list/updates`,
//! `ticket/notification/count|list|read`, `user/preference`.
//!
//! Invariants: every state change, its notifications and its list updates
//! are one writer change; a user's events go to their own topics in the
//! module's namespace (`~tickets/n<userKey>`, `~tickets/l<userKey>`),
//! unreachable from the topics API; webhooks get notification events as the
//! served notification object.

mod api;
mod approvals;
mod comments;
pub mod events;
pub mod inbox;
mod inbox_api;
mod index;
pub mod layout;
pub mod lists;
pub mod model;
pub mod notify;
mod query;
mod queue_api;
mod queues;
pub mod recipients;
pub mod service;
mod settings;
pub mod sla;
pub mod stream;
mod ticket;
mod ticket_api;
mod watchers;
mod work_api;
mod workflow;

use crate::auth::limits::StreamLimits;
use crate::core::log::LogEvent;
use crate::core::log::encoding::DATA_JSON;
use crate::core::log::namespace::Namespace;
use crate::http::router::Router;
use crate::modules::platform::{Background, Module, ModuleContext};
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
        queue_api::routes(router, &self);
        work_api::routes(router, &self);
    }

    /// Registers the SLA timers' handler ([`sla`]).
    fn start(self: Arc<Self>, _background: &Background) {
        let limits = self.limits;
        let registered = self
            .core
            .writer
            .timers()
            .register(sla::SLA_TIMER, move |change, timer| {
                sla::on_timer(change, timer, limits)
            });
        if let Err(err) = registered {
            tracing::error!(error = %err, "the tickets SLA timer could not be registered");
        }
    }
}
