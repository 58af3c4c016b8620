//! The ticketing core (`/api/v2/ticketing`) against the real binary:
//! tickets (create, read, edit), the status workflow, assignees, watchers,
//! escalation, merge, queues, the tenant's settings and the ticket lists,
//! with their permissions, validation and tenant isolation.

use crate::chat_api::{default_tenant, tenant_key};
use crate::clients::{Admin, mint_jwt, unix_now};
use crate::harness::{Server, json};
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls.
enum Caller {
    /// A user's JWT (with `x-tenantid` when set).
    User(String, Option<String>),
    /// A tenant API key acting for a user.
    Backend(String, &'static str),
}

/// The ticketing API of one server as its clients call it.
struct Desk<'a> {
    server: &'a Server,
    client: reqwest::Client,
}

impl<'a> Desk<'a> {
    fn new(server: &'a Server) -> Self {
        Self {
            server,
            client: server.http1(),
        }
    }

    /// A JWT of the default tenant for `sub` with `roles`.
    fn token(&self, sub: &str, roles: &[&str]) -> String {
        let claims = json!({ "sub": sub, "exp": unix_now() + 600, "roles": roles, "name": sub });
        mint_jwt(self.server, claims)
    }

    /// A user of the default tenant with `roles`.
    fn user(&self, sub: &str, roles: &[&str]) -> Caller {
        Caller::User(self.token(sub, roles), None)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        caller: &Caller,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = self.server.url(&format!("/api/v2/ticketing{path}"));
        let mut request = self.client.request(method, url);
        request = match caller {
            Caller::User(token, tenant) => {
                let request = request.bearer_auth(token);
                match tenant {
                    Some(tenant) => request.header("x-tenantid", tenant),
                    None => request,
                }
            }
            Caller::Backend(key, user) => request
                .header("x-api-key", key)
                .header("x-acting-user-id", *user),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), json(response).await)
    }

    async fn get(&self, path: &str, caller: &Caller) -> (u16, Value) {
        self.call(Method::GET, path, caller, None).await
    }

    async fn post(&self, path: &str, caller: &Caller, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, caller, Some(body)).await
    }

    async fn put(&self, path: &str, caller: &Caller, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, caller, Some(body)).await
    }

    async fn patch(&self, path: &str, caller: &Caller, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, caller, Some(body)).await
    }

    /// Creates a ticket as `caller`; returns its id.
    async fn ticket(&self, caller: &Caller, body: Value) -> String {
        let created = expect(201, self.post("/ticket", caller, body).await);
        created["id"].as_str().unwrap().to_string()
    }

    /// Moves a ticket to `status` (must answer 200); returns it.
    async fn status(&self, id: &str, caller: &Caller, status: &str) -> Value {
        let path = format!("/ticket/{id}/status");
        expect(
            200,
            self.put(&path, caller, json!({ "status": status })).await,
        )
    }

    /// The ids of a list page and its next cursor.
    async fn list(&self, query: &str, caller: &Caller) -> (Vec<String>, Value) {
        let page = expect(
            200,
            self.get(&format!("/ticket/list?{query}"), caller).await,
        );
        let ids = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ticket| ticket["id"].as_str().unwrap().to_string())
            .collect();
        (ids, page["nextCursor"].clone())
    }
}

