//! After a compare run: each target's served-model identity against its previous run (a change
//! is a `served_model_changed` event), and, for a job with `[watch]`, each target's test
//! against the baseline — cases paired with the baseline's outcome, the exact two-sided
//! McNemar test on the discordant pairs (statrs' binomial), the Wilson 95 % interval on the
//! pass rate, flaky cases left out, and with `confirm` the newly failing cases re-sent once.

use std::collections::{BTreeMap, BTreeSet};

use evald_model::watch::{SERVED_MODEL_CHANGED, case_hashes, outcomes};
use evald_model::{Event, Identity, Record, RunSummary, TargetWatch, Verdict};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};

use crate::job::{Baseline, Case, Job, WatchSpec};
use crate::run::{RunContext, Target, compare_one};
use crate::score::Scorers;

/// Fewer paired cases than this, and the verdict is `insufficient`.
pub const MIN_PAIRED: u64 = 5;

/// The exact two-sided McNemar p-value: with `b` pairs pass → fail and `c` fail → pass, under
/// no change each discordant pair goes either way with probability ½, so
/// p = min(1, 2 · P(X ≤ min(b, c))) for X ~ Binomial(b + c, ½).
pub fn mcnemar_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let p = match Binomial::new(0.5, n) {
        Ok(d) => 2.0 * d.cdf(b.min(c)),
        Err(_) => 1.0,
    };
    // statrs evaluates the CDF through the regularised incomplete beta function, which lands
    // within ~1e-15 of exact values: a certain 1 is shown as 1.
    if p > 1.0 - 1e-12 { 1.0 } else { p }
}

/// The Wilson score interval for `k` successes in `n` trials at 95 %.
pub fn wilson(k: u64, n: u64) -> Option<[f64; 2]> {
    if n == 0 {
        return None;
    }
    let z = Normal::standard().inverse_cdf(0.975);
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some([(center - half).max(0.0), (center + half).min(1.0)])
}

/// One target's outcomes by case key.
type Outcomes = BTreeMap<String, bool>;

/// Cases whose outcome changed at least twice across the window (oldest first).
fn flaky(window: &[&Outcomes]) -> Vec<String> {
    let mut seq: BTreeMap<&str, Vec<bool>> = BTreeMap::new();
    for w in window {
        for (k, v) in w.iter() {
            seq.entry(k).or_default().push(*v);
        }
    }
    seq.into_iter()
        .filter(|(_, s)| s.windows(2).filter(|p| p[0] != p[1]).count() >= 2)
        .map(|(k, _)| k.to_string())
        .collect()
}

/// Each case's baseline outcome: the majority over the window, a tie going to the newest run.
fn majority(window: &[&Outcomes]) -> Outcomes {
    let mut votes: BTreeMap<&str, (u32, u32, bool)> = BTreeMap::new();
    for w in window {
        for (k, v) in w.iter() {
            let e = votes.entry(k).or_insert((0, 0, *v));
            if *v {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
            e.2 = *v;
        }
    }
    votes
        .into_iter()
        .map(|(k, (pass, fail, newest))| {
            let v = match pass.cmp(&fail) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => newest,
            };
            (k.to_string(), v)
        })
        .collect()
}

