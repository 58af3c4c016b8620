//! REST handlers of tickets: create and get.
//!
//! Invariants: writes are [`super::tickets`]' inside one change each;
//! reads show only tickets the caller may see (404 otherwise).

use super::TicketsModule;
use super::api::Body;
use super::service;
use super::tickets::{self, NewTicket};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::rest::id_param;
use http::{Method, StatusCode};
use std::sync::Arc;

/// Adds the ticket routes.
pub(super) fn routes(router: &mut Router, module: &Arc<TicketsModule>) {
    router.route_with(Method::POST, "/api/v2/ticketing/ticket", module, create);
    router.route_with(
        Method::GET,
        "/api/v2/ticketing/ticket/{ticketId}",
        module,
        get,
    );
}

/// `POST /ticket`
async fn create(module: Arc<TicketsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<NewTicket>(&mut request, "tickets.create", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::CREATED, tickets::create)
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
