//! Stream tickets (single use, one session, resume, window, restarts) and the
//! per-user stream limit, against the real binary.

use crate::clients::{SseReader, admin_key, mint_ticket, publish, ticket_stream_url};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn open(
    server: &Server,
    topic: &str,
    ticket: &str,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    let mut request = server.http1().get(ticket_stream_url(server, topic, ticket));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    request.send().await.unwrap()
}

/// Opens with the ticket, retrying while the previous connection is still being released.
async fn reopen(server: &Server, topic: &str, ticket: &str, last_event_id: &str) -> SseReader {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = open(server, topic, ticket, Some(last_event_id)).await;
        if response.status() == 200 {
            return SseReader::from_response(response);
        }
        assert_eq!(
            response.status(),
            409,
            "only 'session still held' may delay a resume"
        );
        assert!(
            Instant::now() < deadline,
            "the dropped session was never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ids_after_connected(reader: &mut SseReader, count: usize) -> Vec<String> {
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    let mut ids = Vec::new();
    while ids.len() < count {
        ids.push(reader.next_event().await.unwrap().id.unwrap());
    }
    ids
}

#[tokio::test]
async fn of_twenty_concurrent_first_uses_exactly_one_opens_a_stream() {
    let server = std::sync::Arc::new(Server::start());
    let ticket = mint_ticket(&server, "race", "viewer-1").await;
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let (server, ticket) = (server.clone(), ticket.clone());
            tokio::spawn(async move { open(&server, "race", &ticket, None).await })
        })
        .collect();
    let mut statuses = Vec::new();
    let mut keep = Vec::new();
    for attempt in attempts {
        let response = attempt.await.unwrap();
        statuses.push(response.status().as_u16());
        keep.push(response);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let refused = keep.into_iter().find(|r| r.status() == 409).unwrap();
    assert_eq!(json(refused).await["error"]["code"], "CONFLICT");
}

#[tokio::test]
async fn a_ticket_resumes_its_session_with_exact_replay_after_a_drop_and_a_restart() {
    let mut server = Server::start();
    let client = server.http1();
    let ticket = mint_ticket(&server, "story", "viewer-2").await;
    let response = open(&server, "story", &ticket, None).await;
    assert_eq!(response.status(), 200);
    let mut reader = SseReader::from_response(response);
    let mut published = Vec::new();
    for n in 0..3 {
        published.push(publish(&server, &client, "story", json!(n)).await);
    }
    let seen = ids_after_connected(&mut reader, 1).await;
    assert_eq!(seen[0], published[0]);
    let second = open(&server, "story", &ticket, None).await;
    assert_eq!(
        second.status(),
        409,
        "no second connection while the session is held"
    );
    drop(reader);
    for n in 3..5 {
        published.push(publish(&server, &client, "story", json!(n)).await);
    }
    let mut resumed = reopen(&server, "story", &ticket, &seen[0]).await;
    assert_eq!(ids_after_connected(&mut resumed, 4).await, published[1..]);
    drop(resumed);

    assert!(server.stop().success());
    let server = Server::builder().data_dir(&server.data_dir).start();
    let mut after_restart = reopen(&server, "story", &ticket, &published[2]).await;
    assert_eq!(
        ids_after_connected(&mut after_restart, 2).await,
        published[3..]
    );
}

#[tokio::test]
async fn tickets_are_refused_after_their_ttl_their_window_or_on_another_target() {
    let server = Server::builder()
        .args(&["--ticket-ttl", "1s", "--ticket-resume-window", "1s"])
        .start();
    let unused = mint_ticket(&server, "a", "viewer-3").await;
    let wrong = open(&server, "b", &unused, None).await;
    assert_eq!(wrong.status(), 403, "a ticket opens only its own target");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = open(&server, "a", &unused, None).await;
    assert_eq!(late.status(), 401, "unused after the ttl");
    assert!(
        json(late).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired before it was used")
    );

    let used = mint_ticket(&server, "a", "viewer-3").await;
    let response = open(&server, "a", &used, None).await;
    assert_eq!(response.status(), 200);
    drop(response);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let resumed = open(&server, "a", &used, None).await;
        if resumed.status() == 401 {
            assert!(
                json(resumed).await["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("resume window")
            );
            break;
        }
        assert_eq!(resumed.status(), 409);
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bogus = open(&server, "a", "tk_not_a_ticket", None).await;
    assert_eq!(bogus.status(), 401);
}

#[tokio::test]
async fn minting_needs_the_read_scope() {
    let server = Server::start();
    let key = admin_key(&server);
    let created: Value = server
        .http1()
        .post(server.url("/admin/v1/tenants/default/keys"))
        .header("x-api-key", &key)
        .json(&json!({ "name": "writer", "scopes": ["publish"] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let publisher = created["data"]["secret"].as_str().unwrap();
    let refused = server
        .http1()
        .post(server.url("/api/v1/topics/t/tickets"))
        .header("x-api-key", publisher)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
}

#[tokio::test]
async fn the_sixth_stream_of_a_user_is_refused_until_one_closes() {
    let server = Server::start();
    let token = crate::clients::mint_jwt(
        &server,
        json!({ "sub": "busy-user", "exp": crate::clients::unix_now() + 300, "topics": ["*"] }),
    );
    let open_one = || {
        server
            .http1()
            .get(server.url("/api/v1/topics/limits/stream"))
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    let mut streams = Vec::new();
    for _ in 0..5 {
        let response = open_one().await.unwrap();
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let sixth = open_one().await.unwrap();
    assert_eq!(sixth.status(), 429);
    assert_eq!(sixth.headers()["retry-after"], "5");
    assert_eq!(json(sixth).await["error"]["code"], "RATE_LIMITED");
    drop(streams.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let retry = open_one().await.unwrap();
        if retry.status() == 200 {
            break;
        }
        assert_eq!(retry.status(), 429);
        assert!(
            Instant::now() < deadline,
            "closing a stream never freed its slot"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tickets_that_can_never_be_used_again_are_swept() {
    let server = Server::builder()
        .args(&["--ticket-ttl", "500ms", "--prune-interval", "200ms"])
        .start();
    let ticket = mint_ticket(&server, "swept", "viewer-5").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains("removed stream tickets") {
        assert!(
            Instant::now() < deadline,
            "the expired ticket was never swept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = open(&server, "swept", &ticket, None).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(json(refused).await["error"]["message"], "unknown ticket");
}
