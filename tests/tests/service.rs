//! evald as a service: hot reload of the jobs directory, SIGHUP, SIGTERM with requests in
//! flight, kill -9 at many points, and the systemd unit.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evald_tests::{Site, TestServer};
use serde_json::Value;

/// A broken config exits 78 (EX_CONFIG), which the unit's `RestartPreventExitStatus=` names: a
/// restart cannot mend it, so systemd must not loop on it. Any other failure exits 1 and is
/// restarted.
#[test]
fn a_broken_config_exits_78_and_the_unit_does_not_restart_it() {
    let site = Site::new(None, "retention = 5\n");
    let out = site.evald(&["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("evald.toml:5:") && err.contains("evald did not start"),
        "{err}"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/evald.service"
    ))
    .unwrap();
    assert!(
        unit.lines().any(|l| l == "RestartPreventExitStatus=78"),
        "{unit}"
    );
    assert!(unit.lines().any(|l| l == "Restart=on-failure"), "{unit}");
}

/// A port another process holds: `evald serve` exits 1 (a restart may find it free) naming the
/// address, and the test harness starts it again on another port, as it does when another
/// test's process was given the port its site found free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_named_and_the_harness_moves_to_another() {
    let site = Site::new(None, "");
    let taken = site.port();
    let _holder = std::net::TcpListener::bind(("127.0.0.1", taken)).unwrap();
    let out = site.evald(&["serve"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{taken}")),
        "{err}"
    );
    let _d = site.serve().await;
    assert_ne!(site.port(), taken);
    assert_eq!(site.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_directory_is_watched_and_a_broken_edit_never_replaces_a_running_job() {
    let site = Site::new(None, "");
    let d = site.serve().await;
    let job = |prompt: &str| {
        format!(
            "schedule = \"* * * * * *\"\ntargets = [\"sim/echo\"]\n[[cases]]\nid = \"a\"\nprompt = \"{prompt}\"\n"
        )
    };

    // Add: it is scheduled.
    site.job("hot", &job("first"));
    site.until(15, "the added job to run", || async {
        !site.records("?job=hot").await.is_empty()
    })
    .await;

    // Modify: the new version runs.
    site.job("hot", &job("second"));
    site.until(15, "the modified job to run", || async {
        site.records("?job=hot")
            .await
            .iter()
            .any(|r| r["response"] == "Echo: second")
    })
    .await;

    // Break: the last valid version keeps running, and the page shows the problem.
    site.job(
        "hot",
        "schedule = \"* * * * * *\"\ntargets = [\"sim/echo\"\n",
    );
    site.until(15, "the page to show the broken file", || async {
        site.get("/").await.1.contains("unclosed array")
    })
    .await;
    let n = site.records("?job=hot").await.len();
    site.until(15, "runs of the last valid version", || async {
        site.records("?job=hot").await.len() > n + 1
    })
    .await;
    let recs = site.records("?job=hot").await;
    assert!(
        recs[n..].iter().all(|r| r["response"] == "Echo: second"),
        "the broken version never ran"
    );
    assert!(
        d.log_text().contains("unclosed array"),
        "the log names the problem"
    );

    // Fix: the fixed version runs and the error is gone.
    site.job("hot", &job("third"));
    site.until(15, "the fixed job to run", || async {
        site.records("?job=hot")
            .await
            .iter()
            .any(|r| r["response"] == "Echo: third")
    })
    .await;
    assert!(!site.get("/").await.1.contains("unclosed array"));

    // Remove: it stops.
    std::fs::remove_file(site.path().join("jobs/hot.toml")).unwrap();
    site.until(15, "the job to leave the page", || async {
        let (_, jobs) = site.get("/api/v1/jobs").await;
        !jobs.contains("\"hot\"")
    })
    .await;
    // A run that had started may still finish; after that nothing new arrives.
    let settled = site.runs("hot").await.len();
    let before = site.records("?job=hot").await.len();
    // The clock for "nothing more happens": three runs of another one-second job.
    site.job("tick", &job("tick"));
    site.until(15, "three ticks", || async {
        site.records("?job=tick").await.len() >= 3
    })
    .await;
    assert!(site.runs("hot").await.len() <= settled + 1);
    assert!(site.records("?job=hot").await.len() <= before + 1);
    // Reloading a file opens it, and inotify reports opens: the watcher must not take its own
    // reads for changes (it did: a broken file was reloaded, and its problem logged, every few
    // hundred ms for as long as it stayed broken).
    let log = d.log_text();
    let told = log.lines().filter(|l| l.contains("unclosed array")).count();
    assert!(
        told <= 2,
        "the broken file was reloaded {told} times:\n{log}"
    );
    let loads = log
        .lines()
        .filter(|l| l.contains("job loaded") && l.contains("job=tick"))
        .count();
    assert_eq!(loads, 1, "tick was loaded {loads} times:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_running_config() {
    let site = Site::new(None, "");
    site.job(
        "j",
        "targets = [\"sim/echo\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n",
    );
    let d = site.serve().await;
    let good = std::fs::read_to_string(site.config()).unwrap();
    std::fs::write(site.config(), format!("{good}\nbogus_key = [\n")).unwrap();
    d.signal("HUP");
    site.until(10, "the reload to be refused in the log", || async {
        d.log_text().contains("keeping the running config")
    })
    .await;
    assert_eq!(site.get("/healthz").await.0, 200);
    // The daemon still has its jobs (the CLI, which reads the file itself, would refuse it).
    assert!(site.get("/api/v1/jobs").await.1.contains("\"j\""));
    std::fs::write(site.config(), &good).unwrap();
    d.signal("HUP");
    site.until(10, "a good reload", || async {
        d.log_text().contains("config reloaded")
    })
    .await;
    assert_eq!(site.get("/").await.0, 200);
    // A key a reload cannot change is named in the log, not taken silently.
    std::fs::write(site.config(), format!("max_concurrent_runs = 3\n{good}")).unwrap();
    d.signal("HUP");
    site.until(10, "the restart-only key to be named", || async {
        d.log_text()
            .contains("max_concurrent_runs changed: a restart is needed")
    })
    .await;
}

/// `evald run` through a daemon that stops mid-run: the run is interrupted, and the command
/// says so with exit 1 (it did not run the job through), not 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_cut_off_by_a_stopping_daemon_exits_1() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "shutdown_grace = \"1s\"\n");
    site.job("cut", "targets = [\"test/slow-9000\"]\ntimeout = \"20s\"\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n");
    let d = site.serve().await;
    let mut client = site.evald_child(&["run", "cut"]);
    site.until(20, "the request to be in flight", || async {
        !server.seen().is_empty()
    })
    .await;
    d.signal("TERM");
    assert_eq!(d.wait(20).await, Some(0));
    let status = tokio::task::spawn_blocking(move || client.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "an interrupted run is not a success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_requests_in_flight_finish_within_the_grace_period_and_cuts_the_rest() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "shutdown_grace = \"2s\"\n");
    // One request that finishes within the grace period, one that cannot.
    site.job("slow", "schedule = \"*/30 * * * * *\"\ntargets = [\"test/slow-800\", \"test/slow-9000\"]\ntimeout = \"20s\"\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n");
    let d = site.serve().await;
    site.until(40, "both requests to be in flight", || async {
        server.seen().len() >= 2
    })
    .await;
    d.signal("TERM");
    assert_eq!(d.wait(20).await, Some(0), "exit 0 after the grace period");
    // Read the store directly: the daemon is gone.
    let out = site.evald(&["export", "--format", "jsonl", "--job", "slow"]);
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let fast = recs
        .iter()
        .find(|r| r["model"] == "slow-800")
        .expect("the request that finished in time is stored");
    assert_eq!(fast["error"], Value::Null);
    assert_eq!(fast["response"], "Echo: x");
    let cut = recs
        .iter()
        .find(|r| r["model"] == "slow-9000")
        .expect("the cut-off request is stored");
    assert_eq!(cut["metadata"]["error_kind"], "interrupted", "{cut}");
    let d = site.serve().await;
    let r = site.runs("slow").await;
    assert_eq!(r[0]["status"], "interrupted", "{r:?}");
    drop(d);
}

/// kill -9 at 20 points of a busy run: every record committed before the kill is there after
/// the restart, the store opens, and the cut runs are marked interrupted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_twenty_points_loses_no_committed_record() {
    // Runs of ~2 s fired every second: a run is always going when the kill comes.
    let site = Site::new(
        None,
        "[endpoints.slowsim]\nsimulated = { latency_ms = 50, jitter_ms = 10, tokens_per_second = 1000 }\n",
    );
    site.job(
        "busy",
        "schedule = \"* * * * * *\"\ntargets = [\"slowsim/a\", \"slowsim/b\", \"slowsim/c\"]\nconcurrency = 16\nrepeat = 200\n[[cases]]\nid = \"a\"\nprompt = \"busy\"\n",
    );
    let mut seen: Vec<Value> = Vec::new();
    for round in 0..20u64 {
        let d = site.serve().await;
        let now = site.records("?job=busy").await;
        for r in &seen {
            assert!(
                now.contains(r),
                "round {round}: a committed record is gone: {r}"
            );
        }
        // Wait for more records than last time (a varying amount), then kill mid-run.
        let want = now.len() + 1 + (round as usize * 7) % 60;
        site.until(30, "records to grow", || async {
            site.records("?job=busy").await.len() >= want
        })
        .await;
        seen = site.records("?job=busy").await;
        d.signal("KILL");
        let _ = d.wait(10).await;
    }
    let _d = site.serve().await;
    let last = site.records("?job=busy").await;
    assert!(seen.iter().all(|r| last.contains(r)));
    let statuses: Vec<String> = site
        .runs("busy")
        .await
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        statuses.iter().filter(|s| *s == "interrupted").count() >= 15,
        "{statuses:?}"
    );
    // Runs are newest first. The one going now may be running, and firings while it goes are
    // stored as skipped (newer than it); every run before it was cut off by a kill.
    let current: Vec<&String> = statuses.iter().filter(|s| *s != "skipped").collect();
    assert!(
        current.iter().skip(1).all(|s| *s != "running"),
        "only the current run may be running: {statuses:?}"
    );
}

