//! The chat event stream `GET /api/v1/events` (spec 002) as independent
//! clients see it: Python's `websockets` and Node's `ws` ([`client`]) read
//! the real binary's stream while the test drives the server over REST.
//!
//! Covered: every event type with its exact fields and numeric types; a
//! burst arriving as few frames holding every message once, in order; no
//! event of a room reaching a non-member or a removed member; delivery
//! beginning with `RoomCreated` when a user joins or is added mid-stream;
//! resuming after a drop (by `?lastEventId=`, `Last-Event-ID` or a `Resume`
//! message), across membership ends and beginnings and across a restart,
//! with exactly the missed events, or with one `unknown` `Gap` and live
//! events from a position the server never gave;
//! the admission (browser origins, `?access_token=`, API keys, the per-user
//! limit and its release); JWT expiry (4001); the client messages (`Ping`,
//! `Resume`, anything else).
//!
//! Where two rooms' events race (a removal or a join while another user
//! posts), a second member's client is the witness of the commit order.

pub mod client;

use crate::chat_api::{Auth, Chat, default_tenant, tenant_key, token, token_expiring};
use crate::clients::admin_key;
use crate::clients::unix_now;
use crate::harness::Server;
use client::{Kind, WsClient};
use serde_json::{Value, json};
use std::time::Duration;

/// The stream's URL on `server` with `query` (empty or `?…`).
fn stream_url(server: &Server, query: &str) -> String {
    format!("ws://{}/api/v1/events{query}", server.addr())
}

/// Opens `sub`'s stream with `kind`'s client (`query` empty or `?…`) and
/// returns it with its `Connected` frame; `None` when the client cannot be had.
async fn connect(server: &Server, kind: Kind, sub: &str, query: &str) -> Option<(WsClient, Value)> {
    connect_with(server, kind, sub, query, &[]).await
}

/// [`connect`] sending `headers` too.
async fn connect_with(
    server: &Server,
    kind: Kind,
    sub: &str,
    query: &str,
    headers: &[(&str, &str)],
) -> Option<(WsClient, Value)> {
    let bearer = format!("Bearer {}", token(server, sub));
    let mut all = vec![("authorization", bearer.as_str())];
    all.extend_from_slice(headers);
    let mut client = WsClient::open(kind, &stream_url(server, query), &all)?;
    let connected = client.frame().await;
    assert_connected(&connected);
    Some((client, connected))
}

/// Asserts the shape of a `Connected` frame.
fn assert_connected(frame: &Value) {
    assert_eq!(frame["type"], "Connected", "{frame}");
    shape(
        frame,
        &[
            ("type", Ty::Text),
            ("id", Ty::EventId),
            ("data", Ty::Object),
        ],
    );
    shape(&frame["data"], &[("userId", Ty::Int), ("rooms", Ty::List)]);
}

/// A JSON type as the contract states it.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// An unsigned integer (never a float, never a string).
    Int,
    /// An integer or `null`.
    IntOrNull,
    /// A string.
    Text,
    /// A string or `null`.
    TextOrNull,
    /// A boolean.
    Flag,
    /// An event id: a 26-character ULID string.
    EventId,
    /// An array.
    List,
    /// An object.
    Object,
}

impl Ty {
    fn admits(self, value: &Value) -> bool {
        match self {
            Ty::Int => value.is_u64(),
            Ty::IntOrNull => value.is_u64() || value.is_null(),
            Ty::Text => value.is_string(),
            Ty::TextOrNull => value.is_string() || value.is_null(),
            Ty::Flag => value.is_boolean(),
            Ty::EventId => value
                .as_str()
                .is_some_and(|id| ulid::Ulid::from_string(id).is_ok()),
            Ty::List => value.is_array(),
            Ty::Object => value.is_object(),
        }
    }
}

/// Asserts `value` is an object with exactly `fields`, each of its type.
fn shape(value: &Value, fields: &[(&str, Ty)]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"));
    let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected, "fields of {value}");
    for (name, ty) in fields {
        assert!(ty.admits(&value[*name]), "{name} is {ty:?} in {value}");
    }
}

/// The fields of a message object.
const MESSAGE: [(&str, Ty); 8] = [
    ("messageId", Ty::Int),
    ("messageType", Ty::Text),
    ("roomId", Ty::Int),
    ("text", Ty::Text),
    ("userId", Ty::Int),
    ("parentMessageId", Ty::IntOrNull),
    ("createdAt", Ty::Text),
    ("editedAt", Ty::TextOrNull),
];

/// The fields of a room object.
const ROOM: [(&str, Ty); 8] = [
    ("roomId", Ty::Int),
    ("name", Ty::Text),
    ("description", Ty::Text),
    ("private", Ty::Flag),
    ("createdBy", Ty::Int),
    ("createdAt", Ty::Text),
    ("updatedAt", Ty::Text),
    ("memberCount", Ty::Int),
];

