//! Discussions (spec 000) against the real binary: the spec's whole flow
//! with an independent EventSource, tickets, moderation visibility, the
//! lifecycle, reply notifications, reactions, readers by key or JWT, limits
//! and tenants.

use crate::clients::{Frame, SseReader, admin_key};
use crate::eventsource::EventSourceClient;
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::Duration;

/// Every event type of spec 000 plus the framing events.
const EVENT_TYPES: [&str; 14] = [
    "connected",
    "connection-timeout",
    "comment_created",
    "comment_edited",
    "comment_deleted",
    "comment_approved",
    "comment_rejected",
    "comment_pinned",
    "comment_unpinned",
    "reaction_toggled",
    "discussion_locked",
    "discussion_unlocked",
    "discussion_archived",
    "notification_reply",
];

/// A backend calling the discussions API with one API key.
pub(crate) struct Backend<'a> {
    server: &'a Server,
    client: reqwest::Client,
    key: String,
}

impl<'a> Backend<'a> {
    pub(crate) fn new(server: &'a Server) -> Self {
        Self::with_key(server, admin_key(server))
    }

    fn with_key(server: &'a Server, key: String) -> Self {
        Self {
            server,
            client: server.http1(),
            key,
        }
    }

    /// Calls `path` as the backend itself (`user: None`) or for a reader.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        user: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.server.url(path))
            .header("x-api-key", &self.key);
        if let Some(user) = user {
            request = request.header("x-external-user-id", user);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, json(response).await)
    }

    pub(crate) async fn post(&self, path: &str, user: Option<&str>, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, user, Some(body))
            .await
    }

    async fn get(&self, path: &str, user: Option<&str>) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, user, None).await
    }

    /// Creates a discussion and returns its id.
    pub(crate) async fn discussion(&self, external_id: &str, moderation: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/discussions",
                None,
                json!({ "externalId": external_id, "title": "An article", "url": "https://example.com/a", "moderation": moderation }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"]["id"].as_str().unwrap().to_string()
    }

    /// Posts a comment as `user`; returns the comment.
    pub(crate) async fn comment(
        &self,
        discussion: &str,
        user: &str,
        text: &str,
        parent: Option<&str>,
    ) -> Value {
        let (status, body) = self
            .post(
                &format!("/api/v1/discussions/{discussion}/comments"),
                Some(user),
                json!({ "body": text, "parentId": parent, "displayName": user.to_uppercase() }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    /// Runs a moderation or lifecycle action (`path` below the discussion).
    async fn action(&self, discussion: &str, path: &str, user: Option<&str>) -> (u16, Value) {
        self.post(
            &format!("/api/v1/discussions/{discussion}/{path}"),
            user,
            json!({ "reason": "because" }),
        )
        .await
    }

    /// Mints a ticket by external id.
    pub(crate) async fn ticket(&self, external_id: &str, viewer: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/stream/ticket-by-external",
                None,
                json!({ "externalId": external_id, "externalUserId": viewer, "displayName": "Viewer" }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["data"].clone()
    }

    /// Opens the discussion's stream with the admin key.
    async fn stream(&self, discussion: &str) -> SseReader {
        let response = self
            .client
            .get(self.server.url(&format!("/api/v1/stream/{discussion}")))
            .header("x-api-key", &self.key)
            .send()
            .await
            .unwrap();
        SseReader::connected(response).await
    }
}

const WAIT: Duration = Duration::from_secs(15);

/// The next event of the Node client, checked to be `event_type`.
#[track_caller]
fn expect(client: &EventSourceClient, event_type: &str) -> Value {
    let event = client.next_event(WAIT);
    assert_eq!(event["type"], event_type, "{event}");
    event
}

#[tokio::test]
async fn the_spec_flow_works_with_a_real_eventsource_including_the_reconnect_cycle() {
    let server = Server::builder()
        .args(&["--sse-lifetime", "8s", "--sse-retry-ms", "1500"])
        .start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("article-123", "pre").await;
    let minted = backend.ticket("article-123", "viewer-1").await;
    assert_eq!(minted["discussionId"], discussion.as_str());
    assert_eq!(minted["discussionStatus"], "open");
    assert!(minted["expiresAt"].is_string());
    let ticket = minted["ticket"].as_str().unwrap();
    let url = server.url(&format!("/api/v1/stream/{discussion}?ticket={ticket}"));
    let Some(client) = EventSourceClient::spawn(&url, &EVENT_TYPES) else {
        return;
    };
    let connected = expect(&client, "connected");
    assert_eq!(connected["data"]["discussionId"], discussion.as_str());

    // A second concurrent stream on the same ticket is refused.
    let second = server.http1().get(&url).send().await.unwrap();
    assert_eq!(second.status(), 409);

    let posted = backend.comment(&discussion, "u1", "first!", None).await;
    let (comment, author) = (
        posted["id"].as_str().unwrap(),
        posted["author"]["userId"].clone(),
    );
    let created = expect(&client, "comment_created");
    assert_eq!(created["data"]["comment"]["status"], "pending");
    assert_eq!(
        created["data"]["comment"]["body"],
        Value::Null,
        "pending bodies stay hidden"
    );
    assert_eq!(created["data"]["originatedBy"]["userId"], author);

    let comment_path = format!("comments/{comment}");
    assert_eq!(
        backend
            .action(&discussion, &format!("{comment_path}/approve"), None)
            .await
            .0,
        200
    );
    let approved = expect(&client, "comment_approved");
    assert_eq!(approved["data"]["comment"]["body"], "first!");
    assert_eq!(approved["data"]["originatedBy"]["userId"], Value::Null);

    let (status, _) = backend
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/discussions/{discussion}/{comment_path}"),
            Some("u1"),
            Some(json!({ "body": "first, edited" })),
        )
        .await;
    assert_eq!(status, 200);
    let edited = expect(&client, "comment_edited");
    assert_eq!(edited["data"]["comment"]["body"], "first, edited");

    let (status, toggled) = backend
        .post(
            &format!("/api/v1/discussions/{discussion}/{comment_path}/reactions"),
            Some("u2"),
            json!({ "reaction": "👍" }),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(toggled["data"]["active"], true);
    let reaction = expect(&client, "reaction_toggled");
    assert_eq!(reaction["data"]["externalUserId"], "u2");
    assert_eq!(reaction["data"]["reaction"], "👍");
    assert_eq!(reaction["data"]["count"], 1);
    assert!(reaction["data"]["originatedBy"]["userId"].is_string());

    assert_eq!(
        backend
            .action(&discussion, &format!("{comment_path}/pin"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        expect(&client, "comment_pinned")["data"]["comment"]["pinned"],
        true
    );
    assert_eq!(
        backend
            .action(&discussion, &format!("{comment_path}/unpin"), None)
            .await
            .0,
        200
    );
    expect(&client, "comment_unpinned");

    // The server cycles the connection; what happens before the client is
    // back must reach it on its own reconnect (same ticket, Last-Event-ID).
    expect(&client, "connection-timeout");
    let reply = backend
        .comment(&discussion, "u2", "missed reply", Some(comment))
        .await;
    let (status, _) = backend
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/discussions/{discussion}/{comment_path}"),
            Some("u1"),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(backend.action(&discussion, "lock", None).await.0, 200);

    let created = expect(&client, "connected");
    assert_eq!(created["data"]["discussionStatus"], "locked");
    let reply_created = expect(&client, "comment_created");
    assert_eq!(reply_created["data"]["comment"]["id"], reply["id"]);
    assert_eq!(reply_created["data"]["comment"]["status"], "pending");
    let deleted = expect(&client, "comment_deleted");
    assert_eq!(deleted["data"]["commentId"], comment);
    assert_eq!(deleted["data"]["deletedBy"]["role"], "author");
    assert_eq!(deleted["data"]["deletedBy"]["userId"], author);
    let locked = expect(&client, "discussion_locked");
    assert_eq!(locked["data"]["reason"], "because");
    assert!(locked["data"]["at"].is_string());
    assert_eq!(locked["data"]["actor"]["userId"], Value::Null);
    assert!(locked["data"].get("originatedBy").is_none());

    // Nothing more, in particular no duplicate of an earlier event.
    assert_eq!(backend.action(&discussion, "unlock", None).await.0, 200);
    expect(&client, "discussion_unlocked");
    assert_eq!(backend.action(&discussion, "archive", None).await.0, 200);
    expect(&client, "discussion_archived");
}

#[tokio::test]
async fn tickets_are_bound_to_their_discussion_and_expire_unused() {
    let server = Server::builder().args(&["--ticket-ttl", "1s"]).start();
    let backend = Backend::new(&server);
    let first = backend.discussion("a-1", "none").await;
    let second = backend.discussion("a-2", "none").await;
    let (status, body) = backend
        .post(
            "/api/v1/stream/ticket",
            None,
            json!({ "discussionId": first }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let ticket = body["data"]["ticket"].as_str().unwrap().to_string();
    let open = |discussion: String, ticket: String| {
        let client = server.http1();
        let url = server.url(&format!("/api/v1/stream/{discussion}?ticket={ticket}"));
        async move { client.get(url).send().await.unwrap() }
    };
    let elsewhere = open(second.clone(), ticket.clone()).await;
    assert_eq!(elsewhere.status(), 403);
    let unused = backend.ticket("a-2", "v").await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let expired = open(second, unused).await;
    assert_eq!(expired.status(), 401);
    assert_eq!(json(expired).await["error"]["code"], "UNAUTHORIZED");
    let (status, body) = backend
        .post(
            "/api/v1/stream/ticket-by-external",
            None,
            json!({ "externalId": "nope" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (404, json!("NOT_FOUND"))
    );
    let (status, _) = backend
        .post(
            "/api/v1/stream/ticket",
            None,
            json!({ "discussionId": "not-a-uuid" }),
        )
        .await;
    assert_eq!(status, 400);
}

/// Comment ids a reader (or a moderator) lists at the top level.
async fn listed(backend: &Backend<'_>, discussion: &str, user: Option<&str>) -> Vec<Value> {
    let (status, body) = backend
        .get(&format!("/api/v1/discussions/{discussion}/comments"), user)
        .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["comments"].as_array().unwrap().clone()
}

#[tokio::test]
async fn pending_comments_are_seen_by_moderators_only_until_approved() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("moderated", "pre").await;
    let pending = backend.comment(&discussion, "u1", "hold me", None).await;
    assert_eq!(pending["status"], "pending");
    let id = pending["id"].as_str().unwrap();
    assert!(listed(&backend, &discussion, Some("u2")).await.is_empty());
    let for_moderator = listed(&backend, &discussion, None).await;
    assert_eq!(for_moderator[0]["body"], "hold me");
    let (status, _) = backend
        .get(
            &format!("/api/v1/discussions/{discussion}/comments/{id}"),
            Some("u2"),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = backend
        .post(
            &format!("/api/v1/discussions/{discussion}/comments"),
            Some("u2"),
            json!({ "body": "re", "parentId": id }),
        )
        .await;
    assert_eq!(status, 409, "no replies to a pending comment");
    let (status, _) = backend
        .action(&discussion, &format!("comments/{id}/approve"), Some("u2"))
        .await;
    assert_eq!(status, 403, "readers do not moderate");
    let rejected = backend.comment(&discussion, "u3", "spam", None).await;
    let rejected_id = rejected["id"].as_str().unwrap();
    assert_eq!(
        backend
            .action(&discussion, &format!("comments/{id}/approve"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        backend
            .action(&discussion, &format!("comments/{rejected_id}/reject"), None)
            .await
            .0,
        200
    );
    let (status, _) = backend
        .action(
            &discussion,
            &format!("comments/{rejected_id}/approve"),
            None,
        )
        .await;
    assert_eq!(status, 409, "only pending comments are moderated");
    let visible = listed(&backend, &discussion, Some("u2")).await;
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0]["body"], "hold me");
    let (_, discussion_record) = backend
        .get(&format!("/api/v1/discussions/{discussion}"), None)
        .await;
    assert_eq!(discussion_record["data"]["commentCount"], 1);
}

#[tokio::test]
async fn locked_discussions_refuse_readers_and_archived_ones_refuse_everyone() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("lifecycle", "none").await;
    let comment = backend.comment(&discussion, "u1", "before", None).await;
    let id = comment["id"].as_str().unwrap();
    assert_eq!(backend.action(&discussion, "lock", None).await.0, 200);
    let (status, body) = backend
        .post(
            &format!("/api/v1/discussions/{discussion}/comments"),
            Some("u1"),
            json!({ "body": "after" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("CONFLICT"))
    );
    let (status, _) = backend
        .post(
            &format!("/api/v1/discussions/{discussion}/comments/{id}/reactions"),
            Some("u2"),
            json!({ "reaction": "+1" }),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        backend.action(&discussion, "lock", None).await.0,
        409,
        "already locked"
    );
    assert_eq!(
        backend
            .action(&discussion, &format!("comments/{id}/pin"), None)
            .await
            .0,
        200,
        "moderators still act"
    );
    assert_eq!(backend.action(&discussion, "unlock", None).await.0, 200);
    backend.comment(&discussion, "u1", "open again", None).await;
    assert_eq!(backend.action(&discussion, "archive", None).await.0, 200);
    for path in [
        format!("comments/{id}/unpin"),
        "lock".into(),
        "unlock".into(),
        "archive".into(),
    ] {
        assert_eq!(
            backend.action(&discussion, &path, None).await.0,
            409,
            "{path} on an archived discussion"
        );
    }
    let (status, _) = backend
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/discussions/{discussion}/comments/{id}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        listed(&backend, &discussion, Some("u9")).await.len(),
        2,
        "still readable"
    );
}

#[tokio::test]
async fn replies_notify_their_parent_author_and_reactions_toggle_per_reader() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("threads", "none").await;
    let mut stream = backend.stream(&discussion).await;
    let parent = backend
        .comment(&discussion, "alice", "question?", None)
        .await;
    let parent_id = parent["id"].as_str().unwrap();
    let alice = parent["author"]["userId"].clone();
    backend
        .comment(&discussion, "alice", "self reply", Some(parent_id))
        .await;
    let reply = backend
        .comment(&discussion, "bob", "answer", Some(parent_id))
        .await;
    let mut types = Vec::new();
    let mut notification = None;
    for _ in 0..4 {
        let frame: Frame = stream.next_event().await.unwrap();
        if frame.event == "notification_reply" {
            notification = Some(frame.json());
        }
        types.push(frame.event);
    }
    assert_eq!(
        types,
        [
            "comment_created",
            "comment_created",
            "comment_created",
            "notification_reply"
        ]
    );
    let notification = notification.unwrap();
    assert_eq!(notification["recipientUserId"], alice);
    assert_eq!(notification["commentId"], reply["id"]);
    assert!(notification.get("originatedBy").is_none() && notification.get("actor").is_none());

    let react = |user: &'static str| {
        let path = format!("/api/v1/discussions/{discussion}/comments/{parent_id}/reactions");
        let backend = &backend;
        async move {
            backend
                .post(&path, Some(user), json!({ "reaction": "❤️" }))
                .await
                .1["data"]
                .clone()
        }
    };
    assert_eq!(react("alice").await["count"], 1);
    assert_eq!(react("bob").await["count"], 2);
    let undone = react("alice").await;
    assert_eq!(
        (undone["active"].clone(), undone["count"].clone()),
        (json!(false), json!(1))
    );
    let (_, replies) = backend
        .get(
            &format!("/api/v1/discussions/{discussion}/comments?parentId={parent_id}"),
            Some("carol"),
        )
        .await;
    assert_eq!(replies["data"]["comments"].as_array().unwrap().len(), 2);
    let top = listed(&backend, &discussion, None).await;
    assert_eq!(top[0]["replyCount"], 2);
    assert_eq!(top[0]["reactions"]["❤️"], 1);
}

fn token(server: &Server, claims: Value) -> String {
    let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
    let secret = config["jwtRealms"][0]["hs256Secret"].as_str().unwrap();
    tidings::auth::jwt::mint_hs256(secret, &claims, None).unwrap()
}

#[tokio::test]
async fn readers_with_a_jwt_share_their_internal_id_and_moderators_moderate() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("jwt", "pre").await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let reader = token(&server, json!({ "sub": "u7", "exp": exp, "name": "Seven" }));
    let moderator = token(
        &server,
        json!({ "sub": "mod", "exp": exp, "roles": ["moderator"] }),
    );
    let post = server
        .http1()
        .post(server.url(&format!("/api/v1/discussions/{discussion}/comments")))
        .bearer_auth(&reader)
        .json(&json!({ "body": "by token" }))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 201);
    let by_token = json(post).await["data"].clone();
    assert_eq!(by_token["author"]["displayName"], "Seven");
    let by_key = backend.comment(&discussion, "u7", "by key", None).await;
    assert_eq!(
        by_token["author"]["userId"], by_key["author"]["userId"],
        "one internal id per external id"
    );
    let approve = |bearer: String| {
        let client = server.http1();
        let url = server.url(&format!(
            "/api/v1/discussions/{discussion}/comments/{}/approve",
            by_token["id"].as_str().unwrap()
        ));
        async move {
            client
                .post(url)
                .bearer_auth(bearer)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(approve(reader.clone()).await, 403);
    assert_eq!(approve(moderator).await, 200);
    let create = server
        .http1()
        .post(server.url("/api/v1/discussions"))
        .bearer_auth(&reader)
        .json(&json!({ "externalId": "x", "title": "t" }))
        .send()
        .await
        .unwrap();
    assert_eq!(create.status(), 403, "readers do not create discussions");
}

#[tokio::test]
async fn bad_input_gets_the_error_envelope_and_limits_hold() {
    let server = Server::builder()
        .args(&[
            "--discussion-max-comment-chars",
            "10",
            "--discussion-max-reaction-kinds",
            "2",
        ])
        .start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("limits", "none").await;
    let (status, body) = backend
        .post(
            "/api/v1/discussions",
            None,
            json!({ "externalId": "limits", "title": "again" }),
        )
        .await;
    assert_eq!(status, 409);
    assert_eq!(
        body["error"]["details"]["discussionId"],
        discussion.as_str()
    );
    let comments = format!("/api/v1/discussions/{discussion}/comments");
    let refusals = [
        json!({ "body": "eleven chars" }),
        json!({ "body": "  " }),
        json!({ "body": "ok", "unknown": 1 }),
        json!({ "body": "ok", "parentId": "nope" }),
    ];
    for body in refusals {
        let (status, answer) = backend.post(&comments, Some("u1"), body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].clone()),
            (400, json!("VALIDATION_ERROR")),
            "{body}"
        );
    }
    let (status, _) = backend
        .post(&comments, None, json!({ "body": "no reader" }))
        .await;
    assert_eq!(status, 400, "a comment needs a reader");
    let (status, _) = backend.get("/api/v1/discussions/not-a-uuid", None).await;
    assert_eq!(status, 400);
    let (status, _) = backend
        .get(&format!("/api/v1/discussions/{}", uuid_like()), None)
        .await;
    assert_eq!(status, 404);
    let comment = backend.comment(&discussion, "u1", "short", None).await;
    let reactions = format!("{comments}/{}/reactions", comment["id"].as_str().unwrap());
    for (reaction, expected) in [("a", 200), ("b", 200), ("c", 400)] {
        let (status, _) = backend
            .post(&reactions, Some("u1"), json!({ "reaction": reaction }))
            .await;
        assert_eq!(status, expected, "reaction {reaction}");
    }
    let (status, _) = backend.get(&format!("{comments}?limit=0"), None).await;
    assert_eq!(status, 400);
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[tokio::test]
async fn discussions_of_one_tenant_are_invisible_to_another() {
    let server = Server::start();
    let admin = Backend::new(&server);
    let discussion = admin.discussion("shared-name", "none").await;
    let (status, tenant) = admin
        .post("/admin/v1/tenants", None, json!({ "slug": "other" }))
        .await;
    assert_eq!(status, 201);
    let tenant = tenant["data"]["id"].as_str().unwrap().to_string();
    let (status, key) = admin
        .post(
            &format!("/admin/v1/tenants/{tenant}/keys"),
            None,
            json!({ "name": "b", "scopes": ["read", "publish"] }),
        )
        .await;
    assert_eq!(status, 201);
    let other = Backend::with_key(&server, key["data"]["secret"].as_str().unwrap().to_string());
    let (status, _) = other
        .get(&format!("/api/v1/discussions/{discussion}"), None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = other
        .post(
            &format!("/api/v1/discussions/{discussion}/comments"),
            Some("u1"),
            json!({ "body": "hi" }),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = other
        .post(
            "/api/v1/stream/ticket",
            None,
            json!({ "discussionId": discussion }),
        )
        .await;
    assert_eq!(status, 404);
    let own = other.discussion("shared-name", "none").await;
    assert_ne!(own, discussion, "external ids are unique per tenant only");
    let mut request = server
        .http1()
        .get(server.url(&format!("/api/v1/discussions/{discussion}")));
    request = request
        .header("x-api-key", &other.key)
        .header("x-tenantid", admin_default_tenant(&server));
    assert_eq!(request.send().await.unwrap().status(), 403);
}

fn admin_default_tenant(server: &Server) -> String {
    let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
    config["defaultTenant"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn discussions_and_their_streams_survive_a_restart() {
    let mut server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("durable", "none").await;
    let mut stream = backend.stream(&discussion).await;
    backend.comment(&discussion, "u1", "kept", None).await;
    let first = stream.next_event().await.unwrap();
    drop(stream);
    server.kill();
    let server = Server::builder().data_dir(&server.data_dir).start();
    let backend = Backend::new(&server);
    let comments = listed(&backend, &discussion, Some("u2")).await;
    assert_eq!(comments[0]["body"], "kept");
    backend
        .comment(&discussion, "u1", "after restart", None)
        .await;
    let response = server
        .http1()
        .get(server.url(&format!("/api/v1/stream/{discussion}")))
        .header("x-api-key", &backend.key)
        .header("last-event-id", first.id.unwrap())
        .send()
        .await
        .unwrap();
    let mut resumed = SseReader::from_response(response);
    assert_eq!(resumed.next_event().await.unwrap().event, "connected");
    let next = resumed.next_event().await.unwrap();
    assert_eq!(next.json()["comment"]["body"], "after restart");
}

#[tokio::test]
async fn comment_pages_chain_by_cursor_and_end_where_visible_comments_end() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("pages", "pre").await;
    let mut approved = Vec::new();
    for n in 0..5 {
        let comment = backend
            .comment(&discussion, "u1", &format!("c{n}"), None)
            .await;
        let id = comment["id"].as_str().unwrap().to_string();
        let path = format!("comments/{id}/approve");
        assert_eq!(backend.action(&discussion, &path, None).await.0, 200);
        approved.push(id);
    }
    backend
        .comment(&discussion, "u2", "still pending", None)
        .await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/discussions/{discussion}/comments?limit=2&cursor={cursor}");
        let (status, page) = backend.get(&path, Some("reader")).await;
        assert_eq!(status, 200, "{page}");
        let comments = page["data"]["comments"].as_array().unwrap();
        assert!(
            !comments.is_empty(),
            "a cursor never leads to an empty page"
        );
        seen.extend(
            comments
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_string()),
        );
        match page["data"]["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(
        seen, approved,
        "oldest first, each once, the pending one hidden"
    );
    let (_, all) = backend
        .get(
            &format!("/api/v1/discussions/{discussion}/comments?limit=10"),
            None,
        )
        .await;
    assert_eq!(
        all["data"]["comments"].as_array().unwrap().len(),
        6,
        "moderators see it"
    );
}

#[tokio::test]
async fn only_authors_and_moderators_change_comments_and_moderation_events_reach_the_stream() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("moderation-events", "pre").await;
    let question = backend.comment(&discussion, "ann", "question", None).await;
    let question_id = question["id"].as_str().unwrap();
    assert_eq!(
        backend
            .action(
                &discussion,
                &format!("comments/{question_id}/approve"),
                None
            )
            .await
            .0,
        200
    );
    let mut stream = backend.stream(&discussion).await;
    let reply = json!({ "body": "answer", "parentId": question_id });
    let (status, answer) = backend
        .post(
            &format!("/api/v1/discussions/{discussion}/comments"),
            Some("bob"),
            reply,
        )
        .await;
    assert_eq!(status, 201);
    let answer_id = answer["data"]["id"].as_str().unwrap();
    let spam = backend.comment(&discussion, "eve", "spam", None).await;
    let spam_id = spam["id"].as_str().unwrap();
    let comment_path = |id: &str| format!("/api/v1/discussions/{discussion}/comments/{id}");

    let edit = json!({ "body": "hijacked" });
    let (status, body) = backend
        .call(
            reqwest::Method::PATCH,
            &comment_path(question_id),
            Some("bob"),
            Some(edit),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (403, json!("FORBIDDEN"))
    );
    let (status, _) = backend
        .call(
            reqwest::Method::DELETE,
            &comment_path(question_id),
            Some("bob"),
            None,
        )
        .await;
    assert_eq!(status, 403, "readers delete only their own comments");

    let approve = format!("comments/{answer_id}/approve");
    assert_eq!(backend.action(&discussion, &approve, None).await.0, 200);
    let reject = format!("comments/{spam_id}/reject");
    assert_eq!(backend.action(&discussion, &reject, None).await.0, 200);
    let (status, _) = backend
        .call(
            reqwest::Method::DELETE,
            &comment_path(question_id),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);

    let mut events = Vec::new();
    for _ in 0..6 {
        let frame = stream.next_event().await.unwrap();
        events.push((frame.event.clone(), frame.json()));
    }
    let types: Vec<&str> = events.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "comment_created",
            "comment_created",
            "comment_approved",
            "notification_reply",
            "comment_rejected",
            "comment_deleted",
        ],
        "a pending reply notifies its parent's author only once approved"
    );
    assert_eq!(events[3].1["recipientUserId"], question["author"]["userId"]);
    assert_eq!(events[4].1["commentId"], spam_id);
    assert_eq!(events[4].1["reason"], "because");
    assert!(
        events[4].1.get("comment").is_none(),
        "a rejected body never streams"
    );
    assert_eq!(
        events[5].1["deletedBy"],
        json!({ "userId": null, "role": "moderator" })
    );
}

/// Asserts a 400 `VALIDATION_ERROR` whose details name `field` and a limit.
#[track_caller]
fn assert_limit(status: u16, body: &Value, field: &str) {
    let error = &body["error"];
    assert_eq!(status, 400, "{field} must be refused: {error}");
    assert_eq!(error["code"], "VALIDATION_ERROR", "{error}");
    let details = &error["details"];
    assert_eq!(details["field"], field, "{error}");
    assert!(
        details["maxChars"].is_u64() || details["maxBytes"].is_u64(),
        "the limit is named: {error}"
    );
}

#[tokio::test]
async fn every_stored_string_of_readers_and_tickets_has_a_limit() {
    let server = Server::start();
    let backend = Backend::new(&server);
    let discussion = backend.discussion("bounded", "none").await;
    let comments = format!("/api/v1/discussions/{discussion}/comments");
    let huge = "n".repeat(900 * 1024);
    let (status, body) = backend
        .post(
            &comments,
            Some("u1"),
            json!({ "body": "hi", "displayName": huge }),
        )
        .await;
    assert_limit(status, &body, "displayName");
    let (status, body) = backend
        .post(
            &comments,
            Some("u1"),
            json!({ "body": "hi", "displayName": "n".repeat(100) }),
        )
        .await;
    assert_eq!(status, 201, "100 characters fit: {body}");

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let long_claim = token(
        &server,
        json!({ "sub": "u9", "exp": exp, "name": "x".repeat(5000) }),
    );
    let post = server
        .http1()
        .post(server.url(&comments))
        .bearer_auth(&long_claim)
        .json(&json!({ "body": "by token" }))
        .send()
        .await
        .unwrap();
    let status = post.status().as_u16();
    assert_limit(status, &json(post).await, "displayName");

    let minted = |body: Value| backend.post("/api/v1/stream/ticket-by-external", None, body);
    let (status, body) = minted(json!({ "externalId": "bounded", "externalUserId": huge })).await;
    assert_limit(status, &body, "externalUserId");
    let (status, body) =
        minted(json!({ "externalId": "bounded", "externalUserId": "v1", "displayName": huge }))
            .await;
    assert_limit(status, &body, "displayName");
    let (status, body) = backend
        .post(
            "/api/v1/topics/room/tickets",
            None,
            json!({ "viewer": { "id": "v1", "name": huge } }),
        )
        .await;
    assert_limit(status, &body, "viewer.name");
    let (status, body) = backend
        .post(
            "/api/v1/discussions",
            None,
            json!({ "externalId": "t", "title": "t".repeat(301) }),
        )
        .await;
    assert_limit(status, &body, "title");
}
