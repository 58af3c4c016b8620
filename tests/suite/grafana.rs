//! The Grafana dashboard in `scripts/grafana-dashboard.json`: it is Grafana
//! JSON over the `${datasource}` variable, every series its queries name is
//! one a live server exports, and every family a live server exports has a
//! panel, so the dashboard cannot drift from the code unnoticed.

use crate::clients::{SseReader, publish_raw};
use crate::harness::Server;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The dashboard, parsed.
fn dashboard() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/grafana-dashboard.json"
    );
    let text = std::fs::read_to_string(path).expect("the dashboard file");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel, those inside collapsed rows included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        all.extend(panel["panels"].as_array().into_iter().flatten());
    }
    all
}

/// Every PromQL text of the dashboard: panel targets and variable queries.
fn queries(dashboard: &Value) -> Vec<String> {
    let targets = panels(dashboard)
        .into_iter()
        .flat_map(|panel| panel["targets"].as_array().into_iter().flatten())
        .map(|target| {
            target["expr"]
                .as_str()
                .expect("a target's expr")
                .to_string()
        });
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter(|variable| variable["type"] == "query")
        .map(|variable| variable["definition"].as_str().unwrap().to_string());
    targets.chain(variables).collect()
}

/// The metric names a PromQL expression mentions.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("tidings_") || token.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// A `/metrics` text: the names of its samples, and its families by type.
fn exported(text: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap().to_string())
        .collect();
    let families = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.to_string()))
        .collect();
    (samples, families)
}

#[test]
fn the_dashboard_is_grafana_json_over_the_datasource_variable() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap() >= 36,
        "Grafana 10+"
    );
    let input = &dashboard["__inputs"][0];
    assert_eq!(input["type"], "datasource");
    assert_eq!(input["pluginId"], "prometheus");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let datasource = variables
        .iter()
        .find(|variable| variable["name"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    assert_eq!(
        datasource["current"]["value"],
        format!("${{{}}}", input["name"].as_str().unwrap()),
        "import picks the variable's data source"
    );
    let uses_variable = json!({ "type": "prometheus", "uid": "${datasource}" });
    let mut ids = BTreeSet::new();
    let mut boxes = Vec::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: unique id"
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|key| grid[key].as_u64().unwrap());
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: inside the grid");
        boxes.push((title, x, y, w, h));
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            !panel["description"].as_str().unwrap().is_empty(),
            "{title}"
        );
        assert_eq!(panel["datasource"], uses_variable, "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: has a query");
        for target in targets {
            assert_eq!(target["datasource"], uses_variable, "{title}");
            assert!(
                target["expr"]
                    .as_str()
                    .unwrap()
                    .contains("instance=~\"$instance\""),
                "{title}: follows the instance variable"
            );
        }
    }
    for (index, &(a, ax, ay, aw, ah)) in boxes.iter().enumerate() {
        for &(b, bx, by, bw, bh) in &boxes[index + 1..] {
            let apart = ax + aw <= bx || bx + bw <= ax || ay + ah <= by || by + bh <= ay;
            assert!(apart, "panels `{a}` and `{b}` overlap");
        }
    }
}

/// A server with fast webhook retries, 2 s SSE lifetimes and a per-ip cap
/// of 8 that applies to loopback, so every family can be made to appear.
fn server() -> Server {
    Server::builder()
        .args(crate::webhooks::FAST)
        .args(&[
            "--sse-lifetime",
            "2s",
            "--max-connections-per-ip",
            "8",
            "--per-ip-limit-loopback",
        ])
        .start()
}

/// Makes the families that appear only once used show up: an event
/// delivered on a stream that then ends, a webhook attempt for it (to a
/// closed port: a retry), and a connection refused by the per-ip cap.
async fn exercise(server: &Server) {
    crate::webhooks::create_endpoint(server, json!({ "url": "http://127.0.0.1:1/hook" })).await;
    let mut stream = SseReader::open(server, &server.http1(), "grafana/1", None).await;
    let body = json!({ "type": "t", "data": {} });
    let published = publish_raw(server, &server.http1(), "grafana/1", &body).await;
    assert_eq!(published.status(), 201);
    while stream.next().await.is_some() {}
    let held: Vec<_> = (0..9)
        .map(|_| std::net::TcpStream::connect(server.addr()).unwrap())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(held);
}

/// `/metrics` once it has a sample of every name in `wanted` (connections
/// may be refused for a moment while the cap's slots are released), or
/// the last text read after a generous deadline.
async fn metrics_with(server: &Server, wanted: &BTreeSet<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while Instant::now() < deadline {
        if let Ok(response) = server.http1().get(server.url("/metrics")).send().await {
            text = response.text().await.unwrap_or_default();
            if wanted.is_subset(&exported(&text).0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    text
}

#[tokio::test]
async fn every_series_the_dashboard_queries_is_exported_by_a_live_server() {
    let dashboard = dashboard();
    let used: BTreeSet<String> = queries(&dashboard)
        .iter()
        .flat_map(|expr| metric_names(expr))
        .collect();
    assert!(used.len() > 25, "{used:?}");
    let server = server();
    exercise(&server).await;
    let text = metrics_with(&server, &used).await;
    let (samples, families) = exported(&text);
    let missing: Vec<_> = used.difference(&samples).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series the server does not export: {missing:?}\n{text}"
    );
    let suffixes = ["", "_total", "_bucket", "_sum", "_count", "_info"];
    let unshown: Vec<_> = families
        .iter()
        .filter(|(family, _)| {
            !suffixes
                .iter()
                .any(|suffix| used.contains(&format!("{family}{suffix}")))
        })
        .collect();
    assert!(
        unshown.is_empty(),
        "families the server exports that no panel shows: {unshown:?}"
    );
}
