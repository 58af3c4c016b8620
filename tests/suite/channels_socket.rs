//! The channels surface over Socket.IO against the real binary, with the
//! unmodified `socket.io-client` 4.8 (default options: long-polling, then
//! the upgrade): connect and its refusals, every client event and its ack,
//! every server event with its envelope and tombstones, access lost while
//! joined (members, entitlement, ban, disabled discussion), sync after a
//! restart, and the token's expiry.

use crate::channels_rest::{backend_call, channel, claims_token, discussion};
use crate::chat_api::{Auth, Chat, token, token_expiring};
use crate::chat_events::client::{Kind, WsClient};
use crate::clients::unix_now;
use crate::harness::Server;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// A `socket.io-client` connected to `server` with `auth`; `None` (after
/// printing why) when the client cannot be installed here.
fn client(server: &Server, auth: Value) -> Option<WsClient> {
    WsClient::open_with(Kind::SocketIo, json!({ "url": server.base, "auth": auth }))
}

/// The JWT of an `Auth::User`.
fn jwt(auth: &Auth) -> String {
    match auth {
        Auth::User(token) => token.clone(),
        _ => panic!("a user's JWT"),
    }
}

/// A connected client of user `auth`: waits for `connect`.
pub(crate) async fn connected(server: &Server, auth: &Auth) -> Option<WsClient> {
    let mut client = client(server, json!({ "token": jwt(auth) }))?;
    let line = client.line().await;
    assert!(line.get("connect").is_some(), "{line}");
    Some(client)
}

/// Emits `event` with `payload`; returns the ack's first argument.
pub(crate) async fn ask(
    client: &mut WsClient,
    line: &mut u64,
    event: &str,
    payload: Value,
) -> Value {
    client.send(&json!({ "emit": event, "args": [payload] }).to_string());
    *line += 1;
    loop {
        let got = client.line().await;
        if got["ack"] == json!(*line) {
            return got["args"][0].clone();
        }
        assert!(
            got.get("upgrade").is_some() || got.get("event").is_some(),
            "{got}"
        );
    }
}

/// The next server event (skipping the engine's upgrade notice).
pub(crate) async fn next_event(client: &mut WsClient) -> Value {
    loop {
        let got = client.line().await;
        if got.get("event").is_some() {
            return got;
        }
        assert!(got.get("upgrade").is_some(), "expected an event, got {got}");
    }
}

/// Asserts no server event arrives within `wait`.
pub(crate) async fn quiet(client: &mut WsClient, wait: Duration) {
    while let Some(got) = client.line_within(wait).await {
        assert!(got.get("upgrade").is_some(), "expected nothing, got {got}");
    }
}

#[tokio::test]
async fn a_connect_without_a_valid_token_is_refused_with_connect_error() {
    let server = Server::start();
    let Some(mut anonymous) = client(&server, json!({})) else {
        return;
    };
    let refused = anonymous.line().await;
    let message = refused["connect_error"]["message"].as_str().unwrap();
    assert!(message.contains("JWT"), "{refused}");
    assert_eq!(refused["connect_error"]["data"]["code"], "UNAUTHORIZED");
    let Some(mut forged) = client(&server, json!({ "token": "not.a.jwt" })) else {
        return;
    };
    let refused = forged.line().await;
    assert_eq!(
        refused["connect_error"]["data"]["code"], "UNAUTHORIZED",
        "{refused}"
    );
    let expired = token_expiring(&server, "ann", unix_now() - 5);
    let Some(mut late) = client(&server, json!({ "token": expired })) else {
        return;
    };
    assert_eq!(
        late.line().await["connect_error"]["data"]["code"],
        "UNAUTHORIZED"
    );
}

