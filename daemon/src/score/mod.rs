//! Scoring: every scorer of a job turns one response into a [`Score`] (`value` in 0..=1,
//! `passed = value >= threshold`). Built-in scorers are native Rust; plugin scorers run in the
//! WebAssembly sandbox of `evald-plugin-host`. A scorer that fails — a plugin trap, timeout,
//! memory overrun, its own `Err`, or a value outside 0..=1 — gives a score with an `error` and
//! no value; the other scorers, the run and the daemon go on.

pub mod plugins;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use evald_model::{Record, Score};

use crate::job::{Case, Job, ScorerKind, ScorerSpec};
use crate::metrics::Metrics;
use crate::score::plugins::{PluginError, Plugins, ScorerPlugin};

/// The scorers of one run, with their plugins loaded.
#[derive(Clone)]
pub struct Scorers {
    specs: Arc<Vec<ScorerSpec>>,
    plugins: Arc<HashMap<PathBuf, ScorerPlugin>>,
    metrics: Arc<Metrics>,
}

impl Scorers {
    /// Loads (or takes from the cache) every plugin the job's scorers name. A plugin that cannot
    /// load is reported by its scorer on every record instead of failing the run.
    /// Plugin failures are counted in `metrics`.
    pub async fn for_job(
        job: &Job,
        plugins: &Plugins,
        metrics: Arc<Metrics>,
    ) -> (Scorers, Vec<String>) {
        let mut loaded = HashMap::new();
        let mut problems = Vec::new();
        for s in &job.scorers {
            if let ScorerKind::Plugin { path, .. } = &s.kind
                && !loaded.contains_key(path)
            {
                match plugins.scorer_async(path).await {
                    Ok(p) => {
                        loaded.insert(path.clone(), p);
                    }
                    Err(e) => problems.push(format!("scorer `{}`: {e}", s.name)),
                }
            }
        }
        (
            Scorers {
                specs: Arc::new(job.scorers.clone()),
                plugins: Arc::new(loaded),
                metrics,
            },
            problems,
        )
    }

    /// No scorers at all.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Scores one record (a request that failed is not scored: its error is the verdict).
    pub async fn score(&self, case: &Case, record: &Record) -> Vec<Score> {
        if record.error.is_some() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.specs.len());
        for s in self.specs.iter() {
            let result = match &s.kind {
                ScorerKind::Plugin {
                    path,
                    config_json,
                    limits,
                    ..
                } => {
                    let outcome = match self.plugins.get(path) {
                        None => Err((
                            "load",
                            format!("plugin {} could not be loaded", file_name(path)),
                        )),
                        Some(p) => p
                            .score(case, record, config_json, *limits)
                            .await
                            .map_err(|e: PluginError| (e.cause(), e.to_string())),
                    };
                    outcome.map_err(|(cause, text)| {
                        self.metrics.plugin_error(&file_name(path), cause);
                        text
                    })
                }
                builtin => Ok(builtin_score(builtin, case, record)),
            };
            let score = verdict(s, result);
            if let (ScorerKind::Plugin { path, .. }, Some(e)) = (&s.kind, &score.error)
                && e.starts_with("score ")
            {
                // A value outside 0..1, found by `verdict`.
                self.metrics.plugin_error(&file_name(path), "bad_score");
            }
            out.push(score);
        }
        out
    }
}

/// A plugin's file name, as its errors and metrics name it.
pub fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Turns a scorer's result into a score: a value outside 0..=1 (or NaN) is an error.
fn verdict(s: &ScorerSpec, result: Result<(f64, Option<String>), String>) -> Score {
    let mut score = Score {
        name: s.name.clone(),
        value: None,
        passed: None,
        weight: s.weight,
        error: None,
        note: None,
    };
    match result {
        Ok((v, note)) if v.is_finite() && (0.0..=1.0).contains(&v) => {
            score.value = Some(v);
            score.passed = Some(v >= s.threshold);
            score.note = note;
        }
        Ok((v, _)) => score.error = Some(format!("score {v} is outside 0..1")),
        Err(e) => score.error = Some(e),
    }
    score
}

/// The built-in scorers: pure functions of the case and the record.
pub fn builtin_score(kind: &ScorerKind, case: &Case, r: &Record) -> (f64, Option<String>) {
    let response = r.response.as_deref().unwrap_or_default();
    let expected = |v: &Option<String>| v.clone().or_else(|| case.reference.clone());
    let b = |ok: bool| if ok { 1.0 } else { 0.0 };
    match kind {
        ScorerKind::Contains(v) => match expected(v) {
            Some(e) => (b(response.contains(&e)), None),
            None => (0.0, Some("no value and no reference to look for".into())),
        },
        ScorerKind::IContains(v) => match expected(v) {
            Some(e) => (b(response.to_lowercase().contains(&e.to_lowercase())), None),
            None => (0.0, Some("no value and no reference to look for".into())),
        },
        ScorerKind::Equals(v) => match expected(v) {
            Some(e) => (b(response.trim() == e.trim()), None),
            None => (
                0.0,
                Some("no value and no reference to compare with".into()),
            ),
        },
        ScorerKind::Regex(re) => (b(re.is_match(response)), None),
        ScorerKind::Json(required) => json_score(response, required),
        ScorerKind::MaxLatency(max) => match r.response_time_ms {
            None => (0.0, Some("no response time".into())),
            Some(t) if t <= *max => (1.0, None),
            // Falls off linearly to 0 at twice the budget: 10 % over is 0.9, not a cliff.
            Some(t) => (
                ((2.0 * max - t) / max).clamp(0.0, 1.0),
                Some(format!("{t:.0} ms > {max:.0} ms")),
            ),
        },
        ScorerKind::Plugin { .. } => (0.0, Some("plugin scorers are not built in".into())),
    }
}

