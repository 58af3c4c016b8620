//! `tidings bench` end to end: the tool, as its own process, against a real
//! server; every scenario runs at a small scale, and every delivery run must
//! account for every event (nothing lost, nothing duplicated).

use crate::harness::{Server, binary};
use serde_json::Value;
use std::process::Command;

/// Runs `tidings bench ARGS --json` against `server` and returns its result.
fn bench(server: &Server, args: &[&str]) -> Value {
    let output = Command::new(binary())
        .arg("bench")
        .args(args)
        .args(["--url", &server.base, "--quiet", "--json", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .expect("the bench runs");
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

/// Asserts that a delivery run received exactly what it had to.
fn assert_complete(result: &Value) {
    let delivery = &result["delivery"];
    assert_eq!(result["passed"], true, "{result}");
    assert_eq!(delivery["lost"], 0, "{result}");
    assert_eq!(delivery["duplicated"], 0, "{result}");
    assert!(delivery["expected"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(delivery["deliveries"], delivery["expected"]);
    assert!(delivery["latency"]["count"].as_u64().is_some_and(|n| n > 0));
}

#[test]
fn publish_and_connections_run_clean_against_a_real_server() {
    let server = Server::start();
    let runs: [&[&str]; 2] = [
        &["publish", "-c", "4", "--duration", "1s"],
        &["connections", "--connections", "50", "--hold", "1s"],
    ];
    for args in runs {
        let report = bench(&server, args);
        assert_eq!(report["passed"], true, "{args:?}: {report}");
    }
}

#[test]
fn fanout_delivers_everything_over_sse_and_websocket() {
    let server = Server::start();
    for transport in ["sse", "ws"] {
        let result = bench(
            &server,
            &[
                "fanout",
                "--subscribers",
                "20",
                "--topics",
                "2",
                "--rate",
                "200",
                "--duration",
                "1s",
                "--transport",
                transport,
            ],
        );
        assert_complete(&result);
        assert_eq!(result["setup"]["server"], "tidings");
    }
}

#[test]
fn fanout_measures_discussion_comments_to_their_stream() {
    let server = Server::start();
    let result = bench(
        &server,
        &[
            "fanout",
            "--surface",
            "discussions",
            "--subscribers",
            "20",
            "--topics",
            "2",
            "--rate",
            "50",
            "--duration",
            "1s",
        ],
    );
    assert_complete(&result);
    assert_eq!(result["setup"]["surface"], "discussions");
}

#[test]
fn reconnect_resumes_after_the_last_event_without_loss() {
    let server = Server::start();
    let result = bench(
        &server,
        &[
            "reconnect",
            "--subscribers",
            "20",
            "--topics",
            "2",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--drop-after",
            "1s",
        ],
    );
    assert_complete(&result);
    assert_eq!(result["catchUp"]["caughtUp"], 20);
}

/// A server on TLS with its generated certificate, and the bench flag that trusts it.
fn tls_server() -> (Server, String) {
    let server = Server::builder().args(&["--tls-self-signed"]).start();
    let cert = server.data_dir.join("tls/localhost-cert.pem");
    (server, cert.display().to_string())
}

/// How many stream requests came over HTTP/2 (from the access log).
fn h2_stream_requests(server: &Server) -> usize {
    server
        .stderr()
        .lines()
        .filter(|line| line.contains(r#"protocol="h2""#) && line.contains("/stream "))
        .count()
}

/// A small fanout run with `extra` flags.
fn small_fanout<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "fanout",
        "--subscribers",
        "20",
        "--topics",
        "2",
        "--rate",
        "100",
        "--duration",
        "1s",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn fanout_over_tls_delivers_everything_over_sse_and_websocket() {
    let (server, cert) = tls_server();
    assert!(server.base.starts_with("https://"), "{}", server.base);
    for transport in ["sse", "ws"] {
        let result = bench(
            &server,
            &small_fanout(&["--transport", transport, "--ca-file", &cert]),
        );
        assert_complete(&result);
    }
    let result = bench(&server, &small_fanout(&["--insecure"]));
    assert_complete(&result);
}

#[test]
fn sse_subscribers_share_http2_connections_over_h2c_and_tls() {
    let plain = Server::start();
    let result = bench(&plain, &small_fanout(&["--http2", "--h2-streams", "8"]));
    assert_complete(&result);
    let (server, cert) = tls_server();
    let result = bench(
        &server,
        &small_fanout(&["--http2", "--h2-streams", "8", "--ca-file", &cert]),
    );
    assert_complete(&result);
    for server in [&plain, &server] {
        let streams = h2_stream_requests(server);
        assert!(
            streams >= 20,
            "20 subscribers came as h2 streams: {streams}"
        );
    }
    let result = bench(
        &server,
        &[
            "reconnect",
            "--http2",
            "--subscribers",
            "20",
            "--rate",
            "100",
            "--duration",
            "2s",
            "--drop-after",
            "1s",
            "--insecure",
        ],
    );
    assert_complete(&result);
    assert_eq!(result["catchUp"]["caughtUp"], 20);
}

#[test]
fn idle_connections_are_measured_over_tls_and_http2() {
    let (server, cert) = tls_server();
    for extra in [&[][..], &["--http2"][..]] {
        let mut args = vec!["connections", "--connections", "40", "--hold", "1s"];
        args.extend_from_slice(&["--ca-file", &cert]);
        args.extend_from_slice(extra);
        let report = bench(&server, &args);
        assert_eq!(report["passed"], true, "{args:?}: {report}");
    }
}

#[test]
fn tls_and_http2_flags_are_checked() {
    let (server, cert) = tls_server();
    let plain = Server::start();
    let run = |server: &Server, args: &[&str]| {
        Command::new(binary())
            .arg("bench")
            .args(args)
            .args(["--url", &server.base, "--quiet", "--data-dir"])
            .arg(&server.data_dir)
            .output()
            .expect("the bench runs")
    };
    let untrusted = run(&server, &small_fanout(&[]));
    assert_eq!(untrusted.status.code(), Some(1), "{untrusted:?}");
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("certificate"),
        "{untrusted:?}"
    );
    for (server, args) in [
        (&plain, small_fanout(&["--ca-file", &cert])),
        (&plain, small_fanout(&["--insecure"])),
        (
            &server,
            small_fanout(&["--http2", "--transport", "ws", "--insecure"]),
        ),
        (&server, small_fanout(&["--ca-file", "/nonexistent.pem"])),
    ] {
        let output = run(server, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
}

/// Runs `tidings bench ARGS` against `server` without judging the outcome.
fn bench_output(server: &Server, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .arg("bench")
        .args(args)
        .args(["--url", &server.base, "--quiet", "--json", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .expect("the bench runs")
}

/// Asserts that a closed-interval run got only 200s with its intervals' bytes.
fn assert_all_identical(figures: &Value) {
    let requests = figures["requests"].as_u64().expect("requests");
    assert!(requests > 0, "{figures}");
    assert_eq!(figures["identical"], requests, "{figures}");
    assert_eq!(figures["mismatched"], 0, "{figures}");
    assert_eq!(figures["errors"], 0, "{figures}");
}

#[test]
fn poll_closed_answers_every_connection_with_the_same_bytes() {
    let server = Server::start();
    let result = bench(
        &server,
        &[
            "poll",
            "--mode",
            "closed",
            "-c",
            "8",
            "--threads",
            "2",
            "--intervals",
            "2",
            "--duration",
            "1s",
        ],
    );
    assert_eq!(result["passed"], true, "{result}");
    assert_all_identical(&result["tidings"]);
    let sizes = result["setup"]["bodyBytes"].as_array().expect("sizes");
    assert_eq!(sizes.len(), 2, "{result}");
    assert!(
        sizes.iter().all(|size| size.as_u64() > Some(100)),
        "every interval has its chat: {result}"
    );
    assert!(result["nginx"].is_null());
}

#[test]
fn poll_closed_measures_nginx_serving_the_same_bytes_in_the_same_run() {
    let server = Server::start();
    let result = bench(
        &server,
        &[
            "poll",
            "--mode",
            "closed",
            "-c",
            "4",
            "--intervals",
            "2",
            "--duration",
            "1s",
            "--peer",
            "nginx",
        ],
    );
    assert_eq!(result["passed"], true, "{result}");
    assert_all_identical(&result["tidings"]);
    assert_all_identical(&result["nginx"]);
    assert!(
        result["nginx"]["version"]
            .as_str()
            .is_some_and(|v| v.contains("nginx"))
    );
    assert!(result["ratio"].as_f64().is_some_and(|ratio| ratio > 0.0));
}

#[test]
fn poll_live_viewers_get_every_interval_with_and_without_ingest() {
    let server = Server::start();
    let pid = server.pid().to_string();
    let result = bench(
        &server,
        &[
            "poll",
            "--mode",
            "live",
            "--viewers",
            "20",
            "--viewers-per-connection",
            "2",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--lead",
            "50ms",
            "--ingest",
            "--hearts-rate",
            "40",
            "--chats-rate",
            "10",
            "--answers-rate",
            "200",
            "--ingest-connections",
            "4",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(result["passed"], true, "{result}");
    assert_eq!(result["setup"]["connections"], 10, "{result}");
    for phase in ["quiet", "ingest"] {
        let figures = &result[phase];
        // Each of 20 viewers polls each of 8 intervals; a loaded debug build may lag by a poll or two.
        assert!(
            figures["polls"].as_u64().is_some_and(|polls| polls >= 100),
            "{phase}: {result}"
        );
        assert_eq!(figures["otherStatus"], 0, "{phase}: {result}");
        assert!(figures["rssBytes"].as_u64().is_some_and(|rss| rss > 0));
        assert!(figures["delayFromClose"]["count"].as_u64() > Some(0));
    }
    let writes = &result["ingest"]["writes"]["kinds"];
    for kind in ["hearts", "chats", "answers"] {
        assert!(
            writes[kind]["accepted"].as_u64().is_some_and(|n| n > 0),
            "{kind}: {result}"
        );
        assert_eq!(writes[kind]["refused"], 0, "{kind}: {result}");
    }
    // 60 answers from 20 viewers: every viewer answered each quiz once, and new quizzes opened.
    assert!(
        result["ingest"]["writes"]["quizzes"].as_u64() > Some(1),
        "{result}"
    );
    let identity = &result["identity"];
    assert!(identity["compared"].as_u64() > Some(200), "{result}");
    assert_eq!(identity["mismatched"], 0, "{result}");
}

#[test]
fn poll_with_a_wrong_realm_secret_fails_with_the_servers_answer() {
    let server = Server::start();
    let output = bench_output(
        &server,
        &[
            "poll",
            "--duration",
            "1s",
            "--jwt-secret",
            "not-the-realm-secret-0123456789-abcdefghijklmnop",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("401"),
        "{output:?}"
    );
    let refused = bench_output(&server, &["poll", "--mode", "live", "--peer", "nginx"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

/// `tidings bench chat --mode MODE` at a small scale, with `extra` flags.
fn chat(server: &Server, mode: &str, extra: &[&str]) -> Value {
    let mut args = vec!["chat", "--mode", mode];
    args.extend_from_slice(extra);
    bench(server, &args)
}

/// Asserts the chat run's set-up and that every member got every message once.
fn assert_chat_complete(result: &Value, users: u64, memberships: u64) {
    assert_complete(result);
    assert_eq!(result["setup"]["users"], users, "{result}");
    assert_eq!(result["setup"]["memberships"], memberships, "{result}");
    assert_eq!(result["delivery"]["misrouted"], 0, "{result}");
    assert_eq!(result["frames"]["reachedNonMembers"], 0, "{result}");
    assert!(result["frames"]["frames"].as_u64().is_some_and(|n| n > 0));
}

#[test]
fn chat_fanout_delivers_every_message_to_every_member_once() {
    let server = Server::start();
    let shape = [
        "--users",
        "40",
        "--rooms",
        "12",
        "--rooms-per-user",
        "3",
        "--big-rooms",
        "2",
        "--big-room-size",
        "15",
        "--rate",
        "100",
        "--duration",
        "1s",
    ];
    let result = chat(&server, "fanout", &shape);
    assert_chat_complete(&result, 40, 120);
    // 100 messages over 12 rooms: 2 big rooms of 15, 10 small rooms sharing 90 memberships.
    let published = result["publishing"]["events"].as_u64().expect("events");
    assert!(published >= 90, "{result}");
    assert_eq!(result["setup"]["bigRooms"], 2);
}

#[test]
fn chat_big_room_groups_messages_into_frames() {
    let server = Server::start();
    let shape = ["--users", "60", "--rate", "200", "--duration", "1s"];
    let result = chat(&server, "big-room", &shape);
    assert_chat_complete(&result, 60, 60);
    let frames = &result["frames"];
    let delivered = result["delivery"]["deliveries"]
        .as_u64()
        .expect("deliveries");
    assert!(
        frames["frames"].as_u64().is_some_and(|n| n <= delivered),
        "{result}"
    );
    assert!(
        frames["messagesPerFrame"]
            .as_f64()
            .is_some_and(|n| n >= 1.0)
    );
}

#[test]
fn chat_reconnect_resumes_every_user_without_loss() {
    let server = Server::start();
    let shape = [
        "--users",
        "30",
        "--rooms",
        "6",
        "--rooms-per-user",
        "3",
        "--rate",
        "60",
        "--duration",
        "2s",
        "--drop-after",
        "1s",
    ];
    let result = chat(&server, "reconnect", &shape);
    assert_chat_complete(&result, 30, 90);
    assert_eq!(result["catchUp"]["caughtUp"], 30, "{result}");
    assert_eq!(result["delivery"]["reconnects"], 30, "{result}");
}

#[test]
fn chat_idle_reads_memory_with_one_and_several_rooms_per_user() {
    let server = Server::start();
    let shape = [
        "--users",
        "30",
        "--rooms",
        "10",
        "--rooms-per-user",
        "4",
        "--hold",
        "0s",
    ];
    let result = chat(&server, "idle", &shape);
    assert_eq!(result["passed"], true, "{result}");
    let phases = result["phases"].as_array().expect("two phases");
    assert_eq!(phases.len(), 2);
    for (phase, rooms) in phases.iter().zip([1, 4]) {
        assert_eq!(phase["roomsPerUser"], rooms, "{result}");
        assert_eq!(phase["openAtEnd"], 30, "{result}");
        assert!(phase["rssHeldBytes"].as_u64().is_some_and(|n| n > 0));
    }
    assert!(result["bytesPerMembership"].is_number(), "{result}");
}

#[test]
fn chat_refuses_shapes_that_cannot_be_laid_out() {
    let server = Server::start();
    let refused = bench_output(
        &server,
        &[
            "chat",
            "--users",
            "10",
            "--rooms",
            "3",
            "--rooms-per-user",
            "5",
            "--big-rooms",
            "0",
        ],
    );
    assert_eq!(refused.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rooms-per-user"));
}

/// The socket.io version the reference server runs.
const SOCKET_IO: &str = "socket.io@4.8.4";

/// The Node.js socket.io reference (`scripts/socketio-reference.cjs`) on a
/// free port of 127.0.0.1; killed on drop.
struct SocketIoReference {
    child: std::process::Child,
    url: String,
}

impl SocketIoReference {
    /// Installs socket.io under `target/sio-reference` (once) and starts the
    /// reference; `None` (after printing why) when node or npm cannot.
    fn start() -> Option<Self> {
        use std::io::{BufRead, BufReader};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let prefix = root.join("target/sio-reference");
        if !prefix.join("node_modules/socket.io/package.json").exists() {
            let installed = Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                .arg(&prefix)
                .arg(SOCKET_IO)
                .output();
            match installed {
                Ok(output) if output.status.success() => {}
                Ok(output) => {
                    let reason = String::from_utf8_lossy(&output.stderr).into_owned();
                    eprintln!("SKIPPED socketio bench: npm install {SOCKET_IO} failed: {reason}");
                    return None;
                }
                Err(err) => {
                    eprintln!("SKIPPED socketio bench: running npm: {err}");
                    return None;
                }
            }
        }
        let mut child = match Command::new("node")
            .arg(root.join("scripts/socketio-reference.cjs"))
            .env("PORT", "0")
            .env("SIO_PREFIX", &prefix)
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                eprintln!("SKIPPED socketio bench: running node: {err}");
                return None;
            }
        };
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the reference prints its port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the reference did not start: {line:?}"));
        Some(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// Runs `tidings bench socketio ARGS --json` against the reference.
    fn bench(&self, args: &[&str]) -> Value {
        socketio_bench(&["--target", &self.url, "--target-kind", "reference"], args)
    }
}

/// Runs `tidings bench socketio TARGET ARGS --quiet --json`; its result.
fn socketio_bench(target: &[&str], args: &[&str]) -> Value {
    let output = Command::new(binary())
        .args(["bench", "socketio"])
        .args(target)
        .args(["--quiet", "--json"])
        .args(args)
        .output()
        .expect("the bench runs");
    assert!(
        output.status.success(),
        "bench socketio {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

impl Drop for SocketIoReference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn socketio_broadcasts_resyncs_and_idles_on_the_node_reference() {
    let Some(reference) = SocketIoReference::start() else {
        return;
    };
    let small = ["--clients", "50", "--rate", "50"];
    let broadcast = reference.bench(&[&small[..], &["--duration", "2s"]].concat());
    assert_eq!(broadcast["passed"], true, "{broadcast}");
    assert_eq!(broadcast["mode"], "broadcast");
    let run = &broadcast["runs"][0];
    assert_eq!(run["server"], "reference", "{broadcast}");
    assert_eq!(run["setup"]["clients"], 50);
    let delivery = &run["delivery"];
    assert_eq!(delivery["lost"], 0, "{broadcast}");
    assert_eq!(delivery["duplicated"], 0, "{broadcast}");
    assert_eq!(delivery["foreign"], 0, "{broadcast}");
    let expected = delivery["expected"].as_u64().expect("expected");
    assert_eq!(
        expected,
        50 * run["posting"]["acknowledged"].as_u64().expect("posts")
    );
    assert!(expected >= 50 * 90, "about 100 posts in 2 s: {broadcast}");
    assert_eq!(delivery["received"], expected);
    assert_eq!(delivery["live"], expected);
    assert!(delivery["deliveriesPerSecond"].as_f64() > Some(0.0));
    assert_eq!(delivery["latency"]["count"], expected);
    assert!(delivery["latency"]["p50Us"].as_u64() > Some(0));
    assert!(delivery["latency"]["p99Us"].as_u64() >= delivery["latency"]["p50Us"].as_u64());
    let reconnect = reference.bench(
        &[
            &small[..],
            &[
                "--mode",
                "reconnect",
                "--duration",
                "3s",
                "--drop-after",
                "1s",
            ],
        ]
        .concat(),
    );
    assert_eq!(reconnect["passed"], true, "{reconnect}");
    let run = &reconnect["runs"][0];
    assert_eq!(run["catchUp"]["caughtUp"], 50, "{reconnect}");
    assert!(run["catchUp"]["allCaughtUpMicros"].as_u64() > Some(0));
    assert!(
        run["catchUp"]["syncPages"].as_u64() >= Some(50),
        "every client synced: {reconnect}"
    );
    assert_eq!(run["delivery"]["lost"], 0, "{reconnect}");
    assert_eq!(run["delivery"]["duplicated"], 0, "{reconnect}");
    assert_eq!(run["delivery"]["received"], run["delivery"]["expected"]);
    assert_eq!(run["delivery"]["reconnects"], 50);
    let pid = reference.child.id().to_string();
    let idle = reference.bench(&[
        "--clients",
        "50",
        "--mode",
        "idle",
        "--hold",
        "0s",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(idle["passed"], true, "{idle}");
    let run = &idle["runs"][0];
    assert_eq!(run["joinedAtEnd"], 50, "{idle}");
    assert!(run["rssBeforeBytes"].as_u64() > Some(0), "{idle}");
    assert!(run["rssHeldBytes"].as_u64() > Some(0), "{idle}");
    assert!(run["bytesPerConnection"].is_number(), "{idle}");
}

#[test]
fn socketio_broadcasts_and_resyncs_on_tidings_channels() {
    let server = Server::start();
    let data_dir = server.data_dir.to_string_lossy().to_string();
    let target = [
        "--target",
        &server.base,
        "--target-kind",
        "tidings",
        "--data-dir",
        &data_dir,
    ];
    let small = ["--clients", "50", "--rate", "50"];
    let broadcast = socketio_bench(&target, &[&small[..], &["--duration", "2s"]].concat());
    assert_eq!(broadcast["passed"], true, "{broadcast}");
    let delivery = &broadcast["runs"][0]["delivery"];
    assert_eq!(
        (delivery["lost"].as_u64(), delivery["duplicated"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(
        delivery["expected"].as_u64() >= Some(50 * 90),
        "{broadcast}"
    );
    assert_eq!(delivery["live"], delivery["expected"], "{broadcast}");
    let reconnect = [
        &small[..],
        &[
            "--mode",
            "reconnect",
            "--duration",
            "3s",
            "--drop-after",
            "1s",
        ],
    ]
    .concat();
    let reconnect = socketio_bench(&target, &reconnect);
    assert_eq!(reconnect["passed"], true, "{reconnect}");
    let run = &reconnect["runs"][0];
    assert_eq!(run["catchUp"]["caughtUp"], 50, "{reconnect}");
    assert_eq!(run["delivery"]["lost"], 0, "{reconnect}");
    assert_eq!(run["delivery"]["duplicated"], 0, "{reconnect}");
}

#[test]
fn tickets_notify_delivers_every_assignment_and_reassignment_once() {
    let server = Server::start();
    let result = bench(
        &server,
        &[
            "tickets",
            "--mode",
            "notify",
            "--users",
            "20",
            "--rate",
            "20",
            "--duration",
            "3s",
            "--change",
            "mixed",
            "--publishers",
            "4",
        ],
    );
    assert_complete(&result);
    let delivery = &result["delivery"];
    assert_eq!(delivery["extra"], 0, "{result}");
    assert_eq!(delivery["unexpected"], 0, "{result}");
    let changes = &result["changes"];
    // 20 changes/s for 3 s: changes 0..59, half creates, half reassignments.
    assert_eq!(changes["sent"], 60, "{result}");
    assert_eq!(changes["acknowledged"], 60, "{result}");
    assert_eq!(changes["failed"], 0, "{result}");
    // 30 assignments by creation and 30 by reassignment; senders 1 and 3 make
    // the 30 reassignments over their 4 pool tickets each, so 30 − 8 of them
    // also tell a previous assignee.
    assert_eq!(delivery["expected"], 82, "{result}");
    assert_eq!(result["setup"]["users"], 20);
}

#[test]
fn tickets_refuses_unusable_flags() {
    let server = Server::start();
    let cases: [&[&str]; 3] = [
        &["tickets", "--mode", "sla", "--tickets", "5", "--due", "6"],
        &["tickets", "--mode", "sla", "--due-in", "3s"],
        &["tickets", "--users", "1"],
    ];
    for args in cases {
        let refused = bench_output(&server, args);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {refused:?}");
    }
}
