//! The `evald` binary: parses the command line, sets up logging, calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// Every request allocates its body, headers and record: mimalloc's thread-local free lists
// cut that cost measurably under load (see docs/benchmark.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod cli;

use cli::{CompareArgs, ExportArgs, Failure};

/// Scheduled LLM comparison and benchmark jobs, scored and stored, behind a read-only page.
#[derive(Parser)]
#[command(name = "evald", version, about, long_about = None)]
struct Args {
    /// The config file (else $EVALD_CONFIG, ./evald.toml, /etc/evald/evald.toml).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format on stderr; the level comes from RUST_LOG (default: info for serve, warn else).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// The daemon: schedules jobs, watches the jobs directory, serves the page.
    Serve,
    /// Validates the config and every job (or the files named); exit 1 on any problem.
    Check {
        /// Job files to check instead of the whole jobs directory.
        files: Vec<PathBuf>,
    },
    /// Runs a job now, shows progress, prints the results and stores the run.
    Run {
        /// The job's name (its file stem).
        job: String,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
        /// Exit 3 when a watched target regressed against its baseline (for CI steps).
        #[arg(long)]
        fail_on_regression: bool,
        /// Print the upper bound of the run's cost (prompts counted, max_tokens per answer)
        /// and send nothing.
        #[arg(long)]
        estimate: bool,
        /// Run even when the job's budget_usd_month is spent.
        #[arg(long)]
        force: bool,
    },
    /// Pins or unpins the run a watched job is tested against.
    Baseline {
        #[command(subcommand)]
        action: BaselineAction,
    },
    /// Alert states per job, alert and target, and the latest deliveries.
    Alerts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sends to notifiers.
    Notify {
        #[command(subcommand)]
        action: NotifyAction,
    },
    /// Two runs compared case by case: pass↔fail, score and latency deltas, changed answers.
    Diff {
        /// The earlier run's id.
        run_a: String,
        /// The later run's id.
        run_b: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sends one prompt to several targets and prints the answers side by side.
    Compare(CompareArgs),
    /// Writes request records as CSV, JSON or JSONL.
    Export(ExportArgs),
    /// Lists the models an endpoint offers (GET /models).
    Models {
        /// The endpoint's name in evald.toml.
        endpoint: String,
    },
    /// The analytics summary.
    Stats {
        /// Window in days, 1 to 3660.
        #[arg(long, default_value = "7", value_parser = |s: &str| evald_web::parse_days(Some(s)))]
        days: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Applies retention now.
    Prune {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Writes a consistent copy of the store to FILE (through the daemon when it runs), which
    /// evald opens as its store: copy it to `data_dir/evald.redb` to restore.
    Backup {
        /// Where the copy goes (replaced if it exists; written beside it first, then renamed).
        file: std::path::PathBuf,
    },
}

#[derive(Debug, clap::Subcommand)]
enum NotifyAction {
    /// Sends a test delivery to NOTIFIER and prints the answer.
    Test {
        /// The notifier's name in evald.toml.
        notifier: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum BaselineAction {
    /// Tests the job's next runs against RUN, until unpinned.
    Pin {
        /// The job's name.
        job: String,
        /// The run's id.
        run: String,
    },
    /// Back to the job's `[watch] baseline`.
    Unpin {
        /// The job's name.
        job: String,
    },
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Transparent huge pages off for this process. Where the system grants them on request
/// (`madvise`, a common default), mimalloc asks for them, and the kernel zeroes each 2 MiB page
/// whole when it is first touched, though evald's heap uses a fraction of many: on a benchmark
/// at concurrency 64 that was 6.5 % of evald's CPU and a third of its peak memory (124 MB
/// against 89 MB; docs/benchmark.md). Databases commonly ask the same (Redis, MongoDB). Only
/// this process is affected; a kernel that refuses leaves things as they were.
fn without_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        tracing::debug!(error = %e, "transparent huge pages stay on");
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let serving = matches!(args.command, Command::Serve);
    init_logging(
        args.log_format,
        if serving {
            "info,tokio_cron_scheduler=warn"
        } else {
            "warn"
        },
    );
    without_huge_pages();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("evald: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = args.config.as_deref();
    let result: Result<bool, Failure> = rt.block_on(async {
        match args.command {
            Command::Serve => {
                let path = cli::config_path(config).map_err(|e| Failure::Config(e.to_string()))?;
                evald::serve::serve(&path, None, std::future::pending())
                    .await
                    .map(|()| true)
                    .map_err(|e| match e.downcast::<evald::serve::ConfigInvalid>() {
                        Ok(c) => Failure::Config(c.0),
                        Err(e) => Failure::Other(format!("{e:#}")),
                    })
            }
            Command::Check { files } => cli::check::check(config, &files),
            Command::Run {
                job,
                json,
                fail_on_regression,
                estimate,
                force,
            } => {
                let opts = cli::run::RunOptions {
                    json,
                    fail_on_regression,
                    estimate,
                    force,
                };
                cli::run::run(config, &job, opts).await
            }
            Command::Baseline { action } => match action {
                BaselineAction::Pin { job, run } => cli::watch::pin(config, &job, Some(&run)).await,
                BaselineAction::Unpin { job } => cli::watch::pin(config, &job, None).await,
            },
            Command::Alerts { json } => cli::alerts::alerts(config, json).await,
            Command::Notify {
                action: NotifyAction::Test { notifier },
            } => cli::alerts::notify_test(config, &notifier).await,
            Command::Diff { run_a, run_b, json } => {
                cli::watch::diff(config, &run_a, &run_b, json).await
            }
            Command::Compare(args) => cli::run::compare(config, args).await,
            Command::Export(args) => cli::data::export(config, args).await,
            Command::Models { endpoint } => cli::data::models(config, &endpoint).await,
            Command::Stats { days, json } => cli::data::stats(config, days, json).await,
            Command::Prune { dry_run } => cli::data::prune(config, dry_run).await,
            Command::Backup { file } => cli::data::backup(config, &file).await,
        }
    });
    // Background tasks (a progress bar's ticker, the runtime's blocking pool) must not keep a
    // finished command waiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("evald: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