/// Says loudly that a test did not run, and why. Written to the process's stderr directly:
/// the test harness captures `println!`/`eprintln!` of passing tests and shows them only on
/// failure, so a skip reported with them would look exactly like a pass.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr().lock(),
        "\nSKIPPED: {test}: {why}. This test did NOT run; its pass means nothing here.\n"
    );
}

#[test]
fn the_unit_file_verifies_where_systemd_is_present() {
    // .ci/run does not install systemd, so CI skips this too (loudly) wherever its image lacks
    // systemd-analyze; install the `systemd` package there to have it run.
    const TEST: &str = "the_unit_file_verifies_where_systemd_is_present";
    let out = match std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            skipped(
                TEST,
                &format!("systemd-analyze cannot be run here ({e}); install systemd"),
            );
            return;
        }
    };
    if !out.status.success() {
        skipped(
            TEST,
            &format!(
                "`systemd-analyze --version` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        );
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/evald.service"
    ))
    .unwrap();
    // Verify against this build's binary (the unit's /usr/local/bin/evald is not installed here).
    let bin = evald_tests::evald_bin();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evald.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/evald", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {text}");
    let sec = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&sec.stdout);
    let level = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.parse::<f64>().ok()))
        .unwrap_or(99.0);
    assert!(level <= 2.0, "exposure {level}: {text}");
}
