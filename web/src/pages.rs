//! The HTML pages: `/` (jobs, broken job files, 7-day stats, recent requests), `/jobs/{job}`
//! (runs over time with score and latency trends) and `/runs/{id}` (the cases × targets matrix
//! of a compare run, or the percentile tables and histogram of a benchmark). Askama escapes every
//! value by default; only the server-drawn SVG (numbers only) is inserted raw.

use std::collections::BTreeMap;

use askama::Template;
use chrono::{DateTime, Utc};

use evald_model::fmt::{clip, fmt_ms, fmt_quantile};
use evald_model::{
    InvalidJob, JobInfo, JobKind, Percentiles, Record, RecordFilter, RunStatus, RunSummary,
    StatsGroup,
};

use crate::read::{ReadError, ReadModel};
use crate::svg;

/// The HTML escaper of every template (see `askama.toml`): `& < > " '` as entities.
#[derive(Debug, Clone, Copy)]
pub struct Html;

impl askama::filters::Escaper for Html {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, s: &str) -> std::fmt::Result {
        let mut last = 0;
        for (i, b) in s.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            dest.write_str(&s[last..i])?;
            dest.write_str(rep)?;
            last = i + 1;
        }
        dest.write_str(&s[last..])
    }
}

/// The stylesheet: small, hand-written, light and dark, readable on a phone.
pub const STYLE: &str = include_str!("../templates/style.css");

fn fmt_pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.0}%", x * 100.0))
        .unwrap_or_else(|| "—".into())
}

fn fmt_score(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into())
}

