//! A lean HTTP/1.1 path for long-lived event streams.
//!
//! hyper's HTTP/1 connection holds an 8 KiB write buffer and an 8 KiB read
//! buffer for as long as it lives, which is most of what an idle SSE
//! connection costs. So when the first request of an HTTP/1.1 connection
//! (plain TCP, or TLS after the handshake) is a bodyless `GET` asking for
//! `text/event-stream`, the server
//! parses the head itself (from the first bytes the server read, see
//! [`super::first_bytes`]), runs it through the same [`HttpService`]
//! pipeline as every request (routing, auth, request id, metrics, access
//! log), and writes the response straight to the socket (or the TLS stream):
//! the head, then each body frame as a chunk as soon as the stream yields it,
//! flushed at once (TLS records are sent, not kept in rustls's buffer; a
//! client that stops reading meets `--write-timeout`). Afterwards the
//! connection continues under hyper (keep-alive), with any bytes pipelined
//! behind the request replayed first.
//!
//! Invariants: anything unusual (a body, an upgrade, `Expect`, HTTP/1.0, a
//! header hyper would refuse) is declined and handed back untouched to be
//! served by hyper as before; while a response streams, the socket is
//! watched, and the client closing it ends the stream at once (dropping the
//! body releases its subscription); more than [`MAX_PIPELINED`] bytes
//! pipelined behind a stream disconnect the client; a `Connection: close`
//! (either side) or a stopping server closes the connection after the response.

use super::Response;
use super::service::{HttpService, Peer};
use crate::core::lifecycle::Lifecycle;
use bytes::Buf;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version, header};
use http_body_util::BodyExt;
use hyper::body::Body as _;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Most request headers parsed; more go to hyper.
const MAX_HEADERS: usize = 64;
/// Most bytes a client may pipeline behind a stream before it is disconnected.
pub const MAX_PIPELINED: usize = 16 << 10;

/// What became of the first request.
#[derive(Debug)]
pub enum Outcome {
    /// Not a lean request: serve the connection with hyper, replaying these bytes first.
    Declined(Vec<u8>),
    /// Answered; serve the rest with hyper, replaying these bytes first.
    KeepAlive(Vec<u8>),
    /// Answered (or the client left); the connection is done.
    Close,
}

/// Serves the first request of an HTTP/1.1 connection (plain or TLS) when
/// it is a bodyless event-stream `GET`; hands anything else back untouched.
/// `bytes` is what was read so far, starting with a head of `head_len` bytes.
pub async fn serve_first<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut bytes: Vec<u8>,
    head_len: usize,
    service: &HttpService,
    lifecycle: &Lifecycle,
    peer: Peer,
) -> io::Result<Outcome> {
    let Some(head) = parse_head(&bytes[..head_len]) else {
        return Ok(Outcome::Declined(bytes));
    };
    bytes.drain(..head_len);
    bytes.shrink_to_fit();
    let close_requested = asks_to_close(&head.headers);
    let response = service.handle_parts(head, None, peer).await;
    let close = close_requested || asks_to_close(response.headers());
    Ok(match write_response(stream, response, bytes).await? {
        Some(pipelined) if !close && !lifecycle.is_stopping() => Outcome::KeepAlive(pipelined),
        _ => Outcome::Close,
    })
}

/// The head of a qualifying request (`bytes` is exactly one head).
fn parse_head(bytes: &[u8]) -> Option<http::request::Parts> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = request.parse(bytes).ok()? else {
        return None;
    };
    if request.method != Some("GET") || request.version != Some(1) {
        return None;
    }
    let mut map = HeaderMap::with_capacity(request.headers.len());
    for field in request.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        map.append(name, HeaderValue::from_bytes(field.value).ok()?);
    }
    if !wants_lean_stream(&map) {
        return None;
    }
    let mut builder = http::Request::builder()
        .method(Method::GET)
        .uri(request.path?)
        .version(Version::HTTP_11);
    *builder.headers_mut()? = map;
    let (head, ()) = builder.body(()).ok()?.into_parts();
    Some(head)
}

/// A bodyless request that accepts `text/event-stream` and upgrades nothing.
fn wants_lean_stream(headers: &HeaderMap) -> bool {
    let accepts_events = headers.get_all(header::ACCEPT).iter().any(|value| {
        value
            .to_str()
            .is_ok_and(|v| v.contains("text/event-stream"))
    });
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|value| value != "0");
    accepts_events
        && !has_body
        && !headers.contains_key(header::UPGRADE)
        && !headers.contains_key(header::EXPECT)
}

/// Whether a `Connection` header says `close`.
fn asks_to_close(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
    })
}

/// Writes the response; returns what the client pipelined (after the
/// `pipelined` bytes already read), or `None` when it closed the connection
/// before the body ended.
async fn write_response<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: Response,
    mut pipelined: Vec<u8>,
) -> io::Result<Option<Vec<u8>>> {
    let (parts, mut body) = response.into_parts();
    let length = body.size_hint().exact();
    let head = encode_head(&parts, length);
    drop(parts);
    stream.write_all(&head).await?;
    stream.flush().await?;
    drop(head);
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            open = read_ahead(stream, &mut pipelined) => {
                if !open? {
                    return Ok(None);
                }
                continue;
            }
        };
        let Some(Ok(frame)) = frame else { break };
        if let Ok(data) = frame.into_data() {
            write_data(stream, &data, length.is_none()).await?;
        }
    }
    if length.is_none() {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.flush().await?;
    Ok(Some(pipelined))
}