/// The test of one target's outcomes against a window of baseline outcomes (oldest first).
pub fn evaluate(
    spec: &WatchSpec,
    current: &Outcomes,
    window: &[&Outcomes],
    what: &str,
) -> TargetWatch {
    let mut w = TargetWatch {
        verdict: Verdict::Insufficient,
        reason: String::new(),
        p_value: None,
        pass_rate: None,
        pass_rate_ci95: None,
        baseline_pass_rate: None,
        paired: 0,
        newly_failing: vec![],
        newly_passing: vec![],
        flaky: vec![],
        changed: vec![],
    };
    if window.is_empty() {
        w.reason = format!("no baseline yet ({what})");
        return w;
    }
    w.flaky = flaky(window);
    let base = majority(window);
    let (mut passed, mut base_passed) = (0u64, 0u64);
    for (k, &now) in current {
        let Some(&then) = base.get(k) else { continue };
        if w.flaky.contains(k) {
            continue;
        }
        w.paired += 1;
        passed += u64::from(now);
        base_passed += u64::from(then);
        match (then, now) {
            (true, false) => w.newly_failing.push(k.clone()),
            (false, true) => w.newly_passing.push(k.clone()),
            _ => {}
        }
    }
    if w.paired < MIN_PAIRED {
        w.reason = format!(
            "{} paired cases against {what}; the test needs {MIN_PAIRED}",
            w.paired
        );
        return w;
    }
    let n = w.paired as f64;
    let (rate, base_rate) = (passed as f64 / n, base_passed as f64 / n);
    let p = mcnemar_p(w.newly_failing.len() as u64, w.newly_passing.len() as u64);
    w.p_value = Some(p);
    w.pass_rate = Some(rate);
    w.pass_rate_ci95 = wilson(passed, w.paired);
    w.baseline_pass_rate = Some(base_rate);
    let significant = p < spec.significance;
    w.verdict = if significant && base_rate - rate >= spec.min_drop {
        Verdict::Regressed
    } else if significant && rate - base_rate >= spec.min_drop {
        Verdict::Improved
    } else {
        Verdict::Ok
    };
    // `ok` says "no regression shown", not "fine": a large change that the test cannot tell
    // from chance (few cases changed) says so.
    let change = rate - base_rate;
    w.reason = if !significant && change.abs() >= spec.min_drop {
        format!(
            "against {what}; the {} of {:.0} points is not significant (p {p:.3} ≥ {}): too few cases changed to tell",
            if change < 0.0 { "drop" } else { "rise" },
            change.abs() * 100.0,
            spec.significance
        )
    } else {
        format!("against {what}")
    };
    w
}

/// The baseline runs of a job (oldest first) and what to call them, by the pin or the spec.
fn baseline_runs(
    ctx: &RunContext,
    job: &Job,
    spec: &WatchSpec,
    run_id: &str,
) -> (Vec<RunSummary>, String) {
    let pinned = ctx.store.pinned(&job.name).ok().flatten();
    if let Some(pin) = pinned {
        let run = ctx.store.run(&pin).ok().flatten();
        let what = format!("pinned run {pin}");
        return (run.into_iter().collect(), what);
    }
    let n = match spec.baseline {
        Baseline::Previous => 1,
        Baseline::Rolling(n) => n,
        Baseline::Pinned => return (vec![], "no pinned run: `evald baseline pin`".into()),
    };
    let mut runs = ctx
        .store
        .finished_runs(&job.name, n, run_id)
        .unwrap_or_default();
    runs.reverse();
    let what = match (spec.baseline, runs.len()) {
        (Baseline::Previous, _) => "the previous run".to_string(),
        (_, 0) => format!("a window of the last {n} runs, none finished yet"),
        (_, 1) => "the last finished run".to_string(),
        (_, k) => format!("the last {k} finished runs"),
    };
    (runs, what)
}

/// Pins `run` as `job`'s baseline (`None` unpins): the run must be a finished run of the job.
/// What was done, in words.
pub async fn pin(
    store: &crate::store::Store,
    writer: &crate::store::Writer,
    job: &str,
    run: Option<&str>,
) -> Result<String, String> {
    let Some(run) = run else {
        let was = store.pinned(job).map_err(|e| e.to_string())?;
        writer.pin(job, None).await;
        return Ok(match was {
            Some(r) => {
                format!("unpinned run {r} from job `{job}`: its [watch] baseline applies again")
            }
            None => format!("job `{job}` had no pinned run"),
        });
    };
    let found = store.run(run).map_err(|e| e.to_string())?;
    match found {
        None => Err(format!(
            "no run `{run}` (the job's page and `/api/v1/runs?job={job}` list its runs)"
        )),
        Some(s) if s.job != job => Err(format!(
            "run {run} is a run of job `{}`, not of `{job}`",
            s.job
        )),
        Some(s) if s.status != evald_model::RunStatus::Ok => Err(format!(
            "run {run} ended {}; only a run that ended ok can be a baseline",
            s.status.as_str()
        )),
        Some(_) => {
            writer.pin(job, Some(run)).await;
            Ok(format!("pinned run {run} as the baseline of job `{job}`"))
        }
    }
}

