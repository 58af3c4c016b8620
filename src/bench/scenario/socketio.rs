//! `tidings bench socketio`: Socket.IO clients joined to one channel's posts
//! room (spec 003), on Tidings and on the Node.js socket.io reference, each
//! server measured the same way, one after the other, printed side by side.
//!
//! Each server gets its own channel (and, on Tidings, its own realm and
//! key: [`crate::bench::socketio::api`]); then, per `--mode`:
//!
//! * `broadcast`: `--clients` sessions join; posts at `--rate` for
//!   `--duration`; every client must receive every acknowledged post
//!   exactly once: deliveries/s, post→receipt latency, lost, duplicates.
//! * `reconnect`: the same, and `--drop-after` into posting every client
//!   drops its session at once, reconnects, rejoins and syncs from its last
//!   event id page by page while live posts arrive: the time until the last
//!   client holds every post up to one sent after the drop.
//! * `idle`: the sessions connect, join and stay idle for `--hold`: the
//!   server's RSS (from `/proc` with `--server-pid`/`--peer-pid`, else
//!   Tidings' `/metrics`) before and after, per connection.
//!
//! Lost or duplicated posts, failed posts, clients that could not join or
//! catch up, and refused syncs fail the run (exit 1).

use crate::bench::error::BenchError;
use crate::bench::http::server_rss;
use crate::bench::progress::{Progress, rate, si};
use crate::bench::report::{Latency, Report, bytes, micros};
use crate::bench::socketio::api::Server;
use crate::bench::socketio::args::{Mode, Side, SocketIoArgs};
use crate::bench::socketio::client::Stats;
use crate::bench::socketio::fleet::{Ending, Fleet};
use crate::bench::socketio::publisher::{PostOutcome, Publisher};
use crate::bench::target::random_prefix;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Progress refresh while posting or holding.
const TICK: Duration = Duration::from_millis(250);

/// Pause before the server's memory is read ahead of the idle sessions.
const SETTLE: Duration = Duration::from_secs(1);

/// Space between the servers' columns.
const GUTTER: usize = 3;

/// Runs the scenario against every server and prints them side by side.
pub async fn run(args: SocketIoArgs) -> Result<(), BenchError> {
    args.validate()?;
    let mut progress = Progress::new(args.output.quiet);
    let run = random_prefix().trim_start_matches("bench.").to_string();
    let mut runs = Vec::new();
    for side in args.sides() {
        progress.note(&format!(
            "socketio {}: {} at {}",
            args.mode.name(),
            side.kind.name(),
            side.url
        ));
        let report = match measure(&args, &side, &run, &mut progress).await {
            Ok(report) => report,
            Err(BenchError::Usage(message)) => return Err(BenchError::Usage(message)),
            Err(err) => could_not_run(&err),
        };
        runs.push((side, report));
    }
    progress.clear();
    side_by_side(args.mode, args.clients, &runs).emit(args.output.json)
}

/// Sets up one server and measures it in the run's mode.
async fn measure(
    args: &SocketIoArgs,
    side: &Side,
    run: &str,
    progress: &mut Progress,
) -> Result<Report, BenchError> {
    let server = Server::prepare(
        &side.url,
        side.kind,
        args.admin(),
        run,
        args.token_lifetime(),
    )
    .await?;
    let server = Arc::new(server);
    match args.mode {
        Mode::Broadcast | Mode::Reconnect => deliveries(args, server, progress).await,
        Mode::Idle => idle(args, server, side, progress).await,
    }
}

/// The report of a server that could not be measured (the other one still is).
fn could_not_run(err: &BenchError) -> Report {
    let mut report = Report::new("socketio", json!({ "error": err.to_string() }));
    report.fail_if(true, format!("could not run: {err}"));
    report
}

