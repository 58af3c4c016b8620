//! `tidings bench chat`: the chat module under load (issue 13).
//!
//! Set-up, timed and reported apart from the measurement: the `default`
//! realm's secret signs one JWT per user (subject `chat-<run>-<label><i>`),
//! a tenant API key (made with the admin key unless `--tenant-key` is given)
//! creates the rooms with their members ([`crate::bench::chat::api`], the
//! membership layout of [`crate::bench::chat::layout`]). Then every user
//! opens its event stream (`GET /api/v1/events`), in worker processes above
//! `--sockets-per-process`.
//!
//! * `fanout`, `big-room`: the backend posts `--rate` messages/s round robin
//!   over the rooms for `--duration`; each message's text is a stamp (room,
//!   number, send time). Every member must receive every message of its
//!   rooms exactly once and nothing of another room: lost, duplicated and
//!   misrouted (a delivery to a non-member) deliveries fail the run (exit 1).
//!   Reported: post→delivery latency, deliveries/s, frames/s and messages
//!   per frame (grouping).
//! * `reconnect`: the same, and `--drop-after` into posting every user drops
//!   its stream and reconnects at once with `?lastEventId=` of its last
//!   frame: the time until the last user has caught up (holds every message
//!   up to one posted after the drop), and the same exact accounting.
//! * `idle`: two populations are set up (`--users` users with one room
//!   each, and as many other users with `--rooms-per-user` rooms each); then
//!   the first opens its streams and holds them idle, and the second opens
//!   beside it (so its memory is new memory, not what the first freed). The
//!   server's RSS before (after a pause to settle) and after each gives the
//!   memory per connection, and their difference the memory per membership.

use super::connections::hold;
use super::delivery::{self, DeliveryRun};
use super::reconnect::catch_up_section;
use super::{Coordinator, delivery::processes_text};
use crate::bench::args::{ChatArgs, ChatMode, ChatShape, ServerArgs, Transport};
use crate::bench::chat::api::Api;
use crate::bench::chat::layout::{ChatUsers, Layout};
use crate::bench::error::BenchError;
use crate::bench::http::server_rss;
use crate::bench::poll::api::{DEFAULT_REALM, realm_from};
use crate::bench::progress::{Progress, rate};
use crate::bench::protocol::{Command, GroupJob, GroupResult};
use crate::bench::report::{Latency, Report, bytes};
use crate::bench::target::{Target, random_prefix};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// Runs the chat scenario and prints its report.
pub async fn run(args: ChatArgs) -> Result<(), BenchError> {
    let shape = args.shape()?;
    let mut progress = Progress::new(args.output.quiet);
    let context = Context::open(&args, &mut progress).await?;
    let report = match args.mode {
        ChatMode::Idle => idle(&context, &shape, &mut progress).await?,
        _ => deliveries(&context, &shape, &mut progress).await?,
    };
    report.emit(args.output.json)
}

/// What every part of a run shares.
struct Context<'a> {
    args: &'a ChatArgs,
    /// The server, with the tenant key.
    target: Target,
    /// The realm's HS256 secret.
    secret: String,
    /// This run's id, in subjects and room names.
    run: String,
}

impl<'a> Context<'a> {
    /// Resolves the server, the realm's secret and a tenant key.
    async fn open(args: &'a ChatArgs, progress: &mut Progress) -> Result<Self, BenchError> {
        let realm = || realm_from(&args.server.data_dir, DEFAULT_REALM);
        let secret = match &args.jwt_secret {
            Some(secret) if !secret.trim().is_empty() => secret.trim().to_string(),
            Some(_) => return Err(BenchError::usage("--jwt-secret is empty")),
            None => realm()?.hs256_secret,
        };
        let target = match &args.tenant_key {
            Some(key) => {
                let server = ServerArgs {
                    api_key: Some(key.clone()),
                    ..args.server.clone()
                };
                Target::resolve(&server).await?
            }
            None => {
                let mut target = Target::resolve(&args.server).await?;
                let tenant = match &args.tenant {
                    Some(tenant) => tenant.clone(),
                    None => realm()?.tenant_id,
                };
                progress.note(&format!("making an API key of tenant {tenant}…"));
                target.api_key = Api::connect(&target).await?.tenant_key(&tenant).await?;
                target
            }
        };
        let run = random_prefix().trim_start_matches("bench.").to_string();
        Ok(Self {
            args,
            target,
            secret,
            run,
        })
    }
}

