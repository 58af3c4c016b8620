//! The commit pipeline under failure, through the debug-only
//! `/__test/writer/*` fault routes: a failed flush leaves no ghost write, a
//! dead writer ends the process, a claim cancelled between commit and answer
//! releases its ticket, `/readyz` never floods the writer, and the queue is
//! bounded by bytes.

use crate::clients::{
    SseReader, all_events, history, mint_ticket, publish, publish_raw, ticket_stream_url,
};
use crate::harness::{Server, json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Arms a writer fault (`/__test/writer/{what}`).
async fn arm(server: &Server, what: &str) {
    let response = server
        .http1()
        .post(server.url(&format!("/__test/writer/{what}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "arming {what}");
}

/// Asserts a writer refusal: 503, `Retry-After`, the error envelope.
async fn assert_refused(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 503);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After {retry}");
    let body = json(response).await;
    assert_eq!(body["error"]["code"], "SERVICE_UNAVAILABLE", "{body}");
    body
}

/// Arms one failing flush, then publishes `{"n":"ghost"}` to `topic` into it;
/// returns the refusal's body.
async fn publish_into_a_failing_flush(
    server: &Server,
    client: &reqwest::Client,
    topic: &str,
) -> Value {
    arm(server, "fail-flushes?count=1").await;
    let failed = publish_raw(
        server,
        client,
        topic,
        &json!({ "type": "test", "data": { "n": "ghost" } }),
    )
    .await;
    assert_refused(failed).await
}

/// Asserts the server exits non-zero within 10 s, logging `reason`.
fn assert_exits_failing(server: &mut Server, reason: &str) {
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "exit status {status}");
    assert!(
        server.stderr_once_it_contains(reason).contains(reason),
        "the reason is logged:\n{}",
        server.stderr()
    );
}

/// Publishes `data` until it is accepted (every refusal a proper 503), within 10 s.
async fn publish_once_recovered(server: &Server, topic: &str, data: Value) -> String {
    let client = server.http1();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = publish_raw(
            server,
            &client,
            topic,
            &json!({ "type": "test", "data": data }),
        )
        .await;
        if response.status() == 201 {
            return json(response).await["data"]["id"]
                .as_str()
                .unwrap()
                .to_string();
        }
        assert_refused(response).await;
        assert!(
            Instant::now() < deadline,
            "writes not accepted again within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn data_values(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|event| event["data"]["n"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_group_whose_flush_failed_is_never_published_replayed_or_kept() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let args = ["--store-recovery-interval", "300ms"];
    let mut server = Server::builder().data_dir(&dir).args(&args).start();
    let client = server.http1();
    let topic = "ghost/t";
    let mut live = SseReader::open(&server, &client, topic, None).await;
    assert_eq!(live.next_event().await.unwrap().event, "connected");
    let before = publish(&server, &client, topic, json!({ "n": "before" })).await;

    let body = publish_into_a_failing_flush(&server, &client, topic).await;
    assert_eq!(body["error"]["details"]["outcome"], "unknown", "{body}");
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 503, "the failed store shows in /healthz");
    assert_ne!(server.metric("tidings_store_state").await, 0.0);

    publish_once_recovered(&server, topic, json!({ "n": "after" })).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    assert_eq!(server.metric("tidings_store_state").await, 0.0);
    let seen: Vec<String> = [
        live.next_event().await.unwrap(),
        live.next_event().await.unwrap(),
    ]
    .iter()
    .map(|frame| frame.json()["data"]["n"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(
        seen,
        ["before", "after"],
        "live subscribers never see the failed group"
    );
    assert_eq!(
        data_values(&all_events(&server, topic).await),
        ["before", "after"]
    );
    let mut replayed = SseReader::open(&server, &client, topic, Some(&before)).await;
    assert_eq!(replayed.next_event().await.unwrap().event, "connected");
    let replay = replayed.next_event().await.unwrap().json();
    assert_eq!(
        replay["data"]["n"], "after",
        "replay skips the failed group"
    );

    server.stop();
    let server = Server::builder().data_dir(&dir).args(&args).start();
    let events = all_events(&server, topic).await;
    assert_eq!(
        data_values(&events),
        ["before", "after"],
        "absent after a restart too"
    );
    let newest = events.last().unwrap()["id"].as_str().unwrap().to_string();
    let next = publish(&server, &server.http1(), topic, json!({ "n": "later" })).await;
    assert!(next > newest, "ids keep increasing");
}

#[tokio::test]
async fn a_writer_thread_that_dies_ends_the_process_with_a_failure() {
    let mut server = Server::start();
    // The route's own wake-up commit gets no answer once the thread is gone.
    let arming = server
        .http1()
        .post(server.url("/__test/writer/panic"))
        .send();
    let _ = tokio::time::timeout(Duration::from_secs(5), arming).await;
    assert_exits_failing(&mut server, "writer thread panicked");
}

#[tokio::test]
async fn a_store_that_cannot_recover_ends_the_process_with_a_failure() {
    let mut server = Server::builder()
        .args(&[
            "--store-recovery-interval",
            "200ms",
            "--store-recovery-timeout",
            "1s",
        ])
        .start();
    arm(&server, "fail-flushes?count=1000000").await;
    let client = server.http1();
    let failed = publish_raw(
        &server,
        &client,
        "doomed/t",
        &json!({ "type": "test", "data": 1 }),
    )
    .await;
    assert_refused(failed).await;
    assert_exits_failing(&mut server, "did not recover");
}

#[tokio::test]
async fn reads_while_the_store_recovers_are_503_with_retry_after() {
    // Long enough that the read below lands before the first retry even on
    // a loaded machine.
    let server = Server::builder()
        .args(&["--store-recovery-interval", "8s"])
        .start();
    let client = server.http1();
    let topic = "closed/t";
    publish(&server, &client, topic, json!({ "n": "kept" })).await;
    publish_into_a_failing_flush(&server, &client, topic).await;
    let body = assert_refused(history(&server, topic, "").await).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recover"),
        "{body}"
    );
    publish_once_recovered(&server, topic, json!({ "n": "after" })).await;
    assert_eq!(
        data_values(&all_events(&server, topic).await),
        ["kept", "after"]
    );
}

#[tokio::test]
async fn a_ticket_claim_cancelled_between_commit_and_answer_releases_the_ticket() {
    let server = Server::start();
    let topic = "cancel/t";
    let ticket = mint_ticket(&server, topic, "v1").await;
    let url = ticket_stream_url(&server, topic, &ticket);

    arm(&server, "answer-delay?ms=1500").await;
    // HTTP/2: giving up on the request resets its stream, which drops the
    // server's request future while the claim is committed but unanswered.
    let h2 = server.h2();
    let abandoned = tokio::time::timeout(Duration::from_millis(500), h2.get(&url).send()).await;
    assert!(abandoned.is_err(), "the claim was still unanswered");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    arm(&server, "answer-delay?ms=0").await;

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = server.http1().get(&url).send().await.unwrap();
        if response.status() == 200 {
            assert_eq!(
                SseReader::from_response(response)
                    .next_event()
                    .await
                    .unwrap()
                    .event,
                "connected"
            );
            return;
        }
        assert_eq!(response.status(), 409);
        assert!(
            Instant::now() < deadline,
            "the cancelled claim kept the ticket held"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn readiness_reads_the_writer_state_and_a_probe_flood_writes_nothing() {
    let server = Server::builder()
        .args(&["--store-recovery-interval", "3s"])
        .start();
    let client = server.http1();
    publish(&server, &client, "ready/t", json!({ "n": "1" })).await;
    let before = server.metric("tidings_writer_commits_total").await;
    assert!(before >= 1.0);
    let probes = (0..300).map(|_| {
        let (client, url) = (client.clone(), server.url("/readyz"));
        async move { client.get(url).send().await.unwrap().status() }
    });
    let statuses = futures_util::future::join_all(probes).await;
    assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    let after = server.metric("tidings_writer_commits_total").await;
    assert!(
        after - before <= 1.0,
        "300 probes made {} writes",
        after - before
    );

    publish_into_a_failing_flush(&server, &client, "ready/t").await;
    assert_refused(client.get(server.url("/readyz")).send().await.unwrap()).await;
    publish_once_recovered(&server, "ready/t", json!({ "n": "3" })).await;
    assert_eq!(
        client
            .get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn large_bodies_beyond_the_queue_byte_bound_get_503_and_memory_stays_bounded() {
    let server = Server::builder()
        .args(&["--writer-queue-bytes", "4MiB", "--max-body", "1MiB"])
        .start();
    // A slow writer: every durable group waits before it answers, so the queue fills.
    arm(&server, "answer-delay?ms=300").await;
    let body = json!({ "type": "big", "data": "x".repeat(600_000) });
    let rss_before = server.metric("process_resident_memory_bytes").await;
    let client = server.http1();
    let publishes = (0..48).map(|_| {
        let (server, client, body) = (&server, client.clone(), body.clone());
        async move { publish_raw(server, &client, "bytes/t", &body).await }
    });
    let sampler = async {
        let mut most: f64 = 0.0;
        for _ in 0..20 {
            most = most.max(server.metric("tidings_writer_queued_bytes").await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let (responses, most_queued) = tokio::join!(futures_util::future::join_all(publishes), sampler);
    let mut accepted = 0;
    let mut refused = 0;
    for response in responses {
        if response.status() == 201 {
            accepted += 1;
        } else {
            assert_refused(response).await;
            refused += 1;
        }
    }
    eprintln!("accepted {accepted}, refused {refused}, most queued {most_queued} bytes");
    assert!(
        accepted >= 1 && refused >= 1,
        "accepted {accepted}, refused {refused}"
    );
    assert!(
        most_queued <= 4.0 * 1024.0 * 1024.0,
        "queued {most_queued} bytes"
    );
    let rss_after = server.metric("process_resident_memory_bytes").await;
    assert!(
        rss_after - rss_before < 200e6,
        "RSS grew by {} MB",
        (rss_after - rss_before) / 1e6
    );
    arm(&server, "answer-delay?ms=0").await;
}
