//! The generic topics API: publishing, history pages, validation.

use crate::clients::{history, publish, publish_raw};
use crate::harness::{Server, json};
use serde_json::{Value, json};

#[tokio::test]
async fn publish_returns_the_durable_event_and_history_pages_through_it() {
    let server = Server::start();
    let client = server.http1();
    let response = publish_raw(
        &server,
        &client,
        "news/eu",
        &json!({ "type": "story", "data": { "n": 0 } }),
    )
    .await;
    assert_eq!(response.status(), 201);
    let event = json(response).await["data"].clone();
    assert_eq!(event["topic"], "news/eu");
    assert_eq!(event["type"], "story");
    assert_eq!(event["actor"], json!({ "name": "admin" }));
    assert_eq!(event["id"].as_str().unwrap().len(), 26);
    assert!(event["occurredAt"].as_str().unwrap().ends_with('Z'));

    let batch: Vec<Value> = (1..=4)
        .map(|n| json!({ "type": "story", "data": { "n": n } }))
        .collect();
    let response = publish_raw(&server, &client, "news/eu", &json!({ "events": batch })).await;
    assert_eq!(response.status(), 201);
    let events = json(response).await["data"]["events"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(events.len(), 4);

    let first = json(history(&server, "news/eu", "?limit=2").await).await;
    assert_eq!(first["data"]["gap"], false);
    let page: Vec<i64> = first["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(page, vec![0, 1]);
    let next = first["data"]["next"].as_str().unwrap().to_string();
    let rest = json(history(&server, "news/eu", &format!("?after={next}&limit=10")).await).await;
    let page: Vec<i64> = rest["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(page, vec![2, 3, 4]);
    assert_eq!(rest["data"]["next"], Value::Null);
}

#[tokio::test]
async fn a_batch_with_one_bad_event_writes_nothing() {
    let server = Server::start();
    let client = server.http1();
    let body =
        json!({ "events": [ { "type": "ok", "data": 1 }, { "type": "bad type!", "data": 2 } ] });
    let response = publish_raw(&server, &client, "atomic", &body).await;
    assert_eq!(response.status(), 400);
    assert_eq!(json(response).await["error"]["code"], "VALIDATION_ERROR");
    let page = json(history(&server, "atomic", "").await).await;
    assert_eq!(
        page["data"]["events"],
        json!([]),
        "nothing of the failed batch is visible"
    );
}

#[tokio::test]
async fn credentials_and_names_are_checked() {
    let server = Server::start();
    let client = server.http1();
    let url = server.url("/api/v1/topics/t/events");
    let missing = client
        .post(&url)
        .json(&json!({ "type": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(json(missing).await["error"]["code"], "UNAUTHORIZED");
    let wrong = client
        .post(&url)
        .header("x-api-key", "adm_wrong")
        .json(&json!({ "type": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let stream = client
        .get(server.url("/api/v1/topics/t/stream"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 401, "streams need credentials too");

    for (topic, body, why) in [
        ("bad%20name", json!({ "type": "x" }), "space in the topic"),
        (
            &"a".repeat(201)[..],
            json!({ "type": "x" }),
            "topic too long",
        ),
        ("t", json!({ "type": "" }), "empty type"),
        ("t", json!({ "data": 1 }), "missing type"),
        ("t", json!({ "type": "x", "extra": 1 }), "unknown field"),
        ("t", json!({ "events": [] }), "empty batch"),
        ("t", json!({ "events": "nope" }), "events not an array"),
    ] {
        let response = publish_raw(&server, &client, topic, &body).await;
        assert_eq!(response.status(), 400, "{why}");
        assert_eq!(
            json(response).await["error"]["code"],
            "VALIDATION_ERROR",
            "{why}"
        );
    }
    for query in ["?after=not-an-id", "?limit=0", "?limit=100000", "?limit=x"] {
        assert_eq!(history(&server, "t", query).await.status(), 400, "{query}");
    }
}

#[tokio::test]
async fn batches_over_the_configured_maximum_are_refused() {
    let server = Server::builder()
        .args(&["--publish-batch-max", "3"])
        .start();
    let client = server.http1();
    let events: Vec<Value> = (0..4).map(|n| json!({ "type": "x", "data": n })).collect();
    let response = publish_raw(&server, &client, "t", &json!({ "events": events })).await;
    assert_eq!(response.status(), 400);
    assert!(
        json(response).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 to 3")
    );
}

#[tokio::test]
async fn topics_are_isolated_and_ids_increase_across_topics() {
    let server = Server::start();
    let client = server.http1();
    let a = publish(&server, &client, "a", json!(1)).await;
    let b = publish(&server, &client, "b", json!(2)).await;
    let a2 = publish(&server, &client, "a", json!(3)).await;
    assert!(a < b && b < a2, "one id sequence across topics");
    let page = json(history(&server, "a", "").await).await;
    let ids: Vec<&str> = page["data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![a.as_str(), a2.as_str()]);
}