/// Asserts the shape of an event frame by its type: `{"type","id","data"}`
/// with the contract's data fields.
fn assert_event_shape(frame: &Value) {
    shape(
        frame,
        &[
            ("type", Ty::Text),
            ("id", Ty::EventId),
            ("data", Ty::Object),
        ],
    );
    let data = &frame["data"];
    match frame["type"].as_str().unwrap() {
        "TextMessagesCreated" | "TextMessagesUpdated" => {
            shape(data, &[("messages", Ty::List)]);
            for message in data["messages"].as_array().unwrap() {
                shape(message, &MESSAGE);
            }
        }
        "TextMessageDeleted" => shape(
            data,
            &[
                ("parentMessageId", Ty::IntOrNull),
                ("roomId", Ty::Int),
                ("messageId", Ty::Int),
            ],
        ),
        "RoomCreated" => {
            shape(
                data,
                &[
                    ("room", Ty::Object),
                    ("userId", Ty::Int),
                    ("reason", Ty::Text),
                    ("role", Ty::Text),
                ],
            );
            shape(&data["room"], &ROOM);
        }
        "RoomUpdated" => {
            shape(data, &[("room", Ty::Object)]);
            shape(&data["room"], &ROOM);
        }
        "RoomDeleted" if data.get("reason").is_some() => {
            shape(
                data,
                &[
                    ("roomId", Ty::Int),
                    ("userId", Ty::Int),
                    ("reason", Ty::Text),
                ],
            );
        }
        "RoomDeleted" => shape(data, &[("roomId", Ty::Int)]),
        "ReadReceiptsUpdated" => shape(
            data,
            &[
                ("roomId", Ty::Int),
                ("userId", Ty::Int),
                ("lastReadMessageId", Ty::Int),
            ],
        ),
        other => panic!("an unexpected frame type {other}: {frame}"),
    }
}

