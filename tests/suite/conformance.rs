//! WebSocket conformance: the Autobahn fuzzing client (cases 1–7 and 10:
//! framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing,
//! misc) against the WebSocket transport's echo route.
//!
//! Autobahn needs Python 2.7. The test looks for `TIDINGS_PYTHON2`, then
//! pyenv's 2.7, then `python2.7` on the PATH, installs `autobahntestsuite`
//! into `target/autobahn` on first use, and skips, saying why, only when no
//! Python 2.7 exists or the install fails. Cases 9 (performance) and 12–13
//! (permessage-deflate, not supported by any maintained Rust WebSocket crate)
//! are left out.

use crate::harness::Server;
use std::path::{Path, PathBuf};
use std::process::Command;

const CASES: [&str; 8] = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"];
const PASSING: [&str; 3] = ["OK", "NON-STRICT", "INFORMATIONAL"];

fn python2() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("TIDINGS_PYTHON2").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|home| Path::new(&home).join(".pyenv/versions/2.7.18/bin/python")),
        Some(PathBuf::from("python2.7")),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import sys; assert sys.version_info[:2] == (2, 7)"])
            .output()
            .is_ok_and(|output| output.status.success())
    })
}

fn install_autobahn(python: &Path) -> Result<PathBuf, String> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/autobahn");
    if target.join("autobahntestsuite").exists() {
        return Ok(target);
    }
    let output = Command::new(python)
        .args(["-m", "pip", "install", "--quiet", "--target"])
        .arg(&target)
        .arg("autobahntestsuite")
        .output()
        .map_err(|err| format!("running pip: {err}"))?;
    if output.status.success() {
        Ok(target)
    } else {
        Err(format!(
            "pip install autobahntestsuite failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

#[test]
fn websocket_transport_passes_the_autobahn_fuzzing_client() {
    let Some(python) = python2() else {
        eprintln!("SKIPPED autobahn: no Python 2.7 (set TIDINGS_PYTHON2 or install pyenv 2.7.18)");
        return;
    };
    let packages = match install_autobahn(&python) {
        Ok(packages) => packages,
        Err(reason) => {
            eprintln!("SKIPPED autobahn: {reason}");
            return;
        }
    };
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("report");
    let spec = serde_json::json!({
        "outdir": report,
        "servers": [{ "agent": "tidings", "url": server.url("/__test/ws-echo").replace("http://", "ws://") }],
        "cases": CASES,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    let spec_path = work.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let output = Command::new(&python)
        .args(["-c", "import sys; from autobahntestsuite import wstest; sys.argv[0] = 'wstest'; wstest.run()"])
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(work.path())
        .env("PYTHONPATH", &packages)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wstest failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.join("index.json")).unwrap()).unwrap();
    let cases = index["tidings"].as_object().expect("results for our agent");
    assert!(cases.len() > 200, "all cases ran ({})", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .filter(|(_, result)| {
            [&result["behavior"], &result["behaviorClose"]]
                .iter()
                .any(|verdict| !PASSING.contains(&verdict.as_str().unwrap_or("")))
        })
        .map(|(case, result)| {
            format!(
                "{case}: {} / {}",
                result["behavior"], result["behaviorClose"]
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "Autobahn failures:\n{}",
        failures.join("\n")
    );
}
