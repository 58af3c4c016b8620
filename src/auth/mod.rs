//! Authentication and tenancy: which [`Principal`] makes a request, for which
//! tenant, and what it may do.
//!
//! Credentials: the instance admin key (`config.json`, everything on every
//! tenant); API keys (`X-API-Key: ek_…`, scoped, one tenant); JWTs
//! (`Authorization: Bearer …`, or `?access_token=` on a WebSocket handshake
//! since browsers cannot set headers there; verified by a realm of the
//! tenant, chosen with the `realmname` header, else `default`; a verified
//! token is then answered from the [`token_cache`] until it expires).
//!
//! The tenant comes from, in order: `x-tenantid` (a UUID), the Host's
//! subdomain under `--base-domain`, the credential's own tenant.
//!
//! Invariants: a credential of one tenant never reaches another tenant's data
//! (403); missing or invalid credentials are 401, valid ones without the
//! right are 403, both with the error envelope; secrets are compared in
//! constant time or by hash and never logged; every principal carries the
//! revocation token of what admitted it (its key, its JWT realm, or its
//! tenant), cancelled once a revocation or deletion is durable, so the
//! streams it opened end ([`Admission::revoked`]); every accepted principal
//! is recorded for the HTTP layer's CORS decision, and a browser's WebSocket
//! handshake (it has `Origin`) is refused (403) unless the principal's
//! tenant allows that origin ([`origins`]), before anything is upgraded.

pub mod api_keys;
pub mod jwt;
pub mod layout;
pub mod leases;
pub mod limits;
pub mod origins;
pub mod realms;
pub mod registry;
pub mod tenants;
pub mod tickets;
pub mod token_cache;

use crate::error::{ApiError, ErrorCode};
use crate::http::Request;
use crate::http::cors::{self, AuthenticatedTenant, OriginPolicy};
use api_keys::{ApiKey, Scope};
use http::HeaderMap;
use jwt::Claims;
use leases::{Claimed, Grants, Hold};
use limits::StreamLimits;
use registry::Registry;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tickets::{Target, Ticket, Tickets};
use token_cache::TokenCache;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use uuid::Uuid;

/// Header carrying API keys.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Header naming the tenant.
pub const TENANT_HEADER: &str = "x-tenantid";
/// Header with which an edge, sending the instance admin key, acts as
/// one of the tenant's API keys (the hash of its secret): a write made on
/// the edge outside a forwarded request (a WebSocket publish) goes to the
/// writer as the key that made it.
pub const ACTING_KEY_HEADER: &str = "tidings-acting-key";
/// Header naming the JWT realm.
pub const REALM_HEADER: &str = "realmname";
/// Query parameter carrying a JWT on a WebSocket handshake.
pub const WEBSOCKET_TOKEN_PARAM: &str = "access_token";
/// Query parameter naming the tenant where a browser cannot send `x-tenantid`
/// ([`Authenticator::authenticate_named_user`]).
pub const TENANT_PARAM: &str = "tenant";
/// Query parameter naming the JWT realm where a browser cannot send
/// `realmname` ([`Authenticator::authenticate_named_user`]).
pub const REALM_PARAM: &str = "realm";

/// The credential behind a principal.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The instance admin key.
    Admin,
    /// A tenant's API key (boxed: a stream keeps its principal for its
    /// whole life, so the enum stays pointer-sized).
    Key(Box<ApiKey>),
    /// A verified JWT (shared with the verified-token cache).
    Token(Arc<Claims>),
    /// A claimed stream ticket.
    Ticket(Box<Ticket>),
}

/// Who is making a request, for which tenant.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant the request acts on.
    pub tenant: Uuid,
    /// A name for the actor (key name, token subject, `admin`).
    pub name: String,
    /// The credential used.
    pub credential: Credential,
    /// Cancelled when the credential is revoked or what it belongs to (its
    /// realm, its tenant) is deleted.
    revocation: CancellationToken,
}

#[cfg(test)]
impl Principal {
    /// A principal that is never revoked, for unit tests of code taking one.
    pub(crate) fn unrevocable(tenant: Uuid, name: &str, credential: Credential) -> Self {
        Self {
            tenant,
            name: name.into(),
            credential,
            revocation: CancellationToken::new(),
        }
    }
}

impl Principal {
    /// True when the principal has `scope` (the admin key has every scope;
    /// tokens have none: they read what their topic patterns allow).
    pub fn has(&self, scope: Scope) -> bool {
        match &self.credential {
            Credential::Admin => true,
            Credential::Key(key) => key.allows(scope),
            Credential::Token(_) | Credential::Ticket(_) => false,
        }
    }