/// A counter's value.
fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// `broadcast` and `reconnect` against one server.
async fn deliveries(
    args: &SocketIoArgs,
    server: Arc<Server>,
    progress: &mut Progress,
) -> Result<Report, BenchError> {
    let began = Instant::now();
    let mut fleet = Fleet::start(server.clone(), args.clients, args.pace());
    fleet.wait_connected(progress).await?;
    let connecting = began.elapsed();
    let started = Instant::now();
    let publisher = Publisher::start(server.clone(), args.posts()).await?;
    let drop_at = (args.mode == Mode::Reconnect).then(|| started + args.drop_after);
    let posts = post_phase(&fleet, publisher, drop_at, progress).await;
    fleet.expect(posts.expectation.clone());
    let ending = fleet.drain(args.drain_timeout, progress).await;
    let window = started.elapsed();
    let stats = fleet.stats();
    let mut report = Report::new("socketio", json!({}));
    let setup = setup_section(&mut report, args, &server, connecting, stats);
    let posting = posting_section(&mut report, args, &posts);
    let catch_up = drop_at.map(|_| catch_up_section(&mut report, args, stats));
    let expected = posts.expectation.expected_count() * args.clients as u64;
    let delivery = delivery_section(&mut report, stats, &ending, expected, window);
    report.json = json!({
        "setup": setup,
        "posting": posting,
        "catchUp": catch_up,
        "delivery": delivery,
    });
    Ok(report)
}

/// Posts until done, showing progress; tells the clients to drop at `drop_at`.
async fn post_phase(
    fleet: &Fleet,
    mut publisher: Publisher,
    mut drop_at: Option<Instant>,
    progress: &mut Progress,
) -> PostOutcome {
    let started = Instant::now();
    loop {
        let tick = Instant::now() + TICK;
        if publisher
            .wait_until(drop_at.map_or(tick, |at| at.min(tick)))
            .await
        {
            break;
        }
        if drop_at.is_some_and(|at| Instant::now() >= at) {
            drop_at = None;
            fleet.reconnect();
            progress.note("every client drops its session and resumes now");
        }
        let stats = fleet.stats();
        let elapsed = started.elapsed();
        progress.update(&format!(
            "posting · acked {} · delivered {} ({}) · dup {} · joined {} · caught up {}",
            si(publisher.acknowledged() as f64),
            si(read(&stats.live) as f64),
            rate(read(&stats.live), elapsed),
            read(&stats.duplicates),
            read(&stats.connected),
            read(&stats.caught_up),
        ));
    }
    publisher.finish().await
}

/// The set-up rows and JSON.
fn setup_section(
    report: &mut Report,
    args: &SocketIoArgs,
    server: &Server,
    connecting: Duration,
    stats: &Stats,
) -> Value {
    let connect = Latency::of(&stats.connect_time.snapshot());
    report.section(
        "setup",
        vec![
            ("server", format!("{} {}", server.kind.name(), server.url)),
            ("mode", args.mode.name().to_string()),
            ("clients (WebSocket sessions)", args.clients.to_string()),
            ("channel", server.channel_id.to_string()),
            (
                "all joined in",
                format!("{:.2} s", connecting.as_secs_f64()),
            ),
            ("connect + join time", connect.brief()),
        ],
    );
    json!({
        "server": server.kind,
        "url": server.url,
        "clients": args.clients,
        "channelId": server.channel_id,
        "connectSeconds": connecting.as_secs_f64(),
        "connectTime": connect,
    })
}

