//! Validation of `[[alerts]]`: each condition parsed, each notifier known, names unique.

use toml::Spanned;

use super::alerts::{AlertSpec, Condition, EventCondition, Metric, Op, parse_condition};
use super::raw::RawAlert;
use super::validate::Validator;
use super::{ScorerSpec, TargetSpec};
use crate::config::Config;

/// What of the job its alerts are checked against.
pub(super) struct JobFacts<'a> {
    /// It has a schedule (`no_run` needs one).
    pub scheduled: bool,
    /// It has `[watch]` (`regression` needs it).
    pub watched: bool,
    /// A benchmark (`goodput`, `slo_attainment`) rather than a compare job.
    pub benchmark: bool,
    /// Its scorers (`score.NAME`); `None` when they have errors of their own.
    pub scorers: Option<&'a [ScorerSpec]>,
    /// Its targets (each alert glob must match one); `None` when they have errors of their own.
    pub targets: Option<&'a [TargetSpec]>,
}

impl Validator<'_> {
    pub(super) fn alerts(
        &mut self,
        raw: Vec<Spanned<RawAlert>>,
        config: &Config,
        job: JobFacts<'_>,
    ) -> Vec<AlertSpec> {
        let JobFacts {
            scheduled,
            watched,
            benchmark,
            scorers,
            targets: job_targets,
        } = job;
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
            // A condition that can never have a value, or a warning that can never show, is a
            // mistake `evald check` can name now rather than a `no_data` found months later.
            for (k, c, v) in [("when", &when, &a.when), ("warn", &warn, &a.warn)] {
                let never = match c {
                    Some(Condition::Event(EventCondition::Regression)) if !watched => {
                        Some("regression is a [watch] verdict, and this job has no [watch] table")
                    }
                    Some(Condition::Threshold {
                        metric: Metric::Goodput | Metric::SloAttainment,
                        ..
                    }) if !benchmark => Some("goodput and slo_attainment are benchmark figures"),
                    _ => None,
                };
                if let Some(why) = never {
                    self.err(
                        v.as_ref().map(Spanned::span),
                        format!("{}: {why}: it would never have a value", key(k)),
                    );
                }
                if let Some(Condition::Threshold {
                    metric: Metric::Score(n),
                    ..
                }) = c
                    && let Some(scorers) = scorers
                    && !scorers.iter().any(|s| &s.name == n)
                {
                    let names: Vec<&str> = scorers.iter().map(|s| s.name.as_str()).collect();
                    self.err(
                        v.as_ref().map(Spanned::span),
                        format!(
                            "{}: no scorer `{n}` in this job (scorers: {})",
                            key(k),
                            if names.is_empty() {
                                "none".into()
                            } else {
                                names.join(", ")
                            }
                        ),
                    );
                }
            }
            // With for_runs = 1 a run where `when` holds fires at once, so a `warn` that holds
            // only there never shows; with more, it warns of a deep drop before the alert fires.
            let at_once = a.for_runs.as_ref().is_none_or(|n| *n.get_ref() == 1);
            if at_once
                && let (Some(w), Some(f)) = (&warn, &when)
                && let Some(better) = warn_after_firing(w, f)
            {
                self.err(
                    a.warn.as_ref().map(Spanned::span),
                    format!(
                        "{}: it holds only where `when` already does, and with for_runs = 1 that fires at once, so the warning would never show; a warning comes first{}",
                        key("warn"),
                        better.map(|b| format!(", e.g. warn = \"{b}\"")).unwrap_or_default()
                    ),
                );
            }
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
            // The job's targets are known unless one is `endpoint/*` (expanded at run time).
            let known: Option<Vec<String>> = job_targets.and_then(|ts| {
                ts.iter()
                    .map(|t| matches!(t, TargetSpec::Model { .. }).then(|| t.to_string()))
                    .collect()
            });
            for t in a.targets.unwrap_or_default() {
                match glob::Pattern::new(t.get_ref()) {
                    Ok(p) => {
                        if let Some(known) = &known
                            && !known.iter().any(|k| p.matches(k))
                        {
                            self.err(
                                Some(t.span()),
                                format!(
                                    "{}: `{}` matches none of this job's targets ({})",
                                    key("targets"),
                                    t.get_ref(),
                                    known.join(", ")
                                ),
                            );
                        }
                        targets.push(p)
                    }
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

/// When `warn` can hold only where `when` holds too (the same metric compared the same way, its
/// threshold past `when`'s): `Some` of a `warn` that would come first (`when`'s threshold moved
/// back: halfway to 1 for a share, 5 % otherwise), or `Some(None)` when no such number differs
/// from `when`'s own.
fn warn_after_firing(warn: &Condition, when: &Condition) -> Option<Option<String>> {
    let (
        Condition::Threshold {
            metric: wm,
            op: wo,
            threshold: wt,
        },
        Condition::Threshold {
            metric: fm,
            op: fo,
            threshold: ft,
        },
    ) = (warn, when)
    else {
        return None;
    };
    let lower = |o: &Op| matches!(o, Op::Lt | Op::Le);
    let upper = |o: &Op| matches!(o, Op::Gt | Op::Ge);
    if wm != fm {
        return None;
    }
    let (op, suggest) = if lower(wo) && lower(fo) && wt < ft {
        let up = if *ft > 0.0 && *ft <= 1.0 {
            (ft + (1.0 - ft) / 2.0).min(1.0)
        } else {
            ft * 1.05
        };
        ("<", up)
    } else if upper(wo) && upper(fo) && wt > ft {
        (">", ft * 0.95)
    } else {
        return None;
    };
    let suggest = (suggest * 1000.0).round() / 1000.0;
    Some((suggest != *ft).then(|| format!("{} {op} {suggest}", wm.name())))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The problems of a job file's text (none: it loads).
    fn problems(text: &str) -> Vec<String> {
        let config = crate::config::Config::parse(
            Path::new("/e/evald.toml"),
            "[endpoints.sim]\nsimulated = { latency_ms = 1 }\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        match crate::job::Job::parse(Path::new("/e/jobs/j.toml"), text, &config) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn check(alert: &str) -> Vec<String> {
        problems(&format!(
            "targets = [\"sim/a\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n[[scorers]]\nbuiltin = \"contains\"\nvalue = \"x\"\n[[alerts]]\n{alert}"
        ))
    }

    /// A deeper `warn` than `when` never shows when `when` fires at once; with for_runs > 1 it
    /// warns of a deep drop before the alert fires, and is accepted.
    #[test]
    fn a_deeper_warn_is_refused_only_when_it_could_never_show() {
        let e = check("when = \"pass_rate < 0.9\"\nwarn = \"pass_rate < 0.5\"\n");
        assert!(
            e.len() == 1 && e[0].contains("e.g. warn = \"pass_rate < 0.95\""),
            "{e:?}"
        );
        assert_eq!(
            check("when = \"pass_rate < 0.9\"\nwarn = \"pass_rate < 0.5\"\nfor_runs = 3\n"),
            Vec::<String>::new()
        );
        assert_eq!(
            check("when = \"pass_rate < 0.9\"\nwarn = \"pass_rate < 0.95\"\n"),
            Vec::<String>::new()
        );
        // No suggestion that is `when` itself.
        let e = check("when = \"error_rate > 0\"\nwarn = \"error_rate > 0.2\"\n");
        assert!(e.len() == 1 && !e[0].contains("e.g."), "{e:?}");
    }

    /// A scorer or target list with errors of its own is not reported again through an alert.
    #[test]
    fn a_broken_target_is_not_blamed_twice() {
        let e = problems(
            "targets = [\"nowhere/a\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n[[alerts]]\nwhen = \"error_rate > 0.5\"\ntargets = [\"sim/*\"]\n",
        );
        assert!(
            e.len() == 1 && e[0].contains("unknown endpoint `nowhere`"),
            "{e:?}"
        );
    }
}
