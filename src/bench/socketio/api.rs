//! The set-up of one measured server through its HTTP API, and who its
//! clients are.
//!
//! * Tidings (the channels module, spec 003): with the instance admin key,
//!   an HS256 JWT realm `bench-socketio-<run>` of tenant `--tenant` with a
//!   fresh random secret (`PUT /admin/v1/tenants/{tenant}/realms/{realm}`),
//!   an API key of the tenant with the [`PUBLISHER_SCOPES`]
//!   (`POST /admin/v1/tenants/{tenant}/keys`), then the channel
//!   (`POST /api/v1/communication/channels`, `readPolicy` public) with that
//!   key, which also signs every post. Client `n` is the JWT subject
//!   `bench-user-<n>`; its token goes in the CONNECT's auth, the realm in the
//!   upgrade's `realmname` header.
//! * The reference (`scripts/socketio-reference.cjs`): the channel only; no
//!   key, clients CONNECT without auth.
//!
//! Both answer a created channel with `201 {"data":{"id":N,…}}`.

use super::conn::Login;
use crate::bench::error::BenchError;
use crate::bench::http::{Body, HttpClient, Protocol};
use crate::bench::peer::Endpoint;
use crate::bench::poll::api::mint_token;
use crate::bench::target::{Target, read_admin_key};
use clap::ValueEnum;
use http::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Scopes of the API key that creates the channel and posts to it.
pub const PUBLISHER_SCOPES: &[&str] = &["publish"];

/// Bytes of randomness in a realm's HS256 secret (hex-encoded: twice as many characters).
const SECRET_BYTES: usize = 32;

/// Which implementation serves a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    /// Tidings' Socket.IO surface (channels, spec 003).
    Tidings,
    /// The Node.js socket.io reference (`scripts/socketio-reference.cjs`).
    Reference,
}

impl ServerKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tidings => "tidings",
            Self::Reference => "reference",
        }
    }
}

/// How the clients of a run authenticate.
#[derive(Debug, Clone)]
enum Logins {
    /// CONNECT without auth (the reference accepts everyone).
    Anonymous,
    /// One HS256 JWT per client, of `realm`.
    Jwt {
        realm: String,
        secret: String,
        lifetime: Duration,
    },
}

/// A server set up for a run.
#[derive(Debug, Clone)]
pub struct Server {
    /// What it is.
    pub kind: ServerKind,
    /// Its base URL, as given.
    pub url: String,
    /// Its address; `api_key` is what posts carry (empty for the reference).
    pub target: Target,
    /// The run's channel.
    pub channel_id: u64,
    logins: Logins,
}

/// The instance admin key's sources (Tidings only).
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    /// `--api-key`.
    pub api_key: Option<&'a str>,
    /// `--data-dir`, read for the key when `--api-key` is not given.
    pub data_dir: &'a Path,
    /// `--tenant`: the tenant (id or slug) of the realm, key and channel.
    pub tenant: &'a str,
}

impl Server {
    /// Sets up `kind` at `url` for a run named `run`; tokens live for `lifetime`.
    pub async fn prepare(
        url: &str,
        kind: ServerKind,
        admin: Admin<'_>,
        run: &str,
        lifetime: Duration,
    ) -> Result<Self, BenchError> {
        let mut target = plain_target(url).await?;
        let logins = match kind {
            ServerKind::Reference => Logins::Anonymous,
            ServerKind::Tidings => {
                target.api_key = match admin.api_key {
                    Some(key) if !key.trim().is_empty() => key.trim().to_string(),
                    Some(_) => return Err(BenchError::usage("--api-key is empty")),
                    None => read_admin_key(admin.data_dir)?,
                };
                let realm = format!("bench-socketio-{run}");
                let secret = random_secret()?;
                put_realm(&target, admin.tenant, &realm, &secret).await?;
                target.api_key = publisher_key(&target, admin.tenant).await?;
                Logins::Jwt {
                    realm,
                    secret,
                    lifetime,
                }
            }
        };
        let channel_id = create_channel(&target).await?;
        Ok(Self {
            kind,
            url: url.to_string(),
            target,
            channel_id,
            logins,
        })
    }

