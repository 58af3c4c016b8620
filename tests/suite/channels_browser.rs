//! The channels surface in headless Chromium, embedded as customers do: a
//! page on another origin (allowed for the tenant) loads the browser build
//! of `socket.io-client` 4.8.4 and connects with default options (so it
//! long-polls across origins first, then upgrades to WebSocket), joins a
//! channel's posts with its JWT in `auth`, and reports the posts the
//! backend writes meanwhile.
//!
//! Chromium comes from [`crate::chromium`] and the client from the same
//! pinned npm install as the other Socket.IO tests; when either cannot be
//! had the test says why and skips.

use crate::channels_rest::channel;
use crate::chat_api::{Chat, token};
use crate::chat_events::client::Kind;
use crate::chromium::{Browser, PageServer, chromium};
use crate::clients::set_origins;
use crate::harness::Server;
use serde_json::{Value, json};

/// The page: connects, joins the channel, reports each step and, once a
/// post with text "done" arrived, every event it got and its transport.
const PAGE_SCRIPT: &str = r#"
const cfg = JSON.parse(document.getElementById('config').textContent);
const report = (name, detail) => fetch('/report', {
  method: 'POST', body: JSON.stringify({ name, detail: detail === undefined ? null : detail }),
});
const events = [];
const socket = io(cfg.base, { auth: { token: cfg.token } });
socket.io.on('open', () => report('opened', socket.io.engine.transport.name));
socket.on('connect_error', (err) => report('connect_error', err.message));
socket.on('connect', () => {
  socket.emit('communication:join_channel_posts', { channelId: cfg.channel }, (ack) => report('joined', ack));
});
socket.onAny((name, envelope) => {
  events.push({ name, envelope });
  if (envelope.data && envelope.data.text === 'done') {
    report('result', { events, transport: socket.io.engine.transport.name });
  }
});
"#;

fn page_html(client: &str, config: &Value) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidings channels</title></head>\
         <body><script>{client}</script>\
         <script id=\"config\" type=\"application/json\">{config}</script>\
         <script>{PAGE_SCRIPT}</script></body></html>"
    )
}

#[tokio::test]
async fn a_page_on_another_origin_follows_a_channel_with_the_browser_socket_io_client() {
    let executable = match chromium() {
        Ok(executable) => executable,
        Err(reason) => {
            eprintln!("SKIPPED headless Chromium channels test: {reason}");
            return;
        }
    };
    let client = match Kind::SocketIo.package_dir() {
        Ok(dir) => dir.join("node_modules/socket.io-client/dist/socket.io.min.js"),
        Err(reason) => {
            eprintln!("SKIPPED headless Chromium channels test: socket.io-client: {reason}");
            return;
        }
    };
    let client = std::fs::read_to_string(&client).expect("the browser build of socket.io-client");
    let server = Server::start();
    let api = Chat::new(&server).await;
    let id = channel(&api, json!({ "name": "News" })).await;
    let config =
        json!({ "base": server.base, "token": token(&server, "page-user"), "channel": id });
    let mut page = PageServer::start(page_html(&client, &config)).await;
    let origin = format!("http://localhost:{}", page.port);
    set_origins(&server, "default", &[&origin]).await;
    let browser = Browser::open(&executable, &format!("{origin}/"));

    let joined = page
        .collect(&browser, |seen| {
            seen.contains_key("joined") || seen.contains_key("connect_error")
        })
        .await;
    assert!(!joined.contains_key("connect_error"), "{joined:?}");
    assert_eq!(
        joined["opened"], "polling",
        "default options start with long-polling"
    );
    assert_eq!(joined["joined"]["ok"], true, "{joined:?}");
    let posts = format!("/communication/channels/{id}/posts");
    for text in ["hello", "from the backend", "done"] {
        let body = json!({ "text": text, "authorId": "ed" });
        api.expect(201, api.post(&posts, &api.backend, body).await)
            .await;
    }
    let outcome = page
        .collect(&browser, |seen| seen.contains_key("result"))
        .await;
    let result = &outcome["result"];
    assert_eq!(
        result["transport"], "websocket",
        "upgraded across origins: {result}"
    );
    let texts: Vec<&str> = result["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            assert_eq!(
                event["name"], "communication.channel_post.created",
                "{event}"
            );
            event["envelope"]["data"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(texts, ["hello", "from the backend", "done"]);
}
