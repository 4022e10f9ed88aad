//! Retention: what pruning removes (by age, and by `max_db_size`), counted or done in steps
//! between writes.

use super::tables::*;
use super::*;
use crate::config::Retention;

/// Records deleted per prune transaction: small enough that writers queued behind a prune wait
/// for one short commit.
pub const PRUNE_BATCH: usize = 5000;

/// A run id's lower bound for a start time: run ids begin with the start time in hex.
pub(super) fn run_id_floor(ms: i64) -> String {
    format!("{:011x}", ms.max(0))
}

/// What pruning removes: records before one time, runs and rollups before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneCutoffs {
    /// Records with a timestamp before this go.
    pub records_before_ms: i64,
    /// Run summaries started before this go, and the rollups of the days before it.
    pub runs_before_ms: i64,
}

impl PruneCutoffs {
    /// Rollups (hourly and daily) go by whole days, so the hours of a day that still has its
    /// daily row are all there too.
    pub fn rollups_before(&self) -> i64 {
        rollup::day_of(self.runs_before_ms)
    }
}

/// How much a prune removed (or would).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Request records.
    pub records: u64,
    /// Run summaries.
    pub runs: u64,
    /// Hourly rollups.
    pub rollups: u64,
    /// Prompt payloads no record refers to any more.
    pub payloads: u64,
}

impl Store {
    /// Counts what pruning at `cutoffs` would remove, without removing it.
    pub fn prune_plan(&self, cutoffs: &PruneCutoffs) -> Result<PruneReport, StoreError> {
        let tx = self.db()?.begin_read()?;
        let records = tx.open_table(RECORDS)?;
        let runs = tx.open_table(RUNS)?;
        let rollup_hi = (cutoffs.rollups_before().max(0) as u64, 0u32);
        Ok(PruneReport {
            records: records
                .range(..(cutoffs.records_before_ms.max(0) as u64, 0))?
                .count() as u64,
            runs: runs
                .range(..run_id_floor(cutoffs.runs_before_ms).as_str())?
                .count() as u64,
            rollups: tx.open_table(HOURS)?.range(..rollup_hi)?.count() as u64
                + tx.open_table(DAYS)?.range(..rollup_hi)?.count() as u64,
            payloads: 0,
        })
    }
}

/// A prune in progress in the writer.
pub(super) struct PruneJob {
    pub(super) cutoffs: PruneCutoffs,
    pub(super) batch: usize,
    pub(super) ack: oneshot::Sender<Result<PruneReport, StoreError>>,
    pub(super) report: PruneReport,
    pub(super) records_done: bool,
}

impl PruneJob {
    /// One transaction of deletions; true when nothing is left to delete.
    pub(super) fn step(&mut self, db: &Database) -> Result<bool, StoreError> {
        if !self.records_done {
            let n = prune_records(db, &self.cutoffs, self.batch, &mut self.report)?;
            self.records_done = n < self.batch;
            return Ok(false);
        }
        let (n, m) = prune_runs(db, &self.cutoffs, self.batch, &mut self.report)?;
        Ok(n < self.batch && m < self.batch)
    }
}

/// Deletes up to `batch` records older than the cutoff, and the payloads no record refers
/// to any more, in one transaction. Returns how many records went.
pub(super) fn prune_records(
    db: &Database,
    cutoffs: &PruneCutoffs,
    batch: usize,
    report: &mut PruneReport,
) -> Result<usize, StoreError> {
    let rec_hi = (cutoffs.records_before_ms.max(0) as u64, 0u64);
    let tx = begin_write(db)?;
    let n = {
        let mut records = tx.open_table(RECORDS)?;
        let mut payloads = tx.open_table(PAYLOADS)?;
        // References dropped per payload: one read-modify-write per payload, not per record.
        let mut dropped: HashMap<u128, u64> = HashMap::new();
        let mut n = 0;
        for e in records.extract_from_if(..rec_hi, |_, _| true)?.take(batch) {
            let (_, v) = e?;
            n += 1;
            if let Some((_, s)) = Stored::decode(v.value()) {
                *dropped.entry(s.messages).or_default() += 1;
            }
        }
        for (hash, n) in dropped {
            let refs = payloads
                .get(hash)?
                .map(|v| (v.value().0, v.value().1.to_vec()));
            match refs {
                Some((r, _)) if r <= n => {
                    payloads.remove(hash)?;
                    report.payloads += 1;
                }
                Some((r, bytes)) => {
                    payloads.insert(hash, (r - n, bytes.as_slice()))?;
                }
                None => {}
            }
        }
        n
    };
    tx.commit()?;
    report.records += n as u64;
    Ok(n)
}