/// Owned ids, to compare with a list's.
fn ids(ids: &[&String]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// `data` of a reply that must have `status`.
fn expect(status: u16, reply: (u16, Value)) -> Value {
    assert_eq!(reply.0, status, "{}", reply.1);
    reply.1["data"].clone()
}

/// The error message of a reply that must have `status`.
fn refused(status: u16, reply: (u16, Value)) -> String {
    assert_eq!(reply.0, status, "{}", reply.1);
    reply.1["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tickets_are_created_read_and_edited_by_who_may() {
    let server = Server::builder()
        .args(&["--tickets-max-title-chars", "20"])
        .start();
    let desk = Desk::new(&server);
    let (ann, eve, agent) = (
        desk.user("ann", &[]),
        desk.user("eve", &[]),
        desk.user("ag", &["agent"]),
    );
    let created = expect(
        201,
        desk.post(
            "/ticket",
            &ann,
            json!({ "title": "VPN down", "category": "Network" }),
        )
        .await,
    );
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        created["number"].as_str().unwrap().starts_with("INC-"),
        "{created}"
    );
    assert_eq!(
        (
            &created["status"],
            &created["priority"],
            &created["watchers"]
        ),
        (&json!("new"), &json!("medium"), &json!(["ann"]))
    );
    let path = format!("/ticket/{id}");
    assert_eq!(
        expect(200, desk.get(&path, &ann).await)["title"],
        "VPN down"
    );
    assert_eq!(
        expect(200, desk.get(&path, &agent).await)["id"],
        id.as_str()
    );
    refused(404, desk.get(&path, &eve).await);
    refused(404, desk.get("/ticket/999", &agent).await);
    refused(400, desk.get("/ticket/abc", &agent).await);

    let edited = expect(
        200,
        desk.patch(&path, &ann, json!({ "title": "VPN is down" }))
            .await,
    );
    assert_eq!(edited["title"], "VPN is down");
    let message = refused(
        403,
        desk.patch(&path, &ann, json!({ "priority": "high" })).await,
    );
    assert!(message.contains("agent role"), "{message}");
    refused(
        404,
        desk.patch(&path, &eve, json!({ "title": "mine" })).await,
    );
    let edited = expect(
        200,
        desk.patch(
            &path,
            &agent,
            json!({ "priority": "high", "category": "VPN" }),
        )
        .await,
    );
    assert_eq!(
        (&edited["priority"], &edited["category"]),
        (&json!("high"), &json!("VPN"))
    );
    desk.status(&id, &agent, "open").await;
    let message = refused(
        403,
        desk.patch(&path, &ann, json!({ "title": "again" })).await,
    );
    assert!(message.contains("while it is new"), "{message}");

    let message = refused(
        400,
        desk.post("/ticket", &ann, json!({ "title": "x".repeat(21) }))
            .await,
    );
    assert!(message.contains("tickets-max-title-chars"), "{message}");
    refused(
        400,
        desk.post("/ticket", &ann, json!({ "title": "  " })).await,
    );
    refused(
        400,
        desk.post("/ticket", &ann, json!({ "title": "t", "colour": "red" }))
            .await,
    );
    refused(
        400,
        desk.post("/ticket", &ann, json!({ "title": "t", "priority": "huge" }))
            .await,
    );
    refused(
        404,
        desk.post("/ticket", &ann, json!({ "title": "t", "queueId": 7 }))
            .await,
    );
    let message = refused(
        403,
        desk.post("/ticket", &ann, json!({ "title": "t", "assignee": "ag" }))
            .await,
    );
    assert!(message.contains("agent role"), "{message}");
    let message = refused(
        400,
        desk.patch(&path, &agent, json!({ "category": "c".repeat(201) }))
            .await,
    );
    assert!(message.contains("category"), "{message}");

    let token = desk.token("ann", &[]);
    let retried = |key: &'static str| {
        desk.client
            .post(server.url("/api/v2/ticketing/ticket"))
            .bearer_auth(&token)
            .header("idempotency-key", key)
            .json(&json!({ "title": "once" }))
            .send()
    };
    let first = json(retried("k-1").await.unwrap()).await;
    let second = json(retried("k-1").await.unwrap()).await;
    assert_eq!(
        first["data"]["id"], second["data"]["id"],
        "one ticket per key"
    );
}

