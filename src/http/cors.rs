//! CORS for browser-facing routes, done once for every route: preflights
//! answered here, `Access-Control-Allow-Origin` added to actual responses
//! (event streams and errors included), and the tenant slot through which
//! auth tells this layer which tenant a request authenticated as.
//!
//! Which origins are allowed is the tenants' business ([`OriginPolicy`],
//! answered by auth). A preflight carries no credentials, so it is judged by
//! the tenant the request names without them (the Host's subdomain under
//! `--base-domain`) or else by every tenant's list together; an actual
//! response by the tenant its credential was accepted for (recorded in
//! [`AuthenticatedTenant`]) or, when none was accepted (a 401, a 404 of an
//! unknown path), by the tenant its headers name or else every tenant.
//!
//! Invariants: `/admin/v1` and the probes are not browser-facing and get no
//! CORS headers; a response carries `Access-Control-Allow-Origin` (the
//! request's `Origin` echoed) only when that origin is allowed as above,
//! else none, and is otherwise unchanged (a request without `Origin`, from a
//! native client, is served exactly as before); every browser-facing
//! response carries `Vary: Origin`; no credentials mode (tokens travel in
//! headers or the query, never cookies), so `Access-Control-Allow-Credentials`
//! is never sent; WebSocket handshakes are not covered by CORS in browsers,
//! so auth refuses one from an origin the tenant does not allow
//! ([`websocket_origin`]).

use super::Response;
use super::response;
use super::service::PROBE_PATHS;
use crate::error::{ApiError, ErrorCode};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use uuid::Uuid;

/// Request headers a page may send (what browser-facing routes read).
/// `X-API-Key` is deliberately absent: API keys are server secrets; pages
/// use stream tickets or JWTs.
const ALLOWED_HEADERS: &str = "authorization, content-type, last-event-id, idempotency-key, x-tenantid, realmname, x-request-id";
/// Response headers a page may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: &str = "x-request-id, idempotent-replayed, retry-after, etag, allow";
/// Path prefix of the admin API (not browser-facing).
const ADMIN_PREFIX: &str = "/admin/";

/// Settings of the CORS layer.
#[derive(Debug, Clone, Copy)]
pub struct CorsSettings {
    /// How long a browser may cache a preflight answer (`--cors-max-age`).
    pub max_age: Duration,
}

/// Which origins tenants allow; answered by auth, which knows the tenants.
pub trait OriginPolicy: Send + Sync {
    /// The tenant a request names without credentials (the Host's subdomain
    /// under the base domain, an `x-tenantid` header), if any.
    fn named_tenant(&self, headers: &HeaderMap) -> Option<Uuid>;

    /// True when `tenant` allows a page on `origin`; for `None`, when some
    /// tenant does.
    fn allows(&self, origin: &str, tenant: Option<Uuid>) -> bool;
}

/// The tenant a request authenticated as, recorded by auth (first one
/// wins) and read here when the response is ready. Present in a request's
/// extensions only when the request came from a page (it has `Origin`).
#[derive(Debug, Clone, Default)]
pub struct AuthenticatedTenant(Arc<OnceLock<Uuid>>);

impl AuthenticatedTenant {
    /// Records the tenant whose credential the request was accepted for.
    pub fn record(&self, tenant: Uuid) {
        let _ = self.0.set(tenant);
    }

    fn get(&self) -> Option<Uuid> {
        self.0.get().copied()
    }
}

/// The `Origin` of a browser's WebSocket handshake (`Upgrade: websocket`
/// with an `Origin` header); `None` for other requests and native clients.
pub fn websocket_origin(headers: &HeaderMap) -> Option<&str> {
    if !is_websocket_handshake(headers) {
        return None;
    }
    headers.get(header::ORIGIN)?.to_str().ok()
}

/// True for a WebSocket handshake (`Upgrade: websocket`), where a browser
/// can set no header of its own.
pub fn is_websocket_handshake(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|value| {
        value.to_str().is_ok_and(|text| {
            text.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
        })
    })
}

