//! The daemon's implementation of the web crate's read-only model: the job registry for jobs
//! and broken files, the store for runs, records and stats, the metrics for `/metrics`.

use std::sync::Arc;

use evald_model::{Event, InvalidJob, JobInfo, Record, RecordFilter, RowRef, RunSummary, Stats};
use evald_web::read::{ReadError, ReadModel};

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::store::rollup;
use crate::store::{Store, StoreError};

/// What the page reads.
pub struct View {
    /// The store.
    pub store: Store,
    /// The loaded jobs.
    pub registry: Arc<Registry>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Alert states and deliveries.
    pub alerts: Arc<crate::alert::Alerts>,
}

fn rerr(e: StoreError) -> ReadError {
    ReadError::new(e)
}

/// The analytics summary of the last `days` days, from the rollups. The window starts at the
/// top of the hour `days` × 24 hours ago, so it is made of whole hours.
pub fn stats(store: &Store, days: u32, now_ms: i64) -> Result<Stats, StoreError> {
    let from = rollup::hour_of(now_ms - days as i64 * rollup::DAY_MS);
    let (names, totals) = store.rollup_totals(from, now_ms + 1)?;
    Ok(rollup::stats(days, &names, &totals))
}

impl ReadModel for View {
    fn jobs(&self) -> Vec<JobInfo> {
        let now = chrono::Utc::now();
        self.registry
            .jobs()
            .into_iter()
            .map(|s| {
                let j = &s.job;
                JobInfo {
                    name: j.name.clone(),
                    file: j.file.display().to_string(),
                    description: j.description.clone(),
                    kind: j.kind,
                    schedule: j.schedule.as_ref().map(|s| s.expr.clone()),
                    schedule_words: j.schedule.as_ref().map(|s| s.describe()),
                    enabled: j.enabled,
                    next_run_ms: j
                        .schedule
                        .as_ref()
                        .filter(|_| j.enabled)
                        .and_then(|s| s.next_after(now))
                        .map(|t| t.timestamp_millis()),
                    targets: j.targets.iter().map(|t| t.to_string()).collect(),
                    running: s.running,
                    stale_errors: s.broken.iter().map(|d| d.to_string()).collect(),
                }
            })
            .collect()
    }

    fn invalid_jobs(&self) -> Vec<InvalidJob> {
        let mut out: Vec<InvalidJob> = self
            .registry
            .invalid()
            .into_iter()
            .map(|(p, d)| InvalidJob {
                file: p.display().to_string(),
                errors: d.iter().map(|d| d.to_string()).collect(),
            })
            .collect();
        for s in self.registry.jobs() {
            if !s.broken.is_empty() {
                out.push(InvalidJob {
                    file: format!(
                        "{} (the last valid version keeps running)",
                        s.job.file.display()
                    ),
                    errors: s.broken.iter().map(|d| d.to_string()).collect(),
                });
            }
        }
        out
    }

    fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, ReadError> {
        self.store.runs(job, limit).map_err(rerr)
    }

    fn run(&self, id: &str) -> Result<Option<RunSummary>, ReadError> {
        self.store.run(id).map_err(rerr)
    }

    fn run_records(&self, id: &str, limit: usize) -> Result<Vec<Record>, ReadError> {
        self.store.run_records(id, limit).map_err(rerr)
    }

    fn recent_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, ReadError> {
        self.store.recent_records(filter).map_err(rerr)
    }

    fn export_records(
        &self,
        filter: &RecordFilter,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), ReadError> {
        self.store.export(filter, sink).map_err(rerr)
    }

    fn stats(&self, days: u32) -> Result<Stats, ReadError> {
        stats(&self.store, days, chrono::Utc::now().timestamp_millis()).map_err(rerr)
    }

    fn alerts(&self) -> evald_model::AlertsView {
        self.alerts.view()
    }

    fn events(&self, job: Option<&str>, limit: usize) -> Result<Vec<Event>, ReadError> {
        self.store.events(job, limit).map_err(rerr)
    }

    fn metrics(&self) -> String {
        if let Ok(n) = self.store.record_count() {
            self.metrics.store_records.set(n as i64);
        }
        self.metrics.store_bytes.set(self.store.file_bytes() as i64);
        let invalid = self.registry.invalid().len()
            + self
                .registry
                .jobs()
                .iter()
                .filter(|s| !s.broken.is_empty())
                .count();
        self.metrics.jobs_invalid.set(invalid as i64);
        self.metrics.encode()
    }
}
