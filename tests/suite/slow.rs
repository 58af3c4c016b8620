//! A subscriber that stops reading: others keep receiving everything, the
//! stalled one is disconnected with its reason, memory stays bounded.

use crate::clients::{SseReader, admin_key, publish_raw};
use crate::harness::Server;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_stalled_subscriber_is_cut_off_without_slowing_the_others() {
    let server = Server::builder()
        .args(&["--write-timeout", "1s", "--topic-buffer", "64"])
        .start();
    let client = server.http1();

    // A client with a tiny receive window that never reads after its request.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /api/v1/topics/flood/stream HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\n\r\n",
        admin_key(&server)
    );
    stalled.write_all(request.as_bytes()).await.unwrap();
    let mut healthy = SseReader::open(&server, &client, "flood", None).await;
    assert_eq!(healthy.next_event().await.unwrap().event, "connected");
    let before = server.metric("process_resident_memory_bytes").await;

    let padding = "x".repeat(1000);
    let started = Instant::now();
    for batch in 0..5 {
        let events: Vec<Value> = (0..1000)
            .map(|n| json!({ "type": "test", "data": { "n": batch * 1000 + n, "pad": padding } }))
            .collect();
        assert_eq!(
            publish_raw(&server, &client, "flood", &json!({ "events": events }))
                .await
                .status(),
            201
        );
    }
    for expected in 0..5000 {
        let frame = healthy.next_event().await.unwrap();
        assert_eq!(
            frame.json()["data"]["n"],
            expected,
            "the healthy subscriber gets everything in order"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the stalled client did not hold up the others"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("client stopped reading") {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never disconnected:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("tidings_stream_ends_total{transport=\"http1\",reason=\"slow-client\"} 1"),
        "{metrics}"
    );
    let after = server.metric("process_resident_memory_bytes").await;
    assert!(
        after - before < 64e6,
        "memory stayed bounded: {before} -> {after}"
    );
    drop(stalled);
}
