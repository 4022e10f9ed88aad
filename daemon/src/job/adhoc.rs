//! The ad hoc job of `evald compare`: one prompt to several targets, built from the command's
//! options (no TOML text) and validated by the same rules as a job file.

use std::path::Path;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Job;
use super::raw::{RawCase, RawJob, RawMessage, RawParams};
use super::validate::Validator;
use crate::config::{Config, Num};
use crate::diag::Source;

/// The name ad hoc compare runs are stored under; a job file may not take it.
pub const ADHOC_JOB: &str = "compare";

/// What `evald compare` asks for; sent as it is to a running daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdhocSpec {
    /// Targets, `ENDPOINT/MODEL`.
    pub models: Vec<String>,
    /// A system message sent first.
    pub system: Option<String>,
    /// The prompt.
    pub prompt: String,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
}

/// Why an ad hoc job is not valid: each problem, as a job file's would be reported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct InvalidAdhoc(pub Vec<String>);

/// A problem of the ad hoc job, naming the flag that set the value rather than the job file's
/// key (`--temperature: must be …`, not `params.temperature: …`).
fn as_flag(msg: String) -> String {
    for (key, flag) in [
        ("params.temperature", "--temperature"),
        ("params.max_tokens", "--max-tokens"),
    ] {
        if let Some(rest) = msg.strip_prefix(key) {
            return format!("{flag}{rest}");
        }
    }
    match msg.strip_prefix("targets[").and_then(|r| r.split_once(']')) {
        Some((_, rest)) => format!("--model{rest}"),
        None => msg,
    }
}

/// A value with no place in a file.
fn at<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

impl Job {
    /// The job `evald compare` runs: one case, `prompt`, sent to every target, checked as a
    /// job file is.
    pub fn adhoc(spec: &AdhocSpec, config: &Config) -> Result<Job, InvalidAdhoc> {
        let mut messages = Vec::new();
        if let Some(system) = &spec.system {
            messages.push(at(RawMessage {
                role: "system".into(),
                content: system.clone(),
            }));
        }
        messages.push(at(RawMessage {
            role: "user".into(),
            content: spec.prompt.clone(),
        }));
        let params = (spec.temperature.is_some() || spec.max_tokens.is_some()).then(|| RawParams {
            temperature: spec.temperature.map(|t| at(Num(t))),
            max_tokens: spec.max_tokens.map(|m| at(i64::from(m))),
            top_p: None,
        });
        let raw = RawJob {
            description: Some("ad hoc comparison (evald compare)".into()),
            kind: None,
            schedule: None,
            enabled: None,
            targets: Some(at(spec.models.iter().cloned().map(at).collect())),
            timeout: Some(at("120s".into())),
            concurrency: None,
            repeat: None,
            stream: None,
            params,
            cases: vec![at(RawCase {
                id: Some(at("prompt".into())),
                prompt: None,
                messages: Some(messages),
                reference: None,
            })],
            generators: vec![],
            scorers: vec![],
            load: None,
            watch: None,
            alerts: vec![],
            budget_usd_month: None,
        };
        let path = Path::new("compare.toml");
        let mut v = Validator {
            src: Source::new(path, ""),
            errs: Vec::new(),
        };
        let mut job = v.job(ADHOC_JOB.to_string(), raw, config);
        job.digest = xxhash_rust::xxh3::xxh3_64(&serde_json::to_vec(spec).unwrap_or_default());
        if v.errs.is_empty() {
            Ok(job)
        } else {
            Err(InvalidAdhoc(
                v.errs.into_iter().map(|d| as_flag(d.message)).collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_names_the_flag() {
        let config = Config::parse(
            Path::new("/e/evald.toml"),
            "[endpoints.sim]\nsimulated = { latency_ms = 1 }\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let spec = AdhocSpec {
            models: vec!["nowhere/m".into()],
            prompt: "hi".into(),
            temperature: Some(3.0),
            ..Default::default()
        };
        let e = Job::adhoc(&spec, &config).unwrap_err().0;
        assert!(e.iter().any(|m| m.starts_with("--temperature: ")), "{e:?}");
        assert!(
            e.iter()
                .any(|m| m.starts_with("--model: unknown endpoint `nowhere`")),
            "{e:?}"
        );
    }
}