/// One step of a stream, independent of how frames grouped messages: a
/// created or updated message (its id), another event (its room, or for a
/// receipt the message read).
fn steps(frame: &Value) -> Vec<(String, u64)> {
    let kind = frame["type"].as_str().unwrap().to_string();
    let data = &frame["data"];
    match kind.as_str() {
        "TextMessagesCreated" | "TextMessagesUpdated" => data["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| (kind.clone(), message["messageId"].as_u64().unwrap()))
            .collect(),
        "TextMessageDeleted" => vec![(kind, data["messageId"].as_u64().unwrap())],
        "ReadReceiptsUpdated" => vec![(kind, data["lastReadMessageId"].as_u64().unwrap())],
        "RoomCreated" | "RoomUpdated" => vec![(kind, data["room"]["roomId"].as_u64().unwrap())],
        _ => vec![(kind, data["roomId"].as_u64().unwrap())],
    }
}

/// A step of `kind` about `id`.
fn step(kind: &str, id: u64) -> (String, u64) {
    (kind.to_string(), id)
}

/// What a client received: its frames, in order, each checked.
#[derive(Default)]
struct Received {
    frames: Vec<Value>,
    steps: Vec<(String, u64)>,
}

impl Received {
    /// Takes a frame: its shape is the contract's and its id follows the last.
    fn take(&mut self, frame: Value) {
        assert_event_shape(&frame);
        if let Some(last) = self.frames.last() {
            assert!(
                frame["id"].as_str() > last["id"].as_str(),
                "ids go up: {last} then {frame}"
            );
        }
        self.steps.extend(steps(&frame));
        self.frames.push(frame);
    }

    /// Reads frames until `count` steps were received.
    async fn until_steps(&mut self, client: &mut WsClient, count: usize) {
        while self.steps.len() < count {
            let frame = client.frame().await;
            self.take(frame);
        }
    }

    fn last_id(&self) -> String {
        self.frames.last().expect("a frame")["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Asserts a REST write succeeded; returns its `data`.
fn done(reply: (u16, Value)) -> Value {
    assert!((200..300).contains(&reply.0), "{} {}", reply.0, reply.1);
    reply.1["data"].clone()
}

fn message_id(message: &Value) -> u64 {
    message["messageId"].as_u64().unwrap()
}

/// Reads the next frame, asserts its type and returns its `data`.
async fn expect_frame(client: &mut WsClient, kind: &str) -> Value {
    let frame = client.frame().await;
    assert_eq!(frame["type"], kind, "{frame}");
    assert_event_shape(&frame);
    frame["data"].clone()
}

#[tokio::test]
async fn every_event_type_reaches_a_python_client_with_the_contract_fields() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let Some((mut client, connected)) = connect(&server, Kind::Python, "alice", "").await else {
        return;
    };
    assert_eq!(
        connected["data"],
        json!({ "userId": alice_id, "rooms": [] })
    );

    let own = chat.room(&alice, json!({ "name": "own" })).await;
    let created = expect_frame(&mut client, "RoomCreated").await;
    assert_eq!(created["reason"], "created");
    assert_eq!(created["role"], "owner");
    assert_eq!(created["room"]["roomId"], own);
    assert_eq!(created["room"]["createdBy"], alice_id);
    assert_eq!(created["room"]["memberCount"], 1);

    let named = json!({ "name": "named", "members": [alice_id] });
    let named = chat.room(&chat.backend, named).await;
    let created = expect_frame(&mut client, "RoomCreated").await;
    assert_eq!(
        (&created["reason"], &created["role"]),
        (&json!("created"), &json!("member"))
    );
    assert_eq!(created["room"]["roomId"], named);

    let public = chat.room(&chat.backend, json!({ "name": "public" })).await;
    done(
        chat.post(&format!("/rooms/{public}/join"), &alice, json!({}))
            .await,
    );
    let joined = expect_frame(&mut client, "RoomCreated").await;
    assert_eq!(
        (&joined["reason"], &joined["role"]),
        (&json!("joined"), &json!("member"))
    );
    assert_eq!(joined["room"]["roomId"], public);
    let updated = expect_frame(&mut client, "RoomUpdated").await;
    assert_eq!(
        updated["room"], joined["room"],
        "the room as the member sees it"
    );

    let private = json!({ "name": "private", "private": true });
    let private = chat.room(&chat.backend, private).await;
    let add = json!({ "userId": alice_id });
    done(
        chat.post(&format!("/rooms/{private}/members"), &chat.backend, add)
            .await,
    );
    let added = expect_frame(&mut client, "RoomCreated").await;
    assert_eq!(added["reason"], "added");
    assert_eq!(added["room"]["private"], true);
    let updated = expect_frame(&mut client, "RoomUpdated").await;
    assert_eq!(updated["room"]["roomId"], private);

    let parent = chat.say(&alice, own, "parent", None).await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(
        frame["messages"],
        json!([parent]),
        "the message as REST answered it"
    );
    assert_eq!(parent["parentMessageId"], Value::Null);
    let comment = chat
        .say(&alice, own, "comment", Some(message_id(&parent)))
        .await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([comment]));
    assert_eq!(comment["parentMessageId"], message_id(&parent));

    let path = format!("/rooms/{own}/messages/{}", message_id(&parent));
    let edited = done(chat.patch(&path, &alice, json!({ "text": "edited" })).await);
    let frame = expect_frame(&mut client, "TextMessagesUpdated").await;
    assert_eq!(frame["messages"], json!([edited]));
    assert_eq!(frame["messages"][0]["text"], "edited");
    assert!(frame["messages"][0]["editedAt"].is_string());

    let notice = chat.say(&chat.backend, named, "notice", None).await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(frame["messages"][0]["userId"], 0, "the backend is user 0");
    let read = json!({ "messageId": message_id(&notice) });
    done(
        chat.post(&format!("/rooms/{named}/read"), &alice, read)
            .await,
    );
    let receipt = expect_frame(&mut client, "ReadReceiptsUpdated").await;
    assert_eq!(
        receipt,
        json!({ "roomId": named, "userId": alice_id, "lastReadMessageId": message_id(&notice) })
    );

    let comment_path = format!("/rooms/{own}/messages/{}", message_id(&comment));
    done(chat.delete(&comment_path, &alice).await);
    let deleted = expect_frame(&mut client, "TextMessageDeleted").await;
    assert_eq!(
        deleted,
        json!({ "parentMessageId": message_id(&parent), "roomId": own, "messageId": message_id(&comment) })
    );
    done(chat.delete(&path, &alice).await);
    let deleted = expect_frame(&mut client, "TextMessageDeleted").await;
    assert_eq!(
        deleted,
        json!({ "parentMessageId": null, "roomId": own, "messageId": message_id(&parent) })
    );

    let renamed = done(
        chat.patch(
            &format!("/rooms/{own}"),
            &alice,
            json!({ "name": "renamed" }),
        )
        .await,
    );
    let updated = expect_frame(&mut client, "RoomUpdated").await;
    assert_eq!(updated["room"], renamed);
    assert_eq!(updated["room"]["name"], "renamed");

    done(
        chat.post(&format!("/rooms/{public}/leave"), &alice, json!({}))
            .await,
    );
    let updated = expect_frame(&mut client, "RoomUpdated").await;
    assert_eq!(
        (&updated["room"]["roomId"], &updated["room"]["memberCount"]),
        (&json!(public), &json!(0))
    );
    let left = expect_frame(&mut client, "RoomDeleted").await;
    assert_eq!(
        left,
        json!({ "roomId": public, "userId": alice_id, "reason": "left" })
    );

    let member = format!("/rooms/{private}/members/{alice_id}");
    done(chat.delete(&member, &chat.backend).await);
    let updated = expect_frame(&mut client, "RoomUpdated").await;
    assert_eq!(updated["room"]["roomId"], private);
    let removed = expect_frame(&mut client, "RoomDeleted").await;
    assert_eq!(
        removed,
        json!({ "roomId": private, "userId": alice_id, "reason": "removed" })
    );

    done(chat.delete(&format!("/rooms/{own}"), &alice).await);
    let gone = expect_frame(&mut client, "RoomDeleted").await;
    assert_eq!(gone, json!({ "roomId": own }));

    // Nothing of the rooms left behind: the next frame is the remaining room's.
    let last = chat.say(&chat.backend, public, "after leaving", None).await;
    let last_kept = chat.say(&chat.backend, named, "still a member", None).await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([last_kept]), "not {last}");
}

#[tokio::test]
async fn a_burst_of_500_reaches_a_node_client_as_few_frames_each_message_once_in_order() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice_id = chat.id(&chat.user("alice")).await;
    let body = json!({ "name": "burst", "members": [alice_id] });
    let room = chat.room(&chat.backend, body).await;
    let Some((mut client, _)) = connect(&server, Kind::Node, "alice", "").await else {
        return;
    };
    let chat = &chat;
    let posts = (0..500).map(|n| async move {
        let text = format!("m{n}");
        chat.say(&chat.backend, room, &text, None).await
    });
    let mut posted: Vec<u64> = futures_util::future::join_all(posts)
        .await
        .iter()
        .map(message_id)
        .collect();
    posted.sort_unstable();
    let mut received = Received::default();
    received.until_steps(&mut client, posted.len()).await;
    let expected: Vec<_> = posted
        .iter()
        .map(|id| step("TextMessagesCreated", *id))
        .collect();
    assert_eq!(received.steps, expected, "every message once, in order");
    eprintln!("500 messages came as {} frames", received.frames.len());
    assert!(
        received.frames.len() <= 125,
        "500 messages came as {} frames",
        received.frames.len()
    );
    assert!(
        client
            .line_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

/// The created messages of `room` before and after the first `RoomUpdated`
/// of `room` in `steps` (what one member saw while another's membership changed).
fn split_at_update(steps: &[(String, u64)], room: u64) -> (Vec<u64>, Vec<u64>) {
    let update = steps
        .iter()
        .position(|step| step.0 == "RoomUpdated" && step.1 == room)
        .expect("the membership's RoomUpdated");
    let created = |steps: &[(String, u64)]| {
        steps
            .iter()
            .filter(|step| step.0 == "TextMessagesCreated")
            .map(|step| step.1)
            .collect::<Vec<_>>()
    };
    (created(&steps[..update]), created(&steps[update + 1..]))
}

/// `count` messages posted by `auth` into `room` one after the other; after
/// the `signal_after`-th, `changed` is notified. Returns their ids.
async fn post_signalling(
    chat: &Chat<'_>,
    auth: &Auth,
    room: u64,
    count: usize,
    signal_after: usize,
    changed: &tokio::sync::Notify,
) -> Vec<u64> {
    let mut posted = Vec::new();
    for n in 0..count {
        posted.push(message_id(
            &chat.say(auth, room, &format!("m{n}"), None).await,
        ));
        if n + 1 == signal_after {
            changed.notify_one();
        }
    }
    posted
}

#[tokio::test]
async fn a_python_client_gets_nothing_of_rooms_it_is_not_in_nor_after_its_removal() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let (alice, bob, carol) = (chat.user("alice"), chat.user("bob"), chat.user("carol"));
    let (alice_id, bob_id, carol_id) = (
        chat.id(&alice).await,
        chat.id(&bob).await,
        chat.id(&carol).await,
    );
    let bobs = chat
        .room(
            &chat.backend,
            json!({ "name": "bob's", "members": [bob_id] }),
        )
        .await;
    let both = json!([alice_id, carol_id]);
    let open = chat
        .room(&chat.backend, json!({ "name": "open", "members": both }))
        .await;
    let hidden = json!({ "name": "hidden", "private": true, "members": both });
    let hidden = chat.room(&chat.backend, hidden).await;
    let kept = chat
        .room(
            &chat.backend,
            json!({ "name": "kept", "members": [alice_id] }),
        )
        .await;
    let Some((mut outsider, connected)) = connect(&server, Kind::Python, "bob", "").await else {
        return;
    };
    assert_eq!(connected["data"]["rooms"], json!([bobs]));

    // Everything that can happen in rooms bob is not in.
    for room in [open, hidden] {
        let message = chat.say(&carol, room, "not for bob", None).await;
        let path = format!("/rooms/{room}/messages/{}", message_id(&message));
        done(
            chat.patch(&path, &carol, json!({ "text": "still not" }))
                .await,
        );
        let read = json!({ "messageId": message_id(&message) });
        done(
            chat.post(&format!("/rooms/{room}/read"), &alice, read)
                .await,
        );
        done(
            chat.patch(
                &format!("/rooms/{room}"),
                &chat.backend,
                json!({ "name": "x" }),
            )
            .await,
        );
        done(chat.delete(&path, &carol).await);
    }
    done(
        chat.delete(&format!("/rooms/{hidden}"), &chat.backend)
            .await,
    );
    let sentinel = chat.say(&chat.backend, bobs, "for bob", None).await;
    let frame = expect_frame(&mut outsider, "TextMessagesCreated").await;
    assert_eq!(
        frame["messages"],
        json!([sentinel]),
        "bob's first event is his room's"
    );

    // Alice is removed from `open` while carol posts; carol's client (Node) is the witness.
    let Some((mut alice_client, connected)) = connect(&server, Kind::Python, "alice", "").await
    else {
        return;
    };
    let mut rooms: Vec<u64> = serde_json::from_value(connected["data"]["rooms"].clone()).unwrap();
    rooms.sort_unstable();
    assert_eq!(rooms, [open, kept]);
    let Some((mut witness, _)) = connect(&server, Kind::Node, "carol", "").await else {
        return;
    };
    let changed = tokio::sync::Notify::new();
    let posting = post_signalling(&chat, &carol, open, 80, 30, &changed);
    let removing = async {
        changed.notified().await;
        let member = format!("/rooms/{open}/members/{alice_id}");
        done(chat.delete(&member, &chat.backend).await);
    };
    let (posted, ()) = tokio::join!(posting, removing);
    let last = chat
        .say(&chat.backend, kept, "after the removal", None)
        .await;

    let mut seen = Received::default();
    seen.until_steps(&mut witness, posted.len() + 1).await;
    let (before, after) = split_at_update(&seen.steps, open);
    assert_eq!(
        [before.clone(), after].concat(),
        posted,
        "the witness saw every message"
    );
    let mut expected: Vec<_> = before
        .iter()
        .map(|id| step("TextMessagesCreated", *id))
        .collect();
    expected.extend([
        step("RoomUpdated", open),
        step("RoomDeleted", open),
        step("TextMessagesCreated", message_id(&last)),
    ]);
    let mut received = Received::default();
    received
        .until_steps(&mut alice_client, expected.len())
        .await;
    assert_eq!(
        received.steps, expected,
        "nothing of the room after the removal"
    );
    let removal = received
        .frames
        .iter()
        .find(|frame| frame["type"] == "RoomDeleted")
        .unwrap();
    assert_eq!(
        removal["data"],
        json!({ "roomId": open, "userId": alice_id, "reason": "removed" })
    );
    eprintln!(
        "removed after {} of {} messages",
        before.len(),
        posted.len()
    );
}

#[tokio::test]
async fn a_node_client_joining_or_added_mid_stream_starts_with_room_created() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let (bob, carol) = (chat.user("bob"), chat.user("carol"));
    let (bob_id, carol_id) = (chat.id(&bob).await, chat.id(&carol).await);
    let open = chat
        .room(
            &chat.backend,
            json!({ "name": "open", "members": [carol_id] }),
        )
        .await;
    let closed = json!({ "name": "closed", "private": true, "members": [carol_id] });
    let closed = chat.room(&chat.backend, closed).await;
    let Some((mut client, connected)) = connect(&server, Kind::Node, "bob", "").await else {
        return;
    };
    assert_eq!(connected["data"]["rooms"], json!([]));
    let Some((mut witness, _)) = connect(&server, Kind::Python, "carol", "").await else {
        return;
    };

    let changed = tokio::sync::Notify::new();
    let posting = post_signalling(&chat, &carol, open, 60, 20, &changed);
    let joining = async {
        changed.notified().await;
        done(
            chat.post(&format!("/rooms/{open}/join"), &bob, json!({}))
                .await,
        );
    };
    let (posted, ()) = tokio::join!(posting, joining);
    let mut early = Vec::new();
    for n in 0..3 {
        early.push(message_id(
            &chat.say(&carol, closed, &format!("early {n}"), None).await,
        ));
    }
    let add = json!({ "userId": bob_id });
    done(
        chat.post(&format!("/rooms/{closed}/members"), &chat.backend, add)
            .await,
    );
    let mut late = Vec::new();
    for n in 0..3 {
        late.push(message_id(
            &chat.say(&carol, closed, &format!("late {n}"), None).await,
        ));
    }

    let mut seen = Received::default();
    seen.until_steps(&mut witness, posted.len() + 1).await;
    assert_eq!(
        seen.steps.len(),
        posted.len() + 1,
        "the witness's steps in `open`"
    );
    let (before, after) = split_at_update(&seen.steps, open);
    assert_eq!(
        [before, after.clone()].concat(),
        posted,
        "the witness saw every message"
    );
    let created = |ids: &[u64]| {
        ids.iter()
            .map(|id| step("TextMessagesCreated", *id))
            .collect::<Vec<_>>()
    };
    let expected = [
        vec![step("RoomCreated", open), step("RoomUpdated", open)],
        created(&after),
        vec![step("RoomCreated", closed), step("RoomUpdated", closed)],
        created(&late),
    ]
    .concat();
    let mut received = Received::default();
    received.until_steps(&mut client, expected.len()).await;
    assert_eq!(
        received.steps, expected,
        "membership first, then the room's events"
    );
    let began: Vec<(&Value, &Value)> = received
        .frames
        .iter()
        .filter(|frame| frame["type"] == "RoomCreated")
        .map(|frame| {
            (
                &frame["data"]["reason"],
                &frame["data"]["room"]["memberCount"],
            )
        })
        .collect();
    assert_eq!(
        began,
        [(&json!("joined"), &json!(2)), (&json!("added"), &json!(2))]
    );
    assert!(
        client
            .line_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    eprintln!(
        "joined after {} of {} messages",
        posted.len() - after.len(),
        posted.len()
    );
}

/// How a client names the position it resumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResumeBy {
    /// `?lastEventId=`.
    Query,
    /// A `Last-Event-ID` header.
    Header,
    /// A first `Resume` message.
    Message,
}

