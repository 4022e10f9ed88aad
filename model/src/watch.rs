//! Watching over time: a run's per-target verdict against its baseline, the served model's
//! identity and the events its changes make, and the case-by-case difference of two runs.
//! The statistics themselves (the McNemar test, the Wilson interval) are the daemon's
//! (`run/watch.rs`); this is what they produce and what the pages read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::score::{all_passed, weighted_mean};

/// A target's verdict against its baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No significant change.
    Ok,
    /// The pass rate dropped by at least `min_drop`, and the McNemar test says it is not chance.
    Regressed,
    /// The pass rate rose by at least `min_drop`, significantly.
    Improved,
    /// No baseline yet, or too few paired cases to test.
    Insufficient,
}

impl Verdict {
    /// The word shown and serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Insufficient => "insufficient",
        }
    }
}

/// One target's test against the baseline (the `watch` object of a run summary's target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetWatch {
    /// The verdict.
    pub verdict: Verdict,
    /// Why `insufficient`, or what the baseline was.
    pub reason: String,
    /// Exact two-sided McNemar p-value on the discordant pairs.
    pub p_value: Option<f64>,
    /// Pass rate of this run over the paired, non-flaky cases.
    pub pass_rate: Option<f64>,
    /// Wilson 95 % interval of `pass_rate`.
    pub pass_rate_ci95: Option<[f64; 2]>,
    /// The baseline's pass rate over the same cases.
    pub baseline_pass_rate: Option<f64>,
    /// Cases (and repeats) compared.
    pub paired: u64,
    /// Passed in the baseline, failed now (case ids; `id#r` for repeat r > 0).
    pub newly_failing: Vec<String>,
    /// Failed in the baseline, passed now.
    pub newly_passing: Vec<String>,
    /// Flipped at least twice within the baseline's window: left out of the test.
    pub flaky: Vec<String>,
    /// Edited since the baseline (messages, reference or scorers: `metadata.case_hash`): left
    /// out of the test, since the old outcome was of another question.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
}

/// What a response says about the model behind the name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The response's `model`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub served_model: Option<String>,
    /// The response's `system_fingerprint`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub system_fingerprint: Option<String>,
    /// The endpoint's `identity_headers`, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub headers: BTreeMap<String, String>,
}

impl Identity {
    /// The identity a record reports.
    pub fn of(r: &Record) -> Identity {
        Identity {
            served_model: r.served_model.clone(),
            system_fingerprint: r.system_fingerprint.clone(),
            headers: r.metadata.identity.clone(),
        }
    }

    /// In words: `model gpt-4o-2024-08-06, fingerprint fp_1, x-litellm-model-id abc`.
    pub fn words(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = &self.served_model {
            parts.push(format!("model {m}"));
        }
        if let Some(f) = &self.system_fingerprint {
            parts.push(format!("fingerprint {f}"));
        }
        for (k, v) in &self.headers {
            parts.push(format!("{k} {v}"));
        }
        parts.join(", ")
    }

    /// Whether nothing identifies the model.
    pub fn is_empty(&self) -> bool {
        self.served_model.is_none() && self.system_fingerprint.is_none() && self.headers.is_empty()
    }

    /// Whether `self` (newer) names a different model than `before`: a part known on both
    /// sides differs. A part only one side has (a header newly configured, a fingerprint a
    /// server stopped sending) is not a change of model.
    pub fn differs_from(&self, before: &Identity) -> bool {
        let both =
            |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if a != b);
        both(&self.served_model, &before.served_model)
            || both(&self.system_fingerprint, &before.system_fingerprint)
            || self
                .headers
                .iter()
                .any(|(k, v)| before.headers.get(k).is_some_and(|b| b != v))
    }

    /// The most common identity among a target's successful records (the first seen wins a
    /// tie), or `None` when none identified itself.
    pub fn of_run<'a>(records: impl IntoIterator<Item = &'a Record>) -> Option<Identity> {
        let mut seen: Vec<(Identity, usize)> = Vec::new();
        for r in records.into_iter().filter(|r| r.error.is_none()) {
            let id = Identity::of(r);
            if id.is_empty() {
                continue;
            }
            match seen.iter_mut().find(|(i, _)| *i == id) {
                Some((_, n)) => *n += 1,
                None => seen.push((id, 1)),
            }
        }
        let max = seen.iter().map(|(_, n)| *n).max()?;
        seen.into_iter().find(|(_, n)| *n == max).map(|(i, _)| i)
    }
}

/// Something that happened to a job's target, worth marking on its charts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// When, Unix ms.
    pub time_ms: i64,
    /// `served_model_changed`.
    pub kind: String,
    /// The job.
    pub job: String,
    /// `endpoint/model`.
    pub target: String,
    /// The run that saw it.
    pub run_id: String,
    /// What it was.
    pub before: Identity,
    /// What it is.
    pub after: Identity,
}

/// The kind of event a changed identity makes.
pub const SERVED_MODEL_CHANGED: &str = "served_model_changed";

/// A case as a watched run pairs it: the case id, and the repeat when the job repeats cases.
pub fn case_key(r: &Record) -> String {
    match r.metadata.repeat {
        Some(n) if n > 0 => format!("{}#{n}", r.case_id),
        _ => r.case_id.clone(),
    }
}

/// Whether a record passed: an error is a fail (no answer); unscored is unknown.
pub fn passed(r: &Record) -> Option<bool> {
    if r.error.is_some() {
        return Some(false);
    }
    all_passed(&r.scores)
}

