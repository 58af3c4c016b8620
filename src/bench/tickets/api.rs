//! The ticketing REST API (`/api/v2/ticketing`) as the bench calls it:
//! every request carries a user's JWT (`Authorization: Bearer`), the tenant
//! (`x-tenantid`) and the realm (`realmname`), never an API key.
//!
//! [`Api`] runs calls concurrently over a few HTTP/2 connections (the
//! changes, the SLA set-up, the inbox filling); [`Reader`] is one user's
//! HTTP/1.1 keep-alive connection (the inbox readers, one request at a
//! time, as a browser tab polls).

use super::identity::{Identity, Realm};
use crate::bench::error::BenchError;
use crate::bench::http::{Body, HttpClient, Protocol, Reply};
use crate::bench::target::Target;
use http::{Method, StatusCode, header};
use serde_json::{Value, json};

/// The API's path prefix.
pub const BASE: &str = "/api/v2/ticketing";

/// Requests in flight on one HTTP/2 connection (the server allows 32 streams by default).
pub const STREAMS_PER_CONNECTION: usize = 16;

/// Largest inbox page (the server's `limit` maximum).
pub const MAX_PAGE: usize = 200;

/// Adds the headers that say who calls: the bearer token, tenant and realm.
fn authorize(
    builder: http::request::Builder,
    who: &Identity,
    realm: &Realm,
) -> http::request::Builder {
    builder
        .header(header::AUTHORIZATION, format!("Bearer {}", who.token))
        .header("x-tenantid", &realm.tenant)
        .header("realmname", &realm.name)
}

/// The `data` of an answer with the expected status, else an error naming the call.
fn data_of(
    reply: Reply,
    method: &Method,
    path: &str,
    expected: StatusCode,
) -> Result<Value, BenchError> {
    if reply.status != expected {
        return Err(BenchError::run(format!(
            "{method} {path} answered {}: {}",
            reply.status,
            reply.body_excerpt()
        )));
    }
    let parsed: Value = serde_json::from_slice(&reply.body)
        .map_err(|err| BenchError::context(format!("reading the answer to {path}"), err))?;
    Ok(parsed["data"].clone())
}

/// A created ticket: its id and its response deadline, if it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The ticket's id.
    pub id: u64,
    /// `sla.responseDueMs`: when the first response is due (unix ms).
    pub response_due_ms: Option<u64>,
}

impl Created {
    /// Reads a ticket object.
    pub fn of(ticket: &Value) -> Result<Self, BenchError> {
        let id = ticket["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| BenchError::run(format!("a created ticket has no id: {ticket}")))?;
        Ok(Self {
            id,
            response_due_ms: ticket["sla"]["responseDueMs"].as_u64(),
        })
    }
}

/// Concurrent calls over shared HTTP/2 connections.
pub struct Api {
    clients: Vec<HttpClient>,
    target: Target,
    realm: Realm,
}

impl Api {
    /// Opens enough connections for `in_flight` concurrent calls.
    pub async fn connect(
        target: &Target,
        realm: &Realm,
        in_flight: usize,
    ) -> Result<Self, BenchError> {
        let count = in_flight.div_ceil(STREAMS_PER_CONNECTION).max(1);
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(HttpClient::connect(target, Protocol::Http2).await?);
        }
        Ok(Self {
            clients,
            target: target.clone(),
            realm: realm.clone(),
        })
    }

    /// `method path` with `body` (none when null) as `who`, on connection
    /// `lane`; the answer's `data` when the status is `expected`.
    pub async fn call(
        &self,
        lane: usize,
        who: &Identity,
        method: Method,
        path: &str,
        body: Value,
        expected: StatusCode,
    ) -> Result<Value, BenchError> {
        let mut client = self.clients[lane % self.clients.len()]
            .share()
            .ok_or_else(|| BenchError::run("a ticketing connection is not HTTP/2"))?;
        let full = self.target.path(&format!("{BASE}{path}"));
        let payload = match body {
            Value::Null => Body::default(),
            body => Body::from(body.to_string()),
        };
        let request = authorize(client.request(method.clone(), &full), who, &self.realm)
            .header(header::CONTENT_TYPE, "application/json")
            .body(payload)
            .map_err(|err| BenchError::context("building a ticketing request", err))?;
        let reply = client.fetch(request).await?;
        data_of(reply, &method, path, expected)
    }

