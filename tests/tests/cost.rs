//! What evaluations cost: prices from a LiteLLM-format file and per-target overrides, the
//! gateway's own figure first, unknown left unknown; costs in records, exports, run summaries,
//! stats and metrics; `--estimate` sends nothing.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evald_tests::{Site, TestServer};
use serde_json::Value;

const PRICES: &str = r#"{
  "sample_spec": {"input_cost_per_token": 0.0, "output_cost_per_token": 0.0, "mode": "chat"},
  "costly": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06, "cache_read_input_token_cost": 5e-07, "mode": "chat"},
  "gwcost": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06, "mode": "chat"},
  "testprov/overridden": {"input_cost_per_token": 1.0, "output_cost_per_token": 1.0}
}"#;

fn site(server: &TestServer) -> Site {
    let site = Site::new(
        Some(server),
        "[pricing]\nfile = \"prices.json\"\n[pricing.models.\"test/ok-a\"]\ninput = 1.00\noutput = 4.00\ncached_input = 0.25\n",
    );
    std::fs::write(site.path().join("prices.json"), PRICES).unwrap();
    site
}

fn near(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-12)
}

/// Per record, with 1,000 prompt tokens (400 cached) and 500 completion tokens (100 of them
/// reasoning, already inside the 500):
/// - `costly`, priced by the file: 600 × 2e-6 + 400 × 5e-7 + 500 × 8e-6 = 0.0054, `price`;
/// - `gwcost`: the gateway's 0.0123 wins over its file price, `gateway`;
/// - `unpriced`: no price, `null` (never 0);
/// - `ok-a`, overridden in evald.toml (1 / 4 / 0.25 USD per million) over nothing in the file:
///   the test server's usage for it (7 prompt, 3 or 2 completion) costs 1.9e-5 or 1.5e-5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costs_come_from_the_gateway_then_the_price_table_and_unknown_stays_unknown() {
    let server = TestServer::start().await;
    let site = site(&server);
    site.job(
        "cost",
        "targets = [\"test/costly\", \"test/gwcost\", \"test/unpriced\", \"test/ok-a\"]\n[[cases]]\nid = \"a\"\nprompt = \"one two\"\n[[cases]]\nid = \"b\"\nprompt = \"three\"\n",
    );
    let out = site.evald_ok(&["run", "cost", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let recs = report["records"].as_array().unwrap();
    let by = |m: &'static str| recs.iter().filter(move |r| r["model"] == m);
    assert!(by("costly").all(|r| near(&r["cost_usd"], 0.0054) && r["cost_source"] == "price"));
    assert!(by("gwcost").all(|r| near(&r["cost_usd"], 0.0123) && r["cost_source"] == "gateway"));
    assert!(by("unpriced").all(|r| r["cost_usd"].is_null() && r["cost_source"].is_null()));
    assert!(
        by("ok-a").all(|r| {
            let c = r["completion_tokens"].as_f64().unwrap();
            near(&r["cost_usd"], (7.0 + 4.0 * c) / 1e6)
        }),
        "{recs:?}"
    );
    assert_eq!(by("costly").count(), 2);
    let targets = report["summary"]["targets"].as_array().unwrap();
    let cost = |t: &str| &targets.iter().find(|x| x["target"] == t).unwrap()["cost_usd"];
    assert!(near(cost("test/costly"), 0.0108));
    assert!(near(cost("test/gwcost"), 0.0246));
    assert!(cost("test/unpriced").is_null());

    // The CSV ends with cost_usd (cost_source is JSON only); the stats carry cost by model.
    let out = site.evald(&["export", "--format", "csv", "--job", "cost"]);
    let csv = String::from_utf8_lossy(&out.stdout);
    let header = csv.lines().next().unwrap();
    assert!(
        header.ends_with(",served_model,system_fingerprint,cost_usd"),
        "{header}"
    );
    let out = site.evald(&["stats", "--json"]);
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        near(&stats["cost_usd"], 0.0108 + 0.0246 + 1.9e-5 + 1.5e-5),
        "{stats}"
    );
    let m = stats["by_model"].as_array().unwrap();
    let model = |n: &str| &m.iter().find(|g| g["name"] == n).unwrap()["cost_usd"];
    assert!(near(model("costly"), 0.0108));
    assert!(model("unpriced").is_null());
}

