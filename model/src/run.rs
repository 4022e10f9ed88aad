//! Runs: how they start, where they are, and their per-target results.

use serde::{Deserialize, Serialize};

use crate::score::mean;

/// `compare` (every case to every target) or `benchmark` (load against each target in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Quality comparison.
    #[default]
    Compare,
    /// Load and latency measurement.
    Benchmark,
}

impl JobKind {
    /// The word used in job files, the API and the pages.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Compare => "compare",
            JobKind::Benchmark => "benchmark",
        }
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// By its cron schedule.
    Schedule,
    /// By `evald run` or `evald compare`.
    Manual,
}

/// Where a run is, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still going (or cut off by a crash, until the next start marks it interrupted).
    Running,
    /// Finished; requests may still have failed, see the counts.
    Ok,
    /// Could not run, or every request failed.
    Failed,
    /// Cut off by a shutdown or a crash.
    Interrupted,
    /// Not started: the previous run of the job was still going.
    Skipped,
}

impl RunStatus {
    /// The lower-case word used in the API, the metrics and the page.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Ok => "ok",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// Percentiles of one latency measure, ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples counted.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    #[serde(default)]
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// The 95 % confidence interval of each percentile.
    #[serde(default)]
    pub ci95: Ci95,
}

/// 95 % confidence intervals of percentiles, `[low, high]` ms, distribution-free (from order
/// statistics: the ranks a Binomial(n, q) count of samples below the true q-quantile falls
/// between with at least 95 % probability). `None` where the sample is too small to bound the
/// percentile (a p99 from fewer than about 300 samples has no upper rank to stand on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ci95 {
    /// Of the median.
    pub p50: Option<[f64; 2]>,
    /// Of the 90th percentile.
    pub p90: Option<[f64; 2]>,
    /// Of the 95th percentile.
    pub p95: Option<[f64; 2]>,
    /// Of the 99th percentile.
    pub p99: Option<[f64; 2]>,
    /// Of the 99.9th percentile.
    pub p999: Option<[f64; 2]>,
}

/// Benchmark results of one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchSummary {
    /// Measured wall time of the target's phase (warm-up excluded), seconds.
    pub duration_s: f64,
    /// Completed requests per second.
    pub request_throughput: f64,
    /// Output tokens per second.
    pub output_tokens_per_s: f64,
    /// Goodput: requests per second that met every SLO (`slo_ttft_ms`, `slo_tpot_ms`,
    /// `slo_e2e_ms`) and passed every scorer; failed requests do not.
    #[serde(alias = "good_throughput")]
    pub goodput: f64,
    /// The share of requests that met every SLO and passed every scorer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub slo_attainment: Option<f64>,
    /// Successful requests whose output tokens the tokenizer counted, the server having sent
    /// no usage: the token figures (tokens/s, TPOT) are estimates to that extent.
    #[serde(skip_serializing_if = "is_zero", default)]
    pub tokens_estimated: u64,
    /// The SLOs goodput was held to (`[load] slo_*`); absent when none was set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub slos: Option<Slos>,
    /// Errors by kind.
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Time to the first token of any kind (content, reasoning, a tool call).
    pub ttft_ms: Percentiles,
    /// Time to the first content token.
    #[serde(default)]
    pub ttfc_ms: Percentiles,
    /// Inter-token latency: every gap of every request, pooled (vLLM's ITL).
    pub itl_ms: Percentiles,
    /// Each request's mean gap between tokens (guidellm's inter-token latency).
    #[serde(default)]
    pub itl_request_mean_ms: Percentiles,
    /// Time per output token.
    pub tpot_ms: Percentiles,
    /// End-to-end latency, from the actual send.
    pub e2e_ms: Percentiles,
    /// Open loop: end-to-end latency from the intended send time (what coordinated omission
    /// cannot flatter).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e2e_from_schedule_ms: Option<Percentiles>,
    /// Open loop: how late requests were sent against their intended times.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub send_lag_ms: Option<Percentiles>,
    /// Open loop: the client could not send at the intended times.
    #[serde(default)]
    pub fell_behind: bool,
    /// Open loop: the mean latency from the intended send of the last fifth of the sends over
    /// that of the first fifth (absent while a fifth holds too few requests). A server sent
    /// more than it can serve queues the rest, and this climbs with the run's length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_growth: Option<f64>,
    /// Open loop: the rate asked for, requests/s.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target_rate: Option<f64>,
    /// Open loop: the rate the client kept up, requests/s.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub achieved_rate: Option<f64>,
    /// Open loop: mean lateness of sends, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean_send_lag_ms: Option<f64>,
    /// End-to-end latency histogram for drawing: (upper bound ms, count) buckets.
    pub e2e_histogram: Vec<(f64, u64)>,
    /// The serialized HDR histogram of end-to-end latency (µs), V2 format, in hex, so runs can
    /// be merged and redrawn.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e2e_hdr: Option<String>,
}

/// A benchmark's SLOs (vLLM's `--goodput ttft: tpot: e2el:`), ms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slos {
    /// Time to first token, at most.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ttft_ms: Option<f64>,
    /// Time per output token, at most.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tpot_ms: Option<f64>,
    /// End-to-end latency, at most.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e2e_ms: Option<f64>,
}

