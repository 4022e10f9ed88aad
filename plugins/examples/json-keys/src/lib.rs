//! `json-keys`: scores whether the response is a JSON object holding the
//! keys the job requires. Value = the share of required keys present (1.0
//! when none are required and the response is an object); 0.0 when the
//! response is not a JSON object. A Markdown code fence around the JSON is
//! tolerated, since models add one even when told not to.

use evald_plugin_sdk::{Observation, Score, Scorer, export_scorer};
use serde::Deserialize;

/// The `config` table: `config = { required = ["capital"] }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Keys the top-level object must have.
    #[serde(default)]
    required: Vec<String>,
}

struct JsonKeys;

impl Scorer for JsonKeys {
    type Config = Config;

    fn score(observation: &Observation, config: &Config) -> Result<Score, String> {
        let text = strip_fence(&observation.response);
        let Ok(serde_json::Value::Object(object)) = serde_json::from_str(text) else {
            return Ok(Score::with_note(0.0, "response is not a JSON object"));
        };
        if config.required.is_empty() {
            return Ok(Score::new(1.0));
        }
        let missing: Vec<&str> = config
            .required
            .iter()
            .filter(|key| !object.contains_key(key.as_str()))
            .map(String::as_str)
            .collect();
        let present = config.required.len() - missing.len();
        let value = present as f64 / config.required.len() as f64;
        if missing.is_empty() {
            Ok(Score::new(value))
        } else {
            Ok(Score::with_note(
                value,
                format!("missing: {}", missing.join(", ")),
            ))
        }
    }
}

/// The text inside a ```` ``` ```` fence if the whole response is one.
fn strip_fence(response: &str) -> &str {
    let trimmed = response.trim();
    let Some(rest) = trimmed.strip_prefix("```") else {
        return trimmed;
    };
    // Drop the info string (`json`) up to the first newline.
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

export_scorer!(JsonKeys);
