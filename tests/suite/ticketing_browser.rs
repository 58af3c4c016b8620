//! The notification stream with independent clients: headless Chromium's
//! plain `EventSource` on a page of another origin (allowed for the
//! tenant), which can send no headers and so uses the query form
//! (`?access_token=&tenant=&realm=`); and Node's `eventsource` package
//! sending the spec's headers (Authorization, x-tenantid, realmname).
//!
//! Chromium comes from [`crate::chromium`], Node's package from
//! [`crate::eventsource`]; when either cannot be had, its test says why and
//! skips.

use crate::chat_api::default_tenant;
use crate::chromium::{Browser, PageServer, chromium};
use crate::clients::set_origins;
use crate::eventsource::EventSourceClient;
use crate::harness::Server;
use crate::ticketing_stream::{NOTIFICATIONS, assign_new_ticket, user};
use serde_json::{Value, json};
use std::time::Duration;

/// The page: opens the stream with the query form and reports the
/// `connected` frame, the first notification (then closes), and errors.
const PAGE_SCRIPT: &str = r#"
const cfg = JSON.parse(document.getElementById('config').textContent);
const report = (name, detail) => fetch('/report', {
  method: 'POST', body: JSON.stringify({ name, detail: detail === undefined ? null : detail }),
});
const url = cfg.base + cfg.path + '?access_token=' + encodeURIComponent(cfg.token)
  + '&tenant=' + encodeURIComponent(cfg.tenant) + '&realm=default';
const source = new EventSource(url);
source.addEventListener('connected', (event) =>
  report('connected', { id: event.lastEventId, data: JSON.parse(event.data) }));
source.addEventListener('notification', (event) => {
  report('notification', { id: event.lastEventId, data: JSON.parse(event.data) });
  source.close();
});
source.onerror = () => report('error', { readyState: source.readyState });
"#;

fn page_html(config: &Value) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidings tickets</title></head>\
         <body><script id=\"config\" type=\"application/json\">{config}</script>\
         <script>{PAGE_SCRIPT}</script></body></html>"
    )
}

#[tokio::test]
async fn a_browsers_event_source_on_another_origin_gets_connected_and_a_notification() {
    let executable = match chromium() {
        Ok(executable) => executable,
        Err(reason) => {
            eprintln!("SKIPPED headless Chromium test: {reason}");
            return;
        }
    };
    let server = Server::start();
    let config = json!({
        "base": server.base,
        "path": NOTIFICATIONS,
        "token": user(&server, "page-user", &[]),
        "tenant": default_tenant(&server),
    });
    let mut page = PageServer::start(page_html(&config)).await;
    let origin = format!("http://localhost:{}", page.port);
    set_origins(&server, "default", &[&origin]).await;
    let browser = Browser::open(&executable, &format!("{origin}/"));
    let opened = page
        .collect(&browser, |seen| {
            seen.contains_key("connected") || seen.contains_key("error")
        })
        .await;
    assert!(!opened.contains_key("error"), "{opened:?}");
    let connected = &opened["connected"];
    assert_eq!(
        connected["data"]["message"],
        "Connected to notification stream"
    );
    assert_eq!(connected["data"]["userId"], "page-user");

    let agent = user(&server, "agent-1", &["agent"]);
    let ticket = assign_new_ticket(&server, &agent, "page-user", "Seen in a browser").await;
    let got = page
        .collect(&browser, |seen| seen.contains_key("notification"))
        .await;
    let notification = &got["notification"];
    assert_eq!(notification["data"]["type"], "assignment");
    assert_eq!(notification["data"]["ticketId"], ticket["id"]);
    assert_eq!(
        notification["id"].as_str().map(str::len),
        Some(26),
        "the browser's lastEventId is the event's ULID: {notification}"
    );
}

#[tokio::test]
async fn a_node_event_source_with_the_specs_headers_gets_a_notification() {
    let server = Server::start();
    let token = user(&server, "node-user", &[]);
    let bearer = format!("Bearer {token}");
    let tenant = default_tenant(&server);
    let headers = [
        ("Authorization", bearer.as_str()),
        ("x-tenantid", tenant.as_str()),
        ("realmname", "default"),
    ];
    let Some(client) = EventSourceClient::spawn_with_headers(
        &server.url(NOTIFICATIONS),
        &headers,
        &["connected", "notification"],
    ) else {
        return;
    };
    let wait = Duration::from_secs(30);
    let connected = client.next_event(wait);
    assert_eq!(connected["type"], "connected", "{connected}");
    assert_eq!(connected["data"]["userId"], "node-user");

    let agent = user(&server, "agent-1", &["agent"]);
    let ticket = assign_new_ticket(&server, &agent, "node-user", "Seen from Node").await;
    let notification = client.next_event(wait);
    assert_eq!(notification["type"], "notification", "{notification}");
    assert_eq!(notification["data"]["type"], "assignment");
    assert_eq!(notification["data"]["ticketId"], ticket["id"]);
    assert_eq!(notification["data"]["title"], "Seen from Node");
}
