//! Command line, first run, data directory ownership.

use crate::harness::{Server, binary, read_json_file, request_id};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn first_run_creates_a_private_config_and_later_runs_reuse_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let mut first = Server::builder().data_dir(&dir).start();
    let config_path = dir.join("config.json");
    let mode = std::fs::metadata(&config_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "config.json must be private");
    let config = read_json_file(&config_path);
    let admin_key = config["adminKey"].as_str().unwrap().to_string();
    assert!(admin_key.starts_with("adm_") && admin_key.len() > 40);
    assert_eq!(config["defaultTenant"]["slug"], "default");
    assert!(
        config["jwtRealms"][0]["hs256Secret"]
            .as_str()
            .unwrap()
            .starts_with("jws_")
    );
    let stderr = first.stderr_once_it_contains(config_path.to_str().unwrap());
    assert!(
        stderr.contains(&admin_key),
        "first run prints the admin key:\n{stderr}"
    );
    assert!(
        stderr.contains(config_path.to_str().unwrap()),
        "and where the config is"
    );
    assert!(first.stop().success());

    let second = Server::builder().data_dir(&dir).start();
    let again = read_json_file(&config_path);
    assert_eq!(
        again, config,
        "a later start must reuse the config unchanged"
    );
    assert!(
        !second.stderr().contains(&admin_key),
        "the admin key is printed only once"
    );
}

#[test]
fn second_process_on_the_same_data_dir_fails_clearly() {
    let server = Server::start();
    let (status, stderr) = Server::builder()
        .data_dir(&server.data_dir)
        .start_expecting_failure();
    assert_eq!(status.code(), Some(3), "stderr: {stderr}");
    assert!(
        stderr.contains("in use by another tidings process")
            && stderr.contains(&server.pid().to_string()),
        "stderr names the holder: {stderr}"
    );
}

#[test]
fn init_creates_the_data_dir_without_serving_and_is_idempotent() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("fresh");
    let init = || {
        let output = Command::new(binary())
            .args(["init", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let stdout = init();
    let config = read_json_file(&dir.join("config.json"));
    assert!(
        stdout.contains(config["adminKey"].as_str().unwrap()),
        "{stdout}"
    );

    assert!(init().contains("already exists"));
    let unchanged = read_json_file(&dir.join("config.json"));
    assert_eq!(unchanged, config);
}

#[test]
fn a_corrupt_config_is_refused_and_left_untouched() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), b"{ not json").unwrap();
    let (status, stderr) = Server::builder().data_dir(&dir).start_expecting_failure();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not a valid tidings config"), "{stderr}");
    assert_eq!(
        std::fs::read(dir.join("config.json")).unwrap(),
        b"{ not json"
    );
}

#[test]
fn help_and_version_explain_the_tool() {
    let help = Command::new(binary()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success());
    assert!(text.contains("serve") && text.contains("init"), "{text}");
    let serve_help = Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&serve_help.stdout);
    for flag in [
        "--data-dir",
        "--listen",
        "--tls-cert",
        "--tls-key",
        "--tls-self-signed",
        "--max-body",
        "--shutdown-grace",
        "--log-format",
        "TIDINGS_LISTEN",
    ] {
        assert!(text.contains(flag), "serve --help mentions {flag}:\n{text}");
    }
    assert!(
        !text.contains("enable-test-routes"),
        "test routes stay hidden"
    );
    let version = Command::new(binary()).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("tidings {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn invalid_flags_are_rejected_with_usage_errors() {
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(binary())
        .args(["serve", "--max-body", "12 parsecs", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown size unit"));
    let output = Command::new(binary())
        .args(["serve", "--tls-cert", "/nonexistent.pem", "--data-dir"])
        .arg(temp.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "--tls-cert needs --tls-key");
}

#[tokio::test]
async fn json_log_format_writes_one_json_object_per_line() {
    let server = Server::builder().args(&["--log-format", "json"]).start();
    let response = server.get("/healthz").await;
    assert_eq!(response.status(), 200);
    let request_id = request_id(&response);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stderr = server.stderr();
        let access = stderr
            .lines()
            .filter(|line| line.starts_with('{'))
            .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("JSON log line"))
            .find(|entry| entry["request_id"] == request_id.as_str());
        if let Some(entry) = access {
            assert_eq!(entry["route"], "/healthz");
            assert_eq!(entry["status"], 200);
            assert_eq!(entry["method"], "GET");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access line for {request_id}:\n{stderr}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn the_systemd_unit_passes_systemd_analyze() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "SKIPPED: systemd-analyze is not installed (Debian package systemd); the unit was not verified"
        );
        return;
    };
    assert!(probe.status.success());
    let temp = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/tidings.service"
    ))
    .unwrap();
    let unit = unit.replace("/usr/local/bin/tidings", binary());
    let path = temp.path().join("tidings.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

pub(crate) fn tidings(args: &[&str], data_dir: &std::path::Path) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap()
}

