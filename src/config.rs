//! Command line and environment → a validated [`ServeConfig`].
//!
//! Every flag can also be given as a `TIDINGS_*` environment variable (flag
//! wins). Values are validated here, once; the rest of the program receives
//! plain typed values and never reads the environment itself (no globals).

use crate::auth::leases::{self, LeaseSettings};
use crate::auth::origins::OriginLimits;
use crate::cluster::edge::{EdgeSettings, WriterAddress, WriterKey};
use crate::cluster::publisher::{self, WriterSettings};
use crate::cluster::stream::StreamSettings;
use crate::core::hub::HubLimits;
use crate::core::log::retention;
use crate::core::writer::WriterLimits;
use crate::error::StartupError;
use crate::http::cors::CorsSettings;
use crate::http::tls::TlsSetting;
use crate::http::{AccessLog, HttpLimits};
use crate::modules::channels::ChannelsLimits;
use crate::modules::chat::ChatLimits;
use crate::modules::discussions::service::DiscussionLimits;
use crate::modules::live::LiveLimits;
use crate::modules::platform::CoreSettings;
use crate::modules::tickets::TicketsLimits;
use crate::modules::topics::TopicsLimits;
use crate::ops::backup::BackupSettings;
use crate::transport::coalesce::WritePacing;
use crate::transport::socketio::SioSettings;
use crate::transport::sse::SseSettings;
use crate::transport::webhook::WebhookSettings;
use crate::transport::webhook::address::{AddressPolicy, AllowList};
use crate::transport::webhook::backoff::RetryPolicy;
use crate::transport::ws::WsSettings;
use async_nats::ServerAddr;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Durable real-time streams (SSE, WebSocket, Socket.IO, polling, webhooks) in one binary.
#[derive(Debug, Parser)]
#[command(
    name = "tidings",
    version,
    about,
    long_about = "Tidings stores discussions, chat rooms, live events, channels and tickets in an \
embedded database with an append-only event log, and streams them to clients over SSE, \
WebSocket, Socket.IO, interval polling and webhooks.\n\n\
Start with `tidings serve`: on first run it creates the data directory (./data by default) \
with a config file holding an admin key, a default tenant and a JWT secret, and prints them.\n\
Every flag can also be set with an environment variable, shown as [env: …] below."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the server (creates the data directory and its secrets on first run).
    Serve(Box<ServeArgs>),
    /// Create the data directory and its config with fresh secrets, without serving.
    Init(InitArgs),
    /// Measure a running server (publish, fanout, connections, reconnect).
    Bench(Box<crate::bench::BenchArgs>),
    /// Mint a development JWT from a realm secret in config.json.
    Token(crate::cli::TokenArgs),
    /// Create, list and revoke API keys (through the running server, or on the data directory).
    #[command(subcommand)]
    Keys(crate::cli::KeysCommand),
    /// List, create and delete tenants and set their allowed browser origins (through the running server, or on the data directory).
    #[command(subcommand)]
    Tenants(crate::cli::TenantsCommand),
    /// Write a backup file: of the running server at --url (while it takes writes), or of a stopped server's data directory.
    Backup(crate::cli::BackupArgs),
    /// Make a new data directory from a backup file (the file is checked whole first).
    Restore(crate::cli::RestoreArgs),
}

/// Limits of a tenant's allowed browser origins; shared by `serve` and
/// `tidings tenants set-origins` (which applies them when it works on the
/// data directory itself).
#[derive(Debug, Args, Clone, Copy)]
pub struct OriginLimitArgs {
    /// Most allowed browser origins per tenant.
    #[arg(long, env = "TIDINGS_MAX_ORIGINS_PER_TENANT", default_value_t = 32)]
    pub max_origins_per_tenant: usize,
    /// Longest allowed browser origin, in bytes.
    #[arg(long, env = "TIDINGS_MAX_ORIGIN_BYTES", default_value_t = 300)]
    pub max_origin_bytes: usize,
}

impl OriginLimitArgs {
    /// The limits the registry checks.
    pub fn limits(self) -> OriginLimits {
        OriginLimits {
            max_per_tenant: self.max_origins_per_tenant,
            max_bytes: self.max_origin_bytes,
        }
    }
}

/// Flags of a cluster node: the shared log (`--nats`, `--nats-stream`, for
/// writers and edges) and the writer's stream and outbox settings.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// NATS servers (comma-separated URLs, e.g. `nats://10.0.0.5:4222,nats://10.0.0.6:4222`):
    /// makes this node the writer of a cluster (unless --role edge), publishing every durable
    /// batch to a JetStream stream through an outbox (it starts and takes writes while NATS is down).
    #[arg(long = "nats", env = "TIDINGS_NATS", value_delimiter = ',')]
    pub nats: Vec<String>,

    /// Cluster: name of the JetStream stream batches are published to (created when missing).
    #[arg(long, env = "TIDINGS_NATS_STREAM", default_value = "TIDINGS")]
    pub nats_stream: String,

    /// Cluster: copies of each message in the NATS cluster, when the stream is created (1 to 5).
    #[arg(long, env = "TIDINGS_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nats_replicas: u8,

    /// Cluster: the stream drops messages older than this, when it is created (0: never).
    #[arg(long, env = "TIDINGS_NATS_MAX_AGE", default_value = "24h", value_parser = humantime::parse_duration)]
    pub nats_max_age: Duration,

    /// Cluster: the stream drops its oldest messages beyond this size, when it is created (0: no limit).
    #[arg(long, env = "TIDINGS_NATS_MAX_BYTES", default_value = "1GiB", value_parser = parse_byte_size)]
    pub nats_max_bytes: u64,

    /// Cluster: writes get 503 (with Retry-After) while the batches not yet in the stream
    /// (NATS unreachable or slow) hold more than this.
    #[arg(long, env = "TIDINGS_OUTBOX_MAX_BYTES", default_value = "256MiB", value_parser = parse_byte_size)]
    pub outbox_max_bytes: u64,

    /// Cluster writer: a stream lease of an edge (a ticket session, a per-user stream slot) not
    /// renewed for this long expires, freeing it; a dead edge's users may connect elsewhere after
    /// about this plus 1s. At least 6s (edges renew every 3s).
    #[arg(long, env = "TIDINGS_LEASE_EXPIRY", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_expiry: Duration,

    /// Cluster writer: most stream leases held for all edges together (about 200 bytes each);
    /// further ticket claims and user streams on edges get 503 with Retry-After.
    #[arg(long, env = "TIDINGS_MAX_LEASES", default_value_t = 100_000)]
    pub max_leases: usize,
}

