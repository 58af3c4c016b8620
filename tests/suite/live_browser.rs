//! Acceptance of live events-streams in headless Chromium: a page on another
//! origin (allowed for the tenant) syncs its clock with the README's recipe
//! (the very snippet, read from README.md), polls every interval while the
//! test posts chats and hearts (and the page posts one itself, preflighted),
//! shows what it got, and reports it; the test checks the intervals were
//! consecutive and every acknowledged chat arrived once, in its interval.
//!
//! Chromium comes from [`crate::chromium`]; when it cannot be had the test
//! says why and skips.

use crate::chromium::{Browser, PageServer, chromium};
use crate::clients::set_origins;
use crate::harness::Server;
use crate::live::{
    MANY_CHATS, Producer, STEP, Viewer, assert_interval_body, chat_locations, chats_total,
    interval_of, now_ms,
};
use serde_json::{Value, json};
use std::time::Duration;

/// The README section whose first `js` block is the clock recipe.
const RECIPE_HEADING: &str = "### Syncing the clock for interval polling";

/// The JavaScript of the README's clock recipe.
fn recipe() -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find(RECIPE_HEADING).expect("the recipe section")..];
    let start = section.find("```js\n").expect("a js block in the recipe") + "```js\n".len();
    let end = start
        + section[start..]
            .find("\n```")
            .expect("the end of the js block");
    section[start..end].to_string()
}

/// The page: syncs its clock, polls with the recipe, posts one chat of its
/// own once polling runs, and stops a few intervals after it has seen the
/// test's chat with text "done" (or after 60 s).
const PAGE_SCRIPT: &str = r#"
const cfg = JSON.parse(document.getElementById('config').textContent);
const report = (name, detail) => fetch('/report', {
  method: 'POST', body: JSON.stringify({ name, detail: detail === undefined ? null : detail }),
});
const shown = document.getElementById('events');
const show = (line) => { shown.textContent += line + '\n'; };

(async () => {
  const clock = await syncClock(cfg.base);
  report('clock', clock);
  const got = [];
  let doneAt = null, posted = false, finished = false;
  const finish = (reason) => {
    if (finished) return;
    finished = true;
    poller.stop();
    report('result', { reason, intervals: got, shown: shown.textContent.length });
  };
  const poller = pollIntervals({
    base: cfg.base, streamId: cfg.streamId, token: cfg.token, offset: clock.offset,
    onInterval: (body) => {
      got.push(body);
      for (const event of body.events) show(body.interval + ' ' + event.type + ' ' + JSON.stringify(event.data));
      if (got.length === 1) report('polling', body.interval);
      if (!posted) { posted = true; postChat(); }
      const chats = body.events.find((event) => event.type === 'chats');
      if (doneAt === null && chats && chats.data.messages.some((chat) => chat.text === 'done')) doneAt = got.length;
      if (doneAt !== null && got.length >= doneAt + 4 && got.length >= 12) finish('done');
    },
    onEnd: (error) => finish('ended: ' + JSON.stringify(error)),
  });
  setTimeout(() => finish('timeout'), 60000);
})().catch((err) => report('failed', err.name + ': ' + err.message));

async function postChat() {
  try {
    const response = await fetch(cfg.base + '/api/v1/events-streams/' + cfg.streamId + '/chats', {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + cfg.token, 'Content-Type': 'application/json' },
      body: JSON.stringify({ kind: 'greeting', text: 'hello from ' + location.origin, displayName: 'Page' }),
    });
    report('page-chat', { status: response.status, body: await response.json() });
  } catch (err) {
    report('page-chat-failed', err.name + ': ' + err.message);
  }
}
"#;

fn page_html(config: &Value) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>tidings live</title></head>\
         <body><pre id=\"events\"></pre><script id=\"config\" type=\"application/json\">{config}</script>\
         <script>{}</script><script>{PAGE_SCRIPT}</script></body></html>",
        recipe()
    )
}

