//! `evald serve`: loads the config and the jobs, opens the store (marking runs cut off by the
//! last stop as interrupted), schedules the jobs, watches the jobs directory, serves the page and
//! the control socket, prunes on retention, and shuts down in one story: stop scheduling, let
//! in-flight requests finish within the grace period, cut off the rest (stored as interrupted),
//! flush and close the store.

mod control;
pub mod systemd;
pub mod watch;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use evald_model::{RunStatus, Trigger};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::endpoint::Client;
use crate::job::{self, Job};
use crate::metrics::Metrics;
use crate::registry::{Change, Registry};
use crate::run::{self, ProgressFn, RunContext, RunReport};
use crate::scheduler::{RunGate, Scheduler};
use crate::score::plugins::Plugins;
use crate::store::{PruneReport, Store, Writer};
use crate::view::View;

/// What a stop takes beyond `shutdown_grace` at most: runs cut off at the end of the grace
/// store what they have, and the store commits its queue and closes.
pub const CLOSE_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// The running daemon; shared by the scheduler dispatch, the control socket and the watcher.
pub struct Daemon {
    config: RwLock<Arc<Config>>,
    client: RwLock<Client>,
    /// The loaded jobs.
    pub registry: Arc<Registry>,
    /// The store.
    pub store: Store,
    /// The store's writer.
    pub writer: Writer,
    /// The plugin sandbox.
    pub plugins: Plugins,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// Alert states and deliveries.
    pub alerts: Arc<crate::alert::Alerts>,
    scheduler: Scheduler,
    tracker: TaskTracker,
    stop: CancellationToken,
    abort: CancellationToken,
    gate: RunGate,
}

/// Clears a job's running mark when dropped.
/// Why a run could not be started by hand.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// No job of that name is loaded.
    #[error("no job named `{0}` is loaded (see `evald check`)")]
    NoSuchJob(String),
    /// A run of the job is already going.
    #[error("job `{0}` is already running")]
    Running(String),
    /// The job's monthly budget is spent.
    #[error("{0}")]
    OverBudget(String),
    /// The daemon is shutting down.
    #[error("evald is shutting down")]
    Stopping,
}

impl Daemon {
    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Why a manual run of `name` should not go ahead: its budget is spent.
    pub fn over_budget(&self, name: &str) -> Option<String> {
        let state = self.registry.get(name)?;
        crate::view::budget_spent(
            &self.store,
            &state.job,
            chrono::Utc::now().timestamp_millis(),
        )
    }

    /// A context for one run, with the config in force now.
    pub fn run_context(&self) -> RunContext {
        RunContext {
            config: self.config(),
            client: self
                .client
                .read()
                .map(|c| c.clone())
                .unwrap_or_else(|p| p.into_inner().clone()),
            writer: self.writer.clone(),
            store: self.store.clone(),
            plugins: self.plugins.clone(),
            metrics: self.metrics.clone(),
            stop: self.stop.clone(),
            abort: self.abort.clone(),
        }
    }

    /// The read-only model for the page.
    pub fn view(&self) -> View {
        View {
            store: self.store.clone(),
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
            alerts: self.alerts.clone(),
        }
    }

    /// Starts a run of a loaded job; a scheduled firing while the job runs is stored as skipped.
    pub async fn start_run(
        self: &Arc<Self>,
        name: &str,
        trigger: Trigger,
        progress: Option<Box<ProgressFn>>,
    ) -> Result<tokio::task::JoinHandle<RunReport>, StartError> {
        if self.stop.is_cancelled() {
            return Err(StartError::Stopping);
        }
        let Some(state) = self.registry.get(name) else {
            return Err(StartError::NoSuchJob(name.to_string()));
        };
        if trigger == Trigger::Schedule
            && let Some(why) = crate::view::budget_spent(
                &self.store,
                &state.job,
                chrono::Utc::now().timestamp_millis(),
            )
        {
            let s = run::record_skipped(&self.writer, &state.job, trigger, &why).await;
            self.metrics.run_ended(&s);
            tracing::info!(job = name, "skipped: {why}");
            return Err(StartError::OverBudget(why));
        }
        let Some(claim) = self.gate.claim(name) else {
            if trigger == Trigger::Schedule {
                let why = "the previous run of this job was still going";
                let s = run::record_skipped(&self.writer, &state.job, trigger, why).await;
                self.metrics.run_ended(&s);
                tracing::info!(job = name, "skipped: the previous run is still going");
            }
            return Err(StartError::Running(name.to_string()));
        };
        let me = self.clone();
        let job = state.job.clone();
        Ok(self.tracker.spawn(async move {
            // Whatever happens to the run (even a panic), the job is not left marked running.
            let _claim = claim;
            me.run_guarded(&job, trigger, progress).await
        }))
    }

