//! The web console: a small hand-written single page (`assets/`: one HTML
//! file, one script, one style sheet; no framework, no build step), embedded
//! in the binary at compile time and served at `GET /console`,
//! `/console/app.js` and `/console/app.css`.
//!
//! The page signs in with the instance admin key or a tenant key with the
//! `admin` scope (kept in the tab's `sessionStorage`, sent as `X-API-Key`)
//! and does everything through the existing APIs (`/admin/v1`, the topics
//! and discussions routes): serving it grants nothing.
//!
//! Invariants: every asset answer carries a strict Content-Security-Policy
//! (scripts, styles and connections from this origin only, no inline code,
//! no framing, no forms posting anywhere), `X-Content-Type-Options: nosniff`,
//! `Referrer-Policy: no-referrer`, `Cache-Control: no-cache` and an `ETag`
//! (SHA-256 of the embedded bytes, so it changes with the build's assets);
//! a matching `If-None-Match` gets 304 without a body. The page inserts API
//! data as text only (`textContent`), never as markup.

use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Request, Response, response};
use http::{HeaderValue, Method, StatusCode, header};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The Content-Security-Policy of every console answer.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file and how it is served.
struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    /// Quoted, as sent in `ETag`.
    etag: HeaderValue,
}

impl Asset {
    fn new(bytes: &'static [u8], content_type: &'static str) -> Arc<Self> {
        let digest = Sha256::digest(bytes);
        let etag = format!("\"{}\"", crate::secret::hex(&digest[..16]));
        Arc::new(Self {
            bytes,
            content_type,
            etag: HeaderValue::from_str(&etag).expect("hex is a valid header value"),
        })
    }

    /// The asset, or 304 when the client holds this version.
    fn serve(&self, request: &Request) -> Response {
        let etag = self.etag.to_str().unwrap_or_default();
        let mut response = if request.if_none_match(etag) {
            response::with_content_type(StatusCode::NOT_MODIFIED, self.content_type, "")
        } else {
            response::with_content_type(StatusCode::OK, self.content_type, self.bytes)
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        for (name, value) in [
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-cache"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// Registers the console's three routes.
pub fn routes(router: &mut Router) {
    let assets = [
        (
            "/console",
            Asset::new(
                include_bytes!("assets/index.html"),
                "text/html; charset=utf-8",
            ),
        ),
        (
            "/console/app.js",
            Asset::new(
                include_bytes!("assets/app.js"),
                "text/javascript; charset=utf-8",
            ),
        ),
        (
            "/console/app.css",
            Asset::new(include_bytes!("assets/app.css"), "text/css; charset=utf-8"),
        ),
    ];
    for (path, asset) in assets {
        router.route_with(Method::GET, path, &asset, |asset, request| async move {
            Ok::<_, ApiError>(asset.serve(&request))
        });
    }
}
