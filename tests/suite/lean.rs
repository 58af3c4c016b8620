//! The lean HTTP/1.1 path for event streams (`src/http/lean.rs`), on raw
//! sockets: framing, heartbeats, keep-alive before and after a stream,
//! pipelined and garbage bytes, and release on client disconnect. [`Raw`]
//! also reads TLS streams (see `tls_streams.rs`).

use crate::clients::{admin_key, publish};
use crate::harness::Server;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a raw read may wait for expected bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A raw HTTP/1.1 connection (plain TCP, or any stream such as TLS) that
/// accumulates what the server sends.
pub(crate) struct Raw<S = TcpStream> {
    stream: S,
    received: String,
}

impl Raw {
    async fn connect(server: &Server) -> Self {
        Self::over(TcpStream::connect(server.addr()).await.unwrap())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Raw<S> {
    /// Talks over an already connected `stream`.
    pub(crate) fn over(stream: S) -> Self {
        Self {
            stream,
            received: String::new(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Reads until `needle` has arrived; returns everything up to and including it.
    pub(crate) async fn until(&mut self, needle: &str) -> String {
        loop {
            if let Some(at) = self.received.find(needle) {
                return self.received.drain(..at + needle.len()).collect();
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| {
                    panic!("`{needle}` within the timeout; got {:?}", self.received)
                })
                .unwrap();
            assert!(
                read > 0,
                "closed before `{needle}`; got {:?}",
                self.received
            );
            self.received
                .push_str(&String::from_utf8_lossy(&buf[..read]));
        }
    }

    /// Reads to the end of a stream cycled by `--sse-lifetime` (frame and last chunk).
    pub(crate) async fn stream_end(&mut self) {
        self.until("event: connection-timeout").await;
        self.until("\r\n0\r\n\r\n").await;
    }

    /// Asserts that the connection answers another request.
    pub(crate) async fn serves_another_request(&mut self) {
        self.send(HEALTHZ).await;
        let head = self.until("\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }

    /// Whether the server closes (or resets) the connection within the timeout.
    pub(crate) async fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        tokio::time::timeout(READ_TIMEOUT, self.stream.read_to_end(&mut rest))
            .await
            .is_ok()
    }
}

pub(crate) fn stream_request(server: &Server, topic: &str) -> String {
    format!(
        "GET /api/v1/topics/{topic}/stream HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nx-api-key: {}\r\n\r\n",
        admin_key(server)
    )
}

pub(crate) const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";

/// Sends a stream request with a `/healthz` request pipelined behind it and
/// checks the second is answered once the stream ends (the server runs with
/// a short `--sse-lifetime`).
pub(crate) async fn answers_a_request_pipelined_behind_a_stream<S>(
    server: &Server,
    raw: &mut Raw<S>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut both = stream_request(server, "piped").into_bytes();
    both.extend_from_slice(HEALTHZ);
    raw.send(&both).await;
    raw.stream_end().await;
    let next = raw.until("\r\n\r\n").await;
    assert!(next.starts_with("HTTP/1.1 200"), "{next}");
}

#[tokio::test]
async fn a_lean_stream_is_chunked_beats_and_keeps_the_connection_alive_after_it_ends() {
    let server = Server::builder()
        .args(&["--sse-heartbeat", "200ms", "--sse-lifetime", "1500ms"])
        .start();
    let mut raw = Raw::connect(&server).await;
    raw.send(stream_request(&server, "lean").as_bytes()).await;
    let head = raw.until("\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    for field in [
        "content-type: text/event-stream",
        "transfer-encoding: chunked",
        "x-request-id: ",
        "date: ",
        "cache-control: no-cache",
    ] {
        assert!(head.contains(field), "{field} in {head}");
    }
    raw.until("event: connected").await;
    let id = publish(&server, &server.http1(), "lean", json!({ "n": 1 })).await;
    raw.until(&format!("id: {id}")).await;
    raw.until(": heartbeat").await;
    raw.stream_end().await;
    raw.serves_another_request().await;
}

#[tokio::test]
async fn requests_pipelined_behind_a_stream_are_answered_after_it() {
    let server = Server::builder().args(&["--sse-lifetime", "1s"]).start();
    let mut raw = Raw::connect(&server).await;
    answers_a_request_pipelined_behind_a_stream(&server, &mut raw).await;
}

#[tokio::test]
async fn a_stream_after_keep_alive_requests_and_without_accept_is_served_too() {
    let server = Server::start();
    let mut raw = Raw::connect(&server).await;
    raw.send(HEALTHZ).await;
    raw.until("\r\n\r\n").await;
    raw.until("}").await;
    raw.send(stream_request(&server, "later").as_bytes()).await;
    raw.until("event: connected").await;
    let mut plain = Raw::connect(&server).await;
    let request = stream_request(&server, "plain").replace("accept: text/event-stream\r\n", "");
    plain.send(request.as_bytes()).await;
    plain.until("event: connected").await;
    let id = publish(&server, &server.http1(), "later", json!({})).await;
    raw.until(&format!("id: {id}")).await;
}

#[tokio::test]
async fn refused_lean_requests_get_the_envelope_and_the_connection_goes_on() {
    let server = Server::start();
    let mut raw = Raw::connect(&server).await;
    raw.send(
        b"GET /api/v1/topics/t/stream HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\n\r\n",
    )
    .await;
    let head = raw.until("\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-length: "),
        "{head}"
    );
    raw.until("\"UNAUTHORIZED\"").await;
    raw.until("}}").await;
    raw.serves_another_request().await;
}

#[tokio::test]
async fn garbage_behind_a_stream_disconnects_the_client() {
    let server = Server::start();
    let mut raw = Raw::connect(&server).await;
    raw.send(stream_request(&server, "junk").as_bytes()).await;
    raw.until("event: connected").await;
    raw.send(&vec![b'x'; 64 << 10]).await;
    assert!(raw.closed().await, "the server closes the connection");
}

#[tokio::test]
async fn a_client_closing_its_stream_releases_it_at_once() {
    let server = Server::start();
    let mut raws = Vec::new();
    for n in 0..3 {
        let mut raw = Raw::connect(&server).await;
        raw.send(stream_request(&server, &format!("gone{n}")).as_bytes())
            .await;
        raw.until("event: connected").await;
        raws.push(raw);
    }
    assert_eq!(server.metric("tidings_hub_subscriptions").await, 3.0);
    drop(raws);
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    while server.metric("tidings_hub_subscriptions").await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
