//! A job file as serde reads it: every key optional and spanned, unknown keys rejected. The
//! validator turns it into a [`super::Job`].

use serde::Deserialize;
use toml::Spanned;

use crate::config::Num;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    pub(super) description: Option<String>,
    pub(super) kind: Option<Spanned<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) enabled: Option<bool>,
    pub(super) targets: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) repeat: Option<Spanned<i64>>,
    pub(super) stream: Option<bool>,
    pub(super) params: Option<RawParams>,
    #[serde(default)]
    pub(super) cases: Vec<Spanned<RawCase>>,
    #[serde(default)]
    pub(super) generators: Vec<Spanned<RawPlugin>>,
    #[serde(default)]
    pub(super) scorers: Vec<Spanned<RawScorer>>,
    pub(super) load: Option<Spanned<RawLoad>>,
    pub(super) watch: Option<Spanned<RawWatch>>,
    #[serde(default)]
    pub(super) alerts: Vec<Spanned<RawAlert>>,
    pub(super) budget_usd_month: Option<Spanned<Num>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlert {
    pub(super) name: Option<Spanned<String>>,
    pub(super) when: Option<Spanned<String>>,
    pub(super) warn: Option<Spanned<String>>,
    pub(super) targets: Option<Vec<Spanned<String>>>,
    pub(super) for_runs: Option<Spanned<i64>>,
    pub(super) resolve_runs: Option<Spanned<i64>>,
    pub(super) renotify: Option<Spanned<String>>,
    pub(super) notify: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    pub(super) baseline: Option<Spanned<String>>,
    pub(super) significance: Option<Spanned<Num>>,
    pub(super) min_drop: Option<Spanned<Num>>,
    pub(super) confirm: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParams {
    pub(super) temperature: Option<Spanned<Num>>,
    pub(super) max_tokens: Option<Spanned<i64>>,
    pub(super) top_p: Option<Spanned<Num>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    pub(super) id: Option<Spanned<String>>,
    pub(super) prompt: Option<String>,
    pub(super) messages: Option<Vec<Spanned<RawMessage>>>,
    pub(super) reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMessage {
    pub(super) role: String,
    pub(super) content: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub(super) plugin: Spanned<String>,
    #[serde(default)]
    pub(super) config: toml::Table,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScorer {
    pub(super) builtin: Option<Spanned<String>>,
    pub(super) plugin: Option<Spanned<String>>,
    pub(super) name: Option<Spanned<String>>,
    pub(super) weight: Option<Spanned<Num>>,
    pub(super) threshold: Option<Spanned<Num>>,
    pub(super) value: Option<Spanned<String>>,
    pub(super) pattern: Option<Spanned<String>>,
    pub(super) required: Option<Spanned<Vec<String>>>,
    pub(super) max_ms: Option<Spanned<Num>>,
    pub(super) config: Option<Spanned<toml::Table>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) memory: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLoad {
    pub(super) concurrency: Option<Spanned<i64>>,
    pub(super) rate: Option<Spanned<Num>>,
    pub(super) requests: Option<Spanned<i64>>,
    pub(super) duration: Option<Spanned<String>>,
    pub(super) warmup: Option<Spanned<i64>>,
    pub(super) slo_ttft_ms: Option<Spanned<Num>>,
    pub(super) slo_tpot_ms: Option<Spanned<Num>>,
    pub(super) slo_e2e_ms: Option<Spanned<Num>>,
    pub(super) retries: Option<Spanned<i64>>,
}

/// A TOML table as JSON text, for plugin configs.
pub(super) fn table_json(t: &toml::Table) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "{}".into())
}
