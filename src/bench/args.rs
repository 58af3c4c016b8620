//! Command line of `tidings bench`: one subcommand per scenario.
//!
//! Flag groups shared by several scenarios are separate structs flattened into
//! each scenario ([`ServerArgs`], [`OutputArgs`], [`SubscriberArgs`],
//! [`StreamArgs`]); every group validates its own values once, so the
//! scenarios receive numbers that make sense.

use super::chat::layout::Layout;
use super::discussions::Surface;
use super::error::BenchError;
use super::peer::Peer;
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Most events one batch request may carry.
pub const MAX_BATCH: usize = 10_000;

/// Largest event payload the tool builds.
pub const MAX_EVENT_SIZE: usize = 1 << 20;

/// Flags of `tidings bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Durable publishes: C concurrent publishers, events/s and acknowledgement latency.
    Publish(PublishArgs),
    /// S subscribers on T topics receive a paced publish stream: delivery rate, latency, loss.
    Fanout(FanoutArgs),
    /// Open N idle streams, hold them, and report server memory per connection.
    Connections(ConnectionsArgs),
    /// Subscribers drop and resume at once while publishing goes on: catch-up time, loss.
    Reconnect(ReconnectArgs),
    /// Live events-streams polling: closed-interval requests/s (beside nginx), or V viewers polling every interval.
    Poll(PollArgs),
    /// Chat rooms (issue 13): users on their event streams, messages posted to rooms; delivery, batching, catch-up, memory.
    Chat(ChatArgs),
    /// Socket.IO channel posts (spec 003) on Tidings beside the Node.js socket.io reference: broadcast, idle memory, reconnect + sync.
    #[command(name = "socketio")]
    SocketIo(super::socketio::args::SocketIoArgs),
    /// Tickets (spec 004): notification streams under ticket changes, SLA breaches due at once, inbox reads.
    Tickets(super::tickets::args::TicketsArgs),
    /// The fanout load on a single node, then on a cluster (publishing to the writer, subscribers spread over the edges): delivery rate and p50/p99 compared.
    Cluster(super::scenario::cluster::ClusterArgs),
    /// Internal: hosts subscribers for a coordinating bench process (JSON lines on stdin/stdout).
    #[command(hide = true)]
    Worker,
}

/// Which server and credentials to use.
#[derive(Debug, Args, Clone)]
pub struct ServerArgs {
    /// Base URL of the server: http:// (plain TCP) or https:// (TLS).
    #[arg(
        long,
        env = "TIDINGS_BENCH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,

    /// Admin API key sent as X-API-Key (default: adminKey from DATA_DIR/config.json).
    #[arg(long, env = "TIDINGS_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// The server's data directory, read for the admin key when --api-key is not given
    /// (and by `poll` for the realm's JWT secret when --jwt-secret is not given).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,

    /// With an https:// --url: trust the certificates in this PEM file (e.g. the
    /// server's `DATA_DIR/tls/localhost-cert.pem` of --tls-self-signed) instead of the web PKI roots.
    #[arg(long, conflicts_with = "insecure")]
    pub ca_file: Option<PathBuf>,

    /// With an https:// --url: accept any server certificate (no verification;
    /// for a throw-away test server only).
    #[arg(long)]
    pub insecure: bool,

    /// Prefix of the topic names used (default: `bench.<random>` so runs never share topics).
    #[arg(long)]
    pub topic_prefix: Option<String>,
}

/// How results are shown.
#[derive(Debug, Args, Clone, Copy)]
pub struct OutputArgs {
    /// Print the result as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Do not show the live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// The streaming transport subscribers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Server-Sent Events: one GET stream per subscriber.
    Sse,
    /// WebSocket: one connection per subscriber, subscribed to its topic.
    Ws,
}

impl Transport {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sse => "sse",
            Self::Ws => "ws",
        }
    }
}

/// Flags of the subscriber side (fanout, connections, reconnect).
#[derive(Debug, Args, Clone)]
pub struct SubscriberArgs {
    /// Number of subscribers, each on its own TCP connection.
    #[arg(long, visible_alias = "connections", default_value_t = 1000)]
    pub subscribers: usize,

    /// Streaming transport.
    #[arg(long, value_enum, default_value_t = Transport::Sse)]
    pub transport: Transport,

    /// Number of topics; subscriber i listens on topic i mod T.
    #[arg(long, default_value_t = 1)]
    pub topics: usize,

    /// How the connections are opened and spread over processes.
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// SSE over HTTP/2: each subscriber is one h2 stream, --h2-streams of them
    /// share a connection (h2c by prior knowledge on http://, ALPN h2 on https://).
    #[arg(long)]
    pub http2: bool,