/// A user's stream is dropped, events happen in several rooms, and it is
/// resumed from the last id seen, as `by` says. Exactly the missed events
/// come, in order, then live ones.
async fn resume_after_a_drop(kind: Kind, by: ResumeBy) {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let mut rooms = Vec::new();
    for name in ["a", "b", "c"] {
        let body = json!({ "name": name, "members": [alice_id] });
        rooms.push(chat.room(&chat.backend, body).await);
    }
    let Some((mut client, _)) = connect(&server, kind, "alice", "").await else {
        return;
    };
    for round in 0..2 {
        for room in &rooms {
            chat.say(&chat.backend, *room, &format!("seen {round}"), None)
                .await;
        }
    }
    let mut seen = Received::default();
    seen.until_steps(&mut client, 6).await;
    let last = seen.last_id();
    let (after, end) = client.close().await;
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(end["close"], 1000, "{end}");

    let mut expected = Vec::new();
    let mut missed = Vec::new();
    for round in 0..4 {
        for room in &rooms {
            let message = chat
                .say(&chat.backend, *room, &format!("missed {round}"), None)
                .await;
            expected.push(step("TextMessagesCreated", message_id(&message)));
            missed.push(message);
        }
    }
    let path = format!("/rooms/{}/messages/{}", rooms[0], message_id(&missed[0]));
    done(
        chat.patch(&path, &chat.backend, json!({ "text": "edited" }))
            .await,
    );
    expected.push(step("TextMessagesUpdated", message_id(&missed[0])));
    done(
        chat.patch(
            &format!("/rooms/{}", rooms[1]),
            &chat.backend,
            json!({ "name": "b2" }),
        )
        .await,
    );
    expected.push(step("RoomUpdated", rooms[1]));
    let read = json!({ "messageId": message_id(&missed[2]) });
    done(
        chat.post(&format!("/rooms/{}/read", rooms[2]), &alice, read)
            .await,
    );
    expected.push(step("ReadReceiptsUpdated", message_id(&missed[2])));

    let (query, header) = match by {
        ResumeBy::Query => (format!("?lastEventId={last}"), None),
        ResumeBy::Header => (String::new(), Some(("last-event-id", last.as_str()))),
        ResumeBy::Message => (String::new(), None),
    };
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    let connecting = connect_with(&server, kind, "alice", &query, &headers).await;
    let Some((mut client, mut connected)) = connecting else {
        return;
    };
    if by == ResumeBy::Message {
        assert_ne!(
            connected["id"],
            last.as_str(),
            "a stream without a position starts now"
        );
        client.send(&json!({ "type": "Resume", "data": { "lastEventId": last } }).to_string());
        connected = client.frame().await;
        assert_connected(&connected);
    }
    assert_eq!(connected["id"], last.as_str());
    let mut followed: Vec<u64> =
        serde_json::from_value(connected["data"]["rooms"].clone()).unwrap();
    followed.sort_unstable();
    assert_eq!(followed, rooms);
    let mut resumed = Received::default();
    resumed.until_steps(&mut client, expected.len()).await;
    assert_eq!(
        resumed.steps, expected,
        "exactly the missed events, in order"
    );
    assert!(resumed.frames[0]["id"].as_str() > Some(last.as_str()));

    let live = chat.say(&chat.backend, rooms[1], "live", None).await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([live]), "then live, nothing twice");
}

