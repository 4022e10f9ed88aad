//! The web crate on its own, through a fake read model: pages, escaping, status codes, the
//! token, the exports and the error page. No store, no daemon, no wasmtime.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use evald_model::{
    InvalidJob, JobInfo, JobKind, Message, Metadata, Record, RecordFilter, RecordJson, RowRef,
    RunStatus, RunSummary, Score, Stats, TargetSummary, Trigger,
};
use evald_web::read::{ReadError, ReadModel};
use evald_web::{WebOptions, router};
use http_body_util::BodyExt;
use tower::ServiceExt;

const HOSTILE: &str = "<script>alert('x')</script> & \"quotes\"";

/// A fixed world: one job, one run of it with one record, one broken job file. With `broken`
/// set, every store read fails with a message that must never reach a page.
#[derive(Default)]
struct Fake {
    broken: bool,
    exported_filters: Mutex<Vec<RecordFilter>>,
}

fn record() -> Record {
    Record {
        id: 7,
        timestamp_ms: 1_764_000_000_000,
        model: "m1".into(),
        provider: "sim".into(),
        messages: vec![Message {
            role: "user".into(),
            content: HOSTILE.into(),
        }],
        temperature: Some(0.5),
        max_tokens: None,
        top_p: None,
        response: Some(format!("answer {HOSTILE}")),
        response_time_ms: Some(123.4),
        prompt_tokens: Some(10),
        completion_tokens: Some(5),
        total_tokens: Some(15),
        finish_reason: Some("stop".into()),
        error: None,
        metadata: Metadata {
            attempts: 1,
            ..Metadata::default()
        },
        job: "daily".into(),
        run_id: "run-1".into(),
        case_id: "c1".into(),
        endpoint: "local".into(),
        ttft_ms: None,
        scores: vec![Score {
            name: "contains".into(),
            value: Some(1.0),
            passed: Some(true),
            weight: 1.0,
            error: None,
            note: Some(HOSTILE.into()),
        }],
        served_model: None,
        system_fingerprint: None,
        cost_usd: None,
        cost_source: None,
    }
}

fn run() -> RunSummary {
    let mut s = RunSummary::start(
        "run-1".into(),
        "daily",
        JobKind::Compare,
        Trigger::Schedule,
        1_764_000_000_000,
    );
    s.status = RunStatus::Ok;
    s.ended_ms = Some(1_764_000_001_000);
    s.requests = 1;
    s.cases = 1;
    s.targets = vec![TargetSummary {
        target: "local/m1".into(),
        requests: 1,
        mean_latency_ms: Some(123.4),
        mean_score: Some(1.0),
        pass_rate: Some(1.0),
        ..TargetSummary::default()
    }];
    s
}

/// A benchmark run whose open loop fell behind, with 40 end-to-end samples: a median the
/// sample bounds (its interval shown), a p99 it cannot.
fn bench_run() -> RunSummary {
    use evald_model::run::{BenchSummary, Ci95, Percentiles};
    let mut s = run();
    s.id = "run-2".into();
    s.kind = JobKind::Benchmark;
    s.requests = 40;
    s.targets[0].bench = Some(BenchSummary {
        duration_s: 1.0,
        request_throughput: 40.0,
        target_rate: Some(100.0),
        achieved_rate: Some(61.5),
        fell_behind: true,
        e2e_ms: Percentiles {
            count: 40,
            p50: 12.0,
            p90: 15.0,
            p95: 16.0,
            p99: 19.0,
            p999: 19.0,
            max: 19.0,
            mean: 12.5,
            ci95: Ci95 {
                p50: Some([11.0, 13.0]),
                ..Ci95::default()
            },
        },
        ..BenchSummary::default()
    });
    s
}

impl Fake {
    fn fail(&self) -> Result<(), ReadError> {
        if self.broken {
            Err(ReadError::new(
                "redb: secret internal detail at /var/lib/evald",
            ))
        } else {
            Ok(())
        }
    }
}

impl ReadModel for Fake {
    fn jobs(&self) -> Vec<JobInfo> {
        vec![JobInfo {
            name: "daily".into(),
            file: "/jobs/daily.toml".into(),
            description: format!("described {HOSTILE}"),
            kind: JobKind::Compare,
            schedule: Some("0 3 * * *".into()),
            schedule_words: Some("at 03:00".into()),
            enabled: true,
            next_run_ms: None,
            targets: vec!["local/m1".into()],
            running: false,
            stale_errors: vec![],
        }]
    }

