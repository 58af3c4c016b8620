//! The client surfaces beyond topics and chat on a cluster's edges, as a
//! customer behind a load balancer meets them: a write made through one
//! edge (forwarded to the writer) reaches the stream open on the other edge
//! in order, and a cursor taken on one edge resumes exactly on the other.
//!
//! * Tickets (spec 004): a ticket created and commented through edge A
//!   notifies its assignee on edge B (notification and list-update
//!   streams); the notification cursor of B resumes on A; the inbox reads
//!   on an edge and is marked read through it. A cursor from an edge that
//!   is ahead resumes exactly on an edge still catching up (stopped while
//!   1 500 batches went by): the edge waits for its replica to reach the
//!   cursor instead of answering `reset` `unknown`.
//! * Discussions (spec 000): a stream ticket minted through an edge opens
//!   the discussion's stream on the other; comments posted through an edge
//!   arrive there; the same ticket resumes the session with
//!   `Last-Event-ID` on the first edge once the second let it go.
//! * Channels (spec 003, Socket.IO): an unmodified `socket.io-client` on an
//!   edge (default transports, and long-polling only) joins rooms and gets
//!   the posts and messages written through the writer and the other edge;
//!   its client events are all reads, answered from the edge's replica
//!   (a sync gives exactly what came live); an access taken away through
//!   the other edge makes it leave the room at once.
//!
//! Skipped (with the reason printed) when `nats-server` cannot be had; the
//! channels test also when `socket.io-client` cannot be installed.

