//! Hostile and unlucky clients against the real binary: each case is bounded
//! by what the server process costs (RSS and file descriptors from
//! `/proc/<pid>/status` and `/proc/<pid>/fd`, CPU time from
//! `/proc/<pid>/stat`) and by `/healthz` still answering.

use crate::clients::{admin_key, publish_raw};
use crate::harness::{Server, json};
use serde_json::{Value, json};
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

/// Open file descriptors of a process.
fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// CPU time (user + system) a process has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after ") ".
    let rest = &stat[stat.rfind(") ").unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second of `/proc/<pid>/stat`.
fn ticks_per_second() -> u64 {
    // SAFETY: sysconf with a valid name has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).unwrap_or(100)
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

/// Waits until `condition` holds, polling; panics with `what` after `limit`.
async fn eventually<F: AsyncFn() -> bool>(limit: Duration, what: &str, condition: F) {
    let deadline = Instant::now() + limit;
    while !condition().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the server closed `stream` (reads until EOF or an error, up to `limit`).
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
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

/// Sends the HTTP/2 preface and an empty SETTINGS frame, opening no stream.
async fn idle_h2c(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn idle_http2_connections_are_closed() {
    let server = Server::builder()
        .args(&["--header-timeout", "1s", "--idle-timeout", "2s"])
        .start();
    let pid = server.pid();
    let baseline = fd_count(pid);
    // Never a request: closed after the first-request deadline.
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(idle_h2c(&server).await);
    }
    // One request, then idle: closed after the idle timeout.
    let client = server.h2();
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    eventually(Duration::from_secs(2), "the connections open", async || {
        fd_count(pid) >= baseline + 50
    })
    .await;
    let opened = fd_count(pid);
    for stream in &mut silent {
        assert!(
            closed_by_server(stream, Duration::from_secs(10)).await,
            "a stream-less h2c connection was closed"
        );
    }
    eventually(
        Duration::from_secs(10),
        "the server's descriptors back to its baseline",
        async || fd_count(pid) <= baseline,
    )
    .await;
    eprintln!(
        "idle h2c: fds {baseline} -> {opened} -> {} after the deadlines",
        fd_count(pid)
    );
}

#[tokio::test]
async fn idle_http2_over_tls_is_closed_too() {
    let server = Server::builder()
        .args(&["--tls-self-signed", "--idle-timeout", "2s"])
        .start();
    let pid = server.pid();
    let baseline = fd_count(pid);
    let client = server.tls_client(true);
    let response = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(fd_count(pid), baseline + 1, "the pooled connection is open");
    eventually(
        Duration::from_secs(10),
        "the idle h2 connection closed by the server",
        async || fd_count(pid) <= baseline,
    )
    .await;
}

#[tokio::test]
async fn an_http2_connection_may_open_at_most_h2_max_streams_streams() {
    let server = Server::builder().args(&["--h2-max-streams", "5"]).start();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let (sender, connection) = h2::client::Builder::new()
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(connection);
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::get(server.url("/healthz")).body(()).unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    assert_eq!(response.await.unwrap().status(), 200);
    assert_eq!(
        sender.current_max_send_streams(),
        5,
        "the server's SETTINGS bound the streams of one connection"
    );
}

#[tokio::test]
async fn an_http2_stream_stalled_by_flow_control_is_cut_by_the_write_timeout() {
    let server = Server::builder()
        .args(&["--write-timeout", "2s", "--idle-timeout", "60s"])
        .start();
    let tcp = TcpStream::connect(server.addr()).await.unwrap();
    let (mut sender, connection) = h2::client::Builder::new()
        .initial_window_size(1024)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .unwrap();
    let mut connection = tokio::spawn(connection);
    let request = http::Request::get(server.url("/api/v1/topics/stalled/stream"))
        .header("x-api-key", admin_key(&server))
        .header("accept", "text/event-stream")
        .body(())
        .unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    // Never read the body: the stream window (1 KiB) fills and stays full.
    let _body = response.into_body();
    let client = server.http1();
    let padding = "x".repeat(2000);
    for n in 0..20 {
        let event = json!({ "type": "test", "data": { "n": n, "pad": padding } });
        assert_eq!(
            publish_raw(&server, &client, "stalled", &event)
                .await
                .status(),
            201
        );
    }
    let ended = tokio::time::timeout(Duration::from_secs(15), &mut connection).await;
    assert!(
        ended.is_ok(),
        "the stalled HTTP/2 connection was never closed"
    );
    let series = "tidings_stream_ends_total{transport=\"h2\",reason=\"slow-client\"}";
    assert_eq!(server.metric(series).await, 1.0);
}

#[tokio::test]
async fn stalled_h2_preface_prefixes_cost_no_cpu() {
    let server = Server::builder().args(&["--header-timeout", "30s"]).start();
    let pid = server.pid();
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream.write_all(b"PRI * HT").await.unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_ticks(pid) - before;
    let per_second = ticks_per_second();
    eprintln!(
        "300 stalled preface prefixes: {used} ticks of CPU in 3 s ({}% of a core)",
        used * 100 / (3 * per_second)
    );
    assert!(
        used < per_second * 3 / 10,
        "the server used {used} ticks in 3 s waiting on stalled prefaces"
    );
    // The stalled ones still finish their preface and get HTTP/2.
    for stream in stalled.iter_mut().take(3) {
        stream
            .write_all(b"TP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut frame = [0u8; 9];
        stream.read_exact(&mut frame).await.unwrap();
        assert_eq!(frame[3], 0x4, "the server's SETTINGS frame");
    }
    assert_eq!(server.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_with_the_error_envelope() {
    let server = Server::start();
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-filler: ")
        .await
        .unwrap();
    // Whatever the server reads of the filler before answering is enough.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        stream.write_all(&vec![b'a'; 100 << 10]),
    )
    .await;
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    let mut body = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut body)).await;
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(body["error"]["code"], "VALIDATION_ERROR", "{body}");
    assert_eq!(body["error"]["details"]["limitBytes"], 64 << 10, "{body}");
}

#[tokio::test]
async fn unfinished_large_heads_hold_little_memory() {
    let server = Server::builder().args(&["--header-timeout", "30s"]).start();
    let pid = server.pid();
    let before = rss_bytes(pid);
    let filler = vec![b'a'; 400 << 10];
    let mut streams = Vec::new();
    for _ in 0..300 {
        let mut stream = TcpStream::connect(server.addr()).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nx-filler: ")
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.write_all(&filler)).await;
        streams.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_bytes(pid);
    eprintln!(
        "300 unfinished 400 KB heads: RSS {} MiB -> {} MiB",
        before >> 20,
        after >> 20
    );
    assert!(
        after.saturating_sub(before) < 40 << 20,
        "RSS grew by {} MiB",
        after.saturating_sub(before) >> 20
    );
    assert_eq!(server.get("/healthz").await.status(), 200);
}

/// Opens a raw event stream on `topic` (held open by the server).
async fn open_stream(server: &Server, key: &str) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(server.addr()).await.ok()?;
    let request = format!(
        "GET /api/v1/topics/held/stream HTTP/1.1\r\nhost: x\r\naccept: text/event-stream\r\nx-api-key: {key}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    Some(stream)
}

#[tokio::test]
async fn at_the_connection_limit_health_checks_are_still_answered() {
    let server = Server::builder()
        .fd_limit(256)
        .args(&["--header-timeout", "30s"])
        .start();
    let pid = server.pid();
    let key = admin_key(&server);
    let mut held = Vec::new();
    for _ in 0..300 {
        if let Some(stream) = open_stream(&server, &key).await {
            held.push(stream);
        }
    }
    // Idle connections queued ahead of the probe do not hold its way up.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(idle_h2c(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds = fd_count(pid);
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), server.get("/healthz")).await;
    eprintln!(
        "300 streams and 200 idle h2c against RLIMIT_NOFILE 256: {fds} fds open; /healthz answered: {} after {:?}",
        answer.is_ok(),
        started.elapsed()
    );
    let answer = answer.expect("/healthz answered at the connection limit");
    assert_eq!(json(answer).await["data"]["status"], "ok");
    assert!(fds < 256, "{fds} descriptors open");
    assert!(
        !server.stderr().contains("Too many open files"),
        "{}",
        server.stderr()
    );
    // A stream beyond the limit is refused with the error envelope, not left hanging.
    let refused = server
        .http1()
        .get(server.url("/api/v1/topics/held/stream"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(json(refused).await["error"]["code"], "SERVICE_UNAVAILABLE");
}

#[tokio::test]
async fn the_per_ip_cap_refuses_connections_beyond_it() {
    let server = Server::builder()
        .args(&["--max-connections-per-ip", "5", "--per-ip-limit-loopback"])
        .start();
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(idle_h2c(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sixth = idle_h2c(&server).await;
    let mut first_frame = [0u8; 9];
    let refused = tokio::time::timeout(Duration::from_secs(5), sixth.read(&mut first_frame))
        .await
        .expect("the sixth connection is answered at once");
    assert!(
        matches!(refused, Ok(0) | Err(_)),
        "the sixth connection from one address is closed"
    );
    drop(held.pop());
    eventually(
        Duration::from_secs(5),
        "a slot freed for the address",
        async || {
            let mut stream = idle_h2c(&server).await;
            let mut frame = [0u8; 9];
            matches!(
                tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut frame)).await,
                Ok(Ok(_))
            )
        },
    )
    .await;
    let refused = server
        .metric("tidings_connections_refused_total{reason=\"per-ip\"}")
        .await;
    assert!(refused >= 1.0, "refusals are counted ({refused})");
}
