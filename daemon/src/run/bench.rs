//! Benchmark runs (`kind = "benchmark"`): load against each target in turn — never at once, so
//! targets don't skew each other — in a closed loop (`concurrency` workers) or an open loop
//! (`rate` requests/s, Poisson arrivals, recording how late each request was sent). Warm-up
//! requests are stored, marked, and left out of the results. Every request is still scored and
//! stored; the figures come from HDR histograms kept while the run goes, so memory stays bounded
//! whatever the run length.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use evald_model::{
    BenchSummary, Ci95, Percentiles, Record, RunSummary, TargetSummary, TargetTally, all_passed,
};
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2Serializer};
use tokio_util::sync::WaitForCancellationFuture;
use tracing::Instrument;

use crate::endpoint::http1::Http1;
use crate::endpoint::request_body;
use crate::job::{Case, Job, LoadSpec};
use crate::metrics::TargetHandles;
use crate::run::{Progress, ProgressFn, RunContext, Target, chat_request, interruptible};
use crate::score::Scorers;

mod lanes;
mod trend;
use lanes::{Done, Hand, Lanes, Recorder};
use trend::Trend;

/// Open loop: requests in flight at most; past this, sends are late (and counted late).
const MAX_IN_FLIGHT: usize = 8192;

/// Histograms in µs, 3 significant digits, up to an hour.
fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| fallback_hist())
}

#[allow(clippy::expect_used)]
fn fallback_hist() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant figures is a valid precision")
}

fn us(ms: f64) -> u64 {
    ((ms * 1000.0).round() as u64).clamp(1, 3_600_000_000)
}

/// What one target's phase accumulates.
struct Acc {
    /// Counts, mean latency, scores and tokens, by the rules every run shares.
    tally: TargetTally,
    errors_by_kind: BTreeMap<String, u64>,
    /// Completion tokens of successful requests (throughput counts only what was delivered).
    output_tokens: u64,
    good: u64,
    lag_sum: f64,
    lag_n: u64,
    ttft: Histogram<u64>,
    ttfc: Histogram<u64>,
    /// Every gap of every request, pooled (vLLM's ITL).
    itl: Histogram<u64>,
    /// Each request's mean gap (guidellm's).
    itl_request_mean: Histogram<u64>,
    tpot: Histogram<u64>,
    e2e: Histogram<u64>,
    /// Open loop: latency from the intended send time.
    e2e_from_schedule: Histogram<u64>,
    /// Open loop: how late each request was sent.
    send_lag: Histogram<u64>,
    /// Open loop: latency from the intended send by when it was meant, to see a queue grow.
    trend: Trend,
    /// Successful requests whose tokens the tokenizer counted (the server sent no usage).
    estimated: u64,
    /// The first and last send, Unix ms: the span the sending rate is over (the drain after
    /// the last send is not sending).
    sends_ms: (i64, i64),
}

impl Acc {
    fn new() -> Acc {
        Acc {
            tally: TargetTally::default(),
            errors_by_kind: BTreeMap::new(),
            output_tokens: 0,
            good: 0,
            lag_sum: 0.0,
            lag_n: 0,
            ttft: hist(),
            ttfc: hist(),
            itl: hist(),
            itl_request_mean: hist(),
            tpot: hist(),
            e2e: hist(),
            e2e_from_schedule: hist(),
            send_lag: hist(),
            trend: Trend::new(),
            sends_ms: (i64::MAX, i64::MIN),
            estimated: 0,
        }
    }

