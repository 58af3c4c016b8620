//! The engine shared by `fanout`, `reconnect` and `chat`: connect the subscribers,
//! publish at a steady rate (optionally telling every subscriber to drop and
//! resume part-way), then let them drain and gather the figures; plus the
//! report sections both scenarios print.

use super::{Coordinator, Setup, expected_deliveries, setup};
use crate::bench::args::{OutputArgs, PeerArgs, ServerArgs, StreamArgs, SubscriberArgs};
use crate::bench::discussions::{self, Surface};
use crate::bench::error::BenchError;
use crate::bench::group::sleep_until_some;
use crate::bench::http::Protocol;
use crate::bench::progress::{Progress, rate, si};
use crate::bench::protocol::{Command, GroupResult};
use crate::bench::publisher::{PublishOutcome, PublishPlan, Publisher};
use crate::bench::report::{Latency, Report};
use crate::bench::target::Target;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::time::Instant;

/// Progress refresh while publishing.
const TICK: Duration = Duration::from_millis(250);

/// What a delivery run needs.
pub struct DeliveryPlan<'a> {
    /// Scenario name (also used in topic names).
    pub scenario: &'static str,
    /// Server flags.
    pub server: &'a ServerArgs,
    /// Another server to measure instead (fanout only).
    pub peer: &'a PeerArgs,
    /// Output flags.
    pub output: OutputArgs,
    /// Subscriber flags.
    pub subscribers: &'a SubscriberArgs,
    /// Publishing flags.
    pub stream: &'a StreamArgs,
    /// When to make every subscriber drop and resume (reconnect scenario).
    pub drop_after: Option<Duration>,
    /// Base URLs subscribers stream from instead of the server (a cluster's
    /// edges, sharing its key), in turn; empty: the server.
    pub edges: &'a [String],
}

/// Everything measured in a delivery run.
pub struct DeliveryRun {
    /// The publishing side.
    pub publish: PublishOutcome,
    /// The subscribers' merged figures.
    pub delivery: GroupResult,
    /// Deliveries that had to happen.
    pub expected: u64,
    /// From the first publish until every subscriber was done.
    pub window: Duration,
    /// Worker processes used (0: in this process).
    pub processes: usize,
}

/// Runs the scenario's common part.
pub async fn run(plan: DeliveryPlan<'_>) -> Result<DeliveryRun, BenchError> {
    let subs = plan.subscribers;
    let Setup { mut target, topics } =
        setup(plan.server, plan.peer, plan.scenario, subs.topics).await?;
    if plan.peer.surface == Surface::Discussions {
        target.discussions = discussions::create(&target, &topics).await?;
    }
    let mut progress = Progress::new(plan.output.quiet);
    let edges = Target::resolve_all(plan.server, plan.edges).await?;
    let mut coordinator = Coordinator::start(&target, &edges, subs, topics.clone())?;
    coordinator
        .wait_ready(&mut progress, subs.subscribers)
        .await?;
    coordinator.require_all_connected(subs.subscribers).await?;
    if plan.peer.peer.is_some() {
        progress.note("waiting for the peer's subscriptions to settle");
        tokio::time::sleep(crate::bench::peer::SETTLE).await;
    }
    let measured = measure(
        &mut coordinator,
        &target,
        topics,
        plan.stream,
        plan.drop_after,
        &mut progress,
    )
    .await?;
    Ok(DeliveryRun {
        expected: expected_deliveries(&measured.publish.expectations, subs.subscribers),
        window: measured.window,
        processes: coordinator.processes,
        publish: measured.publish,
        delivery: measured.delivery,
    })
}

/// What [`measure`] found.
pub struct Measured {
    /// The publishing side.
    pub publish: PublishOutcome,
    /// The subscribers' merged figures.
    pub delivery: GroupResult,
    /// From the first publish until every subscriber was done.
    pub window: Duration,
}

/// With every subscriber connected: publishes `stream` to `topics` (making
/// every subscriber drop and resume after `drop_after`, when given), tells
/// the groups what to expect and gathers their figures.
pub async fn measure(
    coordinator: &mut Coordinator,
    target: &Target,
    topics: Vec<String>,
    stream: &StreamArgs,
    drop_after: Option<Duration>,
    progress: &mut Progress,
) -> Result<Measured, BenchError> {
    let publish_plan = PublishPlan {
        topics,
        batch: stream.batch,
        size: stream.size,
        rate: Some(stream.rate),
        duration: stream.duration,
        publishers: stream.publishers,
        protocol: Protocol::Http1,
        h2_connections: 1,
    };
    let started = Instant::now();
    let publisher = Publisher::start(target, publish_plan).await?;
    let publish = publish_phase(coordinator, publisher, drop_after, progress).await?;
    let drain_ms = u64::try_from(stream.drain_timeout.as_millis()).unwrap_or(u64::MAX);
    coordinator
        .broadcast(&Command::Finish {
            expect: publish.expectations.clone(),
            drain_ms,
        })
        .await;
    let delivery = coordinator.results(progress, "draining").await?;
    progress.clear();
    Ok(Measured {
        publish,
        delivery,
        window: started.elapsed(),
    })
}

