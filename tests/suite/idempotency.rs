//! Idempotent writes against the real binary: a retried publish, comment or
//! discussion with the same key writes once and replays the first reply
//! (same ids, `Idempotent-Replayed: true`), also concurrently, across a
//! restart and over WebSocket; another request with the key is refused;
//! keys are per tenant; records expire after `--idempotency-window`.

use crate::clients::{WsClient, admin_key, all_events, topic_path};
use crate::harness::Server;
use serde_json::{Value, json};
use std::time::Duration;

/// One reply: status, whether it was a replay, body.
#[derive(Debug)]
struct Reply {
    status: u16,
    replayed: bool,
    body: Value,
}

/// POSTs `body` to `path` with the admin key, an optional idempotency key
/// and extra headers.
async fn post(
    server: &Server,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &Value,
) -> Reply {
    let mut request = server
        .http1()
        .post(server.url(path))
        .header("x-api-key", admin_key(server))
        .json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let replayed = match response.headers().get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    };
    let body = response.json().await.unwrap();
    Reply {
        status,
        replayed,
        body,
    }
}

fn events_path(topic: &str) -> String {
    format!("/api/v1/topics/{}/events", topic_path(topic))
}

/// Publishes `body` to `topic` with `key` as the admin key.
async fn publish(server: &Server, topic: &str, key: &str, body: &Value) -> Reply {
    post(server, &events_path(topic), Some(key), &[], body).await
}

#[tokio::test]
async fn a_retried_publish_replays_its_ids_and_history_holds_one_copy() {
    let server = Server::start();
    let event = json!({ "type": "order", "data": { "n": 1 } });
    let first = publish(&server, "orders", "retry-1", &event).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    assert!(!first.replayed);
    let retry = publish(&server, "orders", "retry-1", &event).await;
    assert_eq!(retry.status, 201);
    assert!(retry.replayed, "a retry says it is a replay");
    assert_eq!(retry.body, first.body, "same body, id included");

    let batch = json!({ "events": [event.clone(), { "type": "order", "data": { "n": 2 } }] });
    let first_batch = publish(&server, "orders", "batch-1", &batch).await;
    assert_eq!(first_batch.status, 201);
    let retry_batch = publish(&server, "orders", "batch-1", &batch).await;
    assert!(retry_batch.replayed);
    assert_eq!(retry_batch.body, first_batch.body);

    let without_key = post(&server, &events_path("orders"), None, &[], &event).await;
    assert!(!without_key.replayed);
    assert_ne!(without_key.body["data"]["id"], first.body["data"]["id"]);
    assert_eq!(
        all_events(&server, "orders").await.len(),
        4,
        "1 + 2 + 1 events"
    );
}

#[tokio::test]
async fn concurrent_duplicates_write_once() {
    let server = Server::start();
    let event = json!({ "type": "payment", "data": { "amount": 10 } });
    let attempts = (0..16).map(|_| publish(&server, "payments", "pay-42", &event));
    let replies = futures_util::future::join_all(attempts).await;
    let first_id = &replies[0].body["data"]["id"];
    for reply in &replies {
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        assert_eq!(&reply.body["data"]["id"], first_id);
    }
    assert_eq!(replies.iter().filter(|reply| !reply.replayed).count(), 1);
    assert_eq!(all_events(&server, "payments").await.len(), 1);
}

#[tokio::test]
async fn a_replay_survives_a_restart() {
    let mut server = Server::start();
    let event = json!({ "type": "order", "data": {} });
    let first = publish(&server, "orders", "before-restart", &event).await;
    assert_eq!(first.status, 201);
    assert!(server.stop().success());
    let data_dir = server.data_dir.clone();
    let server = Server::builder().data_dir(&data_dir).start();
    let retry = publish(&server, "orders", "before-restart", &event).await;
    assert!(retry.replayed);
    assert_eq!(retry.body, first.body);
    assert_eq!(all_events(&server, "orders").await.len(), 1);
}

