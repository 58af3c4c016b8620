//! Registry races and revocation against the real binary: concurrent admin
//! changes keep slugs unique and never leave a working key of a deleted
//! tenant; revoking a key or deleting a realm or tenant ends the streams
//! (SSE and WebSocket) that its credentials opened.

use crate::clients::{Admin, SseReader, admin_key};
use crate::harness::{Server, json};
use futures_util::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a revoked stream may take to end (the promise is about a second;
/// generous for a loaded machine, far below `--sse-lifetime`).
const REVOKED_WITHIN: Duration = Duration::from_secs(5);

async fn open_sse(server: &Server, headers: &[(&str, &str)]) -> SseReader {
    let mut request = server
        .http1()
        .get(server.url("/api/v1/topics/news/stream"))
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    SseReader::connected(request.send().await.unwrap()).await
}

async fn open_ws(
    server: &Server,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = server
        .url("/api/v1/topics/ws")
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let (socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket handshake");
    socket
}

/// Waits for the SSE stream to end with `CREDENTIAL_REVOKED` within [`REVOKED_WITHIN`].
async fn assert_sse_revoked(reader: &mut SseReader, since: Instant) {
    let last = tokio::time::timeout(REVOKED_WITHIN, reader.next_event())
        .await
        .expect("the stream ends after the revocation")
        .expect("a final frame");
    assert_eq!(last.event, "error");
    assert_eq!(last.json()["code"], "CREDENTIAL_REVOKED");
    assert!(
        reader.next().await.is_none(),
        "the stream closes after CREDENTIAL_REVOKED"
    );
    assert!(since.elapsed() < REVOKED_WITHIN);
}

/// Waits for the WebSocket close frame (1008) within [`REVOKED_WITHIN`].
async fn assert_ws_revoked(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) {
    let close = tokio::time::timeout(REVOKED_WITHIN, async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => break frame.expect("a close code"),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("the socket closes after the revocation");
    assert_eq!(u16::from(close.code), 1008);
    assert_eq!(close.reason.as_str(), "credential revoked");
}

#[tokio::test]
async fn concurrent_creates_of_one_slug_make_exactly_one_tenant() {
    const ATTEMPTS: usize = 32;
    let server = Server::start();
    let client = server.http1();
    let key = admin_key(&server);
    for round in 0..5 {
        // Open one connection per attempt first, so the creates arrive together.
        let warm = (0..ATTEMPTS).map(|_| client.get(server.url("/healthz")).send());
        for response in futures_util::future::join_all(warm).await {
            assert_eq!(response.unwrap().status(), 200);
        }
        let slug = format!("race-{round}");
        let attempts = (0..ATTEMPTS).map(|_| {
            client
                .post(server.url("/admin/v1/tenants"))
                .header("x-api-key", &key)
                .json(&json!({ "slug": slug }))
                .send()
        });
        let statuses: Vec<u16> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .map(|response| response.unwrap().status().as_u16())
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 201).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 409).count(),
            ATTEMPTS - 1,
            "{statuses:?}"
        );
        let list = json(
            Admin::new(&server)
                .call(reqwest::Method::GET, "/admin/v1/tenants", None)
                .await,
        )
        .await;
        let same = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["slug"] == slug.as_str())
            .count();
        assert_eq!(same, 1, "one tenant per slug");
    }
}

#[tokio::test]
async fn no_key_of_a_deleted_tenant_works_after_a_concurrent_delete_and_create() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let mut created = Vec::new();
    for round in 0..12 {
        let tenant = Admin::new(&server)
            .create_tenant(&format!("doomed-{round}"))
            .await;
        let keys_path = format!("/admin/v1/tenants/{tenant}/keys");
        let creates = (0..4).map(|_| {
            admin.call(
                reqwest::Method::POST,
                &keys_path,
                Some(json!({ "name": "k", "scopes": ["read"] })),
            )
        });
        let tenant_path = format!("/admin/v1/tenants/{tenant}");
        let delete = admin.call(reqwest::Method::DELETE, &tenant_path, None);
        let (responses, deleted) = tokio::join!(futures_util::future::join_all(creates), delete);
        assert_eq!(deleted.status(), 200);
        for response in responses {
            let status = response.status().as_u16();
            assert!(status == 201 || status == 404, "create key: {status}");
            if status == 201 {
                created.push(
                    json(response).await["data"]["secret"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    for secret in &created {
        let response = server
            .http1()
            .get(server.url("/api/v1/topics/news/events"))
            .header("x-api-key", secret)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            401,
            "a key of a deleted tenant must not work"
        );
    }
}

#[tokio::test]
async fn revoking_a_key_ends_its_sse_and_websocket_streams() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let (id, secret) = admin.create_key("default", &["read"]).await;
    let headers = [("x-api-key", secret.as_str())];
    let mut reader = open_sse(&server, &headers).await;
    let mut socket = open_ws(&server, &headers).await;
    Admin::new(&server).revoke_key("default", &id).await;
    let since = Instant::now();
    assert_sse_revoked(&mut reader, since).await;
    assert_ws_revoked(&mut socket).await;
    let again = server
        .http1()
        .get(server.url("/api/v1/topics/news/stream"))
        .header("x-api-key", &secret)
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.status(),
        401,
        "an EventSource retrying gets 401 and stops"
    );
}

#[tokio::test]
async fn deleting_a_tenant_ends_the_streams_of_its_keys_and_of_the_admin_on_it() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let tenant = admin.create_tenant("gone").await;
    let (_, secret) = admin.create_key(&tenant, &["read"]).await;
    let admin_secret = admin_key(&server);
    let mut by_key = open_sse(&server, &[("x-api-key", secret.as_str())]).await;
    let mut by_admin = open_sse(
        &server,
        &[
            ("x-api-key", admin_secret.as_str()),
            ("x-tenantid", tenant.as_str()),
        ],
    )
    .await;
    let mut socket = open_ws(&server, &[("x-api-key", secret.as_str())]).await;
    let mut untouched = open_sse(&server, &[("x-api-key", admin_secret.as_str())]).await;
    let deleted = Admin::new(&server)
        .call(
            reqwest::Method::DELETE,
            &format!("/admin/v1/tenants/{tenant}"),
            None,
        )
        .await;
    assert_eq!(deleted.status(), 200);
    let since = Instant::now();
    assert_sse_revoked(&mut by_key, since).await;
    assert_sse_revoked(&mut by_admin, since).await;
    assert_ws_revoked(&mut socket).await;
    let published = Admin::new(&server)
        .call(
            reqwest::Method::POST,
            "/api/v1/topics/news/events",
            Some(json!({ "type": "still", "data": 1 })),
        )
        .await;
    assert_eq!(published.status(), 201);
    assert_eq!(
        untouched.next_event().await.unwrap().event,
        "still",
        "other tenants' streams go on"
    );
}

