//! The commands beside `serve`: `check`, `run`, `compare`, `models`, `export`, `stats`,
//! `prune`. Each works whether or not a daemon holds the store: it opens the store itself, or,
//! when a running `evald serve` holds it, asks the daemon over the control socket.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use evald_web::export::Format;
use evald_web::model::{Percentiles, RecordFilter, RunStatus, Stats, StatsGroup, Trigger};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Secrets};
use crate::control::{Reply, Request};
use crate::endpoint::Client;
use crate::job::{self, Job};
use crate::metrics::Metrics;
use crate::plugins::Plugins;
use crate::runner::{Progress, RunContext, RunReport};
use crate::store::{OpenError, Store};

/// A command's failure, printed as `evald: …` with exit status 1.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// Removes a folder (if it exists) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads the config or explains every problem.
pub fn load_config(explicit: Option<&Path>) -> Result<Config, Failure> {
    let path = config_path(explicit)?;
    // Commands run from an operator's shell: the service's credentials may not be at hand.
    Config::load_with(&path, Secrets::Optional).map_err(|d| {
        Failure(format!(
            "{}\n{} has problems",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            path.display()
        ))
    })
}

fn config_path(explicit: Option<&Path>) -> Result<PathBuf, Failure> {
    crate::config::locate(explicit).map_err(Failure)
}

/// Where the command's store access goes.
enum Backend {
    /// This process opened the store.
    Local(Store),
    /// A daemon holds it; talk over its socket.
    Daemon(PathBuf),
}

