//! `tidings bench poll`: live events-streams polling (issue 12).
//!
//! Set-up (both modes): read the realm's HS256 secret (`--jwt-secret`, or
//! `DATA_DIR/config.json`), create a stream through the producer API (admin
//! key), mint one token per viewer or connection (distinct subjects). The
//! stream is ended when the run is over, whatever happened.
//!
//! * `--mode closed`: one chat is posted per interval for `--intervals`
//!   intervals, each interval's bytes fetched once after it closed; then
//!   `--connections` keep-alive connections ask for those intervals for
//!   `--duration` ([`closed`]). With `--peer nginx` the same requests go to
//!   nginx serving those bytes from files, in the same run ([`Nginx`]).
//! * `--mode live`: the clock is synced, `--viewers` viewers open their
//!   connections and poll every interval ([`viewers`]); after the ramp and
//!   `--warmup`, the quiet phase is measured for `--duration`, then with
//!   `--ingest` another `--duration` while writers post ([`ingest`]). The
//!   server's RSS is read at the end of each phase.
//!
//! A run fails (exit 1) when any answer was not a 200 with its interval's
//! bytes, a connection failed, or a write was refused; the targets
//! are reported as met or missed without failing the run.

use crate::bench::args::{PollArgs, PollMode};
use crate::bench::error::BenchError;
use crate::bench::http::server_rss;
use crate::bench::keepalive::KeepAlive;
use crate::bench::nginx::Nginx;
use crate::bench::poll::api::{self, Producer, Viewer, ViewerRequests};
use crate::bench::poll::clock::{INTERVAL_MS, ServerClock};
use crate::bench::poll::closed::{self, ClosedOutcome, ClosedPlan};
use crate::bench::poll::ingest::{Ingest, IngestOutcome, IngestPlan, Rates};
use crate::bench::poll::viewers::{LivePlan, Phase, PhaseFigures, Viewers};
use crate::bench::progress::{Progress, si};
use crate::bench::report::{Latency, Report, bytes, micros};
use crate::bench::target::{Target, random_prefix};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The closed-interval target, requests/s.
pub const CLOSED_TARGET_PER_SECOND: f64 = 80_000.0;

/// The live target: p99 delay from the close, µs.
pub const LIVE_TARGET_P99_US: u64 = 30_000;

/// The ingest target: poll p99 with ingest / without.
pub const INGEST_TARGET_RATIO: f64 = 1.2;

/// Extra time every opened quiz lasts beyond the planned run.
const QUIZ_SLACK: Duration = Duration::from_secs(120);

/// Runs the poll scenario and prints its report.
pub async fn run(args: PollArgs) -> Result<(), BenchError> {
    args.validate()?;
    let target = Target::resolve(&args.server).await?;
    let secret = match &args.jwt_secret {
        Some(secret) if !secret.trim().is_empty() => secret.trim().to_string(),
        Some(_) => return Err(BenchError::usage("--jwt-secret is empty")),
        None => api::realm_secret_from(&args.server.data_dir, &args.realm)?,
    };
    let run_id = random_prefix().trim_start_matches("bench.").to_string();
    let mut producer = Producer::connect(&target).await?;
    let stream = producer
        .create_stream(&format!("tidings bench poll {run_id}"))
        .await?;
    let requests = ViewerRequests::new(&target, &stream.id, &args.realm);
    let context = Context {
        args: &args,
        target: &target,
        requests,
        secret,
        run_id,
        stream_id: stream.id.clone(),
    };
    let result = match args.mode {
        PollMode::Closed => closed_mode(&context).await,
        PollMode::Live => live_mode(&context).await,
    };
    let ended = producer.end_stream(&stream.id).await;
    let report = result?;
    ended?;
    report.emit(args.output.json)
}

/// What both modes share.
struct Context<'a> {
    args: &'a PollArgs,
    target: &'a Target,
    requests: ViewerRequests,
    secret: String,
    run_id: String,
    stream_id: String,
}

