//! `[notifiers.NAME]` and `[[maintenance]]` in `evald.toml`: where alerts are delivered, and
//! when they are silenced.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{Diagnostic, Secret, Secrets, Source, parse_duration};

/// The body a notifier sends.
#[derive(Debug, Clone, PartialEq)]
pub enum NotifierFormat {
    /// The delivery as JSON (DESIGN's fields).
    Json,
    /// `{"text": …}`, which Slack, Mattermost and Discord's Slack-compatible hooks take.
    Slack,
    /// A minijinja template file, rendered with the delivery's fields.
    Template(String),
}

/// One `[notifiers.NAME]`.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// The table name.
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: reqwest::Url,
    /// Signs each body: `X-Evald-Signature: sha256=<hex HMAC-SHA256(secret, body)>`.
    pub secret: Option<Secret>,
    /// Whether its deliveries are meant to be signed (`secret_env` is set), whether or not this
    /// process has the secret.
    pub signed: bool,
    /// The body.
    pub format: NotifierFormat,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
}

/// One `[[maintenance]]` window.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// When each window starts, as written.
    pub schedule: String,
    /// Parsed.
    pub cron: croner::Cron,
    /// How long each window lasts.
    pub duration: Duration,
    /// Job globs; empty = every job.
    pub jobs: Vec<glob::Pattern>,
}

impl Maintenance {
    /// Whether `job` is in this window at `now`: a window started within `duration` before it.
    pub fn covers(
        &self,
        job: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        if !self.jobs.is_empty() && !self.jobs.iter().any(|p| p.matches(job)) {
            return None;
        }
        let d = chrono::Duration::from_std(self.duration).ok()?;
        let start = self.cron.find_next_occurrence(&(now - d), true).ok()?;
        (start <= now).then(|| start + d)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifier {
    url: Spanned<String>,
    secret_env: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    schedule: Spanned<String>,
    duration: Spanned<String>,
    jobs: Option<Vec<Spanned<String>>>,
}

pub(super) fn notifiers(
    src: &Source<'_>,
    dir: &std::path::Path,
    raw: BTreeMap<String, Spanned<RawNotifier>>,
    secrets: Secrets,
    errs: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Notifier> {
    let mut out = BTreeMap::new();
    for (name, n) in raw {
        let span = n.span();
        let n = n.into_inner();
        let key = |k: &str| format!("notifiers.{name}.{k}");
        let url = match reqwest::Url::parse(n.url.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            _ => {
                errs.push(src.at(
                    Some(n.url.span()),
                    format!(
                        "{}: `{}` is not an http(s) URL",
                        key("url"),
                        n.url.get_ref()
                    ),
                ));
                None
            }
        };
        let secret = n.secret_env.as_ref().and_then(|var| {
            super::secrets::from_env(
                src,
                var,
                secrets,
                &key("secret_env"),
                "unset secret_env to send unsigned",
                errs,
            )
        });
        let format = match n.format.as_ref().map(|f| f.get_ref().as_str()) {
            None | Some("json") => NotifierFormat::Json,
            Some("slack") => NotifierFormat::Slack,
            Some(file) => {
                let path = if std::path::Path::new(file).is_absolute() {
                    std::path::PathBuf::from(file)
                } else {
                    dir.join(file)
                };
                match std::fs::read_to_string(&path) {
                    Ok(t) => match minijinja::Environment::new().template_from_str(&t) {
                        Ok(_) => NotifierFormat::Template(t),
                        Err(e) => {
                            errs.push(src.at(
                                n.format.as_ref().map(Spanned::span),
                                format!("{}: template {}: {e}", key("format"), path.display()),
                            ));
                            NotifierFormat::Json
                        }
                    },
                    Err(e) => {
                        errs.push(src.at(
                            n.format.as_ref().map(Spanned::span),
                            format!(
                                "{}: \"json\", \"slack\", or a template file; cannot read {}: {e}",
                                key("format"),
                                path.display()
                            ),
                        ));
                        NotifierFormat::Json
                    }
                }
            }
        };
        if let Some(url) = url {
            let _ = span;
            out.insert(
                name.clone(),
                Notifier {
                    name,
                    url,
                    secret,
                    signed: n.secret_env.is_some(),
                    format,
                    headers: n.headers.unwrap_or_default().into_iter().collect(),
                },
            );
        }
    }
    out
}

pub(super) fn maintenance(
    src: &Source<'_>,
    raw: Vec<Spanned<RawMaintenance>>,
    errs: &mut Vec<Diagnostic>,
) -> Vec<Maintenance> {
    let mut out = Vec::new();
    for (i, m) in raw.into_iter().enumerate() {
        let m = m.into_inner();
        let key = |k: &str| format!("maintenance[{i}].{k}");
        let cron = super::cron::parse_schedule(m.schedule.get_ref()).map_err(|e| {
            errs.push(src.at(Some(m.schedule.span()), format!("{}: {e}", key("schedule"))));
        });
        let duration = parse_duration(m.duration.get_ref()).map_err(|e| {
            errs.push(src.at(Some(m.duration.span()), format!("{}: {e}", key("duration"))));
        });
        let mut jobs = Vec::new();
        for j in m.jobs.unwrap_or_default() {
            match glob::Pattern::new(j.get_ref()) {
                Ok(p) => jobs.push(p),
                Err(e) => errs.push(src.at(Some(j.span()), format!("{}: {e}", key("jobs")))),
            }
        }
        if let (Ok(cron), Ok(duration)) = (cron, duration) {
            out.push(Maintenance {
                schedule: m.schedule.into_inner(),
                cron,
                duration,
                jobs,
            });
        }
    }
    out
}
