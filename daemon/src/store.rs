//! The store: one redb file, `data_dir/evald.redb` (mode 0600), holding request records, run
//! summaries, content-addressed prompts and hourly rollups.
//!
//! Writes go through one writer thread ([`Writer`]) that commits whatever has queued while the
//! previous commit was syncing (group commit): a busy run costs one fsync per batch, not one
//! per request, and a queue bounded in length keeps memory bounded whatever the run length.
//! Reads open their own read transaction: a snapshot that a concurrent write neither blocks nor
//! shows half-way.
//!
//! Tables are opened only in this module and named with a version suffix; the `meta` table
//! holds the schema version, and a binary that finds a newer one refuses to open the file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use evald_web::model::{Message, Metadata, Record, RecordFilter, RunStatus, RunSummary, Score};
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::rollup::{self, Rollup, RollupKey};

/// The schema this binary writes. Bump it with a named migration in [`migrate`].
pub const SCHEMA_VERSION: u64 = 1;

/// Key: a name (`schema_version`, `next_record_id`). Value: the number.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta-1");
/// Key: (timestamp ms, record id) — appends land at the right edge, and windows, last-N and
/// pruning are range operations. Value: a version byte, then the postcard [`StoredRecord`].
const RECORDS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("records-1");
/// Key: run id. Value: the (timestamp ms, record id) keys of its records.
const RUN_RECORDS: MultimapTableDefinition<&str, (u64, u64)> =
    MultimapTableDefinition::new("run-records-1");
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
/// Key: (hour start ms, group key). Value: a postcard [`Rollup`] of that hour's records.
const ROLLUPS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("rollups-1");

/// One entry of a range over [`RECORDS`].
type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, (u64, u64)>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// Version byte in front of every stored record.
const RECORD_V1: u8 = 1;

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
    redb::CommitError
);

/// A request record as stored: the record minus its key (timestamp, id), with the messages
/// replaced by the hash of their payload, and the open-ended parts (metadata, scores) as JSON so
/// they can grow without a migration.
#[derive(Debug, Serialize, Deserialize)]
struct StoredRecord {
    model: String,
    provider: String,
    messages: u128,
    temperature: Option<f64>,
    max_tokens: Option<u32>,
    top_p: Option<f64>,
    response: Option<String>,
    response_time_ms: Option<f64>,
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    total_tokens: Option<u32>,
    finish_reason: Option<String>,
    error: Option<String>,
    metadata: String,
    job: String,
    run_id: String,
    case_id: String,
    endpoint: String,
    ttft_ms: Option<f64>,
    scores: String,
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

