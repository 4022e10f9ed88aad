//! The store: one redb file, `data_dir/evald.redb` (mode 0600), holding request records, run
//! summaries, content-addressed prompts and hourly and daily rollups.
//!
//! Writes go through one writer thread ([`Writer`]) that commits whatever has queued while the
//! previous commit was syncing (group commit): a busy run costs one fsync per batch, not one
//! per request, and a queue bounded in length keeps memory bounded whatever the run length.
//! Reads open their own read transaction: a snapshot that a concurrent write neither blocks nor
//! shows half-way.
//!
//! Tables are opened only in this module and named with a version suffix; the `meta` table
//! holds the schema version, and a binary that finds a newer one refuses to open the file.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use evald_web::model::{Record, RecordFilter, RowRef, RunStatus, RunSummary, ScoreRef};
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::rollup::{self, GroupName, Sample, Totals};

/// The schema this binary writes. Bump it with a named migration in [`Store::migrate`].
pub const SCHEMA_VERSION: u64 = 2;

/// Key: a name (`schema_version`, `next_record_id`). Value: the number.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta-1");
/// Key: (timestamp ms, record id) — appends land at the right edge, and windows, last-N, a
/// run's records and pruning are range operations. Value: a version byte, then the postcard
/// [`Stored`] record.
const RECORDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("records-1");
/// Key: run id (sortable by start time). Value: the [`RunSummary`] as JSON (few and evolving:
/// JSON keeps old summaries readable as fields are added).
const RUNS: TableDefinition<&str, &[u8]> = TableDefinition::new("runs-1");
/// Key: (job, run id). Value: nothing; lists a job's runs in order.
const JOB_RUNS: TableDefinition<(&str, &str), ()> = TableDefinition::new("job-runs-1");
/// Key: run id of every run not yet ended. Value: nothing; what start-up marks interrupted.
const RUNNING: TableDefinition<&str, ()> = TableDefinition::new("running-1");
/// Key: xxh3-128 of the messages JSON. Value: (records referring to it, the messages JSON).
/// Scheduled jobs send the same prompts every run: each distinct payload is stored once.
const PAYLOADS: TableDefinition<u128, (u64, &[u8])> = TableDefinition::new("payloads-1");
/// Key: rollup group id. Value: the group's job, endpoint, model and provider joined by U+001F.
/// Ids are handed out from 0 and never reused.
const GROUPS: TableDefinition<u32, &str> = TableDefinition::new("rollup-groups-2");
/// Key: (hour start ms, group id). Value: that hour's [`Rollup`] of the group.
const HOURS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("rollups-hour-2");
/// Key: (day start ms, UTC, group id). Value: that day's [`Rollup`] of the group.
const DAYS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("rollups-day-2");

/// Schema 1's run → records index, dropped by migration 2: a run's records are found by
/// scanning the run's time span in [`RECORDS`], which costs a run page little and saves every
/// record an index entry.
const RUN_RECORDS_V1: MultimapTableDefinition<&str, (u64, u64)> =
    MultimapTableDefinition::new("run-records-1");
/// Schema 1's hourly rollups keyed by (hour, joined names), postcard values; migration 2 turns
/// them into [`GROUPS`], [`HOURS`] and [`DAYS`].
const ROLLUPS_V1: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("rollups-1");

/// A run's records are looked for this far outside its start and end, in case the wall clock
/// stepped back while it ran.
const RUN_SLACK_MS: i64 = 10 * 60 * 1000;

/// Version byte in front of a stored record: scores as JSON text (schema 1 wrote these).
const RECORD_V1: u8 = 1;
/// Version byte in front of a stored record: scores in postcard (~half the bytes).
const RECORD_V2: u8 = 2;

/// redb's page cache.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// How long a lone record waits for others before the writer commits.
const BATCH_WINDOW: std::time::Duration = std::time::Duration::from_millis(5);

/// Records queued for the writer before senders wait: bounds memory under any load.
const QUEUE: usize = 16 * 1024;

/// What can go wrong opening the store.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process (a running `evald serve`) holds the file.
    #[error("{0} is in use by another evald process")]
    InUse(PathBuf),
    /// The file was written by a newer evald.
    #[error(
        "{path} has schema version {found}; this evald understands up to {SCHEMA_VERSION}: upgrade evald (or point data_dir elsewhere)"
    )]
    NewerSchema {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
    /// Creating the folder or the file failed.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// redb could not open the file.
    #[error("cannot open {path}: {message}")]
    Db {
        /// The file.
        path: PathBuf,
        /// redb's reason.
        message: String,
    },
}