#[tokio::test]
async fn a_default_client_joins_gets_every_post_event_as_an_envelope_and_syncs() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "News" })).await;
    let reader = api.user("ann");
    let Some(mut socket) = connected(&server, &reader).await else {
        return;
    };
    let mut n = 0;
    let joined = ask(
        &mut socket,
        &mut n,
        "communication:join_channel_posts",
        json!({ "channelId": id }),
    )
    .await;
    assert_eq!(joined["ok"], true, "{joined}");
    let room = format!("communication:channel:{id}:posts");
    assert_eq!(joined["data"]["room"], room);
    let position = joined["data"]["latestEventId"]
        .as_str()
        .unwrap()
        .to_string();

    let posts = format!("/communication/channels/{id}/posts");
    let body = json!({ "text": "hello", "authorId": "ed", "actorId": "ed" });
    api.expect(201, api.post(&posts, &api.backend, body).await)
        .await;
    api.expect(
        200,
        api.patch(&format!("{posts}/1"), &api.backend, json!({ "text": "hi" }))
            .await,
    )
    .await;
    let pin = Some(json!({ "pinned": true }));
    api.expect(
        200,
        api.call(Method::PUT, &format!("{posts}/1/pin"), &api.backend, pin)
            .await,
    )
    .await;
    api.expect(200, api.delete(&format!("{posts}/1"), &api.backend).await)
        .await;

    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(next_event(&mut socket).await);
    }
    let names: Vec<&str> = got.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "communication.channel_post.created",
            "communication.channel_post.updated",
            "communication.channel_post.pinned",
            "communication.channel_post.deleted"
        ]
    );
    for event in &got {
        let envelope = &event["args"][0];
        assert_eq!(envelope["eventType"], event["event"]);
        let keys: Vec<&String> = envelope.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{envelope}");
        assert!(envelope["occurredAt"].is_string() && envelope["eventId"].is_string());
    }
    assert_eq!(got[0]["args"][0]["data"]["actor"], json!({ "id": "ed" }));
    let tombstone = &got[3]["args"][0]["data"];
    assert_eq!(
        (tombstone["isDeleted"].as_bool(), tombstone.get("text")),
        (Some(true), None)
    );

    let sync = json!({ "channelId": id, "sinceEventId": position });
    let synced = ask(
        &mut socket,
        &mut n,
        "communication:sync_channel_posts",
        sync,
    )
    .await;
    let data = &synced["data"];
    assert_eq!(
        (data["status"].as_str(), data["hasMore"].as_bool()),
        (Some("ok"), Some(false))
    );
    let replayed: Vec<Value> = data["events"].as_array().unwrap().clone();
    let live: Vec<Value> = got.iter().map(|e| e["args"][0].clone()).collect();
    assert_eq!(replayed, live, "sync gives exactly what was delivered live");

    let left = ask(
        &mut socket,
        &mut n,
        "communication:leave_channel_posts",
        json!({ "channelId": id }),
    )
    .await;
    assert_eq!(left["ok"], true);
    let body = json!({ "text": "after", "authorId": "ed" });
    api.expect(201, api.post(&posts, &api.backend, body).await)
        .await;
    quiet(&mut socket, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn every_refusal_acks_one_of_the_five_codes() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let members = channel(&api, json!({ "name": "club", "readPolicy": "members" })).await;
    let open = channel(&api, json!({ "name": "open" })).await;
    let talk = discussion(&api, open, true, None).await;
    let Some(mut socket) = connected(&server, &api.user("ann")).await else {
        return;
    };
    let mut n = 0;
    let cases = [
        (
            "communication:join_channel_posts",
            json!({ "channelId": "1" }),
            "VALIDATION_ERROR",
        ),
        (
            "communication:join_channel_posts",
            json!({}),
            "VALIDATION_ERROR",
        ),
        (
            "communication:join_channel_posts",
            json!({ "channelId": 99 }),
            "NOT_FOUND",
        ),
        (
            "communication:join_channel_posts",
            json!({ "channelId": members }),
            "FORBIDDEN",
        ),
        (
            "communication:join_discussion",
            json!({ "channelId": members }),
            "NOT_FOUND",
        ),
        (
            "communication:sync_channel_posts",
            json!({ "channelId": open, "sinceEventId": "x" }),
            "VALIDATION_ERROR",
        ),
        (
            "communication:sync_channel_posts",
            json!({ "channelId": open, "limit": 0 }),
            "VALIDATION_ERROR",
        ),
        (
            "communication:sync_channel_posts",
            json!({ "channelId": members }),
            "FORBIDDEN",
        ),
        ("communication:no_such_event", json!({}), "VALIDATION_ERROR"),
    ];
    for (event, payload, code) in cases {
        let answer = ask(&mut socket, &mut n, event, payload.clone()).await;
        assert_eq!(answer["ok"], false, "{event} {payload}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{event} {payload}: {answer}");
        assert!(answer["error"]["message"].is_string());
    }
    let by_channel = ask(
        &mut socket,
        &mut n,
        "communication:join_discussion",
        json!({ "channelId": open }),
    )
    .await;
    let room = format!("communication:discussion:{talk}:messages");
    assert_eq!(by_channel["data"]["room"], room, "{by_channel}");
    let by_id = ask(
        &mut socket,
        &mut n,
        "communication:join_discussion",
        json!({ "discussionId": talk }),
    )
    .await;
    assert_eq!(by_id["data"]["room"], room);
    let left = ask(
        &mut socket,
        &mut n,
        "communication:leave_discussion",
        json!({ "discussionId": talk }),
    )
    .await;
    assert_eq!(left["data"]["room"], room);
}

