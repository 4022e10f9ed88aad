//! The page's answers to the morning question: per-target score and latency trends with the
//! events marked, each run's verdict per target, flaky cases and events (on `/jobs/{job}`),
//! and a run beside another, case by case (`/runs/{id}?against={id}`).

use askama::Template;
use evald_model::fmt::{clip, fmt_ms};
use evald_model::{DiffRow, Event, RunStatus, RunSummary, Verdict};

use crate::read::{ReadError, ReadModel};
use crate::svg;

/// Distinct line colours (css classes `s-t0`…); more targets reuse them.
const COLOURS: usize = 6;

struct Legend {
    class: String,
    target: String,
}

struct VerdictCell {
    class: &'static str,
    text: String,
    title: String,
}

struct VerdictRow {
    id: String,
    when: String,
    cells: Vec<VerdictCell>,
}

struct EventRow {
    when: String,
    kind: String,
    target: String,
    before: String,
    after: String,
    run: String,
}

#[derive(Template)]
#[template(path = "job_watch.html")]
struct JobWatch {
    legend: Vec<Legend>,
    score_chart: String,
    latency_chart: String,
    watched: bool,
    targets: Vec<String>,
    verdicts: Vec<VerdictRow>,
    flaky: Vec<(String, String)>,
    /// Cases left out of the latest test for being edited since the baseline.
    edited: String,
    events: Vec<EventRow>,
}

/// The latest watched run's verdict, the worst of its targets (regressed, then improved, ok,
/// insufficient), for the overview; empty when no run was watched.
pub fn latest_verdict(runs: &[&RunSummary]) -> (String, &'static str) {
    let Some(r) = runs
        .iter()
        .find(|r| r.targets.iter().any(|t| t.watch.is_some()))
    else {
        return (String::new(), "");
    };
    let rank = |v: Verdict| match v {
        Verdict::Regressed => 0,
        Verdict::Improved => 1,
        Verdict::Ok => 2,
        Verdict::Insufficient => 3,
    };
    let worst = r
        .targets
        .iter()
        .filter_map(|t| t.watch.as_ref().map(|w| w.verdict))
        .min_by_key(|v| rank(*v))
        .unwrap_or(Verdict::Insufficient);
    (worst.as_str().to_string(), class_of(worst))
}

fn class_of(v: Verdict) -> &'static str {
    match v {
        Verdict::Regressed => "v-regressed",
        Verdict::Improved => "v-improved",
        Verdict::Ok => "v-ok",
        Verdict::Insufficient => "v-insufficient",
    }
}