/// Runs `a` and `b` compared case by case.
pub fn diff_runs(
    store: &crate::store::Store,
    a: &str,
    b: &str,
) -> Result<Vec<evald_model::DiffRow>, String> {
    let job = |id: &str| -> Result<String, String> {
        match store.run(id).map_err(|e| e.to_string())? {
            Some(r) => Ok(r.job),
            None => Err(format!("no run `{id}`")),
        }
    };
    let (job_a, job_b) = (job(a)?, job(b)?);
    if job_a != job_b {
        return Err(format!(
            "run `{a}` is of job `{job_a}` and run `{b}` of job `{job_b}`: diff pairs the cases of two runs of one job"
        ));
    }
    let records = |id: &str| store.run_records(id, usize::MAX).map_err(|e| e.to_string());
    Ok(evald_model::watch::diff(&records(a)?, &records(b)?))
}

/// Identities and events for every compare run; the watch test when the job has `[watch]`.
/// Confirming re-sends are stored and added to `records`.
#[allow(clippy::too_many_arguments)]
pub async fn after_run(
    ctx: &RunContext,
    job: &Job,
    summary: &mut RunSummary,
    records: &mut Vec<Record>,
    targets: &[Target],
    cases: &[Case],
    scorers: &Scorers,
) {
    identities(ctx, job, summary, records).await;
    let Some(spec) = &job.watch else { return };
    let t0 = std::time::Instant::now();
    let (runs, what) = baseline_runs(ctx, job, spec, &summary.id);
    let now = case_hashes(records.iter());
    let mut changed = BTreeSet::new();
    let window: Vec<BTreeMap<String, Outcomes>> = runs
        .iter()
        .map(|r| {
            let then = ctx.store.run_records(&r.id, usize::MAX).unwrap_or_default();
            let mut o = outcomes(&then);
            leave_out_edited(&mut o, &case_hashes(&then), &now, &mut changed);
            o
        })
        .collect();
    let mut current = outcomes(records.iter());
    if spec.confirm && !window.is_empty() {
        let resends = newly_failing(spec, &current, &window, &what);
        if !resends.is_empty() {
            let again = confirm(ctx, job, &summary.id, targets, cases, scorers, &resends).await;
            records.extend(again);
            current = outcomes(records.iter());
        }
    }
    let empty = Outcomes::new();
    for t in &mut summary.targets {
        let win: Vec<&Outcomes> = window.iter().filter_map(|w| w.get(&t.target)).collect();
        let cur = current.get(&t.target).unwrap_or(&empty);
        let mut w = evaluate(spec, cur, &win, &what);
        let errored = records
            .iter()
            .filter(|r| r.error.is_some() && !r.metadata.warmup && !r.metadata.confirm)
            .filter(|r| r.target() == t.target)
            .count();
        w.changed = changed.iter().cloned().collect();
        if !changed.is_empty() {
            w.reason.push_str(&format!(
                "; {} case(s) edited since the baseline (messages, reference or scorers) are left out of the test",
                changed.len()
            ));
        }
        if errored > 0 {
            w.reason.push_str(&format!(
                "; {errored} request(s) failed and are left out of the test (an error is no answer: see the error rate)"
            ));
        }
        t.watch = Some(w);
    }
    tracing::info!(
        baseline_runs = window.len(),
        ms = t0.elapsed().as_secs_f64() * 1000.0,
        "watch: verdicts computed"
    );
}

