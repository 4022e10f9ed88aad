//! `word-overlap`: how much of the case's reference answer the response
//! contains, as the F1 of their words (case-insensitive, punctuation
//! ignored, repeated words counted as often as they occur), the usual
//! SQuAD-style token F1. `metric = "recall"` or `"precision"` scores one
//! side only. A case without a reference cannot be scored (an error).

use std::collections::HashMap;

use evald_plugin_sdk::{Observation, Score, Scorer, export_scorer};
use serde::Deserialize;

/// The `config` table, e.g. `config = { metric = "recall" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    metric: Metric,
}

#[derive(Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Metric {
    #[default]
    F1,
    Precision,
    Recall,
}

struct WordOverlap;

impl Scorer for WordOverlap {
    type Config = Config;

    fn score(observation: &Observation, config: &Config) -> Result<Score, String> {
        let reference = observation
            .case
            .reference
            .as_deref()
            .ok_or("the case has no reference to compare with")?;
        let expected = words(reference);
        let got = words(&observation.response);
        let (expected_total, got_total) = (total(&expected), total(&got));
        if expected_total == 0 || got_total == 0 {
            return Ok(Score::pass_fail(expected_total == got_total));
        }
        let common: usize = got
            .iter()
            .map(|(word, n)| (*n).min(expected.get(word).copied().unwrap_or(0)))
            .sum();
        let precision = common as f64 / got_total as f64;
        let recall = common as f64 / expected_total as f64;
        let value = match config.metric {
            Metric::Precision => precision,
            Metric::Recall => recall,
            Metric::F1 if common == 0 => 0.0,
            Metric::F1 => 2.0 * precision * recall / (precision + recall),
        };
        Ok(Score::with_note(
            value,
            format!("{common} of {expected_total} reference words"),
        ))
    }
}

/// Lower-cased words and how often each occurs.
fn words(text: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
    {
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    counts
}

fn total(counts: &HashMap<String, usize>) -> usize {
    counts.values().sum()
}

export_scorer!(WordOverlap);
