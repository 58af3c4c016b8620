//! The channels REST API (spec 003's source of truth) against the real
//! binary: channels, posts and their tombstones, discussion messages, and
//! the access policy (members, entitlements from the JWT or stored, the
//! required feature, bans, a disabled discussion) as REST reads and writes
//! see it.

use crate::chat_api::{Auth, Chat};
use crate::clients::{mint_jwt, unix_now};
use crate::harness::Server;
use serde_json::{Value, json};

/// A user's JWT with `entitlements` and `features` claims.
pub fn claims_token(server: &Server, sub: &str, entitlements: &[&str], features: &[&str]) -> Auth {
    let claims = json!({
        "sub": sub, "exp": unix_now() + 600,
        "entitlements": entitlements, "features": features,
    });
    Auth::User(mint_jwt(server, claims))
}

/// Creates a channel as the backend; returns its id.
pub async fn channel(api: &Chat<'_>, body: Value) -> u64 {
    let created = api
        .post("/communication/channels", &api.backend, body)
        .await;
    api.expect(201, created).await["id"].as_u64().unwrap()
}

/// Enables the channel's discussion (with `feature` required); returns its id.
pub async fn discussion(api: &Chat<'_>, channel: u64, enabled: bool, feature: Option<&str>) -> u64 {
    let path = format!("/communication/channels/{channel}/discussion");
    let body = json!({ "enabled": enabled, "requiredFeatureKey": feature });
    let reply = api
        .call(reqwest::Method::PUT, &path, &api.backend, Some(body))
        .await;
    api.expect(200, reply).await["discussion"]["discussionId"]
        .as_u64()
        .unwrap()
}

/// A backend PUT or DELETE without a body that must answer 200.
pub async fn backend_call(api: &Chat<'_>, method: reqwest::Method, path: &str) -> Value {
    let reply = api.call(method, path, &api.backend, None).await;
    api.expect(200, reply).await
}

#[tokio::test]
async fn posts_are_written_by_the_backend_and_deleted_ones_are_tombstones() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "News" })).await;
    let reader = api.user("ann");
    let shown = api
        .expect(
            200,
            api.get(&format!("/communication/channels/{id}"), &reader)
                .await,
        )
        .await;
    assert_eq!(shown["readPolicy"], "public");
    let latest = shown["latestEventId"].as_str().unwrap();
    assert_eq!(latest.len(), 36, "a UUID: {latest}");

    let posts = format!("/communication/channels/{id}/posts");
    let body = json!({ "text": "hello", "authorId": "editor-1", "actorId": "editor-1" });
    let post = api
        .expect(201, api.post(&posts, &api.backend, body).await)
        .await;
    assert_eq!(
        (post["id"].as_u64(), post["channelId"].as_u64()),
        (Some(1), Some(id))
    );
    assert_eq!(post["isDeleted"], false);
    assert_eq!(
        post["eventId"].as_str().map(str::len),
        Some(36),
        "the event it appended"
    );
    let (status, refused) = api
        .post(&posts, &reader, json!({ "text": "x", "authorId": "ann" }))
        .await;
    assert_eq!(status, 403, "{refused}");
    let one = format!("{posts}/1");
    let edited = api
        .expect(
            200,
            api.patch(&one, &api.backend, json!({ "text": "hello!" }))
                .await,
        )
        .await;
    assert_eq!(edited["text"], "hello!");
    let same = api
        .patch(&one, &api.backend, json!({ "text": "hello!" }))
        .await;
    assert_eq!(
        same.1["data"]["eventId"],
        Value::Null,
        "nothing changed, no event"
    );
    let pin = api
        .call(
            reqwest::Method::PUT,
            &format!("{one}/pin"),
            &api.backend,
            Some(json!({ "pinned": true })),
        )
        .await;
    assert_eq!(api.expect(200, pin).await["isPinned"], true);
    let second = json!({ "text": "second", "authorId": "editor-1" });
    api.expect(201, api.post(&posts, &api.backend, second).await)
        .await;
    api.expect(200, api.delete(&one, &api.backend).await).await;

    let tombstone = api.expect(200, api.get(&one, &reader).await).await;
    assert_eq!(
        (tombstone["isDeleted"].clone(), tombstone["text"].clone()),
        (json!(true), json!(""))
    );
    assert!(tombstone["deletedAt"].is_string());
    let page = api.expect(200, api.get(&posts, &reader).await).await;
    let texts: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["second"], "pages skip tombstones");
    assert!(
        page["latestEventId"].as_str().unwrap() > latest,
        "the position moved on"
    );
    let (status, _) = api
        .patch(&one, &api.backend, json!({ "text": "again" }))
        .await;
    assert_eq!(status, 409, "a deleted post takes no edit");
}

