//! The job registry: which jobs are loaded, which job files are broken and why, which jobs have a
//! run going. Shared by the scheduler, the jobs-directory watcher, the control socket and the
//! page. A job file that breaks after it loaded keeps its last valid version here (and running),
//! with the new problems beside it, until it is fixed or deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::diag::Diagnostic;
use crate::job::Job;

/// A loaded job.
#[derive(Debug, Clone)]
pub struct JobState {
    /// The last valid version of the job.
    pub job: Arc<Job>,
    /// A run of it is going (filled in when read).
    pub running: bool,
    /// The file broke after this version loaded: its current problems.
    pub broken: Vec<Diagnostic>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: BTreeMap<String, JobState>,
    invalid: BTreeMap<PathBuf, Vec<Diagnostic>>,
    /// Jobs with a run going. Kept apart from `jobs`, so a job file deleted and restored (or a
    /// reload) while its run goes cannot start a second run beside it.
    running: std::collections::HashSet<String>,
}

impl Inner {
    fn state(&self, s: &JobState) -> JobState {
        let mut s = s.clone();
        s.running = self.running.contains(&s.job.name);
        s
    }
}

/// What a change to a job file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new job, or a new valid version of one: (re)schedule it.
    Loaded(String),
    /// The file broke; the last valid version (if any) keeps running.
    Broken(Option<String>),
    /// The file is gone: unschedule the job.
    Removed(Option<String>),
    /// Nothing to do.
    Unchanged,
}

/// The registry; cheap to share behind an `Arc`.
#[derive(Debug, Default)]
pub struct Registry {
    inner: RwLock<Inner>,
}

impl Registry {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces everything (start-up, SIGHUP): keeps `running` flags of jobs that stay.
    pub fn replace_all(
        &self,
        jobs: BTreeMap<String, Job>,
        invalid: BTreeMap<PathBuf, Vec<Diagnostic>>,
    ) {
        let mut g = self.write();
        let old = std::mem::take(&mut g.jobs);
        g.jobs = jobs
            .into_iter()
            .map(|(name, job)| {
                let running = old.get(&name).is_some_and(|s| s.running);
                (
                    name,
                    JobState {
                        job: Arc::new(job),
                        running,
                        broken: vec![],
                    },
                )
            })
            .collect();
        g.invalid = invalid;
    }

    /// Applies the outcome of (re)loading one job file.
    pub fn apply(&self, path: &Path, result: Result<Job, Vec<Diagnostic>>) -> Change {
        let mut g = self.write();
        let name = crate::job::job_name(path);
        match result {
            Ok(job) => {
                if let Some(s) = g.jobs.get(&name)
                    && s.job.digest == job.digest
                    && s.job.file == job.file
                    && s.broken.is_empty()
                {
                    return Change::Unchanged;
                }
                g.invalid.remove(path);
                let running = g.jobs.get(&name).is_some_and(|s| s.running);
                g.jobs.insert(
                    name.clone(),
                    JobState {
                        job: Arc::new(job),
                        running,
                        broken: vec![],
                    },
                );
                Change::Loaded(name)
            }
            Err(problems) => {
                if let Some(state) = g.jobs.get_mut(&name)
                    && state.job.file == path
                {
                    state.broken = problems;
                    Change::Broken(Some(name))
                } else {
                    g.invalid.insert(path.to_path_buf(), problems);
                    Change::Broken(None)
                }
            }
        }
    }

    /// Forgets a deleted job file.
    pub fn remove(&self, path: &Path) -> Change {
        let mut g = self.write();
        let had_invalid = g.invalid.remove(path).is_some();
        let name = crate::job::job_name(path);
        if g.jobs.get(&name).is_some_and(|s| s.job.file == path) {
            g.jobs.remove(&name);
            return Change::Removed(Some(name));
        }
        if had_invalid {
            Change::Removed(None)
        } else {
            Change::Unchanged
        }
    }

    /// One job.
    pub fn get(&self, name: &str) -> Option<JobState> {
        let g = self.read();
        g.jobs.get(name).map(|s| g.state(s))
    }

    /// Every job, by name.
    pub fn jobs(&self) -> Vec<JobState> {
        let g = self.read();
        g.jobs.values().map(|s| g.state(s)).collect()
    }

    /// Broken job files (never loaded), with their problems.
    pub fn invalid(&self) -> Vec<(PathBuf, Vec<Diagnostic>)> {
        self.read()
            .invalid
            .iter()
            .map(|(p, d)| (p.clone(), d.clone()))
            .collect()
    }

    /// Marks a loaded job running; false if it already was (the firing must be skipped) or
    /// is not loaded.
    pub fn try_start(&self, name: &str) -> bool {
        let mut g = self.write();
        g.jobs.contains_key(name) && g.running.insert(name.to_string())
    }

    /// Marks a job's run ended.
    pub fn finish(&self, name: &str) {
        self.write().running.remove(name);
    }
}
