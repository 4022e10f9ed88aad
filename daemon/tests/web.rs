//! The page, the JSON API and `/metrics` over a real store: every page renders (empty store,
//! compare and benchmark runs, a broken job file), hostile strings stay text, the routes are
//! read-only, the token guards everything but `/healthz`, and `/metrics` parses and counts.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use evald::config::Config;
use evald::endpoint::Client;
use evald::job::{Job, load_dir};
use evald::metrics::Metrics;
use evald::registry::Registry;
use evald::run::{RunContext, run_job};
use evald::score::plugins::Plugins;
use evald::store::Store;
use evald::view::View;
use evald_model::{RunStatus, Trigger};
use http_body_util::BodyExt;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";

struct Fixture {
    _dir: tempfile::TempDir,
    view: Arc<View>,
    config: Arc<Config>,
}

fn config(dir: &Path) -> Arc<Config> {
    std::fs::create_dir_all(dir.join("jobs")).unwrap();
    let text = "[endpoints.sim]\nsimulated = { latency_ms = 1, jitter_ms = 0, tokens_per_second = 10000 }\n";
    std::fs::write(dir.join("evald.toml"), text).unwrap();
    Arc::new(Config::load(&dir.join("evald.toml")).unwrap())
}

fn fixture(jobs: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    for (name, text) in jobs {
        std::fs::write(dir.path().join("jobs").join(format!("{name}.toml")), text).unwrap();
    }
    let set = load_dir(&config);
    let registry = Arc::new(Registry::default());
    registry.replace_all(set.jobs, set.invalid);
    let store = Store::open(&config.db_path()).unwrap();
    let metrics = Arc::new(Metrics::new());
    let alerts = Arc::new(evald::alert::Alerts::new(
        &store,
        store.writer(),
        metrics.clone(),
        &config,
    ));
    let view = Arc::new(View {
        store,
        registry,
        metrics,
        alerts,
    });
    Fixture {
        _dir: dir,
        view,
        config,
    }
}

impl Fixture {
    fn router(&self, token: Option<&str>) -> axum::Router {
        evald_web::router(
            self.view.clone(),
            evald_web::WebOptions {
                token: token.map(String::from),
            },
        )
    }

    async fn run(&self, name: &str) -> evald_model::RunSummary {
        let job: Job = self.view.registry.get(name).unwrap().job.as_ref().clone();
        let writer = self.view.store.writer();
        let ctx = RunContext {
            config: self.config.clone(),
            client: Client::new(vec![]),
            writer: writer.clone(),
            store: self.view.store.clone(),
            plugins: Plugins::new(&self.config.data_dir.join("plugin-cache")).unwrap(),
            metrics: self.view.metrics.clone(),
            stop: CancellationToken::new(),
            abort: CancellationToken::new(),
        };
        let report = run_job(&ctx, &job, Trigger::Manual, None).await;
        writer.close().await;
        report.summary
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        send(
            self.router(None),
            Request::get(path).body(Body::empty()).unwrap(),
        )
        .await
    }
}

async fn send(app: axum::Router, req: Request<Body>) -> (StatusCode, String) {
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn hostile_compare() -> String {
    format!(
        r#"description = "desc {SCRIPT} {IMG}"
targets = ["sim/careful", "sim/echo"]
[[cases]]
id = "case{IMG}"
prompt = "say {SCRIPT}"
reference = "{IMG}"
[[scorers]]
builtin = "contains"
[[scorers]]
builtin = "max-latency"
name = "fast{IMG}"
max_ms = 1000
"#
    )
    .replace("\"><img", "\\\"><img")
}

const BENCH: &str = r#"kind = "benchmark"
targets = ["sim/careful"]
[[cases]]
id = "a"
prompt = "What is 2 + 2?"
[load]
concurrency = 2
requests = 20
warmup = 2
"#;

fn assert_inert(what: &str, html: &str) {
    assert!(!html.contains(SCRIPT), "{what}: a raw <script> got through");
    assert!(
        !html.contains("<img src=x"),
        "{what}: a raw <img> got through"
    );
}

#[tokio::test]
async fn every_page_renders_on_an_empty_store() {
    let f = fixture(&[]);
    for path in [
        "/",
        "/api/v1/jobs",
        "/api/v1/runs",
        "/api/v1/stats",
        "/metrics",
        "/healthz",
        "/style.css",
        "/export.csv",
        "/export.json",
        "/export.jsonl",
    ] {
        let (status, body) = f.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, json) = f.get("/export.json").await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json).unwrap(),
        serde_json::json!([])
    );
    let (_, csv) = f.get("/export.csv").await;
    assert!(csv.starts_with("id,timestamp,model,provider,messages"));
    assert!(f.get("/").await.1.contains("No jobs loaded"));
}