pub(crate) fn stdout_json(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test]
async fn keys_and_tenants_commands_go_through_the_running_server() {
    let server = Server::start();
    let url = server.base.clone();
    let tenant = stdout_json(&tidings(
        &["tenants", "create", "acme", "--url", &url],
        &server.data_dir,
    ));
    assert_eq!(tenant["slug"], "acme");
    let key = stdout_json(&tidings(
        &[
            "keys", "create", "--tenant", "acme", "--name", "backend", "--scope", "publish",
            "--url", &url,
        ],
        &server.data_dir,
    ));
    let secret = key["secret"].as_str().unwrap().to_string();
    let publish = |secret: String| {
        let client = server.http1();
        let url = server.url("/api/v1/topics/cli/events");
        async move {
            client
                .post(url)
                .header("x-api-key", secret)
                .json(&serde_json::json!({ "type": "x" }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(publish(secret.clone()).await, 201);
    let listed = stdout_json(&tidings(
        &["keys", "list", "--tenant", "acme", "--url", &url],
        &server.data_dir,
    ));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains(&secret),
        "listing never shows secrets"
    );
    let id = key["id"].as_str().unwrap();
    stdout_json(&tidings(
        &["keys", "revoke", "--tenant", "acme", id, "--url", &url],
        &server.data_dir,
    ));
    assert_eq!(publish(secret).await, 401);
    let refused = tidings(
        &["tenants", "delete", "default", "--url", &url],
        &server.data_dir,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be deleted"));
    let wrong_url = tidings(
        &["tenants", "list", "--url", "http://127.0.0.1:1"],
        &server.data_dir,
    );
    assert_eq!(
        wrong_url.status.code(),
        Some(3),
        "the data dir is held and nothing answers at that URL"
    );
    assert!(String::from_utf8_lossy(&wrong_url.stderr).contains("pass --url"));
}

#[tokio::test]
async fn without_a_server_the_commands_act_on_the_data_dir_and_tokens_work() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    assert!(
        Command::new(binary())
            .args(["init", "--data-dir"])
            .arg(&dir)
            .output()
            .unwrap()
            .status
            .success()
    );
    let offline = ["--url", "http://127.0.0.1:1"];
    let created = stdout_json(&tidings(
        &["tenants", "create", "edge", offline[0], offline[1]],
        &dir,
    ));
    let token_output = tidings(
        &[
            "token",
            "--sub",
            "alice",
            "--ttl",
            "10m",
            "--claim",
            r#"topics=["room/*"]"#,
        ],
        &dir,
    );
    assert!(token_output.status.success());
    let token = String::from_utf8(token_output.stdout)
        .unwrap()
        .trim()
        .to_string();

    let server = Server::builder().data_dir(&dir).start();
    let tenants = server
        .http1()
        .get(server.url("/admin/v1/tenants/edge"))
        .header("x-api-key", crate::clients::admin_key(&server))
        .send()
        .await
        .unwrap();
    assert_eq!(
        crate::harness::json(tenants).await["data"]["id"],
        created["id"]
    );
    let read = |topic: &'static str| {
        let request = server
            .http1()
            .get(server.url(&format!(
                "/api/v1/topics/{}/events",
                topic.replace('/', "%2F")
            )))
            .header("authorization", format!("Bearer {token}"));
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(read("room/1").await, 200);
    assert_eq!(read("other").await, 403);
}
