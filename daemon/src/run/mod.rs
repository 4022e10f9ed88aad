//! A run: one firing of a job. It expands the targets (`endpoint/*` asks the endpoint for its
//! models), adds generated cases, sends every case (× `repeat`) to every target with the job's
//! concurrency, scores each response, and stores one request record per request plus a run
//! summary. Benchmark jobs hand over to [`crate::run::bench`].
//!
//! Shutdown: `stop` ends the sending of new requests; `abort` (fired after the grace period)
//! cuts in-flight ones off, which are then stored as interrupted. A run cut off is marked
//! interrupted.

pub mod bench;
pub mod watch;

use std::sync::Arc;

use evald_model::{Metadata, Record, RunStatus, RunSummary, TargetSummary, Trigger};
use futures_util::StreamExt;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::Instrument;

use crate::config::{Config, Endpoint};
use crate::endpoint::{ChatRequest, Client, Outcome, kind};
use crate::job::{Case, Job, JobKind, TargetSpec};
use crate::metrics::Metrics;
use crate::score::Scorers;
use crate::score::plugins::{PluginError, Plugins};
use crate::store::{Store, Writer, new_run_id};

/// Everything a run needs from the daemon (or the CLI).
#[derive(Clone)]
pub struct RunContext {
    /// The daemon config (endpoints).
    pub config: Arc<Config>,
    /// Sends the requests.
    pub client: Client,
    /// Stores records and summaries.
    pub writer: Writer,
    /// Reads the baselines a watched run is tested against.
    pub store: Store,
    /// Loads scorer and generator plugins.
    pub plugins: Plugins,
    /// Counts requests and runs for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Cancelled when the daemon stops: no new requests are sent.
    pub stop: CancellationToken,
    /// Cancelled when the grace period ends: in-flight requests are cut off.
    pub abort: CancellationToken,
}

/// Progress of a run, for a progress line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Requests finished.
    pub done: u64,
    /// Requests planned (0 when unknown, e.g. a benchmark bounded by duration).
    pub total: u64,
    /// Requests that ended in an error.
    pub errors: u64,
}

/// Called after each request finishes.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// What a run leaves behind for whoever started it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RunReport {
    /// The stored summary.
    pub summary: RunSummary,
    /// The records of a compare run (benchmarks keep only their summary in memory).
    pub records: Vec<Record>,
    /// Cases in the order they were sent.
    pub cases: Vec<String>,
    /// Targets in job order.
    pub targets: Vec<String>,
}

/// One resolved target.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint.
    pub endpoint: Arc<Endpoint>,
    /// The model.
    pub model: String,
    /// Its price, when `[pricing]` knows it.
    pub price: Option<crate::config::Price>,
}

impl Target {
    /// `endpoint/model`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.endpoint.name, self.model)
    }
}

/// Resolves a job's targets; `endpoint/*` lists the endpoint's models now. Problems are
/// returned beside what did resolve.
pub async fn resolve_targets(
    config: &Config,
    client: &Client,
    specs: &[TargetSpec],
) -> (Vec<Target>, Vec<String>) {
    let mut out: Vec<Target> = Vec::new();
    let mut problems = Vec::new();
    for spec in specs {
        let (ep_name, models) = match spec {
            TargetSpec::Model { endpoint, model } => (endpoint, vec![model.clone()]),
            TargetSpec::AllModels { endpoint } => {
                let Some(ep) = config.endpoints.get(endpoint) else {
                    problems.push(format!("unknown endpoint `{endpoint}`"));
                    continue;
                };
                match client.list_models(ep).await {
                    Ok(m) if m.is_empty() => {
                        problems.push(format!("{endpoint}/*: the endpoint lists no models"));
                        continue;
                    }
                    Ok(m) => (endpoint, m),
                    Err(e) => {
                        problems.push(e);
                        continue;
                    }
                }
            }
        };
        let Some(ep) = config.endpoints.get(ep_name) else {
            problems.push(format!(
                "unknown endpoint `{ep_name}` (was evald.toml reloaded?)"
            ));
            continue;
        };
        for m in models {
            if !out
                .iter()
                .any(|t| t.endpoint.name == *ep_name && t.model == m)
            {
                out.push(Target {
                    price: config.pricing.lookup(ep_name, &m, &ep.provider),
                    endpoint: ep.clone(),
                    model: m,
                });
            }
        }
    }
    (out, problems)
}

