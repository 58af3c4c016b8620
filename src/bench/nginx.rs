//! The nginx peer of `tidings bench poll --peer nginx`: Debian's nginx,
//! started by the bench with a configuration of its own, serving the bodies
//! of closed intervals from files at the same paths Tidings serves them.
//!
//! The configuration: 2 worker processes, `access_log off`, keep-alive
//! connections that are never closed by a request count, listening on
//! 127.0.0.1 at a free port; `GET /…/events-streams/{id}?interval=T` answers
//! the file `intervals/T.json` (written from the bytes Tidings served) with
//! `Content-Type: application/json`, so both servers get the same requests
//! and send the same bodies. Everything lives in a temporary directory
//! removed when the [`Nginx`] is dropped, which also stops the server
//! (SIGQUIT to the master, then SIGKILL if it has not exited within
//! [`STOP_GRACE`]).
//!
//! When `nginx` is not installed and the bench runs as root, it is
//! installed with `apt-get install nginx` (Debian's package, as the tests
//! install what they need); otherwise the run fails with what to install.

use super::error::BenchError;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The nginx executable looked for first.
const NGINX: &str = "/usr/sbin/nginx";

/// How long nginx may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How long nginx may take to exit after SIGQUIT.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Worker processes (the issue compares with 2 workers).
pub const WORKERS: usize = 2;

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where it listens.
    pub addr: SocketAddr,
    /// `nginx -v` of the executable.
    pub version: String,
}

/// The configuration file for `dir`, listening on `port`.
pub fn config(dir: &Path, port: u16) -> String {
    let dir = dir.display();
    let mut text = String::new();
    let _ = write!(
        text,
        "worker_processes {WORKERS};
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 20000;
events {{
    worker_connections 10000;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 1000000000;
    open_file_cache max=1000 inactive=300s;
    open_file_cache_valid 300s;
    types {{ }}
    default_type application/json;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {dir}/www;
        location / {{
            add_header Allow \"GET, HEAD, OPTIONS\";
            add_header Vary Accept;
            try_files /intervals/$arg_interval.json =404;
        }}
    }}
}}
"
    );
    text
}

impl Nginx {
    /// Writes the interval files and the configuration and starts nginx.
    pub fn start(bodies: &[(i64, Vec<u8>)]) -> Result<Self, BenchError> {
        let executable = ensure_installed()?;
        let version = version_of(&executable);
        let dir = std::env::temp_dir().join(format!(
            "tidings-bench-nginx-{}-{}",
            std::process::id(),
            crate::bench::payload::unix_micros()
        ));
        let io = |what: &str, err: std::io::Error| BenchError::context(what.to_string(), err);
        std::fs::create_dir_all(dir.join("www/intervals"))
            .map_err(|err| io("creating nginx's directory", err))?;
        std::fs::create_dir_all(dir.join("tmp")).map_err(|err| io("creating nginx's tmp", err))?;
        for (interval, body) in bodies {
            std::fs::write(dir.join(format!("www/intervals/{interval}.json")), body)
                .map_err(|err| io("writing an interval file", err))?;
        }
        readable_by_workers(&dir).map_err(|err| io("opening the files to nginx's workers", err))?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, port)).map_err(|err| io("writing nginx.conf", err))?;
        let child = Command::new(&executable)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| io("starting nginx", err))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut nginx = Self {
            child,
            dir,
            addr,
            version,
        };
        nginx.wait_until_accepting()?;
        Ok(nginx)
    }

    /// Waits until the port accepts connections (or nginx exits).
    fn wait_until_accepting(&mut self) -> Result<(), BenchError> {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(BenchError::run(format!(
                    "nginx exited at start ({status}): {}",
                    self.error_log()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(BenchError::run(format!(
            "nginx did not accept connections on {} within {START_TIMEOUT:?}: {}",
            self.addr,
            self.error_log()
        )))
    }

    /// The end of nginx's error log, for messages.
    fn error_log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Stops nginx: SIGQUIT (graceful) to the master, SIGKILL after [`STOP_GRACE`].
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on the pid of our own child process.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Lets nginx's workers (`www-data` when started as root) reach the
/// interval files, whatever the umask.
fn readable_by_workers(dir: &Path) -> std::io::Result<()> {
    use std::fs::{Permissions, set_permissions};
    use std::os::unix::fs::PermissionsExt;
    let intervals = dir.join("www/intervals");
    for path in [dir.to_path_buf(), dir.join("www"), intervals.clone()] {
        set_permissions(&path, Permissions::from_mode(0o755))?;
    }
    for entry in std::fs::read_dir(&intervals)? {
        set_permissions(entry?.path(), Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// The nginx executable, installing Debian's package when it is missing and we are root.
fn ensure_installed() -> Result<PathBuf, BenchError> {
    if let Some(found) = find_nginx() {
        return Ok(found);
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(BenchError::usage(
            "nginx is not installed and installing it needs root: run `apt-get install nginx`",
        ));
    }
    eprintln!("installing nginx from Debian's packages…");
    let installed = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .and_then(|_| {
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "nginx"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
        })
        .map_err(|err| BenchError::context("running apt-get install nginx", err))?;
    if !installed.success() {
        return Err(BenchError::run(format!(
            "apt-get install nginx failed ({installed})"
        )));
    }
    find_nginx().ok_or_else(|| BenchError::run("nginx is still missing after apt-get install"))
}

/// `/usr/sbin/nginx`, or `nginx` on the PATH.
fn find_nginx() -> Option<PathBuf> {
    let fixed = PathBuf::from(NGINX);
    if fixed.is_file() {
        return Some(fixed);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|candidate| candidate.is_file())
    })
}

/// `nginx/1.22.1` (nginx prints its version on stderr).
fn version_of(executable: &Path) -> String {
    Command::new(executable)
        .arg("-v")
        .output()
        .ok()
        .map(|output| {
            String::from_utf8_lossy(&output.stderr)
                .trim()
                .trim_start_matches("nginx version: ")
                .to_string()
        })
        .unwrap_or_else(|| "nginx".into())
}

/// A port on 127.0.0.1 nobody listens on right now.
fn free_port() -> Result<u16, BenchError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|err| BenchError::context("finding a free port for nginx", err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_serves_interval_files_with_two_workers_and_no_access_log() {
        let text = config(Path::new("/tmp/x"), 18_081);
        assert!(text.contains("worker_processes 2;"));
        assert!(text.contains("access_log off;"));
        assert!(text.contains("listen 127.0.0.1:18081 "));
        assert!(text.contains("try_files /intervals/$arg_interval.json =404;"));
        assert!(text.contains("default_type application/json;"));
        assert!(text.contains("root /tmp/x/www;"));
        assert_eq!(
            text.matches('{').count(),
            text.matches('}').count(),
            "balanced blocks"
        );
    }
}
