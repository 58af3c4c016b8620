//! A minimal HTTP client over hyper's connection API: one [`Socket`] (TCP or
//! TLS) per [`HttpClient`], HTTP/1.1 keep-alive or HTTP/2 (h2c by prior
//! knowledge, or h2 chosen by ALPN over TLS).
//!
//! The bench controls exactly how many connections exist (no pool), which is
//! what the scenarios measure. Also here: reading the server's resident memory
//! from `/metrics`.

use super::discussions;
use super::error::BenchError;
use super::socket::Socket;
use super::target::Target;
use super::tls::Alpn;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The body type the bench sends.
pub type Body = Full<Bytes>;

/// Which HTTP version a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 with keep-alive: one request at a time.
    Http1,
    /// HTTP/2 (prior knowledge on plain TCP, ALPN `h2` over TLS): many
    /// concurrent streams; clones share the connection.
    Http2,
}

impl Protocol {
    /// What to offer in a TLS handshake.
    pub fn alpn(self) -> Alpn {
        match self {
            Self::Http1 => Alpn::Http1,
            Self::Http2 => Alpn::Http2,
        }
    }
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text, for error messages (shortened).
    pub fn body_excerpt(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        text.chars().take(300).collect()
    }
}

/// The sending half of one connection.
#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

/// One client connection to the target.
#[derive(Debug)]
pub struct HttpClient {
    sender: Sender,
    target: Target,
}

impl HttpClient {
    /// Connects and performs the HTTP handshake; the connection runs on its own task.
    pub async fn connect(target: &Target, protocol: Protocol) -> Result<Self, BenchError> {
        let io = TokioIo::new(Socket::connect(target, protocol.alpn()).await?);
        let sender = match protocol {
            Protocol::Http1 => {
                let (sender, conn) = http1::handshake(io)
                    .await
                    .map_err(|err| BenchError::context("HTTP/1.1 handshake", err))?;
                tokio::spawn(conn);
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(|err| BenchError::context("HTTP/2 handshake", err))?;
                tokio::spawn(conn);
                Sender::Http2(sender)
            }
        };
        Ok(Self {
            sender,
            target: target.clone(),
        })
    }

    /// Another handle on the same HTTP/2 connection (`None` for HTTP/1.1, which is one request at a time).
    pub fn share(&self) -> Option<Self> {
        match &self.sender {
            Sender::Http1(_) => None,
            Sender::Http2(sender) => Some(Self {
                sender: Sender::Http2(sender.clone()),
                target: self.target.clone(),
            }),
        }
    }

    /// A request to `path` with the Host (or :authority) and API key set.
    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        let builder = match self.sender {
            Sender::Http1(_) => Request::builder()
                .uri(path)
                .header(header::HOST, &self.target.authority),
            Sender::Http2(_) => Request::builder().uri(format!(
                "{}://{}{path}",
                self.target.scheme(),
                self.target.authority
            )),
        };
        let mut builder = builder.method(method);
        if !self.target.api_key.is_empty() {
            builder = builder.header("x-api-key", &self.target.api_key);
        }
        if !self.target.discussions.is_empty() {
            builder = builder.header("x-external-user-id", discussions::READER);
        }
        builder
    }

    /// Sends a request and returns the response head with its streaming body.
    pub async fn send(&mut self, request: Request<Body>) -> Result<Response<Incoming>, BenchError> {
        let result = match &mut self.sender {
            Sender::Http1(sender) => {
                sender
                    .ready()
                    .await
                    .map_err(|err| BenchError::context("connection closed", err))?;
                sender.send_request(request).await
            }
            Sender::Http2(sender) => {
                sender
                    .ready()
                    .await
                    .map_err(|err| BenchError::context("connection closed", err))?;
                sender.send_request(request).await
            }
        };
        result.map_err(|err| BenchError::context("request failed", err))
    }

    /// Sends a request and reads the whole response.
    pub async fn fetch(&mut self, request: Request<Body>) -> Result<Reply, BenchError> {
        let response = self.send(request).await?;
        let (head, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|err| BenchError::context("reading the response body", err))?
            .to_bytes();
        Ok(Reply {
            status: head.status,
            headers: head.headers,
            body,
        })
    }

    /// `GET path` and the whole response.
    pub async fn get(&mut self, path: &str) -> Result<Reply, BenchError> {
        let request = self
            .request(Method::GET, path)
            .body(Body::default())
            .map_err(|err| BenchError::context("building a request", err))?;
        self.fetch(request).await
    }

    /// Whether the connection can no longer be used.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }
}

/// Reads the server's resident memory (`process_resident_memory_bytes`) from `/metrics`.
pub async fn fetch_rss(target: &Target) -> Result<u64, BenchError> {
    let mut client = HttpClient::connect(target, Protocol::Http1).await?;
    let reply = client.get(&target.path("/metrics")).await?;
    if reply.status != StatusCode::OK {
        return Err(BenchError::run(format!(
            "GET /metrics answered {}: {}",
            reply.status,
            reply.body_excerpt()
        )));
    }
    parse_rss(&String::from_utf8_lossy(&reply.body)).ok_or_else(|| {
        BenchError::run("GET /metrics has no process_resident_memory_bytes line".to_string())
    })
}

/// The server's RSS: `/proc/<pid>/status` when its pid is known, else `/metrics` (`None` when unreadable).
pub async fn server_rss(target: &Target, pid: Option<u32>) -> Option<u64> {
    match pid {
        Some(pid) => std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| vm_rss(&status)),
        None => fetch_rss(target).await.ok(),
    }
}

/// `VmRSS:  1234 kB` of a `/proc/<pid>/status` text, in bytes.
pub fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Finds `process_resident_memory_bytes <value>` in Prometheus/OpenMetrics text.
pub fn parse_rss(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("process_resident_memory_bytes")?;
        let rest = rest.strip_prefix(|c: char| c == ' ' || c == '{')?;
        let value = rest.rsplit_once('}').map_or(rest, |(_, value)| value);
        let value: f64 = value.split_whitespace().next()?.parse().ok()?;
        (value.is_finite() && value >= 0.0).then_some(value as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_from_proc_status() {
        let status = "Name:\ttidings\nVmPeak:\t  9999 kB\nVmRSS:\t   1234 kB\nThreads:\t4\n";
        assert_eq!(vm_rss(status), Some(1234 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").expect("proc");
        assert!(vm_rss(&own).is_some_and(|rss| rss > 0));
    }

    #[test]
    fn rss_is_found_in_metrics_text() {
        let text = "# HELP process_resident_memory_bytes Resident memory.\n\
# TYPE process_resident_memory_bytes gauge\n\
process_resident_memory_bytes_total 1\n\
process_resident_memory_bytes 12345678\n# EOF\n";
        assert_eq!(parse_rss(text), Some(12_345_678));
        assert_eq!(
            parse_rss("process_resident_memory_bytes 1.5e7\n"),
            Some(15_000_000)
        );
        assert_eq!(
            parse_rss("process_resident_memory_bytes{pid=\"1\"} 42 1700000000\n"),
            Some(42)
        );
        assert_eq!(parse_rss("# nothing here\n"), None);
        assert_eq!(parse_rss("process_resident_memory_bytes NaN\n"), None);
    }
}
