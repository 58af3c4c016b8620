//! Cluster edges against the real binary: a writer publishing to one
//! `nats-server`, edges bootstrapped from it that serve SSE and WebSocket
//! from their replicas, forward writes, resume cursors across edges, restart
//! from their replica, follow key changes, catch up after NATS was down, and
//! exit (then refetch) when the stream lost a batch they need.
//! Skipped (with the reason printed) when `nats-server` cannot be had.

use crate::clients::{Admin, SseReader, WsClient, admin_key, all_ids, publish, publish_raw};
use crate::harness::{Server, json};
use crate::nats::{NatsCluster, connect, skip};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use tidings::cluster::record::{BatchRecord, SUBJECT};

/// How long an edge may take to catch up (generous: 2 shared cores).
const CATCH_UP: Duration = Duration::from_secs(20);

pub(crate) fn writer(nats: &NatsCluster) -> Server {
    Server::builder().args(&["--nats", &nats.urls()]).start()
}

/// An edge of `writer` on `nats`, in `data_dir` when given (else a fresh one).
pub(crate) fn edge(nats: &NatsCluster, writer: &Server, data_dir: Option<&Path>) -> Server {
    edge_with(nats, writer, data_dir, &[])
}

/// An edge as [`edge`] makes it, with more flags.
pub(crate) fn edge_with(
    nats: &NatsCluster,
    writer: &Server,
    data_dir: Option<&Path>,
    flags: &[&str],
) -> Server {
    let key = admin_key(writer);
    let mut builder = Server::builder().args(&[
        "--role",
        "edge",
        "--nats",
        &nats.urls(),
        "--writer",
        &writer.base,
        "--writer-key",
        &key,
    ]);
    builder = builder.args(flags);
    if let Some(dir) = data_dir {
        builder = builder.data_dir(dir);
    }
    builder.start()
}

/// Two ready edges of `writer`, with `flags`.
pub(crate) async fn two_edges(
    nats: &NatsCluster,
    writer: &Server,
    flags: &[&str],
) -> (Server, Server) {
    let (a, b) = (
        edge_with(nats, writer, None, flags),
        edge_with(nats, writer, None, flags),
    );
    ready(&a).await;
    ready(&b).await;
    (a, b)
}

