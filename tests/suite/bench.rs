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
