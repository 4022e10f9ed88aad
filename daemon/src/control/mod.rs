//! The control socket, `data_dir/evald.sock` (mode 0600): how `evald run`, `compare`, `stats`,
//! `export` and `prune` reach a running daemon, which holds the store (redb locks its file).
//! Never the HTTP port: that one is read-only.
//!
//! Protocol: the client writes one JSON request line. The daemon answers with JSON lines —
//! `{"progress": …}` while a run goes, then `{"ok": …}` or `{"error": "…"}`. An export answers
//! `{"ok": null}`, then the export in length-prefixed frames (see `Frames`), a zero length and
//! the daemon's verdict, so a client can tell a complete export from one that broke off.

use std::sync::Arc;

use evald_web::export::Format;
use evald_web::model::{RecordFilter, Trigger};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon::Daemon;
use crate::runner::{Progress, RunReport};

/// Largest request line accepted.
const MAX_REQUEST: u64 = 1024 * 1024;

/// A request from the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Run a loaded job now.
    Run {
        /// The job's name.
        job: String,
    },
    /// Run an ad hoc job (`evald compare`) given as job-file TOML.
    Adhoc {
        /// The job, as TOML.
        toml: String,
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

/// Listens on the daemon's control socket until the daemon stops.
pub async fn listen(daemon: Arc<Daemon>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let path = daemon.config().socket_path();
    // A socket file left by a process that died is stale: nothing answers on it.
    if path.exists() && UnixStream::connect(&path).await.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot create the control socket {}: {e}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                }
            };
            let d = daemon.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(d, stream).await {
                    tracing::debug!(error = %e, "control connection");
                }
            });
        }
    }))
}

async fn send(w: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

async fn handle(daemon: Arc<Daemon>, mut w: UnixStream) -> anyhow::Result<()> {
    let mut line = String::new();
    // The client sends one line and then only reads, so nothing is buffered past it. A request
    // is small and prompt: its size and the wait for it are capped.
    let mut reader = BufReader::new((&mut w).take(MAX_REQUEST));
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        reader.read_line(&mut line),
    )
    .await??;
    drop(reader);
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            send(&mut w, &Reply::Error(format!("bad request: {e}"))).await?;
            return Ok(());
        }
    };
    match req {
        Request::Run { job } => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
            let progress: Box<crate::runner::ProgressFn> = Box::new(move |p| {
                let _ = tx.send(p);
            });
            match daemon
                .start_run(&job, Trigger::Manual, Some(progress))
                .await
            {
                Err(e) => send(&mut w, &Reply::Error(e.to_string())).await?,
                Ok(handle) => {
                    // Forward progress until the run ends (the sender drops with the run).
                    let mut last = std::time::Instant::now();
                    while let Some(p) = rx.recv().await {
                        if last.elapsed().as_millis() >= 100 || p.done == p.total {
                            last = std::time::Instant::now();
                            let _ = send(
                                &mut w,
                                &Reply::Progress {
                                    done: p.done,
                                    total: p.total,
                                    errors: p.errors,
                                },
                            )
                            .await;
                        }
                    }
                    let report = handle.await?;
                    send(&mut w, &Reply::Ok(serde_json::to_value(&report)?)).await?;
                }
            }
        }
        Request::Adhoc { toml } => {
            let config = daemon.config();
            match crate::cli::adhoc_job(&config, &toml) {
                Err(e) => send(&mut w, &Reply::Error(e)).await?,
                Ok(job) => match daemon.start_adhoc(job) {
                    Err(e) => send(&mut w, &Reply::Error(e.to_string())).await?,
                    Ok(handle) => {
                        let report: RunReport = handle.await?;
                        send(&mut w, &Reply::Ok(serde_json::to_value(&report)?)).await?;
                    }
                },
            }
        }
        Request::Stats { days } => {
            let store = daemon.store.clone();
            let res = tokio::task::spawn_blocking(move || {
                crate::view::stats(&store, days, chrono::Utc::now().timestamp_millis())
            })
            .await?;
            match res {
                Ok(s) => send(&mut w, &Reply::Ok(serde_json::to_value(&s)?)).await?,
                Err(e) => send(&mut w, &Reply::Error(e.to_string())).await?,
            }
        }
        Request::Prune { dry_run } => match daemon.prune(dry_run).await {
            Ok(r) => send(&mut w, &Reply::Ok(serde_json::to_value(r)?)).await?,
            Err(e) => send(&mut w, &Reply::Error(e.to_string())).await?,
        },
        Request::Export { format, filter } => {
            let format = match Format::parse(&format) {
                Ok(f) => f,
                Err(e) => {
                    send(&mut w, &Reply::Error(e)).await?;
                    return Ok(());
                }
            };
            send(&mut w, &Reply::Ok(serde_json::Value::Null)).await?;
            // The export reader is blocking (one redb snapshot): hand it a blocking stream.
            let std_stream = w.into_std()?;
            std_stream.set_nonblocking(false)?;
            // A client that stops reading must not pin a blocking thread for ever.
            std_stream.set_write_timeout(Some(std::time::Duration::from_secs(60)))?;
            let store = daemon.store.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let mut frames = Frames::new(std_stream);
                let result = store
                    .export_to(&filter, format, &mut frames)
                    .map(|(rows, _)| rows);
                frames.end(match result {
                    Ok(rows) => Reply::Ok(rows.into()),
                    Err(e) => Reply::Error(format!("export failed part-way: {e}")),
                })?;
                Ok(())
            })
            .await??;
        }
    }
    Ok(())
}
