//! The walking skeleton end to end: the real `evald` binary, a real redb file in a temporary
//! data directory, a local OpenAI-compatible test server on 127.0.0.1.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evald_tests::{SECRET, Site, TestServer, XSS, all_bytes, contains};
use serde_json::Value;

fn stdout(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_runs_stores_every_field_and_shows_on_the_page() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job(
        "hello",
        r#"description = "a one-second job"
schedule = "* * * * * *"
targets = ["test/ok-a", "test/xss"]
[params]
temperature = 0.3
max_tokens = 40
[[cases]]
id = "greet"
prompt = "Say hello"
reference = "hello"
"#,
    );
    let _d = site.serve().await;
    site.until(20, "two stored records", || async {
        site.records("?job=hello").await.len() >= 2
    })
    .await;
    let recs = site.records("?job=hello").await;
    let ok = recs.iter().find(|r| r["model"] == "ok-a").unwrap();
    assert_eq!(ok["response"], "Echo: Say hello");
    assert_eq!(ok["provider"], "testprov");
    assert_eq!(ok["endpoint"], "test");
    assert_eq!(ok["case_id"], "greet");
    assert_eq!(ok["temperature"], 0.3);
    assert_eq!(ok["max_tokens"], 40);
    assert_eq!(ok["top_p"], Value::Null);
    assert_eq!(ok["prompt_tokens"], 7);
    assert_eq!(ok["completion_tokens"], 3);
    assert_eq!(ok["total_tokens"], 10);
    assert_eq!(ok["finish_reason"], "stop");
    assert_eq!(ok["error"], Value::Null);
    assert_eq!(ok["metadata"]["attempts"], 1);
    assert!(ok["response_time_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(ok["messages"][0]["content"], "Say hello");
    assert!(ok["timestamp"].as_str().unwrap().ends_with('Z'));
    // Parameters went out as set, and only those set.
    let sent = &server.seen()[0].body;
    assert_eq!(sent["temperature"], 0.3);
    assert_eq!(sent["max_tokens"], 40);
    assert!(sent.get("top_p").is_none());

    let (status, page) = site.get("/").await;
    assert_eq!(status, 200);
    assert!(page.contains("hello") && page.contains("a one-second job"));
    assert!(
        page.contains("Echo: Say hello"),
        "the recent requests show the answer"
    );
    assert!(
        !page.contains(XSS) && page.contains("&lt;script&gt;"),
        "model output is escaped"
    );
    let runs = site.runs("hello").await;
    let last = &runs[0];
    assert_eq!(last["trigger"], "schedule");
    let id = last["id"].as_str().unwrap();
    assert_eq!(site.get(&format!("/runs/{id}")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_failures_are_recorded_as_data_and_the_daemon_keeps_serving() {
    let server = TestServer::start().await;
    let (_held, dead) = evald_tests::dead_port();
    let site = Site::new(
        Some(&server),
        &format!(
            "[endpoints.dead]\nurl = \"http://127.0.0.1:{dead}/v1\"\nmax_retries = 2\ntimeout = \"2s\"\n"
        ),
    );
    site.job(
        "faults",
        r#"targets = ["test/err500", "test/err429", "test/badjson", "test/empty", "test/slow-3000", "dead/ok-a"]
timeout = "1s"
concurrency = 6
[[cases]]
id = "q"
prompt = "anything"
"#,
    );
    let d = site.serve().await;
    let out = site.evald(&["run", "faults"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("upstream exploded"),
        "the run table shows the error: {text}"
    );
    // The run finished (one target answered), and its note names the targets that answered
    // nothing.
    assert!(
        text.contains(
            "every request to test/err500, test/badjson, test/empty, test/slow-3000, dead/ok-a failed"
        ),
        "{text}"
    );
    // `--model` takes a model or a target.
    let count = |model: &str| {
        stdout(&site.evald_ok(&["export", "--format", "jsonl", "--model", model]))
            .lines()
            .count()
    };
    assert_eq!(
        (count("err500"), count("test/err500"), count("dead/err500")),
        (1, 1, 0)
    );
    // An unknown run is refused, not an empty export (here through the daemon; without one in
    // `commands_without_a_daemon_say_what_names_nothing_and_what_is_missing`).
    let out = site.evald(&["export", "--run", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run `nosuch` is stored"));
    assert!(out.stdout.is_empty());
    // A model whose every request failed has no latency: `—`, not 0 ms.
    let stats: Value = serde_json::from_slice(&site.evald_ok(&["stats", "--json"]).stdout).unwrap();
    let g = |m: &str| {
        stats["by_model"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == m)
            .unwrap()
            .clone()
    };
    assert_eq!(g("err500")["latency_samples"], 0, "{stats}");
    assert_eq!(g("err429")["latency_samples"], 1, "{stats}");
    let table = stdout(&site.evald_ok(&["stats"]));
    let row = table.lines().find(|l| l.contains("err500")).unwrap();
    assert!(row.contains('—') && !row.contains("0.0 ms"), "{row}");
    let recs = site.records("?job=faults").await;
    assert_eq!(recs.len(), 6);
    let by = |m: &str| recs.iter().find(|r| r["model"] == m).unwrap().clone();
    let e500 = by("err500");
    assert!(
        e500["error"]
            .as_str()
            .unwrap()
            .contains("HTTP 500 from test: upstream exploded"),
        "{e500}"
    );
    assert_eq!(
        e500["metadata"]["attempts"], 3,
        "5xx is retried max_retries times"
    );
    assert_eq!(e500["metadata"]["http_status"], 500);
    let e429 = by("err429");
    assert_eq!(
        e429["error"],
        Value::Null,
        "429 with Retry-After is retried until it answers: {e429}"
    );
    assert_eq!(e429["metadata"]["attempts"], 3);
    assert_eq!(e429["response"], "Echo: anything");
    let bad = by("badjson");
    assert_eq!(bad["metadata"]["error_kind"], "malformed");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("not a chat completion")
    );
    assert_eq!(by("empty")["metadata"]["error_kind"], "empty_choices");
    let slow = by("slow-3000");
    assert_eq!(slow["metadata"]["error_kind"], "timeout", "{slow}");
    assert_eq!(slow["metadata"]["attempts"], 1, "a timeout is not retried");
    let refused = by("ok-a");
    assert_eq!(refused["endpoint"], "dead");
    assert_eq!(refused["metadata"]["error_kind"], "connect");
    assert_eq!(refused["metadata"]["attempts"], 3);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to dead"),
        "{refused}"
    );
    assert_eq!(site.get("/healthz").await.0, 200);
    assert!(site.get("/").await.1.contains("upstream exploded"));
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_file_problem_names_file_and_line_and_the_other_jobs_still_run() {
    let site = Site::new(None, "");
    let good = "schedule = \"* * * * * *\"\ntargets = [\"sim/careful\"]\n[[cases]]\nid = \"a\"\nprompt = \"What is 2 + 2?\"\nreference = \"4\"\n";
    site.job("good", good);
    let bad: &[(&str, &str, &str)] = &[
        (
            "malformed",
            "targets = [\"sim/a\"\n",
            "malformed.toml:1:19: unclosed array",
        ),
        (
            "unknown-key",
            "targets = [\"sim/a\"]\nbogus = 1\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n",
            "unknown-key.toml:2:1: unknown field `bogus`",
        ),
        (
            "bad-cron",
            "schedule = \"every tuesday\"\ntargets = [\"sim/a\"]\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n",
            "bad-cron.toml:1:12: schedule:",
        ),
        (
            "bad-endpoint",
            "targets = [\"nowhere/a\"]\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n",
            "bad-endpoint.toml:1:12: targets[0]: unknown endpoint `nowhere`",
        ),
        (
            "dup-case",
            "targets = [\"sim/a\"]\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n[[cases]]\nid=\"a\"\nprompt=\"y\"\n",
            "dup-case.toml:6:4: cases[1].id: duplicate case id `a` (first at line 3)",
        ),
        ("empty", "", "empty.toml:1:1: empty job file"),
        (
            "bad-watch",
            "targets = [\"sim/a\"]\n[watch]\nbaseline = \"rolling:0\"\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n[[scorers]]\nbuiltin=\"contains\"\nvalue=\"x\"\n",
            "bad-watch.toml:3:12: watch.baseline: `rolling:0` is not one of",
        ),
        (
            "bad-alert",
            "targets = [\"sim/a\"]\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n[[alerts]]\nwhen = \"pass_rat < 0.9\"\n",
            "bad-alert.toml:6:8: alerts[0].when: unknown metric `pass_rat`",
        ),
        (
            // Conditions that could never have a value or never show: a scorer the job lacks, a
            // glob no target matches, a warning past the firing level.
            "never-alert",
            "targets = [\"sim/a\"]\n[[cases]]\nid=\"a\"\nprompt=\"x\"\n[[scorers]]\nbuiltin=\"contains\"\nvalue=\"x\"\n[[alerts]]\nwhen = \"score.exact < 1\"\ntargets = [\"sim/b*\"]\n[[alerts]]\nname = \"q\"\nwhen = \"pass_rate < 0.9\"\nwarn = \"pass_rate < 0.8\"\n[[alerts]]\nname = \"r\"\nwhen = \"regression\"\n[[alerts]]\nname = \"g\"\nwhen = \"goodput < 1\"\n",
            "never-alert.toml:9:8: alerts[0].when: no scorer `exact` in this job (scorers: contains)",
        ),
    ];
    for (name, text, _) in bad {
        site.job(name, text);
    }
    std::fs::write(
        site.path().join("jobs/binary.toml"),
        [0x00u8, 0xff, 0xfe, 0x80, 0x01, 0x02, 0xc3],
    )
    .unwrap();
    let out = site.evald(&["check"]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for (_, _, want) in bad {
        assert!(text.contains(want), "want {want:?} in:\n{text}");
    }
    assert!(text.contains("binary.toml:1:2: not UTF-8 text"), "{text}");
    for want in [
        "never-alert.toml:10:12: alerts[0].targets: `sim/b*` matches none of this job's targets (sim/a)",
        "never-alert.toml:14:8: alerts[1].warn: it holds only where `when` already does, and with for_runs = 1 that fires at once, so the warning would never show; a warning comes first, e.g. warn = \"pass_rate < 0.95\"",
        "never-alert.toml:17:8: alerts[2].when: regression is a [watch] verdict, and this job has no [watch] table: it would never have a value",
        "never-alert.toml:20:8: alerts[3].when: goodput and slo_attainment are benchmark figures: it would never have a value",
    ] {
        assert!(text.contains(want), "want {want:?} in:\n{text}");
    }
    assert!(!text.contains("good.toml"), "{text}");
    let one = site.path().join("jobs/good.toml");
    assert!(
        site.evald(&["check", one.to_str().unwrap()])
            .status
            .success(),
        "checking only the good file passes"
    );

    let _d = site.serve().await;
    site.until(20, "the good job's records", || async {
        !site.records("?job=good").await.is_empty()
    })
    .await;
    let (_, page) = site.get("/").await;
    for name in [
        "malformed",
        "unknown-key",
        "bad-cron",
        "bad-endpoint",
        "dup-case",
        "empty",
        "bad-watch",
        "bad-alert",
        "binary",
    ] {
        assert!(
            page.contains(&format!("{name}.toml")),
            "page lists {name}.toml"
        );
    }
    assert!(page.contains("duplicate case id"), "page shows the problem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_restart_and_a_killed_run_is_marked_interrupted() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job("quick", "targets = [\"test/ok-a\", \"test/ok-b\"]\n[[cases]]\nid = \"a\"\nprompt = \"one\"\n[[cases]]\nid = \"b\"\nprompt = \"two\"\n");
    let d = site.serve().await;
    assert!(site.evald(&["run", "quick"]).status.success());
    let before = site.records("").await;
    assert_eq!(before.len(), 4);
    d.signal("TERM");
    assert_eq!(d.wait(20).await, Some(0), "SIGTERM exits 0");

    // A slow job, fired every second: kill -9 while its run is going.
    site.job("slow", "schedule = \"* * * * * *\"\ntargets = [\"test/slow-400\"]\nconcurrency = 1\nrepeat = 50\ntimeout = \"5s\"\n[[cases]]\nid = \"a\"\nprompt = \"zzz\"\n");
    let d = site.serve().await;
    // Only `quick`'s: `slow` may have stored its first record already.
    assert_eq!(
        site.records("?job=quick").await,
        before,
        "every record is there after a restart"
    );
    let metrics = site.get("/metrics").await.1;
    assert!(
        metrics.contains("evald_job_last_run_success{job=\"quick\"} 1"),
        "the last run's series come back from the store: {metrics}"
    );
    site.until(20, "some records of the slow run", || async {
        site.records("?job=slow").await.len() >= 2
    })
    .await;
    let committed = site.records("?job=slow").await;
    d.signal("KILL");
    let _ = d.wait(10).await;
    let _d = site.serve().await;
    let after = site.records("?job=slow").await;
    assert!(
        committed.iter().all(|r| after.contains(r)),
        "every record committed before the kill is there"
    );
    let runs = site.runs("slow").await;
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert!(statuses.contains(&"interrupted"), "{statuses:?}");
    let interrupted = runs.iter().find(|r| r["status"] == "interrupted").unwrap();
    // The summary is recounted from the store at start-up: it must count exactly the records
    // stored for that run (the ones committed before the kill, and none of the later runs').
    let id = interrupted["id"].as_str().unwrap();
    let stored = site.records(&format!("?run={id}")).await;
    assert!(
        stored.iter().all(|r| r["run_id"] == id),
        "the run filter returned another run's records"
    );
    let before_kill = committed.iter().filter(|r| r["run_id"] == id).count();
    assert!(
        before_kill >= 2 && stored.len() >= before_kill,
        "the interrupted run is the one cut off, with its {before_kill} committed records: {} stored",
        stored.len()
    );
    assert_eq!(
        interrupted["requests"].as_u64().unwrap(),
        stored.len() as u64,
        "the summary counts the committed records: {interrupted}"
    );
    assert_eq!(
        interrupted["errors"].as_u64().unwrap(),
        stored.iter().filter(|r| !r["error"].is_null()).count() as u64,
        "the summary counts the committed errors: {interrupted}"
    );
    let per_target: u64 = interrupted["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(per_target, stored.len() as u64, "{interrupted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_is_sent_as_a_bearer_token_and_found_nowhere_else() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job(
        "keyed",
        "targets = [\"test/ok-a\", \"test/echo-auth\"]\n[[cases]]\nid = \"a\"\nprompt = \"hi\"\n",
    );
    let d = site.serve().await;
    let out = site.evald(&["run", "keyed"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.auth.as_deref() == Some(&format!("Bearer {SECRET}") as &str))
    );
    let recs = site.records("").await;
    let echoed = recs.iter().find(|r| r["model"] == "echo-auth").unwrap();
    assert!(
        echoed["error"]
            .as_str()
            .unwrap()
            .contains("bad key: Bearer [redacted]"),
        "{echoed}"
    );
    let (_, page) = site.get("/").await;
    let run_id = echoed["run_id"].as_str().unwrap();
    let (_, run_page) = site.get(&format!("/runs/{run_id}")).await;
    let (_, csv) = site.get("/export.csv").await;
    // The CLI's export goes through the daemon (it holds the store) and says the same.
    let cli = site.evald(&["export", "--format", "csv"]);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout),
        csv,
        "CLI export through the daemon = HTTP export"
    );
    // A second run, then one run's records, through the daemon and over HTTP.
    assert!(site.evald(&["run", "keyed"]).status.success());
    let one = site.evald(&["export", "--format", "jsonl", "--run", run_id]);
    let one = String::from_utf8_lossy(&one.stdout).into_owned();
    assert_eq!(one.lines().count(), 2, "{one}");
    assert!(
        one.lines()
            .all(|l| l.contains(&format!("\"run_id\":\"{run_id}\"")))
    );
    assert_eq!(
        site.get(&format!("/export.jsonl?run={run_id}")).await.1,
        one
    );
    // A run id or job that names nothing is refused (a typo would give an empty file and exit
    // 0), and a file of that name is left as it was.
    refused_exports(
        &site,
        &[
            (&["--run", "nosuch"], "no run `nosuch` is stored"),
            (
                &["--job", "nosuch"],
                "no record of job `nosuch` matches, and",
            ),
            (&["--run", run_id, "--job", "other"], "is of job `keyed`"),
        ],
    );
    d.signal("TERM");
    let _ = d.wait(20).await;
    for (what, hay) in [
        ("page", page.into_bytes()),
        ("run page", run_page.into_bytes()),
        ("export", csv.into_bytes()),
        ("run output", out.stdout.clone()),
        ("data dir and logs", all_bytes(site.path())),
    ] {
        assert!(!contains(&hay, SECRET), "the key leaked into the {what}");
        assert!(
            !contains(&hay, "SECRET-4242"),
            "part of the key leaked into the {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_sends_one_prompt_to_several_targets_with_and_without_a_daemon() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    let alone = site.evald(&[
        "compare",
        "-m",
        "test/ok-a",
        "-m",
        "sim/echo",
        "--max-tokens",
        "20",
        "hello there",
    ]);
    let text = stdout(&alone);
    assert!(alone.status.success(), "{text}");
    assert!(
        text.contains("test/ok-a")
            && text.contains("sim/echo")
            && text.contains("Echo: hello there"),
        "{text}"
    );
    assert_eq!(server.seen()[0].body["max_tokens"], 20);
    let d = site.serve().await;
    let beside = site.evald(&["compare", "-m", "test/ok-b", "again"]);
    assert!(beside.status.success(), "{}", stdout(&beside));
    let runs = site.runs("compare").await;
    assert_eq!(
        runs.len(),
        2,
        "both ad hoc runs are stored as job `compare`"
    );
    let bad = site.evald(&["compare", "-m", "nowhere/x", "hi"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        stdout(&bad).contains("unknown endpoint `nowhere`"),
        "{}",
        stdout(&bad)
    );
    drop(d);
}

/// A reader that stops reading (`evald run JOB | head -1`) ends the command quietly: no panic,
/// exit 0, and what the command did is stored all the same. (And `--fail-on-regression` on an
/// unwatched job says it cannot fail.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_ends_a_command_quietly() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job(
        "piped",
        "targets = [\"test/ok-a\"]\n[[cases]]\nid = \"c\"\nprompt = \"hi\"\n",
    );
    for args in [
        &["run", "piped"][..],
        &["stats"],
        &["run", "piped", "--json"],
    ] {
        let out = site.evald_to_closed_pipe(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // Asked to fail on a regression of a job that is not watched: said, not silently passed.
    let out = site.evald_ok(&["run", "piped", "--fail-on-regression"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has no [watch] table"), "{err}");
    assert_eq!(site.export_job("piped").len(), 3, "every run stored");
}

/// Every log line of a run carries the job and the run id, also those of the endpoint client
/// (its retries), which runs inside the run's span; the run id is the one stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_log_lines_carry_its_job_and_run_id() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job(
        "spans",
        "targets = [\"test/err500\", \"test/ok\"]\n[[cases]]\nid = \"c\"\nprompt = \"hi\"\n",
    );
    let out = site.evald_env(
        &["--log-format", "json", "run", "spans", "--json"],
        &[("RUST_LOG", "evald=debug")],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    let run_id = report["summary"]["id"].as_str().unwrap().to_string();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of_run: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            let m = l["fields"]["message"].as_str().unwrap_or_default();
            m == "retrying" || m == "run started" || m == "run ended"
        })
        .collect();
    // err500 is retried max_retries = 2 times: two "retrying" lines, plus start and end.
    assert_eq!(of_run.len(), 4, "{lines:#?}");
    for l in of_run {
        assert_eq!(l["span"]["job"], "spans", "{l}");
        assert_eq!(l["span"]["run_id"], run_id.as_str(), "{l}");
    }
    // At debug, each request with its prompt and answer (as the README says), in the run's
    // span; never the key.
    let requests: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{lines:#?}");
    let ok = requests
        .iter()
        .find(|l| l["fields"]["target"] == "test/ok")
        .unwrap();
    assert_eq!(ok["fields"]["prompt"], "hi", "{ok}");
    assert_eq!(ok["fields"]["response"], "Echo: hi", "{ok}");
    assert_eq!(ok["span"]["run_id"], run_id.as_str(), "{ok}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(evald_tests::SECRET));
}

/// Without a daemon the CLI opens the store itself: an export naming no run or job is refused
/// there too (a file of that name is left as it was), a job that has a file but no run yet
/// exports nothing without an error, and a run says what this shell lacks for its endpoints'
/// keys (the requests go out all the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_without_a_daemon_say_what_names_nothing_and_what_is_missing() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    let job = "targets = [\"test/ok-a\"]\n[[cases]]\nid = \"a\"\nprompt = \"hi\"\n";
    site.job("one", job);
    let out = site.evald_env(&["run", "one"], &[("TEST_KEY", "")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: endpoints.test.api_key_env: environment variable `TEST_KEY` is not set"
        ),
        "{err}"
    );
    refused_exports(
        &site,
        &[
            (&["--run", "nosuch"], "no run `nosuch` is stored"),
            (&["--job", "nosuch"], "no record of job `nosuch` matches"),
        ],
    );
    site.job("fresh", job);
    let out = site.evald(&["export", "--format", "jsonl", "--job", "fresh"]);
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");
}

/// Each export (`args`) exits 1 saying `says`, and leaves the file it was to write as it was.
fn refused_exports(site: &Site, cases: &[(&[&str], &str)]) {
    let kept = site.path().join("kept.csv");
    std::fs::write(&kept, "an earlier export\n").unwrap();
    for (args, says) in cases {
        let mut all = vec!["export", "-o", kept.to_str().unwrap()];
        all.extend(args.iter());
        let out = site.evald(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{all:?}: {err}");
        assert!(err.contains(says), "{all:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        "an earlier export\n"
    );
}
