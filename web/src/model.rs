//! The data the page, the JSON API and the exports show, and the read-only trait they read it
//! through. The daemon implements [`ReadModel`] over its store and job registry; this crate never
//! sees redb, so "read-only" holds by type: the trait has no method that writes.

use serde::{Deserialize, Serialize};

/// One chat message of a case, as sent to a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

/// One scorer's verdict on one response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The scorer's name (its `name` key, else the builtin or plugin name).
    pub name: String,
    /// 0..=1; absent when the scorer failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<f64>,
    /// `value >= threshold`; absent when the scorer failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub passed: Option<bool>,
    /// The scorer's weight in the weighted mean.
    pub weight: f64,
    /// Why the scorer could not score (a plugin trap, a timeout, a bad value…).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// What the scorer noted about its verdict, if anything.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
}

/// A [`Score`] borrowed: what the store keeps of each verdict, in postcard. In a
/// human-readable format (JSON) it serialises exactly as [`Score`] does, absent fields left out;
/// in a binary one every field is written, in order, as postcard needs.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct ScoreRef<'a> {
    /// [`Score::name`].
    pub name: &'a str,
    /// [`Score::value`].
    pub value: Option<f64>,
    /// [`Score::passed`].
    pub passed: Option<bool>,
    /// [`Score::weight`].
    pub weight: f64,
    /// [`Score::error`].
    #[serde(borrow)]
    pub error: Option<&'a str>,
    /// [`Score::note`].
    #[serde(borrow)]
    pub note: Option<&'a str>,
}

impl<'a> From<&'a Score> for ScoreRef<'a> {
    fn from(s: &'a Score) -> Self {
        ScoreRef {
            name: &s.name,
            value: s.value,
            passed: s.passed,
            weight: s.weight,
            error: s.error.as_deref(),
            note: s.note.as_deref(),
        }
    }
}

impl Serialize for ScoreRef<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        /// An optional field: always written in a binary format, only when set in JSON.
        fn opt<S: SerializeStruct, T: Serialize>(
            st: &mut S,
            all: bool,
            key: &'static str,
            v: &Option<T>,
        ) -> Result<(), S::Error> {
            if all || v.is_some() {
                st.serialize_field(key, v)
            } else {
                st.skip_field(key)
            }
        }
        let all = !ser.is_human_readable();
        let mut st = ser.serialize_struct("Score", 6)?;
        st.serialize_field("name", self.name)?;
        opt(&mut st, all, "value", &self.value)?;
        opt(&mut st, all, "passed", &self.passed)?;
        st.serialize_field("weight", &self.weight)?;
        opt(&mut st, all, "error", &self.error)?;
        opt(&mut st, all, "note", &self.note)?;
        st.end()
    }
}

/// Facts about a request that have no column of their own, exported as the `metadata` JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// How many attempts the request took (retries on connect errors, 429 and 5xx).
    pub attempts: u32,
    /// Machine-readable error class: `connect`, `timeout`, `http_status`, `malformed`,
    /// `empty_choices`, `body_too_large`, `stream`, `interrupted`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_kind: Option<String>,
    /// HTTP status of the last attempt, when there was one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http_status: Option<u16>,
    /// Whether the request was sent as a stream (SSE).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub stream: bool,
    /// Mean gap between streamed chunks, in ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub itl_mean_ms: Option<f64>,
    /// Largest gap between streamed chunks, in ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub itl_max_ms: Option<f64>,
    /// True when token counts were counted by evald because the server sent no usage.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub tokens_estimated: bool,
    /// Open-loop benchmarks: how late the request was sent against its scheduled time, in ms.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub send_lag_ms: Option<f64>,
    /// Benchmark warm-up request, excluded from the results.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub warmup: bool,
    /// Which repetition of the case this was (0-based), when the job repeats cases.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub repeat: Option<u32>,
}

