//! Alerts: after each run of a job with `[[alerts]]`, each alert is judged per target and its
//! state moves (`ok`, `warning`, `firing`, `no_data`, `silenced`); a change between ok,
//! warning, firing and no_data, and every `renotify` while firing, is delivered to the alert's
//! notifiers ([`deliver`]). States are stored (a restart resumes them without sending), shown
//! on `/alerts` and as `evald_alert_state`. A tick every second judges `no_run`, renotifies
//! and moves states into and out of maintenance windows.

pub mod deliver;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use evald_model::{AlertState, AlertStatus, AlertsView, Delivery, Event, RunStatus, Verdict};
use serde_json::json;

use crate::config::Config;
use crate::job::{AlertSpec, Condition, EventCondition, Job, Metric};
use crate::metrics::Metrics;
use crate::run::RunReport;
use crate::store::{Store, Writer};

pub use deliver::Deliveries;

/// The target of a job-level condition (`no_run`).
pub const JOB_LEVEL: &str = "*";

fn key(job: &str, alert: &str, target: &str) -> String {
    format!("{job}\u{1f}{alert}\u{1f}{target}")
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The engine: states, and the delivery queue.
pub struct Alerts {
    states: Mutex<BTreeMap<String, AlertStatus>>,
    /// The queue and its log.
    pub deliveries: Deliveries,
    writer: Writer,
    metrics: Arc<Metrics>,
    started_ms: i64,
    /// When each job's last run that finished (ok or failed) ended: read from the store the
    /// first time a `no_run` alert asks, then kept by `after_run`, so the once-a-second check
    /// reads no run summaries.
    last_finished: Mutex<BTreeMap<String, Option<i64>>>,
}

/// What one judgement of an alert for a target says.
struct Judged<'a> {
    bad: Option<bool>,
    warn: bool,
    value: Option<f64>,
    run_id: Option<&'a str>,
    /// What an event was, in words, for the notification (`value` says nothing of it).
    detail: Option<String>,
    /// A `regression`: the baseline pass rate of the run judged.
    baseline: Option<f64>,
}

impl Alerts {
    /// The engine with the states stored in `store`.
    pub fn new(store: &Store, writer: Writer, metrics: Arc<Metrics>, config: &Config) -> Alerts {
        let mut states = BTreeMap::new();
        for n in config.notifiers.keys() {
            metrics.notifier(n);
        }
        for a in store.alert_states().unwrap_or_default() {
            metrics.alert_state(&a.job, &a.alert, &a.target, a.state.gauge());
            states.insert(key(&a.job, &a.alert, &a.target), a);
        }
        Alerts {
            states: Mutex::new(states),
            deliveries: Deliveries::new(config.secrets()).counted(metrics.clone()),
            writer,
            metrics,
            started_ms: Utc::now().timestamp_millis(),
            last_finished: Mutex::default(),
        }
    }

    /// When `job`'s last finished run ended (see `last_finished`).
    fn last_finished(&self, job: &str, store: &Store) -> Option<i64> {
        let mut cache = self.last_finished.lock().unwrap_or_else(|p| p.into_inner());
        *cache.entry(job.to_string()).or_insert_with(|| {
            store
                .runs(Some(job), 200)
                .unwrap_or_default()
                .into_iter()
                .find(|r| matches!(r.status, RunStatus::Ok | RunStatus::Failed))
                .and_then(|r| r.ended_ms)
        })
    }