#[tokio::test]
async fn another_tenants_users_never_reach_a_ticket() {
    let server = Server::start();
    let desk = Desk::new(&server);
    let agent = desk.user("ag", &["agent"]);
    let id = desk.ticket(&agent, json!({ "title": "ours" })).await;

    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    let secret = "acme-ticketing-realm-secret-of-32-bytes-at-least";
    let realm = admin
        .call(
            Method::PUT,
            &format!("/admin/v1/tenants/{acme}/realms/default"),
            Some(json!({ "keys": [{ "kid": null, "algorithm": "HS256", "material": secret }] })),
        )
        .await;
    assert_eq!(realm.status(), 200);
    let claims = json!({ "sub": "ag", "exp": unix_now() + 600, "roles": ["admin"] });
    let token = tidings::auth::jwt::mint_hs256(secret, &claims, None).unwrap();
    let theirs = Caller::User(token.clone(), Some(acme.clone()));
    refused(404, desk.get(&format!("/ticket/{id}"), &theirs).await);
    let (ids, _) = desk.list("view=requested", &theirs).await;
    assert!(ids.is_empty(), "acme's ag has asked nothing");
    let crossing = Caller::User(token, Some(default_tenant(&server)));
    let (status, _) = desk.get(&format!("/ticket/{id}"), &crossing).await;
    assert!(matches!(status, 401 | 403), "{status}");
    let own = desk.ticket(&theirs, json!({ "title": "theirs" })).await;
    assert_eq!(own, "1", "acme's ids are its own");
    assert_eq!(
        expect(200, desk.get("/ticket/1", &agent).await)["title"],
        "ours"
    );
}

#[tokio::test]
async fn the_status_workflow_is_enforced_and_records_the_first_response() {
    let server = Server::start();
    let desk = Desk::new(&server);
    let (ann, agent) = (desk.user("ann", &[]), desk.user("ag", &["agent"]));
    let id = desk.ticket(&ann, json!({ "title": "printer" })).await;
    let path = format!("/ticket/{id}/status");
    let message = refused(
        403,
        desk.put(&path, &ann, json!({ "status": "open" })).await,
    );
    assert!(message.contains("agent role"), "{message}");
    refused(
        400,
        desk.put(&path, &agent, json!({ "status": "done" })).await,
    );

    let opened = desk.status(&id, &agent, "open").await;
    assert!(opened["firstResponseAt"].is_string(), "{opened}");
    let message = refused(
        409,
        desk.put(&path, &agent, json!({ "status": "open" })).await,
    );
    assert!(message.contains("workflow"), "{message}");
    let resolved = desk.status(&id, &agent, "resolved").await;
    assert!(resolved["resolvedAt"].is_string());
    assert_eq!(
        resolved["firstResponseAt"], opened["firstResponseAt"],
        "set once"
    );
    refused(
        403,
        desk.put(&path, &ann, json!({ "status": "pending" })).await,
    );
    assert_eq!(
        desk.status(&id, &ann, "open").await["status"],
        "open",
        "the requester reopens"
    );
    refused(
        403,
        desk.put(&path, &ann, json!({ "status": "resolved" })).await,
    );
    assert_eq!(desk.status(&id, &ann, "closed").await["status"], "closed");
    refused(
        409,
        desk.put(&path, &agent, json!({ "status": "pending" }))
            .await,
    );
    refused(
        409,
        desk.put(&path, &ann, json!({ "status": "closed" })).await,
    );
    assert_eq!(
        desk.status(&id, &agent, "open").await["resolvedAt"],
        resolved["resolvedAt"]
    );

    let own = desk.ticket(&agent, json!({ "title": "my own" })).await;
    let moved = desk.status(&own, &agent, "pending").await;
    assert_eq!(
        moved["firstResponseAt"],
        Value::Null,
        "the requester does not respond to themselves"
    );
}