/// Valid JSON (a fenced ```json block is accepted); with `required`, the share of those keys the
/// top-level object has.
fn json_score(response: &str, required: &[String]) -> (f64, Option<String>) {
    let t = response.trim();
    let t = t
        .strip_prefix("```json")
        .or_else(|| t.strip_prefix("```"))
        .and_then(|s| s.strip_suffix("```"))
        .unwrap_or(t)
        .trim();
    let v: serde_json::Value = match serde_json::from_str(t) {
        Ok(v) => v,
        Err(e) => return (0.0, Some(format!("not JSON: {e}"))),
    };
    if required.is_empty() {
        return (1.0, None);
    }
    let Some(obj) = v.as_object() else {
        return (0.0, Some("JSON, but not an object".into()));
    };
    let missing: Vec<&str> = required
        .iter()
        .filter(|k| !obj.contains_key(k.as_str()))
        .map(String::as_str)
        .collect();
    let have = (required.len() - missing.len()) as f64 / required.len() as f64;
    let note = (!missing.is_empty()).then(|| format!("missing: {}", missing.join(", ")));
    (have, note)
}

pub use evald_model::{all_passed, weighted_mean};

#[cfg(test)]
mod tests {
    use super::*;
    use evald_model::{Message, Metadata};

    fn case(reference: Option<&str>) -> Case {
        Case {
            id: "c".into(),
            messages: vec![Message {
                role: "user".into(),
                content: "q".into(),
            }],
            reference: reference.map(String::from),
        }
    }

    fn rec(response: &str, ms: f64) -> Record {
        Record {
            id: 1,
            timestamp_ms: 0,
            model: "m".into(),
            provider: "p".into(),
            messages: vec![],
            temperature: None,
            max_tokens: None,
            top_p: None,
            response: Some(response.into()),
            response_time_ms: Some(ms),
            prompt_tokens: None,
            completion_tokens: None,
            total_tokens: None,
            finish_reason: None,
            error: None,
            metadata: Metadata::default(),
            job: "j".into(),
            run_id: "r".into(),
            case_id: "c".into(),
            endpoint: "e".into(),
            ttft_ms: None,
            scores: vec![],
            served_model: None,
            system_fingerprint: None,
            cost_usd: None,
            cost_source: None,
        }
    }

    #[test]
    fn builtins_score_as_documented() {
        let c = case(Some("Paris"));
        let v = |k: ScorerKind, resp: &str, ms: f64| builtin_score(&k, &c, &rec(resp, ms)).0;
        assert_eq!(v(ScorerKind::Contains(None), "It is Paris.", 1.0), 1.0);
        assert_eq!(v(ScorerKind::Contains(None), "It is paris.", 1.0), 0.0);
        assert_eq!(v(ScorerKind::IContains(None), "It is paris.", 1.0), 1.0);
        assert_eq!(
            v(ScorerKind::Contains(Some("Lyon".into())), "Paris", 1.0),
            0.0
        );
        assert_eq!(v(ScorerKind::Equals(None), " Paris\n", 1.0), 1.0);
        assert_eq!(v(ScorerKind::Equals(None), "Paris.", 1.0), 0.0);
        let re = regex::Regex::new("^[A-Z][a-z]+\\.?$").unwrap();
        assert_eq!(v(ScorerKind::Regex(re), "Paris.", 1.0), 1.0);
        assert_eq!(v(ScorerKind::Json(vec![]), "{\"a\":1}", 1.0), 1.0);
        assert_eq!(v(ScorerKind::Json(vec![]), "not json", 1.0), 0.0);
        assert_eq!(
            v(
                ScorerKind::Json(vec!["a".into(), "b".into()]),
                "```json\n{\"a\":1}\n```",
                1.0
            ),
            0.5
        );
        assert_eq!(v(ScorerKind::MaxLatency(100.0), "x", 80.0), 1.0);
        assert!((v(ScorerKind::MaxLatency(100.0), "x", 110.0) - 0.9).abs() < 1e-9);
        assert_eq!(v(ScorerKind::MaxLatency(100.0), "x", 500.0), 0.0);
    }

    #[test]
    fn a_value_outside_0_1_is_an_error_not_a_score() {
        let spec = ScorerSpec {
            name: "s".into(),
            weight: 1.0,
            threshold: 0.5,
            kind: ScorerKind::Json(vec![]),
        };
        for bad in [f64::NAN, 7.0, -0.1] {
            let s = verdict(&spec, Ok((bad, None)));
            assert_eq!(s.value, None);
            assert!(s.error.is_some());
        }
        let s = verdict(&spec, Ok((0.5, None)));
        assert_eq!((s.value, s.passed), (Some(0.5), Some(true)));
    }

    #[test]
    fn weighted_mean_uses_weights_and_skips_errors() {
        let mk = |v: Option<f64>, w: f64| Score {
            name: "x".into(),
            value: v,
            passed: v.map(|v| v >= 0.5),
            weight: w,
            error: None,
            note: None,
        };
        assert_eq!(
            weighted_mean(&[mk(Some(1.0), 3.0), mk(Some(0.0), 1.0), mk(None, 5.0)]),
            Some(0.75)
        );
        assert_eq!(weighted_mean(&[mk(None, 1.0)]), None);
        assert_eq!(
            all_passed(&[mk(Some(1.0), 1.0), mk(None, 1.0)]),
            Some(false)
        );
    }
}