/// Stores a skipped run: the job fired while its previous run was still going (or the daemon
/// was stopping); `why` says which.
pub async fn record_skipped(writer: &Writer, job: &Job, trigger: Trigger, why: &str) -> RunSummary {
    let now = chrono::Utc::now().timestamp_millis();
    let mut s = RunSummary::start(new_run_id(now), &job.name, job.kind, trigger, now);
    s.ended_ms = Some(now);
    s.status = RunStatus::Skipped;
    s.message = Some(format!("skipped: {why}"));
    writer.run(s.clone()).await;
    s
}

/// Runs a job now and stores it.
pub async fn run_job(
    ctx: &RunContext,
    job: &Job,
    trigger: Trigger,
    progress: Option<&ProgressFn>,
) -> RunReport {
    let started = chrono::Utc::now().timestamp_millis();
    let summary = RunSummary::start(new_run_id(started), &job.name, job.kind, trigger, started);
    // Every log line of the run, from the endpoint client, the scorers and the plugins too,
    // carries the job and the run id.
    let span = tracing::info_span!("run", job = %job.name, run_id = %summary.id);
    run_in_span(ctx, job, trigger, progress, summary)
        .instrument(span)
        .await
}

/// The body of [`run_job`], inside the run's span.
async fn run_in_span(
    ctx: &RunContext,
    job: &Job,
    trigger: Trigger,
    progress: Option<&ProgressFn>,
    mut summary: RunSummary,
) -> RunReport {
    ctx.writer.run(summary.clone()).await;
    tracing::info!(trigger = trigger_word(trigger), "run started");
    let write_errors = ctx.store.write_errors();

    let mut report = RunReport {
        summary: summary.clone(),
        records: vec![],
        cases: vec![],
        targets: vec![],
    };
    let finish = |mut summary: RunSummary, status: RunStatus, message: Option<String>| {
        summary.ended_ms = Some(chrono::Utc::now().timestamp_millis());
        summary.status = status;
        summary.message = message;
        summary
    };

    // Listing an endpoint's models can take its whole timeout: a shutdown cuts it short.
    let (targets, mut problems) = tokio::select! {
        r = resolve_targets(&ctx.config, &ctx.client, &job.targets) => r,
        _ = ctx.abort.cancelled() => (vec![], vec!["interrupted while listing models".to_string()]),
    };
    let cases = match generate_cases(ctx, job).await {
        Ok(c) => c,
        Err(e) => {
            summary = finish(summary, RunStatus::Failed, Some(e));
            ctx.writer.run(summary.clone()).await;
            ctx.metrics.run_ended(&summary);
            tracing::warn!(
                message = summary.message.as_deref().unwrap_or(""),
                "run failed"
            );
            report.summary = summary;
            return report;
        }
    };
    if targets.is_empty() {
        problems.insert(0, "no target to send to".into());
        summary = finish(summary, RunStatus::Failed, Some(problems.join("; ")));
        ctx.writer.run(summary.clone()).await;
        ctx.metrics.run_ended(&summary);
        tracing::warn!(
            message = summary.message.as_deref().unwrap_or(""),
            "run failed"
        );
        report.summary = summary;
        return report;
    }
    let (scorers, scorer_problems) = Scorers::for_job(job, &ctx.plugins, ctx.metrics.clone()).await;
    problems.extend(scorer_problems);
    summary.cases = cases.len() as u64;
    report.cases = cases.iter().map(|c| c.id.clone()).collect();
    report.targets = targets.iter().map(Target::name).collect();

    let records = match job.kind {
        JobKind::Compare => {
            let (mut records, scoring_ms) =
                compare(ctx, job, &summary.id, &targets, &cases, &scorers, progress).await;
            summarize_into(&mut summary, &records);
            summary.scoring_ms = (!scorers.is_empty()).then_some(scoring_ms);
            if !ctx.stop.is_cancelled() {
                watch::after_run(
                    ctx,
                    job,
                    &mut summary,
                    &mut records,
                    &targets,
                    &cases,
                    &scorers,
                )
                .await;
            }
            records
        }
        JobKind::Benchmark => {
            summary.targets =
                crate::run::bench::run(ctx, job, &summary, &targets, &cases, &scorers, progress)
                    .await;
            summary.requests = summary.targets.iter().map(|t| t.requests).sum();
            summary.errors = summary.targets.iter().map(|t| t.errors).sum();
            Vec::new()
        }
    };
    order_targets(&mut summary.targets, &report.targets);
    // A target that answered nothing is said in the run's note, not only in its counts: a
    // dead endpoint must not pass for a finished run at a glance.
    let dead: Vec<&str> = summary
        .targets
        .iter()
        .filter(|t| t.requests > 0 && t.errors == t.requests)
        .map(|t| t.target.as_str())
        .collect();
    if !dead.is_empty() && dead.len() < summary.targets.len() {
        problems.push(format!("every request to {} failed", dead.join(", ")));
    }

    // The run's records have all been tried by the store once this returns.
    ctx.writer.flush().await;
    let unstored = ctx.store.write_errors() > write_errors;
    let interrupted = ctx.stop.is_cancelled();
    let (status, msg) = if interrupted {
        problems.insert(0, "cut off: evald was stopping".into());
        (RunStatus::Interrupted, Some(problems.join("; ")))
    } else if unstored {
        let why =
            ctx.store.health().err().unwrap_or_else(|| {
                "the store failed to write for a while (see the log)".to_string()
            });
        problems.insert(0, format!("records of this run were not stored: {why}"));
        (RunStatus::Failed, Some(problems.join("; ")))
    } else if summary.requests > 0 && summary.errors == summary.requests {
        problems.insert(0, "every request failed".into());
        (RunStatus::Failed, Some(problems.join("; ")))
    } else {
        (
            RunStatus::Ok,
            (!problems.is_empty()).then(|| problems.join("; ")),
        )
    };
    summary = finish(summary, status, msg);
    ctx.writer.run(summary.clone()).await;
    // Whoever started the run reads it next: it must be committed when this returns.
    ctx.writer.flush().await;
    ctx.metrics.run_ended(&summary);
    tracing::info!(
        status = status.as_str(),
        requests = summary.requests,
        errors = summary.errors,
        "run ended"
    );
    report.summary = summary;
    report.records = records;
    report
}

