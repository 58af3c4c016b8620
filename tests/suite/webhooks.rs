//! Webhooks against the real binary and a local receiver written here:
//! signatures, order per endpoint, retries after errors and timeouts,
//! filters, crash and shutdown survival, failed deliveries and re-delivery,
//! disabling, admin validation and tenant isolation.

use crate::chat_api::Chat;
use crate::clients::{admin_key, discussion_post, publish_raw};
use crate::harness::Server;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a test waits for something to happen.
const PATIENCE: Duration = Duration::from_secs(20);

/// Fast timings so retries, give-ups and disables happen within a test.
/// Fast retries; the receivers of these tests listen on 127.0.0.1, which the
/// operator must allow explicitly.
pub const FAST: &[&str] = &[
    "--webhook-allow-private",
    "127.0.0.1/32",
    "--webhook-timeout",
    "400ms",
    "--webhook-backoff-base",
    "20ms",
    "--webhook-backoff-cap",
    "100ms",
];

/// How the receiver answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 204.
    Accept,
    /// 500 with a short body.
    Fail,
    /// No answer for a long time (the server's timeout fires first).
    Stall,
}

/// One request the receiver got, and how it answered.
#[derive(Debug, Clone)]
pub struct Received {
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
    answer: Answer,
}

impl Received {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|value| value.to_str().unwrap().to_string())
            .unwrap_or_default()
    }

    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<Answer>,
    default: Option<Answer>,
    fail_every: Option<usize>,
    received: Vec<Received>,
}

/// A local HTTP/1.1 server recording every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// A receiver on `https://127.0.0.1:PORT/hook` with a certificate signed
    /// by a fresh private CA; returns it and the CA certificate (PEM).
    async fn start_tls() -> (Self, String) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls_pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (Self::start_with(Some(acceptor)).await, ca.pem())
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/hook", listener.local_addr().unwrap());
        let receiver = Self {
            url,
            state: Arc::default(),
        };
        tokio::spawn(receiver.clone().serve(listener, tls));
        receiver
    }

    async fn serve(self, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        while let Ok((stream, _)) = listener.accept().await {
            let (receiver, tls) = (self.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => receiver.serve_connection(stream).await,
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            receiver.serve_connection(stream).await;
                        }
                    }
                }
            });
        }
    }

    async fn serve_connection<S>(self, stream: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = service_fn(move |request| self.clone().handle(request));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    async fn handle(
        self,
        request: http::Request<Incoming>,
    ) -> Result<http::Response<Full<Bytes>>, Infallible> {
        let (head, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let answer = {
            let mut state = self.state.lock().unwrap();
            let count = state.received.len() + 1;
            let answer = state
                .script
                .pop_front()
                .unwrap_or_else(|| match state.fail_every {
                    Some(n) if count.is_multiple_of(n) => Answer::Fail,
                    _ => state.default.unwrap_or(Answer::Accept),
                });
            state.received.push(Received {
                path: head.uri.path().to_string(),
                headers: head.headers,
                body,
                answer,
            });
            answer
        };
        let (status, text) = match answer {
            Answer::Accept => (204, ""),
            Answer::Fail => (500, "receiver says no"),
            Answer::Stall => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                (204, "")
            }
        };
        let mut response = http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(response)
    }

    /// Answers the next requests as scripted, then with the default.
    fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    fn set_default(&self, answer: Answer) {
        self.state.lock().unwrap().default = Some(answer);
    }

    fn fail_every(&self, n: usize) {
        self.state.lock().unwrap().fail_every = Some(n);
    }

    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.answer == Answer::Accept)
            .collect()
    }

    /// Waits for at least `count` accepted deliveries; returns them all.
    async fn wait_delivered(&self, count: usize) -> Vec<Received> {
        until(&format!("{count} deliveries at {}", self.url), || async {
            let delivered = self.delivered();
            (delivered.len() >= count).then_some(delivered)
        })
        .await
    }
}

/// Polls `check` until it yields a value, or fails the test after [`PATIENCE`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn server(extra: &[&str]) -> Server {
    Server::builder().args(FAST).args(extra).start()
}