/// One population of users with their rooms, created on the server.
struct Population {
    users: ChatUsers,
    /// Room names by index (the publisher's topics).
    names: Vec<String>,
    /// Room ids by index.
    ids: Vec<u64>,
    /// How long the set-up calls took.
    setup: Duration,
}

impl Population {
    /// Creates the rooms of `layout` for users `chat-<run>-<label><i>`.
    async fn create(
        context: &Context<'_>,
        layout: Layout,
        label: &str,
        progress: &mut Progress,
    ) -> Result<Self, BenchError> {
        let run = &context.run;
        let names: Vec<String> = (0..layout.rooms)
            .map(|index| format!("bench {run} {label} room {index}"))
            .collect();
        let users = ChatUsers {
            secret: context.secret.clone(),
            subject_prefix: format!("chat-{run}-{label}"),
            layout,
            token_seconds: context.args.token_lifetime().as_secs(),
        };
        progress.note(&format!(
            "set-up: {} rooms, {} memberships of {} users…",
            layout.rooms,
            layout.memberships(),
            layout.users
        ));
        let started = Instant::now();
        let ids = Api::connect(&context.target)
            .await?
            .create_rooms(&layout, &names, &users.subject_prefix)
            .await?;
        Ok(Self {
            users,
            names,
            ids,
            setup: started.elapsed(),
        })
    }

    /// The target whose publishes are messages posted to these rooms.
    fn publish_target(&self, target: &Target) -> Target {
        let mut target = target.clone();
        target.rooms = self
            .names
            .iter()
            .cloned()
            .zip(self.ids.iter().copied())
            .collect();
        target
    }

    /// Opens every user's stream; fails when any could not connect.
    async fn connect(
        &self,
        context: &Context<'_>,
        progress: &mut Progress,
    ) -> Result<(Coordinator, Duration), BenchError> {
        let users = self.users.layout.users;
        let job = GroupJob {
            target: context.target.clone(),
            transport: Transport::Ws,
            topics: self.names.clone(),
            first: 0,
            count: 0,
            connect_rate: 0.0,
            connect_timeout_ms: 0,
            h2_streams: None,
            chat: Some(Box::new(self.users.clone())),
            edges: Vec::new(),
        };
        let started = Instant::now();
        let mut coordinator = Coordinator::start_job(job, users, &context.args.connect)?;
        coordinator.wait_ready(progress, users).await?;
        coordinator.require_all_connected(users).await?;
        Ok((coordinator, started.elapsed()))
    }

    /// Deliveries the acknowledged messages owe: each to every member of its room.
    fn expected(&self, delivery: &delivery::Measured) -> u64 {
        let members = self.users.layout.members();
        delivery
            .publish
            .expectations
            .iter()
            .zip(&members)
            .map(|(expect, members)| expect.expected_count() * members.len() as u64)
            .sum()
    }
}

/// `fanout`, `big-room` and `reconnect`: post, deliver, account.
async fn deliveries(
    context: &Context<'_>,
    shape: &ChatShape,
    progress: &mut Progress,
) -> Result<Report, BenchError> {
    let args = context.args;
    let population = Population::create(context, shape.layout, "", progress).await?;
    let (mut coordinator, connecting) = population.connect(context, progress).await?;
    let drop_after = (args.mode == ChatMode::Reconnect).then_some(args.drop_after);
    let measured = delivery::measure(
        &mut coordinator,
        &population.publish_target(&context.target),
        population.names.clone(),
        &shape.stream,
        drop_after,
        progress,
    )
    .await?;
    let run = DeliveryRun {
        expected: population.expected(&measured),
        window: measured.window,
        processes: coordinator.processes,
        publish: measured.publish,
        delivery: measured.delivery,
    };
    let mut report = Report::new("chat", json!({}));
    let setup = setup_section(&mut report, context, &population, connecting, run.processes);
    let catch_up = drop_after.map(|after| catch_up_section(&mut report, after, &run.delivery));
    let publishing = delivery::publishing_section(&mut report, &shape.stream, &run.publish);
    let delivered = delivery::delivery_section(&mut report, &run);
    let frames = frames_section(&mut report, &run);
    report.json = json!({
        "mode": args.mode.name(),
        "setup": setup,
        "catchUp": catch_up,
        "publishing": publishing,
        "delivery": delivered,
        "frames": frames,
    });
    Ok(report)
}