    fn add(&mut self, r: &Record, gaps_us: &[u32], load: &LoadSpec) {
        self.tally.add(r);
        self.sends_ms = (
            self.sends_ms.0.min(r.timestamp_ms),
            self.sends_ms.1.max(r.timestamp_ms),
        );
        if let Some(l) = r.metadata.send_lag_ms {
            self.lag_sum += l;
            self.lag_n += 1;
            self.send_lag.saturating_record(us(l.max(0.0)));
        }
        let from_schedule = match (r.response_time_ms, r.metadata.send_lag_ms) {
            (Some(e2e), Some(lag)) => {
                Some((r.timestamp_ms - lag.round() as i64, e2e + lag.max(0.0)))
            }
            _ => None,
        };
        if r.error.is_some() {
            use crate::endpoint::kind::{STREAM_TIMEOUT, TIMEOUT, counted};
            let kind = counted(r);
            // A request that timed out waited at least this long: the trend counts it (as the
            // lower bound it is), or a queue long enough to time out would hide its own end.
            let timed_out = matches!(kind.as_str(), TIMEOUT | STREAM_TIMEOUT);
            if let Some((at, ms)) = from_schedule.filter(|_| timed_out) {
                self.trend.add(at, ms);
            }
            *self.errors_by_kind.entry(kind).or_default() += 1;
            return;
        }
        for g in gaps_us {
            self.itl.saturating_record(u64::from(*g).max(1));
        }
        if let Some((at, ms)) = from_schedule {
            self.e2e_from_schedule.saturating_record(us(ms));
            self.trend.add(at, ms);
        }
        if let Some(t) = r.metadata.ttfc_ms {
            self.ttfc.saturating_record(us(t));
        }
        let out_tokens = r.completion_tokens.unwrap_or(0) as u64;
        self.output_tokens += out_tokens;
        self.estimated += u64::from(r.metadata.tokens_estimated);
        // TPOT = (e2e − ttft) / (output tokens − 1), per request.
        let tpot = match (r.response_time_ms, r.ttft_ms) {
            (Some(e2e), Some(ttft)) if out_tokens > 1 => {
                Some((e2e - ttft) / (out_tokens - 1) as f64)
            }
            _ => None,
        };
        // Values past the histograms' hour-long range are clamped to it, not dropped.
        for (h, v) in [
            (&mut self.e2e, r.response_time_ms),
            (&mut self.tpot, tpot),
            (&mut self.ttft, r.ttft_ms),
            (&mut self.itl_request_mean, r.metadata.itl_mean_ms),
        ] {
            if let Some(v) = v {
                h.saturating_record(us(v));
            }
        }
        let within = |v: Option<f64>, slo: Option<f64>| match (v, slo) {
            (_, None) => true,
            (Some(v), Some(s)) => v <= s,
            (None, Some(_)) => false,
        };
        let met = within(r.ttft_ms, load.slo_ttft_ms)
            && within(tpot, load.slo_tpot_ms)
            && within(r.response_time_ms, load.slo_e2e_ms);
        if met && all_passed(&r.scores) != Some(false) {
            self.good += 1;
        }
    }

    /// The target's figures so far (also taken mid-phase, for a checkpoint).
    fn summary(&self, target: String, duration: Duration, load: &LoadSpec) -> TargetSummary {
        let secs = duration.as_secs_f64().max(1e-9);
        let mut hdr = Vec::new();
        let _ = V2Serializer::new().serialize(&self.e2e, &mut hdr);
        let (requests, errors) = (self.tally.requests(), self.tally.errors());
        let open = load.rate.is_some();
        let send_lag = percentiles(&self.send_lag);
        let bench = BenchSummary {
            duration_s: secs,
            request_throughput: (requests - errors) as f64 / secs,
            output_tokens_per_s: self.output_tokens as f64 / secs,
            goodput: self.good as f64 / secs,
            slo_attainment: (requests > 0).then(|| self.good as f64 / requests as f64),
            tokens_estimated: self.estimated,
            slos: (load.slo_ttft_ms.is_some()
                || load.slo_tpot_ms.is_some()
                || load.slo_e2e_ms.is_some())
            .then_some(evald_model::run::Slos {
                ttft_ms: load.slo_ttft_ms,
                tpot_ms: load.slo_tpot_ms,
                e2e_ms: load.slo_e2e_ms,
            }),
            errors_by_kind: self.errors_by_kind.clone(),
            ttft_ms: percentiles(&self.ttft),
            ttfc_ms: percentiles(&self.ttfc),
            itl_ms: percentiles(&self.itl),
            itl_request_mean_ms: percentiles(&self.itl_request_mean),
            tpot_ms: percentiles(&self.tpot),
            e2e_ms: percentiles(&self.e2e),
            e2e_from_schedule_ms: open.then(|| percentiles(&self.e2e_from_schedule)),
            // The client could not send at the intended times: a tenth of the requests went
            // out more than FELL_BEHIND_MS late (a slow server alone delays responses, not
            // sends, until the in-flight cap is reached).
            fell_behind: open && send_lag.count > 0 && send_lag.p90 > FELL_BEHIND_MS,
            send_lag_ms: open.then_some(send_lag),
            latency_growth: open.then(|| self.trend.growth()).flatten(),
            target_rate: load.rate,
            // Sends per second between the first send and the last (vLLM's request rate, not
            // its throughput): the run's duration also holds the drain of the last answers.
            achieved_rate: load.rate.map(|_| {
                let (first, last) = self.sends_ms;
                if requests >= 2 && last > first {
                    (requests - 1) as f64 / ((last - first) as f64 / 1000.0)
                } else {
                    requests as f64 / secs
                }
            }),
            mean_send_lag_ms: (self.lag_n > 0).then(|| self.lag_sum / self.lag_n as f64),
            e2e_histogram: buckets(&self.e2e, 24),
            e2e_hdr: Some(hex(&hdr)),
        };
        TargetSummary {
            bench: Some(bench),
            ..self.tally.clone().finish(target)
        }
    }
}

