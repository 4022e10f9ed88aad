//! The request record: what one request to one target for one case sent, got and scored,
//! in the shape of the export columns, owned ([`Record`]) and borrowed ([`RowRef`]).

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
    /// Time to the first content token, ms (streams): equal to the TTFT unless the model
    /// reasoned (or called a tool) first; the TTFT is to the first token of any kind.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ttfc_ms: Option<f64>,
    /// Reasoning tokens among the completion tokens (`completion_tokens_details`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reasoning_tokens: Option<u32>,
    /// Prompt tokens served from the provider's cache (`prompt_tokens_details`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cached_tokens: Option<u32>,
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
    /// The values of the endpoint's `identity_headers` in the response, by header name.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty", default)]
    pub identity: std::collections::BTreeMap<String, String>,
    /// A re-send of a newly failing case (`[watch] confirm`): its outcome is the case's.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub confirm: bool,
    /// Compare jobs: a fingerprint (xxh3, hex) of what decides the case's pass or fail besides
    /// the answer — its messages, its reference and the job's scorers with their settings. A
    /// case whose fingerprint differs from the baseline's was edited, and is left out of the
    /// watch's test rather than its new outcome blamed on the model.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub case_hash: Option<String>,
}

/// One request to one target for one case: the stored request record, in the shape of the
/// export columns (DESIGN.md "Stored request record and export columns").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
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
    /// End-to-end latency of the final attempt, ms; for a timeout, how long it waited (no
    /// aggregate counts a failed request's time as a latency).
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
    /// The model the response says served it (its `model` field), which a gateway or a moving
    /// alias may resolve differently from the name sent.
    pub served_model: Option<String>,
    /// The response's `system_fingerprint`, when it has one.
    pub system_fingerprint: Option<String>,
    /// What the request cost, USD; `None` when unknown (never 0 for unknown).
    pub cost_usd: Option<f64>,
    /// `gateway` (the gateway's `x-litellm-response-cost`) or `price` (the price table).
    pub cost_source: Option<String>,
}

impl Record {
    /// The target this request went to, `endpoint/model`.
    pub fn target(&self) -> String {
        format!("{}/{}", self.endpoint, self.model)
    }
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
    /// Only this model (`careful`), or this target (`demo/careful`).
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
            // A model, or a target `endpoint/model` (a model name may hold `/` itself).
            && self.model.as_deref().is_none_or(|m| {
                r.model == m
                    || m
                        .split_once('/')
                        .is_some_and(|(e, model)| e == r.endpoint && model == r.model)
            })
            && self.run_id.as_deref().is_none_or(|id| r.run_id == id)
    }
}

/// A request record as the store reads it: text borrowed from the stored bytes, the messages,
/// metadata and scores as the JSON they are stored as. The exports write it without parsing
/// anything; [`RowRef::to_record`] parses it for the pages.
///
/// Its `Serialize` is the one definition of the export: the field names (as renamed) are the
/// CSV columns and JSON keys, in this order. Two fields are marked for the export writers
/// ([`TIMESTAMP_MS`], [`RAW_JSON`]); any other serializer sees the plain number and text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct RowRef<'a> {
    /// [`Record::id`].
    pub id: u64,
    /// [`Record::timestamp_ms`]; exported as RFC 3339 UTC with milliseconds.
    #[serde(rename = "timestamp", serialize_with = "mark_timestamp")]
    pub timestamp_ms: i64,
    /// [`Record::model`].
    pub model: &'a str,
    /// [`Record::provider`].
    pub provider: &'a str,
    /// [`Record::messages`] as a JSON array.
    #[serde(rename = "messages", serialize_with = "mark_raw_json")]
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
    #[serde(rename = "metadata", serialize_with = "mark_raw_json")]
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
    #[serde(rename = "scores", serialize_with = "mark_raw_json")]
    pub scores_json: &'a str,
    /// [`Record::served_model`].
    pub served_model: Option<&'a str>,
    /// [`Record::system_fingerprint`].
    pub system_fingerprint: Option<&'a str>,
    /// [`Record::cost_usd`].
    pub cost_usd: Option<f64>,
    /// [`Record::cost_source`]; JSON exports only (see [`JSON_ONLY_COLUMNS`]).
    pub cost_source: Option<&'a str>,
}

/// The newtype name that marks a field of stored JSON text: export writers copy it in as it
/// is (JSON) or as the cell's text (CSV); an empty text is `null`.
pub const RAW_JSON: &str = "$evald::raw_json";
/// Fields the CSV export leaves out (JSON exports keep them): `cost_source` says where the
/// cost came from; the CSV, whose columns spreadsheets and scripts already read by position,
/// gains `cost_usd` only.
pub const JSON_ONLY_COLUMNS: [&str; 1] = ["cost_source"];

/// The newtype name that marks the record's timestamp (Unix ms): export writers write it as
/// RFC 3339 UTC with milliseconds.
pub const TIMESTAMP_MS: &str = "$evald::timestamp_ms";

fn mark_raw_json<S: serde::Serializer>(v: &&str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_newtype_struct(RAW_JSON, *v)
}

fn mark_timestamp<S: serde::Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_newtype_struct(TIMESTAMP_MS, v)
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
            served_model: self.served_model.map(String::from),
            system_fingerprint: self.system_fingerprint.map(String::from),
            cost_usd: self.cost_usd,
            cost_source: self.cost_source.map(String::from),
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
            served_model: r.served_model.as_deref(),
            system_fingerprint: r.system_fingerprint.as_deref(),
            cost_usd: r.cost_usd,
            cost_source: r.cost_source.as_deref(),
        }
    }
}
