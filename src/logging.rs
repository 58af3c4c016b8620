//! Log output: text or JSON lines on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! Stdout is reserved for the one `listening on …` line (and `init`'s report),
//! so scripts and the test harness can read it reliably.

use crate::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls are ignored.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // Already installed (for example by an embedding test) is fine.
    drop(installed);
}
