//! `nats-server` for cluster tests: one JetStream server ([`NatsNode`]) or a
//! cluster of them on loopback ([`NatsCluster`]), each with its own client,
//! cluster and monitoring ports and its own store directory, which a test
//! can crash (SIGKILL), freeze (SIGSTOP), thaw (SIGCONT) and restart with its store and
//! ports kept; and a reader of every message of a stream ([`read_stream`]).
//!
//! Debian's `nats-server` is used (installed with apt-get on first use when
//! missing, as root); when it cannot be had, [`nats_server`] says why and the
//! calling test skips, printing the reason (see [`skip`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server (or a cluster) may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `nats-server` executable, installed with apt-get when missing; the
/// reason when it cannot be had.
pub fn nats_server() -> Result<String, String> {
    static INSTALL: Mutex<Option<Result<String, String>>> = Mutex::new(None);
    let mut slot = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    slot.get_or_insert_with(|| crate::debian::program("nats-server", "nats-server"))
        .clone()
}

/// Prints why a NATS test is skipped; for `let Some(x) = … else { return }`.
pub fn skip<T>(result: Result<T, String>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(reason) => {
            eprintln!("SKIPPED NATS test: {reason}");
            None
        }
    }
}

/// A free loopback port (free when returned; nothing holds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `nats-server -js` process.
pub struct NatsNode {
    /// The server's name (also its JetStream peer name).
    pub name: String,
    /// The client port on 127.0.0.1.
    pub client_port: u16,
    /// The route (cluster) port on 127.0.0.1.
    pub cluster_port: u16,
    /// The monitoring (HTTP) port on 127.0.0.1.
    pub monitor_port: u16,
    dir: PathBuf,
    executable: String,
    child: Option<Child>,
    frozen: bool,
}

impl NatsNode {
    /// Starts a single JetStream server in a directory of its own under
    /// `parent`, and waits until it is ready.
    pub fn start(parent: &Path) -> Result<Self, String> {
        let mut node = Self::prepare(parent, "n1")?;
        node.spawn();
        node.wait_healthy()?;
        Ok(node)
    }

    /// Node `name` with free ports and a store directory under `parent`,
    /// not started yet.
    fn prepare(parent: &Path, name: &str) -> Result<Self, String> {
        let executable = nats_server()?;
        let dir = parent.join(name);
        std::fs::create_dir_all(dir.join("store")).unwrap();
        let node = Self {
            name: name.to_string(),
            client_port: free_port(),
            cluster_port: free_port(),
            monitor_port: free_port(),
            dir,
            executable,
            child: None,
            frozen: false,
        };
        Ok(node)
    }

