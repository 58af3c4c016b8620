//! `/admin/v1/tenants/{tenant}/webhooks`: a tenant's webhook endpoints and
//! their deliveries.
//!
//! Same rules as the rest of the admin API: the instance admin key, or a key
//! with the `admin` scope of that tenant; an endpoint or delivery of another
//! tenant is not found. The signing secret appears only in the response that
//! creates the endpoint. An endpoint created while its tenant is being
//! deleted is deleted too (404).

use super::{AdminApi, Reply, tenant_admin};
use crate::error::{ApiError, ErrorCode};
use crate::http::router::Router;
use crate::http::{Request, response};
use crate::transport::webhook::endpoints::{self, EndpointInput};
use crate::transport::webhook::outbox::Status;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use ulid::Ulid;
use uuid::Uuid;

/// Deliveries in a page unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// Most deliveries in a page.
const MAX_PAGE: usize = 1000;

/// Registers the webhook routes.
pub(super) fn routes(router: &mut Router, api: &Arc<AdminApi>) {
    const ALL: &str = "/admin/v1/tenants/{tenant}/webhooks";
    const ONE: &str = "/admin/v1/tenants/{tenant}/webhooks/{webhook}";
    router.route_with(Method::GET, ALL, api, list);
    router.route_with(Method::POST, ALL, api, create);
    router.route_with(Method::GET, ONE, api, get);
    router.route_with(Method::PATCH, ONE, api, update);
    router.route_with(Method::DELETE, ONE, api, delete);
    router.route_with(
        Method::POST,
        "/admin/v1/tenants/{tenant}/webhooks/{webhook}/enable",
        api,
        enable,
    );
    router.route_with(
        Method::GET,
        "/admin/v1/tenants/{tenant}/webhooks/{webhook}/deliveries",
        api,
        deliveries,
    );
    router.route_with(
        Method::POST,
        "/admin/v1/tenants/{tenant}/webhooks/{webhook}/deliveries/redeliver",
        api,
        redeliver_failed,
    );
    router.route_with(
        Method::POST,
        "/admin/v1/tenants/{tenant}/webhooks/{webhook}/deliveries/{delivery}/redeliver",
        api,
        redeliver,
    );
}

/// The tenant (which the caller may administer) and the endpoint id in the path.
fn target(api: &AdminApi, request: &Request) -> Result<(Uuid, Uuid), ApiError> {
    let tenant = tenant_admin(api, request)?;
    let id = Uuid::parse_str(request.param("webhook").unwrap_or_default())
        .map_err(|_| ApiError::not_found("no such webhook endpoint for this tenant"))?;
    Ok((tenant.id, id))
}

async fn list(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let endpoints: Vec<Value> = api
        .webhooks
        .list(&tenant.id)
        .iter()
        .map(|endpoint| endpoint.to_json())
        .collect();
    Ok(response::data(StatusCode::OK, &endpoints))
}

async fn create(api: Arc<AdminApi>, mut request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let input: EndpointInput = request.json().await?;
    check_destination(&api, &input)?;
    let endpoint = api.webhooks.create(tenant.id, input).await?;
    if api.auth.registry().tenant(&tenant.id).is_none() {
        discard_orphan(&api, tenant.id, endpoint.id).await?;
        return Err(ApiError::not_found("no such tenant"));
    }
    let mut body = endpoint.to_json();
    body["secret"] = Value::String(endpoint.secret);
    Ok(response::data(StatusCode::CREATED, &body))
}

/// Deletes an endpoint created while its tenant was being deleted (the
/// tenant deletion removes the endpoints it saw; this one came after).
async fn discard_orphan(api: &AdminApi, tenant: Uuid, id: Uuid) -> Result<(), ApiError> {
    match api.webhooks.delete(tenant, id).await {
        Err(err) if err.code != ErrorCode::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// 400 for a URL at a literal address deliveries may not reach.
fn check_destination(api: &AdminApi, input: &EndpointInput) -> Result<(), ApiError> {
    match &input.url {
        Some(url) => endpoints::check_destination(url, api.webhooks.address_policy()),
        None => Ok(()),
    }
}

async fn get(api: Arc<AdminApi>, request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    let endpoint = api.webhooks.get(&tenant, &id)?;
    Ok(response::data(StatusCode::OK, &endpoint.to_json()))
}

async fn update(api: Arc<AdminApi>, mut request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    let input: EndpointInput = request.json().await?;
    check_destination(&api, &input)?;
    let endpoint = api.webhooks.update(tenant, id, input).await?;
    Ok(response::data(StatusCode::OK, &endpoint.to_json()))
}

async fn enable(api: Arc<AdminApi>, request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    let input = EndpointInput {
        enabled: Some(true),
        ..EndpointInput::default()
    };
    let endpoint = api.webhooks.update(tenant, id, input).await?;
    Ok(response::data(StatusCode::OK, &endpoint.to_json()))
}

async fn delete(api: Arc<AdminApi>, request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    api.webhooks.delete(tenant, id).await?;
    Ok(response::data(StatusCode::OK, &json!({ "deleted": id })))
}

/// `GET …/deliveries?status=pending|failed&after=ID&limit=N`
async fn deliveries(api: Arc<AdminApi>, request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    let status_text = request
        .query_param("status")
        .unwrap_or_else(|| "pending".into());
    let status = Status::parse(&status_text)
        .ok_or_else(|| ApiError::validation("status must be pending or failed"))?;
    let after =
        match request.query_param("after").filter(|a| !a.is_empty()) {
            None => None,
            Some(text) => Some(Ulid::from_string(&text).map_err(|_| {
                ApiError::validation(format!("after=`{text}` is not a delivery id"))
            })?),
        };
    let limit = request.limit_param(DEFAULT_PAGE, MAX_PAGE)?;
    let (page, more) = api
        .webhooks
        .deliveries(tenant, id, status, after, limit)
        .await?;
    let next = match (more, page.last()) {
        (true, Some(last)) => Value::String(last.id.to_string()),
        _ => Value::Null,
    };
    let deliveries: Vec<Value> = page.iter().map(|delivery| delivery.to_json()).collect();
    Ok(response::data(
        StatusCode::OK,
        &json!({ "deliveries": deliveries, "next": next }),
    ))
}

async fn redeliver(api: Arc<AdminApi>, request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    let delivery = Ulid::from_string(request.param("delivery").unwrap_or_default())
        .map_err(|_| ApiError::not_found("no such failed delivery for this endpoint"))?;
    api.webhooks.redeliver(tenant, id, delivery).await?;
    Ok(response::data(StatusCode::OK, &json!({ "redelivered": 1 })))
}

async fn redeliver_failed(api: Arc<AdminApi>, request: Request) -> Reply {
    let (tenant, id) = target(&api, &request)?;
    let count = api.webhooks.redeliver_failed(tenant, id).await?;
    Ok(response::data(
        StatusCode::OK,
        &json!({ "redelivered": count }),
    ))
}