/// How often a running benchmark writes its figures so far into its stored summary.
pub const CHECKPOINT: Duration = Duration::from_secs(5);

/// Open loop: the p90 send lag past which the client is said to have fallen behind, ms.
pub const FELL_BEHIND_MS: f64 = 50.0;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// p50…max of a µs histogram, in ms, each percentile with its 95 % confidence interval.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let n = h.len();
    let q = |p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    // The r-th smallest sample (1-based), to the histogram's precision.
    let nth = |r: u64| q(r as f64 / n as f64);
    let ci = |p: f64| rank_interval(n, p).map(|(lo, hi)| [nth(lo), nth(hi)]);
    Percentiles {
        count: n,
        p50: q(0.50),
        p90: q(0.90),
        p95: q(0.95),
        p99: q(0.99),
        p999: q(0.999),
        max: h.max() as f64 / 1000.0,
        mean: h.mean() / 1000.0,
        ci95: Ci95 {
            p50: ci(0.50),
            p90: ci(0.90),
            p95: ci(0.95),
            p99: ci(0.99),
            p999: ci(0.999),
        },
    }
}

/// The ranks (1-based) of the order statistics that bound the `q`-quantile of `n` samples
/// with at least 95 % confidence, or `None` when `n` is too small for one of them.
///
/// The count X of samples below the true quantile is Binomial(n, q); the l-th smallest sample
/// lies below it when X ≥ l and the u-th lies above it when X < u, so
/// P(x₍ₗ₎ ≤ ξ ≤ x₍ᵤ₎) ≥ F(u − 1) − F(l − 1). With l − 1 the largest k where F(k) ≤ 2.5 % and
/// u − 1 the smallest where F(k) ≥ 97.5 %, that is at least 95 % (distribution-free; the
/// method of Hahn & Meeker, "Statistical Intervals", §5.2).
pub fn rank_interval(n: u64, q: f64) -> Option<(u64, u64)> {
    use statrs::distribution::{Binomial, DiscreteCDF};
    let b = Binomial::new(q, n).ok()?;
    let k = b.inverse_cdf(0.025);
    let below = if b.cdf(k) <= 0.025 {
        k
    } else {
        k.checked_sub(1)?
    };
    // `below` is the largest count whose CDF is at most 2.5 %: the lower rank is one more;
    // when even a count of 0 has more than 2.5 %, nothing bounds the quantile from below.
    if b.cdf(below) > 0.025 {
        return None;
    }
    let lo = below + 1;
    let hi = b.inverse_cdf(0.975) + 1;
    (lo >= 1 && hi <= n).then_some((lo, hi))
}

/// Marks the runs the last stop cut off as interrupted (see `Store::mark_interrupted`) and
/// gives their benchmarks figures ([`summarise_interrupted`]).
pub fn mark_interrupted(
    store: &crate::store::Store,
) -> Result<Vec<String>, crate::store::StoreError> {
    let ids = store.mark_interrupted()?;
    summarise_interrupted(store, &ids)?;
    Ok(ids)
}

