//! The live progress line on stderr.
//!
//! On a terminal the line is redrawn in place a few times per second; when
//! stderr is a file or pipe a plain line is written every few seconds so logs
//! stay readable. `--quiet` turns it off.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraw interval on a terminal.
const TTY_EVERY: Duration = Duration::from_millis(250);
/// Line interval when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// A rate-limited status line.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
    started: Instant,
}

impl Progress {
    /// A progress line, shown unless `quiet`.
    pub fn new(quiet: bool) -> Self {
        Self {
            enabled: !quiet,
            tty: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
            started: Instant::now(),
        }
    }

    /// Seconds since the progress line was created.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Shows `text` (prefixed with the elapsed time) if enough time has passed since the last update.
    pub fn update(&mut self, text: &str) {
        let every = if self.tty { TTY_EVERY } else { LOG_EVERY };
        if !self.enabled || self.last.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = format!("[{:>6.1}s] {text}", self.started.elapsed().as_secs_f64());
        let mut stderr = std::io::stderr().lock();
        let _ = if self.tty {
            self.drawn = true;
            write!(stderr, "\r\x1b[K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }

    /// Prints a message on its own line (clearing the progress line first).
    pub fn note(&mut self, text: &str) {
        if !self.enabled {
            return;
        }
        self.clear();
        eprintln!("{text}");
    }

    /// Removes the progress line before the summary is printed.
    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
        self.last = None;
    }
}

/// `12.3k/s`-style rate of `count` over `elapsed`.
pub fn rate(count: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return "-".into();
    }
    format!("{}/s", si(count as f64 / seconds))
}

/// A number with a k/M suffix: `950`, `12.3k`, `2.05M`.
pub fn si(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_shortened() {
        assert_eq!(si(950.0), "950");
        assert_eq!(si(12_345.0), "12.3k");
        assert_eq!(si(2_050_000.0), "2.05M");
        assert_eq!(rate(100, Duration::from_secs(2)), "50/s");
        assert_eq!(rate(1, Duration::ZERO), "-");
    }
}
