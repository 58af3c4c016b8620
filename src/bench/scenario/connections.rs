//! `tidings bench connections`: open N idle SSE or WebSocket connections at a
//! given rate, hold them, and report the server's resident memory per
//! connection (from `/metrics`, before and after) and connect-time percentiles.

use super::{Coordinator, Setup, setup};
use crate::bench::args::{ConnectionsArgs, PeerArgs};
use crate::bench::error::BenchError;
use crate::bench::http::{fetch_rss, server_rss};
use crate::bench::progress::Progress;
use crate::bench::protocol::{Command, Snapshot};
use crate::bench::report::{Latency, Report, bytes};
use crate::bench::target::Target;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// Pause after the last connection before memory is read, so the server settles.
const SETTLE: Duration = Duration::from_secs(1);

/// Memory readings of one run.
struct Memory {
    before: u64,
    held: u64,
}

/// Runs the connections scenario and prints its report.
pub async fn run(args: ConnectionsArgs) -> Result<(), BenchError> {
    args.validate()?;
    let total = args.subscribers.subscribers;
    let Setup { target, topics } = setup(
        &args.server,
        &PeerArgs::default(),
        "connections",
        args.subscribers.topics,
    )
    .await?;
    let mut progress = Progress::new(args.output.quiet);
    let before = fetch_rss(&target).await?;
    let mut coordinator = Coordinator::start(&target, &[], &args.subscribers, topics)?;
    let ready = coordinator.wait_ready(&mut progress, total).await?;
    coordinator.require_all_connected(total).await?;
    let held = hold(&mut coordinator, &target, None, args.hold, &mut progress).await?;
    coordinator.broadcast(&Command::Stop).await;
    let result = coordinator.results(&mut progress, "closing").await?;
    progress.clear();
    let memory = Memory {
        before,
        held: held.0,
    };
    let mut report = Report::new("connections", json!({}));
    let connect = Latency::of(&result.connect_time);
    let per_connection = (memory.held as f64 - memory.before as f64) / total as f64;
    report.section(
        "setup",
        vec![
            (
                "connections",
                format!("{total} over {}", args.subscribers.describe()),
            ),
            (
                "connect rate",
                format!("{}/s", args.subscribers.connect.connect_rate),
            ),
            ("held for", format!("{:?}", args.hold)),
            (
                "processes",
                super::delivery::processes_text(coordinator.processes),
            ),
        ],
    );
    report.section(
        "server memory (RSS)",
        vec![
            ("before", bytes(memory.before as f64)),
            ("with all connections open", bytes(memory.held as f64)),
            ("per connection", bytes(per_connection)),
        ],
    );
    report.section(
        "connections",
        vec![
            (
                "opened",
                format!("{} of {total}", ready.attempted - ready.connect_failures),
            ),
            ("connect time", connect.brief()),
            ("open at the end of the hold", held.1.connected.to_string()),
            (
                "closed by the server meanwhile",
                result.server_closes.to_string(),
            ),
        ],
    );
    report.fail_if(
        held.1.connected < total as u64,
        format!(
            "only {} of {total} connections stayed open",
            held.1.connected
        ),
    );
    report.json = json!({
        "connections": total,
        "transport": args.subscribers.transport,
        "holdSeconds": args.hold.as_secs_f64(),
        "rssBeforeBytes": memory.before,
        "rssHeldBytes": memory.held,
        "bytesPerConnection": per_connection,
        "connectTime": connect,
        "openAtEnd": held.1.connected,
        "serverCloses": result.server_closes,
        "workerProcesses": coordinator.processes,
    });
    report.emit(args.output.json)
}

/// Holds the connections for `hold` (at least a second), then reads the
/// server's memory (from `/proc/<pid>/status` when `pid` is given, else `/metrics`).
pub async fn hold(
    coordinator: &mut Coordinator,
    target: &Target,
    pid: Option<u32>,
    hold: Duration,
    progress: &mut Progress,
) -> Result<(u64, Snapshot), BenchError> {
    let until = Instant::now() + hold.max(SETTLE);
    let sleep = tokio::time::sleep_until(until);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => break,
            pumped = coordinator.pump() => pumped?,
        }
        let totals = coordinator.totals();
        progress.update(&format!("holding · open {}", totals.connected));
    }
    let rss = server_rss(target, pid).await.ok_or_else(|| {
        BenchError::run("the server's resident memory could not be read (/metrics or /proc)")
    })?;
    Ok((rss, coordinator.totals()))
}
