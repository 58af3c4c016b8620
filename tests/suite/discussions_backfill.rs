//! The one-time backfill of the discussions' pending-comment index: a data
//! directory whose pending comments have no index rows (as a build before
//! the index wrote it, made here with the debug route
//! `/__test/discussions/forget-pending-index`) lists them in the moderation
//! queue after a restart, oldest first, per tenant; the backfill runs once
//! (its record stays), and the index then follows decisions as usual.

use crate::clients::{Admin, admin_key};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::path::Path;

/// The log line of a finished backfill (its `rows=N` follows).
const BACKFILLED: &str = "pending-comment index backfilled rows=";

/// A tenant as the test drives it: a backend key (acting for readers) and a
/// moderator key.
struct Tenant {
    id: String,
    backend: String,
    moderator: String,
}

impl Tenant {
    /// The default tenant, through the instance admin key.
    fn default_of(server: &Server) -> Self {
        let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
        let key = admin_key(server);
        Self {
            id: config["defaultTenant"]["id"].as_str().unwrap().to_string(),
            backend: key.clone(),
            moderator: key,
        }
    }

    /// A new tenant with its own keys.
    async fn create(server: &Server, slug: &str) -> Self {
        let admin = Admin::new(server);
        let id = admin.create_tenant(slug).await;
        let (_, backend) = admin.create_key(&id, &["read", "publish"]).await;
        let (_, moderator) = admin.create_key(&id, &["read", "publish", "admin"]).await;
        Self {
            id,
            backend,
            moderator,
        }
    }

    /// `POST path` with the backend key (for `reader` when given); the `data`.
    async fn post(&self, server: &Server, path: &str, reader: Option<&str>, body: Value) -> Value {
        let key = if reader.is_some() {
            &self.backend
        } else {
            &self.moderator
        };
        let mut request = server
            .http1()
            .post(server.url(path))
            .header("x-api-key", key)
            .json(&body);
        if let Some(reader) = reader {
            request = request.header("x-external-user-id", reader);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = json(response).await;
        assert!(status.is_success(), "{path}: {status} {body}");
        body["data"].clone()
    }

    /// Creates a discussion; returns its id.
    async fn discussion(&self, server: &Server, external: &str, moderation: &str) -> String {
        let body = json!({ "externalId": external, "title": external, "moderation": moderation });
        let created = self.post(server, "/api/v1/discussions", None, body).await;
        created["id"].as_str().unwrap().to_string()
    }

    /// Posts a reader's comment; returns its id.
    async fn comment(&self, server: &Server, discussion: &str, reader: &str) -> String {
        let path = format!("/api/v1/discussions/{discussion}/comments");
        let body = json!({ "body": format!("from {reader}") });
        let posted = self.post(server, &path, Some(reader), body).await;
        posted["id"].as_str().unwrap().to_string()
    }

    /// Approves or rejects a comment (`action`).
    async fn decide(&self, server: &Server, discussion: &str, comment: &str, action: &str) {
        let path = format!("/api/v1/discussions/{discussion}/comments/{comment}/{action}");
        self.post(server, &path, None, json!({})).await;
    }

    /// The ids of the tenant's moderation queue, in order (all of it).
    async fn queue(&self, server: &Server) -> Vec<String> {
        let response = server
            .http1()
            .get(server.url("/api/v1/discussions/pending-comments?limit=100"))
            .header("x-api-key", &self.moderator)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let page = json(response).await;
        assert_eq!(page["data"]["nextCursor"], Value::Null, "{page}");
        let comments = page["data"]["comments"].as_array().unwrap();
        for comment in comments {
            assert_eq!(comment["status"], "pending", "{comment}");
        }
        comments
            .iter()
            .map(|comment| comment["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Removes the tenant's index rows and the backfill record; returns how
    /// many rows were removed.
    async fn forget_index(&self, server: &Server) -> u64 {
        let path = format!(
            "/__test/discussions/forget-pending-index?tenant={}",
            self.id
        );
        let response = server.http1().post(server.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        json(response).await["data"]["removed"].as_u64().unwrap()
    }
}

/// Starts a server on `dir` and waits for its backfill's log line.
fn start_and_backfill(dir: &Path) -> (Server, String) {
    let server = Server::builder().data_dir(dir).start();
    let stderr = server.stderr_once_it_contains(BACKFILLED);
    (server, stderr)
}

/// The rows the backfill logged it wrote.
fn backfilled_rows(stderr: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter_map(|line| line.split(BACKFILLED).nth(1))
        .map(|rows| rows.trim().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn comments_pending_before_the_index_are_queued_after_a_restart_and_the_backfill_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, stderr) = start_and_backfill(dir.path());
    assert_eq!(
        backfilled_rows(&stderr),
        [0],
        "a fresh data directory is marked at once: {stderr}"
    );
    let home = Tenant::default_of(&server);
    let other = Tenant::create(&server, "other").await;
    let (first, second) = (
        home.discussion(&server, "first", "pre").await,
        home.discussion(&server, "second", "pre").await,
    );
    let open = home.discussion(&server, "open", "none").await;
    let a = home.comment(&server, &first, "ann").await;
    let b = home.comment(&server, &second, "bob").await;
    let c = home.comment(&server, &second, "cat").await;
    let d = home.comment(&server, &first, "dan").await;
    let e = home.comment(&server, &first, "eve").await;
    home.comment(&server, &open, "fay").await;
    home.decide(&server, &second, &b, "approve").await;
    home.decide(&server, &first, &d, "reject").await;
    let theirs = other.discussion(&server, "first", "pre").await;
    let x = other.comment(&server, &theirs, "xan").await;
    let pending = vec![a.clone(), c.clone(), e.clone()];
    assert_eq!(home.queue(&server).await, pending);

    // As a build before the index left it: pending comments, no rows.
    assert_eq!(home.forget_index(&server).await, 3);
    assert_eq!(other.forget_index(&server).await, 1);
    assert!(home.queue(&server).await.is_empty());
    assert!(other.queue(&server).await.is_empty());
    server.stop();

    let (server, stderr) = start_and_backfill(dir.path());
    assert_eq!(backfilled_rows(&stderr), [4], "{stderr}");
    assert_eq!(
        home.queue(&server).await,
        pending,
        "oldest first, across discussions; approved, rejected and published comments stay out"
    );
    assert_eq!(other.queue(&server).await, vec![x.clone()]);

    // The index follows decisions again.
    home.decide(&server, &first, &a, "approve").await;
    other.decide(&server, &theirs, &x, "reject").await;
    let left = vec![c.clone(), e.clone()];
    assert_eq!(home.queue(&server).await, left);
    assert!(other.queue(&server).await.is_empty());
    drop(server);

    // The record stays: no walk at the next start, nothing listed twice.
    let mut server = Server::builder().data_dir(dir.path()).start();
    assert_eq!(home.queue(&server).await, left);
    server.stop();
    let stderr = server.stderr_once_it_contains("stopped cleanly");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    assert!(
        !stderr.contains("pending-comment index"),
        "the backfill ran again: {stderr}"
    );
}
