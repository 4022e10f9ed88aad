//! The commands beside `serve`: `check`, `run`, `compare`, `models`, `export`, `stats`,
//! `prune`. Each works whether or not a daemon holds the store: it opens the store itself, or,
//! when a running `evald serve` holds it, asks the daemon over the control socket.
//!
//! - `check`: the config and the jobs; `run`: `run` and `compare`; `data`: `models`, `export`,
//!   `stats`, `prune`; `report`: the tables a run prints.

/// `println!` for the commands' output (it shadows the standard one in every module below): a
/// reader that stopped reading (`evald stats | head -1`) ends the command quietly, as it does
/// `head`'s other writers, instead of a panic. Every command prints after its work is stored.
macro_rules! println {
    () => {
        $crate::cli::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub mod alerts;
pub mod check;
pub mod data;
pub mod estimate;
pub mod report;
pub mod run;
pub mod watch;

use std::path::{Path, PathBuf};

use evald::config::{Config, Secrets};
use evald::control::{ControlError, DaemonClient};
use evald::store::{OpenError, Store, StoreError};

pub use data::ExportArgs;
pub use run::CompareArgs;

/// Writes a command's output to stdout; see [`println`].
pub fn out(args: std::fmt::Arguments) {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => {}
        // Exit 0, as ripgrep does: the reader chose to stop.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("evald: writing to stdout: {e}");
            std::process::exit(1)
        }
    }
}

/// A command's failure, printed as `evald: …`; its kind gives the exit status.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The config or a job file has problems, or an argument is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The store failed a read or a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The running daemon could not be asked, or said no.
    #[error(transparent)]
    Daemon(#[from] ControlError),
    /// The plugin sandbox could not start.
    #[error(transparent)]
    Plugins(#[from] evald::score::plugins::PluginError),
    /// Writing output or reading a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Something else stopped the command (the daemon's start-up, an endpoint).
    #[error("{0}")]
    Other(String),
    /// `evald serve`'s config has problems (exit 78, EX_CONFIG: the unit does not restart it).
    #[error("{0}")]
    Config(String),
    /// `evald run --fail-on-regression`: a target regressed (exit 3).
    #[error("{0}")]
    Regressed(String),
}

impl Failure {
    /// The exit status (DESIGN: `0` ok, `1` failed, `3` regressed with `--fail-on-regression`;
    /// `78` for `serve` with a broken config).
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Regressed(_) => 3,
            Failure::Config(_) => 78,
            _ => 1,
        }
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Other(e.to_string())
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(e: tokio::task::JoinError) -> Self {
        Failure::Other(e.to_string())
    }
}

/// Removes a folder (if it exists) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads the config or explains every problem.
pub fn load_config(explicit: Option<&Path>) -> Result<Config, Failure> {
    let path = config_path(explicit)?;
    // Commands run from an operator's shell: the service's credentials may not be at hand.
    Config::load_with(&path, Secrets::Optional).map_err(|d| {
        Failure::Invalid(format!(
            "{}\n{} has problems",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            path.display()
        ))
    })
}

/// The config file to read.
pub fn config_path(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    evald::config::locate(explicit).map_err(Failure::Invalid)
}

/// Where the command's store access goes.
enum Backend {
    /// This process opened the store.
    Local(Store),
    /// A daemon holds it; talk over its socket.
    Daemon(DaemonClient),
}

fn backend(config: &Config) -> Result<Backend, Failure> {
    match Store::open_configured(config) {
        Ok(s) => {
            // No daemon holds the file, so a run still marked as going was cut off.
            evald::run::bench::mark_interrupted(&s)?;
            Ok(Backend::Local(s))
        }
        Err(OpenError::InUse(p)) => {
            let sock = config.socket_path();
            if sock.exists() {
                Ok(Backend::Daemon(DaemonClient::new(&sock)))
            } else {
                Err(Failure::Other(format!(
                    "{} is held by another evald process, and no daemon answers on {}",
                    p.display(),
                    sock.display()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}