#[tokio::test]
async fn deleting_a_realm_ends_the_streams_its_tokens_opened() {
    let server = Server::start();
    let secret = "a-realm-secret-of-at-least-32-bytes!!";
    let put = Admin::new(&server)
        .call(
            reqwest::Method::PUT,
            "/admin/v1/tenants/default/realms/partners",
            Some(json!({ "keys": [{ "kid": null, "algorithm": "HS256", "material": secret }] })),
        )
        .await;
    assert_eq!(put.status(), 200);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let token = tidings::auth::jwt::mint_hs256(
        secret,
        &json!({ "sub": "u1", "exp": exp, "topics": ["*"] }),
        None,
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("realmname", "partners"),
    ];
    let mut reader = open_sse(&server, &headers).await;
    let mut socket = open_ws(&server, &headers).await;
    let deleted = Admin::new(&server)
        .call(
            reqwest::Method::DELETE,
            "/admin/v1/tenants/default/realms/partners",
            None,
        )
        .await;
    assert_eq!(deleted.status(), 200);
    assert_sse_revoked(&mut reader, Instant::now()).await;
    assert_ws_revoked(&mut socket).await;
}

#[tokio::test]
async fn stored_strings_of_tenants_keys_and_realms_have_limits() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let huge = "n".repeat(900 * 1024);
    let refusals = [
        (
            "/admin/v1/tenants",
            reqwest::Method::POST,
            json!({ "slug": "big", "name": huge }),
            "name",
        ),
        (
            "/admin/v1/tenants/default/keys",
            reqwest::Method::POST,
            json!({ "name": huge, "scopes": ["read"] }),
            "name",
        ),
        (
            "/admin/v1/tenants/default/realms/big",
            reqwest::Method::PUT,
            json!({ "keys": [{ "kid": huge, "algorithm": "HS256", "material": "a-realm-secret-of-at-least-32-bytes!!" }] }),
            "kid",
        ),
        (
            "/admin/v1/tenants/default/realms/big",
            reqwest::Method::PUT,
            json!({ "keys": [{ "kid": null, "algorithm": "HS256", "material": "a-realm-secret-of-at-least-32-bytes!!" }], "issuer": huge }),
            "issuer",
        ),
    ];
    for (path, method, body, field) in refusals {
        let response = admin.call(method, path, Some(body)).await;
        assert_eq!(response.status(), 400, "{path} {field}");
        let body = json(response).await;
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
        assert!(body["error"]["details"]["maxBytes"].is_u64(), "{body}");
    }
}

#[tokio::test]
async fn a_rename_racing_a_delete_never_brings_the_tenant_back() {
    let server = Server::start();
    let admin = Admin::new(&server);
    for round in 0..12 {
        let tenant = Admin::new(&server)
            .create_tenant(&format!("renamed-{round}"))
            .await;
        let path = format!("/admin/v1/tenants/{tenant}");
        let rename = admin.call(
            reqwest::Method::PATCH,
            &path,
            Some(json!({ "name": "new name" })),
        );
        let delete = admin.call(reqwest::Method::DELETE, &path, None);
        let (renamed, deleted) = tokio::join!(rename, delete);
        assert_eq!(deleted.status(), 200);
        let status = renamed.status().as_u16();
        assert!(status == 200 || status == 404, "rename: {status}");
        let after = Admin::new(&server)
            .call(reqwest::Method::GET, &path, None)
            .await;
        assert_eq!(after.status(), 404, "a deleted tenant stays deleted");
    }
}
