//! The ticketing notification and list-update SSE streams (spec 004)
//! against the real binary: the wire (connected, notifications, list
//! events, heartbeats, the error frame at token expiry), every refusal
//! status, the per-user stream limit and exact `Last-Event-ID` resume.
//! The helpers here serve the other ticketing suites too.

use crate::chat_api::default_tenant;
use crate::clients::{Frame, SseReader, mint_jwt, unix_now};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The notification stream's path.
pub const NOTIFICATIONS: &str = "/api/v2/ticketing/ticket/sse/notifications";
/// The list-update stream's path.
pub const LIST_UPDATES: &str = "/api/v2/ticketing/ticket/sse/list/updates";

/// A user's JWT of the default realm with `roles`, valid for ten minutes.
pub fn user(server: &Server, sub: &str, roles: &[&str]) -> String {
    mint_jwt(
        server,
        json!({ "sub": sub, "exp": unix_now() + 600, "roles": roles }),
    )
}

/// The spec's headers: Bearer token, `x-tenantid` and `realmname`.
pub fn spec_headers(server: &Server, token: &str) -> Vec<(&'static str, String)> {
    vec![
        ("authorization", format!("Bearer {token}")),
        ("x-tenantid", default_tenant(server)),
        ("realmname", "default".to_string()),
    ]
}

/// A ticketing call with `headers` (and a JSON body, if any).
pub async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, String)],
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = server
        .http1()
        .request(method, server.url(&format!("/api/v2/ticketing{path}")));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

/// `data` of a call as `token` (the spec's headers) that must answer `status`.
pub async fn expect(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let response = call(server, method, path, &spec_headers(server, token), body).await;
    let got = response.status().as_u16();
    let body = json(response).await;
    assert_eq!(got, status, "{path}: {body}");
    body["data"].clone()
}

/// Creates a ticket titled `title` as an agent, assigned to `assignee`.
pub async fn assign_new_ticket(server: &Server, agent: &str, assignee: &str, title: &str) -> Value {
    let body = json!({ "title": title, "assignee": assignee, "priority": "low" });
    expect(
        server,
        reqwest::Method::POST,
        "/ticket",
        agent,
        Some(body),
        201,
    )
    .await
}