    /// With --http2: subscribers per HTTP/2 connection (keep it at or under the
    /// server's --h2-max-streams, default 32; 1 = one connection each).
    #[arg(long, default_value_t = 32, requires = "http2")]
    pub h2_streams: usize,
}

/// How subscriber connections are opened and spread over processes
/// (fanout, connections, reconnect, chat).
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    /// New connections opened per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,

    /// Deadline for one connection to be established and subscribed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,

    /// Worker processes for the subscribers (default: none while the sockets fit in this process, else as many as needed).
    #[arg(long)]
    pub workers: Option<usize>,

    /// Sockets one process may hold (stay under `ulimit -n`).
    #[arg(long, default_value_t = 19_000)]
    pub sockets_per_process: usize,
}

impl ConnectArgs {
    /// Checks the flags for `sockets` connections.
    pub fn validate(&self, sockets: usize) -> Result<(), BenchError> {
        require_rate(self.connect_rate, "--connect-rate")?;
        require_duration(self.connect_timeout, "--connect-timeout", true)?;
        require(
            self.sockets_per_process >= 1,
            "--sockets-per-process",
            "must be at least 1",
        )?;
        require(
            self.workers.is_none_or(|workers| workers <= sockets),
            "--workers",
            "must not exceed the number of connections",
        )
    }
}

impl SubscriberArgs {
    /// How the subscribers connect, for reports.
    pub fn describe(&self) -> String {
        let transport = self.transport.name();
        if self.http2 {
            format!(
                "{transport} (HTTP/2, {} streams per connection)",
                self.h2_streams
            )
        } else {
            transport.to_string()
        }
    }
}

/// Flags of the publishing side of fanout and reconnect.
#[derive(Debug, Args, Clone)]
pub struct StreamArgs {
    /// Events published per second, over all topics.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,

    /// Size of each event's data in bytes (e.g. 200, 1KiB).
    #[arg(long, default_value = "200", value_parser = parse_size)]
    pub size: usize,

    /// Events per publish request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Publishing connections (each sends its share of the rate).
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,

    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// After publishing stops, how long to wait for the last deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
}

/// Flags of `tidings bench publish`.
#[derive(Debug, Args, Clone)]
pub struct PublishArgs {
    /// The server to measure.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Concurrent publishers; each waits for its acknowledgement before sending again.
    #[arg(long, short = 'c', default_value_t = 128)]
    pub publishers: usize,

    /// Use HTTP/2 (prior knowledge, h2c): publishers share --connections connections.
    #[arg(long)]
    pub h2: bool,

    /// HTTP/2 connections the publishers share (only with --h2).
    #[arg(long, default_value_t = 1, requires = "h2")]
    pub connections: usize,

    /// Events per publish request.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,

    /// Number of topics published to, round robin.
    #[arg(long, default_value_t = 16)]
    pub topics: usize,

    /// Size of each event's data in bytes (e.g. 200, 1KiB).
    #[arg(long, default_value = "200", value_parser = parse_size)]
    pub size: usize,

    /// How long to publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

/// Flags that say what the fanout scenario measures: a surface of Tidings,
/// or another server for comparisons.
#[derive(Debug, Args, Clone, Default)]
pub struct PeerArgs {
    /// Which API of Tidings to measure: the topics API, or discussions (comments posted, streamed over the spec's SSE stream).
    #[arg(long, value_enum, default_value = "topics")]
    pub surface: Surface,

    /// Measure this server instead of Tidings (with --publish-url and --stream-url; --url, --api-key and --data-dir are then unused).
    #[arg(long, value_enum, requires_all = ["publish_url", "stream_url"])]
    pub peer: Option<Peer>,

    /// The peer's publish endpoint, e.g. http://127.0.0.1:5561/publish/ for Pushpin.
    #[arg(long, requires = "peer")]
    pub publish_url: Option<String>,

    /// The peer's SSE URL with {topic} for the topic name, e.g. 'http://127.0.0.1:7999/stream/{topic}'.
    #[arg(long, requires = "peer")]
    pub stream_url: Option<String>,
}

/// Flags of `tidings bench fanout`.
#[derive(Debug, Args, Clone)]
pub struct FanoutArgs {
    /// The server to measure.
    #[command(flatten)]
    pub server: ServerArgs,
    /// Another server to measure instead (side by side).
    #[command(flatten)]
    pub peer: PeerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The subscribers.
    #[command(flatten)]
    pub subscribers: SubscriberArgs,
    /// The published stream.
    #[command(flatten)]
    pub stream: StreamArgs,
}

/// Flags of `tidings bench connections`.
#[derive(Debug, Args, Clone)]
pub struct ConnectionsArgs {
    /// The server to measure.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The subscribers.
    #[command(flatten)]
    pub subscribers: SubscriberArgs,

