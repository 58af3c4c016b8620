//! The live events-streams API as the poll scenario uses it: the producer
//! calls (API key), viewer tokens (HS256 JWTs of a realm whose secret the
//! bench knows), the viewer requests as prepared HTTP/1.1 bytes, and clock
//! sync against `/api/v1/time`.
//!
//! Invariants: every viewer has its own subject (`bench-<run>-<index>`), so
//! view counts, one-answer-per-viewer and chat authors behave as with real
//! audiences; tokens live for the whole run plus [`TOKEN_SLACK`].

use super::clock::{Sample, ServerClock, local_unix_us};
use crate::bench::error::BenchError;
use crate::bench::http::{Body, HttpClient, Protocol};
use crate::bench::keepalive::{KeepAlive, request_bytes};
use crate::bench::target::Target;
use http::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Extra lifetime of every viewer token beyond the planned run.
pub const TOKEN_SLACK: Duration = Duration::from_secs(600);

/// The realm used when a request names none (no `realmname` header is sent for it).
pub const DEFAULT_REALM: &str = "default";

/// The choices of every quiz the bench opens (the first is the answer).
pub const QUIZ_CHOICES: [&str; 3] = ["Tea", "Coffee", "Soda"];

/// Reads the HS256 secret of `realm` from `DATA_DIR/config.json`.
pub fn realm_secret_from(data_dir: &Path, realm: &str) -> Result<String, BenchError> {
    realm_from(data_dir, realm).map(|seed| seed.hs256_secret)
}

/// A JWT realm as `DATA_DIR/config.json` seeds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmSeed {
    /// The realm's name.
    pub name: String,
    /// The tenant its users belong to.
    #[serde(default)]
    pub tenant_id: String,
    /// Its HS256 secret.
    pub hs256_secret: String,
}

/// Reads `realm` from `DATA_DIR/config.json`.
pub fn realm_from(data_dir: &Path, realm: &str) -> Result<RealmSeed, BenchError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct RealmsOnly {
        jwt_realms: Vec<RealmSeed>,
    }
    let path = data_dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|err| {
        BenchError::usage(format!(
            "cannot read the realm secret from {}: {err} (give --jwt-secret or --data-dir)",
            path.display()
        ))
    })?;
    let parsed: RealmsOnly = serde_json::from_str(&text).map_err(|err| {
        BenchError::usage(format!("{} has no usable jwtRealms: {err}", path.display()))
    })?;
    parsed
        .jwt_realms
        .into_iter()
        .find(|seed| seed.name == realm)
        .ok_or_else(|| {
            BenchError::usage(format!(
                "{} has no realm `{realm}` (give --jwt-secret for a realm created through the API)",
                path.display()
            ))
        })
}

/// A viewer: its JWT subject and token.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The JWT `sub`.
    pub subject: String,
    /// The signed token.
    pub token: String,
}

/// Mints `count` viewer tokens valid for `lifetime` (plus [`TOKEN_SLACK`]).
pub fn mint_viewers(
    secret: &str,
    run: &str,
    count: usize,
    lifetime: Duration,
) -> Result<Vec<Viewer>, BenchError> {
    (0..count)
        .map(|index| {
            let subject = format!("bench-{run}-{index}");
            let token = mint_token(secret, &subject, lifetime)?;
            Ok(Viewer { subject, token })
        })
        .collect()
}

/// Mints a token for `subject` valid for `lifetime` (plus [`TOKEN_SLACK`]).
pub fn mint_token(secret: &str, subject: &str, lifetime: Duration) -> Result<String, BenchError> {
    let now = local_unix_us() / 1_000_000;
    let exp = now + i64::try_from((lifetime + TOKEN_SLACK).as_secs()).unwrap_or(i64::MAX / 2);
    let claims = json!({ "sub": subject, "iat": now, "exp": exp });
    crate::auth::jwt::mint_hs256(secret, &claims, None)
        .map_err(|err| BenchError::usage(format!("cannot mint a user token: {err}")))
}

/// Builds the requests viewers send to one stream.
#[derive(Debug, Clone)]
pub struct ViewerRequests {
    authority: String,
    stream_path: String,
    realm: Option<String>,
}

impl ViewerRequests {
    /// Requests to stream `stream_id` of `target`, verified by `realm`.
    pub fn new(target: &Target, stream_id: &str, realm: &str) -> Self {
        Self {
            authority: target.authority.clone(),
            stream_path: target.path(&format!("/api/v1/events-streams/{stream_id}")),
            realm: (realm != DEFAULT_REALM).then(|| realm.to_string()),
        }
    }

    /// The same requests sent to another server (the nginx peer) with its `Host`.
    pub fn for_authority(&self, authority: &str) -> Self {
        Self {
            authority: authority.to_string(),
            ..self.clone()
        }
    }

    /// A request with the viewer's bearer token (and the realm header).
    fn request(
        &self,
        method: &str,
        path: &str,
        viewer: &Viewer,
        body: Option<&str>,
    ) -> Result<Vec<u8>, BenchError> {
        let bearer = format!("Bearer {}", viewer.token);
        let mut headers = vec![("Authorization", bearer.as_str())];
        if let Some(realm) = &self.realm {
            headers.push(("realmname", realm));
        }
        request_bytes(method, &self.authority, path, &headers, body)
    }