    /// Writes the configuration file, with routes to `routes` when in a cluster.
    fn configure(&self, routes: Option<&[u16]>) {
        let mut config = format!(
            "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
             jetstream {{\n  store_dir: \"{store}\"\n  max_memory_store: 64MB\n  max_file_store: 2GB\n}}\n",
            name = self.name,
            client = self.client_port,
            monitor = self.monitor_port,
            store = self.dir.join("store").display(),
        );
        if let Some(routes) = routes {
            let routes: Vec<String> = routes
                .iter()
                .map(|port| format!("nats-route://127.0.0.1:{port}"))
                .collect();
            config.push_str(&format!(
                "cluster {{\n  name: tidings-test\n  listen: 127.0.0.1:{}\n  routes: [{}]\n}}\n",
                self.cluster_port,
                routes.join(", ")
            ));
        }
        std::fs::write(self.dir.join("nats.conf"), config).unwrap();
    }

    fn spawn(&mut self) {
        if !self.dir.join("nats.conf").exists() {
            self.configure(None);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new(&self.executable)
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .env("GOMAXPROCS", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawning nats-server");
        self.child = Some(child);
        self.frozen = false;
    }

    /// `nats://127.0.0.1:<client port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Whether the process runs (it may be frozen).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn signal(&self, signal: i32) {
        let child = self.child.as_ref().expect("the NATS node runs");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let result = unsafe { libc::kill(child.id() as i32, signal) };
        assert_eq!(result, 0, "kill({}, {signal}) failed", child.id());
    }

    /// Crashes the server (SIGKILL) and waits until it is gone; its store
    /// and ports stay for [`NatsNode::restart`].
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = child.kill();
        let _ = child.wait();
        self.frozen = false;
    }

    /// Freezes the server (SIGSTOP): its sockets stay open, it answers nothing.
    pub fn stop(&mut self) {
        self.signal(libc::SIGSTOP);
        self.frozen = true;
    }

    /// Thaws a frozen server (SIGCONT).
    pub fn cont(&mut self) {
        self.signal(libc::SIGCONT);
        self.frozen = false;
    }

    /// Starts the server again (after a kill, or killing it first) with the
    /// same configuration, store and ports, without waiting for it.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Waits until the monitor's `/healthz` answers 200 (JetStream up and,
    /// in a cluster, in contact with a meta leader).
    pub fn wait_healthy(&self) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{}/healthz", self.monitor_port);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if monitor_get(&url).is_ok_and(|(status, _)| status == 200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nats-server {} was not healthy within {READY_TIMEOUT:?}; its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The monitor's `/jsz` document (JetStream state as this server sees it).
    pub fn jsz(&self) -> Result<serde_json::Value, String> {
        let url = format!("http://127.0.0.1:{}/jsz", self.monitor_port);
        let (status, body) = monitor_get(&url)?;
        if status != 200 {
            return Err(format!("/jsz answered {status}"));
        }
        serde_json::from_str(&body).map_err(|err| format!("/jsz is not JSON: {err}"))
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        if self.frozen {
            self.cont();
        }
        self.kill();
    }
}

/// A plain blocking HTTP/1.0 GET on loopback: the status and the body.
fn monitor_get(url: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").ok_or("not an http URL")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(host).map_err(|err| err.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|err| err.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|err| err.to_string())?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Servers routed to each other under one cluster name, with JetStream.
pub struct NatsCluster {
    /// The nodes, in start order.
    pub nodes: Vec<NatsNode>,
    _temp: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes routed to each other, and waits until every one
    /// is healthy and the cluster has a JetStream meta leader.
    pub fn start(size: usize) -> Result<Self, String> {
        let temp = tempfile::tempdir().expect("temporary directory");
        let mut nodes = (1..=size)
            .map(|i| NatsNode::prepare(temp.path(), &format!("n{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let ports: Vec<u16> = nodes.iter().map(|node| node.cluster_port).collect();
        for node in &mut nodes {
            let routes: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|port| *port != node.cluster_port)
                .collect();
            node.configure(Some(&routes));
            node.spawn();
        }
        let cluster = Self { nodes, _temp: temp };
        cluster.wait_ready()?;
        Ok(cluster)
    }

    /// A single server (a "cluster" of one, without routes), with the same
    /// handle as a cluster.
    pub fn single() -> Result<Self, String> {
        let temp = tempfile::tempdir().expect("temporary directory");
        let node = NatsNode::start(temp.path())?;
        Ok(Self {
            nodes: vec![node],
            _temp: temp,
        })
    }

    /// Waits until every running node is healthy and one of them names a
    /// meta leader.
    pub fn wait_ready(&self) -> Result<(), String> {
        for node in self.nodes.iter().filter(|node| node.is_running()) {
            node.wait_healthy()?;
        }
        if self.nodes.len() == 1 {
            return Ok(());
        }
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let leader = self.nodes.iter().find_map(|node| {
                let jsz = node.jsz().ok()?;
                let leader = jsz["meta_cluster"]["leader"].as_str()?;
                (!leader.is_empty()).then(|| leader.to_string())
            });
            if leader.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the NATS cluster elected no meta leader within {READY_TIMEOUT:?}; logs:\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's client URL, comma-separated (for `--nats`).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsNode::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's log, each under its name (for failure reports).
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| format!("--- {} ---\n{}", node.name, node.log()))
            .collect()
    }

    /// The index of the node leading `stream` now, asked of the cluster
    /// through the JetStream API (None while it has no leader).
    pub async fn stream_leader(&self, stream: &str) -> Option<usize> {
        let client = connect(&self.urls()).await.ok()?;
        let context = async_nats::jetstream::new(client);
        let mut stream = context.get_stream(stream).await.ok()?;
        let info = stream.info().await.ok()?;
        let leader = info.cluster.as_ref()?.leader.clone()?;
        self.nodes.iter().position(|node| node.name == leader)
    }
}

/// A client of `urls` (comma-separated) that gives up quickly.
pub async fn connect(urls: &str) -> Result<async_nats::Client, String> {
    let urls: Vec<async_nats::ServerAddr> = urls
        .split(',')
        .map(|url| url.parse().map_err(|err| format!("{url}: {err}")))
        .collect::<Result<_, String>>()?;
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(urls)
        .await
        .map_err(|err| format!("connecting to NATS: {err}"))
}

/// One message of a stream, as stored.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its headers (the last value of each name).
    pub headers: HashMap<String, String>,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// Every message `stream` holds now, in sequence order (an empty list when
/// the stream does not exist yet).
pub async fn read_stream(urls: &str, stream: &str) -> Result<Vec<StoredMessage>, String> {
    let context = async_nats::jetstream::new(connect(urls).await?);
    let mut handle = match context.get_stream(stream).await {
        Ok(handle) => handle,
        Err(err) if err.to_string().contains("not found") => return Ok(Vec::new()),
        Err(err) => return Err(format!("stream {stream}: {err}")),
    };
    let state = handle
        .info()
        .await
        .map_err(|err| format!("stream {stream} info: {err}"))?
        .state
        .clone();
    let mut messages = Vec::new();
    if state.messages == 0 {
        return Ok(messages);
    }
    for sequence in state.first_sequence..=state.last_sequence {
        let message = match handle.get_raw_message(sequence).await {
            Ok(message) => message,
            Err(err) if err.to_string().contains("not found") => continue,
            Err(err) => return Err(format!("message {sequence} of {stream}: {err}")),
        };
        let headers = message
            .headers
            .iter()
            .flat_map(|(name, values)| {
                values
                    .last()
                    .map(|value| (name.to_string(), value.to_string()))
            })
            .collect();
        messages.push(StoredMessage {
            sequence,
            headers,
            payload: message.payload.to_vec(),
        });
    }
    Ok(messages)
}

/// Waits until `check` holds for the stream's messages, up to `timeout`;
/// returns the last messages read either way.
pub async fn wait_for_stream(
    urls: &str,
    stream: &str,
    timeout: Duration,
    mut check: impl FnMut(&[StoredMessage]) -> bool,
) -> Vec<StoredMessage> {
    let deadline = Instant::now() + timeout;
    loop {
        let messages = read_stream(urls, stream).await.unwrap_or_default();
        if check(&messages) || Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_three_node_cluster_survives_losing_and_regaining_its_stream_leader() {
    let Some(mut cluster) = skip(NatsCluster::start(3)) else {
        return;
    };
    let client = connect(&cluster.urls()).await.unwrap();
    let context = async_nats::jetstream::new(client);
    context
        .create_stream(async_nats::jetstream::stream::Config {
            name: "HARNESS".into(),
            subjects: vec!["harness.>".into()],
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let publish = |n: u32| {
        let context = context.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Harness-N", n.to_string().as_str());
            context
                .publish_with_headers("harness.x", headers, n.to_string().into())
                .await?
                .await
        }
    };
    publish(1).await.unwrap();
    let leader = cluster.stream_leader("HARNESS").await.expect("a leader");
    cluster.nodes[leader].kill();
    // A new leader within the window; publishing works again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while publish(2).await.is_err() {
        assert!(Instant::now() < deadline, "{}", cluster.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.nodes[leader].restart();
    cluster.wait_ready().unwrap();
    let messages = wait_for_stream(&cluster.urls(), "HARNESS", Duration::from_secs(30), |m| {
        m.len() >= 2
    })
    .await;
    let numbers: Vec<&str> = messages
        .iter()
        .map(|m| m.headers["Harness-N"].as_str())
        .collect();
    // A retried publish may have been stored before its ack was lost.
    assert_eq!(numbers.first(), Some(&"1"));
    assert!(numbers[1..].iter().all(|n| *n == "2"), "{numbers:?}");
    assert_eq!(messages[0].payload, b"1");
}
