//! A minimal HTTP/1.1 client for one long-lived streaming GET (the SSE subscribers).
//!
//! hyper's client runs each connection on its own task and hands body chunks
//! to the caller's task through a channel: two task wake-ups and a channel
//! hop per event. A subscriber only needs one request and then raw body
//! bytes, so it writes the request itself, parses the response head with
//! `httparse`, and reads the body straight from the socket in its own task:
//! [`Framing`] strips chunked encoding (or counts a `Content-Length`) in place.

use super::chunked::ChunkDecoder;
use super::error::BenchError;
use super::keepalive::check_header_value as check_value;
use super::socket::Socket;
use std::borrow::Cow;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest response head accepted.
const MAX_HEAD: usize = 64 << 10;

/// Most response headers accepted.
const MAX_HEADERS: usize = 64;

/// How the response body ends.
#[derive(Debug, Clone)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkDecoder),
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    /// Neither: the body ends when the server closes the connection.
    UntilClose,
}

impl Framing {
    /// Decodes the raw bytes `buf[from..]` in place, keeping only body bytes.
    pub fn decode_in_place(&mut self, buf: &mut Vec<u8>, from: usize) -> Result<(), BenchError> {
        match self {
            Self::Chunked(decoder) => decoder
                .decode_in_place(buf, from)
                .map_err(|err| BenchError::run(err.to_string())),
            Self::Length(remaining) => {
                let got = (buf.len() - from) as u64;
                let keep = got.min(*remaining);
                buf.truncate(from + keep as usize);
                *remaining -= keep;
                Ok(())
            }
            Self::UntilClose => Ok(()),
        }
    }

    /// Whether the whole body has arrived (never for [`Framing::UntilClose`]).
    pub fn is_done(&self) -> bool {
        match self {
            Self::Chunked(decoder) => decoder.is_done(),
            Self::Length(remaining) => *remaining == 0,
            Self::UntilClose => false,
        }
    }
}

/// The parts of a response head the subscriber needs.
#[derive(Debug, Clone)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Body bytes (still encoded) that arrived with the head.
    pub leftover: Vec<u8>,
}

/// Writes `GET path` with the given extra headers.
pub async fn send_get(
    stream: &mut Socket,
    authority: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(), BenchError> {
    check_value("Host", authority)?;
    check_value("request path", path)?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n");
    for (name, value) in headers {
        check_value(name, value)?;
        request.push_str(name);
        request.push_str(": ");
        request.push_str(value);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|err| BenchError::context("sending the stream request", err))
}

/// Reads and parses the response head.
pub async fn read_head(stream: &mut Socket) -> Result<Head, BenchError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_HEAD {
            return Err(BenchError::run(format!(
                "the response head is longer than {MAX_HEAD} bytes"
            )));
        }
        buf.reserve(1024);
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|err| BenchError::context("reading the response head", err))?;
        if read == 0 {
            return Err(BenchError::run(
                "the server closed the connection before answering",
            ));
        }
        if let Some(head) = parse_head(&buf)? {
            return Ok(head);
        }
    }
}

/// Parses a complete head, `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, BenchError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => {
            return Err(BenchError::run(format!(
                "the server's response head is not HTTP/1.1: {err}"
            )));
        }
    };
    let status = response.code.unwrap_or(0);
    let framing = framing_of(response.headers)?;
    Ok(Some(Head {
        status,
        framing,
        leftover: buf[length..].to_vec(),
    }))
}

/// The values of every header called `wanted`.
fn header_values<'a>(
    headers: &'a [httparse::Header<'_>],
    wanted: &'a str,
) -> impl Iterator<Item = Cow<'a, str>> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(wanted))
        .map(|h| String::from_utf8_lossy(h.value))
}

/// The body framing announced by the headers.
fn framing_of(headers: &[httparse::Header<'_>]) -> Result<Framing, BenchError> {
    let chunked = header_values(headers, "transfer-encoding").any(|codings| {
        codings
            .rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    if chunked {
        return Ok(Framing::Chunked(ChunkDecoder::new()));
    }
    match header_values(headers, "content-length").next() {
        Some(text) => text
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| BenchError::run(format!("unusable Content-Length `{text}`"))),
        None => Ok(Framing::UntilClose),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_give_status_framing_and_leftover() {
        let head = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.status, 200);
        assert!(matches!(head.framing, Framing::Chunked(_)));
        assert_eq!(head.leftover, b"5\r\nhel");
        let head = parse_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 12\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.status, 404);
        assert!(matches!(head.framing, Framing::Length(12)));
        let head = parse_head(b"HTTP/1.0 200 OK\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert!(matches!(head.framing, Framing::UntilClose));
    }

    #[test]
    fn partial_and_broken_heads() {
        assert!(matches!(parse_head(b"HTTP/1.1 200 OK\r\nX: y"), Ok(None)));
        assert!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: lots\r\n\r\n").is_err());
    }

    #[test]
    fn length_framing_stops_at_the_length() {
        let mut framing = Framing::Length(3);
        let mut buf = b"abcdef".to_vec();
        framing.decode_in_place(&mut buf, 0).expect("decodes");
        assert_eq!(buf, b"abc");
        assert!(framing.is_done());
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        assert!(check_value("X-API-Key", "good").is_ok());
        assert!(check_value("X-API-Key", "bad\r\nX: y").is_err());
    }
}