/// Drops from a baseline run's outcomes each case whose fingerprint differs from this run's
/// (both known: records from before fingerprints pair as before), noting it in `changed`.
fn leave_out_edited(
    outcomes: &mut BTreeMap<String, Outcomes>,
    then: &BTreeMap<String, &str>,
    now: &BTreeMap<String, &str>,
    changed: &mut BTreeSet<String>,
) {
    for per_target in outcomes.values_mut() {
        per_target.retain(|k, _| match (then.get(k), now.get(k)) {
            (Some(a), Some(b)) if a != b => {
                changed.insert(k.clone());
                false
            }
            _ => true,
        });
    }
}

/// (target, case key) pairs that failed now and passed in the baseline.
fn newly_failing(
    spec: &WatchSpec,
    current: &BTreeMap<String, Outcomes>,
    window: &[BTreeMap<String, Outcomes>],
    what: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (target, cur) in current {
        let win: Vec<&Outcomes> = window.iter().filter_map(|w| w.get(target)).collect();
        for k in evaluate(spec, cur, &win, what).newly_failing {
            out.push((target.clone(), k));
        }
    }
    out
}

/// Sends each (target, case key) once more, marked as a confirming re-send.
async fn confirm(
    ctx: &RunContext,
    job: &Job,
    run_id: &str,
    targets: &[Target],
    cases: &[Case],
    scorers: &Scorers,
    resends: &[(String, String)],
) -> Vec<Record> {
    use futures_util::StreamExt;
    let scoring_us = std::sync::atomic::AtomicU64::new(0);
    let mut work = Vec::new();
    for (target, key) in resends {
        let (id, rep) = match key.rsplit_once('#') {
            Some((id, r)) => (id, r.parse().unwrap_or(0)),
            None => (key.as_str(), 0u32),
        };
        let (Some(t), Some(case)) = (
            targets.iter().find(|t| t.name() == *target),
            cases.iter().find(|c| c.id == id),
        ) else {
            continue;
        };
        work.push(compare_one(
            ctx,
            job,
            run_id,
            scorers,
            &scoring_us,
            rep,
            case,
            t,
            true,
        ));
    }
    futures_util::stream::iter(work)
        .buffer_unordered(job.concurrency.max(1))
        .collect::<Vec<Option<Record>>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Sets each target's identity and stores an event where it differs from the target's
/// previous finished run.
async fn identities(ctx: &RunContext, job: &Job, summary: &mut RunSummary, records: &[Record]) {
    let previous = ctx
        .store
        .finished_runs(&job.name, 20, &summary.id)
        .unwrap_or_default();
    for t in &mut summary.targets {
        let Some(now) = Identity::of_run(records.iter().filter(|r| r.target() == t.target)) else {
            continue;
        };
        let before = previous.iter().find_map(|r| {
            r.targets
                .iter()
                .find(|p| p.target == t.target)
                .and_then(|p| p.identity.clone())
                .map(|i| (i, r.id.as_str()))
        });
        // A change of the most common identity is a change of model only when the new one
        // answered none of that run's requests: behind a load balancer two deployments of one
        // model take turns at being the most common, which is no change at all.
        let seen_before = |run: &str| {
            ctx.store
                .run_records(run, usize::MAX)
                .unwrap_or_default()
                .iter()
                .filter(|r| r.target() == t.target && r.error.is_none())
                .map(Identity::of)
                .any(|i| !i.is_empty() && !now.differs_from(&i))
        };
        if let Some((before, run)) = before
            && now.differs_from(&before)
            && !seen_before(run)
        {
            let at = chrono::Utc::now();
            let e = Event {
                time: at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                time_ms: at.timestamp_millis(),
                kind: SERVED_MODEL_CHANGED.into(),
                job: job.name.clone(),
                target: t.target.clone(),
                run_id: summary.id.clone(),
                before,
                after: now.clone(),
            };
            tracing::warn!(target = %t.target, before = ?e.before, after = ?e.after, "the served model changed");
            ctx.metrics.event(SERVED_MODEL_CHANGED);
            ctx.writer.event(e).await;
        }
        t.identity = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values computed independently: 2 · 0.5¹⁰ for b = 10, c = 0; 2 · 0.5 capped at 1 for
    /// b = 1, c = 0; 2 · P(X ≤ 2), X ~ Bin(10, ½) = 2 · 56/1024 for b = 8, c = 2 (R:
    /// `binom.test(2, 10)$p.value` = 0.109375).
    #[test]
    fn mcnemar_matches_the_exact_binomial() {
        assert!((mcnemar_p(10, 0) - 0.001953125).abs() < 1e-12);
        assert!((mcnemar_p(1, 0) - 1.0).abs() < 1e-12);
        assert!((mcnemar_p(8, 0) - 2f64.powi(-7)).abs() < 1e-12);
        assert!((mcnemar_p(8, 2) - 0.109375).abs() < 1e-12);
        assert!((mcnemar_p(2, 8) - 0.109375).abs() < 1e-12);
        assert_eq!(mcnemar_p(0, 0), 1.0);
    }

    /// Wilson 95 % for 22 of 30: [0.5555, 0.8582] (R: `prop.test(22, 30, correct = FALSE)`);
    /// for 0 of 10: [0, 0.2775].
    #[test]
    fn wilson_matches_published_values() {
        let [lo, hi] = wilson(22, 30).unwrap();
        assert!(
            (lo - 0.55552).abs() < 1e-4 && (hi - 0.85817).abs() < 1e-4,
            "{lo} {hi}"
        );
        let [lo, hi] = wilson(0, 10).unwrap();
        assert!(lo.abs() < 1e-12 && (hi - 0.27753).abs() < 1e-4, "{lo} {hi}");
        assert_eq!(wilson(0, 0), None);
    }

    fn run(pass: &[bool]) -> Outcomes {
        pass.iter()
            .enumerate()
            .map(|(i, p)| (format!("c{i:02}"), *p))
            .collect()
    }

    #[test]
    fn verdicts_follow_the_test_and_the_minimum_drop() {
        let spec = WatchSpec {
            baseline: Baseline::Rolling(3),
            significance: 0.05,
            min_drop: 0.05,
            confirm: false,
        };
        let good = run(&[true; 30]);
        let mut bad8 = good.clone();
        for i in 0..8 {
            bad8.insert(format!("c{i:02}"), false);
        }
        let w = evaluate(&spec, &bad8, &[&good, &good, &good], "x");
        assert_eq!(w.verdict, Verdict::Regressed);
        assert_eq!(w.newly_failing.len(), 8);
        assert_eq!(w.baseline_pass_rate, Some(1.0));
        let mut bad1 = good.clone();
        bad1.insert("c00".into(), false);
        let w = evaluate(&spec, &bad1, &[&good], "x");
        assert_eq!(w.verdict, Verdict::Ok);
        assert_eq!(w.reason, "against x", "a drop below min_drop needs no word");
        // Five of six cases newly failing: an 83-point drop, p = 0.0625, not significant.
        let six = run(&[true; 6]);
        let mut five_fail = run(&[false; 6]);
        five_fail.insert("c05".into(), true);
        let w = evaluate(&spec, &five_fail, &[&six], "x");
        assert_eq!(w.verdict, Verdict::Ok);
        assert!(
            w.reason
                .contains("the drop of 83 points is not significant (p 0.062"),
            "{}",
            w.reason
        );
        assert_eq!(
            evaluate(&spec, &good, &[&bad8], "x").verdict,
            Verdict::Improved
        );
        assert_eq!(
            evaluate(&spec, &good, &[], "x").verdict,
            Verdict::Insufficient
        );
        let four = run(&[true; 4]);
        assert_eq!(
            evaluate(&spec, &four, &[&four], "x").verdict,
            Verdict::Insufficient
        );
        // c00 passes, fails, passes across the window: flaky, and left out.
        let w = evaluate(&spec, &bad1, &[&good, &bad1, &good], "x");
        assert_eq!(w.flaky, ["c00"]);
        assert_eq!(w.paired, 29);
        assert!(w.newly_failing.is_empty());
    }
}
