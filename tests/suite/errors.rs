//! Every failure answers with its status and the one error envelope.

use crate::harness::{Server, json, request_id};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn assert_envelope(body: &serde_json::Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "message present: {body}"
    );
}

#[tokio::test]
async fn unknown_path_is_404_with_the_envelope() {
    let server = Server::start();
    let response = server
        .http1()
        .get(server.url("/no/such/thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_envelope(&json(response).await, "NOT_FOUND");
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let server = Server::start();
    let response = server
        .http1()
        .delete(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_envelope(&json(response).await, "VALIDATION_ERROR");
    let head = server
        .http1()
        .head(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200, "HEAD is served where GET is");
}

#[tokio::test]
async fn malformed_json_is_400_and_wrong_content_type_is_415() {
    let server = Server::start();
    let client = server.http1();
    let response = client
        .post(server.url("/__test/echo"))
        .header("content-type", "application/json")
        .body("{\"unterminated\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = json(response).await;
    assert_envelope(&body, "VALIDATION_ERROR");
    assert!(body["error"]["details"]["column"].is_number(), "{body}");

    let response = client
        .post(server.url("/__test/echo"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert_envelope(&json(response).await, "VALIDATION_ERROR");

    let response = client
        .post(server.url("/__test/echo"))
        .header("content-type", "application/json; charset=utf-8")
        .body("{\"ok\":[1,2]}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["data"]["ok"][1], 2);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_whether_declared_or_streamed() {
    let server = Server::builder().env("TIDINGS_MAX_BODY", "1KiB").start();
    let client = server.http1();
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2000));
    let response = client
        .post(server.url("/__test/echo"))
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(
        response.headers()["connection"],
        "close",
        "the unread body ends the connection"
    );
    assert_envelope(&json(response).await, "PAYLOAD_TOO_LARGE");

    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let response = client
        .post(server.url("/__test/echo"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        413,
        "chunked bodies are cut off at the limit too"
    );
    assert_envelope(&json(response).await, "PAYLOAD_TOO_LARGE");

    let small = client
        .post(server.url("/__test/echo"))
        .header("content-type", "application/json")
        .body("{\"pad\":\"ok\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn a_panicking_handler_is_500_and_the_server_keeps_serving() {
    let server = Server::start();
    let client = server.http1();
    let response = client
        .get(server.url("/__test/panic"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let request_id = request_id(&response);
    let body = json(response).await;
    assert_envelope(&body, "INTERNAL");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&request_id)
    );
    for _ in 0..3 {
        let next = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(next.status(), 200);
    }
    // The log line goes out through a writer thread: wait for it.
    let stderr = server.stderr_once_it_contains("handler panicked");
    assert!(stderr.contains("handler panicked"), "{stderr}");
}

#[tokio::test]
async fn a_slow_body_is_408_with_the_envelope() {
    let server = Server::builder().args(&["--body-timeout", "500ms"]).start();
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"POST /__test/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("server answers and closes")
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"VALIDATION_ERROR\""), "{response}");
}

#[tokio::test]
async fn slow_request_headers_are_cut_off() {
    let server = Server::builder()
        .args(&["--header-timeout", "500ms"])
        .start();
    for partial in [&b""[..], b"GET /healthz HTTP/1.1\r\nhost: x\r\n"] {
        let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(partial).await.unwrap();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "the server closes a connection whose head never completes"
        );
    }
    let response = server
        .http1()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn client_request_ids_are_echoed() {
    let server = Server::start();
    let response = server
        .http1()
        .get(server.url("/healthz"))
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-abc.123");
}