    /// 403 unless the principal has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(forbidden(
                format!("this credential lacks the {scope:?} scope").to_lowercase(),
            ))
        }
    }

    /// 403 unless the principal may read `topic` (scope `read`, or a token whose topic patterns match).
    pub fn require_read(&self, topic: &str) -> Result<(), ApiError> {
        let allowed = match &self.credential {
            Credential::Token(claims) => jwt::topic_allowed(&claims.topics, topic),
            Credential::Ticket(ticket) => ticket.target == Target::Topic(topic.to_string()),
            _ => self.has(Scope::Read),
        };
        if allowed {
            Ok(())
        } else {
            Err(forbidden(format!("this credential may not read {topic}")))
        }
    }

    /// When the credential expires (unix seconds), for tokens.
    pub fn expires_at(&self) -> Option<u64> {
        match &self.credential {
            Credential::Token(claims) => Some(claims.exp),
            _ => None,
        }
    }

    /// The end user behind a token or ticket (counted by the per-user stream limit).
    pub fn user(&self) -> Option<&str> {
        match &self.credential {
            Credential::Token(claims) => Some(&claims.sub),
            Credential::Ticket(ticket) => ticket.viewer.id.as_deref(),
            _ => None,
        }
    }

    /// True for the instance admin key.
    pub fn is_instance_admin(&self) -> bool {
        matches!(self.credential, Credential::Admin)
    }

    /// Resolves once the credential is revoked or its realm or tenant is deleted.
    pub fn revoked(&self) -> WaitForCancellationFutureOwned {
        self.revocation.clone().cancelled_owned()
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, message)
}

/// The key the registry `found`, checked: 401 when there is none (unknown
/// or revoked), 403 when it belongs to another tenant than `requested`.
fn accepted_key(
    found: Option<(ApiKey, CancellationToken)>,
    requested: Option<Uuid>,
) -> Result<(ApiKey, CancellationToken), ApiError> {
    let (key, revocation) =
        found.ok_or_else(|| unauthorized("the API key is not valid (unknown or revoked)"))?;
    if requested.is_some_and(|tenant| tenant != key.tenant) {
        return Err(forbidden("this API key belongs to another tenant".into()));
    }
    Ok((key, revocation))
}

/// The principal acting as `key`, ended by `revocation`.
fn key_principal(key: ApiKey, revocation: CancellationToken) -> Principal {
    Principal {
        tenant: key.tenant,
        name: key.name.clone(),
        credential: Credential::Key(Box::new(key)),
        revocation,
    }
}
fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

/// A stream allowed to open: who opens it, until when, and what it holds
/// (a ticket session, a per-user slot) until it ends.
pub struct Admission {
    /// The principal.
    pub principal: Principal,
    /// When the stream must end (unix seconds): token expiry or ticket window.
    pub expires_at: Option<u64>,
    _ticket: Option<Hold>,
    _slot: Option<Hold>,
}

impl Admission {
    /// Resolves once the credential that opened the stream is revoked or its
    /// realm or tenant is deleted: the stream must end (see [`Principal::revoked`]).
    pub fn revoked(&self) -> WaitForCancellationFutureOwned {
        self.principal.revoked()
    }
}

/// Verifies credentials against the registry.
#[derive(Clone)]
pub struct Authenticator {
    admin_key: String,
    base_domain: Option<String>,
    registry: Arc<Registry>,
    tickets: Arc<Tickets>,
    limits: Arc<StreamLimits>,
    verified_tokens: Arc<TokenCache>,
    grants: Option<Arc<dyn Grants>>,
}

impl Authenticator {
    /// An authenticator for the instance admin key, an optional base domain,
    /// the registry, tickets, per-user stream limits and the cache of
    /// verified tokens.
    pub fn new(
        admin_key: String,
        base_domain: Option<String>,
        registry: Arc<Registry>,
        tickets: Arc<Tickets>,
        limits: Arc<StreamLimits>,
        verified_tokens: TokenCache,
    ) -> Self {
        Self {
            admin_key,
            base_domain: base_domain
                .map(|domain| domain.trim_start_matches('.').to_ascii_lowercase()),
            registry,
            tickets,
            limits,
            verified_tokens: Arc::new(verified_tokens),
            grants: None,
        }
    }

    /// On a cluster's edge: ticket claims and per-user stream slots are
    /// leases from the writer ([`leases`]), the edge's own per-user limit
    /// still applying when the writer cannot be reached.
    pub fn with_grants(mut self, grants: Arc<dyn Grants>) -> Self {
        self.grants = Some(grants);
        self
    }

    /// The per-user stream limits of this node.
    pub fn limits(&self) -> &Arc<StreamLimits> {
        &self.limits
    }

