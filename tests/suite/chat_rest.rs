//! Chat REST (spec 002) against the real binary: rooms, members and roles,
//! messages, threads, paging, receipts and unread counts, limits, privacy,
//! tenants, idempotency and a restart. Users are JWT subjects of the default
//! tenant's realm; the backend is a tenant API key.

use crate::chat_api::{Auth, Chat, default_tenant, tenant_key};
use crate::clients::admin_key;
use crate::harness::{Server, json};
use serde_json::{Value, json};

/// Asserts an error envelope with `status` and `code`.
fn assert_error(reply: &(u16, Value), status: u16, code: &str) {
    assert_eq!(reply.0, status, "{}", reply.1);
    assert_eq!(reply.1["error"]["code"], code, "{}", reply.1);
}

#[tokio::test]
async fn rooms_members_and_messages_follow_the_contract() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let (ann, bob, cat) = (chat.user("ann"), chat.user("bob"), chat.user("cat"));
    let me = chat.expect(200, chat.get("/me", &ann).await).await;
    assert_eq!(me, json!({ "userId": 1, "sub": "ann" }));
    let created = chat
        .post(
            "/rooms",
            &ann,
            json!({ "name": "General", "description": "all", "members": ["bob"] }),
        )
        .await;
    let room = chat.expect(201, created).await;
    let keys: Vec<&String> = room.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "createdAt",
            "createdBy",
            "description",
            "memberCount",
            "name",
            "private",
            "roomId",
            "updatedAt"
        ]
    );
    assert_eq!(room["createdBy"], 1);
    assert_eq!(room["memberCount"], 2);
    assert_eq!(room["private"], false);
    let id = room["roomId"].as_u64().unwrap();
    assert_eq!(chat.id(&bob).await, 2);

    let members = chat
        .expect(200, chat.get(&format!("/rooms/{id}/members"), &cat).await)
        .await;
    assert_eq!(members[0]["role"], "owner");
    assert_eq!(
        members[1],
        json!({ "userId": 2, "sub": "bob", "role": "member", "joinedAt": members[1]["joinedAt"] })
    );

    let message = chat.say(&bob, id, "hello", None).await;
    let keys: Vec<&String> = message.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "createdAt",
            "editedAt",
            "messageId",
            "messageType",
            "parentMessageId",
            "roomId",
            "text",
            "userId"
        ]
    );
    assert_eq!(message["messageType"], "Regular");
    assert_eq!(message["userId"], 2);
    let m = message["messageId"].as_u64().unwrap();
    let path = format!("/rooms/{id}/messages/{m}");
    assert_eq!(chat.expect(200, chat.get(&path, &ann).await).await, message);
    assert_error(
        &chat.patch(&path, &ann, json!({ "text": "x" })).await,
        403,
        "FORBIDDEN",
    );
    let edited = chat
        .expect(
            200,
            chat.patch(&path, &bob, json!({ "text": "hello!" })).await,
        )
        .await;
    assert_eq!(edited["text"], "hello!");
    assert!(edited["editedAt"].is_string());

    // Joining a public room, idempotently; posting needs membership.
    assert_error(&chat.try_say(&cat, id, "hi").await, 403, "FORBIDDEN");
    let joined = chat
        .expect(
            201,
            chat.post(&format!("/rooms/{id}/join"), &cat, json!({}))
                .await,
        )
        .await;
    assert_eq!(joined["role"], "member");
    chat.expect(
        200,
        chat.post(&format!("/rooms/{id}/join"), &cat, json!({}))
            .await,
    )
    .await;
    let catty = chat.say(&cat, id, "meow", None).await;
    let cat_path = format!("/rooms/{id}/messages/{}", catty["messageId"]);
    assert_error(&chat.delete(&cat_path, &bob).await, 403, "FORBIDDEN");
    let deleted = chat.expect(200, chat.delete(&cat_path, &ann).await).await;
    assert_eq!(
        deleted,
        json!({ "messageId": catty["messageId"], "deleted": true })
    );
    assert_error(&chat.get(&cat_path, &ann).await, 404, "NOT_FOUND");

    // Roles: members may not add, admins may; the owner never leaves.
    let add = format!("/rooms/{id}/members");
    assert_error(
        &chat.post(&add, &bob, json!({ "sub": "dan" })).await,
        403,
        "FORBIDDEN",
    );
    let role = chat
        .expect(
            200,
            chat.patch(
                &format!("/rooms/{id}/members/2"),
                &ann,
                json!({ "role": "admin" }),
            )
            .await,
        )
        .await;
    assert_eq!(role["role"], "admin");
    let dan = chat
        .expect(201, chat.post(&add, &bob, json!({ "sub": "dan" })).await)
        .await;
    assert_eq!(dan["sub"], "dan");
    let dan_id = dan["userId"].as_u64().unwrap();
    chat.expect(
        200,
        chat.post(&add, &bob, json!({ "userId": dan_id })).await,
    )
    .await;
    assert_error(
        &chat.post(&add, &bob, json!({ "userId": 999 })).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &chat
            .post(&format!("/rooms/{id}/leave"), &ann, json!({}))
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &chat.delete(&format!("/rooms/{id}/members/1"), &bob).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &chat
            .patch(
                &format!("/rooms/{id}/members/1"),
                &bob,
                json!({ "role": "member" }),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &chat
            .patch(
                &format!("/rooms/{id}/members/2"),
                &ann,
                json!({ "role": "owner" }),
            )
            .await,
        400,
        "VALIDATION_ERROR",
    );
    let removed = chat
        .expect(
            200,
            chat.delete(&format!("/rooms/{id}/members/{dan_id}"), &bob)
                .await,
        )
        .await;
    assert_eq!(removed["removed"], true);
    let left = chat
        .expect(
            200,
            chat.post(&format!("/rooms/{id}/leave"), &cat, json!({}))
                .await,
        )
        .await;
    assert_eq!(left["left"], true);
    let room = chat
        .expect(200, chat.get(&format!("/rooms/{id}"), &cat).await)
        .await;
    assert_eq!(room["memberCount"], 2);

    // Only the owner (or the backend) deletes the room.
    let patched = chat
        .expect(
            200,
            chat.patch(&format!("/rooms/{id}"), &bob, json!({ "name": "Renamed" }))
                .await,
        )
        .await;
    assert_eq!(patched["name"], "Renamed");
    assert_error(
        &chat.delete(&format!("/rooms/{id}"), &bob).await,
        403,
        "FORBIDDEN",
    );
    let gone = chat
        .expect(200, chat.delete(&format!("/rooms/{id}"), &ann).await)
        .await;
    assert_eq!(gone, json!({ "roomId": id, "deleted": true }));
    assert_error(
        &chat.get(&format!("/rooms/{id}"), &ann).await,
        404,
        "NOT_FOUND",
    );
    let mine = chat.expect(200, chat.get("/rooms", &bob).await).await;
    assert_eq!(mine["rooms"], json!([]));
}