    fn invalid_jobs(&self) -> Vec<InvalidJob> {
        vec![InvalidJob {
            file: "/jobs/broken.toml".into(),
            errors: vec![format!("broken.toml:3:1: unknown key {HOSTILE}")],
        }]
    }

    fn runs(&self, job: Option<&str>, _limit: usize) -> Result<Vec<RunSummary>, ReadError> {
        self.fail()?;
        Ok(if job.is_none_or(|j| j == "daily") {
            vec![run()]
        } else {
            vec![]
        })
    }

    fn run(&self, id: &str) -> Result<Option<RunSummary>, ReadError> {
        self.fail()?;
        Ok(match id {
            "run-1" => Some(run()),
            "run-2" => Some(bench_run()),
            _ => None,
        })
    }

    fn run_records(&self, id: &str, _limit: usize) -> Result<Vec<Record>, ReadError> {
        self.fail()?;
        Ok(if id == "run-1" {
            vec![record()]
        } else {
            vec![]
        })
    }

    fn recent_records(&self, _filter: &RecordFilter) -> Result<Vec<Record>, ReadError> {
        self.fail()?;
        Ok(vec![record()])
    }

    fn export_records(
        &self,
        filter: &RecordFilter,
        sink: &mut dyn FnMut(&RowRef<'_>) -> bool,
    ) -> Result<(), ReadError> {
        self.fail()?;
        if let Ok(mut f) = self.exported_filters.lock() {
            f.push(filter.clone());
        }
        let r = record();
        let mut json = RecordJson::default();
        sink(&json.row(&r));
        Ok(())
    }

    fn stats(&self, days: u32) -> Result<Stats, ReadError> {
        self.fail()?;
        Ok(Stats {
            days,
            ..Stats::default()
        })
    }

    fn metrics(&self) -> String {
        "evald_jobs_invalid 1\n".into()
    }

    fn alerts(&self) -> evald_model::AlertsView {
        evald_model::AlertsView::default()
    }

    fn events(
        &self,
        _job: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<evald_model::Event>, ReadError> {
        self.fail()?;
        Ok(vec![])
    }
}

async fn call(
    model: Arc<Fake>,
    token: Option<&str>,
    req: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let app = router(
        model,
        WebOptions {
            token: token.map(String::from),
        },
    );
    let resp = app.oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

async fn get(model: Arc<Fake>, uri: &str) -> (StatusCode, String) {
    let (s, _, b) = call(model, None, Request::get(uri).body(Body::empty()).unwrap()).await;
    (s, b)
}

#[tokio::test]
async fn pages_render_the_model_and_escape_what_it_holds() {
    let m = Arc::new(Fake::default());
    for uri in ["/", "/jobs/daily", "/runs/run-1"] {
        let (status, body) = get(m.clone(), uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(!body.contains("<script>"), "{uri} shows raw markup");
        assert!(body.contains("daily"), "{uri} does not name the job");
    }
    let (_, index) = get(m.clone(), "/").await;
    assert!(
        index.contains("&lt;script&gt;"),
        "the escaped text is missing"
    );
    assert!(
        index.contains("broken.toml"),
        "the broken job file is not listed"
    );
    let (_, run_page) = get(m.clone(), "/runs/run-1").await;
    assert!(run_page.contains("answer &lt;script&gt;"), "{run_page}");
}

/// A benchmark's run page says in words that the client fell behind and which percentiles
/// rest on too few samples, and shows the interval of the one that does not.
#[tokio::test]
async fn a_benchmark_run_page_says_when_the_client_fell_behind_and_a_sample_is_too_small() {
    let m = Arc::new(Fake::default());
    let (status, page) = get(m, "/runs/run-2").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("fell behind: sends were late"), "{page}");
    assert!(
        page.contains("12.0 ms (11.0–13.0)"),
        "the median's interval: {page}"
    );
    assert!(
        page.contains("19.0 ms (too few)"),
        "the p99 without one: {page}"
    );
    assert!(page.contains(evald_model::fmt::TOO_FEW), "{page}");
}

#[tokio::test]
async fn unknown_jobs_runs_and_routes_are_404() {
    let m = Arc::new(Fake::default());
    for uri in [
        "/jobs/nope",
        "/runs/nope",
        "/nowhere",
        "/api/v1/runs/nope",
        "/api/v1/nowhere",
        "/badge/nope.svg",
    ] {
        let (status, body) = get(m.clone(), uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        // The API's 404s are JSON, whether the route or the thing is missing.
        // A badge stays an image, so an embedded one says what is wrong.
        if uri.starts_with("/badge/") {
            assert!(
                body.starts_with("<svg") && body.contains("no such job"),
                "{body}"
            );
        }
        if uri.starts_with("/api/") {
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}"));
            assert!(v["error"].is_string(), "{uri}: {body}");
        }
    }
}

#[tokio::test]
async fn only_get_and_head_are_allowed() {
    let m = Arc::new(Fake::default());
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let req = Request::builder()
            .method(method)
            .uri("/")
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = call(m.clone(), None, req).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(headers[header::ALLOW], "GET, HEAD");
    }
    let head = Request::head("/").body(Body::empty()).unwrap();
    assert_eq!(call(m, None, head).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_token_guards_every_route_but_healthz() {
    let m = Arc::new(Fake::default());
    let plain = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(
        call(m.clone(), Some("s3cret"), plain("/")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(m.clone(), Some("s3cret"), plain("/export.csv"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(m.clone(), Some("s3cret"), plain("/healthz")).await.0,
        StatusCode::OK
    );
    let wrong = Request::get("/")
        .header(header::AUTHORIZATION, "Bearer s3cre")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(m.clone(), Some("s3cret"), wrong).await.0,
        StatusCode::UNAUTHORIZED
    );
    let right = Request::get("/")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call(m.clone(), Some("s3cret"), right).await.0,
        StatusCode::OK
    );
    // ?token= sets the cookie that later requests carry, and a page sends the browser on to
    // itself without the token in its address; the API answers at once.
    let (status, headers, _) = call(
        m.clone(),
        Some("s3cret"),
        plain("/jobs/daily?token=s3cret&x=1"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/jobs/daily?x=1");
    let cookie = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("evald_token=s3cret;") && cookie.contains("HttpOnly"));
    let (status, headers, _) = call(
        m.clone(),
        Some("s3cret"),
        plain("/api/v1/jobs?token=s3cret"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.contains_key(header::SET_COOKIE));
    // Without it, the API's 401 is JSON.
    let (status, headers, body) = call(m.clone(), Some("s3cret"), plain("/api/v1/jobs")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string());
}

#[tokio::test]
async fn a_store_error_is_a_500_that_shows_no_internal_text() {
    let m = Arc::new(Fake {
        broken: true,
        ..Fake::default()
    });
    for uri in [
        "/",
        "/jobs/daily",
        "/runs/run-1",
        "/api/v1/runs",
        "/api/v1/stats",
    ] {
        let (status, body) = get(m.clone(), uri).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(
            !body.contains("secret internal detail") && !body.contains("/var/lib"),
            "{uri} leaks: {body}"
        );
    }
}

#[tokio::test]
async fn exports_pass_the_filter_and_write_the_columns() {
    let m = Arc::new(Fake::default());
    let (status, csv) = get(m.clone(), "/export.csv?job=daily&model=m1&limit=5").await;
    assert_eq!(status, StatusCode::OK);
    let header_row = csv.lines().next().unwrap();
    assert_eq!(header_row, evald_web::export::CSV_COLUMNS.join(","));
    assert_eq!(csv.lines().count(), 2, "one header and one row: {csv}");
    let f = m.exported_filters.lock().unwrap().last().cloned().unwrap();
    assert_eq!(f.job.as_deref(), Some("daily"));
    assert_eq!(f.model.as_deref(), Some("m1"));
    assert_eq!(f.limit, Some(5));
    let (_, jsonl) = get(m.clone(), "/export.jsonl").await;
    let row: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(row["response"], format!("answer {HOSTILE}"));
    assert_eq!(row["scores"][0]["note"], HOSTILE);
    let (status, body) = get(m.clone(), "/export.csv?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("since"), "{body}");
    // A parameter given twice: the API's JSON error (axum's own rejection is plain text).
    let (status, body) = get(m.clone(), "/api/v1/stats?days=1&days=2").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let err: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert!(err["error"].as_str().unwrap().contains("days"), "{body}");
    // A page says it on a page.
    let (status, body) = get(m, "/runs/r1?against=a&against=b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("<html") && body.contains("against"), "{body}");
}
