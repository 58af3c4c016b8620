//! SSE and WebSocket streams: replay then live, resume, gaps, wire details, close codes.

use crate::clients::{SseReader, WsClient, admin_key, all_ids, history, publish, publish_raw};
use crate::harness::Server;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn subscribers_joining_during_concurrent_publishing_see_every_event_once_in_order() {
    // A tiny topic buffer makes subscribers fall behind and repair from the log
    // all the time, so replay, repair and live hand-offs are all exercised.
    let server = std::sync::Arc::new(Server::builder().args(&["--topic-buffer", "8"]).start());
    let client = server.http1();
    let topic = "race";
    let first = publish(&server, &client, topic, json!({ "seed": 0 })).await;
    for n in 1..50 {
        publish(&server, &client, topic, json!({ "seed": n })).await;
    }
    const PUBLISHERS: usize = 6;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let server = server.clone();
        let stop = stop.clone();
        publishers.push(tokio::spawn(async move {
            let client = server.http1();
            let mut published = 0;
            let mut b = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let size = 1 + (p * 7 + b * 13) % 20;
                let events: Vec<Value> = (0..size)
                    .map(|n| json!({ "type": "test", "data": { "p": p, "b": b, "n": n } }))
                    .collect();
                let response =
                    publish_raw(&server, &client, topic, &json!({ "events": events })).await;
                assert_eq!(response.status(), 201);
                published += size;
                b += 1;
            }
            published
        }));
    }
    let mut subscribers = Vec::new();
    for s in 0..16u64 {
        let server = server.clone();
        let first = first.clone();
        subscribers.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60 * s)).await;
            let mut ids: Vec<String> = Vec::new();
            // Each subscriber drops its connection a few times and resumes from its last id.
            for round in 0..3 {
                let resume = ids.last().cloned().unwrap_or_else(|| first.clone());
                let finished = if s % 2 == 0 {
                    let mut reader =
                        SseReader::open(&server, &server.http1(), topic, Some(&resume)).await;
                    let mut taken = 0;
                    loop {
                        let frame = reader.next_event().await.expect("stream open");
                        if frame.event != "test" {
                            continue;
                        }
                        assert_eq!(frame.json()["id"].as_str(), frame.id.as_deref());
                        ids.push(frame.id.clone().unwrap());
                        taken += 1;
                        if frame.json()["data"]["done"] == true {
                            break true;
                        }
                        if round < 2 && taken == 150 {
                            break false;
                        }
                    }
                } else {
                    let mut ws = WsClient::connect(&server).await;
                    ws.send(json!({ "op": "subscribe", "topic": topic, "after": resume }))
                        .await;
                    assert_eq!(ws.next_json().await["op"], "subscribed");
                    let mut taken = 0;
                    loop {
                        let message = ws.next_json().await;
                        assert_eq!(message["op"], "event", "{message}");
                        ids.push(message["event"]["id"].as_str().unwrap().to_string());
                        taken += 1;
                        if message["event"]["data"]["done"] == true {
                            break true;
                        }
                        if round < 2 && taken == 150 {
                            break false;
                        }
                    }
                };
                if finished {
                    break;
                }
            }
            ids
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 50;
    for publisher in publishers {
        total += publisher.await.unwrap();
    }
    publish(&server, &client, topic, json!({ "done": true })).await;
    let history = all_ids(&server, topic).await;
    assert_eq!(history.len(), total + 1);
    assert!(
        history.windows(2).all(|w| w[0] < w[1]),
        "history is in strictly increasing id order"
    );
    for (index, subscriber) in subscribers.into_iter().enumerate() {
        let seen = tokio::time::timeout(Duration::from_secs(60), subscriber)
            .await
            .expect("subscriber finished")
            .unwrap();
        assert_eq!(seen.len(), history.len() - 1, "subscriber {index}: count");
        assert_eq!(
            seen,
            history[1..],
            "subscriber {index} saw exactly the published ids in order"
        );
    }
}