/// Gives each benchmark target of the interrupted runs `ids` that was cut off before its
/// first checkpoint the figures of its stored records, counted as a running benchmark counts
/// them ([`Acc`]) over the records' span: everything but pooled inter-token latency (its gaps
/// are not stored) and goodput (the job's SLOs are not known here, and a goodput against none
/// would overstate it). Reads up to a checkpoint interval of records per target. Each run
/// counted is taken off the list of runs going ([`crate::store::Store::settle_interrupted`]):
/// until then, a start counts it again.
pub fn summarise_interrupted(
    store: &crate::store::Store,
    ids: &[String],
) -> Result<(), crate::store::StoreError> {
    let no_slos = LoadSpec::default();
    for id in ids {
        let Some(mut s) = store.run(id)? else {
            continue;
        };
        if !s.lacks_bench_figures() {
            continue;
        }
        // Per target: the figures and the span of the records' times, Unix ms.
        let mut by_target: BTreeMap<String, (Acc, i64, i64)> = BTreeMap::new();
        let filter = evald_model::RecordFilter {
            run_id: Some(id.clone()),
            ..evald_model::RecordFilter::default()
        };
        store.export(&filter, &mut |row| {
            let r = row.to_record();
            if r.metadata.warmup {
                return true;
            }
            let (a, lo, hi) = by_target
                .entry(r.target())
                .or_insert_with(|| (Acc::new(), r.timestamp_ms, r.timestamp_ms));
            (*lo, *hi) = ((*lo).min(r.timestamp_ms), (*hi).max(r.timestamp_ms));
            a.add(&r, &[], &no_slos);
            true
        })?;
        for t in s.targets.iter_mut().filter(|t| t.bench.is_none()) {
            let Some((a, lo, hi)) = by_target.get(&t.target) else {
                continue;
            };
            let span = Duration::from_millis((hi - lo).max(1) as u64);
            t.bench = a
                .summary(t.target.clone(), span, &no_slos)
                .bench
                .map(|b| BenchSummary {
                    goodput: 0.0,
                    slo_attainment: None,
                    ..b
                });
        }
        store.settle_interrupted(&s)?;
    }
    Ok(())
}

/// Equal-width buckets from the minimum to the maximum, for a histogram chart: (upper ms, count).
fn buckets(h: &Histogram<u64>, n: u64) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return vec![];
    }
    let (lo, hi) = (h.min(), h.max().max(h.min() + 1));
    let width = ((hi - lo) / n).max(1);
    (0..n)
        .map(|i| {
            let a = lo + i * width;
            let b = if i + 1 == n { hi + 1 } else { a + width };
            let c = h
                .iter_recorded()
                .filter(|v| v.value_iterated_to() >= a && v.value_iterated_to() < b)
                .map(|v| v.count_at_value())
                .sum();
            (b as f64 / 1000.0, c)
        })
        .collect()
}

/// Runs the benchmark against each target in turn. Workers (and open-loop requests) are
/// spawned tasks, so a busy benchmark uses every runtime thread; progress is read from counters
/// every 100 ms rather than reported per request.
///
/// Every [`CHECKPOINT`] the figures so far are written into the running run's summary, so a
/// benchmark cut off by a crash keeps what it measured up to then (its counts come from the
/// stored records, see `Store::mark_interrupted`); the histograms themselves stay in memory,
/// which costs no bytes per stored request.
pub async fn run(
    ctx: &RunContext,
    job: &Job,
    base: &RunSummary,
    targets: &[Target],
    cases: &[Case],
    scorers: &Scorers,
    progress: Option<&ProgressFn>,
) -> Vec<TargetSummary> {
    let load = job.load.clone().unwrap_or_default();
    let total = match (load.requests, load.duration) {
        (Some(n), None) => n * targets.len() as u64,
        _ => 0,
    };
    let counters = Arc::new(Counters::default());
    let job = Arc::new(job.clone());
    let cases: Arc<[Case]> = cases.to_vec().into();
    let run_id: Arc<str> = base.id.as_str().into();
    let mut out: Vec<TargetSummary> = Vec::new();
    for target in targets {
        if ctx.stop.is_cancelled() {
            break;
        }
        let http1 = Http1::for_endpoint(&target.endpoint).map(Arc::new);
        let phase = Arc::new(Phase {
            ctx: ctx.clone(),
            metrics: ctx.metrics.handles(&job.name, &target.name()),
            job: job.clone(),
            run_id: run_id.clone(),
            target: target.clone(),
            cases: cases.clone(),
            scorers: scorers.clone(),
            load: load.clone(),
            acc: std::sync::Mutex::new(Acc::new()),
            counters: counters.clone(),
            // Each case's whole request, for the benchmark client (none for the general one).
            requests: match &http1 {
                Some(h) => cases
                    .iter()
                    .map(|c| h.request(&request_body(&chat_request(&job, target, c))))
                    .collect(),
                None => Vec::new(),
            },
            http1,
            lanes: Lanes::default(),
            payloads: cases
                .iter()
                .map(|c| crate::store::Payload::of(&c.messages))
                .collect(),
        });
        if load.warmup > 0 {
            phase.clone().closed(Some(load.warmup), None, true).await;
        }
        let t0 = Instant::now();
        let work = {
            let phase = phase.clone();
            async move {
                let (rate, requests, duration) =
                    (phase.load.rate, phase.load.requests, phase.load.duration);
                match rate {
                    Some(rate) => phase.open(rate).await,
                    None => phase.closed(requests, duration, false).await,
                }
            }
        };
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let mut checkpoint =
            tokio::time::interval_at(tokio::time::Instant::now() + CHECKPOINT, CHECKPOINT);
        loop {
            tokio::select! {
                _ = &mut work => break,
                _ = tick.tick() => counters.report(progress, total),
                _ = checkpoint.tick() => {
                    let now = phase
                        .acc
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .summary(target.name(), t0.elapsed(), &load);
                    let mut s = base.clone();
                    s.targets = out.iter().cloned().chain([now]).collect();
                    s.requests = s.targets.iter().map(|t| t.requests).sum();
                    s.errors = s.targets.iter().map(|t| t.errors).sum();
                    ctx.writer.run(s).await;
                }
            }
        }
        counters.report(progress, total);
        let acc = std::mem::replace(
            &mut *phase.acc.lock().unwrap_or_else(|p| p.into_inner()),
            Acc::new(),
        );
        out.push(acc.summary(target.name(), t0.elapsed(), &load));
    }
    out
}

