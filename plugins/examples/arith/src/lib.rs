//! `arith`: a generator of arithmetic questions. `count` questions from
//! `seed`, the same ones for the same config, each with its answer as the
//! reference, so a `contains` or `word-overlap` scorer can check them.

use evald_plugin_sdk::{Case, Generator, export_generator};
use serde::Deserialize;

/// The `config` table, e.g. `config = { count = 20, seed = 7 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// How many questions.
    #[serde(default = "ten")]
    count: u32,
    /// Which questions: the same seed gives the same questions.
    #[serde(default)]
    seed: u64,
    /// Operands are drawn from `0..=max`.
    #[serde(default = "hundred")]
    max: u32,
}

fn ten() -> u32 {
    10
}

fn hundred() -> u32 {
    100
}

/// More cases than any job would want; also bounds the plugin's memory use.
const MAX_COUNT: u32 = 10_000;

struct Arith;

impl Generator for Arith {
    type Config = Config;

    fn generate(config: &Config) -> Result<Vec<Case>, String> {
        if config.count > MAX_COUNT {
            return Err(format!(
                "count {} is over the limit of {MAX_COUNT}",
                config.count
            ));
        }
        let mut rng = SplitMix64(config.seed);
        let span = u64::from(config.max) + 1;
        Ok((0..config.count)
            .map(|i| {
                let a = (rng.next() % span) as i64;
                let b = (rng.next() % span) as i64;
                let (symbol, answer) = match rng.next() % 3 {
                    0 => ('+', a + b),
                    1 => ('-', a - b),
                    _ => ('*', a * b),
                };
                Case::prompt(
                    format!("arith-{}-{i}", config.seed),
                    format!("What is {a} {symbol} {b}? Answer with the number only."),
                    Some(answer.to_string()),
                )
            })
            .collect())
    }
}

/// A tiny, well-known PRNG, so the questions depend on nothing but the seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

export_generator!(Arith);
