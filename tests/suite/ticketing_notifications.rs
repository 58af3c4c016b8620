//! Every ticket notification type end to end against the real binary
//! (spec 004): each of the 14 types, raised by its action, reaches exactly
//! its recipients and never the actor, observed through every user's inbox
//! (`GET /ticket/notification/list`), and each notification is checked field
//! for field against the spec's schema (the tenant's `actionUrlTemplate`,
//! the actor's name and avatar, the type's priority raised to the ticket's,
//! the type's metadata). Also: SLA deadlines re-planned by a priority
//! change, cancelled by resolving and restarted by reopening through the
//! REST routes; the notification stream admitting only the tenant's
//! `notificationRoles`; and the list-update events of a watcher added and
//! removed and of an assignee seeing a status change.

use crate::clients::{mint_jwt, unix_now};
use crate::harness::{Server, json};
use crate::ticketing_sla::unix_ms;
use crate::ticketing_stream::{
    LIST_UPDATES, NOTIFICATIONS, connect, expect, next_event, open, spec_headers,
};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

/// How long a test waits for notifications to arrive.
const PATIENCE: Duration = Duration::from_secs(10);
/// The `actionUrlTemplate` every test tenant gets.
const ACTION_URL: &str = "https://desk.example.com/t/{ticketNumber}?id={ticketId}";
/// The fields of the spec's notification object.
const FIELDS: [&str; 13] = [
    "actionUrl",
    "actor",
    "category",
    "createdAt",
    "id",
    "message",
    "metadata",
    "priority",
    "read",
    "ticketId",
    "ticketNumber",
    "title",
    "type",
];
/// The roles of an agent.
const AGENT: &[&str] = &["agent"];
/// A requester's (no role).
const NOBODY: &[&str] = &[];

/// A user's display name, carried by their token's `name` claim.
fn name_of(user: &str) -> String {
    format!("User {user}")
}

/// A user's avatar URL, carried by their token's `picture` claim.
fn avatar_of(user: &str) -> String {
    format!("https://avatars.example.com/{user}.png")
}

/// The notification's `actor` for a user of the cast.
fn person(user: &str) -> Value {
    json!({ "id": user, "name": name_of(user), "avatar": avatar_of(user) })
}

/// The `actor` of the SLA timers' notifications.
fn sla_monitor() -> Value {
    json!({ "id": "system", "name": "SLA monitor", "avatar": null })
}

/// The spec's typical priority of a notification type.
fn typical(kind: &str) -> &'static str {
    match kind {
        "slaBreach" => "urgent",
        "assignment" | "mention" | "slaWarning" | "approval" | "escalation" => "high",
        "reassignment" | "statusChange" | "comment" | "approvalDecision" | "resolution"
        | "reopened" => "medium",
        "merge" | "watchAdded" => "low",
        other => panic!("not a notification type of the spec: {other}"),
    }
}

/// A notification's priority: its type's typical one raised to the ticket's.
fn raised(kind: &str, ticket: &str) -> &'static str {
    const ORDER: [&str; 4] = ["low", "medium", "high", "urgent"];
    let rank = |priority: &str| ORDER.iter().position(|p| *p == priority).unwrap();
    ORDER[rank(typical(kind)).max(rank(ticket))]
}

/// An RFC 3339 time with milliseconds, as the server writes them.
fn rfc3339(unix_ms: &Value) -> String {
    let time = UNIX_EPOCH + Duration::from_millis(unix_ms.as_u64().unwrap());
    humantime::format_rfc3339_millis(time).to_string()
}