#[tokio::test]
async fn sse_resumes_after_last_event_id_from_header_or_query() {
    let server = Server::start();
    let client = server.http1();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish(&server, &client, "resume", json!(n)).await);
    }
    let mut reader = SseReader::open(&server, &client, "resume", Some(&ids[1])).await;
    assert_eq!(
        reader.next().await.unwrap().retry,
        Some(5000),
        "retry comes first"
    );
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    for expected in &ids[2..] {
        assert_eq!(
            reader.next_event().await.unwrap().id.as_ref(),
            Some(expected)
        );
    }
    let live = publish(&server, &client, "resume", json!("live")).await;
    assert_eq!(reader.next_event().await.unwrap().id, Some(live));

    let response = client
        .get(server.url(&format!(
            "/api/v1/topics/resume/stream?lastEventId={}",
            ids[3]
        )))
        .header("x-api-key", admin_key(&server))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::from_response(response);
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    assert_eq!(
        reader.next_event().await.unwrap().id.as_ref(),
        Some(&ids[4])
    );
}

/// An id after everything the server has durably stored (a day from now).
fn future_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    ulid::Ulid::from_parts(now.as_millis() as u64 + 86_400_000, 0).to_string()
}

#[tokio::test]
async fn a_cursor_after_everything_durable_is_an_unknown_gap_then_full_history() {
    let server = Server::start();
    let client = server.http1();
    let first = publish(&server, &client, "mine", json!(1)).await;
    let second = publish(&server, &client, "mine", json!(2)).await;
    let future = future_id();
    let mut reader = SseReader::open(&server, &client, "mine", Some(&future)).await;
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    let reset = reader.next_event().await.unwrap();
    assert_eq!(reset.event, "reset");
    assert_eq!(
        reset.json(),
        json!({ "reason": "unknown", "oldestId": first })
    );
    assert_eq!(reader.next_event().await.unwrap().id, Some(first));
    assert_eq!(reader.next_event().await.unwrap().id, Some(second));

    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "mine", "after": future, "ref": 7 }))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({ "op": "subscribed", "topic": "mine", "position": future, "ref": 7 })
    );
    let gap = ws.next_json().await;
    assert_eq!(gap["op"], "gap");
    assert_eq!(gap["reason"], "unknown");
}

#[tokio::test]
async fn any_durable_id_is_a_position_to_resume_from_without_a_gap() {
    let server = Server::start();
    let client = server.http1();
    let foreign = publish(&server, &client, "elsewhere", json!(0)).await;
    let first = publish(&server, &client, "mine", json!(1)).await;
    let between = publish(&server, &client, "elsewhere", json!(1)).await;
    let second = publish(&server, &client, "mine", json!(2)).await;
    let mut reader = SseReader::open(&server, &client, "mine", Some(&foreign)).await;
    let connected = reader.next_event().await.unwrap();
    assert_eq!(
        (connected.event.as_str(), connected.id.as_deref()),
        ("connected", Some(foreign.as_str()))
    );
    assert_eq!(reader.next_event().await.unwrap().id, Some(first));
    assert_eq!(reader.next_event().await.unwrap().id, Some(second.clone()));

    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "mine", "after": between }))
        .await;
    assert_eq!(
        ws.next_json().await,
        json!({ "op": "subscribed", "topic": "mine", "position": between })
    );
    let event = ws.next_json().await;
    assert_eq!(event["op"], "event", "no gap: {event}");
    assert_eq!(event["event"]["id"], second.as_str());
}

