//! Event streams over the built-in TLS (`--tls-self-signed`), on raw TLS
//! sockets: the lean HTTP/1.1 path serves them as it serves plain ones
//! (chunked frames, heartbeats, keep-alive after the stream, garbage behind
//! a stream disconnects the client), they resume after `Last-Event-ID`, end
//! with `event: shutdown` when the server stops, and release their
//! subscription at once when the client leaves.

use crate::clients::publish;
use crate::harness::{Server, sample};
use crate::lean::{Raw, answers_a_request_pipelined_behind_a_stream, stream_request};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A raw HTTP/1.1 connection over TLS (ALPN `http/1.1`), trusting the
/// server's generated certificate.
async fn connect(server: &Server) -> Raw<TlsStream<TcpStream>> {
    let pem = std::fs::read(server.data_dir.join("tls/localhost-cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    Raw::over(tls)
}

/// A server on TLS with its generated certificate and `args`.
fn tls_server(args: &[&str]) -> Server {
    let mut all = vec!["--tls-self-signed"];
    all.extend_from_slice(args);
    Server::builder().args(&all).start()
}

/// Publishes to `topic` over TLS; returns the event id.
async fn publish_tls(server: &Server, topic: &str, n: u32) -> String {
    publish(server, &server.tls_client(false), topic, json!({ "n": n })).await
}

/// The number of live hub subscriptions (`/metrics` over TLS).
async fn subscriptions(server: &Server) -> f64 {
    let client = server.tls_client(false);
    let response = client.get(server.url("/metrics")).send().await.unwrap();
    let text = response.text().await.unwrap();
    sample(&text, "tidings_hub_subscriptions").unwrap_or(0.0)
}

#[tokio::test]
async fn a_tls_stream_is_chunked_beats_and_keeps_the_connection_alive_after_it_ends() {
    let server = tls_server(&["--sse-heartbeat", "200ms", "--sse-lifetime", "1500ms"]);
    let mut raw = connect(&server).await;
    raw.send(stream_request(&server, "tls").as_bytes()).await;
    let head = raw.until("\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    raw.until("event: connected").await;
    let id = publish_tls(&server, "tls", 1).await;
    raw.until(&format!("id: {id}")).await;
    raw.until(": heartbeat").await;
    raw.stream_end().await;
    raw.serves_another_request().await;
}

#[tokio::test]
async fn a_tls_stream_resumes_after_the_last_event_id() {
    let server = tls_server(&[]);
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(publish_tls(&server, "again", n).await);
    }
    let mut raw = connect(&server).await;
    let request = stream_request(&server, "again").replace(
        "\r\n\r\n",
        &format!("\r\nlast-event-id: {}\r\n\r\n", ids[0]),
    );
    raw.send(request.as_bytes()).await;
    let before_second = raw.until(&format!("id: {}", ids[1])).await;
    assert!(
        !before_second.contains(r#"{"n":0}"#),
        "the event named by Last-Event-ID is not sent again: {before_second}"
    );
    raw.until(&format!("id: {}", ids[2])).await;
    let live = publish_tls(&server, "again", 3).await;
    raw.until(&format!("id: {live}")).await;
}

#[tokio::test]
async fn a_tls_stream_ends_with_shutdown_when_the_server_stops() {
    let mut server = tls_server(&[]);
    let mut raw = connect(&server).await;
    raw.send(stream_request(&server, "bye").as_bytes()).await;
    raw.until("event: connected").await;
    server.signal(libc::SIGTERM);
    raw.until("event: shutdown").await;
    raw.until("\r\n0\r\n\r\n").await;
    assert!(raw.closed().await, "the server closes the connection");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn requests_pipelined_behind_a_tls_stream_are_answered_after_it() {
    let server = tls_server(&["--sse-lifetime", "1s"]);
    let mut raw = connect(&server).await;
    answers_a_request_pipelined_behind_a_stream(&server, &mut raw).await;
}

#[tokio::test]
async fn garbage_behind_a_tls_stream_disconnects_the_client() {
    let server = tls_server(&[]);
    let mut raw = connect(&server).await;
    raw.send(stream_request(&server, "junk").as_bytes()).await;
    raw.until("event: connected").await;
    raw.send(&vec![b'x'; 64 << 10]).await;
    assert!(raw.closed().await, "the server closes the connection");
}

#[tokio::test]
async fn a_client_closing_its_tls_stream_releases_it_at_once() {
    let server = tls_server(&[]);
    let mut raws = Vec::new();
    for n in 0..3 {
        let mut raw = connect(&server).await;
        raw.send(stream_request(&server, &format!("gone{n}")).as_bytes())
            .await;
        raw.until("event: connected").await;
        raws.push(raw);
    }
    assert_eq!(subscriptions(&server).await, 3.0);
    drop(raws);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while subscriptions(&server).await != 0.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
