//! SLA policies and their durable timers against the real binary, with
//! policy "minutes" shortened by `--tickets-sla-unit`: `slaWarning` and
//! `slaBreach` raised once each per deadline to the followers (observed as
//! the notification bodies the tenant's webhook receives), an agent's first
//! response ending the response SLA, and timers due while the server was
//! down firing when it starts again.

use crate::harness::Server;
use crate::ticketing_comments::{Desk, expect, of_type};
use crate::webhooks::FAST;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn server(unit: &str) -> Server {
    Server::builder()
        .args(FAST)
        .args(&["--tickets-sla-unit", unit])
        .start()
}

/// Stores a policy with `high` targets as an admin.
async fn high_policy(desk: &Desk<'_>, response: u64, resolution: u64) {
    let admin = desk.user("root", &["admin"]);
    let policy =
        json!({ "high": { "responseMinutes": response, "resolutionMinutes": resolution } });
    expect(200, desk.put("/sla/policy", &admin, policy).await);
}

/// Unix ms of an RFC 3339 time.
pub fn unix_ms(rfc3339: &Value) -> u64 {
    let time = humantime::parse_rfc3339(rfc3339.as_str().unwrap()).unwrap();
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The SLA notifications, as (type, slaType, slaTarget in unix ms).
fn sla_events(all: &[Value]) -> Vec<(String, String, u64)> {
    all.iter()
        .filter(|n| n["actor"]["id"] == "system")
        .map(|n| {
            (
                n["type"].as_str().unwrap().to_string(),
                n["metadata"]["slaType"].as_str().unwrap().to_string(),
                unix_ms(&n["metadata"]["slaTarget"]),
            )
        })
        .collect()
}

/// How many of `events` are (`kind`, `sla`, `due`).
fn count(events: &[(String, String, u64)], kind: &str, sla: &str, due: &Value) -> usize {
    let due = due.as_u64().unwrap();
    events
        .iter()
        .filter(|(k, s, d)| k == kind && s == sla && *d == due)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_is_written_by_admins_read_by_agents_and_checked() {
    let server = server("1m");
    let desk = Desk::new(&server).await;
    let (admin, agent, req) = (
        desk.user("root", &["ticketing-admin"]),
        desk.user("agent-1", &["agent"]),
        desk.user("req", &[]),
    );
    let empty = expect(200, desk.get("/sla/policy", &agent).await);
    assert_eq!(
        empty,
        json!({ "low": null, "medium": null, "high": null, "urgent": null })
    );
    let policy = json!({
        "low": { "responseMinutes": 480, "resolutionMinutes": 2880 },
        "urgent": { "responseMinutes": 15, "resolutionMinutes": 240 },
    });
    let stored = expect(200, desk.put("/sla/policy", &admin, policy).await);
    assert_eq!(stored["urgent"]["responseMinutes"], 15);
    assert_eq!(stored["medium"], Value::Null);
    assert_eq!(expect(200, desk.get("/sla/policy", &agent).await), stored);
    for (token, status) in [(&agent, 403), (&req, 403)] {
        let (got, _) = desk.put("/sla/policy", token, json!({})).await;
        assert_eq!(got, status);
    }
    let (status, _) = desk.get("/sla/policy", &req).await;
    assert_eq!(status, 403);
    for bad in [
        json!({ "high": { "responseMinutes": 0, "resolutionMinutes": 5 } }),
        json!({ "high": { "responseMinutes": 1, "resolutionMinutes": 5_256_001 } }),
        json!({ "high": { "responseMinutes": 1 } }),
        json!({ "fast": { "responseMinutes": 1, "resolutionMinutes": 2 } }),
        json!({ "high": { "responseMinutes": -1, "resolutionMinutes": 2 } }),
    ] {
        let (status, body) = desk.put("/sla/policy", &admin, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["code"], "VALIDATION_ERROR");
    }
    assert_eq!(expect(200, desk.get("/sla/policy", &agent).await), stored);
    let cleared = expect(200, desk.put("/sla/policy", &admin, json!({})).await);
    assert_eq!(cleared, empty, "a missing priority has no SLA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_deadline_warns_and_breaches_its_followers_exactly_once() {
    let server = server("200ms");
    let desk = Desk::new(&server).await;
    high_policy(&desk, 3, 6).await;
    let agent = desk.user("agent-1", &["agent"]);
    let body = json!({
        "title": "VPN down", "priority": "high", "assignee": "agent-2", "watchers": ["w1"],
    });
    let ticket = desk.ticket(&agent, body).await;
    let sla = &ticket["sla"];
    assert_eq!(sla["timers"].as_array().unwrap().len(), 4, "{ticket}");
    let created = unix_ms(&ticket["createdAt"]);
    assert_eq!(sla["responseDueMs"], created + 600);
    assert_eq!(sla["resolutionDueMs"], created + 1200);

    // Followers: agent-1 (the requester watches), w1, agent-2 (assignee);
    // plus agent-2's `assignment`.
    let all = desk.inbox.settled(1 + 4 * 3).await;
    let events = sla_events(&all);
    for (kind, sla_type, due) in [
        ("slaWarning", "response", &sla["responseDueMs"]),
        ("slaBreach", "response", &sla["responseDueMs"]),
        ("slaWarning", "resolution", &sla["resolutionDueMs"]),
        ("slaBreach", "resolution", &sla["resolutionDueMs"]),
    ] {
        assert_eq!(
            count(&events, kind, sla_type, due),
            3,
            "{kind} {sla_type}: {events:?}"
        );
    }
    let breach = of_type(&all, "slaBreach")[0];
    assert_eq!(breach["priority"], "urgent");
    assert_eq!(breach["actor"]["name"], "SLA monitor");
    let path = format!("/ticket/{}", ticket["id"].as_str().unwrap());
    let after = expect(200, desk.get(&path, &agent).await);
    assert_eq!(
        after["sla"]["timers"],
        Value::Null,
        "no pending timer: {after}"
    );
    for flag in [
        "responseWarned",
        "responseBreached",
        "resolutionWarned",
        "resolutionBreached",
    ] {
        assert_eq!(after["sla"][flag], true, "{flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_first_comment_ends_the_response_sla() {
    let server = server("500ms");
    let desk = Desk::new(&server).await;
    high_policy(&desk, 5, 10).await;
    let (req, agent) = (desk.user("req", &[]), desk.user("agent-1", &["agent"]));
    let ticket = desk
        .ticket(&req, json!({ "title": "Printer", "priority": "high" }))
        .await;
    let comments = format!("/ticket/{}/comments", ticket["id"].as_str().unwrap());
    expect(
        201,
        desk.post(&comments, &agent, json!({ "text": "on it" }))
            .await,
    );
    let path = format!("/ticket/{}", ticket["id"].as_str().unwrap());
    let responded = expect(200, desk.get(&path, &req).await);
    assert_eq!(
        responded["sla"]["responseDueMs"],
        Value::Null,
        "{responded}"
    );
    assert_eq!(responded["sla"]["timers"].as_array().unwrap().len(), 2);
    let started = Instant::now();

    // req (the only follower): the `comment`, then the resolution SLA only.
    let all = desk.inbox.settled(3).await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "the resolution breach is 5 s after creation"
    );
    let events = sla_events(&all);
    let due = &ticket["sla"]["resolutionDueMs"];
    assert_eq!(
        count(&events, "slaWarning", "resolution", due),
        1,
        "{events:?}"
    );
    assert_eq!(
        count(&events, "slaBreach", "resolution", due),
        1,
        "{events:?}"
    );
    assert_eq!(of_type(&all, "comment").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_due_while_the_server_is_down_fire_once_when_it_starts() {
    let args = ["--tickets-sla-unit", "2s"];
    let mut server = Server::builder().args(FAST).args(&args).start();
    let desk = Desk::new(&server).await;
    high_policy(&desk, 2, 4).await;
    let req = desk.user("req", &[]);
    let ticket = desk
        .ticket(&req, json!({ "title": "Disk full", "priority": "high" }))
        .await;
    let created = Instant::now();
    let inbox = desk.inbox;
    assert!(server.stop().success());
    let stopped = created.elapsed();
    let before_restart = inbox.notifications().len();
    if stopped < Duration::from_millis(3200) {
        assert_eq!(
            before_restart, 0,
            "stopped before the first warning was due"
        );
    }
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(created.elapsed())).await;
    let restarted = Server::builder()
        .args(FAST)
        .args(&args)
        .data_dir(&server.data_dir)
        .start();

    let desk = Desk::with_inbox(&restarted, inbox);
    let all = desk.inbox.settled(4).await;
    let events = sla_events(&all);
    let sla = &ticket["sla"];
    for (kind, sla_type, due) in [
        ("slaWarning", "response", &sla["responseDueMs"]),
        ("slaBreach", "response", &sla["responseDueMs"]),
        ("slaWarning", "resolution", &sla["resolutionDueMs"]),
        ("slaBreach", "resolution", &sla["resolutionDueMs"]),
    ] {
        assert_eq!(
            count(&events, kind, sla_type, due),
            1,
            "{kind} {sla_type}: {events:?}"
        );
    }
    let path = format!("/ticket/{}", ticket["id"].as_str().unwrap());
    let after = expect(200, desk.get(&path, &req).await);
    assert_eq!(after["sla"]["timers"], Value::Null, "{after}");
}