/// The set-up rows and JSON of one population.
fn setup_section(
    report: &mut Report,
    context: &Context<'_>,
    population: &Population,
    connecting: Duration,
    processes: usize,
) -> Value {
    let layout = &population.users.layout;
    let big = if layout.big_rooms == 0 {
        "none".to_string()
    } else {
        format!("{} of {} members", layout.big_rooms, layout.big_room_size)
    };
    report.section(
        "setup",
        vec![
            ("mode", context.args.mode.name().to_string()),
            ("users (event streams)", layout.users.to_string()),
            ("rooms", layout.rooms.to_string()),
            ("rooms per user", layout.per_user.to_string()),
            ("big rooms", big),
            ("memberships", layout.memberships().to_string()),
            (
                "set-up through the REST API",
                format!("{:.2} s", population.setup.as_secs_f64()),
            ),
            (
                "all streams connected in",
                format!("{:.2} s", connecting.as_secs_f64()),
            ),
            ("subscriber processes", processes_text(processes)),
        ],
    );
    json!({
        "users": layout.users,
        "rooms": layout.rooms,
        "roomsPerUser": layout.per_user,
        "bigRooms": layout.big_rooms,
        "bigRoomSize": layout.big_room_size,
        "memberships": layout.memberships(),
        "setupSeconds": population.setup.as_secs_f64(),
        "connectSeconds": connecting.as_secs_f64(),
        "workerProcesses": processes,
    })
}

/// How messages travelled: frames, and messages per frame (grouping).
fn frames_section(report: &mut Report, run: &DeliveryRun) -> Value {
    let totals = &run.delivery.totals;
    let per_frame = totals.deliveries as f64 / totals.frames.max(1) as f64;
    report.section(
        "frames",
        vec![
            ("message frames received", totals.frames.to_string()),
            ("frame rate", rate(totals.frames, run.window)),
            ("messages per frame", format!("{per_frame:.2}")),
            ("reached a non-member", run.delivery.misrouted.to_string()),
        ],
    );
    json!({
        "frames": totals.frames,
        "framesPerSecond": totals.frames as f64 / run.window.as_secs_f64().max(1e-9),
        "messagesPerFrame": per_frame,
        "reachedNonMembers": run.delivery.misrouted,
    })
}

/// Pause before the server's memory is read ahead of an idle phase.
const SETTLE: Duration = Duration::from_secs(2);

/// One idle phase's figures.
struct IdlePhase {
    per_user: usize,
    users: usize,
    setup: Duration,
    connecting: Duration,
    before: Option<u64>,
    held: u64,
    open_at_end: u64,
    result: GroupResult,
}

impl IdlePhase {
    /// Server memory per open stream in this phase.
    fn per_connection(&self) -> Option<f64> {
        let before = self.before?;
        Some((self.held as f64 - before as f64) / self.users as f64)
    }
}

/// `idle`: one population with 1 room per user, then one with `--rooms-per-user`.
async fn idle(
    context: &Context<'_>,
    shape: &ChatShape,
    progress: &mut Progress,
) -> Result<Report, BenchError> {
    let mut populations = Vec::with_capacity(2);
    for (label, per_user) in [("a", 1), ("b", shape.layout.per_user)] {
        let layout = Layout {
            per_user,
            ..shape.layout
        };
        populations.push(Population::create(context, layout, label, progress).await?);
    }
    tokio::time::sleep(SETTLE).await;
    let mut before = server_rss(&context.target, context.args.server_pid).await;
    let mut held_open = Vec::with_capacity(populations.len());
    for population in &populations {
        let (coordinator, phase) = idle_phase(context, population, before, progress).await?;
        before = Some(phase.held);
        held_open.push((coordinator, phase));
    }
    let mut phases = Vec::with_capacity(held_open.len());
    for (mut coordinator, mut phase) in held_open {
        coordinator.broadcast(&Command::Stop).await;
        phase.result = coordinator.results(progress, "closing").await?;
        phases.push(phase);
    }
    progress.clear();
    Ok(idle_report(context, &phases))
}

