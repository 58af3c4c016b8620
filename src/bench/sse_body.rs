//! Where an SSE subscriber's body bytes come from: its own HTTP/1.1
//! connection (plain or TLS, read in the subscriber's task, the chunked
//! framing stripped in place, see [`super::h1`]), or one stream of a shared
//! HTTP/2 connection (hyper's DATA frames, `--http2`).
//!
//! Invariants: only body bytes reach the scanner, in order; a fill either
//! appends what one read or frame brought or takes nothing (cancel-safe);
//! the end of the body is reported once it has been reached.

use super::error::BenchError;
use super::h1::Framing;
use super::socket::Socket;
use super::sse::SseScanner;
use hyper::body::{Body, Incoming};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::AsyncReadExt;

/// First read size: small, so that idle connections stay cheap.
const FIRST_READ: usize = 4 << 10;

/// Largest read size, reached when reads keep filling the buffer.
const MAX_READ: usize = 64 << 10;

/// The body of one SSE response.
#[derive(Debug)]
pub enum SseBody {
    /// HTTP/1.1 on the subscriber's own socket.
    Http1 {
        /// The connection.
        socket: Socket,
        /// How the body is delimited.
        framing: Framing,
        /// Bytes offered to the next read; doubles while reads fill it.
        read_size: usize,
    },
    /// One stream of an HTTP/2 connection.
    Http2(Incoming),
}

impl SseBody {
    /// The body of an HTTP/1.1 response read from `socket`.
    pub fn http1(socket: Socket, framing: Framing) -> Self {
        Self::Http1 {
            socket,
            framing,
            read_size: FIRST_READ,
        }
    }

    /// The capacity to give the scanner up front.
    pub fn first_read() -> usize {
        FIRST_READ
    }

    /// Takes the body bytes that arrived with the head; `Ok(false)` when they were all of it.
    pub fn start(&mut self, leftover: &[u8], scanner: &mut SseScanner) -> Result<bool, BenchError> {
        let Self::Http1 { framing, .. } = self else {
            return Ok(true);
        };
        let from = scanner.buffer().len();
        scanner.extend(leftover);
        framing.decode_in_place(scanner.buffer(), from)?;
        Ok(!framing.is_done())
    }

    /// Appends the next body bytes to the scanner; `Ok(false)` once the body has ended.
    pub fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        scanner: &mut SseScanner,
    ) -> Poll<Result<bool, BenchError>> {
        match self {
            Self::Http1 {
                socket,
                framing,
                read_size,
            } => poll_fill_http1(cx, socket, framing, read_size, scanner),
            Self::Http2(body) => poll_fill_http2(cx, body, scanner),
        }
    }
}

/// One socket read, decoded into the scanner.
fn poll_fill_http1(
    cx: &mut Context<'_>,
    socket: &mut Socket,
    framing: &mut Framing,
    read_size: &mut usize,
    scanner: &mut SseScanner,
) -> Poll<Result<bool, BenchError>> {
    scanner.reserve(*read_size);
    let buf = scanner.buffer();
    let from = buf.len();
    let offered = buf.capacity() - from;
    let count = match std::pin::pin!(socket.read_buf(buf)).poll(cx) {
        Poll::Pending => return Poll::Pending,
        Poll::Ready(Err(err)) => {
            return Poll::Ready(Err(BenchError::context("reading the SSE stream", err)));
        }
        Poll::Ready(Ok(count)) => count,
    };
    if count == offered {
        *read_size = (*read_size * 2).min(MAX_READ);
    }
    framing
        .decode_in_place(scanner.buffer(), from)
        .map_err(|err| BenchError::run(format!("reading the SSE stream: {err}")))?;
    Poll::Ready(Ok(count > 0 && !framing.is_done()))
}

/// One DATA frame of the h2 stream into the scanner (trailers are skipped).
fn poll_fill_http2(
    cx: &mut Context<'_>,
    body: &mut Incoming,
    scanner: &mut SseScanner,
) -> Poll<Result<bool, BenchError>> {
    loop {
        let frame = match std::task::ready!(Pin::new(&mut *body).poll_frame(cx)) {
            None => return Poll::Ready(Ok(false)),
            Some(Err(err)) => {
                return Poll::Ready(Err(BenchError::context("reading the h2 SSE stream", err)));
            }
            Some(Ok(frame)) => frame,
        };
        if let Ok(data) = frame.into_data() {
            scanner.extend(&data);
            return Poll::Ready(Ok(!body.is_end_stream()));
        }
    }
}