/// Requests done and failed, across the targets of a run.
#[derive(Default)]
struct Counters {
    done: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn report(&self, progress: Option<&ProgressFn>, total: u64) {
        if let Some(f) = progress {
            f(Progress {
                done: self.done.load(Ordering::Relaxed),
                total,
                errors: self.errors.load(Ordering::Relaxed),
            });
        }
    }
}

/// One target's phase, shared by its workers.
struct Phase {
    ctx: RunContext,
    metrics: TargetHandles,
    job: Arc<Job>,
    run_id: Arc<str>,
    target: Target,
    cases: Arc<[Case]>,
    scorers: Scorers,
    load: LoadSpec,
    acc: std::sync::Mutex<Acc>,
    counters: Arc<Counters>,
    /// The low-cost client, when the target is plain HTTP.
    http1: Option<Arc<Http1>>,
    /// Threads of their own for closed-loop workers, kept from warm-up to measurement.
    lanes: Lanes,
    /// Each case's whole request for [`Http1`] (head and body), made once for the phase and
    /// written by the phase's client and the lanes' alike; empty when `http1` is `None`.
    requests: Vec<Bytes>,
    /// Each case's messages as the store keeps them, made once for the phase.
    payloads: Vec<crate::store::Payload>,
}

impl Phase {
    /// Sends request number `i` (cases cycle in order); what came back goes to [`Phase::finish`].
    async fn one(
        &self,
        http1: Option<&Http1>,
        abort: Pin<&mut WaitForCancellationFuture<'_>>,
        i: u64,
        warmup: bool,
        lag_ms: Option<f64>,
    ) -> Done {
        let idx = (i % self.cases.len() as u64) as usize;
        let case = &self.cases[idx];
        let req = chat_request(&self.job, &self.target, case);
        let out = match http1 {
            Some(h) => {
                let fut = std::pin::pin!(self.ctx.client.chat_http1(h, &self.requests[idx], req));
                interruptible(abort, self.job.stream, fut).await
            }
            None => {
                let fut = std::pin::pin!(self.ctx.client.chat(&self.target.endpoint, req));
                interruptible(abort, self.job.stream, fut).await
            }
        };
        Done {
            idx,
            out,
            warmup,
            lag_ms,
        }
    }