/// The posting rows, JSON and verdict.
fn posting_section(report: &mut Report, args: &SocketIoArgs, posts: &PostOutcome) -> Value {
    let ack = Latency::of(&posts.ack);
    report.section(
        "posting",
        vec![
            (
                "target rate",
                format!(
                    "{}/s for {:?}, {} bytes",
                    si(args.rate),
                    args.duration,
                    args.size
                ),
            ),
            ("posts acknowledged", posts.acknowledged.to_string()),
            ("achieved rate", rate(posts.acknowledged, posts.elapsed)),
            ("ack latency", ack.brief()),
            ("failed posts", posts.failed.to_string()),
        ],
    );
    report.fail_if(
        posts.failed > 0,
        format!(
            "{} posts FAILED ({})",
            posts.failed,
            posts.problems.join("; ")
        ),
    );
    json!({
        "targetRate": args.rate,
        "acknowledged": posts.acknowledged,
        "postsPerSecond": posts.acknowledged as f64 / posts.elapsed.as_secs_f64().max(1e-9),
        "ackLatency": ack,
        "failed": posts.failed,
        "problems": posts.problems,
    })
}

/// The reconnect rows, JSON and verdicts.
fn catch_up_section(report: &mut Report, args: &SocketIoArgs, stats: &Stats) -> Value {
    let catch_up = Latency::of(&stats.catch_up.snapshot());
    let caught_up = read(&stats.caught_up);
    let clients = args.clients as u64;
    let all = caught_up >= clients;
    let until_all = if all {
        micros(catch_up.max_us)
    } else {
        format!("never: {caught_up} of {clients} caught up")
    };
    let refusals = read(&stats.sync_refusals);
    report.section(
        "reconnect",
        vec![
            (
                "dropped at",
                format!("{:?} after posting started", args.drop_after),
            ),
            ("caught up", format!("{caught_up} of {clients}")),
            ("time until all caught up", until_all),
            ("catch-up time", catch_up.brief()),
            ("sync pages", read(&stats.sync_pages).to_string()),
            ("posts received by sync", read(&stats.synced).to_string()),
            (
                "posts both live and synced (deduplicated)",
                read(&stats.overlap).to_string(),
            ),
            ("syncs refused (too_old/unknown)", refusals.to_string()),
        ],
    );
    report.fail_if(
        !all,
        format!("only {caught_up} of {clients} clients caught up"),
    );
    report.fail_if(
        refusals > 0,
        format!("{refusals} syncs answered too_old or unknown"),
    );
    json!({
        "dropAfterSeconds": args.drop_after.as_secs_f64(),
        "caughtUp": caught_up,
        "clients": clients,
        "allCaughtUpMicros": all.then_some(catch_up.max_us),
        "catchUp": catch_up,
        "syncPages": read(&stats.sync_pages),
        "synced": read(&stats.synced),
        "overlap": read(&stats.overlap),
        "syncRefusals": refusals,
    })
}

/// `0`, or the number with a warning that it must be 0.
fn must_be_zero(n: u64) -> String {
    if n == 0 {
        "0".into()
    } else {
        format!("{n}   <-- MUST BE 0")
    }
}

/// The delivery rows, JSON and verdicts.
fn delivery_section(
    report: &mut Report,
    stats: &Stats,
    ending: &Ending,
    expected: u64,
    window: Duration,
) -> Value {
    let live = read(&stats.live);
    let received = (live + read(&stats.synced)).saturating_sub(read(&stats.overlap));
    let latency = Latency::of(&stats.latency.snapshot());
    let duplicates = read(&stats.duplicates);
    let out_of_range = read(&stats.out_of_range);
    let foreign = read(&stats.foreign);
    let closes = read(&stats.server_closes);
    let errors = read(&stats.read_errors);
    report.section(
        "delivery",
        vec![
            (
                "posts received",
                format!("{received} of {expected} expected"),
            ),
            ("live deliveries/s", rate(live, window)),
            ("latency (post→receipt, live)", latency.brief()),
            ("lost", must_be_zero(ending.lost)),
            ("duplicated", must_be_zero(duplicates)),
            ("impossible post numbers", must_be_zero(out_of_range)),
            ("other events", must_be_zero(foreign)),
            (
                "sessions ended by the server / failed",
                format!("{closes} / {errors}"),
            ),
            ("reconnects", read(&stats.reconnects).to_string()),
        ],
    );
    for (count, what) in [
        (ending.lost, "posts LOST"),
        (duplicates, "posts DUPLICATED"),
        (out_of_range, "posts with impossible numbers"),
        (foreign, "events that are no bench post"),
        (ending.crashed, "client tasks crashed"),
    ] {
        report.fail_if(count > 0, format!("{count} {what}"));
    }
    json!({
        "received": received,
        "expected": expected,
        "live": live,
        "deliveriesPerSecond": live as f64 / window.as_secs_f64().max(1e-9),
        "latency": latency,
        "lost": ending.lost,
        "incompleteClients": ending.incomplete,
        "duplicated": duplicates,
        "outOfRange": out_of_range,
        "foreign": foreign,
        "serverCloses": closes,
        "readErrors": errors,
        "reconnects": read(&stats.reconnects),
        "problems": stats.problems(),
    })
}

