//! `evald run` and `evald compare`: a run here, or through the daemon that holds the store,
//! with a progress bar, then the report.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use comfy_table::{Cell, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use evald::config::Config;
use evald::endpoint::Client;
use evald::job::{self, ADHOC_JOB, AdhocSpec, Job};
use evald::metrics::Metrics;
use evald::run::{Progress, RunContext, RunReport};
use evald::score::plugins::Plugins;
use evald::store::Store;
use evald_model::{RunStatus, Trigger, Verdict};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use super::report::{print_report, timing};
use super::{Backend, Failure, backend, load_config};

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
    // What this shell lacks for the job's endpoints (a key variable, the service's credentials):
    // the requests go out all the same, so say it here and not only in `evald check`.
    for w in &config.warnings {
        let mine = job.targets.iter().any(|t| {
            w.message
                .starts_with(&format!("endpoints.{}.", t.endpoint()))
        });
        if mine {
            pb.suspend(|| eprintln!("{w}"));
        }
    }
    let writer = store.writer();
    let ctx = RunContext {
        client: Client::new(config.secrets()),
        plugins: Plugins::new(&config.data_dir.join("plugin-cache"))?,
        config: Arc::new(config),
        writer: writer.clone(),
        store: store.clone(),
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
    let report = evald::run::run_job(&ctx, job, Trigger::Manual, Some(&progress)).await;
    ctrl_c.abort();
    writer.close().await;
    Ok(report)
}

/// Options of `evald run`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Print JSON.
    pub json: bool,
    /// Exit 3 when a watched target regressed.
    pub fail_on_regression: bool,
    /// Print the cost's upper bound and send nothing.
    pub estimate: bool,
    /// Run even when the monthly budget is spent.
    pub force: bool,
}

/// A job as the operator named it: its name (`capitals`), its file name (`capitals.toml`), or a
/// path to its file, which must be in the jobs directory (another file would not be the job
/// that runs: `run` and `baseline` work on the jobs the daemon schedules).
pub fn job_name(config: &Config, arg: &str) -> Result<String, Failure> {
    if !arg.contains('/') {
        return Ok(arg.strip_suffix(".toml").unwrap_or(arg).to_string());
    }
    let path = Path::new(arg);
    let real = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .ok()
    };
    let stem = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match (path.parent().and_then(real), real(&config.jobs_dir), stem) {
        (Some(dir), Some(jobs), Some(stem)) if dir == jobs => {
            Ok(stem.strip_suffix(".toml").unwrap_or(&stem).to_string())
        }
        _ => Err(Failure::Invalid(format!(
            "`{arg}` is not in the jobs directory {}: name a job there by its file name",
            config.jobs_dir.display()
        ))),
    }
}

/// The job `name` of the jobs directory, or why not (no such file, naming the jobs there; or
/// its problems).
pub fn load_job(config: &Config, name: &str) -> Result<Job, Failure> {
    let file = config.jobs_dir.join(format!("{name}.toml"));
    if !file.is_file() {
        let known: Vec<String> = job::load_dir(config).jobs.into_keys().collect();
        return Err(Failure::Invalid(format!(
            "no job file {} (jobs: {})",
            file.display(),
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        )));
    }
    Job::load(&file, config).map_err(|d| {
        Failure::Invalid(
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
}

/// `evald run JOB`.
pub async fn run(explicit: Option<&Path>, name: &str, opts: RunOptions) -> Result<bool, Failure> {
    let RunOptions {
        json,
        fail_on_regression,
        estimate,
        force,
    } = opts;
    let config = load_config(explicit)?;
    let name = &job_name(&config, name)?;
    let job = load_job(&config, name)?;
    if estimate {
        super::estimate::print(&config, &job);
        return Ok(true);
    }
    if fail_on_regression && job.watch.is_none() {
        eprintln!(
            "note: job `{name}` has no [watch] table: nothing is tested, so --fail-on-regression cannot fail"
        );
    }
    let pb = progress_bar(job.kind == job::JobKind::Benchmark);
    let report = match backend(&config)? {
        Backend::Local(store) => {
            if !force
                && let Some(why) =
                    evald::view::budget_spent(&store, &job, chrono::Utc::now().timestamp_millis())
            {
                pb.finish_and_clear();
                return Err(Failure::Invalid(format!(
                    "{why}; `evald run {name} --force` runs it anyway"
                )));
            }
            run_local(store, config, &job, &pb).await?
        }
        Backend::Daemon(daemon) => {
            let pb2 = pb.clone();
            daemon.run(name, force, |p| update(&pb2, p)).await?
        }
    };
    pb.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
        super::watch::print_verdicts(&report.summary);
    }
    let regressed: Vec<&str> = report
        .summary
        .targets
        .iter()
        .filter(|t| {
            t.watch
                .as_ref()
                .is_some_and(|w| w.verdict == Verdict::Regressed)
        })
        .map(|t| t.target.as_str())
        .collect();
    if fail_on_regression && !regressed.is_empty() {
        return Err(Failure::Regressed(format!(
            "run {} regressed on {}",
            report.summary.id,
            regressed.join(", ")
        )));
    }
    Ok(report.summary.status == RunStatus::Ok)
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
        return Err(Failure::Invalid(
            "name at least one target with --model ENDPOINT/MODEL".into(),
        ));
    }
    let spec = AdhocSpec {
        models: args.models.clone(),
        system: args.system.clone(),
        prompt: args.prompt.clone(),
        temperature: args.temperature,
        max_tokens: args.max_tokens,
    };
    let job = Job::adhoc(&spec, &config).map_err(|e| Failure::Invalid(e.to_string()))?;
    let pb = progress_bar(false);
    let report = match backend(&config)? {
        Backend::Local(store) => run_local(store, config, &job, &pb).await?,
        Backend::Daemon(daemon) => daemon.adhoc(&spec).await?,
    };
    pb.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(report.summary.status == RunStatus::Ok);
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
    Ok(report.summary.status == RunStatus::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_may_be_named_by_its_file_in_the_jobs_directory() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("jobs")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir(dir.path().join("draft")).unwrap_or_else(|e| panic!("{e}"));
        let config =
            Config::parse(&dir.path().join("evald.toml"), "").unwrap_or_else(|e| panic!("{e:?}"));
        let jobs = dir.path().join("jobs/capitals.toml");
        let jobs = jobs.to_string_lossy();
        for arg in ["capitals", "capitals.toml", jobs.as_ref()] {
            assert_eq!(
                job_name(&config, arg).ok().as_deref(),
                Some("capitals"),
                "{arg}"
            );
        }
        // A file elsewhere is not the job that would run.
        let draft = dir.path().join("draft/capitals.toml");
        let e = job_name(&config, &draft.to_string_lossy())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not in the jobs directory"), "{e}");
    }
}
