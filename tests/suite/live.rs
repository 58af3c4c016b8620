//! Live events-streams (spec 001) against the real binary, written from the
//! spec and the API contract (not from the module's code): every event type
//! with its exact fields and order, interval validation, immutable closed
//! intervals (bytes, `ETag`, 304, `Cache-Control`, across restarts), the
//! waiting poll, the view-count window, the quiz lifecycle across restarts,
//! chat durability under SIGKILL, CORS, HEAD and refusals.
//!
//! The helpers here ([`Viewer`], [`Producer`], [`Polled`]) are shared with
//! the Chromium acceptance test in `live_browser.rs`.

use crate::clients::{Admin, admin_key, mint_jwt, set_origins, unix_now};
use crate::harness::Server;
use futures_util::future::join_all;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of one interval (ms).
pub const STEP: u64 = 250;

/// The event types in the order they appear inside an interval.
const EVENT_ORDER: [&str; 5] = [
    "view-count",
    "chats",
    "quiz",
    "quiz-results",
    "quiz-winners",
];

/// For tests whose viewers post faster than the default per-viewer limit.
pub const MANY_CHATS: &[&str] = &["--live-max-chats-per-viewer-interval", "1000"];

/// The five chat kinds and the array of `chats` each lands in.
const CHAT_KINDS: [(&str, &str); 5] = [
    ("message", "messages"),
    ("question", "questions"),
    ("greeting", "greetings"),
    ("cheer", "cheers"),
    ("purchase", "purchases"),
];

/// Local unix time in ms (the server runs on the same clock).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The interval `ms` falls in.
pub fn interval_of(ms: u64) -> u64 {
    ms / STEP * STEP
}

/// Sleeps until interval `t` has closed (by the shared clock), plus a margin.
pub async fn wait_closed(t: u64) {
    let close = t + STEP + 20;
    let now = now_ms();
    if close > now {
        tokio::time::sleep(Duration::from_millis(close - now)).await;
    }
}

/// The `formatted` rule of `view-count`, written from the contract: below
/// 1000 plain; then K, M or B with one decimal, truncated, ".0" dropped.
pub fn formatted(value: u64) -> String {
    if value < 1000 {
        return value.to_string();
    }
    let (unit, suffix) = match value {
        v if v >= 1_000_000_000 => (1_000_000_000, "B"),
        v if v >= 1_000_000 => (1_000_000, "M"),
        _ => (1000, "K"),
    };
    let tenths = value / (unit / 10);
    if tenths.is_multiple_of(10) {
        format!("{}{suffix}", tenths / 10)
    } else {
        format!("{}.{}{suffix}", tenths / 10, tenths % 10)
    }
}

/// The sorted keys of a JSON object.
fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The keys of the first object named `field` in `raw`, in the order they
/// were written (serde_json's `Value` sorts them).
fn written_key_order(raw: &str, field: &str) -> Vec<String> {
    let start = raw
        .find(&format!("\"{field}\""))
        .unwrap_or_else(|| panic!("{field} in {raw}"));
    let open = start + raw[start..].find('{').unwrap();
    let mut order = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut current = String::new();
    let mut expect_key = true;
    for ch in raw[open..].chars() {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            if in_string && depth == 1 && expect_key {
                current.push(ch);
            }
            if !in_string && depth == 1 && expect_key {
                order.push(std::mem::take(&mut current));
                expect_key = false;
            }
            continue;
        }
        match ch {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            ',' if depth == 1 => expect_key = true,
            _ => {}
        }
    }
    order
}

/// One answered poll of an interval.
pub struct Polled {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body as sent.
    pub bytes: Vec<u8>,
    /// Local time the response head arrived (ms).
    pub received_ms: u64,
}

impl Polled {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|err| {
            panic!(
                "JSON body ({err}): {}",
                String::from_utf8_lossy(&self.bytes)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).to_string()
    }