/// Open loop: a latency from the intended send that grew this many times over the run is called
/// a queue building at the server (a server that keeps up stays near 1).
pub const QUEUE_GREW: f64 = 2.0;

impl Slos {
    /// `ttft ≤ 150 ms, e2e ≤ 600 ms`.
    pub fn words(&self) -> String {
        [
            ("ttft", self.ttft_ms),
            ("tpot", self.tpot_ms),
            ("e2e", self.e2e_ms),
        ]
        .iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k} ≤ {v} ms")))
        .collect::<Vec<_>>()
        .join(", ")
    }
}

impl BenchSummary {
    /// What goodput counted, in words, when it counts anything beyond throughput (SLOs set, or
    /// answers scored): `met ttft ≤ 150 ms and passed the scorers`. `None`: every successful
    /// request counted, so goodput is throughput and not worth a line.
    pub fn goodput_terms(&self, scored: bool) -> Option<String> {
        let slos = self
            .slos
            .as_ref()
            .map(Slos::words)
            .filter(|w| !w.is_empty());
        match (slos, scored) {
            (None, false) => None,
            (Some(s), false) => Some(format!("met {s}")),
            (None, true) => Some("passed the scorers".into()),
            (Some(s), true) => Some(format!("met {s} and passed the scorers")),
        }
    }

    /// Open loop: what a latency that grew through the run means, in words, when it did.
    pub fn queue_words(&self) -> Option<String> {
        let g = self.latency_growth.filter(|g| *g >= QUEUE_GREW)?;
        Some(format!(
            "latency from the intended send grew {g:.1}× from the first fifth of the sends to the last: requests came faster than the server answered them and queued, so every figure here grows with the run's length"
        ))
    }
}

/// A run's results for one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetSummary {
    /// `endpoint/model`.
    pub target: String,
    /// Requests sent (warm-up excluded).
    pub requests: u64,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Mean end-to-end latency of successful requests, ms.
    pub mean_latency_ms: Option<f64>,
    /// Mean weighted score over scored responses.
    pub mean_score: Option<f64>,
    /// Share of scored responses that passed every scorer.
    pub pass_rate: Option<f64>,
    /// Mean of each scorer, by scorer name.
    pub scorer_means: std::collections::BTreeMap<String, f64>,
    /// Prompt tokens, summed.
    pub prompt_tokens: u64,
    /// Completion tokens, summed.
    pub completion_tokens: u64,
    /// Benchmark jobs only.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bench: Option<BenchSummary>,
    /// Watched jobs: the test against the baseline.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub watch: Option<crate::watch::TargetWatch>,
    /// The served model's identity in this run (the most common among its answers).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub identity: Option<crate::watch::Identity>,
    /// What the target's requests cost, USD (those with a known cost); `null` when none had.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Answered requests with no known cost while others had one: `cost_usd` is then the total
    /// of the priced requests only (a gateway that sent no cost header or usage for some).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_unpriced: u64,
}

pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run id (sortable by start time).
    pub id: String,
    /// The job's name (or `compare` for ad hoc compares).
    pub job: String,
    /// `compare` or `benchmark`.
    pub kind: JobKind,
    /// How it was started.
    pub trigger: Trigger,
    /// Start, Unix ms.
    pub started_ms: i64,
    /// End, Unix ms; absent while running.
    pub ended_ms: Option<i64>,
    /// Where the run is, or how it ended.
    pub status: RunStatus,
    /// Why it failed, was interrupted or skipped.
    pub message: Option<String>,
    /// Requests stored.
    pub requests: u64,
    /// Requests that ended in an error.
    pub errors: u64,
    /// Cases in the run (after generators).
    pub cases: u64,
    /// Per target results.
    pub targets: Vec<TargetSummary>,
    /// Time spent in scorers (built-in and plugins), summed over requests, ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scoring_ms: Option<f64>,
}

impl RunSummary {
    /// A run that starts now (status `running`, no counts yet).
    pub fn start(
        id: String,
        job: &str,
        kind: JobKind,
        trigger: Trigger,
        started_ms: i64,
    ) -> RunSummary {
        RunSummary {
            id,
            job: job.to_string(),
            kind,
            trigger,
            started_ms,
            ended_ms: None,
            status: RunStatus::Running,
            message: None,
            requests: 0,
            errors: 0,
            cases: 0,
            targets: vec![],
            scoring_ms: None,
        }
    }

    /// A benchmark with a target that has no figures yet: cut off before its first checkpoint,
    /// until its records are counted.
    pub fn lacks_bench_figures(&self) -> bool {
        self.kind == JobKind::Benchmark && self.targets.iter().any(|t| t.bench.is_none())
    }

    /// Mean score over targets that have one.
    pub fn mean_score(&self) -> Option<f64> {
        mean(self.targets.iter().filter_map(|t| t.mean_score))
    }

    /// Mean pass rate over targets that have one.
    pub fn pass_rate(&self) -> Option<f64> {
        mean(self.targets.iter().filter_map(|t| t.pass_rate))
    }

    /// Mean latency over targets that have one.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        mean(self.targets.iter().filter_map(|t| t.mean_latency_ms))
    }
}