    /// Creates the tables and records the schema version; refuses a newer schema.
    fn migrate(&self) -> Result<(), OpenError> {
        let db_err = |e: StoreError| OpenError::Db {
            path: self.path.clone(),
            message: e.0,
        };
        let run = || -> Result<Option<u64>, StoreError> {
            let tx = self.db.begin_write()?;
            let found = {
                let mut meta = tx.open_table(META)?;
                let found = meta.get("schema_version")?.map(|v| v.value());
                match found {
                    Some(v) if v > SCHEMA_VERSION => return Ok(Some(v)),
                    Some(_) => {}
                    // Migration 0 → 1: a new file. Later migrations go here, numbered and named.
                    None => {
                        meta.insert("schema_version", SCHEMA_VERSION)?;
                    }
                }
                found
            };
            tx.open_table(RECORDS)?;
            tx.open_multimap_table(RUN_RECORDS)?;
            tx.open_table(RUNS)?;
            tx.open_table(JOB_RUNS)?;
            tx.open_table(RUNNING)?;
            tx.open_table(PAYLOADS)?;
            tx.open_table(ROLLUPS)?;
            tx.commit()?;
            let _ = found;
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
        let tx = self.db.begin_write()?;
        let mut marked = Vec::new();
        {
            let mut running = tx.open_table(RUNNING)?;
            let mut runs = tx.open_table(RUNS)?;
            let run_records = tx.open_multimap_table(RUN_RECORDS)?;
            let records = tx.open_table(RECORDS)?;
            let ids: Vec<String> = running
                .iter()?
                .filter_map(|e| e.ok().map(|(k, _)| k.value().to_string()))
                .collect();
            for id in ids {
                running.remove(id.as_str())?;
                let Some(mut summary) = runs
                    .get(id.as_str())?
                    .and_then(|v| serde_json::from_slice::<RunSummary>(v.value()).ok())
                else {
                    continue;
                };
                let mut recs = Vec::new();
                for k in run_records.get(id.as_str())? {
                    let key = k?.value();
                    if let Some(v) = records.get(key)?
                        && let Some(r) = decode(key, v.value(), None)
                    {
                        recs.push(r);
                    }
                }
                let ended = recs
                    .iter()
                    .map(|r| r.timestamp_ms)
                    .max()
                    .unwrap_or(summary.started_ms);
                crate::runner::summarize_into(&mut summary, &recs);
                summary.status = RunStatus::Interrupted;
                summary.ended_ms = Some(ended);
                summary.message = Some(
                    "cut off: evald stopped before the run ended (marked at the next start)".into(),
                );
                let bytes = serde_json::to_vec(&summary).map_err(|e| StoreError(e.to_string()))?;
                runs.insert(id.as_str(), bytes.as_slice())?;
                marked.push(id);
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
        let tx = self.db.begin_read()?;
        let idx = tx.open_multimap_table(RUN_RECORDS)?;
        let records = tx.open_table(RECORDS)?;
        let payloads = tx.open_table(PAYLOADS)?;
        let mut reader = PayloadReader::new(&payloads);
        let mut out = Vec::new();
        for k in idx.get(run_id)?.take(limit) {
            let key = k?.value();
            if let Some(v) = records.get(key)?
                && let Some(r) = decode(key, v.value(), Some(&mut reader))
            {
                out.push(r);
            }
        }
        out.sort_by_key(|r| (r.timestamp_ms, r.id));
        Ok(out)
    }

    /// Records newest first that pass the filter, at most `filter.limit` (default 20).
    pub fn recent_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, StoreError> {
        let limit = filter.limit.unwrap_or(20) as usize;
        let mut out = Vec::new();
        self.scan(filter, true, &mut |r| {
            out.push(r);
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Streams records that pass the filter, oldest first, from one read snapshot; stops when
    /// `sink` returns false or `filter.limit` is reached.
    pub fn export(
        &self,
        filter: &RecordFilter,
        sink: &mut dyn FnMut(Record) -> bool,
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
        self.export(filter, &mut |r| match w.write(&r) {
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

    fn scan(
        &self,
        filter: &RecordFilter,
        newest_first: bool,
        sink: &mut dyn FnMut(Record) -> bool,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_read()?;
        let records = tx.open_table(RECORDS)?;
        let payloads = tx.open_table(PAYLOADS)?;
        let lo = (filter.since_ms.unwrap_or(0).max(0) as u64, 0u64);
        let hi = (
            filter.until_ms.map(|u| u.max(0) as u64).unwrap_or(u64::MAX),
            0u64,
        );
        let range = records.range(lo..hi)?;
        let mut reader = PayloadReader::new(&payloads);
        let mut each = |e: RangeItem| -> Result<bool, StoreError> {
            let (k, v) = e?;
            let Some(r) = decode(k.value(), v.value(), Some(&mut reader)) else {
                return Ok(true);
            };
            if !filter.matches(&r) {
                return Ok(true);
            }
            Ok(sink(r))
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

    /// Hourly rollups with an hour in `[from_ms, to_ms)`.
    pub fn rollups(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(RollupKey, Rollup)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ROLLUPS)?;
        let mut out = Vec::new();
        let lo = rollup::hour_of(from_ms.max(0)) as u64;
        for e in t.range((lo, "")..(to_ms.max(0) as u64, ""))? {
            let (k, v) = e?;
            let (hour, key) = k.value();
            if let (Some(key), Some(r)) = (
                RollupKey::parse(hour as i64, key),
                Rollup::decode(v.value()),
            ) {
                out.push((key, r));
            }
        }
        Ok(out)
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
        let rollups = tx.open_table(ROLLUPS)?;
        let mut report = PruneReport {
            records: records
                .range(..(cutoffs.records_before_ms.max(0) as u64, 0))?
                .count() as u64,
            ..PruneReport::default()
        };
        report.runs = runs
            .range(..run_id_floor(cutoffs.runs_before_ms).as_str())?
            .count() as u64;
        report.rollups = rollups
            .range(..(cutoffs.runs_before_ms.max(0) as u64, ""))?
            .count() as u64;
        Ok(report)
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
    /// Run summaries started, and rollup hours, before this go.
    pub runs_before_ms: i64,
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

/// Turns a stored key and value back into a record; `None` for a value this binary cannot read.
/// Reads prompt payloads within one read transaction, parsing each distinct one once: an
/// export of a million records of a few hundred prompts parses a few hundred payloads.
struct PayloadReader<'a> {
    table: &'a redb::ReadOnlyTable<u128, (u64, &'static [u8])>,
    parsed: std::collections::HashMap<u128, Vec<Message>>,
}

impl<'a> PayloadReader<'a> {
    fn new(table: &'a redb::ReadOnlyTable<u128, (u64, &'static [u8])>) -> Self {
        PayloadReader {
            table,
            parsed: std::collections::HashMap::new(),
        }
    }

    fn get(&mut self, hash: u128) -> Vec<Message> {
        if let Some(m) = self.parsed.get(&hash) {
            return m.clone();
        }
        let m: Vec<Message> = self
            .table
            .get(hash)
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice(v.value().1).ok())
            .unwrap_or_default();
        if self.parsed.len() >= 4096 {
            self.parsed.clear();
        }
        self.parsed.insert(hash, m.clone());
        m
    }
}

fn decode(key: (u64, u64), bytes: &[u8], payloads: Option<&mut PayloadReader>) -> Option<Record> {
    let (&version, body) = bytes.split_first()?;
    if version != RECORD_V1 {
        return None;
    }
    let s: StoredRecord = postcard::from_bytes(body).ok()?;
    let messages: Vec<Message> = payloads.map(|p| p.get(s.messages)).unwrap_or_default();
    Some(Record {
        id: key.1,
        timestamp_ms: key.0 as i64,
        model: s.model,
        provider: s.provider,
        messages,
        temperature: s.temperature,
        max_tokens: s.max_tokens,
        top_p: s.top_p,
        response: s.response,
        response_time_ms: s.response_time_ms,
        prompt_tokens: s.prompt_tokens,
        completion_tokens: s.completion_tokens,
        total_tokens: s.total_tokens,
        finish_reason: s.finish_reason,
        error: s.error,
        metadata: serde_json::from_str::<Metadata>(&s.metadata).unwrap_or_default(),
        job: s.job,
        run_id: s.run_id,
        case_id: s.case_id,
        endpoint: s.endpoint,
        ttft_ms: s.ttft_ms,
        scores: serde_json::from_str::<Vec<Score>>(&s.scores).unwrap_or_default(),
    })
}

/// What the writer thread is asked to do.
enum Command {
    Record(Box<Record>),
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
        if self.tx.send(Command::Record(Box::new(r))).await.is_err() {
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
    let mut batch = Vec::new();
    let mut cache = PayloadCache::default();
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
            if let Err(e) = commit(db, &mut next_id, &mut cache, writes) {
                tracing::error!(error = %e, "store commit failed; the batch's records were not stored");
                if let Ok(n) = read_next_id(db) {
                    next_id = n;
                }
                if !summaries.is_empty()
                    && let Err(e) = commit(db, &mut next_id, &mut cache, summaries)
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

/// Prompt payloads this writer stored, so a busy run does not serialize and hash the same
/// messages for every record. Bounded: cleared when it holds too many.
#[derive(Default)]
struct PayloadCache(std::collections::HashMap<Vec<Message>, (u128, Arc<[u8]>)>);

impl PayloadCache {
    const SIZE: usize = 4096;

    fn get(&mut self, messages: &[Message]) -> Result<(u128, Arc<[u8]>), StoreError> {
        if let Some((h, j)) = self.0.get(messages) {
            return Ok((*h, j.clone()));
        }
        let json: Arc<[u8]> = serde_json::to_vec(messages)
            .map_err(|e| StoreError(e.to_string()))?
            .into();
        let h = xxhash_rust::xxh3::xxh3_128(&json);
        if self.0.len() >= Self::SIZE {
            self.0.clear();
        }
        self.0.insert(messages.to_vec(), (h, json.clone()));
        Ok((h, json))
    }
}

fn commit(
    db: &Database,
    next_id: &mut u64,
    cache: &mut PayloadCache,
    writes: Vec<Command>,
) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    let mut id = *next_id;
    {
        let mut records = tx.open_table(RECORDS)?;
        let mut run_records = tx.open_multimap_table(RUN_RECORDS)?;
        let mut runs = tx.open_table(RUNS)?;
        let mut job_runs = tx.open_table(JOB_RUNS)?;
        let mut running = tx.open_table(RUNNING)?;
        let mut payloads = tx.open_table(PAYLOADS)?;
        let mut rollups = tx.open_table(ROLLUPS)?;
        let mut buf = Vec::with_capacity(2048);
        let mut pending = rollup::Pending::default();
        // References added per payload in this batch: one read-modify-write per payload, not
        // per record.
        let mut refs: Vec<(u128, u64, Arc<[u8]>)> = Vec::new();
        for w in writes {
            match w {
                Command::Record(r) => {
                    let key = (r.timestamp_ms.max(0) as u64, id);
                    id += 1;
                    let (hash, json) = cache.get(&r.messages)?;
                    match refs.iter_mut().find(|e| e.0 == hash) {
                        Some(e) => e.1 += 1,
                        None => refs.push((hash, 1, json)),
                    }
                    pending.add(&r);
                    let s = StoredRecord {
                        model: r.model,
                        provider: r.provider,
                        messages: hash,
                        temperature: r.temperature,
                        max_tokens: r.max_tokens,
                        top_p: r.top_p,
                        response: r.response,
                        response_time_ms: r.response_time_ms,
                        prompt_tokens: r.prompt_tokens,
                        completion_tokens: r.completion_tokens,
                        total_tokens: r.total_tokens,
                        finish_reason: r.finish_reason,
                        error: r.error,
                        metadata: serde_json::to_string(&r.metadata).unwrap_or_default(),
                        job: r.job,
                        run_id: r.run_id,
                        case_id: r.case_id,
                        endpoint: r.endpoint,
                        ttft_ms: r.ttft_ms,
                        scores: serde_json::to_string(&r.scores).unwrap_or_default(),
                    };
                    buf.clear();
                    buf.push(RECORD_V1);
                    let body = postcard::to_extend(&s, std::mem::take(&mut buf))
                        .map_err(|e| StoreError(e.to_string()))?;
                    records.insert(key, body.as_slice())?;
                    run_records.insert(s.run_id.as_str(), key)?;
                    buf = body;
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
        for (hash, n, json) in refs {
            let have = payloads.get(hash)?.map(|v| v.value().0).unwrap_or(0);
            payloads.insert(hash, (have + n, &*json))?;
        }
        pending.merge_into(&mut rollups)?;
        let mut meta = tx.open_table(META)?;
        meta.insert("next_record_id", id)?;
    }
    tx.commit()?;
    *next_id = id;
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
        let mut run_records = tx.open_multimap_table(RUN_RECORDS)?;
        let mut payloads = tx.open_table(PAYLOADS)?;
        let doomed: Vec<((u64, u64), String, u128)> = records
            .range(..rec_hi)?
            .take(batch)
            .filter_map(|e| e.ok())
            .map(|(k, v)| {
                let key = k.value();
                let (run, hash) = v
                    .value()
                    .split_first()
                    .and_then(|(_, b)| postcard::from_bytes::<StoredRecord>(b).ok())
                    .map(|s| (s.run_id, s.messages))
                    .unwrap_or_default();
                (key, run, hash)
            })
            .collect();
        // References dropped per payload: one read-modify-write per payload, not per record.
        let mut dropped: std::collections::HashMap<u128, u64> = std::collections::HashMap::new();
        for (key, run, hash) in &doomed {
            records.remove(*key)?;
            run_records.remove(run.as_str(), *key)?;
            *dropped.entry(*hash).or_default() += 1;
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
        doomed.len()
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
    let m = {
        let mut rollups = tx.open_table(ROLLUPS)?;
        let doomed: Vec<(u64, String)> = rollups
            .range(..(cutoffs.runs_before_ms.max(0) as u64, ""))?
            .take(batch)
            .filter_map(|e| e.ok())
            .map(|(k, _)| {
                let (h, s) = k.value();
                (h, s.to_string())
            })
            .collect();
        for (h, s) in &doomed {
            rollups.remove((*h, s.as_str()))?;
        }
        doomed.len()
    };
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