fn fmt_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn fmt_ago(ms: i64) -> String {
    let d = (Utc::now().timestamp_millis() - ms) / 1000;
    match d {
        i64::MIN..=-1 => {
            let d = -d;
            match d {
                0..=59 => format!("in {d}s"),
                60..=3599 => format!("in {}m", d / 60),
                3600..=86_399 => format!("in {}h", d / 3600),
                _ => format!("in {}d", d / 86_400),
            }
        }
        0..=59 => format!("{d}s ago"),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

fn status_class(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Ok => "ok",
        RunStatus::Running => "running",
        RunStatus::Failed => "bad",
        RunStatus::Interrupted | RunStatus::Skipped => "warn",
    }
}

struct JobRow {
    name: String,
    description: String,
    kind: String,
    schedule: String,
    schedule_expr: String,
    next: String,
    enabled: bool,
    running: bool,
    last_status: String,
    last_class: String,
    last_when: String,
    last_id: String,
    score: String,
    /// The latest watched run's verdict (the worst of its targets), and its css class.
    verdict: (String, &'static str),
    pass: String,
    latency: String,
    trend: String,
    broken: Vec<String>,
    /// The job's worst alert state, when it has alerts.
    alert: &'static str,
}

struct StatRow {
    name: String,
    requests: u64,
    avg: String,
    p50: String,
    p95: String,
    p99: String,
    errors: String,
    tokens: u64,
    tokens_avg: String,
}

impl StatRow {
    fn of(g: &StatsGroup) -> StatRow {
        StatRow {
            name: g.name.clone(),
            requests: g.total_requests,
            avg: fmt_ms(Some(g.avg_response_time_ms)),
            p50: fmt_ms(Some(g.p50_ms)),
            p95: fmt_ms(Some(g.p95_ms)),
            p99: fmt_ms(Some(g.p99_ms)),
            errors: fmt_pct(Some(g.error_rate)),
            tokens: g.tokens.total,
            tokens_avg: format!("{:.0}", g.tokens.avg_per_request),
        }
    }
}

struct RecentRow {
    time: String,
    job: String,
    target: String,
    run_id: String,
    latency: String,
    tokens: String,
    text: String,
    error: bool,
}

impl RecentRow {
    fn of(r: &Record) -> RecentRow {
        RecentRow {
            time: fmt_time(r.timestamp_ms),
            job: r.job.clone(),
            target: r.target(),
            run_id: r.run_id.clone(),
            latency: fmt_ms(r.response_time_ms),
            tokens: r
                .total_tokens
                .map(|t| t.to_string())
                .unwrap_or_else(|| "—".into()),
            text: clip(
                r.error.as_deref().or(r.response.as_deref()).unwrap_or(""),
                140,
            ),
            error: r.error.is_some(),
        }
    }
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    jobs: Vec<JobRow>,
    invalid: Vec<InvalidJob>,
    overall: StatRow,
    by_model: Vec<StatRow>,
    by_provider: Vec<StatRow>,
    recent: Vec<RecentRow>,
    job_names: Vec<String>,
}

fn job_row(j: &JobInfo, runs: &[RunSummary]) -> JobRow {
    let real: Vec<&RunSummary> = runs
        .iter()
        .filter(|r| r.status != RunStatus::Skipped)
        .collect();
    let last = runs.first();
    let trend: Vec<Option<f64>> = real
        .iter()
        .rev()
        .map(|r| r.mean_score().or_else(|| r.mean_latency_ms()))
        .collect();
    JobRow {
        name: j.name.clone(),
        description: j.description.clone(),
        kind: j.kind.as_str().into(),
        schedule: j.schedule_words.clone().unwrap_or_else(|| "by hand".into()),
        schedule_expr: j.schedule.clone().unwrap_or_default(),
        next: match (j.enabled, j.next_run_ms) {
            (false, _) => "disabled".into(),
            (true, Some(t)) => fmt_ago(t),
            (true, None) => "—".into(),
        },
        enabled: j.enabled,
        running: j.running,
        last_status: last
            .map(|r| r.status.as_str().to_string())
            .unwrap_or_else(|| "never run".into()),
        last_class: last
            .map(|r| status_class(r.status))
            .unwrap_or("muted")
            .into(),
        last_when: last.map(|r| fmt_ago(r.started_ms)).unwrap_or_default(),
        last_id: last.map(|r| r.id.clone()).unwrap_or_default(),
        score: fmt_score(real.first().and_then(|r| r.mean_score())),
        verdict: crate::watch::latest_verdict(&real),
        pass: fmt_pct(real.first().and_then(|r| r.pass_rate())),
        latency: fmt_ms(real.first().and_then(|r| r.mean_latency_ms())),
        trend: svg::sparkline(&trend, 96.0, 22.0),
        broken: j.stale_errors.clone(),
        alert: "",
    }
}

/// `/`.
pub fn index(m: &dyn ReadModel) -> Result<String, ReadError> {
    let jobs = m.jobs();
    let alerts = m.alerts();
    let mut rows = Vec::new();
    for j in &jobs {
        let runs = m.runs(Some(&j.name), 20)?;
        let mut row = job_row(j, &runs);
        row.alert = crate::alerts::job_state(&alerts, &j.name)
            .map(|s| s.as_str())
            .unwrap_or_default();
        rows.push(row);
    }
    let stats = m.stats(7)?;
    let recent = m.recent_records(&RecordFilter {
        limit: Some(20),
        ..RecordFilter::default()
    })?;
    let page = IndexPage {
        job_names: jobs.iter().map(|j| j.name.clone()).collect(),
        jobs: rows,
        invalid: m.invalid_jobs(),
        overall: StatRow::of(&stats.overall),
        by_model: stats.by_model.iter().map(StatRow::of).collect(),
        by_provider: stats.by_provider.iter().map(StatRow::of).collect(),
        recent: recent.iter().map(RecentRow::of).collect(),
    };
    page.render().map_err(ReadError::new)
}

/// `/api/v1/jobs`: the jobs with their last run, as the page shows them.
pub fn jobs_json(m: &dyn ReadModel) -> Result<serde_json::Value, ReadError> {
    let mut out = Vec::new();
    for j in m.jobs() {
        let last = m.runs(Some(&j.name), 1)?.into_iter().next();
        let mut v = serde_json::to_value(&j).map_err(ReadError::new)?;
        v["last_run"] = serde_json::to_value(&last).unwrap_or_default();
        out.push(v);
    }
    Ok(serde_json::json!({ "jobs": out, "invalid": m.invalid_jobs() }))
}

struct RunRow {
    id: String,
    when: String,
    trigger: String,
    status: String,
    class: String,
    requests: u64,
    errors: u64,
    score: String,
    pass: String,
    latency: String,
    message: String,
}

impl RunRow {
    fn of(r: &RunSummary) -> RunRow {
        RunRow {
            id: r.id.clone(),
            when: fmt_time(r.started_ms),
            trigger: format!("{:?}", r.trigger).to_lowercase(),
            status: r.status.as_str().into(),
            class: status_class(r.status).into(),
            requests: r.requests,
            errors: r.errors,
            score: fmt_score(r.mean_score()),
            pass: fmt_pct(r.pass_rate()),
            latency: fmt_ms(r.mean_latency_ms()),
            message: r.message.clone().unwrap_or_default(),
        }
    }
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    name: String,
    description: String,
    kind: String,
    schedule: String,
    schedule_expr: String,
    next: String,
    targets: Vec<String>,
    file: String,
    broken: Vec<String>,
    watch: String,
    runs: Vec<RunRow>,
}

/// `/jobs/{job}`; `None` for an unknown job (one with stored runs but no file still shows).
pub fn job(m: &dyn ReadModel, name: &str) -> Result<Option<String>, ReadError> {
    let info = m.jobs().into_iter().find(|j| j.name == name);
    let runs = m.runs(Some(name), 200)?;
    if info.is_none() && runs.is_empty() {
        return Ok(None);
    }
    let watch = crate::watch::job_section(m, name, &runs, |t| {
        format!("{} ({})", fmt_time(t), fmt_ago(t))
    })?;
    let page = JobPage {
        name: name.to_string(),
        description: info
            .as_ref()
            .map(|i| i.description.clone())
            .unwrap_or_default(),
        kind: info
            .as_ref()
            .map(|i| i.kind.as_str().to_string())
            .unwrap_or_default(),
        schedule: info
            .as_ref()
            .and_then(|i| i.schedule_words.clone())
            .unwrap_or_else(|| "by hand".into()),
        schedule_expr: info
            .as_ref()
            .and_then(|i| i.schedule.clone())
            .unwrap_or_default(),
        next: info
            .as_ref()
            .and_then(|i| i.next_run_ms)
            .map(|t| format!("{} ({})", fmt_time(t), fmt_ago(t)))
            .unwrap_or_else(|| "—".into()),
        targets: info.as_ref().map(|i| i.targets.clone()).unwrap_or_default(),
        file: info
            .as_ref()
            .map(|i| i.file.clone())
            .unwrap_or_else(|| "(job file gone)".into()),
        broken: info.map(|i| i.stale_errors).unwrap_or_default(),
        watch,
        runs: runs.iter().map(RunRow::of).collect(),
    };
    page.render().map(Some).map_err(ReadError::new)
}

struct ScoreCell {
    name: String,
    value: String,
    passed: Option<bool>,
    error: String,
    note: String,
}

struct Cell {
    present: bool,
    best: bool,
    response: String,
    long: bool,
    preview: String,
    error: String,
    latency: String,
    tokens: String,
    scores: Vec<ScoreCell>,
    repeats: usize,
}

struct MatrixRow {
    case_id: String,
    prompt: String,
    cells: Vec<Cell>,
}

struct TargetRow {
    target: String,
    /// The watch verdict, with its p-value and baseline, when the job is watched.
    verdict: String,
    requests: u64,
    errors: u64,
    latency: String,
    score: String,
    pass: String,
    tokens: String,
}

struct PctRow {
    what: String,
    count: u64,
    p50: String,
    p90: String,
    p95: String,
    p99: String,
    p999: String,
    max: String,
    mean: String,
}

impl PctRow {
    fn of(what: &str, p: &Percentiles) -> PctRow {
        PctRow {
            what: what.into(),
            count: p.count,
            p50: fmt_quantile(p.p50, p.ci95.p50),
            p90: fmt_quantile(p.p90, p.ci95.p90),
            p95: fmt_quantile(p.p95, p.ci95.p95),
            p99: fmt_quantile(p.p99, p.ci95.p99),
            p999: fmt_quantile(p.p999, p.ci95.p999),
            max: fmt_ms(Some(p.max)),
            mean: fmt_ms(Some(p.mean)),
        }
    }
}

struct BenchBlock {
    target: String,
    facts: Vec<(String, String)>,
    rows: Vec<PctRow>,
    /// Some percentile rests on too few samples to bound.
    too_few: bool,
    errors: Vec<(String, u64)>,
    histogram: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    run: RunRow,
    job: String,
    kind: String,
    ended: String,
    targets: Vec<String>,
    target_rows: Vec<TargetRow>,
    matrix: Vec<MatrixRow>,
    benches: Vec<BenchBlock>,
    /// `?against=`: this run beside another, case by case.
    against: String,
}

/// `/runs/{id}`.
pub fn run(m: &dyn ReadModel, id: &str, other: Option<&str>) -> Result<Option<String>, ReadError> {
    let Some(run) = m.run(id)? else {
        return Ok(None);
    };
    let targets: Vec<String> = run.targets.iter().map(|t| t.target.clone()).collect();
    let target_rows = run
        .targets
        .iter()
        .map(|t| TargetRow {
            target: t.target.clone(),
            verdict: t
                .watch
                .as_ref()
                .map(|w| match w.p_value {
                    Some(p) => format!("{} (p {p:.3}, {})", w.verdict.as_str(), w.reason),
                    None => format!("{} ({})", w.verdict.as_str(), w.reason),
                })
                .unwrap_or_default(),
            requests: t.requests,
            errors: t.errors,
            latency: fmt_ms(t.mean_latency_ms),
            score: fmt_score(t.mean_score),
            pass: fmt_pct(t.pass_rate),
            tokens: format!("{} / {}", t.prompt_tokens, t.completion_tokens),
        })
        .collect();
    let mut matrix = Vec::new();
    let mut benches = Vec::new();
    let mut against = String::new();
    if run.kind == JobKind::Benchmark {
        for t in &run.targets {
            let Some(b) = &t.bench else { continue };
            let mut facts = vec![
                ("measured for".to_string(), format!("{:.1} s", b.duration_s)),
                (
                    "requests/s".to_string(),
                    format!("{:.1}", b.request_throughput),
                ),
                (
                    "output tokens/s".to_string(),
                    format!("{:.1}", b.output_tokens_per_s),
                ),
                (
                    "goodput (requests/s)".to_string(),
                    format!("{:.1}", b.goodput),
                ),
            ];
            if let Some(a) = b.slo_attainment {
                facts.push(("met the SLOs".into(), format!("{:.0} %", a * 100.0)));
            }
            if b.fell_behind {
                facts.push((
                    "client".into(),
                    "fell behind: sends were late, read the latencies from the intended send times"
                        .into(),
                ));
            }
            if let (Some(want), Some(got)) = (b.target_rate, b.achieved_rate) {
                facts.push((
                    "rate asked / achieved".into(),
                    format!("{want:.1} / {got:.1}"),
                ));
            }
            if let Some(l) = b.mean_send_lag_ms {
                facts.push(("mean send lag".into(), fmt_ms(Some(l))));
            }
            benches.push(BenchBlock {
                target: t.target.clone(),
                facts,
                rows: vec![
                    PctRow::of("time to first token", &b.ttft_ms),
                    PctRow::of("time to first content", &b.ttfc_ms),
                    PctRow::of("inter-token latency (pooled)", &b.itl_ms),
                    PctRow::of("inter-token latency (request mean)", &b.itl_request_mean_ms),
                    PctRow::of("time per output token", &b.tpot_ms),
                    PctRow::of("end-to-end latency", &b.e2e_ms),
                ]
                .into_iter()
                // Time to first content says something only when a model reasoned first.
                .filter(|r| r.what != "time to first content" || b.ttfc_ms != b.ttft_ms)
                .chain(
                    b.e2e_from_schedule_ms
                        .as_ref()
                        .map(|p| PctRow::of("end-to-end from the intended send", p)),
                )
                .chain(b.send_lag_ms.as_ref().map(|p| PctRow::of("send lag", p)))
                .filter(|r| r.count > 0)
                .collect(),
                too_few: [&b.ttft_ms, &b.itl_ms, &b.tpot_ms, &b.e2e_ms]
                    .iter()
                    .any(|p| p.count > 0 && p.ci95.p999.is_none()),
                errors: b
                    .errors_by_kind
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect(),
                histogram: svg::histogram(&b.e2e_histogram, " ms"),
            });
        }
    } else {
        let records = m.run_records(id, crate::MAX_RUN_RECORDS)?;
        matrix = build_matrix(&records, &targets);
        if let Some(other) = other.filter(|o| *o != id) {
            // `?against=` an unknown run says so in the section rather than failing the page.
            let then = match m.run(other)? {
                Some(_) => m.run_records(other, crate::MAX_RUN_RECORDS)?,
                None => vec![],
            };
            let rows = evald_model::watch::diff(&then, &records);
            against = crate::watch::against_section(other, &rows)?;
        }
    }
    let page = RunPage {
        against,
        job: run.job.clone(),
        kind: run.kind.as_str().into(),
        ended: run
            .ended_ms
            .map(fmt_time)
            .unwrap_or_else(|| "still running".into()),
        run: RunRow::of(&run),
        targets,
        target_rows,
        matrix,
        benches,
    };
    page.render().map(Some).map_err(ReadError::new)
}

fn build_matrix(records: &[Record], targets: &[String]) -> Vec<MatrixRow> {
    let mut cases: Vec<String> = Vec::new();
    let mut by: BTreeMap<(String, String), Vec<&Record>> = BTreeMap::new();
    for r in records {
        if !cases.contains(&r.case_id) {
            cases.push(r.case_id.clone());
        }
        by.entry((r.case_id.clone(), r.target()))
            .or_default()
            .push(r);
    }
    let mut extra_targets: Vec<String> = Vec::new();
    for r in records {
        let t = r.target();
        if !targets.contains(&t) && !extra_targets.contains(&t) {
            extra_targets.push(t);
        }
    }
    let all_targets: Vec<String> = targets.iter().cloned().chain(extra_targets).collect();
    cases
        .iter()
        .map(|case| {
            let first = records.iter().find(|r| &r.case_id == case);
            let mut cells: Vec<Cell> = all_targets
                .iter()
                .map(|t| match by.get(&(case.clone(), t.clone())) {
                    None => Cell {
                        present: false,
                        best: false,
                        response: String::new(),
                        long: false,
                        preview: String::new(),
                        error: String::new(),
                        latency: String::new(),
                        tokens: String::new(),
                        scores: vec![],
                        repeats: 0,
                    },
                    Some(rs) => {
                        let r = rs[0];
                        let response = r.response.clone().unwrap_or_default();
                        Cell {
                            present: true,
                            best: false,
                            long: response.chars().count() > 280 || response.lines().count() > 6,
                            preview: clip(&response, 200),
                            response,
                            error: r.error.clone().unwrap_or_default(),
                            latency: fmt_ms(evald_model::mean(
                                rs.iter().filter_map(|r| r.response_time_ms),
                            )),
                            tokens: match (r.prompt_tokens, r.completion_tokens) {
                                (Some(p), Some(c)) => format!("{p}→{c} tok"),
                                _ => String::new(),
                            },
                            scores: r
                                .scores
                                .iter()
                                .map(|s| ScoreCell {
                                    name: s.name.clone(),
                                    value: fmt_score(s.value),
                                    passed: s.passed,
                                    error: s.error.clone().unwrap_or_default(),
                                    note: s.note.clone().unwrap_or_default(),
                                })
                                .collect(),
                            repeats: rs.len(),
                        }
                    }
                })
                .collect();
            // The best target of a case: highest mean weighted score, then fastest.
            let rank: Vec<Option<(f64, f64)>> = all_targets
                .iter()
                .map(|t| {
                    let rs = by.get(&(case.clone(), t.clone()))?;
                    let ok: Vec<&&Record> = rs.iter().filter(|r| r.error.is_none()).collect();
                    if ok.is_empty() {
                        return None;
                    }
                    let score = evald_model::mean(
                        ok.iter()
                            .filter_map(|r| evald_model::weighted_mean(&r.scores)),
                    )
                    .unwrap_or(0.0);
                    let lat = evald_model::mean(ok.iter().filter_map(|r| r.response_time_ms))
                        .unwrap_or(f64::MAX);
                    Some((score, lat))
                })
                .collect();
            if let Some((i, _)) = rank
                .iter()
                .enumerate()
                .filter_map(|(i, r)| r.map(|r| (i, r)))
                .max_by(|a, b| a.1.0.total_cmp(&b.1.0).then(b.1.1.total_cmp(&a.1.1)))
                && all_targets.len() > 1
            {
                cells[i].best = true;
            }
            MatrixRow {
                case_id: case.clone(),
                prompt: first
                    .and_then(|r| r.messages.iter().rev().find(|m| m.role == "user"))
                    .map(|m| clip(&m.content, 300))
                    .unwrap_or_default(),
                cells,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use askama::filters::Escaper;

    #[test]
    fn the_escaper_uses_named_entities() {
        let mut out = String::new();
        Html.write_escaped_str(&mut out, "<a href=\"x\">'&'</a>")
            .unwrap();
        assert_eq!(out, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    detail: &'a str,
}

/// A plain error page (404, 405, 401, 500).
pub fn error_page(status: u16, title: &str, detail: &str) -> String {
    ErrorPage {
        status,
        title,
        detail,
    }
    .render()
    .unwrap_or_else(|_| format!("{status} {title}"))
}
