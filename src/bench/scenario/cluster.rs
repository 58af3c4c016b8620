//! `tidings bench cluster`: the `fanout` load measured twice in one run,
//! first on a single node, then on a cluster (publishing to the writer,
//! subscribers spread over the edges in turn, every event crossing the
//! NATS stream), and the two compared: delivered events/s, delivery
//! latency p50 and p99 as ratios cluster / single, and the p99 the NATS hop
//! adds.
//!
//! Both passes use the same flags (subscribers, topics, rate, size,
//! duration) and fresh topics; each is checked like `fanout` (lost,
//! duplicated or misrouted deliveries fail the run). On one machine the two
//! setups share its cores, so only the ratios mean something.

use super::delivery::{self, DeliveryPlan, DeliveryRun};
use crate::bench::args::{OutputArgs, PeerArgs, ServerArgs, StreamArgs, SubscriberArgs};
use crate::bench::error::BenchError;
use crate::bench::progress::si;
use crate::bench::report::{Latency, Report, micros};
use clap::Args;
use serde_json::{Value, json};
use std::path::PathBuf;

/// Flags of `tidings bench cluster`.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// The cluster's writer: --url, and its key (--api-key or --data-dir), which the edges share.
    #[command(flatten)]
    pub server: ServerArgs,

    /// An edge of the cluster (repeat the flag; subscriber i streams from edge i mod E).
    #[arg(long = "edge", required = true)]
    pub edges: Vec<String>,

    /// The single node measured under the same load first.
    #[arg(long)]
    pub single: String,

    /// The single node's data directory, read for its admin key (default: --data-dir).
    #[arg(long)]
    pub single_data_dir: Option<PathBuf>,

    /// The single node's admin key (default: from its data directory).
    #[arg(long, hide_env_values = true)]
    pub single_api_key: Option<String>,

    /// How results are shown.
    #[command(flatten)]
    pub output: OutputArgs,
    /// The subscribers (of each pass).
    #[command(flatten)]
    pub subscribers: SubscriberArgs,
    /// The published stream (of each pass).
    #[command(flatten)]
    pub stream: StreamArgs,
}

impl ClusterArgs {
    /// The single node's server flags.
    fn single_server(&self) -> ServerArgs {
        ServerArgs {
            url: self.single.clone(),
            api_key: self.single_api_key.clone(),
            data_dir: self
                .single_data_dir
                .clone()
                .unwrap_or_else(|| self.server.data_dir.clone()),
            ..self.server.clone()
        }
    }

    fn validate(&self) -> Result<(), BenchError> {
        self.subscribers.validate()?;
        self.stream.validate()?;
        if self.subscribers.http2 {
            return Err(BenchError::usage(
                "--http2: the cluster scenario opens one HTTP/1.1 connection per subscriber",
            ));
        }
        Ok(())
    }
}

/// Runs both passes and prints the comparison.
pub async fn run(args: ClusterArgs) -> Result<(), BenchError> {
    args.validate()?;
    let single = pass(&args, &args.single_server(), &[]).await?;
    let cluster = pass(&args, &args.server, &args.edges).await?;
    let mut report = Report::new("cluster", json!({}));
    report.section(
        "nodes",
        vec![
            ("single node", args.single.clone()),
            ("writer", args.server.url.clone()),
            ("edges", args.edges.join(", ")),
        ],
    );
    let setup = delivery::setup_section(
        &mut report,
        &args.subscribers,
        &args.stream,
        cluster.processes,
    );
    let single_json = pass_rows(&mut report, "single node", &args.stream, &single);
    let cluster_json = pass_rows(&mut report, "cluster", &args.stream, &cluster);
    let comparison = compare(&mut report, &single, &cluster);
    report.json = json!({
        "setup": setup,
        "single": single_json,
        "cluster": cluster_json,
        "comparison": comparison,
    });
    report.emit(args.output.json)
}

/// One pass of the fan-out load: subscribers on `edges` in turn (on the
/// server itself when empty), publishing to the server.
async fn pass(
    args: &ClusterArgs,
    server: &ServerArgs,
    edges: &[String],
) -> Result<DeliveryRun, BenchError> {
    delivery::run(DeliveryPlan {
        scenario: "cluster",
        server,
        peer: &PeerArgs::default(),
        output: args.output,
        subscribers: &args.subscribers,
        stream: &args.stream,
        drop_after: None,
        edges,
    })
    .await
}

/// The publishing and delivery sections of one pass.
fn pass_rows(report: &mut Report, name: &str, stream: &StreamArgs, run: &DeliveryRun) -> Value {
    let publishing =
        delivery::publishing_rows(report, &format!("{name}: publishing"), stream, &run.publish);
    let delivered = delivery::delivery_rows(report, &format!("{name}: delivery"), run);
    json!({ "publishing": publishing, "delivery": delivered })
}

/// Figures of one pass that are compared.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Figures {
    delivered_per_second: f64,
    latency: Latency,
}

impl Figures {
    fn of(run: &DeliveryRun) -> Self {
        Self {
            delivered_per_second: run.delivery.totals.deliveries as f64
                / run.window.as_secs_f64().max(1e-9),
            latency: Latency::of(&run.delivery.latency),
        }
    }
}

/// `cluster / single` as `1.23×` (`-` when single is zero).
fn ratio(cluster: f64, single: f64) -> (String, Option<f64>) {
    if single <= 0.0 {
        return ("-".into(), None);
    }
    let ratio = cluster / single;
    (format!("{ratio:.2}×"), Some(ratio))
}

/// The comparison section: cluster against single node.
fn compare(report: &mut Report, single: &DeliveryRun, cluster: &DeliveryRun) -> Value {
    let (s, c) = (Figures::of(single), Figures::of(cluster));
    let row = |single: String, cluster: String, ratio: &str| {
        format!("single {single} · cluster {cluster} · cluster/single {ratio}")
    };
    let (rate_ratio, rate) = ratio(c.delivered_per_second, s.delivered_per_second);
    let (p50_ratio, p50) = ratio(c.latency.p50_us as f64, s.latency.p50_us as f64);
    let (p99_ratio, p99) = ratio(c.latency.p99_us as f64, s.latency.p99_us as f64);
    let added = c.latency.p99_us.saturating_sub(s.latency.p99_us);
    report.section(
        "cluster vs single node",
        vec![
            (
                "delivered/s",
                row(
                    si(s.delivered_per_second),
                    si(c.delivered_per_second),
                    &rate_ratio,
                ),
            ),
            (
                "delivery p50",
                row(
                    micros(s.latency.p50_us),
                    micros(c.latency.p50_us),
                    &p50_ratio,
                ),
            ),
            (
                "delivery p99",
                row(
                    micros(s.latency.p99_us),
                    micros(c.latency.p99_us),
                    &p99_ratio,
                ),
            ),
            ("p99 the NATS hop adds", micros(added)),
        ],
    );
    json!({
        "deliveredPerSecondRatio": rate,
        "p50Ratio": p50,
        "p99Ratio": p99,
        "p99AddedUs": added,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_read_as_cluster_over_single() {
        assert_eq!(ratio(3.0, 2.0), ("1.50×".to_string(), Some(1.5)));
        assert_eq!(ratio(1.0, 0.0), ("-".to_string(), None));
    }
}