/// Checks a notification field for field: the spec's fields and no
/// others, about `ticket` (as the action left it), by `actor`, with
/// exactly `metadata`.
fn check(notification: &Value, ticket: &Value, actor: &Value, metadata: &Value) {
    let fields: BTreeSet<&str> = notification
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(fields, BTreeSet::from(FIELDS), "{notification}");
    let id = notification["id"].as_str().unwrap();
    uuid::Uuid::parse_str(id).unwrap_or_else(|_| panic!("id is a UUID: {notification}"));
    let kind = notification["type"].as_str().unwrap();
    let number = ticket["number"].as_str().unwrap();
    assert_eq!(notification["ticketId"], ticket["id"]);
    assert!(notification["ticketId"].is_string());
    assert_eq!(notification["ticketNumber"], number);
    assert_eq!(notification["title"], ticket["title"]);
    let message = notification["message"].as_str().unwrap();
    assert!(message.contains(number), "{kind}: {message}");
    let priority = ticket["priority"].as_str().unwrap();
    assert_eq!(notification["priority"], raised(kind, priority), "{kind}");
    assert_eq!(notification["category"], ticket["category"]);
    let created = unix_ms(&notification["createdAt"]);
    let now = unix_now() * 1000;
    assert!(
        created + 300_000 > now && created < now + 5000,
        "createdAt {created} at {now}"
    );
    assert_eq!(notification["read"], false);
    let url = ACTION_URL
        .replace("{ticketNumber}", number)
        .replace("{ticketId}", ticket["id"].as_str().unwrap());
    assert_eq!(notification["actionUrl"], url);
    assert_eq!(&notification["actor"], actor, "{kind}");
    assert_eq!(&notification["metadata"], metadata, "{kind}");
}

/// How many notifications of each (user, type) there are.
fn tally<'v>(
    pairs: impl IntoIterator<Item = (&'v str, &'v str)>,
) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for (user, kind) in pairs {
        *counts
            .entry((user.to_string(), kind.to_string()))
            .or_insert(0) += 1;
    }
    counts
}

/// The (user, type) tally of delivered notifications.
fn tally_of(delivered: &[(String, Value)]) -> BTreeMap<(String, String), usize> {
    tally(
        delivered
            .iter()
            .map(|(user, n)| (user.as_str(), n["type"].as_str().unwrap())),
    )
}

/// The users of a test with their tokens (carrying a display name and an
/// avatar), and the notifications of their inboxes already looked at.
struct Cast<'a> {
    server: &'a Server,
    tokens: BTreeMap<&'static str, String>,
    seen: BTreeSet<String>,
    /// SLA notifications that arrived while other ones were awaited (their
    /// timers fire on their own schedule): kept for the wait that wants them.
    early_sla: Vec<(String, Value)>,
}