    /// `GET …/events-streams/{id}?interval=T`.
    pub fn poll(&self, interval: i64, viewer: &Viewer) -> Result<Vec<u8>, BenchError> {
        let path = format!("{}?interval={interval}", self.stream_path);
        self.request("GET", &path, viewer, None)
    }

    /// `POST …/chats`, a message.
    pub fn chat(&self, viewer: &Viewer, text: &str) -> Result<Vec<u8>, BenchError> {
        let body = json!({ "kind": "message", "text": text }).to_string();
        let path = format!("{}/chats", self.stream_path);
        self.request("POST", &path, viewer, Some(&body))
    }

    /// `POST …/hearts` with `{"count":1}`.
    pub fn heart(&self, viewer: &Viewer) -> Result<Vec<u8>, BenchError> {
        let path = format!("{}/hearts", self.stream_path);
        self.request("POST", &path, viewer, Some(r#"{"count":1}"#))
    }

    /// `POST …/quizzes/{quiz}/answers`.
    pub fn answer(&self, quiz: &str, choice: &str, viewer: &Viewer) -> Result<Vec<u8>, BenchError> {
        let body = json!({ "choice": choice }).to_string();
        let path = format!("{}/quizzes/{quiz}/answers", self.stream_path);
        self.request("POST", &path, viewer, Some(&body))
    }
}

/// A created stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// Its id.
    pub id: String,
    /// Its first interval (unix ms).
    pub first_interval: i64,
}

/// The producer side: one connection with the admin (or a `publish`) key,
/// opened again before a call when the server closed it while it was idle.
#[derive(Debug)]
pub struct Producer {
    client: HttpClient,
    target: Target,
}

impl Producer {
    /// Connects to the target.
    pub async fn connect(target: &Target) -> Result<Self, BenchError> {
        Ok(Self {
            client: Self::open(target).await?,
            target: target.clone(),
        })
    }

    async fn open(target: &Target) -> Result<HttpClient, BenchError> {
        HttpClient::connect(target, Protocol::Http1)
            .await
            .map_err(|err| {
                BenchError::run(format!(
                    "the server at {} is not reachable: {err}",
                    target.addr
                ))
            })
    }