use crate::channels_rest::{channel, discussion};
use crate::channels_socket::{ask, connected, next_event, quiet};
use crate::chat_api::{Auth, Chat};
use crate::chat_events::client::{Kind, WsClient};
use crate::clients::{Frame, SseReader, publish};
use crate::cluster_edge::{two_edges, writer};
use crate::discussions::Backend;
use crate::harness::Server;
use crate::nats::{NatsCluster, skip};
use crate::ticketing_stream::{
    LIST_UPDATES, NOTIFICATIONS, assign_new_ticket, connect, expect, next_event as next_ticket,
    user,
};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long an edge may keep a released ticket session (the release is
/// sent after the stream ends; see `cluster::edge::leases`).
const RELEASED_WITHIN: Duration = Duration::from_secs(3);

/// `count` notification frames of `reader` (heartbeats skipped).
async fn notifications(reader: &mut SseReader, count: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    while frames.len() < count {
        let frame = next_ticket(reader).await;
        assert_eq!(frame.event, "notification", "{frame:?}");
        frames.push(frame);
    }
    frames
}

/// The `(id, type)` of notification frames.
fn kinds(frames: &[Frame]) -> Vec<(String, String)> {
    frames
        .iter()
        .map(|frame| {
            let kind = frame.json()["type"].as_str().unwrap().to_string();
            (frame.id.clone().unwrap(), kind)
        })
        .collect()
}

/// Comments `text` on `ticket` as `token` through `node`; returns the comment.
async fn comment(node: &Server, token: &str, ticket: &Value, text: &str) -> Value {
    let path = format!("/ticket/{}/comments", ticket["id"].as_str().unwrap());
    let body = Some(json!({ "text": text }));
    expect(node, Method::POST, &path, token, body, 201).await
}

/// A writer with two ready edges, and the JWTs of `agent-1` (an agent)
/// and `ann` (fields in drop order: the servers before NATS).
struct Desk {
    writer: Server,
    a: Server,
    b: Server,
    agent: String,
    ann: String,
    _nats: NatsCluster,
}

impl Desk {
    /// `None` (after printing why) when `nats-server` cannot be had.
    async fn start() -> Option<Self> {
        let nats = skip(NatsCluster::single())?;
        let writer = writer(&nats);
        let (a, b) = two_edges(&nats, &writer, &[]).await;
        Some(Self {
            agent: user(&writer, "agent-1", &["agent"]),
            ann: user(&writer, "ann", &[]),
            writer,
            a,
            b,
            _nats: nats,
        })
    }
}

#[tokio::test]
async fn a_ticket_made_through_one_edge_notifies_on_the_other_and_its_cursor_resumes_across() {
    let Some(desk) = Desk::start().await else {
        return;
    };
    let (a, b, agent, ann) = (&desk.a, &desk.b, &desk.agent, &desk.ann);
    let (mut on_b, _) = connect(b, NOTIFICATIONS, ann, None).await;
    let (mut list_on_b, _) = connect(b, LIST_UPDATES, ann, None).await;

    let ticket = assign_new_ticket(a, agent, "ann", "VPN down").await;
    let path = format!("/ticket/{}", ticket["id"].as_str().unwrap());
    let read_back = expect(a, Method::GET, &path, agent, None, 200).await;
    assert_eq!(
        read_back["title"], "VPN down",
        "read back on edge A at once"
    );
    let mention = comment(a, agent, &ticket, "@ann please look").await;
    let plain = comment(a, agent, &ticket, "rebooted the gateway").await;

    let delivered = notifications(&mut on_b, 3).await;
    let ids: Vec<String> = kinds(&delivered).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        kinds(&delivered),
        [
            (ids[0].clone(), "assignment".to_string()),
            (ids[1].clone(), "mention".to_string()),
            (ids[2].clone(), "comment".to_string())
        ]
    );
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(delivered[0].json()["ticketId"], ticket["id"]);
    assert_eq!(
        delivered[1].json()["metadata"]["commentId"],
        mention["id"],
        "{:?}",
        delivered[1]
    );
    assert_eq!(delivered[2].json()["metadata"]["commentId"], plain["id"]);
    let created = next_ticket(&mut list_on_b).await;
    assert_eq!(created.event, "ticketCreated", "{created:?}");
    assert_eq!(created.json()["ticketId"], ticket["id"]);
    drop(on_b);

    // B's cursor after the assignment, resumed on A: exactly the two
    // comments, then what happens next (a status change through B).
    let (mut on_a, positioned) = connect(a, NOTIFICATIONS, ann, Some(&ids[0])).await;
    assert_eq!(positioned.id.as_ref(), Some(&ids[0]));
    assert_eq!(
        kinds(&notifications(&mut on_a, 2).await),
        kinds(&delivered[1..])
    );
    let status = Some(json!({ "status": "open" }));
    expect(
        b,
        Method::PUT,
        &format!("{path}/status"),
        agent,
        status,
        200,
    )
    .await;
    let live = notifications(&mut on_a, 1).await;
    assert_eq!(live[0].json()["type"], "statusChange");
    assert!(
        live[0].id.as_ref().unwrap() > &ids[2],
        "after the replay, once"
    );

    // The inbox on an edge: what the stream delivered; marked read through
    // the edge, and read back there.
    let count = "/ticket/notification/count";
    let unread = json!({ "unread": 4, "total": 4 });
    assert_eq!(expect(b, Method::GET, count, ann, None, 200).await, unread);
    let all = Some(json!({ "all": true }));
    let marked = expect(b, Method::PUT, "/ticket/notification/read", ann, all, 200).await;
    assert_eq!(marked, json!({ "updated": 4, "unread": 0 }));
    let none = json!({ "unread": 0, "total": 4 });
    assert_eq!(expect(b, Method::GET, count, ann, None, 200).await, none);
}

