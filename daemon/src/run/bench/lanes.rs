//! Where a benchmark's closed-loop workers run and where their requests are recorded: the
//! [`Recorder`] thread and the [`Lanes`] (single-threaded runtimes, one per core).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::Instrument;

use super::Phase;
use crate::config::Endpoint;
use crate::endpoint::http1::Http1;
use crate::run::record_into;

/// A request sent, waiting to be recorded.
pub(super) struct Done {
    pub(super) idx: usize,
    pub(super) out: crate::endpoint::Outcome,
    pub(super) warmup: bool,
    pub(super) lag_ms: Option<f64>,
}

/// Records a phase's requests on a thread of its own, so the runtime's threads only send and
/// read, and the time they measure never includes recording. Workers on the [`Lanes`] record
/// in place instead ([`Hand::InPlace`]). The thread takes what has queued
/// in batches (warm caches for the encoder and histograms) and naps briefly when few were
/// waiting, so it is not woken once per request. Scored jobs record in the worker (scorers may
/// be slow and run concurrently there). The queue is bounded: when the recorder falls behind,
/// workers wait to hand over, which bounds memory. With the [`Lanes`], ~+25 % requests/s at
/// concurrency 64 against a local nginx (docs/benchmark.md), before the lanes recorded in place.
pub(super) struct Recorder {
    tx: Option<tokio::sync::mpsc::Sender<Done>>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
}

/// Where a worker's requests are recorded.
#[derive(Clone)]
pub(super) enum Hand {
    /// Handed to the [`Recorder`]'s thread.
    Recorder(tokio::sync::mpsc::Sender<Done>),
    /// Recorded by the worker, one at a time (a scored phase: scorers run concurrently there).
    Worker,
    /// Recorded by the worker into its lane's batch ([`LaneBatch`]).
    InPlace(Arc<LaneBatch>),
}

impl Hand {
    pub(super) async fn hand(&self, phase: &Phase, done: Done) {
        match self {
            Hand::Recorder(tx) => {
                if let Err(e) = tx.send(done).await {
                    phase.finish(e.0).await;
                }
            }
            Hand::Worker => phase.finish(done).await,
            Hand::InPlace(b) => {
                let full = b.record(phase, done);
                if let Some(full) = full {
                    phase.ctx.writer.send(full).await;
                }
            }
        }
    }
}

/// The records a lane's workers made and have not yet handed to the store's writer. A lane's
/// workers share one thread, so recording there costs no hand-over to another thread: each
/// request's record is made, counted and encoded by its worker, and the store gets them
/// [`LaneBatch::FULL`] at a time, or every [`LaneBatch::EVERY`] while fewer come. Against the
/// recorder thread, −1.1 µs of CPU a request at concurrency 64 (docs/benchmark.md).
#[derive(Default)]
pub(super) struct LaneBatch(Mutex<InPlace>);

/// A lane's batch, and the one record its workers make each of theirs in before it is encoded
/// ([`crate::run::record_into`]): its names stay from one request to the next.
#[derive(Default)]
pub(super) struct InPlace {
    batch: crate::store::RecordBatch,
    record: evald_model::Record,
}

impl LaneBatch {
    /// Records handed to the writer at once.
    const FULL: usize = 256;
    /// How long a record waits for others at most: a tenth of the store's default
    /// `commit_interval`, within which a record is committed.
    const EVERY: Duration = Duration::from_millis(10);

    /// Records `done`; the batch's records, taken, when it is full. The batch keeps its room
    /// ([`RecordBatch::take`](crate::store::RecordBatch::take)): taken whole instead, it
    /// regrew from nothing, and the writer's take made room in a batch about to be dropped —
    /// 1.4 % of the lanes' CPU in copies and fresh pages zeroed (docs/benchmark.md).
    fn record(&self, phase: &Phase, done: Done) -> Option<crate::store::Records> {
        let mut b = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let InPlace { batch, record } = &mut *b;
        phase.record_in_place(done, batch, record);
        (batch.len() >= Self::FULL).then(|| batch.take())
    }