#[tokio::test]
async fn agents_assign_and_watchers_are_added_and_removed() {
    let server = Server::builder()
        .args(&["--tickets-max-watchers", "3"])
        .start();
    let desk = Desk::new(&server);
    let (ann, bob, eve, agent) = (
        desk.user("ann", &[]),
        desk.user("bob", &[]),
        desk.user("eve", &[]),
        desk.user("ag", &["agent"]),
    );
    let id = desk.ticket(&ann, json!({ "title": "laptop" })).await;
    let ticket = format!("/ticket/{id}");
    let assignee = format!("{ticket}/assignee");
    refused(
        403,
        desk.put(&assignee, &ann, json!({ "assignee": "bob" }))
            .await,
    );
    let assigned = expect(
        200,
        desk.put(&assignee, &agent, json!({ "assignee": "bob" }))
            .await,
    );
    assert_eq!(assigned["assignee"], "bob");
    assert!(
        assigned["firstResponseAt"].is_string(),
        "assigning responds"
    );
    assert_eq!(
        expect(200, desk.get(&ticket, &bob).await)["assignee"],
        "bob"
    );
    let same = expect(
        200,
        desk.put(&assignee, &agent, json!({ "assignee": "bob" }))
            .await,
    );
    assert_eq!(same["updatedAt"], assigned["updatedAt"], "nothing changed");
    expect(
        200,
        desk.put(&assignee, &agent, json!({ "assignee": "cy" }))
            .await,
    );
    refused(404, desk.get(&ticket, &bob).await);
    let cleared = expect(
        200,
        desk.put(&assignee, &agent, json!({ "assignee": null }))
            .await,
    );
    assert_eq!(cleared["assignee"], Value::Null);
    refused(
        400,
        desk.put(&assignee, &agent, json!({ "assignee": "" })).await,
    );

    let watchers = format!("{ticket}/watchers");
    refused(
        404,
        desk.post(&watchers, &eve, json!({ "userId": "eve" })).await,
    );
    let message = refused(
        403,
        desk.post(&watchers, &ann, json!({ "userId": "eve" })).await,
    );
    assert!(message.contains("themselves"), "{message}");
    let added = expect(
        200,
        desk.post(&watchers, &agent, json!({ "userId": "eve" }))
            .await,
    );
    assert_eq!(added["watchers"], json!(["ann", "eve"]));
    let again = expect(
        200,
        desk.post(&watchers, &agent, json!({ "userId": "eve" }))
            .await,
    );
    assert_eq!(again["watchers"], json!(["ann", "eve"]), "no duplicate");
    expect(200, desk.get(&ticket, &eve).await);
    expect(
        200,
        desk.post(&watchers, &agent, json!({ "userId": "fay" }))
            .await,
    );
    let message = refused(
        400,
        desk.post(&watchers, &agent, json!({ "userId": "gus" }))
            .await,
    );
    assert!(message.contains("tickets-max-watchers"), "{message}");
    refused(
        400,
        desk.post(&watchers, &agent, json!({ "user": "gus" })).await,
    );

    let remove = |user: &str| format!("{watchers}/{user}");
    refused(
        404,
        desk.call(Method::DELETE, &remove("gus"), &agent, None)
            .await,
    );
    refused(
        403,
        desk.call(Method::DELETE, &remove("fay"), &eve, None).await,
    );
    let left = expect(
        200,
        desk.call(Method::DELETE, &remove("eve"), &eve, None).await,
    );
    assert_eq!(left["watchers"], json!(["ann", "fay"]));
    refused(404, desk.get(&ticket, &eve).await);
    let encoded = expect(
        200,
        desk.post(&watchers, &agent, json!({ "userId": "a b/c" }))
            .await,
    );
    assert_eq!(encoded["watchers"], json!(["ann", "fay", "a b/c"]));
    let gone = expect(
        200,
        desk.call(Method::DELETE, &remove("a%20b%2Fc"), &agent, None)
            .await,
    );
    assert_eq!(
        gone["watchers"],
        json!(["ann", "fay"]),
        "a percent-encoded id"
    );
}

