//! Routes that exist only in debug builds started with `--enable-test-routes`,
//! so the integration tests can exercise behaviour no product route shows yet.
//!
//! * `GET /__test/panic`: the handler panics (the server must answer 500 and keep serving).
//! * `GET /__test/sleep?ms=N`: answers after N milliseconds (a slow in-flight request).
//! * `POST /__test/echo`: parses a JSON body under the server's limits and returns it.
//! * `GET /__test/stream`: a chunked body that ticks every 100 ms and, when the
//!   server stops, sends `bye` and ends (the long-lived stream shutdown hook).
//! * `GET /__test/ws-echo`: a WebSocket echo on the WebSocket transport, for the
//!   Autobahn conformance suite (messages up to 16 MiB).
//! * `GET /__test/ws-follow`, `POST /__test/ws-follow/{id}`: a WebSocket
//!   session whose topics only the server sets (see [`ws_follow`]).
//! * `POST /__test/writer/fail-flushes?count=N`: the next N flushes (of groups
//!   or of recovery attempts) fail after their batch was applied (a failed
//!   disk, without a full disk).
//! * `POST /__test/writer/panic`: the writer thread panics outside any change.
//! * `POST /__test/writer/answer-delay?ms=N`: the writer waits N ms after each
//!   durable group before answering (0 to stop), so a test can cancel a request
//!   between its commit and its answer.

mod ws_follow;

use crate::auth::Authenticator;
use crate::http::router::Router;
use crate::http::{Body, response};
use crate::lifecycle::Lifecycle;
use crate::transport::ws::{self, WsRuntime, WsSettings, WsSocket};
use crate::writer::{Footprint, Writer};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// Largest message the echo route accepts (Autobahn sends up to 16 MiB).
const ECHO_MAX_MESSAGE: usize = 16 << 20;

/// Registers the test routes.
pub fn routes(router: &mut Router, runtime: WsRuntime, auth: Authenticator, writer: Writer) {
    writer_fault_routes(router, writer);
    let lifecycle = runtime.lifecycle.clone();
    let ws = runtime.settings;
    ws_follow::routes(router, runtime, auth);
    let echo_settings = WsSettings {
        max_message_bytes: ECHO_MAX_MESSAGE,
        ..ws
    };
    let echo_lifecycle = lifecycle.clone();
    router.route(Method::GET, "/__test/ws-echo", move |mut request| {
        let lifecycle = echo_lifecycle.clone();
        async move { ws::upgrade(&mut request, echo_settings, &lifecycle, echo) }
    });
    router.route(Method::GET, "/__test/panic", |_| async {
        panic!("deliberate panic from /__test/panic")
    });
    router.route(Method::GET, "/__test/sleep", |request| async move {
        let millis: u64 = request
            .uri()
            .query()
            .and_then(|query| query.strip_prefix("ms="))
            .and_then(|value| value.parse().ok())
            .unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        Ok(response::data(
            StatusCode::OK,
            &serde_json::json!({ "sleptMs": millis }),
        ))
    });
    router.route(Method::POST, "/__test/echo", |mut request| async move {
        let value: serde_json::Value = request.json().await?;
        Ok(response::data(StatusCode::OK, &value))
    });
    router.route(Method::GET, "/__test/stream", move |_| {
        let body = ticking_body(lifecycle.clone());
        async move {
            let mut response = http::Response::new(body);
            *response.status_mut() = StatusCode::OK;
            Ok(response)
        }
    });
}

fn writer_fault_routes(router: &mut Router, writer: Writer) {
    let armed = |what: &str| {
        Ok(response::data(
            StatusCode::OK,
            &serde_json::json!({ "armed": what }),
        ))
    };
    let fail = writer.clone();
    router.route(
        Method::POST,
        "/__test/writer/fail-flushes",
        move |request| {
            let count = query_number(&request, "count").unwrap_or(1);
            fail.faults()
                .fail_flushes(u32::try_from(count).unwrap_or(u32::MAX));
            async move { armed("fail-flushes") }
        },
    );
    let panic = writer.clone();
    router.route(Method::POST, "/__test/writer/panic", move |_| {
        panic.faults().panic_thread();
        let writer = panic.clone();
        async move {
            // Wake the writer thread with a change so the armed panic fires.
            let _ = writer.commit(Footprint::SMALL, |_| Ok(())).await;
            armed("panic")
        }
    });
    router.route(
        Method::POST,
        "/__test/writer/answer-delay",
        move |request| {
            let millis = query_number(&request, "ms").unwrap_or(0);
            writer.faults().delay_answers(millis);
            async move { armed("answer-delay") }
        },
    );
}

fn query_number(request: &crate::http::Request, name: &str) -> Option<u64> {
    request
        .query_param(name)
        .and_then(|value| value.parse().ok())
}

fn ticking_body(lifecycle: Arc<Lifecycle>) -> Body {
    let frames = futures_util::stream::unfold(
        (lifecycle, false),
        |(lifecycle, ended)| async move {
            if ended {
                return None;
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"tick\n"))), (lifecycle, false)))
                }
                () = lifecycle.stopping() => {
                    Some((Ok(Frame::data(Bytes::from_static(b"bye\n"))), (lifecycle, true)))
                }
            }
        },
    );
    StreamBody::new(frames).boxed()
}

async fn echo(mut socket: WsSocket) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    while let Some(Ok(message)) = socket.next().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // Keep reading: tungstenite answers the close and then ends the stream.
            _ => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}