    /// The cache of verified tokens (for its hit and miss counts).
    pub fn verified_tokens(&self) -> &TokenCache {
        &self.verified_tokens
    }

    /// The ticket service.
    pub fn tickets(&self) -> &Arc<Tickets> {
        &self.tickets
    }

    /// Admits a long-lived stream on `target`: a `ticket` query parameter, or
    /// any credential [`Authenticator::authenticate`] accepts; then the per-user limit.
    pub async fn admit_stream(
        &self,
        request: &Request,
        target: &Target,
    ) -> Result<Admission, ApiError> {
        let Some(secret) = request.query_param("ticket") else {
            return self.admit(self.authenticate(request)?, None).await;
        };
        let session: Claimed = match &self.grants {
            Some(grants) => grants.ticket(&secret, target).await?,
            None => self.tickets.claim(&secret, target).await?.into(),
        };
        let principal = Principal {
            revocation: self.tenant_revocation(&session.ticket.tenant),
            tenant: session.ticket.tenant,
            name: session
                .ticket
                .viewer
                .id
                .clone()
                .unwrap_or_else(|| "viewer".into()),
            credential: Credential::Ticket(Box::new(session.ticket.clone())),
        };
        let principal = self.accepted(request, principal)?;
        self.admit(principal, Some(session)).await
    }

    /// Admits a stream of an authenticated principal: a token must be
    /// before its `exp` (the leeway does not stretch a stream, which ends
    /// there), then the per-user stream limit applies.
    pub async fn admit(
        &self,
        principal: Principal,
        session: Option<Claimed>,
    ) -> Result<Admission, ApiError> {
        let expires_at = session
            .as_ref()
            .map(|s| s.ends_at)
            .or_else(|| principal.expires_at());
        // A stream ends at the token's `exp`: one already past it (accepted
        // only within the realm's leeway) would be closed at once.
        if session.is_none()
            && expires_at.is_some_and(|exp| exp <= crate::core::clock::unix_millis() / 1000)
        {
            return Err(unauthorized(
                "this token has expired: a stream needs a token before its exp",
            )
            .with_details(json!({ "reason": "expired" })));
        }
        let slot = match principal.user() {
            Some(user) => Some(self.user_slot(principal.tenant, user).await?),
            None => None,
        };
        Ok(Admission {
            principal,
            expires_at,
            _ticket: session.map(|session| session.hold),
            _slot: slot,
        })
    }

    /// One of `user`'s stream slots: this node's, and on an edge also a
    /// lease from the writer (cluster-wide). An edge whose writer cannot be
    /// reached admits on its own limit alone (streams keep opening while
    /// the writer is down; the limit is then per edge).
    async fn user_slot(&self, tenant: Uuid, user: &str) -> Result<Hold, ApiError> {
        let local = self.limits.acquire(tenant, user)?;
        let Some(grants) = &self.grants else {
            return Ok(Box::new(local));
        };
        match grants.slot(tenant, user).await {
            Ok(lease) => Ok(Box::new((local, lease))),
            Err(err) if err.code == ErrorCode::ServiceUnavailable => {
                tracing::warn!(error = %err, "no stream lease from the writer; admitting on this edge's limit");
                Ok(Box::new(local))
            }
            Err(err) => Err(err),
        }
    }

    /// The registry of tenants, keys and realms.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The principal behind the request's credentials, or 401/403.
    pub fn authenticate(&self, request: &Request) -> Result<Principal, ApiError> {
        let principal = self.credential(request, QueryToken::WebSocketOnly)?;
        self.accepted(request, principal)
    }

    /// [`Authenticator::authenticate`] that also takes a JWT from the
    /// `access_token` query parameter on any request: for reads a browser
    /// repeats across origins with a new URL each time (live polls), where
    /// an `Authorization` header would make every request a CORS preflight
    /// plus the request. Tidings never logs query strings (proxies might).
    pub fn authenticate_with_query_token(&self, request: &Request) -> Result<Principal, ApiError> {
        let principal = self.credential(request, QueryToken::Allowed)?;
        self.accepted(request, principal)
    }

