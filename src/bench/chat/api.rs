//! The chat set-up through the REST API, as a tenant's backend does it:
//! an API key of the tenant (made with the instance admin key unless one is
//! given), then every room created with its first members named by JWT
//! subject (their user ids are created on the way), and the members beyond
//! what one creation may name added one by one.
//!
//! Requests run concurrently over a few HTTP/2 connections, so the set-up of
//! 2 000 rooms and 100 000 memberships takes seconds, not minutes.

use super::layout::{Layout, subject};
use crate::bench::error::BenchError;
use crate::bench::http::{Body, HttpClient, Protocol};
use crate::bench::target::Target;
use futures_util::{StreamExt, TryStreamExt};
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

/// Most members a room creation names (the server's default `--chat-max-initial-members`).
pub const INITIAL_MEMBERS: usize = 1000;

/// HTTP/2 connections the set-up uses.
const CONNECTIONS: usize = 4;

/// Set-up requests in flight at once (within the server's default 32 streams per connection).
const IN_FLIGHT: usize = 64;

/// One API call.
struct Call {
    method: Method,
    path: String,
    body: Value,
    expected: StatusCode,
}

/// Concurrent API calls with one key.
pub struct Api {
    clients: Vec<HttpClient>,
    target: Target,
}

impl Api {
    /// Opens the set-up connections to `target` (whose key is sent with every call).
    pub async fn connect(target: &Target) -> Result<Self, BenchError> {
        let mut clients = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            clients.push(HttpClient::connect(target, Protocol::Http2).await?);
        }
        Ok(Self {
            clients,
            target: target.clone(),
        })
    }

    /// Runs `calls`, [`IN_FLIGHT`] at a time; returns each answer's `data`, in order.
    async fn run(&self, calls: Vec<Call>) -> Result<Vec<Value>, BenchError> {
        let calls = calls.into_iter().enumerate().map(|(index, call)| {
            let client = self.clients[index % self.clients.len()].share();
            self.call(client, call)
        });
        futures_util::stream::iter(calls)
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// One call on a shared connection.
    async fn call(&self, client: Option<HttpClient>, call: Call) -> Result<Value, BenchError> {
        let mut client =
            client.ok_or_else(|| BenchError::run("a set-up connection is not HTTP/2"))?;
        let request = client
            .request(call.method.clone(), &self.target.path(&call.path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(call.body.to_string()))
            .map_err(|err| BenchError::context("building a set-up request", err))?;
        let reply = client.fetch(request).await?;
        if reply.status != call.expected {
            return Err(BenchError::run(format!(
                "{} {} answered {}: {}",
                call.method,
                call.path,
                reply.status,
                reply.body_excerpt()
            )));
        }
        let parsed: Value = serde_json::from_slice(&reply.body).map_err(|err| {
            BenchError::context(format!("reading the answer to {}", call.path), err)
        })?;
        Ok(parsed["data"].clone())
    }

    /// Creates a tenant API key with the `read` and `publish` scopes (this
    /// API must hold the instance admin key); returns its secret.
    pub async fn tenant_key(&self, tenant: &str) -> Result<String, BenchError> {
        let call = Call {
            method: Method::POST,
            path: format!("/admin/v1/tenants/{tenant}/keys"),
            body: json!({ "name": "tidings-bench-chat", "scopes": ["read", "publish"] }),
            expected: StatusCode::CREATED,
        };
        let data = self.run(vec![call]).await?.pop().unwrap_or_default();
        data["secret"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BenchError::run(format!("a created API key has no secret: {data}")))
    }

    /// Creates the rooms of `layout` named `names`, members being the
    /// subjects `subject_prefix<user>`; returns the room ids by room index.
    pub async fn create_rooms(
        &self,
        layout: &Layout,
        names: &[String],
        subject_prefix: &str,
    ) -> Result<Vec<u64>, BenchError> {
        let members = layout.members();
        let subjects = |users: &[usize]| -> Vec<String> {
            users
                .iter()
                .map(|user| subject(subject_prefix, *user))
                .collect()
        };
        let creations = names
            .iter()
            .zip(&members)
            .map(|(name, users)| Call {
                method: Method::POST,
                path: "/api/v1/rooms".into(),
                body: json!({
                    "name": name,
                    "members": subjects(&users[..users.len().min(INITIAL_MEMBERS)]),
                }),
                expected: StatusCode::CREATED,
            })
            .collect();
        let ids = self
            .run(creations)
            .await?
            .iter()
            .map(|room| {
                room["roomId"]
                    .as_u64()
                    .ok_or_else(|| BenchError::run(format!("a created room has no roomId: {room}")))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let additions = ids
            .iter()
            .zip(&members)
            .flat_map(|(id, users)| {
                users.iter().skip(INITIAL_MEMBERS).map(move |user| Call {
                    method: Method::POST,
                    path: format!("/api/v1/rooms/{id}/members"),
                    body: json!({ "sub": subject(subject_prefix, *user) }),
                    expected: StatusCode::CREATED,
                })
            })
            .collect();
        self.run(additions).await?;
        Ok(ids)
    }
}