/// Connects one idle population beside those already open and holds it;
/// reads the server's memory at the end. The connections stay open (the
/// returned coordinator) so that the next population's memory is new memory,
/// not what this one would have freed.
async fn idle_phase(
    context: &Context<'_>,
    population: &Population,
    before: Option<u64>,
    progress: &mut Progress,
) -> Result<(Coordinator, IdlePhase), BenchError> {
    let pid = context.args.server_pid;
    let layout = population.users.layout;
    let (mut coordinator, connecting) = population.connect(context, progress).await?;
    let (held, snapshot) = hold(
        &mut coordinator,
        &context.target,
        pid,
        context.args.hold,
        progress,
    )
    .await?;
    let phase = IdlePhase {
        per_user: layout.per_user,
        users: layout.users,
        setup: population.setup,
        connecting,
        before,
        held,
        open_at_end: snapshot.connected,
        result: GroupResult::default(),
    };
    Ok((coordinator, phase))
}

/// The idle report: memory per connection in each phase and per membership.
fn idle_report(context: &Context<'_>, phases: &[IdlePhase]) -> Report {
    let mut report = Report::new("chat", json!({}));
    let mut json_phases = Vec::new();
    for phase in phases {
        let title = format!("{} users with {} room(s) each", phase.users, phase.per_user);
        let per_connection = phase.per_connection();
        report.section(
            &title,
            vec![
                (
                    "set-up through the REST API",
                    format!("{:.2} s", phase.setup.as_secs_f64()),
                ),
                (
                    "all streams connected in",
                    format!("{:.2} s", phase.connecting.as_secs_f64()),
                ),
                (
                    "connect time",
                    Latency::of(&phase.result.connect_time).brief(),
                ),
                (
                    "server RSS before",
                    phase.before.map_or("unknown".into(), |b| bytes(b as f64)),
                ),
                ("server RSS with these open too", bytes(phase.held as f64)),
                (
                    "per connection",
                    per_connection.map_or("unknown".into(), bytes),
                ),
                ("open at the end of the hold", phase.open_at_end.to_string()),
            ],
        );
        report.fail_if(
            phase.open_at_end < phase.users as u64,
            format!(
                "only {} of {} streams stayed open ({} rooms each)",
                phase.open_at_end, phase.users, phase.per_user
            ),
        );
        let ended = phase.result.server_closes + phase.result.read_errors;
        report.fail_if(
            ended > 0,
            format!(
                "{ended} streams of the users with {} rooms each ended before the run did",
                phase.per_user
            ),
        );
        json_phases.push(json!({
            "users": phase.users,
            "roomsPerUser": phase.per_user,
            "setupSeconds": phase.setup.as_secs_f64(),
            "connectSeconds": phase.connecting.as_secs_f64(),
            "connectTime": Latency::of(&phase.result.connect_time),
            "rssBeforeBytes": phase.before,
            "rssHeldBytes": phase.held,
            "bytesPerConnection": per_connection,
            "openAtEnd": phase.open_at_end,
        }));
    }
    let per_membership = membership_cost(phases);
    report.section(
        "cost of a room membership",
        vec![(
            "per membership of an open stream",
            per_membership.map_or("unknown".into(), bytes),
        )],
    );
    report.json = json!({
        "mode": context.args.mode.name(),
        "holdSeconds": context.args.hold.as_secs_f64(),
        "phases": json_phases,
        "bytesPerMembership": per_membership,
    });
    report
}

/// Extra memory per connection per extra room, between the first and the last phase.
fn membership_cost(phases: &[IdlePhase]) -> Option<f64> {
    let (first, last) = (phases.first()?, phases.last()?);
    let extra_rooms = last
        .per_user
        .checked_sub(first.per_user)
        .filter(|n| *n > 0)?;
    Some((last.per_connection()? - first.per_connection()?) / extra_rooms as f64)
}