#[tokio::test]
async fn a_pruned_cursor_is_an_expired_gap() {
    let server = Server::builder()
        .args(&["--retention", "short/=3,7d", "--prune-interval", "200ms"])
        .start();
    let client = server.http1();
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(publish(&server, &client, "short/x", json!(n)).await);
    }
    publish(&server, &client, "long", json!("kept")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while all_ids(&server, "short/x").await.len() != 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention never pruned to 3 events"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(all_ids(&server, "short/x").await, ids[7..]);
    assert_eq!(
        all_ids(&server, "long").await.len(),
        1,
        "other prefixes keep the default"
    );

    let page: Value = history(&server, "short/x", &format!("?after={}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["data"]["gap"],
        json!({ "reason": "expired", "oldestId": ids[7] })
    );
    assert_eq!(page["data"]["events"].as_array().unwrap().len(), 3);

    let mut reader = SseReader::open(&server, &client, "short/x", Some(&ids[2])).await;
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    let reset = reader.next_event().await.unwrap();
    assert_eq!(
        reset.json(),
        json!({ "reason": "expired", "oldestId": ids[7] })
    );
    assert_eq!(
        reader.next_event().await.unwrap().id.as_ref(),
        Some(&ids[7])
    );
}

#[tokio::test]
async fn sse_wire_details_heartbeats_and_connection_cycling() {
    let server = Server::builder()
        .args(&["--sse-heartbeat", "200ms", "--sse-lifetime", "1500ms"])
        .start();
    let client = server.http1();
    let mut reader = SseReader::open(&server, &client, "wire", None).await;
    assert_eq!(reader.next().await.unwrap().retry, Some(5000));
    let connected = reader.next().await.unwrap();
    assert_eq!(
        (connected.event.as_str(), connected.json()),
        ("connected", json!({ "topic": "wire" }))
    );
    let tricky = json!({ "text": "line one\nline two\r\n\ndata: injected", "emoji": "✓" });
    let id = publish(&server, &client, "wire", tricky.clone()).await;
    let mut saw_heartbeat = false;
    let mut saw_event = false;
    loop {
        let frame = reader
            .next()
            .await
            .expect("the stream ends with connection-timeout, not silently");
        if frame.comment.as_deref() == Some("heartbeat") {
            saw_heartbeat = true;
        } else if frame.event == "test" {
            assert_eq!(frame.id.as_deref(), Some(id.as_str()));
            assert_eq!(
                frame.json()["data"],
                tricky,
                "data survives as one JSON line"
            );
            saw_event = true;
        } else if frame.event == "connection-timeout" {
            assert_eq!(frame.json()["reconnect"], true);
            break;
        }
    }
    assert!(saw_heartbeat && saw_event);
    assert!(
        reader.next().await.is_none(),
        "the stream ends after connection-timeout"
    );
}

#[tokio::test]
async fn streams_work_over_h2_and_tls() {
    let server = Server::builder().args(&["--tls-self-signed"]).start();
    for http2 in [false, true] {
        let client = server.tls_client(http2);
        let mut reader = SseReader::open(&server, &client, "secure", None).await;
        assert_eq!(reader.next_event().await.unwrap().event, "connected");
        let id = publish(&server, &client, "secure", json!({ "http2": http2 })).await;
        assert_eq!(reader.next_event().await.unwrap().id, Some(id));
    }
}

#[tokio::test]
async fn shutdown_sends_a_final_event_and_closes_websockets_with_1001() {
    let mut server = Server::start();
    let client = server.http1();
    let mut reader = SseReader::open(&server, &client, "bye", None).await;
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "bye" })).await;
    assert_eq!(ws.next_json().await["op"], "subscribed");
    server.signal(libc::SIGTERM);
    let last = reader.next_event().await.unwrap();
    assert_eq!(last.event, "shutdown");
    assert_eq!(last.json()["reconnect"], true);
    assert!(reader.next().await.is_none());
    assert_eq!(ws.close_code().await, Some(1001));
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[tokio::test]
async fn websocket_publish_multiple_topics_and_close_codes() {
    let server = Server::builder()
        .args(&["--ws-max-message", "1KiB", "--ws-max-topics", "2"])
        .start();
    let mut ws = WsClient::connect(&server).await;
    for topic in ["one", "two"] {
        ws.send(json!({ "op": "subscribe", "topic": topic })).await;
        assert_eq!(ws.next_json().await["op"], "subscribed");
    }
    ws.send(json!({ "op": "subscribe", "topic": "three" }))
        .await;
    assert_eq!(ws.next_json().await["code"], "RATE_LIMITED");
    ws.send(
        json!({ "op": "publish", "topic": "two", "type": "note", "data": { "x": 1 }, "ref": "r1" }),
    )
    .await;
    let mut got_event = false;
    let mut got_ack = false;
    while !(got_event && got_ack) {
        let message = ws.next_json().await;
        match message["op"].as_str() {
            Some("published") => {
                assert_eq!(message["ref"], "r1");
                got_ack = true;
            }
            Some("event") => {
                assert_eq!(message["event"]["topic"], "two");
                assert_eq!(message["event"]["data"], json!({ "x": 1 }));
                got_event = true;
            }
            _ => panic!("unexpected {message}"),
        }
    }
    ws.send(json!({ "op": "unsubscribe", "topic": "two" }))
        .await;
    assert_eq!(ws.next_json().await["op"], "unsubscribed");
    ws.send(json!({ "op": "dance" })).await;
    assert_eq!(ws.next_json().await["code"], "VALIDATION_ERROR");
    ws.send_message(Message::Text("x".repeat(2048).into()))
        .await;
    assert_eq!(ws.close_code().await, Some(1009));

    let mut binary = WsClient::connect(&server).await;
    binary
        .send_message(Message::Binary(vec![1, 2, 3].into()))
        .await;
    assert_eq!(binary.close_code().await, Some(1008));
}

