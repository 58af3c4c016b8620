//! `tidings bench tickets`: the tickets module (spec 004) under load.
//!
//! Every call is a user's: the bench signs JWTs of `--realm` itself (users
//! `tk-<run>-user<i>` without a role, agents `tk-<run>-agent<i>` with
//! `agent`, and one `tk-<run>-admin` with `admin` who makes the changes and
//! the SLA policy) and names the tenant in `x-tenantid`; no API key is used.
//!
//! * `notify`: `--users` users hold their notification stream; the admin
//!   makes `--rate` ticket changes per second for `--duration`
//!   (`--change`: creates assigned to the next user, reassignments, or
//!   both); every notification an acknowledged change owes must arrive
//!   exactly once ([`crate::bench::tickets::ledger`]): change→notification
//!   latency, deliveries/s; lost, duplicated, extra or unexpected
//!   notifications, failed changes and stream errors fail the run (exit 1).
//! * `sla`: the policy and `--tickets` tickets of [`crate::bench::tickets::sla`],
//!   `--due` of them due in one second; the agents hold their streams; after
//!   the due time plus `--grace`: how late each due `slaBreach` came
//!   (p50/p99/max), whether all came within 1 s, exactly once.
//!   `--create-only` stops after creating (state in `--state`);
//!   `--observe-only` later reads the agents' inboxes instead of streams
//!   (the restart variant of `scripts/bench-tickets.sh`).
//! * `inbox`: changes as fast as answered until `--notifications` are
//!   stored over `--users` inboxes; then `--readers` users read their count
//!   and first page for `--duration`: requests/s and latency of each.

use crate::bench::args::ServerArgs;
use crate::bench::error::BenchError;
use crate::bench::progress::{Progress, rate, si};
use crate::bench::report::{Latency, Report, micros};
use crate::bench::target::{Target, random_prefix};
use crate::bench::tickets::api::Api;
use crate::bench::tickets::args::{Mode, TicketsArgs};
use crate::bench::tickets::changes::{self, ChangeOutcome, ChangePlan};
use crate::bench::tickets::identity::{Identity, Population, Realm};
use crate::bench::tickets::ledger::{self, Settled};
use crate::bench::tickets::listeners::{Listeners, Pace, Stats};
use crate::bench::tickets::readers::{self, Endpoint, ReadOutcome};
use crate::bench::tickets::sla::{self, Creation, Seen, SlaPlan, SlaState, Verdict};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// Placeholder key so that resolving the target needs no admin key (none is sent).
const NO_KEY: &str = "unused";

/// Progress refresh while waiting for the last notifications.
const TICK: Duration = Duration::from_millis(100);

/// Runs the scenario and prints its report.
pub async fn run(args: TicketsArgs) -> Result<(), BenchError> {
    args.validate()?;
    let mut progress = Progress::new(args.output.quiet);
    let context = Context::open(&args).await?;
    let report = match args.mode {
        Mode::Notify => notify(&context, &mut progress).await?,
        Mode::Sla => sla_mode(&context, &mut progress).await?,
        Mode::Inbox => inbox(&context, &mut progress).await?,
    };
    progress.clear();
    report.emit(args.output.json)
}

/// What every mode shares.
struct Context<'a> {
    args: &'a TicketsArgs,
    target: Target,
    realm: Realm,
    /// This run's id, in every subject and title.
    run: String,
    /// The admin who makes changes and the policy.
    admin: Identity,
}

impl<'a> Context<'a> {
    /// Resolves the server and the realm, and signs the admin's token.
    async fn open(args: &'a TicketsArgs) -> Result<Self, BenchError> {
        let realm = Realm::resolve(args)?;
        let server = ServerArgs {
            api_key: Some(NO_KEY.into()),
            ..args.server.clone()
        };
        let mut target = Target::resolve(&server).await?;
        target.api_key.clear();
        let run = random_prefix().trim_start_matches("bench.").to_string();
        let admin = realm.identity(format!("tk-{run}-admin"), &["admin"], args.token_lifetime())?;
        Ok(Self {
            args,
            target,
            realm,
            run,
            admin,
        })
    }

