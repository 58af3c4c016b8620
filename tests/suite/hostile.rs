//! Hostile and unlucky clients against the real binary: each case is bounded
//! by what the server process costs (RSS from `/proc/<pid>/status`) and by
//! `/healthz` still answering.

use crate::clients::admin_key;
use crate::harness::Server;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Resident memory of a process, in bytes.
fn rss_bytes(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS line");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A connection with a small receive buffer, so a client that never reads
/// makes the server's writes block quickly.
async fn connect_small(server: &Server) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(server.addr()).await.unwrap()
}

/// Opens a WebSocket on the topics API over `stream` (the handshake only).
async fn ws_handshake(server: &Server, stream: &mut TcpStream) {
    let request = format!(
        "GET /api/v1/topics/ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-api-key: {}\r\n\r\n",
        admin_key(server)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_head(stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
}

/// Reads one response head byte by byte (nothing after it is consumed).
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(Duration::from_secs(10), stream.read_u8())
            .await
            .expect("a response head in time")
            .expect("a response head");
        head.push(byte);
    }
    String::from_utf8(head).unwrap()
}

/// A masked client frame (mask key zero, payload under 126 bytes).
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![0x80 | opcode, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test]
async fn a_ping_flood_that_reads_no_pongs_is_closed_and_memory_stays_bounded() {
    let server = Server::builder().args(&["--write-timeout", "2s"]).start();
    let pid = server.pid();
    let mut flooder = connect_small(&server).await;
    ws_handshake(&server, &mut flooder).await;
    let before = rss_bytes(pid);
    let ping = client_frame(0x9, &[b'p'; 125]).repeat(64);
    let started = Instant::now();
    let mut peak = before;
    let mut cut_off = false;
    while started.elapsed() < Duration::from_secs(20) {
        match tokio::time::timeout(Duration::from_millis(200), flooder.write_all(&ping)).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => {
                cut_off = true;
                break;
            }
        }
        peak = peak.max(rss_bytes(pid));
    }
    let growth = peak.saturating_sub(before);
    eprintln!(
        "ping flood: RSS {} MiB -> peak {} MiB, cut off after {:?}",
        before >> 20,
        peak >> 20,
        started.elapsed()
    );
    assert!(cut_off, "the flooding client was never disconnected");
    assert!(growth < 48 << 20, "RSS grew by {} MiB", growth >> 20);
    let series = "tidings_stream_ends_total{transport=\"ws\",reason=\"slow-client\"}";
    let counted = server.metric(series).await;
    assert_eq!(counted, 1.0, "counted as a slow client");
    assert_eq!(server.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_gets_close_1007() {
    let server = Server::start();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    ws_handshake(&server, &mut stream).await;
    stream
        .write_all(&client_frame(0x1, &[b'{', 0xff, 0xfe, b'}']))
        .await
        .unwrap();
    let mut header = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut header))
        .await
        .expect("a close frame in time")
        .expect("a close frame, not a bare TCP close");
    assert_eq!(header[0], 0x88, "a final close frame");
    let mut payload = vec![0u8; usize::from(header[1] & 0x7f)];
    stream.read_exact(&mut payload).await.unwrap();
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1007);
}