#[tokio::test]
async fn escalation_counts_and_a_merged_ticket_takes_no_more_writes() {
    let server = Server::builder()
        .args(&["--tickets-max-text-chars", "50"])
        .start();
    let desk = Desk::new(&server);
    let (ann, bob, agent) = (
        desk.user("ann", &[]),
        desk.user("bob", &[]),
        desk.user("ag", &["agent"]),
    );
    let source = desk
        .ticket(&ann, json!({ "title": "mail", "watchers": ["x"] }))
        .await;
    let target = desk.ticket(&bob, json!({ "title": "mail too" })).await;
    let escalate = format!("/ticket/{source}/escalate");
    refused(403, desk.post(&escalate, &ann, json!({})).await);
    expect(200, desk.post(&escalate, &agent, json!({})).await);
    let twice = expect(
        200,
        desk.post(&escalate, &agent, json!({ "reason": "VIP" }))
            .await,
    );
    assert_eq!(twice["escalationLevel"], 2);
    let message = refused(
        400,
        desk.post(&escalate, &agent, json!({ "reason": "r".repeat(51) }))
            .await,
    );
    assert!(message.contains("reason"), "{message}");

    let merge = format!("/ticket/{source}/merge");
    refused(
        403,
        desk.post(&merge, &ann, json!({ "intoTicketId": target }))
            .await,
    );
    refused(
        400,
        desk.post(&merge, &agent, json!({ "intoTicketId": source }))
            .await,
    );
    refused(
        404,
        desk.post(&merge, &agent, json!({ "intoTicketId": "999" }))
            .await,
    );
    let merged = expect(
        200,
        desk.post(&merge, &agent, json!({ "intoTicketId": target }))
            .await,
    );
    assert_eq!(merged["status"], "closed");
    assert_eq!(merged["mergedInto"].to_string().trim_matches('"'), target);
    let into = expect(200, desk.get(&format!("/ticket/{target}"), &agent).await);
    assert_eq!(
        into["watchers"],
        json!(["bob", "ann", "x"]),
        "the source's watchers joined"
    );
    assert_eq!(
        expect(200, desk.get(&format!("/ticket/{target}"), &ann).await)["id"],
        target.as_str()
    );

    let writes = [
        (
            Method::PUT,
            format!("/ticket/{source}/status"),
            json!({ "status": "open" }),
        ),
        (
            Method::PATCH,
            format!("/ticket/{source}"),
            json!({ "title": "t" }),
        ),
        (
            Method::PUT,
            format!("/ticket/{source}/assignee"),
            json!({ "assignee": "ag" }),
        ),
        (
            Method::POST,
            format!("/ticket/{source}/watchers"),
            json!({ "userId": "ag" }),
        ),
        (Method::POST, escalate.clone(), json!({})),
        (
            Method::POST,
            merge.clone(),
            json!({ "intoTicketId": target }),
        ),
    ];
    for (method, path, body) in writes {
        let message = refused(409, desk.call(method, &path, &agent, Some(body)).await);
        assert!(message.contains("merged"), "{path}: {message}");
    }
    let third = desk.ticket(&agent, json!({ "title": "third" })).await;
    let into_merged = json!({ "intoTicketId": source });
    refused(
        409,
        desk.post(&format!("/ticket/{third}/merge"), &agent, into_merged)
            .await,
    );
}