    /// `count` users (`label`) with `roles`.
    fn population(
        &self,
        label: &str,
        count: usize,
        roles: &[&str],
    ) -> Result<Population, BenchError> {
        Population::mint(
            &self.realm,
            &self.run,
            label,
            count,
            roles,
            self.args.token_lifetime(),
        )
    }

    /// Opens every stream of `population`; fails when any could not open.
    async fn listen(
        &self,
        population: &Population,
        progress: &mut Progress,
    ) -> Result<(Listeners, Duration), BenchError> {
        let pace = Pace {
            connect_rate: self.args.connect_rate,
            connect_timeout: self.args.connect_timeout,
        };
        let began = Instant::now();
        let mut listeners = Listeners::start(&self.target, &self.realm, population.tokens(), pace);
        listeners.wait_connected(progress).await?;
        Ok((listeners, began.elapsed()))
    }

    /// The REST connections for the changes or set-up.
    async fn api(&self) -> Result<Api, BenchError> {
        Api::connect(&self.target, &self.realm, self.args.publishers).await
    }
}

/// Waits until `expected` notifications have been received or `grace` has passed.
async fn drain(
    listeners: &Listeners,
    expected: u64,
    grace: Duration,
    progress: &mut Progress,
) -> Duration {
    let began = Instant::now();
    while began.elapsed() < grace {
        let received = Stats::read(&listeners.stats().received);
        if received >= expected {
            break;
        }
        progress.update(&format!("draining · received {received} of {expected}"));
        tokio::time::sleep(TICK).await;
    }
    began.elapsed()
}

/// `notify`: streams, paced changes, exact accounting.
async fn notify(context: &Context<'_>, progress: &mut Progress) -> Result<Report, BenchError> {
    let args = context.args;
    let users = context.population("user", args.users(), &[])?;
    let (mut listeners, connecting) = context.listen(&users, progress).await?;
    let subjects = users.subjects();
    let plan = ChangePlan {
        kind: args.change,
        recipients: &subjects,
        rate: Some(args.rate),
        duration: Some(args.duration),
        owed_target: None,
        senders: args.publishers,
        run: &context.run,
    };
    let api = context.api().await?;
    let changed = changes::run(&api, &context.admin, &plan, progress).await?;
    let drained = drain(
        &listeners,
        changed.expected.len() as u64,
        args.grace,
        progress,
    )
    .await;
    let receipts = listeners.stop().await;
    let settled = ledger::settle(&changed.expected, &receipts);
    let stats = listeners.stats();
    let mut report = Report::new("tickets", json!({}));
    let setup = json!({
        "users": users.users.len(),
        "connectSeconds": connecting.as_secs_f64(),
        "change": args.change.name(),
        "poolSetupSeconds": changed.pool_setup.as_secs_f64(),
    });
    report.section(
        "setup",
        vec![
            ("mode", "notify".into()),
            (
                "users (notification streams)",
                users.users.len().to_string(),
            ),
            ("all streams open in", seconds(connecting)),
            ("changes", args.change.name().into()),
            ("reassignment pool set up in", seconds(changed.pool_setup)),
        ],
    );
    let changes_json = changes_section(&mut report, &changed, args.rate);
    let window = changed.window + drained;
    let delivery = delivery_section(&mut report, &settled, window, stats);
    report.fail_if(
        !settled.is_exact(),
        format!(
            "{} lost, {} duplicated, {} extra, {} unexpected notifications",
            settled.lost, settled.duplicated, settled.extra, settled.unexpected
        ),
    );
    fail_on_stream_problems(&mut report, stats);
    report.json = json!({
        "mode": "notify",
        "setup": setup,
        "changes": changes_json,
        "delivery": delivery,
    });
    Ok(report)
}

