//! Backup and restore with the real binary: an online backup under load
//! restores a consistent cut (events, module state, keys, the webhook
//! outbox) whose ids keep increasing; offline equals online; damaged,
//! truncated and foreign files are refused without touching the target; one
//! backup at a time, a stalled reader is cut, a store failure fails it; only
//! the instance admin may take one.

use crate::chat_api::{Auth, Chat};
use crate::clients::{Admin, admin_key, all_events, discussion_post, publish, publish_raw};
use crate::harness::{Server, binary, held_port};
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidings::ops::backup::format::{self, ReadError, Record};

/// How long a test waits for something to happen.
const PATIENCE: Duration = Duration::from_secs(30);

/// Webhook settings of the outbox test: the receiver listens on 127.0.0.1.
const HOOK_FLAGS: &[&str] = &[
    "--webhook-allow-private",
    "127.0.0.1/32",
    "--webhook-backoff-base",
    "50ms",
    "--webhook-backoff-cap",
    "500ms",
];

/// Runs `tidings ARGS` to completion.
async fn tidings(args: &[&str]) -> Output {
    tokio::process::Command::new(binary())
        .args(args)
        .output()
        .await
        .expect("running tidings")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `tidings backup --url` of `server` into `out`; its summary.
async fn backup_online(server: &Server, out: &Path) -> Value {
    let output = tidings(&[
        "backup",
        "--url",
        &server.base,
        "--data-dir",
        server.data_dir.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "backup: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("a JSON summary")
}

/// `tidings restore FILE --data-dir DIR`.
async fn restore(file: &Path, dir: &Path) -> Output {
    tidings(&[
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
    ])
    .await
}

/// Every event of `topic`, by id, in order.
async fn events_by_id(server: &Server, topic: &str) -> Vec<(String, Value)> {
    all_events(server, topic)
        .await
        .into_iter()
        .map(|event| (event["id"].as_str().unwrap().to_string(), event))
        .collect()
}

/// Every top-level message of a chat room, oldest first.
async fn all_messages(chat: &Chat<'_>, auth: &Auth, room: u64) -> Vec<Value> {
    let mut messages = Vec::new();
    let mut after = 0;
    loop {
        let path = format!("/rooms/{room}/messages?after={after}&limit=100");
        let page = chat.expect(200, chat.get(&path, auth).await).await;
        let batch = page["messages"].as_array().unwrap().clone();
        if let Some(last) = batch.last() {
            after = last["messageId"].as_u64().unwrap();
        }
        messages.extend(batch);
        if page["hasMore"] != json!(true) {
            return messages;
        }
    }
}

/// The comments of a discussion as the backend lists them.
async fn comments(server: &Server, discussion: &str) -> Value {
    let response = server
        .http1()
        .get(server.url(&format!("/api/v1/discussions/{discussion}/comments")))
        .header("x-api-key", admin_key(server))
        .header("x-external-user-id", "reader")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["data"]["comments"].clone()
}

/// Pending deliveries of a webhook endpoint of the default tenant.
async fn pending(server: &Server, endpoint: &str) -> Vec<Value> {
    let path = format!("/admin/v1/tenants/default/webhooks/{endpoint}/deliveries?status=pending");
    let response = Admin::new(server)
        .call(reqwest::Method::GET, &path, None)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["data"]["deliveries"].as_array().unwrap().clone()
}

/// A webhook receiver on `port` answering 204; the event ids it received.
async fn receive_hooks(port: u16) -> Arc<Mutex<Vec<String>>> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let id = request.headers()["tidings-event-id"]
                    .to_str()
                    .unwrap()
                    .to_string();
                record.lock().unwrap().push(id);
                let mut response = http::Response::new(Full::new(Bytes::new()));
                *response.status_mut() = http::StatusCode::NO_CONTENT;
                async move { Ok::<_, std::convert::Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    received
}

/// Publishes to `topic` until `stop`, recording each acknowledged id.
fn publisher(
    server: &Server,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<String>>>, tokio::task::JoinHandle<()>) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let (base, key, record) = (server.base.clone(), admin_key(server), acked.clone());
    let task = tokio::spawn(async move {
        let client = reqwest::Client::builder().http1_only().build().unwrap();
        let url = format!("{base}/api/v1/topics/{}/events", topic.replace('/', "%2F"));
        for n in 0.. {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let response = client
                .post(&url)
                .header("x-api-key", &key)
                .json(&json!({ "type": "load", "data": { "n": n } }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.unwrap();
            record
                .lock()
                .unwrap()
                .push(body["data"]["id"].as_str().unwrap().to_string());
        }
    });
    (acked, task)
}

/// Fills `topic` with `batches` publishes of `per_batch` events of `size` bytes.
async fn fill(server: &Server, topic: &str, batches: usize, per_batch: usize, size: usize) {
    let client = server.http1();
    let text = "x".repeat(size);
    for _ in 0..batches {
        let events: Vec<Value> = (0..per_batch)
            .map(|_| json!({ "type": "bulk", "data": { "text": text } }))
            .collect();
        let response = publish_raw(server, &client, topic, &json!({ "events": events })).await;
        assert_eq!(response.status(), 201);
    }
}

const LOAD_TOPICS: [&str; 3] = ["load/0", "load/1", "load/2"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_under_load_restores_a_consistent_cut_whose_ids_keep_increasing() {
    let source = Server::builder().args(HOOK_FLAGS).start();
    let admin = Admin::new(&source);
    let tenant = crate::chat_api::default_tenant(&source);
    let (_, key) = admin.create_key(&tenant, &["publish", "read"]).await;
    // A delivery that stays pending: nothing listens on its port yet.
    let (_, port) = held_port(); // released at once: nothing listens on it
    let (endpoint, _) = crate::webhooks::create_endpoint(
        &source,
        json!({ "url": format!("http://127.0.0.1:{port}/hook"), "eventTypes": ["hooked"] }),
    )
    .await;
    let hooked = publish_raw(
        &source,
        &source.http1(),
        "hook/1",
        &json!({ "type": "hooked", "data": {} }),
    )
    .await;
    assert_eq!(hooked.status(), 201);
    let hooked_id = hooked.json::<Value>().await.unwrap()["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let discussion = discussion_post(
        &source,
        "/api/v1/discussions",
        None,
        json!({ "externalId": "kept", "title": "T" }),
    )
    .await;
    let discussion = discussion["id"].as_str().unwrap().to_string();
    for text in ["one", "two", "three"] {
        let path = format!("/api/v1/discussions/{discussion}/comments");
        discussion_post(&source, &path, Some("u1"), json!({ "body": text })).await;
    }
    let chat = Chat::new(&source).await;
    let ann = chat.user("ann");
    let room = chat.room(&ann, json!({ "name": "General" })).await;
    fill(&source, "bulk", 20, 1000, 200).await;

    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = LOAD_TOPICS
        .iter()
        .map(|topic| publisher(&source, topic, stop.clone()))
        .collect();
    let chat_acked = Arc::new(Mutex::new(Vec::new()));
    let chat_writer = {
        let token = crate::chat_api::token(&source, "ann");
        let (base, stop, record) = (source.base.clone(), stop.clone(), chat_acked.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder().http1_only().build().unwrap();
            while !stop.load(Ordering::Acquire) {
                let response = client
                    .post(format!("{base}/api/v1/rooms/{room}/messages"))
                    .bearer_auth(&token)
                    .json(&json!({ "text": "under load" }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201);
                let body: Value = response.json().await.unwrap();
                let id = body["data"]["messageId"].as_u64().unwrap();
                record.lock().unwrap().push(id);
            }
        })
    };
    // Until every publisher has had a write acknowledged (at most 10 s).
    let started = std::time::Instant::now();
    let before: Vec<usize> = loop {
        let counts: Vec<usize> = publishers
            .iter()
            .map(|(acked, _)| acked.lock().unwrap().len())
            .collect();
        if counts.iter().all(|&n| n > 0) || started.elapsed() > Duration::from_secs(10) {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let chat_before = chat_acked.lock().unwrap().len();
    assert!(before.iter().all(|&n| n > 0), "the load runs: {before:?}");
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("online.tdb");
    let summary = backup_online(&source, &file).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Release);
    // Awaited, not polled: a publisher whose publish failed (a 503 during
    // the backup) panicked, and that must fail the test.
    for (_, task) in publishers {
        task.await.unwrap();
    }
    chat_writer.await.unwrap();
    assert_eq!(summary["header"]["source"], "online");
    assert!(
        summary["counts"]["journalOps"].as_u64().unwrap() > 0,
        "writes went on during the backup: {summary}"
    );
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds secrets");
    assert!(!temp.path().join("online.tdb.partial").exists());

    let mut source_events = BTreeMap::new();
    for topic in LOAD_TOPICS.iter().chain(&["bulk", "hook/1"]) {
        source_events.insert(*topic, events_by_id(&source, topic).await);
    }
    let source_messages = all_messages(&chat, &ann, room).await;
    let source_comments = comments(&source, &discussion).await;
    let source_pending = pending(&source, &endpoint).await;
    assert_eq!(source_pending.len(), 1, "{source_pending:?}");
    drop(source);

    let dir = temp.path().join("restored");
    let restored_output = restore(&file, &dir).await;
    assert!(
        restored_output.status.success(),
        "{}",
        stderr(&restored_output)
    );
    let hooks = receive_hooks(port).await;
    let restored = Server::builder().data_dir(&dir).args(HOOK_FLAGS).start();

    // Per topic a prefix of the source, holding every event acknowledged
    // before the backup began; across topics one cut (every event up to the
    // newest restored id, none after).
    let mut restored_events = BTreeMap::new();
    for (topic, events) in &source_events {
        let got = events_by_id(&restored, topic).await;
        assert_eq!(
            &events[..got.len()],
            &got[..],
            "{topic}: a prefix, ids and payloads"
        );
        restored_events.insert(*topic, got);
    }
    for (n, topic) in LOAD_TOPICS.iter().enumerate() {
        assert!(
            restored_events[topic].len() >= before[n],
            "{topic}: everything acknowledged before the backup"
        );
    }
    assert_eq!(restored_events["bulk"].len(), 20_000);
    let cut = restored_events
        .values()
        .flatten()
        .map(|(id, _)| id.clone())
        .max()
        .unwrap();
    for (topic, events) in &source_events {
        let upto = events.iter().filter(|(id, _)| *id <= cut).count();
        assert_eq!(
            restored_events[topic].len(),
            upto,
            "{topic}: every event up to the cut {cut}"
        );
    }

    let chat = Chat::new(&restored).await;
    let ann = chat.user("ann");
    let messages = all_messages(&chat, &ann, room).await;
    assert!(messages.len() <= source_messages.len());
    assert_eq!(
        messages[..],
        source_messages[..messages.len()],
        "chat: a prefix of the source"
    );
    assert!(
        messages.len() >= chat_before,
        "every message acknowledged before the backup"
    );
    assert_eq!(comments(&restored, &discussion).await, source_comments);

    let history = restored
        .http1()
        .get(restored.url("/api/v1/topics/load%2F0/events"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(history.status(), 200, "a key made before the backup works");
    let delivered = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(id) = hooks.lock().unwrap().first().cloned() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the pending delivery goes out from the restored server");
    assert_eq!(delivered, hooked_id);

    // Ids continue after the highest in the backup.
    let next = publish(
        &restored,
        &restored.http1(),
        "load/0",
        json!({ "after": "restore" }),
    )
    .await;
    assert!(next > cut, "{next} after {cut}");
    let newest_message = messages
        .iter()
        .map(|m| m["messageId"].as_u64().unwrap())
        .max()
        .unwrap();
    let said = chat.say(&ann, room, "after restore", None).await;
    assert!(said["messageId"].as_u64().unwrap() > newest_message);
    let second_room = chat.room(&ann, json!({ "name": "Second" })).await;
    assert!(second_room > room);
}

/// The pairs a backup file restores: its scan records, then its journal.
fn restored_pairs(file: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut pairs = BTreeMap::new();
    let mut journal = Vec::new();
    let bytes = std::fs::read(file).unwrap();
    format::read(&bytes[..], |record| {
        match record {
            Record::Scan(ops) => {
                for (key, value) in ops {
                    pairs.insert(key.to_vec(), value.unwrap().to_vec());
                }
            }
            Record::Journal(ops) => journal.extend(ops),
        }
        Ok::<_, ReadError>(())
    })
    .unwrap();
    for (key, value) in journal {
        match value {
            Some(value) => pairs.insert(key.to_vec(), value.to_vec()),
            None => pairs.remove(&key.to_vec()),
        };
    }
    pairs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_backup_holds_what_the_online_one_holds_and_needs_the_server_stopped() {
    let mut server = Server::start();
    for n in 0..50 {
        publish(&server, &server.http1(), "room/1", json!({ "n": n })).await;
    }
    let temp = tempfile::tempdir().unwrap();
    let online = temp.path().join("online.tdb");
    backup_online(&server, &online).await;
    let offline = temp.path().join("offline.tdb");
    let out = offline.to_str().unwrap();
    let data_dir = server.data_dir.to_str().unwrap().to_string();
    let refused = tidings(&["backup", "--data-dir", &data_dir, "--out", out]).await;
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--url"), "{}", stderr(&refused));
    assert!(!offline.exists() && !temp.path().join("offline.tdb.partial").exists());
    assert!(server.stop().success());

    let taken = tidings(&["backup", "--data-dir", &data_dir, "--out", out]).await;
    assert!(taken.status.success(), "{}", stderr(&taken));
    let summary: Value = serde_json::from_slice(&taken.stdout).unwrap();
    assert_eq!(summary["header"]["source"], "offline");
    assert_eq!(summary["counts"]["journalOps"], 0);
    let (online_pairs, offline_pairs) = (restored_pairs(&online), restored_pairs(&offline));
    let differing: Vec<String> = online_pairs
        .keys()
        .chain(offline_pairs.keys())
        .filter(|key| online_pairs.get(*key) != offline_pairs.get(*key))
        .map(|key| String::from_utf8_lossy(key).into_owned())
        .collect();
    assert!(differing.is_empty(), "keys differing: {differing:?}");
    assert!(online_pairs.len() > 50);
    let again = tidings(&["backup", "--data-dir", &data_dir, "--out", out]).await;
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("exists"),
        "an existing file is never overwritten"
    );
}

/// A backup file of a small server (offline), and its data directory's config.
async fn small_backup(temp: &Path) -> (PathBuf, Value) {
    let mut server = Server::start();
    publish(
        &server,
        &server.http1(),
        "room/1",
        json!({ "text": "kept" }),
    )
    .await;
    assert!(server.stop().success());
    let file = temp.join("small.tdb");
    let output = tidings(&[
        "backup",
        "--data-dir",
        server.data_dir.to_str().unwrap(),
        "--out",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let config = crate::harness::read_json_file(&server.data_dir.join("config.json"));
    (file, config)
}

/// Restoring `bytes` is refused with exit 2 and `reason`, leaving no target.
async fn refused_with(temp: &Path, name: &str, bytes: &[u8], reason: &str) {
    let file = temp.join(name);
    std::fs::write(&file, bytes).unwrap();
    let target = temp.join(format!("{name}.restored"));
    let output = restore(&file, &target).await;
    assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
    assert!(
        stderr(&output).contains(reason),
        "{name}: {}",
        stderr(&output)
    );
    assert!(!target.exists(), "{name}: nothing restored");
    let leftovers: Vec<_> = std::fs::read_dir(temp)
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().contains(".restore-"))
        .collect();
    assert!(leftovers.is_empty(), "{name}: no temporary directory left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_truncated_and_foreign_files_and_non_empty_targets_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (file, config) = small_backup(temp.path()).await;
    let good = std::fs::read(&file).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    refused_with(temp.path(), "flipped", &flipped, "damaged").await;
    refused_with(
        temp.path(),
        "truncated",
        &good[..good.len() - 40],
        "truncated",
    )
    .await;
    refused_with(
        temp.path(),
        "foreign",
        b"SQLite format 3\0 not ours",
        "not a tidings backup",
    )
    .await;
    let newer = [&b"tidings backup\nformat 2\n"[..], &good[24..]].concat();
    refused_with(temp.path(), "newer", &newer, "format 2").await;

    let occupied = temp.path().join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), b"mine").unwrap();
    let output = restore(&file, &occupied).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("not empty"), "{}", stderr(&output));
    assert_eq!(std::fs::read(occupied.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);

    // An empty directory is a fine target; the restored one serves.
    let empty = temp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let output = restore(&file, &empty).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let restored_config = crate::harness::read_json_file(&empty.join("config.json"));
    assert_eq!(restored_config, config, "config.json comes back as it was");
    let mode = std::fs::metadata(empty.join("config.json"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let server = Server::builder().data_dir(&empty).start();
    let events = all_events(&server, "room/1").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["text"], "kept");
}

/// Opens a backup on a raw connection and reads nothing of it.
async fn stalled_backup(server: &Server) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /admin/v1/backup HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\n\r\n",
        admin_key(server)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

async fn get_backup(server: &Server, key: Option<&str>) -> reqwest::Response {
    let mut request = server.http1().get(server.url("/admin/v1/backup"));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_runs_at_a_time_a_stalled_reader_is_cut_and_only_the_instance_admin_may() {
    let server = Server::builder()
        .args(&["--backup-idle-timeout", "2s"])
        .start();
    // More than socket buffers hold, so an unread backup stalls.
    fill(&server, "bulk", 40, 50, 10_000).await;
    let stalled = stalled_backup(&server).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let refused = loop {
        let response = get_backup(&server, Some(&admin_key(&server))).await;
        if response.status() == 409 || tokio::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(refused.status(), 409);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CONFLICT", "{body}");

    let log = server.stderr_once_it_contains("read nothing");
    assert!(log.contains("online backup aborted"), "{log}");
    drop(stalled);
    let response = get_backup(&server, Some(&admin_key(&server))).await;
    assert_eq!(response.status(), 200, "the next backup may start");
    let bytes = response.bytes().await.unwrap();
    let summary = format::read(&bytes[..], |_| Ok::<_, ReadError>(())).unwrap();
    assert!(summary.counts.scan_pairs >= 2000);

    let tenant = crate::chat_api::default_tenant(&server);
    let (_, tenant_admin) = Admin::new(&server).create_key(&tenant, &["admin"]).await;
    assert_eq!(get_backup(&server, Some(&tenant_admin)).await.status(), 403);
    assert_eq!(get_backup(&server, None).await.status(), 401);
    assert_eq!(get_backup(&server, Some("adm_wrong")).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failure_during_an_online_backup_fails_it() {
    let server = Server::start();
    fill(&server, "bulk", 20, 100, 10_000).await;
    let mut response = get_backup(&server, Some(&admin_key(&server))).await;
    assert_eq!(response.status(), 200);
    let mut file = response.chunk().await.unwrap().unwrap().to_vec();
    let armed = server
        .http1()
        .post(server.url("/__test/writer/fail-flushes?count=1"))
        .send()
        .await
        .unwrap();
    assert!(armed.status().is_success());
    let failed = publish_raw(
        &server,
        &server.http1(),
        "room/1",
        &json!({ "type": "t", "data": {} }),
    )
    .await;
    assert_eq!(failed.status(), 503);
    while let Some(chunk) = response.chunk().await.unwrap() {
        file.extend_from_slice(&chunk);
    }
    let Err(ReadError::Bad(reason)) = format::read(&file[..], |_| Ok::<_, ReadError>(())) else {
        panic!("a backup spanning a store failure must be refused");
    };
    assert!(reason.contains("store failed"), "{reason}");
    // The store recovers and the next backup succeeds.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = get_backup(&server, Some(&admin_key(&server))).await;
        if response.status() == 200 {
            let bytes = response.bytes().await.unwrap();
            format::read(&bytes[..], |_| Ok::<_, ReadError>(())).unwrap();
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no backup after recovery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
