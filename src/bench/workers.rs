//! Spreading subscribers over processes.
//!
//! One process can hold about 19.9k sockets here, so a run with more
//! subscribers starts worker processes: the same executable re-run as
//! `tidings bench worker`, which hosts one subscriber group and speaks JSON
//! lines ([`Command`]s on stdin, [`GroupEvent`]s on stdout). Small runs keep
//! their single group inside the coordinating process. Either way the
//! coordinator sees a [`Fleet`]: broadcast commands, one stream of events.

use super::error::BenchError;
use super::group::run_group;
use super::protocol::{Command, GroupEvent, GroupJob};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use tokio::sync::mpsc;

/// Capacity of the command and event channels.
const CHANNEL: usize = 1024;

/// How a run's subscribers are split into groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// One group inside this process.
    InProcess,
    /// This many worker processes.
    Workers(usize),
}

/// Decides where `subscribers` sockets go; `requested` is `--workers`.
pub fn placement(
    subscribers: usize,
    per_process: usize,
    requested: Option<usize>,
) -> Result<Placement, BenchError> {
    let needed = subscribers.div_ceil(per_process.max(1));
    match requested {
        None if needed <= 1 => Ok(Placement::InProcess),
        None => Ok(Placement::Workers(needed)),
        Some(0) if needed <= 1 => Ok(Placement::InProcess),
        Some(workers) if workers >= needed && workers > 0 => Ok(Placement::Workers(workers)),
        Some(workers) => Err(BenchError::usage(format!(
            "--workers {workers} cannot hold {subscribers} subscribers at --sockets-per-process \
             {per_process}: use at least {needed}"
        ))),
    }
}

/// Splits `count` subscribers into `groups` contiguous `(first, count)` ranges.
pub fn split(count: usize, groups: usize) -> Vec<(usize, usize)> {
    let groups = groups.max(1);
    let base = count / groups;
    let extra = count % groups;
    let mut first = 0;
    (0..groups)
        .map(|index| {
            let size = base + usize::from(index < extra);
            let range = (first, size);
            first += size;
            range
        })
        .filter(|(_, size)| *size > 0)
        .collect()
}

/// The coordinator's handle on all groups of a run.
pub struct Fleet {
    commands: Vec<mpsc::Sender<Command>>,
    events: mpsc::Receiver<(usize, GroupEvent)>,
}

impl Fleet {
    /// Starts one group per job, in this process or in worker processes.
    pub fn start(jobs: Vec<GroupJob>, placement: Placement) -> Result<Self, BenchError> {
        let (event_tx, events) = mpsc::channel(CHANNEL);
        let mut commands = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.into_iter().enumerate() {
            let sender = match placement {
                Placement::InProcess => start_local(index, event_tx.clone()),
                Placement::Workers(_) => start_worker(index, event_tx.clone())?,
            };
            sender
                .try_send(Command::Start(Box::new(job)))
                .map_err(|_| BenchError::run("a subscriber group stopped before it started"))?;
            commands.push(sender);
        }
        Ok(Self { commands, events })
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.commands.len()
    }

    /// Whether the fleet has no groups.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }

    /// Sends a command to every group (groups that already ended are skipped).
    pub async fn broadcast(&self, command: &Command) {
        for sender in &self.commands {
            let _ = sender.send(command.clone()).await;
        }
    }

    /// The next event from any group, with the group's index; `None` when all are gone.
    pub async fn next(&mut self) -> Option<(usize, GroupEvent)> {
        self.events.recv().await
    }
}

/// Runs a group as a task of this process.
fn start_local(index: usize, events: mpsc::Sender<(usize, GroupEvent)>) -> mpsc::Sender<Command> {
    let (command_tx, command_rx) = mpsc::channel(CHANNEL);
    let (group_tx, mut group_rx) = mpsc::channel(CHANNEL);
    tokio::spawn(run_group(command_rx, group_tx));
    tokio::spawn(async move {
        while let Some(event) = group_rx.recv().await {
            if events.send((index, event)).await.is_err() {
                break;
            }
        }
    });
    command_tx
}