    async fn run_guarded(
        &self,
        job: &Job,
        trigger: Trigger,
        progress: Option<Box<ProgressFn>>,
    ) -> RunReport {
        // Wait for a slot under max_concurrent_runs; a shutdown while waiting ends the wait,
        // and the run is then not started.
        let Some(permit) = self.gate.slot(&self.stop).await else {
            let why = "evald was stopping before a slot came free";
            let summary = run::record_skipped(&self.writer, job, trigger, why).await;
            self.metrics.run_ended(&summary);
            return RunReport {
                summary,
                records: vec![],
                cases: vec![],
                targets: vec![],
            };
        };
        let ctx = self.run_context();
        let report = run::run_job(&ctx, job, trigger, progress.as_deref()).await;
        drop(permit);
        if !job.alerts.is_empty() {
            let events = self.store.events(Some(&job.name), 50).unwrap_or_default();
            self.alerts
                .after_run(&ctx.config, job, &report, &events)
                .await;
        }
        report
    }

    /// Runs an ad hoc job (`evald compare` through the socket) like any other run: under the
    /// run limit, waited for and cut off at shutdown.
    pub fn start_adhoc(
        self: &Arc<Self>,
        job: Job,
    ) -> Result<tokio::task::JoinHandle<RunReport>, StartError> {
        if self.stop.is_cancelled() {
            return Err(StartError::Stopping);
        }
        let me = self.clone();
        Ok(self
            .tracker
            .spawn(async move { me.run_guarded(&job, Trigger::Manual, None).await }))
    }

    /// (Re)loads one job file after a change on disk: a valid file (re)schedules its job; a
    /// broken one keeps the last valid version running and shows the problems; a deleted one
    /// unschedules its job.
    pub async fn reload_file(&self, path: &Path) {
        let config = self.config();
        let change = if path.exists() {
            let result = Job::load(path, &config);
            if let Err(d) = &result {
                for p in d {
                    tracing::warn!(file = %path.display(), "{p}");
                }
            }
            self.registry.apply(path, result)
        } else {
            self.registry.remove(path)
        };
        match change {
            Change::Loaded(name) => {
                if let Some(s) = self.registry.get(&name) {
                    if let Err(e) = self.scheduler.set(&s.job).await {
                        tracing::error!(job = %name, error = %e, "cannot schedule");
                    }
                    tracing::info!(job = %name, file = %path.display(), "job loaded");
                }
            }
            Change::Broken(Some(name)) => {
                tracing::warn!(job = %name, "job file broken; the last valid version keeps running")
            }
            Change::Broken(None) => {}
            Change::Removed(Some(name)) => {
                self.scheduler.remove(&name).await;
                self.metrics.forget_job(&name);
                tracing::info!(job = %name, "job removed");
            }
            Change::Removed(None) | Change::Unchanged => {}
        }
    }

    /// SIGHUP: reloads `evald.toml` and every job. A broken config keeps the running one.
    pub async fn reload_all(&self) {
        let path = self.config().path.clone();
        match Config::load(&path) {
            Ok(new) => {
                let old = self.config();
                // What a reload cannot change, named, so a changed port is not a mystery.
                let later: Vec<&str> = [
                    ("listen", new.listen != old.listen),
                    ("data_dir", new.data_dir != old.data_dir),
                    ("jobs_dir", new.jobs_dir != old.jobs_dir),
                    (
                        "max_concurrent_runs",
                        new.max_concurrent_runs != old.max_concurrent_runs,
                    ),
                    ("shutdown_grace", new.shutdown_grace != old.shutdown_grace),
                ]
                .into_iter()
                .filter_map(|(k, changed)| changed.then_some(k))
                .collect();
                if !later.is_empty() {
                    tracing::warn!(
                        "{} changed: a restart is needed for that to take full effect",
                        later.join(", ")
                    );
                }
                for w in &new.warnings {
                    tracing::warn!("{w}");
                }
                let client = Client::new(new.secrets());
                if let Ok(mut c) = self.client.write() {
                    *c = client;
                }
                if let Ok(mut c) = self.config.write() {
                    *c = Arc::new(new);
                }
                tracing::info!(config = %path.display(), "config reloaded");
            }
            Err(problems) => {
                for p in &problems {
                    tracing::error!("{p}");
                }
                tracing::error!(config = %path.display(), "config reload failed; keeping the running config");
            }
        }
        self.load_jobs().await;
    }

