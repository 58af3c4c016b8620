//! Auth and tenancy against the real binary: tenants, scoped API keys,
//! revocation, cross-tenant refusal, JWT realms with independently minted
//! vectors, topic patterns, and streams that end when their token expires.

use crate::clients::{Admin, SseReader, topic_path};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::Duration;

/// Vectors minted by PyJWT (tests/vectors/make_jwt_vectors.py).
const VECTORS: &str = include_str!("../vectors/jwt.json");

async fn publish_with(server: &Server, headers: &[(&str, &str)], topic: &str) -> reqwest::Response {
    let mut request = server
        .http1()
        .post(server.url(&format!("/api/v1/topics/{}/events", topic_path(topic))))
        .json(&json!({ "type": "t", "data": 1 }));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn read_with(server: &Server, headers: &[(&str, &str)], topic: &str) -> reqwest::Response {
    let mut request = server
        .http1()
        .get(server.url(&format!("/api/v1/topics/{}/events", topic_path(topic))));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn tenants_are_managed_by_the_instance_admin() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let id = admin.create_tenant("acme").await;
    let duplicate = admin
        .call(
            reqwest::Method::POST,
            "/admin/v1/tenants",
            Some(json!({ "slug": "acme" })),
        )
        .await;
    assert_eq!(duplicate.status(), 409);
    let bad = admin
        .call(
            reqwest::Method::POST,
            "/admin/v1/tenants",
            Some(json!({ "slug": "Not A Slug" })),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let renamed = admin
        .call(
            reqwest::Method::PATCH,
            &format!("/admin/v1/tenants/{id}"),
            Some(json!({ "name": "Acme Inc" })),
        )
        .await;
    assert_eq!(json(renamed).await["data"]["name"], "Acme Inc");
    let by_slug = admin
        .call(reqwest::Method::GET, "/admin/v1/tenants/acme", None)
        .await;
    assert_eq!(json(by_slug).await["data"]["id"], id.as_str());
    let list = json(
        admin
            .call(reqwest::Method::GET, "/admin/v1/tenants", None)
            .await,
    )
    .await;
    let slugs: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["acme", "default"]);
    let default_delete = admin
        .call(reqwest::Method::DELETE, "/admin/v1/tenants/default", None)
        .await;
    assert_eq!(default_delete.status(), 409, "the default tenant stays");
    let (_, tenant_admin_key) = admin.create_key(&id, &["admin"]).await;
    let forbidden = server
        .http1()
        .get(server.url("/admin/v1/tenants"))
        .header("x-api-key", &tenant_admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        forbidden.status(),
        403,
        "a tenant admin key cannot list every tenant"
    );
    let own = server
        .http1()
        .get(server.url(&format!("/admin/v1/tenants/{id}/keys")))
        .header("x-api-key", &tenant_admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200, "but manages its own tenant");
    assert_eq!(
        admin
            .call(
                reqwest::Method::DELETE,
                &format!("/admin/v1/tenants/{id}"),
                None
            )
            .await
            .status(),
        200
    );
    assert_eq!(
        admin
            .call(
                reqwest::Method::GET,
                &format!("/admin/v1/tenants/{id}"),
                None
            )
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn api_keys_are_scoped_shown_once_revocable_and_bound_to_their_tenant() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    let (publish_id, publisher) = admin.create_key(&acme, &["publish"]).await;
    let (_, reader) = admin.create_key(&acme, &["read"]).await;
    assert!(publisher.starts_with("ek_") && publisher.len() > 60);

    let listed = json(
        admin
            .call(
                reqwest::Method::GET,
                &format!("/admin/v1/tenants/{acme}/keys"),
                None,
            )
            .await,
    )
    .await;
    let listed = listed.to_string();
    assert!(
        !listed.contains(&publisher) && !listed.contains("\"secret\""),
        "secrets are shown only at creation"
    );

    assert_eq!(
        publish_with(&server, &[("x-api-key", &publisher)], "news")
            .await
            .status(),
        201
    );
    assert_eq!(
        read_with(&server, &[("x-api-key", &publisher)], "news")
            .await
            .status(),
        403,
        "publish scope cannot read"
    );
    assert_eq!(
        publish_with(&server, &[("x-api-key", &reader)], "news")
            .await
            .status(),
        403,
        "read scope cannot publish"
    );
    let page = json(read_with(&server, &[("x-api-key", &reader)], "news").await).await;
    assert_eq!(page["data"]["events"].as_array().unwrap().len(), 1);

    // The same topic name on the default tenant is another topic.
    let default_page = json(read_with(&server, &[("x-api-key", &admin.key)], "news").await).await;
    assert_eq!(
        default_page["data"]["events"],
        json!([]),
        "tenants are isolated"
    );
    let default_id = json(
        admin
            .call(reqwest::Method::GET, "/admin/v1/tenants/default", None)
            .await,
    )
    .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let cross = read_with(
        &server,
        &[("x-api-key", &reader), ("x-tenantid", &default_id)],
        "news",
    )
    .await;
    assert_eq!(cross.status(), 403, "a key never reaches another tenant");
    assert_eq!(json(cross).await["error"]["code"], "FORBIDDEN");
    let malformed = read_with(
        &server,
        &[("x-api-key", &reader), ("x-tenantid", "nope")],
        "news",
    )
    .await;
    assert_eq!(malformed.status(), 400);

    let revoked = admin
        .call(
            reqwest::Method::DELETE,
            &format!("/admin/v1/tenants/{acme}/keys/{publish_id}"),
            None,
        )
        .await;
    assert!(json(revoked).await["data"]["revokedAt"].is_string());
    let after = publish_with(&server, &[("x-api-key", &publisher)], "news").await;
    assert_eq!(
        after.status(),
        401,
        "revocation takes effect on the next request"
    );
    assert_eq!(json(after).await["error"]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn keys_and_tenants_survive_a_restart() {
    let mut server = Server::start();
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    let (_, publisher) = admin.create_key(&acme, &["publish"]).await;
    assert!(server.stop().success());
    let again = Server::builder().data_dir(&server.data_dir).start();
    assert_eq!(
        publish_with(&again, &[("x-api-key", &publisher)], "t")
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn the_base_domain_subdomain_picks_the_tenant() {
    let server = Server::builder()
        .args(&["--base-domain", "example.test"])
        .start();
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    let published = publish_with(
        &server,
        &[("x-api-key", &admin.key), ("host", "acme.example.test")],
        "sub",
    )
    .await;
    assert_eq!(published.status(), 201);
    let page = json(
        read_with(
            &server,
            &[("x-api-key", &admin.key), ("x-tenantid", &acme)],
            "sub",
        )
        .await,
    )
    .await;
    assert_eq!(page["data"]["events"].as_array().unwrap().len(), 1);
    let unknown = publish_with(
        &server,
        &[("x-api-key", &admin.key), ("host", "ghost.example.test")],
        "sub",
    )
    .await;
    assert_eq!(unknown.status(), 404);
}

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

/// Installs the vectors' "all" policy as realm `vectors` of the default tenant.
async fn install_vector_realm(admin: &Admin<'_>) {
    let vectors = vectors();
    let keys: Vec<Value> = vectors["policies"]["all"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| vectors["keys"][name.as_str().unwrap()].clone())
        .collect();
    let body = json!({ "keys": keys, "leewaySeconds": 0 });
    let response = admin
        .call(
            reqwest::Method::PUT,
            "/admin/v1/tenants/default/realms/vectors",
            Some(body),
        )
        .await;
    assert_eq!(response.status(), 200);
    let shown = json(response).await.to_string();
    assert!(
        shown.contains("<secret>"),
        "HS256 secrets are never returned"
    );
}

#[tokio::test]
async fn independently_minted_tokens_are_accepted_or_refused_with_the_right_status() {
    let server = Server::start();
    let admin = Admin::new(&server);
    install_vector_realm(&admin).await;
    let mut checked = 0;
    for vector in vectors()["tokens"].as_array().unwrap() {
        if vector["policy"] != "all" {
            continue;
        }
        let bearer = format!("Bearer {}", vector["token"].as_str().unwrap());
        let response = read_with(
            &server,
            &[("authorization", &bearer), ("realmname", "vectors")],
            "orders/42",
        )
        .await;
        let name = vector["name"].as_str().unwrap();
        let status = response.status().as_u16();
        let body = json(response).await;
        if vector["expect"] == "ok" {
            let topics = vector["claims"]["topics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let allowed = topics.iter().any(|t| t == "*" || t == "orders/42")
                && vector["claims"]["tenant"].is_null();
            assert_eq!(
                status,
                if allowed { 200 } else { 403 },
                "{name}: valid token, {body}"
            );
        } else {
            assert_eq!(status, 401, "{name}: refused, {body}");
            assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{name}");
            let reason = if vector["error"] == "Expired" {
                "TOKEN_EXPIRED"
            } else {
                "TOKEN_INVALID"
            };
            assert_eq!(body["error"]["details"]["reason"], reason, "{name}");
        }
        checked += 1;
    }
    assert!(checked >= 35, "checked {checked} vectors");
    let unknown_realm = read_with(
        &server,
        &[("authorization", "Bearer x.y.z"), ("realmname", "nope")],
        "t",
    )
    .await;
    assert_eq!(unknown_realm.status(), 401);
}

fn mint(server: &Server, claims: Value) -> String {
    let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
    let secret = config["jwtRealms"][0]["hs256Secret"].as_str().unwrap();
    tidings::auth::jwt::mint_hs256(secret, &claims, None).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn tokens_read_only_the_topics_their_patterns_allow_and_never_publish() {
    let server = Server::start();
    let token = mint(
        &server,
        json!({ "sub": "user-1", "exp": unix_now() + 300, "topics": ["room/*"] }),
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        read_with(&server, &[("authorization", &bearer)], "room/7")
            .await
            .status(),
        200
    );
    assert_eq!(
        read_with(&server, &[("authorization", &bearer)], "other/7")
            .await
            .status(),
        403
    );
    assert_eq!(
        publish_with(&server, &[("authorization", &bearer)], "room/7")
            .await
            .status(),
        403
    );
    let mut ws_request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.url("/api/v1/topics/ws").replace("http://", "ws://"),
        )
        .unwrap();
    ws_request
        .headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_request).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    socket
        .send(
            json!({ "op": "subscribe", "topic": "other/1" })
                .to_string()
                .into(),
        )
        .await
        .unwrap();
    let reply: Value =
        serde_json::from_str(socket.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["code"], "FORBIDDEN");
}

#[tokio::test]
async fn streams_opened_with_a_token_end_when_it_expires() {
    let server = Server::start();
    let token = mint(
        &server,
        json!({ "sub": "user-2", "exp": unix_now() + 2, "topics": ["*"] }),
    );
    let response = server
        .http1()
        .get(server.url("/api/v1/topics/short/stream"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::connected(response).await;
    let started = std::time::Instant::now();
    let last = reader.next_event().await.unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(last.json()["code"], "TOKEN_EXPIRED");
    assert!(
        reader.next().await.is_none(),
        "the stream closes after TOKEN_EXPIRED"
    );
    assert!(started.elapsed() < Duration::from_secs(6));

    let token = mint(
        &server,
        json!({ "sub": "user-2", "exp": unix_now() + 2, "topics": ["*"] }),
    );
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            server.url("/api/v1/topics/ws").replace("http://", "ws://"),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    use futures_util::StreamExt;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(6), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => {
                break frame.unwrap();
            }
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 4001);
}