#[tokio::test]
async fn bad_input_gets_the_error_envelope() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let cases = [
        json!({ "name": "" }),
        json!({ "name": "x", "readPolicy": "secret" }),
        json!({ "name": "x", "readPolicy": "entitled" }),
        json!({ "name": "x", "entitlementKey": "has space" }),
        json!({ "name": "x", "extra": 1 }),
        json!({ "name": "x", "actorId": 5 }),
    ];
    for body in cases {
        let (status, reply) = api
            .post("/communication/channels", &api.backend, body.clone())
            .await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert_eq!(reply["error"]["code"], "VALIDATION_ERROR", "{reply}");
    }
    let (status, reply) = api.get("/communication/channels/9", &api.backend).await;
    assert_eq!(
        (status, reply["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = api.get("/communication/channels/x", &api.backend).await;
    assert_eq!(status, 400);
    let (status, _) = api
        .post(
            "/communication/channels",
            &api.user("ann"),
            json!({ "name": "mine" }),
        )
        .await;
    assert_eq!(status, 403, "users do not create channels");
    let id = channel(&api, json!({ "name": "c" })).await;
    let long = "x".repeat(10_001);
    let body = json!({ "text": long, "authorId": "a" });
    let (status, _) = api
        .post(
            &format!("/communication/channels/{id}/posts"),
            &api.backend,
            body,
        )
        .await;
    assert_eq!(status, 400, "text over --channels-max-text-chars");
}

#[tokio::test]
async fn the_read_policy_admits_members_and_entitled_users_only() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let members = channel(&api, json!({ "name": "club", "readPolicy": "members" })).await;
    let path = format!("/communication/channels/{members}");
    let ann = api.user("ann");
    assert_eq!(api.get(&path, &ann).await.0, 403);
    backend_call(&api, reqwest::Method::PUT, &format!("{path}/members/ann")).await;
    assert_eq!(api.get(&path, &ann).await.0, 200);
    let listed = api
        .expect(200, api.get(&format!("{path}/members"), &api.backend).await)
        .await;
    assert_eq!(listed["members"], json!(["ann"]));
    assert_eq!(
        api.get(&format!("{path}/members"), &ann).await.0,
        403,
        "the backend's list"
    );
    backend_call(
        &api,
        reqwest::Method::DELETE,
        &format!("{path}/members/ann"),
    )
    .await;
    assert_eq!(api.get(&path, &ann).await.0, 403);

    let body = json!({ "name": "gold", "readPolicy": "entitled", "entitlementKey": "gold" });
    let gated = channel(&api, body).await;
    let path = format!("/communication/channels/{gated}/posts");
    assert_eq!(api.get(&path, &ann).await.0, 403);
    let claimed = claims_token(&server, "bob", &["gold"], &[]);
    assert_eq!(
        api.get(&path, &claimed).await.0,
        200,
        "the JWT's entitlements claim"
    );
    let grants = "/communication/users/ann/entitlements/gold";
    backend_call(&api, reqwest::Method::PUT, grants).await;
    assert_eq!(api.get(&path, &ann).await.0, 200, "a stored entitlement");
    let lost = backend_call(&api, reqwest::Method::DELETE, grants).await;
    assert!(lost["entitlements"]["gold"]["lostAt"].is_string(), "{lost}");
    assert_eq!(
        api.get(&path, &ann).await.0,
        403,
        "lost: no realtime or REST access, grace or not"
    );
    let stored = api
        .expect(
            200,
            api.get("/communication/users/ann/grants", &api.backend)
                .await,
        )
        .await;
    assert!(stored["entitlements"]["gold"]["lostAt"].is_string());
}

#[tokio::test]
async fn a_discussion_needs_access_the_feature_no_ban_and_being_enabled() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "talk" })).await;
    let discussion = discussion(&api, id, true, Some("vip")).await;
    let messages = format!("/communication/discussions/{discussion}/messages");
    let plain = api.user("ann");
    let vip = claims_token(&server, "ann", &[], &["vip"]);
    assert_eq!(
        api.get(&messages, &plain).await.0,
        403,
        "without the feature"
    );
    let said = api
        .expect(
            201,
            api.post(&messages, &vip, json!({ "text": "hi" })).await,
        )
        .await;
    assert_eq!(
        (said["authorId"].as_str(), said["channelId"].as_u64()),
        (Some("ann"), Some(id))
    );
    backend_call(
        &api,
        reqwest::Method::PUT,
        "/communication/users/cy/features/vip",
    )
    .await;
    let cy = api.user("cy");
    assert_eq!(api.get(&messages, &cy).await.0, 200, "a stored feature");

    let ban = format!("/communication/discussions/{discussion}/bans/ann");
    let banned = api
        .call(reqwest::Method::PUT, &ban, &api.backend, Some(json!({})))
        .await;
    api.expect(200, banned).await;
    assert_eq!(
        api.post(&messages, &vip, json!({ "text": "x" })).await.0,
        403,
        "banned"
    );
    let past = json!({ "until": "2020-01-01T00:00:00Z", "reason": "spam" });
    let ended = api
        .call(reqwest::Method::PUT, &ban, &api.backend, Some(past))
        .await;
    api.expect(200, ended).await;
    assert_eq!(
        api.post(&messages, &vip, json!({ "text": "back" })).await.0,
        201,
        "an ended ban"
    );

    let theirs = format!("{messages}/1");
    assert_eq!(
        api.patch(&theirs, &cy, json!({ "text": "mine" })).await.0,
        403,
        "not the author"
    );
    let edited = api
        .expect(
            200,
            api.patch(&theirs, &vip, json!({ "text": "hi!" })).await,
        )
        .await;
    assert_eq!(edited["text"], "hi!");
    api.expect(200, api.delete(&theirs, &vip).await).await;
    let tombstone = api.expect(200, api.get(&theirs, &cy).await).await;
    assert_eq!(
        (tombstone["isDeleted"].clone(), tombstone["text"].clone()),
        (json!(true), json!(""))
    );
    let restore = format!("{theirs}/restore");
    assert_eq!(api.post(&restore, &cy, json!({})).await.0, 403);
    let back = api
        .expect(200, api.post(&restore, &api.backend, json!({})).await)
        .await;
    assert_eq!(
        (back["isDeleted"].clone(), back["text"].clone()),
        (json!(false), json!("hi!"))
    );

    discussion_disabled(&api, id, &messages, &vip).await;
}

