//! REST handlers of queues (`/queue`, `/queue/{queueId}`) and the tenant's
//! settings (`/settings`).
//!
//! Invariants: writes are [`super::queues`]' and [`super::settings`]'
//! inside one change each (admins); reads need the agent role; the queue
//! list is a bounded page (`cursor` = a queue id, `limit`).

use super::TicketsModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE};
use super::queues::{self, NewQueue, QueueEdit};
use super::service;
use super::settings::{self, SettingsEdit};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::rest::{id_param, id_query};
use http::{Method, StatusCode};
use std::sync::Arc;

/// The path of one queue.
const QUEUE: &str = "/api/v2/ticketing/queue/{queueId}";
/// The path of the settings.
const SETTINGS: &str = "/api/v2/ticketing/settings";

/// Adds the queue and settings routes.
pub(super) fn routes(router: &mut Router, module: &Arc<TicketsModule>) {
    router.route_with(Method::POST, "/api/v2/ticketing/queue", module, create);
    router.route_with(Method::GET, "/api/v2/ticketing/queue", module, page);
    router.route_with(Method::GET, QUEUE, module, get);
    router.route_with(Method::PUT, QUEUE, module, update);
    router.route_with(Method::GET, SETTINGS, module, get_settings);
    router.route_with(Method::PUT, SETTINGS, module, put_settings);
}

/// `POST /queue`
async fn create(module: Arc<TicketsModule>, mut request: Request) -> Result<Response, ApiError> {
    let write = module
        .prepare::<NewQueue>(&mut request, "tickets.queue.create", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::CREATED, queues::create)
        .await
}

/// `GET /queue?cursor=&limit=`
async fn page(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    let cursor = id_query(&request, "cursor")?;
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    module
        .answer(move |store| queues::page(store, &acting, cursor, limit))
        .await
}

/// `GET /queue/{queueId}`
async fn get(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    let id = id_param(&request, "queueId")?;
    module
        .answer(move |store| queues::get(store, &acting, id))
        .await
}

/// `PUT /queue/{queueId}`
async fn update(module: Arc<TicketsModule>, mut request: Request) -> Result<Response, ApiError> {
    let id = id_param(&request, "queueId")?;
    let write = module
        .prepare::<QueueEdit>(&mut request, "tickets.queue.update", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::OK, move |change, acting, edit| {
            queues::update(change, acting, id, edit)
        })
        .await
}

/// `GET /settings`
async fn get_settings(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    acting.require_agent()?;
    module
        .answer(move |store| service::settings(store, &acting.tenant))
        .await
}

/// `PUT /settings`
async fn put_settings(
    module: Arc<TicketsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<SettingsEdit>(&mut request, "tickets.settings", Body::Json)
        .await?;
    module.commit(write, StatusCode::OK, settings::update).await
}
