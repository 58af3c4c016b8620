//! `tidings bench`: measures a running Tidings server from its own process.
//!
//! Scenarios (see [`args::Scenario`]): `publish` (durable publish throughput
//! and acknowledgement latency), `fanout` (delivery rate, publish-to-delivery
//! latency, loss and duplicates), `connections` (server memory per idle
//! connection), `reconnect` (catch-up after every subscriber drops at once),
//! `poll` (live events-streams: closed-interval requests/s beside nginx, or
//! viewers polling every interval: delay from the close, identical bytes,
//! RSS, with optional ingest), `chat` (users on their chat event streams,
//! messages posted to rooms: latency, exact accounting per member, frames
//! grouping messages, catch-up after a mass reconnect, memory per
//! connection and per room membership), `socketio` (Socket.IO clients
//! joined to a channel's posts room on Tidings and on the Node.js
//! socket.io reference, side by side: broadcast, idle memory, reconnect
//! with sync), `tickets` (users on their ticket notification streams under
//! ticket changes, SLA breaches falling due in one second, inbox reads),
//! `cluster` (the fanout load on a single node, then on a cluster: the
//! writer takes the publishes, the edges hold the subscribers; compared).
//!
//! Run it against a server started separately (`http://`, or `https://` with
//! `--ca-file PEM` or `--insecure`), for example:
//!
//! ```text
//! tidings bench publish --url http://127.0.0.1:8080 --data-dir ./data -c 128 --duration 10s
//! tidings bench publish --h2 --connections 2 -c 64 --batch 100
//! tidings bench fanout --subscribers 1000 --transport sse --topics 1 --rate 2000 --size 200 --duration 10s
//! tidings bench fanout --subscribers 10000 --transport ws --rate 50 --publishers 2
//! tidings bench connections --connections 19000 --transport ws --connect-rate 2000 --hold 10s
//! tidings bench reconnect --subscribers 10000 --rate 200 --duration 10s --drop-after 3s --json
//! tidings bench fanout --url https://127.0.0.1:8443 --insecure --http2 --h2-streams 32
//! tidings bench poll --mode closed -c 100 --duration 10s --peer nginx
//! tidings bench poll --mode live --viewers 10000 --duration 10s --ingest
//! tidings bench chat --mode fanout --users 10000 --rooms 2000 --rate 1000
//! tidings bench chat --mode idle --server-pid "$(pidof tidings)"
//! tidings bench socketio --target http://127.0.0.1:8080 --peer http://127.0.0.1:3030 --clients 10000 --rate 100
//! tidings bench tickets --mode notify --users 10000 --rate 500 --change mixed
//! tidings bench tickets --mode sla --tickets 100000 --due 10000 --due-in 120s --sla-unit 1s
//! tidings bench tickets --mode inbox --users 1000 --notifications 100000 --readers 50
//! tidings bench cluster --url http://writer:8080 --edge http://edge1:8080 --edge http://edge2:8080 --single http://single:8080 --subscribers 2000 --rate 500
//! ```
//!
//! The admin key comes from `--api-key` or from `DATA_DIR/config.json`. The
//! live progress line goes to stderr, the summary table (or `--json`) to
//! stdout. Lost or duplicated deliveries, failed publishes and failed
//! connections are printed in a banner on stderr and make the exit status 1
//! (2 for unusable flags). More subscribers than `--sockets-per-process`
//! (default 19 000) are spread over worker processes automatically.
//!
//! Module map:
//!
//! * [`args`]: the command line; [`error`]: the error type and exit codes.
//! * [`target`]: server address, API key, TLS settings, topic names and paths.
//! * [`tls`]: trust (`--ca-file`, `--insecure`) and the shared rustls
//!   client configurations; [`socket`]: the one socket type (plain or TLS)
//!   every client reads and writes.
//! * [`http`]: hyper client connections (HTTP/1.1, HTTP/2) and `/metrics`;
//!   [`h2_pool`]: HTTP/2 connections shared by SSE subscribers (`--http2`).
//! * [`sse`]: the zero-copy SSE frame scanner; [`h1`] and [`chunked`]: the
//!   bare HTTP/1.1 streaming GET the SSE subscriber reads from its own task;
//!   [`sse_body`]: an SSE body from that GET or from an h2 stream;
//!   [`sse_client`], [`ws_client`]: the two subscriber transports behind
//!   [`stream`]; [`ws_frame`]: the WebSocket framing the bench client reads
//!   and writes itself.
//! * [`payload`]: the stamp (topic, sequence, send time) events carry.
//! * [`peer`]: other servers (Pushpin for fanout, nginx for poll) measured
//!   side by side; [`nginx`]: the nginx peer started with its own config.
//! * [`keepalive`]: the bare keep-alive HTTP/1.1 request/response client of
//!   the poll scenario; [`poll`]: its clock sync, API calls, loads and checks.
//! * [`ledger`]: loss and duplicate accounting; [`histogram`]: latencies.
//! * [`publisher`]: concurrent, paced or closed-loop publishing.
//! * [`subscriber`], [`group`]: subscribers and the group that drives them.
//! * [`protocol`], [`workers`]: groups in worker processes (JSON lines).
//! * [`chat`]: the chat rooms' layout, set-up calls and stream frames.
//! * [`socketio`]: the Socket.IO client, its fleet, posts and set-up calls.
//! * [`tickets`]: the ticketing API's calls, notification streams, changes
//!   and their exact accounting, SLA tickets, inbox readers.
//! * [`scenario`]: the scenarios; [`progress`], [`report`]: output.

pub mod args;
pub mod chat;
pub mod chunked;
pub mod discussions;
pub mod error;
pub mod group;
pub mod h1;
pub mod h2_pool;
pub mod histogram;
pub mod http;
pub mod keepalive;
pub mod ledger;
pub mod nginx;
pub mod payload;
pub mod peer;
pub mod poll;
pub mod progress;
pub mod protocol;
pub mod publisher;
pub mod report;
pub mod scenario;
pub mod socket;
pub mod socketio;
pub mod sse;
pub mod sse_body;
pub mod sse_client;
pub mod stream;
pub mod subscriber;
pub mod target;
pub mod tickets;
pub mod tls;
pub mod workers;
pub mod ws_client;
pub mod ws_frame;

pub use args::BenchArgs;

use crate::error::StartupError;
use args::Scenario;
use error::BenchError;

/// Runs `tidings bench …` to completion; errors carry the exit code.
pub fn run(args: BenchArgs) -> Result<(), StartupError> {
    if let Scenario::Worker = args.scenario {
        return workers::worker_main().map_err(StartupError::from);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| StartupError::io("starting the async runtime", err))?;
    runtime
        .block_on(run_scenario(args.scenario))
        .map_err(StartupError::from)
}

/// Dispatches to the scenario.
async fn run_scenario(scenario: Scenario) -> Result<(), BenchError> {
    match scenario {
        Scenario::Publish(args) => scenario::publish::run(args).await,
        Scenario::Fanout(args) => scenario::fanout::run(args).await,
        Scenario::Connections(args) => scenario::connections::run(args).await,
        Scenario::Reconnect(args) => scenario::reconnect::run(args).await,
        Scenario::Poll(args) => scenario::poll::run(args).await,
        Scenario::Chat(args) => scenario::chat::run(args).await,
        Scenario::SocketIo(args) => scenario::socketio::run(args).await,
        Scenario::Tickets(args) => scenario::tickets::run(args).await,
        Scenario::Cluster(args) => scenario::cluster::run(args).await,
        Scenario::Worker => workers::worker_main(),
    }
}