#[tokio::test]
async fn discussion_messages_arrive_created_updated_deleted_and_restored() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "talk" })).await;
    let talk = discussion(&api, id, true, None).await;
    let ann = api.user("ann");
    let Some(mut socket) = connected(&server, &ann).await else {
        return;
    };
    let mut n = 0;
    let joined = ask(
        &mut socket,
        &mut n,
        "communication:join_discussion",
        json!({ "channelId": id }),
    )
    .await;
    assert_eq!(joined["ok"], true, "{joined}");
    let messages = format!("/communication/discussions/{talk}/messages");
    api.expect(
        201,
        api.post(&messages, &ann, json!({ "text": "hi" })).await,
    )
    .await;
    let one = format!("{messages}/1");
    api.expect(200, api.patch(&one, &ann, json!({ "text": "hi!" })).await)
        .await;
    api.expect(200, api.delete(&one, &ann).await).await;
    api.expect(
        200,
        api.post(&format!("{one}/restore"), &api.backend, json!({}))
            .await,
    )
    .await;
    let mut names = Vec::new();
    let mut last = Value::Null;
    for _ in 0..4 {
        let event = next_event(&mut socket).await;
        names.push(event["event"].as_str().unwrap().to_string());
        last = event["args"][0]["data"].clone();
    }
    assert_eq!(
        names,
        [
            "communication.discussion_message.created",
            "communication.discussion_message.updated",
            "communication.discussion_message.deleted",
            "communication.discussion_message.restored"
        ]
    );
    assert_eq!(
        (last["text"].as_str(), last["isDeleted"].as_bool()),
        (Some("hi!"), Some(false))
    );
    assert_eq!(
        (last["discussionId"].as_u64(), last["channelId"].as_u64()),
        (Some(talk), Some(id))
    );
}