/// `idle` against one server.
async fn idle(
    args: &SocketIoArgs,
    server: Arc<Server>,
    side: &Side,
    progress: &mut Progress,
) -> Result<Report, BenchError> {
    tokio::time::sleep(SETTLE).await;
    let before = server_rss(&server.target, side.pid).await;
    let began = Instant::now();
    let mut fleet = Fleet::start(server.clone(), args.clients, args.pace());
    fleet.wait_connected(progress).await?;
    let connecting = began.elapsed();
    let until = Instant::now() + args.hold.max(SETTLE);
    while Instant::now() < until {
        tokio::time::sleep(TICK.min(until - Instant::now())).await;
        progress.update(&format!(
            "holding · joined {}",
            read(&fleet.stats().connected)
        ));
    }
    let held = server_rss(&server.target, side.pid).await;
    let open = read(&fleet.stats().connected);
    let ending = fleet.stop().await;
    let mut report = Report::new("socketio", json!({}));
    let setup = setup_section(&mut report, args, &server, connecting, fleet.stats());
    let per_connection = before
        .zip(held)
        .map(|(before, held)| (held as f64 - before as f64) / args.clients as f64);
    let unknown = || "unknown (give the server's pid)".to_string();
    let stats = fleet.stats();
    report.section(
        "server memory (RSS)",
        vec![
            ("before", before.map_or_else(unknown, |b| bytes(b as f64))),
            (
                "with every session joined",
                held.map_or_else(unknown, |h| bytes(h as f64)),
            ),
            ("per connection", per_connection.map_or_else(unknown, bytes)),
            ("joined at the end of the hold", open.to_string()),
            (
                "sessions ended by the server / failed",
                format!(
                    "{} / {}",
                    read(&stats.server_closes),
                    read(&stats.read_errors)
                ),
            ),
        ],
    );
    report.fail_if(
        open < args.clients as u64,
        format!("only {open} of {} sessions stayed joined", args.clients),
    );
    report.fail_if(
        ending.crashed > 0,
        format!("{} client tasks crashed", ending.crashed),
    );
    report.json = json!({
        "setup": setup,
        "holdSeconds": args.hold.as_secs_f64(),
        "rssBeforeBytes": before,
        "rssHeldBytes": held,
        "bytesPerConnection": per_connection,
        "joinedAtEnd": open,
        "serverCloses": read(&stats.server_closes),
    });
    Ok(report)
}

