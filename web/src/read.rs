//! The read-only trait the page, the JSON API, the exports and the metrics read through. The
//! daemon implements [`ReadModel`] over its store and job registry; this crate never sees redb,
//! so "read-only" holds by type: the trait has no method that writes.

use evald_model::{Event, InvalidJob, JobInfo, Record, RecordFilter, RowRef, RunSummary, Stats};

/// An error while reading the store. Its text is for the log only: the page shows a fixed
/// sentence.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ReadError(Box<dyn std::error::Error + Send + Sync>);

impl ReadError {
    /// Wraps the reader's own error.
    pub fn new(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> ReadError {
        ReadError(e.into())
    }
}

/// Everything the web crate may ask of the daemon. No method writes: the page, the API, the
/// exports and the metrics are read-only by construction. Methods are blocking (the store is
/// redb); handlers call them from `spawn_blocking`.
pub trait ReadModel: Send + Sync + 'static {
    /// Every valid job, by name.
    fn jobs(&self) -> Vec<JobInfo>;
    /// Job files that failed to load (and valid jobs whose file broke since).
    fn invalid_jobs(&self) -> Vec<InvalidJob>;
    /// Runs, newest first, of one job or of all.
    fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, ReadError>;
    /// One run.
    fn run(&self, id: &str) -> Result<Option<RunSummary>, ReadError>;
    /// The records of one run, in the order they were sent, at most `limit`.
    fn run_records(&self, id: &str, limit: usize) -> Result<Vec<Record>, ReadError>;
    /// Request records, newest first, passing the filter (`limit` applies).
    fn recent_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, ReadError>;
    /// Request records oldest first, passing the filter, from one read snapshot; `sink` returns
    /// false to stop early (the client went away). Memory stays flat however many rows.
    fn export_records(
        &self,
        filter: &RecordFilter,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), ReadError>;
    /// The analytics summary over the last `days` days.
    fn stats(&self, days: u32) -> Result<Stats, ReadError>;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Alert states and the delivery log.
    fn alerts(&self) -> evald_model::AlertsView;
    /// Events (a served model that changed), newest first, of one job or all.
    fn events(&self, job: Option<&str>, limit: usize) -> Result<Vec<Event>, ReadError>;
    /// `Ok` while the daemon can store what it measures; why not otherwise (`/healthz` 503).
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
