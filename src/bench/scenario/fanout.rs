//! `tidings bench fanout`: S subscribers on T topics receive events published
//! at R events/s; reports delivered events/s, publish-to-delivery latency, and
//! lost and duplicated deliveries (both must be 0).

use super::delivery::{self, DeliveryPlan};
use crate::bench::args::FanoutArgs;
use crate::bench::discussions::Surface;
use crate::bench::error::BenchError;
use crate::bench::report::Report;
use serde_json::{Value, json};

/// Runs the fanout scenario and prints its report.
pub async fn run(args: FanoutArgs) -> Result<(), BenchError> {
    args.subscribers.validate()?;
    args.stream.validate()?;
    args.validate_peer()?;
    let run = delivery::run(DeliveryPlan {
        scenario: "fanout",
        server: &args.server,
        peer: &args.peer,
        output: args.output,
        subscribers: &args.subscribers,
        stream: &args.stream,
        drop_after: None,
        edges: &[],
    })
    .await?;
    let mut report = Report::new("fanout", json!({}));
    let server = server_section(&mut report, &args);
    let mut setup =
        delivery::setup_section(&mut report, &args.subscribers, &args.stream, run.processes);
    setup["server"] = server;
    setup["surface"] = json!(args.peer.surface);
    let publishing = delivery::publishing_section(&mut report, &args.stream, &run.publish);
    let delivered = delivery::delivery_section(&mut report, &run);
    report.json = json!({ "setup": setup, "publishing": publishing, "delivery": delivered });
    report.emit(args.output.json)
}

/// What was measured: Tidings, or a peer and what its figures do not cover.
fn server_section(report: &mut Report, args: &FanoutArgs) -> Value {
    let Some(peer) = args.peer.peer else {
        let surface = match args.peer.surface {
            Surface::Topics => "topics API",
            Surface::Discussions => {
                "discussions: comments → comment_created on /api/v1/stream/{id}"
            }
        };
        report.section(
            "server",
            vec![
                ("measured", format!("tidings at {}", args.server.url)),
                ("surface", surface.into()),
            ],
        );
        return json!("tidings");
    };
    let stream = args.peer.stream_url.clone().unwrap_or_default();
    report.section(
        "server",
        vec![
            ("measured", format!("{} (SSE at {stream})", peer.name())),
            (
                "not exercised",
                "event ids, resume and gap reporting (the peer's frames have no ids)".into(),
            ),
            (
                "publish acknowledged",
                "when the peer accepts it (not durable)".into(),
            ),
        ],
    );
    json!(peer.name())
}
