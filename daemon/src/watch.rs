//! Watches the jobs directory (debounced): adding, changing or removing a job file reloads
//! that job within about a second. Editors' temp files and hidden files are ignored.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::daemon::Daemon;

/// How long file events settle before a job is reloaded.
pub const DEBOUNCE: Duration = Duration::from_millis(400);

/// Keeps the watch alive; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the daemon's jobs directory.
pub fn watch(daemon: Arc<Daemon>) -> anyhow::Result<Watch> {
    let dir = daemon.config().jobs_dir.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<PathBuf>>(64);
    let mut debouncer = new_debouncer(DEBOUNCE, move |res: DebounceEventResult| match res {
        Ok(events) => {
            let paths = events.into_iter().map(|e| e.path).collect();
            let _ = tx.blocking_send(paths);
        }
        Err(e) => tracing::warn!(error = %e, "watching the jobs directory"),
    })?;
    if let Err(e) = debouncer.watcher().watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the jobs directory; changes need SIGHUP");
    }
    let task = tokio::spawn(async move {
        while let Some(paths) = rx.recv().await {
            let set: BTreeSet<PathBuf> = paths
                .into_iter()
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "toml")
                        && p.file_name()
                            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
                })
                .collect();
            for p in set {
                daemon.reload_file(&p).await;
            }
        }
    });
    Ok(Watch {
        _debouncer: debouncer,
        task,
    })
}
