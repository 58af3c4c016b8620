//! Accepting connections and serving HTTP/1.1 and HTTP/2 on one port.
//!
//! Plain TCP: the first bytes decide, `PRI * HTTP/2.0` means prior-knowledge
//! h2c, anything else HTTP/1.1. TLS: ALPN decides (`h2` or HTTP/1.1). The
//! first bytes (and on HTTP/1.1 the first request head) are read into a
//! bounded buffer ([`first_bytes`]) and replayed to whoever serves the
//! connection. On HTTP/1.1, plain or TLS, a first request for an event
//! stream is served by the [`lean`] path, everything else by hyper.
//!
//! Invariants: connections are admitted by [`Admission`] (at most
//! `--max-connections`, then a few probe-only ones, a cap per address); a
//! client that does not complete its TLS handshake and send its first
//! request head within `--header-timeout` is dropped; a head over
//! `--max-head` gets 431 and the connection closes; an HTTP/2 connection
//! without an open stream closes after `--idle-timeout`, and one whose
//! response waits for flow-control window for `--write-timeout` is cut like
//! a stalled socket; when the lifecycle enters stopping, the listener closes
//! and every connection finishes its in-flight requests and then closes.
//! Every connection task is tracked so the caller can wait for the drain.

use super::admission::{Admission, Class, Ticket};
use super::first_bytes::{self, FirstBytes};
use super::h2_streams::{Deadlines, StreamWatch, Verdict};
use super::io::{Replay, WriteDeadline};
use super::lean::{self, Outcome};
use super::service::{HttpService, Peer};
use super::{Body, response};
use crate::core::lifecycle::Lifecycle;
use crate::core::metrics::{Metrics, OpenGuard};
use crate::error::ApiError;
use crate::http::HttpLimits;
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

/// Interval of HTTP/2 keep-alive pings.
const H2_KEEPALIVE: Duration = Duration::from_secs(20);
/// Pause after an accept error such as running out of file descriptors.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// A connection on a probe slot must send its request within this time, or
/// `--header-timeout` when that is shorter. Short, because probe slots are
/// taken in backlog order: whoever holds one delays the probes behind it
/// (a probe's request is usually waiting in the socket when it is accepted).
const PROBE_DEADLINE: Duration = Duration::from_millis(250);
/// How long an idle HTTP/2 connection's graceful close may take (the client
/// acknowledging the GOAWAY ping) before the connection is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(2);
/// After refusing a head, how long the rest of it is read and dropped so the
/// client sees the answer (closing with unread bytes would reset the connection).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

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

/// One accepted connection: who, and what it may do.
#[derive(Debug, Clone, Copy)]
struct Client {
    addr: SocketAddr,
    probe_only: bool,
}

impl Client {
    fn peer(self, protocol: Protocol) -> Peer {
        Peer {
            addr: self.addr,
            protocol: protocol.label(),
            probe_only: self.probe_only,
        }
    }

    /// Time allowed for the first request.
    fn first_request_deadline(self, limits: &HttpLimits) -> Duration {
        if self.probe_only {
            limits.header_timeout.min(PROBE_DEADLINE)
        } else {
            limits.header_timeout
        }
    }
}

