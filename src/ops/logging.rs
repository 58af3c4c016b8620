//! Log output: text or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Lines are handed to a background writer thread (tracing-appender) so that a
//! request never waits for a `write(2)` to stderr; the returned guard flushes
//! what is queued when it drops at exit. Nothing is dropped: when the queue is
//! full, logging waits.
//!
//! Stdout is reserved for the one `listening on …` line (and `init`'s report),
//! so scripts and the test harness can read it reliably.

use crate::config::LogFormat;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; keep the guard alive until the process ends.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("tidings-log")
        .finish(std::io::stderr());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (for example by an embedding test) is fine.
    drop(installed);
    guard
}
