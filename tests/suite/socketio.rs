//! The Socket.IO transport (Engine.IO v4 + Socket.IO v5) as clients see it.
//!
//! * The conformance kit (`/work/shared/conformance`, located by
//!   `$TIDINGS_SIO_KIT`, else `<crate>/../shared/conformance`, else
//!   `/work/shared/conformance`): its four groups (24 Engine.IO cases on the
//!   raw echo endpoint, 32 Socket.IO, 8 extras, the real `socket.io-client`
//!   smoke run) against the test endpoints, with the kit's timings. The kit
//!   installs its pinned npm packages under `target/sio-conformance`. Skipped,
//!   saying why, when the kit or node is missing.
//! * The bounds, against the real binary: a payload over `--sio-max-payload`
//!   closes the session (polling and WebSocket); a polling client that never
//!   polls is cut at `--sio-max-buffer`; `--sio-max-sessions` gives 503 and a
//!   closed session frees its slot; no CONNECT within
//!   `--sio-connect-timeout` closes the session; shutdown ends sessions with
//!   the close packet.

use crate::harness::Server;
use futures_util::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// The raw Engine.IO echo endpoint.
const ENGINE: &str = "/__test/engine.io/";
/// The Socket.IO endpoint.
pub(crate) const SOCKETIO: &str = "/__test/socket.io/";
/// Cases per kit group: engineio, socketio, extras, smoke.
const KIT_CASES: usize = 24 + 32 + 8 + 1;

