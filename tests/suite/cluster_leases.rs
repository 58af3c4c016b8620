//! Stream tickets and per-user stream limits across a cluster: edges lease
//! ticket sessions and user slots from the writer. A ticket's first use
//! happens once cluster-wide, a user's streams are counted over every node,
//! and a killed edge's leases expire so its users may connect elsewhere.
//! Also a write made on an edge outside a forwarded request: a WebSocket
//! publish goes to the writer as the key that made it.
//! Skipped (with the reason printed) when `nats-server` cannot be had.

use crate::clients::{Admin, WsClient, all_ids, mint_ticket, ticket_stream_url};
use crate::cluster_edge::{edge, ready, two_edges};
use crate::harness::Server;
use crate::nats::{NatsCluster, skip};
use crate::socketio::{SOCKETIO, open_polling, polling_url};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The writer's `--lease-expiry` in these tests (its least).
const EXPIRY: &str = "6s";
/// That expiry plus the writer's sweep period (`auth::leases`).
const LEASE_EXPIRY: Duration = Duration::from_secs(7);
/// How often an edge renews its leases (`auth::leases::RENEW_PERIOD`).
const RENEW_PERIOD: Duration = Duration::from_secs(3);

fn writer_with_limit(nats: &NatsCluster, per_user: &str) -> Server {
    Server::builder()
        .args(&["--nats", &nats.urls(), "--max-streams-per-user", per_user])
        .args(&["--lease-expiry", EXPIRY])
        .start()
}

/// Opens `topic`'s stream on `node` with `ticket`; the response (held open
/// while it lives).
async fn open(node: &Server, topic: &str, ticket: &str) -> reqwest::Response {
    node.http1()
        .get(ticket_stream_url(node, topic, ticket))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_ticket_first_used_on_one_edge_is_not_usable_on_another_edge_nor_the_writer() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer_with_limit(&nats, "5");
    let (a, b) = two_edges(&nats, &writer, &[]).await;
    let ticket = mint_ticket(&writer, "l/1", "viewer-1").await;
    let held = open(&a, "l/1", &ticket).await;
    assert_eq!(held.status(), 200, "{}", a.stderr());
    for node in [&b, &writer] {
        let refused = open(node, "l/1", &ticket).await;
        assert_eq!(refused.status(), 409, "the session is open on edge A");
    }
    // Concurrent first uses of a fresh ticket on both edges: exactly one wins.
    let fresh = mint_ticket(&writer, "l/1", "viewer-2").await;
    let (on_a, on_b) = tokio::join!(open(&a, "l/1", &fresh), open(&b, "l/1", &fresh));
    let mut statuses = [on_a.status().as_u16(), on_b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    drop(held);
}

#[tokio::test]
async fn a_user_at_the_limit_across_two_edges_is_refused_a_third_stream() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer_with_limit(&nats, "2");
    let (a, b) = two_edges(&nats, &writer, &[]).await;
    let mut tickets = Vec::new();
    for _ in 0..4 {
        tickets.push(mint_ticket(&writer, "l/2", "same-user").await);
    }
    let first = open(&a, "l/2", &tickets[0]).await;
    let second = open(&b, "l/2", &tickets[1]).await;
    assert_eq!([first.status(), second.status()], [200, 200]);
    let third = open(&a, "l/2", &tickets[2]).await;
    assert_eq!(third.status(), 429, "the user holds 2 streams over 2 edges");
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(open(&writer, "l/2", &tickets[2]).await.status(), 429);
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let retried = open(&b, "l/2", &tickets[3]).await;
        if retried.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a closed stream's lease is released at once"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first);
}

#[tokio::test]
async fn killing_an_edge_frees_its_users_slots_after_the_lease_expiry() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer_with_limit(&nats, "1");
    let (mut a, b) = two_edges(&nats, &writer, &[]).await;
    let first = mint_ticket(&writer, "l/3", "one-stream").await;
    let second = mint_ticket(&writer, "l/3", "one-stream").await;
    let held = open(&a, "l/3", &first).await;
    assert_eq!(held.status(), 200);
    // Past a renewal, the lease still holds the slot.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(open(&b, "l/3", &second).await.status(), 429);
    a.kill();
    let killed = Instant::now();
    drop(held);
    loop {
        let status = open(&b, "l/3", &second).await.status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            killed.elapsed() < LEASE_EXPIRY + Duration::from_secs(3),
            "the dead edge's lease did not expire in time"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let freed = killed.elapsed();
    println!("slot freed {freed:?} after the edge was killed");
    assert!(
        freed >= LEASE_EXPIRY - RENEW_PERIOD - Duration::from_secs(1),
        "freed by expiry, not before: {freed:?}"
    );
}