#[tokio::test]
async fn private_rooms_are_invisible_to_non_members_and_public_ones_are_listed() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let (ann, eve) = (chat.user("ann"), chat.user("eve"));
    let secret = chat
        .room(&ann, json!({ "name": "Secret", "private": true }))
        .await;
    let open = chat.room(&ann, json!({ "name": "Open" })).await;
    chat.say(&ann, secret, "psst", None).await;
    for path in [
        format!("/rooms/{secret}"),
        format!("/rooms/{secret}/members"),
        format!("/rooms/{secret}/messages"),
        format!("/rooms/{secret}/messages/1"),
        format!("/rooms/{secret}/messages/1/thread"),
        format!("/rooms/{secret}/receipts"),
        "/rooms/999".to_string(),
    ] {
        assert_error(&chat.get(&path, &eve).await, 404, "NOT_FOUND");
    }
    for (path, body) in [
        ("join", json!({})),
        ("leave", json!({})),
        ("messages", json!({ "text": "x" })),
        ("read", json!({ "messageId": 1 })),
    ] {
        let reply = chat
            .post(&format!("/rooms/{secret}/{path}"), &eve, body)
            .await;
        assert_error(&reply, 404, "NOT_FOUND");
    }
    assert_error(
        &chat
            .patch(&format!("/rooms/{secret}"), &eve, json!({ "name": "x" }))
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &chat.delete(&format!("/rooms/{secret}"), &eve).await,
        404,
        "NOT_FOUND",
    );
    let public = chat
        .expect(200, chat.get("/rooms/public", &eve).await)
        .await;
    let names: Vec<&Value> = public["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["name"])
        .collect();
    assert_eq!(names, [&json!("Open")]);
    // Made public, it is listed and joinable; made private again, it is not listed.
    chat.expect(
        200,
        chat.patch(
            &format!("/rooms/{secret}"),
            &ann,
            json!({ "private": false }),
        )
        .await,
    )
    .await;
    let page = chat
        .expect(200, chat.get("/rooms/public?limit=1", &eve).await)
        .await;
    assert_eq!(page["rooms"][0]["roomId"], secret);
    let next = page["nextCursor"].as_str().unwrap().to_string();
    let page = chat
        .expect(
            200,
            chat.get(&format!("/rooms/public?limit=1&cursor={next}"), &eve)
                .await,
        )
        .await;
    assert_eq!(page["rooms"][0]["roomId"], open);
    assert_eq!(page["nextCursor"], Value::Null);
    chat.expect(
        201,
        chat.post(&format!("/rooms/{secret}/join"), &eve, json!({}))
            .await,
    )
    .await;
    chat.expect(
        200,
        chat.patch(
            &format!("/rooms/{secret}"),
            &ann,
            json!({ "private": true }),
        )
        .await,
    )
    .await;
    let public = chat
        .expect(200, chat.get("/rooms/public", &eve).await)
        .await;
    assert_eq!(public["rooms"].as_array().unwrap().len(), 1);
    let room = chat
        .expect(200, chat.get(&format!("/rooms/{secret}"), &eve).await)
        .await;
    assert_eq!(room["private"], true, "a member still sees it");
}

