//! The WebSocket session runner with a protocol other than topics: a
//! session whose topics only the server sets, from its start and while it
//! is open (the debug route `/__test/ws-follow`, the shape of chat and
//! Socket.IO sessions).

use crate::clients::{WsClient, admin_key, publish};
use crate::harness::Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The `data` of the next event frame, skipping nothing else: any other
/// frame fails the test.
async fn next_event_data(ws: &mut WsClient) -> Value {
    let frame = ws.next_json().await;
    assert_eq!(frame["op"], "event", "{frame}");
    frame["event"]["data"].clone()
}

#[tokio::test]
async fn a_session_follows_topics_set_by_the_server_and_changes_them_while_open() {
    let server = Server::start();
    let client = server.http1();
    let mut ws = WsClient::connect_to(&server, "/__test/ws-follow?topics=room-a,room-b").await;
    // No client message: the server set the topics when the session opened.
    let hello = ws.next_json().await;
    assert_eq!(hello["op"], "session", "{hello}");
    assert_eq!(hello["following"], json!(["room-a", "room-b"]));
    let id = hello["id"].as_u64().unwrap();
    publish(&server, &client, "room-c", json!("not followed")).await;
    publish(&server, &client, "room-a", json!("a1")).await;
    assert_eq!(next_event_data(&mut ws).await, "a1");
    publish(&server, &client, "room-b", json!("b1")).await;
    assert_eq!(next_event_data(&mut ws).await, "b1");

    // A membership change: follow room-c, leave room-a, with no client message.
    let changed = client
        .post(server.url(&format!(
            "/__test/ws-follow/{id}?follow=room-c&unfollow=room-a"
        )))
        .header("x-api-key", admin_key(&server))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let following = ws.next_json().await;
    assert_eq!(following["op"], "following", "{following}");
    assert_eq!(following["topics"], json!(["room-b", "room-c"]));
    publish(&server, &client, "room-a", json!("a2 (left)")).await;
    publish(&server, &client, "room-c", json!("c1")).await;
    publish(&server, &client, "room-b", json!("b2")).await;
    assert_eq!(next_event_data(&mut ws).await, "c1");
    assert_eq!(next_event_data(&mut ws).await, "b2");
    assert_eq!(
        server
            .metric("tidings_open_streams{transport=\"ws\"}")
            .await,
        1.0
    );
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("tidings_hub_subscriptions").await != 0.0 {
        assert!(
            Instant::now() < deadline,
            "the session's subscriptions stayed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone = client
        .post(server.url(&format!("/__test/ws-follow/{id}?follow=room-a")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404, "an ended session takes no signal");
}

#[tokio::test]
async fn server_set_topics_obey_the_credential() {
    let server = Server::start();
    let url = server
        .url("/__test/ws-follow?topics=room-a")
        .replace("http://", "ws://");
    // No credential: refused before the upgrade.
    let refused = tokio_tungstenite::connect_async(url).await;
    assert!(
        refused.is_err(),
        "a session without a credential must be refused"
    );
}
