//! The chat event stream in headless Chromium, embedded as customers do: a
//! page on another origin opens `GET /api/v1/events?access_token=…` with the
//! browser's own `WebSocket` (which cannot set headers). While its origin is
//! not allowed the handshake is refused; once the tenant allows it the page
//! connects, is added to a room, receives the room and its messages, pings,
//! and reports everything it saw.
//!
//! Chromium comes from [`crate::chromium`]; when it cannot be had the test
//! says why and skips.

use crate::chat_api::{Chat, token};
use crate::chromium::{Browser, PageServer, chromium};
use crate::clients::set_origins;
use crate::harness::Server;
use serde_json::{Value, json};

/// The page: connects (retrying every 300 ms while refused, reporting the
/// first refusal), reports `Connected`, collects frames until a message
/// with text "done" arrived, then pings and reports the frames with the
/// `Pong`.
const PAGE_SCRIPT: &str = r#"
const cfg = JSON.parse(document.getElementById('config').textContent);
const report = (name, detail) => fetch('/report', {
  method: 'POST', body: JSON.stringify({ name, detail: detail === undefined ? null : detail }),
});
const frames = [];
let refusals = 0;
function connect() {
  const socket = new WebSocket(cfg.ws + '/api/v1/events?access_token=' + encodeURIComponent(cfg.token));
  let opened = false;
  socket.onopen = () => { opened = true; };
  socket.onmessage = (message) => {
    const frame = JSON.parse(message.data);
    frames.push(frame);
    if (frame.type === 'Connected') report('connected', frame);
    if (frame.type === 'Pong') report('result', frames);
    const done = frame.type === 'TextMessagesCreated'
      && frame.data.messages.some((m) => m.text === 'done');
    if (done) socket.send(JSON.stringify({ type: 'Ping' }));
  };
  socket.onclose = (event) => {
    if (opened) { report('closed', event.code); return; }
    refusals += 1;
    if (refusals === 1) report('refused', event.code);
    setTimeout(connect, 300);
  };
}
connect();
"#;

fn page_html(config: &Value) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidings chat</title></head>\
         <body><script id=\"config\" type=\"application/json\">{config}</script>\
         <script>{PAGE_SCRIPT}</script></body></html>"
    )
}

#[tokio::test]
async fn a_page_on_an_allowed_origin_streams_its_rooms_with_an_access_token_in_chromium() {
    let executable = match chromium() {
        Ok(executable) => executable,
        Err(reason) => {
            eprintln!("SKIPPED headless Chromium chat test: {reason}");
            return;
        }
    };
    let server = Server::start();
    let chat = Chat::new(&server).await;
    let page_user = chat.user("page-user");
    let page_user_id = chat.id(&page_user).await;
    let config = json!({
        "ws": format!("ws://{}", server.addr()),
        "token": token(&server, "page-user"),
    });
    let mut page = PageServer::start(page_html(&config)).await;
    let origin = format!("http://localhost:{}", page.port);
    let browser = Browser::open(&executable, &format!("{origin}/"));

    let refused = page
        .collect(&browser, |seen| seen.contains_key("refused"))
        .await;
    assert_ne!(
        refused["refused"], 1000,
        "a page on an origin the tenant does not allow is refused"
    );
    assert!(!refused.contains_key("connected"));

    set_origins(&server, "default", &[&origin]).await;
    let connected = page
        .collect(&browser, |seen| seen.contains_key("connected"))
        .await;
    assert_eq!(connected["connected"]["data"]["userId"], page_user_id);
    assert_eq!(connected["connected"]["data"]["rooms"], json!([]));

    let room = chat.room(&chat.backend, json!({ "name": "lobby" })).await;
    let path = format!("/rooms/{room}/members");
    let body = json!({ "userId": page_user_id });
    chat.expect(201, chat.post(&path, &chat.backend, body).await)
        .await;
    let mut posted = Vec::new();
    for text in ["hello", "from", "done"] {
        posted.push(chat.say(&chat.backend, room, text, None).await);
    }

    let outcome = page
        .collect(&browser, |seen| {
            seen.contains_key("result") || seen.contains_key("closed")
        })
        .await;
    assert!(!outcome.contains_key("closed"), "{outcome:?}");
    let frames = outcome["result"].as_array().unwrap();
    let types: Vec<&str> = frames.iter().filter_map(|f| f["type"].as_str()).collect();
    assert_eq!(types[..3], ["Connected", "RoomCreated", "RoomUpdated"]);
    assert_eq!(types.last(), Some(&"Pong"));
    let added = &frames[1]["data"];
    assert_eq!(added["room"]["roomId"], room);
    assert_eq!(added["reason"], "added");
    let received: Vec<&Value> = frames
        .iter()
        .filter(|frame| frame["type"] == "TextMessagesCreated")
        .flat_map(|frame| frame["data"]["messages"].as_array().unwrap())
        .collect();
    assert_eq!(received, posted.iter().collect::<Vec<_>>());
}