#[tokio::test]
async fn credentials_and_tenants_are_checked() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    let room = chat.room(&ann, json!({ "name": "Mine" })).await;
    assert_error(&chat.get("/rooms", &Auth::None).await, 401, "UNAUTHORIZED");
    let admin = Auth::Key(admin_key(&server));
    assert_error(&chat.get("/rooms/public", &admin).await, 403, "FORBIDDEN");
    assert_error(
        &chat.post("/rooms", &admin, json!({ "name": "x" })).await,
        403,
        "FORBIDDEN",
    );
    let reader = Auth::Key(tenant_key(&server, &default_tenant(&server), &["read"]).await);
    chat.expect(200, chat.get(&format!("/rooms/{room}"), &reader).await)
        .await;
    assert_error(
        &chat.post("/rooms", &reader, json!({ "name": "x" })).await,
        403,
        "FORBIDDEN",
    );

    let created = server
        .http1()
        .post(server.url("/admin/v1/tenants"))
        .header("x-api-key", admin_key(&server))
        .json(&json!({ "slug": "other" }))
        .send()
        .await
        .unwrap();
    let other = json(created).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = Auth::Key(tenant_key(&server, &other, &["read", "publish"]).await);
    assert_error(
        &chat.get(&format!("/rooms/{room}"), &other).await,
        404,
        "NOT_FOUND",
    );
    assert_error(&chat.try_say(&other, room, "x").await, 404, "NOT_FOUND");
    let own = chat.room(&other, json!({ "name": "Theirs" })).await;
    assert_eq!(own, 1, "ids are per tenant");
    let Auth::Key(key) = &other else {
        unreachable!()
    };
    let crossing = server
        .http1()
        .get(server.url(&format!("/api/v1/rooms/{room}")))
        .header("x-api-key", key)
        .header("x-tenantid", default_tenant(&server))
        .send()
        .await
        .unwrap();
    assert_eq!(crossing.status(), 403);
}

/// Asserts a 400 whose details name `name` (a field or a flag).
fn assert_limit(reply: &(u16, Value), name: &str) {
    assert_error(reply, 400, "VALIDATION_ERROR");
    let details = &reply.1["error"]["details"];
    assert!(
        details["field"] == name || details["limit"] == name,
        "{name} not named: {}",
        reply.1
    );
}