#[tokio::test]
async fn another_request_with_a_used_key_is_refused_and_bad_keys_are_400() {
    let server = Server::start();
    let event = json!({ "type": "order", "data": { "n": 1 } });
    assert_eq!(publish(&server, "orders", "k", &event).await.status, 201);
    let other_body = json!({ "type": "order", "data": { "n": 2 } });
    for (topic, body) in [("orders", &other_body), ("invoices", &event)] {
        let refused = publish(&server, topic, "k", body).await;
        assert_eq!(refused.status, 409, "{:?}", refused.body);
        assert_eq!(refused.body["error"]["code"], "CONFLICT");
        assert_eq!(refused.body["error"]["details"]["idempotencyKey"], "k");
    }
    assert_eq!(all_events(&server, "orders").await.len(), 1);
    assert!(all_events(&server, "invoices").await.is_empty());

    let too_long = "x".repeat(256);
    for bad in ["", too_long.as_str(), "tab\there"] {
        let refused = publish(&server, "orders", bad, &event).await;
        assert_eq!(refused.status, 400, "key {bad:?}: {:?}", refused.body);
        assert_eq!(refused.body["error"]["code"], "VALIDATION_ERROR");
    }
    let longest = "y".repeat(255);
    assert_eq!(
        publish(&server, "orders", &longest, &event).await.status,
        201
    );

    // A write that fails validation records nothing: fixed, it goes through.
    let invalid = publish(&server, "orders", "fix-me", &json!({ "type": "" })).await;
    assert_eq!(invalid.status, 400, "{:?}", invalid.body);
    let fixed = publish(&server, "orders", "fix-me", &event).await;
    assert_eq!(fixed.status, 201);
    assert!(!fixed.replayed);
    assert_eq!(all_events(&server, "orders").await.len(), 3);
}

