//! Ticket comments with `@mentions` and approval requests against the real
//! binary: who gets `mention`, `comment`, `approval` and `approvalDecision`
//! (observed as the notification bodies the tenant's webhook receives),
//! the first response, pages oldest first, decisions taken once, and bad
//! input answered with the error envelope.

use crate::clients::{mint_jwt, unix_now};
use crate::harness::{Server, json};
use crate::webhooks::{FAST, Receiver, create_endpoint};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// How long a test waits for notifications.
const PATIENCE: Duration = Duration::from_secs(20);

/// The notifications a tenant's webhook endpoint received.
pub struct Inbox(Receiver);

impl Inbox {
    /// A receiver and an endpoint of the default tenant for `notification` events.
    pub async fn new(server: &Server) -> Self {
        let hooks = Receiver::start().await;
        let endpoint = json!({ "url": hooks.url, "eventTypes": ["notification"] });
        create_endpoint(server, endpoint).await;
        Self(hooks)
    }

    /// The notification bodies delivered so far, in delivery order.
    pub fn notifications(&self) -> Vec<Value> {
        self.0.delivered().iter().map(|r| r.event()).collect()
    }

    /// Waits until exactly `count` notifications were delivered and no more
    /// come within a second; returns them.
    pub async fn settled(&self, count: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.notifications().len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {count} notifications: {:#?}",
                self.notifications().len(),
                self.notifications()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let all = self.notifications();
        assert_eq!(all.len(), count, "no more than expected: {all:#?}");
        all
    }
}

/// The ticketing API of one server as its users call it, with the
/// notifications of its default tenant.
pub struct Desk<'a> {
    /// The server called.
    pub server: &'a Server,
    client: reqwest::Client,
    /// What the tenant's webhook received.
    pub inbox: Inbox,
}

impl<'a> Desk<'a> {
    /// The API of `server`, with a new webhook endpoint.
    pub async fn new(server: &'a Server) -> Self {
        let inbox = Inbox::new(server).await;
        Self::with_inbox(server, inbox)
    }

    /// The API of `server` whose webhook endpoint exists (a restarted server).
    pub fn with_inbox(server: &'a Server, inbox: Inbox) -> Self {
        Self {
            server,
            client: server.http1(),
            inbox,
        }
    }

    /// A JWT of the default realm for `sub` with `roles`.
    pub fn user(&self, sub: &str, roles: &[&str]) -> String {
        let claims = json!({ "sub": sub, "exp": unix_now() + 600, "roles": roles });
        mint_jwt(self.server, claims)
    }

    /// Calls `/api/v2/ticketing{path}` as `token`; returns the status and body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = self.server.url(&format!("/api/v2/ticketing{path}"));
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), json(response).await)
    }

    /// `GET` as `token`.
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    /// `POST` as `token`.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// `PUT` as `token`.
    pub async fn put(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(Method::PUT, path, Some(token), Some(body)).await
    }

    /// Creates a ticket as `token`; returns it.
    pub async fn ticket(&self, token: &str, body: Value) -> Value {
        expect(201, self.post("/ticket", token, body).await)
    }
}

/// `data` of a reply that must have `status`.
pub fn expect(status: u16, reply: (u16, Value)) -> Value {
    assert_eq!(reply.0, status, "{}", reply.1);
    reply.1["data"].clone()
}

/// The notifications of type `kind`.
pub fn of_type<'v>(all: &'v [Value], kind: &str) -> Vec<&'v Value> {
    all.iter().filter(|n| n["type"] == kind).collect()
}

/// The error code of a reply that must have `status`.
fn refused(status: u16, reply: (u16, Value)) -> String {
    assert_eq!(reply.0, status, "{}", reply.1);
    reply.1["error"]["code"].as_str().unwrap().to_string()
}