fn trigger_word(t: Trigger) -> &'static str {
    match t {
        Trigger::Schedule => "schedule",
        Trigger::Manual => "manual",
    }
}

/// The job's cases plus what its generators produce now.
async fn generate_cases(ctx: &RunContext, job: &Job) -> Result<Vec<Case>, String> {
    let mut cases = job.cases.clone();
    for g in &job.generators {
        let name = crate::score::file_name(&g.path);
        let failed = |e: &PluginError| {
            ctx.metrics.plugin_error(&name, e.cause());
            format!("generator {name}: {e}")
        };
        let plugin = ctx
            .plugins
            .generator_async(&g.path)
            .await
            .map_err(|e| failed(&e))?;
        let more = plugin
            .generate(&g.config_json, g.limits)
            .await
            .map_err(|e| failed(&e))?;
        for c in more {
            if cases.iter().any(|x| x.id == c.id) {
                return Err(format!(
                    "generator {name}: case id `{}` is already taken",
                    c.id
                ));
            }
            if c.messages.is_empty() {
                return Err(format!("generator {name}: case `{}` has no messages", c.id));
            }
            cases.push(c);
        }
    }
    if cases.is_empty() {
        return Err("no cases: the job's generators produced none".into());
    }
    Ok(cases)
}

/// Builds the stored record of one request. `messages` are the case's, or none where the
/// writer is handed their payload made once (a benchmark: `RecordBatch::push`).
pub fn record_of(
    job: &Job,
    run_id: &str,
    target: &Target,
    case: &Case,
    messages: Vec<evald_model::Message>,
    out: Outcome,
    metadata_extra: impl FnOnce(&mut Metadata),
) -> Record {
    let mut r = Record::default();
    record_into(
        &mut r,
        job,
        run_id,
        target,
        case,
        messages,
        out,
        metadata_extra,
    );
    r
}