    fn states(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, AlertStatus>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every state, and the delivery log.
    pub fn view(&self) -> AlertsView {
        AlertsView {
            alerts: self.states().values().cloned().collect(),
            deliveries: self.deliveries.recent(),
        }
    }

    /// Forgets the states of alerts a job no longer has (or of a job that is gone).
    pub fn retain(&self, jobs: &[Arc<Job>]) {
        self.states().retain(|_, a| {
            jobs.iter()
                .any(|j| j.name == a.job && j.alerts.iter().any(|s| s.name == a.alert))
        });
    }

    /// Judges every alert of `job` on the run in `report`.
    pub async fn after_run(
        &self,
        config: &Config,
        job: &Job,
        report: &RunReport,
        events: &[Event],
    ) {
        let s = &report.summary;
        if job.alerts.is_empty() || matches!(s.status, RunStatus::Skipped | RunStatus::Running) {
            return;
        }
        if matches!(s.status, RunStatus::Ok | RunStatus::Failed) {
            self.last_finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(job.name.clone(), s.ended_ms);
        }
        for spec in &job.alerts {
            if matches!(spec.when, Condition::Event(EventCondition::NoRun)) {
                // A finished run is a good judgement of `no_run`.
                if matches!(s.status, RunStatus::Ok | RunStatus::Failed) {
                    let j = Judged {
                        bad: Some(false),
                        warn: false,
                        value: None,
                        run_id: Some(&s.id),
                        detail: None,
                        baseline: None,
                    };
                    self.judge(config, job, spec, JOB_LEVEL, j).await;
                }
                continue;
            }
            for t in s.targets.iter().filter(|t| spec.covers(&t.target)) {
                // An `insufficient` verdict (no baseline yet, or too few answers to pair, as
                // in an outage) says nothing either way: a firing regression does not resolve
                // on it, nor does a first run report `no_data`. The state stands.
                if matches!(spec.when, Condition::Event(EventCondition::Regression))
                    && t.watch
                        .as_ref()
                        .is_some_and(|w| w.verdict == Verdict::Insufficient)
                {
                    continue;
                }
                // A firing regression holds while the pass rate stays `min_drop` below the
                // baseline it fired against: a rolling window that has filled with bad runs
                // reads `ok`, but the target is no better.
                let still_low = |w: &evald_model::TargetWatch| -> bool {
                    let min_drop = job.watch.as_ref().map_or(0.0, |s| s.min_drop);
                    let states = self.states();
                    let fired = states
                        .get(&key(&job.name, &spec.name, &t.target))
                        .filter(|a| a.underlying.unwrap_or(a.state) == AlertState::Firing)
                        .and_then(|a| a.fired_baseline);
                    matches!((fired, w.pass_rate), (Some(b), Some(now)) if b - now >= min_drop)
                };
                let eval = |c: &Condition| -> (Option<bool>, Option<f64>) {
                    match c {
                        Condition::Threshold {
                            metric,
                            op,
                            threshold,
                        } => {
                            let v = value(metric, t, &report.records);
                            (v.map(|v| op.holds(v, *threshold)), v)
                        }
                        Condition::Event(EventCondition::Regression) => {
                            let w = t.watch.as_ref();
                            (
                                w.map(|w| w.verdict == Verdict::Regressed || still_low(w)),
                                w.and_then(|w| w.p_value),
                            )
                        }
                        Condition::Event(EventCondition::ServedModelChanged) => (
                            Some(
                                events
                                    .iter()
                                    .any(|e| e.run_id == s.id && e.target == t.target),
                            ),
                            None,
                        ),
                        Condition::Event(EventCondition::NoRun) => (None, None),
                    }
                };
                let (bad, v) = eval(&spec.when);
                let warn = spec.warn.as_ref().is_some_and(|w| eval(w).0 == Some(true));
                let detail = match &spec.when {
                    Condition::Event(EventCondition::Regression) => {
                        t.watch.as_ref().map(regression_words)
                    }
                    Condition::Event(EventCondition::ServedModelChanged) => events
                        .iter()
                        .find(|e| e.run_id == s.id && e.target == t.target)
                        .map(|e| format!("{} → {}", e.before.words(), e.after.words())),
                    _ => None,
                };
                let j = Judged {
                    bad,
                    warn,
                    value: v,
                    run_id: Some(&s.id),
                    detail,
                    baseline: matches!(spec.when, Condition::Event(EventCondition::Regression))
                        .then(|| t.watch.as_ref().and_then(|w| w.baseline_pass_rate))
                        .flatten(),
                };
                self.judge(config, job, spec, &t.target, j).await;
            }
        }
    }

    /// Moves one alert's state for one target, stores it, and notifies on a change.
    async fn judge(
        &self,
        config: &Config,
        job: &Job,
        spec: &AlertSpec,
        target: &str,
        j: Judged<'_>,
    ) {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        let window = config
            .maintenance
            .iter()
            .find_map(|m| m.covers(&job.name, now));
        let threshold = match &spec.when {
            Condition::Threshold { threshold, .. } => Some(*threshold),
            Condition::Event(_) => None,
        };
        let (notify, status) = {
            let mut states = self.states();
            let a = states
                .entry(key(&job.name, &spec.name, target))
                .or_insert_with(|| AlertStatus {
                    job: job.name.clone(),
                    alert: spec.name.clone(),
                    target: target.to_string(),
                    state: AlertState::Ok,
                    since: rfc3339(now_ms),
                    since_ms: now_ms,
                    value: None,
                    threshold,
                    bad_runs: 0,
                    good_runs: 0,
                    underlying: None,
                    silenced_until: None,
                    notified_ms: None,
                    run_id: None,
                    fired_baseline: None,
                });
            let before = a.underlying.unwrap_or(a.state);
            a.value = j.value;
            a.threshold = threshold;
            if let Some(r) = j.run_id {
                a.run_id = Some(r.to_string());
            }
            let after = match j.bad {
                None => {
                    a.bad_runs = 0;
                    a.good_runs = 0;
                    AlertState::NoData
                }
                Some(true) => {
                    a.bad_runs += 1;
                    a.good_runs = 0;
                    if a.bad_runs >= spec.for_runs || before == AlertState::Firing {
                        AlertState::Firing
                    } else if j.warn {
                        AlertState::Warning
                    } else if before == AlertState::NoData {
                        AlertState::Ok
                    } else {
                        before
                    }
                }
                Some(false) => {
                    a.good_runs += 1;
                    a.bad_runs = 0;
                    let resolving = matches!(before, AlertState::Firing | AlertState::Warning)
                        && a.good_runs < spec.resolve_runs;
                    if resolving {
                        before
                    } else if j.warn {
                        AlertState::Warning
                    } else {
                        AlertState::Ok
                    }
                }
            };
            let changed = after != before;
            if changed {
                a.since_ms = now_ms;
                a.since = rfc3339(now_ms);
            }
            a.fired_baseline = match after {
                AlertState::Firing => a.fired_baseline.or(j.baseline),
                AlertState::Ok => None,
                _ => a.fired_baseline,
            };
            let notify = match window {
                Some(until) => {
                    a.underlying = Some(after);
                    a.state = AlertState::Silenced;
                    a.silenced_until = Some(until.to_rfc3339_opts(SecondsFormat::Secs, true));
                    None
                }
                None => {
                    a.underlying = None;
                    a.silenced_until = None;
                    a.state = after;
                    changed.then_some(before)
                }
            };
            if notify.is_some() {
                a.notified_ms = Some(now_ms);
            }
            (notify, a.clone())
        };
        self.metrics.alert_state(
            &status.job,
            &status.alert,
            &status.target,
            status.state.gauge(),
        );
        self.writer.alert(status.clone()).await;
        if let Some(previous) = notify {
            self.notify(config, spec, &status, previous, j.detail.as_deref());
        }
    }

    /// Queues a delivery of `a`'s state to each of the alert's notifiers.
    fn notify(
        &self,
        config: &Config,
        spec: &AlertSpec,
        a: &AlertStatus,
        previous: AlertState,
        detail: Option<&str>,
    ) {
        let state = a.state.as_str();
        // An event says what happened; a threshold its value.
        let value = match detail {
            Some(d) => d.to_string(),
            None => a
                .value
                .map_or("no value".to_string(), |v| format!("value {v}")),
        };
        let message = match a.state {
            AlertState::Ok => format!(
                "resolved: {}/{} on {} is ok again (was {}; {value})",
                a.job,
                a.alert,
                a.target,
                previous.as_str()
            ),
            _ => format!(
                "{}: {}/{} on {} ({}; {value})",
                state.to_uppercase(),
                a.job,
                a.alert,
                a.target,
                condition_words(&spec.when)
            ),
        };
        for name in &spec.notify {
            let Some(n) = config.notifiers.get(name) else {
                continue;
            };
            let id = uuid::Uuid::new_v4().to_string();
            let payload = json!({
                "id": id,
                "alert": a.alert,
                "job": a.job,
                "target": a.target,
                "state": state,
                "previous_state": previous.as_str(),
                "value": a.value,
                "threshold": a.threshold,
                "since": a.since,
                "run_id": a.run_id,
                "run_url": a.run_id.as_ref().map(|r| format!("{}/runs/{r}", config.public_url)),
                "message": message,
            });
            let d = Delivery {
                id,
                notifier: name.clone(),
                job: a.job.clone(),
                alert: a.alert.clone(),
                target: a.target.clone(),
                state: state.to_string(),
                attempts: 0,
                status: "pending".into(),
                http_status: None,
                error: None,
                time: rfc3339(Utc::now().timestamp_millis()),
            };
            tracing::info!(job = %a.job, alert = %a.alert, target = %a.target, state, previous = previous.as_str(), notifier = %name, "alert state changed; notifying");
            self.deliveries.send(n, d, payload);
        }
    }

    /// Once a second: `no_run` for scheduled jobs, renotify while firing, and maintenance
    /// windows starting or ending.
    pub async fn tick(&self, config: &Config, jobs: &[Arc<Job>], store: &Store) {
        let now = Utc::now();
        let now_ms = now.timestamp_millis();
        for job in jobs {
            for spec in job
                .alerts
                .iter()
                .filter(|s| matches!(s.when, Condition::Event(EventCondition::NoRun)))
            {
                let Some(sched) = &job.schedule else { continue };
                let (Some(a), Some(b)) = (
                    sched.next_after(now),
                    sched.next_after(now).and_then(|a| sched.next_after(a)),
                ) else {
                    continue;
                };
                let period = (b - a).num_milliseconds().max(1);
                let last = self.last_finished(&job.name, store);
                let since = last.unwrap_or(0).max(self.started_ms);
                let overdue = now_ms - since > 2 * period;
                let current = self
                    .states()
                    .get(&key(&job.name, &spec.name, JOB_LEVEL))
                    .map(|a| a.state);
                // Judged when it turns overdue (or is still overdue but not yet firing); a
                // finished run judges it good (`after_run`).
                if overdue
                    && current != Some(AlertState::Firing)
                    && current != Some(AlertState::Silenced)
                {
                    let j = Judged {
                        bad: Some(true),
                        warn: false,
                        value: Some((now_ms - since) as f64 / 1000.0),
                        run_id: None,
                        detail: None,
                        baseline: None,
                    };
                    self.judge(config, job, spec, JOB_LEVEL, j).await;
                }
            }
        }
        // Renotify while firing; maintenance windows starting and ending.
        let mut renotify = Vec::new();
        let mut moved = Vec::new();
        {
            let mut states = self.states();
            for a in states.values_mut() {
                let Some(job) = jobs.iter().find(|j| j.name == a.job) else {
                    continue;
                };
                let Some(spec) = job.alerts.iter().find(|s| s.name == a.alert) else {
                    continue;
                };
                let window = config
                    .maintenance
                    .iter()
                    .find_map(|m| m.covers(&a.job, now));
                match (a.state, window) {
                    (AlertState::Silenced, None) => {
                        a.state = a.underlying.take().unwrap_or(AlertState::Ok);
                        a.silenced_until = None;
                        moved.push(a.clone());
                    }
                    (AlertState::Silenced, Some(_)) => {}
                    (s, Some(until)) => {
                        a.underlying = Some(s);
                        a.state = AlertState::Silenced;
                        a.silenced_until = Some(until.to_rfc3339_opts(SecondsFormat::Secs, true));
                        moved.push(a.clone());
                    }
                    (AlertState::Firing, None) => {
                        if let Some(every) = spec.renotify
                            && now_ms - a.notified_ms.unwrap_or(a.since_ms)
                                >= every.as_millis() as i64
                        {
                            a.notified_ms = Some(now_ms);
                            renotify.push((spec.clone(), a.clone()));
                            moved.push(a.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        for a in moved {
            self.metrics
                .alert_state(&a.job, &a.alert, &a.target, a.state.gauge());
            self.writer.alert(a).await;
        }
        for (spec, a) in renotify {
            self.notify(config, &spec, &a, AlertState::Firing, None);
        }
    }
}

/// A condition as written.
fn condition_words(c: &Condition) -> String {
    match c {
        Condition::Threshold {
            metric,
            op,
            threshold,
        } => {
            let op = match op {
                crate::job::Op::Lt => "<",
                crate::job::Op::Le => "<=",
                crate::job::Op::Gt => ">",
                crate::job::Op::Ge => ">=",
                crate::job::Op::Eq => "==",
                crate::job::Op::Ne => "!=",
            };
            format!("{} {op} {threshold}", metric.name())
        }
        Condition::Event(EventCondition::Regression) => "regression".into(),
        Condition::Event(EventCondition::ServedModelChanged) => "served_model_changed".into(),
        Condition::Event(EventCondition::NoRun) => "no_run".into(),
    }
}

/// A watch verdict in words: `pass rate 73.3 % vs 100.0 % (p 0.008); newly failing c01, c02,
/// c03 and 5 more`.
fn regression_words(w: &evald_model::TargetWatch) -> String {
    let pct = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{:.1} %", v * 100.0));
    let mut s = format!(
        "pass rate {} vs {}",
        pct(w.pass_rate),
        pct(w.baseline_pass_rate)
    );
    if let Some(p) = w.p_value {
        s.push_str(&format!(" (p {p:.3})"));
    }
    if !w.newly_failing.is_empty() {
        let shown: Vec<&str> = w.newly_failing.iter().take(3).map(String::as_str).collect();
        s.push_str(&format!("; newly failing {}", shown.join(", ")));
        if w.newly_failing.len() > 3 {
            s.push_str(&format!(" and {} more", w.newly_failing.len() - 3));
        }
    }
    s
}

/// A metric of one target of a run; `None` when it does not apply or there is nothing to
/// measure (every request failed).
fn value(
    m: &Metric,
    t: &evald_model::TargetSummary,
    records: &[evald_model::Record],
) -> Option<f64> {
    let p95 = |f: &dyn Fn(&evald_model::Record) -> Option<f64>| -> Option<f64> {
        let mut v: Vec<f64> = records
            .iter()
            .filter(|r| r.target() == t.target && r.error.is_none() && !r.metadata.confirm)
            .filter_map(f)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1])
    };
    match m {
        Metric::PassRate => t.pass_rate,
        Metric::MeanScore => t.mean_score,
        Metric::Score(n) => t.scorer_means.get(n).copied(),
        Metric::ErrorRate => (t.requests > 0).then(|| t.errors as f64 / t.requests as f64),
        Metric::LatencyP95Ms => match &t.bench {
            Some(b) => (b.e2e_ms.count > 0).then_some(b.e2e_ms.p95),
            None => p95(&|r| r.response_time_ms),
        },
        Metric::TtftP95Ms => match &t.bench {
            Some(b) => (b.ttft_ms.count > 0).then_some(b.ttft_ms.p95),
            None => p95(&|r| r.ttft_ms),
        },
        Metric::Goodput => t.bench.as_ref().map(|b| b.goodput),
        Metric::SloAttainment => t.bench.as_ref().and_then(|b| b.slo_attainment),
        Metric::CostUsd => t.cost_usd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spend alert judges the target's cost: known, it has a value; unknown, `no_data`.
    #[test]
    fn cost_usd_is_the_targets_known_cost() {
        let mut t = evald_model::TargetSummary {
            cost_usd: Some(0.0615),
            ..Default::default()
        };
        assert_eq!(value(&Metric::CostUsd, &t, &[]), Some(0.0615));
        t.cost_usd = None;
        assert_eq!(value(&Metric::CostUsd, &t, &[]), None);
    }

    /// A regression's notification says what got worse, not a bare p-value.
    #[test]
    fn a_regression_is_told_in_pass_rates_and_cases() {
        let w = evald_model::TargetWatch {
            verdict: Verdict::Regressed,
            reason: String::new(),
            p_value: Some(0.0078125),
            pass_rate: Some(0.7333),
            pass_rate_ci95: None,
            baseline_pass_rate: Some(1.0),
            paired: 30,
            newly_failing: (1..=8).map(|i| format!("c{i:02}")).collect(),
            newly_passing: vec![],
            flaky: vec![],
            changed: vec![],
        };
        assert_eq!(
            regression_words(&w),
            "pass rate 73.3 % vs 100.0 % (p 0.008); newly failing c01, c02, c03 and 5 more"
        );
    }
}
