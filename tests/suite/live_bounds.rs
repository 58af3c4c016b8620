//! Live events-streams against hostile or greedy clients: every bound a
//! viewer's JWT can push against holds, and says so with the error envelope.

use crate::clients::{admin_key, mint_jwt, unix_now};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::Duration;

/// A stream created with the admin key; returns its id.
async fn create_stream(server: &Server) -> String {
    let response = server
        .http1()
        .post(server.url("/api/v1/events-streams"))
        .header("x-api-key", admin_key(server))
        .json(&json!({ "title": "bounds" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    json(response).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn viewer(server: &Server, subject: &str) -> String {
    mint_jwt(server, json!({ "sub": subject, "exp": unix_now() + 600 }))
}

async fn post(server: &Server, path: &str, token: &str, body: Value) -> reqwest::Response {
    server
        .http1()
        .post(server.url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn poll(server: &Server, stream: &str, token: &str, interval: u64) -> reqwest::Response {
    server
        .http1()
        .get(server.url(&format!(
            "/api/v1/events-streams/{stream}?interval={interval}"
        )))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The `view-count` value in an interval body, if any.
fn view_count(body: &Value) -> Option<u64> {
    body["events"]
        .as_array()?
        .iter()
        .find(|event| event["type"] == "view-count")
        .and_then(|event| event["data"]["value"].as_u64())
}

#[tokio::test]
async fn the_view_count_saturates_at_the_viewer_bound() {
    let server = Server::builder().args(&["--live-max-viewers", "2"]).start();
    let stream = create_stream(&server).await;
    for subject in ["a", "b", "c", "d"] {
        let token = viewer(&server, subject);
        let current = now_ms() / 250 * 250;
        assert_eq!(poll(&server, &stream, &token, current).await.status(), 200);
    }
    let token = viewer(&server, "a");
    let next = now_ms() / 250 * 250;
    let body = json(poll(&server, &stream, &token, next).await).await;
    assert_eq!(view_count(&body), Some(2), "{body}");
}

#[tokio::test]
async fn chats_are_bounded_per_viewer_and_per_interval_with_429() {
    let server = Server::builder()
        .args(&[
            "--live-max-chats-per-interval",
            "3",
            "--live-max-chats-per-viewer-interval",
            "1",
        ])
        .start();
    let stream = create_stream(&server).await;
    let path = format!("/api/v1/events-streams/{stream}/chats");
    let chat = json!({ "kind": "message", "text": "hi" });
    // Retry until one viewer's two chats land in the same interval.
    let mut refused = None;
    for _ in 0..20 {
        let token = viewer(&server, &format!("v-{}", now_ms()));
        let first = post(&server, &path, &token, chat.clone()).await;
        if first.status() == 429 {
            continue;
        }
        let first = json(first).await["data"]["interval"].as_u64().unwrap();
        let second = post(&server, &path, &token, chat.clone()).await;
        if second.status() == 429 {
            refused = Some((first, second));
            break;
        }
        tokio::time::sleep(Duration::from_millis(260)).await;
    }
    let (_, second) = refused.expect("a second chat in one interval is refused");
    assert_eq!(second.headers()["retry-after"], "1");
    let body = json(second).await;
    assert_eq!(body["error"]["code"], "RATE_LIMITED", "{body}");

    // Many viewers at once: at most 3 chats in any one interval.
    let tokens: Vec<String> = (0..12)
        .map(|n| viewer(&server, &format!("crowd-{n}")))
        .collect();
    let answers = futures_util::future::join_all(
        tokens
            .iter()
            .map(|token| post(&server, &path, token, chat.clone())),
    )
    .await;
    let mut per_interval = std::collections::HashMap::<u64, usize>::new();
    for answer in answers {
        match answer.status().as_u16() {
            201 => {
                let interval = json(answer).await["data"]["interval"].as_u64().unwrap();
                *per_interval.entry(interval).or_default() += 1;
            }
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        per_interval.values().all(|count| *count <= 3),
        "{per_interval:?}"
    );
}

#[tokio::test]
async fn hearts_and_bodies_are_bounded() {
    let server = Server::builder().args(&["--max-body", "4KiB"]).start();
    let stream = create_stream(&server).await;
    let token = viewer(&server, "greedy");
    let hearts = format!("/api/v1/events-streams/{stream}/hearts");
    for count in [0, 101] {
        let refused = post(&server, &hearts, &token, json!({ "count": count })).await;
        assert_eq!(refused.status(), 400);
        assert_eq!(json(refused).await["error"]["details"]["max"], 100);
    }
    let chats = format!("/api/v1/events-streams/{stream}/chats");
    let long = json!({ "kind": "message", "text": "x".repeat(501) });
    let refused = json(post(&server, &chats, &token, long).await).await;
    assert_eq!(refused["error"]["details"]["maxChars"], 500, "{refused}");
    let huge = json!({ "kind": "message", "text": "x".repeat(8_000) });
    assert_eq!(post(&server, &chats, &token, huge).await.status(), 413);
}

#[tokio::test]
async fn waiting_polls_are_counted_and_released_by_the_close() {
    let server = Server::builder().args(&["--live-max-ahead", "10s"]).start();
    let stream = create_stream(&server).await;
    let token = viewer(&server, "waiter");
    let ahead = now_ms() / 250 * 250 + 8_000;
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let (server_url, token, stream) = (server.url(""), token.clone(), stream.clone());
            tokio::spawn(async move {
                reqwest::Client::new()
                    .get(format!(
                        "{server_url}/api/v1/events-streams/{stream}?interval={ahead}"
                    ))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(6);
    while server.metric("tidings_live_waiting_polls").await < 20.0 {
        assert!(std::time::Instant::now() < deadline, "20 polls wait");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut bodies = Vec::new();
    for waiter in waiters {
        let response = waiter.await.unwrap();
        assert_eq!(response.status(), 200);
        bodies.push(response.bytes().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|pair| pair[0] == pair[1]),
        "one body for every waiter"
    );
    assert_eq!(server.metric("tidings_live_waiting_polls").await, 0.0);
    assert!(server.metric("tidings_live_intervals_closed_total").await >= 6.0);
    let too_far = poll(&server, &stream, &token, now_ms() / 250 * 250 + 20_000).await;
    assert_eq!(too_far.status(), 400);
    assert!(json(too_far).await["error"]["details"]["serverTime"].is_u64());
}

#[tokio::test]
async fn one_interval_has_one_url_and_a_query_token_polls_without_a_header() {
    let server = Server::start();
    let stream = create_stream(&server).await;
    let token = viewer(&server, "query");
    let closed = now_ms() / 250 * 250;
    assert_eq!(poll(&server, &stream, &token, closed).await.status(), 200);
    let base = format!("/api/v1/events-streams/{stream}");
    for query in [
        format!("interval=0{closed}"),
        format!("interval=+{closed}"),
        format!("interval={closed}&interval={closed}"),
        String::new(),
    ] {
        let refused = server
            .http1()
            .get(server.url(&format!("{base}?{query}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{query}");
        assert_eq!(json(refused).await["error"]["code"], "VALIDATION_ERROR");
    }
    let by_query = server
        .http1()
        .get(server.url(&format!("{base}?interval={closed}&access_token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let by_header = poll(&server, &stream, &token, closed).await;
    assert_eq!(
        by_query.bytes().await.unwrap(),
        by_header.bytes().await.unwrap()
    );
    let forged = server
        .http1()
        .get(server.url(&format!("{base}?interval={closed}&access_token={token}x")))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Writes take no query token.
    let chat = server
        .http1()
        .post(server.url(&format!("{base}/chats?access_token={token}")))
        .json(&json!({ "kind": "message", "text": "hi" }))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 401);
}

#[tokio::test]
async fn one_viewer_has_one_chat_in_flight() {
    let server = Server::builder()
        .args(&["--live-max-chats-per-viewer-interval", "1000"])
        .start();
    let stream = create_stream(&server).await;
    let token = viewer(&server, "flooder");
    let path = format!("/api/v1/events-streams/{stream}/chats");
    let answers = futures_util::future::join_all((0..40).map(|n| {
        post(
            &server,
            &path,
            &token,
            json!({ "kind": "message", "text": format!("flood {n}") }),
        )
    }))
    .await;
    let mut accepted = 0;
    let mut refused = 0;
    for answer in answers {
        match answer.status().as_u16() {
            201 => accepted += 1,
            429 => {
                let body = json(answer).await;
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("one chat at a time"),
                    "{body}"
                );
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        accepted >= 1 && refused >= 1,
        "{accepted} accepted, {refused} refused"
    );
    // Another viewer is not held up by the flooder's chat in flight.
    let other = viewer(&server, "bystander");
    let chat = json!({ "kind": "message", "text": "hi" });
    assert_eq!(post(&server, &path, &other, chat).await.status(), 201);
}

#[tokio::test]
async fn an_expired_interval_stays_gone_when_the_retention_grows() {
    let server = Server::start();
    let key = admin_key(&server);
    let created = server
        .http1()
        .post(server.url("/api/v1/events-streams"))
        .header("x-api-key", &key)
        .json(&json!({ "title": "short", "retentionSeconds": 1 }))
        .send()
        .await
        .unwrap();
    let stream = json(created).await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = viewer(&server, "late");
    let early = now_ms() / 250 * 250;
    assert_eq!(poll(&server, &stream, &token, early).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let expired = poll(&server, &stream, &token, early).await;
    assert_eq!(expired.status(), 410);
    let grown = server
        .http1()
        .patch(server.url(&format!("/api/v1/events-streams/{stream}")))
        .header("x-api-key", &key)
        .json(&json!({ "retentionSeconds": 3600 }))
        .send()
        .await
        .unwrap();
    assert_eq!(grown.status(), 200);
    let still = poll(&server, &stream, &token, early).await;
    assert_eq!(still.status(), 410, "its body is gone: never an empty 200");
    assert_eq!(json(still).await["error"]["code"], "INTERVAL_EXPIRED");
}

#[tokio::test]
async fn an_api_key_polls_only_with_the_read_scope() {
    let server = Server::start();
    let stream = create_stream(&server).await;
    let admin = crate::clients::Admin::new(&server);
    let tenant = "default";
    let (_, publisher) = admin.create_key(tenant, &["publish"]).await;
    let (_, reader) = admin.create_key(tenant, &["read"]).await;
    let closed = now_ms() / 250 * 250;
    for (key, status) in [(publisher, 403), (reader, 200)] {
        let answer = server
            .http1()
            .get(server.url(&format!(
                "/api/v1/events-streams/{stream}?interval={closed}"
            )))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status);
    }
}

#[tokio::test]
async fn hearts_sent_while_the_server_drains_are_in_its_last_interval() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let stream = create_stream(&server).await;
    let token = viewer(&server, "last-minute");
    let body = r#"{"count":7}"#;
    let mut socket = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /api/v1/events-streams/{stream}/hearts HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    server.signal(libc::SIGTERM);
    // Past the moment the listener closed: the request is in flight in the drain.
    tokio::time::sleep(Duration::from_millis(600)).await;
    socket.write_all(body.as_bytes()).await.unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(server.wait_exit(Duration::from_secs(20)).success());

    let restarted = Server::builder().data_dir(&dir).start();
    let key = admin_key(&restarted);
    let snapshot = json(
        restarted
            .http1()
            .get(restarted.url(&format!("/api/v1/events-streams/{stream}/snapshot")))
            .header("x-api-key", &key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let first = snapshot["data"]["stream"]["firstInterval"]
        .as_u64()
        .unwrap();
    let latest = snapshot["data"]["latestInterval"].as_u64().unwrap();
    let mut hearts = 0;
    for interval in (first..=latest).step_by(250) {
        let polled = json(poll(&restarted, &stream, &token, interval).await).await;
        for event in polled["events"].as_array().unwrap() {
            if event["type"] == "chats" {
                hearts += event["data"]["hearts"].as_u64().unwrap();
            }
        }
    }
    assert_eq!(
        hearts, 7,
        "the hearts answered 202 during the drain were stored"
    );
}
