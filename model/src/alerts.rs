//! Alert states and the delivery log, as the page, the API and `evald alerts` show them.

use serde::{Deserialize, Serialize};

/// Where an alert stands for one job, alert and target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold (or has resolved).
    #[default]
    Ok,
    /// The `warn` condition holds.
    Warning,
    /// The `when` condition held for `for_runs` runs.
    Firing,
    /// No value to judge (the target failed every request, or the metric does not apply).
    NoData,
    /// In a maintenance window.
    Silenced,
}

impl AlertState {
    /// The word.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Warning => "warning",
            AlertState::Firing => "firing",
            AlertState::NoData => "no_data",
            AlertState::Silenced => "silenced",
        }
    }

    /// `evald_alert_state`: 0 ok, 1 warning, 2 firing, 3 no_data, 4 silenced.
    pub fn gauge(self) -> i64 {
        match self {
            AlertState::Ok => 0,
            AlertState::Warning => 1,
            AlertState::Firing => 2,
            AlertState::NoData => 3,
            AlertState::Silenced => 4,
        }
    }
}

/// One alert's state for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStatus {
    /// The job.
    pub job: String,
    /// The alert's name.
    pub alert: String,
    /// `endpoint/model`, or `*` for a job-level condition (`no_run`).
    pub target: String,
    /// Where it stands.
    pub state: AlertState,
    /// Since when, RFC 3339.
    pub since: String,
    /// Since when, Unix ms.
    pub since_ms: i64,
    /// The last value judged.
    pub value: Option<f64>,
    /// The threshold of `when`.
    pub threshold: Option<f64>,
    /// Consecutive runs the condition held.
    pub bad_runs: u32,
    /// Consecutive runs it did not.
    pub good_runs: u32,
    /// The state under a maintenance window (restored when the window ends).
    #[serde(default)]
    pub underlying: Option<AlertState>,
    /// Until when the maintenance window lasts, RFC 3339.
    #[serde(default)]
    pub silenced_until: Option<String>,
    /// When the last notification went out, Unix ms.
    #[serde(default)]
    pub notified_ms: Option<i64>,
    /// The run last judged.
    #[serde(default)]
    pub run_id: Option<String>,
    /// A firing `regression`: the baseline pass rate it fired against. It resolves when the
    /// pass rate is back within `min_drop` of it, not when a window of bad runs has become its
    /// own baseline and the verdict reads `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_baseline: Option<f64>,
}

/// One delivery to a notifier: what was sent and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `X-Evald-Delivery`.
    pub id: String,
    /// The notifier's name.
    pub notifier: String,
    /// The job.
    pub job: String,
    /// The alert.
    pub alert: String,
    /// The target.
    pub target: String,
    /// The state announced.
    pub state: String,
    /// Tries so far.
    pub attempts: u32,
    /// `pending`, `delivered`, `failed` (after the last try), with the receiver's status.
    pub status: String,
    /// The receiver's last HTTP status.
    pub http_status: Option<u16>,
    /// The last error, scrubbed.
    pub error: Option<String>,
    /// When it was queued, RFC 3339.
    pub time: String,
}

/// `/api/v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertsView {
    /// Every alert's state per target.
    pub alerts: Vec<AlertStatus>,
    /// The latest deliveries, newest first.
    pub deliveries: Vec<Delivery>,
}
