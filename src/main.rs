//! The `tidings` executable: parses the command line, runs the subcommand, and
//! maps failures to exit codes (1 runtime, 2 configuration, 3 data directory in use).

/// mimalloc: fewer page faults and less lock contention than glibc malloc under
/// many small per-event allocations (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use tidings::config::{Command, LogFormat};
use tidings::error::StartupError;

fn main() -> ExitCode {
    let cli = match tidings::settings_file::parse_command_line() {
        Ok(cli) => cli,
        Err(err) => return failure(&err),
    };
    let outcome = match cli.command {
        Command::Init(args) if args.print_config => {
            print!("{}", tidings::settings_file::default_file());
            Ok(())
        }
        Command::Init(args) => {
            let _log = tidings::ops::logging::init(LogFormat::Text);
            tidings::app::init(&args.data.data_dir).map(|report| println!("{report}"))
        }
        Command::Serve(args) => serve(*args),
        Command::Bench(args) => tidings::bench::run(*args),
        Command::Token(args) => tidings::cli::token(args),
        Command::Keys(command) => with_logs(|| tidings::cli::keys(command)),
        Command::Tenants(command) => with_logs(|| tidings::cli::tenants(command)),
        Command::Backup(args) => with_logs(|| tidings::cli::backup(args)),
        Command::Restore(args) => with_logs(|| tidings::cli::restore(args)),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => failure(&err),
    }
}

/// Reports `err` on stderr; its exit code.
fn failure(err: &StartupError) -> ExitCode {
    eprintln!("tidings: {err}");
    ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
}

fn with_logs(command: impl FnOnce() -> Result<(), StartupError>) -> Result<(), StartupError> {
    let _log = tidings::ops::logging::init(LogFormat::Text);
    command()
}

fn serve(args: tidings::config::ServeArgs) -> Result<(), StartupError> {
    let config = args.into_config()?;
    let _log = tidings::ops::logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| StartupError::io("starting the async runtime", err))?;
    runtime.block_on(tidings::app::run(config))
}