    /// The principal of a user's JWT that names its tenant and realm, for
    /// event streams a browser's `EventSource` opens (it cannot set
    /// headers): each part comes from its header, else its query parameter
    /// (the token from `Authorization: Bearer` or `access_token`, the tenant
    /// from `x-tenantid` or `tenant`, the realm from `realmname` or
    /// `realm`). A missing part is a 401 naming it. Query strings are never
    /// logged.
    pub fn authenticate_named_user(&self, request: &Request) -> Result<Principal, ApiError> {
        let part = |header: Option<&str>, param: &str| {
            header
                .map(str::to_string)
                .or_else(|| request.query_param(param))
                .filter(|value| !value.is_empty())
        };
        let token = part(bearer_token(request), WEBSOCKET_TOKEN_PARAM).ok_or_else(|| {
            unauthorized("send the user's JWT: Authorization: Bearer, or ?access_token=")
        })?;
        let tenant = part(request.header(TENANT_HEADER), TENANT_PARAM)
            .ok_or_else(|| unauthorized("name the tenant: the x-tenantid header, or ?tenant="))?;
        let realm = part(request.header(REALM_HEADER), REALM_PARAM)
            .ok_or_else(|| unauthorized("name the JWT realm: the realmname header, or ?realm="))?;
        let principal = self.token(&token, Some(self.tenant_by_id(&tenant)?), Some(&realm))?;
        self.accepted(request, principal)
    }

    /// The principal of a Socket.IO CONNECT: the JWT given in the CONNECT
    /// payload (`token`), else the `Authorization: Bearer` of the request
    /// that opened the session, of the tenant its headers name (else the
    /// default tenant) and the `realmname` realm. A page's `Origin` must be
    /// allowed by the tenant, as for a WebSocket handshake (an Engine.IO
    /// session may have opened over long-polling, where CORS only guards
    /// reading the answers).
    pub fn authenticate_socket(
        &self,
        headers: &HeaderMap,
        token: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let requested = self.tenant_named_by(headers)?;
        let realm = headers
            .get(REALM_HEADER)
            .and_then(|value| value.to_str().ok());
        let token = token.or_else(|| bearer_in(headers)).ok_or_else(|| {
            unauthorized(
                "send a JWT: `auth: { token }` in the Socket.IO connect, or Authorization: Bearer",
            )
        })?;
        let principal = self.token(token, requested, realm)?;
        let origin = headers
            .get(http::header::ORIGIN)
            .and_then(|value| value.to_str().ok());
        if let Some(origin) = origin
            && !self.registry.allows_origin(&principal.tenant, origin)
        {
            return Err(forbidden(format!(
                "this tenant does not allow connections from pages on {origin}"
            ))
            .with_details(json!({ "origin": origin })));
        }
        Ok(principal)
    }

    /// The principal of the request's API key or JWT.
    fn credential(&self, request: &Request, query: QueryToken) -> Result<Principal, ApiError> {
        let requested = self.tenant_named_by(request.headers())?;
        if let Some(secret) = request.header(API_KEY_HEADER) {
            let principal = self.api_key(secret, requested)?;
            return match request.header(ACTING_KEY_HEADER) {
                Some(hash) if principal.is_instance_admin() => self.acting_key(hash, requested),
                _ => Ok(principal),
            };
        }
        if let Some(token) = bearer_token(request) {
            return self.token(token, requested, request.header(REALM_HEADER));
        }
        if let Some(token) = query_token(request, query) {
            return self.token(&token, requested, request.header(REALM_HEADER));
        }
        Err(unauthorized(
            "send an API key in X-API-Key or a JWT in Authorization: Bearer \
             (on a WebSocket handshake and a live events poll also ?access_token=)",
        ))
    }

    /// Binds an accepted principal to its request: records its tenant for
    /// the CORS decision on the response, and refuses (403) a browser's
    /// WebSocket handshake from an origin the tenant does not allow (CORS
    /// does not cover WebSockets, so this check is the only guard).
    fn accepted(&self, request: &Request, principal: Principal) -> Result<Principal, ApiError> {
        if let Some(slot) = request.extensions().get::<AuthenticatedTenant>() {
            slot.record(principal.tenant);
        }
        if let Some(origin) = cors::websocket_origin(request.headers())
            && !self.registry.allows_origin(&principal.tenant, origin)
        {
            return Err(forbidden(format!(
                "this tenant does not allow WebSocket connections from pages on {origin}"
            ))
            .with_details(json!({ "origin": origin })));
        }
        Ok(principal)
    }

    fn api_key(&self, secret: &str, requested: Option<Uuid>) -> Result<Principal, ApiError> {
        if bool::from(secret.as_bytes().ct_eq(self.admin_key.as_bytes())) {
            let tenant = requested.unwrap_or_else(|| self.registry.default_tenant());
            return Ok(Principal {
                tenant,
                name: "admin".into(),
                credential: Credential::Admin,
                revocation: self.tenant_revocation(&tenant),
            });
        }
        let (key, revocation) = accepted_key(self.registry.key_by_secret(secret), requested)?;
        self.registry.touch_key(&key);
        Ok(key_principal(key, revocation))
    }