/// Longest stream name accepted (JetStream's own limit is higher).
const MAX_STREAM_NAME: usize = 64;

impl ClusterArgs {
    /// The writer's settings, or `None` for a single node (no `--nats`).
    pub fn writer_settings(&self) -> Result<Option<WriterSettings>, StartupError> {
        if self.nats.is_empty() {
            return Ok(None);
        }
        let (servers, name) = self.servers_and_stream()?;
        Ok(Some(WriterSettings {
            servers,
            stream: StreamSettings {
                name,
                replicas: usize::from(self.nats_replicas),
                max_age: self.nats_max_age,
                max_bytes: self.nats_max_bytes,
            },
            outbox_max_bytes: self.outbox_max_bytes,
        }))
    }

    /// `--lease-expiry` and `--max-leases`, checked.
    fn lease_settings(&self) -> Result<LeaseSettings, StartupError> {
        if self.lease_expiry < leases::MIN_EXPIRY {
            return Err(StartupError::Config(format!(
                "--lease-expiry {}: at least {} (edges renew every {})",
                humantime::format_duration(self.lease_expiry),
                humantime::format_duration(leases::MIN_EXPIRY),
                humantime::format_duration(leases::RENEW_PERIOD),
            )));
        }
        if self.max_leases == 0 {
            return Err(StartupError::Config("--max-leases: at least 1".into()));
        }
        Ok(LeaseSettings {
            expiry: self.lease_expiry,
            max: self.max_leases,
        })
    }

    /// `--nats` and `--nats-stream`, checked (writers and edges alike).
    fn servers_and_stream(&self) -> Result<(Vec<ServerAddr>, String), StartupError> {
        let servers = publisher::parse_servers(&self.nats)
            .map_err(|err| StartupError::Config(format!("--nats: {err}")))?;
        let name = &self.nats_stream;
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > MAX_STREAM_NAME || !name.chars().all(valid) {
            return Err(StartupError::Config(format!(
                "--nats-stream `{name}`: use 1 to {MAX_STREAM_NAME} letters, digits, `_` or `-`"
            )));
        }
        Ok((servers, name.clone()))
    }
}

/// Where the data lives; shared by every subcommand that touches it.
#[derive(Debug, Args, Clone)]
pub struct DataDirArgs {
    /// Data directory: config, secrets, database and generated certificates.
    #[arg(long, env = "TIDINGS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// Flags of `tidings init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The data directory.
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Print a settings file for `serve --config` (every key commented out at its
    /// default, with its help and environment variable) and create nothing.
    #[arg(long)]
    pub print_config: bool,
}

/// A node's part in a cluster (see README, "Running more than one node").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// One complete node, no cluster.
    Single,
    /// The cluster's writer: the system of record, publishing every batch to NATS.
    Writer,
    /// An edge: serves clients from a replica of the writer's store, forwards writes.
    Edge,
}

/// Flags of a cluster node's role and, for an edge, its writer.
#[derive(Debug, Args, Clone)]
pub struct EdgeArgs {
    /// This node's role: single (one complete node), writer (the system of record; the default
    /// with --nats) or edge (serves clients from a replica fed by --nats, forwards writes to --writer).
    #[arg(long, env = "TIDINGS_ROLE", value_enum)]
    pub role: Option<Role>,

    /// Edge: the writer's address (`http://host:port` or `https://host`), where writes and admin
    /// requests are forwarded and the first copy of its data is fetched.
    #[arg(long, env = "TIDINGS_WRITER")]
    pub writer: Option<String>,

    /// Edge: the writer's instance admin key (its config.json `adminKey`), to fetch its backup.
    #[arg(long, env = "TIDINGS_WRITER_KEY", hide_env_values = true)]
    pub writer_key: Option<String>,
}

impl EdgeArgs {
    /// The node's role: `--role`, else writer with `--nats`, else single;
    /// exit 2 when the flags do not fit it.
    fn role(&self, cluster: &ClusterArgs) -> Result<Role, StartupError> {
        let refuse = |message: &str| Err(StartupError::Config(message.into()));
        let nats = !cluster.nats.is_empty();
        let role = self
            .role
            .unwrap_or(if nats { Role::Writer } else { Role::Single });
        let edge_flags = self.writer.is_some() || self.writer_key.is_some();
        match role {
            Role::Single if nats => {
                refuse("--nats makes this node a cluster's writer; leave out --role single")
            }
            Role::Writer if !nats => refuse("--role writer needs --nats"),
            Role::Edge if !nats => {
                refuse("--role edge needs --nats (the servers of the shared log)")
            }
            Role::Single | Role::Writer if edge_flags => {
                refuse("--writer and --writer-key are for --role edge")
            }
            _ => Ok(role),
        }
    }

