//! `/healthz`, `/readyz`, `/metrics`, `/api/v1/time`.

use crate::harness::{Server, json, sample};

#[tokio::test]
async fn health_and_readiness_answer_200_while_serving() {
    let server = Server::start();
    let client = server.http1();
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(json(health).await["data"]["status"], "ok");
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    assert_eq!(json(ready).await["data"]["status"], "ready");
}

#[tokio::test]
async fn time_endpoint_gives_server_clock_and_interval() {
    let server = Server::start();
    let before = unix_millis();
    let body = json(
        server
            .http1()
            .get(server.url("/api/v1/time"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let after = unix_millis();
    let now = body["data"]["now"].as_u64().expect("now in ms");
    assert!(
        before <= now && now <= after,
        "{before} <= {now} <= {after}"
    );
    assert_eq!(body["data"]["intervalMs"], 250);
}

#[tokio::test]
async fn metrics_expose_process_connection_and_request_series() {
    let server = Server::start();
    let client = server.http1();
    for _ in 0..3 {
        client.get(server.url("/healthz")).send().await.unwrap();
    }
    client.get(server.url("/missing")).send().await.unwrap();
    let response = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for needle in [
        "tidings_build_info{version=\"",
        "tidings_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 3",
        "tidings_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "tidings_http_request_duration_seconds_bucket{le=",
        "tidings_open_connections{protocol=\"http1\"} 1",
    ] {
        assert!(text.contains(needle), "metrics contain {needle}:\n{text}");
    }
    let rss = sample(&text, "process_resident_memory_bytes").expect("RSS series");
    assert!(rss > 1_000_000.0 && rss < 2e9, "plausible RSS {rss}");
    assert!(sample(&text, "process_open_fds").expect("fd series") >= 3.0);
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn the_access_log_can_keep_only_errors_or_nothing() {
    for (policy, logs_success, logs_error) in [
        ("all", true, true),
        ("errors", false, true),
        ("off", false, false),
    ] {
        let server = Server::builder().args(&["--access-log", policy]).start();
        let client = server.http1();
        let ok = client.get(server.url("/api/v1/time")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let missing = client
            .get(server.url("/no-such-route"))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        // A request logged last proves the lines before it were written.
        let marker = client
            .get(server.url("/marker-route"))
            .send()
            .await
            .unwrap();
        assert_eq!(marker.status(), 404);
        let stderr = if logs_error {
            server.stderr_once_it_contains("/marker-route")
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            server.stderr()
        };
        assert_eq!(
            stderr.contains("path=/api/v1/time"),
            logs_success,
            "{policy}: {stderr}"
        );
        assert_eq!(
            stderr.contains("path=/no-such-route"),
            logs_error,
            "{policy}: {stderr}"
        );
        let counted = server
            .metric(
                r#"tidings_http_requests_total{route="/api/v1/time",method="GET",status="200"}"#,
            )
            .await;
        assert_eq!(counted, 1.0, "{policy}: metrics count every request");
    }
}