#[tokio::test]
async fn validation_names_the_field_or_the_limit() {
    let server = Server::builder()
        .args(&[
            "--chat-max-message-chars",
            "10",
            "--chat-max-name-chars",
            "5",
            "--chat-max-description-chars",
            "6",
            "--chat-max-initial-members",
            "2",
            "--chat-max-room-members",
            "3",
            "--chat-max-rooms-per-user",
            "2",
            "--chat-max-thread-comments",
            "1",
            "--max-body",
            "2KiB",
        ])
        .start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    assert_limit(
        &chat
            .post("/rooms", &ann, json!({ "name": "toolong" }))
            .await,
        "name",
    );
    assert_limit(
        &chat.post("/rooms", &ann, json!({ "name": " " })).await,
        "name",
    );
    assert_limit(
        &chat
            .post(
                "/rooms",
                &ann,
                json!({ "name": "a", "description": "1234567" }),
            )
            .await,
        "description",
    );
    let three = json!({ "name": "a", "members": ["b", "c", "d"] });
    assert_limit(
        &chat.post("/rooms", &ann, three).await,
        "chat-max-initial-members",
    );
    assert_error(
        &chat.post("/rooms", &ann, json!({ "nom": "a" })).await,
        400,
        "VALIDATION_ERROR",
    );
    assert_error(
        &chat
            .post("/rooms", &ann, json!({ "name": "a", "members": [true] }))
            .await,
        400,
        "VALIDATION_ERROR",
    );
    let big = json!({ "name": "a", "description": "x".repeat(3000) });
    assert_error(
        &chat.post("/rooms", &ann, big).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_error(&chat.get("/rooms/abc", &ann).await, 400, "VALIDATION_ERROR");
    assert_error(
        &chat.get("/rooms/public?limit=201", &ann).await,
        400,
        "VALIDATION_ERROR",
    );

    let room = chat
        .room(&ann, json!({ "name": "r", "members": ["b", "c"] }))
        .await;
    assert_limit(
        &chat
            .post(
                &format!("/rooms/{room}/members"),
                &ann,
                json!({ "sub": "d" }),
            )
            .await,
        "chat-max-room-members",
    );
    assert_limit(&chat.try_say(&ann, room, "12345678901").await, "text");
    let parent = chat.say(&ann, room, "p", None).await["messageId"]
        .as_u64()
        .unwrap();
    let comment = chat.say(&ann, room, "c", Some(parent)).await["messageId"]
        .as_u64()
        .unwrap();
    let path = format!("/rooms/{room}/messages");
    assert_limit(
        &chat
            .post(
                &path,
                &ann,
                json!({ "text": "c2", "parentMessageId": parent }),
            )
            .await,
        "chat-max-thread-comments",
    );
    assert_limit(
        &chat
            .post(
                &path,
                &ann,
                json!({ "text": "cc", "parentMessageId": comment }),
            )
            .await,
        "parentMessageId",
    );
    assert_error(
        &chat
            .post(&path, &ann, json!({ "text": "x", "parentMessageId": 999 }))
            .await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &chat
            .post(
                &path,
                &chat.user("b"),
                json!({ "text": "x", "messageType": "System" }),
            )
            .await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &chat
            .post(&path, &ann, json!({ "text": "x", "messageType": "Loud" }))
            .await,
        400,
        "VALIDATION_ERROR",
    );
    assert_limit(
        &chat
            .patch(
                &format!("{path}/{parent}"),
                &ann,
                json!({ "text": "12345678901" }),
            )
            .await,
        "text",
    );

    chat.room(&ann, json!({ "name": "r2" })).await;
    assert_limit(
        &chat.post("/rooms", &ann, json!({ "name": "r3" })).await,
        "chat-max-rooms-per-user",
    );
}

#[tokio::test]
async fn threads_list_comments_and_go_with_their_parent() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    let room = chat.room(&ann, json!({ "name": "t" })).await;
    let parent = chat.say(&ann, room, "parent", None).await;
    let p = parent["messageId"].as_u64().unwrap();
    let mut comments = Vec::new();
    for n in 0..3 {
        let comment = chat.say(&ann, room, &format!("c{n}"), Some(p)).await;
        assert_eq!(comment["parentMessageId"], p);
        comments.push(comment["messageId"].as_u64().unwrap());
    }
    let top = chat
        .expect(
            200,
            chat.get(&format!("/rooms/{room}/messages"), &ann).await,
        )
        .await;
    assert_eq!(
        top["messages"],
        json!([parent]),
        "comments are not top level"
    );
    let thread = format!("/rooms/{room}/messages/{p}/thread");
    let page = chat
        .expect(200, chat.get(&format!("{thread}?limit=2"), &ann).await)
        .await;
    assert_eq!(page["parent"], parent);
    let ids: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["messageId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, comments[..2]);
    assert_eq!(page["hasMore"], true);
    let page = chat
        .expect(
            200,
            chat.get(&format!("{thread}?after={}", comments[1]), &ann)
                .await,
        )
        .await;
    assert_eq!(page["messages"][0]["messageId"], comments[2]);
    assert_eq!(page["hasMore"], false);
    assert_error(
        &chat
            .get(
                &format!("/rooms/{room}/messages/{}/thread", comments[0]),
                &ann,
            )
            .await,
        400,
        "VALIDATION_ERROR",
    );

    chat.expect(
        200,
        chat.delete(&format!("/rooms/{room}/messages/{}", comments[0]), &ann)
            .await,
    )
    .await;
    let page = chat.expect(200, chat.get(&thread, &ann).await).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    chat.expect(
        200,
        chat.delete(&format!("/rooms/{room}/messages/{p}"), &ann)
            .await,
    )
    .await;
    for id in [p, comments[1], comments[2]] {
        assert_error(
            &chat
                .get(&format!("/rooms/{room}/messages/{id}"), &ann)
                .await,
            404,
            "NOT_FOUND",
        );
    }
    assert_error(&chat.get(&thread, &ann).await, 404, "NOT_FOUND");
}

#[tokio::test]
async fn receipts_move_forward_and_unread_counts_skip_own_messages() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let (ann, bob) = (chat.user("ann"), chat.user("bob"));
    let room = chat
        .room(&ann, json!({ "name": "r", "members": ["bob"] }))
        .await;
    let mut ids = Vec::new();
    for text in ["a", "b", "c"] {
        ids.push(
            chat.say(&ann, room, text, None).await["messageId"]
                .as_u64()
                .unwrap(),
        );
    }
    let mine = chat.expect(200, chat.get("/rooms", &bob).await).await;
    let item = &mine["rooms"][0];
    assert_eq!(item["unreadCount"], 3);
    assert_eq!(item["role"], "member");
    assert_eq!(item["lastMessage"]["messageId"], ids[2]);
    assert_eq!(item["lastReadMessageId"], Value::Null);
    let ann_view = chat.expect(200, chat.get("/rooms", &ann).await).await;
    assert_eq!(
        ann_view["rooms"][0]["unreadCount"], 0,
        "own messages are not unread"
    );
    assert_eq!(ann_view["rooms"][0]["role"], "owner");

    let read = format!("/rooms/{room}/read");
    let state = chat
        .expect(
            200,
            chat.post(&read, &bob, json!({ "messageId": ids[1] })).await,
        )
        .await;
    assert_eq!(
        state,
        json!({ "roomId": room, "userId": 2, "lastReadMessageId": ids[1], "unreadCount": 1 })
    );
    let state = chat
        .expect(
            200,
            chat.post(&read, &bob, json!({ "messageId": ids[0] })).await,
        )
        .await;
    assert_eq!(state["lastReadMessageId"], ids[1], "never backwards");
    chat.say(&bob, room, "mine", None).await;
    let mine = chat.expect(200, chat.get("/rooms", &bob).await).await;
    assert_eq!(mine["rooms"][0]["unreadCount"], 1);
    assert_error(
        &chat.post(&read, &bob, json!({ "messageId": 999 })).await,
        404,
        "NOT_FOUND",
    );
    assert_error(
        &chat
            .post(&read, &chat.backend, json!({ "messageId": ids[0] }))
            .await,
        400,
        "VALIDATION_ERROR",
    );
    let receipts = chat
        .expect(
            200,
            chat.get(&format!("/rooms/{room}/receipts"), &ann).await,
        )
        .await;
    assert_eq!(
        receipts,
        json!([{ "userId": 1, "lastReadMessageId": null }, { "userId": 2, "lastReadMessageId": ids[1] }])
    );
}

