//! The chat event stream `GET /api/v1/events` (spec 002) against the real
//! binary, with a Rust WebSocket client: commit order across rooms, resume
//! by the last id across rooms, batching, and memberships ending and
//! beginning at exact positions while messages are posted.

use crate::chat_api::{Chat, token};
use crate::harness::Server;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `sub`'s event stream (resuming after `last` when given) and
/// returns it with its `Connected` frame.
async fn connect(server: &Server, sub: &str, last: Option<&str>) -> (Socket, Value) {
    connect_with(server, &token(server, sub), last).await
}

/// Opens the event stream of `token`'s user on `server` (resuming after
/// `last` when given) and returns it with its `Connected` frame.
pub(crate) async fn connect_with(
    server: &Server,
    token: &str,
    last: Option<&str>,
) -> (Socket, Value) {
    let query = last
        .map(|id| format!("?lastEventId={id}"))
        .unwrap_or_default();
    let url = format!("ws://{}/api/v1/events{query}", server.addr());
    let mut request = url.into_client_request().unwrap();
    let bearer = format!("Bearer {token}");
    request
        .headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let connected = next_frame(&mut socket).await.expect("a Connected frame");
    assert_eq!(connected["type"], "Connected", "{connected}");
    (socket, connected)
}

/// The next JSON frame, or `None` when nothing comes within `wait`.
async fn frame_within(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, socket.next()).await.ok()??;
        if let Message::Text(text) = message.unwrap() {
            return Some(serde_json::from_str(&text).unwrap());
        }
    }
}

pub(crate) async fn next_frame(socket: &mut Socket) -> Option<Value> {
    frame_within(socket, Duration::from_secs(10)).await
}

/// What a client saw: frames in order, with the messages they created.
#[derive(Default)]
struct Seen {
    frames: Vec<Value>,
    created: Vec<u64>,
}

impl Seen {
    fn take(&mut self, frame: Value) {
        if frame["type"] == "TextMessagesCreated" {
            for message in frame["data"]["messages"].as_array().unwrap() {
                self.created.push(message["messageId"].as_u64().unwrap());
            }
        }
        if let Some(last) = self.frames.last() {
            assert!(
                frame["id"].as_str() > last["id"].as_str(),
                "ids go up: {last} then {frame}"
            );
        }
        self.frames.push(frame);
    }

    /// Reads until `count` messages were created (a frame may take up to
    /// 30 s: the suite shares two cores with clusters of servers).
    async fn until_created(&mut self, socket: &mut Socket, count: usize) {
        while self.created.len() < count {
            let Some(frame) = frame_within(socket, Duration::from_secs(30)).await else {
                panic!(
                    "no frame within 30 s after {} of {count} messages; created so far {:?}; frames {:?}",
                    self.created.len(),
                    self.created,
                    self.frames
                );
            };
            self.take(frame);
        }
    }

