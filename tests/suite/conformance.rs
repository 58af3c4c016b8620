//! WebSocket conformance: the Autobahn fuzzing client (cases 1–7 and 10:
//! framing, pings, reserved bits, opcodes, fragmentation, UTF-8, closing,
//! misc) against the WebSocket transport's echo route.
//!
//! Autobahn needs Python 2.7. The test looks for `TIDINGS_PYTHON2`, then
//! pyenv's 2.7, then `python2.7` on the PATH, installs the pinned
//! `autobahntestsuite` with pip into its own site directory under
//! `target/autobahn/` on first use (into a scratch directory renamed into
//! place only when pip succeeded, so a broken install is never reused), and
//! skips, saying why, only when no Python 2.7 exists or the install fails.
//! Nothing is installed outside `target/` and nothing installed elsewhere is
//! relied on: `wstest` runs with that directory added by `site.addsitedir`,
//! which also processes the `.pth` files that namespace packages such as
//! `zope.interface` need (a plain `PYTHONPATH` does not). Cases 9 (performance) and 12–13
//! (permessage-deflate, not supported by any maintained Rust WebSocket crate)
//! are left out.

use crate::harness::Server;
use std::path::{Path, PathBuf};
use std::process::Command;

const CASES: [&str; 8] = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*"];
const PASSING: [&str; 3] = ["OK", "NON-STRICT", "INFORMATIONAL"];
/// The pinned test suite (it pulls Twisted and the rest for Python 2.7).
const AUTOBAHN: &str = "autobahntestsuite==25.10.1";

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
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/autobahn");
    let site = root.join("site");
    if site.join("autobahntestsuite").exists() {
        return Ok(site);
    }
    let scratch = root.join(format!("site.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let output = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-warn-script-location",
        ])
        .arg("--target")
        .arg(&scratch)
        .arg(AUTOBAHN)
        .output()
        .map_err(|err| format!("running pip: {err}"))?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&scratch);
        return Err(format!(
            "pip install {AUTOBAHN} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    std::fs::rename(&scratch, &site)
        .map_err(|err| format!("moving the install into place: {err}"))?;
    Ok(site)
}

#[test]
fn websocket_transport_passes_the_autobahn_fuzzing_client() {
    let Some(python) = python2() else {
        eprintln!("SKIPPED autobahn: no Python 2.7 (set TIDINGS_PYTHON2 or install pyenv 2.7.18)");
        return;
    };
    let site = match install_autobahn(&python) {
        Ok(site) => site,
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
        .arg("-c")
        .arg(format!(
            "import site, sys; site.addsitedir({site:?}); from autobahntestsuite import wstest; sys.argv[0] = 'wstest'; wstest.run()",
            site = site.display().to_string()
        ))
        .args(["-m", "fuzzingclient", "-s"])
        .arg(&spec_path)
        .current_dir(work.path())
        .env_remove("PYTHONPATH")
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