#[tokio::test]
async fn my_rooms_follow_activity_and_messages_page_both_ways() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    let first = chat.room(&ann, json!({ "name": "first" })).await;
    let second = chat.room(&ann, json!({ "name": "second" })).await;
    let mut ids = Vec::new();
    for n in 1..=7 {
        ids.push(
            chat.say(&ann, first, &format!("m{n}"), None).await["messageId"]
                .as_u64()
                .unwrap(),
        );
    }
    let page = chat
        .expect(200, chat.get("/rooms?limit=1", &ann).await)
        .await;
    assert_eq!(page["rooms"][0]["roomId"], first, "the last active first");
    let cursor = page["nextCursor"].as_str().unwrap().to_string();
    let page = chat
        .expect(
            200,
            chat.get(&format!("/rooms?limit=1&cursor={cursor}"), &ann)
                .await,
        )
        .await;
    assert_eq!(page["rooms"][0]["roomId"], second);
    assert_eq!(page["nextCursor"], Value::Null);

    let list = |query: String| {
        let chat = &chat;
        let ann = ann.clone();
        async move {
            let page = chat
                .expect(
                    200,
                    chat.get(&format!("/rooms/{first}/messages?{query}"), &ann)
                        .await,
                )
                .await;
            let ids: Vec<u64> = page["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["messageId"].as_u64().unwrap())
                .collect();
            (ids, page["hasMore"].as_bool().unwrap())
        }
    };
    assert_eq!(list("limit=3".into()).await, (ids[4..7].to_vec(), true));
    assert_eq!(
        list(format!("limit=3&before={}", ids[4])).await,
        (ids[1..4].to_vec(), true)
    );
    assert_eq!(
        list(format!("limit=3&before={}", ids[1])).await,
        (ids[..1].to_vec(), false)
    );
    assert_eq!(
        list(format!("limit=3&after={}", ids[0])).await,
        (ids[1..4].to_vec(), true)
    );
    assert_eq!(
        list(format!("limit=3&after={}", ids[5])).await,
        (ids[6..].to_vec(), false)
    );
    assert_eq!(list(String::new()).await, (ids.clone(), false));
    assert_error(
        &chat
            .get(&format!("/rooms/{first}/messages?before=1&after=1"), &ann)
            .await,
        400,
        "VALIDATION_ERROR",
    );
}

#[tokio::test]
async fn the_backend_moderates_everywhere_and_posts_system_messages() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let (ann, bob) = (chat.user("ann"), chat.user("bob"));
    let room = chat
        .room(
            &ann,
            json!({ "name": "r", "private": true, "members": ["bob"] }),
        )
        .await;
    let notice = chat.say(&chat.backend, room, "maintenance", None).await;
    assert_eq!(notice["messageType"], "System");
    assert_eq!(notice["userId"], 0);
    let regular = chat
        .post(
            &format!("/rooms/{room}/messages"),
            &chat.backend,
            json!({ "text": "hi", "messageType": "Regular" }),
        )
        .await;
    assert_eq!(chat.expect(201, regular).await["messageType"], "Regular");
    let system = chat
        .post(
            &format!("/rooms/{room}/messages"),
            &ann,
            json!({ "text": "rules", "messageType": "System" }),
        )
        .await;
    assert_eq!(chat.expect(201, system).await["userId"], 1);
    let bobs = chat.say(&bob, room, "mine", None).await;
    chat.expect(
        200,
        chat.delete(
            &format!("/rooms/{room}/messages/{}", bobs["messageId"]),
            &chat.backend,
        )
        .await,
    )
    .await;
    let created = chat
        .room(
            &chat.backend,
            json!({ "name": "by backend", "members": ["ann", 2] }),
        )
        .await;
    let members = chat
        .expect(
            200,
            chat.get(&format!("/rooms/{created}/members"), &ann).await,
        )
        .await;
    assert_eq!(
        members.as_array().unwrap().len(),
        2,
        "the backend is no member: {members}"
    );
    let me = chat.expect(200, chat.get("/me", &chat.backend).await).await;
    assert_eq!(me, json!({ "userId": 0, "sub": null }));
    chat.expect(
        200,
        chat.delete(&format!("/rooms/{room}"), &chat.backend).await,
    )
    .await;
}

