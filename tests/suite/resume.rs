//! Exact resume: a stream that has seen no event yet resumes from the moment
//! it connected (SSE `connected` carries `id:`, the WebSocket `subscribed`
//! acknowledgement carries `position`); many subscribers resuming from the
//! same place at once; rings bounded by bytes.

use crate::clients::{
    SseReader, WsClient, all_ids, discussion_post, mint_ticket, publish, publish_raw,
    ticket_stream_url,
};
use crate::eventsource::EventSourceClient;
use crate::harness::Server;
use serde_json::{Value, json};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The next event of the Node client, checked to be `event_type`.
#[track_caller]
fn expect(client: &EventSourceClient, event_type: &str) -> Value {
    let event = client.next_event(WAIT);
    assert_eq!(event["type"], event_type, "{event}");
    event
}

/// A server that cycles SSE connections after 2 s and has clients wait 2 s
/// before reconnecting: publishing right after `connection-timeout` lands
/// while the client is away.
fn cycling_server() -> Server {
    Server::builder()
        .args(&["--sse-lifetime", "2s", "--sse-retry-ms", "2000"])
        .start()
}

#[tokio::test]
async fn a_quiet_topic_stream_misses_nothing_published_while_it_reconnects() {
    let server = cycling_server();
    let client = server.http1();
    let topic = "quiet/topic";
    let ticket = mint_ticket(&server, topic, "v1").await;
    let url = ticket_stream_url(&server, topic, &ticket);
    let Some(source) = EventSourceClient::spawn(&url, &["connected", "connection-timeout", "test"])
    else {
        return;
    };
    let connected = expect(&source, "connected");
    let position = connected["id"].as_str().unwrap().to_string();
    assert_eq!(
        position.len(),
        26,
        "connected carries a position: {connected}"
    );
    expect(&source, "connection-timeout");
    let first = publish(&server, &client, topic, json!("while away 1")).await;
    let second = publish(&server, &client, topic, json!("while away 2")).await;
    let again = expect(&source, "connected");
    assert_eq!(again["id"], position.as_str(), "resumed from its position");
    assert_eq!(expect(&source, "test")["id"], first.as_str());
    assert_eq!(expect(&source, "test")["id"], second.as_str());
    let third = publish(&server, &client, topic, json!("live")).await;
    assert_eq!(
        expect(&source, "test")["id"],
        third.as_str(),
        "nothing twice"
    );
}

#[tokio::test]
async fn a_quiet_discussion_stream_misses_no_comment_posted_while_it_reconnects() {
    let server = cycling_server();
    let discussion = discussion_post(
        &server,
        "/api/v1/discussions",
        None,
        json!({ "externalId": "quiet-article", "title": "Quiet", "url": "https://example.com/q", "moderation": "none" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ticket = discussion_post(
        &server,
        "/api/v1/stream/ticket-by-external",
        None,
        json!({ "externalId": "quiet-article", "externalUserId": "viewer" }),
    )
    .await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let url = server.url(&format!("/api/v1/stream/{discussion}?ticket={ticket}"));
    let Some(source) = EventSourceClient::spawn(
        &url,
        &["connected", "connection-timeout", "comment_created"],
    ) else {
        return;
    };
    let connected = expect(&source, "connected");
    assert_eq!(connected["data"]["discussionId"], discussion.as_str());
    assert_eq!(connected["id"].as_str().map(str::len), Some(26));
    expect(&source, "connection-timeout");
    let comments = format!("/api/v1/discussions/{discussion}/comments");
    let mut posted = Vec::new();
    for text in ["first while away", "second while away"] {
        let comment =
            discussion_post(&server, &comments, Some("u1"), json!({ "body": text })).await;
        posted.push(comment["id"].clone());
    }
    expect(&source, "connected");
    for id in &posted {
        assert_eq!(
            &expect(&source, "comment_created")["data"]["comment"]["id"],
            id
        );
    }
    let live = discussion_post(&server, &comments, Some("u2"), json!({ "body": "live" })).await;
    assert_eq!(
        expect(&source, "comment_created")["data"]["comment"]["id"],
        live["id"],
        "nothing twice"
    );
}

#[tokio::test]
async fn a_websocket_subscription_resumes_from_its_acknowledged_position() {
    let server = Server::start();
    let client = server.http1();
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "ws/quiet" }))
        .await;
    let ack = ws.next_json().await;
    assert_eq!(ack["op"], "subscribed");
    let position = ack["position"]
        .as_str()
        .unwrap_or_else(|| panic!("the acknowledgement carries a position: {ack}"))
        .to_string();
    drop(ws);
    let first = publish(&server, &client, "ws/quiet", json!(1)).await;
    let second = publish(&server, &client, "ws/quiet", json!(2)).await;
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "ws/quiet", "after": position }))
        .await;
    assert_eq!(ws.next_json().await["position"], position.as_str());
    for id in [first, second] {
        let message = ws.next_json().await;
        assert_eq!(message["op"], "event", "{message}");
        assert_eq!(message["event"]["id"], id.as_str());
    }
    let third = publish(&server, &client, "ws/quiet", json!(3)).await;
    assert_eq!(ws.next_json().await["event"]["id"], third.as_str());
}

