//! Cron firings through tokio-cron-scheduler, and the [`RunGate`] every run passes. A firing
//! only names the job on a channel; the daemon decides what happens: skip if the previous run
//! is still going ([`RunGate::claim`]), wait for a slot under `max_concurrent_runs`
//! ([`RunGate::slot`]), run. Schedules are evaluated in UTC.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job::Job;
use crate::registry::Registry;

/// Who may run now: one run of a job at a time, and at most `max_concurrent_runs` at once.
#[derive(Debug)]
pub struct RunGate {
    registry: Arc<Registry>,
    slots: Arc<Semaphore>,
}

/// A job marked running; the mark is lifted when this drops, whatever ends the run (a panic
/// too).
#[derive(Debug)]
pub struct Claim {
    registry: Arc<Registry>,
    job: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.registry.finish(&self.job);
    }
}

impl RunGate {
    /// A gate over the registry's running marks with `max_runs` slots.
    pub fn new(registry: Arc<Registry>, max_runs: usize) -> RunGate {
        RunGate {
            registry,
            slots: Arc::new(Semaphore::new(max_runs.max(1))),
        }
    }

    /// Marks a loaded job running; `None` when it is already running (or not loaded).
    pub fn claim(&self, job: &str) -> Option<Claim> {
        self.registry.try_start(job).then(|| Claim {
            registry: self.registry.clone(),
            job: job.to_string(),
        })
    }

    /// Waits for a slot under the run limit; `None` when `stop` fires first.
    pub async fn slot(&self, stop: &CancellationToken) -> Option<OwnedSemaphorePermit> {
        tokio::select! {
            p = self.slots.clone().acquire_owned() => p.ok(),
            _ = stop.cancelled() => None,
        }
    }
}

/// The cron scheduler and which of its entries belongs to which job.
pub struct Scheduler {
    sched: Mutex<JobScheduler>,
    ids: Mutex<HashMap<String, (Uuid, String)>>,
    fire: mpsc::Sender<String>,
}

/// The scheduler failed to start or to take a job.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// tokio-cron-scheduler failed (starting, adding or removing an entry).
    #[error("scheduler: {0}")]
    Cron(#[from] tokio_cron_scheduler::JobSchedulerError),
    /// A job's schedule was refused (validation already checked it, so this is a bug).
    #[error("scheduler: job {job}: schedule `{expr}`: {source}")]
    Schedule {
        /// The job.
        job: String,
        /// The six-field expression given to the scheduler.
        expr: String,
        /// Why it was refused.
        source: tokio_cron_scheduler::JobSchedulerError,
    },
}

impl Scheduler {
    /// A started scheduler that sends job names on `fire` when they are due.
    pub async fn start(fire: mpsc::Sender<String>) -> Result<Scheduler, SchedulerError> {
        let sched = JobScheduler::new().await?;
        sched.start().await?;
        Ok(Scheduler {
            sched: Mutex::new(sched),
            ids: Mutex::new(HashMap::new()),
            fire,
        })
    }

    /// Schedules a job, reschedules it if its schedule changed, or unschedules it if it has no
    /// schedule now or is disabled.
    pub async fn set(&self, job: &Job) -> Result<(), SchedulerError> {
        let want = job
            .schedule
            .as_ref()
            .filter(|_| job.enabled)
            .map(|s| s.expr6.clone());
        let mut ids = self.ids.lock().await;
        if let Some((_, expr)) = ids.get(&job.name)
            && Some(expr) == want.as_ref()
        {
            return Ok(());
        }
        if let Some((id, _)) = ids.remove(&job.name) {
            let _ = self.sched.lock().await.remove(&id).await;
        }
        let Some(expr) = want else {
            return Ok(());
        };
        let tx = self.fire.clone();
        let name = job.name.clone();
        let entry = CronJob::new_async(expr.as_str(), move |_id, _sched| {
            let tx = tx.clone();
            let name = name.clone();
            Box::pin(async move {
                // A full channel means the daemon is far behind: dropping the firing is what a
                // skipped run would do anyway.
                let _ = tx.try_send(name);
            })
        })
        .map_err(|source| SchedulerError::Schedule {
            job: job.name.clone(),
            expr: expr.clone(),
            source,
        })?;
        let id = self.sched.lock().await.add(entry).await?;
        ids.insert(job.name.clone(), (id, expr));
        Ok(())
    }