    /// An edge's settings; exit 2 on a missing or malformed flag.
    fn edge_settings(&self, cluster: &ClusterArgs) -> Result<EdgeSettings, StartupError> {
        let refuse = |message: String| StartupError::Config(message);
        let (Some(writer), Some(key)) = (&self.writer, &self.writer_key) else {
            return Err(refuse(
                "--role edge needs --writer (the writer's address) and --writer-key".into(),
            ));
        };
        if key.trim().is_empty() {
            return Err(refuse("--writer-key is empty".into()));
        }
        let (servers, stream) = cluster.servers_and_stream()?;
        Ok(EdgeSettings {
            nats: servers,
            stream,
            writer: WriterAddress::parse(writer)
                .map_err(|err| refuse(format!("--writer {err}")))?,
            writer_key: WriterKey::new(key.trim()),
        })
    }
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Flags of `tidings serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML): every flag below as a key without the dashes, e.g.
    /// `max-body = "1MiB"`; flags and environment variables override it.
    /// `tidings init --print-config` prints one.
    #[arg(long, env = "TIDINGS_CONFIG")]
    pub config: Option<PathBuf>,

    /// The data directory.
    #[command(flatten)]
    pub data: DataDirArgs,

    /// Address and port to listen on; port 0 picks a free port (see the `listening on` line).
    #[arg(long, env = "TIDINGS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// TLS certificate chain (PEM). Needs --tls-key. SIGHUP reloads it.
    #[arg(long, env = "TIDINGS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM). Needs --tls-cert.
    #[arg(long, env = "TIDINGS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve TLS with a self-signed localhost certificate generated once into the data directory.
    #[arg(long, env = "TIDINGS_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,

    /// Largest accepted request body, e.g. 1MiB, 64KiB or a byte count.
    #[arg(long, env = "TIDINGS_MAX_BODY", default_value = "1MiB", value_parser = parse_byte_size)]
    pub max_body: u64,

    /// Time given to in-flight requests to finish after SIGTERM/SIGINT.
    #[arg(long, env = "TIDINGS_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// After SIGTERM, keep accepting (with /readyz answering 503) this long so load balancers notice.
    #[arg(long, env = "TIDINGS_DRAIN_DELAY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub drain_delay: Duration,

    /// A client must send the complete request head within this time.
    #[arg(long, env = "TIDINGS_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// A client must send the complete request body within this time.
    #[arg(long, env = "TIDINGS_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// A client whose socket accepts no bytes for this long is disconnected.
    #[arg(long, env = "TIDINGS_WRITE_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub write_timeout: Duration,

    /// Accept backlog of the listening socket (capped by the kernel's net.core.somaxconn).
    #[arg(long, env = "TIDINGS_LISTEN_BACKLOG", default_value_t = 4096)]
    pub listen_backlog: u32,

    /// Most simultaneously open client connections [default: the open-file limit (raised to its
    /// hard limit at start) minus min(256, limit/2) kept for the store, files, webhooks and probes].
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Connections accepted beyond --max-connections for health probes: they are served one
    /// HTTP/1.1 request to /healthz, /readyz or /metrics (anything else gets 503), then closed.
    #[arg(long, env = "TIDINGS_PROBE_CONNECTIONS", default_value_t = 16)]
    pub probe_connections: usize,

    /// Most simultaneously open connections from one client address (0: no cap); loopback is
    /// exempt unless --per-ip-limit-loopback (a local reverse proxy is one address).
    #[arg(long, env = "TIDINGS_MAX_CONNECTIONS_PER_IP", default_value_t = 1024)]
    pub max_connections_per_ip: usize,

    /// Apply --max-connections-per-ip to loopback addresses too.
    #[arg(long, env = "TIDINGS_PER_IP_LIMIT_LOOPBACK")]
    pub per_ip_limit_loopback: bool,

    /// Largest request head (request line and headers); a larger one gets 431.
    #[arg(long, env = "TIDINGS_MAX_HEAD", default_value = "64KiB", value_parser = parse_byte_size)]
    pub max_head: u64,

    /// Streams one HTTP/2 connection may have open at once (each may carry a
    /// request body of up to --max-body while it is read).
    #[arg(long, env = "TIDINGS_H2_MAX_STREAMS", default_value_t = 32)]
    pub h2_max_streams: u32,

    /// An HTTP/2 connection with no open stream is closed after this long (its first
    /// request must come within --header-timeout).
    #[arg(long, env = "TIDINGS_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,

    /// Memory the embedded database may use for its page cache, e.g. 256MiB.
    #[arg(long, env = "TIDINGS_STORE_CACHE", default_value = "128MiB", value_parser = parse_byte_size)]
    pub store_cache: u64,

    /// Log line format on stderr (the filter comes from RUST_LOG, default `info`).
    #[arg(long, env = "TIDINGS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which requests write an access-log line: all, errors (status 400 and up) or off.
    #[arg(long, env = "TIDINGS_ACCESS_LOG", value_enum, default_value_t = AccessLog::All)]
    pub access_log: AccessLog,

    /// Serve tenants as `{slug}.DOMAIN` (the Host's subdomain picks the tenant).
    #[arg(long, env = "TIDINGS_BASE_DOMAIN")]
    pub base_domain: Option<String>,

    /// How long browsers may cache a CORS preflight answer (Access-Control-Max-Age).
    #[arg(long, env = "TIDINGS_CORS_MAX_AGE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub cors_max_age: Duration,

    /// Limits of tenants' allowed browser origins.
    #[command(flatten)]
    pub origin_limits: OriginLimitArgs,

    /// A stream ticket must be used within this time after it was minted.
    #[arg(long, env = "TIDINGS_TICKET_TTL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub ticket_ttl: Duration,

    /// A used ticket may resume its stream within this time after its last connection.
    #[arg(long, env = "TIDINGS_TICKET_RESUME_WINDOW", default_value = "24h", value_parser = humantime::parse_duration)]
    pub ticket_resume_window: Duration,

    /// Most concurrent streams per end user (token subject or ticket viewer) per tenant.
    #[arg(long, env = "TIDINGS_MAX_STREAMS_PER_USER", default_value_t = 5)]
    pub max_streams_per_user: usize,

    /// Verified JWTs kept in memory (for the whole process, all realms together) so a token
    /// is checked cryptographically once, then answered from memory until it expires; 0 disables.
    #[arg(long, env = "TIDINGS_JWT_CACHE_ENTRIES", default_value_t = 100_000)]
    pub jwt_cache_entries: usize,

    /// Events each subscribed topic keeps in memory for its subscribers; slower ones read the log.
    #[arg(long, env = "TIDINGS_TOPIC_BUFFER", default_value_t = 1024)]
    pub topic_buffer: usize,

    /// Memory one subscribed topic's buffer may hold, e.g. 4MiB; older events are then read from the log.
    #[arg(long, env = "TIDINGS_TOPIC_BUFFER_BYTES", default_value = "4MiB", value_parser = parse_byte_size)]
    pub topic_buffer_bytes: u64,

    /// Memory all topic buffers together may hold, e.g. 256MiB.
    #[arg(long, env = "TIDINGS_HUB_BUFFER_BYTES", default_value = "256MiB", value_parser = parse_byte_size)]
    pub hub_buffer_bytes: u64,

    /// Most log reads for replay, repair and history running at once.
    #[arg(long, env = "TIDINGS_REPLAY_READERS", default_value_t = 4)]
    pub replay_readers: usize,

    /// Changes that may wait for the commit pipeline; beyond it writes get 503.
    #[arg(long, env = "TIDINGS_WRITER_QUEUE", default_value_t = 16_384)]
    pub writer_queue: usize,

    /// Most changes made durable by one flush.
    #[arg(long, env = "TIDINGS_WRITER_BATCH", default_value_t = 1024)]
    pub writer_batch: usize,

    /// Bytes the changes waiting for the commit pipeline may hold together; beyond it writes get 503.
    #[arg(long, env = "TIDINGS_WRITER_QUEUE_BYTES", default_value = "64MiB", value_parser = parse_byte_size)]
    pub writer_queue_bytes: u64,

    /// After a failed write, how often the store is reopened and the failed group undone.
    #[arg(long, env = "TIDINGS_STORE_RECOVERY_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub store_recovery_interval: Duration,

    /// Exit non-zero (for a supervisor to restart the process) when the store has not recovered after this long.
    #[arg(long, env = "TIDINGS_STORE_RECOVERY_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub store_recovery_timeout: Duration,

    /// Most events in one publish request.
    #[arg(long, env = "TIDINGS_PUBLISH_BATCH_MAX", default_value_t = 1000)]
    pub publish_batch_max: usize,

    /// Retention override PREFIX=COUNT,AGE (repeatable; an empty prefix sets the default of 10000,7d).
    #[arg(long = "retention", env = "TIDINGS_RETENTION", value_delimiter = ';', value_parser = retention::parse_override)]
    pub retention: Vec<(String, retention::Limits)>,

    /// How often old events are pruned.
    #[arg(long, env = "TIDINGS_PRUNE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub prune_interval: Duration,

    /// A write's idempotency key (`Idempotency-Key`) is remembered this long: a retry within it gets the first reply.
    #[arg(long, env = "TIDINGS_IDEMPOTENCY_WINDOW", default_value = "24h", value_parser = humantime::parse_duration)]
    pub idempotency_window: Duration,

    /// Reconnection delay announced to SSE clients (`retry:`), in milliseconds.
    #[arg(long, env = "TIDINGS_SSE_RETRY_MS", default_value_t = 5000)]
    pub sse_retry_ms: u64,

    /// Interval of SSE heartbeat comments.
    #[arg(long, env = "TIDINGS_SSE_HEARTBEAT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub sse_heartbeat: Duration,

    /// SSE connections are cycled (`connection-timeout`) after this long.
    #[arg(long, env = "TIDINGS_SSE_LIFETIME", default_value = "30m", value_parser = humantime::parse_duration)]
    pub sse_lifetime: Duration,

    /// How SSE and WebSocket streams pace their writes (holding a busy
    /// stream's events to write them together: far fewer writes at high
    /// fan-out). A duration: a stream that wrote nothing for that long writes
    /// at once (the first event after a quiet spell is never delayed), a busy
    /// one at most once per interval; 0 writes every delivery at once.
    /// `adaptive` or `adaptive:<longest>` (default longest 20ms): a busy
    /// stream holds 1 ms, doubling per busy write up to the longest (a pause
    /// halves the hold, four longest holds of quiet reset it).
    #[arg(long, env = "TIDINGS_STREAM_WRITE_INTERVAL", default_value = "20ms")]
    pub stream_write_interval: WritePacing,

    /// Largest incoming WebSocket message, e.g. 64KiB.
    #[arg(long, env = "TIDINGS_WS_MAX_MESSAGE", default_value = "64KiB", value_parser = parse_byte_size)]
    pub ws_max_message: u64,

    /// WebSocket read buffer per connection, at least 256B (it is filled
    /// whole on every read, so it is a large part of an idle connection's
    /// memory; a bigger message grows it while it is read, and is read in
    /// steps of this size).
    #[arg(long, env = "TIDINGS_WS_READ_BUFFER", default_value = "512B", value_parser = parse_byte_size)]
    pub ws_read_buffer: u64,

    /// Interval of WebSocket pings; clients silent for two intervals are dropped.
    #[arg(long, env = "TIDINGS_WS_PING_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub ws_ping_interval: Duration,

    /// Most topics one WebSocket connection may subscribe to.
    #[arg(long, env = "TIDINGS_WS_MAX_TOPICS", default_value_t = 100)]
    pub ws_max_topics: usize,

    /// Socket.IO: interval between Engine.IO pings (`pingInterval`); the first
    /// ping comes one interval after the session opened.
    #[arg(long, env = "TIDINGS_SIO_PING_INTERVAL", default_value = "25s", value_parser = humantime::parse_duration)]
    pub sio_ping_interval: Duration,

    /// Socket.IO: how long a client has to answer a ping (`pingTimeout`)
    /// before its session is closed.
    #[arg(long, env = "TIDINGS_SIO_PING_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub sio_ping_timeout: Duration,

    /// Socket.IO: largest packet, WebSocket message or long-polling payload
    /// a client may send (`maxPayload`); a larger one closes the session.
    #[arg(long, env = "TIDINGS_SIO_MAX_PAYLOAD", default_value = "100000", value_parser = parse_byte_size)]
    pub sio_max_payload: u64,

    /// Socket.IO: an Engine.IO session with no namespace joined for this long
    /// (from its start, or since it left its last one) is closed.
    #[arg(long, env = "TIDINGS_SIO_CONNECT_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub sio_connect_timeout: Duration,

    /// Socket.IO: most Engine.IO sessions open at once per endpoint
    /// (anonymous ones included); a handshake beyond gets 503.
    #[arg(long, env = "TIDINGS_SIO_MAX_SESSIONS", default_value_t = 20_000)]
    pub sio_max_sessions: usize,

    /// Socket.IO: most bytes queued for a long-polling client between its
    /// polls; more ends its session (the client reconnects and resumes).
    #[arg(long, env = "TIDINGS_SIO_MAX_BUFFER", default_value = "1MiB", value_parser = parse_byte_size)]
    pub sio_max_buffer: u64,

    /// Longest discussion comment, in characters.
    #[arg(
        long,
        env = "TIDINGS_DISCUSSION_MAX_COMMENT_CHARS",
        default_value_t = 10_000
    )]
    pub discussion_max_comment_chars: usize,

    /// Longest discussion title, in characters.
    #[arg(
        long,
        env = "TIDINGS_DISCUSSION_MAX_TITLE_CHARS",
        default_value_t = 300
    )]
    pub discussion_max_title_chars: usize,

    /// Most different reactions on one discussion comment.
    #[arg(
        long,
        env = "TIDINGS_DISCUSSION_MAX_REACTION_KINDS",
        default_value_t = 20
    )]
    pub discussion_max_reaction_kinds: usize,

    /// Chat: longest message text, in characters.
    #[arg(long, env = "TIDINGS_CHAT_MAX_MESSAGE_CHARS", default_value_t = 4000)]
    pub chat_max_message_chars: usize,

    /// Chat: most members of one room.
    #[arg(long, env = "TIDINGS_CHAT_MAX_ROOM_MEMBERS", default_value_t = 10_000)]
    pub chat_max_room_members: usize,

    /// Chat: most rooms one user is a member of.
    #[arg(long, env = "TIDINGS_CHAT_MAX_ROOMS_PER_USER", default_value_t = 1000)]
    pub chat_max_rooms_per_user: usize,

    /// Chat: longest room name, in characters.
    #[arg(long, env = "TIDINGS_CHAT_MAX_NAME_CHARS", default_value_t = 100)]
    pub chat_max_name_chars: usize,

    /// Chat: longest room description, in characters.
    #[arg(
        long,
        env = "TIDINGS_CHAT_MAX_DESCRIPTION_CHARS",
        default_value_t = 1000
    )]
    pub chat_max_description_chars: usize,

    /// Chat: most members named when a room is created.
    #[arg(long, env = "TIDINGS_CHAT_MAX_INITIAL_MEMBERS", default_value_t = 1000)]
    pub chat_max_initial_members: usize,

    /// Chat: most comments under one message (deleting it deletes them).
    #[arg(long, env = "TIDINGS_CHAT_MAX_THREAD_COMMENTS", default_value_t = 1000)]
    pub chat_max_thread_comments: usize,

    /// Chat: how long an idle event stream waits after a new event before it writes, so
    /// messages of a room posted close together reach a client as one frame (adds up to this
    /// much delay; 0 writes at once, batching only what committed or queued together).
    #[arg(long, env = "TIDINGS_CHAT_BATCH_WINDOW", default_value = "0ms", value_parser = humantime::parse_duration)]
    pub chat_batch_window: Duration,

    /// Channels: longest post or discussion message text, in characters.
    #[arg(
        long,
        env = "TIDINGS_CHANNELS_MAX_TEXT_CHARS",
        default_value_t = 10_000
    )]
    pub channels_max_text_chars: usize,

    /// Channels: longest channel name, in characters.
    #[arg(long, env = "TIDINGS_CHANNELS_MAX_NAME_CHARS", default_value_t = 200)]
    pub channels_max_name_chars: usize,

    /// Channels: most rooms one Socket.IO connection may have joined at once.
    #[arg(long, env = "TIDINGS_CHANNELS_MAX_JOINED_ROOMS", default_value_t = 100)]
    pub channels_max_joined_rooms: usize,

    /// Channels: how long after losing a channel's entitlement a member still gets its
    /// broadcast push (never realtime access).
    #[arg(long, env = "TIDINGS_CHANNELS_ENTITLEMENT_GRACE", default_value = "7d", value_parser = humantime::parse_duration)]
    pub channels_entitlement_grace: Duration,

    /// Tickets: longest ticket title, in characters.
    #[arg(long, env = "TIDINGS_TICKETS_MAX_TITLE_CHARS", default_value_t = 500)]
    pub tickets_max_title_chars: usize,

    /// Tickets: longest description or comment, in characters.
    #[arg(long, env = "TIDINGS_TICKETS_MAX_TEXT_CHARS", default_value_t = 20_000)]
    pub tickets_max_text_chars: usize,

    /// Tickets: most watchers of one ticket.
    #[arg(long, env = "TIDINGS_TICKETS_MAX_WATCHERS", default_value_t = 100)]
    pub tickets_max_watchers: usize,

    /// Tickets: most agents of one queue.
    #[arg(long, env = "TIDINGS_TICKETS_MAX_QUEUE_AGENTS", default_value_t = 500)]
    pub tickets_max_queue_agents: usize,

    /// Tickets: notifications kept per user (the oldest leave first).
    #[arg(long, env = "TIDINGS_TICKETS_INBOX_MAX", default_value_t = 1_000)]
    pub tickets_inbox_max: usize,

    /// Tickets: notification or list-update streams one user may hold open at once (429 beyond).
    #[arg(
        long,
        env = "TIDINGS_TICKETS_MAX_STREAMS_PER_USER",
        default_value_t = 5
    )]
    pub tickets_max_streams_per_user: usize,

    /// Tickets: interval of the `heartbeat` event on the notification and list-update streams.
    #[arg(long, env = "TIDINGS_TICKETS_HEARTBEAT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub tickets_heartbeat: Duration,

    /// Tickets: the length of one "minute" of SLA policies (tests shorten it, e.g. `100ms`).
    #[arg(long, env = "TIDINGS_TICKETS_SLA_UNIT", default_value = "1m", value_parser = humantime::parse_duration)]
    pub tickets_sla_unit: Duration,

    /// Live events: how far ahead of the server's clock a poll may ask for an interval (and wait for it).
    #[arg(long, env = "TIDINGS_LIVE_MAX_AHEAD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub live_max_ahead: Duration,

    /// Live events: a viewer counts in `view-count` when it polled within this window.
    #[arg(long, env = "TIDINGS_LIVE_VIEWER_WINDOW", default_value = "10s", value_parser = humantime::parse_duration)]
    pub live_viewer_window: Duration,

    /// Live events: most distinct viewers tracked per stream (the view count saturates there).
    #[arg(long, env = "TIDINGS_LIVE_MAX_VIEWERS", default_value_t = 1_000_000)]
    pub live_max_viewers: usize,

    /// Live events: closed intervals kept in memory per stream (older ones are read from the store).
    #[arg(long, env = "TIDINGS_LIVE_INTERVAL_CACHE", default_value_t = 240)]
    pub live_interval_cache: usize,

    /// Live events: the longest retention a stream may ask for.
    #[arg(long, env = "TIDINGS_LIVE_MAX_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub live_max_retention: Duration,

    /// Live events: most hearts one request may send.
    #[arg(
        long,
        env = "TIDINGS_LIVE_MAX_HEARTS_PER_REQUEST",
        default_value_t = 100
    )]
    pub live_max_hearts_per_request: u64,

    /// Live events: most chats in one interval of one stream (more get 429).
    #[arg(
        long,
        env = "TIDINGS_LIVE_MAX_CHATS_PER_INTERVAL",
        default_value_t = 1_000
    )]
    pub live_max_chats_per_interval: u32,

    /// Live events: most chats of one viewer in one interval of one stream (more get 429).
    #[arg(
        long,
        env = "TIDINGS_LIVE_MAX_CHATS_PER_VIEWER_INTERVAL",
        default_value_t = 2
    )]
    pub live_max_chats_per_viewer_interval: u32,

    /// Live events: bytes of closed intervals kept in memory per stream.
    #[arg(long, env = "TIDINGS_LIVE_INTERVAL_CACHE_BYTES", default_value = "16MiB", value_parser = parse_byte_size)]
    pub live_interval_cache_bytes: u64,

    /// Live events: longest chat text, in characters.
    #[arg(long, env = "TIDINGS_LIVE_MAX_CHAT_CHARS", default_value_t = 500)]
    pub live_max_chat_chars: usize,
    /// Webhooks: time one delivery attempt may take (connect, send, response head and a little body).
    #[arg(long, env = "TIDINGS_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,

    /// Webhooks: a delivery is retried for this long after it was queued, then kept as failed.
    #[arg(long, env = "TIDINGS_WEBHOOK_RETRY_FOR", default_value = "24h", value_parser = humantime::parse_duration)]
    pub webhook_retry_for: Duration,

    /// Webhooks: first retry waits up to this long; each further one up to twice as long (full jitter).
    #[arg(long, env = "TIDINGS_WEBHOOK_BACKOFF_BASE", default_value = "1s", value_parser = humantime::parse_duration)]
    pub webhook_backoff_base: Duration,

    /// Webhooks: the longest wait between two attempts.
    #[arg(long, env = "TIDINGS_WEBHOOK_BACKOFF_CAP", default_value = "10m", value_parser = humantime::parse_duration)]
    pub webhook_backoff_cap: Duration,

    /// Webhooks: an endpoint is disabled after this many consecutive given-up deliveries (0: never).
    #[arg(long, env = "TIDINGS_WEBHOOK_DISABLE_AFTER", default_value_t = 5)]
    pub webhook_disable_after: u32,

    /// Webhooks: most endpoints per tenant.
    #[arg(long, env = "TIDINGS_WEBHOOK_MAX_ENDPOINTS", default_value_t = 20)]
    pub webhook_max_endpoints: usize,

    /// Webhooks: largest delivery body; a larger event fails its write with 413 while a matching endpoint exists.
    #[arg(long, env = "TIDINGS_WEBHOOK_MAX_BODY", default_value = "1MiB", value_parser = parse_byte_size)]
    pub webhook_max_body: u64,

    /// Webhooks: most delivery attempts in flight at once, across all endpoints (each endpoint has at most one).
    #[arg(long, env = "TIDINGS_WEBHOOK_CONCURRENCY", default_value_t = 32)]
    pub webhook_concurrency: usize,

    /// Webhooks: PEM file of extra CA certificates to trust for https endpoints (besides the Mozilla roots).
    #[arg(long, env = "TIDINGS_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,

    /// Webhooks: loopback or private networks and host names that endpoints may reach, comma-separated (`127.0.0.1/32,10.0.0.0/8,receiver.lan`); every other loopback/private address is refused, link-local and cloud metadata addresses always.
    #[arg(long, env = "TIDINGS_WEBHOOK_ALLOW_PRIVATE", value_delimiter = ',')]
    pub webhook_allow_private: Vec<String>,

    /// Online backups: a client that reads nothing of its backup for this long ends it.
    #[arg(long, env = "TIDINGS_BACKUP_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub backup_idle_timeout: Duration,

    /// Online backups: most bytes of writes made during a backup that wait to be sent; beyond it the backup fails.
    #[arg(long, env = "TIDINGS_BACKUP_MAX_JOURNAL_BYTES", default_value = "256MiB", value_parser = parse_byte_size)]
    pub backup_max_journal_bytes: u64,

    /// Running more than one node.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// The node's role in a cluster (and an edge's writer).
    #[command(flatten)]
    pub edge: EdgeArgs,

    /// Debug builds only: serve the /__test/* routes used by the integration tests.
    #[cfg(debug_assertions)]
    #[arg(long, hide = true)]
    pub enable_test_routes: bool,
}

/// Smallest `--max-head` (hyper's HTTP/1.1 buffers cannot be smaller).
const MIN_HEAD_BYTES: u64 = 8192;

/// Validated settings of `tidings serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Data directory root.
    pub data_dir: PathBuf,
    /// Listening address.
    pub listen: SocketAddr,
    /// Accept backlog.
    pub listen_backlog: u32,
    /// TLS mode.
    pub tls: TlsSetting,
    /// Request limits and timeouts.
    pub limits: HttpLimits,
    /// Grace period for in-flight requests at shutdown.
    pub shutdown_grace: Duration,
    /// Time between SIGTERM and closing the listener.
    pub drain_delay: Duration,
    /// Page cache of the embedded database, in bytes.
    pub store_cache_bytes: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Whether the debug-only test routes are served.
    pub test_routes: bool,
    /// Base domain for tenant subdomains.
    pub base_domain: Option<String>,
    /// CORS on browser-facing routes.
    pub cors: CorsSettings,
    /// Ticket lifetimes.
    pub tickets: crate::auth::tickets::TicketSettings,
    /// Concurrent streams per user per tenant.
    pub max_streams_per_user: usize,
    /// Verified JWTs kept in memory (0: none).
    pub jwt_cache_entries: usize,
    /// Event core settings.
    pub core: CoreSettings,
    /// Webhook delivery settings.
    pub webhooks: WebhookSettings,
    /// The cluster writer's settings (`--nats`); `None` for a single node.
    pub cluster_writer: Option<WriterSettings>,
    /// The cluster writer's edge leases (expiry and cap).
    pub leases: LeaseSettings,
    /// Set on an edge (`--role edge`).
    pub edge: Option<EdgeSettings>,
}