#[tokio::test]
async fn a_python_client_resumes_after_a_drop_by_last_event_id() {
    resume_after_a_drop(Kind::Python, ResumeBy::Query).await;
}

#[tokio::test]
async fn a_python_client_resumes_after_a_drop_by_a_last_event_id_header() {
    resume_after_a_drop(Kind::Python, ResumeBy::Header).await;
}

#[tokio::test]
async fn a_node_client_resumes_after_a_drop_by_a_resume_message() {
    resume_after_a_drop(Kind::Node, ResumeBy::Message).await;
}

#[tokio::test]
async fn a_node_client_is_closed_with_4001_when_its_token_expires() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice_id = chat.id(&chat.user("alice")).await;
    let room = chat
        .room(&chat.backend, json!({ "name": "r", "members": [alice_id] }))
        .await;
    let exp = unix_now() + 3;
    let bearer = format!("Bearer {}", token_expiring(&server, "alice", exp));
    let url = stream_url(&server, "");
    let Some(mut client) = WsClient::open(Kind::Node, &url, &[("authorization", &bearer)]) else {
        return;
    };
    assert_connected(&client.frame().await);
    let message = chat.say(&chat.backend, room, "before expiry", None).await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([message]));
    let (frames, end) = client.end().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(end["close"], 4001, "{end}");
    assert!(unix_now() >= exp, "not before the token's exp");
}