    /// Loads the whole jobs directory and schedules what it holds.
    async fn load_jobs(&self) {
        let config = self.config();
        let set = job::load_dir(&config);
        for (f, problems) in &set.invalid {
            for p in problems {
                tracing::warn!(file = %f.display(), "{p}");
            }
        }
        // A job that loaded before but is broken now keeps its last valid version.
        let mut jobs = set.jobs;
        let mut invalid = set.invalid;
        for old in self.registry.jobs() {
            if !jobs.contains_key(&old.job.name)
                && let Some(problems) = invalid.get(&old.job.file).cloned()
            {
                invalid.remove(&old.job.file);
                jobs.insert(old.job.name.clone(), (*old.job).clone());
                self.registry.apply(&old.job.file, Err(problems));
            }
        }
        let names: Vec<String> = jobs.keys().cloned().collect();
        let broken: Vec<(PathBuf, Vec<crate::diag::Diagnostic>)> = self
            .registry
            .jobs()
            .into_iter()
            .filter(|s| names.contains(&s.job.name) && !s.broken.is_empty())
            .map(|s| (s.job.file.to_path_buf(), s.broken.clone()))
            .collect();
        self.registry.replace_all(jobs, invalid);
        for (f, problems) in broken {
            self.registry.apply(&f, Err(problems));
        }
        self.scheduler.retain(&names).await;
        for s in self.registry.jobs() {
            if let Err(e) = self.scheduler.set(&s.job).await {
                tracing::error!(job = %s.job.name, error = %e, "cannot schedule");
            }
        }
        tracing::info!(
            jobs = names.len(),
            invalid = self.registry.invalid().len(),
            dir = %config.jobs_dir.display(),
            "jobs loaded"
        );
    }

    /// Applies retention now (or says what it would remove).
    pub async fn prune(&self, dry_run: bool) -> Result<PruneReport, crate::store::StoreError> {
        let (config, store) = (self.config(), self.store.clone());
        // Counting what is old scans the store: off the async threads.
        let plan = tokio::task::spawn_blocking(move || -> Result<_, crate::store::StoreError> {
            let c = crate::store::cutoffs(&config.retention, &store)?;
            let plan = if dry_run {
                Some(store.prune_plan(&c)?)
            } else {
                None
            };
            Ok((c, plan))
        })
        .await
        .map_err(|e| crate::store::StoreError::Task(e.to_string()))??;
        let (cutoffs, plan) = plan;
        if let Some(plan) = plan {
            return Ok(plan);
        }
        let r = self
            .writer
            .prune(cutoffs, crate::store::PRUNE_BATCH)
            .await?;
        self.metrics.pruned.inc_by(r.records);
        Ok(r)
    }
}

/// Why `serve` did not start: its config has problems. `main` exits 78 (EX_CONFIG) for it, which
/// the systemd unit's `RestartPreventExitStatus=` names, so a broken config is not restarted
/// every few seconds for ever.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigInvalid(pub String);

