//! The commands of watching over time: `evald baseline pin|unpin`, `evald diff`, and the
//! verdict table `evald run` prints for a watched job.

use std::path::Path;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use evald_model::{DiffRow, RunSummary};

use super::report::fmt_ms;
use super::{Backend, Failure, backend, load_config};

/// `evald baseline pin JOB RUN` / `evald baseline unpin JOB`.
pub async fn pin(explicit: Option<&Path>, job: &str, run: Option<&str>) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let job = &super::run::job_name(&config, job)?;
    // Pinning needs the job (a typo is caught here, not as "a run of another job"); unpinning
    // does not, so a pin left by a removed job can still go.
    let unwatched = match run {
        Some(_) => super::run::load_job(&config, job)?.watch.is_none(),
        None => false,
    };
    let said = match backend(&config)? {
        Backend::Local(store) => {
            let writer = store.writer();
            let r = evald::run::watch::pin(&store, &writer, job, run).await;
            writer.close().await;
            r.map_err(Failure::Invalid)?
        }
        Backend::Daemon(daemon) => daemon.pin(job, run).await?,
    };
    println!("{said}");
    if unwatched {
        println!(
            "note: job `{job}` has no [watch] table, so no run of it is tested against the pin until it has one"
        );
    }
    Ok(true)
}

/// `evald diff RUN_A RUN_B`.
pub async fn diff(explicit: Option<&Path>, a: &str, b: &str, json: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let rows = match backend(&config)? {
        Backend::Local(store) => {
            evald::run::watch::diff_runs(&store, a, b).map_err(Failure::Invalid)?
        }
        Backend::Daemon(daemon) => daemon.diff(a, b).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(true);
    }
    print_diff(a, b, &rows);
    Ok(true)
}

fn outcome(p: Option<bool>) -> &'static str {
    match p {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "—",
    }
}

fn print_diff(a: &str, b: &str, rows: &[DiffRow]) {
    let flipped = rows.iter().filter(|r| r.flipped()).count();
    let changed = rows.iter().filter(|r| r.answer_changed).count();
    let edited = rows.iter().filter(|r| r.case_changed).count();
    println!(
        "{a} → {b}: {} case(s) compared, {flipped} flipped, {changed} answer(s) changed{}",
        rows.len(),
        if edited > 0 {
            format!(
                "; {edited} case(s) edited between the runs (marked), so their outcomes answer different questions"
            )
        } else {
            String::new()
        }
    );
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["target", "case", "outcome", "score", "latency", "answer"]);
    for r in rows {
        let delta = |x: Option<f64>, y: Option<f64>, f: &dyn Fn(f64) -> String| match (x, y) {
            (Some(x), Some(y)) => format!("{} → {}", f(x), f(y)),
            (x, y) => format!("{} → {}", x.map_or("—".into(), f), y.map_or("—".into(), f)),
        };
        let outcome = if r.flipped() {
            format!("{} → {}", outcome(r.passed_a), outcome(r.passed_b))
        } else {
            outcome(r.passed_b).to_string()
        };
        t.add_row([
            Cell::new(&r.target),
            Cell::new(r.case_label()),
            Cell::new(outcome),
            Cell::new(delta(r.score_a, r.score_b, &|v| format!("{v:.2}"))),
            Cell::new(delta(r.latency_a_ms, r.latency_b_ms, &|v| fmt_ms(Some(v)))),
            Cell::new(if r.answer_changed { "changed" } else { "same" }),
        ]);
    }
    println!("{t}");
}

/// The verdict of each watched target, as `evald run` prints it.
pub fn print_verdicts(s: &RunSummary) {
    if s.targets.iter().all(|t| t.watch.is_none()) {
        return;
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "target",
            "verdict",
            "pass rate (95 % CI)",
            "baseline",
            "p",
            "newly failing",
            "flaky",
        ]);
    for target in &s.targets {
        let Some(w) = &target.watch else { continue };
        let pct = |v: f64| format!("{:.1} %", v * 100.0);
        t.add_row([
            Cell::new(&target.target),
            Cell::new(format!("{}\n{}", w.verdict.as_str(), w.reason)),
            Cell::new(match (w.pass_rate, w.pass_rate_ci95) {
                (Some(r), Some([lo, hi])) => format!("{} ({}–{})", pct(r), pct(lo), pct(hi)),
                _ => "—".into(),
            }),
            Cell::new(w.baseline_pass_rate.map_or("—".into(), pct)),
            Cell::new(w.p_value.map_or("—".into(), |p| format!("{p:.3}"))),
            Cell::new(if w.newly_failing.is_empty() {
                "—".into()
            } else {
                w.newly_failing.join(" ")
            }),
            Cell::new(if w.flaky.is_empty() {
                "—".into()
            } else {
                w.flaky.join(" ")
            }),
        ]);
    }
    println!("{t}");
}
