//! `[[alerts]]` in a job file: what is watched, when it fires and resolves, and who is told.

use std::time::Duration;

/// A measured figure of a run's target.
#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Share of scored responses that passed every scorer.
    PassRate,
    /// Mean weighted score.
    MeanScore,
    /// One scorer's mean (`score.NAME`).
    Score(String),
    /// Share of requests that failed.
    ErrorRate,
    /// p95 end-to-end latency, ms.
    LatencyP95Ms,
    /// p95 time to first token, ms (streamed).
    TtftP95Ms,
    /// Benchmarks: requests/s that met every SLO.
    Goodput,
    /// Benchmarks: share that met every SLO.
    SloAttainment,
    /// The run's cost for the target, USD (needs prices).
    CostUsd,
}

impl Metric {
    /// The name as written.
    pub fn name(&self) -> String {
        match self {
            Metric::PassRate => "pass_rate".into(),
            Metric::MeanScore => "mean_score".into(),
            Metric::Score(n) => format!("score.{n}"),
            Metric::ErrorRate => "error_rate".into(),
            Metric::LatencyP95Ms => "latency_p95_ms".into(),
            Metric::TtftP95Ms => "ttft_p95_ms".into(),
            Metric::Goodput => "goodput".into(),
            Metric::SloAttainment => "slo_attainment".into(),
            Metric::CostUsd => "cost_usd".into(),
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Whether `v OP t`.
    pub fn holds(self, v: f64, t: f64) -> bool {
        match self {
            Op::Lt => v < t,
            Op::Le => v <= t,
            Op::Gt => v > t,
            Op::Ge => v >= t,
            Op::Eq => v == t,
            Op::Ne => v != t,
        }
    }
}

/// An event an alert can be about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventCondition {
    /// A watched target's verdict is `regressed`.
    Regression,
    /// The served model's identity changed.
    ServedModelChanged,
    /// A scheduled job had no finished run within twice its period.
    NoRun,
}

/// `when` or `warn`.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `METRIC OP NUMBER`.
    Threshold {
        /// What is measured.
        metric: Metric,
        /// How it is compared.
        op: Op,
        /// With what.
        threshold: f64,
    },
    /// An event.
    Event(EventCondition),
}

/// The metric names a condition may use (`score.NAME` besides).
pub const METRICS: [&str; 8] = [
    "pass_rate",
    "mean_score",
    "error_rate",
    "latency_p95_ms",
    "ttft_p95_ms",
    "goodput",
    "slo_attainment",
    "cost_usd",
];

/// Parses `METRIC OP NUMBER` or an event name.
pub fn parse_condition(s: &str) -> Result<Condition, String> {
    let t: Vec<&str> = s.split_whitespace().collect();
    match t.as_slice() {
        ["regression"] => Ok(Condition::Event(EventCondition::Regression)),
        ["served_model_changed"] => Ok(Condition::Event(EventCondition::ServedModelChanged)),
        ["no_run"] => Ok(Condition::Event(EventCondition::NoRun)),
        [e @ ("regression" | "served_model_changed" | "no_run"), ..] => Err(format!(
            "`{e}` is an event: write it alone (`when = \"{e}\"`), with no comparison"
        )),
        [m, op, n] => {
            let metric = match *m {
                "pass_rate" => Metric::PassRate,
                "mean_score" => Metric::MeanScore,
                "error_rate" => Metric::ErrorRate,
                "latency_p95_ms" => Metric::LatencyP95Ms,
                "ttft_p95_ms" => Metric::TtftP95Ms,
                "goodput" => Metric::Goodput,
                "slo_attainment" => Metric::SloAttainment,
                "cost_usd" => Metric::CostUsd,
                m if m.starts_with("score.") && m.len() > 6 => Metric::Score(m[6..].to_string()),
                other => {
                    return Err(format!(
                        "unknown metric `{other}` (metrics: {}, score.NAME; events: regression, served_model_changed, no_run)",
                        METRICS.join(", ")
                    ));
                }
            };
            let op = match *op {
                "<" => Op::Lt,
                "<=" => Op::Le,
                ">" => Op::Gt,
                ">=" => Op::Ge,
                "==" => Op::Eq,
                "!=" => Op::Ne,
                other => return Err(format!("`{other}` is not one of < <= > >= == !=")),
            };
            let threshold = n
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("`{n}` is not a number"))?;
            // Rates and scores are shares: `pass_rate < 90` would always hold.
            let share = matches!(
                metric,
                Metric::PassRate
                    | Metric::MeanScore
                    | Metric::ErrorRate
                    | Metric::SloAttainment
                    | Metric::Score(_)
            );
            if share && !(0.0..=1.0).contains(&threshold) {
                return Err(format!(
                    "`{m}` is a share between 0 and 1, so `{} {n}` is always or never true (for {n} %, write {})",
                    t[1],
                    threshold / 100.0
                ));
            }
            Ok(Condition::Threshold {
                metric,
                op,
                threshold,
            })
        }
        _ => Err(format!(
            "`{s}`: write METRIC OP NUMBER (`pass_rate < 0.9`) or an event (regression, served_model_changed, no_run)"
        )),
    }
}

/// One `[[alerts]]` of a job.
#[derive(Debug, Clone)]
pub struct AlertSpec {
    /// Its name, unique in the job.
    pub name: String,
    /// When it fires.
    pub when: Condition,
    /// When it warns.
    pub warn: Option<Condition>,
    /// Which targets (globs on `endpoint/model`).
    pub targets: Vec<glob::Pattern>,
    /// Consecutive bad runs before it fires.
    pub for_runs: u32,
    /// Consecutive good runs before it resolves.
    pub resolve_runs: u32,
    /// Repeat the notification this often while firing.
    pub renotify: Option<Duration>,
    /// Notifier names.
    pub notify: Vec<String>,
}

impl AlertSpec {
    /// Whether it watches `target`.
    pub fn covers(&self, target: &str) -> bool {
        self.targets.iter().any(|p| p.matches(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_that_cannot_mean_what_they_say_are_refused() {
        assert!(parse_condition("pass_rate < 0.9").is_ok());
        assert!(parse_condition("latency_p95_ms > 900").is_ok());
        assert!(parse_condition("score.exact >= 1").is_ok());
        assert!(parse_condition("regression").is_ok());
        let e = parse_condition("pass_rate < 90").unwrap_err();
        assert!(
            e.contains("a share between 0 and 1") && e.contains("write 0.9"),
            "{e}"
        );
        assert!(parse_condition("score.exact < -1").is_err());
        let e = parse_condition("regression > 1").unwrap_err();
        assert!(e.contains("`regression` is an event"), "{e}");
        assert!(!e.contains("unknown metric"), "{e}");
    }
}