    /// Closed loop: `concurrency` workers until `requests` are sent or `duration` has passed.
    ///
    /// With the benchmark client and no scorers, the workers are shared out over one
    /// single-threaded runtime per core, each with its own connections, as oha does: a
    /// worker's request, response, record and next request stay on one thread, with no
    /// work-stealing, cross-thread wake-ups or migrations between them. Otherwise (the general
    /// client, scorers) they run on the daemon's runtime, recorded by the [`Recorder`] (or, if
    /// scored, by the workers).
    async fn closed(
        self: Arc<Self>,
        requests: Option<u64>,
        duration: Option<Duration>,
        warmup: bool,
    ) {
        let next = Arc::new(AtomicU64::new(0));
        let workers = self.load.concurrency.max(1);
        let lanes = match (&self.http1, self.scorers.is_empty()) {
            (Some(_), true) => self.lanes.take(&self.target.endpoint, workers),
            _ => Vec::new(),
        };
        if lanes.is_empty() {
            let recorder = Recorder::start(&self);
            let to = recorder.sender();
            self.workers(workers, &self.http1, &next, requests, duration, warmup, &to)
                .await;
            // The recorder ends when every sender has gone.
            drop(to);
            recorder.finish().await;
            return;
        }
        let mut ends = Vec::new();
        let n = lanes.len();
        for (t, lane) in lanes.into_iter().enumerate() {
            let share = workers / n + usize::from(t < workers % n);
            let (me, next) = (self.clone(), next.clone());
            let to = Hand::InPlace(Arc::default());
            ends.push(lane.run(move |http1| async move {
                me.workers(share, &http1, &next, requests, duration, warmup, &to)
                    .await;
            }));
        }
        for end in ends {
            if let Ok(lane) = end.await {
                self.lanes.give_back(lane);
            }
        }
    }

    /// Open loop: Poisson arrivals at `rate`/s; each request records how late it was sent.
    async fn open(self: Arc<Self>, rate: f64) {
        let start = tokio::time::Instant::now();
        let deadline = self.load.duration.map(|d| start + d);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
        let mut in_flight = tokio::task::JoinSet::new();
        let mut due = start;
        let mut i = 0u64;
        let mut late_warned = false;
        let recorder = Recorder::start(&self);
        loop {
            if self.ctx.stop.is_cancelled()
                || self.load.requests.is_some_and(|n| i >= n)
                || deadline.is_some_and(|d| due >= d)
            {
                break;
            }
            // A slow rate can leave seconds between sends: a stop must not wait for them.
            tokio::select! {
                _ = tokio::time::sleep_until(due) => {}
                _ = self.ctx.stop.cancelled() => break,
            }
            // At the in-flight cap the send waits, and the wait shows as lag.
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let lag_ms =
                crate::endpoint::ms(tokio::time::Instant::now().saturating_duration_since(due));
            if lag_ms > 50.0 && !late_warned {
                late_warned = true;
                tracing::warn!(target = %self.target.name(), lag_ms, "open loop: the client cannot keep up with the rate; sends are late");
            }
            let (me, to) = (self.clone(), recorder.sender());
            in_flight.spawn(
                async move {
                    let abort = std::pin::pin!(me.ctx.abort.cancelled());
                    let done = me
                        .one(me.http1.as_deref(), abort, i, false, Some(lag_ms))
                        .await;
                    drop(permit);
                    to.hand(&me, done).await;
                }
                .in_current_span(),
            );
            while in_flight.try_join_next().is_some() {}
            i += 1;
            // Exponential inter-arrival times make a Poisson process.
            let u: f64 = rand::random::<f64>().max(1e-12);
            due += Duration::from_secs_f64(-u.ln() / rate);
        }
        while in_flight.join_next().await.is_some() {}
        recorder.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// 100 seeded trials of 50 samples from an exponential distribution with mean 100 ms (true
    /// median 100 ln 2 ≈ 69.31 ms): a 95 % interval covers it in about 95 trials; fewer than
    /// 90 happens with probability under 2 % for a correct method (binomial, n = 100,
    /// p ≥ 0.95), while the point estimate alone, or an interval of ±1 rank, covers it in only
    /// a handful of trials.
    #[test]
    fn the_median_interval_covers_the_true_median_in_at_least_90_of_100_trials() {
        let median = 100.0 * std::f64::consts::LN_2;
        let mut covered = 0;
        for seed in 0..100 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut h = hist();
            for _ in 0..50 {
                let u: f64 = rng.random::<f64>().max(1e-12);
                h.saturating_record(us(-u.ln() * 100.0));
            }
            let p = percentiles(&h);
            let [lo, hi] = p.ci95.p50.expect("50 samples bound the median");
            assert!(lo <= p.p50 && p.p50 <= hi, "{lo} <= {} <= {hi}", p.p50);
            if lo <= median && median <= hi {
                covered += 1;
            }
        }
        assert!(covered >= 90, "covered in {covered} of 100 trials");
    }