#[tokio::test]
async fn websocket_clients_that_stop_answering_pings_are_dropped() {
    let server = Server::builder()
        .args(&["--ws-ping-interval", "200ms"])
        .start();
    let mut ws = WsClient::connect(&server).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(ws.close_code().await, Some(1001));
    let mut alive = WsClient::connect(&server).await;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        alive
            .send(json!({ "op": "unsubscribe", "topic": "none" }))
            .await;
        assert_eq!(alive.next_json().await["op"], "unsubscribed");
    }
}

#[tokio::test]
async fn websocket_handshake_errors_use_the_envelope() {
    let server = Server::start();
    let response = server
        .http1()
        .get(server.url("/api/v1/topics/ws"))
        .header("x-api-key", admin_key(&server))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 426);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
}

async fn wait_for_metric(server: &Server, series: &str, want: f64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.metric(series).await != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{series} never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn subscriptions_unregister_when_clients_leave() {
    let server = Server::start();
    let client = server.http1();
    let mut readers = Vec::new();
    for topic in ["u/1", "u/1", "u/2"] {
        let mut reader = SseReader::open(&server, &client, topic, None).await;
        assert_eq!(reader.next_event().await.unwrap().event, "connected");
        readers.push(reader);
    }
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "u/3" })).await;
    assert_eq!(ws.next_json().await["op"], "subscribed");
    wait_for_metric(&server, "tidings_hub_subscriptions", 4.0).await;
    assert_eq!(server.metric("tidings_hub_topics").await, 3.0);
    assert_eq!(
        server
            .metric("tidings_open_streams{transport=\"sse\"}")
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric("tidings_open_streams{transport=\"ws\"}")
            .await,
        1.0
    );
    drop(readers);
    drop(ws);
    wait_for_metric(&server, "tidings_hub_subscriptions", 0.0).await;
    wait_for_metric(&server, "tidings_hub_topics", 0.0).await;
    wait_for_metric(&server, "tidings_open_streams{transport=\"sse\"}", 0.0).await;
    wait_for_metric(&server, "tidings_open_streams{transport=\"ws\"}", 0.0).await;
}

#[tokio::test]
async fn a_write_interval_batches_busy_streams_but_never_delays_the_first_event() {
    let server = Server::builder()
        .args(&["--stream-write-interval", "400ms"])
        .start();
    let client = server.http1();
    let mut reader = SseReader::open(&server, &client, "paced", None).await;
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    publish(&server, &client, "paced", json!("first")).await;
    reader.next_event().await.unwrap();
    let first = started.elapsed();
    assert!(
        first < Duration::from_millis(300),
        "the first event after a quiet spell goes out at once ({first:?})"
    );
    publish(&server, &client, "paced", json!("second")).await;
    reader.next_event().await.unwrap();
    let second = started.elapsed();
    assert!(
        second >= Duration::from_millis(380),
        "a busy stream waits out the interval ({second:?})"
    );
}

#[tokio::test]
async fn retention_by_age_removes_old_events_and_reports_the_cursor_as_expired() {
    let server = Server::builder()
        .args(&["--retention", "aged/=1000,1s", "--prune-interval", "200ms"])
        .start();
    let client = server.http1();
    let oldest = publish(&server, &client, "aged/x", json!("oldest")).await;
    let old = publish(&server, &client, "aged/x", json!("old")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !all_ids(&server, "aged/x").await.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "events older than 1s were never pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = publish(&server, &client, "aged/x", json!("fresh")).await;
    let page: Value = history(&server, "aged/x", &format!("?after={oldest}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["data"]["gap"],
        json!({ "reason": "expired", "oldestId": fresh })
    );
    assert_eq!(page["data"]["events"][0]["id"], fresh.as_str());
    // Nothing after the newest pruned event is missing: no gap.
    let page: Value = history(&server, "aged/x", &format!("?after={old}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"]["gap"], false);
    assert_eq!(page["data"]["events"][0]["id"], fresh.as_str());
}
