//! The analytics summary over a window of records.

use serde::{Deserialize, Serialize};

/// Aggregates over a window of request records.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsGroup {
    /// The group key: model, provider or job name (empty for the overall group).
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub name: String,
    /// Requests counted.
    pub total_requests: u64,
    /// Requests with a response time: the sample of the mean and the percentiles, which are
    /// 0 and mean nothing when it is 0 (every request failed). See [`StatsGroup::latency`].
    #[serde(default)]
    pub latency_samples: u64,
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
    /// What the group's requests cost, USD (those with a known cost); `null` when none had.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Answered requests with no known cost while others had one (see `cost_usd`).
    #[serde(default, skip_serializing_if = "crate::run::is_zero")]
    pub cost_unpriced: u64,
}

impl StatsGroup {
    /// `ms`, one of the group's latency figures, or `None` when no request had a response
    /// time (shown as `—`, not as 0 ms).
    pub fn latency(&self, ms: f64) -> Option<f64> {
        (self.latency_samples > 0).then_some(ms)
    }
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
