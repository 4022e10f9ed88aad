//! The tables a run report prints: cases × targets (compare) or percentiles (benchmark), then
//! per-target figures.

use std::time::Duration;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use evald::run::RunReport;
pub use evald_model::fmt::fmt_ms;
use evald_model::fmt::one_line;
use evald_model::fmt::{fmt_cost, fmt_quantile};
use evald_model::{JobKind, Percentiles};

/// A retention age in the unit it was most likely written in (`30d`, `12h`).
pub fn fmt_age(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// Prints a run: the cases × targets table (compare) or percentile tables (benchmark), then
/// per-target figures.
pub fn print_report(report: &RunReport) {
    let s = &report.summary;
    let secs = s
        .ended_ms
        .unwrap_or(s.started_ms)
        .saturating_sub(s.started_ms) as f64
        / 1000.0;
    println!(
        "run {}  job {}  {}  {} requests, {} errors, {:.1} s",
        s.id,
        s.job,
        s.status.as_str(),
        s.requests,
        s.errors,
        secs
    );
    if let Some(m) = &s.message {
        println!("note: {m}");
    }
    if let Some(ms) = s.scoring_ms
        && secs > 0.0
    {
        println!(
            "scoring: {ms:.1} ms in scorers, {:.2}% of the run's {:.1} s",
            ms / (secs * 10.0),
            secs
        );
    }
    if s.kind == JobKind::Compare && !report.records.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        let mut header = vec![Cell::new("case")];
        header.extend(report.targets.iter().map(Cell::new));
        t.set_header(header);
        for case in &report.cases {
            let mut row = vec![Cell::new(case)];
            for target in &report.targets {
                let rs: Vec<_> = report
                    .records
                    .iter()
                    .filter(|r| &r.case_id == case && r.target() == *target)
                    .collect();
                let text = match rs.first() {
                    None => "—".to_string(),
                    Some(r) => {
                        let mut lines = vec![timing(r)];
                        match &r.error {
                            Some(e) => lines.push(format!("ERROR {}", clip_line(e, 160))),
                            None => lines.push(clip_line(r.response.as_deref().unwrap_or(""), 80)),
                        }
                        for sc in &r.scores {
                            lines.push(match (&sc.error, sc.value, sc.passed) {
                                (Some(e), _, _) => {
                                    format!("{} error: {}", sc.name, clip_line(e, 80))
                                }
                                (None, Some(v), Some(p)) => {
                                    format!("{} {} {v:.2}", sc.name, if p { "✓" } else { "✗" })
                                }
                                _ => format!("{} —", sc.name),
                            });
                        }
                        if rs.len() > 1 {
                            lines.push(format!("×{} repeats", rs.len()));
                        }
                        lines.join("\n")
                    }
                };
                row.push(Cell::new(text));
            }
            t.add_row(row);
        }
        println!("{t}");
    }
    for target in &s.targets {
        if let Some(b) = &target.bench {
            let e = || -> Vec<String> {
                b.errors_by_kind
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            };
            if b.e2e_ms.count == 0 {
                // No rates or latencies of nothing: say what happened instead.
                println!(
                    "\n{}  no request succeeded: no latency figures",
                    target.target
                );
                if !b.errors_by_kind.is_empty() {
                    println!("  errors: {}", e().join(", "));
                }
                continue;
            }
            // Goodput only when it counts something beyond throughput (SLOs, or scores).
            let goodput = b
                .goodput_terms(target.pass_rate.is_some())
                .map(|terms| {
                    format!(
                        ", goodput {:.1} requests/s ({:.0} % {terms})",
                        b.goodput,
                        b.slo_attainment.unwrap_or(0.0) * 100.0
                    )
                })
                .unwrap_or_default();
            println!(
                "\n{}  {:.1} requests/s, {:.1} output tokens/s{goodput} over {:.1} s",
                target.target, b.request_throughput, b.output_tokens_per_s, b.duration_s
            );
            if b.tokens_estimated > 0 {
                println!(
                    "  output tokens of {} request(s) estimated with the o200k_base tokenizer: the server sent no usage",
                    b.tokens_estimated
                );
            }
            if let (Some(want), Some(got)) = (b.target_rate, b.achieved_rate) {
                println!(
                    "  open loop: asked {want:.1}/s, sent {got:.1}/s, mean send lag {}",
                    fmt_ms(b.mean_send_lag_ms)
                );
                if b.fell_behind {
                    println!(
                        "  the client fell behind: sends were late (p90 lag {}); latencies from the intended send times are the ones to read",
                        fmt_ms(b.send_lag_ms.as_ref().map(|l| l.p90))
                    );
                }
                if let Some(w) = b.queue_words() {
                    println!("  {w}");
                }
            }
            if !b.errors_by_kind.is_empty() {
                println!("  errors: {}", e().join(", "));
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(["", "n", "p50", "p90", "p95", "p99", "p99.9", "max", "mean"]);
            let row = |name: &str, p: &Percentiles| {
                let f = |v: f64| format!("{v:.1} ms");
                vec![
                    name.to_string(),
                    p.count.to_string(),
                    fmt_quantile(p.p50, p.ci95.p50),
                    fmt_quantile(p.p90, p.ci95.p90),
                    fmt_quantile(p.p95, p.ci95.p95),
                    fmt_quantile(p.p99, p.ci95.p99),
                    fmt_quantile(p.p999, p.ci95.p999),
                    f(p.max),
                    f(p.mean),
                ]
            };
            // Token timings exist only for streamed answers: rows without a sample are left
            // out rather than shown as 0 ms, as on the run page.
            let ttfc = (b.ttfc_ms != b.ttft_ms).then_some(&b.ttfc_ms);
            for (name, p) in [
                ("ttft (first token)", Some(&b.ttft_ms)),
                ("ttfc (first content)", ttfc),
                ("inter-token (pooled)", Some(&b.itl_ms)),
                ("inter-token (request mean)", Some(&b.itl_request_mean_ms)),
                ("per output token", Some(&b.tpot_ms)),
            ] {
                if let Some(p) = p.filter(|p| p.count > 0) {
                    t.add_row(row(name, p));
                }
            }
            t.add_row(row("end-to-end", &b.e2e_ms));
            if let Some(p) = &b.e2e_from_schedule_ms {
                t.add_row(row("end-to-end from schedule", p));
            }
            if let Some(p) = &b.send_lag_ms {
                t.add_row(row("send lag", p));
            }
            println!("{t}");
            println!("  in brackets: the 95 % confidence interval of each percentile");
            if [&b.ttft_ms, &b.itl_ms, &b.tpot_ms, &b.e2e_ms]
                .iter()
                .any(|p| p.count > 0 && p.ci95.p999.is_none())
            {
                println!("  \"too few\": {}", evald_model::fmt::TOO_FEW);
            }
            if b.ttft_ms.count == 0 && b.e2e_ms.count > 0 {
                println!(
                    "  no token timings: the answers were not streamed (a benchmark streams unless its job says `stream = false`)"
                );
            }
        }
    }
    if !s.targets.is_empty() {
        let scorers: Vec<String> = {
            let mut v: Vec<String> = s
                .targets
                .iter()
                .flat_map(|t| t.scorer_means.keys().cloned())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        let mut header: Vec<String> = [
            "target",
            "requests",
            "errors",
            "mean latency",
            "score",
            "pass rate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Cost only where something had a price: a column of dashes says nothing.
        let priced = s.targets.iter().any(|t| t.cost_usd.is_some());
        if priced {
            header.push("cost".into());
        }
        header.extend(scorers.iter().cloned());
        t.set_header(header);
        for ts in &s.targets {
            let mut row = vec![
                ts.target.clone(),
                ts.requests.to_string(),
                ts.errors.to_string(),
                fmt_ms(ts.mean_latency_ms),
                ts.mean_score
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "—".into()),
                ts.pass_rate
                    .map(|v| format!("{:.0}%", v * 100.0))
                    .unwrap_or_else(|| "—".into()),
            ];
            if priced {
                row.push(fmt_cost(ts.cost_usd, ts.cost_unpriced));
            }
            row.extend(scorers.iter().map(|k| {
                ts.scorer_means
                    .get(k)
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "—".into())
            }));
            t.add_row(row);
        }
        println!("{t}");
    }
}

/// A text on one line, at most `n` characters.
fn clip_line(s: &str, n: usize) -> String {
    evald_model::fmt::clip(&one_line(s), n)
}

/// A record's latency, with its time to first token when streamed.
pub fn timing(r: &evald_model::Record) -> String {
    let mut s = fmt_ms(r.response_time_ms);
    if let Some(t) = r.ttft_ms {
        s.push_str(&format!(" (first token {})", fmt_ms(Some(t))));
    }
    if let (Some(p), Some(c)) = (r.prompt_tokens, r.completion_tokens) {
        s.push_str(&format!(" · {p}→{c} tokens"));
    }
    if r.metadata.attempts > 1 {
        s.push_str(&format!(" · {} attempts", r.metadata.attempts));
    }
    s
}
