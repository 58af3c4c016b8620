//! Test clients: topics publishing and history, an SSE reader, a WebSocket
//! client, discussion writes and admin API calls.

use crate::harness::{Server, json};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// How long a test waits for one frame before failing.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's admin key, read from its data directory.
pub fn admin_key(server: &Server) -> String {
    crate::harness::read_json_file(&server.data_dir.join("config.json"))["adminKey"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The URL path segment of a topic (`/` percent-encoded).
pub fn topic_path(topic: &str) -> String {
    topic.replace('/', "%2F")
}

/// Publishes one event (or a batch when `body` has `events`) and returns the response.
pub async fn publish_raw(
    server: &Server,
    client: &reqwest::Client,
    topic: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(server.url(&format!("/api/v1/topics/{}/events", topic_path(topic))))
        .header("x-api-key", admin_key(server))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// `GET /api/v1/topics/{topic}/events{query}` with the admin key.
pub async fn history(server: &Server, topic: &str, query: &str) -> reqwest::Response {
    server
        .http1()
        .get(server.url(&format!(
            "/api/v1/topics/{}/events{query}",
            topic_path(topic)
        )))
        .header("x-api-key", admin_key(server))
        .send()
        .await
        .unwrap()
}

/// Every event of a topic, oldest first, paging through the history API.
pub async fn all_events(server: &Server, topic: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value = history(server, topic, &format!("?limit=1000&after={after}"))
            .await
            .json()
            .await
            .unwrap();
        events.extend(page["data"]["events"].as_array().unwrap().iter().cloned());
        match page["data"]["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => return events,
        }
    }
}

/// Every event id of a topic, oldest first.
pub async fn all_ids(server: &Server, topic: &str) -> Vec<String> {
    all_events(server, topic)
        .await
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_string())
        .collect()
}

/// Publishes one event and returns its id.
pub async fn publish(
    server: &Server,
    client: &reqwest::Client,
    topic: &str,
    data: Value,
) -> String {
    let response = publish_raw(
        server,
        client,
        topic,
        &serde_json::json!({ "type": "test", "data": data }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["data"]["id"].as_str().unwrap().to_string()
}

/// One SSE frame (or a comment line).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    /// `event:` (empty for a comment).
    pub event: String,
    /// `id:`.
    pub id: Option<String>,
    /// `data:` lines joined with newlines.
    pub data: String,
    /// A comment (`: …`) instead of an event.
    pub comment: Option<String>,
    /// `retry:`.
    pub retry: Option<u64>,
}

impl Frame {
    /// `data` parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|err| panic!("frame data is not JSON ({err}): {self:?}"))
    }
}

/// Reads an SSE response frame by frame.
pub struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    /// Opens the stream of `topic` with an optional `Last-Event-ID`.
    pub async fn open(
        server: &Server,
        client: &reqwest::Client,
        topic: &str,
        last_event_id: Option<&str>,
    ) -> Self {
        let mut request = client
            .get(server.url(&format!("/api/v1/topics/{}/stream", topic_path(topic))))
            .header("accept", "text/event-stream")
            .header("x-api-key", admin_key(server));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self::from_response(response)
    }

    /// Wraps a `text/event-stream` response.
    pub fn from_response(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// Wraps a `200 text/event-stream` response and reads past its `connected` frame.
    pub async fn connected(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        let mut reader = Self::from_response(response);
        assert_eq!(reader.next_event().await.unwrap().event, "connected");
        reader
    }

    /// The next frame; `None` when the stream ended.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(&block));
            }
            let chunk = tokio::time::timeout(FRAME_TIMEOUT, self.body.next())
                .await
                .expect("an SSE frame within the timeout")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.ok()?).expect("UTF-8 stream"));
        }
    }

    /// The next frame that is an event (skipping comments and `retry`-only blocks).
    pub async fn next_event(&mut self) -> Option<Frame> {
        loop {
            let frame = self.next().await?;
            if !frame.event.is_empty() {
                return Some(frame);
            }
        }
    }
}

fn parse_block(block: &str) -> Frame {
    let mut frame = Frame::default();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comment = Some(comment.trim().to_string());
        } else if let Some((field, value)) = line.split_once(':') {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => frame.event = value.to_string(),
                "id" => frame.id = Some(value.to_string()),
                "data" => data.push(value.to_string()),
                "retry" => frame.retry = value.parse().ok(),
                other => panic!("unexpected SSE field {other}"),
            }
        }
    }
    frame.data = data.join("\n");
    frame
}

/// A WebSocket client of the topics API.
pub struct WsClient {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl WsClient {
    /// Connects with the admin key.
    pub async fn connect(server: &Server) -> Self {
        Self::connect_to(server, "/api/v1/topics/ws").await
    }

    /// Connects to another WebSocket route (path and query) with the admin key.
    pub async fn connect_to(server: &Server, path: &str) -> Self {
        Self::connect_with_key(server, path, &admin_key(server)).await
    }