    /// How long to hold the connections open once all are up.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub hold: Duration,
}

/// Flags of `tidings bench reconnect`.
#[derive(Debug, Args, Clone)]
pub struct ReconnectArgs {
    /// The server to measure.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The subscribers.
    #[command(flatten)]
    pub subscribers: SubscriberArgs,
    /// The published stream.
    #[command(flatten)]
    pub stream: StreamArgs,

    /// When (after publishing starts) every subscriber drops its connection and resumes.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drop_after: Duration,
}

/// What `tidings bench poll` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Already-closed intervals as fast as they are answered: requests/s, latency, identical bytes.
    Closed,
    /// Viewers polling every interval on its boundary: delay from the close, identical bytes, RSS.
    Live,
}

impl PollMode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Live => "live",
        }
    }
}

/// Flags of `tidings bench poll`.
#[derive(Debug, Args, Clone)]
pub struct PollArgs {
    /// The server to measure.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,

    /// closed: hammer already-closed intervals; live: viewers poll every interval as it closes.
    #[arg(long, value_enum, default_value_t = PollMode::Closed)]
    pub mode: PollMode,

    /// The JWT realm viewer tokens are signed for (sent as `realmname` unless `default`).
    #[arg(long, default_value = "default")]
    pub realm: String,

    /// HS256 secret of --realm (default: the realm's secret in DATA_DIR/config.json).
    #[arg(long, env = "TIDINGS_BENCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// How long to measure (per phase in live mode).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// closed: keep-alive connections, each with its own viewer token.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,

    /// closed: client threads the connections are spread over (like wrk -t).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// closed: how many closed intervals (each with one chat) the connections cycle through.
    #[arg(long, default_value_t = 4)]
    pub intervals: usize,

    /// closed: also measure Debian's nginx serving the same bytes from files, in the same run.
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,

    /// live: number of viewers (distinct JWT subjects), each polling every interval.
    #[arg(long, default_value_t = 10_000)]
    pub viewers: usize,

    /// live: viewers sharing one keep-alive connection (their polls are pipelined).
    #[arg(long, default_value_t = 1)]
    pub viewers_per_connection: usize,

    /// live: connections opened per second.
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,

    /// live: send each poll this long before its interval closes (0: at the close).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub lead: Duration,

    /// live: polling before measuring starts (after the last connection opened).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,

    /// live: round trips to /api/v1/time for the clock offset (the shortest one counts).
    #[arg(long, default_value_t = 16)]
    pub clock_samples: usize,

    /// live: the server's process id, to read its RSS from /proc (default: /metrics).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// live: after the quiet phase, poll another --duration while writers post hearts, chats and answers.
    #[arg(long)]
    pub ingest: bool,

    /// With --ingest: heart requests per second (`{"count":1}` each).
    #[arg(long, default_value_t = 5000.0)]
    pub hearts_rate: f64,

    /// With --ingest: chat messages per second.
    #[arg(long, default_value_t = 1000.0)]
    pub chats_rate: f64,

    /// With --ingest: quiz answers per second (each viewer answers each quiz once).
    #[arg(long, default_value_t = 2000.0)]
    pub answers_rate: f64,

    /// With --ingest: keep-alive connections per kind of write.
    #[arg(long, default_value_t = 8)]
    pub ingest_connections: usize,
}

/// What `tidings bench chat` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChatMode {
    /// Many users in many rooms (a few big): post→delivery latency, deliveries/s, exact accounting.
    Fanout,
    /// One big room: deliveries/s, frames/s (grouped messages), latency.
    BigRoom,
    /// Every user drops its stream and resumes with `?lastEventId=` while messages go on: catch-up time, loss.
    Reconnect,
    /// Idle users: server memory per connection, and per room membership (1 room each, then others with several, both open).
    Idle,
}

impl ChatMode {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fanout => "fanout",
            Self::BigRoom => "big-room",
            Self::Reconnect => "reconnect",
            Self::Idle => "idle",
        }
    }
}

