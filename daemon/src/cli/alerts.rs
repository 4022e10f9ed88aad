//! `evald alerts` and `evald notify test NOTIFIER`.

use std::path::Path;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use evald_model::AlertsView;

use super::{Backend, Failure, backend, load_config};

/// `evald alerts`: every alert's state per target, and (from a daemon) the latest deliveries.
pub async fn alerts(explicit: Option<&Path>, json: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let view = match backend(&config)? {
        Backend::Local(store) => AlertsView {
            alerts: store.alert_states()?,
            deliveries: vec![],
        },
        Backend::Daemon(daemon) => daemon.alerts().await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(true);
    }
    if view.alerts.is_empty() {
        println!("no alert has been judged yet");
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header([
                "job",
                "alert",
                "target",
                "state",
                "since",
                "value",
                "threshold",
            ]);
        for a in &view.alerts {
            let state = match &a.silenced_until {
                Some(u) => format!("{} (until {u})", a.state.as_str()),
                None => a.state.as_str().to_string(),
            };
            t.add_row([
                a.job.clone(),
                a.alert.clone(),
                a.target.clone(),
                state,
                a.since.clone(),
                a.value.map_or("—".into(), |v| format!("{v}")),
                a.threshold.map_or("—".into(), |v| format!("{v}")),
            ]);
        }
        println!("{t}");
    }
    for d in view.deliveries.iter().take(20) {
        println!("{}", delivery_line(d));
    }
    Ok(true)
}

/// One line of the delivery log: when, to whom, what, how it went — and, while it has not
/// arrived, why (its text says "HTTP 500" when the receiver answered).
fn delivery_line(d: &evald_model::Delivery) -> String {
    let how = match (&d.error, d.http_status) {
        (Some(why), _) if d.status != "delivered" => format!(" ({why})"),
        (_, Some(s)) => format!(" (HTTP {s})"),
        _ => String::new(),
    };
    format!(
        "{}  {} → {}/{} {} {}: {} after {} tries{how}",
        d.time, d.notifier, d.job, d.alert, d.target, d.state, d.status, d.attempts,
    )
}

/// `evald notify test NOTIFIER`: one delivery, signed and shaped as a real one, sent now.
pub async fn notify_test(explicit: Option<&Path>, name: &str) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let Some(n) = config.notifiers.get(name) else {
        let known: Vec<&str> = config.notifiers.keys().map(String::as_str).collect();
        return Err(Failure::Invalid(format!(
            "no notifier `{name}` in {} (notifiers: {})",
            config.path.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    };
    let id = uuid::Uuid::new_v4().to_string();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let payload = serde_json::json!({
        "id": id, "alert": "test", "job": "evald", "target": "*", "state": "test",
        "previous_state": "ok", "value": null, "threshold": null, "since": now,
        "run_id": null, "run_url": null,
        "message": format!("evald notify test: a test delivery to notifier `{name}`"),
    });
    let body = evald::alert::deliver::body(n, &payload);
    let http = evald::alert::deliver::http_client();
    // Only when a secret_env is configured and this shell lacks it: the daemon would sign.
    if n.signed && n.secret.is_none() {
        eprintln!(
            "note: notifier `{name}`'s secret_env is not set in this shell, so this test went unsigned (the daemon signs its deliveries)"
        );
    }
    match evald::alert::deliver::try_once(&http, n, &id, &body, &config.secrets()).await {
        Ok(status) => {
            println!(
                "delivered to `{name}` ({}): HTTP {status}, delivery {id}",
                n.url
            );
            Ok(true)
        }
        // `why` says "HTTP 500" when the receiver answered.
        Err((_, why)) => {
            println!("not delivered to `{name}` ({}): {why}", n.url);
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_delivery_says_why() {
        let mut d = evald_model::Delivery {
            id: "d".into(),
            notifier: "hook".into(),
            job: "j".into(),
            alert: "a".into(),
            target: "t".into(),
            state: "firing".into(),
            attempts: 5,
            status: "failed".into(),
            http_status: None,
            error: Some("cannot connect to http://127.0.0.1:9/: connection refused".into()),
            time: "T".into(),
        };
        assert!(
            delivery_line(&d).ends_with(
                "failed after 5 tries (cannot connect to http://127.0.0.1:9/: connection refused)"
            ),
            "{}",
            delivery_line(&d)
        );
        (d.status, d.error, d.http_status) = ("delivered".into(), None, Some(204));
        assert!(delivery_line(&d).ends_with("delivered after 5 tries (HTTP 204)"));
    }
}
