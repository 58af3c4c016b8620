//! HTTP/2 connections shared by the SSE subscribers of one group
//! (`--http2`): each subscriber's stream is an h2 stream, and every
//! `--h2-streams` subscribers share one connection (h2c by prior knowledge on
//! `http://`, ALPN `h2` on `https://`).
//!
//! Invariants: a connection is handed out for at most `streams_per_connection`
//! streams over its life (a resumed stream takes a new slot, so a connection
//! never carries more than that many at once and stays under the server's
//! `--h2-max-streams`); a closed connection is replaced; connections are
//! opened one at a time.

use super::error::BenchError;
use super::http::{HttpClient, Protocol};
use super::target::Target;
use tokio::sync::Mutex;

/// The connections of one subscriber group.
#[derive(Debug)]
pub struct H2Pool {
    target: Target,
    streams_per_connection: usize,
    current: Mutex<Option<Slots>>,
}

/// The connection being filled and how many streams it was given.
#[derive(Debug)]
struct Slots {
    client: HttpClient,
    given: usize,
}

impl H2Pool {
    /// A pool for `target` with `streams_per_connection` (at least 1) streams per connection.
    pub fn new(target: Target, streams_per_connection: usize) -> Self {
        Self {
            target,
            streams_per_connection: streams_per_connection.max(1),
            current: Mutex::new(None),
        }
    }

    /// A handle on a connection with a free stream slot, opening one when needed.
    pub async fn stream_client(&self) -> Result<HttpClient, BenchError> {
        let mut current = self.current.lock().await;
        let slots = match current.take() {
            Some(slots)
                if slots.given < self.streams_per_connection && !slots.client.is_closed() =>
            {
                slots
            }
            _ => Slots {
                client: HttpClient::connect(&self.target, Protocol::Http2).await?,
                given: 0,
            },
        };
        let handle = slots
            .client
            .share()
            .ok_or_else(|| BenchError::run("an HTTP/2 connection could not be shared"))?;
        *current = Some(Slots {
            given: slots.given + 1,
            ..slots
        });
        Ok(handle)
    }
}