#[tokio::test]
async fn a_retried_write_with_its_key_posts_once() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    let room = chat.room(&ann, json!({ "name": "r" })).await;
    let path = format!("/rooms/{room}/messages");
    let body = json!({ "text": "once", "idempotencyKey": "k-1" });
    let first = chat
        .expect(201, chat.post(&path, &ann, body.clone()).await)
        .await;
    let again = chat.expect(201, chat.post(&path, &ann, body).await).await;
    assert_eq!(first, again);
    let other = chat
        .post(
            &path,
            &ann,
            json!({ "text": "twice", "idempotencyKey": "k-1" }),
        )
        .await;
    assert_error(&other, 409, "CONFLICT");
    let page = chat.expect(200, chat.get(&path, &ann).await).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rooms_messages_and_memberships_survive_a_restart() {
    let mut server = Server::start();
    let (room, message) = {
        let chat = Chat::new(&server).await;
        let ann = chat.user("ann");
        let room = chat
            .room(
                &ann,
                json!({ "name": "kept", "private": true, "members": ["bob"] }),
            )
            .await;
        (room, chat.say(&ann, room, "durable", None).await)
    };
    server.stop();
    let server = Server::builder().data_dir(&server.data_dir).start();
    let chat = Chat::new(&server).await;
    let bob = chat.user("bob");
    assert_eq!(chat.id(&bob).await, 2, "ids are kept");
    let page = chat
        .expect(
            200,
            chat.get(&format!("/rooms/{room}/messages"), &bob).await,
        )
        .await;
    assert_eq!(page["messages"], json!([message]));
    let mine = chat.expect(200, chat.get("/rooms", &bob).await).await;
    assert_eq!(mine["rooms"][0]["roomId"], room);
    assert_eq!(mine["rooms"][0]["unreadCount"], 1);
    let next = chat.say(&chat.user("ann"), room, "after", None).await;
    assert!(next["messageId"].as_u64() > message["messageId"].as_u64());
    assert_eq!(chat.room(&bob, json!({ "name": "new" })).await, room + 1);
}

/// More join/leave rounds than the membership spans the server keeps per
/// user and room (`directory::MAX_SPANS`, 8), so the oldest are dropped.
const ROUNDS: usize = 11;

#[tokio::test]
async fn a_user_who_comes_and_goes_more_than_the_kept_spans_is_a_member_exactly_when_joined() {
    let server = Server::builder()
        .args(&["--chat-max-rooms-per-user", "1"])
        .start();
    let chat = Chat::new(&server).await;
    let (ann, bob) = (chat.user("ann"), chat.user("bob"));
    let room = chat.room(&ann, json!({ "name": "busy" })).await;
    let other = chat.room(&chat.backend, json!({ "name": "other" })).await;
    let (join, leave) = (
        format!("/rooms/{room}/join"),
        format!("/rooms/{room}/leave"),
    );
    let join_other = format!("/rooms/{other}/join");
    let listed = |auth: Auth| {
        let chat = &chat;
        async move {
            let mine = chat.expect(200, chat.get("/rooms", &auth).await).await;
            mine["rooms"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["roomId"].as_u64().unwrap())
                .collect::<Vec<u64>>()
        }
    };
    for round in 0..ROUNDS {
        chat.expect(201, chat.post(&join, &bob, json!({})).await)
            .await;
        assert_eq!(listed(bob.clone()).await, [room], "round {round}");
        assert_limit(
            &chat.post(&join_other, &bob, json!({})).await,
            "chat-max-rooms-per-user",
        );
        chat.say(&bob, room, &format!("round {round}"), None).await;
        chat.expect(200, chat.post(&leave, &bob, json!({})).await)
            .await;
        assert_eq!(listed(bob.clone()).await, [0u64; 0], "round {round}");
        assert_error(&chat.try_say(&bob, room, "x").await, 403, "FORBIDDEN");
    }
    chat.expect(201, chat.post(&join_other, &bob, json!({})).await)
        .await;
    assert_eq!(
        listed(bob.clone()).await,
        [other],
        "counted in no other room"
    );
    let members = chat
        .expect(200, chat.get(&format!("/rooms/{room}/members"), &ann).await)
        .await;
    assert_eq!(members.as_array().unwrap().len(), 1, "{members}");
    chat.expect(
        200,
        chat.post(&format!("/rooms/{other}/leave"), &bob, json!({}))
            .await,
    )
    .await;
    chat.expect(201, chat.post(&join, &bob, json!({})).await)
        .await;
    let room_now = chat
        .expect(200, chat.get(&format!("/rooms/{room}"), &bob).await)
        .await;
    assert_eq!(room_now["memberCount"], 2);
    assert_eq!(listed(bob.clone()).await, [room]);
    chat.say(&bob, room, "back for good", None).await;
}

/// `PATCH path` as `auth` with `body`, which must answer `status`.
async fn expect_patch(chat: &Chat<'_>, status: u16, path: String, auth: &Auth, body: Value) {
    chat.expect(status, chat.patch(&path, auth, body).await)
        .await;
}