/// A read or write failed inside redb (disk full, corruption).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError(e.to_string())
            }
        }
    )*};
}
impl_from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CursorError
);

/// A request record as stored: the record minus its key (timestamp, id), with the messages
/// replaced by the hash of their payload, the metadata as JSON (open-ended: it can grow without
/// a migration) and the scores in postcard ([`ScoreRef`]s; schema 1's records hold them as JSON
/// text, which postcard frames the same way). Text is borrowed both ways: encoding copies
/// nothing out of the record, and reading decodes nothing into owned strings.
#[derive(Debug, Serialize, Deserialize)]
struct Stored<'a> {
    model: &'a str,
    provider: &'a str,
    messages: u128,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    top_p: Option<f64>,
    response: Option<&'a str>,
    response_time_ms: Option<f64>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    total_tokens: Option<u32>,
    finish_reason: Option<&'a str>,
    error: Option<&'a str>,
    metadata: &'a str,
    job: &'a str,
    run_id: &'a str,
    case_id: &'a str,
    endpoint: &'a str,
    ttft_ms: Option<f64>,
    scores: &'a [u8],
}

impl<'a> Stored<'a> {
    /// Reads a stored value and its version; `None` for a version this binary cannot read.
    fn decode(bytes: &'a [u8]) -> Option<(u8, Stored<'a>)> {
        let (&version, body) = bytes.split_first()?;
        if version != RECORD_V1 && version != RECORD_V2 {
            return None;
        }
        Some((version, postcard::from_bytes(body).ok()?))
    }

    /// The row, with the messages and scores JSON found by the caller.
    fn row(&self, key: (u64, u64), messages_json: &'a str, scores_json: &'a str) -> RowRef<'a> {
        RowRef {
            id: key.1,
            timestamp_ms: key.0 as i64,
            model: self.model,
            provider: self.provider,
            messages_json,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            top_p: self.top_p,
            response: self.response,
            response_time_ms: self.response_time_ms,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            finish_reason: self.finish_reason,
            error: self.error,
            metadata_json: self.metadata,
            job: self.job,
            run_id: self.run_id,
            case_id: self.case_id,
            endpoint: self.endpoint,
            ttft_ms: self.ttft_ms,
            scores_json,
        }
    }
}

/// The scores of a stored record as JSON text: [`RECORD_V1`] holds the text, later versions
/// postcard, written out as JSON into `buf`. Damaged scores read as `[]`.
fn scores_json<'b>(version: u8, bytes: &'b [u8], buf: &'b mut Vec<u8>) -> &'b str {
    if version == RECORD_V1 {
        return std::str::from_utf8(bytes).unwrap_or("[]");
    }
    buf.clear();
    let written = postcard::from_bytes::<Vec<ScoreRef>>(bytes)
        .ok()
        .and_then(|v| serde_json::to_writer(&mut *buf, &v).ok());
    match written {
        Some(()) => std::str::from_utf8(buf).unwrap_or("[]"),
        None => "[]",
    }
}

/// A record ready for the writer: encoded by the task that made it, so the one writer thread
/// only inserts bytes.
struct Encoded {
    timestamp_ms: u64,
    value: Vec<u8>,
    payload: u128,
    payload_json: Vec<u8>,
    group: String,
    sample: Option<Sample>,
}