/// One request to one target for one case: the stored request record, in the shape of the
/// export columns (DESIGN.md "Stored request record and export columns").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique, increasing record id.
    pub id: u64,
    /// When the request was sent, Unix ms (exported as RFC 3339 UTC with milliseconds).
    pub timestamp_ms: i64,
    /// The model name as sent to the endpoint.
    pub model: String,
    /// The endpoint's `provider` label.
    pub provider: String,
    /// The messages sent.
    pub messages: Vec<Message>,
    /// `temperature` sent, if any.
    pub temperature: Option<f64>,
    /// `max_tokens` sent, if any.
    pub max_tokens: Option<u32>,
    /// `top_p` sent, if any.
    pub top_p: Option<f64>,
    /// The response text (or the part received before an error).
    pub response: Option<String>,
    /// End-to-end latency of the final attempt, ms.
    pub response_time_ms: Option<f64>,
    /// Prompt tokens (server's usage, or estimated — see metadata).
    pub prompt_tokens: Option<u32>,
    /// Completion tokens.
    pub completion_tokens: Option<u32>,
    /// Total tokens.
    pub total_tokens: Option<u32>,
    /// Why generation stopped, as the server said.
    pub finish_reason: Option<String>,
    /// What went wrong, for a human; absent on success.
    pub error: Option<String>,
    /// Everything else (attempts, error kind, stream timings…).
    pub metadata: Metadata,
    /// The job's name.
    pub job: String,
    /// The run this request belongs to.
    pub run_id: String,
    /// The case's id.
    pub case_id: String,
    /// The endpoint's name in `evald.toml`.
    pub endpoint: String,
    /// Time to first token, ms (streamed requests only).
    pub ttft_ms: Option<f64>,
    /// Every scorer's verdict.
    pub scores: Vec<Score>,
}

impl Record {
    /// The target this request went to, `endpoint/model`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.endpoint, self.model)
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
    /// Largest sample.
    pub max: f64,
    /// Mean.
    pub mean: f64,
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
    /// Requests per second that passed every scorer within the SLOs.
    pub good_throughput: f64,
    /// Errors by kind.
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Time to first token.
    pub ttft_ms: Percentiles,
    /// Inter-token latency.
    pub itl_ms: Percentiles,
    /// Time per output token.
    pub tpot_ms: Percentiles,
    /// End-to-end latency.
    pub e2e_ms: Percentiles,
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
    /// The serialized HDR histogram of end-to-end latency (µs), V2 format, base64, so runs can be
    /// merged and redrawn.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub e2e_hdr: Option<String>,
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
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The run id (sortable by start time).
    pub id: String,
    /// The job's name (or `compare` for ad hoc compares).
    pub job: String,
    /// `compare` or `benchmark`.
    pub kind: String,
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
        kind: &str,
        trigger: Trigger,
        started_ms: i64,
    ) -> RunSummary {
        RunSummary {
            id,
            job: job.to_string(),
            kind: kind.to_string(),
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

/// The arithmetic mean, or `None` for no values.
pub fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u64), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// Weighted mean of the scores that have a value; `None` when none has. With all weights zero,
/// the plain mean.
pub fn weighted_mean(scores: &[Score]) -> Option<f64> {
    let (sum, w) = scores
        .iter()
        .filter_map(|s| s.value.map(|v| (v * s.weight, s.weight)))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    if w > 0.0 {
        Some(sum / w)
    } else {
        mean(scores.iter().filter_map(|s| s.value))
    }
}

/// Whether every scorer passed (`None` without scorers; a scorer that failed did not pass).
pub fn all_passed(scores: &[Score]) -> Option<bool> {
    if scores.is_empty() {
        return None;
    }
    Some(scores.iter().all(|s| s.passed == Some(true)))
}

/// A job as the registry knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    /// The job's name (file stem).
    pub name: String,
    /// Its job file.
    pub file: String,
    /// `description` from the file.
    pub description: String,
    /// `compare` or `benchmark`.
    pub kind: String,
    /// The cron expression as written, if scheduled.
    pub schedule: Option<String>,
    /// The schedule in words.
    pub schedule_words: Option<String>,
    /// Whether the job is enabled.
    pub enabled: bool,
    /// Next firing, Unix ms.
    pub next_run_ms: Option<i64>,
    /// Targets as written (`endpoint/model`, `endpoint/*`).
    pub targets: Vec<String>,
    /// Whether a run is going now.
    pub running: bool,
    /// The last valid version is running but the file now has errors.
    pub stale_errors: Vec<String>,
}

/// A job file that failed to load, with its problems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvalidJob {
    /// The job file's path.
    pub file: String,
    /// Each problem as `path:line:col: message`.
    pub errors: Vec<String>,
}

