//! Independent WebSocket clients of the chat stream: Python's `websockets`
//! and Node's `ws`, each a small script in `tests/suite/chat_clients/` run
//! as a child process. What the test writes to the child's stdin is sent as
//! text messages; every line the child prints (a frame, or its last line:
//! `close`, `refused`, `error`, `timeout`) comes back as JSON.
//!
//! Each package is installed on first use under `target/chat-clients/`
//! (a virtual environment `venv`, an npm prefix `node`), pinned, into a
//! scratch directory renamed into place only when the install succeeded
//! (so a broken install is never reused and parallel test processes never
//! see half of one), once per test process. When python3 (with venv), node
//! or npm is missing, or the install fails, [`WsClient::open`] prints why
//! and returns `None`; the calling test then returns.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a test waits for the client's next line before failing.
const LINE_WAIT: Duration = Duration::from_secs(20);
/// A client process ends by itself after this many seconds (a safety net
/// for a test process that died without killing it).
const CLIENT_LIFETIME_SECS: u64 = 300;

/// Which independent client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `websockets` on Python 3.
    Python,
    /// `ws` on Node.
    Node,
    /// `socket.io-client` on Node (its script reads commands, not frames).
    SocketIo,
}

impl Kind {
    /// The pinned package.
    fn pin(self) -> &'static str {
        match self {
            Kind::Python => "websockets==15.0.1",
            Kind::Node => "ws@8.18.0",
            Kind::SocketIo => "socket.io-client@4.8.4",
        }
    }

    /// The install's directory under `target/chat-clients/`.
    fn dir(self) -> &'static str {
        match self {
            Kind::Python => "venv",
            Kind::Node => "node",
            Kind::SocketIo => "socketio",
        }
    }

    /// The commands installing the pinned package into `scratch`.
    fn install_commands(self, scratch: &Path) -> Vec<Command> {
        match self {
            Kind::Python => {
                let mut venv = Command::new("python3");
                venv.args(["-m", "venv"]).arg(scratch);
                let mut pip = Command::new(scratch.join("bin/python"));
                pip.args(["-m", "pip", "install", "--quiet"])
                    .arg("--disable-pip-version-check")
                    .arg(self.pin());
                vec![venv, pip]
            }
            Kind::Node | Kind::SocketIo => {
                let mut npm = Command::new("npm");
                npm.args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                    .arg(scratch)
                    .arg(self.pin());
                vec![npm]
            }
        }
    }

    /// The command running the client script with `config`, the package
    /// being installed in `dir`.
    fn client_command(self, dir: &Path, config: &str) -> Command {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/suite/chat_clients");
        match self {
            Kind::Python => {
                let mut python = Command::new(dir.join("bin/python"));
                python.arg(scripts.join("ws_client.py")).arg(config);
                python
            }
            Kind::Node | Kind::SocketIo => {
                let script = match self {
                    Kind::SocketIo => "sio_client.cjs",
                    _ => "ws_client.cjs",
                };
                let mut node = Command::new("node");
                node.arg(scripts.join(script)).arg(dir).arg(config);
                node
            }
        }
    }

    /// The directory holding the installed package (`node_modules` in it
    /// for Node), installing it first; the reason when impossible.
    pub fn package_dir(self) -> Result<PathBuf, String> {
        self.installed()
    }

    /// The install, made once per test process; the reason when impossible.
    fn installed(self) -> Result<PathBuf, String> {
        static PYTHON: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
        static NODE: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
        static SOCKET_IO: Mutex<Option<Result<PathBuf, String>>> = Mutex::new(None);
        let slot = match self {
            Kind::Python => &PYTHON,
            Kind::Node => &NODE,
            Kind::SocketIo => &SOCKET_IO,
        };
        let mut slot = slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.get_or_insert_with(|| self.install()).clone()
    }

    /// Installs the pinned package unless its directory already holds it.
    fn install(self) -> Result<PathBuf, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/chat-clients");
        let dir = root.join(self.dir());
        if self.holds_pin(&dir) {
            return Ok(dir);
        }
        let scratch = root.join(format!("{}.partial-{}", self.dir(), std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&root).map_err(|err| format!("creating {root:?}: {err}"))?;
        let installed = self
            .install_commands(&scratch)
            .into_iter()
            .try_for_each(run_step)
            .and_then(|()| {
                std::fs::write(scratch.join("pinned"), self.pin())
                    .map_err(|err| format!("marking the install: {err}"))
            });
        if let Err(reason) = installed {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(reason);
        }
        // An install of another pin is replaced; another process may have won the race.
        let _ = std::fs::remove_dir_all(&dir);
        let moved = std::fs::rename(&scratch, &dir);
        let _ = std::fs::remove_dir_all(&scratch);
        match moved {
            Ok(()) => Ok(dir),
            Err(_) if self.holds_pin(&dir) => Ok(dir),
            Err(err) => Err(format!("moving the install into {dir:?}: {err}")),
        }
    }

    /// Whether `dir` is a finished install of this pin.
    fn holds_pin(self, dir: &Path) -> bool {
        std::fs::read_to_string(dir.join("pinned")).is_ok_and(|pin| pin == self.pin())
    }
}

