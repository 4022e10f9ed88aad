//! The one aggregator of a run's per-target figures: request and error counts, mean latency,
//! mean weighted score, pass rate, each scorer's mean and token sums. Compare runs, benchmark
//! runs and the summaries of interrupted runs all count through it, so their rules cannot drift.

use std::collections::BTreeMap;

use crate::record::Record;
use crate::run::{RunSummary, TargetSummary};
use crate::score::{all_passed, weighted_mean};

/// A run's counts and per-target figures, added up one record at a time, so a run of any size
/// is summarised in bounded memory. Warm-up requests are left out.
#[derive(Default)]
pub struct Tally {
    targets: BTreeMap<String, TargetTally>,
}

/// One target's share of a [`Tally`]; benchmark runs keep one per target beside their latency
/// histograms.
#[derive(Debug, Default, Clone)]
pub struct TargetTally {
    requests: u64,
    errors: u64,
    latency: (f64, u64),
    score: (f64, u64),
    passed: (f64, u64),
    scorers: BTreeMap<String, (f64, u64)>,
    prompt_tokens: u64,
    completion_tokens: u64,
    /// Sum of the known costs, and how many records had one.
    cost: (f64, u64),
    /// Answered requests with no known cost.
    unpriced: u64,
}

fn add_to(acc: &mut (f64, u64), v: Option<f64>) {
    if let Some(v) = v {
        acc.0 += v;
        acc.1 += 1;
    }
}

fn mean_of(acc: (f64, u64)) -> Option<f64> {
    (acc.1 > 0).then(|| acc.0 / acc.1 as f64)
}

impl Tally {
    /// Counts one record in.
    pub fn add(&mut self, r: &Record) {
        // Confirming re-sends (`[watch] confirm`) decide the watch test, not the run's figures.
        if r.metadata.warmup || r.metadata.confirm {
            return;
        }
        self.targets.entry(r.target()).or_default().add(r);
    }

    /// Writes the counts and per-target figures into the summary.
    pub fn finish(self, summary: &mut RunSummary) {
        summary.requests = self.targets.values().map(|t| t.requests).sum();
        summary.errors = self.targets.values().map(|t| t.errors).sum();
        summary.targets = self
            .targets
            .into_iter()
            .map(|(target, t)| t.finish(target))
            .collect();
    }
}

impl TargetTally {
    /// Counts one record of this target in (the caller leaves warm-ups out).
    pub fn add(&mut self, r: &Record) {
        self.requests += 1;
        self.prompt_tokens += r.prompt_tokens.map_or(0, u64::from);
        self.completion_tokens += r.completion_tokens.map_or(0, u64::from);
        add_to(&mut self.cost, r.cost_usd);
        if r.error.is_some() {
            self.errors += 1;
            return;
        }
        self.unpriced += u64::from(r.cost_usd.is_none());
        add_to(&mut self.latency, r.response_time_ms);
        if r.scores.is_empty() {
            return;
        }
        add_to(&mut self.score, weighted_mean(&r.scores));
        add_to(
            &mut self.passed,
            all_passed(&r.scores).map(|b| if b { 1.0 } else { 0.0 }),
        );
        for s in &r.scores {
            if let Some(v) = s.value {
                let e = self.scorers.entry(s.name.clone()).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// Requests that ended in an error so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The target's figures (no benchmark part).
    pub fn finish(self, target: String) -> TargetSummary {
        TargetSummary {
            target,
            requests: self.requests,
            errors: self.errors,
            mean_latency_ms: mean_of(self.latency),
            mean_score: mean_of(self.score),
            pass_rate: mean_of(self.passed),
            scorer_means: self
                .scorers
                .into_iter()
                .map(|(k, (s, n))| (k, s / n as f64))
                .collect(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            bench: None,
            watch: None,
            identity: None,
            // Unknown when no request had a price, never 0 for unknown.
            cost_usd: (self.cost.1 > 0).then_some(self.cost.0),
            // A partial total says so; with no price at all the total is unknown instead.
            cost_unpriced: if self.cost.1 > 0 { self.unpriced } else { 0 },
        }
    }
}