impl Encoded {
    /// Encodes a record (its `id` is assigned by the writer).
    fn new(r: &Record) -> Result<Encoded, StoreError> {
        let enc = |e: &dyn std::fmt::Display| StoreError(format!("encoding a record: {e}"));
        let payload_json = serde_json::to_vec(&r.messages).map_err(|e| enc(&e))?;
        let payload = xxhash_rust::xxh3::xxh3_128(&payload_json);
        let metadata = serde_json::to_string(&r.metadata).map_err(|e| enc(&e))?;
        let scores: Vec<ScoreRef> = r.scores.iter().map(ScoreRef::from).collect();
        let scores = postcard::to_allocvec(&scores).map_err(|e| enc(&e))?;
        let s = Stored {
            model: &r.model,
            provider: &r.provider,
            messages: payload,
            temperature: r.temperature,
            max_tokens: r.max_tokens,
            top_p: r.top_p,
            response: r.response.as_deref(),
            response_time_ms: r.response_time_ms,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            total_tokens: r.total_tokens,
            finish_reason: r.finish_reason.as_deref(),
            error: r.error.as_deref(),
            metadata: &metadata,
            job: &r.job,
            run_id: &r.run_id,
            case_id: &r.case_id,
            endpoint: &r.endpoint,
            ttft_ms: r.ttft_ms,
            scores: &scores,
        };
        let mut value = Vec::with_capacity(
            64 + r.response.as_ref().map_or(0, String::len) + metadata.len() + scores.len(),
        );
        value.push(RECORD_V2);
        let value = postcard::to_extend(&s, value).map_err(|e| enc(&e))?;
        Ok(Encoded {
            timestamp_ms: r.timestamp_ms.max(0) as u64,
            value,
            payload,
            payload_json,
            group: rollup::key_of(&r.job, &r.endpoint, &r.model, &r.provider),
            sample: Sample::of(r),
        })
    }
}