/// Joins `room_event` with `payload` as `auth`, then runs `take_away` and
/// posts through `post`: the socket gets `communication.room.left` and never
/// the post; another user's socket in the same room still gets it.
async fn access_lost(
    server: &Server,
    (auth, other): (&Auth, &Auth),
    (join, payload): (&str, Value),
    take_away: impl AsyncFnOnce(),
    post: impl AsyncFnOnce(),
) {
    let Some(mut socket) = connected(server, auth).await else {
        return;
    };
    let Some(mut witness) = connected(server, other).await else {
        return;
    };
    let (mut n, mut m) = (0, 0);
    assert_eq!(
        ask(&mut socket, &mut n, join, payload.clone()).await["ok"],
        true
    );
    assert_eq!(ask(&mut witness, &mut m, join, payload).await["ok"], true);
    take_away().await;
    post().await;
    let left = next_event(&mut socket).await;
    assert_eq!(left["event"], "communication.room.left", "{left}");
    assert_eq!(left["args"][0]["reason"]["code"], "FORBIDDEN");
    let seen = next_event(&mut witness).await;
    assert!(
        seen["event"].as_str().unwrap().ends_with(".created"),
        "{seen}"
    );
    quiet(&mut socket, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_member_removed_an_entitlement_lost_or_a_ban_leaves_the_room_at_once() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let (ann, bob) = (api.user("ann"), api.user("bob"));

    let club = channel(&api, json!({ "name": "club", "readPolicy": "members" })).await;
    for user in ["ann", "bob"] {
        backend_call(
            &api,
            Method::PUT,
            &format!("/communication/channels/{club}/members/{user}"),
        )
        .await;
    }
    let posts = format!("/communication/channels/{club}/posts");
    access_lost(
        &server,
        (&ann, &bob),
        (
            "communication:join_channel_posts",
            json!({ "channelId": club }),
        ),
        async || {
            backend_call(
                &api,
                Method::DELETE,
                &format!("/communication/channels/{club}/members/ann"),
            )
            .await;
        },
        async || {
            let body = json!({ "text": "members only", "authorId": "ed" });
            api.expect(201, api.post(&posts, &api.backend, body).await)
                .await;
        },
    )
    .await;

    let body = json!({ "name": "gold", "readPolicy": "entitled", "entitlementKey": "gold" });
    let gold = channel(&api, body).await;
    for user in ["ann", "bob"] {
        backend_call(
            &api,
            Method::PUT,
            &format!("/communication/users/{user}/entitlements/gold"),
        )
        .await;
    }
    let posts = format!("/communication/channels/{gold}/posts");
    access_lost(
        &server,
        (&ann, &bob),
        (
            "communication:join_channel_posts",
            json!({ "channelId": gold }),
        ),
        async || {
            backend_call(
                &api,
                Method::DELETE,
                "/communication/users/ann/entitlements/gold",
            )
            .await;
        },
        async || {
            let body = json!({ "text": "for the entitled", "authorId": "ed" });
            api.expect(201, api.post(&posts, &api.backend, body).await)
                .await;
        },
    )
    .await;

    let open = channel(&api, json!({ "name": "open" })).await;
    let talk = discussion(&api, open, true, None).await;
    let messages = format!("/communication/discussions/{talk}/messages");
    access_lost(
        &server,
        (&ann, &bob),
        (
            "communication:join_discussion",
            json!({ "discussionId": talk }),
        ),
        async || {
            let ban = format!("/communication/discussions/{talk}/bans/ann");
            api.expect(
                200,
                api.call(Method::PUT, &ban, &api.backend, Some(json!({})))
                    .await,
            )
            .await;
        },
        async || {
            api.expect(
                201,
                api.post(&messages, &bob, json!({ "text": "without ann" }))
                    .await,
            )
            .await;
        },
    )
    .await;
}

#[tokio::test]
async fn a_disabled_discussion_or_a_missing_feature_stops_it_for_those_who_lost_it() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let open = channel(&api, json!({ "name": "open" })).await;
    let talk = discussion(&api, open, true, Some("vip")).await;
    let ann = claims_token(&server, "ann", &[], &[]);
    let bob = claims_token(&server, "bob", &[], &["vip"]);
    backend_call(&api, Method::PUT, "/communication/users/ann/features/vip").await;
    let messages = format!("/communication/discussions/{talk}/messages");
    access_lost(
        &server,
        (&ann, &bob),
        (
            "communication:join_discussion",
            json!({ "channelId": open }),
        ),
        async || {
            backend_call(
                &api,
                Method::DELETE,
                "/communication/users/ann/features/vip",
            )
            .await;
        },
        async || {
            api.expect(
                201,
                api.post(&messages, &bob, json!({ "text": "vip talk" }))
                    .await,
            )
            .await;
        },
    )
    .await;

    let Some(mut socket) = connected(&server, &bob).await else {
        return;
    };
    let mut n = 0;
    let joined = ask(
        &mut socket,
        &mut n,
        "communication:join_discussion",
        json!({ "discussionId": talk }),
    )
    .await;
    assert_eq!(joined["ok"], true);
    discussion(&api, open, false, Some("vip")).await;
    let left = next_event(&mut socket).await;
    assert_eq!(left["event"], "communication.room.left", "{left}");
    assert!(
        left["args"][0]["reason"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
}

#[tokio::test]
async fn a_policy_change_that_keeps_the_user_in_loses_nothing() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "news" })).await;
    backend_call(
        &api,
        Method::PUT,
        &format!("/communication/channels/{id}/members/ann"),
    )
    .await;
    let Some(mut socket) = connected(&server, &api.user("ann")).await else {
        return;
    };
    let mut n = 0;
    let join = json!({ "channelId": id });
    assert_eq!(
        ask(
            &mut socket,
            &mut n,
            "communication:join_channel_posts",
            join
        )
        .await["ok"],
        true
    );
    let path = format!("/communication/channels/{id}");
    api.expect(
        200,
        api.patch(&path, &api.backend, json!({ "readPolicy": "members" }))
            .await,
    )
    .await;
    for text in ["one", "two", "three"] {
        let body = json!({ "text": text, "authorId": "ed" });
        api.expect(
            201,
            api.post(&format!("{path}/posts"), &api.backend, body).await,
        )
        .await;
    }
    for text in ["one", "two", "three"] {
        let event = next_event(&mut socket).await;
        assert_eq!(event["args"][0]["data"]["text"], text, "{event}");
    }
}