    fn last_id(&self) -> String {
        self.frames.last().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Posts `count` messages into each of `rooms`, from concurrent tasks;
/// returns every message id.
async fn post_many(chat: &Chat<'_>, rooms: &[u64], count: usize) -> BTreeSet<u64> {
    let posts = rooms.iter().flat_map(|room| {
        (0..count).map(move |n| async move {
            let message = chat.say(&chat.backend, *room, &format!("m{n}"), None).await;
            message["messageId"].as_u64().unwrap()
        })
    });
    futures_util::future::join_all(posts)
        .await
        .into_iter()
        .collect()
}

#[tokio::test]
async fn events_of_all_rooms_come_in_commit_order_and_resume_exactly_across_rooms() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let members = json!([alice_id]);
    let a = chat
        .room(&chat.backend, json!({ "name": "a", "members": members }))
        .await;
    let b = chat
        .room(&chat.backend, json!({ "name": "b", "members": members }))
        .await;
    let (mut socket, connected) = connect(&server, "alice", None).await;
    assert_eq!(connected["data"]["userId"], alice_id);
    let first = post_many(&chat, &[a, b], 30).await;
    let mut seen = Seen::default();
    seen.until_created(&mut socket, 25).await;
    drop(socket);
    let resume_at = seen.last_id();
    let already: BTreeSet<u64> = seen.created.iter().copied().collect();
    let second = post_many(&chat, &[a, b], 10).await;

    let (mut socket, connected) = connect(&server, "alice", Some(&resume_at)).await;
    assert_eq!(connected["id"], resume_at.as_str());
    let missed: BTreeSet<u64> = first
        .union(&second)
        .copied()
        .filter(|id| !already.contains(id))
        .collect();
    let mut resumed = Seen::default();
    resumed.until_created(&mut socket, missed.len()).await;
    assert_eq!(
        resumed.created.iter().copied().collect::<BTreeSet<_>>(),
        missed
    );
    assert_eq!(resumed.created.len(), missed.len(), "nothing twice");
    let mut sorted = resumed.created.clone();
    sorted.sort_unstable();
    assert_eq!(
        resumed.created, sorted,
        "messages in commit order across rooms"
    );
    assert!(
        frame_within(&mut socket, Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn a_burst_reaches_a_member_as_few_frames_with_every_message_once_in_order() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let room = chat
        .room(
            &chat.backend,
            json!({ "name": "burst", "members": [alice_id] }),
        )
        .await;
    let (mut socket, _) = connect(&server, "alice", None).await;
    let posted = post_many(&chat, &[room], 300).await;
    let mut seen = Seen::default();
    seen.until_created(&mut socket, posted.len()).await;
    assert_eq!(seen.created, posted.iter().copied().collect::<Vec<_>>());
    assert!(
        seen.frames.len() <= 100,
        "300 messages came as {} frames",
        seen.frames.len()
    );
}

#[tokio::test]
async fn a_removed_member_gets_nothing_of_the_room_after_the_removal_while_posts_go_on() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let room = chat
        .room(&chat.backend, json!({ "name": "r", "members": [alice_id] }))
        .await;
    let (mut socket, _) = connect(&server, "alice", None).await;
    let posting = async {
        let mut posted = Vec::new();
        for n in 0..120 {
            posted.push(
                chat.say(&chat.backend, room, &format!("m{n}"), None).await["messageId"]
                    .as_u64()
                    .unwrap(),
            );
            if n == 60 {
                let path = format!("/rooms/{room}/members/{alice_id}");
                chat.expect(200, chat.delete(&path, &chat.backend).await)
                    .await;
            }
        }
        posted
    };
    let reading = async {
        let mut seen = Seen::default();
        loop {
            let frame = next_frame(&mut socket).await.expect("the removal");
            let removed = frame["type"] == "RoomDeleted";
            seen.take(frame);
            if removed {
                break;
            }
        }
        while let Some(frame) = frame_within(&mut socket, Duration::from_millis(500)).await {
            seen.take(frame);
        }
        seen
    };
    let (posted, seen) = tokio::join!(posting, reading);
    let removal = seen
        .frames
        .iter()
        .position(|frame| frame["type"] == "RoomDeleted")
        .unwrap();
    assert_eq!(
        seen.frames[removal]["data"],
        json!({ "roomId": room, "userId": alice_id, "reason": "removed" })
    );
    assert_eq!(removal + 1, seen.frames.len(), "nothing after the removal");
    assert_eq!(
        seen.created,
        posted[..=60].to_vec(),
        "everything before it, once"
    );

    let path = format!("/rooms/{room}/members");
    chat.expect(
        201,
        chat.post(&path, &chat.backend, json!({ "userId": alice_id }))
            .await,
    )
    .await;
    let rejoined = next_frame(&mut socket).await.expect("the room again");
    assert_eq!(rejoined["type"], "RoomCreated");
    assert_eq!(rejoined["data"]["room"]["roomId"], room);
    let again = chat.say(&chat.backend, room, "back", None).await;
    let mut after = Seen::default();
    while after.created.is_empty() {
        after.take(next_frame(&mut socket).await.expect("the new message"));
    }
    assert_eq!(after.created, vec![again["messageId"].as_u64().unwrap()]);
    socket.send(Message::Close(None)).await.unwrap();
}

#[tokio::test]
async fn with_a_batch_window_messages_posted_one_after_another_share_a_frame() {
    let server = Server::builder()
        .args(&["--chat-batch-window", "700ms"])
        .start();
    let chat = Chat::new(&server).await;
    let alice = chat.user("alice");
    let alice_id = chat.id(&alice).await;
    let room = chat
        .room(&chat.backend, json!({ "name": "w", "members": [alice_id] }))
        .await;
    let (mut socket, _) = connect(&server, "alice", None).await;
    let mut posted = Vec::new();
    for n in 0..5 {
        let message = chat.say(&chat.backend, room, &format!("m{n}"), None).await;
        posted.push(message["messageId"].as_u64().unwrap());
    }
    let mut seen = Seen::default();
    seen.until_created(&mut socket, posted.len()).await;
    assert_eq!(seen.created, posted);
    assert!(
        seen.frames.len() <= 2,
        "5 messages acknowledged one after another within the window came as {} frames",
        seen.frames.len()
    );
}

#[tokio::test]
async fn a_token_past_its_exp_but_within_the_leeway_cannot_open_a_stream() {
    let server = Server::start();
    let stale = crate::chat_api::token_expiring(&server, "late", crate::clients::unix_now() - 5);
    let url = format!("ws://{}/api/v1/events", server.addr());
    let mut request = url.into_client_request().unwrap();
    let bearer = format!("Bearer {stale}");
    request
        .headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("the handshake is refused, not {:?}", other.map(|_| ())),
    }
    let chat = Chat::new(&server).await;
    let (status, _) = chat.get("/me", &crate::chat_api::Auth::User(stale)).await;
    assert_eq!(status, 200, "REST still takes it within the leeway");
}