/// Publishes until done while following the groups; broadcasts the drop when due.
async fn publish_phase(
    coordinator: &mut Coordinator,
    mut publisher: Publisher,
    drop_after: Option<Duration>,
    progress: &mut Progress,
) -> Result<PublishOutcome, BenchError> {
    let started = Instant::now();
    let mut drop_at = drop_after.map(|after| started + after);
    let mut ticker = tokio::time::interval(TICK);
    while !publisher.is_finished() {
        tokio::select! {
            _ = publisher.join_one() => {}
            pumped = coordinator.pump() => pumped?,
            _ = sleep_until_some(drop_at) => {
                drop_at = None;
                coordinator.broadcast(&Command::Reconnect).await;
                progress.note("all subscribers drop their connections and resume now");
            }
            _ = ticker.tick() => {
                let totals = coordinator.totals();
                let acked = publisher.stats().events.load(Ordering::Relaxed);
                let elapsed = started.elapsed();
                let caught_up = match drop_after {
                    Some(_) => format!(" · caught up {}", totals.caught_up),
                    None => String::new(),
                };
                progress.update(&format!(
                    "publishing · acked {} ({}) · delivered {} ({}) · dup {} · open {}{caught_up}",
                    si(acked as f64),
                    rate(acked, elapsed),
                    si(totals.deliveries as f64),
                    rate(totals.deliveries, elapsed),
                    totals.duplicates,
                    totals.connected,
                ));
            }
        }
    }
    Ok(publisher.finish().await)
}

/// The publishing rows and JSON of a delivery run.
pub fn publishing_section(
    report: &mut Report,
    stream: &StreamArgs,
    publish: &PublishOutcome,
) -> Value {
    publishing_rows(report, "publishing", stream, publish)
}

/// [`publishing_section`] under `title` (a run with several passes).
pub fn publishing_rows(
    report: &mut Report,
    title: &str,
    stream: &StreamArgs,
    publish: &PublishOutcome,
) -> Value {
    let ack = Latency::of(&publish.ack);
    report.section(
        title,
        vec![
            (
                "target rate",
                format!("{}/s for {:?}", si(stream.rate), stream.duration),
            ),
            (
                "events acknowledged",
                format!("{} in {} requests", publish.events, publish.requests),
            ),
            ("achieved rate", rate(publish.events, publish.elapsed)),
            ("ack latency", ack.brief()),
            ("throttled (503/429)", publish.throttled.to_string()),
            ("failed requests", publish.failed.to_string()),
        ],
    );
    report.fail_if(
        publish.failed > 0,
        format!(
            "{} publish requests FAILED ({})",
            publish.failed,
            publish.problems.join("; ")
        ),
    );
    json!({
        "targetRate": stream.rate,
        "events": publish.events,
        "requests": publish.requests,
        "eventsPerSecond": publish.events as f64 / publish.elapsed.as_secs_f64().max(1e-9),
        "ackLatency": ack,
        "throttled": publish.throttled,
        "failedRequests": publish.failed,
        "problems": publish.problems,
    })
}

/// The delivery rows, JSON and verdicts of a delivery run.
pub fn delivery_section(report: &mut Report, run: &DeliveryRun) -> Value {
    delivery_rows(report, "delivery", run)
}

/// [`delivery_section`] under `title` (a run with several passes).
pub fn delivery_rows(report: &mut Report, title: &str, run: &DeliveryRun) -> Value {
    let d = &run.delivery;
    let latency = Latency::of(&d.latency);
    let shout = |n: u64| {
        if n == 0 {
            "0".to_string()
        } else {
            format!("{n}   <-- MUST BE 0")
        }
    };
    report.section(
        title,
        vec![
            (
                "deliveries",
                format!("{} of {} expected", d.totals.deliveries, run.expected),
            ),
            ("delivered rate", rate(d.totals.deliveries, run.window)),
            ("latency (publish→delivery)", latency.brief()),
            ("lost", shout(d.lost)),
            ("duplicated", shout(d.totals.duplicates)),
            ("gaps announced", shout(d.gaps)),
            (
                "misrouted / out of range",
                shout(d.misrouted + d.out_of_range),
            ),
            ("foreign events", d.foreign.to_string()),
            (
                "server closes / read errors",
                format!("{} / {}", d.server_closes, d.read_errors),
            ),
            ("reconnects", d.totals.reconnects.to_string()),
        ],
    );
    delivery_verdicts(report, d);
    json!({
        "deliveries": d.totals.deliveries,
        "expected": run.expected,
        "deliveriesPerSecond": d.totals.deliveries as f64 / run.window.as_secs_f64().max(1e-9),
        "latency": latency,
        "lost": d.lost,
        "duplicated": d.totals.duplicates,
        "incompleteSubscribers": d.incomplete,
        "gaps": d.gaps,
        "misrouted": d.misrouted,
        "outOfRange": d.out_of_range,
        "foreign": d.foreign,
        "serverErrors": d.server_errors,
        "serverCloses": d.server_closes,
        "readErrors": d.read_errors,
        "reconnects": d.totals.reconnects,
        "problems": d.problems,
    })
}

