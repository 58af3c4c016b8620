//! The discussions surface (spec 000) for `tidings bench fanout --surface discussions`:
//! one discussion per topic, subscribers on `GET /api/v1/stream/{discussionId}`
//! (the spec's SSE stream), and every published event a comment posted with
//! `POST /api/v1/discussions/{id}/comments` for one bench reader. The stamp
//! travels in the comment's body, so latency is measured from the comment
//! POST to its `comment_created` frame.

use super::error::BenchError;
use super::http::{Body, HttpClient, Protocol};
use super::payload::{Stamp, data_json};
use super::target::Target;
use clap::ValueEnum;
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;

/// The reader the publisher posts comments for (`X-External-User-Id`).
pub const READER: &str = "tidings-bench";

/// Which API of Tidings a fanout run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// The generic topics API.
    #[default]
    Topics,
    /// Discussions: comments posted, streamed as `comment_created`.
    Discussions,
}

/// Creates one discussion per topic name; returns topic name → discussion id.
pub async fn create(
    target: &Target,
    topics: &[String],
) -> Result<BTreeMap<String, String>, BenchError> {
    let mut client = HttpClient::connect(target, Protocol::Http1).await?;
    let mut ids = BTreeMap::new();
    for topic in topics {
        let body = json!({ "externalId": topic, "title": format!("bench {topic}") });
        let request = client
            .request(Method::POST, &target.path("/api/v1/discussions"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .map_err(|err| BenchError::context("building a create-discussion request", err))?;
        let reply = client.fetch(request).await?;
        if reply.status != StatusCode::CREATED {
            return Err(BenchError::run(format!(
                "creating a discussion answered {}: {} (does this server have the discussions API?)",
                reply.status,
                reply.body_excerpt()
            )));
        }
        let created: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|err| BenchError::context("reading a created discussion", err))?;
        let id = created["data"]["id"]
            .as_str()
            .ok_or_else(|| BenchError::run("a created discussion has no id"))?;
        ids.insert(topic.clone(), id.to_string());
    }
    Ok(ids)
}

/// The comment carrying `stamp`: `{"body": "<stamped data>"}`.
pub fn publish_body(stamp: Stamp, size: usize) -> String {
    json!({ "body": data_json(stamp, size) }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::payload::find_stamp;

    #[test]
    fn the_stamp_is_found_inside_the_streamed_comment() {
        let stamp = Stamp {
            topic: 2,
            seq: 9,
            sent_us: 1_700_000_000_000_001,
        };
        let body: serde_json::Value = serde_json::from_str(&publish_body(stamp, 200)).unwrap();
        let streamed = json!({ "comment": { "body": body["body"] }, "originatedBy": null });
        assert_eq!(find_stamp(streamed.to_string().as_bytes()), Some(stamp));
    }
}