/// Opens `discussion`'s stream on `node` with `ticket` (and `Last-Event-ID`).
async fn open_discussion(
    node: &Server,
    discussion: &str,
    ticket: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let url = node.url(&format!("/api/v1/stream/{discussion}?ticket={ticket}"));
    let mut request = node.http1().get(url).header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

/// The next `comment_created` frame's comment body, and the frame's id.
async fn created(reader: &mut SseReader) -> (String, String) {
    let frame = reader.next_event().await.expect("the stream is open");
    assert_eq!(frame.event, "comment_created", "{frame:?}");
    let body = frame.json()["comment"]["body"]
        .as_str()
        .unwrap()
        .to_string();
    (body, frame.id.unwrap())
}

#[tokio::test]
async fn a_comment_posted_through_one_edge_streams_on_the_other_and_the_ticket_resumes_back() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let (a, b) = two_edges(&nats, &writer, &[]).await;
    let through_a = Backend::new(&a);
    let discussion = through_a.discussion("article-1", "none").await;
    let minted = through_a.ticket("article-1", "viewer-1").await;
    assert_eq!(minted["discussionId"], discussion.as_str());
    let ticket = minted["ticket"].as_str().unwrap();
    let mut on_b = SseReader::connected(open_discussion(&b, &discussion, ticket, None).await).await;
    for text in ["first", "second"] {
        through_a.comment(&discussion, "u1", text, None).await;
    }
    Backend::new(&b)
        .comment(&discussion, "u2", "third", None)
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(created(&mut on_b).await);
    }
    let bodies: Vec<&str> = seen.iter().map(|(body, _)| body.as_str()).collect();
    assert_eq!(bodies, ["first", "second", "third"]);
    drop(on_b);

    // EventSource reconnecting through the balancer lands on A: the same
    // ticket with B's cursor, once B let the session go.
    Backend::new(&writer)
        .comment(&discussion, "u1", "while away", None)
        .await;
    let dropped = Instant::now();
    let response = loop {
        let response = open_discussion(&a, &discussion, ticket, Some(&seen[1].1)).await;
        if response.status() != 409 {
            break response;
        }
        assert!(
            dropped.elapsed() < RELEASED_WITHIN,
            "edge B still held the ticket's session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "the session moved to edge A {:?} after B's stream ended",
        dropped.elapsed()
    );
    let mut on_a = SseReader::connected(response).await;
    assert_eq!(
        created(&mut on_a).await,
        seen[2],
        "exactly after the cursor"
    );
    assert_eq!(created(&mut on_a).await.0, "while away");
    Backend::new(&b)
        .comment(&discussion, "u2", "live", None)
        .await;
    assert_eq!(created(&mut on_a).await.0, "live");
}

/// A `socket.io-client` of `auth` on `node` with long-polling only,
/// connected; `None` (after printing why) when the client cannot be had.
async fn polling_only(node: &Server, auth: &Auth) -> Option<WsClient> {
    let Auth::User(token) = auth else {
        panic!("a user's JWT")
    };
    let config = json!({ "url": node.base, "auth": { "token": token }, "transports": ["polling"] });
    let mut socket = WsClient::open_with(Kind::SocketIo, config)?;
    let line = socket.line().await;
    assert_eq!(line["transport"], "polling", "{line}");
    Some(socket)
}

/// The envelopes of the next `count` server events of `socket`.
async fn envelopes(socket: &mut WsClient, count: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < count {
        got.push(next_event(socket).await["args"][0].clone());
    }
    got
}