impl ServeArgs {
    /// Checks cross-field rules and produces the config the server runs with.
    pub fn into_config(self) -> Result<ServeConfig, StartupError> {
        let webhooks = self.webhook_settings()?;
        let role = self.edge.role(&self.cluster)?;
        let cluster_writer = match role {
            Role::Writer => self.cluster.writer_settings()?,
            Role::Single | Role::Edge => None,
        };
        let edge = match role {
            Role::Edge => Some(self.edge.edge_settings(&self.cluster)?),
            Role::Single | Role::Writer => None,
        };
        let (ws, sio) = (self.ws(), self.sio());
        let max_connections = self
            .max_connections
            .unwrap_or_else(crate::http::admission::default_max_connections);
        if max_connections == 0 {
            return Err(StartupError::Config(
                "--max-connections must be at least 1".into(),
            ));
        }
        if self.idempotency_window < Duration::from_secs(1) {
            return Err(StartupError::Config(
                "--idempotency-window must be at least 1s".into(),
            ));
        }
        if self.max_head < MIN_HEAD_BYTES {
            return Err(StartupError::Config(format!(
                "--max-head must be at least {MIN_HEAD_BYTES} bytes"
            )));
        }
        if self.max_body == 0 {
            return Err(StartupError::Config(
                "--max-body must be at least 1 byte".into(),
            ));
        }
        let tls = match (self.tls_cert, self.tls_key, self.tls_self_signed) {
            (Some(cert), Some(key), false) => TlsSetting::Files { cert, key },
            (None, None, true) => TlsSetting::SelfSigned,
            (None, None, false) => TlsSetting::Off,
            _ => {
                return Err(StartupError::Config(
                    "use either --tls-cert with --tls-key, or --tls-self-signed".into(),
                ));
            }
        };
        #[cfg(debug_assertions)]
        let test_routes = self.enable_test_routes;
        #[cfg(not(debug_assertions))]
        let test_routes = false;
        Ok(ServeConfig {
            data_dir: self.data.data_dir.clone(),
            listen: self.listen,
            listen_backlog: self.listen_backlog.max(1),
            tls,
            limits: HttpLimits {
                max_body_bytes: self.max_body,
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                write_timeout: self.write_timeout,
                max_connections,
                probe_connections: self.probe_connections,
                max_connections_per_ip: self.max_connections_per_ip,
                per_ip_limit_loopback: self.per_ip_limit_loopback,
                max_head_bytes: usize::try_from(self.max_head).unwrap_or(usize::MAX),
                idle_timeout: self.idle_timeout.max(Duration::from_millis(100)),
                h2_max_streams: self.h2_max_streams.max(1),
                access_log: self.access_log,
            },
            shutdown_grace: self.shutdown_grace,
            drain_delay: self.drain_delay,
            store_cache_bytes: self.store_cache,
            log_format: self.log_format,
            test_routes,
            base_domain: self.base_domain,
            cors: CorsSettings {
                max_age: self.cors_max_age,
            },
            tickets: crate::auth::tickets::TicketSettings {
                ttl: self.ticket_ttl,
                resume_window: self.ticket_resume_window,
            },
            max_streams_per_user: self.max_streams_per_user.max(1),
            jwt_cache_entries: self.jwt_cache_entries,
            core: CoreSettings {
                origin_limits: self.origin_limits.limits(),
                hub: HubLimits {
                    topic_events: self.topic_buffer.max(1),
                    topic_bytes: usize::try_from(self.topic_buffer_bytes).unwrap_or(usize::MAX),
                    total_bytes: usize::try_from(self.hub_buffer_bytes).unwrap_or(usize::MAX),
                    readers: self.replay_readers.max(1),
                },
                writer: WriterLimits {
                    queue: self.writer_queue.max(1),
                    batch: self.writer_batch.max(1),
                    queue_bytes: usize::try_from(self.writer_queue_bytes.max(1))
                        .unwrap_or(usize::MAX),
                    recovery: crate::core::writer::RecoverySettings {
                        interval: self.store_recovery_interval.max(Duration::from_millis(100)),
                        timeout: self.store_recovery_timeout,
                    },
                },
                topics: TopicsLimits {
                    max_batch_events: self.publish_batch_max.max(1),
                    max_page: 1000,
                    ws_max_topics: self.ws_max_topics.max(1),
                },
                retention: retention::policy_from(self.retention),
                prune_interval: self.prune_interval.max(Duration::from_millis(100)),
                idempotency_window: self.idempotency_window,
                sse: SseSettings {
                    retry_ms: self.sse_retry_ms,
                    heartbeat: self.sse_heartbeat.max(Duration::from_millis(100)),
                    lifetime: self.sse_lifetime,
                    max_batch: 1024,
                    write_interval: self.stream_write_interval,
                },
                ws,
                sio,
                discussions: DiscussionLimits {
                    max_comment_chars: self.discussion_max_comment_chars.max(1),
                    max_title_chars: self.discussion_max_title_chars.max(1),
                    max_reaction_kinds: self.discussion_max_reaction_kinds.max(1),
                    max_page: 100,
                },
                channels: ChannelsLimits {
                    max_text_chars: self.channels_max_text_chars.max(1),
                    max_name_chars: self.channels_max_name_chars.max(1),
                    max_joined_rooms: self.channels_max_joined_rooms.max(1),
                    entitlement_grace: self.channels_entitlement_grace,
                },
                tickets: TicketsLimits {
                    max_title_chars: self.tickets_max_title_chars.max(1),
                    max_text_chars: self.tickets_max_text_chars.max(1),
                    max_watchers: self.tickets_max_watchers.max(1),
                    max_queue_agents: self.tickets_max_queue_agents.max(1),
                    inbox_max: self.tickets_inbox_max.max(1),
                    max_streams_per_user: self.tickets_max_streams_per_user.max(1),
                    heartbeat: self.tickets_heartbeat.max(Duration::from_millis(10)),
                    sla_unit: self.tickets_sla_unit.max(Duration::from_millis(1)),
                },
                chat: ChatLimits {
                    max_message_chars: self.chat_max_message_chars.max(1),
                    max_room_members: self.chat_max_room_members.max(1),
                    max_rooms_per_user: self.chat_max_rooms_per_user.max(1),
                    max_name_chars: self.chat_max_name_chars.max(1),
                    max_description_chars: self.chat_max_description_chars.max(1),
                    max_initial_members: self.chat_max_initial_members.max(1),
                    max_thread_comments: self.chat_max_thread_comments.max(1),
                    batch_window: self.chat_batch_window.min(Duration::from_secs(1)),
                },
                live: LiveLimits {
                    max_ahead: self.live_max_ahead,
                    viewer_window: self.live_viewer_window.max(Duration::from_millis(250)),
                    max_viewers: self.live_max_viewers,
                    interval_cache: self.live_interval_cache.max(1),
                    max_retention: self.live_max_retention.max(Duration::from_secs(1)),
                    max_hearts_per_request: self.live_max_hearts_per_request.max(1),
                    max_chats_per_interval: self.live_max_chats_per_interval.max(1),
                    max_chats_per_viewer_interval: self.live_max_chats_per_viewer_interval.max(1),
                    interval_cache_bytes: usize::try_from(self.live_interval_cache_bytes)
                        .unwrap_or(usize::MAX),
                    max_chat_chars: self.live_max_chat_chars.max(1),
                },
                backup: BackupSettings {
                    data_dir: self.data.data_dir.clone(),
                    idle_timeout: self.backup_idle_timeout.max(Duration::from_millis(100)),
                    max_journal_bytes: usize::try_from(self.backup_max_journal_bytes)
                        .unwrap_or(usize::MAX),
                },
            },
            webhooks,
            cluster_writer,
            leases: self.cluster.lease_settings()?,
            edge,
        })
    }

