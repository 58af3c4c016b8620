//! The verified-token cache against the real binary: a token is verified
//! once and then answered from memory (hits in `/metrics`), yet a cached
//! token stops working exactly when an uncached one would: its realm's keys
//! replaced, its expiry passed, its realm or tenant deleted.

use crate::clients::{Admin, SseReader, unix_now};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SECRET: &str = "token-cache-realm-secret-0123456789abcdef";
const OTHER_SECRET: &str = "token-cache-other-secret-0123456789abcdef";
const HITS: &str = "tidings_jwt_cache_hits_total";
const MISSES: &str = "tidings_jwt_cache_misses_total";

/// Puts realm `name` of `tenant` with HS256 `secrets` and no leeway; asserts success.
async fn put_realm(server: &Server, tenant: &str, name: &str, secrets: &[&str]) {
    let keys: Vec<Value> = secrets
        .iter()
        .map(|secret| json!({ "kid": null, "algorithm": "HS256", "material": secret }))
        .collect();
    let response = Admin::new(server)
        .call(
            reqwest::Method::PUT,
            &format!("/admin/v1/tenants/{tenant}/realms/{name}"),
            Some(json!({ "keys": keys, "leewaySeconds": 0 })),
        )
        .await;
    let status = response.status();
    assert_eq!(status, 200, "{}", json(response).await);
}

fn mint(secret: &str, sub: &str, exp: u64) -> String {
    tidings::auth::jwt::mint_hs256(
        secret,
        &json!({ "sub": sub, "exp": exp, "topics": ["*"] }),
        None,
    )
    .unwrap()
}

/// A reader of topic `news` with `token` from realm `realm` of `tenant`.
struct Reader<'a> {
    server: &'a Server,
    client: reqwest::Client,
    headers: Vec<(&'static str, String)>,
}

impl<'a> Reader<'a> {
    /// Subject `a` of the default tenant's `viewers` realm, with a token
    /// valid for ten minutes.
    fn viewer(server: &'a Server) -> Self {
        Self::new(
            server,
            None,
            "viewers",
            &mint(SECRET, "a", unix_now() + 600),
        )
    }

    fn new(server: &'a Server, tenant: Option<&str>, realm: &str, token: &str) -> Self {
        let mut headers = vec![
            ("authorization", format!("Bearer {token}")),
            ("realmname", realm.to_string()),
        ];
        if let Some(tenant) = tenant {
            headers.push(("x-tenantid", tenant.to_string()));
        }
        Self {
            server,
            client: server.http1(),
            headers,
        }
    }

    fn with_headers(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        request
    }

    /// `GET` the topic's events: the status and the error envelope, if any.
    async fn read(&self) -> (u16, Value) {
        let request = self
            .client
            .get(self.server.url("/api/v1/topics/news/events?limit=1"));
        let response = self.with_headers(request).send().await.unwrap();
        let status = response.status().as_u16();
        (status, json(response).await)
    }

    /// Asserts `count` reads succeed.
    async fn read_ok(&self, count: usize) {
        for n in 0..count {
            let (status, body) = self.read().await;
            assert_eq!(status, 200, "read {n}: {body}");
        }
    }

    async fn stream(&self) -> SseReader {
        let request = self
            .client
            .get(self.server.url("/api/v1/topics/news/stream"))
            .header("accept", "text/event-stream");
        SseReader::connected(self.with_headers(request).send().await.unwrap()).await
    }
}

#[tokio::test]
async fn a_token_is_verified_once_and_then_answered_from_the_cache() {
    let server = Server::start();
    put_realm(&server, "default", "viewers", &[SECRET]).await;
    let token = mint(SECRET, "alice", unix_now() + 600);
    let reader = Reader::new(&server, None, "viewers", &token);
    reader.read_ok(50).await;
    let (hits, misses) = (server.metric(HITS).await, server.metric(MISSES).await);
    assert!(hits >= 49.0, "hits {hits}");
    assert!(misses <= 1.0, "misses {misses}");
}

#[tokio::test]
async fn a_cache_of_zero_entries_verifies_every_time() {
    let server = Server::builder()
        .args(&["--jwt-cache-entries", "0"])
        .start();
    put_realm(&server, "default", "viewers", &[SECRET]).await;
    let reader = Reader::viewer(&server);
    reader.read_ok(5).await;
    assert_eq!(server.metric(HITS).await, 0.0);
    assert_eq!(server.metric(MISSES).await, 0.0);
}