/// Aggregates over a window of request records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsGroup {
    /// The group key: model, provider or job name (empty for the overall group).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub name: String,
    /// Requests counted.
    pub total_requests: u64,
    /// Mean response time, ms.
    pub avg_response_time_ms: f64,
    /// Median response time, ms.
    pub p50_ms: f64,
    /// 95th percentile response time, ms.
    pub p95_ms: f64,
    /// 99th percentile response time, ms.
    pub p99_ms: f64,
    /// Errors / requests, 0..=1.
    pub error_rate: f64,
    /// Token totals.
    pub tokens: TokenStats,
}

/// Token totals of a stats group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenStats {
    /// Prompt tokens.
    pub prompt: u64,
    /// Completion tokens.
    pub completion: u64,
    /// Total tokens.
    pub total: u64,
    /// Total tokens / requests.
    pub avg_per_request: f64,
}

/// The analytics summary (`/api/v1/stats`, `evald stats`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The window, days.
    pub days: u32,
    /// Overall figures.
    #[serde(flatten)]
    pub overall: StatsGroup,
    /// By model.
    pub by_model: Vec<StatsGroup>,
    /// By provider.
    pub by_provider: Vec<StatsGroup>,
    /// By job.
    pub by_job: Vec<StatsGroup>,
}

/// Which request records an export or a listing wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecordFilter {
    /// Inclusive lower bound, Unix ms.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, Unix ms.
    pub until_ms: Option<i64>,
    /// Only this job.
    pub job: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this run.
    pub run_id: Option<String>,
    /// At most this many records.
    pub limit: Option<u64>,
}

impl RecordFilter {
    /// Whether a row passes the filter's field tests (the time window and limit are applied by
    /// the reader).
    pub fn matches(&self, r: &RowRef<'_>) -> bool {
        self.since_ms.is_none_or(|s| r.timestamp_ms >= s)
            && self.until_ms.is_none_or(|u| r.timestamp_ms < u)
            && self.job.as_deref().is_none_or(|j| r.job == j)
            && self.model.as_deref().is_none_or(|m| r.model == m)
            && self.run_id.as_deref().is_none_or(|id| r.run_id == id)
    }
}

/// A request record as the store reads it: text borrowed from the stored bytes, the messages,
/// metadata and scores as the JSON they are stored as. The exports write it without parsing
/// anything; [`RowRef::to_record`] parses it for the pages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowRef<'a> {
    /// [`Record::id`].
    pub id: u64,
    /// [`Record::timestamp_ms`].
    pub timestamp_ms: i64,
    /// [`Record::model`].
    pub model: &'a str,
    /// [`Record::provider`].
    pub provider: &'a str,
    /// [`Record::messages`] as a JSON array.
    pub messages_json: &'a str,
    /// [`Record::temperature`].
    pub temperature: Option<f64>,
    /// [`Record::max_tokens`].
    pub max_tokens: Option<u32>,
    /// [`Record::top_p`].
    pub top_p: Option<f64>,
    /// [`Record::response`].
    pub response: Option<&'a str>,
    /// [`Record::response_time_ms`].
    pub response_time_ms: Option<f64>,
    /// [`Record::prompt_tokens`].
    pub prompt_tokens: Option<u32>,
    /// [`Record::completion_tokens`].
    pub completion_tokens: Option<u32>,
    /// [`Record::total_tokens`].
    pub total_tokens: Option<u32>,
    /// [`Record::finish_reason`].
    pub finish_reason: Option<&'a str>,
    /// [`Record::error`].
    pub error: Option<&'a str>,
    /// [`Record::metadata`] as a JSON object.
    pub metadata_json: &'a str,
    /// [`Record::job`].
    pub job: &'a str,
    /// [`Record::run_id`].
    pub run_id: &'a str,
    /// [`Record::case_id`].
    pub case_id: &'a str,
    /// [`Record::endpoint`].
    pub endpoint: &'a str,
    /// [`Record::ttft_ms`].
    pub ttft_ms: Option<f64>,
    /// [`Record::scores`] as a JSON array.
    pub scores_json: &'a str,
}