/// A response without a body.
fn empty(status: StatusCode) -> Response {
    let mut answer = http::Response::new(response::full(bytes::Bytes::new()));
    *answer.status_mut() = status;
    answer
}

/// A request from a page on a browser-facing route.
pub(crate) struct PageRequest {
    origin: HeaderValue,
    preflight: bool,
    named_tenant: Option<Uuid>,
    authenticated: AuthenticatedTenant,
}

impl PageRequest {
    /// True for a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub(crate) fn is_preflight(&self) -> bool {
        self.preflight
    }
}

/// The CORS layer of the HTTP service.
pub struct Cors {
    policy: Arc<dyn OriginPolicy>,
    settings: CorsSettings,
}

impl Cors {
    /// CORS by `policy` with `settings`.
    pub fn new(policy: Arc<dyn OriginPolicy>, settings: CorsSettings) -> Self {
        Self { policy, settings }
    }

    /// True for routes pages may call: all but the admin API and the probes.
    fn is_browser_facing(path: &str) -> bool {
        !path.starts_with(ADMIN_PREFIX) && !PROBE_PATHS.contains(&path)
    }

    /// Sees a request before it is routed: for a page's request on a
    /// browser-facing route, puts the [`AuthenticatedTenant`] slot in its
    /// extensions and remembers what the response needs.
    pub(crate) fn inspect(&self, head: &mut http::request::Parts) -> Option<PageRequest> {
        if !Self::is_browser_facing(head.uri.path()) {
            return None;
        }
        let origin = head.headers.get(header::ORIGIN)?.clone();
        let authenticated = AuthenticatedTenant::default();
        head.extensions.insert(authenticated.clone());
        Some(PageRequest {
            origin,
            preflight: head.method == Method::OPTIONS
                && head
                    .headers
                    .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD),
            named_tenant: self.policy.named_tenant(&head.headers),
            authenticated,
        })
    }

    /// The answer to a preflight of a route accepting `methods`: 204 with
    /// the CORS headers when the origin is allowed, else 403 without them.
    pub(crate) fn preflight(&self, page: &PageRequest, methods: &str) -> Response {
        let Some(origin) = self.allowed_origin(page) else {
            let err = ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "no tenant here allows pages on {}; add the origin to the tenant's allowed \
                     origins (PUT /admin/v1/tenants/{{tenant}}/origins)",
                    String::from_utf8_lossy(page.origin.as_bytes())
                ),
            );
            return response::error(&err);
        };
        let mut answer = empty(StatusCode::NO_CONTENT);
        let headers = answer.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if let Ok(methods) = HeaderValue::from_str(methods) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
        }
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOWED_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.settings.max_age.as_secs()),
        );
        answer
    }

    /// Adds the CORS headers to the response of a request on `path`:
    /// `Vary: Origin` on every browser-facing route; for a page whose origin
    /// is allowed, `Access-Control-Allow-Origin` and the exposed headers.
    pub(crate) fn finish(&self, path: &str, page: Option<&PageRequest>, response: &mut Response) {
        if !Self::is_browser_facing(path) {
            return;
        }
        response
            .headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(page) = page else { return };
        if response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        {
            return;
        }
        if let Some(origin) = self.allowed_origin(page) {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED_HEADERS),
            );
        }
    }

    /// The page's origin when the tenant that judges it allows it.
    fn allowed_origin(&self, page: &PageRequest) -> Option<HeaderValue> {
        let origin = page.origin.to_str().ok()?;
        let tenant = page.authenticated.get().or(page.named_tenant);
        self.policy
            .allows(origin, tenant)
            .then(|| page.origin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tenant `a` allows `https://a.example`; tenant `b` allows nothing.
    struct TwoTenants {
        a: Uuid,
    }

    impl OriginPolicy for TwoTenants {
        fn named_tenant(&self, headers: &HeaderMap) -> Option<Uuid> {
            headers
                .get("x-tenantid")
                .and_then(|value| Uuid::parse_str(value.to_str().ok()?).ok())
        }

        fn allows(&self, origin: &str, tenant: Option<Uuid>) -> bool {
            origin == "https://a.example" && tenant.is_none_or(|tenant| tenant == self.a)
        }
    }

    fn cors(a: Uuid) -> Cors {
        Cors::new(
            Arc::new(TwoTenants { a }),
            CorsSettings {
                max_age: Duration::from_secs(600),
            },
        )
    }

    fn head(method: Method, path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut builder = http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn a_preflight_is_answered_for_an_allowed_origin_only() {
        let cors = cors(Uuid::new_v4());
        let mut allowed = head(
            Method::OPTIONS,
            "/api/v1/topics/t/events",
            &[
                ("origin", "https://a.example"),
                ("access-control-request-method", "POST"),
            ],
        );
        let page = cors.inspect(&mut allowed).expect("a page's request");
        assert!(page.is_preflight());
        let answer = cors.preflight(&page, "GET, POST, HEAD");
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        let headers = answer.headers();
        assert_eq!(headers["access-control-allow-origin"], "https://a.example");
        assert_eq!(headers["access-control-allow-methods"], "GET, POST, HEAD");
        assert_eq!(headers["access-control-max-age"], "600");
        assert!(
            headers["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .contains("authorization")
        );

        let mut foreign = head(
            Method::OPTIONS,
            "/api/v1/topics/t/events",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
        );
        let page = cors.inspect(&mut foreign).unwrap();
        let answer = cors.preflight(&page, "GET, POST, HEAD");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(!answer.headers().contains_key("access-control-allow-origin"));
    }

    #[test]
    fn an_actual_response_is_judged_by_the_authenticated_tenant() {
        let a = Uuid::new_v4();
        let cors = cors(a);
        let judged_as = |tenant: Option<Uuid>| {
            let mut request = head(
                Method::GET,
                "/api/v1/topics/t/stream",
                &[("origin", "https://a.example")],
            );
            let page = cors.inspect(&mut request).unwrap();
            if let Some(tenant) = tenant {
                request
                    .extensions
                    .get::<AuthenticatedTenant>()
                    .expect("the slot is in the extensions")
                    .record(tenant);
            }
            let mut response = empty(StatusCode::OK);
            cors.finish("/api/v1/topics/t/stream", Some(&page), &mut response);
            assert_eq!(response.headers()["vary"], "Origin");
            response
                .headers()
                .get("access-control-allow-origin")
                .map(|value| value.to_str().unwrap().to_string())
        };
        assert_eq!(judged_as(Some(a)).as_deref(), Some("https://a.example"));
        assert_eq!(judged_as(Some(Uuid::new_v4())), None, "another tenant");
        assert_eq!(
            judged_as(None).as_deref(),
            Some("https://a.example"),
            "unauthenticated: some tenant allows it"
        );
    }

    #[test]
    fn admin_probes_and_native_clients_are_left_alone() {
        let cors = cors(Uuid::new_v4());
        for path in ["/admin/v1/tenants", "/healthz", "/metrics"] {
            let mut request = head(Method::GET, path, &[("origin", "https://a.example")]);
            assert!(cors.inspect(&mut request).is_none());
            let mut response = empty(StatusCode::OK);
            cors.finish(path, None, &mut response);
            assert!(response.headers().is_empty(), "{path}");
        }
        let mut native = head(Method::GET, "/api/v1/time", &[]);
        assert!(cors.inspect(&mut native).is_none());
        assert!(native.extensions.get::<AuthenticatedTenant>().is_none());
    }

    #[test]
    fn only_a_browser_websocket_handshake_has_an_origin_to_check() {
        let headers = |pairs: &[(&str, &str)]| head(Method::GET, "/ws", pairs).headers;
        let browser = headers(&[("upgrade", "websocket"), ("origin", "https://a.example")]);
        assert_eq!(websocket_origin(&browser), Some("https://a.example"));
        assert_eq!(
            websocket_origin(&headers(&[("upgrade", "WebSocket")])),
            None
        );
        assert_eq!(
            websocket_origin(&headers(&[("origin", "https://a.example")])),
            None
        );
    }
}
