//! The web console (`/console`) and what it stands on: the assets' strict
//! headers, the `GET /admin/v1/stats` sample, the discussions' pending-comment
//! queue, and the page itself in headless Chromium driven over the DevTools
//! protocol (sign in, live overview, keys, realms, origins, webhooks, topic
//! tail and history, moderation, a tenant admin's narrower view, hostile
//! text staying text). Screenshots of each view go to
//! `target/console-screenshots/`.
//!
//! Chromium comes from [`crate::chromium`]; when it cannot be had, the
//! browser tests say why and skip (the HTTP-level tests here still run).

use crate::chromium::{DevTools, chromium};
use crate::clients::{
    Admin, SseReader, WsClient, admin_key, discussion_post, mint_jwt, publish, unix_now,
};
use crate::harness::{Server, json};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// The exact Content-Security-Policy every console answer carries.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Markup a hostile tenant or publisher might slip into a name or payload.
const HOSTILE: &str = "<img src=x onerror=\"window.__xss=1\">";

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn console_assets_carry_a_strict_policy_and_revalidate_by_etag() {
    let server = Server::start();
    let client = server.http1();
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
    ] {
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type);
        assert_eq!(header(&response, "content-security-policy"), CSP);
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        assert_eq!(header(&response, "cache-control"), "no-cache");
        let etag = header(&response, "etag").to_string();
        assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
        let body = response.text().await.unwrap();
        assert!(!body.is_empty());

        let fresh = client
            .get(server.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(fresh.status(), 304, "{path}");
        assert_eq!(header(&fresh, "etag"), etag);
        assert_eq!(header(&fresh, "content-security-policy"), CSP);
        assert!(fresh.bytes().await.unwrap().is_empty());
        let stale = client
            .get(server.url(path))
            .header("if-none-match", "\"0123\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200);
    }

    let html = client
        .get(server.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<style"), "no inline style sheet");
    assert!(!html.contains(" style="), "no inline style attribute");
    for script in html.split("<script").skip(1) {
        assert!(
            script.trim_start().starts_with("src=\"/console/"),
            "only scripts of this origin: <script{script}"
        );
    }
    let handlers = html
        .match_indices(" on")
        .filter(|(at, _)| {
            let rest = &html[at + 3..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase())
                .collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        })
        .count();
    assert_eq!(handlers, 0, "no inline event handler attributes");
    let script = client
        .get(server.url("/console/app.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "the script never uses {sink}");
    }
    assert!(
        !script.contains("localStorage") && !script.contains("document.cookie"),
        "the key is kept in sessionStorage only"
    );

    let missing = client
        .get(server.url("/console/other.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn stats_sample_counts_events_deliveries_flushes_and_webhook_backlog() {
    let server = Server::builder()
        .args(&["--webhook-allow-private", "127.0.0.1/32"])
        .start();
    let admin = Admin::new(&server);
    let stats = |key: Option<String>| {
        let request = server.http1().get(server.url("/admin/v1/stats"));
        let request = match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        };
        async move { request.send().await.unwrap() }
    };
    let before = json(stats(Some(admin.key.clone())).await).await["data"].clone();
    assert_eq!(before["viewer"]["instanceAdmin"], true);
    assert_eq!(before["writer"]["state"], "healthy");

    // A receiver that is never there: the deliveries stay pending.
    let hook = admin
        .call(
            Method::POST,
            "/admin/v1/tenants/default/webhooks",
            Some(json!({ "url": "http://127.0.0.1:9/hook", "eventTypes": ["test"] })),
        )
        .await;
    assert_eq!(hook.status(), 201);

    let client = server.http1();
    let mut reader = SseReader::open(&server, &client, "stats/room", None).await;
    assert_eq!(reader.next_event().await.unwrap().event, "connected");
    for n in 0..3 {
        publish(&server, &client, "stats/room", json!({ "n": n })).await;
    }
    for _ in 0..3 {
        assert_eq!(reader.next_event().await.unwrap().event, "test");
    }

    let after = json(stats(Some(admin.key.clone())).await).await["data"].clone();
    let grew = |path: &str| {
        let pointer = |value: &Value| value.pointer(path).and_then(Value::as_f64).unwrap_or(0.0);
        pointer(&after) - pointer(&before)
    };
    assert!(grew("/writer/events") >= 3.0, "{after}");
    assert!(grew("/writer/commits") >= 1.0, "{after}");
    assert!(grew("/writer/flushSeconds") > 0.0, "{after}");
    assert!(grew("/deliveries/sse/topics") >= 3.0, "{after}");
    assert!(after["at"].as_u64().unwrap() >= before["at"].as_u64().unwrap());
    assert_eq!(after["open"]["streams"]["sse"], 1, "{after}");
    assert!(after["open"]["connections"]["http1"].as_u64().unwrap() >= 1);
    assert_eq!(after["subscriptionsBySurface"]["topics"], 1, "{after}");
    assert_eq!(after["subscriptions"], 1);
    assert_eq!(after["webhooks"]["pending"], 3, "{after}");
    assert_eq!(after["webhooks"]["pendingCapped"], false);
    // Nothing listens on port 9: nothing was delivered, and nothing given
    // up yet (the retry window is hours long).
    let attempts = &after["webhooks"]["attempts"];
    assert_eq!(attempts["delivered"], 0, "{after}");
    assert_eq!(attempts["failed"], 0, "{after}");
    assert!(attempts["retry"].is_u64(), "{after}");
    assert!(after["process"]["residentBytes"].as_u64().unwrap() > 0);
    assert!(after["process"]["openFds"].as_u64().unwrap() > 0);

    let metrics = server.get("/metrics").await.text().await.unwrap();
    let series = |name: &str| crate::harness::sample(&metrics, name).unwrap_or(-1.0);
    assert!(
        series("tidings_deliveries_total{transport=\"sse\",surface=\"topics\"}") >= 3.0,
        "{metrics}"
    );
    assert!(series("tidings_writer_events_total") >= 3.0);
    assert!(series("tidings_writer_flush_seconds_total") > 0.0);

    // A tenant admin key sees who it is and its own tenant only.
    let acme = admin.create_tenant("acme").await;
    let (_, tenant_admin) = admin.create_key(&acme, &["admin"]).await;
    let mine = json(stats(Some(tenant_admin)).await).await["data"].clone();
    assert_eq!(mine["viewer"]["instanceAdmin"], false);
    assert_eq!(mine["viewer"]["tenant"]["slug"], "acme");
    assert_eq!(mine["viewer"]["key"]["scopes"], json!(["admin"]));
    assert_eq!(
        mine["subscriptions"], 0,
        "the default tenant's stream is not acme's"
    );
    for hidden in [
        "writer",
        "deliveries",
        "webhooks",
        "subscriptionsByTenant",
        "open",
    ] {
        assert!(mine.get(hidden).is_none(), "{hidden} in {mine}");
    }

    let (_, reader_key) = admin.create_key(&acme, &["read", "publish"]).await;
    assert_eq!(stats(Some(reader_key)).await.status(), 403);
    assert_eq!(stats(None).await.status(), 401);
    let token = mint_jwt(
        &server,
        json!({ "sub": "u", "exp": unix_now() + 600, "roles": ["admin"] }),
    );
    let with_token = server
        .http1()
        .get(server.url("/admin/v1/stats"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 403);
    assert_eq!(
        json(with_token).await["error"]["code"],
        "FORBIDDEN",
        "the error envelope"
    );
}

/// `GET /api/v1/discussions/pending-comments` with `key` (and a reader when given).
async fn pending(
    server: &Server,
    key: &str,
    query: &str,
    reader: Option<&str>,
) -> reqwest::Response {
    let mut request = server
        .http1()
        .get(server.url(&format!("/api/v1/discussions/pending-comments{query}")))
        .header("x-api-key", key);
    if let Some(reader) = reader {
        request = request.header("x-external-user-id", reader);
    }
    request.send().await.unwrap()
}

/// Creates a discussion (`moderation` "pre" or "none") and returns its id.
async fn create_discussion(server: &Server, external: &str, moderation: &str) -> String {
    let body = json!({ "externalId": external, "title": format!("About {external}"), "moderation": moderation });
    discussion_post(server, "/api/v1/discussions", None, body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Posts `body` to `discussion` as reader `user` and returns the comment id.
async fn post_comment(server: &Server, discussion: &str, user: &str, body: &str) -> String {
    let path = format!("/api/v1/discussions/{discussion}/comments");
    let body = json!({ "body": body, "displayName": user });
    discussion_post(server, &path, Some(user), body).await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|comment| comment["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pending_comments_are_listed_oldest_first_to_moderators_until_decided() {
    let server = Server::start();
    let key = admin_key(&server);
    let (first, second, open) = (
        create_discussion(&server, "first", "pre").await,
        create_discussion(&server, "second", "pre").await,
        create_discussion(&server, "open", "none").await,
    );
    let a = post_comment(&server, &first, "ann", "one").await;
    let b = post_comment(&server, &second, "bob", "two").await;
    let c = post_comment(&server, &first, "cat", "three").await;
    post_comment(&server, &open, "dan", "published at once").await;

    let page = json(pending(&server, &key, "?limit=2", None).await).await;
    assert_eq!(ids(&page), vec![a.clone(), b.clone()], "{page}");
    assert_eq!(page["data"]["nextCursor"], b.as_str());
    let item = &page["data"]["comments"][0];
    assert_eq!(item["body"], "one", "moderators see the body");
    assert_eq!(item["status"], "pending");
    assert_eq!(item["author"]["displayName"], "ann");
    assert_eq!(item["discussion"]["id"], first.as_str());
    assert_eq!(item["discussion"]["externalId"], "first");
    assert_eq!(item["discussion"]["title"], "About first");
    assert_eq!(item["discussion"]["status"], "open");
    let rest = json(pending(&server, &key, &format!("?limit=2&cursor={b}"), None).await).await;
    assert_eq!(ids(&rest), vec![c.clone()]);
    assert_eq!(rest["data"]["nextCursor"], Value::Null);

    // Only moderators list them.
    let as_reader = pending(&server, &key, "", Some("ann")).await;
    assert_eq!(as_reader.status(), 403);
    assert_eq!(json(as_reader).await["error"]["code"], "FORBIDDEN");
    let admin = Admin::new(&server);
    let (_, read_only) = admin.create_key("default", &["read"]).await;
    assert_eq!(pending(&server, &read_only, "", None).await.status(), 403);
    let (_, moderator) = admin.create_key("default", &["read", "admin"]).await;
    assert_eq!(
        ids(&json(pending(&server, &moderator, "", None).await).await).len(),
        3
    );
    let token = mint_jwt(
        &server,
        json!({ "sub": "mod-1", "exp": unix_now() + 600, "roles": ["moderator"] }),
    );
    let by_token = server
        .http1()
        .get(server.url("/api/v1/discussions/pending-comments"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ids(&json(by_token).await).len(), 3);
    let other = admin.create_tenant("other").await;
    let (_, other_moderator) = admin.create_key(&other, &["read", "admin"]).await;
    let elsewhere = json(pending(&server, &other_moderator, "", None).await).await;
    assert!(
        ids(&elsewhere).is_empty(),
        "another tenant's queue is its own"
    );

    for bad in ["?limit=0", "?limit=101", "?cursor=nope"] {
        let refused = pending(&server, &key, bad, None).await;
        assert_eq!(refused.status(), 400, "{bad}");
        assert_eq!(json(refused).await["error"]["code"], "VALIDATION_ERROR");
    }

    // Approving, rejecting and deleting take comments off the queue.
    discussion_post(
        &server,
        &format!("/api/v1/discussions/{first}/comments/{a}/approve"),
        None,
        json!({}),
    )
    .await;
    discussion_post(
        &server,
        &format!("/api/v1/discussions/{second}/comments/{b}/reject"),
        None,
        json!({ "reason": "off topic" }),
    )
    .await;
    assert_eq!(
        ids(&json(pending(&server, &key, "", None).await).await),
        vec![c.clone()]
    );
    let deleted = server
        .http1()
        .delete(server.url(&format!("/api/v1/discussions/{first}/comments/{c}")))
        .header("x-api-key", &key)
        .header("x-external-user-id", "cat")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert!(ids(&json(pending(&server, &key, "", None).await).await).is_empty());
}

#[tokio::test]
async fn pending_comments_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::builder().data_dir(dir.path()).start();
    let discussion = create_discussion(&server, "kept", "pre").await;
    let comment = post_comment(&server, &discussion, "ann", "still waiting").await;
    drop(server);
    let server = Server::builder().data_dir(dir.path()).start();
    let page = json(pending(&server, &admin_key(&server), "", None).await).await;
    assert_eq!(ids(&page), vec![comment], "{page}");
}

/// Where the screenshots of a test run go.
fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("console-screenshots")
}

/// A JavaScript string literal of `text`.
fn js(text: &str) -> String {
    json!(text).to_string()
}

/// Types `value` into the input (or select) `id`, as a user would.
async fn fill(page: &mut DevTools, id: &str, value: &str) {
    page.eval(&format!(
        "(() => {{ const input = document.getElementById({}); input.value = {}; input.dispatchEvent(new Event('input', {{ bubbles: true }})); input.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()",
        js(id),
        js(value)
    ))
    .await;
}

/// Clicks the element `selector` names.
async fn click(page: &mut DevTools, selector: &str) {
    page.eval(&format!(
        "(() => {{ const target = document.querySelector({}); if (!target) throw new Error('nothing matches ' + {}); target.click(); return true; }})()",
        js(selector),
        js(selector)
    ))
    .await;
}

/// The text of the element `selector` names (empty when there is none).
async fn text(page: &mut DevTools, selector: &str) -> String {
    page.eval(&format!(
        "document.querySelector({})?.textContent ?? ''",
        js(selector)
    ))
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// Waits until the element `selector` names exists and is not hidden.
async fn visible(page: &mut DevTools, selector: &str) {
    page.wait_for(
        &format!("{selector} to show"),
        &format!(
            "(() => {{ const node = document.querySelector({}); return !!node && !node.closest('[hidden]'); }})()",
            js(selector)
        ),
    )
    .await;
}

/// Opens the console and signs in with `key`.
async fn sign_in(page: &mut DevTools, server: &Server, key: &str) {
    page.navigate(&server.url("/console")).await;
    fill(page, "signin-key", key).await;
    click(page, "#signin-submit").await;
    visible(page, "#sign-out").await;
}

/// Starts Chromium over DevTools, or says why the test skips.
async fn devtools() -> Option<DevTools> {
    match chromium() {
        Ok(executable) => Some(DevTools::launch(&executable).await),
        Err(reason) => {
            eprintln!("skipping: {reason}");
            None
        }
    }
}

#[tokio::test]
async fn console_walkthrough_as_the_instance_admin() {
    let Some(mut page) = devtools().await else {
        return;
    };
    let server = Server::builder()
        .args(&[
            "--webhook-allow-private",
            "127.0.0.1/32",
            "--webhook-retry-for",
            "500ms",
            "--webhook-backoff-base",
            "100ms",
        ])
        .start();
    let admin = Admin::new(&server);
    let shots = screenshots();

    // A wrong key is refused with the API's own message, and nothing is stored.
    page.navigate(&server.url("/console")).await;
    fill(&mut page, "signin-key", "adm_not-the-key").await;
    click(&mut page, "#signin-submit").await;
    let error = page
        .wait_for(
            "the refusal",
            "document.getElementById('error').textContent",
        )
        .await;
    assert!(error.as_str().unwrap().contains("HTTP 401"), "{error}");
    assert_eq!(
        page.eval("sessionStorage.length").await,
        0,
        "a refused key is not kept"
    );
    page.screenshot(&shots.join("sign-in.png")).await;

    sign_in(&mut page, &server, &admin.key).await;
    assert_eq!(text(&mut page, "#who").await, "instance admin");
    assert_eq!(
        page.eval("sessionStorage.getItem('tidings.console.key')")
            .await,
        admin.key.as_str()
    );
    assert_eq!(page.eval("document.cookie").await, "", "no cookie");
    assert!(
        !page
            .eval("location.href")
            .await
            .as_str()
            .unwrap()
            .contains(&admin.key),
        "the key is never in the URL"
    );

    // The overview moves while events are published and delivered (over
    // SSE and WebSocket, at a rate that changes halfway).
    visible(&mut page, "[data-stat=events]").await;
    const TICKS: usize = 300;
    let client = server.http1();
    let mut sse = SseReader::open(&server, &client, "console/live", None).await;
    assert_eq!(sse.next_event().await.unwrap().event, "connected");
    let mut ws = WsClient::connect(&server).await;
    ws.send(json!({ "op": "subscribe", "topic": "console/live" }))
        .await;
    assert_eq!(ws.next_json().await["op"], "subscribed");
    let ws_delivered = |stats: &Value| {
        stats
            .pointer("/data/deliveries/ws/topics")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let stats = admin.call(Method::GET, "/admin/v1/stats", None).await;
    let ws_before = ws_delivered(&json(stats).await);
    let publisher = {
        let (base, key) = (server.base.clone(), admin.key.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..TICKS {
                let response = client
                    .post(format!("{base}/api/v1/topics/console%2Flive/events"))
                    .header("x-api-key", &key)
                    .json(&json!({ "type": "tick", "data": { "n": n } }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let pause = if (n / 60) % 2 == 0 { 25 } else { 70 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        })
    };
    let drain = tokio::spawn(async move {
        for _ in 0..TICKS {
            assert_eq!(sse.next_event().await.unwrap().event, "tick");
            assert_eq!(ws.next_json().await["op"], "event");
        }
    });
    page.wait_for(
        "the committed-events number to pass 40",
        "Number(document.querySelector('[data-stat=events]').textContent) >= 40",
    )
    .await;
    page.wait_for(
        "deliveries to be counted",
        "Number(document.querySelector('[data-stat=deliveries]').textContent) >= 80",
    )
    .await;
    page.wait_for(
        "the events /s chart to show a rate",
        "[...document.querySelectorAll('figure.chart')].some(f => f.querySelector('figcaption').textContent.startsWith('Events committed') && Number(f.querySelector('.current').textContent) > 0)",
    )
    .await;
    page.wait_for(
        "both streams in the streams chart",
        "[...document.querySelectorAll('figure.chart .legend')].some(l => l.textContent.includes('SSE1') && l.textContent.includes('WebSocket1'))",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let lines = page
        .eval("[...document.querySelectorAll('#charts polyline')].filter(l => (l.getAttribute('points') || '').split(' ').length > 3).length")
        .await;
    assert!(lines.as_u64().unwrap() >= 8, "charts drawn: {lines}");
    page.screenshot(&shots.join("overview.png")).await;
    publisher.await.unwrap();
    drain.await.unwrap();
    let stats = admin.call(Method::GET, "/admin/v1/stats", None).await;
    let ws_after = ws_delivered(&json(stats).await);
    assert!(
        ws_after >= ws_before + TICKS as u64,
        "WebSocket deliveries counted: {ws_before} then {ws_after}"
    );

    // Tenants: a hostile name stays text.
    click(&mut page, "#nav-tenants").await;
    visible(&mut page, "#tenants-panel").await;
    fill(&mut page, "tenant-slug", "hostile").await;
    fill(&mut page, "tenant-name", HOSTILE).await;
    click(&mut page, "#tenant-create-submit").await;
    page.wait_for(
        "the new tenant's row",
        &format!(
            "[...document.querySelectorAll('#tenants-body td')].some(td => td.textContent === {})",
            js(HOSTILE)
        ),
    )
    .await;
    assert_eq!(
        page.eval("document.querySelectorAll('main img').length")
            .await,
        0
    );
    assert_eq!(page.eval("window.__xss === undefined").await, true);
    assert_eq!(
        page.eval("document.getElementById('tenant-picker').selectedOptions[0].textContent")
            .await,
        "hostile",
        "the new tenant is selected"
    );

    // Keys of the default tenant: create (secret shown once), use, revoke.
    fill(&mut page, "tenant-picker", &default_tenant(&admin).await).await;
    page.wait_for(
        "the default tenant's realm",
        "document.querySelector('#realms-body tr[data-name=default]') !== null",
    )
    .await;
    fill(&mut page, "key-name", "console-made").await;
    click(&mut page, "#key-scope-publish").await;
    click(&mut page, "#key-scope-read").await;
    click(&mut page, "#key-create-submit").await;
    let shown = page
        .wait_for(
            "the new key's secret",
            "document.getElementById('key-secret').hidden ? '' : document.getElementById('key-secret').textContent",
        )
        .await;
    let secret = shown
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|word| word.starts_with("ek_"))
        .unwrap_or_else(|| panic!("no secret in {shown}"))
        .to_string();
    let publish_with = |key: String| {
        let server = &server;
        async move {
            server
                .http1()
                .post(server.url("/api/v1/topics/keyed/events"))
                .header("x-api-key", key)
                .json(&json!({ "type": "t", "data": {} }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(publish_with(secret.clone()).await, 201);
    let row = "#keys-body tr:first-child";
    assert_eq!(text(&mut page, &format!("{row} td")).await, "console-made");
    click(&mut page, &format!("{row} button.danger")).await;
    click(&mut page, &format!("{row} button.confirm")).await;
    page.wait_for(
        "the key to show as revoked",
        "document.querySelector('#keys-body tr:first-child .badge.off') !== null",
    )
    .await;
    assert_eq!(
        publish_with(secret).await,
        401,
        "the revoked key is refused"
    );

    // Realms, origins, and an API error shown from its envelope.
    fill(&mut page, "realm-name", "partner").await;
    fill(&mut page, "realm-algorithm", "HS256").await;
    fill(&mut page, "realm-material", "too short").await;
    click(&mut page, "#realm-create-submit").await;
    let refused = page
        .wait_for(
            "the realm refusal",
            "document.getElementById('error').textContent",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("HTTP 400"), "{refused}");
    fill(
        &mut page,
        "realm-material",
        "a-shared-secret-of-at-least-32-bytes!",
    )
    .await;
    fill(&mut page, "realm-kid", "k1").await;
    click(&mut page, "#realm-create-submit").await;
    page.wait_for(
        "the partner realm",
        "[...document.querySelectorAll('#realms-body tr')].some(tr => tr.dataset.name === 'partner')",
    )
    .await;
    assert_eq!(
        page.eval("document.getElementById('error').hidden").await,
        true
    );
    fill(
        &mut page,
        "origins-text",
        "https://www.example.com\nhttp://localhost:3000",
    )
    .await;
    click(&mut page, "#origins-save").await;
    let origins = || async {
        json(
            admin
                .call(Method::GET, "/admin/v1/tenants/default/origins", None)
                .await,
        )
        .await["data"]["origins"]
            .clone()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while origins().await != json!(["https://www.example.com", "http://localhost:3000"]) {
        assert!(tokio::time::Instant::now() < deadline, "origins not saved");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Webhooks: an endpoint nobody answers, its given-up delivery re-delivered.
    fill(&mut page, "webhook-url", "http://127.0.0.1:9/hook").await;
    fill(&mut page, "webhook-types", "console.hook").await;
    fill(&mut page, "webhook-description", "nobody listens").await;
    click(&mut page, "#webhook-create-submit").await;
    page.wait_for(
        "the endpoint's secret",
        "!document.getElementById('webhook-secret').hidden && document.getElementById('webhook-secret').textContent.includes('whsec_')",
    )
    .await;
    let response = admin
        .call(
            Method::POST,
            "/api/v1/topics/hooked/events",
            Some(json!({ "type": "console.hook", "data": {} })),
        )
        .await;
    assert_eq!(response.status(), 201);
    let endpoint = "#webhooks-body tr:first-child";
    let mut listed = false;
    for _ in 0..60 {
        page.eval(&format!(
            "[...document.querySelectorAll('{endpoint} button')].find(b => b.textContent === 'Failed deliveries').click(), true"
        ))
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if page
            .eval("document.getElementById('deliveries-body').children.length")
            .await
            == 1
        {
            listed = true;
            break;
        }
    }
    assert!(listed, "the given-up delivery is listed");
    page.screenshot(&shots.join("tenants.png")).await;
    click(&mut page, "#deliveries-body tr button").await;
    page.wait_for(
        "the re-delivered delivery to leave the failed list",
        "document.getElementById('deliveries-body').children.length === 0",
    )
    .await;
    click(&mut page, &format!("{endpoint} td.actions button")).await;
    page.wait_for(
        "the endpoint to show as disabled",
        &format!("document.querySelector('{endpoint} .badge.off') !== null"),
    )
    .await;

    // Topics: tail live (a hostile payload stays text), then history.
    click(&mut page, "#nav-topics").await;
    fill(&mut page, "topic-name", "console/hostile").await;
    click(&mut page, "#topic-tail").await;
    page.wait_for(
        "the tail to connect",
        "document.getElementById('tail-status').textContent.startsWith('live')",
    )
    .await;
    let hostile_id = publish(
        &server,
        &client,
        "console/hostile",
        json!({ "html": HOSTILE, "note": "</pre><script>window.__xss=2</script>" }),
    )
    .await;
    page.wait_for(
        "the published event in the tail",
        &format!(
            "[...document.querySelectorAll('#tail-events tr')].some(tr => tr.dataset.id === {})",
            js(&hostile_id)
        ),
    )
    .await;
    let shown = text(&mut page, "#tail-events").await;
    assert!(
        shown.contains("<img src=x onerror=") && shown.contains("<script>window.__xss=2</script>"),
        "the payload is shown as text: {shown}"
    );
    assert_eq!(
        page.eval("document.querySelectorAll('main img, main script').length")
            .await,
        0
    );
    assert_eq!(page.eval("window.__xss === undefined").await, true);
    click(&mut page, "#topic-history").await;
    page.wait_for(
        "the history page",
        &format!(
            "[...document.querySelectorAll('#history-body tr')].some(tr => tr.dataset.id === {})",
            js(&hostile_id)
        ),
    )
    .await;
    page.screenshot(&shots.join("topics.png")).await;
    click(&mut page, "#topic-stop").await;

    // Moderation: approve a pending comment; readers then see it.
    let discussion = create_discussion(&server, "launch", "pre").await;
    let comment = post_comment(&server, &discussion, "ann", "Waiting for a moderator").await;
    let reader_sees = || async {
        let page: Value = server
            .http1()
            .get(server.url(&format!("/api/v1/discussions/{discussion}/comments")))
            .header("x-api-key", &admin.key)
            .header("x-external-user-id", "bob")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["data"]["comments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == comment.as_str() && c["body"] == "Waiting for a moderator")
    };
    assert!(
        !reader_sees().await,
        "pending comments are hidden from readers"
    );
    click(&mut page, "#nav-moderation").await;
    let pending_row = format!("#moderation-body tr[data-id='{comment}']");
    visible(&mut page, &pending_row).await;
    page.screenshot(&shots.join("moderation.png")).await;
    click(
        &mut page,
        &format!("{pending_row} button[data-action=approve]"),
    )
    .await;
    page.wait_for(
        "the approved comment to leave the queue",
        &format!("document.querySelector({}) === null", js(&pending_row)),
    )
    .await;
    assert!(
        reader_sees().await,
        "the approved comment is visible to readers"
    );

    // Signing out forgets the key.
    click(&mut page, "#sign-out").await;
    visible(&mut page, "#signin-form").await;
    assert_eq!(page.eval("sessionStorage.length").await, 0);
    assert_eq!(
        page.eval("document.getElementById('nav').hidden").await,
        true
    );
}

/// The id of the default tenant.
async fn default_tenant(admin: &Admin<'_>) -> String {
    json(
        admin
            .call(Method::GET, "/admin/v1/tenants/default", None)
            .await,
    )
    .await["data"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn console_shows_a_tenant_admin_only_its_tenant() {
    let Some(mut page) = devtools().await else {
        return;
    };
    let server = Server::start();
    let admin = Admin::new(&server);
    let acme = admin.create_tenant("acme").await;
    admin.create_tenant("globex").await;
    let (_, acme_admin) = admin.create_key(&acme, &["admin", "read"]).await;
    let (_, admin_only) = admin.create_key(&acme, &["admin"]).await;
    let (_, publisher) = admin.create_key(&acme, &["publish"]).await;

    // A key without the admin scope cannot sign in.
    page.navigate(&server.url("/console")).await;
    fill(&mut page, "signin-key", &publisher).await;
    click(&mut page, "#signin-submit").await;
    let refused = page
        .wait_for(
            "the refusal",
            "document.getElementById('error').textContent",
        )
        .await;
    assert!(refused.as_str().unwrap().contains("HTTP 403"), "{refused}");

    sign_in(&mut page, &server, &acme_admin).await;
    visible(&mut page, "#view-tenants").await;
    assert!(text(&mut page, "#who").await.contains("acme"));
    let nav = page
        .eval("[...document.querySelectorAll('#nav button')].filter(b => !b.hidden).map(b => b.dataset.view)")
        .await;
    assert_eq!(nav, json!(["tenants", "topics", "moderation"]));
    assert_eq!(
        page.eval("document.getElementById('tenants-panel').hidden")
            .await,
        true
    );
    assert_eq!(
        page.eval("[...document.getElementById('tenant-picker').options].map(o => o.textContent)")
            .await,
        json!(["acme"])
    );
    assert_eq!(
        page.eval("document.getElementById('tenant-picker').disabled")
            .await,
        true
    );
    page.wait_for(
        "acme's three keys",
        "document.getElementById('keys-body').children.length === 3",
    )
    .await;
    page.wait_for(
        "its own key marked",
        "document.getElementById('keys-body').textContent.includes('signed in with this key')",
    )
    .await;
    page.screenshot(&screenshots().join("tenant-admin.png"))
        .await;

    // Its topics are acme's: an event published to acme shows in the history.
    let response = server
        .http1()
        .post(server.url("/api/v1/topics/news/events"))
        .header("x-api-key", &admin.key)
        .header("x-tenantid", &acme)
        .json(&json!({ "type": "acme.news", "data": { "tenant": "acme" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    click(&mut page, "#nav-topics").await;
    fill(&mut page, "topic-name", "news").await;
    click(&mut page, "#topic-history").await;
    page.wait_for(
        "acme's event",
        "document.getElementById('history-body').textContent.includes('acme.news')",
    )
    .await;

    // A key with only the admin scope gets the tenant view alone.
    click(&mut page, "#sign-out").await;
    visible(&mut page, "#signin-form").await;
    sign_in(&mut page, &server, &admin_only).await;
    let nav = page
        .eval("[...document.querySelectorAll('#nav button')].filter(b => !b.hidden).map(b => b.dataset.view)")
        .await;
    assert_eq!(nav, json!(["tenants"]));
}