impl<'a> Cast<'a> {
    /// `users` as (id, roles) of the default tenant.
    fn new(server: &'a Server, users: &[(&'static str, &[&str])]) -> Self {
        let tokens = users
            .iter()
            .map(|(user, roles)| {
                let claims = json!({
                    "sub": user, "exp": unix_now() + 600, "roles": roles,
                    "name": name_of(user), "picture": avatar_of(user),
                });
                (*user, mint_jwt(server, claims))
            })
            .collect();
        Self {
            server,
            tokens,
            seen: BTreeSet::new(),
            early_sla: Vec::new(),
        }
    }

    fn token(&self, user: &str) -> &str {
        &self.tokens[user]
    }

    /// `data` of a ticketing call by `user` that must answer `status`.
    async fn call(
        &self,
        user: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        expect(self.server, method, path, self.token(user), body, status).await
    }

    /// As `admin`: sets the tenant's `actionUrlTemplate`, creates the queue
    /// `Network` worked by `agents`; returns the queue's id.
    async fn desk(&self, admin: &str, agents: &[&str]) -> Value {
        let settings = json!({ "actionUrlTemplate": ACTION_URL });
        let stored = self
            .call(admin, Method::PUT, "/settings", Some(settings), 200)
            .await;
        assert_eq!(stored["actionUrlTemplate"], ACTION_URL);
        let queue = json!({ "name": "Network", "agents": agents });
        let queue = self
            .call(admin, Method::POST, "/queue", Some(queue), 201)
            .await;
        queue["id"].clone()
    }

    /// The notifications in every inbox not looked at before, as (user,
    /// notification).
    async fn fresh(&mut self) -> Vec<(String, Value)> {
        let mut found = Vec::new();
        for (user, token) in &self.tokens {
            let path = "/ticket/notification/list?limit=200";
            let page = expect(self.server, Method::GET, path, token, None, 200).await;
            for item in page["items"].as_array().unwrap() {
                if self.seen.insert(item["id"].as_str().unwrap().to_string()) {
                    found.push((user.to_string(), item.clone()));
                }
            }
        }
        found
    }

    /// Polls the inboxes until the new notifications hold every (user,
    /// type) of `expected` (or [`PATIENCE`] passed); asserts they are
    /// exactly those and returns them. SLA notifications count only where
    /// `expected` names one (see `early_sla`).
    async fn arrivals(&mut self, expected: &[(&str, &str)]) -> Vec<(String, Value)> {
        let want = tally(expected.iter().copied());
        let deadline = Instant::now() + PATIENCE;
        let wants_sla = expected.iter().any(|(_, kind)| is_sla(kind));
        let mut got = if wants_sla {
            std::mem::take(&mut self.early_sla)
        } else {
            Vec::new()
        };
        loop {
            for (user, notification) in self.fresh().await {
                if !wants_sla && is_sla(notification["type"].as_str().unwrap_or("")) {
                    self.early_sla.push((user, notification));
                } else {
                    got.push((user, notification));
                }
            }
            let have = tally_of(&got);
            let complete = want
                .iter()
                .all(|(pair, count)| have.get(pair).is_some_and(|n| n >= count));
            if complete || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(tally_of(&got), want, "{got:#?}");
        got
    }

    /// The notifications an action by `actor` on `ticket` raised: exactly
    /// `expected` (never to the actor), each checked field for field with
    /// `metadata`.
    async fn step(
        &mut self,
        expected: &[(&str, &str)],
        ticket: &Value,
        actor: &str,
        metadata: Value,
    ) -> Vec<(String, Value)> {
        assert!(expected.iter().all(|(user, _)| *user != actor));
        let got = self.arrivals(expected).await;
        for (_, notification) in &got {
            check(notification, ticket, &person(actor), &metadata);
        }
        got
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_action_notifies_exactly_its_recipients_with_the_specs_object() {
    let server = Server::start();
    let mut cast = Cast::new(
        &server,
        &[
            ("root", &["admin"]),
            ("ag1", AGENT),
            ("ag2", AGENT),
            ("ag3", AGENT),
            ("qa1", AGENT),
            ("qa2", AGENT),
            ("req", NOBODY),
            ("w1", NOBODY),
            ("m1", NOBODY),
            ("ap", NOBODY),
            ("eve", NOBODY),
        ],
    );
    let queue = cast.desk("root", &["qa1", "qa2"]).await;
    let body = json!({
        "title": "VPN down", "category": "Network", "priority": "low", "queueId": queue,
    });
    let ticket = cast
        .call("req", Method::POST, "/ticket", Some(body), 201)
        .await;
    assert_eq!(ticket["watchers"], json!(["req"]), "the requester watches");
    cast.step(&[], &ticket, "req", json!({})).await;
    let id = ticket["id"].as_str().unwrap().to_string();
    let path = |rest: &str| format!("/ticket/{id}{rest}");
    let status = |to: &str| Some(json!({ "status": to }));

    // Unassigned: the followers are the watchers and the queue's agents.
    let ticket = cast
        .call("ag1", Method::PUT, &path("/status"), status("open"), 200)
        .await;
    let moved = json!({ "previousStatus": "new", "newStatus": "open" });
    let kind = "statusChange";
    cast.step(
        &[("qa1", kind), ("qa2", kind), ("req", kind)],
        &ticket,
        "ag1",
        moved,
    )
    .await;

    let assign = |to: &str| Some(json!({ "assignee": to }));
    let ticket = cast
        .call("ag1", Method::PUT, &path("/assignee"), assign("ag2"), 200)
        .await;
    cast.step(&[("ag2", "assignment")], &ticket, "ag1", json!({}))
        .await;
    let ticket = cast
        .call("ag1", Method::PUT, &path("/assignee"), assign("ag3"), 200)
        .await;
    let expected = [("ag2", "reassignment"), ("ag3", "assignment")];
    cast.step(&expected, &ticket, "ag1", json!({})).await;

    // Assigned: the assignee and the watchers; the acting assignee gets none.
    let ticket = cast
        .call("ag3", Method::PUT, &path("/status"), status("pending"), 200)
        .await;
    let moved = json!({ "previousStatus": "open", "newStatus": "pending" });
    cast.step(&[("req", "statusChange")], &ticket, "ag3", moved)
        .await;

    let watcher = Some(json!({ "userId": "w1" }));
    let ticket = cast
        .call("ag1", Method::POST, &path("/watchers"), watcher, 200)
        .await;
    let added = cast
        .step(&[("w1", "watchAdded")], &ticket, "ag1", json!({}))
        .await;
    assert_eq!(added[0].1["priority"], "low", "its typical priority");

    // The mentioned get `mention` (a follower too), the other followers `comment`.
    let text = Some(json!({ "text": "@m1 and @w1: is the tunnel back?" }));
    let comment = cast
        .call("ag1", Method::POST, &path("/comments"), text, 201)
        .await;
    let expected = [
        ("ag3", "comment"),
        ("m1", "mention"),
        ("req", "comment"),
        ("w1", "mention"),
    ];
    let about = json!({ "commentId": comment["id"] });
    cast.step(&expected, &ticket, "ag1", about).await;

    let ask = Some(json!({ "approverId": "ap", "note": "a new tunnel" }));
    let approval = cast
        .call("ag1", Method::POST, &path("/approvals"), ask, 201)
        .await;
    let about = json!({ "approvalId": approval["id"] });
    cast.step(&[("ap", "approval")], &ticket, "ag1", about.clone())
        .await;
    let decided = path(&format!("/approvals/{}", approval["id"].as_str().unwrap()));
    let decision = Some(json!({ "decision": "approved" }));
    cast.call("ap", Method::PUT, &decided, decision, 200).await;
    let expected = [("ag1", "approvalDecision"), ("ag3", "approvalDecision")];
    let decisions = cast.step(&expected, &ticket, "ap", about).await;
    let message = decisions[0].1["message"].as_str().unwrap();
    assert!(message.contains("approved"), "{message}");

    let reason = Some(json!({ "reason": "the CEO is travelling" }));
    let ticket = cast
        .call("ag1", Method::POST, &path("/escalate"), reason, 200)
        .await;
    let kind = "escalation";
    let expected = [
        ("ag3", kind),
        ("qa1", kind),
        ("qa2", kind),
        ("req", kind),
        ("w1", kind),
    ];
    cast.step(&expected, &ticket, "ag1", json!({})).await;

    let ticket = cast
        .call(
            "ag3",
            Method::PUT,
            &path("/status"),
            status("resolved"),
            200,
        )
        .await;
    let moved = json!({ "previousStatus": "pending", "newStatus": "resolved" });
    let expected = [("req", "resolution"), ("w1", "resolution")];
    cast.step(&expected, &ticket, "ag3", moved).await;

    let ticket = cast
        .call("req", Method::PUT, &path("/status"), status("open"), 200)
        .await;
    let moved = json!({ "previousStatus": "resolved", "newStatus": "open" });
    let expected = [("ag3", "reopened"), ("w1", "reopened")];
    cast.step(&expected, &ticket, "req", moved).await;

    let body = json!({ "title": "Network outage", "priority": "low" });
    let target = cast
        .call("ag1", Method::POST, "/ticket", Some(body), 201)
        .await;
    cast.step(&[], &target, "ag1", json!({})).await;
    let into = Some(json!({ "intoTicketId": target["id"] }));
    let ticket = cast
        .call("ag1", Method::POST, &path("/merge"), into, 200)
        .await;
    let expected = [("ag3", "merge"), ("req", "merge"), ("w1", "merge")];
    let merged = cast.step(&expected, &ticket, "ag1", json!({})).await;
    let message = merged[0].1["message"].as_str().unwrap();
    assert!(
        message.contains(target["number"].as_str().unwrap()),
        "{message}"
    );

    // On an urgent ticket every type is raised to urgent.
    let body = json!({
        "title": "Core switch down", "category": "Hardware", "priority": "urgent",
        "assignee": "ag2",
    });
    let urgent = cast
        .call("ag1", Method::POST, "/ticket", Some(body), 201)
        .await;
    cast.step(&[("ag2", "assignment")], &urgent, "ag1", json!({}))
        .await;
    let path = format!("/ticket/{}/watchers", urgent["id"].as_str().unwrap());
    let watcher = Some(json!({ "userId": "w1" }));
    let urgent = cast.call("ag1", Method::POST, &path, watcher, 200).await;
    let added = cast
        .step(&[("w1", "watchAdded")], &urgent, "ag1", json!({}))
        .await;
    assert_eq!(
        added[0].1["priority"], "urgent",
        "low raised to the ticket's"
    );
}

/// Stores an SLA policy as `admin`.
async fn policy(cast: &Cast<'_>, admin: &str, policy: Value) {
    cast.call(admin, Method::PUT, "/sla/policy", Some(policy), 200)
        .await;
}

/// A ticket's SLA metadata for its `sla` deadline (`response`, `resolution`).
fn sla_metadata(ticket: &Value, sla: &str) -> Value {
    let due = &ticket["sla"][format!("{sla}DueMs")];
    json!({ "slaType": sla, "slaTarget": rfc3339(due) })
}

/// Asserts that no SLA timer of `tickets` is pending, then that their
/// inboxes hold nothing new.
async fn settled(cast: &mut Cast<'_>, user: &str, tickets: &[&Value]) {
    for ticket in tickets {
        let path = format!("/ticket/{}", ticket["id"].as_str().unwrap());
        let now = cast.call(user, Method::GET, &path, None, 200).await;
        assert_eq!(now["sla"]["timers"], Value::Null, "{now}");
    }
    let late = cast.fresh().await;
    assert!(late.is_empty(), "{late:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_warnings_and_breaches_reach_the_followers_and_the_queues_agents() {
    let server = Server::builder()
        .args(&["--tickets-sla-unit", "200ms"])
        .start();
    let mut cast = Cast::new(
        &server,
        &[
            ("root", &["admin"]),
            ("ag1", AGENT),
            ("ag2", AGENT),
            ("qa1", AGENT),
            ("qa2", AGENT),
            ("w1", NOBODY),
            ("eve", NOBODY),
        ],
    );
    let queue = cast.desk("root", &["qa1", "qa2"]).await;
    let targets = json!({ "medium": { "responseMinutes": 5, "resolutionMinutes": 10 } });
    policy(&cast, "root", targets).await;
    let body = json!({
        "title": "Mail queue stuck", "category": "Email", "priority": "medium",
        "queueId": queue, "assignee": "ag2", "watchers": ["w1"],
    });
    let ticket = cast
        .call("ag1", Method::POST, "/ticket", Some(body), 201)
        .await;
    cast.step(&[("ag2", "assignment")], &ticket, "ag1", json!({}))
        .await;

    // The requester ag1 (a watcher), w1, the assignee ag2, the queue's qa1
    // and qa2: a warning and a breach of each deadline.
    let mut expected = Vec::new();
    for user in ["ag1", "ag2", "qa1", "qa2", "w1"] {
        for kind in ["slaWarning", "slaWarning", "slaBreach", "slaBreach"] {
            expected.push((user, kind));
        }
    }
    let got = cast.arrivals(&expected).await;
    let mut phases = BTreeSet::new();
    for (user, notification) in &got {
        let sla = notification["metadata"]["slaType"].as_str().unwrap();
        let metadata = sla_metadata(&ticket, sla);
        check(notification, &ticket, &sla_monitor(), &metadata);
        phases.insert((user, notification["type"].as_str().unwrap(), sla));
    }
    assert_eq!(phases.len(), 20, "one per user, type and deadline");
    settled(&mut cast, "ag1", &[&ticket]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_deadlines_follow_priority_changes_resolving_and_reopening() {
    let server = Server::builder()
        .args(&["--tickets-sla-unit", "200ms"])
        .start();
    let mut cast = Cast::new(
        &server,
        &[("root", &["admin"]), ("ag1", AGENT), ("req", NOBODY)],
    );
    cast.desk("root", &[]).await;
    // 1 unit = 200 ms: high 5 s / 6 s, urgent 1 s / 8 s.
    let targets = json!({
        "high": { "responseMinutes": 25, "resolutionMinutes": 30 },
        "urgent": { "responseMinutes": 5, "resolutionMinutes": 40 },
    });
    policy(&cast, "root", targets).await;
    let create = |title: &str| Some(json!({ "title": title, "priority": "high" }));
    let path =
        |ticket: &Value, rest: &str| format!("/ticket/{}{rest}", ticket["id"].as_str().unwrap());
    let status = |to: &str| Some(json!({ "status": to }));

    // Re-prioritized: the urgent deadlines replace the high ones.
    let first = cast
        .call("req", Method::POST, "/ticket", create("re-planned"), 201)
        .await;
    let urgent = Some(json!({ "priority": "urgent" }));
    let replanned = cast
        .call("ag1", Method::PATCH, &path(&first, ""), urgent, 200)
        .await;
    let created = unix_ms(&first["createdAt"]);
    assert_eq!(first["sla"]["responseDueMs"], created + 5000);
    assert_eq!(replanned["sla"]["responseDueMs"], created + 1000);
    assert_eq!(replanned["sla"]["resolutionDueMs"], created + 8000);

    // Resolved: no deadline is left.
    let resolved = cast
        .call("req", Method::POST, "/ticket", create("resolved"), 201)
        .await;
    let resolved = cast
        .call(
            "ag1",
            Method::PUT,
            &path(&resolved, "/status"),
            status("resolved"),
            200,
        )
        .await;
    assert_eq!(
        resolved["sla"]["resolutionDueMs"],
        Value::Null,
        "{resolved}"
    );
    let moved = json!({ "previousStatus": "new", "newStatus": "resolved" });
    cast.step(&[("req", "resolution")], &resolved, "ag1", moved.clone())
        .await;

    // Reopened a second after resolving: the full resolution target again.
    let reopened = cast
        .call("req", Method::POST, "/ticket", create("reopened"), 201)
        .await;
    let done = cast
        .call(
            "ag1",
            Method::PUT,
            &path(&reopened, "/status"),
            status("resolved"),
            200,
        )
        .await;
    cast.step(&[("req", "resolution")], &done, "ag1", moved)
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reopened = cast
        .call(
            "req",
            Method::PUT,
            &path(&reopened, "/status"),
            status("open"),
            200,
        )
        .await;
    let sla = &reopened["sla"];
    let start = sla["resolutionStartMs"].as_u64().unwrap();
    assert!(
        start >= unix_ms(&reopened["createdAt"]) + 1000,
        "{reopened}"
    );
    assert_eq!(sla["resolutionDueMs"], start + 6000, "{reopened}");
    assert_eq!(sla["responseDueMs"], Value::Null, "an agent responded");

    // The last of these is due after every deadline that was replaced or
    // cancelled: the timers fire in due order, so none of those may be here.
    let expected = [
        ("req", "slaWarning"),
        ("req", "slaBreach"),
        ("req", "slaWarning"),
        ("req", "slaBreach"),
        ("req", "slaWarning"),
        ("req", "slaBreach"),
    ];
    let got = cast.arrivals(&expected).await;
    let mut raised_for = BTreeSet::new();
    for (_, notification) in &got {
        let sla = notification["metadata"]["slaType"].as_str().unwrap();
        let ticket = if notification["ticketId"] == first["id"] {
            &replanned
        } else {
            &reopened
        };
        check(
            notification,
            ticket,
            &sla_monitor(),
            &sla_metadata(ticket, sla),
        );
        let title = ticket["title"].as_str().unwrap();
        raised_for.insert((title, sla, notification["type"].as_str().unwrap()));
    }
    let raised_for: Vec<_> = raised_for.into_iter().collect();
    assert_eq!(
        raised_for,
        [
            ("re-planned", "resolution", "slaBreach"),
            ("re-planned", "resolution", "slaWarning"),
            ("re-planned", "response", "slaBreach"),
            ("re-planned", "response", "slaWarning"),
            ("reopened", "resolution", "slaBreach"),
            ("reopened", "resolution", "slaWarning"),
        ]
    );
    settled(&mut cast, "ag1", &[&replanned, &resolved, &reopened]).await;
}

#[tokio::test]
async fn the_notification_stream_admits_only_the_tenants_notification_roles() {
    let server = Server::start();
    let cast = Cast::new(
        &server,
        &[("root", &["admin"]), ("sup", &["support"]), ("ann", NOBODY)],
    );
    drop(connect(&server, NOTIFICATIONS, cast.token("ann"), None).await);
    let roles = Some(json!({ "notificationRoles": ["support", "agent"] }));
    let stored = cast
        .call("root", Method::PUT, "/settings", roles, 200)
        .await;
    assert_eq!(stored["notificationRoles"], json!(["support", "agent"]));

    for path in [NOTIFICATIONS, LIST_UPDATES] {
        let headers = spec_headers(&server, cast.token("ann"));
        let refused = open(&server, path, &headers, None).await;
        assert_eq!(refused.status(), 403, "{path}");
        let body = json(refused).await;
        assert_eq!(body["error"]["code"], "FORBIDDEN", "{body}");
    }
    let (_, connected) = connect(&server, NOTIFICATIONS, cast.token("sup"), None).await;
    assert_eq!(connected.json()["userId"], "sup");
}

#[tokio::test]
async fn list_streams_follow_a_watcher_added_and_removed_and_the_assignees_status() {
    let server = Server::start();
    let cast = Cast::new(&server, &[("ag1", AGENT), ("ag2", AGENT), ("w1", NOBODY)]);
    let (mut assignee, _) = connect(&server, LIST_UPDATES, cast.token("ag2"), None).await;
    let (mut watcher, _) = connect(&server, LIST_UPDATES, cast.token("w1"), None).await;
    let body = json!({ "title": "Printer jam", "assignee": "ag2" });
    let ticket = cast
        .call("ag1", Method::POST, "/ticket", Some(body), 201)
        .await;
    assert_eq!(next_event(&mut assignee).await.event, "ticketCreated");
    let watchers = format!("/ticket/{}/watchers", ticket["id"].as_str().unwrap());
    let add = || Some(json!({ "userId": "w1" }));

    cast.call("ag1", Method::POST, &watchers, add(), 200).await;
    let added = next_event(&mut watcher).await;
    assert_eq!(added.event, "ticketAdded");
    let data = added.json();
    assert_eq!(data["ticketId"], ticket["id"]);
    assert_eq!(data["ticketNumber"], ticket["number"]);
    assert_eq!(data["changes"]["watchers"], json!(["ag1", "w1"]));
    assert_eq!(data["changes"]["status"], "new");
    assert_eq!(data["changes"]["title"], "Printer jam");
    let updated = next_event(&mut assignee).await;
    assert_eq!(updated.event, "ticketUpdated");
    assert_eq!(
        updated.json()["changes"],
        json!({ "watchers": ["ag1", "w1"] })
    );

    let removal = format!("{watchers}/w1");
    cast.call("ag1", Method::DELETE, &removal, None, 200).await;
    let removed = next_event(&mut watcher).await;
    assert_eq!(removed.event, "ticketRemoved");
    let data = removed.json();
    assert_eq!(data["ticketId"], ticket["id"]);
    assert!(data.get("changes").is_none(), "{data}");
    let updated = next_event(&mut assignee).await;
    assert_eq!(updated.json()["changes"], json!({ "watchers": ["ag1"] }));

    let path = format!("/ticket/{}/status", ticket["id"].as_str().unwrap());
    let open_status = Some(json!({ "status": "open" }));
    cast.call("ag1", Method::PUT, &path, open_status, 200).await;
    let updated = next_event(&mut assignee).await;
    assert_eq!(updated.event, "ticketUpdated");
    assert_eq!(updated.json()["changes"], json!({ "status": "open" }));

    // The removed watcher heard nothing of it: its next event is the re-adding.
    cast.call("ag1", Method::POST, &watchers, add(), 200).await;
    let again = next_event(&mut watcher).await;
    assert_eq!(again.event, "ticketAdded");
    assert_eq!(again.json()["changes"]["status"], "open");
}

/// Whether a notification type is raised by an SLA timer.
fn is_sla(kind: &str) -> bool {
    matches!(kind, "slaWarning" | "slaBreach")
}
