//! Node's `eventsource` package as an independent SSE client (what a
//! browser's EventSource does: reconnect after `retry:` with `Last-Event-ID`).
//!
//! The package is installed with npm into `target/node-clients` on first use;
//! when node or npm is missing or the install fails, [`EventSourceClient::spawn`]
//! returns `None` after printing why, and the calling test skips that part.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// The pinned package.
const PACKAGE: &str = "eventsource@3.0.7";

/// Installs the package once per test process; the reason when impossible.
fn install() -> Result<PathBuf, String> {
    static INSTALL: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
    let mut slot = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| {
        let prefix = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/node-clients");
        if prefix
            .join("node_modules/eventsource/package.json")
            .exists()
        {
            return Ok(prefix);
        }
        let output = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(PACKAGE)
            .output()
            .map_err(|err| format!("running npm: {err}"))?;
        if output.status.success() {
            Ok(prefix)
        } else {
            Err(format!(
                "npm install {PACKAGE} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    })
    .clone()
}

/// A running Node EventSource; killed on drop.
pub struct EventSourceClient {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl EventSourceClient {
    /// Opens `url`, listening for `types`; `None` (after saying why) when
    /// Node's EventSource cannot be had on this machine.
    pub fn spawn(url: &str, types: &[&str]) -> Option<Self> {
        Self::spawn_with_headers(url, &[], types)
    }

    /// [`EventSourceClient::spawn`] sending `headers` on every request
    /// (the package's `fetch` option; a browser's EventSource cannot).
    pub fn spawn_with_headers(url: &str, headers: &[(&str, &str)], types: &[&str]) -> Option<Self> {
        let prefix = match install() {
            Ok(prefix) => prefix,
            Err(reason) => {
                eprintln!("SKIPPED node EventSource client: {reason}");
                return None;
            }
        };
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/eventsource-client.cjs");
        let mut child = match Command::new("node")
            .arg(script)
            .arg(&prefix)
            .arg(url)
            .args(types)
            .env("EVENTSOURCE_HEADERS", headers_json(headers))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => {
                eprintln!("SKIPPED node EventSource client: running node: {err}");
                return None;
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("client printed non-JSON ({err}): {line}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Some(Self { child, lines })
    }

    /// The next line the client printed (an event, `open` or `error`).
    pub fn next(&self, timeout: Duration) -> Value {
        self.lines
            .recv_timeout(timeout)
            .unwrap_or_else(|_| panic!("the EventSource printed nothing within {timeout:?}"))
    }

    /// The next line that is neither `open` nor `error`.
    pub fn next_event(&self, timeout: Duration) -> Value {
        loop {
            let line = self.next(timeout);
            if line["type"] != "open" && line["type"] != "error" {
                return line;
            }
        }
    }
}

/// `headers` as the JSON object the client script reads.
fn headers_json(headers: &[(&str, &str)]) -> String {
    let object: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(name, value)| (name.to_string(), Value::from(*value)))
        .collect();
    Value::Object(object).to_string()
}

impl Drop for EventSourceClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
