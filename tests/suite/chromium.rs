//! Headless Chromium as an independent browser client: Debian's `chromium`
//! (installed with apt-get on first use when missing, as root), a page
//! served by a tiny HTTP server of the test on its own origin, and the
//! page's reports (`POST /report`, JSON `{"name","detail"}`) collected by name;
//! or a page driven by the test over the Chrome DevTools Protocol
//! ([`DevTools`]: navigate, evaluate script in the page, screenshots).
//!
//! When Chromium cannot be had, [`chromium`] says why and the calling test
//! skips, printing the reason.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// How long a page may take to report everything it is expected to.
const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// Chromium's executable, installed with apt-get when missing; the reason
/// when it cannot be had.
pub fn chromium() -> Result<String, String> {
    static INSTALL: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    let mut slot = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| crate::debian::program("chromium", "chromium"))
        .clone()
}

/// A tiny HTTP server for one page: `GET /` is the page, `POST /report`
/// takes one JSON report from it.
pub struct PageServer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    reports: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Every report so far, by name.
    seen: HashMap<String, Value>,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    /// Serves `html` as `/`.
    pub async fn start(html: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (sender, reports) = tokio::sync::mpsc::unbounded_channel();
        let html = std::sync::Arc::new(html);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_page(socket, html.clone(), sender.clone()));
            }
        });
        Self {
            port,
            reports,
            seen: HashMap::new(),
            task,
        }
    }

    /// Collects reports until `done` holds for all reports so far, failing after
    /// [`PAGE_TIMEOUT`] with what arrived and Chromium's log.
    pub async fn collect(
        &mut self,
        browser: &Browser,
        mut done: impl FnMut(&HashMap<String, Value>) -> bool,
    ) -> HashMap<String, Value> {
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        while !done(&self.seen) {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(report)) => {
                    let name = report["name"].as_str().unwrap_or_default().to_string();
                    self.seen.insert(name, report["detail"].clone());
                }
                _ => panic!(
                    "the page did not report everything within {PAGE_TIMEOUT:?}; got {:?}\nchromium log (tail):\n{}",
                    self.seen,
                    browser.log_tail()
                ),
            }
        }
        self.seen.clone()
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one request of the page server and closes the connection.
async fn serve_page(
    mut socket: tokio::net::TcpStream,
    html: std::sync::Arc<String>,
    reports: tokio::sync::mpsc::UnboundedSender<Value>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => buffer.extend_from_slice(&chunk[..read]),
        }
    }
    let answer = if head.starts_with("POST /report ") {
        if let Ok(report) = serde_json::from_slice(&buffer[head_end..head_end + length]) {
            let _ = reports.send(report);
        }
        "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string()
    } else if head.starts_with("GET / ") {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{html}",
            html.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
    };
    let _ = socket.write_all(answer.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Headless Chromium showing one page; killed on drop.
pub struct Browser {
    child: Child,
    log: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `executable` headless on `url`.
    pub fn open(executable: &str, url: &str) -> Self {
        Self::launch(executable, &[], url)
    }

    /// Starts `executable` headless on `url` with `extra` arguments.
    fn launch(executable: &str, extra: &[&str], url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let log = profile.path().join("chromium.log");
        let child = Command::new(executable)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
            ])
            .args(extra)
            .arg(format!(
                "--user-data-dir={}",
                profile.path().join("profile").display()
            ))
            .arg(url)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting chromium");
        Self {
            child,
            log,
            _profile: profile,
        }
    }

    /// The profile directory (`--user-data-dir`).
    fn profile(&self) -> PathBuf {
        self._profile.path().join("profile")
    }

    /// The end of Chromium's log (without its D-Bus noise).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|line| !line.contains("dbus")).collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long [`DevTools::wait_for`] waits for a condition in the page.
const CONDITION_TIMEOUT: Duration = Duration::from_secs(60);

/// Headless Chromium with one page driven over the DevTools protocol: the
/// test navigates, runs script in the page (`Runtime.evaluate`) to fill
/// forms, click and read the DOM, and captures screenshots. Killed on drop.
pub struct DevTools {
    browser: Browser,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl DevTools {
    /// Starts `executable` headless with a 1400×1000 window and attaches to its page.
    pub async fn launch(executable: &str) -> Self {
        let browser = Browser::launch(
            executable,
            &["--remote-debugging-port=0", "--window-size=1400,1000"],
            "about:blank",
        );
        let port = Self::debugging_port(&browser).await;
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|target| target["type"] == "page")
            .unwrap_or_else(|| panic!("no page target in {targets}"));
        let url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let (socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        Self {
            browser,
            socket,
            next_id: 0,
        }
    }

    /// The port Chromium wrote to `DevToolsActivePort` in its profile.
    async fn debugging_port(browser: &Browser) -> u16 {
        let file = browser.profile().join("DevToolsActivePort");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            if let Some(port) = text.lines().next().and_then(|line| line.parse().ok()) {
                return port;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromium wrote no DevToolsActivePort\n{}",
                browser.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends one command and returns its `result` (events in between are skipped).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let command = serde_json::json!({ "id": id, "method": method, "params": params });
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(PAGE_TIMEOUT, self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within {PAGE_TIMEOUT:?}"))
                .unwrap_or_else(|| panic!("{method}: the DevTools connection closed"))
                .unwrap();
            let Message::Text(text) = message else {
                continue;
            };
            let reply: Value = serde_json::from_str(&text).unwrap();
            if reply["id"] != id {
                continue;
            }
            assert!(reply["error"].is_null(), "{method}: {}", reply["error"]);
            return reply["result"].clone();
        }
    }

    /// Loads `url` and waits until its document (and deferred scripts) finished loading.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({ "url": url }))
            .await;
        self.wait_for(
            "the page to load",
            &format!(
                "location.href === {} && document.readyState === 'complete'",
                serde_json::json!(url)
            ),
        )
        .await;
    }

    /// The value of `expression` evaluated in the page (promises awaited);
    /// a thrown exception fails the test with its description.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("evaluating `{expression}` threw: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page and returns its value,
    /// failing after [`CONDITION_TIMEOUT`] with `what` and Chromium's log.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = tokio::time::Instant::now() + CONDITION_TIMEOUT;
        loop {
            let value = self.eval(expression).await;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(flag) => *flag,
                Value::Number(number) => number.as_f64() != Some(0.0),
                Value::String(text) => !text.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let error = self
                    .eval("document.getElementById('error')?.textContent ?? ''")
                    .await;
                panic!(
                    "waited {CONDITION_TIMEOUT:?} for {what} (`{expression}` is {value}); the page's error banner: {error}\nchromium log (tail):\n{}",
                    self.browser.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Saves a PNG of the whole page (beyond the window when it is taller) at `path`.
    pub async fn screenshot(&mut self, path: &Path) {
        let metrics = self
            .call("Page.getLayoutMetrics", serde_json::json!({}))
            .await;
        let size = &metrics["cssContentSize"];
        let clip = serde_json::json!({
            "x": 0, "y": 0, "scale": 1,
            "width": size["width"].as_f64().unwrap_or(1400.0).max(1400.0),
            "height": size["height"].as_f64().unwrap_or(1000.0),
        });
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }),
            )
            .await;
        use base64::Engine;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}
