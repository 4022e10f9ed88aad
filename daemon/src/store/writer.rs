//! The writer thread: the one place records, runs and prunes are written. It commits whatever
//! queued while the previous commit was syncing (group commit).

use super::coalesce::Coalesce;
use super::inbox::{BATCH, BUSY, Windows};
use super::retention::PruneJob;
use super::tables::*;
use super::*;

/// What the writer thread is asked to do.
pub(super) enum Command {
    /// Request records: one, or a [`RecordBatch`]'s.
    Records(Records),
    Run(Box<RunSummary>),
    Event(Box<evald_model::Event>),
    Alert(Box<evald_model::AlertStatus>),
    /// Pins a run as a job's baseline (`None` unpins).
    Pin(String, Option<String>),
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
    pub(super) tx: mpsc::Sender<Command>,
    /// One permit per record that may be queued: a sender takes one per record before it
    /// sends, the writer gives them back as it takes the records, so at most [`QUEUE`] records
    /// wait in the queue however they are batched. Closed when the writer thread ends.
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    /// Flushes, prunes and closes sent and not yet taken: someone waits on each, so the writer
    /// commits at once rather than wait out its group-commit window ([`Inbox::awaited`]).
    pub(super) awaited: Arc<std::sync::atomic::AtomicUsize>,
    pub(super) thread: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
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
        let mut batch = RecordBatch::default();
        batch.push(&r, None);
        self.records(&mut batch).await;
    }

    /// Queues the batch's records together and empties it. Waits while [`QUEUE`] records are
    /// queued, which is the back-pressure that keeps memory bounded.
    pub async fn records(&self, batch: &mut RecordBatch) {
        self.send(batch.take()).await;
    }

    /// [`Writer::records`] for records already taken from their batch.
    pub async fn send(&self, mut rest: Records) {
        while !rest.list.is_empty() {
            let part = rest.split_front(QUEUE);
            let n = part.list.len();
            let sent = match self.slots.acquire_many(n as u32).await {
                Ok(permits) => {
                    permits.forget();
                    self.tx.send(Command::Records(part)).await.is_ok()
                }
                Err(_) => false,
            };
            if !sent {
                tracing::error!(
                    records = n,
                    "store writer is gone; request records were lost"
                );
            }
        }
    }

    /// Queues a run summary (insert or replace).
    pub async fn run(&self, s: RunSummary) {
        if self.tx.send(Command::Run(Box::new(s))).await.is_err() {
            tracing::error!("store writer is gone; a run summary was lost");
        }
    }

    /// Queues an event.
    pub async fn event(&self, e: evald_model::Event) {
        if self.tx.send(Command::Event(Box::new(e))).await.is_err() {
            tracing::error!("store writer is gone; an event was lost");
        }
    }

    /// Queues an alert's state (insert or replace).
    pub async fn alert(&self, a: evald_model::AlertStatus) {
        if self.tx.send(Command::Alert(Box::new(a))).await.is_err() {
            tracing::error!("store writer is gone; an alert state was lost");
        }
    }

    /// Pins `run` as `job`'s baseline, or unpins with `None`; committed when this returns.
    pub async fn pin(&self, job: &str, run: Option<&str>) {
        if self
            .tx
            .send(Command::Pin(job.to_string(), run.map(String::from)))
            .await
            .is_err()
        {
            tracing::error!("store writer is gone; a pin was lost");
        }
        self.flush().await;
    }

    /// Waits until everything queued before this call is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send_awaited(Command::Flush(tx)).await {
            let _ = rx.await;
        }
    }

    /// Sends a command someone waits on (a flush, prune or close), counted so the writer ends
    /// its group-commit window for it; whether the writer was there to take it. A send given
    /// up half-way (its caller dropped) is counted out again.
    async fn send_awaited(&self, c: Command) -> bool {
        use std::sync::atomic::{AtomicUsize, Ordering};
        /// Counts a command in; counts it out when dropped unless it reached the queue.
        struct Counted<'a>(&'a AtomicUsize, bool);
        impl Drop for Counted<'_> {
            fn drop(&mut self) {
                if !self.1 {
                    self.0.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
        debug_assert!(c.awaited());
        self.awaited.fetch_add(1, Ordering::AcqRel);
        let mut counted = Counted(&self.awaited, false);
        counted.1 = self.tx.send(c).await.is_ok();
        counted.1
    }

    /// Prunes in batches of at most `batch` deletions per transaction, so writers queued behind
    /// it wait for one small commit at most.
    pub async fn prune(
        &self,
        cutoffs: PruneCutoffs,
        batch: usize,
    ) -> Result<PruneReport, StoreError> {
        let (tx, rx) = oneshot::channel();
        if !self.send_awaited(Command::Prune(cutoffs, batch, tx)).await {
            return Err(StoreError::WriterGone);
        }
        rx.await.map_err(|_| StoreError::WriterGone)?
    }

    /// Commits what is queued and stops the writer thread; later writes are lost (and logged).
    pub async fn close(self) {
        self.send_awaited(Command::Close).await;
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}
/// Small writes (run summaries, events, alert states, pins) held while the store cannot write,
/// to commit when it can again; beyond this many, the oldest go.
const HELD: usize = 10_000;

/// While the store cannot write: since when, what was dropped, and when to try again.
struct Outage {
    /// Room for the file to grow at the last failure (None: unknown).
    free_at_failure: Option<u64>,
    /// Whether the last failure was the file unable to grow (a full disk or a file size limit:
    /// retry when room returns) or another error (retry every few seconds).
    no_space: bool,
    last_try: std::time::Instant,
    dropped: u64,
}

impl Outage {
    /// Whether to try writing again now: the disk has room again, or a while has passed.
    fn ready(&self, store: &Store) -> bool {
        let waited = self.last_try.elapsed();
        if !self.no_space {
            return waited >= std::time::Duration::from_secs(2);
        }
        let free = room(store);
        if waited >= std::time::Duration::from_secs(30) && free.is_none_or(|f| f >= 1 << 20) {
            return true;
        }
        match (free, self.free_at_failure) {
            // A few MiB more than there was when it failed: worth one commit.
            (Some(now), Some(then)) => {
                waited >= std::time::Duration::from_millis(200) && now >= then + 4 * 1024 * 1024
            }
            _ => waited >= std::time::Duration::from_secs(2),
        }
    }
}

/// How far the store's file may grow: the free bytes an unprivileged writer has on its
/// filesystem, or less if the process's file size limit (RLIMIT_FSIZE) is nearer.
///
/// Both count: a small commit can succeed inside the file's free pages while the file cannot
/// grow, so an outage ends on room returning, not on the first commit that happens to fit.
fn room(store: &Store) -> Option<u64> {
    let path = store.path();
    let dir = path.parent().unwrap_or(path);
    let free = rustix::fs::statvfs(dir)
        .ok()
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    let limit = rustix::process::getrlimit(rustix::process::Resource::Fsize)
        .current
        .map(|max| max.saturating_sub(store.file_bytes()));
    match (free, limit) {
        (Some(f), Some(l)) => Some(f.min(l)),
        (f, l) => f.or(l),
    }
}

/// Whether a failed commit was the file unable to grow: the disk out of space, a quota, or the
/// file size limit (EFBIG, which the daemon gets instead of SIGXFSZ). redb passes the I/O
/// error through (every redb error type turns an I/O failure into `Error::Io`).
fn is_no_space(e: &StoreError) -> bool {
    use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
    matches!(
        e,
        StoreError::Db(redb::Error::Io(io))
            if matches!(io.kind(), StorageFull | QuotaExceeded | FileTooLarge)
    )
}

/// The writer's state that a failed commit can leave stale: reloaded after one.
struct Ids {
    next_id: u64,
    groups: Groups,
}

impl Ids {
    fn load(store: &Store) -> Result<Ids, StoreError> {
        let db = store.db()?;
        Ok(Ids {
            next_id: read_next_id(&db)?,
            groups: Groups::load(&db)?,
        })
    }
}

/// Commits `writes`; on failure, notes the outage, reopens the file (redb refuses every call
/// after an I/O error until then) and keeps the small writes for later.
fn commit_or_hold(
    store: &Store,
    ids: &mut Ids,
    writes: Vec<Command>,
    held: &mut std::collections::VecDeque<Command>,
    outage: &mut Option<Outage>,
) {
    let small: Vec<Command> = writes.iter().filter_map(Command::small_clone).collect();
    let records: usize = writes.iter().map(Command::records).sum();
    let result = store
        .db()
        .and_then(|db| commit(&db, &mut ids.next_id, &mut ids.groups, writes));
    match result {
        Ok(()) => {
            if let Some(o) = outage.take() {
                store.set_failure(None);
                tracing::info!(
                    dropped_records = o.dropped,
                    "the store writes again; records answered while it could not were not stored"
                );
            }
        }
        Err(e) => {
            store.count_write_error();
            let why = format!("cannot write {}: {e}", store.path().display());
            if outage.is_none() {
                tracing::error!(
                    "{why}; records are not stored until it can write again (retried by itself)"
                );
            } else {
                tracing::debug!("{why}");
            }
            store.set_failure(Some(why));
            let no_space = is_no_space(&e);
            let o = outage.get_or_insert(Outage {
                free_at_failure: None,
                no_space,
                last_try: std::time::Instant::now(),
                dropped: 0,
            });
            o.no_space = no_space;
            o.free_at_failure = room(store);
            o.last_try = std::time::Instant::now();
            o.dropped += records as u64;
            if let Err(e) = store.reopen() {
                tracing::error!(error = %e, "reopening the store failed; retrying");
            }
            // Ids handed out in the failed transaction were not stored.
            if let Ok(fresh) = Ids::load(store) {
                *ids = fresh;
            }
            for c in small {
                if held.len() >= HELD {
                    held.pop_front();
                }
                held.push_back(c);
            }
        }
    }
}

impl Store {
    /// Closes the file and opens it again: after an I/O error (a full disk) redb refuses every
    /// call until then. Readers that hold the old handle finish first; new ones wait.
    fn reopen(&self) -> Result<(), StoreError> {
        let mut slot = self
            .shared
            .slot
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(db) = slot.take() {
            // A reader still holding the old handle keeps the file locked until it is done.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while Arc::strong_count(&db) > 1 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            drop(db);
        }
        let db = open_db(&self.shared.path).map_err(|e| StoreError::File(e.to_string()))?;
        *slot = Some(Arc::new(db));
        Ok(())
    }
}

impl Command {
    /// The request records it holds.
    pub(super) fn records(&self) -> usize {
        match self {
            Command::Records(r) => r.list.len(),
            _ => 0,
        }
    }

    /// Whether its sender waits for it to be done (a flush, prune or close): counted in
    /// [`Writer::awaited`] while it is queued.
    pub(super) fn awaited(&self) -> bool {
        matches!(
            self,
            Command::Flush(_) | Command::Prune(..) | Command::Close
        )
    }

    /// A copy of a small write (not a record), kept to retry when a commit fails.
    fn small_clone(&self) -> Option<Command> {
        match self {
            Command::Run(s) => Some(Command::Run(s.clone())),
            Command::Event(e) => Some(Command::Event(e.clone())),
            Command::Alert(a) => Some(Command::Alert(a.clone())),
            Command::Pin(j, r) => Some(Command::Pin(j.clone(), r.clone())),
            _ => None,
        }
    }
}

pub(super) fn writer_loop(store: &Store, mut rx: Inbox) {
    let mut ids = match Ids::load(store) {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "store writer cannot start");
            return;
        }
    };
    let windows = Windows::of(store.options().commit_interval);
    let mut busy = false;
    let mut batch = Vec::new();
    // Prunes go one small batch at a time, between the commits of queued writes, so a large
    // prune never holds the writers up for more than one short transaction.
    let mut prunes: std::collections::VecDeque<PruneJob> = std::collections::VecDeque::new();
    let mut outage: Option<Outage> = None;
    let mut held: std::collections::VecDeque<Command> = std::collections::VecDeque::new();
    let mut disconnected = false;
    let mut cap_checked = std::time::Instant::now();
    loop {
        if outage.is_some() {
            // The store cannot write: look for work, and for the disk's space, a few times a
            // second, rather than sleeping until the next command.
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                Err(mpsc::error::TryRecvError::Disconnected) => disconnected = true,
            }
        } else if prunes.is_empty() {
            let Some(first) = rx.blocking_recv() else {
                break;
            };
            // Group commit: a record waits a moment for company; a flush or close is taken
            // at once.
            if matches!(first, Command::Records(_)) {
                windows.gather(&rx, busy);
            }
            batch.push(first);
        }
        let mut taken: usize = batch.iter().map(|c| c.records().max(1)).sum();
        while taken < BATCH {
            match rx.try_recv() {
                Ok(c) => {
                    taken += c.records().max(1);
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
        busy = taken >= BUSY;
        let mut acks = Vec::new();
        let mut writes = Vec::new();
        let mut closing = disconnected;
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
        let retry = outage.as_ref().map(|o| closing || o.ready(store));
        match (retry, &mut outage) {
            (Some(true), _) => {
                // Held writes first, then this batch's, in one commit: the first to work ends
                // the outage.
                writes.splice(0..0, held.drain(..));
                if writes.is_empty() {
                    // A probe: something small to commit.
                    writes.push(Command::Pin(PROBE.into(), None));
                }
                commit_or_hold(store, &mut ids, writes, &mut held, &mut outage);
            }
            (Some(false), Some(o)) if !writes.is_empty() => {
                // Refused without trying, so a full disk is not hit (and the file reopened)
                // for every batch; small writes wait for the space to return.
                store.count_write_error();
                for c in writes {
                    match c.small_clone() {
                        Some(small) => held.push_back(small),
                        None => o.dropped += c.records() as u64,
                    }
                }
                while held.len() > HELD {
                    held.pop_front();
                }
            }
            (None, _) if !writes.is_empty() => {
                commit_or_hold(store, &mut ids, writes, &mut held, &mut outage);
            }
            _ => {}
        }
        for a in acks {
            let _ = a.send(());
        }
        if closing {
            // A prune still going stops here; what it removed so far is reported.
            for p in prunes.drain(..) {
                let _ = p.ack.send(Ok(p.report));
            }
            if let Some(o) = &outage {
                tracing::error!(
                    dropped_records = o.dropped,
                    held = held.len(),
                    "the store closes without having written again"
                );
            }
            break;
        }
        if outage.is_some() {
            continue;
        }
        // The file only grows on a commit: past max_db_size, prune by size and compact, here
        // between commits (writers wait for it; readers wait while it compacts).
        if let Some(cap) = store.options().max_db_size
            && cap_checked.elapsed() >= std::time::Duration::from_secs(5)
        {
            cap_checked = std::time::Instant::now();
            if store.file_bytes() > cap {
                match store.enforce_cap() {
                    Ok((records, compacted)) => tracing::info!(
                        records,
                        compacted,
                        file_bytes = store.file_bytes(),
                        max_db_size = cap,
                        "the store was over max_db_size"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "keeping the store under max_db_size failed")
                    }
                }
            }
        }
        if let Some(p) = prunes.front_mut() {
            let step = store.db().and_then(|db| p.step(&db));
            match step {
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

/// The job name of the probe a writer in an outage commits to learn whether it can write
/// again: unpinning a job no one can name is a write that changes nothing.
const PROBE: &str = "\u{1f}evald-write-probe";

pub(super) fn read_next_id(db: &Database) -> Result<u64, StoreError> {
    let tx = db.begin_read()?;
    let meta = tx.open_table(META)?;
    Ok(meta.get("next_record_id")?.map(|v| v.value()).unwrap_or(1))
}

pub(super) fn commit(
    db: &Database,
    next_id: &mut u64,
    groups: &mut Groups,
    writes: Vec<Command>,
) -> Result<(), StoreError> {
    let tx = begin_write(db)?;
    let mut id = *next_id;
    {
        let mut records = tx.open_table(RECORDS)?;
        let mut runs = tx.open_table(RUNS)?;
        let mut job_runs = tx.open_table(JOB_RUNS)?;
        let mut running = tx.open_table(RUNNING)?;
        let mut payloads = tx.open_table(PAYLOADS)?;
        let mut names = tx.open_table(GROUPS)?;
        let mut spans: HashMap<&str, (u64, u64)> = HashMap::new();
        let mut pending = rollup::Pending::default();
        // References added per payload in this batch: one read-modify-write per payload, not
        // per record.
        let mut refs: HashMap<u128, (u64, Arc<[u8]>)> = HashMap::new();
        let mut batch: Vec<((u64, u64), &[u8])> =
            Vec::with_capacity(writes.iter().map(Command::records).sum());
        // A batch's records nearly all share a payload and a run: counted per run of equal
        // keys, and hashed into the maps only when the key changes.
        let mut ref_run: Coalesce<u128, (u64, Arc<[u8]>)> = Coalesce::default();
        let mut span_run: Coalesce<&str, (u64, u64)> = Coalesce::default();
        for w in &writes {
            match w {
                Command::Records(recs) => {
                    for e in &recs.list {
                        let key = (e.timestamp_ms, id);
                        id += 1;
                        let (n, done) = ref_run.at(e.payload.hash, || (0, e.payload.json.clone()));
                        n.0 += 1;
                        if let Some((hash, (n, json))) = done {
                            refs.entry(hash).or_insert((0, json)).0 += n;
                        }
                        if let Some(sample) = &e.sample {
                            let gid = groups.id(&e.group, &mut names)?;
                            pending.add(key.0 as i64, gid, sample);
                        }
                        let (span, done) = span_run.at(&e.run_id, || (key.0, key.0));
                        *span = (span.0.min(key.0), span.1.max(key.0));
                        if let Some((run, (lo, hi))) = done {
                            widen(&mut spans, run, lo, hi);
                        }
                        batch.push((key, recs.value(e)));
                    }
                }
                Command::Run(s) => {
                    let bytes = serde_json::to_vec(s)?;
                    runs.insert(s.id.as_str(), bytes.as_slice())?;
                    job_runs.insert((s.job.as_str(), s.id.as_str()), ())?;
                    if s.status == RunStatus::Running {
                        running.insert(s.id.as_str(), ())?;
                    } else {
                        running.remove(s.id.as_str())?;
                    }
                }
                Command::Event(e) => {
                    let h = xxhash_rust::xxh3::xxh3_64(
                        format!("{}\u{1f}{}", e.run_id, e.target).as_bytes(),
                    );
                    let bytes = serde_json::to_vec(e)?;
                    tx.open_table(EVENTS)?
                        .insert((e.time_ms.max(0) as u64, h), bytes.as_slice())?;
                }
                Command::Alert(a) => {
                    let key = format!("{}\u{1f}{}\u{1f}{}", a.job, a.alert, a.target);
                    let bytes = serde_json::to_vec(a)?;
                    tx.open_table(ALERTS)?
                        .insert(key.as_str(), bytes.as_slice())?;
                }
                Command::Pin(job, run) => {
                    let mut pins = tx.open_table(PINS)?;
                    match run {
                        Some(run) => pins.insert(job.as_str(), run.as_str())?,
                        None => pins.remove(job.as_str())?,
                    };
                }
                Command::Flush(_) | Command::Prune(..) | Command::Close => {}
            }
        }
        if let Some((hash, (n, json))) = ref_run.finish() {
            refs.entry(hash).or_insert((0, json)).0 += n;
        }
        if let Some((run, (lo, hi))) = span_run.finish() {
            widen(&mut spans, run, lo, hi);
        }
        append(&mut records, batch)?;
        let mut run_spans = tx.open_table(RUN_SPANS)?;
        for (run, (lo, hi)) in spans {
            let old = run_spans.get(run)?.map(|v| v.value());
            let (lo, hi) = old.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi)));
            run_spans.insert(run, (lo, hi))?;
        }
        for (hash, (n, json)) in refs {
            let have = payloads.get(hash)?.map(|v| v.value().0).unwrap_or(0);
            payloads.insert(hash, (have + n, &*json))?;
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

/// Widens `run`'s span of record timestamps to take in `lo..=hi`.
fn widen<'a>(spans: &mut HashMap<&'a str, (u64, u64)>, run: &'a str, lo: u64, hi: u64) {
    spans
        .entry(run)
        .and_modify(|s| *s = (s.0.min(lo), s.1.max(hi)))
        .or_insert((lo, hi));
}

/// Inserts a batch of records. Most keys are above every stored one (records are stamped when
/// their request starts, a moment before they reach the writer): those are appended through a
/// cursor at the table's end, which packs leaves full instead of splitting them in half as
/// one-by-one inserts at the right edge do — half the pages, and faster. The few that arrive
/// after a later one was stored go in one by one.
pub(super) fn append(
    records: &mut redb::Table<(u64, u64), &[u8]>,
    mut batch: Vec<((u64, u64), &[u8])>,
) -> Result<(), StoreError> {
    batch.sort_unstable_by_key(|e| e.0);
    let last = records.last()?.map(|(k, _)| k.value());
    let split = match last {
        Some(last) => batch.partition_point(|e| e.0 <= last),
        None => 0,
    };
    for (key, value) in &batch[..split] {
        records.insert(*key, *value)?;
    }
    // The cursor gathers what it inserts in one buffer until it is closed: a thousand records
    // in one grew it by doubling into fresh pages (page faults, copies) on every commit, 3–4 %
    // of a benchmark's CPU at 40k records/s. Chunks keep it small and its memory reused.
    for chunk in batch[split..].chunks(APPEND_CHUNK) {
        let mut cursor = records.upper_bound_mut(Bound::<(u64, u64)>::Unbounded)?;
        for (key, value) in chunk {
            cursor.insert_before(*key, *value)?;
        }
        cursor.close()?;
    }
    Ok(())
}

/// Records appended through one cursor at a time (see [`append`]).
const APPEND_CHUNK: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk, a quota and the file size limit all mean "the file cannot grow" (wait for
    /// room); anything else is retried on a timer. Through redb's own error, as a commit
    /// reports it.
    #[test]
    fn the_file_unable_to_grow_is_told_from_other_failures() {
        let io = |code| {
            StoreError::Db(redb::StorageError::from(std::io::Error::from_raw_os_error(code)).into())
        };
        assert!(is_no_space(&io(28)), "{}", io(28));
        assert!(is_no_space(&io(27)), "{}", io(27));
        assert!(is_no_space(&io(122)), "{}", io(122));
        assert!(!is_no_space(&io(5)), "{}", io(5));
        assert!(!is_no_space(&StoreError::Reopening));
    }
}
