//! Browser readiness: tenants' allowed origins (admin API, CLI), CORS on
//! browser-facing routes, the WebSocket `Origin` check, and a page in
//! headless Chromium on another origin than the API using the discussion
//! stream, the topics stream, a preflighted write and the topics WebSocket.
//!
//! Chromium comes from [`crate::chromium`]; when it cannot be had, the
//! Chromium test says why and skips (the HTTP-level tests here still check
//! every header).

use crate::chromium::{Browser, PageServer, chromium};
use crate::cli::{stdout_json, tidings};
use crate::clients::{
    Admin, admin_key, discussion_post, mint_jwt, mint_ticket, publish, set_origins,
    ticket_stream_url, topic_path, unix_now,
};
use crate::harness::{Server, binary, json};
use reqwest::Method;
use serde_json::{Value, json};
use std::process::Command;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The page origin the tests allow.
const PAGE: &str = "http://page.example:8000";
/// An origin no tenant allows.
const FOREIGN: &str = "https://evil.example";

/// A CORS preflight of `method` on `path` from `origin`.
async fn preflight(server: &Server, path: &str, origin: &str, method: &str) -> reqwest::Response {
    server
        .http1()
        .request(Method::OPTIONS, server.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn preflights_are_answered_and_responses_carry_cors_headers_for_allowed_origins_only() {
    let server = Server::builder().args(&["--cors-max-age", "2m"]).start();
    let events = "/api/v1/topics/page%2Fnews/events";
    let refused = preflight(&server, events, PAGE, "POST").await;
    assert_eq!(refused.status(), 403, "a new tenant allows no origin");
    assert_eq!(header(&refused, "access-control-allow-origin"), None);
    assert_eq!(json(refused).await["error"]["code"], "FORBIDDEN");

    set_origins(&server, "default", &[PAGE]).await;
    let answered = preflight(&server, events, PAGE, "POST").await;
    assert_eq!(answered.status(), 204);
    assert_eq!(header(&answered, "access-control-allow-origin"), Some(PAGE));
    assert_eq!(header(&answered, "vary"), Some("Origin"));
    assert_eq!(
        header(&answered, "access-control-allow-methods"),
        Some("POST, GET, HEAD")
    );
    let allowed_headers = header(&answered, "access-control-allow-headers").unwrap();
    for name in [
        "authorization",
        "content-type",
        "last-event-id",
        "idempotency-key",
    ] {
        assert!(allowed_headers.contains(name), "{allowed_headers}");
    }
    assert_eq!(header(&answered, "access-control-max-age"), Some("120"));
    assert_eq!(header(&answered, "access-control-allow-credentials"), None);
    let foreign = preflight(&server, events, FOREIGN, "POST").await;
    assert_eq!(foreign.status(), 403);
    assert_eq!(header(&foreign, "access-control-allow-origin"), None);

    let post = |origin: Option<&'static str>, key: Option<String>| {
        let mut request = server
            .http1()
            .post(server.url(events))
            .json(&json!({ "type": "test", "data": {} }));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        async move { request.send().await.unwrap() }
    };
    let admin = admin_key(&server);
    let allowed = post(Some(PAGE), Some(admin.clone())).await;
    assert_eq!(allowed.status(), 201);
    assert_eq!(header(&allowed, "access-control-allow-origin"), Some(PAGE));
    assert!(
        header(&allowed, "access-control-expose-headers")
            .unwrap()
            .contains("x-request-id")
    );
    let from_elsewhere = post(Some(FOREIGN), Some(admin.clone())).await;
    assert_eq!(from_elsewhere.status(), 201, "still processed");
    assert_eq!(header(&from_elsewhere, "access-control-allow-origin"), None);
    let native = post(None, Some(admin.clone())).await;
    assert_eq!(native.status(), 201);
    assert_eq!(header(&native, "access-control-allow-origin"), None);
    let unauthenticated = post(Some(PAGE), None).await;
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(
        header(&unauthenticated, "access-control-allow-origin"),
        Some(PAGE),
        "a page can read why it was refused"
    );

    let stream = server
        .http1()
        .get(server.url("/api/v1/topics/page%2Fnews/stream"))
        .header("accept", "text/event-stream")
        .header("origin", PAGE)
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert_eq!(header(&stream, "access-control-allow-origin"), Some(PAGE));
    drop(stream);

    let admin_api = Admin::new(&server);
    let acme = admin_api.create_tenant("acme").await;
    let (_, acme_key) = admin_api.create_key(&acme, &["publish"]).await;
    let as_acme = post(Some(PAGE), Some(acme_key)).await;
    assert_eq!(as_acme.status(), 201);
    assert_eq!(
        header(&as_acme, "access-control-allow-origin"),
        None,
        "judged by the tenant the request authenticated as"
    );

    let tenants = server
        .http1()
        .get(server.url("/admin/v1/tenants"))
        .header("origin", PAGE)
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(tenants.status(), 200);
    assert_eq!(header(&tenants, "access-control-allow-origin"), None);
    assert_eq!(
        header(&tenants, "vary"),
        None,
        "the admin API is not browser-facing"
    );
    let admin_preflight = preflight(&server, "/admin/v1/tenants", PAGE, "GET").await;
    assert_eq!(admin_preflight.status(), 405);
}

#[tokio::test]
async fn without_credentials_the_tenant_named_by_host_or_header_judges_else_any_tenant() {
    let server = Server::builder()
        .args(&["--base-domain", "streams.test"])
        .start();
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    set_origins(&server, &acme, &[PAGE]).await;
    let time = "/api/v1/time";
    let with_host = |host: &'static str| {
        let request = server
            .http1()
            .request(Method::OPTIONS, server.url(time))
            .header("host", host)
            .header("origin", PAGE)
            .header("access-control-request-method", "GET");
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(with_host("acme.streams.test").await, 204, "acme allows it");
    assert_eq!(
        with_host("default.streams.test").await,
        403,
        "default does not"
    );
    assert_eq!(
        with_host("streams.test").await,
        204,
        "no tenant named: some tenant allows it"
    );
    assert_eq!(preflight(&server, time, FOREIGN, "GET").await.status(), 403);

    let unauthenticated = |tenant: String| {
        let request = server
            .http1()
            .get(server.url("/api/v1/topics/t/events"))
            .header("origin", PAGE)
            .header("x-tenantid", tenant);
        async move { request.send().await.unwrap() }
    };
    let as_acme = unauthenticated(acme.clone()).await;
    assert_eq!(as_acme.status(), 401);
    assert_eq!(header(&as_acme, "access-control-allow-origin"), Some(PAGE));
    let default_id = json(
        admin
            .call(Method::GET, "/admin/v1/tenants/default", None)
            .await,
    )
    .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let as_default = unauthenticated(default_id).await;
    assert_eq!(as_default.status(), 401);
    assert_eq!(header(&as_default, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn websocket_handshakes_from_pages_need_an_origin_the_tenant_allows() {
    let server = Server::start();
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    let (_, acme_key) = admin.create_key(&acme, &["read"]).await;
    let token = mint_jwt(
        &server,
        json!({ "sub": "page-user", "exp": unix_now() + 300, "topics": ["page/*"] }),
    );
    let handshake = |origin: Option<&str>, key: &str, query: &str| {
        let url = server
            .url(&format!("/api/v1/topics/ws{query}"))
            .replace("http://", "ws://");
        let mut request = url.into_client_request().unwrap();
        if !key.is_empty() {
            request
                .headers_mut()
                .insert("x-api-key", key.parse().unwrap());
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Ok((_, response)) => (response.status().as_u16(), Value::Null),
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                    let body = response.body().clone().unwrap_or_default();
                    (
                        response.status().as_u16(),
                        serde_json::from_slice(&body).unwrap_or(Value::Null),
                    )
                }
                Err(other) => panic!("handshake failed: {other}"),
            }
        }
    };
    let key = admin_key(&server);
    assert_eq!(
        handshake(Some(PAGE), &key, "").await.0,
        403,
        "a new tenant allows no origin"
    );
    set_origins(&server, "default", &[PAGE]).await;
    let (status, body) = handshake(Some(FOREIGN), &key, "").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    assert_eq!(body["error"]["details"]["origin"], FOREIGN);
    assert_eq!(handshake(Some(PAGE), &key, "").await.0, 101);
    assert_eq!(handshake(None, &key, "").await.0, 101, "native clients");
    assert_eq!(
        handshake(Some(PAGE), &acme_key, "").await.0,
        403,
        "acme allows no origin"
    );
    let with_token = format!("?access_token={token}");
    assert_eq!(handshake(Some(PAGE), "", &with_token).await.0, 101);
    assert_eq!(handshake(Some(FOREIGN), "", &with_token).await.0, 403);
    let not_a_handshake = server
        .http1()
        .get(server.url(&format!("/api/v1/topics/page%2Fa/events{with_token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        not_a_handshake.status(),
        401,
        "access_token counts only on a WebSocket handshake"
    );
}

#[tokio::test]
async fn origins_are_validated_limited_scoped_to_their_tenant_and_survive_a_restart() {
    let mut server = Server::builder()
        .args(&["--max-origins-per-tenant", "2"])
        .start();
    let admin = Admin::new(&server);
    let default = json(
        admin
            .call(Method::GET, "/admin/v1/tenants/default", None)
            .await,
    )
    .await;
    assert_eq!(default["data"]["allowedOrigins"], json!([]));
    let put = |tenant: String, origins: Value, key: String| {
        let client = server.http1();
        let url = server.url(&format!("/admin/v1/tenants/{tenant}/origins"));
        async move {
            let response = client
                .put(url)
                .header("x-api-key", key)
                .json(&json!({ "origins": origins }))
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), json(response).await)
        }
    };
    let key = admin.key.clone();
    let (status, body) = put("default".into(), json!(["https://a.example/"]), key.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trailing slash")
    );
    let (status, body) = put(
        "default".into(),
        json!([
            "https://a.example",
            "https://b.example",
            "https://c.example"
        ]),
        key.clone(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["details"]["maxItems"], 2);
    let (status, body) = put(
        "default".into(),
        json!(["https://a.example", "http://localhost:3000"]),
        key.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["origins"],
        json!(["https://a.example", "http://localhost:3000"])
    );

    let acme = admin.create_tenant("acme").await;
    let (_, acme_admin) = admin.create_key(&acme, &["admin"]).await;
    let (status, _) = put(acme.clone(), json!(["*"]), acme_admin.clone()).await;
    assert_eq!(status, 200, "a tenant's admin key sets its own origins");
    let (status, _) = put("default".into(), json!(["*"]), acme_admin).await;
    assert_eq!(status, 403, "but not another tenant's");

    assert!(server.stop().success());
    let again = Server::builder().data_dir(&server.data_dir).start();
    let admin = Admin::new(&again);
    let origins = json(
        admin
            .call(Method::GET, "/admin/v1/tenants/default/origins", None)
            .await,
    )
    .await;
    assert_eq!(
        origins["data"]["origins"],
        json!(["https://a.example", "http://localhost:3000"])
    );
    let acme_origins = json(
        admin
            .call(Method::GET, &format!("/admin/v1/tenants/{acme}"), None)
            .await,
    )
    .await;
    assert_eq!(acme_origins["data"]["allowedOrigins"], json!(["*"]));
}

#[tokio::test]
async fn the_cli_sets_and_shows_origins_on_the_data_dir_and_through_the_server() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let init = Command::new(binary())
        .args(["init", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(init.status.success());
    let offline = ["--url", "http://127.0.0.1:1"];
    let set = stdout_json(&tidings(
        &[
            "tenants",
            "set-origins",
            "default",
            "https://a.example",
            offline[0],
            offline[1],
        ],
        &dir,
    ));
    assert_eq!(set["origins"], json!(["https://a.example"]));
    let bad = tidings(
        &[
            "tenants",
            "set-origins",
            "default",
            "https://A.example",
            offline[0],
            offline[1],
        ],
        &dir,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("lowercase"));
    let nothing = tidings(
        &["tenants", "set-origins", "default", offline[0], offline[1]],
        &dir,
    );
    assert!(!nothing.status.success(), "an empty list needs --none");

    let server = Server::builder().data_dir(&dir).start();
    let url = server.base.clone();
    let shown = stdout_json(&tidings(
        &["tenants", "origins", "default", "--url", &url],
        &dir,
    ));
    assert_eq!(shown["origins"], json!(["https://a.example"]));
    let cleared = stdout_json(&tidings(
        &["tenants", "set-origins", "default", "--none", "--url", &url],
        &dir,
    ));
    assert_eq!(cleared["origins"], json!([]));
    let answer = preflight(&server, "/api/v1/time", "https://a.example", "GET").await;
    assert_eq!(
        answer.status(),
        403,
        "cleared through the server, in effect at once"
    );
}

/// The page: opens a discussion stream and the topics stream (EventSource,
/// tickets in the query), the topics WebSocket (JWT in the query), posts a
/// comment with `Authorization` and a JSON body (preflighted) once the
/// discussion stream connected or failed, reads a 401, and reports each
/// outcome to its own server.
const PAGE_SCRIPT: &str = r#"
const cfg = JSON.parse(document.getElementById('config').textContent);
const report = (name, detail) => fetch('/report', {
  method: 'POST', body: JSON.stringify({ name, detail: detail === undefined ? null : detail }),
});
report('loaded', location.origin);

function watch(prefix, url, eventType, onSettled) {
  const source = new EventSource(url);
  let connected = false, failed = false;
  source.addEventListener('connected', () => { connected = true; report(prefix + '-connected'); onSettled(); });
  source.addEventListener(eventType, (e) => report(prefix + '-event', JSON.parse(e.data)));
  source.onerror = () => {
    if (connected || failed) return;
    failed = true;
    source.close();
    report(prefix + '-failed', source.readyState);
    onSettled();
  };
}

let posted = false;
async function postComment() {
  if (posted) return;
  posted = true;
  try {
    const response = await fetch(cfg.commentUrl, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + cfg.token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ body: 'from a page on ' + location.origin }),
    });
    report('fetch-post', { status: response.status, requestId: response.headers.get('x-request-id') });
  } catch (err) {
    report('fetch-post-failed', err.name + ': ' + err.message);
  }
}
watch('discussion-sse', cfg.discussionStream, 'comment_created', postComment);
watch('topics-sse', cfg.topicStream, 'test', () => {});

fetch(cfg.unauthenticatedUrl)
  .then((response) => report('fetch-401', response.status))
  .catch((err) => report('fetch-401-failed', err.name + ': ' + err.message));

const socket = new WebSocket(cfg.webSocket);
let opened = false;
socket.onopen = () => {
  opened = true;
  report('ws-open');
  socket.send(JSON.stringify({ op: 'subscribe', topic: cfg.topic }));
};
socket.onmessage = (message) => {
  const frame = JSON.parse(message.data);
  if (frame.op === 'subscribed') report('ws-subscribed');
  if (frame.op === 'event') report('ws-event', frame.event);
};
socket.onclose = (e) => { if (!opened) report('ws-refused', e.code); };
"#;

/// The topic the page follows.
const PAGE_TOPIC: &str = "browser/news";

/// Everything one page load needs (fresh tickets), as the page's JSON config.
async fn page_config(server: &Server, viewer: &str) -> Value {
    let discussion = discussion_post(
        server,
        "/api/v1/discussions",
        None,
        json!({ "externalId": format!("article-{viewer}"), "title": "Cross-origin", "moderation": "none" }),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ticket = discussion_post(
        server,
        "/api/v1/stream/ticket",
        None,
        json!({ "discussionId": discussion, "externalUserId": viewer }),
    )
    .await["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let token = mint_jwt(
        server,
        json!({ "sub": viewer, "exp": unix_now() + 600, "name": viewer, "topics": ["browser/*"] }),
    );
    let topic_ticket = mint_ticket(server, PAGE_TOPIC, &format!("{viewer}-topics")).await;
    json!({
        "discussionStream": server.url(&format!("/api/v1/stream/{discussion}?ticket={ticket}")),
        "commentUrl": server.url(&format!("/api/v1/discussions/{discussion}/comments")),
        "topicStream": ticket_stream_url(server, PAGE_TOPIC, &topic_ticket),
        "unauthenticatedUrl": server.url(&format!("/api/v1/topics/{}/events", topic_path(PAGE_TOPIC))),
        "webSocket": format!("{}?access_token={token}", server.url("/api/v1/topics/ws").replace("http://", "ws://")),
        "topic": PAGE_TOPIC,
        "token": token,
    })
}

fn page_html(config: &Value) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidings cross-origin</title></head>\
         <body><script id=\"config\" type=\"application/json\">{config}</script>\
         <script>{PAGE_SCRIPT}</script></body></html>"
    )
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_streams_posts_and_opens_the_websocket_in_chromium() {
    let executable = match chromium() {
        Ok(executable) => executable,
        Err(reason) => {
            eprintln!("SKIPPED headless Chromium test: {reason}");
            return;
        }
    };
    // Generous ticket lifetime: a loaded machine may take long to start Chromium.
    let server = Server::builder().args(&["--ticket-ttl", "5m"]).start();
    let client = server.http1();

    // Allowed: a page on http://localhost:P (the API is http://127.0.0.1:Q).
    let mut allowed = PageServer::start(page_html(&page_config(&server, "alice").await)).await;
    let allowed_origin = format!("http://localhost:{}", allowed.port);
    set_origins(&server, "default", &[&allowed_origin]).await;
    let browser = Browser::open(&executable, &format!("{allowed_origin}/"));
    let failures = [
        "discussion-sse-failed",
        "topics-sse-failed",
        "ws-refused",
        "fetch-post-failed",
        "fetch-401-failed",
    ];
    let ready = allowed
        .collect(&browser, |seen| {
            failures.iter().any(|name| seen.contains_key(*name))
                || [
                    "topics-sse-connected",
                    "ws-subscribed",
                    "fetch-post",
                    "fetch-401",
                ]
                .iter()
                .all(|name| seen.contains_key(*name))
        })
        .await;
    for name in failures {
        assert!(!ready.contains_key(name), "{name}: {ready:?}");
    }
    assert_eq!(ready["loaded"], allowed_origin.as_str());
    assert_eq!(ready["fetch-post"]["status"], 201, "{ready:?}");
    assert!(
        ready["fetch-post"]["requestId"].is_string(),
        "x-request-id is exposed: {ready:?}"
    );
    assert_eq!(ready["fetch-401"], 401, "a page reads a refusal");

    let id = publish(&server, &client, PAGE_TOPIC, json!({ "n": 1 })).await;
    let delivered = allowed
        .collect(&browser, |seen| {
            ["topics-sse-event", "ws-event", "discussion-sse-event"]
                .iter()
                .all(|name| seen.contains_key(*name))
        })
        .await;
    assert_eq!(delivered["topics-sse-event"]["id"], id.as_str());
    assert_eq!(delivered["ws-event"]["id"], id.as_str());
    let comment = &delivered["discussion-sse-event"];
    assert!(
        comment
            .to_string()
            .contains("from a page on http://localhost"),
        "the page's own comment came back on its stream: {comment}"
    );
    drop(browser);

    // Not allowed: the same page from http://127.0.0.1:P.
    let mut refused = PageServer::start(page_html(&page_config(&server, "mallory").await)).await;
    let refused_origin = format!("http://127.0.0.1:{}", refused.port);
    let browser = Browser::open(&executable, &format!("{refused_origin}/"));
    let outcome = refused
        .collect(&browser, |seen| {
            failures.iter().all(|name| seen.contains_key(*name))
        })
        .await;
    assert_eq!(outcome["loaded"], refused_origin.as_str());
    for name in [
        "discussion-sse-connected",
        "topics-sse-connected",
        "ws-open",
        "fetch-post",
        "fetch-401",
    ] {
        assert!(
            !outcome.contains_key(name),
            "{name} must fail from {refused_origin}: {outcome:?}"
        );
    }
    assert!(
        outcome["fetch-post-failed"]
            .as_str()
            .unwrap()
            .starts_with("TypeError"),
        "{outcome:?}"
    );
}
