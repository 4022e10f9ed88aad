//! Prometheus metrics (prefix `evald_`), through the Prometheus organisation's client crate.
//! Label values come only from loaded jobs, their targets and their scorers, so the number of
//! series stays bounded by the configuration.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use evald_model::{Record, RunStatus, RunSummary};

type Labels = Vec<(&'static str, String)>;
type Hist = Family<Labels, Histogram, fn() -> Histogram>;

fn latency_hist() -> Histogram {
    Histogram::new([
        0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    ])
}

/// The series of one (job, target), resolved once.
#[derive(Clone)]
pub struct TargetHandles {
    ok: Counter,
    duration: Histogram,
    ttft: Histogram,
    prompt: Counter,
    completion: Counter,
    /// Made at the first request with a known cost: a target without prices has no cost
    /// series, rather than one at 0 (unknown is never 0).
    cost: std::sync::OnceLock<Counter<f64, AtomicU64>>,
    labels: Labels,
}

/// Every series evald exports.
pub struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: Hist,
    ttft: Hist,
    tokens: Family<Labels, Counter>,
    score: Family<Labels, Gauge<f64, AtomicU64>>,
    runs: Family<Labels, Counter>,
    last_run_ts: Family<Labels, Gauge<f64, AtomicU64>>,
    last_run_ok: Family<Labels, Gauge>,
    /// Job files that failed to load.
    pub jobs_invalid: Gauge,
    plugin_errors: Family<Labels, Counter>,
    events: Family<Labels, Counter>,
    alert_state: Family<Labels, Gauge>,
    notifications: Family<Labels, Counter>,
    cost: Family<Labels, Counter<f64, AtomicU64>>,
    /// Request records in the store (set at scrape time).
    pub store_records: Gauge,
    /// The store file's size (set at scrape time).
    pub store_bytes: Gauge,
    /// Records removed by retention since start.
    pub pruned: Counter,
    /// Store commits that failed (or were refused while the disk stayed full) since start.
    pub store_write_errors: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every series.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("evald");
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_hist),
            ttft: Family::new_with_constructor(latency_hist),
            tokens: Family::default(),
            score: Family::default(),
            runs: Family::default(),
            last_run_ts: Family::default(),
            last_run_ok: Family::default(),
            jobs_invalid: Gauge::default(),
            plugin_errors: Family::default(),
            events: Family::default(),
            alert_state: Family::default(),
            notifications: Family::default(),
            cost: Family::default(),
            store_records: Gauge::default(),
            store_bytes: Gauge::default(),
            pruned: Counter::default(),
            store_write_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests sent, by job, target and outcome (ok or error kind)",
            m.requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "End-to-end request latency",
            m.duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time to the first streamed token",
            m.ttft.clone(),
        );
        registry.register(
            "tokens",
            "Tokens, by kind (prompt, completion)",
            m.tokens.clone(),
        );
        registry.register(
            "score",
            "Mean weighted score of the job's last run, by target and scorer",
            m.score.clone(),
        );
        registry.register("job_runs", "Runs, by job and status", m.runs.clone());
        registry.register(
            "job_last_run_timestamp_seconds",
            "When the job's last run ended",
            m.last_run_ts.clone(),
        );
        registry.register(
            "job_last_run_success",
            "1 if the job's last run ended ok, else 0",
            m.last_run_ok.clone(),
        );
        registry.register(
            "jobs_invalid",
            "Job files that failed to load",
            m.jobs_invalid.clone(),
        );
        registry.register(
            "plugin_errors",
            "Plugin failures (scorer errors and failed generators), by plugin file",
            m.plugin_errors.clone(),
        );
        registry.register(
            "store_records",
            "Request records stored",
            m.store_records.clone(),
        );
        registry.register(
            "store_bytes",
            "Size of the store file",
            m.store_bytes.clone(),
        );
        registry.register(
            "store_write_errors",
            "Store commits that failed (a full disk, an I/O error), or were refused until the disk had room again",
            m.store_write_errors.clone(),
        );
        registry.register(
            "cost_usd",
            "What requests cost, USD, by job and target (requests with a known cost)",
            m.cost.clone(),
        );
        registry.register(
            "alert_state",
            "Each alert's state per job and target: 0 ok, 1 warning, 2 firing, 3 no_data, 4 silenced",
            m.alert_state.clone(),
        );
        registry.register(
            "notifications",
            "Alert deliveries ended since start, by notifier and outcome: delivered, or failed after the last try",
            m.notifications.clone(),
        );
        registry.register(
            "events",
            "Events (served_model_changed) recorded since start, by kind",
            m.events.clone(),
        );
        registry.register(
            "pruned_records",
            "Request records removed by retention",
            m.pruned.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts one request record in.
    pub fn observe(&self, r: &Record) {
        if r.metadata.warmup {
            return;
        }
        let target = r.target();
        // An error by the kind a benchmark counts it as: 429 apart from other 4xx and 5xx, so
        // rate limiting can be alerted on by itself.
        let outcome = match &r.error {
            None => "ok".to_string(),
            Some(_) => crate::endpoint::kind::counted(r),
        };
        self.requests
            .get_or_create(&vec![
                ("job", r.job.clone()),
                ("target", target.clone()),
                ("outcome", outcome),
            ])
            .inc();
        let jt: Labels = vec![("job", r.job.clone()), ("target", target.clone())];
        if let Some(c) = r.cost_usd {
            self.cost.get_or_create(&jt).inc_by(c);
        }
        if r.error.is_none() {
            if let Some(ms) = r.response_time_ms {
                self.duration.get_or_create(&jt).observe(ms / 1000.0);
            }
            if let Some(ms) = r.ttft_ms {
                self.ttft.get_or_create(&jt).observe(ms / 1000.0);
            }
        }
        for (kind, n) in [
            ("prompt", r.prompt_tokens),
            ("completion", r.completion_tokens),
        ] {
            if let Some(n) = n {
                self.tokens
                    .get_or_create(&vec![
                        ("job", r.job.clone()),
                        ("target", target.clone()),
                        ("kind", kind.to_string()),
                    ])
                    .inc_by(n as u64);
            }
        }
    }

    /// Counts a plugin failure (a scorer's trap, timeout, error or bad value, or a generator
    /// that failed), labelled with the plugin's file name and the cause (`trap`, `timeout`,
    /// `memory`, `guest`, `bad_score`, `load`, …).
    pub fn plugin_error(&self, plugin: &str, cause: &'static str) {
        self.plugin_errors
            .get_or_create(&vec![
                ("plugin", plugin.to_string()),
                ("cause", cause.to_string()),
            ])
            .inc();
    }

    /// Sets an alert's state gauge.
    pub fn alert_state(&self, job: &str, alert: &str, target: &str, v: i64) {
        self.alert_state
            .get_or_create(&vec![
                ("job", job.to_string()),
                ("alert", alert.to_string()),
                ("target", target.to_string()),
            ])
            .set(v);
    }

    /// Makes a notifier's two series at 0, so the first failure is an increase Prometheus sees
    /// (a series born at 1 is no `increase()`).
    pub fn notifier(&self, notifier: &str) {
        for outcome in ["delivered", "failed"] {
            let _made = self.notifications.get_or_create(&vec![
                ("notifier", notifier.to_string()),
                ("outcome", outcome.to_string()),
            ]);
        }
    }

    /// Counts a delivery that ended: delivered, or failed after its last try.
    pub fn notification(&self, notifier: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.notifications
            .get_or_create(&vec![
                ("notifier", notifier.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// Counts an event of `kind`.
    pub fn event(&self, kind: &str) {
        self.events
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    /// The series of one job and target, looked up once so a benchmark's hot path does not
    /// build label sets per request.
    pub fn handles(&self, job: &str, target: &str) -> TargetHandles {
        let jt: Labels = vec![("job", job.to_string()), ("target", target.to_string())];
        let with = |k: &'static str, v: &str| {
            let mut l = jt.clone();
            l.push((k, v.to_string()));
            l
        };
        TargetHandles {
            ok: self.requests.get_or_create_owned(&with("outcome", "ok")),
            duration: self.duration.get_or_create_owned(&jt),
            ttft: self.ttft.get_or_create_owned(&jt),
            prompt: self.tokens.get_or_create_owned(&with("kind", "prompt")),
            completion: self.tokens.get_or_create_owned(&with("kind", "completion")),
            cost: std::sync::OnceLock::new(),
            labels: jt,
        }
    }

    /// Counts one successful request through its handles (anything else the slow way).
    pub fn observe_with(&self, h: &TargetHandles, r: &Record) {
        if r.error.is_some() || !r.scores.is_empty() || r.metadata.warmup {
            return self.observe(r);
        }
        h.ok.inc();
        if let Some(ms) = r.response_time_ms {
            h.duration.observe(ms / 1000.0);
        }
        if let Some(ms) = r.ttft_ms {
            h.ttft.observe(ms / 1000.0);
        }
        if let Some(n) = r.prompt_tokens {
            h.prompt.inc_by(n as u64);
        }
        if let Some(n) = r.completion_tokens {
            h.completion.inc_by(n as u64);
        }
        if let Some(c) = r.cost_usd {
            h.cost
                .get_or_init(|| self.cost.get_or_create_owned(&h.labels))
                .inc_by(c);
        }
    }

    /// Records a run's end.
    pub fn run_ended(&self, s: &RunSummary) {
        self.runs
            .get_or_create(&vec![
                ("job", s.job.clone()),
                ("status", s.status.as_str().to_string()),
            ])
            .inc();
        self.last_run(s);
    }

    /// Sets the last-run series of a job (its time, success and scores) from a run that ended;
    /// also how a start-up restores them from the store.
    pub fn last_run(&self, s: &RunSummary) {
        let job: Labels = vec![("job", s.job.clone())];
        if matches!(s.status, RunStatus::Skipped | RunStatus::Running) {
            return;
        }
        self.last_run_ts
            .get_or_create(&job)
            .set(s.ended_ms.unwrap_or(s.started_ms) as f64 / 1000.0);
        self.last_run_ok
            .get_or_create(&job)
            .set((s.status == RunStatus::Ok) as i64);
        for t in &s.targets {
            for (scorer, v) in &t.scorer_means {
                self.score
                    .get_or_create(&vec![
                        ("job", s.job.clone()),
                        ("target", t.target.clone()),
                        ("scorer", scorer.clone()),
                    ])
                    .set(*v);
            }
            if let Some(v) = t.mean_score {
                self.score
                    .get_or_create(&vec![
                        ("job", s.job.clone()),
                        ("target", t.target.clone()),
                        ("scorer", "_weighted".to_string()),
                    ])
                    .set(v);
            }
        }
    }

    /// Forgets the series of a job that is gone, so label values stay bounded.
    pub fn forget_job(&self, job: &str) {
        let j = job.to_string();
        self.last_run_ts.remove(&vec![("job", j.clone())]);
        self.last_run_ok.remove(&vec![("job", j)]);
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        let _ = encode(&mut s, &self.registry);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_429_is_an_outcome_of_its_own() {
        let m = Metrics::new();
        for status in [429u16, 503, 429] {
            let mut r = Record {
                job: "j".into(),
                endpoint: "gw".into(),
                model: "m".into(),
                error: Some(format!("HTTP {status}")),
                ..Default::default()
            };
            r.metadata.error_kind = Some(crate::endpoint::kind::HTTP_STATUS.into());
            r.metadata.http_status = Some(status);
            m.observe(&r);
        }
        let text = m.encode();
        assert!(
            text.contains("evald_requests_total{job=\"j\",target=\"gw/m\",outcome=\"http_429\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("evald_requests_total{job=\"j\",target=\"gw/m\",outcome=\"http_5xx\"} 1"),
            "{text}"
        );
    }
}