/// Flags of `tidings bench chat`. The shape flags default per `--mode`
/// (fanout / big-room / reconnect / idle, as in issue 13).
#[derive(Debug, Args, Clone)]
pub struct ChatArgs {
    /// The server to measure.
    #[command(flatten)]
    pub server: ServerArgs,
    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,
    /// How the users' streams are opened.
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = ChatMode::Fanout)]
    pub mode: ChatMode,

    /// Users, each with its own JWT subject and event stream (idle: per population; both stay open) [default: 10000 / 5000 / 2000 / 5000].
    #[arg(long)]
    pub users: Option<usize>,

    /// Rooms, big ones included [default: 2000 / 1 / 400 / 2000].
    #[arg(long)]
    pub rooms: Option<usize>,

    /// Rooms each user is a member of (idle: in the second phase; the first has 1) [default: 10 / 1 / 10 / 10].
    #[arg(long)]
    pub rooms_per_user: Option<usize>,

    /// How many of the rooms are big [default: 5 / 1 / 0 / 0].
    #[arg(long)]
    pub big_rooms: Option<usize>,

    /// Members of each big room (users 0.. fill them, none in two) [default: 1000 / all users].
    #[arg(long)]
    pub big_room_size: Option<usize>,

    /// Messages posted per second, round robin over the rooms [default: 1000 / 100 / 200; idle posts none].
    #[arg(long)]
    pub rate: Option<f64>,

    /// Size of each message's text in bytes (it carries the send time).
    #[arg(long, default_value = "100", value_parser = parse_size)]
    pub size: usize,

    /// Posting connections (each sends its share of the rate), as the tenant's backend.
    #[arg(long, default_value_t = 4)]
    pub publishers: usize,

    /// How long to post messages.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// After posting stops, how long to wait for the last deliveries.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// reconnect: when (after posting starts) every user drops its stream and resumes with `?lastEventId=`.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub drop_after: Duration,

    /// idle: how long to hold the streams open before reading the server's memory.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hold: Duration,

    /// idle: the server's process id, to read its RSS from /proc/<pid>/status (default: /metrics).
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// HS256 secret of the `default` JWT realm the users' tokens are signed for (default: from DATA_DIR/config.json).
    #[arg(long, env = "TIDINGS_BENCH_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// API key of the realm's tenant with the read and publish scopes (default: one is made with the admin key).
    #[arg(long, env = "TIDINGS_BENCH_TENANT_KEY", hide_env_values = true)]
    pub tenant_key: Option<String>,

    /// The tenant a key is made for (default: the `default` realm's tenantId in DATA_DIR/config.json).
    #[arg(long)]
    pub tenant: Option<String>,
}

/// A chat run's rooms and postings, the mode's defaults filled in.
#[derive(Debug, Clone)]
pub struct ChatShape {
    /// Users, rooms and memberships (idle: of the second phase).
    pub layout: Layout,
    /// The posting side (fanout, big-room, reconnect).
    pub stream: StreamArgs,
}

impl ChatArgs {
    /// The run's shape, checked.
    pub fn shape(&self) -> Result<ChatShape, BenchError> {
        let (users, rooms, per_user, big_rooms, rate) = match self.mode {
            ChatMode::Fanout => (10_000, 2_000, 10, 5, 1000.0),
            ChatMode::BigRoom => (5_000, 1, 1, 1, 100.0),
            ChatMode::Reconnect => (2_000, 400, 10, 0, 200.0),
            ChatMode::Idle => (5_000, 2_000, 10, 0, 1.0),
        };
        let users = self.users.unwrap_or(users);
        let big_room_size = match self.mode {
            ChatMode::Fanout => 1_000.min(users),
            _ => users,
        };
        let big_rooms = self.big_rooms.unwrap_or(big_rooms);
        let layout = Layout {
            users,
            rooms: self.rooms.unwrap_or(rooms),
            per_user: self.rooms_per_user.unwrap_or(per_user),
            big_rooms,
            big_room_size: if big_rooms == 0 {
                0
            } else {
                self.big_room_size.unwrap_or(big_room_size)
            },
        };
        layout.check().map_err(|problem| {
            BenchError::usage(format!(
                "--users/--rooms/--rooms-per-user/--big-rooms/--big-room-size: {problem}"
            ))
        })?;
        let stream = StreamArgs {
            rate: self.rate.unwrap_or(rate),
            size: self.size,
            batch: 1,
            publishers: self.publishers,
            duration: self.duration,
            drain_timeout: self.drain_timeout,
        };
        stream.validate()?;
        self.connect.validate(users)?;
        self.check_mode(&layout)?;
        Ok(ChatShape { layout, stream })
    }

