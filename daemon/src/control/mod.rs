//! The control socket, `data_dir/evald.sock` (mode 0600): how `evald run`, `compare`, `stats`,
//! `export` and `prune` reach a running daemon, which holds the store (redb locks its file).
//! Never the HTTP port: that one is read-only.
//!
//! Protocol: the client writes one JSON request line. The daemon answers with JSON lines —
//! `{"progress": …}` while a run goes, then `{"ok": …}` or `{"error": "…"}`. An export answers
//! `{"ok": null}`, then the export in length-prefixed frames (see [`Frames`]), a zero length and
//! the daemon's verdict, so a client can tell a complete export from one that broke off.
//!
//! Both ends are here: [`client`] is the CLI's side, [`server`] the daemon's, which answers
//! through a [`Handler`] that `serve` implements.

pub mod client;
pub mod server;

pub use client::{ControlError, DaemonClient};
pub use server::{Handler, HandlerError};

use evald_model::RecordFilter;
use serde::{Deserialize, Serialize};

use crate::job::AdhocSpec;

/// Largest request line accepted.
pub(crate) const MAX_REQUEST: u64 = 1024 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Run a loaded job now.
    Run {
        /// The job's name.
        job: String,
        /// Run even when the job's monthly budget is spent.
        #[serde(default)]
        force: bool,
    },
    /// Run an ad hoc job (`evald compare`).
    Adhoc {
        /// What to compare.
        spec: AdhocSpec,
    },
    /// The analytics summary.
    Stats {
        /// Window, days.
        days: u32,
    },
    /// Stream an export.
    Export {
        /// `csv`, `json` or `jsonl`.
        format: String,
        /// Which records.
        filter: RecordFilter,
    },
    /// Apply retention.
    Prune {
        /// Only report.
        dry_run: bool,
    },
    /// Pin a run as a job's baseline, or unpin (`run` absent).
    Pin {
        /// The job.
        job: String,
        /// The run to pin.
        run: Option<String>,
    },
    /// Alert states and the delivery log.
    Alerts,
    /// A consistent copy of the store.
    Backup {
        /// Where it goes (absolute).
        path: std::path::PathBuf,
    },
    /// Two runs compared case by case.
    Diff {
        /// The earlier run.
        a: String,
        /// The later run.
        b: String,
    },
}

/// One line of an answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// A run's progress.
    Progress {
        /// Requests finished.
        done: u64,
        /// Requests planned.
        total: u64,
        /// Errors so far.
        errors: u64,
    },
    /// The result.
    Ok(serde_json::Value),
    /// What went wrong.
    Error(String),
}

/// The framing of an export's bytes: chunks of `[u32 length, little-endian][bytes]`, then a
/// zero length and a final [`Reply`] line, so a reader can tell a complete export from one that
/// broke off.
pub struct Frames<W: std::io::Write> {
    out: W,
    buf: Vec<u8>,
}

impl<W: std::io::Write> Frames<W> {
    const CHUNK: usize = 64 * 1024;

    /// Frames written to `out`.
    pub fn new(out: W) -> Frames<W> {
        Frames {
            out,
            buf: Vec::with_capacity(Self::CHUNK),
        }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&(self.buf.len() as u32).to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    /// Ends the stream with its status.
    pub fn end(mut self, status: Reply) -> std::io::Result<()> {
        self.emit()?;
        self.out.write_all(&0u32.to_le_bytes())?;
        let mut line = serde_json::to_vec(&status).unwrap_or_default();
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.out.flush()
    }
}

impl<W: std::io::Write> std::io::Write for Frames<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= Self::CHUNK {
            self.emit()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit()
    }
}