#[tokio::test]
async fn roles_follow_the_permission_table() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let [ann, bob, cat, dan] = ["ann", "bob", "cat", "dan"].map(|sub| chat.user(sub));
    let room = chat
        .room(
            &ann,
            json!({ "name": "r", "members": ["bob", "cat", "dan"] }),
        )
        .await;
    let member = |user: u64| format!("/rooms/{room}/members/{user}");
    let (admin, plain) = (json!({ "role": "admin" }), json!({ "role": "member" }));
    // Owner and admins promote; only the owner demotes another admin; an
    // admin may step down; members change no role.
    expect_patch(&chat, 200, member(2), &ann, admin.clone()).await;
    expect_patch(&chat, 200, member(3), &bob, admin.clone()).await;
    let demote = chat.patch(&member(3), &bob, plain.clone()).await;
    assert_error(&demote, 403, "FORBIDDEN");
    assert_error(&chat.delete(&member(3), &bob).await, 403, "FORBIDDEN");
    expect_patch(&chat, 200, member(3), &cat, plain.clone()).await;
    let promote = chat.patch(&member(4), &dan, admin.clone()).await;
    assert_error(&promote, 403, "FORBIDDEN");
    let roles = chat
        .expect(200, chat.get(&format!("/rooms/{room}/members"), &dan).await)
        .await;
    let roles: Vec<&Value> = roles
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["role"])
        .collect();
    assert_eq!(roles, ["owner", "admin", "member", "member"]);

    // Messages: the author edits; the author, admins and the owner delete.
    let anns = chat.say(&ann, room, "rules", None).await["messageId"].clone();
    let dans = chat.say(&dan, room, "spam", None).await["messageId"].clone();
    let cats = chat.say(&cat, room, "mine", None).await["messageId"].clone();
    let message = |id: &Value| format!("/rooms/{room}/messages/{id}");
    let edit = json!({ "text": "edited" });
    for editor in [&bob, &dan] {
        assert_error(
            &chat.patch(&message(&anns), editor, edit.clone()).await,
            403,
            "FORBIDDEN",
        );
    }
    expect_patch(&chat, 200, message(&anns), &ann, edit).await;
    assert_error(&chat.delete(&message(&cats), &dan).await, 403, "FORBIDDEN");
    chat.expect(200, chat.delete(&message(&dans), &bob).await)
        .await;
    chat.expect(200, chat.delete(&message(&cats), &cat).await)
        .await;

    // The room: owners and admins edit it; only the owner deletes it.
    let path = format!("/rooms/{room}");
    expect_patch(&chat, 200, path.clone(), &bob, json!({ "name": "b" })).await;
    let renamed = chat.patch(&path, &dan, json!({ "name": "d" })).await;
    assert_error(&renamed, 403, "FORBIDDEN");
    assert_error(&chat.delete(&path, &bob).await, 403, "FORBIDDEN");
    assert_error(&chat.delete(&member(2), &dan).await, 403, "FORBIDDEN");
    chat.expect(200, chat.delete(&member(4), &bob).await).await;
    chat.expect(200, chat.delete(&member(2), &ann).await).await;
    chat.expect(200, chat.delete(&path, &ann).await).await;
}

/// What a client sees of room `room` and of `auth`'s rooms.
async fn snapshot(chat: &Chat<'_>, room: u64, auth: &Auth) -> Vec<Value> {
    let mut seen = Vec::new();
    for path in [
        format!("/rooms/{room}"),
        format!("/rooms/{room}/members"),
        format!("/rooms/{room}/messages"),
        format!("/rooms/{room}/receipts"),
        "/rooms".to_string(),
        "/rooms/public".to_string(),
    ] {
        seen.push(chat.expect(200, chat.get(&path, auth).await).await);
    }
    seen
}