    /// The checks of one mode.
    fn check_mode(&self, layout: &Layout) -> Result<(), BenchError> {
        match self.mode {
            ChatMode::Reconnect => require(
                self.drop_after < self.duration,
                "--drop-after",
                "must be shorter than --duration (posting must go on after the drop)",
            ),
            ChatMode::Idle => {
                require(
                    layout.per_user >= 2 && layout.big_rooms == 0,
                    "--rooms-per-user",
                    "must be at least 2 in idle mode, without big rooms (it is compared with 1 room per user)",
                )?;
                require(
                    2 * layout.users <= self.connect.sockets_per_process
                        || self.connect.workers.is_some(),
                    "--users",
                    "in idle mode holds two populations of --users streams at once: 2 × --users must fit --sockets-per-process (or give --workers)",
                )?;
                require_duration(self.hold, "--hold", false)
            }
            ChatMode::Fanout | ChatMode::BigRoom => Ok(()),
        }
    }

    /// How long the users' tokens must stay valid.
    pub fn token_lifetime(&self) -> Duration {
        self.duration + self.drain_timeout + self.hold + Duration::from_secs(60)
    }
}

/// Most connections or viewers one bench process holds (stay under `ulimit -n`).
pub const MAX_POLL_SOCKETS: usize = 19_000;

impl PollArgs {
    /// Checks the flags of the poll scenario.
    pub fn validate(&self) -> Result<(), BenchError> {
        require_duration(self.duration, "--duration", true)?;
        require(
            !self.realm.is_empty() && !self.realm.contains(['\r', '\n']),
            "--realm",
            "must be a realm name",
        )?;
        match self.mode {
            PollMode::Closed => self.validate_closed(),
            PollMode::Live => self.validate_live(),
        }
    }

    fn validate_closed(&self) -> Result<(), BenchError> {
        require(
            (1..=MAX_POLL_SOCKETS).contains(&self.connections),
            "--connections",
            "must be between 1 and 19000",
        )?;
        require(
            (1..=self.connections).contains(&self.threads),
            "--threads",
            "must be between 1 and --connections",
        )?;
        require(
            (1..=64).contains(&self.intervals),
            "--intervals",
            "must be between 1 and 64",
        )?;
        require(
            self.peer.is_none_or(|peer| peer == Peer::Nginx),
            "--peer",
            "must be nginx for the poll scenario",
        )?;
        require(!self.ingest, "--ingest", "needs --mode live")
    }

    fn validate_live(&self) -> Result<(), BenchError> {
        require(self.peer.is_none(), "--peer", "needs --mode closed")?;
        require(
            (1..=self.viewers.max(1)).contains(&self.viewers_per_connection),
            "--viewers-per-connection",
            "must be between 1 and --viewers",
        )?;
        require(
            self.viewers >= 1
                && self.viewers.div_ceil(self.viewers_per_connection.max(1))
                    + 3 * self.ingest_connections
                    <= MAX_POLL_SOCKETS,
            "--viewers",
            "must be at least 1, and viewers / --viewers-per-connection plus the ingest connections at most 19000 (one process's sockets)",
        )?;
        require_rate(self.connect_rate, "--connect-rate")?;
        require(
            self.lead <= Duration::from_secs(2),
            "--lead",
            "must be at most 2s (the server waits at most --live-max-ahead, 2s by default)",
        )?;
        require_duration(self.warmup, "--warmup", false)?;
        require(
            (1..=1000).contains(&self.clock_samples),
            "--clock-samples",
            "must be between 1 and 1000",
        )?;
        if !self.ingest {
            return Ok(());
        }
        for (rate, flag) in [
            (self.hearts_rate, "--hearts-rate"),
            (self.chats_rate, "--chats-rate"),
            (self.answers_rate, "--answers-rate"),
        ] {
            require(
                rate == 0.0 || RATE_RANGE.contains(&rate),
                flag,
                "must be 0 or a number per second between 0.01 and 1000000000",
            )?;
        }
        require(
            (1..=1000).contains(&self.ingest_connections),
            "--ingest-connections",
            "must be between 1 and 1000",
        )
    }
}

/// Parses an event size such as `200`, `1KiB` or `4KB` (at most 1 MiB).
pub(crate) fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = crate::config::parse_byte_size(text)?;
    usize::try_from(bytes)
        .ok()
        .filter(|size| *size <= MAX_EVENT_SIZE)
        .ok_or_else(|| format!("`{text}` is larger than the 1MiB the bench supports"))
}

/// Fails with a usage error naming `flag` unless `ok`.
pub(crate) fn require(ok: bool, flag: &str, rule: &str) -> Result<(), BenchError> {
    if ok {
        Ok(())
    } else {
        Err(BenchError::usage(format!("{flag} {rule}")))
    }
}