/// The kit's directory, or why there is none.
pub fn kit() -> Result<PathBuf, String> {
    let candidates = [
        std::env::var_os("TIDINGS_SIO_KIT").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")),
        Some(PathBuf::from("/work/shared/conformance")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("run.sh").is_file())
        .ok_or_else(|| {
            "no kit in $TIDINGS_SIO_KIT, ../shared/conformance or /work/shared/conformance".into()
        })
}

pub fn node_available() -> Result<(), String> {
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !found {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    Ok(())
}

/// A server with the kit's timings.
fn kit_server() -> Server {
    Server::builder()
        .args(&[
            "--sio-ping-interval",
            "300ms",
            "--sio-ping-timeout",
            "200ms",
            "--sio-max-payload",
            "1000000",
            "--sio-connect-timeout",
            "1s",
        ])
        .start()
}

#[test]
fn the_conformance_kit_passes_every_group() {
    let kit = match kit().and_then(|kit| node_available().map(|()| kit)) {
        Ok(kit) => kit,
        Err(why) => {
            eprintln!("SKIPPED socket.io conformance: {why}");
            return;
        }
    };
    let server = kit_server();
    let output = Command::new("bash")
        .arg(kit.join("run.sh"))
        .arg(&server.base)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SIO_ENGINEIO_PATH", ENGINE)
        .env("SIO_SOCKETIO_PATH", SOCKETIO)
        .env("SMOKE_PATH", SOCKETIO)
        .output()
        .expect("running the kit");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let last = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        last,
        format!("{KIT_CASES} passed, 0 failed"),
        "kit output:\n{report}"
    );
    for group in [
        "engineio: 24 passed, 0 failed",
        "socketio: 32 passed, 0 failed",
        "extras: 8 passed, 0 failed",
        "smoke: 1 passed, 0 failed",
    ] {
        assert!(report.contains(group), "missing `{group}` in:\n{report}");
    }
}

/// `?EIO=4&transport=polling[&sid=…]` on `path`.
pub(crate) fn polling_url(server: &Server, path: &str, sid: Option<&str>) -> String {
    let sid = sid.map(|sid| format!("&sid={sid}")).unwrap_or_default();
    server.url(&format!("{path}?EIO=4&transport=polling{sid}"))
}

/// Opens a long-polling session and returns its sid.
pub(crate) async fn open_polling(server: &Server, path: &str) -> String {
    let body = server
        .http1()
        .get(polling_url(server, path, None))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let open: serde_json::Value =
        serde_json::from_str(body.strip_prefix('0').expect("open packet")).unwrap();
    open["sid"].as_str().unwrap().to_string()
}

async fn post(server: &Server, path: &str, sid: &str, body: String) -> reqwest::StatusCode {
    server
        .http1()
        .post(polling_url(server, path, Some(sid)))
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

async fn poll(server: &Server, path: &str, sid: &str) -> (reqwest::StatusCode, String) {
    let response = server
        .http1()
        .get(polling_url(server, path, Some(sid)))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket-only session on `path` and reads its open packet.
async fn open_websocket(server: &Server, path: &str) -> Client {
    let url = format!("ws://{}{path}?EIO=4&transport=websocket", server.addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut socket).await.expect("open packet");
    assert!(open.starts_with("0{"), "{open}");
    socket
}

/// The next text message; `None` once the connection closed.
async fn next_text(socket: &mut Client) -> Option<String> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message or the close within 5 s");
        match message {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The value of `series` once it reached `expected` (a WebSocket session is
/// counted after its closing handshake), or after 5 s.
async fn metric_once_at(server: &Server, series: &str, expected: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let value = server.metric(series).await;
        if value >= expected || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_payload_over_max_payload_closes_the_session() {
    let server = Server::builder()
        .args(&["--sio-max-payload", "1000"])
        .start();
    let sid = open_polling(&server, ENGINE).await;
    assert_eq!(
        post(&server, ENGINE, &sid, format!("4{}", "a".repeat(998))).await,
        200
    );
    assert_eq!(
        post(&server, ENGINE, &sid, format!("4{}", "a".repeat(1000))).await,
        413
    );
    assert_eq!(
        poll(&server, ENGINE, &sid).await.0,
        400,
        "the session is gone"
    );

    let mut socket = open_websocket(&server, ENGINE).await;
    socket
        .send(Message::text(format!("4{}", "b".repeat(998))))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await.unwrap().len(), 999, "echoed");
    socket
        .send(Message::text(format!("4{}", "b".repeat(1000))))
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await, None, "closed");
    let series = "tidings_stream_ends_total{transport=\"socketio\",reason=\"too-big\"}";
    assert_eq!(metric_once_at(&server, series, 2.0).await, 2.0);
}

#[tokio::test]
async fn a_polling_client_that_never_polls_is_cut_at_the_buffer_bound() {
    let server = Server::builder()
        .args(&["--sio-max-buffer", "4KiB"])
        .start();
    let sid = open_polling(&server, ENGINE).await;
    let message = format!("4{}", "x".repeat(500));
    let mut accepted = 0;
    while post(&server, ENGINE, &sid, message.clone()).await == 200 {
        accepted += 1;
        assert!(accepted < 100, "the queue grew past its bound");
    }
    // Echoes of about 500 bytes each: the 9th passes 4 KiB (a few more
    // may be taken before the session has handled it).
    assert!(
        (8..=13).contains(&accepted),
        "{accepted} payloads were queued"
    );
    assert_eq!(poll(&server, ENGINE, &sid).await.0, 400);
    let series = "tidings_stream_ends_total{transport=\"socketio\",reason=\"slow-client\"}";
    assert_eq!(metric_once_at(&server, series, 1.0).await, 1.0);
}

#[tokio::test]
async fn the_session_cap_answers_503_until_a_session_ends() {
    let server = Server::builder().args(&["--sio-max-sessions", "2"]).start();
    let first = open_polling(&server, SOCKETIO).await;
    let _second = open_websocket(&server, SOCKETIO).await;
    let refused = server
        .http1()
        .get(polling_url(&server, SOCKETIO, None))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(post(&server, SOCKETIO, &first, "1".into()).await, 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = server
            .http1()
            .get(polling_url(&server, SOCKETIO, None))
            .send()
            .await
            .unwrap()
            .status();
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot was not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn no_connect_within_the_connect_timeout_closes_the_session() {
    let server = Server::builder()
        .args(&["--sio-connect-timeout", "300ms"])
        .start();
    let started = std::time::Instant::now();
    let mut idle = open_websocket(&server, SOCKETIO).await;
    assert_eq!(next_text(&mut idle).await, None, "closed without a CONNECT");
    assert!(started.elapsed() >= Duration::from_millis(250));

    let mut joined = open_websocket(&server, SOCKETIO).await;
    joined.send(Message::text("40")).await.unwrap();
    assert!(
        next_text(&mut joined)
            .await
            .unwrap()
            .starts_with("40{\"sid\":")
    );
    assert_eq!(next_text(&mut joined).await.unwrap(), "42[\"auth\",{}]");
    tokio::time::sleep(Duration::from_millis(600)).await;
    joined
        .send(Message::text("42[\"message\",1]"))
        .await
        .unwrap();
    assert_eq!(
        next_text(&mut joined).await.unwrap(),
        "42[\"message-back\",1]",
        "a joined session stays"
    );
    joined.send(Message::text("41")).await.unwrap();
    assert_eq!(
        next_text(&mut joined).await,
        None,
        "closed once it left its last namespace"
    );

    let sid = open_polling(&server, SOCKETIO).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(poll(&server, SOCKETIO, &sid).await.0, 400);
    let series = "tidings_stream_ends_total{transport=\"socketio\",reason=\"connect-timeout\"}";
    assert_eq!(metric_once_at(&server, series, 3.0).await, 3.0);
}

#[tokio::test]
async fn shutdown_ends_sessions_with_the_close_packet() {
    let mut server = Server::start();
    let mut socket = open_websocket(&server, SOCKETIO).await;
    socket.send(Message::text("40")).await.unwrap();
    assert!(next_text(&mut socket).await.unwrap().starts_with("40{"));
    assert_eq!(next_text(&mut socket).await.unwrap(), "42[\"auth\",{}]");
    let sid = open_polling(&server, SOCKETIO).await;
    let waiting = {
        let url = polling_url(&server, SOCKETIO, Some(&sid));
        let client = server.http1();
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.signal(libc::SIGTERM);
    assert_eq!(next_text(&mut socket).await.as_deref(), Some("1"));
    assert_eq!(next_text(&mut socket).await, None);
    assert_eq!(waiting.await.unwrap(), "1");
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

/// Sends a text message.
async fn send(socket: &mut Client, text: &str) {
    socket.send(Message::text(text)).await.unwrap();
}

/// The JSON after `prefix` of the next message.
async fn next_json(socket: &mut Client, prefix: &str) -> serde_json::Value {
    let text = next_text(socket).await.expect("a message");
    let json = text
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix}…, got {text}"));
    serde_json::from_str(json).unwrap()
}

#[tokio::test]
async fn sockets_of_several_namespaces_share_a_session_and_follow_topics() {
    let server = Server::start();
    let url = format!("ws://{}{SOCKETIO}?EIO=4&transport=websocket", server.addr());
    let (mut refused, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(next_text(&mut refused).await.unwrap().starts_with("0{"));
    send(&mut refused, "40/topics,").await;
    let refusal = next_json(&mut refused, "44/topics,").await;
    assert!(
        refusal["message"].as_str().unwrap().contains("?tenant="),
        "{refusal}"
    );
    assert!(
        refusal["data"]["peer"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{refusal}"
    );

    let tenant = crate::chat_api::default_tenant(&server);
    let url = format!(
        "ws://{}{SOCKETIO}?EIO=4&transport=websocket&tenant={tenant}",
        server.addr()
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert!(next_text(&mut socket).await.unwrap().starts_with("0{"));
    send(&mut socket, "40").await;
    let main = next_json(&mut socket, "40").await;
    assert_eq!(next_text(&mut socket).await.unwrap(), "42[\"auth\",{}]");
    send(&mut socket, "40/topics,").await;
    let topics = next_json(&mut socket, "40/topics,").await;
    assert_ne!(
        main["sid"], topics["sid"],
        "each namespace socket has its own id"
    );

    send(&mut socket, "42/topics,1[\"follow\",\"room-1\"]").await;
    let ack = next_json(&mut socket, "43/topics,1").await;
    assert_eq!(ack[0]["following"], 1, "{ack}");
    assert_eq!(ack[0]["namespace"], "/topics");
    assert!(ack[0]["position"].is_string(), "{ack}");
    let client = server.http1();
    let id =
        crate::clients::publish(&server, &client, "room-1", serde_json::json!({ "n": 1 })).await;
    let event = next_json(&mut socket, "42/topics,").await;
    assert_eq!(event[0], "event");
    assert_eq!(
        (event[1]["id"].as_str(), &event[1]["data"]["n"]),
        (Some(id.as_str()), &serde_json::json!(1))
    );

    send(&mut socket, "42/topics,2[\"unfollow\",\"room-1\"]").await;
    assert_eq!(
        next_text(&mut socket).await.unwrap(),
        "43/topics,2[[true,false]]"
    );
    crate::clients::publish(&server, &client, "room-1", serde_json::json!({ "n": 2 })).await;
    send(&mut socket, "42[\"message\",\"main\"]").await;
    assert_eq!(
        next_text(&mut socket).await.unwrap(),
        "42[\"message-back\",\"main\"]",
        "no event after unfollow"
    );
    send(&mut socket, "42/topics,[\"leave\"]").await;
    assert_eq!(
        next_text(&mut socket).await.unwrap(),
        "41/topics,",
        "server DISCONNECT"
    );
    send(&mut socket, "42[\"message\",\"still\"]").await;
    assert_eq!(
        next_text(&mut socket).await.unwrap(),
        "42[\"message-back\",\"still\"]"
    );
}