impl Context<'_> {
    /// `count` viewers with tokens valid for `lifetime`.
    fn viewers(&self, count: usize, lifetime: Duration) -> Result<Vec<Viewer>, BenchError> {
        api::mint_viewers(&self.secret, &self.run_id, count, lifetime)
    }

    /// Key facts of the run for both report forms.
    fn setup_json(&self) -> Value {
        json!({
            "server": "tidings",
            "url": self.args.server.url,
            "streamId": self.stream_id,
            "realm": self.args.realm,
            "durationSeconds": self.args.duration.as_secs_f64(),
        })
    }
}

// ---------------------------------------------------------------- closed

/// The closed intervals of a run and their bytes.
struct ClosedIntervals {
    intervals: Vec<i64>,
    bodies: Vec<Vec<u8>>,
}

/// Posts one chat per interval and fetches each interval's bytes once it closed.
async fn prepare_intervals(
    context: &Context<'_>,
    author: &Viewer,
    count: usize,
) -> Result<ClosedIntervals, BenchError> {
    let mut connection = KeepAlive::connect(context.target).await?;
    let mut prepared = ClosedIntervals {
        intervals: Vec::with_capacity(count),
        bodies: Vec::with_capacity(count),
    };
    while prepared.intervals.len() < count {
        let text = format!("closed-interval bench {}", prepared.intervals.len());
        let answer = connection
            .exchange(&context.requests.chat(author, &text)?)
            .await?;
        if answer.status != 201 {
            return Err(BenchError::run(format!(
                "posting a chat answered {}: {}",
                answer.status,
                String::from_utf8_lossy(answer.body)
            )));
        }
        let interval = api::chat_interval(answer.body)?;
        // The current interval is answered once it closed, so the next chat lands in a later one.
        let answer = connection
            .exchange(&context.requests.poll(interval, author)?)
            .await?;
        if answer.status != 200 {
            return Err(BenchError::run(format!(
                "polling interval {interval} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(answer.body)
            )));
        }
        prepared.intervals.push(interval);
        prepared.bodies.push(answer.body.to_vec());
    }
    Ok(prepared)
}

