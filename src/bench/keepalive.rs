//! A keep-alive HTTP/1.1 connection for short request/response exchanges:
//! the poll scenario's viewers, its closed-interval load and its writers.
//!
//! hyper's client runs each connection on its own task and hands responses
//! back through a channel: two task wake-ups per request, which at 100 000
//! requests/s on the server's own cores is a cost the measurement would
//! show. Here the caller's task writes prepared request bytes and parses the
//! responses itself with `httparse`: one write and usually one read per
//! exchange, as wrk does.
//!
//! Invariants: responses are read in the order the requests were written
//! (requests may be pipelined); every response must carry `Content-Length`
//! (a chunked or close-delimited body is an error, not a guess), except the
//! bodiless statuses 1xx, 204 and 304; a response to a `HEAD` request is not
//! supported. The buffer grows to hold one whole response, at most
//! [`MAX_RESPONSE`] bytes.

use super::error::BenchError;
use super::socket::Socket;
use super::target::Target;
use super::tls::Alpn;
use std::ops::Range;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response (head and body) accepted.
pub const MAX_RESPONSE: usize = 1 << 20;

/// Most response headers accepted.
const MAX_HEADERS: usize = 32;

/// Bytes read at least per `read` call.
const READ_CHUNK: usize = 16 << 10;

/// One parsed response, its body a range of the connection's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Status code.
    pub status: u16,
    /// Where the body is in the buffer.
    pub body: Range<usize>,
    /// Bytes of head and body together.
    pub length: usize,
}

/// A response borrowed from the connection until the next read.
#[derive(Debug)]
pub struct Answer<'a> {
    /// Status code.
    pub status: u16,
    /// The whole body.
    pub body: &'a [u8],
}

/// Parses one complete response at the start of `buf`; `Ok(None)` while
/// head or body are still incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<Parsed>, BenchError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head_length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => {
            return Err(BenchError::run(format!(
                "the server's response is not HTTP/1.1: {err}"
            )));
        }
    };
    let status = response.code.unwrap_or(0);
    let body_length = body_length(status, response.headers)?;
    let length = head_length + body_length;
    if length > MAX_RESPONSE {
        return Err(BenchError::run(format!(
            "a response of {length} bytes is larger than the {MAX_RESPONSE} the bench reads"
        )));
    }
    if buf.len() < length {
        return Ok(None);
    }
    Ok(Some(Parsed {
        status,
        body: head_length..length,
        length,
    }))
}

/// The body length a response head announces.
fn body_length(status: u16, headers: &[httparse::Header<'_>]) -> Result<usize, BenchError> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(0);
    }
    if headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(BenchError::run(format!(
            "a {status} response is chunked; the poll bench reads Content-Length bodies only"
        )));
    }
    let value = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .ok_or_else(|| BenchError::run(format!("a {status} response has no Content-Length")))?
        .value;
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| {
            BenchError::run(format!(
                "unusable Content-Length `{}`",
                String::from_utf8_lossy(value)
            ))
        })
}

/// One keep-alive connection.
#[derive(Debug)]
pub struct KeepAlive {
    socket: Socket,
    buf: Vec<u8>,
    /// Bytes of `buf` that hold data read from the socket.
    filled: usize,
    /// Start of the first response not yet handed out.
    consumed: usize,
}

impl KeepAlive {
    /// Connects to the target (TLS for an `https://` target).
    pub async fn connect(target: &Target) -> Result<Self, BenchError> {
        let socket = Socket::connect(target, Alpn::Http1).await?;
        Ok(Self {
            socket,
            buf: vec![0; READ_CHUNK],
            filled: 0,
            consumed: 0,
        })
    }

    /// Writes `request` (one or more complete requests).
    pub async fn send(&mut self, request: &[u8]) -> Result<(), BenchError> {
        self.socket
            .write_all(request)
            .await
            .map_err(|err| BenchError::context("sending a request", err))
    }

    /// Reads the next response.
    pub async fn receive(&mut self) -> Result<Answer<'_>, BenchError> {
        let parsed = loop {
            if let Some(parsed) = parse_response(&self.buf[self.consumed..self.filled])? {
                break parsed;
            }
            self.fill().await?;
        };
        let start = self.consumed;
        self.consumed += parsed.length;
        Ok(Answer {
            status: parsed.status,
            body: &self.buf[start + parsed.body.start..start + parsed.body.end],
        })
    }

    /// Sends one request and reads its response.
    pub async fn exchange(&mut self, request: &[u8]) -> Result<Answer<'_>, BenchError> {
        self.send(request).await?;
        self.receive().await
    }

    /// Reads more bytes, first moving an unfinished response to the front.
    async fn fill(&mut self) -> Result<(), BenchError> {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.filled, 0);
            self.filled -= self.consumed;
            self.consumed = 0;
        }
        if self.buf.len() - self.filled < READ_CHUNK / 4 {
            let grown = (self.buf.len() * 2).min(MAX_RESPONSE + READ_CHUNK);
            self.buf.resize(grown, 0);
        }
        let read = self
            .socket
            .read(&mut self.buf[self.filled..])
            .await
            .map_err(|err| BenchError::context("reading a response", err))?;
        if read == 0 {
            return Err(BenchError::run(
                "the server closed the connection before answering",
            ));
        }
        self.filled += read;
        Ok(())
    }
}

/// A request header value must not be able to end the header line.
pub fn check_header_value(name: &str, value: &str) -> Result<(), BenchError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(BenchError::usage(format!(
            "the {name} value contains a line break or NUL"
        )));
    }
    Ok(())
}

/// The bytes of one request with the given headers and an optional JSON body.
pub fn request_bytes(
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
    json_body: Option<&str>,
) -> Result<Vec<u8>, BenchError> {
    check_header_value("Host", authority)?;
    check_header_value("request path", path)?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        check_header_value(name, value)?;
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = json_body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        request.push_str("\r\n");
    }
    Ok(request.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_responses_are_found_with_their_body() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        let first = parse_response(raw).expect("valid").expect("complete");
        assert_eq!(first.status, 200);
        assert_eq!(&raw[first.body.clone()], b"hello");
        let second = parse_response(&raw[first.length..])
            .expect("valid")
            .expect("complete");
        assert_eq!(second.status, 404);
        assert_eq!(second.length, raw.len() - first.length);
    }

    #[test]
    fn incomplete_responses_wait_for_more_bytes() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap(),
            None
        );
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab").unwrap(),
            None
        );
    }

    #[test]
    fn bodiless_statuses_need_no_length() {
        let not_modified = parse_response(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!((not_modified.status, not_modified.body.len()), (304, 0));
    }

    #[test]
    fn unusable_framing_is_an_error() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nbody").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE
        );
        assert!(parse_response(huge.as_bytes()).is_err());
    }

    #[test]
    fn requests_carry_headers_and_body() {
        let request = request_bytes(
            "POST",
            "127.0.0.1:8080",
            "/api/v1/x",
            &[("Authorization", "Bearer t")],
            Some(r#"{"count":1}"#),
        )
        .expect("valid");
        let text = String::from_utf8(request).expect("text");
        assert!(text.starts_with("POST /api/v1/x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("Authorization: Bearer t\r\n"));
        assert!(text.ends_with("Content-Length: 11\r\n\r\n{\"count\":1}"));
        let get = request_bytes("GET", "h", "/p", &[], None).expect("valid");
        assert!(get.ends_with(b"Host: h\r\n\r\n"));
        assert!(request_bytes("GET", "h", "/p", &[("X", "a\r\nY: b")], None).is_err());
    }
}
