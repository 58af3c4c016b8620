//! Write pacing on SSE and WebSocket streams: with `adaptive` pacing a quiet
//! stream's first event goes out at once and a busy one is held only briefly
//! at first; with the default pacing a burst arrives complete and in order.
//!
//! The longest hold is raised to 2 s here so that a wrongful hold is far
//! beyond the generous bound the tests allow (1 s from the publisher's
//! acknowledgement to the subscriber).

use crate::clients::{SseReader, WsClient, publish, publish_raw};
use crate::harness::Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Longest hold given to the server.
const LONGEST_HOLD: &str = "adaptive:2s";
/// A delivery later than this after its acknowledgement was held.
const NOT_HELD: Duration = Duration::from_secs(1);

/// A subscriber on either transport: the next event's id and data.
enum Subscriber {
    Sse(SseReader),
    Ws(Box<WsClient>),
}

impl Subscriber {
    async fn open(server: &Server, transport: &str, topic: &str) -> Self {
        if transport == "sse" {
            let mut reader = SseReader::open(server, &server.http1(), topic, None).await;
            assert_eq!(reader.next_event().await.unwrap().event, "connected");
            return Self::Sse(reader);
        }
        let mut ws = WsClient::connect(server).await;
        ws.send(json!({ "op": "subscribe", "topic": topic })).await;
        assert_eq!(ws.next_json().await["op"], "subscribed");
        Self::Ws(Box::new(ws))
    }

    async fn next(&mut self) -> (String, Value) {
        let event = match self {
            Self::Sse(reader) => reader.next_event().await.unwrap().json(),
            Self::Ws(ws) => {
                let frame = ws.next_json().await;
                assert_eq!(frame["op"], "event", "{frame}");
                frame["event"].clone()
            }
        };
        (
            event["id"].as_str().unwrap().to_string(),
            event["data"].clone(),
        )
    }
}

/// Publishes `data` and returns how long its delivery took after the acknowledgement.
async fn delivered_after_ack(
    server: &Server,
    subscriber: &mut Subscriber,
    topic: &str,
    data: &str,
) -> Duration {
    let id = publish(server, &server.http1(), topic, json!(data)).await;
    let acked = Instant::now();
    assert_eq!(subscriber.next().await, (id, json!(data)));
    acked.elapsed()
}

async fn quiet_and_busy_streams_are_not_held(transport: &str) {
    let server = Server::builder()
        .args(&["--stream-write-interval", LONGEST_HOLD])
        .start();
    let topic = format!("paced-{transport}");
    let mut subscriber = Subscriber::open(&server, transport, &topic).await;
    let first = delivered_after_ack(&server, &mut subscriber, &topic, "first").await;
    assert!(first < NOT_HELD, "the first event was held {first:?}");
    // Busy now (wrote a moment ago): held about a millisecond, not the longest hold.
    for step in 0..3 {
        let busy = delivered_after_ack(&server, &mut subscriber, &topic, "busy").await;
        assert!(busy < NOT_HELD, "busy write {step} was held {busy:?}");
    }
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let after_quiet = delivered_after_ack(&server, &mut subscriber, &topic, "after").await;
    assert!(
        after_quiet < NOT_HELD,
        "the first event after a quiet spell was held {after_quiet:?}"
    );
}

async fn a_burst_arrives_complete_and_in_order(transport: &str) {
    let server = Server::start();
    let topic = format!("burst-{transport}");
    let mut subscriber = Subscriber::open(&server, transport, &topic).await;
    const PUBLISHERS: usize = 4;
    const EACH: usize = 25;
    let publishers = (0..PUBLISHERS).map(|publisher| {
        let server = &server;
        let topic = topic.as_str();
        async move {
            let client = server.http1();
            let mut ids = Vec::new();
            for n in 0..EACH {
                ids.push(publish(server, &client, topic, json!([publisher, n])).await);
            }
            ids
        }
    });
    let batch: Vec<Value> = (0..50)
        .map(|n| json!({ "type": "test", "data": ["batch", n] }))
        .collect();
    let batch_publish = async {
        let response = publish_raw(
            &server,
            &server.http1(),
            &topic,
            &json!({ "events": batch }),
        )
        .await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let (per_publisher, batch_ids) =
        tokio::join!(futures_util::future::join_all(publishers), batch_publish);
    let mut expected: Vec<String> = per_publisher.into_iter().flatten().collect();
    expected.extend(batch_ids);
    expected.sort();
    let mut received = Vec::new();
    let mut next_of = [0_i64; PUBLISHERS];
    let mut next_batch = 0;
    while received.len() < expected.len() {
        let (id, data) = subscriber.next().await;
        if data[0] == "batch" {
            assert_eq!(data[1], next_batch, "batch events in order");
            next_batch += 1;
        } else {
            let publisher = data[0].as_u64().unwrap() as usize;
            assert_eq!(
                data[1], next_of[publisher],
                "publisher {publisher} in order"
            );
            next_of[publisher] += 1;
        }
        received.push(id);
    }
    assert!(
        received.windows(2).all(|pair| pair[0] < pair[1]),
        "delivered in id order"
    );
    assert_eq!(received, expected, "every acknowledged event, once");
}

#[tokio::test]
async fn sse_writes_quiet_and_lightly_busy_streams_at_once() {
    quiet_and_busy_streams_are_not_held("sse").await;
}

#[tokio::test]
async fn websocket_writes_quiet_and_lightly_busy_streams_at_once() {
    quiet_and_busy_streams_are_not_held("ws").await;
}

#[tokio::test]
async fn sse_burst_arrives_complete_and_in_order() {
    a_burst_arrives_complete_and_in_order("sse").await;
}

#[tokio::test]
async fn websocket_burst_arrives_complete_and_in_order() {
    a_burst_arrives_complete_and_in_order("ws").await;
}