#[tokio::test]
async fn a_page_on_another_origin_syncs_its_clock_and_polls_every_interval_in_chromium() {
    let executable = match chromium() {
        Ok(executable) => executable,
        Err(reason) => {
            eprintln!("SKIPPED headless Chromium test: {reason}");
            return;
        }
    };
    let server = Server::builder().args(MANY_CHATS).start();
    let stream = Producer::admin(&server).stream("In the browser").await;
    let page_viewer = Viewer::new(&server, "page-viewer");
    let config = json!({ "base": server.base, "streamId": stream, "token": page_viewer.token });
    let mut page = PageServer::start(page_html(&config)).await;
    let origin = format!("http://localhost:{}", page.port);
    set_origins(&server, "default", &[&origin]).await;
    let browser = Browser::open(&executable, &format!("{origin}/"));
    let started = page
        .collect(&browser, |seen| {
            seen.contains_key("polling") || seen.contains_key("failed")
        })
        .await;
    assert!(!started.contains_key("failed"), "{started:?}");

    // The clock: same machine, so the estimate is within half a round trip of 0.
    let clock = &started["clock"];
    let (offset, round_trip) = (
        clock["offset"].as_f64().unwrap(),
        clock["roundTrip"].as_f64().unwrap(),
    );
    assert!(
        offset.abs() <= round_trip / 2.0 + 2.0,
        "offset {offset} ms with a round trip of {round_trip} ms"
    );

    // The test posts while the page polls.
    let poster = Viewer::new(&server, "poster");
    let mut posted = Vec::new();
    for n in 0..3 {
        posted.push(poster.message(&stream, &format!("chat {n}")).await);
        assert_eq!(poster.hearts(&stream, json!(n + 1)).await.0, 202);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    posted.push(
        poster
            .chat(
                &stream,
                json!({ "kind": "cheer", "text": "go!", "displayName": "Poster" }),
            )
            .await,
    );
    posted.push(poster.message(&stream, "done").await);

    let outcome = page
        .collect(&browser, |seen| {
            seen.contains_key("result") || seen.contains_key("page-chat-failed")
        })
        .await;
    assert!(!outcome.contains_key("page-chat-failed"), "{outcome:?}");
    let result = &outcome["result"];
    assert_eq!(result["reason"], "done", "{result}");
    assert!(
        result["shown"].as_u64().unwrap() > 0,
        "the page shows the events"
    );
    let intervals = result["intervals"].as_array().unwrap().clone();
    assert!(
        intervals.len() >= 12,
        "about 3 s of intervals: {}",
        intervals.len()
    );
    let first = intervals[0]["interval"].as_u64().unwrap();
    let polling_from = outcome["polling"].as_u64().unwrap();
    assert_eq!(first, polling_from);
    assert!(
        first.abs_diff(interval_of(now_ms())) < 120_000,
        "the page asked for intervals of now: {first}"
    );
    for (index, body) in intervals.iter().enumerate() {
        assert_interval_body(body, first + index as u64 * STEP);
    }
    assert_page_is_a_viewer_from_its_first_poll_on(&intervals);

    let page_chat = &outcome["page-chat"];
    assert_eq!(page_chat["status"], 201, "{page_chat}");
    let page_chat = &page_chat["body"]["data"];
    posted.push((
        page_chat["chat"].clone(),
        page_chat["interval"].as_u64().unwrap(),
    ));
    let locations = chat_locations(&intervals);
    for (chat, t) in &posted {
        let array = match chat["text"].as_str().unwrap() {
            "go!" => "cheers",
            text if text.starts_with("hello from") => "greetings",
            _ => "messages",
        };
        assert_eq!(
            locations.get(chat["id"].as_str().unwrap()),
            Some(&vec![(*t, array)]),
            "{chat} arrived once, in interval {t}"
        );
    }
    assert_eq!(locations.len(), posted.len(), "nothing else: {locations:?}");
    assert_eq!(chats_total(&intervals, "hearts"), 6, "1 + 2 + 3 hearts");

    // The recipe's polls carry the token in the query: simple requests,
    // so no preflight (Chromium caches one per URL, and every interval has
    // its own URL, so a header would cost one per poll).
    let log = server.stderr();
    let polls = |method: &str| {
        let needle = format!("method={method} path=/api/v1/events-streams/{stream} ");
        log.lines().filter(|line| line.contains(&needle)).count()
    };
    assert!(polls("GET") >= 12, "the page polled");
    assert_eq!(polls("OPTIONS"), 0, "no preflight before the page's polls");
}

/// The page counts as a viewer once its first poll has reached the server
/// and stays one (the viewer window is 10 s). An interval that closed before
/// that poll arrived (the first, or a few on a loaded machine) may say 0.
fn assert_page_is_a_viewer_from_its_first_poll_on(intervals: &[Value]) {
    let viewers: Vec<u64> = intervals
        .iter()
        .map(|body| body["events"][0]["data"]["value"].as_u64().unwrap())
        .collect();
    let before_first_poll = viewers.iter().take_while(|count| **count == 0).count();
    assert!(
        before_first_poll <= 4,
        "the page became a viewer within a second: {viewers:?}"
    );
    assert!(
        viewers[before_first_poll..].iter().all(|count| *count >= 1),
        "once a viewer, the page stays one: {viewers:?}"
    );
}

#[test]
fn the_recipe_is_in_the_readme() {
    let recipe = recipe();
    for needle in [
        "async function syncClock",
        "function pollIntervals",
        "(t0 + t1) / 2",
        "Math.floor((Date.now() + offset) / 250) * 250",
    ] {
        assert!(recipe.contains(needle), "{needle} in the recipe:\n{recipe}");
    }
}
