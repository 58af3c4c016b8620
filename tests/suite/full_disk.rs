//! A full disk, for real: the data directory on a 20 MiB tmpfs. Publishing
//! until the store fails gives 503 with `Retry-After`; once space is back
//! (the tmpfs remounted at 200 MiB) writes are accepted again within 10 s,
//! with no restart, no ghost write, every acknowledged event readable, and a
//! clean SIGTERM exit. Needs root (mount); skipped with the reason otherwise.

use crate::clients::{all_events, publish_raw};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|err| err.to_string())?;
        let path = dir.path().to_path_buf();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &path,
        )?;
        Ok(Self { path, _dir: dir })
    }

    fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.path).expect("remounting the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn mount(args: &[&str], path: &Path) -> Result<(), String> {
    let output = Command::new("mount")
        .args(args)
        .arg(path)
        .output()
        .map_err(|err| format!("running mount: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// What the test publishes: 8 KB events in batches of 8.
fn batch(round: usize) -> Value {
    let events: Vec<Value> = (0..8)
        .map(|index| json!({ "type": "fill", "data": { "round": round, "index": index, "pad": "x".repeat(8000) } }))
        .collect();
    json!({ "events": events })
}

#[tokio::test]
async fn the_store_recovers_by_itself_once_a_full_disk_has_space_again() {
    let disk = match Tmpfs::mount("20m") {
        Ok(disk) => disk,
        Err(reason) => {
            eprintln!("SKIPPED: cannot mount a tmpfs for the full-disk test ({reason})");
            return;
        }
    };
    let topic = "disk/fill";
    let server = Server::builder()
        .data_dir(&disk.path.join("data"))
        .args(&[
            "--store-cache",
            "4MiB",
            "--store-recovery-interval",
            "500ms",
            "--retention",
            "disk/=100000000,3650d",
        ])
        .start();
    let client = server.http1();
    let mut acknowledged: HashSet<String> = HashSet::new();
    let mut refused = None;
    for round in 0..2000 {
        let response = publish_raw(&server, &client, topic, &batch(round)).await;
        if response.status() != 201 {
            refused = Some(response);
            break;
        }
        for event in json(response).await["data"]["events"].as_array().unwrap() {
            acknowledged.insert(event["id"].as_str().unwrap().to_string());
        }
    }
    let refused = refused.expect("a 20 MiB disk fills up");
    assert_eq!(refused.status(), 503, "{:?}", refused.headers());
    assert!(
        refused.headers().contains_key("retry-after"),
        "503 carries Retry-After"
    );
    eprintln!("disk full after {} acknowledged events", acknowledged.len());
    assert!(
        server.metric("tidings_store_state").await >= 1.0,
        "the metric shows the failure"
    );
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 503, "/healthz shows the failure");

    tokio::time::sleep(Duration::from_secs(1)).await;
    let still_full = publish_raw(&server, &client, topic, &batch(usize::MAX)).await;
    assert_eq!(
        still_full.status(),
        503,
        "no write succeeds while the disk is full"
    );

    disk.resize("200m");
    let deadline = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        let response = publish_raw(
            &server,
            &client,
            topic,
            &json!({ "type": "after", "data": "space is back" }),
        )
        .await;
        if response.status() == 201 {
            break json(response).await["data"]["id"]
                .as_str()
                .unwrap()
                .to_string();
        }
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
        assert!(
            Instant::now() < deadline,
            "the store did not recover within 10 s of space coming back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(server.get("/healthz").await.status(), 200);
    assert_eq!(server.get("/readyz").await.status(), 200);
    let stored: Vec<String> = all_events(&server, topic)
        .await
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_string())
        .collect();
    let stored_set: HashSet<String> = stored.iter().cloned().collect();
    assert!(
        acknowledged.is_subset(&stored_set),
        "every acknowledged event is readable"
    );
    let mut expected = acknowledged.clone();
    expected.insert(recovered);
    assert_eq!(
        stored_set, expected,
        "nothing unacknowledged (no ghost) is stored"
    );
    // The harness stops the server with SIGTERM on drop and requires exit 0.
    drop(server);
}