#[tokio::test]
async fn admins_manage_queues_and_settings_and_agents_read_them() {
    let server = Server::builder()
        .args(&["--tickets-max-queue-agents", "3"])
        .start();
    let desk = Desk::new(&server);
    let (ann, agent, admin) = (
        desk.user("ann", &[]),
        desk.user("ag", &["agent"]),
        desk.user("boss", &["ticketing-admin"]),
    );
    let body = json!({ "name": "Network", "agents": ["a1", "a2", "a1"] });
    refused(403, desk.post("/queue", &ann, body.clone()).await);
    let message = refused(403, desk.post("/queue", &agent, body.clone()).await);
    assert!(message.contains("admin"), "{message}");
    let queue = expect(201, desk.post("/queue", &admin, body).await);
    assert_eq!(
        (&queue["name"], &queue["agents"]),
        (&json!("Network"), &json!(["a1", "a2"]))
    );
    let id = queue["id"].to_string();
    let path = format!("/queue/{id}");
    assert_eq!(expect(200, desk.get(&path, &agent).await), queue);
    refused(403, desk.get(&path, &ann).await);
    refused(403, desk.get("/queue", &ann).await);
    refused(404, desk.get("/queue/99", &agent).await);
    let renamed = expect(200, desk.put(&path, &admin, json!({ "name": "Net" })).await);
    assert_eq!(
        (&renamed["name"], &renamed["agents"]),
        (&json!("Net"), &json!(["a1", "a2"]))
    );
    refused(403, desk.put(&path, &agent, json!({ "name": "x" })).await);
    let many = json!({ "agents": ["a", "b", "c", "d"] });
    let message = refused(400, desk.put(&path, &admin, many).await);
    assert!(message.contains("tickets-max-queue-agents"), "{message}");
    refused(
        400,
        desk.post("/queue", &admin, json!({ "name": " " })).await,
    );
    let long = json!({ "name": "n".repeat(201) });
    assert!(refused(400, desk.post("/queue", &admin, long).await).contains("name"));
    let key = tenant_key(&server, &default_tenant(&server), &["read", "publish"]).await;
    let backend = Caller::Backend(key, "ops-bot");
    expect(
        201,
        desk.post("/queue", &backend, json!({ "name": "Mail" }))
            .await,
    );
    expect(
        201,
        desk.post("/queue", &admin, json!({ "name": "Desk" })).await,
    );
    let first = expect(200, desk.get("/queue?limit=2", &agent).await);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    let cursor = first["nextCursor"].as_str().unwrap();
    let rest = expect(
        200,
        desk.get(&format!("/queue?limit=2&cursor={cursor}"), &agent)
            .await,
    );
    assert_eq!(
        (rest["items"][0]["name"].clone(), rest["nextCursor"].clone()),
        (json!("Desk"), Value::Null)
    );
    refused(400, desk.get("/queue?limit=0", &agent).await);

    let defaults = expect(200, desk.get("/settings", &agent).await);
    assert_eq!(
        defaults,
        json!({ "numberPrefix": "INC", "actionUrlTemplate": "/tickets/{ticketId}",
                "notificationRoles": [], "slaWarningPercent": 80 })
    );
    refused(403, desk.get("/settings", &ann).await);
    refused(
        403,
        desk.put("/settings", &agent, json!({ "numberPrefix": "REQ" }))
            .await,
    );
    let changed = expect(
        200,
        desk.put(
            "/settings",
            &admin,
            json!({ "numberPrefix": "REQ", "slaWarningPercent": 90 }),
        )
        .await,
    );
    assert_eq!(
        (&changed["numberPrefix"], &changed["slaWarningPercent"]),
        (&json!("REQ"), &json!(90))
    );
    assert_eq!(changed["actionUrlTemplate"], "/tickets/{ticketId}", "kept");
    for (bad, field) in [
        (json!({ "numberPrefix": "req" }), "numberPrefix"),
        (json!({ "numberPrefix": "ABCDEFGHIJK" }), "numberPrefix"),
        (json!({ "slaWarningPercent": 0 }), "slaWarningPercent"),
        (json!({ "slaWarningPercent": 300 }), "slaWarningPercent"),
        (
            json!({ "actionUrlTemplate": "u".repeat(501) }),
            "actionUrlTemplate",
        ),
        (
            json!({ "notificationRoles": (0..21).map(|n| format!("r{n}")).collect::<Vec<_>>() }),
            "notificationRoles",
        ),
        (
            json!({ "notificationRoles": ["r".repeat(101)] }),
            "notificationRoles",
        ),
    ] {
        let message = refused(400, desk.put("/settings", &admin, bad).await);
        assert!(message.contains(field), "{message}");
    }
    assert_eq!(
        expect(200, desk.get("/settings", &admin).await),
        changed,
        "refusals stored nothing"
    );
    let ticket = expect(
        201,
        desk.post("/ticket", &ann, json!({ "title": "t" })).await,
    );
    assert!(
        ticket["number"].as_str().unwrap().starts_with("REQ-"),
        "{ticket}"
    );
}

