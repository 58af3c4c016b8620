//! One client socket to the target: plain TCP, or TLS over TCP for an
//! `https://` target. Every client of the bench (SSE and WebSocket
//! subscribers, HTTP/1.1 and HTTP/2 connections) reads and writes a
//! [`Socket`], so no code path exists twice for plain and TLS.
//!
//! Invariants: Nagle's algorithm is off; the TLS handshake (with the ALPN
//! the caller asks for) is complete when [`Socket::connect`] returns.

use super::error::BenchError;
use super::target::Target;
use super::tls::Alpn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A connected socket, plain or TLS.
#[derive(Debug)]
pub enum Socket {
    /// Plain TCP (`http://`).
    Plain(TcpStream),
    /// TLS over TCP (`https://`).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Socket {
    /// Connects to the target (handshaking TLS offering `alpn` when the target is `https://`).
    pub async fn connect(target: &Target, alpn: Alpn) -> Result<Self, BenchError> {
        let stream = TcpStream::connect(target.addr)
            .await
            .map_err(|err| BenchError::context(format!("connecting to {}", target.addr), err))?;
        stream
            .set_nodelay(true)
            .map_err(|err| BenchError::context("setting TCP_NODELAY", err))?;
        let Some(tls) = &target.tls else {
            return Ok(Self::Plain(stream));
        };
        let connector = TlsConnector::from(tls.client_config(alpn)?);
        let stream = connector
            .connect(tls.name()?, stream)
            .await
            .map_err(|err| {
                BenchError::context(format!("TLS handshake with {}", target.addr), err)
            })?;
        Ok(Self::Tls(Box::new(stream)))
    }

    /// The protocol the server chose in the TLS handshake (`None` on plain TCP).
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            Self::Plain(_) => None,
            Self::Tls(stream) => stream.get_ref().1.alpn_protocol(),
        }
    }

    /// Writes what the socket takes now without waiting (`WouldBlock` when nothing).
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(stream) => stream.try_write(buf),
            Self::Tls(stream) => {
                // No task waits on this write: the caller retries on its next wake-up.
                let mut cx = Context::from_waker(Waker::noop());
                let mut stream = Pin::new(stream.as_mut());
                let written = match stream.as_mut().poll_write(&mut cx, buf) {
                    Poll::Ready(result) => result?,
                    Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
                };
                match stream.poll_flush(&mut cx) {
                    Poll::Ready(Err(err)) => Err(err),
                    _ => Ok(written),
                }
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
