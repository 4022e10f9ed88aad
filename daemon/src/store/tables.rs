//! The store's tables, each named with a version suffix, and the constants of its layout.
//! Tables are opened only inside `store`.

use std::collections::HashMap;

use redb::{Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, TableDefinition};

use super::StoreError;

/// The schema this binary writes. Bump it with a named migration in [`Store::migrate`].
pub const SCHEMA_VERSION: u64 = 4;

/// Key: a name (`schema_version`, `next_record_id`). Value: the number.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta-1");
/// Key: (timestamp ms, record id) — appends land at the right edge, and windows, last-N, a
/// run's records and pruning are range operations. Value: a version byte, then the postcard
/// [`Stored`] record.
pub(super) const RECORDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("records-1");
/// Key: run id. Value: the lowest and highest timestamp key of its records, widened by the
/// writer with every batch: a run's records are the range between them (filtered by run), found
/// whatever the wall clock did while it ran, and a run with no entry has no records.
pub(super) const RUN_SPANS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("run-spans-1");
/// Key: run id (sortable by start time). Value: the [`RunSummary`] as JSON (few and evolving:
/// JSON keeps old summaries readable as fields are added).
pub(super) const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs-1");
/// Key: (job, run id). Value: nothing; lists a job's runs in order.
pub(super) const JOB_RUNS: TableDefinition<(&str, &str), ()> = TableDefinition::new("job-runs-1");
/// Key: run id of every run not yet ended. Value: nothing; what start-up marks interrupted.
pub(super) const RUNNING: TableDefinition<&str, ()> = TableDefinition::new("running-1");
/// Key: xxh3-128 of the messages JSON. Value: (records referring to it, the messages JSON).
/// Scheduled jobs send the same prompts every run: each distinct payload is stored once.
pub(super) const PAYLOADS: TableDefinition<u128, (u64, &[u8])> = TableDefinition::new("payloads-1");
/// Key: rollup group id. Value: the group's job, endpoint, model and provider joined by U+001F.
/// Ids are handed out from 0 and never reused.
pub(super) const GROUPS: TableDefinition<u32, &str> = TableDefinition::new("rollup-groups-2");
/// Key: (hour start ms, group id). Value: that hour's [`Rollup`] of the group.
pub(super) const HOURS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("rollups-hour-2");
/// Key: (day start ms, UTC, group id). Value: that day's [`Rollup`] of the group.
pub(super) const DAYS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("rollups-day-2");

/// Key: (time ms, a hash of the run and target). Value: the [`evald_model::Event`] as JSON.
pub(super) const EVENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("events-1");
/// Key: job, alert and target joined by U+001F. Value: the [`evald_model::AlertStatus`] as
/// JSON: restored at start, so a restart neither forgets nor repeats a firing alert.
pub(super) const ALERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("alerts-1");
/// Key: job. Value: the run pinned as its baseline (`evald baseline pin`).
pub(super) const PINS: TableDefinition<&str, &str> = TableDefinition::new("pins-1");

/// Schema 1's run → records index, dropped by migration 2: a run's records are found by
/// scanning the run's time span in [`RECORDS`], which costs a run page little and saves every
/// record an index entry.
pub(super) const RUN_RECORDS_V1: MultimapTableDefinition<&str, (u64, u64)> =
    MultimapTableDefinition::new("run-records-1");
/// Schema 1's hourly rollups keyed by (hour, joined names), postcard values; migration 2 turns
/// them into [`GROUPS`], [`HOURS`] and [`DAYS`].
pub(super) const ROLLUPS_V1: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("rollups-1");

/// Version byte in front of a stored record: scores as JSON text (schema 1 wrote these).
pub(super) const RECORD_V1: u8 = 1;
/// Version byte in front of a stored record: scores in postcard (~half the bytes).
pub(super) const RECORD_V2: u8 = 2;
/// Version 3: version 2 followed by the served model and system fingerprint ([`Tail`]).
pub(super) const RECORD_V3: u8 = 3;

/// redb's page cache.
pub(super) const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Records queued for the writer before senders wait, and the most one commit takes: bounds
/// memory, and what a kill -9 can lose, to about two commits' worth (at the writer's 100k+
/// records/s, a few tens of milliseconds).
pub(super) const QUEUE: usize = 4096;

/// The writer's map of rollup groups to their ids.
#[derive(Default)]
pub(super) struct Groups {
    pub(super) ids: HashMap<String, u32>,
    pub(super) next: u32,
    /// The last group asked for and its id: a batch's records mostly share one.
    pub(super) last: Option<(String, u32)>,
}

impl Groups {
    pub(super) fn load(db: &Database) -> Result<Groups, StoreError> {
        let tx = db.begin_read()?;
        let t = tx.open_table(GROUPS)?;
        let mut g = Groups::default();
        for e in t.iter()? {
            let (k, v) = e?;
            g.ids.insert(v.value().to_string(), k.value());
            g.next = g.next.max(k.value() + 1);
        }
        Ok(g)
    }

    /// The id of a group, handed out (and stored in `table`) the first time it is seen.
    pub(super) fn id(
        &mut self,
        key: &str,
        table: &mut redb::Table<u32, &str>,
    ) -> Result<u32, StoreError> {
        if let Some((last, id)) = &self.last
            && last == key
        {
            return Ok(*id);
        }
        let id = match self.ids.get(key) {
            Some(&id) => id,
            None => {
                let id = self.next;
                table.insert(id, key)?;
                self.next += 1;
                self.ids.insert(key.to_string(), id);
                id
            }
        };
        match &mut self.last {
            Some((last, last_id)) => {
                last.clear();
                last.push_str(key);
                *last_id = id;
            }
            None => self.last = Some((key.to_string(), id)),
        }
        Ok(id)
    }
}
