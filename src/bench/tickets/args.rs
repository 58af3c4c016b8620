//! Flags of `tidings bench tickets`: the server and realm, the mode, and
//! each mode's shape.
//!
//! [`TicketsArgs::validate`] checks every value once and fills the
//! per-mode defaults, so the scenario gets numbers that make sense; every
//! limit is a named constant.

use super::changes::ChangeKind;
use crate::bench::args::{OutputArgs, ServerArgs, require, require_duration, require_rate};
use crate::bench::error::BenchError;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Most users (notification streams) one run holds: one bench process,
/// each stream one socket (stay under `ulimit -n`).
pub const MAX_USERS: usize = 19_000;

/// Most changes or set-up requests in flight at once.
pub const MAX_PUBLISHERS: usize = 1_000;

/// Most tickets the `sla` mode creates.
pub const MAX_SLA_TICKETS: usize = 10_000_000;

/// Most concurrent inbox readers.
pub const MAX_READERS: usize = 10_000;

/// Extra lifetime of every token beyond the planned run.
const TOKEN_SLACK: Duration = Duration::from_secs(600);

/// What `tidings bench tickets` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Users on their notification streams, an agent assigning and reassigning tickets to them: change→notification latency, loss, duplicates.
    Notify,
    /// Tickets whose SLA breaches fall due in the same second: how late each `slaBreach` arrives, exactly once.
    Sla,
    /// An inbox filled with notifications, concurrent readers of the count and the first page: requests/s, latency.
    Inbox,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Sla => "sla",
            Self::Inbox => "inbox",
        }
    }
}

/// Flags of `tidings bench tickets`.
#[derive(Debug, Args, Clone)]
pub struct TicketsArgs {
    /// The server (`--api-key` and `--topic-prefix` are unused: every call is made with a user's JWT).
    #[command(flatten)]
    pub server: ServerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Notify)]
    pub mode: Mode,

    /// The JWT realm the tokens are signed for (sent as `realmname`).
    #[arg(long, default_value = "default")]
    pub realm: String,

    /// HS256 secret of --realm (default: the realm's secret in DATA_DIR/config.json).
    #[arg(long, env = "TIDINGS_BENCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The tenant (sent as `x-tenantid`; default: the realm's tenantId in DATA_DIR/config.json).
    #[arg(long)]
    pub tenant: Option<String>,

    /// notify: users holding their notification stream; inbox: users whose inboxes are filled [default: 10000 / 1000].
    #[arg(long)]
    pub users: Option<usize>,

    /// notify: ticket changes per second (each notifies one or two users).
    #[arg(long, default_value_t = 500.0)]
    pub rate: f64,

    /// notify: how long to make changes; inbox: how long the readers read.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// notify, inbox filling: create (a ticket assigned to the user), reassign (an existing ticket moves to the user; the previous assignee is told too) or mixed (alternately).
    #[arg(long, value_enum, default_value_t = ChangeKind::Create)]
    pub change: ChangeKind,

    /// Changes (or set-up requests) in flight at once, over shared HTTP/2 connections.
    #[arg(long, default_value_t = 32)]
    pub publishers: usize,

    /// After the changes stop (sla: after the due time), how long to wait for the last notifications.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub grace: Duration,

    /// New notification streams opened per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,

    /// Deadline for one stream to be opened and say `connected`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// sla: tickets created.
    #[arg(long, default_value_t = 100_000)]
    pub tickets: usize,

    /// sla: tickets (created first) whose response breach falls due in the same second.
    #[arg(long, default_value_t = 10_000)]
    pub due: usize,

    /// sla: tickets per agent (each agent creates and holds its own; one stream per agent).
    #[arg(long, default_value_t = 100)]
    pub tickets_per_agent: usize,

    /// sla: response target of the due tickets: the due second is this long after creation starts (creation must end before it).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub due_in: Duration,

    /// sla: the server's `--tickets-sla-unit` (what one policy "minute" lasts there; scripts run the server with 1s).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub sla_unit: Duration,

    /// sla: only create the tickets and write --state, then exit (the server may be stopped before the due time).
    #[arg(long, requires = "state", conflicts_with = "observe_only")]
    pub create_only: bool,

    /// sla: create nothing; after the due time of --state, count the notifications through the agents' inboxes (exactly once).
    #[arg(long, requires = "state")]
    pub observe_only: bool,

    /// sla: the run's state file (agents, due tickets), written by --create-only, read by --observe-only.
    #[arg(long)]
    pub state: Option<PathBuf>,

    /// inbox: notifications stored over the users' inboxes before reading.
    #[arg(long, default_value_t = 100_000)]
    pub notifications: u64,

    /// inbox: concurrent readers, each a user on its own keep-alive connection.
    #[arg(long, default_value_t = 50)]
    pub readers: usize,
}

impl TicketsArgs {
    /// The number of users of the mode, its default filled in.
    pub fn users(&self) -> usize {
        self.users.unwrap_or(match self.mode {
            Mode::Inbox => 1_000,
            _ => 10_000,
        })
    }

    /// Agents of the `sla` mode: one per --tickets-per-agent tickets.
    pub fn agents(&self) -> usize {
        self.tickets.div_ceil(self.tickets_per_agent.max(1))
    }

