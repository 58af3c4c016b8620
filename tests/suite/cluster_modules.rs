//! Modules on a cluster's edges: what a module keeps in memory follows the
//! edge's replica (a live events-stream created on the writer after the
//! edges started is served, polled and closed on every edge), per-node
//! counters are summed over the nodes (live viewers on two edges count
//! together, a killed edge's stop counting), and every stream surface opens
//! on an edge (the chat event stream of a user who never connected).
//! Skipped (with the reason printed) when `nats-server` cannot be had.

use crate::clients::admin_key;
use crate::cluster_edge::{edge, ready, writer};
use crate::harness::Server;
use crate::live::{Producer, Viewer, assert_well_formed, interval_of, now_ms, wait_closed};
use crate::nats::{NatsCluster, skip};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a replica may take to hold a write made on the writer.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Two ready edges of `writer`.
async fn two_edges(nats: &NatsCluster, writer: &Server) -> (Server, Server) {
    let (a, b) = (edge(nats, writer, None), edge(nats, writer, None));
    ready(&a).await;
    ready(&b).await;
    (a, b)
}

/// Polls `stream`'s interval `t` on `viewer`'s node until it is no longer
/// 404 (the replica has the stream), then asserts 200.
async fn polled_once_known(viewer: &Viewer, stream: &str, t: u64) -> crate::live::Polled {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let polled = viewer.poll(stream, t).await;
        if polled.status != 404 {
            assert_eq!(polled.status, 200, "interval {t}: {}", polled.text());
            assert_well_formed(&polled, t);
            return polled;
        }
        assert!(Instant::now() < deadline, "the edge never knew the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_live_stream_created_after_the_edges_started_is_polled_and_closed_on_both() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let (a, b) = two_edges(&nats, &writer).await;
    let producer = Producer::admin(&writer);
    let stream = producer.stream("created after the edges").await;
    let on_writer = Viewer::new(&writer, "w");
    let viewers = [on_writer.on(&a), on_writer.on(&b)];
    // The open interval: each edge's poll waits for the writer's close and
    // gets it in time, with the writer's very bytes.
    let open = interval_of(now_ms());
    for viewer in &viewers {
        let polled = polled_once_known(viewer, &stream, open).await;
        let reference = on_writer.interval(&stream, open).await;
        assert_eq!(polled.bytes, reference.bytes);
        assert_eq!(polled.header("etag"), reference.header("etag"));
    }
    // A chat posted on edge A (forwarded) is in its interval on edge B; a
    // poll of the open interval on B closes within the close patience.
    let (chat, at) = viewers[0].message(&stream, "through edge A").await;
    let waited = now_ms();
    let on_b = viewers[1].interval(&stream, at).await;
    assert!(
        on_b.received_ms < at + 250 + 2_000,
        "interval {at} closed on edge B {} ms after its end (asked at {waited})",
        on_b.received_ms - at - 250
    );
    let messages = on_b.event("chats").expect("chats")["messages"].clone();
    assert_eq!(messages[0]["id"], chat["id"], "{messages}");
    // A stream created through edge B is known to B at once (read your
    // writes), its later change (the end) too.
    let through_b = Producer::with_key(&b, admin_key(&writer))
        .stream("created through edge B")
        .await;
    let t = interval_of(now_ms());
    assert_eq!(viewers[1].poll(&through_b, t).await.status, 200);
    let (status, ended) = Producer::with_key(&a, admin_key(&writer))
        .post(
            &format!("/api/v1/events-streams/{through_b}/end"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{ended}");
    let last = ended["data"]["lastInterval"].as_u64().unwrap();
    wait_closed(last + 250).await;
    let after = viewers[0].poll(&through_b, last + 250).await;
    assert_eq!(after.status, 410, "{}", after.text());
    assert_eq!(after.error_code(), "STREAM_ENDED");
}
