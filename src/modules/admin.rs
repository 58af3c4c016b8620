//! The admin API under `/admin/v1`: tenants, API keys, JWT realms, webhook
//! endpoints and their deliveries ([`webhooks`]), tenants' allowed browser
//! origins (`/admin/v1/tenants/{tenant}/origins`), an online backup
//! (`/admin/v1/backup`, instance admin key only; see `ops::backup`).
//! (`/admin/v1/stats` is served by [`crate::ops`].)
//!
//! The instance admin key may do everything; an API key with the `admin`
//! scope may manage its own tenant's keys, realms and allowed origins. Key secrets appear only
//! in the response that creates them; HS256 realm secrets are never returned.

use crate::auth::api_keys::{ApiKey, Scope};
use crate::auth::jwt::{JwtAlgorithm, VerificationKey};
use crate::auth::origins::{AllowedOrigins, OriginLimits};
use crate::auth::realms::Realm;
use crate::auth::tenants::Tenant;
use crate::auth::{Authenticator, Credential, Principal};
use crate::error::{ApiError, ErrorCode};
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use crate::modules::platform::{Module, ModuleContext};
use crate::ops::backup::OnlineBackups;
use crate::transport::webhook::Webhooks;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use uuid::Uuid;

/// What the admin API works on.
pub struct AdminApi {
    /// Credentials and the registry.
    pub auth: Authenticator,
    /// Tenants' webhook endpoints.
    pub webhooks: Arc<Webhooks>,
    /// Limits of a tenant's allowed browser origins.
    pub origin_limits: OriginLimits,
    /// Online backups.
    pub backups: OnlineBackups,
}

mod webhooks;

impl AdminApi {
    /// The admin API on the core's shared parts.
    pub fn new(context: &ModuleContext) -> Self {
        Self {
            auth: context.auth.clone(),
            webhooks: context.webhooks.clone(),
            origin_limits: context.settings.origin_limits,
            backups: OnlineBackups::new(context, context.settings.backup.clone()),
        }
    }
}

impl Module for AdminApi {
    fn name(&self) -> &'static str {
        "admin"
    }

    fn routes(self: Arc<Self>, router: &mut Router) {
        routes(router, self);
    }
}

fn routes(router: &mut Router, api: Arc<AdminApi>) {
    router.route_with(Method::GET, "/admin/v1/tenants", &api, list_tenants);
    router.route_with(Method::POST, "/admin/v1/tenants", &api, create_tenant);
    router.route_with(Method::GET, "/admin/v1/tenants/{tenant}", &api, get_tenant);
    router.route_with(
        Method::PATCH,
        "/admin/v1/tenants/{tenant}",
        &api,
        update_tenant,
    );
    router.route_with(
        Method::DELETE,
        "/admin/v1/tenants/{tenant}",
        &api,
        delete_tenant,
    );
    router.route_with(
        Method::GET,
        "/admin/v1/tenants/{tenant}/origins",
        &api,
        get_origins,
    );
    router.route_with(
        Method::PUT,
        "/admin/v1/tenants/{tenant}/origins",
        &api,
        put_origins,
    );
    router.route_with(
        Method::GET,
        "/admin/v1/tenants/{tenant}/keys",
        &api,
        list_keys,
    );
    router.route_with(
        Method::POST,
        "/admin/v1/tenants/{tenant}/keys",
        &api,
        create_key,
    );
    router.route_with(
        Method::DELETE,
        "/admin/v1/tenants/{tenant}/keys/{key}",
        &api,
        revoke_key,
    );
    router.route_with(
        Method::GET,
        "/admin/v1/tenants/{tenant}/realms",
        &api,
        list_realms,
    );
    router.route_with(
        Method::GET,
        "/admin/v1/tenants/{tenant}/realms/{realm}",
        &api,
        get_realm,
    );
    router.route_with(
        Method::PUT,
        "/admin/v1/tenants/{tenant}/realms/{realm}",
        &api,
        put_realm,
    );
    router.route_with(
        Method::DELETE,
        "/admin/v1/tenants/{tenant}/realms/{realm}",
        &api,
        delete_realm,
    );
    router.route_with(Method::GET, "/admin/v1/backup", &api, backup);
    webhooks::routes(router, &api);
}

