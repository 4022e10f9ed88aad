//! What watching over time reads: events, pinned baselines, and the finished runs a baseline
//! is made of.

use evald_model::Event;

use super::tables::*;
use super::*;

impl Store {
    /// Events newest first, of one job or all, at most `limit`.
    pub fn events(&self, job: Option<&str>, limit: usize) -> Result<Vec<Event>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let t = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        for e in t.iter()?.rev() {
            if out.len() >= limit {
                break;
            }
            let (_, v) = e?;
            if let Ok(ev) = serde_json::from_slice::<Event>(v.value())
                && job.is_none_or(|j| ev.job == j)
            {
                out.push(ev);
            }
        }
        Ok(out)
    }

    /// Every stored alert state.
    pub fn alert_states(&self) -> Result<Vec<evald_model::AlertStatus>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let t = tx.open_table(ALERTS)?;
        let mut out = Vec::new();
        for e in t.iter()? {
            let (_, v) = e?;
            if let Ok(a) = serde_json::from_slice(v.value()) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The run pinned as `job`'s baseline.
    pub fn pinned(&self, job: &str) -> Result<Option<String>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let t = tx.open_table(PINS)?;
        Ok(t.get(job)?.map(|v| v.value().to_string()))
    }

    /// A job's last `n` runs that ended `ok` (newest first), other than `except`.
    pub fn finished_runs(
        &self,
        job: &str,
        n: usize,
        except: &str,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let runs = tx.open_table(RUNS)?;
        let idx = tx.open_table(JOB_RUNS)?;
        let mut out = Vec::new();
        for e in idx.range((job, "")..=(job, "\u{10FFFF}"))?.rev() {
            if out.len() >= n {
                break;
            }
            let (k, _) = e?;
            let (_, id) = k.value();
            if id == except {
                continue;
            }
            if let Some(v) = runs.get(id)?
                && let Ok(s) = serde_json::from_slice::<RunSummary>(v.value())
                && s.status == RunStatus::Ok
            {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Replaces a run's summary directly, not through the writer: for start-up, before the
    /// writer runs (a benchmark cut off gets its figures from its records).
    pub fn replace_run(&self, s: &RunSummary) -> Result<(), StoreError> {
        let tx = begin_write(&*self.db()?)?;
        tx.open_table(RUNS)?
            .insert(s.id.as_str(), serde_json::to_vec(s)?.as_slice())?;
        tx.commit()?;
        Ok(())
    }
}
