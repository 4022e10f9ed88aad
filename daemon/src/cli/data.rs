//! The commands over stored data and endpoints: `models`, `export`, `stats`, `prune`.

use std::io::Write;
use std::path::{Path, PathBuf};

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use evald::endpoint::Client;
use evald::store::PruneReport;
use evald_model::{RecordFilter, Stats, StatsGroup};
use evald_web::export::Format;

use super::report::{fmt_age, fmt_ms};
use super::{Backend, Failure, backend, load_config};

/// `evald models ENDPOINT`.
pub async fn models(explicit: Option<&Path>, endpoint: &str) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let Some(ep) = config.endpoints.get(endpoint) else {
        let known: Vec<&str> = config.endpoints.keys().map(String::as_str).collect();
        return Err(Failure::Invalid(format!(
            "no endpoint `{endpoint}` in {} (endpoints: {})",
            config.path.display(),
            known.join(", ")
        )));
    };
    let client = Client::new(config.secrets());
    let list = client.list_models(ep).await.map_err(Failure::Other)?;
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
    /// Only this model (`careful`), or this target (`demo/careful`).
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
    let format = Format::parse(&a.format).map_err(Failure::Invalid)?;
    let filter: RecordFilter = evald_web::export::parse_filter(
        a.since.as_deref(),
        a.until.as_deref(),
        a.job.as_deref(),
        a.model.as_deref(),
        a.run.as_deref(),
        a.limit.as_deref(),
    )
    .map_err(Failure::Invalid)?;
    let config = load_config(explicit)?;
    // The file is made at the first byte, so an export refused (an unknown run or job) leaves an
    // earlier file of that name as it was.
    let mut out: Box<dyn Write + Send> = match &a.output {
        Some(p) => Box::new(LazyFile {
            path: p.clone(),
            file: None,
        }),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    // A job that is neither a job file nor in any record is a misspelt name. Only then is the
    // store asked (one record, through the filter); a job that has not run yet is a file.
    let unknown_job = filter.job.as_deref().filter(|j| {
        *j != evald::job::ADHOC_JOB && !config.jobs_dir.join(format!("{j}.toml")).is_file()
    });
    let probe = RecordFilter {
        limit: Some(1),
        ..filter.clone()
    };
    let no_such_job = |job: &str| {
        Failure::Invalid(format!(
            "no record of job `{job}` matches, and {} has no {job}.toml: is the name right?",
            config.jobs_dir.display()
        ))
    };
    let rows = match backend(&config)? {
        Backend::Local(store) => {
            let unknown_job = unknown_job.map(str::to_string);
            let res =
                tokio::task::spawn_blocking(move || -> Result<Result<u64, String>, Failure> {
                    if let Some(why) = evald::view::export_scope_error(&store, &filter)? {
                        return Err(Failure::Invalid(why));
                    }
                    if let Some(job) = unknown_job
                        && store.export_to(&probe, format, std::io::sink())?.0 == 0
                    {
                        return Ok(Err(job));
                    }
                    let (rows, mut out) = store.export_to(&filter, format, out)?;
                    out.flush()?;
                    Ok(Ok(rows))
                })
                .await?;
            (res?.map_err(|job| no_such_job(&job))?, "records")
        }
        Backend::Daemon(daemon) => {
            if let Some(job) = unknown_job
                && daemon.export(format, &probe, &mut std::io::sink()).await? == 0
            {
                return Err(no_such_job(job));
            }
            (daemon.export(format, &filter, &mut out).await?, "records")
        }
    };
    if let Some(p) = &a.output {
        eprintln!("wrote {} ({} {})", p.display(), rows.0, rows.1);
    }
    Ok(true)
}

/// A file created at its first write (or flush), buffered.
struct LazyFile {
    path: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl LazyFile {
    fn file(&mut self) -> std::io::Result<&mut std::io::BufWriter<std::fs::File>> {
        let f = match self.file.take() {
            Some(f) => f,
            None => std::io::BufWriter::new(std::fs::File::create(&self.path).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot write {}: {e}", self.path.display()),
                )
            })?),
        };
        Ok(self.file.insert(f))
    }
}

impl Write for LazyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file()?.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file()?.flush()
    }
}

/// `evald stats [--days N] [--json]`.
pub async fn stats(explicit: Option<&Path>, days: u32, json: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let stats: Stats = match backend(&config)? {
        Backend::Local(store) => {
            evald::view::stats(&store, days, chrono::Utc::now().timestamp_millis())?
        }
        Backend::Daemon(daemon) => daemon.stats(days).await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(true);
    }
    println!(
        "last {days} day(s): {} requests, mean {}, p50 {}, p95 {}, p99 {}, {:.1}% errors, {} tokens ({} prompt, {} completion, {:.0} per request)",
        stats.overall.total_requests,
        fmt_ms(stats.overall.latency(stats.overall.avg_response_time_ms)),
        fmt_ms(stats.overall.latency(stats.overall.p50_ms)),
        fmt_ms(stats.overall.latency(stats.overall.p95_ms)),
        fmt_ms(stats.overall.latency(stats.overall.p99_ms)),
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
        let priced = groups.iter().any(|g| g.cost_usd.is_some());
        let mut header = vec![
            title, "requests", "mean", "p50", "p95", "p99", "errors", "tokens",
        ];
        if priced {
            header.push("cost");
        }
        t.set_header(header);
        for g in groups.iter() {
            let g: &StatsGroup = g;
            let mut row = vec![
                g.name.clone(),
                g.total_requests.to_string(),
                fmt_ms(g.latency(g.avg_response_time_ms)),
                fmt_ms(g.latency(g.p50_ms)),
                fmt_ms(g.latency(g.p95_ms)),
                fmt_ms(g.latency(g.p99_ms)),
                format!("{:.1}%", g.error_rate * 100.0),
                g.tokens.total.to_string(),
            ];
            if priced {
                row.push(evald_model::fmt::fmt_cost(g.cost_usd, g.cost_unpriced));
            }
            t.add_row(row);
        }
        println!("{t}");
    }
    Ok(true)
}

/// `evald prune [--dry-run]`.
pub async fn prune(explicit: Option<&Path>, dry_run: bool) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    let report: PruneReport = match backend(&config)? {
        Backend::Local(store) => {
            let cutoffs = evald::store::cutoffs(&config.retention, &store)?;
            if dry_run {
                store.prune_plan(&cutoffs)?
            } else {
                let w = store.writer();
                let r = w.prune(cutoffs, evald::store::PRUNE_BATCH).await?;
                w.close().await;
                r
            }
        }
        Backend::Daemon(daemon) => daemon.prune(dry_run).await?,
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

/// `evald backup FILE`.
pub async fn backup(explicit: Option<&Path>, file: &Path) -> Result<bool, Failure> {
    let config = load_config(explicit)?;
    // The daemon resolves a relative path against its own folder: make it ours.
    let file = std::path::absolute(file)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", file.display())))?;
    eprintln!(
        "backing up {} to {} …",
        config.db_path().display(),
        file.display()
    );
    let report = match backend(&config)? {
        Backend::Local(store) => {
            let f = file.clone();
            tokio::task::spawn_blocking(move || store.backup(&f)).await??
        }
        Backend::Daemon(daemon) => daemon.backup(&file).await?,
    };
    println!(
        "wrote {}: {} records, {} runs, {:.1} MiB in {:.1} s",
        file.display(),
        report.records,
        report.runs,
        report.bytes as f64 / (1024.0 * 1024.0),
        report.ms as f64 / 1000.0
    );
    Ok(true)
}
