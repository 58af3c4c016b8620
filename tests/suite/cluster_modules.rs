//! Modules on a cluster's edges: what a module keeps in memory follows the
//! edge's replica (a live events-stream created on the writer after the
//! edges started is served, polled and closed on every edge), per-node
//! counters are summed over the nodes (live viewers on two edges count
//! together, a killed edge's stop counting), and every stream surface opens
//! on an edge (the chat event stream of a user who never connected).
//! Skipped (with the reason printed) when `nats-server` cannot be had.

use crate::chat_api::{Auth, Chat, token};
use crate::chat_stream::{connect_with, next_frame};
use crate::clients::admin_key;
use crate::cluster_edge::{two_edges, writer};
use crate::harness::Server;
use crate::live::{Producer, Viewer, assert_well_formed, interval_of, now_ms, wait_closed};
use crate::nats::{NatsCluster, skip};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long a replica may take to hold a write made on the writer.
const CATCH_UP: Duration = Duration::from_secs(10);

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
    let (a, b) = two_edges(&nats, &writer, &[]).await;
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

/// The `view-count` value of `stream`'s interval `t`, read on the writer.
async fn view_count(on_writer: &Viewer, stream: &str, t: u64) -> u64 {
    let polled = on_writer.interval(stream, t).await;
    polled.event("view-count").expect("a view count")["value"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn viewers_on_two_edges_count_together_and_a_killed_edges_stop_counting() {
    /// `modules::shared_counts::SILENCE` plus a period and an interval.
    const DROPPED_WITHIN: Duration = Duration::from_millis(3_000 + 1_000 + 500);
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    // A window long enough that only the node's silence can drop a viewer.
    let window = ["--live-viewer-window", "60s"];
    let writer = Server::builder()
        .args(&["--nats", &nats.urls()])
        .args(&window)
        .start();
    let (mut a, b) = two_edges(&nats, &writer, &window).await;
    let stream = Producer::admin(&writer).stream("counted over edges").await;
    let reader = Viewer::new(&writer, "reader");
    let t = interval_of(now_ms());
    // Two viewers on A, one on B, none on the writer (the reader only
    // reads closed intervals, which counts nobody: it is counted too, so
    // it polls once here to be counted from the start).
    polled_once_known(&Viewer::new(&writer, "a1").on(&a), &stream, t).await;
    polled_once_known(&Viewer::new(&writer, "a2").on(&a), &stream, t).await;
    polled_once_known(&Viewer::new(&writer, "b1").on(&b), &stream, t).await;
    reader.interval(&stream, t).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = interval_of(now_ms());
        if view_count(&reader, &stream, now).await == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edges' viewers were never counted on the writer"
        );
    }
    a.kill();
    let killed = Instant::now();
    loop {
        let now = interval_of(now_ms());
        let count = view_count(&reader, &stream, now).await;
        if count == 2 {
            break;
        }
        assert_eq!(count, 4, "A's two viewers go together");
        assert!(
            killed.elapsed() < DROPPED_WITHIN,
            "the killed edge still counted after {:?}",
            killed.elapsed()
        );
    }
    println!(
        "a killed edge's viewers stopped counting after {:?}",
        killed.elapsed()
    );
    // The edge that lives says the same in its snapshot, once its replica
    // holds that interval.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let snapshot = reader.on(&b).snapshot(&stream).await;
        if snapshot["viewCount"]["value"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{snapshot}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_chat_user_who_never_connected_opens_the_event_stream_on_an_edge() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let (a, _b) = two_edges(&nats, &writer, &[]).await;
    let chat = Chat::new(&writer).await;
    // No user id exists for this subject: the edge has the writer make one.
    let newcomer = token(&writer, "newcomer");
    let (mut socket, connected) = connect_with(&a, &newcomer, None).await;
    let user = connected["data"]["userId"].as_u64().expect("a user id");
    assert_eq!(connected["data"]["rooms"], json!([]), "{connected}");
    assert_eq!(
        chat.id(&Auth::User(newcomer.clone())).await,
        user,
        "one id, the writer's"
    );
    // A second stream of the same user costs no commit and gets that id.
    let (_again, second) = connect_with(&a, &newcomer, None).await;
    assert_eq!(second["data"]["userId"], user);
    // A message posted through the writer into a room made for them arrives.
    let room = chat
        .room(
            &chat.backend,
            json!({ "name": "welcome", "members": [user] }),
        )
        .await;
    let said = chat.say(&chat.backend, room, "hello edge", None).await;
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let frame = next_frame(&mut socket).await.expect("frames keep coming");
        if frame["type"] == "TextMessagesCreated" {
            assert_eq!(
                frame["data"]["messages"][0]["messageId"], said["messageId"],
                "{frame}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no message reached the edge's stream"
        );
    }
    // `GET /me` of another new user on the edge: its id, made on the writer.
    let response = a
        .http1()
        .get(a.url("/api/v1/me"))
        .bearer_auth(token(&writer, "second-newcomer"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let me: serde_json::Value = response.json().await.unwrap();
    assert!(me["data"]["userId"].as_u64().unwrap() > user, "{me}");
    // The internal endpoint is the instance admin's only.
    let Auth::Key(backend) = &chat.backend else {
        unreachable!("the backend is an API key")
    };
    let refused = writer
        .http1()
        .post(writer.url("/admin/v1/cluster/chat/users"))
        .header("x-api-key", backend)
        .json(&json!({ "sub": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}
