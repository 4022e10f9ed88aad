//! `length`: 1.0 when the response's length in characters is within
//! `min..=max`, else 0.0. Trivial on purpose: the plugin benchmark compares
//! it with the same logic compiled natively.

use evald_plugin_sdk::{Observation, Score, Scorer, export_scorer};
use serde::Deserialize;

/// The `config` table, e.g. `config = { min = 1, max = 280 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "one")]
    min: usize,
    #[serde(default = "unlimited")]
    max: usize,
}

fn one() -> usize {
    1
}

fn unlimited() -> usize {
    usize::MAX
}

struct Length;

impl Scorer for Length {
    type Config = Config;

    fn score(observation: &Observation, config: &Config) -> Result<Score, String> {
        let chars = observation.response.chars().count();
        Ok(Score::pass_fail((config.min..=config.max).contains(&chars)))
    }
}

export_scorer!(Length);