/// The section of `/jobs/{job}` over its runs (newest first, as stored).
pub fn job_section(
    m: &dyn ReadModel,
    name: &str,
    runs: &[RunSummary],
    when: impl Fn(i64) -> String,
) -> Result<String, ReadError> {
    let real: Vec<&RunSummary> = runs
        .iter()
        .rev()
        .filter(|r| r.status != RunStatus::Skipped)
        .collect();
    let mut targets: Vec<String> = Vec::new();
    for r in &real {
        for t in &r.targets {
            if !targets.contains(&t.target) {
                targets.push(t.target.clone());
            }
        }
    }
    let classes: Vec<String> = (0..targets.len())
        .map(|i| format!("s-t{}", i % COLOURS))
        .collect();
    let series =
        |f: &dyn Fn(&evald_model::TargetSummary) -> Option<f64>| -> Vec<(&str, Vec<Option<f64>>)> {
            targets
                .iter()
                .zip(&classes)
                .map(|(t, c)| {
                    let vals = real
                        .iter()
                        .map(|r| r.targets.iter().find(|x| &x.target == t).and_then(f))
                        .collect();
                    (c.as_str(), vals)
                })
                .collect()
        };
    let events = m.events(Some(name), 100)?;
    // An event marks the run that saw it.
    let marks: Vec<usize> = events
        .iter()
        .filter_map(|e| real.iter().position(|r| r.id == e.run_id))
        .collect();
    let score_chart =
        svg::line_chart_marked(&series(&|t| t.mean_score), "", Some((0.0, 1.0)), &marks);
    let latency_chart =
        svg::line_chart_marked(&series(&|t| t.mean_latency_ms), " ms", None, &marks);
    let watched = real
        .iter()
        .any(|r| r.targets.iter().any(|t| t.watch.is_some()));
    let verdicts = runs
        .iter()
        .filter(|r| r.targets.iter().any(|t| t.watch.is_some()))
        .take(20)
        .map(|r| VerdictRow {
            id: r.id.clone(),
            when: when(r.started_ms),
            cells: targets
                .iter()
                .map(|t| {
                    match r
                        .targets
                        .iter()
                        .find(|x| &x.target == t)
                        .and_then(|x| x.watch.as_ref())
                    {
                        None => VerdictCell {
                            class: "",
                            text: "—".into(),
                            title: String::new(),
                        },
                        Some(w) => VerdictCell {
                            class: class_of(w.verdict),
                            text: match w.p_value {
                                Some(p) => format!("{} (p {p:.3})", w.verdict.as_str()),
                                None => w.verdict.as_str().to_string(),
                            },
                            title: format!(
                                "{}; newly failing: {}",
                                w.reason,
                                if w.newly_failing.is_empty() {
                                    "none".to_string()
                                } else {
                                    w.newly_failing.join(" ")
                                }
                            ),
                        },
                    }
                })
                .collect(),
        })
        .collect();
    let latest = runs
        .iter()
        .find(|r| r.targets.iter().any(|t| t.watch.is_some()));
    let watches = || {
        latest
            .into_iter()
            .flat_map(|r| &r.targets)
            .filter_map(|t| Some((t, t.watch.as_ref()?)))
    };
    let flaky = watches()
        .filter(|(_, w)| !w.flaky.is_empty())
        .map(|(t, w)| (t.target.clone(), w.flaky.join(" ")))
        .collect();
    // The same cases for every target: a case's definition is the job's.
    let edited: std::collections::BTreeSet<&str> = watches()
        .flat_map(|(_, w)| w.changed.iter().map(String::as_str))
        .collect();
    let page = JobWatch {
        legend: targets
            .iter()
            .zip(&classes)
            .map(|(t, c)| Legend {
                class: c.clone(),
                target: t.clone(),
            })
            .collect(),
        score_chart,
        latency_chart,
        watched,
        targets,
        verdicts,
        flaky,
        edited: edited.into_iter().collect::<Vec<_>>().join(" "),
        events: events
            .iter()
            .map(|e: &Event| EventRow {
                when: when(e.time_ms),
                kind: e.kind.clone(),
                target: e.target.clone(),
                before: clip(&e.before.words(), 300),
                after: clip(&e.after.words(), 300),
                run: e.run_id.clone(),
            })
            .collect(),
    };
    page.render().map_err(ReadError::new)
}

struct DiffLine {
    target: String,
    case: String,
    outcome: String,
    flipped: bool,
    score: String,
    latency: String,
    changed: bool,
    answer_a: String,
    answer_b: String,
}

#[derive(Template)]
#[template(path = "run_against.html")]
struct Against {
    other: String,
    /// No run `other` is stored: nothing is compared.
    missing: bool,
    /// `other` is a run of another job (its name): not compared.
    other_job: Option<String>,
    job: String,
    flipped: usize,
    changed: usize,
    rows: Vec<DiffLine>,
}

/// The section of `/runs/{id}?against={other}`: this run (of `job`) beside `other` (of
/// `other_job`, `None` when no such run is stored), case by case.
pub fn against_section(
    other: &str,
    other_job: Option<&str>,
    job: &str,
    rows: &[DiffRow],
) -> Result<String, ReadError> {
    let word = |p: Option<bool>| match p {
        Some(true) => "pass",
        Some(false) => "fail",
        None => "—",
    };
    let pair = |a: Option<f64>, b: Option<f64>, f: &dyn Fn(f64) -> String| {
        format!("{} → {}", a.map_or("—".into(), f), b.map_or("—".into(), f))
    };
    Against {
        other: other.to_string(),
        missing: other_job.is_none(),
        other_job: other_job.filter(|o| *o != job).map(String::from),
        job: job.to_string(),
        flipped: rows.iter().filter(|r| r.flipped()).count(),
        changed: rows.iter().filter(|r| r.answer_changed).count(),
        rows: rows
            .iter()
            .map(|r| DiffLine {
                target: r.target.clone(),
                case: r.case_label(),
                outcome: if r.flipped() {
                    format!("{} → {}", word(r.passed_a), word(r.passed_b))
                } else {
                    word(r.passed_b).to_string()
                },
                flipped: r.flipped(),
                score: pair(r.score_a, r.score_b, &|v| format!("{v:.2}")),
                latency: pair(r.latency_a_ms, r.latency_b_ms, &|v| fmt_ms(Some(v))),
                changed: r.answer_changed,
                answer_a: clip(r.answer_a.as_deref().unwrap_or(""), 2000),
                answer_b: clip(r.answer_b.as_deref().unwrap_or(""), 2000),
            })
            .collect(),
    }
    .render()
    .map_err(ReadError::new)
}