fn server(extra: &[&str]) -> Server {
    Server::builder().args(FAST).args(extra).start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_notify_the_mentioned_and_the_other_followers_and_read_oldest_first() {
    let server = server(&[]);
    let desk = Desk::new(&server).await;
    let (req, agent, eve) = (
        desk.user("req", &[]),
        desk.user("agent-1", &["agent"]),
        desk.user("eve", &[]),
    );
    let ticket = desk
        .ticket(&req, json!({ "title": "VPN down", "watchers": ["w1"] }))
        .await;
    let comments = format!("/ticket/{}/comments", ticket["id"].as_str().unwrap());
    let first = json!({ "text": "@w1 and @x: please look (ann@example.com)" });
    let first = expect(201, desk.post(&comments, &agent, first).await);
    assert_eq!(first["id"], "1");
    assert_eq!(first["ticketId"], ticket["id"]);
    assert_eq!(first["author"]["id"], "agent-1");
    assert_eq!(first["mentions"], json!(["w1", "x"]));
    let path = format!("/ticket/{}", ticket["id"].as_str().unwrap());
    let responded = expect(200, desk.get(&path, &req).await);
    assert!(responded["firstResponseAt"].is_string(), "{responded}");
    let second = json!({ "text": "thanks @agent-1" });
    let second = expect(201, desk.post(&comments, &req, second).await);
    let unchanged = expect(200, desk.get(&path, &req).await);
    assert_eq!(
        unchanged["firstResponseAt"], responded["firstResponseAt"],
        "the requester's comment is no response"
    );

    // agent-1's comment: `mention` to w1 and x, `comment` to req (w1 is
    // mentioned); req's: `mention` to agent-1, `comment` to w1.
    let all = desk.inbox.settled(5).await;
    let mentions = of_type(&all, "mention");
    let plain = of_type(&all, "comment");
    assert_eq!((mentions.len(), plain.len()), (3, 2), "{all:#?}");
    for (notification, comment) in [
        (mentions[0], &first),
        (mentions[1], &first),
        (plain[0], &first),
        (mentions[2], &second),
        (plain[1], &second),
    ] {
        assert_eq!(notification["metadata"]["commentId"], comment["id"]);
        assert_eq!(notification["ticketId"], ticket["id"]);
        assert_eq!(notification["actor"]["id"], comment["author"]["id"]);
    }
    assert!(
        mentions[0]["message"]
            .as_str()
            .unwrap()
            .contains("mentioned you")
    );

    let hidden = desk.get(&format!("{comments}?limit=1"), &eve).await;
    assert_eq!(
        refused(404, hidden),
        "NOT_FOUND",
        "another requester sees nothing"
    );
    let page = expect(200, desk.get(&format!("{comments}?limit=1"), &req).await);
    assert_eq!(page["items"], json!([first]));
    assert_eq!(page["nextCursor"], "1");
    let rest = format!("{comments}?limit=1&cursor=1");
    let page = expect(200, desk.get(&rest, &agent).await);
    assert_eq!(page["items"], json!([second]));
    assert_eq!(page["nextCursor"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_comments_get_the_error_envelope() {
    let server = server(&["--tickets-max-text-chars", "100"]);
    let desk = Desk::new(&server).await;
    let (req, eve) = (desk.user("req", &[]), desk.user("eve", &[]));
    let ticket = desk.ticket(&req, json!({ "title": "t" })).await;
    let comments = format!("/ticket/{}/comments", ticket["id"].as_str().unwrap());
    let post = |token: &'static str, body: Value| {
        let token = if token == "req" { &req } else { &eve };
        desk.post(&comments, token, body)
    };
    assert_eq!(
        refused(400, post("req", json!({ "text": "  " })).await),
        "VALIDATION_ERROR"
    );
    let long = post("req", json!({ "text": "x".repeat(101) })).await;
    assert_eq!(
        long.1["error"]["details"]["limit"],
        "tickets-max-text-chars"
    );
    refused(400, long);
    let crowd: Vec<String> = (0..21).map(|n| format!("@u{n}")).collect();
    let crowd = post("req", json!({ "text": crowd.join(" ") })).await;
    assert!(
        crowd.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 20")
    );
    refused(400, crowd);
    refused(400, post("req", json!({ "text": "x", "extra": 1 })).await);
    refused(400, post("req", json!({ "words": "x" })).await);
    assert_eq!(
        refused(404, post("eve", json!({ "text": "x" })).await),
        "NOT_FOUND"
    );
    refused(
        404,
        desk.post("/ticket/999/comments", &req, json!({ "text": "x" }))
            .await,
    );
    refused(
        400,
        desk.post("/ticket/abc/comments", &req, json!({ "text": "x" }))
            .await,
    );
    let anonymous = desk
        .call(Method::POST, &comments, None, Some(json!({ "text": "x" })))
        .await;
    refused(401, anonymous);
    refused(400, desk.get(&format!("{comments}?cursor=x"), &req).await);
    refused(400, desk.get(&format!("{comments}?limit=0"), &req).await);
    let page = expect(200, desk.get(&comments, &req).await);
    assert_eq!(page["items"], json!([]), "nothing refused was stored");
    assert_eq!(desk.inbox.notifications(), Vec::<Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_are_asked_by_agents_and_decided_once_by_the_approver() {
    let server = server(&[]);
    let desk = Desk::new(&server).await;
    let (agent, other, boss, req, eve) = (
        desk.user("agent-1", &["agent"]),
        desk.user("agent-2", &["agent"]),
        desk.user("boss", &[]),
        desk.user("req", &[]),
        desk.user("eve", &[]),
    );
    let ticket = desk
        .ticket(
            &agent,
            json!({ "title": "New laptop", "assignee": "agent-2" }),
        )
        .await;
    let approvals = format!("/ticket/{}/approvals", ticket["id"].as_str().unwrap());
    let ask = json!({ "approverId": "boss", "note": "budget" });
    assert_eq!(
        refused(403, desk.post(&approvals, &req, ask.clone()).await),
        "FORBIDDEN"
    );
    refused(
        400,
        desk.post(&approvals, &agent, json!({ "note": "x" })).await,
    );
    let approval = expect(201, desk.post(&approvals, &agent, ask).await);
    assert_eq!(
        (
            &approval["id"],
            &approval["approverId"],
            &approval["requestedBy"]
        ),
        (&json!("1"), &json!("boss"), &json!("agent-1"))
    );
    assert_eq!(
        (
            &approval["status"],
            &approval["note"],
            &approval["decidedAt"]
        ),
        (&json!("pending"), &json!("budget"), &Value::Null)
    );

    let decision = format!("{approvals}/1");
    let approve = json!({ "decision": "approved", "note": "ok" });
    refused(403, desk.put(&decision, &other, approve.clone()).await);
    refused(404, desk.put(&decision, &eve, approve.clone()).await);
    refused(
        400,
        desk.put(&decision, &boss, json!({ "decision": "maybe" }))
            .await,
    );
    refused(
        404,
        desk.put(&format!("{approvals}/9"), &boss, approve.clone())
            .await,
    );
    let decided = expect(200, desk.put(&decision, &boss, approve).await);
    assert_eq!(
        (&decided["status"], &decided["decisionNote"]),
        (&json!("approved"), &json!("ok"))
    );
    assert!(decided["decidedAt"].is_string());
    let again = json!({ "decision": "rejected" });
    assert_eq!(
        refused(409, desk.put(&decision, &boss, again).await),
        "CONFLICT"
    );
    let listed = expect(200, desk.get(&approvals, &other).await);
    assert_eq!(listed, json!([decided]));
    refused(404, desk.get(&approvals, &eve).await);

    // `assignment` to agent-2, `approval` to boss, `approvalDecision` to
    // agent-1 (who asked) and agent-2 (the assignee).
    let all = desk.inbox.settled(4).await;
    let asked = of_type(&all, "approval");
    let answered = of_type(&all, "approvalDecision");
    assert_eq!((asked.len(), answered.len()), (1, 2), "{all:#?}");
    for notification in asked.iter().chain(&answered) {
        assert_eq!(notification["metadata"]["approvalId"], "1");
    }
    assert_eq!(asked[0]["actor"]["id"], "agent-1");
    assert_eq!(answered[0]["actor"]["id"], "boss");
    assert!(
        answered[0]["message"]
            .as_str()
            .unwrap()
            .contains("approved")
    );
}