#[tokio::test]
async fn the_socket_is_disconnected_when_its_token_expires() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "news" })).await;
    let short = Auth::User(token_expiring(&server, "ann", unix_now() + 2));
    let Some(mut socket) = connected(&server, &short).await else {
        return;
    };
    let mut n = 0;
    let join = json!({ "channelId": id });
    assert_eq!(
        ask(
            &mut socket,
            &mut n,
            "communication:join_channel_posts",
            join
        )
        .await["ok"],
        true
    );
    loop {
        let got = socket
            .line_within(Duration::from_secs(10))
            .await
            .expect("a disconnect");
        if let Some(reason) = got.get("disconnect") {
            assert_eq!(reason, "io server disconnect", "{got}");
            break;
        }
    }
}

#[tokio::test]
async fn clients_resync_across_a_restart_with_nothing_missing() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "news" })).await;
    let user = token(&server, "ann");
    let Some(mut socket) = connected(&server, &Auth::User(user.clone())).await else {
        return;
    };
    let mut n = 0;
    let join = json!({ "channelId": id });
    let joined = ask(
        &mut socket,
        &mut n,
        "communication:join_channel_posts",
        join.clone(),
    )
    .await;
    let mut last = joined["data"]["latestEventId"]
        .as_str()
        .unwrap()
        .to_string();
    let posts = format!("/communication/channels/{id}/posts");
    let body = json!({ "text": "before", "authorId": "ed" });
    api.expect(201, api.post(&posts, &api.backend, body).await)
        .await;
    last = next_event(&mut socket).await["args"][0]["eventId"]
        .as_str()
        .unwrap()
        .to_string()
        .max(last);
    drop(socket);

    let data_dir = server.data_dir.clone();
    let mut server = server;
    server.stop();
    let server = Server::builder().data_dir(&data_dir).start();
    let api = Chat::new(&server).await;
    for text in ["while away 1", "while away 2"] {
        let body = json!({ "text": text, "authorId": "ed" });
        api.expect(201, api.post(&posts, &api.backend, body).await)
            .await;
    }
    let Some(mut socket) = connected(&server, &Auth::User(user)).await else {
        return;
    };
    let mut n = 0;
    assert_eq!(
        ask(
            &mut socket,
            &mut n,
            "communication:join_channel_posts",
            join
        )
        .await["ok"],
        true
    );
    let sync = json!({ "channelId": id, "sinceEventId": last });
    let synced = ask(
        &mut socket,
        &mut n,
        "communication:sync_channel_posts",
        sync,
    )
    .await;
    let texts: Vec<&str> = synced["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["while away 1", "while away 2"]);
}