#[test]
fn a_lease_expiry_under_two_renewals_or_a_zero_cap_is_refused_at_start() {
    for (flag, value, reason) in [
        ("--lease-expiry", "5s", "--lease-expiry 5s: at least 6s"),
        ("--max-leases", "0", "--max-leases: at least 1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(crate::harness::binary())
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .args(["--nats", "nats://127.0.0.1:1", flag, value])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
    }
}

#[tokio::test]
async fn a_websocket_publish_on_an_edge_goes_to_the_writer_as_its_key() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer_with_limit(&nats, "5");
    let node = edge(&nats, &writer, None);
    ready(&node).await;
    let admin = Admin::new(&writer);
    let (_, publisher) = admin.create_key("default", &["publish", "read"]).await;
    let (_, reader) = admin.create_key("default", &["read"]).await;
    // Keys reach the edge within a second (cluster_edge tests that).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let path = "/api/v1/topics/ws";
    let mut ws = WsClient::connect_with_key(&node, path, &publisher).await;
    ws.send(json!({ "op": "subscribe", "topic": "w/1" })).await;
    assert_eq!(ws.next_json().await["op"], "subscribed");
    let event = json!({ "op": "publish", "topic": "w/1", "type": "t", "data": 1,
                        "idempotencyKey": "k-1", "ref": 7 });
    ws.send(event.clone()).await;
    let (published, delivered) = published_and_delivered(&mut ws).await;
    assert_eq!(published["ref"], 7);
    assert_eq!(published["event"]["actor"]["name"], "key-publish-read");
    let id = published["event"]["id"].as_str().unwrap().to_string();
    assert_eq!(delivered["event"]["id"], id.as_str());
    assert_eq!(all_ids(&writer, "w/1").await, std::slice::from_ref(&id));
    // A retry replays the writer's recorded answer.
    ws.send(event).await;
    let replayed = ws.next_json().await;
    assert_eq!(replayed["replayed"], true, "{replayed}");
    assert_eq!(replayed["event"]["id"], id.as_str());
    // The writer's refusals come back as on a single node.
    let mut read_only = WsClient::connect_with_key(&node, path, &reader).await;
    read_only
        .send(json!({ "op": "publish", "topic": "w/1", "type": "t", "data": 2 }))
        .await;
    assert_eq!(read_only.next_json().await["code"], "FORBIDDEN");
    ws.send(
        json!({ "op": "publish", "topic": "w/1", "type": "t", "data": 3,
                    "idempotencyKey": "k-1" }),
    )
    .await;
    let reused = ws.next_json().await;
    assert_eq!(reused["op"], "error", "{reused}");
    assert_eq!(all_ids(&writer, "w/1").await, [id]);
}

/// The `published` answer and the subscription's `event`, in either order.
async fn published_and_delivered(ws: &mut WsClient) -> (Value, Value) {
    let (mut published, mut delivered) = (Value::Null, Value::Null);
    while published.is_null() || delivered.is_null() {
        let frame = ws.next_json().await;
        match frame["op"].as_str() {
            Some("published") => published = frame,
            Some("event") => delivered = frame,
            _ => panic!("unexpected frame {frame}"),
        }
    }
    (published, delivered)
}

#[tokio::test]
async fn a_polling_session_is_its_edges_and_another_edge_answers_unknown_sid() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer_with_limit(&nats, "5");
    let (a, b) = two_edges(&nats, &writer, &[]).await;
    let sid = open_polling(&a, SOCKETIO).await;
    // On its own edge the session goes on (a POST stays there, not forwarded).
    let posted = a
        .http1()
        .post(polling_url(&a, SOCKETIO, Some(&sid)))
        .body("40")
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    for request in [
        b.http1().get(polling_url(&b, SOCKETIO, Some(&sid))),
        b.http1()
            .post(polling_url(&b, SOCKETIO, Some(&sid)))
            .body("40"),
    ] {
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 400);
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body, json!({ "code": 1, "message": "Session ID unknown" }));
    }
}