/// Each case key's fingerprint in a run (`metadata.case_hash`; the same for every target).
/// Records from before fingerprints have none, and pair as before.
pub fn case_hashes<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeMap<String, &'a str> {
    records
        .into_iter()
        .filter_map(|r| Some((case_key(r), r.metadata.case_hash.as_deref()?)))
        .collect()
}

/// Each target's case outcomes in a run: target → case key → passed. A confirming re-send
/// (`metadata.confirm`) decides its case; warm-ups, unscored records and failed requests are
/// left out: a request that got no answer (an outage, a 429) says nothing of the answers, and
/// `error_rate` is the figure for it — counting it as a wrong answer made an outage read as a
/// regression of the model.
pub fn outcomes<'a>(
    records: impl IntoIterator<Item = &'a Record>,
) -> BTreeMap<String, BTreeMap<String, bool>> {
    let mut out: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    let mut confirmed: Vec<(String, String, bool)> = Vec::new();
    for r in records {
        if r.metadata.warmup || r.error.is_some() {
            continue;
        }
        let Some(p) = passed(r) else { continue };
        if r.metadata.confirm {
            confirmed.push((r.target(), case_key(r), p));
        } else {
            out.entry(r.target()).or_default().insert(case_key(r), p);
        }
    }
    for (t, k, p) in confirmed {
        out.entry(t).or_default().insert(k, p);
    }
    out
}

/// One case and target in two runs: what changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffRow {
    /// `endpoint/model`.
    pub target: String,
    /// Case id (`id#r` for repeat r > 0).
    pub case: String,
    /// Passed in run A (`None`: unscored, or absent).
    pub passed_a: Option<bool>,
    /// Passed in run B.
    pub passed_b: Option<bool>,
    /// Weighted score in A.
    pub score_a: Option<f64>,
    /// Weighted score in B.
    pub score_b: Option<f64>,
    /// Latency in A, ms.
    pub latency_a_ms: Option<f64>,
    /// Latency in B, ms.
    pub latency_b_ms: Option<f64>,
    /// The answer text differs.
    pub answer_changed: bool,
    /// The case itself was edited between the runs (messages, reference or scorers).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_changed: bool,
    /// A's answer (for folding open on the page).
    pub answer_a: Option<String>,
    /// B's answer.
    pub answer_b: Option<String>,
}

impl DiffRow {
    /// The case as a diff shows it, marked when it was edited between the runs.
    pub fn case_label(&self) -> String {
        if self.case_changed {
            format!("{} (edited)", self.case)
        } else {
            self.case.clone()
        }
    }

    /// pass → fail or fail → pass.
    pub fn flipped(&self) -> bool {
        matches!((self.passed_a, self.passed_b), (Some(a), Some(b)) if a != b)
    }
}

/// The case-by-case difference of run A and run B: one row per target and case in either,
/// flipped cases first, then by target and case.
pub fn diff(a: &[Record], b: &[Record]) -> Vec<DiffRow> {
    fn index(rs: &[Record]) -> BTreeMap<(String, String), &Record> {
        let mut m = BTreeMap::new();
        // A confirming re-send stands for its case.
        for r in rs.iter().filter(|r| !r.metadata.warmup) {
            let k = (r.target(), case_key(r));
            if r.metadata.confirm || !m.contains_key(&k) {
                m.insert(k, r);
            }
        }
        m
    }
    let (ia, ib) = (index(a), index(b));
    let mut keys: Vec<&(String, String)> = ia.keys().chain(ib.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut rows: Vec<DiffRow> = keys
        .into_iter()
        .map(|k| {
            let (ra, rb) = (ia.get(k).copied(), ib.get(k).copied());
            let answer = |r: Option<&Record>| r.and_then(|r| r.response.clone());
            DiffRow {
                target: k.0.clone(),
                case: k.1.clone(),
                passed_a: ra.and_then(passed),
                passed_b: rb.and_then(passed),
                score_a: ra.and_then(|r| weighted_mean(&r.scores)),
                score_b: rb.and_then(|r| weighted_mean(&r.scores)),
                latency_a_ms: ra.and_then(|r| r.response_time_ms),
                latency_b_ms: rb.and_then(|r| r.response_time_ms),
                answer_changed: answer(ra) != answer(rb),
                case_changed: match (ra, rb) {
                    (Some(a), Some(b)) => matches!(
                        (&a.metadata.case_hash, &b.metadata.case_hash),
                        (Some(x), Some(y)) if x != y
                    ),
                    _ => false,
                },
                answer_a: answer(ra),
                answer_b: answer(rb),
            }
        })
        .collect();
    rows.sort_by_key(|r| !r.flipped());
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Score;

    /// A failed request is no answer: it is left out of the outcomes the watch pairs, so an
    /// outage does not read as a model answering worse. A wrong answer is a fail.
    #[test]
    fn failed_requests_have_no_outcome_and_wrong_answers_fail() {
        let rec = |case: &str, passed: bool, error: Option<&str>| Record {
            endpoint: "gw".into(),
            model: "m".into(),
            case_id: case.into(),
            error: error.map(str::to_string),
            scores: vec![Score {
                name: "equals".into(),
                value: Some(if passed { 1.0 } else { 0.0 }),
                passed: Some(passed),
                weight: 1.0,
                error: None,
                note: None,
            }],
            ..Default::default()
        };
        let records = [
            rec("right", true, None),
            rec("wrong", false, None),
            rec("outage", false, Some("HTTP 503")),
        ];
        let o = outcomes(records.iter());
        let m = &o["gw/m"];
        assert_eq!(m.get("right"), Some(&true));
        assert_eq!(m.get("wrong"), Some(&false));
        assert_eq!(m.get("outage"), None, "{m:?}");
    }
}