/// The conformance kit's smoke script (the unmodified default-option
/// `socket.io-client`: polling, upgrade, an event with its ack, disconnect,
/// reconnect) against the product endpoint `/socket.io/` with a JWT.
#[test]
fn the_kit_smoke_script_runs_against_the_product_endpoint() {
    let kit = match crate::socketio::kit()
        .and_then(|kit| crate::socketio::node_available().map(|()| kit))
    {
        Ok(kit) => kit,
        Err(why) => {
            eprintln!("SKIPPED socket.io smoke on /socket.io/: {why}");
            return;
        }
    };
    let server = Server::start();
    let auth = json!({ "token": token(&server, "smoker") }).to_string();
    let output = std::process::Command::new("bash")
        .arg(kit.join("run.sh"))
        .arg(&server.base)
        .args(["--only", "smoke"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SMOKE_AUTH", auth)
        .env("SMOKE_EVENT", "communication:join_channel_posts")
        .env("SMOKE_BROADCAST", "")
        .env("SMOKE_BINARY", "0")
        .output()
        .expect("running the kit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.lines().last() == Some("1 passed, 0 failed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("VALIDATION_ERROR"),
        "the join's ack came back: {stdout}"
    );
}

/// A hostile user with a valid JWT: sockets past the per-user stream limit
/// are refused at CONNECT, and rooms past `--channels-max-joined-rooms` at
/// join; a socket's end frees its slot.
#[tokio::test]
async fn per_user_sockets_and_joined_rooms_are_bounded() {
    let server = Server::builder()
        .args(&[
            "--max-streams-per-user",
            "2",
            "--channels-max-joined-rooms",
            "2",
        ])
        .start();
    let api = Chat::new(&server).await;
    let mut channels = Vec::new();
    for name in ["a", "b", "c"] {
        channels.push(channel(&api, json!({ "name": name })).await);
    }
    let ann = api.user("ann");
    let Some(mut first) = connected(&server, &ann).await else {
        return;
    };
    let Some(_second) = connected(&server, &ann).await else {
        return;
    };
    let Some(mut third) = client(&server, json!({ "token": jwt(&ann) })) else {
        return;
    };
    let refused = third.line().await;
    assert!(refused["connect_error"]["message"].is_string(), "{refused}");
    assert_eq!(
        refused["connect_error"]["data"]["code"], "RATE_LIMITED",
        "{refused}"
    );

    let mut n = 0;
    for id in &channels[..2] {
        let joined = ask(
            &mut first,
            &mut n,
            "communication:join_channel_posts",
            json!({ "channelId": id }),
        )
        .await;
        assert_eq!(joined["ok"], true);
    }
    let over = ask(
        &mut first,
        &mut n,
        "communication:join_channel_posts",
        json!({ "channelId": channels[2] }),
    )
    .await;
    assert_eq!(over["error"]["code"], "VALIDATION_ERROR", "{over}");
    let again = ask(
        &mut first,
        &mut n,
        "communication:join_channel_posts",
        json!({ "channelId": channels[0] }),
    )
    .await;
    assert_eq!(again["ok"], true, "joining a joined room again is fine");

    first.send(&json!({ "disconnect": true }).to_string());
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let Some(mut retry) = client(&server, json!({ "token": jwt(&ann) })) else {
            return;
        };
        if retry.line().await.get("connect").is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
