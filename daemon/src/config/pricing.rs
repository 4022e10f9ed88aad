//! `[pricing]`: what a target's tokens cost. A price file in LiteLLM's
//! `model_prices_and_context_window.json` format (per-token USD: `input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`), and per-target overrides in USD per
//! million tokens. A target's price: its `[pricing.models."endpoint/model"]` entry, else the
//! file's entry for the model name as sent to the endpoint, else the file's
//! `provider/model` entry; else none (its cost is unknown, never 0).

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, Num, Source};

/// USD per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    /// A prompt token.
    pub input: f64,
    /// A completion token (reasoning tokens included: they are inside `completion_tokens`).
    pub output: f64,
    /// A prompt token served from the provider's cache; `input` when the price has none.
    pub cached_input: Option<f64>,
}

impl Price {
    /// The cost of one request's usage: cached prompt tokens at the cached rate, the rest of
    /// the prompt at the input rate, every completion token at the output rate.
    pub fn cost(&self, prompt: u32, cached: u32, completion: u32) -> f64 {
        let cached = cached.min(prompt) as f64;
        (prompt as f64 - cached) * self.input
            + cached * self.cached_input.unwrap_or(self.input)
            + completion as f64 * self.output
    }
}

/// The price table.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    /// From the price file, by model name (as the file spells it).
    pub file: HashMap<String, Price>,
    /// `[pricing.models."endpoint/model"]`.
    pub overrides: BTreeMap<String, Price>,
}

impl Pricing {
    /// The price of `endpoint/model` (see the module's lookup order).
    pub fn lookup(&self, endpoint: &str, model: &str, provider: &str) -> Option<Price> {
        self.overrides
            .get(&format!("{endpoint}/{model}"))
            .or_else(|| self.file.get(model))
            .or_else(|| self.file.get(&format!("{provider}/{model}")))
            .copied()
    }

    /// Whether any price is known.
    pub fn is_empty(&self) -> bool {
        self.file.is_empty() && self.overrides.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPricing {
    file: Option<Spanned<String>>,
    #[serde(default)]
    models: BTreeMap<String, Spanned<RawPrice>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrice {
    input: Option<Num>,
    output: Option<Num>,
    cached_input: Option<Num>,
}

/// One entry of LiteLLM's file; other keys are ignored.
#[derive(Debug, Deserialize)]
struct FileEntry {
    input_cost_per_token: Option<f64>,
    output_cost_per_token: Option<f64>,
    cache_read_input_token_cost: Option<f64>,
}

pub(super) fn parse(
    src: &Source<'_>,
    dir: &std::path::Path,
    raw: Option<RawPricing>,
    endpoints: &[&str],
    errs: &mut Vec<Diagnostic>,
) -> Pricing {
    let Some(raw) = raw else {
        return Pricing::default();
    };
    let mut out = Pricing::default();
    if let Some(f) = &raw.file {
        let path = if std::path::Path::new(f.get_ref()).is_absolute() {
            std::path::PathBuf::from(f.get_ref())
        } else {
            dir.join(f.get_ref())
        };
        let parsed = std::fs::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|b| {
                serde_json::from_slice::<HashMap<String, serde_json::Value>>(&b).map_err(|e| {
                    format!(
                        "{} is not a JSON object of model prices (LiteLLM's model_prices_and_context_window.json): {e}",
                        path.display()
                    )
                })
            });
        match parsed {
            Err(e) => errs.push(src.at(Some(f.span()), format!("pricing.file: {e}"))),
            Ok(map) => {
                for (name, v) in map {
                    // `sample_spec` and entries without token prices (images, audio) are
                    // skipped; an entry that is not an object is too.
                    let Ok(e) = serde_json::from_value::<FileEntry>(v) else {
                        continue;
                    };
                    if let (Some(i), Some(o)) = (e.input_cost_per_token, e.output_cost_per_token)
                        && i.is_finite()
                        && o.is_finite()
                        && i >= 0.0
                        && o >= 0.0
                    {
                        out.file.insert(
                            name,
                            Price {
                                input: i,
                                output: o,
                                cached_input: e
                                    .cache_read_input_token_cost
                                    .filter(|c| c.is_finite() && *c >= 0.0),
                            },
                        );
                    }
                }
            }
        }
    }
    for (target, p) in raw.models {
        let span = p.span();
        let p = p.into_inner();
        let key = format!("pricing.models.\"{target}\"");
        match target.split_once('/') {
            None => errs.push(src.at(
                Some(span.clone()),
                format!("{key}: name a target as endpoint/model"),
            )),
            // A misspelt endpoint would leave that target's cost unknown, silently.
            Some((ep, _)) if !endpoints.contains(&ep) => errs.push(src.at(
                Some(span.clone()),
                format!(
                    "{key}: no endpoint `{ep}` in this file (endpoints: {})",
                    if endpoints.is_empty() {
                        "none".into()
                    } else {
                        endpoints.join(", ")
                    }
                ),
            )),
            Some(_) => {}
        }
        let per_token = |v: Option<Num>| v.map(|n| n.0 / 1e6);
        match (per_token(p.input), per_token(p.output)) {
            (Some(i), Some(o)) if i >= 0.0 && o >= 0.0 => {
                out.overrides.insert(
                    target,
                    Price {
                        input: i,
                        output: o,
                        cached_input: per_token(p.cached_input).filter(|c| *c >= 0.0),
                    },
                );
            }
            _ => errs.push(src.at(
                Some(span),
                format!("{key}: set `input` and `output` in USD per million tokens (and `cached_input` if cached prompts cost less)"),
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conformance's worked figures: 1,000 prompt tokens of which 400 cached, 500
    /// completion tokens at 2e-6 / 8e-6 / 5e-7 → 0.0054 USD.
    #[test]
    fn cached_tokens_cost_the_cached_rate_and_the_rest_the_input_rate() {
        let p = Price {
            input: 2e-6,
            output: 8e-6,
            cached_input: Some(5e-7),
        };
        assert!((p.cost(1000, 400, 500) - 0.0054).abs() < 1e-12);
        let no_cache_rate = Price {
            cached_input: None,
            ..p
        };
        assert!((no_cache_rate.cost(1000, 400, 500) - 0.006).abs() < 1e-12);
    }

    #[test]
    fn the_override_wins_then_the_model_then_provider_model() {
        let mut t = Pricing::default();
        let p = |x: f64| Price {
            input: x,
            output: x,
            cached_input: None,
        };
        t.file.insert("m".into(), p(1.0));
        t.file.insert("openai/n".into(), p(2.0));
        t.overrides.insert("gw/m".into(), p(3.0));
        assert_eq!(t.lookup("gw", "m", "openai"), Some(p(3.0)));
        assert_eq!(t.lookup("other", "m", "openai"), Some(p(1.0)));
        assert_eq!(t.lookup("gw", "n", "openai"), Some(p(2.0)));
        assert_eq!(t.lookup("gw", "unknown", "openai"), None);
    }
}
