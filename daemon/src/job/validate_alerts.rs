//! Validation of `[[alerts]]`: each condition parsed, each notifier known, names unique.

use toml::Spanned;

use super::alerts::{AlertSpec, Condition, EventCondition, parse_condition};
use super::raw::RawAlert;
use super::validate::Validator;
use crate::config::Config;

impl Validator<'_> {
    pub(super) fn alerts(
        &mut self,
        raw: Vec<Spanned<RawAlert>>,
        config: &Config,
        scheduled: bool,
    ) -> Vec<AlertSpec> {
        let mut out: Vec<AlertSpec> = Vec::new();
        for (i, a) in raw.into_iter().enumerate() {
            let span = a.span();
            let a = a.into_inner();
            let key = |k: &str| format!("alerts[{i}].{k}");
            let name = match &a.name {
                Some(n) if !n.get_ref().trim().is_empty() => n.get_ref().trim().to_string(),
                _ => format!("alert-{}", i + 1),
            };
            if out.iter().any(|o| o.name == name) {
                self.err(
                    a.name.as_ref().map(Spanned::span).or(Some(span.clone())),
                    format!(
                        "{}: `{name}` is used by another alert of this job",
                        key("name")
                    ),
                );
            }
            let mut cond = |k: &str, v: &Option<Spanned<String>>| -> Option<Condition> {
                let v = v.as_ref()?;
                match parse_condition(v.get_ref()) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.err(Some(v.span()), format!("{}: {e}", key(k)));
                        None
                    }
                }
            };
            let when = cond("when", &a.when);
            let warn = cond("warn", &a.warn);
            if a.when.is_none() {
                self.err(
                    Some(span.clone()),
                    format!("{}: missing; e.g. when = \"pass_rate < 0.9\"", key("when")),
                );
            }
            if matches!(when, Some(Condition::Event(EventCondition::NoRun))) && !scheduled {
                self.err(
                    a.when.as_ref().map(Spanned::span),
                    format!(
                        "{}: no_run needs a schedule (the job runs only by hand)",
                        key("when")
                    ),
                );
            }
            let mut targets = Vec::new();
            for t in a.targets.unwrap_or_default() {
                match glob::Pattern::new(t.get_ref()) {
                    Ok(p) => targets.push(p),
                    Err(e) => self.err(Some(t.span()), format!("{}: {e}", key("targets"))),
                }
            }
            if targets.is_empty() {
                targets.extend(glob::Pattern::new("*").ok());
            }
            let mut notify = Vec::new();
            for n in a.notify.unwrap_or_default() {
                if config.notifiers.contains_key(n.get_ref()) {
                    notify.push(n.into_inner());
                } else {
                    let known: Vec<&str> = config.notifiers.keys().map(String::as_str).collect();
                    self.err(
                        Some(n.span()),
                        format!(
                            "{}: no notifier `{}` in evald.toml (notifiers: {})",
                            key("notify"),
                            n.get_ref(),
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            let for_runs = self.int(&key("for_runs"), &a.for_runs, 1, 1000, 1) as u32;
            let resolve_runs = self.int(&key("resolve_runs"), &a.resolve_runs, 1, 1000, 1) as u32;
            let renotify = self.duration(&key("renotify"), &a.renotify);
            if let Some(when) = when {
                out.push(AlertSpec {
                    name,
                    when,
                    warn,
                    targets,
                    for_runs,
                    resolve_runs,
                    renotify,
                    notify,
                });
            }
        }
        out
    }
}