#[tokio::test]
async fn refused_writes_leave_the_store_as_it_was() {
    let server = Server::builder()
        .args(&[
            "--chat-max-message-chars",
            "10",
            "--chat-max-name-chars",
            "5",
            "--chat-max-initial-members",
            "2",
            "--chat-max-room-members",
            "2",
            "--max-body",
            "2KiB",
        ])
        .start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    let room = chat
        .room(&ann, json!({ "name": "r", "members": ["bob"] }))
        .await;
    let kept = chat.say(&ann, room, "kept", None).await;
    let before = snapshot(&chat, room, &ann).await;

    let three = json!({ "name": "r2", "members": ["x1", "x2", "x3"] });
    let initial = chat.post("/rooms", &ann, three).await;
    assert_limit(&initial, "chat-max-initial-members");
    let crowd = json!({ "name": "r2", "members": ["x1", "x2"] });
    assert_limit(
        &chat.post("/rooms", &ann, crowd).await,
        "chat-max-room-members",
    );
    let nameless = json!({ "name": "r2", "members": [""] });
    assert_limit(&chat.post("/rooms", &ann, nameless).await, "sub");
    let long = json!({ "name": "toolong" });
    assert_limit(&chat.post("/rooms", &ann, long.clone()).await, "name");
    let renamed = chat.patch(&format!("/rooms/{room}"), &ann, long).await;
    assert_limit(&renamed, "name");
    assert_eq!(
        renamed.1["error"]["details"]["limit"],
        "chat-max-name-chars"
    );
    let add = chat
        .post(
            &format!("/rooms/{room}/members"),
            &ann,
            json!({ "sub": "x4" }),
        )
        .await;
    assert_limit(&add, "chat-max-room-members");
    let join = chat
        .post(&format!("/rooms/{room}/join"), &chat.user("x5"), json!({}))
        .await;
    assert_limit(&join, "chat-max-room-members");
    let messages = format!("/rooms/{room}/messages");
    let wordy = json!({ "text": "12345678901" });
    let refused = chat.post(&messages, &ann, wordy.clone()).await;
    assert_limit(&refused, "text");
    assert_eq!(
        refused.1["error"]["details"]["limit"], "chat-max-message-chars",
        "the flag is named"
    );
    let edit = format!("{messages}/{}", kept["messageId"]);
    assert_limit(&chat.patch(&edit, &ann, wordy).await, "text");
    let huge = json!({ "text": "x".repeat(4000) });
    assert_error(
        &chat.post(&messages, &ann, huge).await,
        413,
        "PAYLOAD_TOO_LARGE",
    );
    let Auth::User(token) = &ann else {
        unreachable!()
    };
    let broken = server
        .http1()
        .post(server.url(&format!("/api/v1{messages}")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .unwrap();
    let broken = (broken.status().as_u16(), json(broken).await);
    assert_eq!(broken.0, 400, "{}", broken.1);
    assert!(broken.1["error"]["code"].is_string(), "{}", broken.1);

    assert_eq!(snapshot(&chat, room, &ann).await, before);
    assert_eq!(
        chat.id(&chat.user("newcomer")).await,
        3,
        "no refused write made a user"
    );
    let next = chat.say(&ann, room, "next", None).await;
    assert_eq!(next["messageId"], kept["messageId"].as_u64().unwrap() + 1);
    assert_eq!(chat.room(&ann, json!({ "name": "r2" })).await, room + 1);
}

#[tokio::test]
async fn a_subject_has_one_id_per_tenant() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    assert_eq!(chat.id(&chat.user("ann")).await, 1);
    assert_eq!(chat.id(&chat.user("bob")).await, 2);
    assert_eq!(chat.id(&chat.user("ann")).await, 1, "stable");

    let admin = admin_key(&server);
    let created = server
        .http1()
        .post(server.url("/admin/v1/tenants"))
        .header("x-api-key", &admin)
        .json(&json!({ "slug": "acme" }))
        .send()
        .await
        .unwrap();
    let acme = json(created).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = "acme-chat-realm-secret-of-at-least-32-bytes";
    let realm = server
        .http1()
        .put(server.url(&format!("/admin/v1/tenants/{acme}/realms/default")))
        .header("x-api-key", &admin)
        .json(&json!({ "keys": [{ "kid": null, "algorithm": "HS256", "material": secret }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(realm.status(), 200);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let me = |sub: &str| {
        let claims = json!({ "sub": sub, "exp": exp });
        let token = tidings::auth::jwt::mint_hs256(secret, &claims, None).unwrap();
        server
            .http1()
            .get(server.url("/api/v1/me"))
            .bearer_auth(token)
            .header("x-tenantid", &acme)
            .send()
    };
    let bob = json(me("bob").await.unwrap()).await;
    assert_eq!(
        bob["data"],
        json!({ "userId": 1, "sub": "bob" }),
        "acme's own ids"
    );
    let ann = json(me("ann").await.unwrap()).await;
    assert_eq!(ann["data"]["userId"], 2);
    assert_eq!(
        chat.id(&chat.user("bob")).await,
        2,
        "the default tenant's kept"
    );
}

#[test]
fn the_chat_limits_are_flags_documented_in_serve_help() {
    let help = std::process::Command::new(crate::harness::binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for (flag, env, doc) in [
        ("message-chars", "MESSAGE_CHARS", "longest message text"),
        ("room-members", "ROOM_MEMBERS", "most members of one room"),
        (
            "rooms-per-user",
            "ROOMS_PER_USER",
            "most rooms one user is a member of",
        ),
        ("name-chars", "NAME_CHARS", "longest room name"),
        (
            "description-chars",
            "DESCRIPTION_CHARS",
            "longest room description",
        ),
        (
            "initial-members",
            "INITIAL_MEMBERS",
            "most members named when a room is created",
        ),
        (
            "thread-comments",
            "THREAD_COMMENTS",
            "most comments under one message",
        ),
    ] {
        for expected in [
            format!("--chat-max-{flag}"),
            format!("TIDINGS_CHAT_MAX_{env}"),
            format!("Chat: {doc}"),
        ] {
            assert!(
                text.contains(&expected),
                "serve --help lacks {expected}:\n{text}"
            );
        }
    }
}

/// A deleted room's messages are purged by a durable timer after the
/// deletion (bounded steps, see `modules/chat/purge.rs`): the timer fires
/// and commits, nothing fails or is parked, and other rooms keep theirs.
#[tokio::test]
async fn a_deleted_rooms_messages_are_purged_by_its_timer_and_other_rooms_keep_theirs() {
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let ann = chat.user("ann");
    let doomed = chat.room(&ann, json!({ "name": "doomed" })).await;
    let kept = chat.room(&ann, json!({ "name": "kept" })).await;
    for room in [doomed, kept] {
        for n in 0..5 {
            chat.say(&ann, room, &format!("m{n}"), None).await;
        }
    }
    assert_eq!(server.metric("tidings_timers_fired_total").await, 0.0);
    chat.expect(200, chat.delete(&format!("/rooms/{doomed}"), &ann).await)
        .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.metric("tidings_timers_fired_total").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the purge timer fires"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(server.metric("tidings_timers_failed_total").await, 0.0);
    assert_eq!(server.metric("tidings_timers_parked").await, 0.0);
    let (status, _) = chat.get(&format!("/rooms/{doomed}/messages"), &ann).await;
    assert_eq!(status, 404);
    let page = chat
        .expect(
            200,
            chat.get(&format!("/rooms/{kept}/messages"), &ann).await,
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 5);
}
