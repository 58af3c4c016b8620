//! Starts the real `tidings` executable on 127.0.0.1:0 with a temporary data
//! directory and gives tests clients for it.
//!
//! A [`Server`] reads the `listening on …` line to learn its address, keeps
//! everything the process writes to stderr for assertions and failure
//! reports, and on drop sends SIGTERM and asserts a clean exit within the
//! shutdown grace (unless the test already stopped or killed it).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The shutdown grace the harness starts servers with, unless a test overrides it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// The path of the executable under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tidings")
}

/// A listener on a free loopback port, held so nothing else can take it;
/// drop it to leave the port free with nothing listening on it.
pub fn held_port() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Options for starting a server.
pub struct ServerBuilder {
    data_dir: Option<PathBuf>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    grace: Duration,
    fd_limit: Option<u64>,
    listen_flag: bool,
}

impl ServerBuilder {
    /// Leaves `--listen 127.0.0.1:0` off the command line, so that a
    /// settings file or `TIDINGS_LISTEN` chooses the address.
    pub fn listen_from_settings(mut self) -> Self {
        self.listen_flag = false;
        self
    }

    /// Uses an existing data directory instead of a fresh temporary one.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// Adds command-line arguments after `serve`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| arg.to_string()));
        self
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Starts the process with RLIMIT_NOFILE (soft and hard) set to `limit`.
    pub fn fd_limit(mut self, limit: u64) -> Self {
        self.fd_limit = Some(limit);
        self
    }

    /// Sets `--shutdown-grace`.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    fn command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(binary());
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(
                self.listen_flag
                    .then_some(["--listen", "127.0.0.1:0"])
                    .into_iter()
                    .flatten(),
            )
            .arg("--shutdown-grace")
            .arg(format!("{}ms", self.grace.as_millis()))
            .arg("--enable-test-routes")
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        if let Some(limit) = self.fd_limit {
            limit_fds(&mut command, limit);
        }
        command
    }

    /// Starts the server and waits for its listening line.
    pub fn start(self) -> Server {
        let (temp, data_dir) = match &self.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir().expect("temporary directory");
                let dir = temp.path().join("data");
                (Some(temp), dir)
            }
        };
        let mut child = self.command(&data_dir).spawn().expect("spawning tidings");
        let stderr = collect_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout");
        let line = match wait_for_listening_line(stdout) {
            Some(line) => line,
            None => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "server did not print its listening line (exit {status:?}); stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let base = line.trim_start_matches("listening on ").trim().to_string();
        Server {
            child: Some(child),
            base,
            data_dir,
            stderr,
            grace: self.grace,
            _temp: temp,
        }
    }

    /// Runs the server expecting it to fail at startup; returns its exit status and stderr.
    pub fn start_expecting_failure(self) -> (ExitStatus, String) {
        let data_dir = self
            .data_dir
            .clone()
            .expect("a data dir for a failing start");
        let mut child = self.command(&data_dir).spawn().expect("spawning tidings");
        let status =
            wait_with_timeout(&mut child, START_TIMEOUT).expect("the failing server did not exit");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }
}

/// Sets RLIMIT_NOFILE of the child to `limit` before it runs.
fn limit_fds(command: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt;
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        command.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

fn collect_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let collected = Arc::new(Mutex::new(String::new()));
    let sink = collected.clone();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    collected
}

fn wait_for_listening_line(stdout: ChildStdout) -> Option<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let _ = sender.send(first);
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    receiver
        .recv_timeout(START_TIMEOUT)
        .ok()
        .flatten()
        .filter(|line| line.starts_with("listening on "))
}

/// Waits for a child to exit, up to `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A running `tidings serve`.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT` or `https://…`.
    pub base: String,
    /// The data directory it serves from.
    pub data_dir: PathBuf,
    stderr: Arc<Mutex<String>>,
    grace: Duration,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server with default options.
    pub fn start() -> Server {
        Self::builder().start()
    }

    /// Options for a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            data_dir: None,
            args: Vec::new(),
            envs: Vec::new(),
            grace: DEFAULT_GRACE,
            fd_limit: None,
            listen_flag: true,
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .rsplit("//")
            .next()
            .unwrap()
            .parse()
            .expect("socket address in the listening line")
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Stderr once it contains `text` (the reader thread may lag behind
    /// the process), or all of it after a generous deadline.
    pub fn stderr_once_it_contains(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stderr = self.stderr();
            if stderr.contains(text) || std::time::Instant::now() > deadline {
                return stderr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let result = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed", self.pid());
    }

    /// Waits for the process to exit on its own within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        match wait_with_timeout(&mut child, timeout) {
            Some(status) => status,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "server did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Kills the process with SIGKILL (a crash) and waits for it to be gone.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait_exit(Duration::from_secs(10));
    }

    /// Sends SIGTERM and returns the exit status (must come within the grace plus a margin).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(self.grace + Duration::from_secs(5))
    }

    /// `GET path` over a fresh HTTP/1.1 client.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http1().get(self.url(path)).send().await.expect("GET")
    }

    /// The value of one series from `/metrics` (0 when the series is absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        sample(&text, series).unwrap_or(0.0)
    }

    /// An HTTP/1.1-only client.
    pub fn http1(&self) -> reqwest::Client {
        reqwest::Client::builder().http1_only().build().unwrap()
    }

    /// A client speaking prior-knowledge HTTP/2 (h2c on plain TCP).
    pub fn h2(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap()
    }

    /// A TLS client trusting the server's generated self-signed certificate.
    pub fn tls_client(&self, http2: bool) -> reqwest::Client {
        let pem =
            std::fs::read(self.data_dir.join("tls/localhost-cert.pem")).expect("self-signed cert");
        tls_client_trusting(&pem, http2)
    }
}

/// A TLS client that trusts only `pem` and reports peer certificates.
pub fn tls_client_trusting(pem: &[u8], http2: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pem).unwrap()])
        .tls_info(true);
    let builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().unwrap()
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        let status = self.stop();
        if !std::thread::panicking() {
            assert!(
                status.success(),
                "server exited with {status}; stderr:\n{}",
                self.stderr()
            );
        }
    }
}

/// The value of `series` in a metrics exposition.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The `x-request-id` of a response.
pub fn request_id(response: &reqwest::Response) -> String {
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Parses a JSON file.
pub fn read_json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).expect("file")).expect("JSON file")
}

/// Reads a response's JSON body.
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    response.json().await.expect("JSON body")
}
