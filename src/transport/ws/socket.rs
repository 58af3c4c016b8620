//! The upgraded socket of a session and its read gate.
//!
//! Backpressure: tungstenite answers every ping with a pong, so a client
//! that sends pings and reads nothing would make the server queue pongs
//! without end. The write buffer is bounded (`max_write_buffer_size`), and
//! [`ReadGate`] stops reading frames while a write is blocked: the client's
//! own sends then block, nothing more is queued, and once a write has made
//! no progress for `--write-timeout` the session is closed with 1008 and
//! counted as a slow client.

use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;

/// The socket a session works on.
pub type WsSocket = WebSocketStream<ReadGate<TokioIo<hyper::upgrade::Upgraded>>>;

/// An upgraded socket that reads nothing while a write is blocked: a peer
/// that does not read what we send (pongs included) cannot make us queue
/// answers to what it keeps sending.
///
/// Invariant: a blocked write registered the task's waker with the socket,
/// so the task wakes when the write can progress (or its deadline fails it)
/// and reading resumes after the write went through.
pub struct ReadGate<I> {
    inner: I,
    write_blocked: bool,
}

impl<I> ReadGate<I> {
    pub(super) fn new(inner: I) -> Self {
        Self {
            inner,
            write_blocked: false,
        }
    }

    fn track<T>(&mut self, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        self.write_blocked = poll.is_pending();
        poll
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ReadGate<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.write_blocked {
            return Poll::Pending;
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ReadGate<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.track(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.track(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.track(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
