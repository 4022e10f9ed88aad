//! The control socket, `data_dir/evald.sock` (mode 0600): how `evald run`, `compare`, `stats`,
//! `export` and `prune` reach a running daemon, which holds the store (redb locks its file).
//! Never the HTTP port: that one is read-only.
//!
//! Protocol: the client writes one JSON request line. The daemon answers with JSON lines —
//! `{"progress": …}` while a run goes, then `{"ok": …}` or `{"error": "…"}`. An export answers
//! `{"ok": null}` and then the raw export bytes until the connection closes.

use std::sync::Arc;

use evald_web::export::{ExportWriter, Format};
use evald_web::model::{RecordFilter, Trigger};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::daemon::Daemon;
use crate::runner::{Progress, RunReport};

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
        /// Inclusive lower bound, Unix ms.
        since_ms: Option<i64>,
        /// Exclusive upper bound, Unix ms.
        until_ms: Option<i64>,
        /// Only this job.
        job: Option<String>,
        /// Only this model.
        model: Option<String>,
        /// At most this many records.
        limit: Option<u64>,
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
            let Ok((stream, _)) = listener.accept().await else {
                continue;
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
    // The client sends one line and then only reads, so nothing is buffered past it.
    BufReader::new(&mut w).read_line(&mut line).await?;
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
                Ok(job) => {
                    let ctx = daemon.run_context();
                    let report: RunReport =
                        crate::runner::run_job(&ctx, &job, Trigger::Manual, None).await;
                    send(&mut w, &Reply::Ok(serde_json::to_value(&report)?)).await?;
                }
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
        Request::Export {
            format,
            since_ms,
            until_ms,
            job,
            model,
            limit,
        } => {
            let format = match Format::parse(&format) {
                Ok(f) => f,
                Err(e) => {
                    send(&mut w, &Reply::Error(e)).await?;
                    return Ok(());
                }
            };
            send(&mut w, &Reply::Ok(serde_json::Value::Null)).await?;
            let filter = RecordFilter {
                since_ms,
                until_ms,
                job,
                model,
                limit,
                ..RecordFilter::default()
            };
            // The export reader is blocking (one redb snapshot): hand it a blocking stream.
            let std_stream = w.into_std()?;
            std_stream.set_nonblocking(false)?;
            let store = daemon.store.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
                let out = std::io::BufWriter::with_capacity(1 << 16, std_stream);
                let mut ew = ExportWriter::new(format, out)?;
                store.export(&filter, &mut |r| ew.write(&r).is_ok())?;
                let mut out = ew.finish()?;
                std::io::Write::flush(&mut out)?;
                Ok(())
            })
            .await??;
        }
    }
    Ok(())
}