/// Seconds with two decimals.
fn seconds(duration: Duration) -> String {
    format!("{:.2} s", duration.as_secs_f64())
}

/// The changes' rows and JSON; failed changes fail the run.
fn changes_section(report: &mut Report, changed: &ChangeOutcome, target_rate: f64) -> Value {
    let ack = Latency::of(&changed.ack_latency);
    report.section(
        "changes",
        vec![
            ("sent", changed.sent.to_string()),
            ("acknowledged", changed.acknowledged.to_string()),
            ("failed", changed.failed.to_string()),
            (
                "rate (target)",
                format!(
                    "{} ({}/s)",
                    rate(changed.acknowledged, changed.window),
                    si(target_rate)
                ),
            ),
            ("request → acknowledgement", ack.brief()),
        ],
    );
    report.fail_if(
        changed.failed > 0,
        format!(
            "{} changes failed: {}",
            changed.failed,
            changed.problems.join("; ")
        ),
    );
    json!({
        "sent": changed.sent,
        "acknowledged": changed.acknowledged,
        "failed": changed.failed,
        "seconds": changed.window.as_secs_f64(),
        "ackLatency": ack,
    })
}

/// The deliveries' rows and JSON.
fn delivery_section(
    report: &mut Report,
    settled: &Settled,
    window: Duration,
    stats: &Stats,
) -> Value {
    let latency = Latency::of(&settled.latency);
    let reconnects = Stats::read(&stats.reconnects);
    report.section(
        "notifications",
        vec![
            ("owed by acknowledged changes", settled.expected.to_string()),
            (
                "received (paired with their change)",
                settled.delivered.to_string(),
            ),
            ("deliveries", rate(settled.delivered, window)),
            ("change → notification", latency.brief()),
            ("lost", settled.lost.to_string()),
            ("duplicated (same id twice)", settled.duplicated.to_string()),
            ("extra (more than the changes)", settled.extra.to_string()),
            (
                "unexpected (no change owed them)",
                settled.unexpected.to_string(),
            ),
            ("streams reopened", reconnects.to_string()),
        ],
    );
    json!({
        "expected": settled.expected,
        "deliveries": settled.delivered,
        "lost": settled.lost,
        "duplicated": settled.duplicated,
        "extra": settled.extra,
        "unexpected": settled.unexpected,
        "deliveriesPerSecond": settled.delivered as f64 / window.as_secs_f64().max(1e-9),
        "latency": latency,
        "reconnects": reconnects,
    })
}

/// Stream `error` events or unreadable notifications fail the run.
fn fail_on_stream_problems(report: &mut Report, stats: &Stats) {
    let seen = Stats::read(&stats.problems_seen);
    report.fail_if(
        seen > 0,
        format!("{seen} stream problems: {}", stats.problems().join("; ")),
    );
}

/// `sla`: the policy, the tickets, the breaches (or, with flags, half of it).
async fn sla_mode(context: &Context<'_>, progress: &mut Progress) -> Result<Report, BenchError> {
    let api = context.api().await?;
    if context.args.observe_only {
        return sla_observe(context, &api, progress).await;
    }
    let args = context.args;
    let agents = context.population(sla::AGENT_LABEL, args.agents(), &["agent"])?;
    let mut listeners = if args.create_only {
        None
    } else {
        Some(context.listen(&agents, progress).await?.0)
    };
    let plan = SlaPlan {
        tickets: args.tickets,
        due: args.due,
        due_units: args.due_units(),
        unit: args.sla_unit,
        in_flight: args.publishers,
    };
    let creation = sla::create(
        &api,
        &context.admin,
        &agents.users,
        &context.run,
        plan,
        progress,
    )
    .await?;
    if let Some(path) = &args.state {
        creation.state.save(path)?;
    }
    let Some(listeners) = listeners.as_mut() else {
        return Ok(sla_report(&creation.state, Some(&creation), None));
    };
    progress.note("sla: waiting for the due time and the grace…");
    sla::sleep_until_ms(creation.state.last_due_ms + millis(args.grace)).await;
    let seen = Seen::of_receipts(listeners.stop().await);
    let verdict = sla::judge(&creation.state, &seen);
    let observed = Some((&verdict, "notification streams"));
    let mut report = sla_report(&creation.state, Some(&creation), observed);
    fail_on_stream_problems(&mut report, listeners.stats());
    Ok(report)
}