#[tokio::test]
async fn a_cached_token_is_refused_once_its_realm_no_longer_has_its_key() {
    let server = Server::start();
    put_realm(&server, "default", "viewers", &[SECRET]).await;
    let reader = Reader::viewer(&server);
    reader.read_ok(3).await;
    put_realm(&server, "default", "viewers", &[SECRET, OTHER_SECRET]).await;
    reader.read_ok(3).await;
    put_realm(&server, "default", "viewers", &[OTHER_SECRET]).await;
    let (status, body) = reader.read().await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["details"]["reason"], "TOKEN_INVALID");
    let other = Reader::new(
        &server,
        None,
        "viewers",
        &mint(OTHER_SECRET, "b", unix_now() + 600),
    );
    other.read_ok(1).await;
}

#[tokio::test]
async fn a_cached_token_is_refused_from_its_expiry_on() {
    let server = Server::start();
    put_realm(&server, "default", "viewers", &[SECRET]).await;
    let exp = unix_now() + 6;
    let reader = Reader::new(&server, None, "viewers", &mint(SECRET, "a", exp));
    reader.read_ok(5).await;
    assert!(server.metric(HITS).await >= 4.0, "the token was cached");
    let deadline = Instant::now() + Duration::from_secs(30);
    while unix_now() < exp {
        assert!(Instant::now() < deadline, "the clock did not reach exp");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = reader.read().await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["details"]["reason"], "TOKEN_EXPIRED");
}

#[tokio::test]
async fn deleting_the_realm_of_a_cached_token_refuses_it_and_ends_its_streams() {
    let server = Server::start();
    put_realm(&server, "default", "viewers", &[SECRET]).await;
    let reader = Reader::viewer(&server);
    reader.read_ok(3).await;
    let mut stream = reader.stream().await;
    let deleted = Admin::new(&server)
        .call(
            reqwest::Method::DELETE,
            "/admin/v1/tenants/default/realms/viewers",
            None,
        )
        .await;
    assert_eq!(deleted.status(), 200);
    let (status, body) = reader.read().await;
    assert_eq!(status, 401, "{body}");
    assert_stream_ends(&mut stream).await;
}

#[tokio::test]
async fn deleting_the_tenant_of_a_cached_token_refuses_it_and_ends_its_streams() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let tenant = admin.create_tenant("cached").await;
    put_realm(&server, &tenant, "default", &[SECRET]).await;
    let reader = Reader::new(
        &server,
        Some(&tenant),
        "default",
        &mint(SECRET, "a", unix_now() + 600),
    );
    reader.read_ok(3).await;
    let mut stream = reader.stream().await;
    let deleted = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/admin/v1/tenants/{tenant}"),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 200);
    let (status, body) = reader.read().await;
    assert_eq!(
        status, 404,
        "the tenant named by x-tenantid is gone: {body}"
    );
    assert_stream_ends(&mut stream).await;
}

/// The stream ends with `CREDENTIAL_REVOKED`, well before any timeout.
async fn assert_stream_ends(stream: &mut SseReader) {
    let last = tokio::time::timeout(Duration::from_secs(10), stream.next_event())
        .await
        .expect("the stream ends after the revocation")
        .expect("a final frame");
    assert_eq!(last.event, "error");
    assert_eq!(last.json()["code"], "CREDENTIAL_REVOKED");
    assert!(stream.next().await.is_none(), "the stream closes");
}

#[tokio::test]
async fn the_tenant_claim_is_checked_on_every_request_cached_or_not() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let tenant = admin.create_tenant("claimed").await;
    put_realm(&server, &tenant, "default", &[SECRET]).await;
    let exp = unix_now() + 600;
    let with_tenant = |claim: &str| {
        tidings::auth::jwt::mint_hs256(
            SECRET,
            &json!({ "sub": "a", "exp": exp, "topics": ["*"], "tenant": claim }),
            None,
        )
        .unwrap()
    };
    let by_id = Reader::new(&server, Some(&tenant), "default", &with_tenant(&tenant));
    by_id.read_ok(2).await;
    let upper = Reader::new(
        &server,
        Some(&tenant),
        "default",
        &with_tenant(&tenant.to_uppercase()),
    );
    assert_eq!(upper.read().await.0, 403, "the id as the API writes it");
    let by_slug = Reader::new(&server, Some(&tenant), "default", &with_tenant("claimed"));
    by_slug.read_ok(2).await;
    let renamed = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({ "slug": "renamed" })),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let (status, body) = by_slug.read().await;
    assert_eq!(
        status, 403,
        "the old slug no longer names the tenant: {body}"
    );
    by_id.read_ok(1).await;
}