async fn discussion_disabled(api: &Chat<'_>, channel: u64, messages: &str, user: &Auth) {
    let closed = discussion(api, channel, false, None).await;
    assert!(
        messages.contains(&format!("/discussions/{closed}/")),
        "the id is kept"
    );
    assert_eq!(api.get(messages, user).await.0, 403, "disabled");
    let body = json!({ "text": "x", "authorId": "mod" });
    assert_eq!(
        api.post(messages, &api.backend, body).await.0,
        403,
        "no new message, even the backend's"
    );
    api.expect(
        200,
        api.delete(&format!("{messages}/2"), &api.backend).await,
    )
    .await;
}

/// The room's events after `since` over REST sync (`data`).
pub async fn events(api: &Chat<'_>, room: &str, since: Option<&str>, auth: &Auth) -> Value {
    let query = since.map_or(String::new(), |id| format!("?sinceEventId={id}"));
    api.expect(
        200,
        api.get(&format!("/communication/{room}/events{query}"), auth)
            .await,
    )
    .await
}

#[tokio::test]
async fn sync_serves_the_envelopes_in_order_from_a_rest_position_and_says_unknown() {
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "News" })).await;
    let posts = format!("/communication/channels/{id}/posts");
    let first = json!({ "text": "one", "authorId": "ed" });
    api.expect(201, api.post(&posts, &api.backend, first).await)
        .await;
    let page = api.expect(200, api.get(&posts, &api.backend).await).await;
    let position = page["latestEventId"].as_str().unwrap().to_string();
    let body = json!({ "text": "two", "authorId": "ed", "actorId": "boss" });
    api.expect(201, api.post(&posts, &api.backend, body).await)
        .await;
    api.expect(
        200,
        api.patch(&format!("{posts}/2"), &api.backend, json!({ "text": "2" }))
            .await,
    )
    .await;
    api.expect(200, api.delete(&format!("{posts}/1"), &api.backend).await)
        .await;
    let room = format!("channels/{id}");
    let reader = api.user("ann");

    let after = events(&api, &room, Some(&position), &reader).await;
    assert_eq!(after["room"], format!("communication:channel:{id}:posts"));
    assert_eq!(
        (after["status"].as_str(), after["hasMore"].as_bool()),
        (Some("ok"), Some(false))
    );
    let got = after["events"].as_array().unwrap();
    let kinds: Vec<&str> = got
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "communication.channel_post.created",
            "communication.channel_post.updated",
            "communication.channel_post.deleted"
        ],
        "what followed the REST page, in order"
    );
    let created = &got[0];
    assert_eq!(created["data"]["actor"], json!({ "id": "boss" }));
    assert_eq!(created["data"]["postId"], 2);
    assert!(created["occurredAt"].as_str().unwrap().ends_with('Z'));
    let tombstone = &got[2]["data"];
    assert_eq!(
        (
            tombstone["postId"].as_u64(),
            tombstone["isDeleted"].as_bool()
        ),
        (Some(1), Some(true))
    );
    assert!(
        tombstone.get("text").is_none(),
        "a tombstone, not a snapshot: {tombstone}"
    );
    let ids: Vec<&str> = got.iter().map(|e| e["eventId"].as_str().unwrap()).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids sort in commit order: {ids:?}"
    );
    assert!(after["latestEventId"].as_str().unwrap() >= ids[2]);

    let all = events(&api, &room, None, &reader).await;
    assert_eq!(
        all["events"].as_array().unwrap().len(),
        4,
        "from the oldest kept"
    );
    let paged = api
        .expect(
            200,
            api.get(&format!("/communication/{room}/events?limit=3"), &reader)
                .await,
        )
        .await;
    assert_eq!(
        (
            paged["events"].as_array().unwrap().len(),
            paged["hasMore"].as_bool()
        ),
        (3, Some(true))
    );
    let rest = events(&api, &room, paged["latestEventId"].as_str(), &reader).await;
    assert_eq!(
        rest["events"][0]["eventType"],
        "communication.channel_post.deleted"
    );

    let ahead = "ffffffff-ffff-ffff-ffff-ffffffffffff";
    let unknown = events(&api, &room, Some(ahead), &reader).await;
    assert_eq!(
        (
            unknown["status"].as_str(),
            unknown["events"].as_array().map(Vec::len)
        ),
        (Some("unknown"), Some(0))
    );
    let (status, _) = api
        .get(
            &format!("/communication/{room}/events?sinceEventId=019d"),
            &reader,
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn sync_says_too_old_once_retention_removed_events_after_the_id() {
    let server = Server::builder()
        .args(&[
            "--retention",
            "~channels/=3,7d",
            "--prune-interval",
            "200ms",
        ])
        .start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "short" })).await;
    let posts = format!("/communication/channels/{id}/posts");
    let mut first = None;
    for n in 0..6 {
        let body = json!({ "text": format!("post {n}"), "authorId": "ed" });
        let post = api
            .expect(201, api.post(&posts, &api.backend, body).await)
            .await;
        first.get_or_insert(post["eventId"].as_str().unwrap().to_string());
    }
    let room = format!("channels/{id}");
    let reader = api.user("ann");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let synced = events(&api, &room, first.as_deref(), &reader).await;
        if synced["status"] == "too_old" {
            assert_eq!(synced["events"], json!([]), "{synced}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never pruned: {synced}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let kept = events(&api, &room, None, &reader).await;
    let texts: Vec<&str> = kept["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["post 3", "post 4", "post 5"],
        "the newest 3 are kept"
    );
}