    /// Connects to a WebSocket route (path and query) with the API key `key`.
    pub async fn connect_with_key(server: &Server, path: &str, key: &str) -> Self {
        let url = server.url(path).replace("http://", "ws://");
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("x-api-key", key.parse().unwrap());
        let (socket, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("WebSocket handshake");
        assert_eq!(response.status(), 101);
        Self { socket }
    }

    /// Sends a JSON text frame.
    pub async fn send(&mut self, value: Value) {
        self.socket
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
    }

    /// Sends a raw message.
    pub async fn send_message(&mut self, message: Message) {
        self.socket.send(message).await.unwrap();
    }

    /// The next JSON text frame; panics on anything else.
    pub async fn next_json(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Some(Message::Text(text)) => return serde_json::from_str(text.as_str()).unwrap(),
                Some(Message::Ping(_) | Message::Pong(_)) => continue,
                other => panic!("expected a JSON text frame, got {other:?}"),
            }
        }
    }

    /// The next message, `None` when the connection ended.
    pub async fn next_message(&mut self) -> Option<Message> {
        let next = tokio::time::timeout(FRAME_TIMEOUT, self.socket.next())
            .await
            .expect("a WebSocket frame in time");
        next.and_then(Result::ok)
    }

    /// Waits for the server's close frame and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_message().await? {
                Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                _ => continue,
            }
        }
    }
}

/// Mints a stream ticket of `topic` for `viewer` with the admin key.
pub async fn mint_ticket(server: &Server, topic: &str, viewer: &str) -> String {
    let response = server
        .http1()
        .post(server.url(&format!("/api/v1/topics/{}/tickets", topic_path(topic))))
        .header("x-api-key", admin_key(server))
        .json(&serde_json::json!({ "viewer": { "id": viewer, "name": "Viewer" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body = json(response).await;
    assert!(body["data"]["expiresAt"].is_string());
    body["data"]["ticket"].as_str().unwrap().to_string()
}

/// The URL of `topic`'s stream opened with `ticket`.
pub fn ticket_stream_url(server: &Server, topic: &str, ticket: &str) -> String {
    server.url(&format!(
        "/api/v1/topics/{}/stream?ticket={ticket}",
        topic_path(topic)
    ))
}

/// A discussions write with the admin key, for reader `user` when given;
/// asserts success and returns `data`.
pub async fn discussion_post(
    server: &Server,
    path: &str,
    user: Option<&str>,
    body: Value,
) -> Value {
    let mut request = server
        .http1()
        .post(server.url(path))
        .header("x-api-key", admin_key(server))
        .json(&body);
    if let Some(user) = user {
        request = request.header("x-external-user-id", user);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body["data"].clone()
}

/// Admin API calls with the instance admin key.
pub struct Admin<'a> {
    server: &'a Server,
    client: reqwest::Client,
    /// The instance admin key.
    pub key: String,
}

impl<'a> Admin<'a> {
    /// A caller on `server`.
    pub fn new(server: &'a Server) -> Self {
        Self {
            server,
            client: server.http1(),
            key: admin_key(server),
        }
    }

    /// Calls `path` with `method` and an optional JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .request(method, self.server.url(path))
            .header("x-api-key", &self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Creates a tenant; returns its id.
    pub async fn create_tenant(&self, slug: &str) -> String {
        let response = self
            .call(
                reqwest::Method::POST,
                "/admin/v1/tenants",
                Some(serde_json::json!({ "slug": slug })),
            )
            .await;
        assert_eq!(response.status(), 201);
        json(response).await["data"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Creates a key with `scopes` in `tenant`; returns (id, secret).
    pub async fn create_key(&self, tenant: &str, scopes: &[&str]) -> (String, String) {
        let body =
            serde_json::json!({ "name": format!("key-{}", scopes.join("-")), "scopes": scopes });
        let response = self
            .call(
                reqwest::Method::POST,
                &format!("/admin/v1/tenants/{tenant}/keys"),
                Some(body),
            )
            .await;
        assert_eq!(response.status(), 201);
        let data = json(response).await["data"].clone();
        (
            data["id"].as_str().unwrap().to_string(),
            data["secret"].as_str().unwrap().to_string(),
        )
    }

    /// Revokes key `id` of `tenant` (200 expected).
    pub async fn revoke_key(&self, tenant: &str, id: &str) {
        let path = format!("/admin/v1/tenants/{tenant}/keys/{id}");
        let response = self.call(reqwest::Method::DELETE, &path, None).await;
        assert_eq!(response.status(), 200);
    }
}

/// A JWT with `claims`, signed by the default realm's HS256 secret from the
/// server's `config.json`.
pub fn mint_jwt(server: &Server, claims: Value) -> String {
    let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
    let secret = config["jwtRealms"][0]["hs256Secret"].as_str().unwrap();
    tidings::auth::jwt::mint_hs256(secret, &claims, None).unwrap()
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Sets the browser origins a tenant allows; asserts success.
pub async fn set_origins(server: &Server, tenant: &str, origins: &[&str]) {
    let response = Admin::new(server)
        .call(
            reqwest::Method::PUT,
            &format!("/admin/v1/tenants/{tenant}/origins"),
            Some(serde_json::json!({ "origins": origins })),
        )
        .await;
    let status = response.status();
    assert_eq!(status, 200, "{}", json(response).await);
}