/// An admin API call with `key`; returns the status and the JSON body.
async fn call(
    server: &Server,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server
        .http1()
        .request(method, server.url(path))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An admin call with the instance admin key.
async fn admin(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call(server, &admin_key(server), method, path, body).await
}

const HOOKS: &str = "/admin/v1/tenants/default/webhooks";

/// Creates an endpoint of the default tenant; returns its id and secret.
pub async fn create_endpoint(server: &Server, body: Value) -> (String, String) {
    let (status, created) = admin(server, Method::POST, HOOKS, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let data = &created["data"];
    (
        data["id"].as_str().unwrap().to_string(),
        data["secret"].as_str().unwrap().to_string(),
    )
}

/// Publishes one event to `topic` with the admin key; returns the stored JSON bytes.
async fn publish(server: &Server, topic: &str, event_type: &str, data: Value) -> Bytes {
    let body = json!({ "type": event_type, "data": data });
    let response = publish_raw(server, &server.http1(), topic, &body).await;
    assert_eq!(response.status(), 201);
    let raw = response.bytes().await.unwrap();
    // `{"data":<stored event JSON>}`
    raw.slice(b"{\"data\":".len()..raw.len() - 1)
}

fn event_id(stored: &[u8]) -> String {
    serde_json::from_slice::<Value>(stored).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Checks `Tidings-Signature` the way the README tells receivers to.
fn verify_signature(received: &Received, secret: &str) {
    let header = received.header("tidings-signature");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("malformed signature header {header:?}"));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&received.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "signature of {header}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t: u64 = t.parse().unwrap();
    assert!(now.abs_diff(t) < 60, "timestamp {t} far from now {now}");
}

async fn deliveries(server: &Server, endpoint: &str, query: &str) -> Value {
    let (status, body) = admin(
        server,
        Method::GET,
        &format!("{HOOKS}/{endpoint}/deliveries{query}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

async fn endpoint_record(server: &Server, endpoint: &str) -> Value {
    let (status, body) = admin(server, Method::GET, &format!("{HOOKS}/{endpoint}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_posts_of_the_stored_event() {
    let server = server(&[]);
    let receiver = Receiver::start().await;
    let (_, generated) = create_endpoint(&server, json!({ "url": receiver.url })).await;
    assert!(generated.starts_with("whsec_"), "{generated}");
    let chosen = "my-own-secret-0123456789";
    let other = Receiver::start().await;
    create_endpoint(&server, json!({ "url": other.url, "secret": chosen })).await;

    let stored = publish(&server, "orders/1", "order.created", json!({ "total": 42 })).await;
    let got = &receiver.wait_delivered(1).await[0];
    assert_eq!(got.path, "/hook");
    assert_eq!(
        got.body, stored,
        "the body is the stored event JSON, byte for byte"
    );
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("tidings-event-type"), "order.created");
    assert_eq!(got.header("tidings-event-id"), event_id(&stored));
    assert_eq!(got.header("tidings-delivery-id").len(), 26);
    verify_signature(got, &generated);

    let theirs = &other.wait_delivered(1).await[0];
    verify_signature(theirs, chosen);
    assert_ne!(
        theirs.header("tidings-delivery-id"),
        got.header("tidings-delivery-id"),
        "one delivery per endpoint"
    );
    assert_eq!(theirs.header("tidings-event-id"), event_id(&stored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_are_verified_against_the_extra_ca_file() {
    let (receiver, ca_pem) = Receiver::start_tls().await;
    let temp = tempfile::tempdir().unwrap();
    let ca_file = temp.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let untrusting = server(&[]);
    let (endpoint, _) = create_endpoint(&untrusting, json!({ "url": receiver.url })).await;
    publish(&untrusting, "tls", "t", json!(1)).await;
    let record = until("a refused certificate", || async {
        let record = endpoint_record(&untrusting, &endpoint).await;
        record["lastError"].is_string().then_some(record)
    })
    .await;
    assert!(
        record["lastError"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{record}"
    );
    assert!(receiver.received().is_empty());

    let trusting = server(&["--webhook-ca-file", ca_file.to_str().unwrap()]);
    let (_, secret) = create_endpoint(&trusting, json!({ "url": receiver.url })).await;
    let stored = publish(&trusting, "tls", "t", json!(2)).await;
    let got = &receiver.wait_delivered(1).await[0];
    assert_eq!(got.body, stored);
    verify_signature(got, &secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_endpoint_gets_every_event_in_order_even_with_retries() {
    let server = server(&[]);
    let steady = Receiver::start().await;
    let flaky = Receiver::start().await;
    flaky.fail_every(4);
    create_endpoint(&server, json!({ "url": steady.url })).await;
    create_endpoint(&server, json!({ "url": flaky.url })).await;

    let publishers: Vec<_> = (0..4)
        .map(|worker| {
            let (base, key) = (server.base.clone(), admin_key(&server));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for batch in 0..10 {
                    let events: Vec<Value> = (0..4)
                        .map(|i| json!({ "type": "tick", "data": [worker, batch, i] }))
                        .collect();
                    let response = client
                        .post(format!("{base}/api/v1/topics/ticks%2F{worker}/events"))
                        .header("x-api-key", &key)
                        .json(&json!({ "events": events }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 201);
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for receiver in [&steady, &flaky] {
        let ids: Vec<String> = receiver
            .wait_delivered(160)
            .await
            .iter()
            .map(|r| r.header("tidings-event-id"))
            .collect();
        assert_eq!(ids.len(), 160, "no duplicates without a crash");
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "delivered in commit (id) order"
        );
    }
    assert!(
        flaky.received().len() > 160,
        "some attempts failed and were retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_are_retried_after_errors_and_timeouts() {
    let server = server(&[]);
    let receiver = Receiver::start().await;
    receiver.script(&[Answer::Fail, Answer::Stall, Answer::Fail]);
    let (endpoint, _) = create_endpoint(&server, json!({ "url": receiver.url })).await;
    let stored = publish(&server, "retry", "t", json!(1)).await;

    receiver.wait_delivered(1).await;
    let attempts = receiver.received();
    assert_eq!(
        attempts.iter().map(|r| r.answer).collect::<Vec<_>>(),
        [Answer::Fail, Answer::Stall, Answer::Fail, Answer::Accept]
    );
    assert!(attempts.iter().all(|r| r.body == stored));
    let delivery = attempts[0].header("tidings-delivery-id");
    assert!(
        attempts
            .iter()
            .all(|r| r.header("tidings-delivery-id") == delivery),
        "retries keep the delivery id"
    );
    let record = endpoint_record(&server, &endpoint).await;
    assert_eq!(record["consecutiveFailures"], 0);
    assert!(
        record["lastError"].as_str().unwrap().contains("HTTP 500"),
        "{record}"
    );
    assert_eq!(
        deliveries(&server, &endpoint, "").await["deliveries"],
        json!([])
    );
    assert!(
        server
            .metric("tidings_webhook_attempts_total{outcome=\"retry\"}")
            .await
            >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_receiver_is_cut_off_by_the_timeout() {
    let server = server(&[]);
    let receiver = Receiver::start().await;
    receiver.script(&[Answer::Stall]);
    let (endpoint, _) = create_endpoint(&server, json!({ "url": receiver.url })).await;
    publish(&server, "slow", "t", json!(1)).await;
    receiver.wait_delivered(1).await;
    let record = endpoint_record(&server, &endpoint).await;
    assert!(
        record["lastError"]
            .as_str()
            .unwrap()
            .contains("--webhook-timeout"),
        "{record}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_type_filters_select_what_an_endpoint_gets() {
    let server = server(&[]);
    let picky = Receiver::start().await;
    let everything = Receiver::start().await;
    create_endpoint(
        &server,
        json!({ "url": picky.url, "eventTypes": ["keep", "also.keep"] }),
    )
    .await;
    create_endpoint(&server, json!({ "url": everything.url })).await;
    for event_type in ["drop", "keep", "other", "also.keep", "keep.not"] {
        publish(&server, "filtered", event_type, json!(null)).await;
    }
    let types = |received: Vec<Received>| -> Vec<String> {
        received
            .iter()
            .map(|r| r.header("tidings-event-type"))
            .collect()
    };
    assert_eq!(types(everything.wait_delivered(5).await).len(), 5);
    // Order per endpoint: once the last matching event arrived, nothing
    // earlier can still come.
    assert_eq!(types(picky.wait_delivered(2).await), ["keep", "also.keep"]);
    let only_matching = picky.received();
    assert!(only_matching.iter().all(|r| r.event()["type"] != "drop"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_deliveries_survive_a_crash() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let receiver = Receiver::start().await;
    receiver.set_default(Answer::Fail);
    let mut first = Server::builder().data_dir(&dir).args(FAST).start();
    create_endpoint(&first, json!({ "url": receiver.url })).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(event_id(&publish(&first, "crash", "t", json!(n)).await));
    }
    until("a refused attempt", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    first.kill();

    receiver.set_default(Answer::Accept);
    let second = Server::builder().data_dir(&dir).args(FAST).start();
    let delivered: Vec<String> = receiver
        .wait_delivered(3)
        .await
        .iter()
        .map(|r| r.header("tidings-event-id"))
        .collect();
    assert_eq!(delivered, ids);
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_an_attempt_in_flight_pending() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let receiver = Receiver::start().await;
    receiver.set_default(Answer::Stall);
    let args = [
        "--webhook-allow-private",
        "127.0.0.1/32",
        "--webhook-timeout",
        "60s",
    ];
    let mut first = Server::builder().data_dir(&dir).args(&args).start();
    create_endpoint(&first, json!({ "url": receiver.url })).await;
    let stored = publish(&first, "stop", "t", json!(1)).await;
    until("an attempt in flight", || async {
        (!receiver.received().is_empty()).then_some(())
    })
    .await;
    let started = std::time::Instant::now();
    assert!(first.stop().success(), "stderr:\n{}", first.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the lane did not hold up the stop"
    );

    receiver.set_default(Answer::Accept);
    let _second = Server::builder().data_dir(&dir).args(&args).start();
    let delivered = receiver.wait_delivered(1).await;
    assert_eq!(delivered[0].body, stored);
}

/// A server giving deliveries up after `retry_for`, disabling endpoints after
/// `disable_after` of them, with one endpoint whose receiver fails every request.
async fn failing_endpoint(retry_for: &str, disable_after: &str) -> (Server, Receiver, String) {
    let server = server(&[
        "--webhook-retry-for",
        retry_for,
        "--webhook-disable-after",
        disable_after,
    ]);
    let receiver = Receiver::start().await;
    receiver.set_default(Answer::Fail);
    let (endpoint, _) = create_endpoint(&server, json!({ "url": receiver.url })).await;
    (server, receiver, endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_up_deliveries_are_listed_and_redelivered() {
    let (server, receiver, endpoint) = failing_endpoint("300ms", "0").await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(event_id(&publish(&server, "given-up", "t", json!(n)).await));
    }
    let failed = until("three failed deliveries", || async {
        let page = deliveries(&server, &endpoint, "?status=failed").await;
        (page["deliveries"].as_array().unwrap().len() == 3).then_some(page)
    })
    .await;
    let listed = failed["deliveries"].as_array().unwrap();
    let listed_events: Vec<&str> = listed
        .iter()
        .map(|d| d["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(listed_events, ids);
    for delivery in listed {
        assert_eq!(delivery["status"], "failed");
        assert_eq!(delivery["lastStatus"], 500);
        assert!(delivery["attempts"].as_u64().unwrap() >= 1);
        assert!(
            delivery["lastError"]
                .as_str()
                .unwrap()
                .contains("receiver says no")
        );
        assert!(delivery["failedAt"].is_string());
    }
    assert_eq!(
        deliveries(&server, &endpoint, "").await["deliveries"],
        json!([])
    );
    let first_page = deliveries(&server, &endpoint, "?status=failed&limit=2").await;
    assert_eq!(first_page["deliveries"].as_array().unwrap().len(), 2);
    let next = first_page["next"].as_str().unwrap();
    let rest = deliveries(&server, &endpoint, &format!("?status=failed&after={next}")).await;
    assert_eq!(rest["deliveries"][0]["eventId"], ids[2].as_str());
    assert_eq!(rest["next"], Value::Null);
    assert!(
        server
            .metric("tidings_webhook_attempts_total{outcome=\"failed\"}")
            .await
            >= 3.0
    );

    receiver.set_default(Answer::Accept);
    let one = listed[0]["id"].as_str().unwrap();
    let redeliver_one = format!("{HOOKS}/{endpoint}/deliveries/{one}/redeliver");
    let (status, body) = admin(&server, Method::POST, &redeliver_one, None).await;
    assert_eq!((status, &body["data"]), (200, &json!({ "redelivered": 1 })));
    assert_eq!(
        receiver.wait_delivered(1).await[0].header("tidings-event-id"),
        ids[0]
    );
    until("the delivered row to be removed", || async {
        let page = deliveries(&server, &endpoint, "").await;
        (page["deliveries"] == json!([])).then_some(())
    })
    .await;
    let (status, body) = admin(&server, Method::POST, &redeliver_one, None).await;
    assert_eq!(status, 404, "already delivered: {body}");
    assert_eq!(body["error"]["code"], "NOT_FOUND");

    let all = format!("{HOOKS}/{endpoint}/deliveries/redeliver");
    let (status, body) = admin(&server, Method::POST, &all, None).await;
    assert_eq!((status, &body["data"]), (200, &json!({ "redelivered": 2 })));
    let delivered: Vec<String> = receiver
        .wait_delivered(3)
        .await
        .iter()
        .map(|r| r.header("tidings-event-id"))
        .collect();
    assert_eq!(delivered, ids);
    until("no failed deliveries left", || async {
        let page = deliveries(&server, &endpoint, "?status=failed").await;
        (page["deliveries"] == json!([])).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_continuously_is_disabled_and_can_be_re_enabled() {
    let (server, receiver, endpoint) = failing_endpoint("200ms", "2").await;
    // One batch, so all three are queued before the endpoint can be disabled.
    let batch = json!({ "events": [
        { "type": "t", "data": 0 }, { "type": "t", "data": 1 }, { "type": "t", "data": 2 },
    ] });
    let response = publish_raw(&server, &server.http1(), "doomed", &batch).await;
    assert_eq!(response.status(), 201);
    let published: Value = response.json().await.unwrap();
    let ids: Vec<String> = published["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_string())
        .collect();
    let record = until("the endpoint to be disabled", || async {
        let record = endpoint_record(&server, &endpoint).await;
        (record["enabled"] == false).then_some(record)
    })
    .await;
    assert!(record["disabledAt"].is_string(), "{record}");
    let reason = record["disabledReason"].as_str().unwrap();
    assert!(reason.contains("2 deliveries in a row"), "{reason}");
    assert!(reason.contains("HTTP 500"), "{reason}");
    assert_eq!(record["consecutiveFailures"], 2);
    // The record is readable once committed; the log line and the counter
    // follow a moment later, on the dispatcher's side of the commit.
    let logged = "webhook endpoint disabled";
    assert!(server.stderr_once_it_contains(logged).contains(logged));
    assert_eq!(
        server
            .metric("tidings_webhook_endpoints_disabled_total")
            .await,
        1.0
    );
    let pending = deliveries(&server, &endpoint, "").await;
    assert_eq!(
        pending["deliveries"][0]["eventId"],
        ids[2].as_str(),
        "the rest waits"
    );
    publish(&server, "doomed", "t", json!("while disabled")).await;
    let pending = deliveries(&server, &endpoint, "").await;
    assert_eq!(
        pending["deliveries"].as_array().unwrap().len(),
        1,
        "nothing new is queued"
    );

    receiver.set_default(Answer::Accept);
    let (status, body) = admin(
        &server,
        Method::POST,
        &format!("{HOOKS}/{endpoint}/enable"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["enabled"], true);
    assert_eq!(body["data"]["disabledAt"], Value::Null);
    assert_eq!(body["data"]["consecutiveFailures"], 0);
    let delivered = receiver.wait_delivered(1).await;
    assert_eq!(delivered[0].header("tidings-event-id"), ids[2]);
    let failed = deliveries(&server, &endpoint, "?status=failed").await;
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_updated_and_deleted() {
    let server = server(&[]);
    let before = Receiver::start().await;
    let after = Receiver::start().await;
    let (endpoint, _) = create_endpoint(
        &server,
        json!({ "url": before.url, "description": "orders", "eventTypes": ["a"] }),
    )
    .await;
    let one = format!("{HOOKS}/{endpoint}");
    let (status, body) = admin(
        &server,
        Method::PATCH,
        &one,
        Some(json!({ "url": after.url, "eventTypes": [] })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["url"], after.url.as_str());
    assert_eq!(body["data"]["description"], "orders");
    assert!(
        body["data"].get("secret").is_none(),
        "secrets are shown once"
    );
    publish(&server, "moved", "b", json!(1)).await;
    after.wait_delivered(1).await;
    assert!(before.received().is_empty());

    let (status, list) = admin(&server, Method::GET, HOOKS, None).await;
    assert_eq!((status, list["data"].as_array().unwrap().len()), (200, 1));
    let (status, _) = admin(
        &server,
        Method::PATCH,
        &one,
        Some(json!({ "enabled": false })),
    )
    .await;
    assert_eq!(status, 200);
    publish(&server, "moved", "b", json!("paused")).await;
    assert_eq!(
        deliveries(&server, &endpoint, "").await["deliveries"],
        json!([])
    );

    let (status, body) = admin(&server, Method::DELETE, &one, None).await;
    assert_eq!((status, &body["data"]["deleted"]), (200, &json!(endpoint)));
    let (status, _) = admin(&server, Method::GET, &one, None).await;
    assert_eq!(status, 404);
    let (_, list) = admin(&server, Method::GET, HOOKS, None).await;
    assert_eq!(list["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_refuses_bad_input_with_the_error_envelope() {
    let server = server(&["--webhook-max-endpoints", "1"]);
    let bad_bodies = [
        json!({ "url": "ftp://example.com/hook" }),
        json!({ "url": "not a url" }),
        json!({ "url": "https://user:pw@example.com/" }),
        json!({}),
        json!({ "url": "https://example.com/", "secret": "short" }),
        json!({ "url": "https://example.com/", "eventTypes": ["fine", "not fine"] }),
        json!({ "url": "https://example.com/", "colour": "blue" }),
    ];
    for body in bad_bodies {
        let (status, answer) = admin(&server, Method::POST, HOOKS, Some(body.clone())).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["error"]["code"], "VALIDATION_ERROR", "{answer}");
        assert!(answer["error"]["message"].is_string());
    }
    let (endpoint, _) = create_endpoint(&server, json!({ "url": "https://example.com/" })).await;
    let (status, answer) = admin(
        &server,
        Method::POST,
        HOOKS,
        Some(json!({ "url": "https://example.com/2" })),
    )
    .await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (409, &json!("CONFLICT"))
    );

    let one = format!("{HOOKS}/{endpoint}");
    let refusals = [
        (
            Method::PATCH,
            one.clone(),
            Some(json!({ "url": "gopher://x" })),
            400,
        ),
        (Method::GET, format!("{HOOKS}/not-a-uuid"), None, 404),
        (
            Method::GET,
            format!("{HOOKS}/{}", uuid::Uuid::new_v4()),
            None,
            404,
        ),
        (
            Method::GET,
            format!("{one}/deliveries?status=bogus"),
            None,
            400,
        ),
        (Method::GET, format!("{one}/deliveries?limit=0"), None, 400),
        (
            Method::GET,
            format!("{one}/deliveries?after=nope"),
            None,
            400,
        ),
        (
            Method::POST,
            format!("{one}/deliveries/nope/redeliver"),
            None,
            404,
        ),
        (
            Method::POST,
            format!("{one}/deliveries/01KAAAAAAAAAAAAAAAAAAAAAAA/redeliver"),
            None,
            404,
        ),
    ];
    for (method, path, body, expected) in refusals {
        let (status, answer) = admin(&server, method.clone(), &path, body).await;
        assert_eq!(status, expected, "{method} {path} → {answer}");
        assert!(answer["error"]["code"].is_string(), "{answer}");
    }
    let malformed = server
        .http1()
        .post(server.url(HOOKS))
        .header("x-api-key", admin_key(&server))
        .header("content-type", "application/json")
        .body("{\"url\":")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let (status, _) = call(&server, "ek_wrong", Method::GET, HOOKS, None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_cannot_reach_each_others_webhooks_or_events() {
    let server = server(&[]);
    let (status, tenant) = admin(
        &server,
        Method::POST,
        "/admin/v1/tenants",
        Some(json!({ "slug": "other" })),
    )
    .await;
    assert_eq!(status, 201);
    let other = tenant["data"]["id"].as_str().unwrap().to_string();
    let (status, key) = admin(
        &server,
        Method::POST,
        &format!("/admin/v1/tenants/{other}/keys"),
        Some(json!({ "name": "other-admin", "scopes": ["admin", "publish"] })),
    )
    .await;
    assert_eq!(status, 201);
    let other_key = key["data"]["secret"].as_str().unwrap().to_string();

    let mine = Receiver::start().await;
    let theirs = Receiver::start().await;
    let (endpoint, _) = create_endpoint(&server, json!({ "url": mine.url })).await;
    let their_hooks = format!("/admin/v1/tenants/{other}/webhooks");
    let (status, _) = call(
        &server,
        &other_key,
        Method::POST,
        &their_hooks,
        Some(json!({ "url": theirs.url })),
    )
    .await;
    assert_eq!(status, 201);

    let (status, _) = call(&server, &other_key, Method::GET, HOOKS, None).await;
    assert_eq!(status, 403, "another tenant's list");
    let (status, _) = call(
        &server,
        &other_key,
        Method::GET,
        &format!("{HOOKS}/{endpoint}"),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let smuggled = format!("{their_hooks}/{endpoint}");
    for method in [Method::GET, Method::DELETE] {
        let (status, _) = call(&server, &other_key, method, &smuggled, None).await;
        assert_eq!(
            status, 404,
            "an endpoint of another tenant through one's own path"
        );
    }
    let (status, _) = call(
        &server,
        &other_key,
        Method::PATCH,
        &smuggled,
        Some(json!({ "url": theirs.url })),
    )
    .await;
    assert_eq!(status, 404);

    let published = server
        .http1()
        .post(server.url("/api/v1/topics/shared/events"))
        .header("x-api-key", &other_key)
        .json(&json!({ "type": "theirs", "data": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    theirs.wait_delivered(1).await;
    publish(&server, "shared", "mine", json!(2)).await;
    let got: Vec<String> = mine
        .wait_delivered(1)
        .await
        .iter()
        .map(|r| r.header("tidings-event-type"))
        .collect();
    assert_eq!(
        got,
        ["mine"],
        "another tenant's event never reaches my endpoint"
    );
    assert_eq!(theirs.delivered().len(), 1);

    let (status, _) = admin(
        &server,
        Method::DELETE,
        &format!("/admin/v1/tenants/{other}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = admin(&server, Method::GET, HOOKS, None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "mine stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discussion_events_are_delivered_with_their_spec_payloads_in_order() {
    let server = server(&[]);
    let receiver = Receiver::start().await;
    let filter = ["comment_created", "notification_reply", "discussion_locked"];
    let (_, secret) = create_endpoint(
        &server,
        json!({ "url": receiver.url, "eventTypes": filter }),
    )
    .await;
    let discussion = discussion_post(
        &server,
        "/api/v1/discussions",
        None,
        json!({ "externalId": "hooked", "title": "t" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let comments = format!("/api/v1/discussions/{discussion}/comments");
    let parent = discussion_post(&server, &comments, Some("ann"), json!({ "body": "q" })).await;
    let reply = json!({ "body": "a", "parentId": parent["id"] });
    discussion_post(&server, &comments, Some("bob"), reply).await;
    let reaction = json!({ "reaction": "+1" });
    let reactions = format!("{comments}/{}/reactions", parent["id"].as_str().unwrap());
    discussion_post(&server, &reactions, Some("bob"), reaction).await;
    let lock = format!("/api/v1/discussions/{discussion}/lock");
    discussion_post(&server, &lock, None, json!({ "reason": "done" })).await;

    let got = receiver.wait_delivered(4).await;
    let types: Vec<String> = got.iter().map(|r| r.header("tidings-event-type")).collect();
    assert_eq!(
        types,
        [
            "comment_created",
            "comment_created",
            "notification_reply",
            "discussion_locked"
        ],
        "filtered (no reaction_toggled) and in commit order"
    );
    for received in &got {
        verify_signature(received, &secret);
    }
    assert_eq!(got[0].event()["comment"]["body"], "q");
    assert_eq!(
        got[0].event()["originatedBy"]["userId"],
        parent["author"]["userId"]
    );
    assert_eq!(
        got[2].event()["recipientUserId"],
        parent["author"]["userId"]
    );
    assert_eq!(got[3].event()["reason"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_unless_the_operator_allows_them() {
    let server = Server::builder()
        .args(&[
            "--webhook-retry-for",
            "200ms",
            "--webhook-disable-after",
            "0",
        ])
        .start();
    let receiver = Receiver::start().await;
    for literal in [
        receiver.url.clone(),
        "http://169.254.169.254/latest/meta-data/".to_string(),
        "http://[::ffff:10.0.0.1]/hook".to_string(),
    ] {
        let (status, body) = admin(
            &server,
            Method::POST,
            HOOKS,
            Some(json!({ "url": literal })),
        )
        .await;
        assert_eq!(status, 400, "{literal}: {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
        assert_eq!(body["error"]["details"]["field"], "url");
    }
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let (named, _) = create_endpoint(&server, json!({ "url": by_name })).await;
    publish(&server, "internal", "t", json!(1)).await;
    let failed = until("the delivery given up", || async {
        let page = deliveries(&server, &named, "?status=failed").await;
        let list = page["deliveries"].as_array().unwrap().clone();
        (list.len() == 1).then_some(list)
    })
    .await;
    let error = failed[0]["lastError"].as_str().unwrap().to_string();
    assert!(error.contains("--webhook-allow-private"), "{error}");
    assert!(
        receiver.received().is_empty(),
        "nothing reached the receiver"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_host_name_reaches_its_local_receiver_but_never_metadata() {
    let server = Server::builder()
        .args(&["--webhook-allow-private", "localhost,0.0.0.0/0,::/0"])
        .args(&FAST[2..])
        .start();
    let receiver = Receiver::start().await;
    let (status, _) = admin(
        &server,
        Method::POST,
        HOOKS,
        Some(json!({ "url": "http://169.254.169.254/" })),
    )
    .await;
    assert_eq!(status, 400, "metadata is refused even under 0.0.0.0/0");
    let (_, _) = create_endpoint(
        &server,
        json!({ "url": receiver.url.replace("127.0.0.1", "localhost") }),
    )
    .await;
    publish(&server, "local", "t", json!(1)).await;
    receiver.wait_delivered(1).await;
}

/// The debug `sample` module has its own namespace and no webhook code: its
/// events reach the tenant's endpoint through the writer's outbox observer,
/// with the body the module declares (the event's `data`); an event too
/// large to deliver fails its whole change (413), so nothing is stored and
/// nothing is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_module_namespace_reaches_webhooks_without_module_code() {
    let server = server(&["--webhook-max-body", "100"]);
    let receiver = Receiver::start().await;
    let (endpoint, secret) = create_endpoint(&server, json!({ "url": receiver.url })).await;
    let append = |data: Value| {
        server
            .http1()
            .post(server.url("/__test/sample/s1/events"))
            .header("x-api-key", admin_key(&server))
            .json(&json!({ "type": "sampled", "data": data }))
            .send()
    };
    let too_large = append(json!({ "text": "x".repeat(200) })).await.unwrap();
    assert_eq!(too_large.status(), 413);
    let response = append(json!({ "n": 1 })).await.unwrap();
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["data"]["topic"], "~sample/s1");

    let got = receiver.wait_delivered(1).await;
    assert_eq!(
        &got[0].body[..],
        br#"{"n":1}"#,
        "the module's declared body"
    );
    assert_eq!(got[0].header("tidings-event-type"), "sampled");
    assert_eq!(
        got[0].header("tidings-event-id"),
        stored["data"]["id"].as_str().unwrap()
    );
    verify_signature(&got[0], &secret);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "the refused event was never staged"
    );
    let pending = deliveries(&server, &endpoint, "?status=pending").await;
    assert_eq!(pending["deliveries"], json!([]), "{pending}");
}

/// Chat events (room topics and user topics of the `~chat` namespace) reach
/// the tenant's endpoint in commit order, each with the event's `data` as
/// the body, exactly what the REST answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_events_reach_the_tenant_webhook_with_their_data() {
    let server = server(&[]);
    let receiver = Receiver::start().await;
    let (_, secret) = create_endpoint(&server, json!({ "url": receiver.url })).await;
    let chat = Chat::new(&server).await;
    let (ann, bob) = (chat.user("ann"), chat.user("bob"));
    let created = chat
        .post(
            "/rooms",
            &ann,
            json!({ "name": "hooked", "members": ["bob"] }),
        )
        .await;
    let room = chat.expect(201, created).await;
    let id = room["roomId"].as_u64().unwrap();
    let message = chat.say(&ann, id, "hello", None).await;
    let path = format!("/rooms/{id}/messages/{}", message["messageId"]);
    let read = json!({ "messageId": message["messageId"] });
    chat.expect(
        200,
        chat.post(&format!("/rooms/{id}/read"), &bob, read).await,
    )
    .await;
    let edited = chat
        .expect(200, chat.patch(&path, &ann, json!({ "text": "hi" })).await)
        .await;
    chat.expect(200, chat.delete(&path, &ann).await).await;
    chat.expect(200, chat.delete(&format!("/rooms/{id}"), &ann).await)
        .await;

    let got = receiver.wait_delivered(7).await;
    let types: Vec<String> = got.iter().map(|r| r.header("tidings-event-type")).collect();
    assert_eq!(
        types,
        [
            "RoomCreated",
            "RoomCreated",
            "TextMessagesCreated",
            "ReadReceiptsUpdated",
            "TextMessagesUpdated",
            "TextMessageDeleted",
            "RoomDeleted"
        ]
    );
    for received in &got {
        verify_signature(received, &secret);
    }
    let bodies: Vec<Value> = got.iter().map(Received::event).collect();
    assert_eq!(
        bodies[0],
        json!({ "room": room, "userId": 1, "reason": "created", "role": "owner" })
    );
    assert_eq!(
        (&bodies[1]["userId"], &bodies[1]["role"]),
        (&json!(2), &json!("member"))
    );
    assert_eq!(bodies[2], json!({ "messages": [message] }));
    assert_eq!(
        bodies[3],
        json!({ "roomId": id, "userId": 2, "lastReadMessageId": message["messageId"] })
    );
    assert_eq!(bodies[4], json!({ "messages": [edited] }));
    assert_eq!(
        bodies[5],
        json!({ "parentMessageId": null, "roomId": id, "messageId": message["messageId"] })
    );
    assert_eq!(bodies[6], json!({ "roomId": id }));
}

/// A broadcast post hands its recipients to push services: the channel's
/// explicit members who hold its entitlement or lost it within the grace
/// (never one who lost it earlier, nor a non-member); channel events reach
/// the webhook as the envelope Socket.IO clients get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_post_lists_its_push_recipients_within_the_entitlement_grace() {
    let server = server(&["--channels-entitlement-grace", "2s"]);
    let receiver = Receiver::start().await;
    create_endpoint(&server, json!({ "url": receiver.url })).await;
    let api = Chat::new(&server).await;
    let body = json!({ "name": "gold", "readPolicy": "entitled", "entitlementKey": "gold" });
    let channel = api
        .expect(
            201,
            api.post("/communication/channels", &api.backend, body)
                .await,
        )
        .await;
    let id = channel["id"].as_u64().unwrap();
    for user in ["ann", "bob", "dan", "eve"] {
        let member = format!("/communication/channels/{id}/members/{user}");
        api.expect(
            200,
            api.call(Method::PUT, &member, &api.backend, None).await,
        )
        .await;
    }
    for user in ["ann", "bob", "dan"] {
        let grant = format!("/communication/users/{user}/entitlements/gold");
        api.expect(200, api.call(Method::PUT, &grant, &api.backend, None).await)
            .await;
    }
    let lose = |user: &str| format!("/communication/users/{user}/entitlements/gold");
    api.expect(200, api.delete(&lose("dan"), &api.backend).await)
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    api.expect(200, api.delete(&lose("bob"), &api.backend).await)
        .await;
    let post = json!({ "text": "big news", "authorId": "ed", "broadcast": true });
    let path = format!("/communication/channels/{id}/posts");
    api.expect(201, api.post(&path, &api.backend, post).await)
        .await;

    let got = receiver.wait_delivered(4).await;
    let types: Vec<String> = got.iter().map(|r| r.header("tidings-event-type")).collect();
    assert_eq!(
        types,
        [
            "communication.access.changed",
            "communication.access.changed",
            "communication.channel_post.created",
            "communication.channel_post.broadcast"
        ]
    );
    let narrowed = got[1].event();
    assert_eq!(narrowed["data"]["userId"], "bob");
    let created = got[2].event();
    assert_eq!(created["eventType"], "communication.channel_post.created");
    assert_eq!(created["data"]["text"], "big news");
    assert_eq!(created["eventId"].as_str().map(str::len), Some(36));
    let broadcast = got[3].event()["data"].clone();
    assert_eq!(
        broadcast,
        json!({ "postId": 1, "channelId": id, "recipients": ["ann", "bob"], "page": 1, "last": true,
                "actor": { "id": null } })
    );
}