/// Opens a stream at `path` with `headers` (and `Last-Event-ID`, if any).
pub async fn open(
    server: &Server,
    path: &str,
    headers: &[(&str, String)],
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .http1()
        .get(server.url(path))
        .header("accept", "text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

/// Opens `path` for `token` with the spec's headers; returns the reader
/// after its `retry:` and `connected` frames, and the `connected` frame.
pub async fn connect(
    server: &Server,
    path: &str,
    token: &str,
    last_event_id: Option<&str>,
) -> (SseReader, Frame) {
    let response = open(server, path, &spec_headers(server, token), last_event_id).await;
    assert_eq!(response.status(), 200, "{}", json(response).await);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut reader = SseReader::from_response(response);
    let first = reader.next().await.unwrap();
    assert_eq!(first.retry, Some(5000), "retry first: {first:?}");
    let connected = reader.next().await.unwrap();
    assert_eq!(connected.event, "connected", "{connected:?}");
    (reader, connected)
}

/// The next event that is not a heartbeat.
pub async fn next_event(reader: &mut SseReader) -> Frame {
    loop {
        let frame = reader.next_event().await.expect("the stream is open");
        if frame.event != "heartbeat" {
            return frame;
        }
    }
}

/// The error envelope's code of a refused stream, after checking `status`.
async fn refused(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body = json(response).await;
    assert!(body["error"]["code"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn the_notification_stream_greets_then_delivers_an_assignment() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    let (mut reader, connected) = connect(&server, NOTIFICATIONS, &ann, None).await;
    let greeting = connected.json();
    assert_eq!(greeting["message"], "Connected to notification stream");
    assert_eq!(greeting["userId"], "ann");
    let timestamp = greeting["timestamp"].as_str().unwrap();
    assert!(
        timestamp.len() == 24 && timestamp.ends_with('Z'),
        "{timestamp}"
    );
    assert_eq!(connected.id.as_deref().map(str::len), Some(26), "a ULID");

    let ticket = assign_new_ticket(&server, &agent, "ann", "VPN down").await;
    let frame = next_event(&mut reader).await;
    assert_eq!(frame.event, "notification");
    let id = frame.id.clone().unwrap();
    let ulid = ulid::Ulid::from_string(&id).expect("id: is the event's ULID");
    let notification = frame.json();
    assert_eq!(
        notification["id"],
        uuid::Uuid::from_u128(ulid.0).to_string(),
        "the object's id is the same event as a UUID"
    );
    assert_eq!(notification["type"], "assignment");
    assert_eq!(notification["ticketId"], ticket["id"]);
    assert_eq!(notification["ticketNumber"], ticket["number"]);
    assert_eq!(notification["title"], "VPN down");
    assert_eq!(notification["priority"], "high");
    assert_eq!(notification["read"], false);
    assert_eq!(notification["actor"]["id"], "agent-1");
    assert_eq!(
        notification["actionUrl"],
        format!("/tickets/{}", ticket["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn the_list_stream_carries_ticket_created_for_the_assignee() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let bob = user(&server, "bob", &[]);
    let (mut reader, connected) = connect(&server, LIST_UPDATES, &bob, None).await;
    assert_eq!(
        connected.json()["message"],
        "Connected to ticket list updates"
    );
    assert_eq!(connected.json()["userId"], "bob");
    let ticket = assign_new_ticket(&server, &agent, "bob", "Printer").await;
    let frame = next_event(&mut reader).await;
    assert_eq!(frame.event, "ticketCreated");
    assert!(frame.id.is_some());
    let data = frame.json();
    assert_eq!(data["ticketId"], ticket["id"]);
    assert_eq!(data["ticketNumber"], ticket["number"]);
    assert_eq!(data["changes"]["assignee"], "bob");
    assert_eq!(data["changes"]["title"], "Printer");
}

#[tokio::test]
async fn heartbeats_are_events_at_the_configured_interval() {
    let server = Server::builder()
        .args(&["--tickets-heartbeat", "300ms"])
        .start();
    let ann = user(&server, "ann", &[]);
    let (mut reader, _) = connect(&server, NOTIFICATIONS, &ann, None).await;
    let started = Instant::now();
    let mut beats = Vec::new();
    while beats.len() < 3 {
        let frame = reader.next().await.unwrap();
        assert!(frame.comment.is_none(), "no comment heartbeats: {frame:?}");
        assert_eq!(frame.event, "heartbeat", "{frame:?}");
        let data = frame.json();
        let at = data["timestamp"].as_str().unwrap().to_string();
        assert_eq!(at.len(), 24, "RFC 3339 with milliseconds: {at}");
        beats.push(at);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(800),
        "three beats 300 ms apart took {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(8),
        "three beats took {elapsed:?}"
    );
    assert!(beats.windows(2).all(|pair| pair[0] < pair[1]), "{beats:?}");
}

#[tokio::test]
async fn the_stream_ends_with_token_expired_at_the_tokens_exp() {
    let server = Server::start();
    let token = mint_jwt(&server, json!({ "sub": "ann", "exp": unix_now() + 3 }));
    let (mut reader, _) = connect(&server, LIST_UPDATES, &token, None).await;
    let frame = next_event(&mut reader).await;
    assert_eq!(frame.event, "error");
    assert_eq!(frame.json()["code"], "TOKEN_EXPIRED");
    assert!(frame.json()["message"].is_string());
    assert!(reader.next().await.is_none(), "the server ended the stream");
}

#[tokio::test]
async fn refusals_are_401_for_every_missing_or_bad_credential_part() {
    let server = Server::start();
    let ann = user(&server, "ann", &[]);
    let full = spec_headers(&server, &ann);
    let without = |name: &str| -> Vec<(&str, String)> {
        full.iter()
            .filter(|(header, _)| *header != name)
            .cloned()
            .collect()
    };
    for path in [NOTIFICATIONS, LIST_UPDATES] {
        for missing in ["authorization", "x-tenantid", "realmname"] {
            let response = open(&server, path, &without(missing), None).await;
            let body = refused(response, 401).await;
            assert_eq!(body["error"]["code"], "UNAUTHORIZED", "{missing}: {body}");
        }
    }
    let mut invalid = without("authorization");
    invalid.push(("authorization", "Bearer not.a.jwt".into()));
    refused(open(&server, NOTIFICATIONS, &invalid, None).await, 401).await;
    let expired = mint_jwt(&server, json!({ "sub": "ann", "exp": unix_now() - 120 }));
    let response = open(
        &server,
        NOTIFICATIONS,
        &spec_headers(&server, &expired),
        None,
    )
    .await;
    refused(response, 401).await;
    let mut wrong_realm = without("realmname");
    wrong_realm.push(("realmname", "nope".into()));
    refused(open(&server, NOTIFICATIONS, &wrong_realm, None).await, 401).await;
    let response = open(
        &server,
        &format!("{NOTIFICATIONS}?access_token={ann}"),
        &[],
        None,
    )
    .await;
    refused(response, 401).await;
    let bad_cursor = open(&server, NOTIFICATIONS, &full, Some("not-an-id")).await;
    refused(bad_cursor, 400).await;
}

#[tokio::test]
async fn the_query_form_opens_the_stream_without_headers() {
    let server = Server::start();
    let ann = user(&server, "ann", &[]);
    let tenant = default_tenant(&server);
    let path = format!("{NOTIFICATIONS}?access_token={ann}&tenant={tenant}&realm=default");
    let response = open(&server, &path, &[], None).await;
    let mut reader = SseReader::connected(response).await;
    let agent = user(&server, "agent-1", &["agent"]);
    assign_new_ticket(&server, &agent, "ann", "From the query form").await;
    assert_eq!(next_event(&mut reader).await.json()["type"], "assignment");
}

#[tokio::test]
async fn the_sixth_stream_of_a_user_is_refused_with_retry_after() {
    let server = Server::builder()
        .args(&["--max-streams-per-user", "50"])
        .start();
    let ann = user(&server, "ann", &[]);
    let mut open_streams = Vec::new();
    for path in [NOTIFICATIONS, LIST_UPDATES].repeat(3).into_iter().take(5) {
        open_streams.push(connect(&server, path, &ann, None).await.0);
    }
    let sixth = open(&server, NOTIFICATIONS, &spec_headers(&server, &ann), None).await;
    let retry_after = sixth.headers().get("retry-after").cloned();
    let body = refused(sixth, 429).await;
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");
    let seconds: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!(seconds >= 1);
    let bob = user(&server, "bob", &[]);
    connect(&server, LIST_UPDATES, &bob, None).await;

    drop(open_streams.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = open(&server, LIST_UPDATES, &spec_headers(&server, &ann), None).await;
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(Instant::now() < deadline, "a closed stream frees its slot");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn streams_are_refused_with_503_while_the_server_drains() {
    let mut server = Server::builder().args(&["--drain-delay", "3s"]).start();
    let ann = user(&server, "ann", &[]);
    connect(&server, NOTIFICATIONS, &ann, None).await;
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let response = open(&server, NOTIFICATIONS, &spec_headers(&server, &ann), None).await;
        if response.status() == 503 {
            assert!(response.headers().contains_key("retry-after"));
            let body = json(response).await;
            assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
            break;
        }
        assert_eq!(response.status(), 200);
        assert!(Instant::now() < deadline, "streams were never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn last_event_id_replays_exactly_the_later_notifications() {
    let server = Server::start();
    let agent = user(&server, "agent-1", &["agent"]);
    let ann = user(&server, "ann", &[]);
    let (mut first, _) = connect(&server, NOTIFICATIONS, &ann, None).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        assign_new_ticket(&server, &agent, "ann", &format!("t{n}")).await;
        ids.push(next_event(&mut first).await.id.unwrap());
    }
    drop(first);

    let (mut resumed, connected) = connect(&server, NOTIFICATIONS, &ann, Some(&ids[0])).await;
    assert_eq!(
        connected.id.as_ref(),
        Some(&ids[0]),
        "positioned at the cursor"
    );
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let frame = next_event(&mut resumed).await;
        replayed.push((frame.id.clone().unwrap(), frame.json()["title"].clone()));
    }
    assert_eq!(
        replayed,
        vec![(ids[1].clone(), json!("t1")), (ids[2].clone(), json!("t2"))]
    );
    assign_new_ticket(&server, &agent, "ann", "t3").await;
    let live = next_event(&mut resumed).await;
    assert_eq!(live.json()["title"], "t3", "live after the replay, once");
    assert!(live.id.unwrap() > ids[2]);
}