#[tokio::test]
async fn pages_render_runs_and_broken_files_with_hostile_strings_as_text() {
    let broken = format!(
        "targets = [\"sim/careful\"]\n[[cases]]\nid = \"x\"\nprompt = \"p\"\n[[scorers]]\nbuiltin = \"regex\"\npattern = \"({SCRIPT}\"\n"
    );
    let f = fixture(&[
        ("xss", &hostile_compare()),
        ("bench", BENCH),
        ("broken", &broken),
    ]);
    let compare = f.run("xss").await;
    let bench = f.run("bench").await;
    assert_eq!(compare.status, RunStatus::Ok);
    assert_eq!(bench.status, RunStatus::Ok);

    let (status, index) = f.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert_inert("/", &index);
    assert!(index.contains("broken.toml"), "the broken file is listed");
    assert!(index.contains("not a regular expression"), "with its error");
    assert!(
        index.contains("desc &lt;script&gt;alert(1)&lt;/script&gt;"),
        "the description is shown as text"
    );

    for (path, must) in [
        ("/jobs/xss".to_string(), "desc &lt;script&gt;"),
        (
            format!("/runs/{}", compare.id),
            "case&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
        ),
        ("/jobs/bench".to_string(), "bench"),
        (format!("/runs/{}", bench.id), "time to first token"),
    ] {
        let (status, html) = f.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_inert(&path, &html);
        assert!(html.contains(must), "{path} shows {must:?}");
    }
    let (_, run) = f.get(&format!("/runs/{}", compare.id)).await;
    assert!(
        run.contains("Echo: say &lt;script&gt;"),
        "model output is text"
    );
    assert!(
        run.contains("★ best"),
        "the best target of the case is marked"
    );
    let (_, bench_page) = f.get(&format!("/runs/{}", bench.id)).await;
    assert!(
        bench_page.contains("<svg class=\"chart\""),
        "the latency histogram is drawn"
    );
    assert!(bench_page.contains("p99"));

    // The API says the same.
    let (_, runs) = f.get("/api/v1/runs?job=xss&limit=1").await;
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    assert_eq!(runs[0]["id"], compare.id.as_str());
    let (_, one) = f.get(&format!("/api/v1/runs/{}", compare.id)).await;
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["records"].as_array().unwrap().len(), 2);
    let (_, jobs) = f.get("/api/v1/jobs").await;
    let jobs: serde_json::Value = serde_json::from_str(&jobs).unwrap();
    assert_eq!(jobs["jobs"].as_array().unwrap().len(), 2);
    assert_eq!(jobs["invalid"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_plugin_error_message_is_shown_as_text() {
    // A scorer error message is whatever a plugin said: store one with markup and render it.
    let f = fixture(&[("xss", &hostile_compare())]);
    let s = f.run("xss").await;
    let mut records = f.view.store.run_records(&s.id, 100).unwrap();
    let w = f.view.store.writer();
    let mut r = records.remove(0);
    r.run_id = "1111111111100000".into();
    r.scores[0].error = Some(format!("plugin trapped: {SCRIPT}{IMG}"));
    r.scores[0].value = None;
    w.record(r).await;
    let mut summary = s.clone();
    summary.id = "1111111111100000".into();
    w.run(summary).await;
    w.close().await;
    // Two runs over the same span of time: each finds only its own records.
    let own = f.view.store.run_records("1111111111100000", 100).unwrap();
    assert_eq!(own.len(), 1);
    let first = f.view.store.run_records(&s.id, 100).unwrap();
    assert_eq!(first.len(), records.len() + 1);
    assert!(first.iter().all(|r| r.run_id == s.id));
    let (status, csv) = f.get("/export.jsonl?run=1111111111100000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(csv.lines().count(), 1, "{csv}");
    assert!(csv.contains("\"run_id\":\"1111111111100000\""));
    let (status, html) = f.get("/runs/1111111111100000").await;
    assert_eq!(status, StatusCode::OK);
    assert_inert("run with a plugin error", &html);
    assert!(html.contains("plugin trapped: &lt;script&gt;"));
}

#[tokio::test]
async fn unknown_routes_are_404_writes_are_405_and_the_token_guards_all_but_healthz() {
    let f = fixture(&[("bench", BENCH)]);
    assert_eq!(f.get("/jobs/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(f.get("/runs/0000nosuchrun").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        f.get("/api/v1/runs/0000nosuchrun").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(f.get("/nothing/here").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        f.get("/export.csv?since=not-a-date").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        f.get("/api/v1/stats?days=zero").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        f.get("/api/v1/runs?limit=-3").await.0,
        StatusCode::BAD_REQUEST
    );
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/", "/jobs/bench", "/export.csv", "/nothing"] {
            let req = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            assert_eq!(
                send(f.router(None), req).await.0,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
        }
    }
    let head = Request::head("/").body(Body::empty()).unwrap();
    assert_eq!(send(f.router(None), head).await.0, StatusCode::OK);

    let app = || f.router(Some("tok-42"));
    let get = |path: &str, auth: Option<&str>| {
        let mut b = Request::get(path);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(
        send(app(), get("/", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(app(), get("/metrics", None)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(app(), get("/export.csv", Some("Bearer nope"))).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(app(), get("/", Some("Bearer tok-42"))).await.0,
        StatusCode::OK
    );
    assert_eq!(send(app(), get("/healthz", None)).await.0, StatusCode::OK);
    // The page sends the browser on to itself without the token, with the cookie.
    let resp = app().oneshot(get("/?token=tok-42", None)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.starts_with("evald_token=tok-42"));
    let with_cookie = Request::get("/jobs/bench")
        .header("cookie", "evald_token=tok-42")
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(app(), with_cookie).await.0, StatusCode::OK);
}

#[tokio::test]
async fn metrics_parse_and_count_a_run() {
    let f = fixture(&[("xss", &hostile_compare()), ("bench", BENCH)]);
    f.run("xss").await;
    f.run("bench").await;
    let (status, text) = f.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<Result<String, std::io::Error>> =
        text.lines().map(|l| Ok(l.to_string())).collect();
    let scrape = prometheus_parse::Scrape::parse(lines.into_iter()).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> Option<f64> {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value(
            "evald_requests_total",
            &[("job", "xss"), ("target", "sim/careful"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "evald_requests_total",
            &[
                ("job", "bench"),
                ("target", "sim/careful"),
                ("outcome", "ok")
            ]
        ),
        Some(20.0),
        "warm-up requests are not counted"
    );
    assert_eq!(
        value("evald_job_runs_total", &[("job", "xss"), ("status", "ok")]),
        Some(1.0)
    );
    assert_eq!(
        value("evald_job_last_run_success", &[("job", "bench")]),
        Some(1.0)
    );
    assert!(value("evald_job_last_run_timestamp_seconds", &[("job", "xss")]).unwrap() > 1.7e9);
    assert_eq!(
        value(
            "evald_score",
            &[
                ("job", "xss"),
                ("target", "sim/careful"),
                ("scorer", "contains")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(value("evald_store_records", &[]), Some(2.0 + 22.0));
    assert!(value("evald_store_bytes", &[]).unwrap() > 0.0);
    assert!(
        value(
            "evald_tokens_total",
            &[
                ("job", "xss"),
                ("target", "sim/echo"),
                ("kind", "completion")
            ]
        )
        .unwrap()
            > 0.0
    );
    assert!(text.contains("evald_request_duration_seconds_bucket"));
    assert!(text.contains("evald_time_to_first_token_seconds"));
    assert!(text.contains("evald_jobs_invalid 0"));
}