/// A total that leaves requests out says so: a gateway that priced 2 of 4 answers makes
/// `$0.02 + 2 unpriced` in `evald run`, `evald stats` and the summary, not a bare `$0.02`
/// that reads as the whole spend; a target with no price at all stays unknown, not partial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_cost_total_counts_what_it_left_out() {
    let server = TestServer::start().await;
    let site = site(&server);
    let mut job = String::from("targets = [\"test/gwhalf\", \"test/unpriced\"]\n");
    for c in ["a", "b", "c", "d"] {
        job.push_str(&format!("[[cases]]\nid = \"{c}\"\nprompt = \"{c}\"\n"));
    }
    site.job("half", &job);
    let out = site.evald_ok(&["run", "half", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = report["summary"]["targets"].as_array().unwrap();
    let t = |n: &str| targets.iter().find(|x| x["target"] == n).unwrap();
    assert!(near(&t("test/gwhalf")["cost_usd"], 0.02), "{targets:?}");
    assert_eq!(t("test/gwhalf")["cost_unpriced"], 2);
    assert!(t("test/unpriced")["cost_usd"].is_null());
    assert!(t("test/unpriced").get("cost_unpriced").is_none());

    let text = String::from_utf8_lossy(&site.evald_ok(&["run", "half"]).stdout).to_string();
    assert!(text.contains("$0.02 + 2 unpriced"), "{text}");
    // Both runs in the stats: 4 of 8 answers priced.
    let text = String::from_utf8_lossy(&site.evald_ok(&["stats"]).stdout).to_string();
    assert!(text.contains("$0.04 + 4 unpriced"), "{text}");
    let stats: Value = serde_json::from_slice(&site.evald_ok(&["stats", "--json"]).stdout).unwrap();
    let m = stats["by_model"].as_array().unwrap();
    let g = m.iter().find(|g| g["name"] == "gwhalf").unwrap();
    assert_eq!(g["cost_unpriced"], 4, "{g}");
}

/// `--estimate` counts and prices, and sends nothing: the test server sees no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_estimate_sends_nothing() {
    let server = TestServer::start().await;
    let site = site(&server);
    site.job(
        "est",
        "targets = [\"test/costly\", \"test/unpriced\"]\n[params]\nmax_tokens = 500\n[[cases]]\nid = \"a\"\nprompt = \"Name one prime number.\"\n",
    );
    let out = site.evald_ok(&["run", "est", "--estimate"]);
    let text = String::from_utf8_lossy(&out.stdout);
    // 500 completion tokens × 8e-6 = 0.004, plus the prompt's dozen tokens × 2e-6.
    assert!(text.contains("test/costly: at most 0.0040"), "{text}");
    assert!(text.contains("test/unpriced: no price known"), "{text}");
    assert!(text.contains("(1 without a price)"), "{text}");
    // Nothing priced: the total is unknown, not 0 USD.
    site.job(
        "est-none",
        "targets = [\"test/unpriced\"]\n[[cases]]\nid = \"a\"\nprompt = \"hi\"\n",
    );
    let none = site.evald_ok(&["run", "est-none", "--estimate"]);
    let text = String::from_utf8_lossy(&none.stdout);
    assert!(
        text.contains("total: unknown, no target has a price") && !text.contains("at most 0"),
        "{text}"
    );
    assert!(
        server.seen().is_empty(),
        "an estimate sent {} requests",
        server.seen().len()
    );
}

/// A benchmark's metrics (counted through per-target handles) have a cost series only for a
/// target whose cost is known: `test/unpriced` gets none, rather than one at 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_have_no_cost_series_for_an_unpriced_target() {
    let server = TestServer::start().await;
    let site = site(&server);
    site.job(
        "bench",
        "kind = \"benchmark\"\nstream = false\ntargets = [\"test/costly\", \"test/unpriced\"]\n[[cases]]\nid = \"a\"\nprompt = \"hi\"\n[load]\nconcurrency = 2\nrequests = 6\n",
    );
    let _d = site.serve().await;
    site.evald_ok(&["run", "bench"]);
    let (_, metrics) = site.get("/metrics").await;
    let series: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("evald_cost_usd_total{") && l.contains("job=\"bench\""))
        .collect();
    assert_eq!(series.len(), 1, "{series:?}");
    assert!(series[0].contains("target=\"test/costly\""), "{series:?}");
}
