//! `tidings bench fanout`: S subscribers on T topics receive events published
//! at R events/s; reports delivered events/s, publish-to-delivery latency, and
//! lost and duplicated deliveries (both must be 0).

use super::delivery::{self, DeliveryPlan};
use crate::bench::args::FanoutArgs;
use crate::bench::error::BenchError;
use crate::bench::report::Report;
use serde_json::json;

/// Runs the fanout scenario and prints its report.
pub async fn run(args: FanoutArgs) -> Result<(), BenchError> {
    args.subscribers.validate()?;
    args.stream.validate()?;
    let run = delivery::run(DeliveryPlan {
        scenario: "fanout",
        server: &args.server,
        output: args.output,
        subscribers: &args.subscribers,
        stream: &args.stream,
        drop_after: None,
    })
    .await?;
    let mut report = Report::new("fanout", json!({}));
    let setup =
        delivery::setup_section(&mut report, &args.subscribers, &args.stream, run.processes);
    let publishing = delivery::publishing_section(&mut report, &args.stream, &run.publish);
    let delivered = delivery::delivery_section(&mut report, &run);
    report.json = json!({ "setup": setup, "publishing": publishing, "delivery": delivered });
    report.emit(args.output.json)
}