    /// Hands what is batched to the writer.
    async fn flush(&self, phase: &Phase) {
        let taken = {
            let b = &mut self.0.lock().unwrap_or_else(|p| p.into_inner()).batch;
            (!b.is_empty()).then(|| b.take())
        };
        if let Some(taken) = taken {
            phase.ctx.writer.send(taken).await;
        }
    }
}

impl Phase {
    /// Makes a sent request's record; scores, counts and stores it.
    pub(super) async fn finish(&self, d: Done) {
        let mut out = crate::store::RecordBatch::default();
        self.finish_into(d, &mut out).await;
        self.ctx.writer.records(&mut out).await;
    }

    /// [`Phase::finish`] with the record encoded into `out`, for the caller to hand over to
    /// the writer with others.
    pub(super) async fn finish_into(&self, d: Done, out_batch: &mut crate::store::RecordBatch) {
        let mut r = evald_model::Record::default();
        let (idx, gaps) = self.record_from(d, &mut r);
        if !self.scorers.is_empty() {
            r.scores = self.scorers.score(&self.cases[idx], &r).await;
        }
        self.count_and_encode(idx, &r, &gaps, out_batch);
    }

    /// [`Phase::finish_into`] for a phase without scorers, which needs no waiting, with the
    /// record made in `r` (a lane's, [`InPlace`]).
    pub(super) fn record_in_place(
        &self,
        d: Done,
        out_batch: &mut crate::store::RecordBatch,
        r: &mut evald_model::Record,
    ) {
        let (idx, gaps) = self.record_from(d, r);
        self.count_and_encode(idx, r, &gaps, out_batch);
    }

    /// A sent request's record, made in `r` (warm-up and send lag in its metadata); its case
    /// and stream gaps.
    fn record_from(&self, d: Done, r: &mut evald_model::Record) -> (usize, Vec<u32>) {
        let Done {
            idx,
            mut out,
            warmup,
            lag_ms,
        } = d;
        let gaps = std::mem::take(&mut out.gaps_us);
        let (job, target) = (&self.job, &self.target);
        record_into(
            r,
            job,
            &self.run_id,
            target,
            &self.cases[idx],
            Vec::new(),
            out,
            |m| {
                m.warmup = warmup;
                m.send_lag_ms = lag_ms;
            },
        );
        (idx, gaps)
    }

