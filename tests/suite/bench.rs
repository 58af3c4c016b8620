//! `tidings bench` end to end: each scenario runs against a real server at a
//! small scale and reports nothing lost, nothing duplicated.

use crate::harness::{Server, binary};
use std::process::Command;

fn bench(server: &Server, args: &[&str]) -> serde_json::Value {
    let output = Command::new(binary())
        .arg("bench")
        .args(args)
        .args(["--url", &server.base, "--quiet", "--json", "--data-dir"])
        .arg(&server.data_dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[test]
fn every_scenario_runs_clean_against_a_real_server() {
    let server = Server::start();
    let runs: [&[&str]; 5] = [
        &["publish", "-c", "4", "--duration", "1s"],
        &[
            "fanout",
            "--subscribers",
            "20",
            "--transport",
            "sse",
            "--rate",
            "50",
            "--duration",
            "2s",
        ],
        &[
            "fanout",
            "--subscribers",
            "20",
            "--transport",
            "ws",
            "--rate",
            "50",
            "--duration",
            "2s",
        ],
        &[
            "reconnect",
            "--subscribers",
            "20",
            "--topics",
            "2",
            "--rate",
            "50",
            "--duration",
            "3s",
            "--drop-after",
            "1s",
        ],
        &["connections", "--connections", "50", "--hold", "1s"],
    ];
    for args in runs {
        let report = bench(&server, args);
        assert_eq!(report["passed"], true, "{args:?}: {report}");
    }
}