/// [`record_of`] into `r`, every field set anew except that a name (model, provider, job, run,
/// case, endpoint) already equal to what it is set to is kept: a benchmark lane makes each of
/// its records in the same one, so a request copies none of them (six allocations and frees).
#[allow(clippy::too_many_arguments)]
pub fn record_into(
    r: &mut Record,
    job: &Job,
    run_id: &str,
    target: &Target,
    case: &Case,
    messages: Vec<evald_model::Message>,
    out: Outcome,
    metadata_extra: impl FnOnce(&mut Metadata),
) {
    let mut metadata = out.metadata;
    metadata.ttfc_ms = metadata.ttfc_ms.map(round_us);
    // The gateway's own figure wins; else the price table on the reported usage; else unknown.
    let (cost_usd, source) = match (
        out.gateway_cost,
        &target.price,
        out.prompt_tokens,
        out.completion_tokens,
    ) {
        (Some(c), ..) => (Some(c), "gateway"),
        (None, Some(p), Some(prompt), Some(completion)) => (
            Some(p.cost(prompt, metadata.cached_tokens.unwrap_or(0), completion)),
            "price",
        ),
        _ => (None, ""),
    };
    metadata_extra(&mut metadata);
    // Prompts and answers reach the log only at debug (`RUST_LOG=evald=debug`), clipped.
    if tracing::enabled!(tracing::Level::DEBUG) {
        let prompt = case.messages.last().map_or("", |m| m.content.as_str());
        tracing::debug!(
            target = %target.name(),
            case = %case.id,
            latency_ms = ?out.latency_ms,
            error = out.error.as_deref().unwrap_or(""),
            prompt = %evald_model::fmt::clip(prompt, 200),
            response = %evald_model::fmt::clip(out.response.as_deref().unwrap_or(""), 200),
            "request"
        );
    }
    /// `to`, keeping `name`'s copy when it already holds it.
    fn keep(name: &mut String, to: &str) {
        if name != to {
            to.clone_into(name);
        }
    }
    // Every field by name: one added to `Record` does not build until it is set here, so a
    // reused record never carries a field over from the request before.
    let Record {
        id,
        timestamp_ms,
        model,
        provider,
        messages: r_messages,
        temperature,
        max_tokens,
        top_p,
        response,
        response_time_ms,
        prompt_tokens,
        completion_tokens,
        total_tokens,
        finish_reason,
        error,
        metadata: r_metadata,
        job: r_job,
        run_id: r_run_id,
        case_id,
        endpoint,
        ttft_ms,
        scores,
        served_model,
        system_fingerprint,
        cost_usd: r_cost_usd,
        cost_source,
    } = r;
    *id = 0;
    *timestamp_ms = out.started_ms;
    keep(model, &target.model);
    keep(provider, &target.endpoint.provider);
    *r_messages = messages;
    *temperature = job.params.temperature;
    *max_tokens = job.params.max_tokens;
    *top_p = job.params.top_p;
    *response = out.response;
    // Microsecond precision is all a timer over a network gives.
    *response_time_ms = out.latency_ms.map(round_us);
    *prompt_tokens = out.prompt_tokens;
    *completion_tokens = out.completion_tokens;
    *total_tokens = out.total_tokens;
    *finish_reason = out.finish_reason;
    *error = out.error;
    *r_metadata = metadata;
    keep(r_job, &job.name);
    keep(r_run_id, run_id);
    keep(case_id, &case.id);
    keep(endpoint, &target.endpoint.name);
    *ttft_ms = out.ttft_ms.map(round_us);
    scores.clear();
    *served_model = out.served_model;
    *system_fingerprint = out.system_fingerprint;
    *r_cost_usd = cost_usd;
    *cost_source = cost_usd.map(|_| source.to_string());
}

fn round_us(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Sends one request, cut off (and recorded as interrupted) if `abort` fires first.
pub async fn send(ctx: &RunContext, job: &Job, target: &Target, case: &Case) -> Outcome {
    let req = chat_request(job, target, case);
    let abort = std::pin::pin!(ctx.abort.cancelled());
    let request = std::pin::pin!(ctx.client.chat(&target.endpoint, req));
    interruptible(abort, job.stream, request).await
}

/// The request a job sends for `case` to `target`.
pub fn chat_request<'a>(job: &'a Job, target: &'a Target, case: &'a Case) -> ChatRequest<'a> {
    ChatRequest {
        model: &target.model,
        messages: &case.messages,
        params: &job.params,
        stream: job.stream,
        timeout: job.timeout_for(&target.endpoint),
        max_retries: match job.kind {
            JobKind::Compare => None,
            JobKind::Benchmark => Some(job.load.as_ref().map_or(0, |l| l.retries)),
        },
    }
}