    /// Unschedules a job.
    pub async fn remove(&self, name: &str) {
        if let Some((id, _)) = self.ids.lock().await.remove(name) {
            let _ = self.sched.lock().await.remove(&id).await;
        }
    }

    /// Unschedules every job but those named.
    pub async fn retain(&self, keep: &[String]) {
        let gone: Vec<String> = self
            .ids
            .lock()
            .await
            .keys()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        for g in gone {
            self.remove(&g).await;
        }
    }

    /// Stops firing.
    pub async fn shutdown(&self) {
        let _ = self.sched.lock().await.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;
    use crate::config::Config;

    fn registry(jobs: &[&str]) -> Arc<Registry> {
        let config = Config::parse(
            Path::new("/x/evald.toml"),
            "plugins_dir = \"/nonexistent\"\n[endpoints.sim]\nsimulated = {}\n",
        )
        .unwrap();
        let r = Arc::new(Registry::default());
        for name in jobs {
            let path = format!("/x/jobs/{name}.toml");
            let job = Job::parse(
                Path::new(&path),
                "targets = [\"sim/a\"]\n[[cases]]\nid = \"x\"\nprompt = \"hi\"\n",
                &config,
            );
            r.apply(Path::new(&path), job);
        }
        r
    }

    #[test]
    fn a_running_job_is_not_claimed_twice_until_its_claim_drops() {
        let r = registry(&["a", "b"]);
        let gate = RunGate::new(r.clone(), 4);
        let first = gate.claim("a").expect("a is free");
        assert!(gate.claim("a").is_none(), "a second run of a running job");
        assert!(gate.claim("b").is_some(), "another job is not held up");
        assert!(gate.claim("nope").is_none(), "a job that is not loaded");
        assert!(
            r.get("a").is_some_and(|s| s.running),
            "the page shows a running"
        );
        drop(first);
        assert!(r.get("a").is_some_and(|s| !s.running));
        assert!(gate.claim("a").is_some(), "free again once the run ended");
    }

    /// Five runs of 10 s under a limit of 2: they start at 0, 0, 10, 10 and 20 s of (paused,
    /// auto-advanced) time. A gate that let all through would start every one at 0 s; one that
    /// serialised them would start the second at 10 s.
    #[tokio::test(start_paused = true)]
    async fn the_run_limit_holds_runs_until_a_slot_frees() {
        let gate = Arc::new(RunGate::new(registry(&[]), 2));
        let stop = CancellationToken::new();
        let t0 = Instant::now();
        let mut runs = tokio::task::JoinSet::new();
        for _ in 0..5 {
            let (gate, stop) = (gate.clone(), stop.clone());
            runs.spawn(async move {
                let permit = gate.slot(&stop).await.expect("not stopped");
                let started = t0.elapsed();
                tokio::time::sleep(Duration::from_secs(10)).await;
                drop(permit);
                started
            });
        }
        let mut starts: Vec<u64> = runs.join_all().await.iter().map(|d| d.as_secs()).collect();
        starts.sort_unstable();
        assert_eq!(starts, [0, 0, 10, 10, 20]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait_for_a_slot() {
        let gate = RunGate::new(registry(&[]), 1);
        let stop = CancellationToken::new();
        let _held = gate.slot(&stop).await.expect("the one slot");
        let waiting = gate.slot(&stop);
        let stopper = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            stopper.cancel();
        });
        let t0 = Instant::now();
        assert!(waiting.await.is_none(), "a stop gives no slot");
        assert_eq!(
            t0.elapsed().as_secs(),
            3,
            "the wait ended when the stop came"
        );
    }
}
