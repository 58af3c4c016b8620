//! `tidings bench reconnect`: while publishing goes on, every subscriber drops
//! its connection at the same moment and resumes after its last event id;
//! reports how long until all have caught up, and losses and duplicates.
//!
//! A subscriber has caught up when it holds, without a hole, every event up
//! to one that was published after the drop command: it is live again with
//! its full history. The time is measured from the command, so its
//! resolution is the interval between events on one topic (rate / topics).

use super::delivery::{self, DeliveryPlan};
use crate::bench::args::{PeerArgs, ReconnectArgs};
use crate::bench::error::BenchError;
use crate::bench::protocol::GroupResult;
use crate::bench::report::{Latency, Report, micros};
use serde_json::{Value, json};
use std::time::Duration;

/// Runs the reconnect scenario and prints its report.
pub async fn run(args: ReconnectArgs) -> Result<(), BenchError> {
    args.validate()?;
    let run = delivery::run(DeliveryPlan {
        scenario: "reconnect",
        server: &args.server,
        peer: &PeerArgs::default(),
        output: args.output,
        subscribers: &args.subscribers,
        stream: &args.stream,
        drop_after: Some(args.drop_after),
        edges: &[],
    })
    .await?;
    let mut report = Report::new("reconnect", json!({}));
    let setup =
        delivery::setup_section(&mut report, &args.subscribers, &args.stream, run.processes);
    let catch_up = catch_up_section(&mut report, args.drop_after, &run.delivery);
    let publishing = delivery::publishing_section(&mut report, &args.stream, &run.publish);
    let delivered = delivery::delivery_section(&mut report, &run);
    report.json = json!({
        "setup": setup,
        "catchUp": catch_up,
        "publishing": publishing,
        "delivery": delivered,
    });
    report.emit(args.output.json)
}

/// The catch-up rows, JSON and verdict of subscribers told to drop `drop_after` into publishing.
pub fn catch_up_section(report: &mut Report, drop_after: Duration, d: &GroupResult) -> Value {
    let catch_up = Latency::of(&d.catch_up);
    let subscribers = d.subscribers;
    let all_caught_up = d.totals.caught_up >= subscribers;
    let until_all = if all_caught_up {
        micros(catch_up.max_us)
    } else {
        format!("never: {} of {subscribers} caught up", d.totals.caught_up)
    };
    report.section(
        "reconnect",
        vec![
            (
                "dropped at",
                format!("{drop_after:?} after publishing started"),
            ),
            (
                "caught up",
                format!("{} of {subscribers}", d.totals.caught_up),
            ),
            ("time until all caught up", until_all),
            ("catch-up time", catch_up.brief()),
        ],
    );
    report.fail_if(
        !all_caught_up,
        format!(
            "only {} of {subscribers} subscribers caught up",
            d.totals.caught_up
        ),
    );
    json!({
        "dropAfterSeconds": drop_after.as_secs_f64(),
        "caughtUp": d.totals.caught_up,
        "subscribers": subscribers,
        "allCaughtUpMicros": all_caught_up.then_some(catch_up.max_us),
        "catchUp": catch_up,
    })
}