fn backend(config: &Config) -> Result<Backend, Failure> {
    match Store::open(&config.db_path()) {
        Ok(s) => {
            // No daemon holds the file, so a run still marked as going was cut off.
            s.mark_interrupted()?;
            Ok(Backend::Local(s))
        }
        Err(OpenError::InUse(p)) => {
            let sock = config.socket_path();
            if sock.exists() {
                Ok(Backend::Daemon(sock))
            } else {
                Err(Failure(format!(
                    "{} is held by another evald process, and no daemon answers on {}",
                    p.display(),
                    sock.display()
                )))
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Sends a request to the daemon; calls `on_progress` for progress lines and returns the result
/// (for an export, the stream positioned after the first line).
async fn ask(
    sock: &Path,
    req: &Request,
    mut on_progress: impl FnMut(Progress),
) -> Result<(serde_json::Value, BufReader<tokio::net::UnixStream>), Failure> {
    let mut stream = tokio::net::UnixStream::connect(sock).await.map_err(|e| {
        Failure(format!(
            "cannot reach the daemon on {}: {e}",
            sock.display()
        ))
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut r = BufReader::new(stream);
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).await? == 0 {
            return Err(Failure(
                "the daemon closed the connection without an answer".into(),
            ));
        }
        match serde_json::from_str::<Reply>(&l)? {
            Reply::Progress {
                done,
                total,
                errors,
            } => on_progress(Progress {
                done,
                total,
                errors,
            }),
            Reply::Ok(v) => return Ok((v, r)),
            Reply::Error(e) => return Err(Failure(e)),
        }
    }
}

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
    if problems == 0 {
        eprintln!("ok: {} and {} job(s) are valid", path.display(), jobs.len());
    } else {
        eprintln!("{problems} problem(s) in {bad_files} file(s)");
    }
    Ok(problems == 0)
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

fn progress_bar(benchmark: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    let tpl = if benchmark {
        "{spinner} {pos}/{len} requests  {per_sec}  {msg}  {elapsed_precise}"
    } else {
        "{spinner} [{bar:30}] {pos}/{len} requests  {msg}  {elapsed}"
    };
    if let Ok(s) = ProgressStyle::with_template(tpl) {
        pb.set_style(s.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

fn update(pb: &ProgressBar, p: Progress) {
    if p.total > 0 {
        pb.set_length(p.total);
    } else {
        pb.set_length(p.done);
    }
    pb.set_position(p.done);
    // Only when the count changes: a message is a fresh String.
    if p.errors > 0 && pb.message() != format!("{} errors", p.errors) {
        pb.set_message(format!("{} errors", p.errors));
    }
}

/// Runs a job through this process (no daemon): its own writer, client and plugins; Ctrl-C
/// cuts the run off (stored as interrupted).
async fn run_local(
    store: Store,
    config: Config,
    job: &Job,
    pb: &ProgressBar,
) -> Result<RunReport, Failure> {
    let writer = store.writer();
    let ctx = RunContext {
        client: Client::new(config.secrets()),
        plugins: Plugins::new(&config.data_dir.join("plugin-cache"))?,
        config: Arc::new(config),
        writer: writer.clone(),
        metrics: Arc::new(Metrics::new()),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
    };
    let (stop, abort) = (ctx.stop.clone(), ctx.abort.clone());
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nevald: interrupted; storing what finished");
            stop.cancel();
            abort.cancel();
        }
    });
    let pb2 = pb.clone();
    let progress = move |p: Progress| update(&pb2, p);
    let report = crate::runner::run_job(&ctx, job, Trigger::Manual, Some(&progress)).await;
    ctrl_c.abort();
    writer.close().await;
    Ok(report)
}

/// `evald run JOB`.
pub async fn run(explicit: Option<&Path>, name: &str, json: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let file = config.jobs_dir.join(format!("{name}.toml"));
    if !file.is_file() {
        let known: Vec<String> = job::load_dir(&config).jobs.into_keys().collect();
        return Err(Failure(format!(
            "no job file {} (jobs: {})",
            file.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    let job = Job::load(&file, &config).map_err(|d| {
        Failure(
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let pb = progress_bar(job.kind == job::JobKind::Benchmark);
    let report = match backend(&config)? {
        Backend::Local(store) => run_local(store, config, &job, &pb).await?,
        Backend::Daemon(sock) => {
            let pb2 = pb.clone();
            let (v, _) = ask(
                &sock,
                &Request::Run {
                    job: name.to_string(),
                },
                |p| update(&pb2, p),
            )
            .await?;
            serde_json::from_value(v)?
        }
    };
    pb.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(report.summary.status != RunStatus::Failed)
}

#[derive(Serialize)]
struct AdhocJob<'a> {
    description: &'a str,
    targets: &'a [String],
    timeout: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<AdhocParams>,
    cases: Vec<AdhocCase<'a>>,
}

#[derive(Serialize)]
struct AdhocParams {
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
}

#[derive(Serialize)]
struct AdhocCase<'a> {
    id: &'a str,
    messages: Vec<evald_web::model::Message>,
}

/// The name ad hoc compare runs are stored under.
pub const ADHOC_JOB: &str = "compare";

/// Validates an ad hoc job given as TOML (what `evald compare` builds).
pub fn adhoc_job(config: &Config, toml_text: &str) -> Result<Job, String> {
    Job::parse(Path::new("compare.toml"), toml_text, config).map_err(|d| {
        d.iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// Options of `evald compare`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CompareArgs {
    /// A target, ENDPOINT/MODEL; repeat for more.
    #[arg(long = "model", short = 'm', required = true)]
    pub models: Vec<String>,
    /// A system message sent first.
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature (0–2).
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Most tokens to generate.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The prompt.
    pub prompt: String,
}

/// `evald compare --model A --model B "prompt"`.
pub async fn compare(explicit: Option<&Path>, args: CompareArgs) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    if args.models.is_empty() {
        return Err(Failure(
            "name at least one target with --model ENDPOINT/MODEL".into(),
        ));
    }
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(evald_web::model::Message {
            role: "system".into(),
            content: s.clone(),
        });
    }
    messages.push(evald_web::model::Message {
        role: "user".into(),
        content: args.prompt.clone(),
    });
    let doc = AdhocJob {
        description: "ad hoc comparison (evald compare)",
        targets: &args.models,
        timeout: "120s",
        params: (args.temperature.is_some() || args.max_tokens.is_some()).then_some(AdhocParams {
            temperature: args.temperature,
            max_tokens: args.max_tokens,
        }),
        cases: vec![AdhocCase {
            id: "prompt",
            messages,
        }],
    };
    let text = toml::to_string(&doc)?;
    let job = adhoc_job(&config, &text).map_err(Failure)?;
    let pb = progress_bar(false);
    let report = match backend(&config)? {
        Backend::Local(store) => run_local(store, config, &job, &pb).await?,
        Backend::Daemon(sock) => {
            let (v, _) = ask(&sock, &Request::Adhoc { toml: text }, |_| {}).await?;
            serde_json::from_value(v)?
        }
    };
    pb.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(report.summary.status != RunStatus::Failed);
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic);
    t.set_header(report.targets.iter().map(Cell::new));
    t.add_row(report.targets.iter().map(|target| {
        let r = report.records.iter().find(|r| r.target() == *target);
        Cell::new(match r {
            None => "—".to_string(),
            Some(r) => match &r.error {
                Some(e) => format!("ERROR {e}"),
                None => r.response.clone().unwrap_or_default(),
            },
        })
    }));
    t.add_row(report.targets.iter().map(|target| {
        let r = report.records.iter().find(|r| r.target() == *target);
        Cell::new(r.map(timing).unwrap_or_default())
    }));
    println!("{t}");
    println!("stored as run {} (job `{ADHOC_JOB}`)", report.summary.id);
    Ok(report.summary.status != RunStatus::Failed)
}

fn timing(r: &evald_web::model::Record) -> String {
    let mut s = fmt_ms(r.response_time_ms);
    if let Some(t) = r.ttft_ms {
        s.push_str(&format!(" (first token {})", fmt_ms(Some(t))));
    }
    if let (Some(p), Some(c)) = (r.prompt_tokens, r.completion_tokens) {
        s.push_str(&format!(" · {p}→{c} tokens"));
    }
    if r.metadata.attempts > 1 {
        s.push_str(&format!(" · {} attempts", r.metadata.attempts));
    }
    s
}

/// A retention age in the unit it was most likely written in (`30d`, `12h`).
fn fmt_age(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else {
        humantime::format_duration(d).to_string()
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(ms) if ms >= 10_000.0 => format!("{:.1} s", ms / 1000.0),
        Some(ms) => format!("{ms:.0} ms"),
    }
}

fn clip(s: &str, n: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n).collect::<String>())
    }
}

/// Prints a run: the cases × targets table (compare) or percentile tables (benchmark), then
/// per-target figures.
pub fn print_report(report: &RunReport) {
    let s = &report.summary;
    let secs = s
        .ended_ms
        .unwrap_or(s.started_ms)
        .saturating_sub(s.started_ms) as f64
        / 1000.0;
    println!(
        "run {}  job {}  {}  {} requests, {} errors, {:.1} s",
        s.id,
        s.job,
        s.status.as_str(),
        s.requests,
        s.errors,
        secs
    );
    if let Some(m) = &s.message {
        println!("note: {m}");
    }
    if let Some(ms) = s.scoring_ms
        && secs > 0.0
    {
        println!(
            "scoring: {ms:.1} ms in scorers, {:.2}% of the run's {:.1} s",
            ms / (secs * 10.0),
            secs
        );
    }
    if s.kind == "compare" && !report.records.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        let mut header = vec![Cell::new("case")];
        header.extend(report.targets.iter().map(Cell::new));
        t.set_header(header);
        for case in &report.cases {
            let mut row = vec![Cell::new(case)];
            for target in &report.targets {
                let rs: Vec<_> = report
                    .records
                    .iter()
                    .filter(|r| &r.case_id == case && r.target() == *target)
                    .collect();
                let text = match rs.first() {
                    None => "—".to_string(),
                    Some(r) => {
                        let mut lines = vec![timing(r)];
                        match &r.error {
                            Some(e) => lines.push(format!("ERROR {}", clip(e, 160))),
                            None => lines.push(clip(r.response.as_deref().unwrap_or(""), 80)),
                        }
                        for sc in &r.scores {
                            lines.push(match (&sc.error, sc.value, sc.passed) {
                                (Some(e), _, _) => format!("{} error: {}", sc.name, clip(e, 80)),
                                (None, Some(v), Some(p)) => {
                                    format!("{} {} {v:.2}", sc.name, if p { "✓" } else { "✗" })
                                }
                                _ => format!("{} —", sc.name),
                            });
                        }
                        if rs.len() > 1 {
                            lines.push(format!("×{} repeats", rs.len()));
                        }
                        lines.join("\n")
                    }
                };
                row.push(Cell::new(text));
            }
            t.add_row(row);
        }
        println!("{t}");
    }
    for target in &s.targets {
        if let Some(b) = &target.bench {
            println!(
                "\n{}  {:.1} requests/s, {:.1} output tokens/s, {:.1} good requests/s over {:.1} s",
                target.target,
                b.request_throughput,
                b.output_tokens_per_s,
                b.good_throughput,
                b.duration_s
            );
            if let (Some(want), Some(got)) = (b.target_rate, b.achieved_rate) {
                println!(
                    "  open loop: asked {want:.1}/s, sent {got:.1}/s, mean send lag {}",
                    fmt_ms(b.mean_send_lag_ms)
                );
            }
            if !b.errors_by_kind.is_empty() {
                let e: Vec<String> = b
                    .errors_by_kind
                    .iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                println!("  errors: {}", e.join(", "));
            }
            let mut t = Table::new();
            t.load_preset(UTF8_FULL_CONDENSED);
            t.set_header(["", "n", "p50", "p90", "p95", "p99", "max", "mean"]);
            let row = |name: &str, p: &Percentiles| {
                let f = |v: f64| format!("{v:.1} ms");
                vec![
                    name.to_string(),
                    p.count.to_string(),
                    f(p.p50),
                    f(p.p90),
                    f(p.p95),
                    f(p.p99),
                    f(p.max),
                    f(p.mean),
                ]
            };
            t.add_row(row("ttft (first token)", &b.ttft_ms));
            t.add_row(row("inter-token", &b.itl_ms));
            t.add_row(row("per output token", &b.tpot_ms));
            t.add_row(row("end-to-end", &b.e2e_ms));
            println!("{t}");
        }
    }
    if !s.targets.is_empty() {
        let scorers: Vec<String> = {
            let mut v: Vec<String> = s
                .targets
                .iter()
                .flat_map(|t| t.scorer_means.keys().cloned())
                .collect();
            v.sort();
            v.dedup();
            v
        };
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic);
        let mut header: Vec<String> = [
            "target",
            "requests",
            "errors",
            "mean latency",
            "score",
            "pass rate",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        header.extend(scorers.iter().cloned());
        t.set_header(header);
        for ts in &s.targets {
            let mut row = vec![
                ts.target.clone(),
                ts.requests.to_string(),
                ts.errors.to_string(),
                fmt_ms(ts.mean_latency_ms),
                ts.mean_score
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "—".into()),
                ts.pass_rate
                    .map(|v| format!("{:.0}%", v * 100.0))
                    .unwrap_or_else(|| "—".into()),
            ];
            row.extend(scorers.iter().map(|k| {
                ts.scorer_means
                    .get(k)
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "—".into())
            }));
            t.add_row(row);
        }
        println!("{t}");
    }
}

/// `evald models ENDPOINT`.
pub async fn models(explicit: Option<&Path>, endpoint: &str) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let Some(ep) = config.endpoints.get(endpoint) else {
        let known: Vec<&str> = config.endpoints.keys().map(String::as_str).collect();
        return Err(Failure(format!(
            "no endpoint `{endpoint}` in {} (endpoints: {})",
            config.path.display(),
            known.join(", ")
        )));
    };
    let client = Client::new(config.secrets());
    let list = client.list_models(ep).await.map_err(Failure)?;
    for m in list {
        println!("{m}");
    }
    Ok(true)
}

/// Options of `evald export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    /// csv, json or jsonl.
    #[arg(long, default_value = "csv")]
    pub format: String,
    /// From this time on (RFC 3339 or YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time (RFC 3339, or YYYY-MM-DD for the whole day).
    #[arg(long)]
    pub until: Option<String>,
    /// Only this job.
    #[arg(long)]
    pub job: Option<String>,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this run (its id, as `evald run` and the page show it).
    #[arg(long)]
    pub run: Option<String>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<String>,
    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// `evald export`.
pub async fn export(explicit: Option<&Path>, a: ExportArgs) -> Result<bool, Failure> {
    let format = Format::parse(&a.format).map_err(Failure)?;
    let filter: RecordFilter = evald_web::export::parse_filter(
        a.since.as_deref(),
        a.until.as_deref(),
        a.job.as_deref(),
        a.model.as_deref(),
        a.run.as_deref(),
        a.limit.as_deref(),
    )
    .map_err(Failure)?;
    let config = load_config(explicit)?;
    let mut out: Box<dyn Write + Send> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| Failure(format!("cannot write {}: {e}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let rows = match backend(&config)? {
        Backend::Local(store) => {
            let res = tokio::task::spawn_blocking(move || -> Result<u64, Failure> {
                let (rows, mut out) = store.export_to(&filter, format, out)?;
                out.flush()?;
                Ok(rows)
            })
            .await?;
            (res?, "records")
        }
        Backend::Daemon(sock) => {
            let req = Request::Export {
                format: a.format.clone(),
                filter: filter.clone(),
            };
            let (_, mut rest) = ask(&sock, &req, |_| {}).await?;
            // Frames (see control::Frames), then a zero length and the daemon's verdict.
            let mut buf = Vec::new();
            loop {
                let len = rest
                    .read_u32_le()
                    .await
                    .map_err(|e| Failure(format!("the export from the daemon broke off: {e}")))?;
                if len == 0 {
                    break;
                }
                buf.resize(len as usize, 0);
                rest.read_exact(&mut buf)
                    .await
                    .map_err(|e| Failure(format!("the export from the daemon broke off: {e}")))?;
                out.write_all(&buf)?;
            }
            out.flush()?;
            let mut status = String::new();
            rest.read_line(&mut status).await?;
            match serde_json::from_str::<Reply>(&status)? {
                Reply::Ok(rows) => (rows.as_u64().unwrap_or(0), "records"),
                Reply::Error(e) => return Err(Failure(e)),
                Reply::Progress { .. } => {
                    return Err(Failure("unexpected reply from the daemon".into()));
                }
            }
        }
    };
    if let Some(p) = &a.output {
        eprintln!("wrote {} ({} {})", p.display(), rows.0, rows.1);
    }
    Ok(true)
}

/// `evald stats [--days N] [--json]`.
pub async fn stats(explicit: Option<&Path>, days: u32, json: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let stats: Stats = match backend(&config)? {
        Backend::Local(store) => {
            crate::view::stats(&store, days, chrono::Utc::now().timestamp_millis())?
        }
        Backend::Daemon(sock) => {
            serde_json::from_value(ask(&sock, &Request::Stats { days }, |_| {}).await?.0)?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(true);
    }
    println!(
        "last {days} day(s): {} requests, mean {}, p50 {}, p95 {}, p99 {}, {:.1}% errors, {} tokens ({} prompt, {} completion, {:.0} per request)",
        stats.overall.total_requests,
        fmt_ms(Some(stats.overall.avg_response_time_ms)),
        fmt_ms(Some(stats.overall.p50_ms)),
        fmt_ms(Some(stats.overall.p95_ms)),
        fmt_ms(Some(stats.overall.p99_ms)),
        stats.overall.error_rate * 100.0,
        stats.overall.tokens.total,
        stats.overall.tokens.prompt,
        stats.overall.tokens.completion,
        stats.overall.tokens.avg_per_request
    );
    for (title, groups) in [
        ("model", &stats.by_model),
        ("provider", &stats.by_provider),
        ("job", &stats.by_job),
    ] {
        if groups.is_empty() {
            continue;
        }
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header([
            title, "requests", "mean", "p50", "p95", "p99", "errors", "tokens",
        ]);
        for g in groups.iter() {
            let g: &StatsGroup = g;
            t.add_row([
                g.name.clone(),
                g.total_requests.to_string(),
                fmt_ms(Some(g.avg_response_time_ms)),
                fmt_ms(Some(g.p50_ms)),
                fmt_ms(Some(g.p95_ms)),
                fmt_ms(Some(g.p99_ms)),
                format!("{:.1}%", g.error_rate * 100.0),
                g.tokens.total.to_string(),
            ]);
        }
        println!("{t}");
    }
    Ok(true)
}

/// `evald prune [--dry-run]`.
pub async fn prune(explicit: Option<&Path>, dry_run: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let report: crate::store::PruneReport = match backend(&config)? {
        Backend::Local(store) => {
            let cutoffs = crate::daemon::cutoffs(&config, &store)?;
            if dry_run {
                store.prune_plan(&cutoffs)?
            } else {
                let w = store.writer();
                let r = w.prune(cutoffs, crate::daemon::PRUNE_BATCH).await?;
                w.close().await;
                r
            }
        }
        Backend::Daemon(sock) => {
            serde_json::from_value(ask(&sock, &Request::Prune { dry_run }, |_| {}).await?.0)?
        }
    };
    println!(
        "{} {} request records, {} runs, {} rollup rows (retention: requests {}, runs {})",
        if dry_run { "would remove" } else { "removed" },
        report.records,
        report.runs,
        report.rollups,
        fmt_age(config.retention.requests),
        fmt_age(config.retention.runs),
    );
    Ok(true)
}
