//! Flags of `tidings bench socketio`: the servers (`--target`, `--peer`,
//! each with its kind), the mode, the clients and the posts.
//!
//! [`SocketIoArgs::validate`] checks every value once, so the scenario gets
//! numbers that make sense; every limit is a named constant.

use super::api::{Admin, ServerKind};
use super::fleet::{MAX_CLIENTS, Pace};
use super::publisher::PostPlan;
use crate::bench::args::{OutputArgs, parse_size, require, require_duration, require_rate};
use crate::bench::error::BenchError;
use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Most posting connections.
pub const MAX_PUBLISHERS: usize = 1000;

/// Largest post text (both servers take far more; a bench post needs no more).
pub const MAX_POST_SIZE: usize = 64 << 10;

/// Extra lifetime of the clients' tokens beyond the planned run.
const TOKEN_SLACK: Duration = Duration::from_secs(60);

/// What `tidings bench socketio` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every client joined to one channel; posts at --rate: deliveries/s, post→receipt latency, lost, duplicates.
    Broadcast,
    /// Clients connected and joined, no traffic: server RSS per connection (--server-pid, --peer-pid).
    Idle,
    /// Like broadcast; --drop-after into posting all clients drop, reconnect, rejoin and sync from their last event id: time until all caught up.
    Reconnect,
}

impl Mode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Idle => "idle",
            Self::Reconnect => "reconnect",
        }
    }
}

/// Flags of `tidings bench socketio`.
#[derive(Debug, Args, Clone)]
pub struct SocketIoArgs {
    /// Base URL (http://) of the server measured first.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,

    /// What serves --target.
    #[arg(long, value_enum, default_value_t = ServerKind::Tidings)]
    pub target_kind: ServerKind,

    /// --target's process id, to read its RSS from /proc (idle; default: Tidings' /metrics).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Base URL (http://) of a second server measured right after --target, printed beside it.
    #[arg(long)]
    pub peer: Option<String>,

    /// What serves --peer.
    #[arg(long, value_enum, default_value_t = ServerKind::Reference)]
    pub peer_kind: ServerKind,

    /// --peer's process id, to read its RSS from /proc (idle).
    #[arg(long, requires = "peer")]
    pub peer_pid: Option<u32>,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Broadcast)]
    pub mode: Mode,

    /// Socket.IO clients, each on its own WebSocket, all joined to the run's channel.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,

    /// Posts per second (broadcast, reconnect).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// How long to post (broadcast, reconnect).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Bytes of each post's text (it starts with the post's number and send time).
    #[arg(long, default_value = "200", value_parser = parse_size)]
    pub size: usize,

    /// Posting connections (each sends its share of the rate).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,

    /// After posting stops, how long to wait for the last deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// reconnect: when (after posting starts) every client drops its session and resumes.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drop_after: Duration,

    /// idle: how long to hold the sessions before reading the servers' memory.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,

    /// New sessions opened per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,

    /// Deadline for one session to connect and join.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Tidings' instance admin key (default: adminKey from DATA_DIR/config.json).
    #[arg(long, env = "TIDINGS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Tidings' data directory, read for the admin key when --api-key is not given.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,

    /// Tidings' tenant (id or slug) of the run's realm, API key and channel.
    #[arg(long, default_value = "default")]
    pub tenant: String,

    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One server of the run.
#[derive(Debug, Clone)]
pub struct Side {
    /// Its base URL.
    pub url: String,
    /// What serves it.
    pub kind: ServerKind,
    /// Its process id, when given.
    pub pid: Option<u32>,
}