    /// The SLA policy's "minutes" the due tickets' target lasts.
    pub fn due_units(&self) -> u64 {
        (self.due_in.as_secs_f64() / self.sla_unit.as_secs_f64().max(1e-9)).round() as u64
    }

    /// How long every token must stay valid.
    pub fn token_lifetime(&self) -> Duration {
        let sla = if self.mode == Mode::Sla {
            self.due_in * 2
        } else {
            Duration::ZERO
        };
        self.duration + self.grace + sla + TOKEN_SLACK
    }

    /// Checks the flags of the chosen mode.
    pub fn validate(&self) -> Result<(), BenchError> {
        require(
            !self.realm.is_empty() && !self.realm.contains(['\r', '\n']),
            "--realm",
            "must be a realm name",
        )?;
        require(
            (1..=MAX_PUBLISHERS).contains(&self.publishers),
            "--publishers",
            "must be between 1 and 1000",
        )?;
        require_duration(self.grace, "--grace", false)?;
        require_rate(self.connect_rate, "--connect-rate")?;
        require_duration(self.connect_timeout, "--connect-timeout", true)?;
        match self.mode {
            Mode::Notify => self.validate_notify(),
            Mode::Sla => self.validate_sla(),
            Mode::Inbox => self.validate_inbox(),
        }
    }

    fn validate_notify(&self) -> Result<(), BenchError> {
        require(
            (2..=MAX_USERS).contains(&self.users()),
            "--users",
            "must be between 2 and 19000 (one bench process holds the streams)",
        )?;
        require_rate(self.rate, "--rate")?;
        require_duration(self.duration, "--duration", true)
    }

    fn validate_sla(&self) -> Result<(), BenchError> {
        require(
            (1..=MAX_SLA_TICKETS).contains(&self.tickets),
            "--tickets",
            "must be between 1 and 10000000",
        )?;
        require(
            (1..=self.tickets).contains(&self.due),
            "--due",
            "must be between 1 and --tickets",
        )?;
        require(
            self.tickets_per_agent >= 1 && self.agents() <= MAX_USERS,
            "--tickets-per-agent",
            "must be at least 1 and leave at most 19000 agents (one stream each)",
        )?;
        require(
            !self.sla_unit.is_zero() && self.sla_unit <= Duration::from_secs(60),
            "--sla-unit",
            "must be longer than 0s and at most 60s",
        )?;
        require_duration(self.due_in, "--due-in", true)?;
        require(
            self.due_units() > super::sla::WINDOWS as u64,
            "--due-in",
            "must last at least 5 --sla-unit (the four creation windows use targets due-in, due-in − 1, … units)",
        )
    }

    fn validate_inbox(&self) -> Result<(), BenchError> {
        require(
            (2..=MAX_USERS).contains(&self.users()),
            "--users",
            "must be between 2 and 19000",
        )?;
        require(
            self.notifications >= 1,
            "--notifications",
            "must be at least 1",
        )?;
        require(
            (1..=MAX_READERS).contains(&self.readers),
            "--readers",
            "must be between 1 and 10000",
        )?;
        require_duration(self.duration, "--duration", true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tickets: TicketsArgs,
    }

    fn parse(args: &[&str]) -> TicketsArgs {
        let argv = std::iter::once("tickets").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("parses").tickets
    }

    #[test]
    fn modes_fill_their_defaults() {
        let notify = parse(&[]);
        assert_eq!(
            (notify.mode, notify.users(), notify.rate),
            (Mode::Notify, 10_000, 500.0)
        );
        assert_eq!(notify.change, ChangeKind::Create);
        assert!(notify.validate().is_ok());
        let inbox = parse(&["--mode", "inbox"]);
        assert_eq!(
            (inbox.users(), inbox.notifications, inbox.readers),
            (1_000, 100_000, 50)
        );
        assert!(inbox.validate().is_ok());
        let sla = parse(&["--mode", "sla"]);
        assert_eq!(
            (sla.tickets, sla.due, sla.agents()),
            (100_000, 10_000, 1_000)
        );
        assert_eq!(sla.due_units(), 120);
        assert!(sla.validate().is_ok());
        let scaled = parse(&["--mode", "sla", "--due-in", "60s", "--sla-unit", "500ms"]);
        assert_eq!(scaled.due_units(), 120);
    }

    #[test]
    fn unusable_values_are_refused() {
        for args in [
            &["--users", "1"][..],
            &["--users", "19001"],
            &["--rate", "0"],
            &["--publishers", "0"],
            &["--mode", "sla", "--due", "0"],
            &["--mode", "sla", "--tickets", "10", "--due", "11"],
            &["--mode", "sla", "--due-in", "4s"],
            &[
                "--mode",
                "sla",
                "--tickets-per-agent",
                "1",
                "--tickets",
                "20000",
            ],
            &["--mode", "inbox", "--readers", "0"],
            &["--mode", "inbox", "--notifications", "0"],
        ] {
            assert!(parse(args).validate().is_err(), "{args:?}");
        }
        let observe = ["tickets", "--mode", "sla", "--observe-only"];
        assert!(
            Cli::try_parse_from(observe).is_err(),
            "--observe-only needs --state"
        );
    }
}
