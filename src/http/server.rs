//! Accepting connections and serving HTTP/1.1 and HTTP/2 on one port.
//!
//! Plain TCP: the first bytes decide, `PRI * HTTP/2.0` means prior-knowledge
//! h2c, anything else HTTP/1.1. TLS: ALPN decides (`h2` or HTTP/1.1).
//!
//! Invariants: at most `--max-connections` connections are open (the accept
//! loop waits for a free slot); a client that does not complete its TLS
//! handshake or send its first bytes within `--header-timeout` is dropped;
//! when the lifecycle enters stopping, the listener closes and every
//! connection finishes its in-flight requests and then closes. Every
//! connection task is tracked so the caller can wait for the drain.

use super::Body;
use super::io::{Replay, WriteDeadline};
use super::lean::{self, Outcome};
use super::service::{HttpService, Peer};
use crate::config::HttpLimits;
use crate::lifecycle::Lifecycle;
use crate::metrics::{Metrics, OpenGuard};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

/// The HTTP/2 connection preface a prior-knowledge client sends first.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";
/// Interval of HTTP/2 keep-alive pings.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    fn label(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::Http2 => "h2",
        }
    }
}

/// Everything a connection task needs.
pub struct ServerContext {
    /// The request pipeline.
    pub service: Arc<HttpService>,
    /// Connection metrics.
    pub metrics: Arc<Metrics>,
    /// Phase of the process; stopping closes the listener and drains.
    pub lifecycle: Arc<Lifecycle>,
    /// Limits and timeouts.
    pub limits: HttpLimits,
    /// TLS, when enabled.
    pub tls: Option<TlsAcceptor>,
}

/// Accepts until the lifecycle stops, then returns the tracker of the
/// connection tasks still draining (closed, so `wait` completes when they end).
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>) -> TaskTracker {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(context.limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = context.lifecycle.stopping() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = context.lifecycle.stopping() => break,
        };
        match accepted {
            Ok((stream, addr)) => {
                tracker.spawn(serve_connection(stream, addr, context.clone(), permit));
            }
            Err(err) => {
                tracing::warn!(error = %err, "accept failed; retrying shortly");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker
}

/// Serves one accepted connection. The hyper and TLS paths are boxed, so
/// the task of a connection on the lean path stays small (it is what an idle
/// event stream costs for its whole life).
async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    context: Arc<ServerContext>,
    _slot: OwnedSemaphorePermit,
) {
    let _ = stream.set_nodelay(true);
    let stream = WriteDeadline::new(stream, context.limits.write_timeout);
    match context.tls.clone() {
        None => serve_plain(stream, addr, &context).await,
        Some(acceptor) => Box::pin(serve_tls(stream, acceptor, addr, &context)).await,
    }
}

/// Plain TCP: sniffs the protocol, then serves it.
async fn serve_plain(
    stream: WriteDeadline<TcpStream>,
    addr: SocketAddr,
    context: &Arc<ServerContext>,
) {
    let deadline = context.limits.header_timeout;
    match tokio::time::timeout(deadline, sniff_protocol(stream.get_ref())).await {
        Ok(Ok(Protocol::Http1)) => serve_plain_http1(stream, addr, context).await,
        Ok(Ok(protocol)) => {
            let open = context.metrics.connection_opened(protocol.label());
            Box::pin(serve_http(
                TokioIo::new(stream),
                protocol,
                addr,
                context,
                open,
            ))
            .await
        }
        Ok(Err(err)) => {
            tracing::debug!(peer = %addr, error = %err, "connection closed before a request")
        }
        Err(_) => tracing::debug!(peer = %addr, "no request bytes within the header timeout"),
    }
}

/// TLS: handshakes, then serves the protocol ALPN chose.
async fn serve_tls(
    stream: WriteDeadline<TcpStream>,
    acceptor: TlsAcceptor,
    addr: SocketAddr,
    context: &Arc<ServerContext>,
) {
    let deadline = context.limits.header_timeout;
    match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let protocol = match tls.get_ref().1.alpn_protocol() {
                Some(b"h2") => Protocol::Http2,
                _ => Protocol::Http1,
            };
            let open = context.metrics.connection_opened(protocol.label());
            serve_http(TokioIo::new(tls), protocol, addr, context, open).await;
        }
        Ok(Err(err)) => tracing::debug!(peer = %addr, error = %err, "TLS handshake failed"),
        Err(_) => {
            tracing::debug!(peer = %addr, "TLS handshake did not finish within the header timeout")
        }
    }
}

