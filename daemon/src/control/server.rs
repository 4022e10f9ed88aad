//! The daemon's end of the control socket: accepts connections, reads one request each, and
//! answers through a [`Handler`] (which `serve` implements over the running daemon).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use evald_model::Trigger;
use evald_web::export::Format;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use super::{Frames, MAX_REQUEST, Reply, Request};
use crate::job::AdhocSpec;
use crate::run::{Progress, ProgressFn, RunReport};
use crate::store::{PruneReport, Store, Writer};

/// Why the daemon could not do what was asked; sent to the client as its text.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What the control socket may ask of the daemon beyond reading its store.
pub trait Handler: Send + Sync + 'static {
    /// Starts a loaded job now; `progress` is called as its requests finish.
    fn start_run(
        &self,
        job: &str,
        trigger: Trigger,
        force: bool,
        progress: Box<ProgressFn>,
    ) -> impl Future<Output = Result<JoinHandle<RunReport>, HandlerError>> + Send;
    /// Starts `evald compare`'s ad hoc job.
    fn start_adhoc(&self, spec: &AdhocSpec) -> Result<JoinHandle<RunReport>, HandlerError>;
    /// Applies retention now (or only counts, with `dry_run`).
    fn prune(
        &self,
        dry_run: bool,
    ) -> impl Future<Output = Result<PruneReport, HandlerError>> + Send;
    /// The store, for stats and exports.
    fn store(&self) -> Store;
    /// The daemon's writer, for pins.
    fn writer(&self) -> Writer;
    /// Alert states and the delivery log.
    fn alerts(&self) -> evald_model::AlertsView;
}

/// Listens on `path` until the returned task is aborted.
pub async fn listen<H: Handler>(
    path: &Path,
    handler: Arc<H>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    // A socket file left by a process that died is stale: nothing answers on it.
    if path.exists() && UnixStream::connect(path).await.is_err() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot create the control socket {}: {e}", path.display()),
        )
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
            let h = handler.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(h, stream).await {
                    tracing::debug!(error = %e, "control connection");
                }
            });
        }
    }))
}

/// Writes one reply line.
async fn send(w: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).unwrap_or_default();
    line.push(b'\n');
    w.write_all(&line).await
}

/// Sends a finished run's report (or why it could not start).
async fn send_report(
    w: &mut UnixStream,
    started: Result<JoinHandle<RunReport>, HandlerError>,
) -> anyhow::Result<()> {
    match started {
        Err(e) => send(w, &Reply::Error(e.to_string())).await?,
        Ok(handle) => {
            let report = handle.await?;
            send(w, &Reply::Ok(serde_json::to_value(&report)?)).await?;
        }
    }
    Ok(())
}

async fn handle<H: Handler>(h: Arc<H>, mut w: UnixStream) -> anyhow::Result<()> {
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
        Request::Run { job, force } => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
            let progress: Box<ProgressFn> = Box::new(move |p| {
                let _ = tx.send(p);
            });
            match h.start_run(&job, Trigger::Manual, force, progress).await {
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
                    send_report(&mut w, Ok(handle)).await?;
                }
            }
        }
        Request::Adhoc { spec } => {
            let started = h.start_adhoc(&spec);
            send_report(&mut w, started).await?;
        }
        Request::Stats { days } => {
            let store = h.store();
            let res = tokio::task::spawn_blocking(move || {
                crate::view::stats(&store, days, chrono::Utc::now().timestamp_millis())
            })
            .await?;
            match res {
                Ok(s) => send(&mut w, &Reply::Ok(serde_json::to_value(&s)?)).await?,
                Err(e) => send(&mut w, &Reply::Error(e.to_string())).await?,
            }
        }
        Request::Pin { job, run } => {
            let (store, writer) = (h.store(), h.writer());
            match crate::run::watch::pin(&store, &writer, &job, run.as_deref()).await {
                Ok(msg) => send(&mut w, &Reply::Ok(serde_json::Value::String(msg))).await?,
                Err(e) => send(&mut w, &Reply::Error(e)).await?,
            }
        }
        Request::Alerts => send(&mut w, &Reply::Ok(serde_json::to_value(h.alerts())?)).await?,
        Request::Diff { a, b } => {
            let store = h.store();
            let res =
                tokio::task::spawn_blocking(move || crate::run::watch::diff_runs(&store, &a, &b))
                    .await?;
            match res {
                Ok(rows) => send(&mut w, &Reply::Ok(serde_json::to_value(rows)?)).await?,
                Err(e) => send(&mut w, &Reply::Error(e)).await?,
            }
        }
        Request::Backup { path } => {
            let store = h.store();
            let res = tokio::task::spawn_blocking(move || store.backup(&path)).await?;
            match res {
                Ok(r) => send(&mut w, &Reply::Ok(serde_json::to_value(r)?)).await?,
                Err(e) => send(&mut w, &Reply::Error(e.to_string())).await?,
            }
        }
        Request::Prune { dry_run } => match h.prune(dry_run).await {
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
            let store = h.store();
            let scope = {
                let (store, filter) = (store.clone(), filter.clone());
                tokio::task::spawn_blocking(move || {
                    crate::view::export_scope_error(&store, &filter)
                })
                .await?
            };
            match scope {
                Ok(None) => {}
                Ok(Some(why)) => return Ok(send(&mut w, &Reply::Error(why)).await?),
                Err(e) => return Ok(send(&mut w, &Reply::Error(e.to_string())).await?),
            }
            send(&mut w, &Reply::Ok(serde_json::Value::Null)).await?;
            // The export reader is blocking (one redb snapshot): hand it a blocking stream.
            let std_stream = w.into_std()?;
            std_stream.set_nonblocking(false)?;
            // A client that stops reading must not pin a blocking thread for ever.
            std_stream.set_write_timeout(Some(std::time::Duration::from_secs(60)))?;
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