    /// The principal of the key whose secret hashes to `hash` (see
    /// [`ACTING_KEY_HEADER`]); 401 once it is revoked.
    fn acting_key(&self, hash: &str, requested: Option<Uuid>) -> Result<Principal, ApiError> {
        let (key, revocation) = accepted_key(self.registry.key_by_hash(hash), requested)?;
        Ok(key_principal(key, revocation))
    }

    fn token(
        &self,
        token: &str,
        requested: Option<Uuid>,
        realm: Option<&str>,
    ) -> Result<Principal, ApiError> {
        let tenant = requested.unwrap_or_else(|| self.registry.default_tenant());
        let (verifier, revocation) = self.registry.verifier(&tenant, realm).ok_or_else(|| {
            unauthorized(format!(
                "no JWT realm {} for this tenant",
                realm.unwrap_or(realms::DEFAULT_REALM)
            ))
        })?;
        let claims = self
            .verified_tokens
            .verify(&verifier, token)
            .map_err(|err| {
                unauthorized(err.message()).with_details(json!({ "reason": err.code() }))
            })?;
        if let Some(claimed) = &claims.tenant
            && !self.registry.tenant_is(&tenant, claimed)
        {
            return Err(forbidden("this token was issued for another tenant".into()));
        }
        Ok(Principal {
            tenant,
            name: claims.sub.clone(),
            credential: Credential::Token(claims),
            revocation,
        })
    }

    /// The tenant's revocation token; an already cancelled one for a tenant
    /// that is gone.
    fn tenant_revocation(&self, tenant: &Uuid) -> CancellationToken {
        self.registry.tenant_token(tenant).unwrap_or_else(|| {
            let gone = CancellationToken::new();
            gone.cancel();
            gone
        })
    }

    /// The tenant the headers name: `x-tenantid`, else the Host's subdomain
    /// under the base domain; 400/404 when what they name is not a tenant.
    fn tenant_named_by(&self, headers: &HeaderMap) -> Result<Option<Uuid>, ApiError> {
        let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
        if let Some(text) = header(TENANT_HEADER) {
            return self.tenant_by_id(text).map(Some);
        }
        let (Some(base), Some(host)) = (&self.base_domain, header("host")) else {
            return Ok(None);
        };
        let host = host.split(':').next().unwrap_or("").to_ascii_lowercase();
        let Some(slug) = host
            .strip_suffix(base.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
        else {
            return Ok(None);
        };
        match self.registry.tenant_by_slug(slug) {
            Some(tenant) => Ok(Some(tenant.id)),
            None => Err(ApiError::not_found(format!("no tenant {slug}"))),
        }
    }

    /// The tenant named by its UUID (`x-tenantid`, or `?tenant=`); 400/404
    /// when it is not one.
    fn tenant_by_id(&self, text: &str) -> Result<Uuid, ApiError> {
        let id = Uuid::parse_str(text.trim())
            .map_err(|_| ApiError::validation("x-tenantid must be a tenant UUID"))?;
        if !self.registry.has_tenant(&id) {
            return Err(ApiError::not_found("no such tenant"));
        }
        Ok(id)
    }
}

/// Tenants' allowed origins for the HTTP layer's CORS: a request is judged
/// by the tenant it authenticated as, else the one its headers name, else
/// every tenant (see [`cors`]).
impl OriginPolicy for Authenticator {
    fn named_tenant(&self, headers: &HeaderMap) -> Option<Uuid> {
        self.tenant_named_by(headers).ok().flatten()
    }

    fn allows(&self, origin: &str, tenant: Option<Uuid>) -> bool {
        match tenant {
            Some(tenant) => self.registry.allows_origin(&tenant, origin),
            None => self.registry.any_allows_origin(origin),
        }
    }
}

/// Where a JWT in the `access_token` query parameter is taken.
#[derive(Clone, Copy)]
enum QueryToken {
    /// Only on a WebSocket handshake (a browser's WebSocket cannot send
    /// `Authorization`).
    WebSocketOnly,
    /// On any request of the route.
    Allowed,
}

/// The JWT in the `access_token` query parameter, where `query` takes one.
/// Query strings are never logged.
fn query_token(request: &Request, query: QueryToken) -> Option<String> {
    if matches!(query, QueryToken::WebSocketOnly)
        && !cors::is_websocket_handshake(request.headers())
    {
        return None;
    }
    request.query_param(WEBSOCKET_TOKEN_PARAM)
}

fn bearer_token(request: &Request) -> Option<&str> {
    bearer_in(request.headers())
}

/// The token of an `Authorization: Bearer` header.
fn bearer_in(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