/// The status line and headers, with our framing and `date`.
pub(super) fn encode_head(parts: &http::response::Parts, length: Option<u64>) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(parts.status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            continue;
        }
        push_field(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    match length {
        Some(length) => push_field(&mut head, b"content-length", length.to_string().as_bytes()),
        None => push_field(&mut head, b"transfer-encoding", b"chunked"),
    }
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    push_field(&mut head, b"date", date.as_bytes());
    head.extend_from_slice(b"\r\n");
    head
}

fn push_field(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Writes one body frame, as a chunk when the length was not known up
/// front, and flushes it (a no-op on plain TCP; sends the TLS records).
async fn write_data<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    chunked: bool,
) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if chunked {
        let mut size = [0u8; 18];
        let size = chunk_size_line(data.len(), &mut size);
        let mut chunk = Buf::chain(size, data).chain(&b"\r\n"[..]);
        stream.write_all_buf(&mut chunk).await?;
    } else {
        stream.write_all(data).await?;
    }
    stream.flush().await
}

/// `<hex length>\r\n` in `buf`.
fn chunk_size_line(length: usize, buf: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - length.leading_zeros()).div_ceil(4).max(1) as usize;
    for (index, slot) in buf[..digits].iter_mut().enumerate() {
        let nibble = (length >> (4 * (digits - 1 - index))) & 0xF;
        *slot = b"0123456789abcdef"[nibble];
    }
    buf[digits..digits + 2].copy_from_slice(b"\r\n");
    &buf[..digits + 2]
}

/// Waits until the client sends something while its stream runs and keeps
/// it; `Ok(false)` when it closed. Cancel-safe: a read either completes in
/// one poll or takes nothing, and the chunk it reads into lives only for
/// that poll (an idle stream's task holds no read buffer).
async fn read_ahead<S: AsyncRead + Unpin>(
    stream: &mut S,
    pipelined: &mut Vec<u8>,
) -> io::Result<bool> {
    poll_fn(|cx| {
        let mut chunk = [0u8; 1024];
        let mut buf = ReadBuf::new(&mut chunk);
        std::task::ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
        let count = buf.filled().len();
        Poll::Ready(match count {
            0 => Ok(false),
            _ if pipelined.len() + count > MAX_PIPELINED => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client sent too much behind an event stream",
            )),
            _ => {
                pipelined.extend_from_slice(buf.filled());
                Ok(true)
            }
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bodyless_event_stream_gets_qualify() {
        let stream = b"GET /api/v1/topics/t/stream?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n";
        let head = parse_head(stream).expect("qualifies");
        assert_eq!(head.uri.path(), "/api/v1/topics/t/stream");
        assert_eq!(head.uri.query(), Some("x=1"));
        assert_eq!(head.headers["host"], "a");
        for declined in [
            &b"GET /api/v1/topics/t/stream HTTP/1.1\r\nAccept: text/event-stream\r\n"[..],
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST /s HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 2\r\n\r\n{}",
            b"GET /s HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n",
            b"GET /s HTTP/1.1\r\nAccept: text/event-stream\r\nUpgrade: websocket\r\n\r\n",
            b"GET /s HTTP/1.1\r\nAccept: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET /s HTTP/1.1\r\nAccept: text/event-stream\r\nExpect: 100-continue\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(
                parse_head(declined).is_none(),
                "{}",
                String::from_utf8_lossy(declined)
            );
        }
    }

    #[test]
    fn heads_carry_our_framing() {
        let response = http::Response::builder()
            .status(200)
            .header("content-type", "text/event-stream")
            .header("content-length", "99")
            .body(())
            .unwrap();
        let (parts, ()) = response.into_parts();
        let text = String::from_utf8(encode_head(&parts, None)).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(text.contains("transfer-encoding: chunked\r\n"));
        assert!(!text.contains("content-length"));
        assert!(text.contains("\r\ndate: ") && text.ends_with("GMT\r\n\r\n"));
        let text = String::from_utf8(encode_head(&parts, Some(5))).unwrap();
        assert!(text.contains("content-length: 5\r\n") && !text.contains("chunked"));
    }

    #[test]
    fn chunk_sizes_are_hex() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size_line(1, &mut buf), b"1\r\n");
        assert_eq!(chunk_size_line(255, &mut buf), b"ff\r\n");
        assert_eq!(chunk_size_line(4096, &mut buf), b"1000\r\n");
        assert_eq!(
            chunk_size_line(usize::MAX, &mut buf),
            b"ffffffffffffffff\r\n"
        );
    }

    #[test]
    fn close_requests_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!asks_to_close(&headers));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Close"),
        );
        assert!(asks_to_close(&headers));
    }
}
