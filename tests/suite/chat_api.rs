//! The chat REST API as its clients call it, for the chat tests: a user's
//! JWT of the default realm, a tenant API key (the backend), and calls
//! answering `(status, body)`.

use crate::clients::{admin_key, mint_jwt, unix_now};
use crate::harness::{Server, json};
use reqwest::Method;
use serde_json::{Value, json};

/// Who calls.
#[derive(Clone)]
pub enum Auth {
    /// A user's JWT.
    User(String),
    /// An API key (the tenant's backend, or the instance admin key).
    Key(String),
    /// Nothing.
    None,
}

/// The chat API of one server as its clients call it.
pub struct Chat<'a> {
    /// The server called.
    pub server: &'a Server,
    client: reqwest::Client,
    /// The tenant's backend (an API key).
    pub backend: Auth,
}

pub fn default_tenant(server: &Server) -> String {
    let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
    config["defaultTenant"]["id"].as_str().unwrap().to_string()
}

/// A JWT of the default realm for `sub`, valid for ten minutes.
pub fn token(server: &Server, sub: &str) -> String {
    token_expiring(server, sub, unix_now() + 600)
}

/// A JWT of the default realm for `sub` whose `exp` is `exp` (Unix seconds).
pub fn token_expiring(server: &Server, sub: &str, exp: u64) -> String {
    mint_jwt(server, json!({ "sub": sub, "exp": exp }))
}

/// A new API key of `tenant` with `scopes`, made with the instance admin key.
pub async fn tenant_key(server: &Server, tenant: &str, scopes: &[&str]) -> String {
    let response = server
        .http1()
        .post(server.url(&format!("/admin/v1/tenants/{tenant}/keys")))
        .header("x-api-key", admin_key(server))
        .json(&json!({ "name": "chat-backend", "scopes": scopes }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    json(response).await["data"]["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

impl<'a> Chat<'a> {
    pub async fn new(server: &'a Server) -> Self {
        let key = tenant_key(server, &default_tenant(server), &["read", "publish"]).await;
        Self {
            server,
            client: server.http1(),
            backend: Auth::Key(key),
        }
    }

    /// The same backend calling `server` (another node of a cluster).
    pub fn on<'b>(&self, server: &'b Server) -> Chat<'b> {
        Chat {
            server,
            client: server.http1(),
            backend: self.backend.clone(),
        }
    }

    pub fn user(&self, sub: &str) -> Auth {
        Auth::User(token(self.server, sub))
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, self.server.url(&format!("/api/v1{path}")));
        request = match auth {
            Auth::User(token) => request.bearer_auth(token),
            Auth::Key(key) => request.header("x-api-key", key),
            Auth::None => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), json(response).await)
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> (u16, Value) {
        self.call(Method::GET, path, auth, None).await
    }

    pub async fn post(&self, path: &str, auth: &Auth, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, auth, Some(body)).await
    }

    pub async fn patch(&self, path: &str, auth: &Auth, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, auth, Some(body)).await
    }

    pub async fn delete(&self, path: &str, auth: &Auth) -> (u16, Value) {
        self.call(Method::DELETE, path, auth, None).await
    }

    /// `data` of a call that must answer `status`.
    pub async fn expect(&self, status: u16, reply: (u16, Value)) -> Value {
        assert_eq!(reply.0, status, "{}", reply.1);
        reply.1["data"].clone()
    }

    /// Creates a room as `auth`; returns its id.
    pub async fn room(&self, auth: &Auth, body: Value) -> u64 {
        let room = self
            .expect(201, self.post("/rooms", auth, body).await)
            .await;
        room["roomId"].as_u64().unwrap()
    }

    /// The reply to posting `text` into `room` as `auth` (for refusals).
    pub async fn try_say(&self, auth: &Auth, room: u64, text: &str) -> (u16, Value) {
        let path = format!("/rooms/{room}/messages");
        self.post(&path, auth, json!({ "text": text })).await
    }

    /// Posts a message as `auth`; returns it.
    pub async fn say(&self, auth: &Auth, room: u64, text: &str, parent: Option<u64>) -> Value {
        let body = json!({ "text": text, "parentMessageId": parent });
        let path = format!("/rooms/{room}/messages");
        self.expect(201, self.post(&path, auth, body).await).await
    }

    /// The user's id (`GET /me`).
    pub async fn id(&self, auth: &Auth) -> u64 {
        self.expect(200, self.get("/me", auth).await).await["userId"]
            .as_u64()
            .unwrap()
    }
}
