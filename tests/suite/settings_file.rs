//! The settings file (`serve --config FILE`, `TIDINGS_CONFIG`) and
//! `init --print-config`: values observed on a running server, precedence
//! (flag > environment > file > default), and every kind of refusal.

use crate::harness::{Server, binary, held_port};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Writes `text` as `tidings.toml` in `dir` and returns its path.
fn settings(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("tidings.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The status of `POST /__test/echo` with a JSON body of exactly `bytes` bytes.
async fn echo_status(server: &Server, bytes: usize) -> u16 {
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(bytes - 10));
    assert_eq!(body.len(), bytes);
    // A body over the limit is refused as soon as its head is read: a
    // client still writing it may see the connection cut before the answer
    // (a loaded machine), so such a try is made again.
    for _ in 0..4 {
        let sent = server
            .http1()
            .post(server.url("/__test/echo"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(response) => return response.status().as_u16(),
            Err(err) if err.is_request() => continue,
            Err(err) => panic!("{err}"),
        }
    }
    panic!("no answer to a {bytes}-byte body in four tries")
}

/// Asserts that bodies up to `limit` bytes pass and one byte more gets 413.
async fn assert_body_limit(server: &Server, limit: usize) {
    assert_eq!(echo_status(server, limit).await, 200, "{limit} bytes pass");
    assert_eq!(
        echo_status(server, limit + 1).await,
        413,
        "{} bytes are over the limit",
        limit + 1
    );
}

/// Environment variables a server is started with.
type Envs<'a> = &'a [(&'a str, &'a str)];

/// Starts `serve --config FILE` on a data directory that does not exist
/// yet, expecting it to fail: the exit code and stderr, after checking
/// that an error of the settings file created nothing.
fn refused(file: &Path, args: &[&str], envs: Envs) -> (Option<i32>, String) {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("data");
    let mut builder = Server::builder()
        .data_dir(&data)
        .args(&["--config", file.to_str().unwrap()])
        .args(args);
    for (key, value) in envs {
        builder = builder.env(key, value);
    }
    let (status, stderr) = builder.start_expecting_failure();
    if stderr.contains("tidings: settings file ") {
        assert!(!data.exists(), "a refused settings file creates nothing");
    }
    (status.code(), stderr)
}

#[tokio::test]
async fn a_settings_file_sets_the_listen_address_and_a_limit() {
    let temp = tempfile::tempdir().unwrap();
    let (held, port) = held_port();
    drop(held);
    let file = settings(
        temp.path(),
        &format!("listen = \"127.0.0.1:{port}\"\nmax-body = \"1KiB\"\nmax-connections = 64\n"),
    );
    let server = Server::builder()
        .listen_from_settings()
        .args(&["--config", file.to_str().unwrap()])
        .start();
    assert_eq!(server.addr().port(), port, "the file's address is used");
    assert_body_limit(&server, 1024).await;
}

#[tokio::test]
async fn the_environment_overrides_the_file_and_a_flag_overrides_both() {
    let temp = tempfile::tempdir().unwrap();
    // The file's port stays taken: a server that used it could not start.
    let (_held, port) = held_port();
    let file = settings(
        temp.path(),
        &format!("listen = \"127.0.0.1:{port}\"\nmax-body = \"1KiB\"\n"),
    );
    let path = file.to_str().unwrap();

    let by_env = Server::builder()
        .listen_from_settings()
        .env("TIDINGS_CONFIG", path)
        .env("TIDINGS_LISTEN", "127.0.0.1:0")
        .env("TIDINGS_MAX_BODY", "4KiB")
        .start();
    assert_ne!(
        by_env.addr().port(),
        port,
        "TIDINGS_LISTEN wins over the file"
    );
    assert_body_limit(&by_env, 4096).await;
    drop(by_env);

    let by_flag = Server::builder()
        .args(&["--config", path, "--max-body", "8KiB"])
        .env("TIDINGS_MAX_BODY", "4KiB")
        .start();
    assert_ne!(by_flag.addr().port(), port, "--listen wins over the file");
    assert_body_limit(&by_flag, 8192).await;
}

#[test]
fn unknown_keys_sections_and_config_itself_are_refused_by_name() {
    let temp = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "max-body = \"1KiB\"\nlisten-port = 8080\n",
            "unknown key `listen-port`",
        ),
        ("[webhook]\ntimeout = \"5s\"\n", "unknown key `webhook`"),
        (
            "enable-test-routes = true\n",
            "unknown key `enable-test-routes`",
        ),
        ("config = \"other.toml\"\n", "key `config` cannot be set"),
    ] {
        let file = settings(temp.path(), text);
        let (code, stderr) = refused(&file, &[], &[]);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(file.to_str().unwrap()),
            "{text}: stderr names the key and the file:\n{stderr}"
        );
    }
}