/// `--mode closed`: Tidings, then (with `--peer nginx`) nginx with the same bytes.
async fn closed_mode(context: &Context<'_>) -> Result<Report, BenchError> {
    let args = context.args;
    let mut progress = Progress::new(args.output.quiet);
    let lifetime = args.duration * 2 + Duration::from_secs(60);
    let viewers = context.viewers(args.connections, lifetime)?;
    progress.note(&format!(
        "preparing {} closed intervals with one chat each…",
        args.intervals
    ));
    let prepared = prepare_intervals(context, &viewers[0], args.intervals).await?;
    let expected = Arc::new(prepared.bodies.clone());
    let plan_for = |target: &Target, requests: &ViewerRequests| -> Result<ClosedPlan, BenchError> {
        let per_connection = viewers
            .iter()
            .map(|viewer| {
                prepared
                    .intervals
                    .iter()
                    .map(|interval| requests.poll(*interval, viewer))
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClosedPlan {
            target: target.clone(),
            requests: per_connection,
            expected: Arc::clone(&expected),
            threads: args.threads,
            duration: args.duration,
        })
    };
    progress.note(&format!(
        "tidings: {} connections for {:?}…",
        args.connections, args.duration
    ));
    let tidings = closed::run(plan_for(context.target, &context.requests)?).await?;
    let nginx = match args.peer {
        Some(_) => {
            let files: Vec<(i64, Vec<u8>)> = prepared
                .intervals
                .iter()
                .copied()
                .zip(prepared.bodies.iter().cloned())
                .collect();
            let server = Nginx::start(&files)?;
            progress.note(&format!(
                "{}: {} connections for {:?}…",
                server.version, args.connections, args.duration
            ));
            let authority = server.addr.to_string();
            let target = Target {
                addr: server.addr,
                authority: authority.clone(),
                api_key: String::new(),
                tls: None,
                ..context.target.clone()
            };
            let outcome = closed::run(plan_for(
                &target,
                &context.requests.for_authority(&authority),
            )?)
            .await?;
            Some((server.version.clone(), outcome))
        }
        None => None,
    };
    progress.clear();
    Ok(closed_report(context, &prepared, &tidings, nginx.as_ref()))
}

/// The JSON figures of one closed-mode target.
fn closed_json(outcome: &ClosedOutcome) -> Value {
    json!({
        "requests": outcome.requests,
        "requestsPerSecond": outcome.per_second(),
        "elapsedSeconds": outcome.elapsed.as_secs_f64(),
        "latency": Latency::of(&outcome.latency),
        "identical": outcome.identical,
        "mismatched": outcome.mismatched,
        "otherStatuses": outcome.other_statuses,
        "errors": outcome.errors,
        "problems": outcome.problems,
    })
}

/// The table rows of one closed-mode target.
fn closed_rows(outcome: &ClosedOutcome) -> Vec<(&'static str, String)> {
    vec![
        (
            "requests",
            format!(
                "{} in {:.2} s",
                outcome.requests,
                outcome.elapsed.as_secs_f64()
            ),
        ),
        ("requests/s", si(outcome.per_second())),
        ("latency", Latency::of(&outcome.latency).brief()),
        (
            "identical 200 bodies",
            format!("{} (differing: {})", outcome.identical, outcome.mismatched),
        ),
        ("other statuses", outcome.statuses_text()),
        ("connection errors", outcome.errors.to_string()),
    ]
}

/// Adds the failures of one closed-mode target.
fn closed_failures(report: &mut Report, server: &str, outcome: &ClosedOutcome) {
    report.fail_if(
        !outcome.is_clean(),
        format!(
            "{server}: {} differing bodies, other statuses {}, {} errors ({})",
            outcome.mismatched,
            outcome.statuses_text(),
            outcome.errors,
            outcome.problems.join("; ")
        ),
    );
    report.fail_if(
        outcome.requests == 0,
        format!("{server}: no request was answered"),
    );
}

/// The closed-mode report.
fn closed_report(
    context: &Context<'_>,
    prepared: &ClosedIntervals,
    tidings: &ClosedOutcome,
    nginx: Option<&(String, ClosedOutcome)>,
) -> Report {
    let args = context.args;
    let sizes: Vec<usize> = prepared.bodies.iter().map(Vec::len).collect();
    let ratio = nginx.map(|(_, peer)| tidings.per_second() / peer.per_second().max(1e-9));
    let mut setup = context.setup_json();
    setup["intervals"] = json!(prepared.intervals);
    setup["bodyBytes"] = json!(sizes);
    setup["connections"] = json!(args.connections);
    setup["threads"] = json!(args.threads);
    let mut report = Report::new(
        "poll",
        json!({
            "mode": "closed",
            "setup": setup,
            "tidings": closed_json(tidings),
            "nginx": nginx.map(|(version, outcome)| {
                let mut figures = closed_json(outcome);
                figures["version"] = json!(version);
                figures
            }),
            "ratio": ratio,
        }),
    );
    report.section(
        "setup",
        vec![
            (
                "mode",
                "closed intervals, HTTP/1.1 keep-alive, JWT per connection".into(),
            ),
            (
                "connections",
                format!("{} on {} client thread(s)", args.connections, args.threads),
            ),
            (
                "intervals",
                format!("{} (bodies {sizes:?} bytes)", prepared.intervals.len()),
            ),
            ("duration", format!("{:?}", args.duration)),
        ],
    );
    report.section("tidings", closed_rows(tidings));
    closed_failures(&mut report, "tidings", tidings);
    if let Some((version, outcome)) = nginx {
        report.section(
            &format!("{version} (2 workers, same bytes from files)"),
            closed_rows(outcome),
        );
        closed_failures(&mut report, "nginx", outcome);
    }
    let mut targets = vec![(
        "≥ 80 000 requests/s",
        met(
            tidings.per_second() >= CLOSED_TARGET_PER_SECOND,
            &si(tidings.per_second()),
        ),
    )];
    if let Some(ratio) = ratio {
        targets.push((
            "≥ nginx in the same run",
            met(ratio >= 1.0, &format!("tidings / nginx = {ratio:.2}")),
        ));
    }
    report.section("targets (issue 12)", targets);
    report
}

/// `met (…)` or `MISSED (…)`.
fn met(ok: bool, figure: &str) -> String {
    if ok {
        format!("met ({figure})")
    } else {
        format!("MISSED ({figure})")
    }
}

// ---------------------------------------------------------------- live

/// Figures of one measured live phase, with the server's RSS at its end.
struct PhaseResult {
    figures: PhaseFigures,
    expected_polls: u64,
    rss: Option<u64>,
}

/// `--mode live`: ramp, warm-up, quiet phase, then the ingest phase when asked.
async fn live_mode(context: &Context<'_>) -> Result<Report, BenchError> {
    let args = context.args;
    let mut progress = Progress::new(args.output.quiet);
    let phases = if args.ingest { 2 } else { 1 };
    let ramp = Duration::from_secs_f64(args.viewers as f64 / args.connect_rate);
    let lifetime = ramp + args.warmup + args.duration * phases + Duration::from_secs(60);
    let viewers = Arc::new(context.viewers(args.viewers, lifetime)?);
    let clock = api::sync_clock(context.target, args.clock_samples).await?;
    let rss_before = server_rss(context.target, args.server_pid).await;
    let running = Viewers::start(LivePlan {
        target: context.target.clone(),
        requests: context.requests.clone(),
        viewers: Arc::clone(&viewers),
        per_connection: args.viewers_per_connection,
        connect_rate: args.connect_rate,
        lead: args.lead,
        clock,
    });
    let outcome = measure_live(context, &running, &viewers, &mut progress).await;
    let identity = running.identity();
    let problems = running.problems();
    let connections = running.connections();
    running.stop().await?;
    progress.clear();
    let (quiet, ingest) = outcome?;
    let live = LiveResults {
        clock,
        connections,
        rss_before,
        quiet,
        ingest,
        identity,
        problems,
    };
    Ok(live_report(context, &live))
}

/// Waits for the ramp and warm-up, then measures the phases. A phase's
/// figures are read [`settle`] after the next phase began, so that the polls
/// it sent have been answered (the writers start with the ingest phase).
async fn measure_live(
    context: &Context<'_>,
    running: &Viewers,
    viewers: &Arc<Vec<Viewer>>,
    progress: &mut Progress,
) -> Result<(PhaseResult, Option<(PhaseResult, IngestOutcome)>), BenchError> {
    let args = context.args;
    wait_for_connections(running, progress).await?;
    hold(running, Phase::Warmup, args.warmup, progress).await;
    running.set_phase(Phase::Quiet);
    hold(running, Phase::Quiet, args.duration, progress).await;
    if !args.ingest {
        running.set_phase(Phase::Stopping);
        let quiet = settle_and_read(context, running, Phase::Quiet).await;
        return Ok((quiet, None));
    }
    let ingest = Ingest::start(
        ingest_plan(context, viewers),
        Producer::connect(context.target).await?,
    )
    .await?;
    running.set_phase(Phase::Ingest);
    let quiet = settle_and_read(context, running, Phase::Quiet).await;
    let rest = args.duration.saturating_sub(settle(args.lead));
    hold(running, Phase::Ingest, rest, progress).await;
    running.set_phase(Phase::Stopping);
    let loaded = settle_and_read(context, running, Phase::Ingest).await;
    let writes = ingest.stop().await?;
    Ok((quiet, Some((loaded, writes))))
}

/// The writers of `--ingest`.
fn ingest_plan(context: &Context<'_>, viewers: &Arc<Vec<Viewer>>) -> IngestPlan {
    let args = context.args;
    IngestPlan {
        target: context.target.clone(),
        requests: context.requests.clone(),
        viewers: Arc::clone(viewers),
        rates: Rates {
            hearts: args.hearts_rate,
            chats: args.chats_rate,
            answers: args.answers_rate,
        },
        connections: args.ingest_connections,
        stream_id: context.stream_id.clone(),
        quiz_duration: args.duration + QUIZ_SLACK,
    }
}

/// How long after a phase ended its last polls are answered: the lead and one interval.
pub fn settle(lead: Duration) -> Duration {
    lead + Duration::from_millis(INTERVAL_MS as u64)
}

/// Waits until every connection opened or failed; any failure ends the run.
async fn wait_for_connections(
    running: &Viewers,
    progress: &mut Progress,
) -> Result<(), BenchError> {
    let total = running.connections() as u64;
    loop {
        let (open, failed) = running.connected();
        if failed > 0 {
            return Err(BenchError::run(format!(
                "{failed} of {total} viewer connections could not open: {}",
                running.problems().join("; ")
            )));
        }
        if open >= total {
            return Ok(());
        }
        progress.update(&format!("connecting · open {open}/{total}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Lets the viewers poll for `length`, showing progress.
async fn hold(running: &Viewers, phase: Phase, length: Duration, progress: &mut Progress) {
    let until = tokio::time::Instant::now() + length;
    while tokio::time::Instant::now() < until {
        let figures = running.figures(phase);
        let (open, _) = running.connected();
        progress.update(&format!(
            "{phase:?} · open {open} · polls {} · p99 so far {}",
            figures.polls,
            micros(figures.delay.percentile(99.0))
        ));
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
    }
}

/// Waits [`settle`], then reads a finished phase's figures and the server's RSS.
async fn settle_and_read(context: &Context<'_>, running: &Viewers, phase: Phase) -> PhaseResult {
    let args = context.args;
    tokio::time::sleep(settle(args.lead)).await;
    let rss = server_rss(context.target, args.server_pid).await;
    let intervals = args.duration.as_millis() as u64 / INTERVAL_MS as u64;
    PhaseResult {
        figures: running.figures(phase),
        expected_polls: intervals * args.viewers as u64,
        rss,
    }
}

/// Everything the live report shows.
struct LiveResults {
    clock: ServerClock,
    connections: usize,
    rss_before: Option<u64>,
    quiet: PhaseResult,
    ingest: Option<(PhaseResult, IngestOutcome)>,
    identity: crate::bench::poll::bodies::Identity,
    problems: Vec<String>,
}

/// Share of the expected polls that were answered, in percent.
pub fn coverage(polls: u64, expected: u64) -> f64 {
    if expected == 0 {
        return 0.0;
    }
    100.0 * polls as f64 / expected as f64
}

/// p99 with ingest over p99 without (`None` without samples).
pub fn p99_ratio(quiet: &PhaseFigures, loaded: &PhaseFigures) -> Option<f64> {
    let before = quiet.delay.percentile(99.0);
    (quiet.delay.count() > 0 && loaded.delay.count() > 0 && before > 0)
        .then(|| loaded.delay.percentile(99.0) as f64 / before as f64)
}

fn phase_json(phase: &PhaseResult) -> Value {
    let figures = &phase.figures;
    json!({
        "polls": figures.polls,
        "expectedPolls": phase.expected_polls,
        "coveragePercent": coverage(figures.polls, phase.expected_polls),
        "delayFromClose": Latency::of(&figures.delay),
        "otherStatus": figures.other_status,
        "errors": figures.errors,
        "early": figures.early,
        "rssBytes": phase.rss,
    })
}

fn phase_rows(phase: &PhaseResult) -> Vec<(&'static str, String)> {
    let figures = &phase.figures;
    vec![
        (
            "polls answered",
            format!(
                "{} of {} expected ({:.1} %)",
                figures.polls,
                phase.expected_polls,
                coverage(figures.polls, phase.expected_polls)
            ),
        ),
        ("delay from close", Latency::of(&figures.delay).brief()),
        (
            "not 200 / errors / early",
            format!(
                "{} / {} / {}",
                figures.other_status, figures.errors, figures.early
            ),
        ),
        (
            "server RSS",
            phase.rss.map_or("unknown".into(), |rss| bytes(rss as f64)),
        ),
    ]
}

fn writes_json(writes: &IngestOutcome) -> Value {
    let seconds = writes.elapsed.as_secs_f64().max(1e-9);
    let kinds: serde_json::Map<String, Value> = writes
        .kinds
        .iter()
        .map(|(kind, figures)| {
            let value = json!({
                "accepted": figures.accepted,
                "acceptedPerSecond": figures.accepted as f64 / seconds,
                "refused": figures.refused,
                "errors": figures.errors,
                "behind": figures.behind,
                "latency": Latency::of(&figures.latency),
            });
            (kind.name().to_string(), value)
        })
        .collect();
    json!({ "kinds": kinds, "quizzes": writes.quizzes, "elapsedSeconds": seconds, "problems": writes.problems })
}

fn writes_rows(writes: &IngestOutcome) -> Vec<(&'static str, String)> {
    let seconds = writes.elapsed.as_secs_f64().max(1e-9);
    let mut rows: Vec<(&'static str, String)> = writes
        .kinds
        .iter()
        .map(|(kind, figures)| {
            let text = format!(
                "{}/s accepted · refused {} · errors {} · behind {} · {}",
                si(figures.accepted as f64 / seconds),
                figures.refused,
                figures.errors,
                figures.behind,
                Latency::of(&figures.latency).brief()
            );
            (kind.name(), text)
        })
        .collect();
    rows.push(("quizzes opened", writes.quizzes.to_string()));
    rows
}

/// The live-mode report.
fn live_report(context: &Context<'_>, live: &LiveResults) -> Report {
    let args = context.args;
    let ratio = live
        .ingest
        .as_ref()
        .and_then(|(loaded, _)| p99_ratio(&live.quiet.figures, &loaded.figures));
    let mut setup = context.setup_json();
    setup["viewers"] = json!(args.viewers);
    setup["connections"] = json!(live.connections);
    setup["viewersPerConnection"] = json!(args.viewers_per_connection);
    setup["leadMs"] = json!(args.lead.as_secs_f64() * 1e3);
    setup["warmupSeconds"] = json!(args.warmup.as_secs_f64());
    setup["clockOffsetUs"] = json!(live.clock.offset_us);
    setup["clockRoundTripUs"] = json!(live.clock.round_trip_us);
    let identity = live.identity;
    let mut report = Report::new(
        "poll",
        json!({
            "mode": "live",
            "setup": setup,
            "rssBeforeBytes": live.rss_before,
            "quiet": phase_json(&live.quiet),
            "ingest": live.ingest.as_ref().map(|(loaded, writes)| {
                let mut value = phase_json(loaded);
                value["writes"] = writes_json(writes);
                value
            }),
            "p99Ratio": ratio,
            "identity": {
                "intervals": identity.intervals,
                "compared": identity.compared,
                "mismatched": identity.mismatched,
                "mismatchedIntervals": identity.mismatched_intervals,
            },
            "problems": live.problems,
        }),
    );
    report.section(
        "setup",
        vec![
            (
                "viewers",
                format!(
                    "{} on {} keep-alive connections ({} per connection)",
                    args.viewers, live.connections, args.viewers_per_connection
                ),
            ),
            (
                "poll sent",
                format!(
                    "{} before each interval's close",
                    humantime::format_duration(args.lead)
                ),
            ),
            (
                "clock offset",
                format!(
                    "{} µs (round trip {} µs)",
                    live.clock.offset_us, live.clock.round_trip_us
                ),
            ),
            (
                "phases",
                format!("warm-up {:?}, then {:?} each", args.warmup, args.duration),
            ),
            (
                "server RSS before",
                live.rss_before
                    .map_or("unknown".into(), |rss| bytes(rss as f64)),
            ),
        ],
    );
    report.section("polling alone", phase_rows(&live.quiet));
    if let Some((loaded, writes)) = &live.ingest {
        report.section("polling while ingesting", phase_rows(loaded));
        report.section("writes", writes_rows(writes));
    }
    report.section(
        "identical bytes",
        vec![(
            "200 bodies",
            format!(
                "{} compared over {} intervals, {} differing (in {} intervals)",
                identity.compared,
                identity.intervals,
                identity.mismatched,
                identity.mismatched_intervals
            ),
        )],
    );
    live_targets(&mut report, live, ratio);
    live_failures(&mut report, live);
    report
}

fn live_targets(report: &mut Report, live: &LiveResults, ratio: Option<f64>) {
    let p99 = live.quiet.figures.delay.percentile(99.0);
    let mut rows = vec![(
        "p99 ≤ 30 ms from the close",
        met(p99 <= LIVE_TARGET_P99_US, &micros(p99)),
    )];
    if let Some(ratio) = ratio {
        rows.push((
            "ingest raises p99 by ≤ 20 %",
            met(
                ratio <= INGEST_TARGET_RATIO,
                &format!("with / without = {ratio:.2}"),
            ),
        ));
    }
    report.section("targets (issue 12)", rows);
}

fn live_failures(report: &mut Report, live: &LiveResults) {
    let problems = live.problems.join("; ");
    let mut phases = vec![("quiet", &live.quiet)];
    if let Some((loaded, _)) = &live.ingest {
        phases.push(("ingest", loaded));
    }
    for (name, phase) in phases {
        let figures = &phase.figures;
        report.fail_if(
            figures.other_status + figures.errors > 0,
            format!(
                "{name}: {} polls not answered 200, {} without an answer ({problems})",
                figures.other_status, figures.errors
            ),
        );
        report.fail_if(figures.polls == 0, format!("{name}: no poll was answered"));
    }
    report.fail_if(
        live.identity.mismatched > 0,
        format!(
            "{} bodies differed from their interval's first answer",
            live.identity.mismatched
        ),
    );
    if let Some((_, writes)) = &live.ingest {
        let failed: u64 = writes
            .kinds
            .iter()
            .map(|(_, figures)| figures.refused + figures.errors)
            .sum();
        report.fail_if(
            failed > 0,
            format!(
                "{failed} writes refused or failed ({})",
                writes.problems.join("; ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::histogram::Histogram;

    #[test]
    fn coverage_and_ratio_math() {
        assert_eq!(coverage(0, 0), 0.0);
        assert_eq!(coverage(399, 400), 99.75);
        let phase = |values: &[u64]| {
            let mut delay = Histogram::default();
            for value in values {
                delay.record(*value);
            }
            PhaseFigures {
                delay,
                ..PhaseFigures::default()
            }
        };
        let quiet = phase(&[1_000; 100]);
        let loaded = phase(&[1_100; 100]);
        let ratio = p99_ratio(&quiet, &loaded).expect("samples");
        assert!((ratio - 1.1).abs() < 0.02, "{ratio}");
        assert_eq!(p99_ratio(&quiet, &PhaseFigures::default()), None);
        assert_eq!(settle(Duration::ZERO), Duration::from_millis(250));
        assert_eq!(
            settle(Duration::from_millis(100)),
            Duration::from_millis(350)
        );
        assert_eq!(met(true, "1"), "met (1)");
        assert_eq!(met(false, "1"), "MISSED (1)");
    }
}
