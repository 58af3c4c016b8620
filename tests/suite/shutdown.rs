//! Graceful shutdown on SIGTERM/SIGINT: drain, readiness, stream hook, second signal.

use crate::harness::Server;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

#[tokio::test]
async fn sigterm_lets_a_slow_request_finish_and_exits_zero() {
    let mut server = Server::builder().grace(Duration::from_secs(5)).start();
    let client = server.http1();
    let slow = tokio::spawn(client.get(server.url("/__test/sleep?ms=1500")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let response = slow
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap()["data"]["sleptMs"],
        1500
    );
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "exit {status}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "exited within the grace period"
    );
    let logged = "stopped cleanly";
    assert!(server.stderr_once_it_contains(logged).contains(logged));
}

#[tokio::test]
async fn sigint_also_stops_gracefully_and_new_connections_are_refused() {
    let mut server = Server::start();
    let addr = server.addr();
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn long_lived_streams_are_told_to_end_at_shutdown() {
    let mut server = Server::start();
    let response = server
        .http1()
        .get(server.url("/__test/stream"))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    assert_eq!(&first[..], b"tick\n");
    server.signal(libc::SIGTERM);
    let mut rest = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.next())
        .await
        .expect("stream ends")
    {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8_lossy(&rest).ends_with("bye\n"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert!(server.wait_exit(Duration::from_secs(10)).success());
}

#[tokio::test]
async fn readiness_turns_503_during_the_drain_delay() {
    let mut server = Server::builder().args(&["--drain-delay", "3s"]).start();
    let client = server.http1();
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let fresh = server.http1();
        let ready = fresh.get(server.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            let body: serde_json::Value = ready.json().await.unwrap();
            assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE");
            break;
        }
        assert!(Instant::now() < deadline, "readyz never turned 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = server
        .http1()
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "liveness stays green while draining");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut server = Server::builder().grace(Duration::from_secs(60)).start();
    let client = server.http1();
    let slow = tokio::spawn(client.get(server.url("/__test/sleep?ms=30000")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        slow.await.unwrap().is_err(),
        "the abandoned request is cut off"
    );
}

#[tokio::test]
async fn requests_still_running_after_the_grace_are_cut_off() {
    let mut server = Server::builder().grace(Duration::from_millis(500)).start();
    let client = server.http1();
    let slow = tokio::spawn(client.get(server.url("/__test/sleep?ms=30000")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(
        status.success(),
        "a drain that hits the grace still exits 0"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(slow.await.unwrap().is_err());
    assert!(
        server
            .stderr_once_it_contains("still busy after the shutdown grace")
            .contains("still busy after the shutdown grace")
    );
}
