//! evald's read-only web face: the status page, the JSON API, the exports, `/metrics` and
//! `/healthz`, served by axum over the [`read::ReadModel`] trait the daemon implements.
//!
//! - [`read`]: the read-only trait; the data it returns is `evald_model`'s.
//! - [`export`]: filters and the CSV / JSON / JSONL writers (shared with `evald export`).
//! - [`pages`]: the HTML pages (askama templates, escaped by default) and their SVG charts.
//!
//! Read-only by construction: the trait has no write method, and a guard answers anything but
//! GET and HEAD with 405. With a token configured, every route but `/healthz` asks for it (a
//! bearer header, or a cookie set from `?token=`), compared in constant time.

mod alerts;
mod error;
pub mod export;
pub mod pages;
pub mod read;
mod run_page;
mod svg;
mod watch;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::error::{Query, WebError};
use crate::export::{ExportWriter, Format, parse_filter};
use crate::read::{ReadError, ReadModel};

/// Options of the web face.
#[derive(Clone, Default)]
pub struct WebOptions {
    /// When set, every route but `/healthz` needs this token.
    pub token: Option<String>,
}

#[derive(Clone)]
struct AppState {
    model: Arc<dyn ReadModel>,
    token: Option<Arc<str>>,
}

/// The router: every route of DESIGN.md "HTTP".
pub fn router(model: Arc<dyn ReadModel>, opts: WebOptions) -> Router {
    let state = AppState {
        model,
        token: opts.token.map(Arc::from),
    };
    Router::new()
        .route("/", get(index))
        .route("/jobs/{job}", get(job_page))
        .route("/runs/{id}", get(run_page))
        .route("/export.csv", get(export_csv))
        .route("/export.json", get(export_json))
        .route("/export.jsonl", get(export_jsonl))
        .route("/api/v1/stats", get(api_stats))
        .route("/api/v1/jobs", get(api_jobs))
        .route("/api/v1/runs", get(api_runs))
        .route("/api/v1/runs/{id}", get(api_run))
        .route("/api/v1/events", get(api_events))
        .route("/api/v1/alerts", get(api_alerts))
        .route("/alerts", get(alerts_page))
        .route("/badge/{file}", get(badge))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/style.css", get(style))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// 200 `ok` while the daemon serves and can store; 503 with the reason when it cannot.
async fn healthz(State(st): State<AppState>) -> Response {
    match st.model.health() {
        Ok(()) => "ok\n".into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {why}\n"),
        )
            .into_response(),
    }
}

/// GET and HEAD only; the token, when one is set.
async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = page_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed",
            "evald's page is read-only: GET and HEAD only.",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(token) = st.token.clone() else {
        return next.run(req).await;
    };
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    let presented = bearer(req.headers())
        .or_else(|| cookie(req.headers(), "evald_token"))
        .or(from_query.clone());
    let ok = presented.is_some_and(|p| {
        use subtle::ConstantTimeEq;
        p.as_bytes().ct_eq(token.as_bytes()).into()
    });
    // Machines get their 401 in their own terms: JSON from the API, text from /metrics.
    let path = req.uri().path().to_string();
    let for_machines = path.starts_with("/api/") || path == "/metrics";
    if !ok {
        const WHY: &str = "This evald asks for a token: send `Authorization: Bearer …`, or open the page once with ?token=….";
        let mut r = if path.starts_with("/api/") {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({ "error": WHY })),
            )
                .into_response()
        } else if for_machines {
            (StatusCode::UNAUTHORIZED, WHY).into_response()
        } else {
            page_error(StatusCode::UNAUTHORIZED, "Token needed", WHY)
        };
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"evald\""),
        );
        return r;
    }
    let cookie = from_query.as_ref().and_then(|_| {
        HeaderValue::from_str(&format!(
            "evald_token={token}; Path=/; HttpOnly; SameSite=Strict"
        ))
        .ok()
    });
    // A page opened with ?token= is sent on to itself without it, so the token does not stay
    // in the address bar, the history or a shared link; the cookie carries it from then on.
    if let Some(c) = &cookie
        && !for_machines
        && !path.starts_with("/export")
    {
        let rest: Vec<&str> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("token="))
            .collect();
        let to = if rest.is_empty() {
            path
        } else {
            format!("{path}?{}", rest.join("&"))
        };
        let mut r = axum::response::Redirect::to(&to).into_response();
        r.headers_mut().insert(header::SET_COOKIE, c.clone());
        return r;
    }
    let mut resp = next.run(req).await;
    if let Some(c) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|s| s.trim().to_string())
}

fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// Runs a blocking read off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ReadError> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(WebError::from(e).into_response()),
        Err(e) => Err(WebError::from(e).into_response()),
    }
}

fn page_error(status: StatusCode, title: &str, detail: &str) -> Response {
    error::page(status, title, detail)
}

fn bad_request(msg: String) -> Response {
    WebError::BadRequest(msg).into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    // The API answers in JSON even for a route it lacks, as its other 404s do.
    if uri.path().starts_with("/api/") {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": format!("no API route {}", uri.path()) })),
        )
            .into_response();
    }
    WebError::NotFound("Not found", "No such page.").into_response()
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        pages::STYLE,
    )
        .into_response()
}

async fn index(State(st): State<AppState>) -> Response {
    let m = st.model.clone();
    match blocking(move || pages::index(m.as_ref())).await {
        Ok(html) => Html(html).into_response(),
        Err(r) => r,
    }
}

async fn job_page(State(st): State<AppState>, Path(job): Path<String>) -> Response {
    let m = st.model.clone();
    match blocking(move || pages::job(m.as_ref(), &job)).await {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => WebError::NotFound("No such job", "No job by that name.").into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct RunQuery {
    against: Option<String>,
}

async fn run_page(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Response {
    let m = st.model.clone();
    let against = q.against.filter(|a| !a.trim().is_empty());
    match blocking(move || run_page::run(m.as_ref(), &id, against.as_deref())).await {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => WebError::NotFound("No such run", "No run by that id.").into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize, Default)]
struct ExportQuery {
    since: Option<String>,
    until: Option<String>,
    job: Option<String>,
    model: Option<String>,
    run: Option<String>,
    limit: Option<String>,
}

async fn export_csv(st: State<AppState>, q: Query<ExportQuery>) -> Response {
    export(st, q, Format::Csv).await
}

async fn export_json(st: State<AppState>, q: Query<ExportQuery>) -> Response {
    export(st, q, Format::Json).await
}

async fn export_jsonl(st: State<AppState>, q: Query<ExportQuery>) -> Response {
    export(st, q, Format::Jsonl).await
}

/// Streams an export from one read snapshot: a blocking reader fills chunks of ~64 KiB into a
/// small channel, so memory stays flat and a client that goes away stops the reader.
async fn export(
    State(st): State<AppState>,
    Query(q): Query<ExportQuery>,
    format: Format,
) -> Response {
    let filter = match parse_filter(
        q.since.as_deref(),
        q.until.as_deref(),
        q.job.as_deref(),
        q.model.as_deref(),
        q.run.as_deref(),
        q.limit.as_deref(),
    ) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let model = st.model.clone();
    tokio::task::spawn_blocking(move || {
        let err_tx = tx.clone();
        let sink = ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx,
        };
        let mut w = match ExportWriter::new(format, sink) {
            Ok(w) => w,
            Err(e) => {
                let _ = err_tx.blocking_send(Err(e));
                return;
            }
        };
        let res = model.export_records(&filter, &mut |r| w.write_row(r).is_ok());
        if let Err(e) = res {
            tracing::warn!(error = %e, "export failed part-way");
            let _ = err_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            return;
        }
        if let Ok(mut sink) = w.finish() {
            let _ = std::io::Write::flush(&mut sink);
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let ext = match format {
        Format::Csv => "csv",
        Format::Json => "json",
        Format::Jsonl => "jsonl",
    };
    (
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"evald-export.{ext}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Records of one run that `/api/v1/runs/{id}` and the run page show at most.
pub const MAX_RUN_RECORDS: usize = 10_000;

/// Bytes per chunk of a streamed export.
const CHUNK: usize = 64 * 1024;

/// Collects export output and hands it to the response body in chunks; a client that went away
/// makes writes fail, which stops the reader.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

#[derive(Deserialize)]
struct StatsQuery {
    days: Option<String>,
}

/// Parses `days`: a whole number from 1 to 3660 (default 7).
pub fn parse_days(v: Option<&str>) -> Result<u32, String> {
    match v.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(7),
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=3660).contains(&n) => Ok(n),
            _ => Err(format!("days: `{s}` is not a whole number from 1 to 3660")),
        },
    }
}

async fn api_stats(State(st): State<AppState>, Query(q): Query<StatsQuery>) -> Response {
    let days = match parse_days(q.days.as_deref()) {
        Ok(d) => d,
        Err(e) => return bad_request(e),
    };
    let m = st.model.clone();
    match blocking(move || m.stats(days)).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(r) => r,
    }
}

async fn api_jobs(State(st): State<AppState>) -> Response {
    let m = st.model.clone();
    match blocking(move || pages::jobs_json(m.as_ref())).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct RunsQuery {
    job: Option<String>,
    limit: Option<String>,
}

async fn api_runs(State(st): State<AppState>, Query(q): Query<RunsQuery>) -> Response {
    let limit = match q.limit.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => 50,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                return bad_request(format!(
                    "limit: `{s}` is not a whole number from 1 to 10000"
                ));
            }
        },
    };
    let job = q.job.filter(|j| !j.is_empty());
    let m = st.model.clone();
    match blocking(move || m.runs(job.as_deref(), limit)).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn api_run(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let m = st.model.clone();
    let res = blocking(move || {
        let Some(run) = m.run(&id)? else {
            return Ok(None);
        };
        // A benchmark's records can number millions: they leave through the export that
        // `records_url` names, and the list is marked cut. A compare run's come along, up to a
        // cap that says when it was reached.
        let bench = run.kind == evald_model::JobKind::Benchmark;
        let records = if bench {
            vec![]
        } else {
            m.run_records(&id, MAX_RUN_RECORDS + 1)?
        };
        let truncated = records.len() > MAX_RUN_RECORDS || (bench && run.requests > 0);
        let records = &records[..records.len().min(MAX_RUN_RECORDS)];
        // Run ids are hex: nothing to escape.
        let records_url = format!("/export.jsonl?run={id}");
        Ok(Some(serde_json::json!({
            "run": run,
            "records": records,
            "records_truncated": truncated,
            "records_url": records_url,
        })))
    })
    .await;
    match res {
        Ok(Some(v)) => axum::Json(v).into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({ "error": "no run by that id" })),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn api_alerts(State(st): State<AppState>) -> Response {
    let m = st.model.clone();
    match blocking(move || Ok::<_, ReadError>(m.alerts())).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn alerts_page(State(st): State<AppState>) -> Response {
    let m = st.model.clone();
    match blocking(move || alerts::page(m.as_ref())).await {
        Ok(html) => Html(html).into_response(),
        Err(r) => r,
    }
}

/// `/badge/{job}.svg`.
async fn badge(State(st): State<AppState>, Path(file): Path<String>) -> Response {
    let Some(job) = file.strip_suffix(".svg").map(String::from) else {
        return WebError::NotFound("No such badge", "Badges are at /badge/JOB.svg.")
            .into_response();
    };
    let m = st.model.clone();
    let svg = |status: StatusCode, svg: String| {
        (
            status,
            [
                (axum::http::header::CONTENT_TYPE, "image/svg+xml"),
                (axum::http::header::CACHE_CONTROL, "no-cache, max-age=0"),
            ],
            svg,
        )
            .into_response()
    };
    match blocking(move || alerts::badge(m.as_ref(), &job)).await {
        Ok(Some(b)) => svg(StatusCode::OK, b),
        // Still an image, so an embedded badge of a renamed job says so instead of breaking.
        Ok(None) => svg(
            StatusCode::NOT_FOUND,
            alerts::badge_svg("no such job", "#6b7075"),
        ),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    job: Option<String>,
}

/// `/api/v1/events?job=`: newest first, at most 1,000.
async fn api_events(State(st): State<AppState>, Query(q): Query<EventsQuery>) -> Response {
    let job = q.job.filter(|j| !j.is_empty());
    let m = st.model.clone();
    match blocking(move || m.events(job.as_deref(), 1000)).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(st): State<AppState>) -> Response {
    let m = st.model.clone();
    match blocking(move || Ok(m.metrics())).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(r) => r,
    }
}