#[tokio::test]
async fn tenants_and_api_keys_never_share_idempotency_keys() {
    let server = Server::start();
    let created = post(
        &server,
        "/admin/v1/tenants",
        None,
        &[],
        &json!({ "slug": "acme" }),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let acme = created.body["data"]["id"].as_str().unwrap().to_string();
    let event = json!({ "type": "order", "data": {} });
    let path = events_path("orders");
    let default = post(&server, &path, Some("shared"), &[], &event).await;
    let other = post(
        &server,
        &path,
        Some("shared"),
        &[("x-tenantid", &acme)],
        &event,
    )
    .await;
    assert_eq!((default.status, other.status), (201, 201));
    assert!(
        !other.replayed,
        "one tenant's key never answers another's request"
    );
    assert_ne!(default.body["data"]["id"], other.body["data"]["id"]);
    let acme_retry = post(
        &server,
        &path,
        Some("shared"),
        &[("x-tenantid", &acme)],
        &event,
    )
    .await;
    assert!(acme_retry.replayed, "within its tenant the key replays");
    assert_eq!(acme_retry.body, other.body);

    let key = post(
        &server,
        "/admin/v1/tenants/default/keys",
        None,
        &[],
        &json!({ "name": "publisher", "scopes": ["publish", "read"] }),
    )
    .await;
    assert_eq!(key.status, 201, "{:?}", key.body);
    let secret = key.body["data"]["secret"].as_str().unwrap();
    let response = server
        .http1()
        .post(server.url(&path))
        .header("x-api-key", secret)
        .header("idempotency-key", "shared")
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(
        response.headers().get("idempotent-replayed").is_none(),
        "another credential of the tenant has its own keys"
    );
    assert_eq!(all_events(&server, "orders").await.len(), 2);
    let acme_history = server
        .http1()
        .get(server.url(&path))
        .header("x-api-key", admin_key(&server))
        .header("x-tenantid", &acme)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(acme_history["data"]["events"].as_array().unwrap().len(), 1);
}

/// GETs `path` with the admin key; the JSON body.
async fn admin_get(server: &Server, path: &str) -> Value {
    server
        .http1()
        .get(server.url(path))
        .header("x-api-key", admin_key(server))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_discussion_and_a_comment_created_twice_with_one_key_exist_once() {
    let server = Server::start();
    let discussion =
        json!({ "externalId": "article-1", "title": "An article", "idempotencyKey": "d-1" });
    let first = post(&server, "/api/v1/discussions", None, &[], &discussion).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let retry = post(
        &server,
        "/api/v1/discussions",
        Some("d-1"),
        &[],
        &discussion,
    )
    .await;
    assert_eq!(
        retry.status, 201,
        "a retry is not the 409 of a taken externalId"
    );
    assert!(retry.replayed);
    assert_eq!(retry.body, first.body);
    let id = first.body["data"]["id"].as_str().unwrap();

    let comments = format!("/api/v1/discussions/{id}/comments");
    let reader = [("x-external-user-id", "reader-1")];
    let comment = json!({ "body": "First!" });
    let posted = post(&server, &comments, Some("c-1"), &reader, &comment).await;
    assert_eq!(posted.status, 201, "{:?}", posted.body);
    let again = post(&server, &comments, Some("c-1"), &reader, &comment).await;
    assert!(again.replayed);
    assert_eq!(again.body["data"]["id"], posted.body["data"]["id"]);
    let as_field = json!({ "body": "First!", "idempotencyKey": "c-1" });
    let field_retry = post(&server, &comments, None, &reader, &as_field).await;
    assert!(field_retry.replayed, "the body field is the same key");
    let other_reader = [("x-external-user-id", "reader-2")];
    let refused = post(&server, &comments, Some("c-1"), &other_reader, &comment).await;
    assert_eq!(refused.status, 409, "the key was used for another reader");

    let listed = admin_get(&server, &comments).await;
    let items = listed["data"]["comments"]
        .as_array()
        .unwrap_or_else(|| panic!("a comment page: {listed}"));
    assert_eq!(items.len(), 1, "{listed}");
    let record = admin_get(&server, &format!("/api/v1/discussions/{id}")).await;
    assert_eq!(record["data"]["commentCount"], 1, "{record}");

    // A retried reaction toggle replays instead of toggling back.
    let comment_id = posted.body["data"]["id"].as_str().unwrap();
    let reactions = format!("{comments}/{comment_id}/reactions");
    let like = json!({ "reaction": "like" });
    let liked = post(&server, &reactions, Some("r-1"), &reader, &like).await;
    assert_eq!(liked.status, 200, "{:?}", liked.body);
    let liked_again = post(&server, &reactions, Some("r-1"), &reader, &like).await;
    assert!(liked_again.replayed);
    assert_eq!(liked_again.body["data"]["active"], true);
    assert_eq!(liked_again.body["data"]["count"], 1);
    let comment = admin_get(&server, &format!("{comments}/{comment_id}")).await;
    assert_eq!(comment["data"]["reactions"]["like"], 1, "{comment}");

    let mismatch = json!({ "body": "x", "idempotencyKey": "c-2" });
    let refused = post(&server, &comments, Some("c-3"), &reader, &mismatch).await;
    assert_eq!(
        refused.status, 400,
        "header and field differ: {:?}",
        refused.body
    );
}

#[tokio::test]
async fn a_websocket_publish_retried_with_its_key_writes_once() {
    let server = Server::start();
    let message = json!({
        "op": "publish", "topic": "chat", "type": "message",
        "data": { "text": "hi" }, "idempotencyKey": "ws-1", "ref": 1
    });
    let mut socket = WsClient::connect(&server).await;
    socket.send(message.clone()).await;
    let first = socket.next_json().await;
    assert_eq!(first["op"], "published", "{first}");
    assert_eq!(first.get("replayed"), None);
    drop(socket);

    let mut socket = WsClient::connect(&server).await;
    let mut retry_message = message.clone();
    retry_message["ref"] = json!(2);
    socket.send(retry_message).await;
    let retry = socket.next_json().await;
    assert_eq!(retry["op"], "published", "{retry}");
    assert_eq!(retry["replayed"], true);
    assert_eq!(retry["ref"], 2);
    assert_eq!(retry["event"], first["event"]);

    let mut other = message.clone();
    other["data"] = json!({ "text": "bye" });
    socket.send(other).await;
    let refused = socket.next_json().await;
    assert_eq!(refused["op"], "error", "{refused}");
    assert_eq!(refused["code"], "CONFLICT");

    let over_rest = publish(
        &server,
        "chat",
        "ws-1",
        &json!({ "type": "message", "data": { "text": "hi" } }),
    )
    .await;
    assert!(
        over_rest.replayed,
        "the same publish over REST is the same operation"
    );
    assert_eq!(over_rest.body["data"], first["event"]);
    assert_eq!(all_events(&server, "chat").await.len(), 1);
    assert_eq!(
        server.metric("tidings_idempotent_replays_total").await,
        2.0,
        "the WebSocket and the REST replay are counted"
    );
}

#[tokio::test]
async fn keys_expire_after_the_window_and_the_pruner_removes_them() {
    let server = Server::builder()
        .args(&["--idempotency-window", "1s", "--prune-interval", "200ms"])
        .start();
    let event = json!({ "type": "order", "data": {} });
    let first = publish(&server, "orders", "short-lived", &event).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !server
        .stderr()
        .contains("removed expired idempotency records")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the pruner never removed the record; stderr:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let later = publish(&server, "orders", "short-lived", &event).await;
    assert_eq!(later.status, 201);
    assert!(!later.replayed, "an expired key writes again");
    assert_ne!(later.body["data"]["id"], first.body["data"]["id"]);
    assert_eq!(all_events(&server, "orders").await.len(), 2);
}

#[test]
fn a_window_under_a_second_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stderr) = Server::builder()
        .data_dir(&dir.path().join("data"))
        .args(&["--idempotency-window", "0s"])
        .start_expecting_failure();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--idempotency-window"), "{stderr}");
}