    /// WebSocket limits, timing and write pacing.
    fn ws(&self) -> WsSettings {
        WsSettings {
            max_message_bytes: usize::try_from(self.ws_max_message).unwrap_or(usize::MAX),
            read_buffer_bytes: usize::try_from(self.ws_read_buffer.max(256)).unwrap_or(4096),
            ping_interval: self.ws_ping_interval.max(Duration::from_millis(100)),
            write_interval: self.stream_write_interval,
        }
    }

    /// Socket.IO limits and timing (its WebSocket settings from [`Self::ws`]).
    fn sio(&self) -> SioSettings {
        let least = Duration::from_millis(10);
        SioSettings {
            ping_interval: self.sio_ping_interval.max(least),
            ping_timeout: self.sio_ping_timeout.max(least),
            max_payload: usize::try_from(self.sio_max_payload.max(1)).unwrap_or(usize::MAX),
            connect_timeout: self.sio_connect_timeout.max(least),
            max_sessions: self.sio_max_sessions.max(1),
            max_buffer: usize::try_from(self.sio_max_buffer.max(1024)).unwrap_or(usize::MAX),
            ws: self.ws(),
        }
    }

    fn webhook_settings(&self) -> Result<WebhookSettings, StartupError> {
        if self.webhook_backoff_cap < self.webhook_backoff_base {
            return Err(StartupError::Config(
                "--webhook-backoff-cap must be at least --webhook-backoff-base".into(),
            ));
        }
        let least = Duration::from_millis(1);
        Ok(WebhookSettings {
            timeout: self.webhook_timeout.max(least),
            retry: RetryPolicy {
                base: self.webhook_backoff_base.max(least),
                cap: self.webhook_backoff_cap.max(least),
                retry_for: self.webhook_retry_for,
            },
            disable_after: self.webhook_disable_after,
            max_endpoints: self.webhook_max_endpoints,
            max_body: usize::try_from(self.webhook_max_body).unwrap_or(usize::MAX),
            concurrency: self.webhook_concurrency.max(1),
            ca_file: self.webhook_ca_file.clone(),
            address_policy: AddressPolicy {
                allow_private: Arc::new(AllowList::parse(&self.webhook_allow_private).map_err(
                    |err| StartupError::Config(format!("--webhook-allow-private {err}")),
                )?),
            },
        })
    }
}

/// Parses `1MiB`, `512KiB`, `2GiB`, `1MB`, `1000` (bytes) into a byte count.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size like 1MiB, 64KiB or 1048576"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` (use B, KiB, MiB or GiB)"
            ));
        }
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_and_without_units() {
        assert_eq!(parse_byte_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_byte_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_byte_size("1000"), Ok(1000));
        assert_eq!(parse_byte_size("2 gb"), Ok(2_000_000_000));
        assert!(parse_byte_size("MiB").is_err());
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