/// `data.text` of envelopes.
fn texts(envelopes: &[Value]) -> Vec<&str> {
    envelopes
        .iter()
        .map(|envelope| envelope["data"]["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn sockets_on_the_edges_get_posts_and_messages_written_anywhere_and_lose_access_at_once() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let writer = writer(&nats);
    let (a, b) = two_edges(&nats, &writer, &[]).await;
    let api = Chat::new(&writer).await;
    let (on_a, on_b) = (api.on(&a), api.on(&b));
    // Made through edge A, which reads its writes back at once.
    let id = channel(&on_a, json!({ "name": "news" })).await;
    let talk = discussion(&on_a, id, true, None).await;
    let (ann, bob) = (api.user("ann"), api.user("bob"));
    let Some(mut default) = connected(&a, &ann).await else {
        return;
    };
    let Some(mut polling) = polling_only(&a, &bob).await else {
        return;
    };
    let (mut n, mut m) = (0, 0);
    let posts_room = json!({ "channelId": id });
    let joined = ask(
        &mut default,
        &mut n,
        "communication:join_channel_posts",
        posts_room.clone(),
    )
    .await;
    assert_eq!(joined["ok"], true, "{joined}");
    let position = joined["data"]["latestEventId"]
        .as_str()
        .unwrap()
        .to_string();
    let polled = ask(
        &mut polling,
        &mut m,
        "communication:join_channel_posts",
        posts_room,
    )
    .await;
    assert_eq!(polled["ok"], true, "{polled}");

    let posts = format!("/communication/channels/{id}/posts");
    for (node, text) in [(&api, "from the writer"), (&on_b, "through edge B")] {
        let body = json!({ "text": text, "authorId": "ed" });
        node.expect(201, node.post(&posts, &node.backend, body).await)
            .await;
    }
    let live = envelopes(&mut default, 2).await;
    assert_eq!(texts(&live), ["from the writer", "through edge B"]);
    assert!(
        live.iter()
            .all(|e| e["eventType"] == "communication.channel_post.created")
    );
    assert_eq!(
        envelopes(&mut polling, 2).await,
        live,
        "the polling session too"
    );
    // Client events are reads: the edge answers them from its replica.
    let sync = json!({ "channelId": id, "sinceEventId": position });
    let synced = ask(
        &mut default,
        &mut n,
        "communication:sync_channel_posts",
        sync,
    )
    .await;
    assert_eq!(synced["data"]["events"], json!(live), "{synced}");

    // Discussion messages written by users through edge B; a ban made
    // through B takes ann out of the room on A before the next message.
    let room = json!({ "discussionId": talk });
    for (socket, line) in [(&mut default, &mut n), (&mut polling, &mut m)] {
        let joined = ask(socket, line, "communication:join_discussion", room.clone()).await;
        assert_eq!(joined["ok"], true, "{joined}");
    }
    let messages = format!("/communication/discussions/{talk}/messages");
    on_b.expect(
        201,
        on_b.post(&messages, &bob, json!({ "text": "hello" })).await,
    )
    .await;
    assert_eq!(texts(&envelopes(&mut default, 1).await), ["hello"]);
    assert_eq!(texts(&envelopes(&mut polling, 1).await), ["hello"]);
    let ban = format!("/communication/discussions/{talk}/bans/ann");
    let banned = on_b
        .call(Method::PUT, &ban, &on_b.backend, Some(json!({})))
        .await;
    on_b.expect(200, banned).await;
    on_b.expect(
        201,
        on_b.post(&messages, &bob, json!({ "text": "without ann" }))
            .await,
    )
    .await;
    let left = next_event(&mut default).await;
    assert_eq!(left["event"], "communication.room.left", "{left}");
    assert_eq!(left["args"][0]["reason"]["code"], "FORBIDDEN");
    assert_eq!(texts(&envelopes(&mut polling, 1).await), ["without ann"]);
    quiet(&mut default, Duration::from_millis(500)).await;
}

/// Publishes `count` events to `topic` on `writer`, 16 at a time.
async fn fill(writer: &Server, topic: &str, count: usize) {
    let client = writer.http1();
    let publishes = futures_util::stream::iter(0..count)
        .map(|n| publish(writer, &client, topic, json!(n)))
        .buffer_unordered(16);
    let ids: Vec<String> = publishes.collect().await;
    assert_eq!(ids.len(), count);
}

#[tokio::test]
async fn a_cursor_from_an_edge_ahead_resumes_exactly_on_an_edge_still_catching_up() {
    let Some(desk) = Desk::start().await else {
        return;
    };
    let Desk {
        writer,
        a,
        b,
        agent,
        ann,
        ..
    } = &desk;
    let (mut on_a, _) = connect(a, NOTIFICATIONS, ann, None).await;
    // B falls behind by some thousand batches, A follows: ann's cursor on
    // A is one B has yet to apply when she reconnects there.
    b.signal(libc::SIGSTOP);
    fill(writer, "filler", 1500).await;
    assign_new_ticket(writer, agent, "ann", "while B slept").await;
    let cursor = notifications(&mut on_a, 1).await[0].id.clone().unwrap();
    let resumed = async {
        let started = Instant::now();
        let opened = connect(b, NOTIFICATIONS, ann, Some(&cursor)).await;
        (opened, started.elapsed())
    };
    let wake = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.signal(libc::SIGCONT);
    };
    let (((mut on_b, positioned), waited), ()) = tokio::join!(resumed, wake);
    println!("the resume on edge B was answered after {waited:?}");
    assert_eq!(positioned.id.as_ref(), Some(&cursor));
    assign_new_ticket(writer, agent, "ann", "after").await;
    let next = next_ticket(&mut on_b).await;
    assert_eq!(next.event, "notification", "no reset: {next:?}");
    assert_eq!(
        next.json()["title"],
        "after",
        "nothing twice, nothing missed"
    );
}
