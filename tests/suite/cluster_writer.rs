//! The cluster writer (`serve --nats URL…`) against real `nats-server`s:
//! every acknowledged write reaches the stream once, in batch order, through
//! the outbox, whatever happens to NATS or to the writer; a full outbox is
//! backpressure; a second writer is fenced.
//!
//! Each test skips, printing why, when `nats-server` cannot be had.

use crate::clients::{admin_key, all_events, publish_raw, topic_path};
use crate::harness::{Server, json};
use crate::nats::{NatsCluster, StoredMessage, skip, wait_for_stream};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tidings::cluster::record::BatchRecord;

const STREAM: &str = "TIDINGS";
const TOPICS: [&str; 3] = ["cw/a", "cw/b", "cw/c"];
/// How long the outbox may take to drain once NATS is reachable again.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A writer of `nats`' stream, keeping every event, with `extra` flags.
fn writer(nats: &NatsCluster, extra: &[&str]) -> Server {
    writer_on(nats, None, extra)
}

fn writer_on(nats: &NatsCluster, dir: Option<&std::path::Path>, extra: &[&str]) -> Server {
    let urls = nats.urls();
    let mut builder = Server::builder()
        .args(&["--nats", &urls, "--retention", "cw/=100000000,3650d"])
        .args(extra);
    if let Some(dir) = dir {
        builder = builder.data_dir(dir);
    }
    builder.start()
}

/// `cluster` of the writer's `/readyz`, whether it is ready or not.
async fn cluster_state(server: &Server) -> Value {
    let body = json(server.get("/readyz").await).await;
    if body["data"].is_object() {
        body["data"]["cluster"].clone()
    } else {
        body["error"]["details"]["cluster"].clone()
    }
}