/// Deletes up to `batch` run summaries and `batch` rollups older than the cutoff in one
/// transaction. Returns how many of each went.
pub(super) fn prune_runs(
    db: &Database,
    cutoffs: &PruneCutoffs,
    batch: usize,
    report: &mut PruneReport,
) -> Result<(usize, usize), StoreError> {
    let run_hi = run_id_floor(cutoffs.runs_before_ms);
    let tx = begin_write(db)?;
    let n = {
        let mut runs = tx.open_table(RUNS)?;
        let mut job_runs = tx.open_table(JOB_RUNS)?;
        let mut running = tx.open_table(RUNNING)?;
        let mut spans = tx.open_table(RUN_SPANS)?;
        let doomed: Vec<(String, String)> = runs
            .range(..run_hi.as_str())?
            .take(batch)
            .filter_map(|e| e.ok())
            .map(|(k, v)| {
                let job = serde_json::from_slice::<RunSummary>(v.value())
                    .map(|s| s.job)
                    .unwrap_or_default();
                (k.value().to_string(), job)
            })
            .collect();
        for (id, job) in &doomed {
            runs.remove(id.as_str())?;
            job_runs.remove((job.as_str(), id.as_str()))?;
            running.remove(id.as_str())?;
            spans.remove(id.as_str())?;
        }
        doomed.len()
    };
    // Daily rows first: a reader between two batches then finds a pruned day missing, never
    // a day's row without its hours.
    let hi = (cutoffs.rollups_before().max(0) as u64, 0u32);
    let mut m = 0;
    for table in [DAYS, HOURS] {
        let mut t = tx.open_table(table)?;
        for e in t.extract_from_if(..hi, |_, _| true)?.take(batch - m) {
            e?;
            m += 1;
        }
        if m >= batch {
            break;
        }
    }
    tx.commit()?;
    report.runs += n as u64;
    report.rollups += m as u64;
    Ok((n, m))
}

/// The prune cutoffs now: by age, and by `max_db_size` (oldest records first).
pub fn cutoffs(
    retention: &Retention,
    store: &Store,
) -> Result<PruneCutoffs, crate::store::StoreError> {
    let now = chrono::Utc::now().timestamp_millis();
    // Hour-aligned, like the rollups: the hours that still have records have all of them, so
    // the rollups and the records agree wherever both exist.
    // Saturating: a retention past i64 milliseconds (~292 million years) must keep everything,
    // not wrap into the future and remove it all.
    let before = |keep: std::time::Duration| {
        rollup::hour_of(now.saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX)))
    };
    let mut c = PruneCutoffs {
        records_before_ms: before(retention.requests),
        runs_before_ms: before(retention.runs),
    };
    if let Some(cap) = retention.max_db_size
        && let Some(ts) = size_cutoff(store, cap)?
    {
        c.records_before_ms = c.records_before_ms.max(ts);
    }
    Ok(c)
}

/// Pages in use above this share of `max_db_size` start a prune by size: redb grows its file
/// by doubling, so pages in use past half the cap could grow the file past it.
const SIZE_PRUNE_AT: f64 = 0.5;
/// A prune by size keeps the newest records that fit in this share of the cap.
const SIZE_KEEP: f64 = 0.4;

/// The record cutoff that brings the pages in use under the cap's prune mark, oldest records
/// first; `None` while they are under it.
pub(super) fn size_cutoff(store: &Store, cap: u64) -> Result<Option<i64>, StoreError> {
    let live = store.live_bytes()?;
    let n = store.record_count()?;
    if (live as f64) <= cap as f64 * SIZE_PRUNE_AT || n == 0 {
        return Ok(None);
    }
    // Keep as many records as fit at today's bytes per record (runs, rollups and prompts
    // counted in: if they dominate, every record may go).
    let per = live as f64 / n as f64;
    let keep = ((cap as f64 * SIZE_KEEP) / per) as u64;
    Ok(match store.nth_record_ts(n.saturating_sub(keep))? {
        Some(ts) => Some(ts + 1),
        None => Some(i64::MAX),
    })
}

impl Store {
    /// Keeps the file under `max_db_size`: prunes the oldest records by size, then, when the
    /// file is over the cap, compacts it (redb moves the live pages to the front and cuts the
    /// file's tail). Readers wait while it compacts; a read in progress makes it retry later.
    /// Returns the records pruned and whether the file was compacted.
    pub fn enforce_cap(&self) -> Result<(u64, bool), StoreError> {
        let Some(cap) = self.options().max_db_size else {
            return Ok((0, false));
        };
        let mut pruned = 0;
        if let Some(before) = size_cutoff(self, cap)? {
            let cutoffs = PruneCutoffs {
                records_before_ms: before,
                runs_before_ms: 0,
            };
            let mut report = PruneReport::default();
            while prune_records(&*self.db()?, &cutoffs, PRUNE_BATCH, &mut report)? == PRUNE_BATCH {}
            pruned = report.records;
        }
        let compacted = self.file_bytes() > cap && self.compact()?;
        Ok((pruned, compacted))
    }

    /// Compacts the file (see [`Store::enforce_cap`]); false when a read in progress stopped it.
    pub fn compact(&self) -> Result<bool, StoreError> {
        let mut slot = self
            .shared
            .slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(mut db) = slot.take() else {
            return Ok(false);
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while Arc::strong_count(&db) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let before = self.file_bytes();
        let t0 = std::time::Instant::now();
        let result = match Arc::get_mut(&mut db) {
            Some(db) => {
                let mut rounds = 0;
                loop {
                    match db.compact() {
                        Ok(true) if rounds < 8 => rounds += 1,
                        Ok(_) => break Ok(true),
                        Err(redb::CompactionError::TransactionInProgress) => break Ok(false),
                        Err(e) => break Err(StoreError::Db(e.into())),
                    }
                }
            }
            None => Ok(false),
        };
        *slot = Some(db);
        if let Ok(true) = result {
            tracing::info!(
                before_bytes = before,
                after_bytes = self.file_bytes(),
                ms = t0.elapsed().as_millis() as u64,
                "store compacted to stay under max_db_size"
            );
        }
        result
    }
}
