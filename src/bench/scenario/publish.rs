//! `tidings bench publish`: C concurrent publishers (keep-alive HTTP/1.1, or
//! HTTP/2 with `--h2`) publish as fast as they are acknowledged; reports
//! durable events/s and acknowledgement latency.

use super::{Setup, setup};
use crate::bench::args::{PeerArgs, PublishArgs};
use crate::bench::error::BenchError;
use crate::bench::http::Protocol;
use crate::bench::progress::{Progress, rate, si};
use crate::bench::publisher::{PublishOutcome, PublishPlan, Publisher};
use crate::bench::report::{Latency, Report};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Runs the publish scenario and prints its report.
pub async fn run(args: PublishArgs) -> Result<(), BenchError> {
    args.validate()?;
    let Setup { target, topics } =
        setup(&args.server, &PeerArgs::default(), "publish", args.topics).await?;
    let protocol = if args.h2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let plan = PublishPlan {
        topics,
        batch: args.batch,
        size: args.size,
        rate: None,
        duration: args.duration,
        publishers: args.publishers,
        protocol,
        h2_connections: args.connections,
    };
    let publisher = Publisher::start(&target, plan).await?;
    let outcome = follow(publisher, Progress::new(args.output.quiet)).await;
    report(&args, &outcome).emit(args.output.json)
}

/// Shows progress until the publishers are done.
async fn follow(mut publisher: Publisher, mut progress: Progress) -> PublishOutcome {
    let started = progress.elapsed();
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while !publisher.is_finished() {
        tokio::select! {
            _ = publisher.join_one() => {}
            _ = ticker.tick() => {
                let stats = publisher.stats();
                let events = stats.events.load(Ordering::Relaxed);
                let elapsed = progress.elapsed().saturating_sub(started);
                progress.update(&format!(
                    "publishing · acked {} ({}) · p99 so far {} µs · throttled {} · failed {}",
                    si(events as f64),
                    rate(events, elapsed),
                    stats.ack.snapshot().percentile(99.0),
                    stats.throttled.load(Ordering::Relaxed),
                    stats.failed.load(Ordering::Relaxed),
                ));
            }
        }
    }
    progress.clear();
    publisher.finish().await
}

/// The publish report.
fn report(args: &PublishArgs, outcome: &PublishOutcome) -> Report {
    let ack = Latency::of(&outcome.ack);
    let protocol = if args.h2 {
        format!("HTTP/2 (h2c) over {} connections", args.connections)
    } else {
        "HTTP/1.1 keep-alive, one connection each".into()
    };
    let seconds = outcome.elapsed.as_secs_f64().max(1e-9);
    let mut report = Report::new(
        "publish",
        json!({
            "publishers": args.publishers,
            "h2": args.h2,
            "connections": if args.h2 { args.connections } else { args.publishers },
            "batch": args.batch,
            "topics": args.topics,
            "size": args.size,
            "elapsedSeconds": seconds,
            "requests": outcome.requests,
            "events": outcome.events,
            "eventsPerSecond": outcome.events as f64 / seconds,
            "ackLatency": ack,
            "throttled": outcome.throttled,
            "failedRequests": outcome.failed,
            "problems": outcome.problems,
        }),
    );
    report.section(
        "setup",
        vec![
            ("publishers", format!("{} · {protocol}", args.publishers)),
            ("events per request", args.batch.to_string()),
            ("topics", args.topics.to_string()),
            ("event size", format!("{} bytes", args.size)),
        ],
    );
    report.section(
        "results",
        vec![
            ("duration", format!("{seconds:.2} s")),
            (
                "events acknowledged",
                format!("{} in {} requests", outcome.events, outcome.requests),
            ),
            ("durable events/s", rate(outcome.events, outcome.elapsed)),
            ("requests/s", rate(outcome.requests, outcome.elapsed)),
            ("ack latency", ack.brief()),
            ("throttled (503/429)", outcome.throttled.to_string()),
            ("failed requests", outcome.failed.to_string()),
        ],
    );
    report.fail_if(
        outcome.failed > 0,
        format!(
            "{} publish requests FAILED ({})",
            outcome.failed,
            outcome.problems.join("; ")
        ),
    );
    report
}
