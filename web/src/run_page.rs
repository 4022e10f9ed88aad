//! `/runs/{id}`: the cases × targets matrix of a compare run, or the percentile tables and
//! histogram of a benchmark; with `?against=`, the difference from another run.

use std::collections::BTreeMap;

use askama::Template;
use evald_model::fmt::{clip, fmt_ms, fmt_quantile};
use evald_model::{JobKind, Percentiles, Record};

use crate::pages::{RunRow, fmt_pct, fmt_score, fmt_time};
use crate::read::{ReadError, ReadModel};
use crate::svg;
use evald_model::fmt::fmt_cost;

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
    /// USD, or — when no price is known.
    cost: String,
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
    /// What "too few" means ([`evald_model::fmt::TOO_FEW`]).
    too_few_note: &'static str,
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
            cost: fmt_cost(t.cost_usd, t.cost_unpriced),
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
            ];
            if b.tokens_estimated > 0 {
                facts.push((
                    "output tokens".into(),
                    format!(
                        "estimated for {} request(s): the server sent no usage",
                        b.tokens_estimated
                    ),
                ));
            }
            // Goodput only when it counts something beyond throughput (SLOs, or scores).
            if let Some(terms) = b.goodput_terms(t.pass_rate.is_some()) {
                facts.push(("goodput (requests/s)".into(), format!("{:.1}", b.goodput)));
                facts.push((
                    terms,
                    format!("{:.0} %", b.slo_attainment.unwrap_or(0.0) * 100.0),
                ));
            }
            if b.fell_behind {
                facts.push((
                    "client".into(),
                    "fell behind: sends were late, read the latencies from the intended send times"
                        .into(),
                ));
            }
            if let Some(w) = b.queue_words() {
                facts.push(("server".into(), w));
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
            // An unknown run, or one of another job, is said so in the section; nothing is
            // paired (as `evald diff`).
            let then_run = m.run(other)?;
            let then = match &then_run {
                Some(r) if r.job == run.job => m.run_records(other, crate::MAX_RUN_RECORDS)?,
                _ => vec![],
            };
            let rows = evald_model::watch::diff(&then, &records);
            let other_job = then_run.as_ref().map(|r| r.job.as_str());
            against = crate::watch::against_section(other, other_job, &run.job, &rows)?;
        }
    }
    let page = RunPage {
        too_few_note: evald_model::fmt::TOO_FEW,
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