/// Waits until the edge's `/readyz` is 200 and returns its `cluster` report.
pub(crate) async fn ready(edge: &Server) -> Value {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let response = edge.get("/readyz").await;
        let status = response.status();
        let body = json(response).await;
        if status == 200 {
            return body["data"]["cluster"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the edge never became ready: {body}; stderr:\n{}",
            edge.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the edge's history of `topic` is `expected`.
async fn converges(edge: &Server, topic: &str, expected: &[String]) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let ids = all_ids(edge, topic).await;
        if ids == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the edge holds {ids:?}, not {expected:?}; stderr:\n{}",
            edge.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `count` event ids from an SSE stream (past its `connected` frame).
async fn sse_ids(reader: &mut SseReader, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let frame = reader.next_event().await.expect("the stream goes on");
        if frame.event == "connected" {
            continue;
        }
        assert_ne!(frame.event, "reset", "no gap: {frame:?}");
        ids.push(frame.id.expect("an event id"));
    }
    ids
}

/// Reads `count` event ids from a WebSocket subscription.
async fn ws_ids(ws: &mut WsClient, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let message = ws.next_json().await;
        assert_eq!(message["op"], "event", "{message}");
        ids.push(message["event"]["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn subscribe(edge: &Server, topic: &str) -> WsClient {
    let mut ws = WsClient::connect(edge).await;
    ws.send(json!({ "op": "subscribe", "topic": topic })).await;
    assert_eq!(ws.next_json().await["op"], "subscribed");
    ws
}

#[tokio::test]
async fn edges_stream_every_write_once_in_order_and_read_their_own_forwarded_writes() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let early = publish(&writer, &writer.http1(), "e/1", json!("before the edges")).await;
    let edges = [edge(&nats, &writer, None), edge(&nats, &writer, None)];
    for edge in &edges {
        let cluster = ready(edge).await;
        assert_eq!(cluster["role"], "edge");
        assert_eq!(cluster["nats"], "connected");
        assert_eq!(cluster["writer"], "reachable");
    }
    let mut sse = Vec::new();
    let mut ws = Vec::new();
    for edge in &edges {
        sse.push(SseReader::open(edge, &edge.http1(), "e/1", Some(&early)).await);
        ws.push(subscribe(edge, "e/1").await);
    }
    let mut published = Vec::new();
    for n in 0..24 {
        let (node, through_edge) = match n % 3 {
            0 => (&writer, false),
            k => (&edges[k - 1], true),
        };
        let client = node.http1();
        let response = publish_raw(node, &client, "e/1", &json!({ "type": "t", "data": n })).await;
        assert_eq!(response.status(), 201);
        assert!(response.headers().get("tidings-replica-lag").is_none());
        let id = json(response).await["data"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        if through_edge {
            // Read-your-writes: the edge that forwarded it has it already.
            let ids = all_ids(node, "e/1").await;
            assert_eq!(ids.last(), Some(&id), "read back on the same edge");
        }
        published.push(id);
    }
    for (reader, socket) in sse.iter_mut().zip(ws.iter_mut()) {
        assert_eq!(sse_ids(reader, published.len()).await, published);
        assert_eq!(ws_ids(socket, published.len()).await, published);
    }
    let mut everything = vec![early];
    everything.extend(published);
    for edge in &edges {
        assert_eq!(all_ids(edge, "e/1").await, everything);
        assert!(edge.metric("tidings_cluster_applied_batches_total").await >= 24.0);
        assert!(edge.metric("tidings_cluster_replica_batch").await >= 24.0);
    }
    // Admin requests, reads included, are the writer's.
    let stats = Admin::new(&edges[0])
        .call(reqwest::Method::GET, "/admin/v1/stats", None)
        .await;
    assert_eq!(stats.status(), 200);
}

#[tokio::test]
async fn a_cursor_resumes_on_another_edge_after_its_edge_is_killed() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let mut first = edge(&nats, &writer, None);
    let second = edge(&nats, &writer, None);
    ready(&first).await;
    ready(&second).await;
    let client = writer.http1();
    let mut reader = SseReader::open(&first, &first.http1(), "r/1", None).await;
    let mut published = Vec::new();
    for n in 0..10 {
        published.push(publish(&writer, &client, "r/1", json!(n)).await);
    }
    let seen = sse_ids(&mut reader, 5).await;
    assert_eq!(seen, published[..5]);
    first.kill();
    for n in 10..15 {
        published.push(publish(&writer, &client, "r/1", json!(n)).await);
    }
    let mut resumed = SseReader::open(&second, &second.http1(), "r/1", Some(&seen[4])).await;
    assert_eq!(sse_ids(&mut resumed, 10).await, published[5..]);
    let last = publish(&writer, &client, "r/1", json!("live")).await;
    assert_eq!(sse_ids(&mut resumed, 1).await, [last]);
}

#[tokio::test]
async fn a_restarted_edge_continues_from_its_replica_without_a_second_bootstrap() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let client = writer.http1();
    let mut published = vec![publish(&writer, &client, "d/1", json!(0)).await];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("edge");
    let mut node = edge(&nats, &writer, Some(&data));
    assert!(
        node.stderr_once_it_contains("fetched the writer's data")
            .contains("fetched the writer's data")
    );
    ready(&node).await;
    converges(&node, "d/1", &published).await;
    node.stop();
    for n in 1..6 {
        published.push(publish(&writer, &client, "d/1", json!(n)).await);
    }
    let restarted = edge(&nats, &writer, Some(&data));
    ready(&restarted).await;
    converges(&restarted, "d/1", &published).await;
    assert!(
        !restarted.stderr().contains("fetched the writer's data"),
        "the restart used its replica: {}",
        restarted.stderr()
    );
}

#[tokio::test]
async fn keys_created_on_the_writer_work_on_an_edge_and_revoking_one_ends_its_stream() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let node = edge(&nats, &writer, None);
    ready(&node).await;
    let (id, secret) = Admin::new(&writer).create_key("default", &["read"]).await;
    let created = Instant::now();
    let stream = || {
        node.http1()
            .get(node.url("/api/v1/topics/k%2F1/stream"))
            .header("accept", "text/event-stream")
            .header("x-api-key", &secret)
            .send()
    };
    let response = loop {
        let response = stream().await.unwrap();
        if response.status() == 200 {
            break response;
        }
        assert_eq!(response.status(), 401);
        assert!(
            created.elapsed() < Duration::from_secs(1),
            "the key did not work on the edge within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut reader = SseReader::connected(response).await;
    Admin::new(&writer).revoke_key("default", &id).await;
    let last = tokio::time::timeout(Duration::from_secs(5), reader.next_event())
        .await
        .expect("the stream ends after the revocation")
        .expect("a final frame");
    assert_eq!(last.event, "error");
    assert_eq!(last.json()["code"], "CREDENTIAL_REVOKED");
    assert_eq!(stream().await.unwrap().status(), 401);
}

#[tokio::test]
async fn an_edge_started_while_nats_is_down_serves_its_replica_and_catches_up() {
    let Some(mut nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let client = writer.http1();
    let mut published = vec![publish(&writer, &client, "f/1", json!(0)).await];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("edge");
    let mut node = edge(&nats, &writer, Some(&data));
    ready(&node).await;
    converges(&node, "f/1", &published).await;
    node.stop();
    nats.nodes[0].kill();
    for n in 1..4 {
        published.push(publish(&writer, &client, "f/1", json!(n)).await);
    }
    let node = edge(&nats, &writer, Some(&data));
    assert_eq!(
        all_ids(&node, "f/1").await,
        published[..1],
        "the replica, served"
    );
    let waiting = node.get("/readyz").await;
    assert_eq!(waiting.status(), 503, "not caught up yet");
    assert_eq!(
        json(waiting).await["error"]["details"]["cluster"]["nats"],
        "disconnected"
    );
    nats.nodes[0].restart();
    nats.wait_ready().unwrap();
    ready(&node).await;
    converges(&node, "f/1", &published).await;
}

/// A stream that lost a batch it had acknowledged (here: a record one past
/// the next, published by hand) ends an edge with the operator's message
/// rather than leaving it stuck on a replica that can never follow; its
/// next start sees the hole and fetches a fresh copy from the writer.
#[tokio::test(flavor = "multi_thread")]
async fn an_edge_whose_stream_lost_its_next_batch_exits_and_refetches_at_its_next_start() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let client = writer.http1();
    let published = vec![publish(&writer, &client, "h/1", json!(0)).await];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("edge");
    let mut node = edge(&nats, &writer, Some(&data));
    ready(&node).await;
    converges(&node, "h/1", &published).await;
    let applied = ready(&node).await["appliedBatch"].as_u64().unwrap();
    let beyond = BatchRecord {
        number: applied + 2,
        ops: Vec::new(),
    };
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Tidings-Batch", beyond.number.to_string().as_str());
    let context = async_nats::jetstream::new(connect(&nats.urls()).await.unwrap());
    context
        .publish_with_headers(SUBJECT, headers, beyond.encode().into())
        .await
        .unwrap()
        .await
        .unwrap();

    let status = node.wait_exit(CATCH_UP);
    assert!(!status.success(), "the edge exits: {status:?}");
    let missing = format!(
        "lacks batch {} although it holds batch {}",
        applied + 1,
        applied + 2
    );
    let log = node.stderr_once_it_contains(&missing);
    assert!(log.contains(&missing), "{log}");

    let mut again = edge(&nats, &writer, Some(&data));
    for step in [
        "fetching a fresh copy from the writer",
        "fetched the writer's data",
    ] {
        let stderr = again.stderr_once_it_contains(step);
        assert!(stderr.contains(step), "{stderr}");
    }
    again.wait_exit(CATCH_UP);
}