/// Smallest and largest rates accepted (per second).
const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1e9;

/// Longest duration any flag accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// Checks a rate between 0.01 and 10^9 per second.
pub(crate) fn require_rate(rate: f64, flag: &str) -> Result<(), BenchError> {
    require(
        RATE_RANGE.contains(&rate),
        flag,
        "must be a number per second between 0.01 and 1000000000",
    )
}

/// Checks a duration of at most a day (and more than zero when `positive`).
pub(crate) fn require_duration(
    duration: Duration,
    flag: &str,
    positive: bool,
) -> Result<(), BenchError> {
    let rule = if positive {
        "must be longer than 0s and at most 24h"
    } else {
        "must be at most 24h"
    };
    require(
        duration <= MAX_DURATION && !(positive && duration.is_zero()),
        flag,
        rule,
    )
}

impl SubscriberArgs {
    /// Checks the subscriber flags.
    pub fn validate(&self) -> Result<(), BenchError> {
        require(self.subscribers >= 1, "--subscribers", "must be at least 1")?;
        require(self.topics >= 1, "--topics", "must be at least 1")?;
        require(
            self.topics <= self.subscribers,
            "--topics",
            "must not exceed --subscribers (every topic needs a subscriber)",
        )?;
        self.connect.validate(self.subscribers)?;
        require(
            !self.http2 || self.transport == Transport::Sse,
            "--http2",
            "works with --transport sse only (WebSockets are HTTP/1.1 upgrades)",
        )?;
        require(self.h2_streams >= 1, "--h2-streams", "must be at least 1")
    }
}

impl StreamArgs {
    /// Checks the publishing flags.
    pub fn validate(&self) -> Result<(), BenchError> {
        require_rate(self.rate, "--rate")?;
        require(
            (1..=MAX_BATCH).contains(&self.batch),
            "--batch",
            "must be between 1 and 10000",
        )?;
        require(self.publishers >= 1, "--publishers", "must be at least 1")?;
        require(
            self.publishers <= 19_000,
            "--publishers",
            "must be at most 19000 (one process holds about 19.9k sockets)",
        )?;
        require_duration(self.duration, "--duration", true)?;
        require_duration(self.drain_timeout, "--drain-timeout", false)
    }
}

impl PublishArgs {
    /// Checks the flags of the publish scenario.
    pub fn validate(&self) -> Result<(), BenchError> {
        require(self.publishers >= 1, "--publishers", "must be at least 1")?;
        require(
            self.publishers <= 19_000,
            "--publishers",
            "must be at most 19000 (one process holds about 19.9k sockets)",
        )?;
        require(self.connections >= 1, "--connections", "must be at least 1")?;
        require(
            (1..=MAX_BATCH).contains(&self.batch),
            "--batch",
            "must be between 1 and 10000",
        )?;
        require(self.topics >= 1, "--topics", "must be at least 1")?;
        require_duration(self.duration, "--duration", true)
    }
}

impl FanoutArgs {
    /// Checks that a peer run uses what a peer supports.
    pub fn validate_peer(&self) -> Result<(), BenchError> {
        require(
            self.peer.peer != Some(Peer::Nginx),
            "--peer nginx",
            "serves files and has no publish API; it is a peer of `tidings bench poll`",
        )?;
        require(
            self.peer.peer.is_none() || self.subscribers.transport == Transport::Sse,
            "--peer",
            "measures SSE subscribers only (use --transport sse)",
        )?;
        if self.peer.surface == Surface::Topics {
            return Ok(());
        }
        require(
            self.peer.peer.is_none() && self.subscribers.transport == Transport::Sse,
            "--surface discussions",
            "measures Tidings' SSE stream (use --transport sse, no --peer)",
        )?;
        require(
            self.stream.batch == 1,
            "--surface discussions",
            "posts one comment per request (use --batch 1)",
        )
    }
}

impl ConnectionsArgs {
    /// Checks the flags of the connections scenario.
    pub fn validate(&self) -> Result<(), BenchError> {
        self.subscribers.validate()?;
        require_duration(self.hold, "--hold", false)
    }
}