/// Waits for enough bytes to tell an h2c preface from an HTTP/1 request line.
async fn sniff_protocol(stream: &TcpStream) -> std::io::Result<Protocol> {
    let mut buffer = [0u8; H2_PREFACE_START.len()];
    loop {
        let seen = stream.peek(&mut buffer).await?;
        if seen == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buffer[..seen] != H2_PREFACE_START[..seen] {
            return Ok(Protocol::Http1);
        }
        if seen == H2_PREFACE_START.len() {
            return Ok(Protocol::Http2);
        }
        // A prefix of the preface so far: wait for the rest to arrive.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Plain HTTP/1.1: the lean path may serve a first event-stream request
/// (see [`lean`]); hyper serves everything else, starting with what the lean
/// path read ahead.
async fn serve_plain_http1(
    mut stream: WriteDeadline<TcpStream>,
    addr: SocketAddr,
    context: &Arc<ServerContext>,
) {
    let protocol = Protocol::Http1;
    let open = context.metrics.connection_opened(protocol.label());
    let peer = Peer {
        addr,
        protocol: protocol.label(),
    };
    let served = lean::serve_first(&mut stream, &context.service, &context.lifecycle, peer).await;
    let replay = match served {
        Ok(Outcome::Declined) => Vec::new(),
        Ok(Outcome::KeepAlive(pipelined)) => pipelined,
        Ok(Outcome::Close) => return,
        Err(err) => {
            let timed_out = err.kind() == std::io::ErrorKind::TimedOut;
            return report_failure(timed_out, &err, addr, protocol, context);
        }
    };
    let io = TokioIo::new(Replay::new(stream, replay));
    Box::pin(serve_http(io, protocol, addr, context, open)).await;
}

async fn serve_http<I>(
    io: I,
    protocol: Protocol,
    addr: SocketAddr,
    context: &Arc<ServerContext>,
    _open: OpenGuard,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let peer = Peer {
        addr,
        protocol: protocol.label(),
    };
    let service = context.service.clone();
    let handler = service_fn(move |request| {
        let service = service.clone();
        async move { Ok::<_, Infallible>(service.handle(request, peer).await) }
    });
    let result = match protocol {
        Protocol::Http1 => {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(context.limits.header_timeout)
                .serve_connection(io, handler)
                .with_upgrades();
            drive(connection, &context.lifecycle).await
        }
        Protocol::Http2 => {
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(H2_KEEPALIVE)
                .serve_connection(io, handler);
            drive(connection, &context.lifecycle).await
        }
    };
    if let Err(err) = result {
        report_failure(is_write_timeout(&err), &err, addr, protocol, context);
    }
}

/// Logs how a connection failed; a client that stopped reading is counted.
fn report_failure(
    timed_out: bool,
    err: &dyn std::fmt::Display,
    addr: SocketAddr,
    protocol: Protocol,
    context: &ServerContext,
) {
    if timed_out {
        tracing::warn!(peer = %addr, protocol = protocol.label(), "client stopped reading; disconnected after the write timeout");
        context
            .metrics
            .stream_ended(protocol.label(), "slow-client");
    } else {
        tracing::debug!(peer = %addr, error = %err, "connection ended with an error");
    }
}

fn is_write_timeout(err: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::TimedOut;
        }
        source = current.source();
    }
    false
}

/// A hyper connection that can be asked to finish its requests and close.
trait Drainable: Future<Output = hyper::Result<()>> {
    fn drain(self: Pin<&mut Self>);
}

impl<I, S> Drainable for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Body, Error = Infallible>,
    I: Read + Write + Unpin + Send + 'static,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Drainable for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = Body, Error = Infallible>,
    I: Read + Write + Unpin + Send + 'static,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, Body>,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs a connection to its end; when stopping begins, lets in-flight requests finish.
async fn drive<C: Drainable>(connection: C, lifecycle: &Lifecycle) -> hyper::Result<()> {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return result,
        () = lifecycle.stopping() => connection.as_mut().drain(),
    }
    connection.await
}