/// `sla --observe-only`: after the due time of `--state`, the agents' inboxes.
async fn sla_observe(
    context: &Context<'_>,
    api: &Api,
    progress: &mut Progress,
) -> Result<Report, BenchError> {
    let args = context.args;
    let path = args
        .state
        .as_deref()
        .ok_or_else(|| BenchError::usage("--observe-only needs --state"))?;
    let state = SlaState::load(path)?;
    let agents = state.agents(&context.realm, args.token_lifetime())?;
    progress.note("sla: waiting for the due time to pass…");
    sla::sleep_until_ms(state.last_due_ms + millis(args.grace)).await;
    let seen = sla::read_inboxes(api, &agents.users, args.publishers).await?;
    let verdict = sla::judge(&state, &seen);
    Ok(sla_report(
        &state,
        None,
        Some((&verdict, "inbox (createdAt)")),
    ))
}

/// A duration in whole milliseconds.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The `sla` report: the tickets, then the breaches `observed` (with how), if any.
fn sla_report(
    state: &SlaState,
    creation: Option<&Creation>,
    observed: Option<(&Verdict, &str)>,
) -> Report {
    let mut report = Report::new("tickets", json!({}));
    let mut rows = vec![
        ("mode", "sla".to_string()),
        (
            "agents (one stream or inbox each)",
            state.agents.to_string(),
        ),
        ("tickets", state.created.to_string()),
        (
            "due in the same second (planned / as answered)",
            format!("{} / {}", state.due.len(), state.due_in_second()),
        ),
        (
            "due tickets' deadlines span",
            micros(state.due_spread_ms() * 1000),
        ),
    ];
    if let Some(creation) = creation {
        rows.push(("created in", seconds(creation.took)));
        rows.push((
            "all created before the first deadline",
            creation.done_before_due.to_string(),
        ));
    }
    report.section("setup", rows);
    let breaches = observed.map(|(verdict, source)| breaches_section(&mut report, verdict, source));
    report.json = json!({
        "mode": "sla",
        "setup": {
            "agents": state.agents,
            "tickets": state.created,
            "due": state.due.len(),
            "dueInSecond": state.due_in_second(),
            "dueSpreadMs": state.due_spread_ms(),
            "dueSecondMs": state.due_second_ms,
            "lastDueMs": state.last_due_ms,
            "createSeconds": creation.map(|c| c.took.as_secs_f64()),
            "createdBeforeDue": creation.map(|c| c.done_before_due),
        },
        "breaches": breaches,
    });
    report
}

/// The rows and JSON of the due tickets' breaches; inexact ones fail the run.
fn breaches_section(report: &mut Report, verdict: &Verdict, source: &str) -> Value {
    let lateness = Latency::of(&verdict.lateness);
    let all_within = verdict.fired == verdict.due && verdict.within_second == verdict.due;
    report.section(
        "breaches of the due tickets",
        vec![
            ("observed through", source.to_string()),
            (
                "fired / due",
                format!("{} / {}", verdict.fired, verdict.due),
            ),
            ("after the deadline", lateness.brief()),
            (
                "within 1 s of the deadline",
                format!("{} (all: {all_within})", verdict.within_second),
            ),
            ("lost", verdict.lost.to_string()),
            (
                "duplicated (any SLA notification)",
                verdict.duplicated.to_string(),
            ),
            ("before the deadline", verdict.early.to_string()),
            (
                "SLA notifications seen (all tickets)",
                verdict.sla_notices.to_string(),
            ),
        ],
    );
    report.fail_if(
        !verdict.is_exact(),
        format!(
            "{} lost, {} duplicated, {} early SLA notifications: {}",
            verdict.lost,
            verdict.duplicated,
            verdict.early,
            verdict.problems.join("; ")
        ),
    );
    json!({
        "observedThrough": source,
        "due": verdict.due,
        "fired": verdict.fired,
        "lost": verdict.lost,
        "duplicated": verdict.duplicated,
        "early": verdict.early,
        "withinSecond": verdict.within_second,
        "allWithinSecond": all_within,
        "lateness": lateness,
        "slaNotifications": verdict.sla_notices,
    })
}