    /// `POST /ticket` as `who`.
    pub async fn create_ticket(
        &self,
        lane: usize,
        who: &Identity,
        ticket: Value,
    ) -> Result<Created, BenchError> {
        let data = self
            .call(
                lane,
                who,
                Method::POST,
                "/ticket",
                ticket,
                StatusCode::CREATED,
            )
            .await?;
        Created::of(&data)
    }

    /// `PUT /ticket/{id}/assignee` as `who`.
    pub async fn reassign(
        &self,
        lane: usize,
        who: &Identity,
        ticket: u64,
        assignee: &str,
    ) -> Result<(), BenchError> {
        let path = format!("/ticket/{ticket}/assignee");
        let body = json!({ "assignee": assignee });
        self.call(lane, who, Method::PUT, &path, body, StatusCode::OK)
            .await
            .map(drop)
    }

    /// `PUT /sla/policy` as `who` (an admin).
    pub async fn put_sla_policy(&self, who: &Identity, policy: Value) -> Result<(), BenchError> {
        self.call(0, who, Method::PUT, "/sla/policy", policy, StatusCode::OK)
            .await
            .map(drop)
    }

    /// One page of `who`'s inbox, oldest cursor first: its items and the next cursor.
    pub async fn inbox_page(
        &self,
        lane: usize,
        who: &Identity,
        cursor: Option<&str>,
    ) -> Result<(Vec<Value>, Option<String>), BenchError> {
        let mut path = format!("/ticket/notification/list?limit={MAX_PAGE}");
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&crate::bench::target::encode_segment(cursor));
        }
        let data = self
            .call(lane, who, Method::GET, &path, Value::Null, StatusCode::OK)
            .await?;
        let items = data["items"]
            .as_array()
            .cloned()
            .ok_or_else(|| BenchError::run(format!("an inbox page has no items: {data}")))?;
        let next = data["nextCursor"].as_str().map(str::to_string);
        Ok((items, next))
    }
}

/// One user's keep-alive HTTP/1.1 connection, reopened when the server closed it.
pub struct Reader {
    client: HttpClient,
    target: Target,
    realm: Realm,
    who: Identity,
}

impl Reader {
    /// Connects as `who`.
    pub async fn connect(
        target: &Target,
        realm: &Realm,
        who: Identity,
    ) -> Result<Self, BenchError> {
        Ok(Self {
            client: HttpClient::connect(target, Protocol::Http1).await?,
            target: target.clone(),
            realm: realm.clone(),
            who,
        })
    }

    /// `GET path` (under [`BASE`]): the status, or an error when it could not be sent.
    pub async fn get(&mut self, path: &str) -> Result<StatusCode, BenchError> {
        if self.client.is_closed() {
            self.client = HttpClient::connect(&self.target, Protocol::Http1).await?;
        }
        let full = self.target.path(&format!("{BASE}{path}"));
        let request = authorize(
            self.client.request(Method::GET, &full),
            &self.who,
            &self.realm,
        )
        .body(Body::default())
        .map_err(|err| BenchError::context("building an inbox request", err))?;
        Ok(self.client.fetch(request).await?.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_tickets_are_read() {
        let ticket = json!({ "id": "12", "sla": { "responseDueMs": 1_700_000_000_000u64 } });
        assert_eq!(
            Created::of(&ticket).expect("reads"),
            Created {
                id: 12,
                response_due_ms: Some(1_700_000_000_000)
            }
        );
        let plain = json!({ "id": "13", "sla": {} });
        assert_eq!(Created::of(&plain).expect("reads").response_due_ms, None);
        assert!(Created::of(&json!({ "id": 12 })).is_err());
    }
}
