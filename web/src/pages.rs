//! The HTML pages: `/` (jobs, broken job files, 7-day stats, recent requests), `/jobs/{job}`
//! (runs over time with score and latency trends) and `/runs/{id}` (the cases × targets matrix
//! of a compare run, or the percentile tables and histogram of a benchmark). Askama escapes every
//! value by default; only the server-drawn SVG (numbers only) is inserted raw.

use askama::Template;
use chrono::{DateTime, Utc};

use evald_model::fmt::{clip, fmt_ms};
use evald_model::{InvalidJob, JobInfo, Record, RecordFilter, RunStatus, RunSummary, StatsGroup};

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

/// A share as a percentage with one decimal where it has one (`0.5%`, `83.3%`, `100%`): a few
/// errors in a thousand never read `0%`, nor a few failures `100%`.
pub(crate) fn fmt_pct(v: Option<f64>) -> String {
    let Some(x) = v else {
        return "—".into();
    };
    let p = x * 100.0;
    let s = format!("{p:.1}");
    match s.as_str() {
        "0.0" if p > 0.0 => "<0.1%".into(),
        "100.0" if p < 100.0 => ">99.9%".into(),
        _ => format!("{}%", s.strip_suffix(".0").unwrap_or(&s)),
    }
}

pub(crate) fn fmt_score(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into())
}

pub(crate) fn fmt_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

pub(crate) fn fmt_ago(ms: i64) -> String {
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

pub(crate) fn status_class(s: RunStatus) -> &'static str {
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
    cost: String,
}

impl StatRow {
    fn of(g: &StatsGroup) -> StatRow {
        StatRow {
            name: g.name.clone(),
            requests: g.total_requests,
            avg: fmt_ms(g.latency(g.avg_response_time_ms)),
            p50: fmt_ms(g.latency(g.p50_ms)),
            p95: fmt_ms(g.latency(g.p95_ms)),
            p99: fmt_ms(g.latency(g.p99_ms)),
            errors: fmt_pct(Some(g.error_rate)),
            tokens: g.tokens.total,
            tokens_avg: format!("{:.0}", g.tokens.avg_per_request),
            cost: evald_model::fmt::fmt_cost(g.cost_usd, g.cost_unpriced),
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

pub(crate) struct RunRow {
    pub(crate) id: String,
    pub(crate) when: String,
    pub(crate) trigger: String,
    pub(crate) status: String,
    pub(crate) class: String,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) score: String,
    pub(crate) pass: String,
    pub(crate) latency: String,
    pub(crate) message: String,
}

impl RunRow {
    pub(crate) fn of(r: &RunSummary) -> RunRow {
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
    /// What the job's runs started this month (UTC) cost.
    month_cost: String,
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
        month_cost: {
            use chrono::Datelike;
            let now = Utc::now();
            let start = now
                .date_naive()
                .with_day(1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc().timestamp_millis())
                .unwrap_or(0);
            let month: Vec<&evald_model::TargetSummary> = runs
                .iter()
                .filter(|r| r.started_ms >= start)
                .flat_map(|r| &r.targets)
                .collect();
            let costs: Vec<f64> = month.iter().filter_map(|t| t.cost_usd).collect();
            // Requests of a target with no price at all are not "unpriced" in a partial
            // total: the month's total names only gaps among priced targets.
            evald_model::fmt::fmt_cost(
                (!costs.is_empty()).then(|| costs.iter().sum()),
                month.iter().map(|t| t.cost_unpriced).sum(),
            )
        },
        runs: runs.iter().map(RunRow::of).collect(),
    };
    page.render().map(Some).map_err(ReadError::new)
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

    #[test]
    fn shares_keep_the_decimal_that_matters() {
        let f = |v: f64| fmt_pct(Some(v));
        assert_eq!(f(0.005), "0.5%");
        assert_eq!(f(0.0), "0%");
        assert_eq!(f(1.0), "100%");
        assert_eq!(f(0.5), "50%");
        assert_eq!(f(5.0 / 6.0), "83.3%");
        assert_eq!(f(0.0004), "<0.1%");
        assert_eq!(f(0.9996), ">99.9%");
        assert_eq!(fmt_pct(None), "—");
    }
}
