//! Watches the jobs directory (debounced): adding, changing or removing a job file reloads
//! that job within about a second. Editors' temp files and hidden files are ignored.
//!
//! inotify also reports a file being opened, and reloading a job opens its file: a file is
//! reloaded only when its metadata (inode, size, modification and change times) differs from
//! the last time, or it appeared or went, so a reload does not set off the next one.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer};

use crate::serve::Daemon;

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

/// What a file's metadata says about its contents; `None` for a file that is not there.
type Fingerprint = Option<(u64, u64, i64, i64, i64, i64)>;

fn fingerprint(p: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| {
        (
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
        )
    })
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
    // The files as the daemon loaded them at start.
    let mut seen: HashMap<PathBuf, Fingerprint> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .map(|p| {
            let f = fingerprint(&p);
            (p, f)
        })
        .collect();
    let task = tokio::spawn(async move {
        while let Some(paths) = rx.recv().await {
            let set: BTreeSet<PathBuf> = paths
                .into_iter()
                .filter(|p| crate::job::is_job_file_name(p))
                .collect();
            for p in set {
                let now = fingerprint(&p);
                if seen.get(&p) == Some(&now) {
                    continue;
                }
                seen.insert(p.clone(), now);
                daemon.reload_file(&p).await;
            }
        }
    });
    Ok(Watch {
        _debouncer: debouncer,
        task,
    })
}