    /// Counts a request (unless it was a warm-up) and encodes its record into `out_batch`.
    fn count_and_encode(
        &self,
        idx: usize,
        r: &evald_model::Record,
        gaps: &[u32],
        out_batch: &mut crate::store::RecordBatch,
    ) {
        if !r.metadata.warmup {
            self.ctx.metrics.observe_with(&self.metrics, r);
            self.acc
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(r, gaps, &self.load);
            self.counters.done.fetch_add(1, Ordering::Relaxed);
            if r.error.is_some() {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        out_batch.push(r, Some(&self.payloads[idx]));
    }

    /// `n` closed-loop workers on the current runtime, taking request numbers from `next`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn workers(
        self: &Arc<Self>,
        n: usize,
        http1: &Option<Arc<Http1>>,
        next: &Arc<AtomicU64>,
        requests: Option<u64>,
        duration: Option<Duration>,
        warmup: bool,
        to: &Hand,
    ) {
        let deadline = duration.map(|d| tokio::time::Instant::now() + d);
        let mut set = tokio::task::JoinSet::new();
        // A lane's batch goes to the writer every `EVERY` while the workers run, and at the end.
        let stop_flusher = tokio_util::sync::CancellationToken::new();
        let flusher = match to {
            Hand::InPlace(b) => {
                let (me, b, stop) = (self.clone(), b.clone(), stop_flusher.clone());
                Some(tokio::spawn(async move {
                    let mut every = tokio::time::interval(LaneBatch::EVERY);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while tokio::select! {
                        _ = every.tick() => true,
                        _ = stop.cancelled() => false,
                    } {
                        b.flush(&me).await;
                    }
                    b.flush(&me).await;
                }))
            }
            _ => None,
        };
        // A lane's thread is in the run's span for its whole life (`Lane::run`); a worker on
        // the daemon's runtime enters it at each poll, which costs two lookups in the log
        // filter's shared span table per poll (~3 polls a request).
        let on_lane = matches!(to, Hand::InPlace(_));
        // Asked to stop, as a flag the workers read: `is_cancelled` locks the token's mutex, a
        // cache line every lane's thread would take in turn before each request.
        let stopping = Arc::new(AtomicBool::new(false));
        let watch = {
            let (stop, stopping) = (self.ctx.stop.clone(), stopping.clone());
            tokio::spawn(async move {
                stop.cancelled().await;
                stopping.store(true, Ordering::Relaxed);
            })
        };
        for _ in 0..n {
            let (me, next, to, http1) = (self.clone(), next.clone(), to.clone(), http1.clone());
            let stopping = stopping.clone();
            let work = async move {
                let mut abort = std::pin::pin!(me.ctx.abort.cancelled());
                loop {
                    if stopping.load(Ordering::Relaxed)
                        || deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
                    {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if requests.is_some_and(|n| i >= n) {
                        break;
                    }
                    // The other workers whose responses are in go first: their
                    // records are handed over before any of them writes its next
                    // request, so the writes go out together and the server takes them
                    // in one wake-up rather than one each. Measured on the lanes: +20 %
                    // median requests/s at concurrency 64 against a local nginx
                    // (docs/benchmark.md). Workers on the daemon's runtime (scored jobs,
                    // the general client) do the same; a yield costs them little. The
                    // timer starts at the write, so no latency includes the wait.
                    tokio::task::yield_now().await;
                    let done = me
                        .one(http1.as_deref(), abort.as_mut(), i, warmup, None)
                        .await;
                    to.hand(&me, done).await;
                }
            };
            if on_lane {
                set.spawn(work);
            } else {
                set.spawn(work.in_current_span());
            }
        }
        while set.join_next().await.is_some() {}
        watch.abort();
        stop_flusher.cancel();
        if let Some(f) = flusher {
            let _ = f.await;
        }
    }
}

impl Recorder {
    /// Requests queued for the recorder at most.
    const QUEUE: usize = 4096;
    /// Taken from the queue at a time.
    const BATCH: usize = 256;
    /// When fewer than this were waiting, the recorder naps [`Recorder::NAP`] before looking
    /// again: a few hundred µs of delay to recording (none to measuring) instead of a wake-up
    /// per request.
    const FEW: usize = 128;
    const NAP: Duration = Duration::from_millis(2);

    /// A recorder thread for `phase`, or none for a scored phase (recorded by its workers).
    pub(super) fn start(phase: &Arc<Phase>) -> Recorder {
        let none = Recorder {
            tx: None,
            done: None,
        };
        if !phase.scorers.is_empty() {
            return none;
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Done>(Self::QUEUE);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let (me, rt) = (phase.clone(), tokio::runtime::Handle::current());
        let span = tracing::Span::current();
        let spawned = std::thread::Builder::new()
            .name("evald-recorder".into())
            .spawn(move || {
                let _g = span.enter();
                rt.block_on(async move {
                    let mut batch = Vec::with_capacity(Self::BATCH);
                    let mut records = crate::store::RecordBatch::default();
                    while rx.recv_many(&mut batch, Self::BATCH).await > 0 {
                        let few = batch.len() < Self::FEW;
                        for d in batch.drain(..) {
                            me.finish_into(d, &mut records).await;
                        }
                        // One hand-over to the writer per take (docs/benchmark.md).
                        me.ctx.writer.records(&mut records).await;
                        if few {
                            std::thread::sleep(Self::NAP);
                        }
                    }
                });
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => Recorder {
                tx: Some(tx),
                done: Some(done),
            },
            Err(e) => {
                tracing::warn!(error = %e, "no recorder thread; workers record their requests");
                none
            }
        }
    }

    pub(super) fn sender(&self) -> Hand {
        match &self.tx {
            Some(tx) => Hand::Recorder(tx.clone()),
            None => Hand::Worker,
        }
    }

    /// Waits until every request handed over is recorded.
    pub(super) async fn finish(mut self) {
        self.tx = None;
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

/// Single-threaded runtimes, one per core (at most one per worker), each with its own
/// connections, for a phase's closed-loop workers, as oha runs its workers: a worker's request,
/// response and next request stay on one thread, with no work-stealing, cross-thread wake-ups
/// or migrations between them. Kept from warm-up to measurement, so the connections warm-up
/// opened are the ones measured. A runtime whose thread cannot start leaves the workers on the
/// daemon's runtime.
#[derive(Default)]
pub(super) struct Lanes(Mutex<Vec<Lane>>);

impl Lanes {
    /// The lanes for `workers` workers on `endpoint` (made on first use); none if they cannot be.
    pub(super) fn take(&self, endpoint: &Arc<Endpoint>, workers: usize) -> Vec<Lane> {
        let mut kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        if !kept.is_empty() {
            return kept;
        }
        let n = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(workers);
        // A lane's runtime looks for I/O and timers when its queue runs dry, not every 61 polls
        // (tokio's default). At concurrency 64 a lane has 32 workers, and a round of theirs is
        // ~64 polls: the responses read, then the writes of the workers that yielded, whom
        // tokio releases at its next look for I/O. The default looked in mid-round, an extra
        // `epoll_wait` and the writes spread thinner. At 8 polls a worker: +8 % median
        // requests/s at concurrency 64 against a local nginx, client CPU 16.8 → 15.4 µs a
        // request, no higher p50 or p99 (docs/benchmark.md). Every worker yields before each
        // request, and is released only at a look for I/O, so the queue does run dry.
        let polls_a_round = 8 * workers.div_ceil(n.max(1));
        for _ in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .event_interval(u32::try_from(polls_a_round).unwrap_or(u32::MAX).max(61))
                .build();
            match (rt, Http1::for_endpoint(endpoint)) {
                (Ok(rt), Some(http1)) => kept.push(Lane {
                    rt: Some(rt),
                    http1: Some(Arc::new(http1)),
                }),
                (Err(e), _) => {
                    tracing::warn!(error = %e, "no runtime for benchmark workers; they run on the daemon's");
                    return Vec::new();
                }
                (_, None) => return Vec::new(),
            }
        }
        kept
    }

    pub(super) fn give_back(&self, lane: Lane) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(lane);
    }
}

/// One single-threaded runtime and the connections made on it.
pub(super) struct Lane {
    rt: Option<tokio::runtime::Runtime>,
    http1: Option<Arc<Http1>>,
}

impl Lane {
    /// Runs `work` (given this lane's connections) on a thread of its own; the lane comes back
    /// through the receiver when the work is done (an error: the thread could not start or the
    /// work panicked, and the lane is gone).
    pub(super) fn run<F, Fut>(self, work: F) -> tokio::sync::oneshot::Receiver<Lane>
    where
        F: FnOnce(Option<Arc<Http1>>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let spawned = std::thread::Builder::new()
            .name("evald-bench".into())
            .spawn(move || {
                let _g = span.enter();
                if self.http1.as_ref().is_some_and(|h| h.is_local()) {
                    batch_scheduling();
                }
                if let Some(rt) = &self.rt {
                    rt.block_on(work(self.http1.clone()));
                }
                let _ = tx.send(self);
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "a benchmark thread could not start; the other threads' workers send its share");
        }
        rx
    }
}

/// Puts the calling thread, a lane's whose server is on this machine, in the kernel's batch
/// class (`SCHED_BATCH`, same priority): when a response wakes it, it does not preempt the task
/// running on that core — when the cores are all busy, mostly the server under test, whose run
/// of answers it would cut short to read one — but is picked in its turn. Where a core is idle
/// the lane runs on it at once, as before. At concurrency 64 against a local nginx on two
/// cores: +1–5 % median requests/s with the same p50 and p99 on one machine, within the noise
/// on two others; no change at concurrency 1 or 8 (docs/benchmark.md). A lane whose server is
/// elsewhere keeps the normal class: there a busy machine's other work is not the server, and a
/// lane that waited its turn would add the wait to the latency it measures. A kernel that
/// refuses leaves the thread as it was.
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        #[allow(unsafe_code)]
        // SAFETY: a plain system call on the calling thread (pid 0) with a pointer to a
        // `sched_param` that lives for the call; it changes only this thread's policy.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if r != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "a benchmark lane stays in the normal scheduling class"
            );
        }
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        // The connections first, while their runtime is still there to release them.
        self.http1 = None;
        if let Some(rt) = self.rt.take() {
            // Dropped from async code: a blocking shutdown would panic there.
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
#[cfg(target_os = "linux")]
mod tests {
    /// The scheduling policy of the calling thread (field 41 of its `stat`: 0 normal, 3 batch).
    fn policy() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The name, in parentheses, may hold spaces: fields count from after its end (field 3).
        let after = &stat[stat.rfind(')').unwrap() + 2..];
        after.split(' ').nth(41 - 3).unwrap().parse().unwrap()
    }

    /// A lane's thread moves to the batch class, and only that thread: the one that started it
    /// (a daemon runtime's, in the daemon) stays in the normal class.
    #[test]
    fn a_lane_thread_and_only_it_is_put_in_the_batch_class() {
        let before = policy();
        let lane = std::thread::spawn(|| {
            super::batch_scheduling();
            policy()
        })
        .join()
        .unwrap();
        assert_eq!(lane, libc::SCHED_BATCH as u32);
        assert_eq!(policy(), before);
        assert_ne!(before, libc::SCHED_BATCH as u32);
    }
}

#[cfg(test)]
mod record_tests {
    use std::path::Path;

    use crate::config::Config;
    use crate::endpoint::Outcome;
    use crate::job::Job;
    use crate::run::{Target, record_into, record_of};

    /// A lane's record, made in the record its last request left (another target, run and
    /// case; an error, an answer's identity, a gateway cost and scores), is the record made
    /// afresh: nothing is carried over from the request before.
    #[test]
    fn a_record_made_in_a_used_one_is_the_record_made_afresh() {
        let config = Config::parse(
            Path::new("evald.toml"),
            "[endpoints.e]\nurl = \"http://127.0.0.1:9/v1\"\nprovider = \"p\"\n",
        )
        .unwrap();
        let job = Job::parse(
            Path::new("jobs/b.toml"),
            "kind = \"benchmark\"\ntargets = [\"e/m1\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n[[cases]]\nid = \"b\"\nprompt = \"y\"\n[load]\nrequests = 2\n",
            &config,
        )
        .unwrap();
        let target = |model: &str| Target {
            endpoint: config.endpoints["e"].clone(),
            model: model.into(),
            price: None,
        };
        let mut before = Outcome {
            started_ms: 1,
            latency_ms: Some(5.0),
            ttft_ms: Some(1.0),
            finish_reason: Some("length".into()),
            error: Some("boom".into()),
            served_model: Some("m1-2024".into()),
            system_fingerprint: Some("fp".into()),
            gateway_cost: Some(0.5),
            ..Outcome::default()
        };
        before.metadata.error_kind = Some("http_status".into());
        before.metadata.attempts = 3;
        let mut r = record_of(
            &job,
            "run-1",
            &target("m1"),
            &job.cases[0],
            vec![],
            before,
            |m| {
                m.warmup = true;
                m.send_lag_ms = Some(2.0);
            },
        );
        r.scores.push(evald_model::Score {
            name: "s".into(),
            value: Some(1.0),
            passed: Some(true),
            weight: 1.0,
            error: None,
            note: None,
        });
        let now = Outcome {
            started_ms: 2,
            latency_ms: Some(0.25),
            response: Some("Hello".into()),
            completion_tokens: Some(1),
            ..Outcome::default()
        };
        let fresh = record_of(
            &job,
            "run-2",
            &target("m2"),
            &job.cases[1],
            vec![],
            now.clone(),
            |_| {},
        );
        record_into(
            &mut r,
            &job,
            "run-2",
            &target("m2"),
            &job.cases[1],
            vec![],
            now,
            |_| {},
        );
        assert_eq!(r, fresh);
        assert_eq!((r.model.as_str(), r.case_id.as_str()), ("m2", "b"));
    }
}