    /// A benchmark cut off before its first checkpoint gets its figures from the records it
    /// committed, counted as a live run counts them: warm-up left out, errors by kind,
    /// time per output token from each record's TTFT, latency and tokens, and the histogram
    /// the run page draws; goodput stays unknown (the job's SLOs are not known here).
    #[tokio::test]
    async fn an_interrupted_benchmark_gets_its_figures_from_its_records() {
        use evald_model::{JobKind, RunSummary, Trigger};
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("evald.redb")).unwrap();
        let w = store.writer();
        let (run, t0) = ("0019ac8f1a2b0-b", 1_764_000_000_000);
        w.run(RunSummary::start(
            run.into(),
            "load",
            JobKind::Benchmark,
            Trigger::Manual,
            t0,
        ))
        .await;
        // 10 answers 1 s apart: e2e 10..100 ms, TTFT 2 ms, 4 tokens (TPOT (e2e - 2) / 3).
        for i in 0..10 {
            let mut r = crate::store::test_record(run, t0 + 1000 * i, &format!("c{i}"));
            r.response_time_ms = Some(10.0 * (i + 1) as f64);
            r.ttft_ms = Some(2.0);
            w.record(r).await;
        }
        let mut failed = crate::store::test_record(run, t0 + 500, "e");
        failed.error = Some("HTTP 500".into());
        failed.metadata.error_kind = Some(crate::endpoint::kind::HTTP_STATUS.into());
        failed.metadata.http_status = Some(500);
        w.record(failed).await;
        let mut warm = crate::store::test_record(run, t0 - 5000, "w");
        warm.metadata.warmup = true;
        warm.response_time_ms = Some(9000.0);
        w.record(warm).await;
        w.close().await;

