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

mod backup;
mod coalesce;
mod codec;
mod inbox;
mod interrupted;
mod migrate;
mod retention;
pub mod rollup;
mod sample;
mod tables;
mod watch;
mod writer;

pub use backup::BackupReport;
pub use codec::{Payload, RecordBatch, Records};
pub use retention::{PRUNE_BATCH, PruneCutoffs, PruneReport, cutoffs};
use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use tables::SCHEMA_VERSION;
pub use writer::Writer;

use evald_model::{Record, RecordFilter, RowRef, RunStatus, RunSummary};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use codec::*;
use inbox::Inbox;
use retention::run_id_floor;
use rollup::{GroupName, Sample, Totals};
use tables::*;
use writer::*;

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

/// A read or write of the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// redb failed (disk full, an I/O error, corruption).
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    /// A record or run summary could not be encoded.
    #[error("store: encoding: {0}")]
    Encode(String),
    /// A file of the store's could not be made or opened (a backup's, a reopened store's).
    #[error("store: {0}")]
    File(String),
    /// Writing an export's bytes failed (the client went away, the disk is full).
    #[error("writing the export: {0}")]
    Sink(#[from] std::io::Error),
    /// The writer thread is gone (the store is closing).
    #[error("the store's writer has stopped")]
    WriterGone,
    /// The file is being reopened after an I/O error, or compacted; try again shortly.
    #[error("the store is being reopened; try again in a moment")]
    Reopening,
    /// A blocking store task panicked or was cancelled.
    #[error("a store task failed: {0}")]
    Task(String),
}

macro_rules! impl_from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
impl_from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::CursorError
);

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Encode(e.to_string())
    }
}

impl From<postcard::Error> for StoreError {
    fn from(e: postcard::Error) -> Self {
        StoreError::Encode(e.to_string())
    }
}

/// How the store commits and how large it may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// A record is committed within this time of reaching the writer (`commit_interval`).
    pub commit_interval: std::time::Duration,
    /// The file's cap (`retention.max_db_size`): the writer prunes and compacts to stay under.
    pub max_db_size: Option<u64>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            commit_interval: crate::config::DEFAULT_COMMIT_INTERVAL,
            max_db_size: None,
        }
    }
}

/// The store: cheap to clone, shared by the writer, the runner and the page.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

struct Shared {
    /// The open database. Empty only while the writer reopens it after an I/O error (redb
    /// fails every later call until it is closed and opened again) or compacts it.
    slot: std::sync::RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    options: StoreOptions,
    /// Whether writes work now, and how many have failed.
    health: Health,
}

/// Whether the store can write: what the writer last met, for `/healthz` and the metrics.
#[derive(Debug, Default)]
struct Health {
    failure: std::sync::Mutex<Option<String>>,
    write_errors: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish()
    }
}

/// Opens the redb file with the store's settings.
pub(super) fn open_db(path: &Path) -> Result<Database, OpenError> {
    // redb's page cache defaults to 1 GiB, which a full export would fill: a modest cache
    // keeps the daemon's memory flat (the OS page cache still holds the hot file).
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(|_| {
            // Only a file last written without quick repair (or by an older evald) walks the
            // whole file here; ours are repaired from the saved allocator state in milliseconds.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| tracing::warn!("the store was not closed cleanly; repairing it"));
        })
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse(path.to_path_buf()),
            other => OpenError::Db {
                path: path.to_path_buf(),
                message: other.to_string(),
            },
        })
}