#[tokio::test]
async fn lists_follow_requester_assignee_watchers_queue_and_status_newest_first() {
    let server = Server::start();
    let desk = Desk::new(&server);
    let (ann, bob, agent, admin) = (
        desk.user("ann", &[]),
        desk.user("bob", &[]),
        desk.user("ag", &["agent"]),
        desk.user("boss", &["admin"]),
    );
    let mut mine = Vec::new();
    for n in 0..3 {
        mine.push(desk.ticket(&ann, json!({ "title": format!("t{n}") })).await);
    }
    let bobs = desk.ticket(&bob, json!({ "title": "bob's" })).await;
    let (t1, t2, t3) = (&mine[0], &mine[1], &mine[2]);
    assert_eq!(
        desk.list("view=requested", &ann).await.0,
        ids(&[t3, t2, t1])
    );
    assert_eq!(
        desk.list("", &bob).await.0,
        ids(&[&bobs]),
        "requested by default"
    );
    let (page, cursor) = desk.list("view=requested&limit=2", &ann).await;
    assert_eq!(
        (page, cursor.as_str()),
        (vec![t3.clone(), t2.clone()], Some(t2.as_str()))
    );
    let (rest, end) = desk
        .list(&format!("view=requested&limit=2&cursor={t2}"), &ann)
        .await;
    assert_eq!((rest, end), (vec![t1.clone()], Value::Null));

    desk.status(t2, &agent, "resolved").await;
    assert_eq!(
        desk.list("view=requested&status=resolved", &ann).await.0,
        ids(&[t2])
    );
    assert_eq!(
        desk.list("view=requested&status=new", &ann).await.0,
        ids(&[t3, t1])
    );
    assert_eq!(
        desk.list("view=requested&status=new,resolved", &ann)
            .await
            .0,
        ids(&[t3, t2, t1])
    );
    assert_eq!(desk.list("view=watching", &ann).await.0, ids(&[t3, t2, t1]));

    let assign = |id: &str| format!("/ticket/{id}/assignee");
    expect(
        200,
        desk.put(&assign(t1), &agent, json!({ "assignee": "ag" }))
            .await,
    );
    expect(
        200,
        desk.put(&assign(t3), &agent, json!({ "assignee": "ag" }))
            .await,
    );
    assert_eq!(desk.list("view=assigned", &agent).await.0, ids(&[t3, t1]));
    expect(
        200,
        desk.put(&assign(t1), &agent, json!({ "assignee": "bob" }))
            .await,
    );
    assert_eq!(desk.list("view=assigned", &agent).await.0, ids(&[t3]));
    assert_eq!(desk.list("view=assigned", &bob).await.0, ids(&[t1]));
    assert!(
        desk.list("view=requested", &agent).await.0.is_empty(),
        "only one's own"
    );

    let watching = format!("/ticket/{t1}/watchers/ann");
    expect(200, desk.call(Method::DELETE, &watching, &ann, None).await);
    assert_eq!(desk.list("view=watching", &ann).await.0, ids(&[t3, t2]));

    let queue = expect(
        201,
        desk.post("/queue", &admin, json!({ "name": "Q", "agents": ["ag"] }))
            .await,
    );
    let q = queue["id"].to_string();
    let t4 = desk
        .ticket(&ann, json!({ "title": "t4", "queueId": queue["id"] }))
        .await;
    expect(
        200,
        desk.patch(
            &format!("/ticket/{t3}"),
            &agent,
            json!({ "queueId": queue["id"] }),
        )
        .await,
    );
    assert_eq!(
        desk.list(&format!("view=queue&queueId={q}"), &agent)
            .await
            .0,
        ids(&[&t4, t3])
    );
    let queue_new = format!("view=queue&queueId={q}&status=new");
    assert_eq!(desk.list(&queue_new, &agent).await.0, ids(&[&t4, t3]));
    desk.status(t3, &agent, "open").await;
    assert_eq!(desk.list(&queue_new, &agent).await.0, ids(&[&t4]));
    refused(
        403,
        desk.get(&format!("/ticket/list?view=queue&queueId={q}"), &ann)
            .await,
    );
    refused(
        404,
        desk.get("/ticket/list?view=queue&queueId=99", &agent).await,
    );
    assert!(refused(400, desk.get("/ticket/list?view=queue", &agent).await).contains("queueId"));
    assert!(refused(400, desk.get("/ticket/list?view=all", &ann).await).contains("all"));
    refused(400, desk.get("/ticket/list?status=done", &ann).await);
    refused(400, desk.get("/ticket/list?limit=201", &ann).await);
    refused(400, desk.get("/ticket/list?cursor=x", &ann).await);

    let merge = json!({ "intoTicketId": t4 });
    expect(
        200,
        desk.post(&format!("/ticket/{t3}/merge"), &agent, merge)
            .await,
    );
    assert_eq!(
        desk.list("view=requested&status=closed", &ann).await.0,
        ids(&[t3])
    );
    assert_eq!(
        desk.list("view=requested&status=open", &ann).await.0,
        Vec::<String>::new()
    );
}
