//! What one record adds to its rollups.

use evald_model::Record;

/// What one record adds to its rollups; taken from the record before it is encoded, so the
/// writer thread does not need the record itself.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Counted in the figures (requests, errors, latency, tokens). A benchmark's warm-up
    /// request is not (DESIGN: warm-up requests are excluded from the results), but what it
    /// cost is spent all the same: it counts in the cost, and so in a monthly budget.
    pub counted: bool,
    /// The record has an error.
    pub error: bool,
    /// Response time of a successful request, ms.
    pub latency_ms: Option<f64>,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Total tokens.
    pub total_tokens: u64,
    /// Its cost, USD, when known.
    pub cost_usd: Option<f64>,
}

impl Sample {
    /// A record's contribution: all of it, or for a warm-up request only its cost (none when
    /// that is unknown).
    pub fn of(r: &Record) -> Option<Sample> {
        if r.metadata.warmup {
            return r.cost_usd.map(|c| Sample {
                cost_usd: Some(c),
                ..Sample::default()
            });
        }
        Some(Sample {
            counted: true,
            error: r.error.is_some(),
            latency_ms: r.response_time_ms.filter(|_| r.error.is_none()),
            prompt_tokens: r.prompt_tokens.unwrap_or(0) as u64,
            completion_tokens: r.completion_tokens.unwrap_or(0) as u64,
            total_tokens: r.total_tokens.unwrap_or(0) as u64,
            cost_usd: r.cost_usd,
        })
    }
}
