//! Discussions (spec 000): article discussions with comments, replies,
//! moderation, pins, reactions, a lifecycle (open, locked, archived), reply
//! notifications, stream tickets and the SSE stream.
//!
//! * [`model`]: records and their state rules; [`layout`]: the module's key space;
//! * [`actor`]: who acts (reader or moderator) and the reader's internal id;
//! * [`service`]: write operations, each one atomic change with its events;
//! * [`events`]: event types and payloads; [`query`]: the read side;
//! * `api` and `stream`: the HTTP handlers;
//! * `backfill`: the one-time backfill of the pending index for comments
//!   stored by builds before it (a background task on start).
//!
//! Invariants: every state change and the events describing it commit in one
//! writer change (nothing visible before durable, never half applied); each
//! discussion's events go to its own topic, in commit order, and a stream
//! resumes from `Last-Event-ID` without gap or duplicate; readers never see
//! the body of a comment that is not published; a tenant's pending comments
//! are listed to moderators oldest first, across discussions, from an
//! index row kept in the same change as the comment's status
//! (`GET /api/v1/discussions/pending-comments`), backfilled once for
//! comments stored before the index existed.

pub mod actor;
mod api;
mod backfill;
pub mod events;
pub mod layout;
pub mod model;
pub mod query;
pub mod service;
mod stream;

use crate::core::log::namespace::Namespace;
use crate::error::ApiError;
use crate::http::Request;
use crate::http::router::Router;
use crate::modules::platform::{Background, Module, ModuleContext};
use crate::transport::webhook::{BodyOf, event_data};
use actor::Actor;
use http::Method;
use service::{DiscussionLimits, LifecycleAction, Moderate};
use std::sync::Arc;

/// Everything the discussions module uses.
pub struct DiscussionsApi {
    /// The core's shared parts (writer, hub, auth, lifecycle, metrics,
    /// idempotency, stream settings).
    pub core: ModuleContext,
    /// Module limits.
    pub limits: DiscussionLimits,
}

impl DiscussionsApi {
    /// The discussions module on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            core: context.clone(),
            limits: context.settings.discussions,
        }
    }

    /// The request's actor; `write` for changes.
    fn actor(&self, request: &Request, write: bool) -> Result<Actor, ApiError> {
        let principal = self.core.auth.authenticate(request)?;
        Actor::of(&principal, request, write)
    }

    /// Runs a blocking read of committed state.
    async fn read<T, F>(&self, operation: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::core::store::Store) -> Result<T, ApiError> + Send + 'static,
    {
        self.core
            .read("reading discussions failed", operation)
            .await
    }
}

impl Module for DiscussionsApi {
    fn name(&self) -> &'static str {
        "discussions"
    }

    fn namespace(&self) -> Option<Namespace> {
        Some(events::NAMESPACE)
    }

    fn key_prefix(&self) -> Option<Vec<u8>> {
        Some(layout::prefix())
    }

    /// Webhooks receive the payload the spec shows (the event's `data`).
    fn webhook_body(&self) -> BodyOf {
        event_data
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        routes(router, self);
    }

    /// Backfills the pending-comment index once (see `backfill`).
    fn start(self: Arc<Self>, background: &Background) {
        background.spawn(backfill::run(self));
    }
}

fn routes(router: &mut Router, api: Arc<DiscussionsApi>) {
    router.route_with(Method::POST, "/api/v1/discussions", &api, api::create);
    router.route_with(
        Method::GET,
        "/api/v1/discussions/{discussionId}",
        &api,
        api::get,
    );
    router.route_with(
        Method::GET,
        "/api/v1/discussions/by-external/{externalId}",
        &api,
        api::get_by_external,
    );
    router.route_with(
        Method::GET,
        "/api/v1/discussions/pending-comments",
        &api,
        api::pending_comments,
    );
    action_routes(router, &api, &LIFECYCLE, api::lifecycle);
    router.route_with(
        Method::GET,
        "/api/v1/discussions/{discussionId}/comments",
        &api,
        api::list_comments,
    );
    router.route_with(
        Method::POST,
        "/api/v1/discussions/{discussionId}/comments",
        &api,
        api::post_comment,
    );
    const COMMENT: &str = "/api/v1/discussions/{discussionId}/comments/{commentId}";
    router.route_with(Method::GET, COMMENT, &api, api::get_comment);
    router.route_with(Method::PATCH, COMMENT, &api, api::edit_comment);
    router.route_with(Method::DELETE, COMMENT, &api, api::delete_comment);
    router.route_with(
        Method::POST,
        "/api/v1/discussions/{discussionId}/comments/{commentId}/reactions",
        &api,
        api::toggle_reaction,
    );
    action_routes(router, &api, &MODERATION, api::moderate);
    router.route_with(
        Method::POST,
        "/api/v1/stream/ticket-by-external",
        &api,
        stream::ticket_by_external,
    );
    router.route_with(Method::POST, "/api/v1/stream/ticket", &api, stream::ticket);
    router.route_with(
        Method::GET,
        "/api/v1/stream/{discussionId}",
        &api,
        stream::stream,
    );
}

/// Registers `POST path` for each `(path, action)`, each calling `handler` with its action.
fn action_routes<A, F, Fut>(
    router: &mut Router,
    api: &Arc<DiscussionsApi>,
    actions: &[(&'static str, A)],
    handler: F,
) where
    A: Copy + Send + Sync + 'static,
    F: Fn(Arc<DiscussionsApi>, Request, A) -> Fut + Copy + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<crate::http::Response, ApiError>> + Send + 'static,
{
    for &(path, action) in actions {
        router.route_with(Method::POST, path, api, move |api, request| {
            handler(api, request, action)
        });
    }
}

const LIFECYCLE: [(&str, LifecycleAction); 3] = [
    (
        "/api/v1/discussions/{discussionId}/lock",
        LifecycleAction::Lock,
    ),
    (
        "/api/v1/discussions/{discussionId}/unlock",
        LifecycleAction::Unlock,
    ),
    (
        "/api/v1/discussions/{discussionId}/archive",
        LifecycleAction::Archive,
    ),
];

const MODERATION: [(&str, Moderate); 4] = [
    (
        "/api/v1/discussions/{discussionId}/comments/{commentId}/approve",
        Moderate::Approve,
    ),
    (
        "/api/v1/discussions/{discussionId}/comments/{commentId}/reject",
        Moderate::Reject,
    ),
    (
        "/api/v1/discussions/{discussionId}/comments/{commentId}/pin",
        Moderate::Pin,
    ),
    (
        "/api/v1/discussions/{discussionId}/comments/{commentId}/unpin",
        Moderate::Unpin,
    ),
];
