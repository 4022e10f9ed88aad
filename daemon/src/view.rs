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

/// Why an export with `filter` names a run that does not exist, or a run of another job than
/// the one named (a typo would otherwise give an empty file and exit 0). `None` when it is fine.
/// A job is not judged here: its records can outlive its run summaries (`retention.runs` may
/// be the shorter), and a job may not have run yet; `evald export` asks about it itself.
pub fn export_scope_error(
    store: &Store,
    filter: &RecordFilter,
) -> Result<Option<String>, StoreError> {
    if let Some(id) = &filter.run_id {
        match store.run(id)? {
            None => return Ok(Some(format!("no run `{id}` is stored"))),
            Some(r) if filter.job.as_deref().is_some_and(|j| j != r.job) => {
                return Ok(Some(format!(
                    "run `{id}` is of job `{}`, not `{}`",
                    r.job,
                    filter.job.as_deref().unwrap_or_default()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(None)
}

/// What `job` cost this calendar month (UTC) up to `now_ms`, from the rollups (no record is
/// read): the figure a `budget_usd_month` is held against.
pub fn month_cost(store: &Store, job: &str, now_ms: i64) -> Result<f64, StoreError> {
    use chrono::Datelike;
    let now = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(now_ms).unwrap_or_default();
    let start = now
        .date_naive()
        .with_day(1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp_millis())
        .unwrap_or(now_ms);
    let (names, totals) = store.rollup_totals(start, now_ms + 1)?;
    let s = rollup::stats(31, &names, &totals);
    Ok(s.by_job
        .iter()
        .find(|g| g.name == job)
        .and_then(|g| g.cost_usd)
        .unwrap_or(0.0))
}

/// Why `job` may not run now: its budget for this month is spent.
pub fn budget_spent(store: &Store, job: &crate::job::Job, now_ms: i64) -> Option<String> {
    over_budget(store, &job.name, job.budget_usd_month?, now_ms)
}

fn over_budget(store: &Store, job: &str, budget: f64, now_ms: i64) -> Option<String> {
    let spent = month_cost(store, job, now_ms).ok()?;
    (spent >= budget).then(|| {
        format!(
            "budget reached: {spent:.4} USD of budget_usd_month {budget} spent this month (UTC)"
        )
    })
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

    fn health(&self) -> Result<(), String> {
        self.store.health()
    }

    fn metrics(&self) -> String {
        if let Ok(n) = self.store.record_count() {
            self.metrics.store_records.set(n as i64);
        }
        self.metrics.store_bytes.set(self.store.file_bytes() as i64);
        let errors = self.store.write_errors();
        let counted = self.metrics.store_write_errors.get();
        if errors > counted {
            self.metrics.store_write_errors.inc_by(errors - counted);
        }
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

#[cfg(test)]
mod tests {
    use evald_model::Record;

    use super::*;

    fn costed(job: &str, ts: i64, cost: f64) -> Record {
        Record {
            timestamp_ms: ts,
            job: job.into(),
            model: "m".into(),
            endpoint: "e".into(),
            provider: "p".into(),
            run_id: "r".into(),
            case_id: "c".into(),
            response_time_ms: Some(5.0),
            cost_usd: Some(cost),
            cost_source: Some("price".into()),
            ..Record::default()
        }
    }

    /// A budget of 0.01 USD: spent on the 15th of November by 0.0162, so a run on the 20th is
    /// refused with the figures; on the 1st of December (a clock the test sets) the month is
    /// new and the job runs again. Another job's cost does not count.
    #[tokio::test]
    async fn a_spent_budget_holds_until_the_month_turns() {
        let store = Store::in_memory();
        let w = store.writer();
        let at = |d: &str| {
            chrono::DateTime::parse_from_rfc3339(d)
                .unwrap()
                .timestamp_millis()
        };
        for _ in 0..3 {
            w.record(costed("nightly", at("2026-11-15T03:00:00Z"), 0.0054))
                .await;
        }
        w.record(costed("other", at("2026-11-16T03:00:00Z"), 5.0))
            .await;
        w.flush().await;
        let nov20 = at("2026-11-20T12:00:00Z");
        assert!((month_cost(&store, "nightly", nov20).unwrap() - 0.0162).abs() < 1e-12);
        let why = over_budget(&store, "nightly", 0.01, nov20).unwrap();
        assert!(why.contains("0.0162") && why.contains("0.01"), "{why}");
        assert_eq!(over_budget(&store, "nightly", 0.02, nov20), None);
        assert_eq!(
            over_budget(&store, "nightly", 0.01, at("2026-12-01T00:00:01Z")),
            None
        );
        w.close().await;
    }
}