/// Runs one install step; the reason when it fails.
fn run_step(mut command: Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|err| format!("running {command:?}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A running client process; killed on drop.
pub struct WsClient {
    /// Which client this is.
    pub kind: Kind,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<Value>,
}

impl WsClient {
    /// Starts `kind`'s client connecting to `url` with `headers`; `None`
    /// (after printing why) when that client cannot be had here.
    pub fn open(kind: Kind, url: &str, headers: &[(&str, &str)]) -> Option<Self> {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value)))
            .collect();
        Self::open_with(kind, json!({ "url": url, "headers": headers }))
    }

    /// Starts `kind`'s client with its script's whole `config` (the
    /// lifetime added); `None` (after printing why) when it cannot be had.
    pub fn open_with(kind: Kind, mut config: Value) -> Option<Self> {
        config["timeout"] = json!(CLIENT_LIFETIME_SECS);
        let dir = match kind.installed() {
            Ok(dir) => dir,
            Err(reason) => {
                eprintln!("SKIPPED {kind:?} WebSocket client: {reason}");
                return None;
            }
        };
        let spawned = kind
            .client_command(&dir, &config.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) => {
                eprintln!("SKIPPED {kind:?} WebSocket client: starting it: {err}");
                return None;
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|err| panic!("the client printed non-JSON ({err}): {line}"));
                if sender.send(value).is_err() {
                    return;
                }
            }
        });
        Some(Self {
            kind,
            stdin: child.stdin.take(),
            child,
            lines,
        })
    }

    /// The next line the client printed, or `None` when nothing came within `wait`.
    pub async fn line_within(&mut self, wait: Duration) -> Option<Value> {
        tokio::time::timeout(wait, self.lines.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next line the client printed.
    pub async fn line(&mut self) -> Value {
        let kind = self.kind;
        self.line_within(LINE_WAIT)
            .await
            .unwrap_or_else(|| panic!("the {kind:?} client printed nothing within {LINE_WAIT:?}"))
    }

    /// The next frame received (a line with a `type`).
    pub async fn frame(&mut self) -> Value {
        let line = self.line().await;
        assert!(line.get("type").is_some(), "expected a frame, got {line}");
        line
    }

    /// Sends `text` as one text message.
    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("the client's input is open");
        writeln!(stdin, "{text}").expect("writing to the client");
        stdin.flush().expect("writing to the client");
    }

    /// Ends the client's input (it closes the connection with 1000), then [`Self::end`].
    pub async fn close(&mut self) -> (Vec<Value>, Value) {
        self.stdin = None;
        self.end().await
    }

    /// Reads up to the client's last line (`close`, `refused`, …); returns
    /// the frames before it and that line.
    pub async fn end(&mut self) -> (Vec<Value>, Value) {
        let mut frames = Vec::new();
        loop {
            let line = self.line().await;
            if line.get("type").is_none() {
                return (frames, line);
            }
            frames.push(line);
        }
    }
}

impl Drop for WsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
