//! REST handlers of the work on tickets: comments, approval requests and
//! the SLA policy (all under `/api/v2/ticketing`).
//!
//! Invariants: writes are [`super::comments`]', [`super::approvals`]' and
//! [`super::sla`]'s inside one change each; reads show only tickets the
//! caller may see (404 otherwise); the SLA policy is read by agents and
//! written by admins.

use super::TicketsModule;
use super::api::{Body, DEFAULT_PAGE, MAX_PAGE};
use super::approvals::{self, Decision, NewApproval};
use super::comments::{self, NewComment};
use super::sla::{self, SlaPolicy};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response};
use crate::modules::rest::{id_param, id_query};
use http::{Method, StatusCode};
use std::sync::Arc;

/// Path of a ticket's comments.
const COMMENTS: &str = "/api/v2/ticketing/ticket/{ticketId}/comments";
/// Path of a ticket's approval requests.
const APPROVALS: &str = "/api/v2/ticketing/ticket/{ticketId}/approvals";
/// Path of the SLA policy.
const SLA_POLICY: &str = "/api/v2/ticketing/sla/policy";

/// Adds the comment, approval and SLA policy routes.
pub(super) fn routes(router: &mut Router, module: &Arc<TicketsModule>) {
    router.route_with(Method::POST, COMMENTS, module, add_comment);
    router.route_with(Method::GET, COMMENTS, module, list_comments);
    router.route_with(Method::POST, APPROVALS, module, request_approval);
    router.route_with(Method::GET, APPROVALS, module, list_approvals);
    router.route_with(
        Method::PUT,
        "/api/v2/ticketing/ticket/{ticketId}/approvals/{approvalId}",
        module,
        decide_approval,
    );
    router.route_with(Method::GET, SLA_POLICY, module, get_policy);
    router.route_with(Method::PUT, SLA_POLICY, module, put_policy);
}

/// `POST /ticket/{ticketId}/comments`
async fn add_comment(
    module: Arc<TicketsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let ticket = id_param(&request, "ticketId")?;
    let write = module
        .prepare::<NewComment>(&mut request, "tickets.comment", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::CREATED, move |change, acting, input| {
            comments::create(change, acting, ticket, input)
        })
        .await
}

/// `GET /ticket/{ticketId}/comments?cursor=&limit=`
async fn list_comments(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    let ticket = id_param(&request, "ticketId")?;
    let cursor = id_query(&request, "cursor")?;
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    module
        .answer(move |store| comments::page(store, &acting, ticket, cursor, limit))
        .await
}

/// `POST /ticket/{ticketId}/approvals`
async fn request_approval(
    module: Arc<TicketsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let ticket = id_param(&request, "ticketId")?;
    let write = module
        .prepare::<NewApproval>(&mut request, "tickets.approval", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::CREATED, move |change, acting, input| {
            approvals::request(change, acting, ticket, input)
        })
        .await
}

/// `PUT /ticket/{ticketId}/approvals/{approvalId}`
async fn decide_approval(
    module: Arc<TicketsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let ids = (
        id_param(&request, "ticketId")?,
        id_param(&request, "approvalId")?,
    );
    let write = module
        .prepare::<Decision>(&mut request, "tickets.approval-decision", Body::Json)
        .await?;
    module
        .commit(write, StatusCode::OK, move |change, acting, input| {
            approvals::decide(change, acting, ids, input)
        })
        .await
}

/// `GET /ticket/{ticketId}/approvals`
async fn list_approvals(
    module: Arc<TicketsModule>,
    request: Request,
) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    let ticket = id_param(&request, "ticketId")?;
    module
        .answer(move |store| approvals::list(store, &acting, ticket))
        .await
}

/// `GET /sla/policy` (agents)
async fn get_policy(module: Arc<TicketsModule>, request: Request) -> Result<Response, ApiError> {
    let acting = module.reader(&request)?;
    acting.require_agent()?;
    module
        .answer(move |store| sla::policy(store, &acting.tenant))
        .await
}

/// `PUT /sla/policy` (admins)
async fn put_policy(
    module: Arc<TicketsModule>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let write = module
        .prepare::<SlaPolicy>(&mut request, "tickets.sla-policy", Body::Json)
        .await?;
    module.commit(write, StatusCode::OK, sla::put_policy).await
}
