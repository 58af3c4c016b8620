//! Other servers the bench can measure, for side-by-side figures.
//!
//! `poll --peer nginx` measures Debian's nginx serving the same interval
//! bodies from files ([`super::nginx`]).
//!
//! `--peer pushpin` runs the same fanout against Pushpin in front of a GRIP
//! origin (`scripts/grip-origin.py`): subscribers open `--stream-url` with
//! `{topic}` replaced by the topic name, expect the origin's initial
//! `event: connected` frame, and read `event: bench` frames; the publisher
//! posts the same stamped `data` to Pushpin's publish API (`--publish-url`) as
//! `http-stream` content. Stamps, loss, duplicate and latency accounting are
//! the bench's usual ones. Pushpin frames carry no event ids, so resuming and
//! gap reporting are not exercised, and a publish is acknowledged when
//! Pushpin accepts it (not when anything is durable). Publishing starts
//! [`SETTLE`] after the last subscriber connected.

use super::error::BenchError;
use super::payload::{EVENT_TYPE, Stamp, data_json};
use super::target::{encode_segment, is_valid_topic};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::SocketAddr;

/// Pause between the last subscriber's confirmation and the first publish:
/// Pushpin sends the origin's first frame before the stream's channel
/// subscription is live, so events published at once can miss a subscriber.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The placeholder for the topic name in `--stream-url`.
pub const TOPIC_PLACEHOLDER: &str = "{topic}";

/// A server other than Tidings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// Pushpin (GRIP): SSE streams held by an origin, published through its HTTP publish API (fanout).
    Pushpin,
    /// nginx (Debian package) serving closed-interval bodies from files (poll).
    Nginx,
}

impl Peer {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pushpin => "pushpin",
            Self::Nginx => "nginx",
        }
    }
}

/// One `http://host:port/path` address, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Socket address to connect to.
    pub addr: SocketAddr,
    /// `host:port` for the Host header.
    pub authority: String,
    /// Path and query, as given.
    pub path: String,
}

impl Endpoint {
    /// Parses and resolves a plain `http://` URL; `flag` names it in errors.
    pub async fn resolve(url: &str, flag: &str) -> Result<Self, BenchError> {
        let probe = url.replace(TOPIC_PLACEHOLDER, "topic");
        let uri: http::Uri = probe
            .parse()
            .map_err(|err| BenchError::usage(format!("{flag} `{url}` is not a URL: {err}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(BenchError::usage(format!(
                "{flag} `{url}` must start with http:// (the bench does not speak TLS)"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| BenchError::usage(format!("{flag} `{url}` has no host")))?
            .as_str()
            .to_string();
        if authority.contains(TOPIC_PLACEHOLDER) {
            return Err(BenchError::usage(format!(
                "{flag}: {TOPIC_PLACEHOLDER} belongs in the path"
            )));
        }
        let addr = super::target::lookup(&authority, 80).await?;
        let after_authority = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|at| rest[at..].to_string()))
            .unwrap_or_else(|| "/".to_string());
        Ok(Self {
            addr,
            authority,
            path: after_authority,
        })
    }
}

/// Where a peer serves streams and takes publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerTarget {
    /// Which server.
    pub peer: Peer,
    /// The publish endpoint.
    pub publish: Endpoint,
    /// The stream endpoint; its path holds [`TOPIC_PLACEHOLDER`].
    pub stream: Endpoint,
}

impl PeerTarget {
    /// The stream path of `topic`.
    pub fn stream_path(&self, topic: &str) -> String {
        self.stream
            .path
            .replace(TOPIC_PLACEHOLDER, &encode_segment(topic))
    }
}

/// Checks that `--stream-url` names the topic somewhere.
pub fn check_stream_url(url: &str) -> Result<(), BenchError> {
    if url.contains(TOPIC_PLACEHOLDER) {
        Ok(())
    } else {
        Err(BenchError::usage(format!(
            "--stream-url `{url}` must contain {TOPIC_PLACEHOLDER} where the topic name goes"
        )))
    }
}

/// The `http-stream` content of one stamped event: an SSE frame.
fn sse_content(stamp: Stamp, size: usize) -> String {
    format!("event: {EVENT_TYPE}\ndata: {}\n\n", data_json(stamp, size))
}

/// A Pushpin publish request body carrying `stamps` to `channel`.
pub fn publish_body(channel: &str, stamps: &[Stamp], size: usize) -> String {
    let items: Vec<serde_json::Value> = stamps
        .iter()
        .map(|stamp| {
            json!({
                "channel": channel,
                "formats": { "http-stream": { "content": sse_content(*stamp, size) } },
            })
        })
        .collect();
    json!({ "items": items }).to_string()
}

/// A publish that only checks the route (`:` comment content).
pub fn preflight_body(channel: &str) -> Result<String, BenchError> {
    if !is_valid_topic(channel) {
        return Err(BenchError::usage(format!(
            "`{channel}` is not a usable channel name"
        )));
    }
    Ok(json!({
        "items": [{ "channel": channel, "formats": { "http-stream": { "content": ": preflight\n\n" } } }]
    })
    .to_string())
}

/// Whether a publish status means Pushpin accepted the items.
pub fn accepted(status: http::StatusCode) -> bool {
    status.is_success()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAMP: Stamp = Stamp {
        topic: 1,
        seq: 7,
        sent_us: 99,
    };

    #[test]
    fn publish_bodies_carry_stamped_sse_frames() {
        let body = publish_body("bench.x.fanout.1", &[STAMP, Stamp { seq: 8, ..STAMP }], 120);
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let items = parsed["items"].as_array().expect("items");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0]["channel"], "bench.x.fanout.1");
        let content = items[0]["formats"]["http-stream"]["content"]
            .as_str()
            .expect("content");
        assert!(content.starts_with("event: bench\ndata: {"));
        assert!(content.ends_with("}\n\n"));
        let data = content.trim_end().rsplit("data: ").next().expect("data");
        assert_eq!(
            super::super::payload::find_stamp(data.as_bytes()),
            Some(STAMP)
        );
    }

    #[test]
    fn stream_paths_take_the_encoded_topic() {
        let endpoint = |path: &str| Endpoint {
            addr: "127.0.0.1:7999".parse().expect("addr"),
            authority: "127.0.0.1:7999".into(),
            path: path.into(),
        };
        let target = PeerTarget {
            peer: Peer::Pushpin,
            publish: endpoint("/publish/"),
            stream: endpoint("/stream/{topic}?x=1"),
        };
        assert_eq!(target.stream_path("a/b"), "/stream/a%2Fb?x=1");
        assert!(check_stream_url("http://h/stream/{topic}").is_ok());
        assert!(check_stream_url("http://h/stream/").is_err());
    }

    #[tokio::test]
    async fn endpoints_resolve_and_keep_their_path() {
        let stream = Endpoint::resolve("http://127.0.0.1:7999/stream/{topic}", "--stream-url")
            .await
            .expect("resolves");
        assert_eq!(stream.authority, "127.0.0.1:7999");
        assert_eq!(stream.path, "/stream/{topic}");
        let publish = Endpoint::resolve("http://127.0.0.1:5561", "--publish-url")
            .await
            .expect("resolves");
        assert_eq!(publish.path, "/");
        assert!(
            Endpoint::resolve("https://127.0.0.1/x", "--publish-url")
                .await
                .is_err()
        );
        assert!(
            Endpoint::resolve("not a url", "--publish-url")
                .await
                .is_err()
        );
        assert!(preflight_body("bad channel").is_err());
    }
}