type Reply = Result<Response, ApiError>;

/// The instance admin, or 403.
fn instance_admin(api: &AdminApi, request: &Request) -> Result<Principal, ApiError> {
    let principal = api.auth.authenticate(request)?;
    if principal.is_instance_admin() {
        Ok(principal)
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "only the instance admin key may do this",
        ))
    }
}

/// The tenant named in the path, if the caller may administer it.
fn tenant_admin(api: &AdminApi, request: &Request) -> Result<Tenant, ApiError> {
    let principal = api.auth.authenticate(request)?;
    let tenant = find_tenant(api, request.param("tenant").unwrap_or_default())?;
    let allowed = match &principal.credential {
        Credential::Admin => true,
        Credential::Key(key) => key.allows(Scope::Admin) && key.tenant == tenant.id,
        Credential::Token(_) | Credential::Ticket(_) => false,
    };
    if allowed {
        Ok(tenant)
    } else {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            "this credential may not administer that tenant",
        ))
    }
}

fn find_tenant(api: &AdminApi, id_or_slug: &str) -> Result<Tenant, ApiError> {
    api.auth.registry().find_tenant(id_or_slug)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantInput {
    slug: Option<String>,
    name: Option<String>,
}

async fn list_tenants(api: Arc<AdminApi>, request: Request) -> Reply {
    instance_admin(&api, &request)?;
    Ok(response::data(
        StatusCode::OK,
        &api.auth.registry().tenants(),
    ))
}

async fn create_tenant(api: Arc<AdminApi>, mut request: Request) -> Reply {
    instance_admin(&api, &request)?;
    let input: TenantInput = request.json().await?;
    let slug = input
        .slug
        .ok_or_else(|| ApiError::validation("slug is required"))?;
    let name = input.name.unwrap_or_default();
    let tenant = api.auth.registry().create_tenant(slug, name).await?;
    Ok(response::data(StatusCode::CREATED, &tenant))
}

async fn get_tenant(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    Ok(response::data(StatusCode::OK, &tenant))
}

async fn update_tenant(api: Arc<AdminApi>, mut request: Request) -> Reply {
    instance_admin(&api, &request)?;
    let tenant = find_tenant(&api, request.param("tenant").unwrap_or_default())?;
    let input: TenantInput = request.json().await?;
    let tenant = api
        .auth
        .registry()
        .update_tenant(tenant.id, input.slug, input.name)
        .await?;
    Ok(response::data(StatusCode::OK, &tenant))
}

async fn delete_tenant(api: Arc<AdminApi>, request: Request) -> Reply {
    instance_admin(&api, &request)?;
    let tenant = find_tenant(&api, request.param("tenant").unwrap_or_default())?;
    api.auth.registry().delete_tenant(&tenant.id).await?;
    api.webhooks.delete_tenant(tenant.id).await?;
    Ok(response::data(
        StatusCode::OK,
        &json!({ "deleted": tenant.id }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginsInput {
    origins: Vec<String>,
}

/// A tenant's allowed origins as the API and CLI show them.
pub fn origins_json(tenant: &Tenant) -> Value {
    json!({ "tenant": tenant.id, "origins": tenant.allowed_origins })
}

async fn get_origins(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    Ok(response::data(StatusCode::OK, &origins_json(&tenant)))
}

async fn put_origins(api: Arc<AdminApi>, mut request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let input: OriginsInput = request.json().await?;
    let origins = AllowedOrigins::parse(input.origins, api.origin_limits)?;
    let tenant = api.auth.registry().set_origins(tenant.id, origins).await?;
    Ok(response::data(StatusCode::OK, &origins_json(&tenant)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyInput {
    name: String,
    scopes: Vec<Scope>,
}

/// A key as the API and CLI show it (never the secret or its hash).
pub fn key_json(key: &ApiKey) -> Value {
    json!({
        "id": key.id, "tenant": key.tenant, "name": key.name, "scopes": key.scopes,
        "prefix": key.prefix, "createdAt": key.created_at, "revokedAt": key.revoked_at,
        "lastUsedAt": key.last_used_at,
    })
}

async fn list_keys(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let keys: Vec<Value> = api
        .auth
        .registry()
        .keys(&tenant.id)
        .iter()
        .map(key_json)
        .collect();
    Ok(response::data(StatusCode::OK, &keys))
}

async fn create_key(api: Arc<AdminApi>, mut request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let input: KeyInput = request.json().await?;
    let (key, secret) = api
        .auth
        .registry()
        .create_key(tenant.id, input.name, input.scopes)
        .await?;
    let mut body = key_json(&key);
    body["secret"] = Value::String(secret);
    Ok(response::data(StatusCode::CREATED, &body))
}

async fn revoke_key(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let id = Uuid::parse_str(request.param("key").unwrap_or_default())
        .map_err(|_| ApiError::not_found("no such key"))?;
    let key = api.auth.registry().revoke_key(&tenant.id, &id).await?;
    Ok(response::data(StatusCode::OK, &key_json(&key)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RealmInput {
    keys: Vec<VerificationKey>,
    #[serde(default)]
    audience: Option<Vec<String>>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
}

/// A realm as the API shows it: HS256 secrets are replaced by a marker.
fn realm_json(realm: &Realm) -> Value {
    let keys: Vec<Value> = realm
        .keys
        .iter()
        .map(|key| {
            let material = match key.algorithm {
                JwtAlgorithm::Hs256 => Value::String("<secret>".into()),
                _ => Value::String(key.material.clone()),
            };
            json!({ "kid": key.kid, "algorithm": key.algorithm, "material": material })
        })
        .collect();
    json!({
        "tenant": realm.tenant, "name": realm.name, "keys": keys, "audience": realm.audience,
        "issuer": realm.issuer, "leewaySeconds": realm.leeway_seconds,
    })
}

async fn list_realms(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let realms: Vec<Value> = api
        .auth
        .registry()
        .realms(&tenant.id)
        .iter()
        .map(realm_json)
        .collect();
    Ok(response::data(StatusCode::OK, &realms))
}

async fn get_realm(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let name = request.param("realm").unwrap_or_default();
    let realm = api
        .auth
        .registry()
        .realm(&tenant.id, name)
        .ok_or_else(|| ApiError::not_found(format!("no realm {name}")))?;
    Ok(response::data(StatusCode::OK, &realm_json(&realm)))
}

async fn put_realm(api: Arc<AdminApi>, mut request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let name = request.param("realm").unwrap_or_default().to_string();
    let input: RealmInput = request.json().await?;
    let realm = Realm {
        tenant: tenant.id,
        name,
        keys: input.keys,
        audience: input.audience,
        issuer: input.issuer,
        leeway_seconds: input
            .leeway_seconds
            .unwrap_or(crate::auth::realms::DEFAULT_LEEWAY_SECONDS),
    };
    let realm = api.auth.registry().put_realm(realm).await?;
    Ok(response::data(StatusCode::OK, &realm_json(&realm)))
}

async fn delete_realm(api: Arc<AdminApi>, request: Request) -> Reply {
    let tenant = tenant_admin(&api, &request)?;
    let name = request.param("realm").unwrap_or_default();
    api.auth.registry().delete_realm(&tenant.id, name).await?;
    Ok(response::data(StatusCode::OK, &json!({ "deleted": name })))
}
async fn backup(api: Arc<AdminApi>, request: Request) -> Reply {
    instance_admin(&api, &request)?;
    api.backups.start().await
}
