//! Crash safety: acknowledged writes survive SIGKILL at any moment, no batch
//! is ever half-applied, and ids keep increasing across restarts.
//!
//! `TIDINGS_CRASH_CYCLES` sets the number of kill/restart cycles (3 in the
//! suite; `scripts/crash-cycles.sh` runs 100).

use crate::clients::{admin_key, all_events, publish_raw, topic_path};
use crate::harness::Server;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TOPICS: [&str; 3] = ["crash/a", "crash/b", "crash/c"];

/// Retention must not remove what the test checks for.
const KEEP_EVERYTHING: &[&str] = &["--retention", "crash/=100000000,3650d"];

/// Acknowledged batches: topic and the ids of its events.
type Acknowledged = Arc<Mutex<Vec<(String, Vec<String>)>>>;

/// Publishes batches until the server disappears; records acknowledged batches.
async fn publish_until_killed(
    base: String,
    key: String,
    worker: String,
    acknowledged: Acknowledged,
) {
    let client = reqwest::Client::new();
    for batch in 0.. {
        let name = format!("{worker}-{batch}");
        let size = 1 + (worker.len() + batch) % 5;
        let topic = TOPICS[batch % TOPICS.len()];
        let events: Vec<Value> = (0..size)
            .map(|index| json!({ "type": "crash", "data": { "batch": name, "index": index, "size": size } }))
            .collect();
        let url = format!("{base}/api/v1/topics/{}/events", topic_path(topic));
        let sent = client
            .post(url)
            .header("x-api-key", &key)
            .json(&json!({ "events": events }))
            .send()
            .await;
        let Ok(response) = sent else { return };
        if response.status() != 201 {
            return;
        }
        let Ok(body) = response.json::<Value>().await else {
            return;
        };
        let ids = body["data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        acknowledged.lock().unwrap().push((topic.to_string(), ids));
    }
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_and_batches_are_never_half_applied() {
    let cycles: usize = std::env::var("TIDINGS_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let acknowledged: Acknowledged = Arc::default();
    let mut newest_before_restart = String::new();
    for cycle in 0..cycles {
        let mut server = Server::builder()
            .data_dir(&dir)
            .args(KEEP_EVERYTHING)
            .start();
        let snapshot = acknowledged.lock().unwrap().clone();
        verify(&server, &snapshot, &newest_before_restart).await;
        let workers: Vec<_> = (0..8)
            .map(|worker| {
                let name = format!("cycle{cycle}-worker{worker}");
                let task = publish_until_killed(
                    server.base.clone(),
                    admin_key(&server),
                    name,
                    acknowledged.clone(),
                );
                tokio::spawn(task)
            })
            .collect();
        let pause = 150 + (cycle * 7919) % 600;
        tokio::time::sleep(Duration::from_millis(pause as u64)).await;
        server.kill();
        for worker in workers {
            let _ = worker.await;
        }
        newest_before_restart = acknowledged
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, ids)| ids.iter().cloned())
            .max()
            .unwrap_or_default();
        eprintln!(
            "cycle {cycle}: {} batches acknowledged so far",
            acknowledged.lock().unwrap().len()
        );
    }
    let server = Server::builder()
        .data_dir(&dir)
        .args(KEEP_EVERYTHING)
        .start();
    let snapshot = acknowledged.lock().unwrap().clone();
    verify(&server, &snapshot, &newest_before_restart).await;
}

/// Checks every acknowledged id is stored, ids strictly increase, every stored
/// batch is whole, and a new write gets an id above everything before the crash.
async fn verify(server: &Server, acknowledged: &[(String, Vec<String>)], newest_before: &str) {
    let mut stored_ids = HashSet::new();
    for topic in TOPICS {
        let events = all_events(server, topic).await;
        let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{topic}: ids strictly increase"
        );
        let mut batches: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for event in &events {
            let data = &event["data"];
            batches
                .entry(data["batch"].as_str().unwrap().to_string())
                .or_default()
                .push(data["index"].as_i64().unwrap());
            assert!(data["size"].as_i64().unwrap() >= 1);
        }
        for event in &events {
            let data = &event["data"];
            let indexes = &batches[data["batch"].as_str().unwrap()];
            let size = data["size"].as_i64().unwrap();
            assert_eq!(
                indexes,
                &(0..size).collect::<Vec<_>>(),
                "{topic}: batch {} is whole",
                data["batch"]
            );
        }
        stored_ids.extend(ids.into_iter().map(str::to_string));
    }
    for (topic, ids) in acknowledged {
        for id in ids {
            assert!(
                stored_ids.contains(id),
                "acknowledged event {id} on {topic} survived the crash"
            );
        }
    }
    let probe = publish_raw(
        server,
        &server.http1(),
        "crash/probe",
        &json!({ "type": "probe" }),
    )
    .await;
    assert_eq!(probe.status(), 201);
    let probe: Value = probe.json().await.unwrap();
    let id = probe["data"]["id"].as_str().unwrap();
    assert!(
        id > newest_before,
        "new id {id} is above every id before the restart ({newest_before})"
    );
}