/// One report with every server's values in columns as wide as their
/// longest value (the rows of the report with the most sections; a server
/// that could not run shows empty cells), failures named by server.
fn side_by_side(mode: Mode, clients: usize, runs: &[(Side, Report)]) -> Report {
    let mut merged = Report::new("socketio", json!({}));
    let Some((_, first)) = runs.iter().max_by_key(|(_, report)| report.sections.len()) else {
        return merged;
    };
    let padded = &runs[..runs.len() - 1];
    let width = padded
        .iter()
        .flat_map(|(_, report)| &report.sections)
        .flat_map(|(_, rows)| rows.iter().map(|(_, value)| value.chars().count()))
        .max()
        .unwrap_or(0)
        + GUTTER;
    for (index, (title, rows)) in first.sections.iter().enumerate() {
        let rows = rows
            .iter()
            .enumerate()
            .map(|(row, (label, _))| {
                let cells: Vec<String> = runs
                    .iter()
                    .map(|(_, report)| cell(report, index, row))
                    .collect();
                (label.as_str(), columns(&cells, width))
            })
            .collect();
        merged.section(title, rows);
    }
    let mut json_runs = Vec::new();
    for (side, report) in runs {
        for failure in &report.failures {
            merged.fail_if(true, format!("{}: {failure}", side.kind.name()));
        }
        let mut run = report.json.clone();
        run["server"] = json!(side.kind);
        run["url"] = json!(side.url);
        run["passed"] = json!(report.failures.is_empty());
        run["failures"] = json!(report.failures);
        json_runs.push(run);
    }
    merged.json = json!({
        "mode": mode.name(),
        "clients": clients,
        "runs": json_runs,
    });
    merged
}

/// The value of row `row` of section `section` (empty when that report has none).
fn cell(report: &Report, section: usize, row: usize) -> String {
    report
        .sections
        .get(section)
        .and_then(|(_, rows)| rows.get(row))
        .map(|(_, value)| value.clone())
        .unwrap_or_default()
}

/// The cells padded to `width`, the last one as it is.
fn columns(cells: &[String], width: usize) -> String {
    let Some((last, before)) = cells.split_last() else {
        return String::new();
    };
    let mut line: String = before
        .iter()
        .map(|value| format!("{value:<width$}"))
        .collect();
    line.push_str(last);
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::socketio::api::ServerKind;

    fn report(value: &str, failure: Option<&str>) -> Report {
        let mut report = Report::new("socketio", json!({ "figure": value }));
        report.section("delivery", vec![("lost", value.to_string())]);
        report.fail_if(failure.is_some(), failure.unwrap_or_default().to_string());
        report
    }

    fn side(kind: ServerKind) -> Side {
        Side {
            url: "http://127.0.0.1:1".into(),
            kind,
            pid: None,
        }
    }

    #[test]
    fn two_servers_print_in_columns_and_fail_by_name() {
        let runs = [
            (side(ServerKind::Tidings), report("0", None)),
            (
                side(ServerKind::Reference),
                report("3", Some("3 posts LOST")),
            ),
        ];
        let merged = side_by_side(Mode::Broadcast, 2, &runs);
        assert!(merged.table().contains("lost  0   3"), "{}", merged.table());
        assert_eq!(merged.failures, vec!["reference: 3 posts LOST".to_string()]);
        let json = merged.to_json();
        assert_eq!(json["runs"][1]["server"], "reference");
        assert_eq!(json["runs"][1]["passed"], false);
        assert_eq!(json["runs"][0]["figure"], "0");
        let failed = could_not_run(&BenchError::run(
            "POST /api/v1/communication/channels answered 404",
        ));
        let runs = [
            (side(ServerKind::Tidings), failed),
            (side(ServerKind::Reference), report("0", None)),
        ];
        let merged = side_by_side(Mode::Broadcast, 2, &runs);
        let table = merged.table();
        let lost = table
            .lines()
            .find(|line| line.trim_start().starts_with("lost"));
        assert!(
            lost.is_some_and(|line| line.trim_end().ends_with(" 0") && line.len() < 20),
            "an empty column stays narrow: {table}"
        );
        assert_eq!(merged.failures.len(), 1);
        assert!(merged.failures[0].starts_with("tidings: could not run: POST"));
    }

    #[test]
    fn columns_pad_all_but_the_last() {
        assert_eq!(columns(&["a".into(), "bb".into()], 4), "a   bb");
        assert_eq!(columns(&["only".into()], 9), "only");
        assert_eq!(columns(&[], 3), "");
    }
}
