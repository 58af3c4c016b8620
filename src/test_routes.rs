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
//! * `/__test/engine.io/`, `/__test/socket.io/`: the Socket.IO conformance
//!   kit's endpoints (see [`socketio`]).
//! * `POST /__test/writer/fail-flushes?count=N`: the next N flushes (of groups
//!   or of recovery attempts) fail after their batch was applied (a failed
//!   disk, without a full disk).
//! * `POST /__test/writer/panic`: the writer thread panics outside any change.
//! * `POST /__test/writer/answer-delay?ms=N`: the writer waits N ms after each
//!   durable group before answering (0 to stop), so a test can cancel a request
//!   between its commit and its answer.
//! * `POST /__test/timers/publish?tenant=T&topic=N&at=MS&label=L&count=C`:
//!   schedules C (default 1) durable timers due at unix ms `at`; each, when
//!   it fires, appends an event `timer` with `{"label","n","dueMs"}` to the
//!   topic (scheduled in changes of 1000 timers).
//! * `POST /__test/periodic/bump?n=K`: adds K to a counter folded every
//!   250 ms into a stored total; `GET /__test/periodic/total` reads the total
//!   and the number of folds.
//! * `POST /__test/discussions/forget-pending-index?tenant=T`: removes the
//!   tenant's pending-comment index rows and the index's backfill record, as
//!   a build before the index left them (see [`discussions`]).

mod discussions;
mod socketio;
mod ws_follow;

use crate::auth::Authenticator;
use crate::core::lifecycle::Lifecycle;
use crate::core::log::TopicRef;
use crate::core::store::{decode_u64, layout};
use crate::core::writer::{Change, Counters, Counts, DEFAULT_PERIOD, Footprint, Timer, Writer};
use crate::error::ApiError;
use crate::http::router::Router;
use crate::http::{Body, response};
use crate::transport::socketio::SioSettings;
use crate::transport::ws::{self, WsRuntime, WsSettings, WsSocket};
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
pub fn routes(
    router: &mut Router,
    runtime: WsRuntime,
    sio: SioSettings,
    auth: Authenticator,
    writer: Writer,
) {
    socketio::routes(router, sio, runtime.clone());
    writer_fault_routes(router, writer.clone());
    timer_routes(router, writer.clone());
    periodic_routes(router, writer.clone());
    discussions::routes(router, writer);
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

/// Name of the timer handler of `/__test/timers/publish`.
const PUBLISH_HANDLER: &str = "test.publish";
/// Timers scheduled per change by `/__test/timers/publish`.
const TIMERS_PER_CHANGE: u64 = 1000;

fn timer_routes(router: &mut Router, writer: Writer) {
    writer
        .timers()
        .register(PUBLISH_HANDLER, publish_on_timer)
        .expect("the test timer handler is registered once");
    router.route(Method::POST, "/__test/timers/publish", move |request| {
        let writer = writer.clone();
        async move {
            let topic = request
                .query_param("topic")
                .ok_or_else(|| ApiError::validation("topic is required"))?;
            let tenant: uuid::Uuid = request
                .query_param("tenant")
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| ApiError::validation("tenant must be a UUID"))?;
            TopicRef::new(tenant, &topic).map_err(ApiError::validation)?;
            let due_ms = query_number(&request, "at").unwrap_or(0);
            let count = query_number(&request, "count").unwrap_or(1);
            let label = request.query_param("label").unwrap_or_default();
            let mut first = 0;
            while first < count {
                let last = count.min(first + TIMERS_PER_CHANGE);
                let payloads: Vec<Vec<u8>> = (first..last)
                    .map(|n| {
                        serde_json::to_vec(&serde_json::json!({
                            "tenant": tenant, "topic": topic, "label": label, "n": n
                        }))
                        .unwrap_or_default()
                    })
                    .collect();
                let bytes = payloads.iter().map(Vec::len).sum();
                writer
                    .commit(Footprint::data(bytes), move |change| {
                        for payload in &payloads {
                            change.schedule(due_ms, PUBLISH_HANDLER, payload)?;
                        }
                        Ok(())
                    })
                    .await?;
                first = last;
            }
            Ok(response::data(
                StatusCode::OK,
                &serde_json::json!({ "scheduled": count }),
            ))
        }
    });
}

/// The `test.publish` handler: appends the event its payload describes.
fn publish_on_timer(change: &mut Change<'_>, timer: &Timer) -> Result<(), ApiError> {
    let payload: serde_json::Value = serde_json::from_slice(&timer.payload)
        .map_err(|err| ApiError::internal(format!("timer payload: {err}")))?;
    let tenant = payload["tenant"]
        .as_str()
        .and_then(|tenant| tenant.parse().ok())
        .ok_or_else(|| ApiError::internal("timer payload without a tenant"))?;
    let topic = TopicRef::new(tenant, payload["topic"].as_str().unwrap_or_default())
        .map_err(ApiError::internal)?;
    let data = serde_json::json!({
        "label": payload["label"], "n": payload["n"], "dueMs": timer.due_ms
    });
    change.append(
        &topic,
        "timer",
        serde_json::json!({ "name": "timer" }),
        data,
    )?;
    Ok(())
}

/// Key of a stored total of `/__test/periodic/*`.
fn periodic_key(name: &str) -> Vec<u8> {
    let mut key = layout::module("test");
    key.extend_from_slice(name.as_bytes());
    key
}

fn periodic_routes(router: &mut Router, writer: Writer) {
    let counters = writer.fold_periodically("test.bumps", DEFAULT_PERIOD, fold_bumps);
    let bumps: Arc<Counters> = counters.clone();
    router.route(Method::POST, "/__test/periodic/bump", move |request| {
        bumps.add("bumps", query_number(&request, "n").unwrap_or(1));
        async move { Ok(response::data(StatusCode::OK, &serde_json::json!({}))) }
    });
    router.route(Method::GET, "/__test/periodic/total", move |_| {
        let writer = writer.clone();
        async move {
            let read = |change: &mut Change<'_>, name: &str| {
                Ok::<_, ApiError>(
                    change
                        .get(&periodic_key(name))?
                        .map_or(0, |v| decode_u64(&v)),
                )
            };
            let (total, folds) = writer
                .commit(Footprint::SMALL, move |change| {
                    Ok((read(change, "total")?, read(change, "folds")?))
                })
                .await?
                .value;
            Ok(response::data(
                StatusCode::OK,
                &serde_json::json!({ "total": total, "folds": folds }),
            ))
        }
    });
}

/// Adds one period's bumps to the stored total and counts the fold.
fn fold_bumps(change: &mut Change<'_>, counts: &Counts) -> Result<(), ApiError> {
    let bumps = counts.get("bumps").copied().unwrap_or(0);
    for (name, amount) in [("total", bumps), ("folds", 1)] {
        let key = periodic_key(name);
        let stored = change.get(&key)?.map_or(0, |v| decode_u64(&v));
        change.put(key, stored.saturating_add(amount).to_be_bytes().to_vec());
    }
    Ok(())
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
