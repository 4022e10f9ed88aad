//! `/alerts` (states and the delivery log) and `/badge/{job}.svg`.

use askama::Template;
use evald_model::{AlertState, AlertsView};

use crate::read::{ReadError, ReadModel};

struct Row {
    job: String,
    alert: String,
    target: String,
    state: &'static str,
    until: String,
    since: String,
    value: String,
    threshold: String,
    run: String,
}

struct DeliveryRow {
    time: String,
    notifier: String,
    job: String,
    alert: String,
    target: String,
    state: String,
    attempts: u32,
    status: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    alerts: Vec<Row>,
    deliveries: Vec<DeliveryRow>,
}

fn num(v: Option<f64>) -> String {
    v.map(|v| format!("{}", (v * 10_000.0).round() / 10_000.0))
        .unwrap_or_else(|| "—".into())
}

/// `/alerts`.
pub fn page(m: &dyn ReadModel) -> Result<String, ReadError> {
    let AlertsView { alerts, deliveries } = m.alerts();
    AlertsPage {
        alerts: alerts
            .into_iter()
            .map(|a| Row {
                job: a.job,
                alert: a.alert,
                target: a.target,
                state: a.state.as_str(),
                until: a.silenced_until.unwrap_or_default(),
                since: a.since,
                value: num(a.value),
                threshold: num(a.threshold),
                run: a.run_id.unwrap_or_default(),
            })
            .collect(),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryRow {
                time: d.time,
                notifier: d.notifier,
                job: d.job,
                alert: d.alert,
                target: d.target,
                state: d.state,
                attempts: d.attempts,
                status: match (d.http_status, d.error) {
                    (Some(s), _) => format!("{} (HTTP {s})", d.status),
                    (None, Some(e)) => format!("{}: {e}", d.status),
                    (None, None) => d.status,
                },
            })
            .collect(),
    }
    .render()
    .map_err(ReadError::new)
}

/// A job's worst alert state (firing, warning, no_data, silenced, ok), or `None` without
/// alerts judged.
pub fn job_state(view: &AlertsView, job: &str) -> Option<AlertState> {
    let rank = |s: AlertState| match s {
        AlertState::Firing => 0,
        AlertState::Warning => 1,
        AlertState::NoData => 2,
        AlertState::Silenced => 3,
        AlertState::Ok => 4,
    };
    view.alerts
        .iter()
        .filter(|a| a.job == job)
        .map(|a| a.state)
        .min_by_key(|s| rank(*s))
}

/// `/badge/{job}.svg`: the job's worst alert state, else its last run's status.
pub fn badge(m: &dyn ReadModel, job: &str) -> Result<Option<String>, ReadError> {
    let state = job_state(&m.alerts(), job);
    let (text, colour) = match state {
        Some(AlertState::Firing) => ("firing", "#cf222e"),
        Some(AlertState::Warning) => ("warning", "#9a6700"),
        Some(AlertState::NoData) => ("no data", "#6b7075"),
        Some(AlertState::Silenced) => ("silenced", "#6b7075"),
        Some(AlertState::Ok) => ("ok", "#1a7f37"),
        None => {
            let runs = m.runs(Some(job), 20)?;
            if runs.is_empty() && !m.jobs().iter().any(|j| j.name == job) {
                return Ok(None);
            }
            match runs
                .iter()
                .find(|r| {
                    !matches!(
                        r.status,
                        evald_model::RunStatus::Skipped | evald_model::RunStatus::Running
                    )
                })
                .map(|r| r.status)
            {
                Some(evald_model::RunStatus::Ok) => ("passing", "#1a7f37"),
                Some(_) => ("failing", "#cf222e"),
                None => ("no runs", "#6b7075"),
            }
        }
    };
    Ok(Some(badge_svg(text, colour)))
}

/// A shields-style badge: `evald` on grey, `text` on `colour`.
pub fn badge_svg(text: &str, colour: &str) -> String {
    // Text width: ~6.5 px a character at 11 px Verdana, as shields-style badges measure.
    let (lw, rw) = (38.0, 10.0 + 6.5 * text.len() as f64);
    let w = lw + rw;
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="evald: {text}"><title>evald: {text}</title><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{rw}" height="20" fill="{colour}"/><g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"><text x="{}" y="14">evald</text><text x="{}" y="14">{text}</text></g></svg>"##,
        lw / 2.0,
        lw + rw / 2.0
    )
}
