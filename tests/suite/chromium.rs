//! Headless Chromium as an independent browser client: Debian's `chromium`
//! (installed with apt-get on first use when missing, as root), a page
//! served by a tiny HTTP server of the test on its own origin, and the
//! page's reports (`POST /report`, JSON `{"name","detail"}`) collected by name.
//!
//! When Chromium cannot be had, [`chromium`] says why and the calling test
//! skips, printing the reason.

use serde_json::Value;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a page may take to report everything it is expected to.
const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// Chromium's executable, installed with apt-get when missing; the reason
/// when it cannot be had.
pub fn chromium() -> Result<String, String> {
    static INSTALL: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    let mut slot = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| {
        let runs = |program: &str| {
            Command::new(program)
                .arg("--version")
                .output()
                .is_ok_and(|output| output.status.success())
        };
        if runs("chromium") {
            return Ok("chromium".into());
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("chromium is missing and installing it (apt-get) needs root".into());
        }
        for args in [
            &["update", "-qq"][..],
            &["install", "-y", "-qq", "chromium"],
        ] {
            let output = Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .output()
                .map_err(|err| format!("running apt-get: {err}"))?;
            if !output.status.success() {
                return Err(format!(
                    "apt-get {} failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr)
                ));
            }
        }
        if runs("chromium") {
            Ok("chromium".into())
        } else {
            Err("chromium was installed but does not run".into())
        }
    })
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