/// Begins a write transaction with quick repair on: each commit saves the allocator state
/// (one more fsync), so the open after a crash takes milliseconds instead of walking the file.
pub(super) fn begin_write(db: &Database) -> Result<redb::WriteTransaction, StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_quick_repair(true);
    Ok(tx)
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
        Store::open_with(path, StoreOptions::default())
    }

    /// The store of a config, with its commit interval and size cap.
    pub fn open_configured(config: &crate::config::Config) -> Result<Store, OpenError> {
        Store::open_with(
            &config.db_path(),
            StoreOptions {
                commit_interval: config.commit_interval,
                max_db_size: config.retention.max_db_size,
            },
        )
    }

    /// [`Store::open`] with a commit interval and size cap.
    pub fn open_with(path: &Path, options: StoreOptions) -> Result<Store, OpenError> {
        create_private(path).map_err(|source| OpenError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        let db = open_db(path)?;
        Store::from_db(db, path, options)
    }

    fn from_db(db: Database, path: &Path, options: StoreOptions) -> Result<Store, OpenError> {
        let store = Store {
            shared: Arc::new(Shared {
                slot: std::sync::RwLock::new(Some(Arc::new(db))),
                path: path.to_path_buf(),
                options,
                health: Health::default(),
            }),
        };
        store.migrate()?;
        Ok(store)
    }

    /// A store in memory (redb's in-memory backend), for tests where a file adds nothing.
    #[cfg(test)]
    pub(crate) fn in_memory() -> Store {
        #[allow(clippy::expect_used)]
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .expect("an in-memory database opens");
        #[allow(clippy::expect_used)]
        Store::from_db(db, Path::new("<memory>"), StoreOptions::default())
            .expect("a new store migrates")
    }

    /// The open database, for one operation: hold it no longer than that, since the writer
    /// waits for every holder before it reopens the file after an I/O error.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self
            .shared
            .slot
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.clone().ok_or(StoreError::Reopening)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> StoreOptions {
        self.shared.options
    }

    /// `Ok` while the store can write; the reason it cannot otherwise (for `/healthz`).
    pub fn health(&self) -> Result<(), String> {
        match &*self
            .shared
            .health
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            None => Ok(()),
            Some(why) => Err(why.clone()),
        }
    }

    /// Commits that failed (or were refused while the disk stayed full) since the start.
    pub fn write_errors(&self) -> u64 {
        self.shared
            .health
            .write_errors
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(super) fn set_failure(&self, why: Option<String>) {
        *self
            .shared
            .health
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    pub(super) fn count_write_error(&self) {
        self.shared
            .health
            .write_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the writer thread. Every write goes through the returned handle.
    pub fn writer(&self) -> Writer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let slots = Arc::new(tokio::sync::Semaphore::new(QUEUE));
        let awaited = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let inbox = Inbox {
            rx,
            slots: slots.clone(),
            awaited: awaited.clone(),
        };
        let store = self.clone();
        let handle = std::thread::Builder::new()
            .name("evald-writer".into())
            .spawn(move || writer_loop(&store, inbox));
        Writer {
            tx,
            slots,
            awaited,
            thread: Arc::new(std::sync::Mutex::new(handle.ok())),
        }
    }

    /// One run.
    pub fn run(&self, id: &str) -> Result<Option<RunSummary>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let runs = tx.open_table(RUNS)?;
        Ok(runs
            .get(id)?
            .and_then(|v| serde_json::from_slice(v.value()).ok()))
    }

    /// Runs newest first, of one job or of all.
    pub fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, StoreError> {
        let tx = self.db()?.begin_read()?;
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
        let io = StoreError::Sink;
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
    /// the span of keys its records were stored under (none: no records); the filter is tried before a row's prompt and
    /// scores are looked up; each distinct prompt payload is read once.
    fn scan(
        &self,
        filter: &RecordFilter,
        newest_first: bool,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), StoreError> {
        let mut from = filter.since_ms.unwrap_or(0).max(0) as u64;
        let mut until = filter.until_ms.map_or(u64::MAX, |u| u.max(0) as u64);
        let tx = self.db()?.begin_read()?;
        if let Some(id) = &filter.run_id {
            // The run's records lie between the lowest and highest keys the writer stored for
            // it, whatever the clock did meanwhile; a run without a span has no records.
            match tx.open_table(RUN_SPANS)?.get(id.as_str())? {
                Some(span) => {
                    let (lo, hi) = span.value();
                    from = from.max(lo);
                    until = until.min(hi.saturating_add(1));
                }
                None => return Ok(()),
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
        let tx = self.db()?.begin_read()?;
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
        let tx = self.db()?.begin_read()?;
        Ok(tx.open_table(RECORDS)?.len()?)
    }

    /// The timestamp of the `n`-th oldest record (0-based), if there are that many.
    pub fn nth_record_ts(&self, n: u64) -> Result<Option<i64>, StoreError> {
        let tx = self.db()?.begin_read()?;
        let records = tx.open_table(RECORDS)?;
        match records.iter()?.nth(n as usize) {
            Some(e) => Ok(Some(e?.0.value().0 as i64)),
            None => Ok(None),
        }
    }

    /// Bytes in pages the store uses now (the file may be larger: freed pages are reused, not
    /// returned). Opens a write transaction, so it waits for a commit in progress.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let tx = begin_write(&*self.db()?)?;
        let stats = tx.stats()?;
        let live = stats.allocated_pages() * stats.page_size() as u64;
        tx.abort()?;
        Ok(live)
    }

    /// The file's size on disk, bytes.
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

/// Makes a run id: the start time in hex (so ids sort by start) and a random tail.
pub fn new_run_id(started_ms: i64) -> String {
    format!(
        "{}{:05x}",
        run_id_floor(started_ms),
        rand::random::<u32>() & 0xfffff
    )
}

#[cfg(test)]
mod durability_tests;

/// A record for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) use tests::record as test_record;

#[cfg(test)]
mod tests {
    use evald_model::{JobKind, Message, Metadata, Score, Trigger};

    use super::*;

    pub(crate) fn record(run: &str, ts: i64, case: &str) -> Record {
        Record {
            id: 0,
            timestamp_ms: ts,
            model: "m".into(),
            provider: "p".into(),
            messages: vec![Message {
                role: "user".into(),
                content: format!("prompt of {case} ünï \"q\""),
            }],
            temperature: Some(0.5),
            max_tokens: Some(64),
            top_p: None,
            response: Some(format!("answer to {case}")),
            response_time_ms: Some(12.5),
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            total_tokens: Some(7),
            finish_reason: Some("stop".into()),
            error: None,
            metadata: Metadata {
                attempts: 1,
                ..Metadata::default()
            },
            job: "j".into(),
            run_id: run.into(),
            case_id: case.into(),
            endpoint: "e".into(),
            ttft_ms: None,
            scores: vec![Score {
                name: "contains".into(),
                value: Some(1.0),
                passed: Some(true),
                weight: 1.0,
                error: None,
                note: Some("found".into()),
            }],
            served_model: None,
            system_fingerprint: None,
            cost_usd: None,
            cost_source: None,
        }
    }

    /// What goes through the writer comes back field for field, ids assigned in order, and
    /// a run's records are those of that run only, even when runs interleave.
    #[tokio::test]
    async fn records_round_trip_and_a_run_has_only_its_own() {
        let store = Store::in_memory();
        let w = store.writer();
        let t0 = 1_764_000_000_000;
        for i in 0..6 {
            let run = if i % 2 == 0 { "run-a" } else { "run-b" };
            w.record(record(run, t0 + i, &format!("c{i}"))).await;
        }
        w.flush().await;
        let a = store.run_records("run-a", 100).unwrap();
        assert_eq!(
            a.iter().map(|r| r.case_id.as_str()).collect::<Vec<_>>(),
            ["c0", "c2", "c4"]
        );
        let mut want = record("run-a", t0 + 2, "c2");
        want.id = a[1].id;
        assert_eq!(a[1], want);
        assert!(a[0].id < a[1].id && a[1].id < a[2].id, "ids increase");
        assert_eq!(store.record_count().unwrap(), 6);
        w.close().await;
    }

    /// A batch larger than the queue goes over in parts and whole: every record stored once,
    /// ids in the batch's order, each run's records its own (runs and groups interleave, so
    /// the batch's shared names change back and forth). Once the writer has closed, a batch
    /// is refused at once rather than waiting for room that never comes.
    #[tokio::test]
    async fn a_batch_larger_than_the_queue_is_stored_whole_and_a_closed_writer_refuses() {
        let store = Store::in_memory();
        let w = store.writer();
        let t0 = 1_764_000_000_000;
        let n = QUEUE + 100;
        let mut batch = RecordBatch::default();
        for i in 0..n {
            let run = ["run-a", "run-b", "run-b"][i % 3];
            let mut r = record(run, t0 + i as i64, &format!("c{i}"));
            r.model = if i.is_multiple_of(5) { "m2" } else { "m" }.into();
            batch.push(&r, None);
        }
        assert_eq!(batch.len(), n);
        w.records(&mut batch).await;
        assert!(batch.is_empty());
        w.flush().await;
        assert_eq!(store.record_count().unwrap(), n as u64);
        let a = store.run_records("run-a", n).unwrap();
        assert_eq!(a.len(), n.div_ceil(3));
        assert!(a.iter().all(|r| r.run_id == "run-a"));
        assert!(a.windows(2).all(|p| p[0].id < p[1].id), "ids in order");
        assert_eq!(a[1].case_id, "c3");
        assert_eq!(a[0].model, "m2");
        // The last of run-a went over in the batch's second part, its value cut from the rest.
        let last = a.last().unwrap();
        let i = (n - 1) / 3 * 3;
        let mut want = record("run-a", t0 + i as i64, &format!("c{i}"));
        want.model = if i.is_multiple_of(5) { "m2" } else { "m" }.into();
        want.id = last.id;
        assert!(i >= QUEUE);
        assert_eq!(*last, want);
        assert_eq!(store.run_records("run-b", n).unwrap().len(), n - a.len());
        let w2 = w.clone();
        w.close().await;
        // More than the queue holds: without the writer to give slots back, a sender that
        // waited for them would wait forever (the timeout only turns such a hang into a
        // failure).
        for i in 0..=QUEUE {
            batch.push(&record("run-c", t0 + (n + i) as i64, "late"), None);
        }
        let refused =
            tokio::time::timeout(std::time::Duration::from_secs(30), w2.records(&mut batch));
        assert!(refused.await.is_ok(), "a closed writer's sender waited");
        assert_eq!(store.record_count().unwrap(), n as u64);
    }

    /// A flush is committed at once, not held for the group-commit window: after a busy
    /// commit the writer waits up to half the commit interval for more records (here 300 s),
    /// unless someone waits on a flush. Without that, the second flush below would wait the
    /// 300 s out and the 60 s timeout (a hang guard, far above the writer's 50 ms look at its
    /// queue) would fail the test.
    #[tokio::test]
    async fn a_flush_ends_the_group_commit_window() {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            commit_interval: std::time::Duration::from_secs(600),
            ..StoreOptions::default()
        };
        let store = Store::open_with(&dir.path().join("evald.redb"), options).unwrap();
        let w = store.writer();
        let t0 = 1_764_000_000_000;
        // A busy commit first (more than `BUSY` records), so the next record waits for company.
        let mut batch = RecordBatch::default();
        for i in 0..200 {
            batch.push(&record("run-a", t0 + i, "c"), None);
        }
        w.records(&mut batch).await;
        w.flush().await;
        w.record(record("run-a", t0 + 200, "late")).await;
        let flushed = tokio::time::timeout(std::time::Duration::from_secs(60), w.flush());
        assert!(flushed.await.is_ok(), "the flush waited out the window");
        assert_eq!(store.record_count().unwrap(), 201);
        w.close().await;
    }

    /// A flush given up before it reached the queue (its caller dropped it) is counted out
    /// again, or the writer would end every later window at once; one that reached the queue
    /// stays counted until the writer takes it.
    #[test]
    fn a_flush_given_up_before_the_queue_is_not_left_counted() {
        use futures_util::FutureExt;
        use std::sync::atomic::Ordering;
        let (tx, mut rx) = mpsc::channel(1);
        tx.try_send(Command::Close)
            .unwrap_or_else(|_| panic!("a free slot"));
        let w = Writer {
            tx,
            slots: Arc::new(tokio::sync::Semaphore::new(QUEUE)),
            awaited: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            thread: Arc::new(std::sync::Mutex::new(None)),
        };
        // The queue is full: the flush waits to be queued, and is dropped there.
        assert!(w.flush().now_or_never().is_none());
        assert_eq!(w.awaited.load(Ordering::Acquire), 0);
        // Room again: the flush is queued, and waits for the commit when dropped.
        assert!(matches!(rx.try_recv(), Ok(Command::Close)));
        assert!(w.flush().now_or_never().is_none());
        assert_eq!(w.awaited.load(Ordering::Acquire), 1);
        assert!(matches!(rx.try_recv(), Ok(Command::Flush(_))));
    }

    /// A run cut off by a crash is summarised from the records it committed.
    #[tokio::test]
    async fn an_interrupted_run_counts_its_committed_records() {
        let store = Store::in_memory();
        let w = store.writer();
        let t0 = 1_764_000_000_000;
        w.run(RunSummary::start(
            "0019ac8f1a2b0-x".into(),
            "j",
            JobKind::Compare,
            Trigger::Schedule,
            t0,
        ))
        .await;
        for i in 0..3 {
            let mut r = record("0019ac8f1a2b0-x", t0 + 10 + i, &format!("c{i}"));
            if i == 2 {
                r.error = Some("HTTP 500".into());
            }
            w.record(r).await;
        }
        w.close().await;
        assert_eq!(store.mark_interrupted().unwrap(), ["0019ac8f1a2b0-x"]);
        let s = store.run("0019ac8f1a2b0-x").unwrap().unwrap();
        assert_eq!(s.status, RunStatus::Interrupted);
        assert_eq!((s.requests, s.errors), (3, 1));
        assert_eq!(s.ended_ms, Some(t0 + 12));
        assert_eq!(s.targets.len(), 1);
        assert_eq!(s.targets[0].scorer_means.get("contains"), Some(&1.0));
        assert!(store.mark_interrupted().unwrap().is_empty(), "marked once");
    }
}