impl SocketIoArgs {
    /// Checks the flags.
    pub fn validate(&self) -> Result<(), BenchError> {
        require(
            (1..=MAX_CLIENTS).contains(&self.clients),
            "--clients",
            "must be between 1 and 19000 (one process holds them all)",
        )?;
        require(
            (1..=MAX_PUBLISHERS).contains(&self.publishers)
                && self.clients + self.publishers <= MAX_CLIENTS,
            "--publishers",
            "must be between 1 and 1000, and --clients + --publishers at most 19000",
        )?;
        require(
            self.size <= MAX_POST_SIZE,
            "--size",
            "must be at most 64KiB",
        )?;
        require_rate(self.rate, "--rate")?;
        require_rate(self.connect_rate, "--connect-rate")?;
        require_duration(self.duration, "--duration", true)?;
        require_duration(self.connect_timeout, "--connect-timeout", true)?;
        require_duration(self.drain_timeout, "--drain-timeout", false)?;
        require_duration(self.hold, "--hold", false)?;
        require(
            self.mode != Mode::Reconnect || self.drop_after < self.duration,
            "--drop-after",
            "must be shorter than --duration (posting must go on after the drop)",
        )?;
        require(
            !self.tenant.is_empty() && !self.tenant.contains(['/', '?', '#', ' ']),
            "--tenant",
            "must be a tenant id or slug",
        )
    }

    /// The servers, in the order they are measured.
    pub fn sides(&self) -> Vec<Side> {
        let target = Side {
            url: self.target.clone(),
            kind: self.target_kind,
            pid: self.server_pid,
        };
        let peer = self.peer.as_ref().map(|url| Side {
            url: url.clone(),
            kind: self.peer_kind,
            pid: self.peer_pid,
        });
        std::iter::once(target).chain(peer).collect()
    }

    /// Tidings' admin credentials.
    pub fn admin(&self) -> Admin<'_> {
        Admin {
            api_key: self.api_key.as_deref(),
            data_dir: &self.data_dir,
            tenant: &self.tenant,
        }
    }

    /// How the clients connect.
    pub fn pace(&self) -> Pace {
        Pace {
            connect_rate: self.connect_rate,
            connect_timeout: self.connect_timeout,
        }
    }

    /// The posts of a broadcast or reconnect run.
    pub fn posts(&self) -> PostPlan {
        PostPlan {
            rate: self.rate,
            duration: self.duration,
            size: self.size,
            publishers: self.publishers,
        }
    }

    /// How long the clients' tokens must stay valid.
    pub fn token_lifetime(&self) -> Duration {
        self.duration + self.drain_timeout + self.hold + self.connect_timeout + TOKEN_SLACK
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::args::{BenchArgs, Scenario};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> SocketIoArgs {
        let argv = ["bench", "socketio"]
            .into_iter()
            .chain(args.iter().copied());
        match TestCli::try_parse_from(argv).map(|cli| cli.bench.scenario) {
            Ok(Scenario::SocketIo(args)) => args,
            other => panic!("{args:?} parses as socketio: {other:?}"),
        }
    }

    #[test]
    fn defaults_and_sides() {
        let args = parse(&[]);
        assert_eq!(
            (args.mode, args.clients, args.rate),
            (Mode::Broadcast, 1000, 100.0)
        );
        assert_eq!(args.sides().len(), 1);
        assert_eq!(args.sides()[0].kind, ServerKind::Tidings);
        assert!(args.validate().is_ok());
        let args = parse(&[
            "--target",
            "http://127.0.0.1:3030",
            "--target-kind",
            "reference",
            "--peer",
            "http://127.0.0.1:8080",
            "--peer-kind",
            "tidings",
            "--peer-pid",
            "42",
            "--mode",
            "reconnect",
            "--clients",
            "5000",
        ]);
        let sides = args.sides();
        assert_eq!(
            sides.iter().map(|side| side.kind).collect::<Vec<_>>(),
            vec![ServerKind::Reference, ServerKind::Tidings]
        );
        assert_eq!(sides[1].pid, Some(42));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_flag() {
        for (flags, flag) in [
            (&["--clients", "0"][..], "--clients"),
            (&["--clients", "19000"][..], "--publishers"),
            (&["--size", "65537"][..], "--size"),
            (&["--rate", "0"][..], "--rate"),
            (
                &["--mode", "reconnect", "--duration", "2s"][..],
                "--drop-after",
            ),
            (&["--tenant", "a/b"][..], "--tenant"),
        ] {
            let err = parse(flags).validate().expect_err("refused");
            assert!(err.to_string().contains(flag), "{flags:?}: {err}");
        }
    }
}