/// `inbox`: fill the inboxes, then read them concurrently.
async fn inbox(context: &Context<'_>, progress: &mut Progress) -> Result<Report, BenchError> {
    let args = context.args;
    let users = context.population("user", args.users(), &[])?;
    let subjects = users.subjects();
    let plan = ChangePlan {
        kind: args.change,
        recipients: &subjects,
        rate: None,
        duration: None,
        owed_target: Some(args.notifications),
        senders: args.publishers,
        run: &context.run,
    };
    let api = context.api().await?;
    progress.note(&format!(
        "inbox: storing {} notifications…",
        args.notifications
    ));
    let filled = changes::run(&api, &context.admin, &plan, progress).await?;
    let read = readers::run(
        &context.target,
        &context.realm,
        &users.users,
        args.readers,
        args.duration,
        progress,
    )
    .await?;
    let mut report = Report::new("tickets", json!({}));
    let stored = filled.expected.len() as u64;
    report.section(
        "setup",
        vec![
            ("mode", "inbox".into()),
            ("users (inboxes)", users.users.len().to_string()),
            ("notifications stored", stored.to_string()),
            (
                "per user",
                format!("{:.1}", stored as f64 / users.users.len() as f64),
            ),
            (
                "changes",
                format!("{} {}", filled.acknowledged, args.change.name()),
            ),
            ("stored in", seconds(filled.window + filled.pool_setup)),
            ("readers", args.readers.to_string()),
        ],
    );
    report.fail_if(
        filled.failed > 0,
        format!(
            "{} changes failed: {}",
            filled.failed,
            filled.problems.join("; ")
        ),
    );
    let count = endpoint_section(
        &mut report,
        "GET /ticket/notification/count",
        &read.count,
        &read,
    );
    let list = endpoint_section(
        &mut report,
        "GET /ticket/notification/list?limit=20",
        &read.list,
        &read,
    );
    report.json = json!({
        "mode": "inbox",
        "setup": {
            "users": users.users.len(),
            "stored": stored,
            "fillSeconds": (filled.window + filled.pool_setup).as_secs_f64(),
            "readers": args.readers,
        },
        "count": count,
        "list": list,
        "seconds": read.window.as_secs_f64(),
    });
    Ok(report)
}

/// One endpoint's rows and JSON; errors fail the run.
fn endpoint_section(
    report: &mut Report,
    title: &str,
    endpoint: &Endpoint,
    read: &ReadOutcome,
) -> Value {
    let latency = Latency::of(&endpoint.latency);
    report.section(
        title,
        vec![
            ("requests (200)", endpoint.ok.to_string()),
            ("requests/s", rate(endpoint.ok, read.window)),
            ("latency", latency.brief()),
            ("errors", endpoint.errors.to_string()),
        ],
    );
    report.fail_if(
        endpoint.errors > 0,
        format!(
            "{title}: {} errors: {}",
            endpoint.errors,
            endpoint.problems.join("; ")
        ),
    );
    json!({
        "ok": endpoint.ok,
        "errors": endpoint.errors,
        "perSecond": endpoint.ok as f64 / read.window.as_secs_f64().max(1e-9),
        "latency": latency,
    })
}