/// Starts the daemon on `config_path` and serves until `shutdown` resolves (or SIGTERM/SIGINT
/// arrive). `listener` is for tests that bind 127.0.0.1:0 themselves.
pub async fn serve(
    config_path: &Path,
    listener: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // Signals: SIGHUP reloads; SIGTERM / SIGINT (or `shutdown`) stop; a second stop signal exits
    // at once. Handled from the first moment, so a signal that comes while the daemon starts
    // (a `systemctl reload` just after READY, a stop during start-up) waits for the loop below
    // instead of ending the process by its default action.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    // A file size limit (RLIMIT_FSIZE) reached sends SIGXFSZ, which would end the process: with
    // a handler installed the write fails with EFBIG instead, and the store treats it like a
    // full disk. (Signal 25 on Linux.) Before the store opens: its first write may be the one.
    let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25))?;
    let config = Config::load(config_path).map_err(|problems| {
        ConfigInvalid(format!(
            "{}\nthe config has problems; evald did not start",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        ))
    })?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let store = Store::open_configured(&config)?;
    let marked = store.mark_interrupted()?;
    for id in &marked {
        tracing::warn!(run_id = %id, "a run was cut off by the last stop; marked interrupted");
    }
    // A benchmark cut off before its first checkpoint is summarised from its records beside
    // the start, not before it: they can be a checkpoint interval's worth at full speed
    // (~200,000), and the daemon serves within a second of a crash whatever was cut off. A
    // stop before they are counted leaves them to the next start.
    if !marked.is_empty() {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = crate::run::bench::summarise_interrupted(&store, &marked) {
                tracing::error!(error = %e, "cannot summarise the benchmarks the last stop cut off");
            }
        });
    }
    let writer = store.writer();
    let plugins = Plugins::new(&config.data_dir.join("plugin-cache"))?;
    let (fire_tx, mut fire_rx) = mpsc::channel::<String>(256);
    let scheduler = Scheduler::start(fire_tx).await?;
    let listener = match listener {
        Some(l) => l,
        None => tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?,
    };
    let local = listener.local_addr()?;
    let web_token = config.web_token.as_ref().map(|s| s.expose().to_string());
    let grace = config.shutdown_grace;
    let registry = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::new());
    let alerts = Arc::new(crate::alert::Alerts::new(
        &store,
        writer.clone(),
        metrics.clone(),
        &config,
    ));
    let daemon = Arc::new(Daemon {
        client: RwLock::new(Client::new(config.secrets())),
        gate: RunGate::new(registry.clone(), config.max_concurrent_runs),
        config: RwLock::new(Arc::new(config)),
        registry,
        store,
        writer,
        plugins,
        metrics,
        alerts,
        scheduler,
        tracker: TaskTracker::new(),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
    });
    daemon.load_jobs().await;
    // The last-run series from the store, so a restart does not blank them until each job runs
    // again (a daily job's staleness alert would stay silent for a day).
    for s in daemon.registry.jobs() {
        let runs = daemon.store.runs(Some(&s.job.name), 20).unwrap_or_default();
        if let Some(last) = runs
            .iter()
            .find(|r| !matches!(r.status, RunStatus::Skipped | RunStatus::Running))
        {
            daemon.metrics.last_run(last);
        }
    }

    // Retention at start-up, then every prune_interval.
    {
        let d = daemon.clone();
        tokio::spawn(async move {
            loop {
                match d.prune(false).await {
                    Ok(r) if r.records + r.runs + r.rollups > 0 => {
                        tracing::info!(
                            records = r.records,
                            runs = r.runs,
                            rollups = r.rollups,
                            payloads = r.payloads,
                            "pruned"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "prune failed"),
                }
                let every = d.config().retention.prune_interval;
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = d.stop.cancelled() => break,
                }
            }
        });
    }

    // Alerts: no_run, renotify and maintenance windows, once a second.
    {
        let d = daemon.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = d.stop.cancelled() => break,
                }
                let jobs: Vec<Arc<Job>> = d.registry.jobs().into_iter().map(|s| s.job).collect();
                if jobs.iter().any(|j| !j.alerts.is_empty()) {
                    d.alerts.tick(&d.config(), &jobs, &d.store).await;
                }
            }
        });
    }

    // Scheduled firings.
    {
        let d = daemon.clone();
        tokio::spawn(async move {
            while let Some(name) = fire_rx.recv().await {
                if d.stop.is_cancelled() {
                    break;
                }
                if let Err(e) = d.start_run(&name, Trigger::Schedule, None).await {
                    tracing::debug!(job = %name, "{e}");
                }
            }
        });
    }

    let control = crate::control::server::listen(
        &daemon.config().socket_path(),
        Arc::new(control::ControlHandler(daemon.clone())),
    )
    .await?;
    let watcher = crate::serve::watch::watch(daemon.clone())?;

    let app = evald_web::router(
        Arc::new(daemon.view()),
        evald_web::WebOptions { token: web_token },
    );
    let stop_web = daemon.stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop_web.cancelled().await })
            .await
    });
    tracing::info!(listen = %local, "evald is serving");
    crate::serve::systemd::ready();
    let watchdog = crate::serve::systemd::watchdog(daemon.stop.clone());

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                crate::serve::systemd::reloading();
                daemon.reload_all().await;
                crate::serve::systemd::ready();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = &mut shutdown => break,
        }
    }
    tracing::info!(grace = ?grace, "stopping: no new runs; waiting for requests in flight");
    crate::serve::systemd::stopping();
    daemon.stop.cancel();
    daemon.scheduler.shutdown().await;
    drop(watcher);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!("evald: second signal, exiting now");
        std::process::exit(130);
    });
    // The whole stop fits in shutdown_grace plus CLOSE_TIME: requests in flight (and web
    // clients) get the grace; what is cut off then, and the store's last commit, get the rest.
    let deadline = tokio::time::Instant::now() + grace;
    let half = CLOSE_TIME / 2;
    daemon.tracker.close();
    if tokio::time::timeout_at(deadline, daemon.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("grace period over: cutting off requests in flight (stored as interrupted)");
        daemon.abort.cancel();
        if tokio::time::timeout(half, daemon.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("runs still ending after the cut-off; closing the store anyway");
        }
    }
    control.abort();
    watchdog.abort();
    // A client that stopped reading an export would hold the graceful shutdown forever.
    if tokio::time::timeout_at(deadline, server).await.is_err() {
        tracing::warn!("web connections still open after the grace period; closing them");
    }
    if tokio::time::timeout(half, daemon.writer.clone().close())
        .await
        .is_err()
    {
        tracing::error!(
            "the store's last commit did not finish in time; what was committed before is safe"
        );
    }
    let _ = std::fs::remove_file(daemon.config().socket_path());
    tracing::info!("stopped; the store is closed");
    Ok(())
}
