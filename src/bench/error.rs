//! The one error type of the benchmark tool and its mapping to exit codes.
//!
//! A [`BenchError`] is either a usage problem (bad flags, unreadable config:
//! exit 2) or a run failure (server unreachable, lost deliveries: exit 1).

use crate::error::StartupError;
use std::fmt;

/// Why a benchmark could not run or did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BenchError {
    /// The command line or the data directory's config is unusable (exit 2).
    Usage(String),
    /// Talking to the server failed or the results are not acceptable (exit 1).
    Run(String),
}

impl BenchError {
    /// A usage error with the given message.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// A run failure with the given message.
    pub fn run(message: impl Into<String>) -> Self {
        Self::Run(message.into())
    }

    /// A run failure saying what was being done and what went wrong.
    pub fn context(context: impl fmt::Display, err: impl fmt::Display) -> Self {
        Self::Run(format!("{context}: {err}"))
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(message) | Self::Run(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<BenchError> for StartupError {
    fn from(err: BenchError) -> Self {
        match err {
            BenchError::Usage(message) => StartupError::Config(message),
            BenchError::Run(message) => StartupError::Io(message),
        }
    }
}