/// Reads one SSE subscriber until the event whose data is `{"done":true}`.
async fn read_until_done(server: &Server, topic: &str, after: &str) -> Vec<String> {
    let mut reader = SseReader::open(server, &server.http1(), topic, Some(after)).await;
    let mut ids = Vec::new();
    loop {
        let frame = reader.next_event().await.expect("stream open");
        match frame.event.as_str() {
            "connected" => continue,
            "test" => {}
            other => panic!("unexpected {other}: {frame:?}"),
        }
        ids.push(frame.id.clone().unwrap());
        if frame.json()["data"]["done"] == true {
            return ids;
        }
    }
}

#[tokio::test]
async fn many_subscribers_resuming_from_one_cursor_each_get_everything_once_in_order() {
    let server = std::sync::Arc::new(
        Server::builder()
            .args(&["--replay-readers", "2", "--topic-buffer", "64"])
            .start(),
    );
    let client = server.http1();
    let topic = "storm";
    // More than two replay pages of history before the cursor's successors.
    let first = publish(&server, &client, topic, json!({ "n": 0 })).await;
    for batch in 0..12 {
        let events: Vec<Value> = (0..100)
            .map(|n| json!({ "type": "test", "data": { "batch": batch, "n": n } }))
            .collect();
        let response = publish_raw(&server, &client, topic, &json!({ "events": events })).await;
        assert_eq!(response.status(), 201);
    }
    let mut subscribers = Vec::new();
    for _ in 0..40 {
        let server = server.clone();
        let first = first.clone();
        subscribers.push(tokio::spawn(async move {
            read_until_done(&server, topic, &first).await
        }));
    }
    for n in 0..50 {
        publish(&server, &client, topic, json!({ "live": n })).await;
    }
    publish(&server, &client, topic, json!({ "done": true })).await;
    let history = all_ids(&server, topic).await;
    assert_eq!(history.len(), 1 + 1200 + 50 + 1);
    for (index, subscriber) in subscribers.into_iter().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(120), subscriber)
            .await
            .expect("subscriber finished")
            .unwrap();
        assert_eq!(
            seen,
            history[1..],
            "subscriber {index} saw every id after the cursor, once, in order"
        );
    }
}

#[tokio::test]
async fn big_events_keep_rings_within_their_byte_bounds_and_reach_every_subscriber() {
    const TOTAL_BOUND: f64 = 384.0 * 1024.0;
    let server = Server::builder()
        .args(&[
            "--topic-buffer-bytes",
            "256KiB",
            "--hub-buffer-bytes",
            "384KiB",
        ])
        .start();
    let client = server.http1();
    let mut readers = Vec::new();
    for topic in ["big/a", "big/a", "big/b"] {
        let mut reader = SseReader::open(&server, &client, topic, None).await;
        assert_eq!(reader.next_event().await.unwrap().event, "connected");
        readers.push((topic, reader));
    }
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "big/a" }))
        .await;
    assert_eq!(ws.next_json().await["op"], "subscribed");
    let filler = "x".repeat(16 * 1024);
    let mut published: std::collections::HashMap<&str, Vec<String>> = Default::default();
    for n in 0..40 {
        let topic = if n % 3 == 2 { "big/b" } else { "big/a" };
        let id = publish(&server, &client, topic, json!({ "n": n, "filler": filler })).await;
        published.entry(topic).or_default().push(id);
        let ring_bytes = server.metric("tidings_hub_ring_bytes").await;
        assert!(ring_bytes > 0.0, "the hub reports what its rings hold");
        assert!(
            ring_bytes <= TOTAL_BOUND,
            "all rings within --hub-buffer-bytes: {ring_bytes}"
        );
    }
    let events = server.metric("tidings_hub_ring_events").await;
    assert!(
        events < 40.0,
        "rings dropped old big events ({events} kept) although --topic-buffer allows 1024"
    );
    for (topic, reader) in &mut readers {
        for id in &published[topic] {
            let frame = reader.next_event().await.unwrap();
            assert_eq!(frame.id.as_ref(), Some(id), "{topic}");
        }
    }
    for id in &published["big/a"] {
        assert_eq!(ws.next_json().await["event"]["id"], id.as_str());
    }
}
