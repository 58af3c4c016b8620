//! Time in the writer, through the debug-only `/__test/timers/*` and
//! `/__test/periodic/*` routes: durable timers fire once, late ones fire at
//! start-up in due order, a killed server loses none, and periodic folds
//! count every increment once.

use crate::clients::{all_events, history};
use crate::harness::{Server, json, read_json_file};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The id of the default tenant (the one the admin key publishes into).
fn default_tenant(data_dir: &Path) -> String {
    read_json_file(&data_dir.join("config.json"))["defaultTenant"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Schedules `count` timers due at `at_ms` that append `timer` events
/// labelled `label` to `topic`.
async fn schedule(server: &Server, topic: &str, at_ms: u64, label: &str, count: u64) {
    let tenant = default_tenant(&server.data_dir);
    let response = server
        .http1()
        .post(server.url(&format!(
            "/__test/timers/publish?tenant={tenant}&topic={topic}&at={at_ms}&label={label}&count={count}"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", json(response).await);
}

/// Waits (up to 20 s) until `topic` holds at least `count` events (reads
/// refused while the store recovers are retried); returns them.
async fn wait_for_events(server: &Server, topic: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = history(server, topic, "?limit=1000").await;
        if response.status() == 200 {
            let page = json(response).await;
            let events = page["data"]["events"].as_array().unwrap().clone();
            if events.len() >= count {
                return events;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{topic} never held {count} events"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn labels(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["data"]["label"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_timer_fires_once_and_its_event_is_readable() {
    let server = Server::start();
    let due = now_ms() + 300;
    schedule(&server, "quiz/1", due, "close", 1).await;
    let events = wait_for_events(&server, "quiz/1", 1).await;
    assert_eq!(labels(&events), ["close"]);
    assert_eq!(events[0]["type"], "timer");
    assert_eq!(events[0]["data"]["dueMs"], due);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(all_events(&server, "quiz/1").await.len(), 1, "fired once");
    assert_eq!(server.metric("tidings_timers_fired_total").await, 1.0);
    assert_eq!(server.metric("tidings_timers_failed_total").await, 0.0);
    assert_eq!(server.metric("tidings_timers_parked").await, 0.0);
}

#[tokio::test]
async fn a_timer_whose_firing_failed_to_flush_fires_once_after_recovery() {
    let server = Server::start();
    schedule(&server, "quiz/2", now_ms() + 500, "close", 1).await;
    let armed = server
        .http1()
        .post(server.url("/__test/writer/fail-flushes?count=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(armed.status(), 200);
    let events = wait_for_events(&server, "quiz/2", 1).await;
    assert_eq!(labels(&events), ["close"]);
    assert!(
        server
            .stderr_once_it_contains("commit failed")
            .contains("commit failed"),
        "the firing's flush failed first:\n{}",
        server.stderr()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(all_events(&server, "quiz/2").await.len(), 1, "fired once");
}

#[tokio::test]
async fn timers_due_while_the_server_was_down_fire_at_start_up_in_due_order_once_each() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut first = Server::builder().data_dir(&dir).start();
    let t = now_ms() + 2_000;
    schedule(&first, "sla/1", t + 400, "third", 1).await;
    schedule(&first, "sla/1", t, "first", 1).await;
    schedule(&first, "sla/1", t + 200, "second", 1).await;
    assert!(first.stop().success());
    let down_until = t + 800;
    std::thread::sleep(Duration::from_millis(down_until.saturating_sub(now_ms())));

    let restarted_ms = now_ms();
    let second = Server::builder().data_dir(&dir).start();
    let events = wait_for_events(&second, "sla/1", 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events_later = all_events(&second, "sla/1").await;
    assert_eq!(events_later.len(), 3, "once each: {events_later:?}");
    assert_eq!(
        labels(&events),
        ["first", "second", "third"],
        "in due order"
    );
    for event in &events {
        let fired_ms = ulid::Ulid::from_string(event["id"].as_str().unwrap())
            .unwrap()
            .timestamp_ms();
        assert!(
            fired_ms >= restarted_ms,
            "fired at start-up, not before the stop"
        );
    }
}

#[tokio::test]
async fn a_server_killed_while_timers_fire_loses_none_and_fires_none_twice() {
    const TIMERS: u64 = 200;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    // Two timers per group, so firing them takes many commits.
    let mut first = Server::builder()
        .data_dir(&dir)
        .args(&["--writer-batch", "4"])
        .start();
    schedule(&first, "kill/1", now_ms() + 300, "k", TIMERS).await;
    let fired_before = wait_for_events(&first, "kill/1", 1).await.len();
    first.kill();

    let second = Server::builder().data_dir(&dir).start();
    wait_for_events(&second, "kill/1", TIMERS as usize).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = all_events(&second, "kill/1").await;
    let mut numbers: Vec<u64> = events
        .iter()
        .map(|event| event["data"]["n"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(
        numbers,
        (0..TIMERS).collect::<Vec<_>>(),
        "each timer fired once ({fired_before} before the kill)"
    );
}

/// The stored total and fold count of the periodic test counter.
async fn periodic_total(server: &Server) -> (u64, u64) {
    let body = json(server.get("/__test/periodic/total").await).await;
    (
        body["data"]["total"].as_u64().unwrap(),
        body["data"]["folds"].as_u64().unwrap(),
    )
}

async fn bump(server: &Server, client: &reqwest::Client, amount: u64) {
    let response = client
        .post(server.url(&format!("/__test/periodic/bump?n={amount}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_periodic_total_equals_the_bumps_and_a_clean_stop_folds_the_rest() {
    const CLIENTS: u64 = 4;
    const BUMPS: u64 = 100;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut first = Server::builder().data_dir(&dir).start();
    let client = first.http1();
    let bumpers = (0..CLIENTS).map(|_| async {
        for _ in 0..BUMPS {
            bump(&first, &client, 1).await;
        }
    });
    futures_util::future::join_all(bumpers).await;
    let expected = CLIENTS * BUMPS;
    let deadline = Instant::now() + Duration::from_secs(10);
    while periodic_total(&first).await.0 < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (total, folds) = periodic_total(&first).await;
    assert_eq!(total, expected, "every bump counted once");
    assert!(
        folds < expected,
        "{folds} folds aggregated {expected} bumps"
    );

    bump(&first, &client, 7).await;
    assert!(first.stop().success());
    let second = Server::builder().data_dir(&dir).start();
    assert_eq!(
        periodic_total(&second).await.0,
        expected + 7,
        "a clean stop folds what was counted"
    );
}