    /// The events of an interval body.
    pub fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .unwrap_or_else(|| panic!("events in {}", self.text()))
            .clone()
    }

    /// The data of the event of `event_type`, if the interval has one.
    pub fn event(&self, event_type: &str) -> Option<Value> {
        self.events()
            .into_iter()
            .find(|event| event["type"] == event_type)
            .map(|event| event["data"].clone())
    }

    /// One header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
    }

    /// All values of a header, joined with ", ".
    pub fn header_values(&self, name: &str) -> String {
        self.headers
            .get_all(name)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The error code of an error envelope.
    pub fn error_code(&self) -> String {
        let body = self.json();
        assert_eq!(keys(&body), ["error"], "the error envelope: {body}");
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A viewer: a JWT of the default realm (or another tenant's) and a client.
pub struct Viewer {
    base: String,
    client: reqwest::Client,
    /// The viewer's JWT.
    pub token: String,
    /// The JWT's `sub`.
    pub sub: String,
    tenant: Option<String>,
}

impl Viewer {
    /// A viewer `sub` of the default tenant with a token valid for an hour.
    pub fn new(server: &Server, sub: &str) -> Self {
        let token = mint_jwt(server, json!({ "sub": sub, "exp": unix_now() + 3600 }));
        Self::with_token(server, sub, token)
    }

    /// A viewer sending `token` as its bearer.
    pub fn with_token(server: &Server, sub: &str, token: String) -> Self {
        Self {
            base: server.base.clone(),
            client: server.http1(),
            token,
            sub: sub.to_string(),
            tenant: None,
        }
    }

    /// The same viewer (same token) talking to `server`, e.g. after a restart.
    pub fn on(&self, server: &Server) -> Self {
        Self {
            base: server.base.clone(),
            client: server.http1(),
            token: self.token.clone(),
            sub: self.sub.clone(),
            tenant: self.tenant.clone(),
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(tenant) = &self.tenant {
            request = request.header("x-tenantid", tenant);
        }
        request
    }

    /// `GET` (or another method) of the stream with a raw query string.
    pub async fn fetch(
        &self,
        method: Method,
        stream: &str,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Polled {
        let mut request = self.request(method, &format!("/api/v1/events-streams/{stream}{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("poll");
        let received_ms = now_ms();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("poll body").to_vec();
        Polled {
            status,
            headers,
            bytes,
            received_ms,
        }
    }

    /// Polls interval `t`.
    pub async fn poll(&self, stream: &str, t: u64) -> Polled {
        self.fetch(Method::GET, stream, &format!("?interval={t}"), &[])
            .await
    }

    /// Polls interval `t`, asserting a 200 with a well-formed interval.
    pub async fn interval(&self, stream: &str, t: u64) -> Polled {
        let polled = self.poll(stream, t).await;
        assert_eq!(polled.status, 200, "interval {t}: {}", polled.text());
        assert_well_formed(&polled, t);
        polled
    }

    /// Every interval from `from` to `to` (inclusive), once `to` closed.
    pub async fn intervals(&self, stream: &str, from: u64, to: u64) -> Vec<Polled> {
        wait_closed(to).await;
        let mut all = Vec::new();
        for t in (from..=to).step_by(STEP as usize) {
            all.push(self.interval(stream, t).await);
        }
        all
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.post_with(path, body, &[]).await
    }

    /// `POST path` with a JSON body and extra headers.
    pub async fn post_with(
        &self,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.request(Method::POST, path).json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        status_and_json(request, path).await
    }

    /// Posts a chat; asserts 201 and returns (chat, interval).
    pub async fn chat(&self, stream: &str, body: Value) -> (Value, u64) {
        let (status, answer) = self
            .post(&format!("/api/v1/events-streams/{stream}/chats"), body)
            .await;
        assert_eq!(status, 201, "{answer}");
        assert_eq!(keys(&answer["data"]), ["chat", "interval"], "{answer}");
        let interval = answer["data"]["interval"].as_u64().unwrap();
        assert_eq!(interval % STEP, 0, "{answer}");
        (answer["data"]["chat"].clone(), interval)
    }

    /// Posts a message chat with `text`; returns (chat, interval).
    pub async fn message(&self, stream: &str, text: &str) -> (Value, u64) {
        self.chat(
            stream,
            json!({ "kind": "message", "text": text, "displayName": self.sub }),
        )
        .await
    }

    /// Sends `count` hearts; returns the status and answer.
    pub async fn hearts(&self, stream: &str, count: Value) -> (u16, Value) {
        self.post(
            &format!("/api/v1/events-streams/{stream}/hearts"),
            json!({ "count": count }),
        )
        .await
    }

    /// Answers a quiz; returns the status and answer.
    pub async fn answer(&self, stream: &str, quiz: &str, choice: &str) -> (u16, Value) {
        self.post(
            &format!("/api/v1/events-streams/{stream}/quizzes/{quiz}/answers"),
            json!({ "choice": choice }),
        )
        .await
    }

    /// The stream's snapshot (`data`), asserting 200.
    pub async fn snapshot(&self, stream: &str) -> Value {
        let response = self
            .request(
                Method::GET,
                &format!("/api/v1/events-streams/{stream}/snapshot"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["data"].clone()
    }
}

/// A producer: an API key (the admin key unless given) and a client.
pub struct Producer {
    base: String,
    client: reqwest::Client,
    key: String,
}

impl Producer {
    /// The instance admin key on the default tenant.
    pub fn admin(server: &Server) -> Self {
        Self::with_key(server, admin_key(server))
    }

    /// Calls with `key`.
    pub fn with_key(server: &Server, key: String) -> Self {
        Self {
            base: server.base.clone(),
            client: server.http1(),
            key,
        }
    }

    /// Calls `path`; returns the status and JSON answer.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", &self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        status_and_json(request, path).await
    }

    /// `POST path body`.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Creates a stream; asserts 201 and returns the Stream.
    pub async fn create_stream(&self, body: Value) -> Value {
        let (status, answer) = self.post("/api/v1/events-streams", body).await;
        assert_eq!(status, 201, "{answer}");
        assert_stream_shape(&answer["data"]);
        answer["data"].clone()
    }

    /// Creates a stream titled `title`; returns its id.
    pub async fn stream(&self, title: &str) -> String {
        let stream = self.create_stream(json!({ "title": title })).await;
        stream["id"].as_str().unwrap().to_string()
    }

    /// A new stream with a quiz open in it: (stream id, quiz).
    pub async fn stream_with_quiz(&self, title: &str, quiz: Value) -> (String, Value) {
        let stream = self.stream(title).await;
        let quiz = self.open_quiz(&stream, quiz).await;
        (stream, quiz)
    }

    /// Opens a quiz; asserts 201 and returns the Quiz.
    pub async fn open_quiz(&self, stream: &str, body: Value) -> Value {
        let (status, answer) = self
            .post(&format!("/api/v1/events-streams/{stream}/quizzes"), body)
            .await;
        assert_eq!(status, 201, "{answer}");
        answer["data"].clone()
    }
}

/// Sends `request` (to `path`); returns the status and the JSON answer.
async fn status_and_json(request: reqwest::RequestBuilder, path: &str) -> (u16, Value) {
    let response = request.send().await.expect("the request is sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("JSON answer to {path} ({err}): {text}"));
    (status, body)
}

/// The shape of a Stream object: every field of the contract (the module
/// may add its own, e.g. `lastInterval`).
fn assert_stream_shape(stream: &Value) {
    for field in [
        "createdAt",
        "endedAt",
        "firstInterval",
        "id",
        "public",
        "retentionSeconds",
        "status",
        "title",
    ] {
        assert!(stream.get(field).is_some(), "{field} in {stream}");
    }
    uuid::Uuid::parse_str(stream["id"].as_str().unwrap()).expect("a UUID stream id");
    assert!(stream["public"].is_boolean());
    assert!(stream["retentionSeconds"].is_u64());
    let created = stream["createdAt"].as_u64().unwrap();
    let first = stream["firstInterval"].as_u64().unwrap();
    assert_eq!(first % STEP, 0, "{stream}");
    assert!(
        first <= created && created < first + 2 * STEP,
        "the first interval is where the stream was created: {stream}"
    );
}

/// Checks one interval body: exactly `{"interval","events"}`, events in the
/// fixed order, each with exactly its contract fields.
pub fn assert_well_formed(polled: &Polled, t: u64) {
    assert_interval_body(&polled.json(), t);
}

/// [`assert_well_formed`] on a parsed body.
pub fn assert_interval_body(body: &Value, t: u64) {
    assert_eq!(
        keys(body),
        ["events", "interval"],
        "no data wrapper: {body}"
    );
    assert_eq!(body["interval"], t, "{body}");
    let events = body["events"].as_array().unwrap();
    let ranks: Vec<usize> = events
        .iter()
        .map(|event| {
            assert_eq!(keys(event), ["data", "type"], "{event}");
            let event_type = event["type"].as_str().unwrap();
            EVENT_ORDER
                .iter()
                .position(|known| *known == event_type)
                .unwrap_or_else(|| panic!("unknown event type {event_type}"))
        })
        .collect();
    assert!(
        ranks.windows(2).all(|pair| pair[0] < pair[1]),
        "events once each, in order {EVENT_ORDER:?}: {body}"
    );
    let results = ranks.iter().position(|rank| *rank == 3);
    let winners = ranks.iter().position(|rank| *rank == 4);
    assert_eq!(
        winners,
        results.map(|index| index + 1),
        "quiz-winners right after quiz-results: {body}"
    );
    for event in events {
        assert_event_fields(event["type"].as_str().unwrap(), &event["data"]);
    }
}

fn assert_event_fields(event_type: &str, data: &Value) {
    match event_type {
        "view-count" => {
            assert_eq!(keys(data), ["formatted", "value"], "{data}");
            let value = data["value"].as_u64().unwrap();
            assert_eq!(data["formatted"], formatted(value), "{data}");
        }
        "chats" => assert_chats_fields(data),
        "quiz" | "quiz-results" => assert_quiz_fields(event_type, data),
        "quiz-winners" => {
            assert_eq!(keys(data), ["count"], "{data}");
            assert!(data["count"].is_u64());
        }
        other => panic!("unknown event type {other}"),
    }
}

fn assert_chats_fields(data: &Value) {
    assert_eq!(
        keys(data),
        [
            "cheers",
            "discounts",
            "greetings",
            "hearts",
            "messages",
            "purchases",
            "questions"
        ],
        "{data}"
    );
    assert!(
        data["hearts"].is_u64() && data["discounts"].is_u64(),
        "{data}"
    );
    for (_, array) in CHAT_KINDS {
        for chat in data[array].as_array().unwrap() {
            let mut expected = vec!["created", "displayName", "id", "text", "userId"];
            if array == "purchases" {
                expected.extend(["amount", "currency", "item"]);
                expected.sort_unstable();
                assert!(chat["amount"].is_number(), "{chat}");
            }
            assert_eq!(keys(chat), expected, "{array}: {chat}");
            ulid::Ulid::from_string(chat["id"].as_str().unwrap()).expect("a ULID chat id");
            assert!(chat["created"].as_u64().unwrap() > 1_600_000_000_000);
        }
    }
}

fn assert_quiz_fields(event_type: &str, data: &Value) {
    let mut expected = vec![
        "choices",
        "closeInterval",
        "created",
        "duration",
        "id",
        "question",
        "streamId",
    ];
    if event_type == "quiz-results" {
        expected.push("answer");
        expected.sort_unstable();
    }
    assert_eq!(keys(data), expected, "{event_type}: {data}");
    for (_, choice) in data["choices"].as_object().unwrap() {
        assert_eq!(keys(choice), ["count", "percentage"], "{data}");
        if event_type == "quiz" {
            assert_eq!(choice, &json!({ "count": 0, "percentage": 0 }), "{data}");
        }
    }
}

/// The parsed bodies of answered polls.
pub fn bodies(intervals: &[Polled]) -> Vec<Value> {
    intervals.iter().map(Polled::json).collect()
}

/// The `chats` events of interval bodies, keyed by interval.
fn chats_by_interval(bodies: &[Value]) -> BTreeMap<u64, Value> {
    bodies
        .iter()
        .filter_map(|body| {
            let chats = body["events"]
                .as_array()?
                .iter()
                .find(|event| event["type"] == "chats")?;
            Some((body["interval"].as_u64()?, chats["data"].clone()))
        })
        .collect()
}

/// Every chat id in interval bodies with the intervals (and arrays) it is in.
pub fn chat_locations(bodies: &[Value]) -> HashMap<String, Vec<(u64, &'static str)>> {
    let mut found: HashMap<String, Vec<(u64, &'static str)>> = HashMap::new();
    for (t, chats) in chats_by_interval(bodies) {
        for (_, array) in CHAT_KINDS {
            for chat in chats[array].as_array().unwrap() {
                found
                    .entry(chat["id"].as_str().unwrap().to_string())
                    .or_default()
                    .push((t, array));
            }
        }
    }
    found
}

/// Sum of a counter of `chats` (`hearts`, `discounts`) over interval bodies.
pub fn chats_total(bodies: &[Value], counter: &str) -> u64 {
    chats_by_interval(bodies)
        .values()
        .map(|chats| chats[counter].as_u64().unwrap())
        .sum()
}

#[test]
fn the_formatted_oracle_follows_the_contract_examples() {
    for (value, expected) in [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (2134, "2.1K"),
        (15_300_000, "15.3M"),
        (1_999_999, "1.9M"),
        (2_500_000_000, "2.5B"),
    ] {
        assert_eq!(formatted(value), expected);
    }
    let raw = r#"{"choices":{"Coffee":{"count":0},"Tea":{"a":{"b":1}},"S\"x":[1,{"c":2}]}}"#;
    assert_eq!(
        written_key_order(raw, "choices"),
        ["Coffee", "Tea", "S\\\"x"]
    );
}

#[tokio::test]
async fn every_event_type_of_chats_has_its_exact_fields_headers_and_no_data_wrapper() {
    let server = Server::builder().args(MANY_CHATS).start();
    let producer = Producer::admin(&server);
    let stream = producer.stream("Every chat kind").await;
    let alice = Viewer::new(&server, "alice");
    let before = interval_of(now_ms());
    let mut posted = Vec::new();
    for (kind, array) in CHAT_KINDS {
        let mut body = json!({ "kind": kind, "text": format!("a {kind}"), "displayName": "Alice" });
        if kind == "purchase" {
            body["item"] = json!("T-shirt");
            body["amount"] = json!(19.5);
            body["currency"] = json!("EUR");
        }
        let (chat, interval) = alice.chat(&stream, body).await;
        assert_eq!(chat["userId"], "alice", "{chat}");
        assert_eq!(chat["displayName"], "Alice");
        assert_eq!(chat["text"], format!("a {kind}"));
        posted.push((chat, interval, array));
    }
    let (status, accepted) = alice.hearts(&stream, json!(3)).await;
    assert_eq!(
        (status, &accepted),
        (202, &json!({ "data": { "accepted": 3 } }))
    );
    assert_eq!(alice.hearts(&stream, json!(4)).await.0, 202);
    let (status, answer) = producer
        .post(
            &format!("/api/v1/events-streams/{stream}/discounts"),
            json!({ "count": 2 }),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let after = interval_of(now_ms()) + 2 * STEP;

    let intervals = alice.intervals(&stream, before, after).await;
    let locations = chat_locations(&bodies(&intervals));
    for (chat, interval, array) in &posted {
        let id = chat["id"].as_str().unwrap();
        assert_eq!(
            locations.get(id),
            Some(&vec![(*interval, *array)]),
            "{chat} in exactly its interval {interval}, in {array}"
        );
        let chats = intervals
            .iter()
            .find(|polled| polled.json()["interval"] == *interval)
            .unwrap()
            .event("chats")
            .unwrap();
        let served = chats[*array]
            .as_array()
            .unwrap()
            .iter()
            .find(|served| served["id"] == chat["id"])
            .unwrap();
        assert_eq!(served, chat, "the chat as acknowledged");
    }
    let purchase = &posted[4].0;
    assert_eq!(
        (
            &purchase["item"],
            &purchase["amount"],
            &purchase["currency"]
        ),
        (&json!("T-shirt"), &json!(19.5), &json!("EUR"))
    );
    assert_eq!(
        chats_total(&bodies(&intervals), "hearts"),
        7,
        "every heart once"
    );
    assert_eq!(chats_total(&bodies(&intervals), "discounts"), 2);
    for polled in &intervals {
        let count = polled
            .event("view-count")
            .unwrap_or_else(|| panic!("view-count in every live interval: {}", polled.text()));
        assert!(count["value"].as_u64().unwrap() <= 1, "{count}");
        assert_eq!(
            polled.header("content-type").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            polled.header("allow").as_deref(),
            Some("GET, HEAD, OPTIONS")
        );
        assert!(
            polled.header_values("vary").contains("Accept"),
            "{:?}",
            polled.headers
        );
    }
    let polled_since = intervals.last().unwrap().json()["interval"]
        .as_u64()
        .unwrap();
    let later = alice.interval(&stream, polled_since + STEP).await;
    assert_eq!(
        later.event("view-count").unwrap(),
        json!({ "value": 1, "formatted": "1" }),
        "alice polled within the window"
    );

    let snapshot = alice.snapshot(&stream).await;
    assert_eq!(
        keys(&snapshot),
        [
            "latestInterval",
            "quiz",
            "serverTime",
            "stream",
            "viewCount"
        ],
        "{snapshot}"
    );
    assert_eq!(snapshot["stream"]["id"], stream.as_str());
    assert_stream_shape(&snapshot["stream"]);
    assert_eq!(snapshot["quiz"], Value::Null);
    let server_time = snapshot["serverTime"].as_u64().unwrap();
    assert!(server_time.abs_diff(now_ms()) < 60_000, "{snapshot}");
    let latest = snapshot["latestInterval"].as_u64().unwrap();
    assert_eq!(latest % STEP, 0);
    assert!(
        latest >= polled_since && latest <= server_time,
        "{snapshot}"
    );
    assert_eq!(keys(&snapshot["viewCount"]), ["formatted", "value"]);
}

#[tokio::test]
async fn quiz_results_have_floored_percentages_and_winners_and_the_timer_closes_it() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let stream = producer.stream("Quiz night").await;
    let question = "What is the most consumed manufactured drink in the world?";
    let quiz = producer
        .open_quiz(
            &stream,
            json!({ "question": question, "choices": ["Coffee", "Tea", "Soda"], "answer": "Tea", "durationMs": 6000 }),
        )
        .await;
    assert_eq!(quiz["answer"], "Tea");
    assert_eq!(quiz["question"], question);
    assert_eq!(quiz["streamId"], stream.as_str());
    assert_eq!(quiz["duration"], 6000);
    let quiz_id = quiz["id"].as_str().unwrap().to_string();
    let created = quiz["created"].as_u64().unwrap();
    let close = quiz["closeInterval"].as_u64().unwrap();
    assert_eq!((created % STEP, close % STEP), (0, 0), "{quiz}");
    assert!(close >= created + 6000, "{quiz}");

    let (status, body) = producer
        .post(
            &format!("/api/v1/events-streams/{stream}/quizzes"),
            json!({ "question": "Another?", "choices": ["Yes", "No"], "answer": "Yes", "durationMs": 3000 }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("CONFLICT")),
        "one open quiz"
    );

    // 1 Coffee, 3 Tea, 6 Soda.
    let viewers: Vec<(Viewer, &str)> = (0..10)
        .map(|index| {
            let choice = match index {
                0 => "Coffee",
                1..=3 => "Tea",
                _ => "Soda",
            };
            (Viewer::new(&server, &format!("fan-{index}")), choice)
        })
        .collect();
    let answers = join_all(
        viewers
            .iter()
            .map(|(viewer, choice)| viewer.answer(&stream, &quiz_id, choice)),
    )
    .await;
    for (status, body) in &answers {
        assert_eq!(*status, 201, "{body}");
    }
    let (status, body) = viewers[0].0.answer(&stream, &quiz_id, "Tea").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "CONFLICT");
    assert_eq!(body["error"]["details"]["reason"], "already-answered");
    let late_joiner = Viewer::new(&server, "late-joiner");
    let (status, body) = late_joiner.answer(&stream, &quiz_id, "Milk").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR")),
        "{body}"
    );
    let snapshot = late_joiner.snapshot(&stream).await;
    assert_eq!(snapshot["quiz"]["id"], quiz_id.as_str(), "{snapshot}");

    // No traffic until well after the close: the durable timer closes it.
    wait_closed(close + 2 * STEP).await;
    let (status, body) = late_joiner.answer(&stream, &quiz_id, "Tea").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["details"]["reason"], "quiz-closed");

    let opened = late_joiner.interval(&stream, created).await;
    let shown = opened
        .event("quiz")
        .expect("quiz in the interval it opened in");
    assert_eq!(shown["id"], quiz_id.as_str());
    assert_eq!(
        (&shown["created"], &shown["closeInterval"]),
        (&json!(created), &json!(close))
    );
    assert_eq!(shown["duration"], 6000);
    assert_eq!(shown["streamId"], stream.as_str());
    assert_eq!(shown["question"], question);
    assert_eq!(
        written_key_order(&opened.text(), "choices"),
        ["Coffee", "Tea", "Soda"]
    );

    let closing = late_joiner.interval(&stream, close).await;
    let results = closing
        .event("quiz-results")
        .expect("results in the close interval");
    assert_eq!(results["answer"], "Tea");
    assert_eq!(
        (&results["created"], &results["closeInterval"]),
        (&json!(created), &json!(close))
    );
    assert_eq!(
        results["choices"],
        json!({
            "Coffee": { "count": 1, "percentage": 10 },
            "Tea": { "count": 3, "percentage": 30 },
            "Soda": { "count": 6, "percentage": 60 },
        })
    );
    assert_eq!(
        written_key_order(&closing.text(), "choices"),
        ["Coffee", "Tea", "Soda"]
    );
    assert_eq!(closing.event("quiz-winners"), Some(json!({ "count": 3 })));
    for t in (created + STEP..close).step_by(STEP as usize) {
        let between = late_joiner.interval(&stream, t).await;
        assert!(between.event("quiz").is_none() && between.event("quiz-results").is_none());
    }

    // Closed early by the producer: results in the next interval, floored.
    let early = producer
        .open_quiz(
            &stream,
            json!({ "question": "Best day?", "choices": ["Mon", "Fri", "Sun"], "answer": "Fri", "durationMs": 60000 }),
        )
        .await;
    let early_id = early["id"].as_str().unwrap();
    for (viewer, choice) in viewers
        .iter()
        .take(3)
        .map(|(v, _)| v)
        .zip(["Mon", "Fri", "Fri"])
    {
        assert_eq!(viewer.answer(&stream, early_id, choice).await.0, 201);
    }
    let before_close = interval_of(now_ms());
    let (status, body) = producer
        .post(
            &format!("/api/v1/events-streams/{stream}/quizzes/{early_id}/close"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after_close = interval_of(now_ms()) + 2 * STEP;
    let intervals = late_joiner
        .intervals(&stream, before_close, after_close)
        .await;
    let with_results: Vec<&Polled> = intervals
        .iter()
        .filter(|polled| polled.event("quiz-results").is_some())
        .collect();
    assert_eq!(with_results.len(), 1, "results exactly once");
    let results = with_results[0].event("quiz-results").unwrap();
    assert_eq!(results["id"], early_id);
    assert_eq!(results["closeInterval"], with_results[0].json()["interval"]);
    assert_eq!(
        results["choices"],
        json!({
            "Mon": { "count": 1, "percentage": 33 },
            "Fri": { "count": 2, "percentage": 66 },
            "Sun": { "count": 0, "percentage": 0 },
        }),
        "floor(100*count/total)"
    );
    assert_eq!(
        with_results[0].event("quiz-winners"),
        Some(json!({ "count": 2 }))
    );
    let (status, body) = viewers[5].0.answer(&stream, early_id, "Sun").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (409, &json!("quiz-closed"))
    );
}

#[tokio::test]
async fn a_quiz_without_answers_has_zero_percentages() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let (stream, quiz) = producer.stream_with_quiz("Quiet", json!({ "question": "Anyone?", "choices": ["Yes", "No"], "answer": "No", "durationMs": 1000 })).await;
    let close = quiz["closeInterval"].as_u64().unwrap();
    let viewer = Viewer::new(&server, "quiet");
    let closing = viewer.interval(&stream, close).await;
    assert_eq!(
        closing.event("quiz-results").unwrap()["choices"],
        json!({ "Yes": { "count": 0, "percentage": 0 }, "No": { "count": 0, "percentage": 0 } })
    );
    assert_eq!(closing.event("quiz-winners"), Some(json!({ "count": 0 })));
}

#[tokio::test]
async fn producers_create_update_and_end_streams_with_validated_bodies() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let id = uuid::Uuid::new_v4().to_string();
    let created = producer
        .create_stream(json!({ "id": id, "title": "Launch" }))
        .await;
    assert_eq!(created["id"], id.as_str());
    assert_eq!(created["title"], "Launch");
    assert_eq!(created["public"], false);
    assert_eq!(created["retentionSeconds"], 86400);
    assert_eq!(
        (&created["status"], &created["endedAt"]),
        (&json!("live"), &Value::Null)
    );
    let (status, body) = producer
        .post(
            "/api/v1/events-streams",
            json!({ "id": id, "title": "Again" }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("CONFLICT")),
        "{body}"
    );

    let (status, body) = producer
        .call(
            Method::PATCH,
            &format!("/api/v1/events-streams/{id}"),
            Some(json!({ "title": "Launch day", "public": true, "retentionSeconds": 3600 })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_stream_shape(&body["data"]);
    assert_eq!(
        (
            &body["data"]["title"],
            &body["data"]["public"],
            &body["data"]["retentionSeconds"]
        ),
        (&json!("Launch day"), &json!(true), &json!(3600))
    );
    assert_eq!(body["data"]["createdAt"], created["createdAt"]);

    for bad in [
        json!({}),
        json!({ "title": 7 }),
        json!({ "id": "not-a-uuid", "title": "x" }),
        json!({ "title": "x", "retentionSeconds": 8 * 86400 }),
        json!({ "title": "x", "public": "yes" }),
    ] {
        let (status, body) = producer.post("/api/v1/events-streams", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{bad}");
    }
    for bad in [
        json!({ "question": "?", "choices": ["Only"], "answer": "Only", "durationMs": 1000 }),
        json!({ "question": "?", "choices": (0..11).map(|n| n.to_string()).collect::<Vec<_>>(), "answer": "1", "durationMs": 1000 }),
        json!({ "question": "?", "choices": ["A", "B"], "answer": "C", "durationMs": 1000 }),
        json!({ "question": "?", "choices": ["A", "B"], "answer": "A", "durationMs": -5 }),
        json!({ "choices": ["A", "B"], "answer": "A", "durationMs": 1000 }),
    ] {
        let (status, body) = producer
            .post(&format!("/api/v1/events-streams/{id}/quizzes"), bad.clone())
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{bad}");
    }
    for count in [json!(0), json!(1001), json!("5")] {
        let (status, body) = producer
            .post(
                &format!("/api/v1/events-streams/{id}/discounts"),
                json!({ "count": count }),
            )
            .await;
        assert_eq!(status, 400, "discounts {count}: {body}");
    }

    let unknown = uuid::Uuid::new_v4();
    let (status, body) = producer
        .call(
            Method::PATCH,
            &format!("/api/v1/events-streams/{unknown}"),
            Some(json!({ "title": "ghost" })),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );

    let admin = Admin::new(&server);
    let (_, reader_key) = admin.create_key("default", &["read"]).await;
    let (status, _) = Producer::with_key(&server, reader_key)
        .post("/api/v1/events-streams", json!({ "title": "no scope" }))
        .await;
    assert_eq!(status, 403, "creating needs the publish scope");
    let (_, publish_key) = admin.create_key("default", &["publish"]).await;
    Producer::with_key(&server, publish_key)
        .create_stream(json!({ "title": "by a backend" }))
        .await;
    let viewer = Viewer::new(&server, "sneaky");
    let (status, _) = viewer
        .post("/api/v1/events-streams", json!({ "title": "by a viewer" }))
        .await;
    assert_eq!(status, 403, "a viewer's JWT does not create streams");
    let (status, _) = viewer
        .post(
            &format!("/api/v1/events-streams/{id}/discounts"),
            json!({ "count": 1 }),
        )
        .await;
    assert_eq!(status, 403, "nor publish discounts");

    let (status, ended) = producer
        .post(&format!("/api/v1/events-streams/{id}/end"), json!({}))
        .await;
    assert_eq!(status, 200, "{ended}");
    assert_stream_shape(&ended["data"]);
    assert_eq!(ended["data"]["status"], "ended");
    let ended_at = ended["data"]["endedAt"].as_u64().unwrap();
    assert!(ended_at.abs_diff(now_ms()) < 60_000);
    let after_end = interval_of(ended_at) + 2 * STEP;
    wait_closed(after_end).await;
    let polled = viewer.poll(&id, after_end).await;
    assert_eq!(polled.status, 410, "{}", polled.text());
    assert_eq!(polled.error_code(), "STREAM_ENDED");
}

#[tokio::test]
async fn intervals_are_validated_and_refused_with_the_error_envelope() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let created = producer.create_stream(json!({ "title": "Checks" })).await;
    let stream = created["id"].as_str().unwrap().to_string();
    let first = created["firstInterval"].as_u64().unwrap();
    let viewer = Viewer::new(&server, "checker");
    for query in [
        format!("?interval={}", first + 100),
        format!("?interval={}", first + 1),
        "?interval=abc".to_string(),
        "?interval=".to_string(),
        String::new(),
    ] {
        let polled = viewer.fetch(Method::GET, &stream, &query, &[]).await;
        assert_eq!(polled.status, 400, "{query}: {}", polled.text());
        assert_eq!(polled.error_code(), "VALIDATION_ERROR", "{query}");
        assert!(
            !polled.json()["error"]["message"]
                .as_str()
                .unwrap()
                .is_empty(),
            "says why"
        );
    }

    let far = interval_of(now_ms()) + 10_000;
    let polled = viewer.poll(&stream, far).await;
    assert_eq!(polled.status, 400, "{}", polled.text());
    assert_eq!(polled.error_code(), "VALIDATION_ERROR");
    let server_time = polled.json()["error"]["details"]["serverTime"]
        .as_u64()
        .unwrap_or_else(|| panic!("details.serverTime: {}", polled.text()));
    assert!(server_time.abs_diff(now_ms()) < 60_000);

    let before_start = first - 100 * STEP;
    let polled = viewer.poll(&stream, before_start).await;
    assert_eq!(polled.status, 200, "{}", polled.text());
    assert_eq!(
        polled.text(),
        format!("{{\"interval\":{before_start},\"events\":[]}}"),
        "an empty interval before the stream's first"
    );
    assert!(
        polled
            .header("cache-control")
            .unwrap()
            .contains("immutable"),
        "{:?}",
        polled.headers
    );

    let unknown = uuid::Uuid::new_v4().to_string();
    let polled = viewer.poll(&unknown, first).await;
    assert_eq!(
        (polled.status, polled.error_code()),
        (404, "NOT_FOUND".into())
    );

    let anonymous = server
        .http1()
        .get(server.url(&format!("/api/v1/events-streams/{stream}?interval={first}")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let garbage = Viewer::with_token(&server, "x", "not.a.jwt".into());
    assert_eq!(garbage.poll(&stream, first).await.status, 401);
    let expired = Viewer::with_token(
        &server,
        "late",
        mint_jwt(&server, json!({ "sub": "late", "exp": unix_now() - 120 })),
    );
    let polled = expired.poll(&stream, first).await;
    assert_eq!(polled.status, 401, "{}", polled.text());
    assert_eq!(polled.json()["error"]["details"]["reason"], "TOKEN_EXPIRED");
    for (path, body) in [
        ("chats", json!({ "kind": "message", "text": "hi" })),
        ("hearts", json!({ "count": 1 })),
    ] {
        let (status, _) = expired
            .post(&format!("/api/v1/events-streams/{stream}/{path}"), body)
            .await;
        assert_eq!(status, 401, "{path} with an expired token");
    }

    // Another tenant: its own realm, key and stream.
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    let secret = "acme-realm-secret-of-at-least-32-bytes!";
    let put = admin
        .call(
            Method::PUT,
            &format!("/admin/v1/tenants/{acme}/realms/default"),
            Some(json!({ "keys": [{ "kid": null, "algorithm": "HS256", "material": secret }] })),
        )
        .await;
    assert_eq!(put.status(), 200);
    let (_, acme_key) = admin.create_key(&acme, &["publish"]).await;
    let acme_stream = Producer::with_key(&server, acme_key)
        .stream("Acme show")
        .await;
    let acme_token = tidings::auth::jwt::mint_hs256(
        secret,
        &json!({ "sub": "acme-viewer", "exp": unix_now() + 600 }),
        None,
    )
    .unwrap();
    let mut acme_viewer = Viewer::with_token(&server, "acme-viewer", acme_token);
    acme_viewer.tenant = Some(acme.clone());
    let now = interval_of(now_ms()) - STEP;
    assert_eq!(
        acme_viewer.poll(&acme_stream, now).await.status,
        200,
        "its own stream"
    );
    let across = acme_viewer.poll(&stream, now).await;
    assert!(
        [403, 404].contains(&across.status),
        "acme's viewer on the default tenant's stream: {} {}",
        across.status,
        across.text()
    );
    let across = viewer.poll(&acme_stream, now).await;
    assert!(
        [403, 404].contains(&across.status),
        "a default viewer on acme's stream: {} {}",
        across.status,
        across.text()
    );
    let (status, _) = viewer
        .post(
            &format!("/api/v1/events-streams/{acme_stream}/chats"),
            json!({ "kind": "message", "text": "hi acme" }),
        )
        .await;
    assert!([403, 404].contains(&status), "{status}");
}

#[tokio::test]
async fn a_closed_interval_is_immutable_with_etag_304_cache_control_and_across_restarts() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let producer = Producer::admin(&server);
    let private = producer.stream("Private").await;
    let public = producer
        .create_stream(json!({ "title": "Public", "public": true, "retentionSeconds": 3600 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let viewer = Viewer::new(&server, "cacher");
    let (chat, t) = viewer.message(&private, "kept forever").await;
    let (_, public_t) = viewer.message(&public, "public too").await;
    wait_closed(t.max(public_t)).await;

    let first = viewer.interval(&private, t).await;
    assert!(first.text().contains(chat["id"].as_str().unwrap()));
    let etag = first.header("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "a strong ETag: {etag}"
    );
    assert_eq!(
        first.header("cache-control").as_deref(),
        Some("private, max-age=86400, immutable")
    );
    let other = Viewer::new(&server, "someone-else");
    let again = other.interval(&private, t).await;
    assert_eq!(again.bytes, first.bytes, "the same bytes for everyone");
    assert_eq!(again.header("etag").as_deref(), Some(etag.as_str()));
    let revalidated = viewer
        .fetch(
            Method::GET,
            &private,
            &format!("?interval={t}"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(revalidated.status, 304);
    assert!(revalidated.bytes.is_empty());
    assert_eq!(revalidated.header("etag").as_deref(), Some(etag.as_str()));
    let stale = viewer
        .fetch(
            Method::GET,
            &private,
            &format!("?interval={t}"),
            &[("if-none-match", "\"other\"")],
        )
        .await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.bytes, first.bytes);

    let shared = viewer.interval(&public, public_t).await;
    assert_eq!(
        shared.header("cache-control").as_deref(),
        Some("public, max-age=3600, immutable")
    );
    let neighbours = viewer.intervals(&private, t - 2 * STEP, t + 2 * STEP).await;
    // Served intervals are persisted within an interval or so; then crash.
    tokio::time::sleep(Duration::from_millis(1000)).await;

    server.kill();
    let mut restarted = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&restarted);
    let after_crash = viewer.interval(&private, t).await;
    assert_eq!(
        after_crash.text(),
        first.text(),
        "identical bytes after SIGKILL"
    );
    assert_eq!(after_crash.header("etag").as_deref(), Some(etag.as_str()));
    for before in &neighbours {
        let t = before.json()["interval"].as_u64().unwrap();
        assert_eq!(
            viewer.interval(&private, t).await.text(),
            before.text(),
            "interval {t}"
        );
    }
    let public_again = viewer.interval(&public, public_t).await;
    assert_eq!(public_again.bytes, shared.bytes);
    assert_eq!(public_again.header("etag"), shared.header("etag"));
    let revalidated = viewer
        .fetch(
            Method::GET,
            &private,
            &format!("?interval={t}"),
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(
        revalidated.status, 304,
        "the ETag still matches after a restart"
    );

    assert!(restarted.stop().success());
    let third = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&third);
    let after_stop = viewer.interval(&private, t).await;
    assert_eq!(
        after_stop.text(),
        first.text(),
        "identical bytes after a clean restart"
    );
    assert_eq!(after_stop.header("etag").as_deref(), Some(etag.as_str()));
}

#[tokio::test]
async fn polls_of_the_current_and_a_near_future_interval_wait_for_the_close_and_get_identical_bytes()
 {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Waiting").await;
    let viewers: Vec<Viewer> = (0..6)
        .map(|n| Viewer::new(&server, &format!("waiter-{n}")))
        .collect();
    let current = interval_of(now_ms());
    let ahead = current + 1000;
    let polls = viewers.iter().enumerate().map(|(n, viewer)| {
        let t = if n % 2 == 0 { current } else { ahead };
        let stream = stream.clone();
        async move { (t, viewer.poll(&stream, t).await) }
    });
    let answered = join_all(polls).await;
    let mut by_interval: BTreeMap<u64, Vec<&Polled>> = BTreeMap::new();
    for (t, polled) in &answered {
        assert_eq!(polled.status, 200, "{t}: {}", polled.text());
        assert_well_formed(polled, *t);
        assert!(
            polled.received_ms >= t + STEP,
            "answered only once {t} closed, got it at {}",
            polled.received_ms
        );
        by_interval.entry(*t).or_default().push(polled);
    }
    let checker = Viewer::new(&server, "checker");
    for (t, waiters) in by_interval {
        assert_eq!(waiters.len(), 3);
        for waiter in &waiters {
            assert_eq!(
                waiter.bytes, waiters[0].bytes,
                "every waiter of {t} gets the same bytes"
            );
            assert_eq!(waiter.header("etag"), waiters[0].header("etag"));
        }
        let closed = checker.interval(&stream, t).await;
        assert_eq!(
            closed.bytes, waiters[0].bytes,
            "the waiters got the closed bytes of {t}"
        );
        assert_eq!(closed.header("etag"), waiters[0].header("etag"));
        assert_eq!(
            closed.header("cache-control"),
            waiters[0].header("cache-control"),
            "a waiter's answer is as cacheable as the closed interval"
        );
    }
}

#[tokio::test]
async fn a_chat_posted_while_others_wait_is_in_the_bytes_they_get() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Waiting for a chat").await;
    let waiters: Vec<Viewer> = (0..4)
        .map(|n| Viewer::new(&server, &format!("w-{n}")))
        .collect();
    let poster = Viewer::new(&server, "poster");
    // Aim at an interval a little ahead, so the chat is posted while it is open.
    let target = interval_of(now_ms()) + 2 * STEP;
    let waiting = join_all(waiters.iter().map(|viewer| viewer.poll(&stream, target)));
    let posting = async {
        let now = now_ms();
        if now < target + 20 {
            tokio::time::sleep(Duration::from_millis(target + 20 - now)).await;
        }
        poster.message(&stream, "while you wait").await
    };
    let (answered, (chat, t)) = tokio::join!(waiting, posting);
    let ids: Vec<bool> = answered
        .iter()
        .map(|polled| {
            assert_eq!(polled.status, 200);
            assert_eq!(polled.bytes, answered[0].bytes);
            polled.text().contains(chat["id"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        ids.iter().all(|found| *found),
        t == target,
        "the chat's interval ({t}) decides whether the waiters of {target} see it"
    );
}

#[tokio::test]
async fn view_count_counts_distinct_subjects_within_the_window_and_drops_after_it() {
    const WINDOW_MS: u64 = 5000;
    let server = Server::builder()
        .args(&["--live-viewer-window", "5s"])
        .start();
    let created = Producer::admin(&server)
        .create_stream(json!({ "title": "Counting" }))
        .await;
    let stream = created["id"].as_str().unwrap().to_string();
    let seen = created["firstInterval"].as_u64().unwrap();
    wait_closed(seen).await;
    let alice = Viewer::new(&server, "alice");
    let alice_again = Viewer::new(&server, "alice");
    let bob = Viewer::new(&server, "bob");
    let started = now_ms();
    for viewer in [&alice, &alice_again, &bob] {
        assert_eq!(viewer.poll(&stream, seen).await.status, 200);
    }
    let registered = now_ms();
    assert!(
        registered - started < WINDOW_MS - 1000,
        "the polls took {} ms",
        registered - started
    );
    let t = interval_of(registered);
    let counted = alice.interval(&stream, t).await;
    assert_eq!(
        counted.event("view-count"),
        Some(json!({ "value": 2, "formatted": "2" })),
        "alice (two tokens) and bob"
    );

    // Nobody polls for the window (plus margins); then read an interval that
    // closed well after it. Reading a closed interval cannot change it.
    let quiet = interval_of(now_ms() + WINDOW_MS + 1500);
    wait_closed(quiet).await;
    let dropped = bob.interval(&stream, quiet).await;
    assert_eq!(
        dropped.event("view-count"),
        Some(json!({ "value": 0, "formatted": "0" })),
        "nobody polled within the window before {quiet}"
    );
    let back = bob.interval(&stream, interval_of(now_ms())).await;
    assert_eq!(back.event("view-count").unwrap()["value"], 1, "bob is back");
}

#[tokio::test]
async fn a_thousand_viewers_show_as_1k() {
    let server = Server::builder()
        .args(&["--live-viewer-window", "120s"])
        .start();
    let created = Producer::admin(&server)
        .create_stream(json!({ "title": "Popular" }))
        .await;
    let stream = created["id"].as_str().unwrap().to_string();
    let seen = created["firstInterval"].as_u64().unwrap();
    wait_closed(seen).await;
    let viewers: Vec<Viewer> = (0..1000)
        .map(|n| Viewer::new(&server, &format!("crowd-{n}")))
        .collect();
    for chunk in viewers[..999].chunks(25) {
        for polled in join_all(chunk.iter().map(|viewer| viewer.poll(&stream, seen))).await {
            assert_eq!(polled.status, 200, "{}", polled.text());
        }
    }
    let t = interval_of(now_ms()) + STEP;
    let count = viewers[0].interval(&stream, t).await.event("view-count");
    assert_eq!(count, Some(json!({ "value": 999, "formatted": "999" })));
    assert_eq!(viewers[999].poll(&stream, seen).await.status, 200);
    let t = interval_of(now_ms()) + STEP;
    let count = viewers[0].interval(&stream, t).await.event("view-count");
    assert_eq!(count, Some(json!({ "value": 1000, "formatted": "1K" })));
}

#[tokio::test]
async fn a_quiz_open_across_a_sigkill_and_a_clean_restart_closes_on_time_with_every_answer() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let producer = Producer::admin(&server);
    let (stream, quiz) = producer.stream_with_quiz("Restarts", json!({ "question": "Which?", "choices": ["Coffee", "Tea", "Soda"], "answer": "Tea", "durationMs": 20000 })).await;
    let quiz_id = quiz["id"].as_str().unwrap().to_string();
    let close = quiz["closeInterval"].as_u64().unwrap();
    let (ann, ben, cat) = (
        Viewer::new(&server, "ann"),
        Viewer::new(&server, "ben"),
        Viewer::new(&server, "cat"),
    );
    assert_eq!(ann.answer(&stream, &quiz_id, "Tea").await.0, 201);
    assert_eq!(ben.answer(&stream, &quiz_id, "Coffee").await.0, 201);
    // Let a few intervals complete (answers are persisted once per interval).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();

    let mut second = Server::builder().data_dir(&dir).start();
    let (ann, cat) = (ann.on(&second), cat.on(&second));
    assert!(
        now_ms() < close,
        "the test needs the quiz still open after the restart"
    );
    assert_eq!(cat.snapshot(&stream).await["quiz"]["id"], quiz_id.as_str());
    let (status, body) = ann.answer(&stream, &quiz_id, "Soda").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (409, &json!("already-answered")),
        "ann's answer survived the crash: {body}"
    );
    assert_eq!(cat.answer(&stream, &quiz_id, "Soda").await.0, 201);
    assert!(second.stop().success());

    let third = Server::builder().data_dir(&dir).start();
    assert!(
        now_ms() < close,
        "the test needs the quiz still open after the restart"
    );
    // No traffic until the close has passed: the timer closes the quiz.
    wait_closed(close + 4 * STEP).await;
    let viewer = Viewer::new(&third, "late");
    let closing = viewer.interval(&stream, close).await;
    assert_eq!(
        closing
            .event("quiz-results")
            .map(|results| results["choices"].clone()),
        Some(json!({
            "Coffee": { "count": 1, "percentage": 33 },
            "Tea": { "count": 1, "percentage": 33 },
            "Soda": { "count": 1, "percentage": 33 },
        }))
    );
    assert_eq!(closing.event("quiz-winners"), Some(json!({ "count": 1 })));
    let (status, body) = viewer.answer(&stream, &quiz_id, "Tea").await;
    assert_eq!(
        (status, &body["error"]["details"]["reason"]),
        (409, &json!("quiz-closed"))
    );
}

#[tokio::test]
async fn a_chat_acknowledged_right_before_sigkill_is_in_its_interval_after_the_restart() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let stream = Producer::admin(&server).stream("Crash").await;
    let mut viewer = Viewer::new(&server, "survivor");
    for round in 0..3 {
        let (chat, t) = viewer
            .message(&stream, &format!("last words {round}"))
            .await;
        server.kill();
        server = Server::builder().data_dir(&dir).start();
        viewer = viewer.on(&server);
        let intervals = viewer.intervals(&stream, t - 2 * STEP, t + 2 * STEP).await;
        assert_eq!(
            chat_locations(&bodies(&intervals)).get(chat["id"].as_str().unwrap()),
            Some(&vec![(t, "messages")]),
            "round {round}: {chat} in exactly interval {t}"
        );
        let served = intervals[2].event("chats").unwrap()["messages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|served| served["id"] == chat["id"])
            .cloned();
        assert_eq!(served, Some(chat));
    }
}

#[tokio::test]
async fn fifty_concurrent_chats_each_appear_in_exactly_one_interval_the_one_acknowledged() {
    let server = Server::builder().args(MANY_CHATS).start();
    let stream = Producer::admin(&server).stream("Busy").await;
    let viewers: Vec<Viewer> = (0..50)
        .map(|n| Viewer::new(&server, &format!("chatter-{n}")))
        .collect();
    let posted = join_all(viewers.iter().enumerate().map(|(n, viewer)| {
        let stream = &stream;
        async move { viewer.message(stream, &format!("chat {n}")).await }
    }))
    .await;
    let idempotent = [("idempotency-key", "retry-me")];
    let body = json!({ "kind": "question", "text": "asked once?" });
    let path = format!("/api/v1/events-streams/{stream}/chats");
    let (status, once) = viewers[0].post_with(&path, body.clone(), &idempotent).await;
    assert_eq!(status, 201, "{once}");
    let (status, twice) = viewers[0].post_with(&path, body, &idempotent).await;
    assert_eq!(
        (status, &twice),
        (201, &once),
        "a retry gets the same answer"
    );

    let from = posted.iter().map(|(_, t)| *t).min().unwrap() - 2 * STEP;
    let to = posted
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap()
        .max(once["data"]["interval"].as_u64().unwrap())
        + 2 * STEP;
    let intervals = viewers[1].intervals(&stream, from, to).await;
    let locations = chat_locations(&bodies(&intervals));
    for (chat, t) in &posted {
        assert_eq!(
            locations.get(chat["id"].as_str().unwrap()),
            Some(&vec![(*t, "messages")]),
            "{chat} exactly once, in {t}"
        );
    }
    let question = once["data"]["chat"]["id"].as_str().unwrap();
    assert_eq!(
        locations.get(question),
        Some(&vec![(
            once["data"]["interval"].as_u64().unwrap(),
            "questions"
        )])
    );
    assert_eq!(locations.len(), 51, "nothing else");
}

#[tokio::test]
async fn head_options_and_cors_serve_pages_on_allowed_origins() {
    const PAGE: &str = "http://page.example:8000";
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Browsers").await;
    set_origins(&server, "default", &[PAGE]).await;
    let viewer = Viewer::new(&server, "browser");
    let t = interval_of(now_ms());
    let get = viewer.interval(&stream, t).await;

    let head = viewer
        .fetch(Method::HEAD, &stream, &format!("?interval={t}"), &[])
        .await;
    assert_eq!(head.status, 200);
    assert!(head.bytes.is_empty());
    for name in ["etag", "cache-control", "content-type", "allow"] {
        assert_eq!(head.header(name), get.header(name), "{name} of HEAD");
    }

    let path = format!("/api/v1/events-streams/{stream}?interval={t}");
    let preflight = |path: String, method: &'static str, headers: &'static str| {
        let request = server
            .http1()
            .request(Method::OPTIONS, server.url(&path))
            .header("origin", PAGE)
            .header("access-control-request-method", method)
            .header("access-control-request-headers", headers);
        async move { request.send().await.unwrap() }
    };
    let answered = preflight(path.clone(), "GET", "authorization").await;
    assert_eq!(answered.status(), 204);
    let header = |response: &reqwest::Response, name: &str| {
        response
            .headers()
            .get(name)
            .map(|value| value.to_str().unwrap().to_lowercase())
            .unwrap_or_default()
    };
    assert_eq!(header(&answered, "access-control-allow-origin"), PAGE);
    assert!(header(&answered, "access-control-allow-methods").contains("get"));
    assert!(header(&answered, "access-control-allow-headers").contains("authorization"));
    let chats = format!("/api/v1/events-streams/{stream}/chats");
    let answered = preflight(
        chats,
        "POST",
        "authorization, content-type, idempotency-key",
    )
    .await;
    assert_eq!(answered.status(), 204);
    let allowed = header(&answered, "access-control-allow-headers");
    for name in ["authorization", "content-type", "idempotency-key"] {
        assert!(allowed.contains(name), "{allowed}");
    }
    let refused = server
        .http1()
        .request(Method::OPTIONS, server.url(&path))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let from_page = viewer
        .fetch(
            Method::GET,
            &stream,
            &format!("?interval={t}"),
            &[("origin", PAGE)],
        )
        .await;
    assert_eq!(from_page.status, 200);
    assert_eq!(from_page.bytes, get.bytes);
    assert_eq!(
        from_page.header("access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    assert!(
        from_page
            .header_values("access-control-expose-headers")
            .contains("etag")
    );
    assert!(from_page.header_values("vary").contains("Accept"));
    let from_elsewhere = viewer
        .fetch(
            Method::GET,
            &stream,
            &format!("?interval={t}"),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(from_elsewhere.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn hearts_chats_and_answers_refuse_bad_input_with_the_error_envelope() {
    let server = Server::builder().args(&["--max-body", "64KiB"]).start();
    let producer = Producer::admin(&server);
    let stream = producer.stream("Refusals").await;
    let viewer = Viewer::new(&server, "tester");
    assert_eq!(
        viewer.hearts(&stream, json!(100)).await,
        (202, json!({ "data": { "accepted": 100 } }))
    );
    for count in [
        json!(101),
        json!(0),
        json!(-1),
        json!(1.5),
        json!("3"),
        Value::Null,
    ] {
        let (status, body) = viewer.hearts(&stream, count.clone()).await;
        assert_eq!(status, 400, "{count}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    }
    let chats = format!("/api/v1/events-streams/{stream}/chats");
    for bad in [
        json!({ "kind": "shout", "text": "hi" }),
        json!({ "kind": "message" }),
        json!({ "text": "no kind" }),
        json!({ "kind": "message", "text": 5 }),
        json!({ "kind": "purchase", "text": "bought", "amount": 5 }),
        json!({ "kind": "purchase", "text": "bought", "item": "hat" }),
        json!({ "kind": "purchase", "text": "bought", "item": "hat", "amount": "five" }),
        json!([1, 2]),
    ] {
        let (status, body) = viewer.post(&chats, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{bad}");
    }
    let malformed = server
        .http1()
        .post(server.url(&chats))
        .header("authorization", format!("Bearer {}", viewer.token))
        .header("content-type", "application/json")
        .body("{\"kind\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let (status, body) = viewer
        .post(
            &chats,
            json!({ "kind": "message", "text": "x".repeat(100 * 1024) }),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "PAYLOAD_TOO_LARGE");
    let unknown = uuid::Uuid::new_v4();
    let (status, _) = viewer
        .post(
            &format!("/api/v1/events-streams/{unknown}/chats"),
            json!({ "kind": "message", "text": "anyone?" }),
        )
        .await;
    assert_eq!(status, 404);
    // Still healthy and serving after all that.
    let (chat, t) = viewer.message(&stream, "still fine").await;
    assert!(
        viewer
            .interval(&stream, t)
            .await
            .text()
            .contains(chat["id"].as_str().unwrap())
    );
}

#[tokio::test]
async fn answering_a_quiz_that_does_not_exist_or_belongs_to_another_stream_is_404() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let stream = producer.stream("Quiz here").await;
    let other = producer.stream("Quiz elsewhere").await;
    let quiz = producer
        .open_quiz(
            &other,
            json!({ "question": "Elsewhere?", "choices": ["A", "B"], "answer": "A", "durationMs": 60000 }),
        )
        .await;
    let viewer = Viewer::new(&server, "wanderer");
    let mut answers = Vec::new();
    for (quiz_id, what) in [
        (
            uuid::Uuid::new_v4().to_string(),
            "a quiz that never existed",
        ),
        (
            quiz["id"].as_str().unwrap().to_string(),
            "another stream's open quiz",
        ),
    ] {
        let (status, body) = viewer.answer(&stream, &quiz_id, "A").await;
        answers.push((what, status, body["error"].clone()));
    }
    let codes: Vec<(&str, u16, &Value)> = answers
        .iter()
        .map(|(what, status, error)| (*what, *status, &error["code"]))
        .collect();
    assert_eq!(
        codes,
        [
            ("a quiz that never existed", 404, &json!("NOT_FOUND")),
            ("another stream's open quiz", 404, &json!("NOT_FOUND")),
        ],
        "{answers:?}"
    );
    let (status, body) = viewer
        .answer(&other, quiz["id"].as_str().unwrap(), "A")
        .await;
    assert_eq!(status, 201, "on its own stream: {body}");
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = producer
        .post(
            &format!("/api/v1/events-streams/{stream}/quizzes/{unknown}/close"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "closing a quiz that never existed: {body}"
    );
}

#[tokio::test]
async fn an_interval_older_than_the_retention_is_410_interval_expired() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let stream = producer
        .create_stream(json!({ "title": "Short memory", "retentionSeconds": 1 }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let viewer = Viewer::new(&server, "forgetful");
    let (chat, t) = viewer.message(&stream, "soon gone").await;
    let kept = viewer.interval(&stream, t).await;
    assert!(kept.text().contains(chat["id"].as_str().unwrap()));
    assert_eq!(
        kept.header("cache-control").as_deref(),
        Some("private, max-age=1, immutable")
    );
    wait_closed(t + 2000 / STEP * STEP).await;
    let expired = viewer.poll(&stream, t).await;
    assert_eq!(expired.status, 410, "{}", expired.text());
    assert_eq!(expired.error_code(), "INTERVAL_EXPIRED");
}

#[tokio::test]
async fn live_max_ahead_bounds_how_far_ahead_a_poll_may_wait() {
    let server = Server::builder()
        .args(&["--live-max-ahead", "500ms"])
        .start();
    let stream = Producer::admin(&server).stream("Near future").await;
    let viewer = Viewer::new(&server, "eager");
    let too_far = interval_of(now_ms()) + 1500;
    let refused = viewer.poll(&stream, too_far).await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert_eq!(refused.error_code(), "VALIDATION_ERROR");
    assert!(refused.json()["error"]["details"]["serverTime"].is_u64());
    let near = interval_of(now_ms()) + STEP;
    let waited = viewer.poll(&stream, near).await;
    assert_eq!(waited.status, 200, "{}", waited.text());
    assert!(waited.received_ms >= near + STEP);
}

#[tokio::test]
async fn a_plain_options_request_is_answered_with_the_allowed_methods() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Options").await;
    let t = interval_of(now_ms()) - 4 * STEP;
    let options = server
        .http1()
        .request(
            Method::OPTIONS,
            server.url(&format!("/api/v1/events-streams/{stream}?interval={t}")),
        )
        .send()
        .await
        .unwrap();
    let status = options.status().as_u16();
    let allow = options
        .headers()
        .get("allow")
        .map(|value| value.to_str().unwrap().to_string());
    let body = options.text().await.unwrap();
    assert!(
        (200..300).contains(&status) && allow.as_deref() == Some("GET, HEAD, OPTIONS"),
        "the spec's Allow lists OPTIONS, so OPTIONS is answered: {status} allow={allow:?} {body}"
    );
}

#[tokio::test]
async fn bytes_served_right_at_the_close_are_the_same_after_an_immediate_sigkill() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let stream = Producer::admin(&server).stream("Crash at the close").await;
    let viewers: Vec<Viewer> = (0..3)
        .map(|n| Viewer::new(&server, &format!("present-{n}")))
        .collect();
    let t = interval_of(now_ms()) + STEP;
    let (waited, _) = tokio::join!(
        join_all(viewers.iter().map(|viewer| viewer.poll(&stream, t))),
        async {
            assert_eq!(viewers[0].hearts(&stream, json!(5)).await.0, 202);
        }
    );
    assert_eq!(waited[0].status, 200, "{}", waited[0].text());
    server.kill();
    let restarted = Server::builder().data_dir(&dir).start();
    let again = viewers[0].on(&restarted).interval(&stream, t).await;
    assert_eq!(
        again.text(),
        waited[0].text(),
        "bytes served once are the interval's bytes forever"
    );
    assert_eq!(again.header("etag"), waited[0].header("etag"));
}

#[tokio::test]
async fn chats_and_hearts_posted_across_many_closes_are_each_counted_once_while_waiters_poll() {
    const POSTERS: usize = 6;
    const RUN: Duration = Duration::from_millis(3000);
    let server = Server::builder().args(MANY_CHATS).start();
    let stream = Producer::admin(&server).stream("Sustained").await;
    let posters: Vec<Viewer> = (0..POSTERS)
        .map(|n| Viewer::new(&server, &format!("poster-{n}")))
        .collect();
    let waiter = Viewer::new(&server, "waiter");
    let start = interval_of(now_ms());
    let deadline = tokio::time::Instant::now() + RUN;
    let posting = join_all(posters.iter().enumerate().map(|(n, poster)| {
        let stream = &stream;
        async move {
            let (mut chats, mut hearts) = (Vec::new(), 0u64);
            let mut round = 0u64;
            while tokio::time::Instant::now() < deadline {
                if round.is_multiple_of(2) {
                    chats.push(poster.message(stream, &format!("{n}-{round}")).await);
                } else {
                    let count = 1 + (round + n as u64) % 7;
                    let (status, body) = poster.hearts(stream, json!(count)).await;
                    assert_eq!((status, &body["data"]["accepted"]), (202, &json!(count)));
                    hearts += count;
                }
                round += 1;
            }
            (chats, hearts)
        }
    }));
    // Meanwhile a viewer waits on every interval as it closes.
    let polling = async {
        let mut served = Vec::new();
        let mut t = start;
        while tokio::time::Instant::now() < deadline {
            served.push(waiter.interval(&stream, t).await);
            t += STEP;
        }
        served
    };
    let (posted, served) = tokio::join!(posting, polling);
    let chats: Vec<(Value, u64)> = posted.iter().flat_map(|(chats, _)| chats.clone()).collect();
    let hearts: u64 = posted.iter().map(|(_, hearts)| hearts).sum();
    assert!(chats.len() >= 10, "only {} chats posted", chats.len());
    let end = chats
        .iter()
        .map(|(_, t)| *t)
        .max()
        .unwrap()
        .max(interval_of(now_ms()))
        + 2 * STEP;
    let intervals = waiter.intervals(&stream, start, end).await;
    for polled in &served {
        let t = polled.json()["interval"].as_u64().unwrap();
        let later = &intervals[((t - start) / STEP) as usize];
        assert_eq!(
            later.text(),
            polled.text(),
            "{t} served while waiting = later"
        );
    }
    let locations = chat_locations(&bodies(&intervals));
    for (chat, t) in &chats {
        assert_eq!(
            locations.get(chat["id"].as_str().unwrap()),
            Some(&vec![(*t, "messages")]),
            "{chat} once, in {t}"
        );
    }
    assert_eq!(locations.len(), chats.len());
    assert_eq!(
        chats_total(&bodies(&intervals), "hearts"),
        hearts,
        "every accepted heart counted once"
    );
}

#[tokio::test]
async fn every_answer_accepted_up_to_the_close_is_in_the_results_and_none_after() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let (stream, quiz) = producer.stream_with_quiz("Photo finish", json!({ "question": "Fast?", "choices": ["Yes", "No"], "answer": "Yes", "durationMs": 1000 })).await;
    let quiz_id = quiz["id"].as_str().unwrap().to_string();
    let close = quiz["closeInterval"].as_u64().unwrap();
    let viewers: Vec<Viewer> = (0..40)
        .map(|n| Viewer::new(&server, &format!("racer-{n}")))
        .collect();
    // Answers spread from 400 ms before the close to 400 ms after it.
    let answers = join_all(viewers.iter().enumerate().map(|(n, viewer)| {
        let (stream, quiz_id) = (&stream, &quiz_id);
        async move {
            let at = close - 400 + n as u64 * 20;
            let now = now_ms();
            if at > now {
                tokio::time::sleep(Duration::from_millis(at - now)).await;
            }
            let choice = if n.is_multiple_of(3) { "No" } else { "Yes" };
            let (status, body) = viewer.answer(stream, quiz_id, choice).await;
            (choice, status, body)
        }
    }))
    .await;
    let mut accepted: BTreeMap<&str, u64> = BTreeMap::from([("Yes", 0), ("No", 0)]);
    for (choice, status, body) in &answers {
        match status {
            201 => *accepted.get_mut(choice).unwrap() += 1,
            409 => assert_eq!(body["error"]["details"]["reason"], "quiz-closed", "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    let results = Viewer::new(&server, "judge")
        .interval(&stream, close)
        .await
        .event("quiz-results")
        .expect("results in the close interval");
    assert_eq!(
        (
            &results["choices"]["Yes"]["count"],
            &results["choices"]["No"]["count"]
        ),
        (&json!(accepted["Yes"]), &json!(accepted["No"])),
        "exactly the acknowledged answers: {answers:?}"
    );
}

#[tokio::test]
async fn of_concurrent_answers_by_one_subject_exactly_one_counts() {
    let server = Server::start();
    let producer = Producer::admin(&server);
    let (stream, quiz) = producer.stream_with_quiz("Double tap", json!({ "question": "Once?", "choices": ["A", "B"], "answer": "A", "durationMs": 60000 })).await;
    let quiz_id = quiz["id"].as_str().unwrap();
    let tokens: Vec<Viewer> = (0..20)
        .map(|_| Viewer::new(&server, "same-subject"))
        .collect();
    let answers = join_all(tokens.iter().enumerate().map(|(n, viewer)| {
        viewer.answer(
            &stream,
            quiz_id,
            if n.is_multiple_of(2) { "A" } else { "B" },
        )
    }))
    .await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let reasons: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 409)
        .map(|(_, body)| &body["error"]["details"]["reason"])
        .collect();
    assert!(
        reasons.iter().all(|reason| *reason == "already-answered"),
        "{reasons:?}"
    );
    let before_close = interval_of(now_ms());
    let (status, body) = producer
        .post(
            &format!("/api/v1/events-streams/{stream}/quizzes/{quiz_id}/close"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let after_close = interval_of(now_ms()) + 2 * STEP;
    let results = tokens[0]
        .intervals(&stream, before_close, after_close)
        .await
        .iter()
        .find_map(|polled| polled.event("quiz-results"))
        .expect("results after the close");
    let total = results["choices"]["A"]["count"].as_u64().unwrap()
        + results["choices"]["B"]["count"].as_u64().unwrap();
    assert_eq!(total, 1, "{results}");
}

#[tokio::test]
async fn intervals_that_closed_while_the_server_was_down_are_served_and_never_change() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let stream = Producer::admin(&server).stream("Downtime").await;
    let viewer = Viewer::new(&server, "patient");
    let (_, last_before) = viewer.message(&stream, "before the crash").await;
    server.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let down_until = now_ms();
    let mut second = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&second);
    let during: Vec<u64> = (last_before + STEP..interval_of(down_until))
        .step_by(STEP as usize)
        .collect();
    assert!(during.len() >= 3);
    let mut first_reads = Vec::new();
    for t in &during {
        let polled = viewer.interval(&stream, *t).await;
        assert_eq!(
            viewer.interval(&stream, *t).await.bytes,
            polled.bytes,
            "{t} twice"
        );
        first_reads.push(polled);
    }
    assert!(second.stop().success());
    let third = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&third);
    for (t, before) in during.iter().zip(&first_reads) {
        let again = viewer.interval(&stream, *t).await;
        assert_eq!(again.text(), before.text(), "{t} after another restart");
        assert_eq!(again.header("etag"), before.header("etag"));
    }
}

/// The contract's purchase carries `"currency"`; a request without one is
/// either refused or given the default (EUR), never served without it.
#[tokio::test]
async fn a_purchase_is_never_served_without_its_currency() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Shop").await;
    let buyer = Viewer::new(&server, "buyer");
    let (status, body) = buyer
        .post(
            &format!("/api/v1/events-streams/{stream}/chats"),
            json!({ "kind": "purchase", "text": "bought", "item": "Hat", "amount": 12 }),
        )
        .await;
    match status {
        400 => assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{body}"),
        201 => {
            let chat = &body["data"]["chat"];
            assert_eq!(chat["currency"], "EUR", "the default currency: {chat}");
            let t = body["data"]["interval"].as_u64().unwrap();
            let served = buyer.interval(&stream, t).await;
            assert_eq!(served.event("chats").unwrap()["purchases"][0], *chat);
        }
        other => panic!("{other}: {body}"),
    }
}

#[tokio::test]
async fn an_ended_stream_keeps_its_intervals_up_to_the_end_and_refuses_later_ones_across_a_restart()
{
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let producer = Producer::admin(&server);
    let stream = producer.stream("Finale").await;
    let viewer = Viewer::new(&server, "stayer");
    let (chat, t) = viewer.message(&stream, "last chat").await;
    let acme = Admin::new(&server).create_tenant("acme").await;
    let (_, acme_key) = Admin::new(&server).create_key(&acme, &["publish"]).await;
    let (status, _) = Producer::with_key(&server, acme_key)
        .post(&format!("/api/v1/events-streams/{stream}/end"), json!({}))
        .await;
    assert!(
        [403, 404].contains(&status),
        "another tenant's key does not end it: {status}"
    );
    let (status, ended) = producer
        .post(&format!("/api/v1/events-streams/{stream}/end"), json!({}))
        .await;
    assert_eq!(status, 200, "{ended}");
    let ended_at = ended["data"]["endedAt"].as_u64().unwrap();
    let last = interval_of(ended_at);
    let kept = viewer.intervals(&stream, t, last).await;
    assert!(kept[0].text().contains(chat["id"].as_str().unwrap()));
    let after = last + 2 * STEP;
    wait_closed(after).await;
    let refused = viewer.poll(&stream, after).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (410, "STREAM_ENDED".into())
    );
    let (status, body) = viewer
        .post(
            &format!("/api/v1/events-streams/{stream}/hearts"),
            json!({ "count": 1 }),
        )
        .await;
    assert!(status >= 400, "no hearts after the end: {status} {body}");

    assert!(server.stop().success());
    let again = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&again);
    for before in &kept {
        let t = before.json()["interval"].as_u64().unwrap();
        assert_eq!(
            viewer.interval(&stream, t).await.text(),
            before.text(),
            "{t}"
        );
    }
    let refused = viewer.poll(&stream, after).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (410, "STREAM_ENDED".into())
    );
    assert_eq!(viewer.snapshot(&stream).await["stream"]["status"], "ended");
}

#[tokio::test]
async fn chat_limits_per_viewer_and_per_stream_interval_hold_and_answer_429() {
    let server = Server::builder()
        .args(&[
            "--live-max-chats-per-viewer-interval",
            "1",
            "--live-max-chats-per-interval",
            "3",
        ])
        .start();
    let stream = Producer::admin(&server).stream("Limited").await;
    let path = format!("/api/v1/events-streams/{stream}/chats");
    let eager = Viewer::new(&server, "eager");
    let crowd: Vec<Viewer> = (0..6)
        .map(|n| Viewer::new(&server, &format!("crowd-{n}")))
        .collect();
    let from = interval_of(now_ms());
    let body = |n: usize| json!({ "kind": "message", "text": format!("m{n}") });
    let (own, others) = tokio::join!(
        join_all((0..6).map(|n| eager.post(&path, body(n)))),
        join_all(
            crowd
                .iter()
                .enumerate()
                .map(|(n, viewer)| viewer.post(&path, body(n)))
        )
    );
    let mut acknowledged: Vec<(String, u64)> = Vec::new();
    for (n, (status, answer)) in own.iter().chain(&others).enumerate() {
        match status {
            201 => {
                let data = &answer["data"];
                let user = data["chat"]["userId"].as_str().unwrap().to_string();
                acknowledged.push((user, data["interval"].as_u64().unwrap()));
            }
            429 => assert_eq!(answer["error"]["code"], "RATE_LIMITED", "{n}: {answer}"),
            other => panic!("{n}: {other} {answer}"),
        }
    }
    let mut per_viewer: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut per_interval: BTreeMap<u64, u32> = BTreeMap::new();
    for (user, t) in &acknowledged {
        *per_viewer.entry((user.clone(), *t)).or_default() += 1;
        *per_interval.entry(*t).or_default() += 1;
    }
    assert!(per_viewer.values().all(|n| *n == 1), "{per_viewer:?}");
    assert!(per_interval.values().all(|n| *n <= 3), "{per_interval:?}");
    let to = per_interval.keys().max().copied().unwrap_or(from) + STEP;
    let intervals = eager.intervals(&stream, from, to).await;
    let served: usize = chat_locations(&bodies(&intervals)).len();
    assert_eq!(
        served,
        acknowledged.len(),
        "every acknowledged chat, nothing refused"
    );
}

#[tokio::test]
async fn if_none_match_lists_and_weak_forms_revalidate_a_closed_interval() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Revalidate").await;
    let viewer = Viewer::new(&server, "cdn");
    let t = interval_of(now_ms());
    let first = viewer.interval(&stream, t).await;
    let etag = first.header("etag").unwrap();
    let query = format!("?interval={t}");
    for condition in [
        etag.clone(),
        format!("\"nope\", {etag}"),
        format!("W/{etag}"),
        "*".to_string(),
    ] {
        let polled = viewer
            .fetch(
                Method::GET,
                &stream,
                &query,
                &[("if-none-match", &condition)],
            )
            .await;
        assert_eq!(polled.status, 304, "If-None-Match: {condition}");
        assert_eq!(polled.header("etag").as_deref(), Some(etag.as_str()));
    }
    let head = viewer
        .fetch(Method::HEAD, &stream, &query, &[("if-none-match", &etag)])
        .await;
    assert_eq!(head.status, 304, "HEAD revalidates too");
}

#[tokio::test]
async fn an_idempotent_chat_retried_after_a_sigkill_is_the_same_chat_once() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let stream = Producer::admin(&server).stream("Retry after crash").await;
    let viewer = Viewer::new(&server, "retrier");
    let path = format!("/api/v1/events-streams/{stream}/chats");
    let body = json!({ "kind": "cheer", "text": "once only" });
    let key = [("idempotency-key", "cheer-1")];
    let (status, first) = viewer.post_with(&path, body.clone(), &key).await;
    assert_eq!(status, 201, "{first}");
    server.kill();
    let restarted = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&restarted);
    let (status, retried) = viewer.post_with(&path, body, &key).await;
    assert_eq!((status, &retried), (201, &first), "the first answer again");
    let t = first["data"]["interval"].as_u64().unwrap();
    let intervals = viewer.intervals(&stream, t - 2 * STEP, t + 2 * STEP).await;
    let locations = chat_locations(&bodies(&intervals));
    assert_eq!(locations.len(), 1, "{locations:?}");
    assert_eq!(
        locations.get(first["data"]["chat"]["id"].as_str().unwrap()),
        Some(&vec![(t, "cheers")])
    );
}

#[tokio::test]
async fn a_quiz_opened_and_a_stream_ended_right_before_sigkill_are_kept() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let producer = Producer::admin(&server);
    let (stream, quiz) = producer.stream_with_quiz("Opened then crashed", json!({ "question": "Kept?", "choices": ["Yes", "No"], "answer": "Yes", "durationMs": 60000 })).await;
    server.kill();
    let mut second = Server::builder().data_dir(&dir).start();
    let viewer = Viewer::new(&second, "witness");
    let created = quiz["created"].as_u64().unwrap();
    let opened = viewer.interval(&stream, created).await;
    let shown = opened
        .event("quiz")
        .expect("the quiz in the interval it opened in");
    assert_eq!(shown["id"], quiz["id"]);
    assert_eq!(viewer.snapshot(&stream).await["quiz"]["id"], quiz["id"]);

    let producer = Producer::admin(&second);
    let (status, ended) = producer
        .post(&format!("/api/v1/events-streams/{stream}/end"), json!({}))
        .await;
    assert_eq!(status, 200, "{ended}");
    second.kill();
    let third = Server::builder().data_dir(&dir).start();
    let viewer = viewer.on(&third);
    let snapshot = viewer.snapshot(&stream).await;
    assert_eq!(snapshot["stream"]["status"], "ended", "{snapshot}");
    assert_eq!(snapshot["stream"]["endedAt"], ended["data"]["endedAt"]);
    let after = interval_of(ended["data"]["endedAt"].as_u64().unwrap()) + 2 * STEP;
    wait_closed(after).await;
    let refused = viewer.poll(&stream, after).await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (410, "STREAM_ENDED".into())
    );
}

#[tokio::test]
async fn a_quiz_due_while_the_server_was_down_closes_after_the_restart_and_says_where() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = Server::builder().data_dir(&dir).start();
    let producer = Producer::admin(&server);
    // Open long enough that a loaded machine still kills the server before
    // the close (the answer and its interval take well under a second).
    let (stream, quiz) = producer.stream_with_quiz("Closed in absentia", json!({ "question": "Down?", "choices": ["Yes", "No"], "answer": "No", "durationMs": 4000 })).await;
    let quiz_id = quiz["id"].as_str().unwrap().to_string();
    let voter = Viewer::new(&server, "voter");
    let (status, body) = voter.answer(&stream, &quiz_id, "No").await;
    assert_eq!(status, 201, "{body}");
    // Let the answer's interval complete, then crash and stay down past the close.
    tokio::time::sleep(Duration::from_millis(750)).await;
    let planned = quiz["closeInterval"].as_u64().unwrap();
    assert!(
        interval_of(now_ms()) < planned,
        "the quiz must still be open when the server is killed"
    );
    server.kill();
    wait_closed(planned + 4 * STEP).await;
    let restarted_at = interval_of(now_ms());
    let second = Server::builder().data_dir(&dir).start();
    let voter = voter.on(&second);
    let (status, body) = voter.answer(&stream, &quiz_id, "Yes").await;
    assert_eq!(status, 409, "{body}");
    let intervals = voter
        .intervals(&stream, planned, interval_of(now_ms()) + 2 * STEP)
        .await;
    let with_results: Vec<&Polled> = intervals
        .iter()
        .filter(|polled| polled.event("quiz-results").is_some())
        .collect();
    assert_eq!(with_results.len(), 1, "results exactly once");
    let results = with_results[0].event("quiz-results").unwrap();
    let shown_in = with_results[0].json()["interval"].as_u64().unwrap();
    assert_eq!(
        results["closeInterval"], shown_in,
        "closeInterval says where"
    );
    assert!(shown_in >= restarted_at, "after the restart: {shown_in}");
    assert_eq!(
        results["choices"],
        json!({ "Yes": { "count": 0, "percentage": 0 }, "No": { "count": 1, "percentage": 100 } })
    );
    assert_eq!(
        with_results[0].event("quiz-winners"),
        Some(json!({ "count": 1 }))
    );
    assert_eq!(voter.snapshot(&stream).await["quiz"], Value::Null);
}

#[tokio::test]
async fn the_view_count_saturates_at_live_max_viewers() {
    let server = Server::builder()
        .args(&["--live-max-viewers", "3", "--live-viewer-window", "60s"])
        .start();
    let created = Producer::admin(&server)
        .create_stream(json!({ "title": "Packed" }))
        .await;
    let stream = created["id"].as_str().unwrap().to_string();
    let seen = created["firstInterval"].as_u64().unwrap();
    let viewers: Vec<Viewer> = (0..5)
        .map(|n| Viewer::new(&server, &format!("fan-{n}")))
        .collect();
    for viewer in &viewers {
        assert_eq!(
            viewer.poll(&stream, seen).await.status,
            200,
            "every viewer is served"
        );
    }
    let t = interval_of(now_ms()) + STEP;
    let count = viewers[4].interval(&stream, t).await.event("view-count");
    assert_eq!(count, Some(json!({ "value": 3, "formatted": "3" })));
}

#[tokio::test]
async fn a_chat_without_a_display_name_takes_the_token_name_or_the_subject() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Names").await;
    let named = Viewer::with_token(
        &server,
        "u-ada",
        mint_jwt(
            &server,
            json!({ "sub": "u-ada", "name": "Ada", "exp": unix_now() + 600 }),
        ),
    );
    let anonymous = Viewer::new(&server, "u-anon");
    let text = json!({ "kind": "message", "text": "hi" });
    let (chat, _) = named.chat(&stream, text.clone()).await;
    assert_eq!(
        (&chat["userId"], &chat["displayName"]),
        (&json!("u-ada"), &json!("Ada"))
    );
    let (chat, _) = anonymous.chat(&stream, text).await;
    assert_eq!(
        (&chat["userId"], &chat["displayName"]),
        (&json!("u-anon"), &json!("u-anon"))
    );
}

#[tokio::test]
async fn intervals_read_back_from_the_store_are_the_bytes_served_from_memory() {
    let server = Server::builder()
        .args(&["--live-interval-cache", "2"])
        .start();
    let stream = Producer::admin(&server).stream("Evicted").await;
    let viewer = Viewer::new(&server, "reader");
    let from = interval_of(now_ms());
    let mut fresh = Vec::new();
    for n in 0..10u64 {
        let t = from + n * STEP;
        if n % 3 == 1 {
            viewer.message(&stream, &format!("chat {n}")).await;
        }
        fresh.push(viewer.interval(&stream, t).await);
    }
    for polled in &fresh {
        let t = polled.json()["interval"].as_u64().unwrap();
        let again = viewer.interval(&stream, t).await;
        assert_eq!(again.text(), polled.text(), "{t} from the store");
        assert_eq!(again.header("etag"), polled.header("etag"));
        assert_eq!(
            again.header("cache-control"),
            polled.header("cache-control")
        );
    }
    let mut etags: Vec<String> = fresh.iter().map(|p| p.header("etag").unwrap()).collect();
    etags.sort_unstable();
    etags.dedup();
    assert_eq!(etags.len(), fresh.len(), "each interval has its own ETag");
}

#[tokio::test]
async fn polls_over_http2_wait_and_share_the_bytes_of_http1_polls() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Two protocols").await;
    let token = mint_jwt(
        &server,
        json!({ "sub": "h2-viewer", "exp": unix_now() + 600 }),
    );
    let h2 = server.h2();
    let t = interval_of(now_ms()) + STEP;
    let url = server.url(&format!("/api/v1/events-streams/{stream}?interval={t}"));
    let polls = (0..4).map(|_| {
        h2.get(&url)
            .header("authorization", format!("Bearer {token}"))
            .send()
    });
    let answers = join_all(polls).await;
    let mut bodies_h2 = Vec::new();
    for answer in answers {
        let response = answer.unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        bodies_h2.push(response.bytes().await.unwrap());
    }
    assert!(bodies_h2.iter().all(|body| *body == bodies_h2[0]));
    let h1 = Viewer::new(&server, "h1-viewer").interval(&stream, t).await;
    assert_eq!(h1.bytes, bodies_h2[0].to_vec());
}

#[tokio::test]
async fn a_viewer_whose_token_expires_is_refused_from_then_on_cached_or_not() {
    let server = Server::start();
    let stream = Producer::admin(&server).stream("Short tokens").await;
    let secret = "tight-realm-secret-of-at-least-32-bytes";
    let put = Admin::new(&server)
        .call(
            Method::PUT,
            "/admin/v1/tenants/default/realms/tight",
            Some(json!({ "keys": [{ "kid": null, "algorithm": "HS256", "material": secret }], "leewaySeconds": 0 })),
        )
        .await;
    assert_eq!(put.status(), 200);
    let exp = unix_now() + 2;
    let token =
        tidings::auth::jwt::mint_hs256(secret, &json!({ "sub": "brief", "exp": exp }), None)
            .unwrap();
    let poll = |t: u64| {
        server
            .http1()
            .get(server.url(&format!("/api/v1/events-streams/{stream}?interval={t}")))
            .header("authorization", format!("Bearer {token}"))
            .header("realmname", "tight")
            .send()
    };
    let t = interval_of(now_ms()) - STEP;
    for _ in 0..3 {
        assert_eq!(
            poll(t).await.unwrap().status(),
            200,
            "valid, then from the cache"
        );
    }
    let after = exp * 1000 + 1000;
    tokio::time::sleep(Duration::from_millis(after.saturating_sub(now_ms()))).await;
    let refused = poll(t).await.unwrap();
    assert_eq!(refused.status(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(
        body["error"]["details"]["reason"], "TOKEN_EXPIRED",
        "{body}"
    );
}
