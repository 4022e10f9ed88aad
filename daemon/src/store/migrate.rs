//! Schema migrations, run in one transaction when the store opens (all or nothing).

use super::tables::*;
use super::*;

impl Store {
    /// Creates the tables and records the schema version; refuses a newer schema; migrates an
    /// older one in the same transaction (all or nothing).
    pub(super) fn migrate(&self) -> Result<(), OpenError> {
        let db_err = |e: StoreError| OpenError::Db {
            path: self.shared.path.clone(),
            message: e.to_string(),
        };
        let run = || -> Result<Option<u64>, StoreError> {
            let tx = begin_write(&*self.db()?)?;
            let found = tx
                .open_table(META)?
                .get("schema_version")?
                .map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => return Ok(Some(v)),
                Some(SCHEMA_VERSION) => {}
                // Migration 1 → 2: rollups by group id, hourly and daily; no run index.
                Some(1) => {
                    let t = std::time::Instant::now();
                    let rows = migrate_1_to_2(&tx)?;
                    tracing::info!(
                        file = %self.shared.path.display(),
                        rollup_rows = rows,
                        ms = t.elapsed().as_millis() as u64,
                        "store migrated from schema 1 to 2"
                    );
                }
                // Migration 2 → 3: records gain the served model's identity (a new record
                // version, read beside the old ones), and the events and pins tables are new:
                // nothing to rewrite. The version is raised so an older binary refuses the
                // file rather than skipping the records it cannot read.
                Some(2) => {
                    tracing::info!(file = %self.shared.path.display(), "store migrated from schema 2 to 3")
                }
                // A new file (or one from before versions were written).
                _ => {}
            }
            // Migration 3 → 4 (and on from 1 and 2): the span of keys each run's records were
            // stored under, from one pass over the records.
            if found.is_some_and(|v| v < 4) {
                let t = std::time::Instant::now();
                let runs = build_run_spans(&tx)?;
                tracing::info!(
                    file = %self.shared.path.display(),
                    runs,
                    ms = t.elapsed().as_millis() as u64,
                    "store migrated to schema 4 (run spans)"
                );
            }
            tx.open_table(META)?
                .insert("schema_version", SCHEMA_VERSION)?;
            tx.open_table(RECORDS)?;
            tx.open_table(RUNS)?;
            tx.open_table(JOB_RUNS)?;
            tx.open_table(RUNNING)?;
            tx.open_table(PAYLOADS)?;
            tx.open_table(GROUPS)?;
            tx.open_table(HOURS)?;
            tx.open_table(DAYS)?;
            tx.open_table(EVENTS)?;
            tx.open_table(PINS)?;
            tx.open_table(ALERTS)?;
            tx.open_table(RUN_SPANS)?;
            tx.commit()?;
            Ok(None)
        };
        match run().map_err(db_err)? {
            Some(found) => Err(OpenError::NewerSchema {
                path: self.shared.path.clone(),
                found,
            }),
            None => Ok(()),
        }
    }
}

/// Migration 1 → 2: schema 1's hourly rollups (keyed by the joined names) become group ids,
/// hourly and daily rows; the run → records index goes. Returns the rollup rows converted.
pub(super) fn migrate_1_to_2(tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let mut groups = Groups::default();
    let mut n = 0;
    {
        let old = tx.open_table(ROLLUPS_V1)?;
        let mut names = tx.open_table(GROUPS)?;
        let mut hours = tx.open_table(HOURS)?;
        let mut days = tx.open_table(DAYS)?;
        // Schema 1's rows come in hour order: converted a day at a time, so memory holds one
        // day's rows however long the history.
        let mut day = None;
        let mut pending = rollup::Pending::default();
        for e in old.iter()? {
            let (k, v) = e?;
            let (hour, key) = k.value();
            let Some(r) = rollup::decode_v1(v.value()) else {
                tracing::warn!(
                    hour,
                    group = key,
                    "a schema 1 rollup row could not be read; skipped"
                );
                continue;
            };
            let this_day = rollup::day_of(hour as i64);
            if day != Some(this_day) {
                std::mem::take(&mut pending).merge_into(&mut hours, &mut days)?;
                day = Some(this_day);
            }
            let gid = groups.id(key, &mut names)?;
            pending.add_rollup(hour as i64, gid, &r);
            n += 1;
        }
        pending.merge_into(&mut hours, &mut days)?;
    }
    tx.delete_table(ROLLUPS_V1)?;
    tx.delete_multimap_table(RUN_RECORDS_V1)?;
    Ok(n)
}

/// Migration 3 → 4: the span of keys of each run's records. Returns the runs with records.
pub(super) fn build_run_spans(tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
    let mut spans: HashMap<String, (u64, u64)> = HashMap::new();
    {
        let records = tx.open_table(RECORDS)?;
        for e in records.iter()? {
            let (k, v) = e?;
            let ts = k.value().0;
            let Some((_, s)) = Stored::decode(v.value()) else {
                continue;
            };
            match spans.get_mut(s.run_id) {
                Some(span) => *span = (span.0.min(ts), span.1.max(ts)),
                None => {
                    spans.insert(s.run_id.to_string(), (ts, ts));
                }
            }
        }
    }
    let mut table = tx.open_table(RUN_SPANS)?;
    for (run, span) in &spans {
        table.insert(run.as_str(), *span)?;
    }
    Ok(spans.len() as u64)
}
