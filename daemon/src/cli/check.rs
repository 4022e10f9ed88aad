//! `evald check`: the config and every job (or the files named), each problem as
//! `path:line:col: message`.

use std::path::{Path, PathBuf};

use evald::config::{Config, Secrets};
use evald::job::{self, Job};
use evald::score::plugins::Plugins;

use super::{Failure, RemoveOnDrop, config_path};

/// `evald check [FILES…]`: every problem as `path:line:col: message`; false if any.
pub fn check(explicit: Option<&Path>, files: &[PathBuf]) -> Result<bool, Failure> {
    let path = config_path(explicit)?;
    let config = match Config::load_with(&path, Secrets::Optional) {
        Ok(c) => c,
        Err(d) => {
            for p in d {
                println!("{p}");
            }
            return Ok(false);
        }
    };
    let files: Vec<PathBuf> = files
        .iter()
        .filter(|f| f.canonicalize().ok() != path.canonicalize().ok())
        .cloned()
        .collect();
    let (jobs, invalid) = if files.is_empty() {
        let set = job::load_dir(&config);
        (
            set.jobs.into_values().collect::<Vec<_>>(),
            set.invalid.into_iter().collect::<Vec<_>>(),
        )
    } else {
        let mut jobs = Vec::new();
        let mut invalid = Vec::new();
        for f in files {
            match Job::load(&f, &config) {
                Ok(j) => jobs.push(j),
                Err(d) => invalid.push((f, d)),
            }
        }
        (jobs, invalid)
    };
    let mut problems = 0usize;
    for (_, ds) in &invalid {
        for d in ds {
            println!("{d}");
            problems += 1;
        }
    }
    // Plugins are compiled now, so a broken or wrong-world plugin shows before a run needs it.
    // The service's data_dir may not be writable from an operator's shell: then they are
    // compiled into a scratch folder that goes when the check ends.
    let uses_plugins = jobs.iter().any(|j| {
        !j.generators.is_empty()
            || j.scorers
                .iter()
                .any(|s| matches!(s.kind, job::ScorerKind::Plugin { .. }))
    });
    let mut bad_files = invalid.len();
    if uses_plugins {
        let scratch = std::env::temp_dir().join(format!("evald-check-{}", std::process::id()));
        let _cleanup = RemoveOnDrop(scratch.clone());
        let plugins = match Plugins::new(&config.data_dir.join("plugin-cache")) {
            Ok(p) => p,
            Err(_) => Plugins::new(&scratch)?,
        };
        for j in &jobs {
            let found = plugin_problems(j, &plugins);
            bad_files += usize::from(!found.is_empty());
            for p in found {
                println!("{p}");
                problems += 1;
            }
        }
    }
    // Warnings go with the problems (stdout): a check that passes can still have them.
    for w in &config.warnings {
        println!("{w}");
    }
    if problems == 0 {
        eprintln!("ok: {} and {} job(s) are valid", path.display(), jobs.len());
        if let Some(w) = stop_timeout_warning(&config) {
            eprintln!("{w}");
        }
        // What the schedules will spend, where prices are known.
        for j in &jobs {
            let (Some(runs), rows) = (
                super::estimate::runs_per_month(j),
                super::estimate::estimate(&config, j),
            ) else {
                continue;
            };
            let priced: f64 = rows.iter().filter_map(|r| r.3).sum();
            let unpriced = rows.iter().filter(|r| r.3.is_none()).count();
            if unpriced < rows.len() {
                eprintln!(
                    "cost: job `{}` at most {:.4} USD a run, {runs} runs in the next 30 days: at most {:.2} USD a month{}{}",
                    j.name,
                    priced,
                    priced * runs as f64,
                    if unpriced > 0 {
                        format!(" for the priced targets ({unpriced} without a price)")
                    } else {
                        String::new()
                    },
                    j.budget_usd_month
                        .map(|b| format!(" (budget_usd_month {b})"))
                        .unwrap_or_default()
                );
            }
        }
    } else {
        eprintln!("{problems} problem(s) in {bad_files} file(s)");
    }
    Ok(problems == 0)
}

/// The unit systemd would use: an installed one, else the one shipped in `contrib/`.
const UNITS: [&str; 3] = [
    "/etc/systemd/system/evald.service",
    "/lib/systemd/system/evald.service",
    "/usr/lib/systemd/system/evald.service",
];
const SHIPPED_UNIT: &str = include_str!("../../../contrib/evald.service");

/// A warning when a stop (shutdown_grace plus the close) can outlast the unit's
/// `TimeoutStopSec`, after which systemd kills evald before its store is closed.
fn stop_timeout_warning(config: &Config) -> Option<String> {
    let (unit, text) = UNITS
        .iter()
        .find_map(|u| Some((u.to_string(), std::fs::read_to_string(u).ok()?)))
        .unwrap_or_else(|| ("contrib/evald.service".into(), SHIPPED_UNIT.into()));
    let timeout = stop_timeout(&text)?;
    let stop = config.shutdown_grace + evald::serve::CLOSE_TIME;
    (stop > timeout).then(|| {
        format!(
            "warning: a stop can take shutdown_grace ({}) plus {} s to close the store, longer than TimeoutStopSec ({}) in {unit}: systemd would kill evald first; lower shutdown_grace or raise TimeoutStopSec",
            humantime::format_duration(config.shutdown_grace),
            evald::serve::CLOSE_TIME.as_secs(),
            humantime::format_duration(timeout),
        )
    })
}

/// `TimeoutStopSec=` (or `TimeoutSec=`) of a unit file; systemd's default 90 s if absent.
fn stop_timeout(unit: &str) -> Option<std::time::Duration> {
    let mut found = None;
    for line in unit.lines() {
        let line = line.trim();
        if let Some(v) = line
            .strip_prefix("TimeoutStopSec=")
            .or_else(|| line.strip_prefix("TimeoutSec="))
        {
            let v = v.trim();
            found = if v == "infinity" {
                None
            } else if let Ok(secs) = v.parse::<u64>() {
                Some(std::time::Duration::from_secs(secs))
            } else {
                humantime::parse_duration(&v.replace(' ', "")).ok()
            };
            if v == "infinity" {
                return None;
            }
        }
    }
    Some(found.unwrap_or(std::time::Duration::from_secs(90)))
}

fn plugin_problems(j: &Job, plugins: &Plugins) -> Vec<String> {
    let mut out = Vec::new();
    for (i, g) in j.generators.iter().enumerate() {
        if let Err(e) = plugins.generator(&g.path) {
            out.push(format!(
                "{}:{}:{}: generators[{i}].plugin: {e}",
                j.file.display(),
                g.at.0,
                g.at.1
            ));
        }
    }
    for (i, s) in j.scorers.iter().enumerate() {
        if let job::ScorerKind::Plugin { path, at, .. } = &s.kind
            && let Err(e) = plugins.scorer(path)
        {
            out.push(format!(
                "{}:{}:{}: scorers[{i}].plugin: {e}",
                j.file.display(),
                at.0,
                at.1
            ));
        }
    }
    out
}