    /// Sends a JSON request and returns the answer's `data` when the status is `expected`.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Value,
        expected: StatusCode,
    ) -> Result<Value, BenchError> {
        if self.client.is_closed() {
            self.client = Self::open(&self.target).await?;
        }
        let request = self
            .client
            .request(method.clone(), &self.target.path(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .map_err(|err| BenchError::context("building a producer request", err))?;
        let reply = self.client.fetch(request).await?;
        if reply.status != expected {
            let hint = if reply.status == StatusCode::NOT_FOUND {
                " (does this server have the live events-streams API?)"
            } else {
                ""
            };
            return Err(BenchError::run(format!(
                "{method} {path} answered {}{hint}: {}",
                reply.status,
                reply.body_excerpt()
            )));
        }
        let parsed: Value = serde_json::from_slice(&reply.body)
            .map_err(|err| BenchError::context(format!("reading the answer to {path}"), err))?;
        Ok(parsed["data"].clone())
    }

    /// Creates a stream.
    pub async fn create_stream(&mut self, title: &str) -> Result<Stream, BenchError> {
        let data = self
            .call(
                Method::POST,
                "/api/v1/events-streams",
                json!({ "title": title }),
                StatusCode::CREATED,
            )
            .await?;
        let id = data["id"]
            .as_str()
            .ok_or_else(|| BenchError::run(format!("a created stream has no id: {data}")))?;
        let first_interval = data["firstInterval"].as_i64().ok_or_else(|| {
            BenchError::run(format!("a created stream has no firstInterval: {data}"))
        })?;
        Ok(Stream {
            id: id.to_string(),
            first_interval,
        })
    }

    /// Ends a stream.
    pub async fn end_stream(&mut self, stream: &str) -> Result<(), BenchError> {
        let path = format!("/api/v1/events-streams/{stream}/end");
        self.call(Method::POST, &path, json!({}), StatusCode::OK)
            .await
            .map(drop)
    }

    /// Opens a quiz with [`QUIZ_CHOICES`] lasting `duration`; returns its id.
    pub async fn open_quiz(
        &mut self,
        stream: &str,
        duration: Duration,
    ) -> Result<String, BenchError> {
        let path = format!("/api/v1/events-streams/{stream}/quizzes");
        let body = json!({
            "question": "What is the most consumed manufactured drink in the world?",
            "choices": QUIZ_CHOICES,
            "answer": QUIZ_CHOICES[0],
            "durationMs": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        });
        let data = self
            .call(Method::POST, &path, body, StatusCode::CREATED)
            .await?;
        data["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BenchError::run(format!("an opened quiz has no id: {data}")))
    }

    /// Closes a quiz early.
    pub async fn close_quiz(&mut self, stream: &str, quiz: &str) -> Result<(), BenchError> {
        let path = format!("/api/v1/events-streams/{stream}/quizzes/{quiz}/close");
        self.call(Method::POST, &path, json!({}), StatusCode::OK)
            .await
            .map(drop)
    }
}

/// Measures the server's clock offset with `samples` round trips to `/api/v1/time`.
pub async fn sync_clock(target: &Target, samples: usize) -> Result<ServerClock, BenchError> {
    let mut connection = KeepAlive::connect(target).await?;
    let request = request_bytes(
        "GET",
        &target.authority,
        &target.path("/api/v1/time"),
        &[],
        None,
    )?;
    let mut taken = Vec::with_capacity(samples);
    for _ in 0..samples {
        let sent_us = local_unix_us();
        let answer = connection.exchange(&request).await?;
        let received_us = local_unix_us();
        if answer.status != 200 {
            return Err(BenchError::run(format!(
                "GET /api/v1/time answered {}: {}",
                answer.status,
                String::from_utf8_lossy(answer.body)
            )));
        }
        taken.push(Sample {
            sent_us,
            server_ms: server_now_of(answer.body)?,
            received_us,
        });
    }
    ServerClock::from_samples(&taken).ok_or_else(|| BenchError::usage("--clock-samples is 0"))
}

/// `data.now` of a `/api/v1/time` answer.
fn server_now_of(body: &[u8]) -> Result<i64, BenchError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|err| BenchError::context("reading /api/v1/time", err))?;
    parsed["data"]["now"].as_i64().ok_or_else(|| {
        BenchError::run(format!(
            "/api/v1/time has no data.now: {}",
            String::from_utf8_lossy(body)
        ))
    })
}

/// The `interval` of a chat's acknowledgement (`{"data":{"chat":…,"interval":T}}`).
pub fn chat_interval(body: &[u8]) -> Result<i64, BenchError> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|err| BenchError::context("reading a chat acknowledgement", err))?;
    parsed["data"]["interval"].as_i64().ok_or_else(|| {
        BenchError::run(format!(
            "a chat acknowledgement has no data.interval: {}",
            String::from_utf8_lossy(body)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "jws_0123456789abcdef0123456789abcdef0123456789abcdef";

    fn target() -> Target {
        Target {
            addr: "127.0.0.1:8080".parse().expect("addr"),
            authority: "127.0.0.1:8080".into(),
            base_path: "/t".into(),
            api_key: "adm_x".into(),
            peer: None,
            discussions: Default::default(),
            rooms: Default::default(),
            tls: None,
        }
    }

    #[test]
    fn viewers_get_distinct_subjects_and_valid_tokens() {
        let viewers = mint_viewers(SECRET, "r1", 3, Duration::from_secs(60)).expect("mints");
        assert_eq!(viewers[2].subject, "bench-r1-2");
        assert_eq!(viewers[0].token.split('.').count(), 3);
        assert_ne!(viewers[0].token, viewers[1].token);
        assert!(mint_viewers("short", "r1", 1, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn viewer_requests_carry_the_token_and_realm() {
        let viewer = Viewer {
            subject: "s".into(),
            token: "a.b.c".into(),
        };
        let plain = ViewerRequests::new(&target(), "id1", DEFAULT_REALM);
        let poll = String::from_utf8(plain.poll(1_000_250, &viewer).unwrap()).unwrap();
        assert!(poll.starts_with("GET /t/api/v1/events-streams/id1?interval=1000250 HTTP/1.1\r\n"));
        assert!(poll.contains("Authorization: Bearer a.b.c\r\n"));
        assert!(!poll.contains("realmname"));
        let named = ViewerRequests::new(&target(), "id1", "mobile").for_authority("127.0.0.1:9");
        let answer = String::from_utf8(named.answer("q1", "Tea", &viewer).unwrap()).unwrap();
        assert!(answer.starts_with("POST /t/api/v1/events-streams/id1/quizzes/q1/answers "));
        assert!(answer.contains("Host: 127.0.0.1:9\r\n"));
        assert!(answer.contains("realmname: mobile\r\n"));
        assert!(answer.ends_with(r#"{"choice":"Tea"}"#));
    }

    #[test]
    fn the_realm_secret_is_read_from_the_config_file() {
        let dir = tempfile_dir("realm");
        std::fs::write(
            dir.join("config.json"),
            r#"{"adminKey":"adm_x","jwtRealms":[{"name":"default","tenantId":"x","hs256Secret":"jws_1"}]}"#,
        )
        .expect("write");
        assert_eq!(realm_secret_from(&dir, "default").expect("found"), "jws_1");
        assert!(realm_secret_from(&dir, "other").is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert!(realm_secret_from(&dir, "default").is_err());
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("tidings-poll-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn answers_are_read() {
        assert_eq!(
            server_now_of(br#"{"data":{"now":1700000000123,"intervalMs":250}}"#).unwrap(),
            1_700_000_000_123
        );
        assert!(server_now_of(b"{}").is_err());
        assert_eq!(
            chat_interval(br#"{"data":{"chat":{},"interval":1000}}"#).unwrap(),
            1000
        );
        assert!(chat_interval(b"nope").is_err());
    }
}