/// The first line a Python client prints for a connection to `url` with
/// `headers`, and the client (still open when it connected).
async fn first_line(url: &str, headers: &[(&str, &str)]) -> Option<(WsClient, Value)> {
    let mut client = WsClient::open(Kind::Python, url, headers)?;
    let line = client.line().await;
    Some((client, line))
}

#[tokio::test]
async fn a_python_client_is_admitted_by_origin_token_and_per_user_limit() {
    let server = Server::builder()
        .args(&["--max-streams-per-user", "2"])
        .start();
    let chat = Chat::new(&server).await;
    let alice_id = chat.id(&chat.user("alice")).await;
    let url = stream_url(&server, "");
    let bearer = format!("Bearer {}", token(&server, "alice"));
    let from = |origin| [("authorization", bearer.as_str()), ("origin", origin)];
    let Some((_, refused)) = first_line(&url, &from("https://app.example")).await else {
        return;
    };
    assert_eq!(
        refused,
        json!({ "refused": 403 }),
        "no origin is allowed by default"
    );
    let allowed = server
        .http1()
        .put(server.url(&format!(
            "/admin/v1/tenants/{}/origins",
            default_tenant(&server)
        )))
        .header("x-api-key", admin_key(&server))
        .json(&json!({ "origins": ["https://app.example"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let (mut app, connected) = first_line(&url, &from("https://app.example"))
        .await
        .unwrap();
    assert_connected(&connected);
    assert_eq!(connected["data"]["userId"], alice_id);
    assert_eq!(app.close().await.1["close"], 1000);
    let (_, refused) = first_line(&url, &from("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(refused, json!({ "refused": 403 }));

    let by_query = stream_url(
        &server,
        &format!("?access_token={}", token(&server, "alice")),
    );
    let (_by_query, connected) = first_line(&by_query, &[]).await.unwrap();
    assert_connected(&connected);
    assert_eq!(connected["data"]["userId"], alice_id);
    let browser = first_line(&by_query, &[("origin", "https://evil.example")]).await;
    assert_eq!(
        browser.unwrap().1,
        json!({ "refused": 403 }),
        "a browser's token too"
    );
    let (_browser, connected) = first_line(&by_query, &[("origin", "https://app.example")])
        .await
        .unwrap();
    assert_connected(&connected);
    let forged = stream_url(&server, "?access_token=not.a.token");
    assert_eq!(
        first_line(&forged, &[]).await.unwrap().1,
        json!({ "refused": 401 })
    );
    assert_eq!(
        first_line(&url, &[]).await.unwrap().1,
        json!({ "refused": 401 })
    );
    let key = tenant_key(&server, &default_tenant(&server), &["read"]).await;
    let by_key = first_line(&url, &[("x-api-key", &key)]).await.unwrap().1;
    assert_eq!(by_key, json!({ "refused": 403 }), "the stream is a user's");

    let carol = format!("Bearer {}", token(&server, "carol"));
    let mut open = Vec::new();
    for _ in 0..2 {
        let (client, connected) = first_line(&url, &[("authorization", &carol)])
            .await
            .unwrap();
        assert_connected(&connected);
        open.push(client);
    }
    let third = first_line(&url, &[("authorization", &carol)])
        .await
        .unwrap()
        .1;
    assert_eq!(third, json!({ "refused": 429 }), "the per-user limit");
    assert_eq!(open[0].close().await.1["close"], 1000);
    // The slot is released as the session ends, which may trail the close a little.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    let connected = loop {
        let (client, line) = first_line(&url, &[("authorization", &carol)])
            .await
            .unwrap();
        if line != json!({ "refused": 429 }) || tokio::time::Instant::now() > deadline {
            open.push(client);
            break line;
        }
        refused += 1;
    };
    assert_connected(&connected);
    eprintln!("a closed stream's slot was taken again after {refused} refusals");
    let dave = format!("Bearer {}", token(&server, "dave"));
    let (_dave, connected) = first_line(&url, &[("authorization", &dave)]).await.unwrap();
    assert_connected(&connected);
}

#[tokio::test]
async fn a_node_client_resumes_across_a_restart_with_nothing_lost() {
    let mut server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let mine = chat.room(&alice, json!({ "name": "mine" })).await;
    let theirs = json!({ "name": "theirs", "private": true, "members": [alice_id] });
    let theirs = chat.room(&chat.backend, theirs).await;
    let rooms = [mine, theirs];
    let Some((mut client, _)) = connect(&server, Kind::Node, "alice", "").await else {
        return;
    };
    for room in rooms {
        chat.say(&alice, room, "before", None).await;
    }
    let mut seen = Received::default();
    seen.until_steps(&mut client, 2).await;
    let last = seen.last_id();
    // Delivered, but as if lost in flight: the stream resumes from `last`.
    let mut expected = Vec::new();
    for room in rooms {
        let message = chat.say(&alice, room, "in flight", None).await;
        expected.push(step("TextMessagesCreated", message_id(&message)));
    }
    seen.until_steps(&mut client, 4).await;
    let newest = expected[1].1;
    drop(chat);
    server.stop();
    let (frames, end) = client.end().await;
    assert!(frames.is_empty(), "{frames:?}");
    assert_eq!(end["close"], 1001, "going away: {end}");

    let server = Server::builder().data_dir(&server.data_dir).start();
    let chat = Chat::new(&server).await;
    let kept = done(chat.get("/rooms", &alice).await);
    let mut kept: Vec<u64> = kept["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["roomId"].as_u64().unwrap())
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, rooms, "memberships survive the restart");
    for room in rooms {
        let message = chat.say(&chat.backend, room, "after", None).await;
        assert!(message_id(&message) > newest, "ids are never reused");
        expected.push(step("TextMessagesCreated", message_id(&message)));
    }
    let query = format!("?lastEventId={last}");
    let Some((mut client, connected)) = connect(&server, Kind::Node, "alice", &query).await else {
        return;
    };
    assert_eq!(connected["id"], last.as_str());
    assert_eq!(connected["data"]["userId"], alice_id);
    let mut resumed = Received::default();
    resumed.until_steps(&mut client, expected.len()).await;
    assert_eq!(resumed.steps, expected, "nothing lost, nothing twice");
    let live = chat.say(&chat.backend, mine, "live", None).await;
    let frame = expect_frame(&mut client, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([live]));
}

/// Asserts `frame` is an `Error` frame with a code and a message.
fn assert_error(frame: &Value) {
    assert_eq!(frame["type"], "Error", "{frame}");
    shape(frame, &[("type", Ty::Text), ("data", Ty::Object)]);
    shape(&frame["data"], &[("code", Ty::Text), ("message", Ty::Text)]);
    assert_eq!(frame["data"]["code"], "VALIDATION_ERROR");
}

#[tokio::test]
async fn client_messages_are_answered_and_the_connection_stays_usable() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice_id = chat.id(&chat.user("alice")).await;
    let room = chat
        .room(&chat.backend, json!({ "name": "r", "members": [alice_id] }))
        .await;
    let Some((mut python, connected)) = connect(&server, Kind::Python, "alice", "").await else {
        return;
    };
    let ping = json!({ "type": "Ping" }).to_string();
    let resume =
        json!({ "type": "Resume", "data": { "lastEventId": connected["id"] } }).to_string();
    python.send(&ping);
    assert_eq!(python.frame().await, json!({ "type": "Pong" }));
    for garbage in [
        "not json".to_string(),
        json!({ "type": "Subscribe", "data": { "roomId": room } }).to_string(),
        json!({ "type": "Resume", "data": {} }).to_string(),
        json!({ "type": "Resume", "data": { "lastEventId": "not-an-id" } }).to_string(),
    ] {
        python.send(&garbage);
        assert_error(&python.frame().await);
    }
    python.send(&resume);
    let resumed = python.frame().await;
    assert_connected(&resumed);
    assert_eq!(resumed["id"], connected["id"]);
    python.send(&resume);
    assert_error(&python.frame().await);
    python.send(&ping);
    assert_eq!(python.frame().await, json!({ "type": "Pong" }));
    let message = chat.say(&chat.backend, room, "still usable", None).await;
    let frame = expect_frame(&mut python, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([message]));

    // A first Resume after an event was delivered is refused too.
    let Some((mut node, connected)) = connect(&server, Kind::Node, "alice", "").await else {
        return;
    };
    let message = chat.say(&chat.backend, room, "delivered", None).await;
    for client in [&mut python, &mut node] {
        let frame = expect_frame(client, "TextMessagesCreated").await;
        assert_eq!(frame["messages"], json!([message]));
    }
    node.send(&json!({ "type": "Resume", "data": { "lastEventId": connected["id"] } }).to_string());
    assert_error(&node.frame().await);
    node.send(&ping);
    assert_eq!(node.frame().await, json!({ "type": "Pong" }));
    let message = chat
        .say(&chat.backend, room, "after the refusal", None)
        .await;
    let frame = expect_frame(&mut node, "TextMessagesCreated").await;
    assert_eq!(frame["messages"], json!([message]));
}

#[tokio::test]
async fn a_node_client_resuming_replays_membership_ends_and_beginnings_at_their_places() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice_id = chat.id(&chat.user("alice")).await;
    let members = json!([alice_id]);
    let stays = chat
        .room(
            &chat.backend,
            json!({ "name": "stays", "members": members }),
        )
        .await;
    let goes = chat
        .room(&chat.backend, json!({ "name": "goes", "members": members }))
        .await;
    let back = chat
        .room(&chat.backend, json!({ "name": "back", "members": members }))
        .await;
    let Some((mut client, _)) = connect(&server, Kind::Node, "alice", "").await else {
        return;
    };
    chat.say(&chat.backend, stays, "seen", None).await;
    let mut seen = Received::default();
    seen.until_steps(&mut client, 1).await;
    let last = seen.last_id();
    let (_, end) = client.close().await;
    assert_eq!(end["close"], 1000, "{end}");

    let mut expected = Vec::new();
    let say = |room: u64, text: &'static str| {
        let chat = &chat;
        async move {
            step(
                "TextMessagesCreated",
                message_id(&chat.say(&chat.backend, room, text, None).await),
            )
        }
    };
    for room in [goes, back, stays] {
        expected.push(say(room, "before").await);
    }
    done(
        chat.delete(&format!("/rooms/{back}/members/{alice_id}"), &chat.backend)
            .await,
    );
    expected.extend([step("RoomUpdated", back), step("RoomDeleted", back)]);
    say(back, "while away").await;
    done(chat.delete(&format!("/rooms/{goes}"), &chat.backend).await);
    expected.push(step("RoomDeleted", goes));
    let add = json!({ "userId": alice_id });
    done(
        chat.post(&format!("/rooms/{back}/members"), &chat.backend, add)
            .await,
    );
    expected.extend([step("RoomCreated", back), step("RoomUpdated", back)]);
    for room in [back, stays] {
        expected.push(say(room, "after").await);
    }

    let query = format!("?lastEventId={last}");
    let Some((mut client, connected)) = connect(&server, Kind::Node, "alice", &query).await else {
        return;
    };
    let mut followed: Vec<u64> =
        serde_json::from_value(connected["data"]["rooms"].clone()).unwrap();
    followed.sort_unstable();
    assert_eq!(
        followed,
        [stays, goes, back],
        "every room a member of after `last`"
    );
    let mut resumed = Received::default();
    resumed.until_steps(&mut client, expected.len()).await;
    assert_eq!(
        resumed.steps, expected,
        "the memberships' history at its places"
    );
    assert!(
        client
            .line_within(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_node_client_resuming_from_an_unknown_position_gets_one_gap_then_live() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let room = chat.room(&alice, json!({ "name": "r" })).await;
    chat.say(&alice, room, "old", None).await;
    let beyond = ulid::Ulid(u128::MAX).to_string();
    let query = format!("?lastEventId={beyond}");
    let Some((mut client, connected)) = connect(&server, Kind::Node, "alice", &query).await else {
        return;
    };
    assert_eq!(connected["data"]["rooms"], json!([room]));
    assert_ne!(
        connected["id"],
        beyond.as_str(),
        "the stream starts now, where Connected says"
    );
    let gap = client.frame().await;
    shape(&gap, &[("type", Ty::Text), ("data", Ty::Object)]);
    assert_eq!(
        gap,
        json!({ "type": "Gap", "data": { "roomId": null, "reason": "unknown", "oldestId": null } })
    );
    let live = chat.say(&alice, room, "live", None).await;
    let frame = client.frame().await;
    assert_eq!(frame["type"], "TextMessagesCreated", "no history: {frame}");
    assert_eq!(frame["data"]["messages"], json!([live]));
    assert!(frame["id"].as_str() > connected["id"].as_str());
}