impl RowRef<'_> {
    /// The owned record; JSON that does not parse reads as empty.
    pub fn to_record(&self) -> Record {
        Record {
            id: self.id,
            timestamp_ms: self.timestamp_ms,
            model: self.model.into(),
            provider: self.provider.into(),
            messages: serde_json::from_str(self.messages_json).unwrap_or_default(),
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            top_p: self.top_p,
            response: self.response.map(String::from),
            response_time_ms: self.response_time_ms,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            total_tokens: self.total_tokens,
            finish_reason: self.finish_reason.map(String::from),
            error: self.error.map(String::from),
            metadata: serde_json::from_str(self.metadata_json).unwrap_or_default(),
            job: self.job.into(),
            run_id: self.run_id.into(),
            case_id: self.case_id.into(),
            endpoint: self.endpoint.into(),
            ttft_ms: self.ttft_ms,
            scores: serde_json::from_str(self.scores_json).unwrap_or_default(),
        }
    }
}

/// The JSON texts a [`RowRef`] of an owned [`Record`] borrows.
#[derive(Debug, Default)]
pub struct RecordJson {
    messages: String,
    metadata: String,
    scores: String,
}

impl RecordJson {
    /// Serialises the record's messages, metadata and scores, and returns the row.
    pub fn row<'a>(&'a mut self, r: &'a Record) -> RowRef<'a> {
        fn fill<T: Serialize + ?Sized>(buf: &mut String, v: &T) {
            buf.clear();
            // Serialising these plain types cannot fail; an empty string would read as empty.
            if let Ok(s) = serde_json::to_string(v) {
                *buf = s;
            }
        }
        fill(&mut self.messages, &r.messages);
        fill(&mut self.metadata, &r.metadata);
        fill(&mut self.scores, &r.scores);
        RowRef {
            id: r.id,
            timestamp_ms: r.timestamp_ms,
            model: &r.model,
            provider: &r.provider,
            messages_json: &self.messages,
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
            metadata_json: &self.metadata,
            job: &r.job,
            run_id: &r.run_id,
            case_id: &r.case_id,
            endpoint: &r.endpoint,
            ttft_ms: r.ttft_ms,
            scores_json: &self.scores,
        }
    }
}

/// An error while reading the store, shown as a 500 page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReadError {}

/// Everything the web crate may ask of the daemon. No method writes: the page, the API, the
/// exports and the metrics are read-only by construction. Methods are blocking (the store is
/// redb); handlers call them from `spawn_blocking`.
pub trait ReadModel: Send + Sync + 'static {
    /// Every valid job, by name.
    fn jobs(&self) -> Vec<JobInfo>;
    /// Job files that failed to load (and valid jobs whose file broke since).
    fn invalid_jobs(&self) -> Vec<InvalidJob>;
    /// Runs, newest first, of one job or of all.
    fn runs(&self, job: Option<&str>, limit: usize) -> Result<Vec<RunSummary>, ReadError>;
    /// One run.
    fn run(&self, id: &str) -> Result<Option<RunSummary>, ReadError>;
    /// The records of one run, in the order they were sent, at most `limit`.
    fn run_records(&self, id: &str, limit: usize) -> Result<Vec<Record>, ReadError>;
    /// Request records, newest first, passing the filter (`limit` applies).
    fn recent_records(&self, filter: &RecordFilter) -> Result<Vec<Record>, ReadError>;
    /// Request records oldest first, passing the filter, from one read snapshot; `sink` returns
    /// false to stop early (the client went away). Memory stays flat however many rows.
    fn export_records(
        &self,
        filter: &RecordFilter,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), ReadError>;
    /// The analytics summary over the last `days` days.
    fn stats(&self, days: u32) -> Result<Stats, ReadError>;
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_score_ref_writes_json_as_a_score_does() {
        let full = Score {
            name: "judge \"q\"".into(),
            value: Some(0.25),
            passed: Some(false),
            weight: 2.0,
            error: Some("trap: unreachable".into()),
            note: Some("ünïcödé\nline".into()),
        };
        let bare = Score {
            name: "contains".into(),
            value: None,
            passed: None,
            weight: 1.0,
            error: None,
            note: None,
        };
        for s in [&full, &bare] {
            assert_eq!(
                serde_json::to_string(&ScoreRef::from(s)).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
        let both = [&full, &bare];
        let refs: Vec<ScoreRef> = both.iter().map(|s| ScoreRef::from(*s)).collect();
        assert_eq!(
            serde_json::to_string(&refs).unwrap(),
            serde_json::to_string(&both).unwrap()
        );
    }
}