    /// How client `index` logs in.
    pub fn login(&self, index: usize) -> Result<Login, BenchError> {
        match &self.logins {
            Logins::Anonymous => Ok(Login::default()),
            Logins::Jwt {
                realm,
                secret,
                lifetime,
            } => Ok(Login {
                token: Some(mint_token(secret, &subject(index), *lifetime)?),
                realm: Some(realm.clone()),
            }),
        }
    }
}

/// The JWT subject of client `index`.
pub fn subject(index: usize) -> String {
    format!("bench-user-{index}")
}

/// `POST` path of the channel's posts.
pub fn posts_path(server: &Server) -> String {
    server.target.path(&format!(
        "/api/v1/communication/channels/{}/posts",
        server.channel_id
    ))
}

/// A plain `http://` target at `url` without credentials.
async fn plain_target(url: &str) -> Result<Target, BenchError> {
    let endpoint = Endpoint::resolve(url, "--target/--peer").await?;
    Ok(Target {
        addr: endpoint.addr,
        authority: endpoint.authority,
        base_path: endpoint.path.trim_end_matches('/').to_string(),
        api_key: String::new(),
        peer: None,
        discussions: BTreeMap::new(),
        rooms: BTreeMap::new(),
        tls: None,
    })
}

/// A fresh HS256 secret.
fn random_secret() -> Result<String, BenchError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|err| BenchError::run(format!("no randomness for a realm secret: {err}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Creates (or replaces) the run's realm.
async fn put_realm(
    target: &Target,
    tenant: &str,
    realm: &str,
    secret: &str,
) -> Result<(), BenchError> {
    let body = json!({ "keys": [{ "algorithm": "HS256", "material": secret }] });
    let path = format!("/admin/v1/tenants/{tenant}/realms/{realm}");
    call(target, Method::PUT, &path, &body, StatusCode::OK).await?;
    Ok(())
}

/// Creates the publisher's API key; returns its secret.
async fn publisher_key(target: &Target, tenant: &str) -> Result<String, BenchError> {
    let body = json!({ "name": "tidings-bench-socketio", "scopes": PUBLISHER_SCOPES });
    let path = format!("/admin/v1/tenants/{tenant}/keys");
    let data = call(target, Method::POST, &path, &body, StatusCode::CREATED).await?;
    data["secret"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| BenchError::run(format!("a created API key has no secret: {data}")))
}

/// Creates the run's channel; returns its id.
async fn create_channel(target: &Target) -> Result<u64, BenchError> {
    let body = json!({ "name": "bench", "readPolicy": "public" });
    let path = "/api/v1/communication/channels";
    let data = call(target, Method::POST, path, &body, StatusCode::CREATED).await?;
    data["id"]
        .as_u64()
        .ok_or_else(|| BenchError::run(format!("a created channel has no numeric id: {data}")))
}

/// One JSON call on its own connection; returns the answer's `data`.
async fn call(
    target: &Target,
    method: Method,
    path: &str,
    body: &Value,
    expected: StatusCode,
) -> Result<Value, BenchError> {
    let mut client = HttpClient::connect(target, Protocol::Http1)
        .await
        .map_err(|err| {
            BenchError::run(format!(
                "the server at {} is not reachable: {err}",
                target.addr
            ))
        })?;
    let request = client
        .request(method.clone(), &target.path(path))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .map_err(|err| BenchError::context("building a set-up request", err))?;
    let reply = client.fetch(request).await?;
    if reply.status != expected {
        return Err(BenchError::run(format!(
            "{method} {path} answered {} (expected {expected}): {}",
            reply.status,
            reply.body_excerpt()
        )));
    }
    let parsed: Value = serde_json::from_slice(&reply.body)
        .map_err(|err| BenchError::context(format!("reading the answer to {path}"), err))?;
    Ok(parsed["data"].clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_secrets() {
        assert_eq!(subject(7), "bench-user-7");
        let secret = random_secret().expect("random");
        assert_eq!(secret.len(), 2 * SECRET_BYTES);
        assert_ne!(secret, random_secret().expect("random"));
    }

    #[tokio::test]
    async fn targets_keep_the_base_path_and_refuse_tls() {
        let target = plain_target("http://127.0.0.1:3030/base/")
            .await
            .expect("valid");
        assert_eq!(target.base_path, "/base");
        assert_eq!(target.authority, "127.0.0.1:3030");
        assert!(target.api_key.is_empty());
        assert!(plain_target("https://127.0.0.1:3030").await.is_err());
    }
}
