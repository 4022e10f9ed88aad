//! The example plugins end to end: built for wasm32-wasip2, loaded by the real binary, scoring
//! responses of a local test server and generating cases; a sandboxed plugin sees no file or
//! environment; `evald check` names a missing or wrong-world plugin by file and key.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../plugins/host/tests/plugins/build.rs"]
#[allow(dead_code)]
mod build;

use evald_tests::{Site, TestServer};
use serde_json::Value;

fn site_with_plugins(server: &TestServer) -> Site {
    let dir = build::examples_dir();
    let site = Site::new(Some(server), "");
    let cfg = std::fs::read_to_string(site.config()).unwrap();
    let cfg = cfg.replace(
        "plugins_dir = \"plugins\"",
        &format!("plugins_dir = \"{}\"", dir.display()),
    );
    std::fs::write(site.config(), cfg).unwrap();
    site
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_plugins_score_and_generate_end_to_end() {
    let server = TestServer::start().await;
    let site = site_with_plugins(&server);
    site.job(
        "plugged",
        r#"targets = ["test/ok-a", "sim/careful"]
[[cases]]
id = "json"
prompt = "{\"capital\": \"Paris\"}"
reference = "Echo: capital Paris"
[[generators]]
plugin = "arith.wasm"
config = { count = 3, seed = 7 }
[[scorers]]
plugin = "json_keys.wasm"
name = "has-capital"
config = { required = ["capital"] }
[[scorers]]
plugin = "word_overlap.wasm"
name = "overlap"
[[scorers]]
plugin = "nosy.wasm"
name = "nosy"
threshold = 0.0
[[scorers]]
builtin = "contains"
"#,
    );
    let out = site.evald(&["run", "plugged"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("has-capital") && text.contains("overlap"),
        "the run table shows the plugin scorers: {text}"
    );
    let out = site.evald(&["export", "--format", "jsonl", "--job", "plugged"]);
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 1 file case + 3 generated, to 2 targets.
    assert_eq!(recs.len(), 8, "{recs:?}");
    let cases: std::collections::BTreeSet<&str> = recs
        .iter()
        .map(|r| r["case_id"].as_str().unwrap())
        .collect();
    assert_eq!(cases.len(), 4, "{cases:?}");
    let score = |r: &Value, name: &str| {
        r["scores"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    // The test server echoes: `Echo: {"capital": "Paris"}` is not JSON, but sim/careful's
    // answers to the generated sums are numbers, and json_keys scores those 0 too.
    let echo = recs
        .iter()
        .find(|r| r["case_id"] == "json" && r["model"] == "ok-a")
        .unwrap();
    assert_eq!(score(echo, "has-capital")["value"], 0.0);
    assert!(
        score(echo, "overlap")["value"].as_f64().unwrap() > 0.0,
        "word overlap with the reference"
    );
    // Generated arithmetic: sim/careful computes them; the generator's references match.
    let sums: Vec<&Value> = recs
        .iter()
        .filter(|r| r["case_id"] != "json" && r["model"] == "careful")
        .collect();
    assert_eq!(sums.len(), 3);
    for r in &sums {
        assert_eq!(
            score(r, "contains")["passed"],
            true,
            "the generated reference is the right answer: {r}"
        );
    }
    // The sandbox: the nosy plugin tried to read a file and the environment and saw nothing.
    let nosy = score(echo, "nosy");
    assert!(nosy["error"].is_null(), "{nosy}");
    assert_eq!(
        nosy["value"], 1.0,
        "nosy scores 1 only when it could read nothing: {nosy}"
    );
    // The page shows the scores.
    let d = site.serve().await;
    let run_id = echo["run_id"].as_str().unwrap();
    let (_, page) = site.get(&format!("/runs/{run_id}")).await;
    assert!(page.contains("has-capital") && page.contains("overlap"));
    // A plugin that refuses its config fails its scorer on every record; /metrics counts the
    // failures by plugin file.
    site.job(
        "misconfigured",
        "targets = [\"test/ok-a\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n[[cases]]\nid = \"b\"\nprompt = \"y\"\n[[scorers]]\nplugin = \"json_keys.wasm\"\nconfig = { bogus = 1 }\n",
    );
    site.until(10, "the daemon loads the new job", || async {
        site.get("/api/v1/jobs")
            .await
            .1
            .contains("\"name\":\"misconfigured\"")
    })
    .await;
    assert!(site.evald(&["run", "misconfigured"]).status.success());
    let metrics = site.get("/metrics").await.1;
    assert!(
        metrics.contains("evald_plugin_errors_total{plugin=\"json_keys.wasm\",cause=\"guest\"} 2"),
        "{metrics}"
    );
    drop(d);
    // A second process loads the plugins from the compiled cache: nothing is recompiled.
    let out = site.evald_env(&["run", "plugged"], &[("RUST_LOG", "evald=debug")]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("from_cache=true") && !log.contains("from_cache=false"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_a_missing_or_wrong_world_plugin_by_file_and_key() {
    let server = TestServer::start().await;
    let site = site_with_plugins(&server);
    site.job("missing", "targets = [\"test/ok-a\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n[[scorers]]\nplugin = \"no-such-plugin.wasm\"\n");
    site.job("wrong", "targets = [\"test/ok-a\"]\n[[cases]]\nid = \"a\"\nprompt = \"x\"\n[[scorers]]\nplugin = \"arith.wasm\"\n");
    let out = site.evald(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text.contains(
            "missing.toml:6:10: scorers[0].plugin: plugin `no-such-plugin.wasm` not found"
        ),
        "{text}"
    );
    assert!(
        text.contains("wrong.toml:6:10: scorers[0].plugin:") && text.contains("generator"),
        "{text}"
    );
}
