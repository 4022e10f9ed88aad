//! The CLI's end of the control socket: one connection per request, typed answers.

use std::io::Write;
use std::path::{Path, PathBuf};

use evald_model::{RecordFilter, Stats};
use evald_web::export::Format;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::{Reply, Request};
use crate::job::AdhocSpec;
use crate::run::{Progress, RunReport};
use crate::store::PruneReport;

/// What can go wrong asking the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing answers on the socket.
    #[error("cannot reach the daemon on {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The connection failed half-way.
    #[error("talking to the daemon: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon hung up before answering.
    #[error("the daemon closed the connection without an answer")]
    Closed,
    /// The daemon's answer is not what this evald understands (a daemon of another version).
    #[error("the daemon's answer is not understood (restart the daemon after an upgrade): {0}")]
    Protocol(String),
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(String),
    /// An export stopped before its end.
    #[error("the export from the daemon broke off: {0}")]
    BrokeOff(std::io::Error),
    /// Writing the export's bytes here failed.
    #[error("writing the export: {0}")]
    Sink(std::io::Error),
}

impl From<serde_json::Error> for ControlError {
    fn from(e: serde_json::Error) -> Self {
        ControlError::Protocol(e.to_string())
    }
}

/// A running daemon, reached over its control socket.
#[derive(Debug, Clone)]
pub struct DaemonClient {
    sock: PathBuf,
}

impl DaemonClient {
    /// The daemon listening on `sock`.
    pub fn new(sock: &Path) -> DaemonClient {
        DaemonClient {
            sock: sock.to_path_buf(),
        }
    }

    /// Sends a request; calls `on_progress` for progress lines and returns the result (and,
    /// for an export, the stream positioned after the first line).
    async fn ask(
        &self,
        req: &Request,
        mut on_progress: impl FnMut(Progress),
    ) -> Result<(serde_json::Value, BufReader<UnixStream>), ControlError> {
        let mut stream =
            UnixStream::connect(&self.sock)
                .await
                .map_err(|source| ControlError::Connect {
                    path: self.sock.clone(),
                    source,
                })?;
        let mut line = serde_json::to_vec(req)?;
        line.push(b'\n');
        stream.write_all(&line).await?;
        let mut r = BufReader::new(stream);
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).await? == 0 {
                return Err(ControlError::Closed);
            }
            match serde_json::from_str::<Reply>(&l)? {
                Reply::Progress {
                    done,
                    total,
                    errors,
                } => on_progress(Progress {
                    done,
                    total,
                    errors,
                }),
                Reply::Ok(v) => return Ok((v, r)),
                Reply::Error(e) => return Err(ControlError::Daemon(e)),
            }
        }
    }

    async fn answer<T: DeserializeOwned>(&self, req: &Request) -> Result<T, ControlError> {
        Ok(serde_json::from_value(self.ask(req, |_| {}).await?.0)?)
    }

    /// Runs a loaded job now; `on_progress` sees its progress.
    pub async fn run(
        &self,
        job: &str,
        force: bool,
        on_progress: impl FnMut(Progress),
    ) -> Result<RunReport, ControlError> {
        let req = Request::Run {
            job: job.to_string(),
            force,
        };
        Ok(serde_json::from_value(
            self.ask(&req, on_progress).await?.0,
        )?)
    }

    /// Runs `evald compare`'s ad hoc job.
    pub async fn adhoc(&self, spec: &AdhocSpec) -> Result<RunReport, ControlError> {
        self.answer(&Request::Adhoc { spec: spec.clone() }).await
    }

    /// Pins `run` as `job`'s baseline, or unpins; what was done, in words.
    pub async fn pin(&self, job: &str, run: Option<&str>) -> Result<String, ControlError> {
        self.answer(&Request::Pin {
            job: job.to_string(),
            run: run.map(String::from),
        })
        .await
    }

    /// Alert states and the delivery log.
    pub async fn alerts(&self) -> Result<evald_model::AlertsView, ControlError> {
        self.answer(&Request::Alerts).await
    }

    /// Runs `a` and `b` compared case by case.
    pub async fn diff(&self, a: &str, b: &str) -> Result<Vec<evald_model::DiffRow>, ControlError> {
        self.answer(&Request::Diff {
            a: a.to_string(),
            b: b.to_string(),
        })
        .await
    }

    /// The analytics summary over `days` days.
    pub async fn stats(&self, days: u32) -> Result<Stats, ControlError> {
        self.answer(&Request::Stats { days }).await
    }

    /// Applies retention (or counts, with `dry_run`).
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport, ControlError> {
        self.answer(&Request::Prune { dry_run }).await
    }

    /// Copies the store to `path` (absolute: the daemon's working folder is not ours).
    pub async fn backup(
        &self,
        path: &std::path::Path,
    ) -> Result<crate::store::BackupReport, ControlError> {
        self.answer(&Request::Backup {
            path: path.to_path_buf(),
        })
        .await
    }

    /// Streams an export into `out`; the number of rows the daemon wrote.
    pub async fn export(
        &self,
        format: Format,
        filter: &RecordFilter,
        out: &mut (dyn Write + Send),
    ) -> Result<u64, ControlError> {
        let req = Request::Export {
            format: format.name().to_string(),
            filter: filter.clone(),
        };
        let (_, mut rest) = self.ask(&req, |_| {}).await?;
        // Frames (see `Frames`), then a zero length and the daemon's verdict.
        let mut buf = Vec::new();
        loop {
            let len = rest.read_u32_le().await.map_err(ControlError::BrokeOff)?;
            if len == 0 {
                break;
            }
            buf.resize(len as usize, 0);
            rest.read_exact(&mut buf)
                .await
                .map_err(ControlError::BrokeOff)?;
            out.write_all(&buf).map_err(ControlError::Sink)?;
        }
        out.flush().map_err(ControlError::Sink)?;
        let mut status = String::new();
        rest.read_line(&mut status).await?;
        match serde_json::from_str::<Reply>(&status)? {
            Reply::Ok(rows) => Ok(rows.as_u64().unwrap_or(0)),
            Reply::Error(e) => Err(ControlError::Daemon(e)),
            Reply::Progress { .. } => Err(ControlError::Protocol(
                "a progress line after an export".into(),
            )),
        }
    }
}
