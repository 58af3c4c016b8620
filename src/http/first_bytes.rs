//! The first bytes of a connection, read into a bounded buffer: which
//! protocol a plain client speaks, and the head of its first HTTP/1.1 request.
//!
//! Reading (rather than peeking in a loop) means a client that sends part of
//! the HTTP/2 preface, or part of a head, and stalls costs one pending read
//! and no wake-ups. Whoever serves the connection replays the bytes (see
//! [`super::io::Replay`]).
//!
//! Invariants: at most `max_head` bytes (plus one read of at most
//! [`READ_CHUNK`]) are buffered; nothing is allocated before the client sends
//! a byte; every byte read is returned to the caller, in order.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use tokio::io::{AsyncRead, ReadBuf};

/// The HTTP/2 connection preface a prior-knowledge client sends first.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";
/// Bytes taken from the socket per read.
const READ_CHUNK: usize = 2048;

/// What the first bytes of a connection turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// HTTP/2 with prior knowledge; the bytes read so far.
    Http2(Vec<u8>),
    /// HTTP/1.x; the bytes read so far start with a complete head of `head_len` bytes.
    Http1 {
        /// Everything read.
        bytes: Vec<u8>,
        /// Length of the first request's head (through its empty line).
        head_len: usize,
    },
    /// An HTTP/1.x head longer than the limit.
    HeadTooLarge,
}

/// Reads until the protocol (when `sniff_h2`) and the first request head are known.
pub async fn read<I: AsyncRead + Unpin>(
    io: &mut I,
    max_head: usize,
    sniff_h2: bool,
) -> io::Result<FirstBytes> {
    let mut bytes = Vec::new();
    loop {
        let scanned = bytes.len();
        if read_chunk(io, &mut bytes).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if sniff_h2 {
            let seen = bytes.len().min(H2_PREFACE_START.len());
            if bytes[..seen] == H2_PREFACE_START[..seen] {
                if seen == H2_PREFACE_START.len() {
                    return Ok(FirstBytes::Http2(bytes));
                }
                continue;
            }
        }
        if let Some(head_len) = head_end(&bytes, scanned) {
            return Ok(FirstBytes::Http1 { bytes, head_len });
        }
        if bytes.len() > max_head {
            return Ok(FirstBytes::HeadTooLarge);
        }
    }
}

/// Appends one read's worth of bytes; returns how many (0 at end of stream).
async fn read_chunk<I: AsyncRead + Unpin>(io: &mut I, bytes: &mut Vec<u8>) -> io::Result<usize> {
    poll_fn(|cx| {
        // The chunk lives only for this poll: an idle connection's task stays small.
        let mut chunk = [0u8; READ_CHUNK];
        let mut buf = ReadBuf::new(&mut chunk);
        std::task::ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
        // Exact growth: a stalled head holds what it sent, not twice as much.
        bytes.reserve_exact(buf.filled().len());
        bytes.extend_from_slice(buf.filled());
        std::task::Poll::Ready(Ok(buf.filled().len()))
    })
    .await
}

/// The length of the head (through its empty line) when `bytes` holds all
/// of it; `scanned` bytes were already searched by an earlier call.
fn head_end(bytes: &[u8], scanned: usize) -> Option<usize> {
    let from = scanned.saturating_sub(3);
    let mut position = from;
    while let Some(offset) = memchr::memchr(b'\n', &bytes[position..]) {
        let newline = position + offset;
        let rest = &bytes[newline + 1..];
        if rest.starts_with(b"\n") {
            return Some(newline + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(newline + 3);
        }
        position = newline + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn heads_end_at_the_first_empty_line() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nbody";
        assert_eq!(head_end(head, 0), Some(head.len() - 4));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: a\n\nx", 0), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
        // Found across two reads.
        let whole = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(head_end(whole, 16), Some(whole.len()));
    }

    async fn first_bytes(chunks: &[&[u8]], max_head: usize) -> io::Result<FirstBytes> {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        read(&mut server, max_head, true).await
    }

    #[tokio::test]
    async fn the_preface_selects_http2_and_anything_else_http1() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        assert_eq!(
            first_bytes(&[preface], 8192).await.unwrap(),
            FirstBytes::Http2(preface.to_vec())
        );
        let request = b"GET / HTTP/1.1\r\n\r\nGET /next";
        assert_eq!(
            first_bytes(&[request], 8192).await.unwrap(),
            FirstBytes::Http1 {
                bytes: request.to_vec(),
                head_len: 18
            }
        );
        assert_eq!(
            first_bytes(&[b"PRI * GET"], 8192).await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[tokio::test]
    async fn heads_over_the_limit_are_refused() {
        let filler = vec![b'a'; 20_000];
        let outcome = first_bytes(&[b"GET / HTTP/1.1\r\nx: ", &filler], 8192).await;
        assert_eq!(outcome.unwrap(), FirstBytes::HeadTooLarge);
    }
}