        // Marked, then stopped again before its records were counted: the next start counts
        // them, once.
        assert_eq!(store.mark_interrupted().unwrap(), [run]);
        assert!(store.run(run).unwrap().unwrap().targets[0].bench.is_none());
        assert_eq!(
            mark_interrupted(&store).unwrap(),
            [run],
            "counted next time"
        );
        assert!(
            store.mark_interrupted().unwrap().is_empty(),
            "and only once"
        );
        let s = store.run(run).unwrap().unwrap();
        let b = s.targets[0]
            .bench
            .as_ref()
            .expect("figures from the records");
        assert_eq!(b.e2e_ms.count, 10);
        assert!(
            (b.e2e_ms.max - 100.0).abs() < 0.1,
            "warm-up left out: {b:?}"
        );
        assert!((b.e2e_ms.p50 - 50.0).abs() < 0.1, "{b:?}");
        assert_eq!(b.errors_by_kind.get("http_5xx"), Some(&1));
        // Over the 9 s the records span: 10 answers, 40 tokens.
        assert!((b.duration_s - 9.0).abs() < 1e-9, "{b:?}");
        assert!((b.request_throughput - 10.0 / 9.0).abs() < 1e-9, "{b:?}");
        assert!((b.output_tokens_per_s - 40.0 / 9.0).abs() < 1e-9, "{b:?}");
        assert_eq!(b.tpot_ms.count, 10);
        assert!((b.tpot_ms.max - 98.0 / 3.0).abs() < 0.05, "{b:?}");
        assert_eq!(b.ttft_ms.count, 10);
        assert!(b.e2e_hdr.is_some() && !b.e2e_histogram.is_empty(), "{b:?}");
        assert_eq!((b.goodput, b.slo_attainment), (0.0, None));
    }

    /// An open loop whose last sends timed out in a queue: their time to the timeout counts
    /// in the latency trend (as a lower bound), so the growth shows; a 429 answered at once
    /// does not pull it down. 100 sends 10 ms apart: the first 80 answered in 10 ms, the last
    /// 20 timed out at 2 s (200×); 20 fast 429s among the first fifth change nothing.
    #[test]
    fn timeouts_count_in_the_latency_trend_and_quick_refusals_do_not() {
        let load = LoadSpec {
            rate: Some(100.0),
            ..LoadSpec::default()
        };
        let (mut acc, t0) = (Acc::new(), 1_764_000_000_000i64);
        for i in 0..100 {
            let mut r = crate::store::test_record("r", t0 + 10 * i, &format!("c{i}"));
            r.metadata.send_lag_ms = Some(0.0);
            if i < 80 {
                r.response_time_ms = Some(10.0);
            } else {
                r.response_time_ms = Some(2000.0);
                r.error = Some("timed out".into());
                r.metadata.error_kind = Some(crate::endpoint::kind::TIMEOUT.into());
            }
            acc.add(&r, &[], &load);
        }
        for i in 0..20 {
            let mut r = crate::store::test_record("r", t0 + 10 * i, &format!("q{i}"));
            r.metadata.send_lag_ms = Some(0.0);
            r.response_time_ms = Some(0.5);
            r.error = Some("HTTP 429".into());
            r.metadata.error_kind = Some(crate::endpoint::kind::HTTP_STATUS.into());
            r.metadata.http_status = Some(429);
            acc.add(&r, &[], &load);
        }
        let b = acc
            .summary("t".into(), Duration::from_secs(1), &load)
            .bench
            .unwrap();
        let g = b.latency_growth.expect("a figure");
        assert!((199.0..=201.0).contains(&g), "growth {g}");
        assert!(b.queue_words().is_some());
        assert_eq!(
            b.e2e_from_schedule_ms.unwrap().count,
            80,
            "percentiles of successes"
        );
    }

    /// The verdict "fell behind" is the client's, from its send lags: 100 open-loop sends, the
    /// last `late` of them 200 ms late (four times [`FELL_BEHIND_MS`]). A tenth late or more
    /// puts the p90 lag there; fewer leave it at 0. A closed loop has no schedule to fall
    /// behind, whatever its lags say.
    #[test]
    fn the_client_fell_behind_when_a_tenth_of_its_sends_were_late() {
        let open = LoadSpec {
            rate: Some(100.0),
            ..LoadSpec::default()
        };
        let verdict = |late: i64, load: &LoadSpec| {
            let (mut acc, t0) = (Acc::new(), 1_764_000_000_000i64);
            for i in 0..100 {
                let mut r = crate::store::test_record("r", t0 + 10 * i, &format!("c{i}"));
                r.metadata.send_lag_ms = Some(if i >= 100 - late { 200.0 } else { 0.0 });
                r.response_time_ms = Some(10.0);
                acc.add(&r, &[], load);
            }
            let b = acc.summary("t".into(), Duration::from_secs(1), load).bench;
            b.unwrap().fell_behind
        };
        assert!(verdict(11, &open), "11 % late");
        assert!(!verdict(9, &open), "9 % late");
        assert!(!verdict(0, &open));
        assert!(!verdict(50, &LoadSpec::default()), "a closed loop");
    }

    #[test]
    fn a_percentile_too_few_samples_can_bound_has_no_interval() {
        // p99 needs an order statistic above the 99th percentile with 97.5 % confidence:
        // impossible with 40 samples, possible with 1,000.
        assert_eq!(rank_interval(40, 0.99), None);
        let (lo, hi) = rank_interval(1000, 0.99).unwrap();
        assert!(lo < 990 && 990 < hi && hi <= 1000, "{lo}..{hi}");
        // The median of 5 cannot be bounded at 95 % (0.5⁵ = 3.1 % > 2.5 %); of 6 it can, by
        // the extremes.
        assert_eq!(rank_interval(5, 0.5), None);
        assert_eq!(rank_interval(6, 0.5), Some((1, 6)));
        // The textbook ranks for the median of 100: 40th and 61st (Hahn & Meeker, table A.15).
        assert_eq!(rank_interval(100, 0.5), Some((40, 61)));
        // The smallest samples that bound a p99 and a p99.9, as `evald run` states them:
        // 0.99ⁿ ≤ 2.5 % from n = 368, 0.999ⁿ from n = 3,688.
        assert_eq!(rank_interval(367, 0.99), None);
        assert!(rank_interval(368, 0.99).is_some());
        assert_eq!(rank_interval(3687, 0.999), None);
        assert!(rank_interval(3688, 0.999).is_some());
        let mut h = hist();
        for v in 1..=40u64 {
            h.saturating_record(v * 1000);
        }
        let p = percentiles(&h);
        assert!(p.ci95.p50.is_some());
        assert_eq!(p.ci95.p99, None);
        assert_eq!(p.ci95.p999, None);
    }
}