/// Marks the run failed for every kind of wrong delivery.
fn delivery_verdicts(report: &mut Report, d: &GroupResult) {
    report.fail_if(
        d.lost > 0,
        format!(
            "{} deliveries LOST ({} subscribers incomplete)",
            d.lost, d.incomplete
        ),
    );
    report.fail_if(
        d.totals.duplicates > 0,
        format!("{} deliveries DUPLICATED", d.totals.duplicates),
    );
    report.fail_if(d.gaps > 0, format!("{} history gaps announced", d.gaps));
    report.fail_if(
        d.misrouted > 0,
        format!("{} events delivered to the wrong topic", d.misrouted),
    );
    report.fail_if(
        d.out_of_range > 0,
        format!("{} events with impossible sequence numbers", d.out_of_range),
    );
    report.fail_if(
        d.server_errors > 0,
        format!("{} error frames from the server", d.server_errors),
    );
}

/// The setup rows shared by both scenarios.
pub fn setup_section(
    report: &mut Report,
    subs: &SubscriberArgs,
    stream: &StreamArgs,
    processes: usize,
) -> Value {
    report.section(
        "setup",
        vec![
            (
                "subscribers",
                format!("{} over {}", subs.subscribers, subs.describe()),
            ),
            ("topics", subs.topics.to_string()),
            (
                "event size",
                format!("{} bytes, {} per request", stream.size, stream.batch),
            ),
            ("publisher connections", stream.publishers.to_string()),
            ("subscriber processes", processes_text(processes)),
        ],
    );
    json!({
        "subscribers": subs.subscribers,
        "transport": subs.transport,
        "topics": subs.topics,
        "size": stream.size,
        "batch": stream.batch,
        "publishers": stream.publishers,
        "durationSeconds": stream.duration.as_secs_f64(),
        "workerProcesses": processes,
    })
}

/// `in this process` or `3 workers`.
pub fn processes_text(processes: usize) -> String {
    if processes == 0 {
        "1 (this process)".into()
    } else {
        format!("{processes} worker processes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::protocol::Snapshot;

    fn run_with(delivery: GroupResult) -> DeliveryRun {
        DeliveryRun {
            publish: PublishOutcome {
                requests: 3,
                events: 3,
                throttled: 0,
                failed: 0,
                elapsed: Duration::from_secs(1),
                ack: Default::default(),
                problems: vec![],
                expectations: vec![],
            },
            delivery,
            expected: 6,
            window: Duration::from_secs(1),
            processes: 0,
        }
    }

    #[test]
    fn lost_and_duplicated_deliveries_fail_the_run_loudly() {
        let delivery = GroupResult {
            lost: 1,
            incomplete: 1,
            totals: Snapshot {
                deliveries: 6,
                duplicates: 1,
                ..Snapshot::default()
            },
            ..GroupResult::default()
        };
        let mut report = Report::new("fanout", json!({}));
        let json = delivery_section(&mut report, &run_with(delivery));
        assert_eq!(json["lost"], 1);
        assert_eq!(json["duplicated"], 1);
        assert_eq!(report.failures.len(), 2);
        assert!(report.failures[0].contains("1 deliveries LOST"));
        assert!(report.failures[1].contains("1 deliveries DUPLICATED"));
        assert!(report.table().contains("<-- MUST BE 0"));
        let err = report.emit(true).expect_err("a failed run exits non-zero");
        assert!(matches!(err, BenchError::Run(_)));
    }

    #[test]
    fn a_clean_run_passes() {
        let delivery = GroupResult {
            totals: Snapshot {
                deliveries: 6,
                ..Snapshot::default()
            },
            ..GroupResult::default()
        };
        let mut report = Report::new("fanout", json!({}));
        delivery_section(&mut report, &run_with(delivery));
        assert!(report.failures.is_empty());
    }
}
