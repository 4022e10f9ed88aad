//! The writer thread: the one place records, runs and prunes are written. It commits whatever
//! queued while the previous commit was syncing (group commit).

use super::retention::PruneJob;
use super::tables::*;
use super::*;

/// What the writer thread is asked to do.
pub(super) enum Command {
    Record(Box<Encoded>),
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
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
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
pub(super) fn writer_loop(db: &Database, mut rx: mpsc::Receiver<Command>) {
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
                    Command::Event(e) => Some(Command::Event(e.clone())),
                    Command::Alert(a) => Some(Command::Alert(a.clone())),
                    Command::Pin(j, r) => Some(Command::Pin(j.clone(), r.clone())),
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
                    let bytes = serde_json::to_vec(&*s)?;
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
                    let bytes = serde_json::to_vec(&*e)?;
                    tx.open_table(EVENTS)?
                        .insert((e.time_ms.max(0) as u64, h), bytes.as_slice())?;
                }
                Command::Alert(a) => {
                    let key = format!("{}\u{1f}{}\u{1f}{}", a.job, a.alert, a.target);
                    let bytes = serde_json::to_vec(&*a)?;
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
pub(super) fn append(
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