/// Starts a worker process and connects its pipes to channels.
fn start_worker(
    index: usize,
    events: mpsc::Sender<(usize, GroupEvent)>,
) -> Result<mpsc::Sender<Command>, BenchError> {
    let exe = std::env::current_exe()
        .map_err(|err| BenchError::context("finding this executable to start workers", err))?;
    let mut child = std::process::Command::new(&exe)
        .args(["bench", "worker"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|err| BenchError::context(format!("starting worker {}", exe.display()), err))?;
    let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
        (Some(stdin), Some(stdout)) => (stdin, stdout),
        _ => return Err(BenchError::run("a worker process has no pipes")),
    };
    let (command_tx, command_rx) = mpsc::channel(CHANNEL);
    std::thread::spawn(move || feed_worker(stdin, command_rx));
    std::thread::spawn(move || read_worker(index, child, stdout, events));
    Ok(command_tx)
}

/// Writes commands to a worker's stdin, one JSON line each.
fn feed_worker(mut stdin: ChildStdin, mut commands: mpsc::Receiver<Command>) {
    while let Some(command) = commands.blocking_recv() {
        let Ok(line) = serde_json::to_string(&command) else {
            continue;
        };
        if writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .is_err()
        {
            break;
        }
    }
}

/// Reads a worker's event lines; reports a failure if it exits before `done`.
fn read_worker(
    index: usize,
    mut child: Child,
    stdout: ChildStdout,
    events: mpsc::Sender<(usize, GroupEvent)>,
) {
    let mut finished = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let event =
            serde_json::from_str::<GroupEvent>(&line).unwrap_or_else(|err| GroupEvent::Failed {
                message: format!("worker {index} wrote an unreadable line ({err}): {line}"),
            });
        finished |= matches!(event, GroupEvent::Done { .. } | GroupEvent::Failed { .. });
        if events.blocking_send((index, event)).is_err() {
            break;
        }
    }
    let status = child.wait();
    if !finished {
        let message = match status {
            Ok(status) => format!("worker {index} exited ({status}) before reporting"),
            Err(err) => format!("worker {index} vanished: {err}"),
        };
        let _ = events.blocking_send((index, GroupEvent::Failed { message }));
    }
}

/// The worker process: one group, commands from stdin, events to stdout.
pub fn worker_main() -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| BenchError::context("starting the async runtime", err))?;
    let (command_tx, command_rx) = mpsc::channel(CHANNEL);
    std::thread::spawn(move || read_commands(command_tx));
    runtime.block_on(async move {
        let (event_tx, mut event_rx) = mpsc::channel(CHANNEL);
        let group = tokio::spawn(run_group(command_rx, event_tx));
        let mut stdout = std::io::stdout();
        while let Some(event) = event_rx.recv().await {
            let line = serde_json::to_string(&event)
                .map_err(|err| BenchError::context("encoding a worker event", err))?;
            writeln!(stdout, "{line}")
                .and_then(|()| stdout.flush())
                .map_err(|err| BenchError::context("writing to the coordinator", err))?;
        }
        group
            .await
            .map_err(|err| BenchError::context("the worker's group failed", err))
    })
}

/// Reads command lines from stdin; end of input means stop.
fn read_commands(commands: mpsc::Sender<Command>) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Command>(&line) {
            Ok(command) => {
                if commands.blocking_send(command).is_err() {
                    return;
                }
            }
            Err(err) => eprintln!("tidings bench worker: ignoring unreadable command ({err})"),
        }
    }
    let _ = commands.blocking_send(Command::Stop);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_stay_in_process() {
        assert_eq!(placement(1000, 19_000, None), Ok(Placement::InProcess));
        assert_eq!(placement(19_000, 19_000, None), Ok(Placement::InProcess));
        assert_eq!(placement(19_000, 19_000, Some(0)), Ok(Placement::InProcess));
    }

    #[test]
    fn large_runs_get_enough_workers() {
        assert_eq!(placement(19_001, 19_000, None), Ok(Placement::Workers(2)));
        assert_eq!(placement(40_000, 19_000, None), Ok(Placement::Workers(3)));
        assert_eq!(placement(100, 19_000, Some(2)), Ok(Placement::Workers(2)));
        assert!(placement(40_000, 19_000, Some(2)).is_err());
        assert!(placement(40_000, 19_000, Some(0)).is_err());
    }

    #[test]
    fn ranges_cover_everything_once() {
        assert_eq!(split(10, 3), vec![(0, 4), (4, 3), (7, 3)]);
        assert_eq!(split(2, 3), vec![(0, 1), (1, 1)]);
        assert_eq!(split(5, 1), vec![(0, 5)]);
    }
}