/// The store: cheap to clone, shared by the writer, the runner and the page.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// Creates `path` with mode 0600 if it does not exist, and tightens it if it does.
fn create_private(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

impl Store {
    /// Opens (or creates) the store file, checks its schema and migrates it.
    pub fn open(path: &Path) -> Result<Store, OpenError> {
        create_private(path).map_err(|source| OpenError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        // redb's page cache defaults to 1 GiB, which a full export would fill: a modest cache
        // keeps the daemon's memory flat (the OS page cache still holds the hot file).
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse(path.to_path_buf()),
                other => OpenError::Db {
                    path: path.to_path_buf(),
                    message: other.to_string(),
                },
            })?;
        let store = Store {
            db: Arc::new(db),
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the tables and records the schema version; refuses a newer schema; migrates an
    /// older one in the same transaction (all or nothing).
    fn migrate(&self) -> Result<(), OpenError> {
        let db_err = |e: StoreError| OpenError::Db {
            path: self.path.clone(),
            message: e.0,
        };
        let run = || -> Result<Option<u64>, StoreError> {
            let tx = self.db.begin_write()?;
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
                        file = %self.path.display(),
                        rollup_rows = rows,
                        ms = t.elapsed().as_millis() as u64,
                        "store migrated from schema 1 to 2"
                    );
                }
                // A new file (or one from before versions were written).
                _ => {}
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
            tx.commit()?;
            Ok(None)
        };
        match run().map_err(db_err)? {
            Some(found) => Err(OpenError::NewerSchema {
                path: self.path.clone(),
                found,
            }),
            None => Ok(()),
        }
    }

    /// Starts the writer thread. Every write goes through the returned handle.
    pub fn writer(&self) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let db = self.db.clone();
        let handle = std::thread::Builder::new()
            .name("evald-writer".into())
            .spawn(move || writer_loop(&db, rx));
        Writer {
            tx,
            thread: Arc::new(std::sync::Mutex::new(handle.ok())),
        }
    }

    /// Marks every run that was going when the process last stopped as interrupted, with the
    /// counts of the records that were committed. Returns the run ids marked.
    pub fn mark_interrupted(&self) -> Result<Vec<String>, StoreError> {
        let ids: Vec<String> = {
            let tx = self.db.begin_read()?;
            let running = tx.open_table(RUNNING)?;
            running
                .iter()?
                .filter_map(|e| e.ok().map(|(k, _)| k.value().to_string()))
                .collect()
        };
        let mut marked = Vec::new();
        let mut summaries = Vec::new();
        for id in &ids {
            let Some(mut summary) = self.run(id)? else {
                continue;
            };
            // Streamed: a long benchmark cut off may have millions of records.
            let mut tally = crate::runner::Tally::default();
            let mut ended = summary.started_ms;
            let filter = RecordFilter {
                run_id: Some(id.clone()),
                ..RecordFilter::default()
            };
            self.scan(&filter, false, &mut |r| {
                ended = ended.max(r.timestamp_ms);
                tally.add(&r.to_record());
                true
            })?;
            tally.finish(&mut summary);
            summary.status = RunStatus::Interrupted;
            summary.ended_ms = Some(ended);
            summary.message = Some(
                "cut off: evald stopped before the run ended (marked at the next start)".into(),
            );
            summaries.push(summary);
        }
        let tx = self.db.begin_write()?;
        {
            let mut running = tx.open_table(RUNNING)?;
            let mut runs = tx.open_table(RUNS)?;
            for id in &ids {
                running.remove(id.as_str())?;
            }
            for summary in summaries {
                let bytes = serde_json::to_vec(&summary).map_err(|e| StoreError(e.to_string()))?;
                runs.insert(summary.id.as_str(), bytes.as_slice())?;
                marked.push(summary.id);
            }
        }
        tx.commit()?;
        Ok(marked)
    }

    /// One run.
    pub fn run(&self, id: &str) -> Result<Option<RunSummary>, StoreError> {
        let tx = self.db.begin_read()?;
        let runs = tx.open_table(RUNS)?;
        Ok(runs
            .get(id)?
            .and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// Runs newest first, of one job or of all.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let tx = self.db.begin_read()?;
        let runs = tx.open_table(RUNS)?;
        let mut out = Vec::new();
        match job {
            Some(job) => {
                let idx = tx.open_table(JOB_RUNS)?;
                for e in idx.range((job, "")..=(job, "\u{10FFFF}"))?.rev() {
                    if out.len() >= limit {
                        break;
                    }
                    let (k, _) = e?;
                    let (_, id) = k.value();
                    if let Some(v) = runs.get(id)?
                        && let Ok(s) = serde_json::from_slice(v.value())
                    {
                        out.push(s);
                    }
                }
            }
            None => {
                for e in runs.iter()?.rev() {
                    if out.len() >= limit {
                        break;
                    }
                    let (_, v) = e?;
                    if let Ok(s) = serde_json::from_slice(v.value()) {
                        out.push(s);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The records of one run, in the order they were sent, at most `limit`.
    pub fn run_records(&self, run_id: &str, limit: usize) -> Result<Vec<Record>, StoreError> {
        let filter = RecordFilter {
            run_id: Some(run_id.to_string()),
            ..RecordFilter::default()
        };
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(&filter, false, &mut |r| {
            out.push(r.to_record());
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Records newest first that pass the filter, at most `filter.limit` (default 20).
    pub fn recent_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let limit = filter.limit.unwrap_or(20) as usize;
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.scan(filter, true, &mut |r| {
            out.push(r.to_record());
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Streams the rows that pass the filter, oldest first, from one read snapshot; stops when
    /// `sink` returns false or `filter.limit` is reached.
    pub fn export(
        &self,
        filter: &RecordFilter,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), StoreError> {
        let mut left = filter.limit.unwrap_or(u64::MAX);
        if left == 0 {
            return Ok(());
        }
        self.scan(filter, false, &mut |r| {
            left -= 1;
            sink(r) && left > 0
        })
    }

    /// Every record that passes the filter, oldest first (for tests and small sets: an export
    /// should stream with [`Store::export`]).
    pub fn records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let mut out = Vec::new();
        self.export(filter, &mut |r| {
            out.push(r.to_record());
            true
        })?;
        Ok(out)
    }

    /// Writes the records that pass the filter to `out` in `format`, from one snapshot;
    /// returns the rows written and the sink.
    pub fn export_to<W: std::io::Write>(
        &self,
        filter: &RecordFilter,
        format: evald_web::export::Format,
        out: W,
    ) -> Result<(u64, W), StoreError> {
        let io = |e: std::io::Error| StoreError(format!("writing the export: {e}"));
        let mut w = evald_web::export::ExportWriter::new(format, out).map_err(io)?;
        let mut failed = None;
        self.export(filter, &mut |r| match w.write_row(r) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        })?;
        if let Some(e) = failed {
            return Err(io(e));
        }
        let rows = w.rows();
        Ok((rows, w.finish().map_err(io)?))
    }

    /// Every row that passes the filter, in key order (or reversed), from one read snapshot,
    /// until `sink` returns false. The time window is a key range, narrowed for a run filter to
    /// the run's span when its summary is there; the filter is tried before a row's prompt and
    /// scores are looked up; each distinct prompt payload is read once.
    fn scan(
        &self,
        filter: &RecordFilter,
        newest_first: bool,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), StoreError> {
        let mut from = filter.since_ms.unwrap_or(0).max(0) as u64;
        let mut until = filter.until_ms.map_or(u64::MAX, |u| u.max(0) as u64);
        let tx = self.db.begin_read()?;
        if let Some(id) = &filter.run_id
            && let Some(run) = tx
                .open_table(RUNS)?
                .get(id.as_str())?
                .and_then(|v| serde_json::from_slice::<RunSummary>(v.value()).ok())
        {
            from = from.max(run.started_ms.saturating_sub(RUN_SLACK_MS).max(0) as u64);
            if let Some(end) = run.ended_ms {
                until = until.min(end.saturating_add(RUN_SLACK_MS).max(0) as u64);
            }
        }
        if from >= until {
            return Ok(());
        }
        let records = tx.open_table(RECORDS)?;
        let payloads = tx.open_table(PAYLOADS)?;
        let range = records.range((from, 0u64)..(until, 0u64))?;
        let mut reader = PayloadReader::new(&payloads);
        let mut scores_buf = Vec::with_capacity(256);
        let mut each = |e: Result<_, redb::StorageError>| -> Result<bool, StoreError> {
            let (k, v): (redb::AccessGuard<(u64, u64)>, redb::AccessGuard<&[u8]>) = e?;
            let value = v.value();
            let Some((version, s)) = Stored::decode(value) else {
                return Ok(true);
            };
            if !filter.matches(&s.row(k.value(), "[]", "[]")) {
                return Ok(true);
            }
            let messages = reader.get(s.messages);
            let scores = scores_json(version, s.scores, &mut scores_buf);
            Ok(sink(&s.row(k.value(), messages, scores)))
        };
        if newest_first {
            for e in range.rev() {
                if !each(e)? {
                    break;
                }
            }
        } else {
            for e in range {
                if !each(e)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The rollups of the window `[from_ms, to_ms)` (`from_ms` the top of an hour) summed by
    /// group, and the names of the groups: whole days from the daily rows, the edges from the
    /// hourly ones.
    pub fn rollup_totals(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<(HashMap<u32, GroupName>, Totals), StoreError> {
        let tx = self.db.begin_read()?;
        let mut names = HashMap::new();
        for e in tx.open_table(GROUPS)?.iter()? {
            let (k, v) = e?;
            if let Some(n) = GroupName::parse(v.value()) {
                names.insert(k.value(), n);
            }
        }
        let mut totals = Totals::default();
        let plan = rollup::plan(from_ms, to_ms);
        let mut read = |table: TableDefinition<(u64, u32), &[u8]>,
                        (a, b): (i64, i64)|
         -> Result<(), StoreError> {
            if a >= b {
                return Ok(());
            }
            let t = tx.open_table(table)?;
            for e in t.range((a.max(0) as u64, 0u32)..(b.max(0) as u64, 0u32))? {
                let (k, v) = e?;
                if !totals.add_row(k.value().1, v.value()) {
                    tracing::warn!(key = ?k.value(), "a rollup row could not be read; skipped");
                }
            }
            Ok(())
        };
        for h in plan.hours {
            read(HOURS, h)?;
        }
        if let Some(d) = plan.days {
            read(DAYS, d)?;
        }
        Ok((names, totals))
    }

    /// Request records stored.
    pub fn record_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(RECORDS)?.len()?)
    }

    /// The timestamp of the `n`-th oldest record (0-based), if there are that many.
    pub fn nth_record_ts(&self, n: u64) -> Result<Option<i64>, StoreError> {
        let tx = self.db.begin_read()?;
        let records = tx.open_table(RECORDS)?;
        match records.iter()?.nth(n as usize) {
            Some(e) => Ok(Some(e?.0.value().0 as i64)),
            None => Ok(None),
        }
    }

    /// Bytes in pages the store uses now (the file may be larger: freed pages are reused, not
    /// returned). Opens a write transaction, so it waits for a commit in progress.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_write()?;
        let stats = tx.stats()?;
        let live = stats.allocated_pages() * stats.page_size() as u64;
        tx.abort()?;
        Ok(live)
    }

    /// The file's size on disk, bytes.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Counts what pruning at `cutoffs` would remove, without removing it.
    pub fn prune_plan(&self, cutoffs: &PruneCutoffs) -> Result<PruneReport, StoreError> {
        let tx = self.db.begin_read()?;
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

/// Migration 1 → 2: schema 1's hourly rollups (keyed by the joined names) become group ids,
/// hourly and daily rows; the run → records index goes. Returns the rollup rows converted.
fn migrate_1_to_2(tx: &redb::WriteTransaction) -> Result<u64, StoreError> {
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

/// The writer's map of rollup groups to their ids.
#[derive(Default)]
struct Groups {
    ids: HashMap<String, u32>,
    next: u32,
}

impl Groups {
    fn load(db: &Database) -> Result<Groups, StoreError> {
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
    fn id(&mut self, key: &str, table: &mut redb::Table<u32, &str>) -> Result<u32, StoreError> {
        if let Some(&id) = self.ids.get(key) {
            return Ok(id);
        }
        let id = self.next;
        table.insert(id, key)?;
        self.next += 1;
        self.ids.insert(key.to_string(), id);
        Ok(id)
    }
}

/// A run id's lower bound for a start time: run ids begin with the start time in hex.
fn run_id_floor(ms: i64) -> String {
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

/// Reads prompt payloads within one read transaction, each distinct one once: an export of a
/// million records of a few hundred prompts reads a few hundred payloads.
struct PayloadReader<'a> {
    table: &'a redb::ReadOnlyTable<u128, (u64, &'static [u8])>,
    texts: HashMap<u128, Box<str>>,
}

impl<'a> PayloadReader<'a> {
    /// Payloads kept at most; more are read again.
    const SIZE: usize = 4096;

    fn new(table: &'a redb::ReadOnlyTable<u128, (u64, &'static [u8])>) -> Self {
        PayloadReader {
            table,
            texts: HashMap::new(),
        }
    }

    /// The messages JSON of a payload (`[]` if it is missing or damaged).
    fn get(&mut self, hash: u128) -> &str {
        if !self.texts.contains_key(&hash) {
            let text: Box<str> = self
                .table
                .get(hash)
                .ok()
                .flatten()
                .and_then(|v| std::str::from_utf8(v.value().1).ok().map(Box::from))
                .unwrap_or_else(|| "[]".into());
            if self.texts.len() >= Self::SIZE {
                self.texts.clear();
            }
            self.texts.insert(hash, text);
        }
        self.texts.get(&hash).map_or("[]", |t| t)
    }
}

/// What the writer thread is asked to do.
enum Command {
    Record(Box<Encoded>),
    Run(Box<RunSummary>),
    Flush(oneshot::Sender<()>),
    Prune(
        PruneCutoffs,
        usize,
        oneshot::Sender<Result<PruneReport, StoreError>>,
    ),
    /// Commit what is queued and end the thread (other handles may still exist).
    Close,
}

/// The handle every writer of the store uses; clones share one writer thread.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
    thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Queues a request record (its `id` is assigned by the writer). Waits only when the queue
    /// is full, which is the back-pressure that keeps memory bounded.
    pub async fn record(&self, r: Record) {
        let e = match Encoded::new(&r) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, run = %r.run_id, "a request record was not stored");
                return;
            }
        };
        if self.tx.send(Command::Record(Box::new(e))).await.is_err() {
            tracing::error!("store writer is gone; a request record was lost");
        }
    }

    /// Queues a run summary (insert or replace).
    pub async fn run(&self, s: RunSummary) {
        if self.tx.send(Command::Run(Box::new(s))).await.is_err() {
            tracing::error!("store writer is gone; a run summary was lost");
        }
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Prunes in batches of at most `batch` deletions per transaction, so writers queued behind
    /// it wait for one small commit at most.
    pub async fn prune(
        &self,
        cutoffs: PruneCutoffs,
        batch: usize,
    ) -> Result<PruneReport, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Prune(cutoffs, batch, tx))
            .await
            .map_err(|_| StoreError("store writer is gone".into()))?;
        rx.await
            .map_err(|_| StoreError("store writer stopped during a prune".into()))?
    }

    /// Commits what is queued and stops the writer thread; later writes are lost (and logged).
    pub async fn close(self) {
        let _ = self.tx.send(Command::Close).await;
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Command>) {
    let mut next_id = match read_next_id(db) {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "store writer cannot start");
            return;
        }
    };
    let mut groups = match Groups::load(db) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, "store writer cannot start");
            return;
        }
    };
    let mut batch = Vec::new();
    // Prunes go one small batch at a time, between the commits of queued writes, so a large
    // prune never holds the writers up for more than one short transaction.
    let mut prunes: std::collections::VecDeque<PruneJob> = std::collections::VecDeque::new();
    loop {
        if prunes.is_empty() {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            // Group commit: a record arriving alone waits a few ms for company, so a busy run
            // costs one fsync per few thousand records and the senders do not wake this
            // thread for every one of them; a flush or close is taken at once.
            if matches!(first, Command::Record(_)) && rx.len() < 1024 {
                std::thread::sleep(BATCH_WINDOW);
            }
            batch.push(first);
        }
        while batch.len() < 8192 {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let mut writes = Vec::new();
        let mut closing = false;
        for c in batch.drain(..) {
            match c {
                Command::Close => closing = true,
                Command::Flush(ack) => acks.push(ack),
                Command::Prune(cutoffs, n, ack) => prunes.push_back(PruneJob {
                    cutoffs,
                    batch: n.max(1),
                    ack,
                    report: PruneReport::default(),
                    records_done: false,
                }),
                other => writes.push(other),
            }
        }
        if !writes.is_empty() {
            // Run summaries are few and small: kept aside, so a batch that fails (a disk full,
            // a record that cannot be encoded) still ends its runs.
            let summaries: Vec<Command> = writes
                .iter()
                .filter_map(|c| match c {
                    Command::Run(s) => Some(Command::Run(s.clone())),
                    _ => None,
                })
                .collect();
            if let Err(e) = commit(db, &mut next_id, &mut groups, writes) {
                tracing::error!(error = %e, "store commit failed; the batch's records were not stored");
                if let Ok(n) = read_next_id(db) {
                    next_id = n;
                }
                // Ids handed out in the failed transaction were not stored.
                if let Ok(g) = Groups::load(db) {
                    groups = g;
                }
                if !summaries.is_empty()
                    && let Err(e) = commit(db, &mut next_id, &mut groups, summaries)
                {
                    tracing::error!(error = %e, "storing run summaries failed too");
                }
            }
        }
        for a in acks {
            let _ = a.send(());
        }
        if closing {
            // A prune still going stops here; what it removed so far is reported.
            for p in prunes.drain(..) {
                let _ = p.ack.send(Ok(p.report));
            }
            break;
        }
        if let Some(p) = prunes.front_mut() {
            match p.step(db) {
                Ok(false) => {}
                Ok(true) => {
                    if let Some(p) = prunes.pop_front() {
                        let _ = p.ack.send(Ok(p.report));
                    }
                }
                Err(e) => {
                    if let Some(p) = prunes.pop_front() {
                        let _ = p.ack.send(Err(e));
                    }
                }
            }
        }
    }
}

/// A prune in progress in the writer.
struct PruneJob {
    cutoffs: PruneCutoffs,
    batch: usize,
    ack: oneshot::Sender<Result<PruneReport, StoreError>>,
    report: PruneReport,
    records_done: bool,
}

impl PruneJob {
    /// One transaction of deletions; true when nothing is left to delete.
    fn step(&mut self, db: &Database) -> Result<bool, StoreError> {
        if !self.records_done {
            let n = prune_records(db, &self.cutoffs, self.batch, &mut self.report)?;
            self.records_done = n < self.batch;
            return Ok(false);
        }
        let (n, m) = prune_runs(db, &self.cutoffs, self.batch, &mut self.report)?;
        Ok(n < self.batch && m < self.batch)
    }
}

fn read_next_id(db: &Database) -> Result<u64, StoreError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    Ok(meta.get("next_record_id")?.map(|v| v.value()).unwrap_or(1))
}

fn commit(
    db: &Database,
    next_id: &mut u64,
    groups: &mut Groups,
    writes: Vec<Command>,
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    let mut id = *next_id;
    {
        let mut records = tx.open_table(RECORDS)?;
        let mut runs = tx.open_table(RUNS)?;
        let mut job_runs = tx.open_table(JOB_RUNS)?;
        let mut running = tx.open_table(RUNNING)?;
        let mut payloads = tx.open_table(PAYLOADS)?;
        let mut names = tx.open_table(GROUPS)?;
        let mut pending = rollup::Pending::default();
        // References added per payload in this batch: one read-modify-write per payload, not
        // per record.
        let mut refs: HashMap<u128, (u64, Vec<u8>)> = HashMap::new();
        let mut batch: Vec<((u64, u64), Vec<u8>)> = Vec::with_capacity(writes.len());
        for w in writes {
            match w {
                Command::Record(e) => {
                    let e = *e;
                    let key = (e.timestamp_ms, id);
                    id += 1;
                    refs.entry(e.payload).or_insert((0, e.payload_json)).0 += 1;
                    if let Some(sample) = &e.sample {
                        let gid = groups.id(&e.group, &mut names)?;
                        pending.add(key.0 as i64, gid, sample);
                    }
                    batch.push((key, e.value));
                }
                Command::Run(s) => {
                    let bytes = serde_json::to_vec(&*s).map_err(|e| StoreError(e.to_string()))?;
                    runs.insert(s.id.as_str(), bytes.as_slice())?;
                    job_runs.insert((s.job.as_str(), s.id.as_str()), ())?;
                    if s.status == RunStatus::Running {
                        running.insert(s.id.as_str(), ())?;
                    } else {
                        running.remove(s.id.as_str())?;
                    }
                }
                Command::Flush(_) | Command::Prune(..) | Command::Close => {}
            }
        }
        append(&mut records, batch)?;
        for (hash, (n, json)) in refs {
            let have = payloads.get(hash)?.map(|v| v.value().0).unwrap_or(0);
            payloads.insert(hash, (have + n, json.as_slice()))?;
        }
        let mut hours = tx.open_table(HOURS)?;
        let mut days = tx.open_table(DAYS)?;
        pending.merge_into(&mut hours, &mut days)?;
        let mut meta = tx.open_table(META)?;
        meta.insert("next_record_id", id)?;
    }
    tx.commit()?;
    *next_id = id;
    Ok(())
}

/// Inserts a batch of records. Most keys are above every stored one (records are stamped when
/// their request starts, a moment before they reach the writer): those are appended through a
/// cursor at the table's end, which packs leaves full instead of splitting them in half as
/// one-by-one inserts at the right edge do — half the pages, and faster. The few that arrive
/// after a later one was stored go in one by one.
fn append(
    records: &mut redb::Table<(u64, u64), &[u8]>,
    mut batch: Vec<((u64, u64), Vec<u8>)>,
) -> Result<(), StoreError> {
    batch.sort_unstable_by_key(|e| e.0);
    let last = records.last()?.map(|(k, _)| k.value());
    let split = match last {
        Some(last) => batch.partition_point(|e| e.0 <= last),
        None => 0,
    };
    for (key, value) in &batch[..split] {
        records.insert(*key, value.as_slice())?;
    }
    if split < batch.len() {
        let mut cursor = records.upper_bound_mut(Bound::<(u64, u64)>::Unbounded)?;
        for (key, value) in &batch[split..] {
            cursor.insert_before(*key, value.as_slice())?;
        }
        cursor.close()?;
    }
    Ok(())
}

/// Deletes up to `batch` records older than the cutoff, and the payloads no record refers
/// to any more, in one transaction. Returns how many records went.
fn prune_records(
    db: &Database,
    cutoffs: &PruneCutoffs,
    batch: usize,
    report: &mut PruneReport,
) -> Result<usize, StoreError> {
    let rec_hi = (cutoffs.records_before_ms.max(0) as u64, 0u64);
    let tx = db.begin_write()?;
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
fn prune_runs(
    db: &Database,
    cutoffs: &PruneCutoffs,
    batch: usize,
    report: &mut PruneReport,
) -> Result<(usize, usize), StoreError> {
    let run_hi = run_id_floor(cutoffs.runs_before_ms);
    let tx = db.begin_write()?;
    let n = {
        let mut runs = tx.open_table(RUNS)?;
        let mut job_runs = tx.open_table(JOB_RUNS)?;
        let mut running = tx.open_table(RUNNING)?;
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

/// Makes a run id: the start time in hex (so ids sort by start) and a random tail.
pub fn new_run_id(started_ms: i64) -> String {
    format!(
        "{}{:05x}",
        run_id_floor(started_ms),
        rand::random::<u32>() & 0xfffff
    )
}