/// Accepts until the lifecycle stops, then returns the tracker of the
/// connection tasks still draining (closed, so `wait` completes when they end).
pub async fn serve(listener: TcpListener, context: Arc<ServerContext>) -> TaskTracker {
    let tracker = TaskTracker::new();
    let admission = Admission::new(&context.limits);
    loop {
        let slot = tokio::select! {
            slot = admission.slot() => slot,
            () = context.lifecycle.stopping() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = context.lifecycle.stopping() => break,
        };
        match accepted {
            Ok((stream, addr)) => match admission.admit(slot, addr.ip()) {
                Some(ticket) => spawn_connection(&tracker, stream, addr, &context, ticket),
                None => {
                    context.metrics.connection_refused("per-ip");
                    tracing::debug!(peer = %addr, "connection closed: its address holds --max-connections-per-ip")
                }
            },
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

/// Spawns the task serving one accepted connection. Plain and TLS
/// connections get tasks of their own, and hyper's paths are boxed, so the
/// task of a connection on the lean path is only as large as that path needs
/// (it is what an idle event stream costs for its whole life).
fn spawn_connection(
    tracker: &TaskTracker,
    stream: TcpStream,
    addr: SocketAddr,
    context: &Arc<ServerContext>,
    ticket: Ticket,
) {
    let _ = stream.set_nodelay(true);
    let stream = WriteDeadline::new(stream, context.limits.write_timeout);
    let client = Client {
        addr,
        probe_only: ticket.class == Class::Probe,
    };
    let context = context.clone();
    match context.tls.clone() {
        None => tracker.spawn(async move {
            serve_plain(stream, client, &context).await;
            drop(ticket);
        }),
        Some(acceptor) => tracker.spawn(async move {
            serve_tls(stream, acceptor, client, &context).await;
            drop(ticket);
        }),
    };
}

/// Plain TCP: reads the first bytes, then serves the protocol they show.
async fn serve_plain(
    mut stream: WriteDeadline<TcpStream>,
    client: Client,
    context: &Arc<ServerContext>,
) {
    let deadline = client.first_request_deadline(&context.limits);
    let max_head = context.limits.max_head_bytes;
    let first =
        tokio::time::timeout(deadline, first_bytes::read(&mut stream, max_head, true)).await;
    match first {
        Ok(Ok(FirstBytes::Http1 { bytes, head_len })) => {
            serve_http1(stream, bytes, head_len, client, context).await
        }
        Ok(Ok(FirstBytes::Http2(_))) if client.probe_only => refuse_http2_probe(client, context),
        Ok(Ok(FirstBytes::Http2(bytes))) => {
            let protocol = Protocol::Http2;
            let open = context.metrics.connection_opened(protocol.label());
            let io = TokioIo::new(Replay::new(stream, bytes));
            Box::pin(serve_http(io, protocol, client, context, open)).await
        }
        Ok(Ok(FirstBytes::HeadTooLarge)) => Box::pin(refuse_large_head(stream, max_head)).await,
        Ok(Err(err)) => {
            tracing::debug!(peer = %client.addr, error = %err, "connection closed before a request")
        }
        Err(_) => tracing::debug!(peer = %client.addr, "no request within the header timeout"),
    }
}

/// TLS: handshakes, then serves the protocol ALPN chose. The handshake, the
/// TLS stream and hyper's connections live in their own allocations, so the
/// future of a connection on the lean path holds only what that path needs.
async fn serve_tls(
    stream: WriteDeadline<TcpStream>,
    acceptor: TlsAcceptor,
    client: Client,
    context: &Arc<ServerContext>,
) {
    let until = Instant::now() + client.first_request_deadline(&context.limits);
    let Some(mut tls) = Box::pin(handshake(stream, acceptor, until, client)).await else {
        return;
    };
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        if client.probe_only {
            return refuse_http2_probe(client, context);
        }
        let open = context.metrics.connection_opened(Protocol::Http2.label());
        let io = TokioIo::new(tls);
        return Box::pin(serve_http(io, Protocol::Http2, client, context, open)).await;
    }
    let max_head = context.limits.max_head_bytes;
    let first = tokio::time::timeout_at(until, first_bytes::read(&mut tls, max_head, false)).await;
    match first {
        Ok(Ok(FirstBytes::Http1 { bytes, head_len })) => {
            serve_http1(tls, bytes, head_len, client, context).await
        }
        // Not sniffed under TLS (ALPN decides): hyper gets the bytes as HTTP/1.1.
        Ok(Ok(FirstBytes::Http2(bytes))) => serve_http1(tls, bytes, 0, client, context).await,
        Ok(Ok(FirstBytes::HeadTooLarge)) => Box::pin(refuse_large_head(tls, max_head)).await,
        Ok(Err(err)) => {
            tracing::debug!(peer = %client.addr, error = %err, "connection closed before a request")
        }
        Err(_) => tracing::debug!(peer = %client.addr, "no request within the header timeout"),
    }
}

/// A server-side TLS stream, boxed (rustls's connection state is over 1 KiB).
type Tls = Box<tokio_rustls::server::TlsStream<WriteDeadline<TcpStream>>>;

/// Completes the TLS handshake by `until`; `None` (logged) when it fails.
async fn handshake(
    stream: WriteDeadline<TcpStream>,
    acceptor: TlsAcceptor,
    until: Instant,
    client: Client,
) -> Option<Tls> {
    match tokio::time::timeout_at(until, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(Box::new(tls)),
        Ok(Err(err)) => {
            tracing::debug!(peer = %client.addr, error = %err, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(peer = %client.addr, "TLS handshake did not finish within the header timeout");
            None
        }
    }
}

/// HTTP/1.1, plain or over TLS: the lean path may serve a first
/// event-stream request (see [`lean`]); hyper serves everything else,
/// starting with the bytes read so far (or what the lean path read past its
/// request).
async fn serve_http1<S>(
    mut stream: S,
    bytes: Vec<u8>,
    head_len: usize,
    client: Client,
    context: &Arc<ServerContext>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = Protocol::Http1;
    let open = context.metrics.connection_opened(protocol.label());
    let replay = if client.probe_only {
        bytes
    } else {
        let peer = client.peer(protocol);
        let (service, lifecycle) = (&context.service, &context.lifecycle);
        match lean::serve_first(&mut stream, bytes, head_len, service, lifecycle, peer).await {
            Ok(Outcome::Declined(bytes)) => bytes,
            Ok(Outcome::KeepAlive(pipelined)) => pipelined,
            Ok(Outcome::Close) => {
                // Over TLS this sends close_notify (bounded by the write deadline).
                let _ = stream.shutdown().await;
                return;
            }
            Err(err) => {
                let timed_out = err.kind() == std::io::ErrorKind::TimedOut;
                return report_failure(timed_out, &err, client.addr, protocol, context);
            }
        }
    };
    let io = TokioIo::new(Replay::new(stream, replay));
    Box::pin(serve_http(io, protocol, client, context, open)).await;
}

/// Closes an HTTP/2 connection on a probe slot: probes are served over
/// HTTP/1.1 only, one request each, so a slot is never held by a connection
/// that may idle (a stream-less HTTP/2 client would hold it for a deadline).
fn refuse_http2_probe(client: Client, context: &ServerContext) {
    context.metrics.connection_refused("probe-http2");
    tracing::debug!(peer = %client.addr, "HTTP/2 connection closed: at the connection limit only HTTP/1.1 probes are served");
}

/// Answers 431 (the error envelope) to a head over `--max-head`, then closes.
async fn refuse_large_head<I: AsyncRead + AsyncWrite + Unpin>(mut io: I, max_head: usize) {
    let err = ApiError::validation(format!(
        "the request head (request line and headers) is larger than {max_head} bytes (--max-head)"
    ))
    .with_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
    .with_details(serde_json::json!({ "limitBytes": max_head }));
    let (mut parts, body) = response::error(&err).into_parts();
    parts
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(never) => match never {},
    };
    let mut answer = lean::encode_head(&parts, Some(body.len() as u64));
    answer.extend_from_slice(&body);
    if io.write_all(&answer).await.is_err() || io.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let drain = async { while matches!(io.read(&mut sink).await, Ok(1..)) {} };
    let _ = tokio::time::timeout(REFUSAL_LINGER, drain).await;
}

async fn serve_http<I>(
    io: I,
    protocol: Protocol,
    client: Client,
    context: &Arc<ServerContext>,
    _open: OpenGuard,
) where
    I: Read + Write + Unpin + Send + 'static,
{
    let peer = client.peer(protocol);
    let limits = &context.limits;
    let service = context.service.clone();
    let ended = match protocol {
        Protocol::Http1 => {
            let handler = service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(request, peer).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_header_size(limits.max_head_bytes)
                .max_buf_size(limits.max_head_bytes)
                .keep_alive(!client.probe_only)
                .serve_connection(io, handler)
                .with_upgrades();
            drive(connection, &context.lifecycle, std::future::pending()).await
        }
        Protocol::Http2 => {
            let streams = StreamWatch::new();
            let watched = streams.clone();
            let handler = service_fn(move |request| {
                let service = service.clone();
                let guard = watched.open();
                async move {
                    let response = service.handle(request, peer).await;
                    Ok::<_, Infallible>(response.map(|body| guard.watch_body(body)))
                }
            });
            let connection = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .keep_alive_interval(H2_KEEPALIVE)
                .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
                .max_concurrent_streams(limits.h2_max_streams)
                .serve_connection(io, handler);
            let deadlines = h2_deadlines(client, limits);
            drive(connection, &context.lifecycle, streams.verdict(deadlines)).await
        }
    };
    match ended {
        Ended::Closed(Ok(())) => {}
        Ended::Closed(Err(err)) => {
            report_failure(is_write_timeout(&err), &err, client.addr, protocol, context)
        }
        Ended::Stalled => report_failure(
            true,
            &"a response waited for HTTP/2 flow-control window",
            client.addr,
            protocol,
            context,
        ),
    }
}

/// The quiet and stall deadlines of an HTTP/2 connection.
fn h2_deadlines(client: Client, limits: &HttpLimits) -> Deadlines {
    Deadlines {
        first_request: client.first_request_deadline(limits),
        idle: limits.idle_timeout,
        write: limits.write_timeout,
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

/// How a connection ended.
enum Ended {
    /// hyper finished it (cleanly or with an error).
    Closed(hyper::Result<()>),
    /// Its watchdog cut it: a response stalled by flow control.
    Stalled,
}

/// Runs a connection to its end; when stopping begins or the watchdog finds
/// it idle, lets in-flight requests finish; a stall cuts it at once.
async fn drive<C: Drainable>(
    connection: C,
    lifecycle: &Lifecycle,
    watchdog: impl Future<Output = Verdict>,
) -> Ended {
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => return Ended::Closed(result),
        () = lifecycle.stopping() => connection.as_mut().drain(),
        verdict = watchdog => match verdict {
            Verdict::Idle => {
                connection.as_mut().drain();
                // A graceful HTTP/2 close waits for the client to acknowledge
                // a ping; one that never reads would keep it open.
                let closed = tokio::time::timeout(IDLE_CLOSE_GRACE, connection).await;
                return Ended::Closed(closed.unwrap_or(Ok(())));
            }
            Verdict::Stalled => return Ended::Stalled,
        },
    }
    Ended::Closed(connection.await)
}
