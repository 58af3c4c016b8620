//! Results: a readable table on stdout, or one JSON object with `--json`, and
//! the verdict that decides the exit status.
//!
//! Every scenario builds a [`Report`]: named sections of rows for people, a
//! JSON value for scripts, and a list of failures. Any failure (lost or
//! duplicated deliveries, failed connections) is shouted on stderr and makes
//! the command exit with status 1.

use super::error::BenchError;
use super::histogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

/// Percentiles of a latency histogram, in microseconds, for JSON output.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
    /// Mean.
    pub mean_us: u64,
}

impl Latency {
    /// Summarises a histogram of microseconds.
    pub fn of(hist: &Histogram) -> Self {
        Self {
            count: hist.count(),
            p50_us: hist.percentile(50.0),
            p90_us: hist.percentile(90.0),
            p99_us: hist.percentile(99.0),
            p999_us: hist.percentile(99.9),
            max_us: hist.max(),
            mean_us: hist.mean(),
        }
    }

    /// `p50 1.20 ms · p99 4.50 ms · max 9.00 ms`.
    pub fn brief(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
            micros(self.p50_us),
            micros(self.p90_us),
            micros(self.p99_us),
            micros(self.p999_us),
            micros(self.max_us)
        )
    }
}

/// Microseconds as `850 µs`, `12.3 ms` or `1.50 s`.
pub fn micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// Bytes as `512 B`, `7.9 KiB`, `1.20 GiB`.
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut scaled = value;
    let mut unit = 0;
    while scaled.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{scaled:.0} B")
    } else {
        format!("{scaled:.2} {}", UNITS[unit])
    }
}

/// A scenario's result.
#[derive(Debug, Clone)]
pub struct Report {
    /// Scenario name, e.g. `fanout`.
    pub scenario: &'static str,
    /// Sections of `(label, value)` rows for the table.
    pub sections: Vec<(String, Vec<(String, String)>)>,
    /// The machine-readable result.
    pub json: Value,
    /// What makes this run a failure (empty: passed).
    pub failures: Vec<String>,
}

impl Report {
    /// An empty report for `scenario`.
    pub fn new(scenario: &'static str, json: Value) -> Self {
        Self {
            scenario,
            sections: Vec::new(),
            json,
            failures: Vec::new(),
        }
    }

    /// Adds a section of rows.
    pub fn section(&mut self, title: &str, rows: Vec<(&str, String)>) {
        let rows = rows
            .into_iter()
            .map(|(label, value)| (label.to_string(), value))
            .collect();
        self.sections.push((title.to_string(), rows));
    }

    /// Marks the run as failed for `reason` when `failed`.
    pub fn fail_if(&mut self, failed: bool, reason: String) {
        if failed {
            self.failures.push(reason);
        }
    }

    /// The table shown to people.
    pub fn table(&self) -> String {
        let width = self
            .sections
            .iter()
            .flat_map(|(_, rows)| rows.iter().map(|(label, _)| label.chars().count()))
            .max()
            .unwrap_or(0);
        let mut out = format!("tidings bench {}\n", self.scenario);
        for (title, rows) in &self.sections {
            let _ = writeln!(out, "\n  {title}");
            for (label, value) in rows {
                let _ = writeln!(out, "    {label:<width$}  {value}");
            }
        }
        let verdict = if self.failures.is_empty() {
            "PASS".to_string()
        } else {
            format!("FAIL: {}", self.failures.join("; "))
        };
        let _ = writeln!(out, "\n  result: {verdict}");
        out
    }

    /// The JSON object printed with `--json`.
    pub fn to_json(&self) -> Value {
        let mut json = self.json.clone();
        if let Value::Object(map) = &mut json {
            map.insert("scenario".into(), Value::from(self.scenario));
            map.insert("passed".into(), Value::from(self.failures.is_empty()));
            map.insert("failures".into(), Value::from(self.failures.clone()));
        }
        json
    }

    /// Prints the result and turns failures into an error (exit status 1).
    pub fn emit(&self, as_json: bool) -> Result<(), BenchError> {
        if as_json {
            println!("{}", self.to_json());
        } else {
            print!("{}", self.table());
        }
        if self.failures.is_empty() {
            return Ok(());
        }
        eprintln!("{}", shout(self.scenario, &self.failures));
        Err(BenchError::run(format!(
            "{} failed: {}",
            self.scenario,
            self.failures.join("; ")
        )))
    }
}

/// A banner nobody can miss.
pub fn shout(scenario: &str, failures: &[String]) -> String {
    let bar = "!".repeat(72);
    let mut out = format!("\n{bar}\n!!! {} FAILED\n", scenario.to_uppercase());
    for failure in failures {
        let _ = writeln!(out, "!!!   {failure}");
    }
    out.push_str(&bar);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn units_read_well() {
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(12_300), "12.30 ms");
        assert_eq!(micros(1_500_000), "1.50 s");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(8_090.0), "7.90 KiB");
    }

    #[test]
    fn failures_show_in_table_json_and_exit() {
        let mut report = Report::new("fanout", json!({"lost": 1}));
        report.section("delivery", vec![("lost", "1".into())]);
        report.fail_if(true, "1 delivery LOST".into());
        report.fail_if(false, "never shown".into());
        let table = report.table();
        assert!(table.contains("lost"));
        assert!(table.contains("FAIL: 1 delivery LOST"));
        let json = report.to_json();
        assert_eq!(json["passed"], false);
        assert_eq!(json["scenario"], "fanout");
        assert!(shout("fanout", &report.failures).contains("FANOUT FAILED"));
    }

    #[test]
    fn passing_report_says_so() {
        let mut report = Report::new("publish", json!({}));
        report.section("x", vec![("a", "1".into())]);
        assert!(report.table().contains("result: PASS"));
        assert!(report.emit(true).is_ok());
    }

    #[test]
    fn latency_summary_of_samples() {
        let mut hist = Histogram::default();
        for value in [100, 200, 300, 400, 10_000] {
            hist.record(value);
        }
        let latency = Latency::of(&hist);
        assert_eq!(latency.count, 5);
        assert_eq!(latency.max_us, 10_000);
        assert!(latency.brief().contains("max 10.00 ms"));
        assert_eq!(Latency::of(&Histogram::default()).brief(), "no samples");
    }
}
