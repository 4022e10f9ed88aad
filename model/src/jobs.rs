//! Jobs as the registry reports them.

use serde::{Deserialize, Serialize};

use crate::run::JobKind;

/// A job as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's name (file stem).
    pub name: String,
    /// Its job file.
    pub file: String,
    /// `description` from the file.
    pub description: String,
    /// `compare` or `benchmark`.
    pub kind: JobKind,
    /// The cron expression as written, if scheduled.
    pub schedule: Option<String>,
    /// The schedule in words.
    pub schedule_words: Option<String>,
    /// Whether the job is enabled.
    pub enabled: bool,
    /// Next firing, Unix ms.
    pub next_run_ms: Option<i64>,
    /// Targets as written (`endpoint/model`, `endpoint/*`).
    pub targets: Vec<String>,
    /// Whether a run is going now.
    pub running: bool,
    /// The last valid version is running but the file now has errors.
    pub stale_errors: Vec<String>,
}

/// A job file that failed to load, with its problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidJob {
    /// The job file's path.
    pub file: String,
    /// Each problem as `path:line:col: message`.
    pub errors: Vec<String>,
}