#[test]
fn bad_values_are_refused_naming_the_key_even_when_overridden() {
    let temp = tempfile::tempdir().unwrap();
    let cases: [(&str, Envs, &str); 5] = [
        (
            "max-body = \"lots\"\n",
            &[],
            "key `max-body`: invalid value 'lots' for '--max-body <MAX_BODY>': `lots` is not a size",
        ),
        (
            "max-body = \"lots\"\n",
            &[("TIDINGS_MAX_BODY", "1KiB")],
            "key `max-body`: invalid value 'lots'",
        ),
        (
            "per-ip-limit-loopback = \"yes\"\n",
            &[],
            "key `per-ip-limit-loopback`: expected true or false, found string",
        ),
        (
            "retention = \"=5,1h\"\n",
            &[],
            "key `retention`: expected an array",
        ),
        (
            "log-format = \"xml\"\n",
            &[],
            "key `log-format`: invalid value 'xml' for '--log-format <LOG_FORMAT>' [possible values: text, json]",
        ),
    ];
    for (text, envs, expected) in cases {
        let file = settings(temp.path(), text);
        let (code, stderr) = refused(&file, &[], envs);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert!(
            stderr.contains(expected) && stderr.contains(file.to_str().unwrap()),
            "{text} with {envs:?}: expected `{expected}` in:\n{stderr}"
        );
    }
}

#[test]
fn a_missing_or_malformed_file_is_a_clear_error() {
    let temp = tempfile::tempdir().unwrap();
    let missing = temp.path().join("absent.toml");
    let (code, stderr) = refused(&missing, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "settings file {}: cannot read it: No such file",
            missing.display()
        )),
        "{stderr}"
    );

    let file = settings(temp.path(), "max-body = \"1KiB\"\nlisten = \n");
    let (code, stderr) = refused(&file, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("not valid TOML") && stderr.contains("line 2"),
        "{stderr}"
    );
}

#[test]
fn flags_that_need_each_other_may_come_from_the_file_and_the_command_line() {
    let temp = tempfile::tempdir().unwrap();
    let cert = temp.path().join("absent-cert.pem");
    let file = settings(temp.path(), "tls-key = \"/absent/key.pem\"\n");
    let (code, stderr) = refused(&file, &["--tls-cert", cert.to_str().unwrap()], &[]);
    assert!(
        !stderr.contains("required arguments") && stderr.contains(cert.to_str().unwrap()),
        "--tls-cert is satisfied by the file's tls-key; the missing file is what fails:\n{stderr}"
    );
    assert_ne!(code, Some(0), "{stderr}");

    let file = settings(temp.path(), "tls-cert = \"/absent/cert.pem\"\n");
    let (code, stderr) = refused(&file, &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(file.to_str().unwrap()) && stderr.contains("--tls-key"),
        "a file that names a certificate without its key is refused:\n{stderr}"
    );
}

#[test]
fn a_flag_or_variable_wins_over_a_file_key_it_conflicts_with() {
    let temp = tempfile::tempdir().unwrap();
    // The file asks for a self-signed certificate, the environment names one.
    let file = settings(temp.path(), "tls-self-signed = true\n");
    let cert = temp.path().join("absent-cert.pem");
    let (code, stderr) = refused(
        &file,
        &[],
        &[
            ("TIDINGS_TLS_CERT", cert.to_str().unwrap()),
            ("TIDINGS_TLS_KEY", "/absent/key.pem"),
        ],
    );
    assert!(
        !stderr.contains("cannot be used with") && stderr.contains(cert.to_str().unwrap()),
        "TIDINGS_TLS_CERT wins over the file's tls-self-signed; the missing file is what \
         fails:\n{stderr}"
    );
    assert_ne!(code, Some(0), "{stderr}");

    // The file names a certificate, the command line asks for a self-signed one.
    let file = settings(
        temp.path(),
        "tls-cert = \"/absent/cert.pem\"\ntls-key = \"/absent/key.pem\"\n",
    );
    let server = Server::builder()
        .args(&["--config", file.to_str().unwrap(), "--tls-self-signed"])
        .start();
    assert!(
        server.url("/").starts_with("https://"),
        "--tls-self-signed wins over the file's tls-cert and tls-key: {}",
        server.url("/")
    );
}

/// `tidings init --print-config`, run in `dir` (which it must leave empty).
fn print_config(dir: &Path) -> String {
    let output = Command::new(binary())
        .args(["init", "--print-config"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_dir(dir).unwrap().count(),
        0,
        "--print-config creates no data directory"
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn print_config_describes_the_keys_and_round_trips() {
    let temp = tempfile::tempdir().unwrap();
    let empty = temp.path().join("cwd");
    std::fs::create_dir(&empty).unwrap();
    // That every visible flag is a key is checked through clap by the unit
    // test `every_visible_serve_flag_but_config_is_a_key`.
    let printed = print_config(&empty);
    for text in [
        "#max-body = \"1MiB\"",
        "# --max-body, env TIDINGS_MAX_BODY",
        "# Largest accepted request body",
        "#writer-queue = 16384",
        "#tls-self-signed = false",
        "#retention = []",
        "# --log-format, env TIDINGS_LOG_FORMAT; one of: text, json",
        "# --tls-cert, env TIDINGS_TLS_CERT; not set by default",
    ] {
        assert!(printed.contains(text), "{text} in:\n{printed}");
    }
    assert!(!printed.contains("enable-test-routes") && !printed.contains("\n#config"));

    // As printed (everything commented) and with every default uncommented.
    let uncommented: String = printed
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if !rest.starts_with(' ') && !rest.is_empty() => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(uncommented.matches(" = ").count() > 50, "{uncommented}");
    for (name, text) in [("printed.toml", &printed), ("defaults.toml", &uncommented)] {
        let file = temp.path().join(name);
        std::fs::write(&file, text).unwrap();
        let server = Server::builder()
            .args(&["--config", file.to_str().unwrap()])
            .start();
        assert_body_limit(&server, 1 << 20).await;
        let metrics = server.get("/metrics").await;
        assert_eq!(metrics.status(), 200, "{name}");
    }
}