/// Waits for `request`, or records it as interrupted when `abort` (the grace period's end)
/// comes first. A benchmark worker keeps one `abort` for all its requests.
///
/// The request comes pinned where the caller keeps it: a request's future runs to a few KiB,
/// and taken by value it was copied into this one's state and that into the caller's, ~18 KiB
/// of `memcpy` per benchmark request (~8 % of a lane's time at concurrency 64).
pub async fn interruptible<F: std::future::Future<Output = Outcome>>(
    abort: std::pin::Pin<&mut WaitForCancellationFuture<'_>>,
    stream: bool,
    request: std::pin::Pin<&mut F>,
) -> Outcome {
    let t0 = std::time::Instant::now();
    tokio::select! {
        // The request first: an answer that is in is kept, and the abort signal (a lock in
        // the token's tree each time it is looked at) is looked at only while it is not.
        biased;
        out = request => out,
        _ = abort => {
            let elapsed = t0.elapsed();
            let started_ms = chrono::Utc::now().timestamp_millis() - elapsed.as_millis() as i64;
            let mut out = Outcome { started_ms, latency_ms: Some(crate::endpoint::ms(elapsed)), ..Outcome::default() };
            out.metadata.error_kind = Some(kind::INTERRUPTED.into());
            out.metadata.stream = stream;
            out.error = Some("interrupted: evald stopped before the response came".into());
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn compare_one(
    ctx: &RunContext,
    job: &Job,
    run_id: &str,
    scorers: &Scorers,
    scoring_us: &std::sync::atomic::AtomicU64,
    rep: u32,
    case: &Case,
    target: &Target,
    confirm: bool,
) -> Option<Record> {
    // After a stop, requests not yet sent are not sent.
    if ctx.stop.is_cancelled() {
        return None;
    }
    let out = send(ctx, job, target, case).await;
    let mut r = record_of(job, run_id, target, case, case.messages.clone(), out, |m| {
        if job.repeat > 1 {
            m.repeat = Some(rep);
        }
        m.confirm = confirm;
        m.case_hash = Some(case.fingerprint(&job.scorers));
    });
    let t = std::time::Instant::now();
    r.scores = scorers.score(case, &r).await;
    scoring_us.fetch_add(
        t.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    ctx.metrics.observe(&r);
    ctx.writer.record(r.clone()).await;
    Some(r)
}

async fn compare(
    ctx: &RunContext,
    job: &Job,
    run_id: &str,
    targets: &[Target],
    cases: &[Case],
    scorers: &Scorers,
    progress: Option<&ProgressFn>,
) -> (Vec<Record>, f64) {
    let scoring_us = std::sync::atomic::AtomicU64::new(0);
    let mut work = Vec::new();
    for rep in 0..job.repeat {
        for case in cases {
            for t in targets {
                work.push(compare_one(
                    ctx,
                    job,
                    run_id,
                    scorers,
                    &scoring_us,
                    rep,
                    case,
                    t,
                    false,
                ));
            }
        }
    }
    let total = work.len() as u64;
    let mut p = Progress {
        total,
        ..Progress::default()
    };
    let mut records = Vec::with_capacity(work.len());
    let mut stream = futures_util::stream::iter(work).buffer_unordered(job.concurrency.max(1));
    while let Some(r) = stream.next().await {
        let Some(r) = r else { continue };
        p.done += 1;
        if r.error.is_some() {
            p.errors += 1;
        }
        if let Some(f) = progress {
            f(p);
        }
        records.push(r);
    }
    drop(stream);
    (records, scoring_us.into_inner() as f64 / 1000.0)
}

/// Recomputes a summary's counts and per-target figures from its records.
pub fn summarize_into(summary: &mut RunSummary, records: &[Record]) {
    let mut tally = evald_model::Tally::default();
    for r in records {
        tally.add(r);
    }
    tally.finish(summary);
}

/// Puts target summaries in job order.
fn order_targets(targets: &mut [TargetSummary], order: &[String]) {
    targets.sort_by_key(|t| {
        order
            .iter()
            .position(|o| *o == t.target)
            .unwrap_or(usize::MAX)
    });
}
