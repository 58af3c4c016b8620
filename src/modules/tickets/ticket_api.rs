//! REST handlers of tickets: create, get, edit, the workflow (status,
//! assignee, escalate, merge), watchers, and the ticket lists.
//!
//! Invariants: writes are [`super::ticket`]', [`super::workflow`]'s and
//! [`super::watchers`]' inside one change each, answering the ticket as
//! the change left it; reads show only tickets the caller may see (404
//! otherwise); lists read the index ([`super::query`]), bounded by `limit`.

use super::TicketsModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE};
use super::model::Ticket;
use super::query::{self, ListQuery};
use super::service::{self, Acting};
use super::ticket::{self, NewTicket};
use super::{watchers, workflow};
use crate::core::writer::Change;
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::rest::{id_param, id_query};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Adds the ticket routes.
pub(super) fn routes(router: &mut Router, module: &Arc<TicketsModule>) {
    router.route_with(Method::POST, "/api/v2/ticketing/ticket", module, create);
    router.route_with(Method::GET, "/api/v2/ticketing/ticket/list", module, list);
    router.route_with(
        Method::GET,
        "/api/v2/ticketing/ticket/{ticketId}",
        module,
        get,
    );
    router.route_with(
        Method::PATCH,
        "/api/v2/ticketing/ticket/{ticketId}",
        module,
        update,
    );
    router.route_with(
        Method::PUT,
        "/api/v2/ticketing/ticket/{ticketId}/status",
        module,
        status,
    );
    router.route_with(
        Method::PUT,
        "/api/v2/ticketing/ticket/{ticketId}/assignee",
        module,
        assignee,
    );
    router.route_with(
        Method::POST,
        "/api/v2/ticketing/ticket/{ticketId}/watchers",
        module,
        add_watcher,
    );
    router.route_with(
        Method::DELETE,
        "/api/v2/ticketing/ticket/{ticketId}/watchers/{userId}",
        module,
        remove_watcher,
    );
    router.route_with(
        Method::POST,
        "/api/v2/ticketing/ticket/{ticketId}/escalate",
        module,
        escalate,
    );
    router.route_with(
        Method::POST,
        "/api/v2/ticketing/ticket/{ticketId}/merge",
        module,
        merge,
    );
}

/// `POST /ticket`
async fn create(module: Arc<TicketsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<NewTicket>(&mut request, "tickets.create", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::CREATED, ticket::create)
        .await
}

/// `GET /ticket/{ticketId}`
async fn get(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    let id = id_param(&request, "ticketId")?;
    module
        .answer(move |store| service::visible_ticket(store, &acting, id))
        .await
}

/// `GET /ticket/list?view=&queueId=&status=&cursor=&limit=`
async fn list(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    let query = ListQuery::parse(
        request.query_param("view").as_deref(),
        id_query(&request, "queueId")?,
        request.query_param("status").as_deref(),
        id_query(&request, "cursor")?,
        request.limit_param(DEFAULT_PAGE, MAX_PAGE)?,
    )?;
    module
        .answer(move |store| query::list(store, &acting, &query))
        .await
}

/// A write of the ticket in the path answering it (200): `operation`'s
/// input `I` is the JSON body (or `()` without one).
async fn write_ticket<I, F>(
    module: Arc<TicketsModule>,
    mut request: Request,
    operation: &str,
    body: Body,
    write: F,
) -> Result<Response, ApiError>
where
    I: DeserializeOwned + Send + 'static,
    F: FnOnce(&mut Change<'_>, &Acting, u64, I) -> Result<Ticket, ApiError> + Send + 'static,
{
    let id = id_param(&request, "ticketId")?;
    let prepared = module.prepare::<I>(&mut request, operation, body).await?;
    module
        .commit(prepared, StatusCode::OK, move |change, acting, input| {
            write(change, acting, id, input)
        })
        .await
}

/// `PATCH /ticket/{ticketId}`
async fn update(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    write_ticket(
        module,
        request,
        "tickets.update",
        Body::Json,
        ticket::update,
    )
    .await
}

/// `PUT /ticket/{ticketId}/status`
async fn status(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let write = workflow::set_status;
    write_ticket(module, request, "tickets.status", Body::Json, write).await
}

/// `PUT /ticket/{ticketId}/assignee`
async fn assignee(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    write_ticket(
        module,
        request,
        "tickets.assign",
        Body::Json,
        workflow::assign,
    )
    .await
}

/// `POST /ticket/{ticketId}/escalate`
async fn escalate(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let write = workflow::escalate;
    write_ticket(module, request, "tickets.escalate", Body::Json, write).await
}

/// `POST /ticket/{ticketId}/merge`
async fn merge(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    write_ticket(
        module,
        request,
        "tickets.merge",
        Body::Json,
        workflow::merge,
    )
    .await
}

/// `POST /ticket/{ticketId}/watchers`
async fn add_watcher(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    write_ticket(module, request, "tickets.watch", Body::Json, watchers::add).await
}

/// `DELETE /ticket/{ticketId}/watchers/{userId}`
async fn remove_watcher(
    module: Arc<TicketsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    let user = request.param("userId").unwrap_or_default().to_string();
    let remove = move |change: &mut Change<'_>, acting: &Acting, id, (): ()| {
        watchers::remove(change, acting, id, &user)
    };
    write_ticket(module, request, "tickets.unwatch", Body::None, remove).await
}