/// Waits until the writer's `/readyz` cluster state satisfies `check`.
async fn wait_for_state(
    server: &Server,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let state = cluster_state(server).await;
        if check(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "cluster state never matched: {state}\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every durable batch is in the stream and the outbox is empty.
async fn drained(server: &Server) -> u64 {
    let state = wait_for_state(server, DRAIN_TIMEOUT, |state| {
        state["outbox"]["rows"] == 0
            && state["lastBatch"] == state["publishedBatch"]
            && state["nats"] == "connected"
    })
    .await;
    state["lastBatch"].as_u64().unwrap()
}

/// One acknowledged publish: its events' ids and the batch number the
/// response named.
#[derive(Debug, Clone)]
struct Acked {
    ids: Vec<String>,
    batch: u64,
}

/// Publishes a batch of `size` events to `topic`; `None` unless 201.
async fn publish_batch(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    topic: &str,
    size: usize,
) -> Option<Acked> {
    let events: Vec<Value> = (0..size)
        .map(|index| json!({ "type": "cw", "data": { "index": index } }))
        .collect();
    let response = client
        .post(format!("{base}/api/v1/topics/{}/events", topic_path(topic)))
        .header("x-api-key", key)
        .json(&json!({ "events": events }))
        .send()
        .await
        .ok()?;
    if response.status() != 201 {
        return None;
    }
    let batch = response.headers()["tidings-batch"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body: Value = response.json().await.ok()?;
    let ids = body["data"]["events"]
        .as_array()?
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_string())
        .collect();
    Some(Acked { ids, batch })
}

/// `workers` clients publishing `rounds` batches each, concurrently (so
/// groups form); every acknowledged publish is returned.
async fn burst(server: &Server, workers: usize, rounds: usize) -> Vec<Acked> {
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let tasks: Vec<_> = (0..workers)
        .map(|worker| {
            let (base, key, acked) = (server.base.clone(), admin_key(server), acked.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for round in 0..rounds {
                    let topic = TOPICS[(worker + round) % TOPICS.len()];
                    let size = 1 + (worker + round) % 3;
                    let done = publish_batch(&client, &base, &key, topic, size).await;
                    acked.lock().unwrap().push(done.expect("a 201"));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// Checks the stream holds batches 1..=n exactly once each, in order, at
/// consecutive sequences, with the headers the writer sets; returns them.
fn check_stream(messages: &[StoredMessage]) -> Vec<BatchRecord> {
    let mut records = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        let number = index as u64 + 1;
        let header: u64 = message.headers["Tidings-Batch"].parse().unwrap();
        assert_eq!(
            header,
            number,
            "batch numbers in stream order: {:?}",
            headers(messages)
        );
        assert_eq!(
            message.sequence,
            messages[0].sequence + index as u64,
            "consecutive sequences"
        );
        assert_eq!(
            message.headers["Nats-Msg-Id"],
            BatchRecord::message_id(number, &message.payload)
        );
        let record = BatchRecord::decode(&message.payload).expect("a record");
        assert_eq!(record.number, number);
        records.push(record);
    }
    records
}

fn headers(messages: &[StoredMessage]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m.headers["Tidings-Batch"].as_str())
        .collect()
}

/// The events the records appended (the values of their `e` puts), by id,
/// with the number of the batch each came in.
fn stream_events(records: &[BatchRecord]) -> BTreeMap<String, (u64, Value)> {
    let mut events = BTreeMap::new();
    for record in records {
        for (key, value) in &record.ops {
            let (Some(b'e'), Some(value)) = (key.first(), value) else {
                continue;
            };
            let event: Value = serde_json::from_slice(value).unwrap();
            let id = event["id"].as_str().unwrap().to_string();
            let earlier = events.insert(id.clone(), (record.number, event));
            assert!(earlier.is_none(), "event {id} in two batches");
        }
    }
    events
}

/// Waits for the stream to hold `last` batches, then checks it whole and
/// that every acknowledged event is in it, in the batch its response named
/// or an earlier one.
async fn stream_has_everything(nats: &NatsCluster, last: u64, acked: &[Acked]) -> Vec<BatchRecord> {
    let messages = wait_for_stream(&nats.urls(), STREAM, DRAIN_TIMEOUT, |messages| {
        messages.len() as u64 >= last
    })
    .await;
    assert_eq!(messages.len() as u64, last, "{:?}", headers(&messages));
    let records = check_stream(&messages);
    let events = stream_events(&records);
    for publish in acked {
        for id in &publish.ids {
            let (batch, _) = events
                .get(id)
                .unwrap_or_else(|| panic!("acknowledged event {id} is not in the stream"));
            assert!(
                *batch <= publish.batch,
                "{id} in batch {batch} > {}",
                publish.batch
            );
        }
    }
    records
}

#[tokio::test]
async fn every_acknowledged_write_reaches_the_stream_once_in_batch_order() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let server = writer(&nats, &[]);
    let acked = burst(&server, 6, 10).await;
    let last = drained(&server).await;
    assert!(last >= 1);
    let records = stream_has_everything(&nats, last, &acked).await;
    // The stream's events are exactly those the history serves, byte for byte.
    let events = stream_events(&records);
    let mut served = 0;
    for topic in TOPICS {
        for event in all_events(&server, topic).await {
            let id = event["id"].as_str().unwrap();
            assert_eq!(events[id].1, event, "event {id}");
            served += 1;
        }
    }
    assert_eq!(served, events.len());
    // Every response names the last durable batch, probes included.
    let ready = server.get("/readyz").await;
    assert_eq!(ready.headers()["tidings-batch"], last.to_string().as_str());
    assert_eq!(server.metric("tidings_cluster_nats_connected").await, 1.0);
    assert_eq!(server.metric("tidings_cluster_fenced").await, 0.0);
    assert_eq!(server.metric("tidings_cluster_outbox_rows").await, 0.0);
    assert_eq!(
        server
            .metric("tidings_cluster_published_batches_total")
            .await,
        last as f64
    );
}

#[tokio::test]
async fn writes_go_on_while_nats_is_down_or_frozen_and_the_outbox_drains_after() {
    let Some(mut nats) = skip(NatsCluster::single()) else {
        return;
    };
    nats.nodes[0].kill();
    let server = writer(&nats, &[]);
    let mut acked = burst(&server, 4, 5).await;
    let state = cluster_state(&server).await;
    assert_eq!(state["nats"], "disconnected", "{state}");
    assert!(state["outbox"]["rows"].as_u64().unwrap() >= 1, "{state}");
    assert!(server.metric("tidings_cluster_outbox_bytes").await > 0.0);
    assert_eq!(server.metric("tidings_cluster_nats_connected").await, 0.0);
    nats.nodes[0].restart();
    nats.wait_ready().unwrap();
    drained(&server).await;
    // Frozen mid-run: acknowledgements stop, writes do not.
    nats.nodes[0].stop();
    acked.extend(burst(&server, 4, 5).await);
    assert!(
        cluster_state(&server).await["outbox"]["rows"]
            .as_u64()
            .unwrap()
            >= 1,
        "rows wait while NATS is frozen"
    );
    // Frozen long enough for acknowledgements to time out.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("tidings_cluster_publish_errors_total").await < 1.0 {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acked.extend(burst(&server, 2, 5).await);
    nats.nodes[0].cont();
    let last = drained(&server).await;
    stream_has_everything(&nats, last, &acked).await;
}

#[tokio::test]
async fn a_full_outbox_refuses_writes_with_retry_after_until_it_drains() {
    let Some(mut nats) = skip(NatsCluster::single()) else {
        return;
    };
    nats.nodes[0].kill();
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let tiny = ["--outbox-max-bytes", "1"];
    let mut server = writer_on(&nats, Some(&dir), &tiny);
    let client = reqwest::Client::new();
    let body = json!({ "type": "cw", "data": {} });
    let mut refused = None;
    for _ in 0..5 {
        let response = publish_raw(&server, &client, "cw/a", &body).await;
        if response.status() == 503 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 201);
    }
    let refused = refused.expect("a write refused once the outbox holds a row");
    assert_eq!(refused.headers()["retry-after"], "1");
    let error = json(refused).await;
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--outbox-max-bytes") && message.contains("NATS"),
        "{message}"
    );
    let ready = server.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let ready = json(ready).await;
    assert!(
        ready["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outbox"),
        "{ready}"
    );
    assert_eq!(ready["error"]["details"]["cluster"]["nats"], "disconnected");
    // A restart with a full outbox starts (its own writes go through) and
    // still refuses clients' writes.
    assert!(server.stop().success());
    let server = writer_on(&nats, Some(&dir), &tiny);
    let response = publish_raw(&server, &client, "cw/a", &body).await;
    assert_eq!(response.status(), 503);
    nats.nodes[0].restart();
    nats.wait_ready().unwrap();
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let response = publish_raw(&server, &client, "cw/a", &body).await;
        if response.status() == 201 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = drained(&server).await;
    stream_has_everything(&nats, last, &[]).await;
}

#[tokio::test]
async fn a_writer_killed_during_a_burst_publishes_every_acknowledged_batch_once_after_restart() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut server = writer_on(&nats, Some(&dir), &[]);
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let workers: Vec<_> = (0..6)
        .map(|worker| {
            let (base, key, acked) = (server.base.clone(), admin_key(&server), acked.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for round in 0.. {
                    let topic = TOPICS[(worker + round) % TOPICS.len()];
                    match publish_batch(&client, &base, &key, topic, 1 + round % 3).await {
                        Some(done) => acked.lock().unwrap().push(done),
                        None => return,
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 150 {
        assert!(Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for worker in workers {
        worker.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let server = writer_on(&nats, Some(&dir), &[]);
    let last = drained(&server).await;
    assert!(last >= acked.iter().map(|a| a.batch).max().unwrap());
    stream_has_everything(&nats, last, &acked).await;
}

#[tokio::test]
async fn a_second_writer_on_a_copy_of_the_data_directory_is_fenced() {
    let Some(nats) = skip(NatsCluster::single()) else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let (dir, copy) = (temp.path().join("data"), temp.path().join("copy"));
    let mut first = writer_on(&nats, Some(&dir), &[]);
    burst(&first, 2, 5).await;
    drained(&first).await;
    assert!(first.stop().success());
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    let first = writer_on(&nats, Some(&dir), &[]);
    let mut acked = burst(&first, 2, 5).await;
    drained(&first).await;
    let second = writer_on(&nats, Some(&copy), &[]);
    let state = wait_for_state(&second, Duration::from_secs(30), |state| {
        state["fenced"] == true
    })
    .await;
    assert!(
        state["problem"]
            .as_str()
            .unwrap()
            .contains("after this node's last batch"),
        "{state}"
    );
    let client = reqwest::Client::new();
    let refused = publish_raw(
        &second,
        &client,
        "cw/a",
        &json!({ "type": "cw", "data": {} }),
    )
    .await;
    assert_eq!(refused.status(), 503);
    let message = json(refused).await["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("fenced"), "{message}");
    let ready = second.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    assert!(
        json(ready).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fenced")
    );
    assert_eq!(second.metric("tidings_cluster_fenced").await, 1.0);
    assert!(
        second
            .stderr_once_it_contains("this writer is fenced")
            .contains("this writer is fenced")
    );
    // The first writer goes on publishing.
    acked.extend(burst(&first, 2, 5).await);
    let last = drained(&first).await;
    stream_has_everything(&nats, last, &acked).await;
    assert_eq!(cluster_state(&first).await["fenced"], false);
}

#[tokio::test]
async fn losing_the_stream_leader_of_a_three_node_cluster_loses_nothing() {
    let Some(mut nats) = skip(NatsCluster::start(3)) else {
        return;
    };
    let server = writer(&nats, &["--nats-replicas", "3"]);
    let mut acked = burst(&server, 4, 5).await;
    drained(&server).await;
    let leader = nats.stream_leader(STREAM).await.expect("a stream leader");
    let writing = {
        let (base, key) = (server.base.clone(), admin_key(&server));
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acked = Vec::new();
            for round in 0..60 {
                let topic = TOPICS[round % TOPICS.len()];
                acked.push(
                    publish_batch(&client, &base, &key, topic, 2)
                        .await
                        .expect("a 201"),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    nats.nodes[leader].kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.nodes[leader].restart();
    acked.extend(writing.await.unwrap());
    let restarted = Instant::now();
    let last = cluster_state(&server).await["lastBatch"].as_u64().unwrap();
    let messages = wait_for_stream(&nats.urls(), STREAM, Duration::from_secs(10), |messages| {
        messages.len() as u64 >= last
    })
    .await;
    assert_eq!(
        messages.len() as u64,
        last,
        "stream incomplete {:?} after restarting the leader; logs:\n{}",
        restarted.elapsed(),
        nats.logs()
    );
    let last = drained(&server).await;
    stream_has_everything(&nats, last, &acked).await;
    let ids: HashSet<&String> = acked.iter().flat_map(|a| &a.ids).collect();
    assert_eq!(ids.len(), acked.iter().map(|a| a.ids.len()).sum::<usize>());
}