impl ReconnectArgs {
    /// Checks the flags of the reconnect scenario.
    pub fn validate(&self) -> Result<(), BenchError> {
        self.subscribers.validate()?;
        self.stream.validate()?;
        require(
            self.drop_after < self.stream.duration,
            "--drop-after",
            "must be shorter than --duration (publishing must go on after the drop)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> Result<Scenario, clap::Error> {
        let argv = std::iter::once("bench").chain(args.iter().copied());
        TestCli::try_parse_from(argv).map(|cli| cli.bench.scenario)
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn publish_defaults_and_flags() {
        let Ok(Scenario::Publish(args)) = parse(&["publish"]) else {
            panic!("publish parses");
        };
        assert_eq!(args.publishers, 128);
        assert_eq!(args.batch, 1);
        assert!(!args.h2);
        assert_eq!(args.server.url, "http://127.0.0.1:8080");
        let Ok(Scenario::Publish(args)) = parse(&[
            "publish",
            "-c",
            "8",
            "--h2",
            "--connections",
            "2",
            "--batch",
            "100",
            "--size",
            "1KiB",
            "--duration",
            "2s",
            "--json",
            "--api-key",
            "k",
        ]) else {
            panic!("publish flags parse");
        };
        assert_eq!((args.publishers, args.connections, args.batch), (8, 2, 100));
        assert_eq!(args.size, 1024);
        assert_eq!(args.duration, Duration::from_secs(2));
        assert!(args.output.json && args.h2);
        assert_eq!(args.server.api_key.as_deref(), Some("k"));
        assert!(args.validate().is_ok());
    }

    #[test]
    fn fanout_flags() {
        let Ok(Scenario::Fanout(args)) = parse(&[
            "fanout",
            "--subscribers",
            "10000",
            "--transport",
            "ws",
            "--topics",
            "10",
            "--rate",
            "50",
            "--duration",
            "500ms",
            "--workers",
            "2",
        ]) else {
            panic!("fanout parses");
        };
        assert_eq!(args.subscribers.subscribers, 10_000);
        assert_eq!(args.subscribers.transport, Transport::Ws);
        assert_eq!(args.subscribers.connect.workers, Some(2));
        assert_eq!(args.stream.rate, 50.0);
        assert_eq!(args.stream.duration, Duration::from_millis(500));
        assert!(args.subscribers.validate().is_ok());
        assert!(args.stream.validate().is_ok());
    }

    #[test]
    fn peer_flags_come_together() {
        let Ok(Scenario::Fanout(args)) = parse(&[
            "fanout",
            "--peer",
            "pushpin",
            "--publish-url",
            "http://127.0.0.1:5561/publish/",
            "--stream-url",
            "http://127.0.0.1:7999/stream/{topic}",
        ]) else {
            panic!("peer flags parse");
        };
        assert_eq!(args.peer.peer, Some(Peer::Pushpin));
        assert!(
            parse(&["fanout", "--peer", "pushpin"]).is_err(),
            "URLs missing"
        );
        assert!(
            parse(&["fanout", "--publish-url", "http://x/"]).is_err(),
            "no peer"
        );
        assert!(parse(&["fanout", "--peer", "mercure"]).is_err());
    }

    #[test]
    fn connections_accepts_its_own_word_for_the_count() {
        let Ok(Scenario::Connections(args)) =
            parse(&["connections", "--connections", "19000", "--hold", "1m"])
        else {
            panic!("connections parses");
        };
        assert_eq!(args.subscribers.subscribers, 19_000);
        assert_eq!(args.hold, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(parse(&["fanout", "--transport", "carrier-pigeon"]).is_err());
        assert!(parse(&["publish", "--size", "2MiB"]).is_err());
        assert!(
            parse(&["publish", "--connections", "2"]).is_err(),
            "needs --h2"
        );
        assert!(parse(&["publish", "--duration", "soon"]).is_err());
        let Ok(Scenario::Fanout(args)) = parse(&["fanout", "--subscribers", "2", "--topics", "3"])
        else {
            panic!("parses");
        };
        let err = args.subscribers.validate().expect_err("too many topics");
        assert!(err.to_string().contains("--topics"));
        let Ok(Scenario::Fanout(args)) = parse(&["fanout", "--rate", "0"]) else {
            panic!("parses");
        };
        assert!(args.stream.validate().is_err());
        let Ok(Scenario::Fanout(args)) = parse(&["fanout", "--connect-rate", "1e-300"]) else {
            panic!("parses");
        };
        assert!(args.subscribers.validate().is_err());
        let Ok(Scenario::Fanout(args)) = parse(&["fanout", "--duration", "100000000s"]) else {
            panic!("parses");
        };
        assert!(
            args.stream
                .validate()
                .expect_err("too long")
                .to_string()
                .contains("24h")
        );
        let Ok(Scenario::Connections(args)) = parse(&["connections", "--hold", "2days"]) else {
            panic!("parses");
        };
        assert!(args.validate().is_err());
        let Ok(Scenario::Reconnect(args)) =
            parse(&["reconnect", "--duration", "2s", "--drop-after", "5s"])
        else {
            panic!("parses");
        };
        assert!(
            args.validate()
                .expect_err("drop after end")
                .to_string()
                .contains("--drop-after")
        );
    }

    #[test]
    fn poll_defaults_and_mode_checks() {
        let Ok(Scenario::Poll(args)) = parse(&["poll"]) else {
            panic!("poll parses");
        };
        assert_eq!(args.mode, PollMode::Closed);
        assert_eq!(
            (args.connections, args.threads, args.intervals),
            (100, 1, 4)
        );
        assert_eq!(args.viewers, 10_000);
        assert_eq!(args.lead, Duration::ZERO);
        assert_eq!(
            (args.hearts_rate, args.chats_rate, args.answers_rate),
            (5000.0, 1000.0, 2000.0)
        );
        assert!(args.validate().is_ok());
        let Ok(Scenario::Poll(args)) =
            parse(&["poll", "--mode", "live", "--viewers", "20000", "--ingest"])
        else {
            panic!("parses");
        };
        assert!(
            args.validate()
                .expect_err("too many sockets")
                .to_string()
                .contains("--viewers")
        );
        let Ok(Scenario::Poll(args)) = parse(&[
            "poll",
            "--mode",
            "live",
            "--viewers",
            "20000",
            "--viewers-per-connection",
            "4",
        ]) else {
            panic!("parses");
        };
        assert!(args.validate().is_ok(), "5 000 connections fit");
        for refused in [
            &["poll", "--mode", "live", "--peer", "nginx"][..],
            &["poll", "--peer", "pushpin"][..],
            &["poll", "--ingest"][..],
            &["poll", "--mode", "live", "--lead", "3s"][..],
            &["poll", "--threads", "200"][..],
        ] {
            let Ok(Scenario::Poll(args)) = parse(refused) else {
                panic!("{refused:?} parses");
            };
            assert!(args.validate().is_err(), "{refused:?}");
        }
        let Ok(Scenario::Fanout(args)) = parse(&[
            "fanout",
            "--peer",
            "nginx",
            "--publish-url",
            "http://127.0.0.1:1/",
            "--stream-url",
            "http://127.0.0.1:1/{topic}",
        ]) else {
            panic!("parses");
        };
        assert!(args.validate_peer().is_err(), "nginx has no publish API");
    }

    #[test]
    fn chat_modes_default_to_the_issue_shapes() {
        let shape_of = |args: &[&str]| {
            let Ok(Scenario::Chat(chat)) = parse(args) else {
                panic!("{args:?} parses");
            };
            chat.shape()
        };
        let fanout = shape_of(&["chat"]).expect("valid");
        assert_eq!(
            (
                fanout.layout.users,
                fanout.layout.rooms,
                fanout.layout.per_user
            ),
            (10_000, 2_000, 10)
        );
        assert_eq!(
            (fanout.layout.big_rooms, fanout.layout.big_room_size),
            (5, 1_000)
        );
        assert_eq!(fanout.stream.rate, 1000.0);
        let big = shape_of(&["chat", "--mode", "big-room"]).expect("valid");
        assert_eq!((big.layout.rooms, big.layout.big_room_size), (1, 5_000));
        assert_eq!(big.stream.rate, 100.0);
        let reconnect = shape_of(&["chat", "--mode", "reconnect"]).expect("valid");
        assert_eq!(reconnect.layout.users, 2_000);
        let idle = shape_of(&["chat", "--mode", "idle", "--users", "30"]).expect("valid");
        assert_eq!((idle.layout.users, idle.layout.big_rooms), (30, 0));
        for refused in [
            &["chat", "--mode", "idle", "--rooms-per-user", "1"][..],
            &["chat", "--mode", "reconnect", "--duration", "2s"][..],
            &[
                "chat",
                "--users",
                "10",
                "--big-rooms",
                "1",
                "--big-room-size",
                "11",
            ][..],
            &["chat", "--rate", "0"][..],
            &[
                "chat",
                "--mode",
                "idle",
                "--users",
                "10000",
                "--sockets-per-process",
                "15000",
            ][..],
        ] {
            assert!(shape_of(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn worker_mode_is_hidden_but_parses() {
        assert!(matches!(parse(&["worker"]), Ok(Scenario::Worker)));
        use clap::CommandFactory;
        let help = TestCli::command().render_help().to_string();
        assert!(!help.contains("worker"));
    }
}
