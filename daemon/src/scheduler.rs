//! Cron firings through tokio-cron-scheduler. A firing only names the job on a channel; the
//! daemon decides what happens (skip if the previous run is still going, wait for a slot under
//! `max_concurrent_runs`, run). Schedules are evaluated in UTC.

use std::collections::HashMap;

use tokio::sync::{Mutex, mpsc};
use tokio_cron_scheduler::{Job as CronJob, JobScheduler};
use uuid::Uuid;

use crate::job::Job;

/// The cron scheduler and which of its entries belongs to which job.
pub struct Scheduler {
    sched: Mutex<JobScheduler>,
    ids: Mutex<HashMap<String, (Uuid, String)>>,
    fire: mpsc::Sender<String>,
}

/// The scheduler failed to start or to take a job.
#[derive(Debug, thiserror::Error)]
#[error("scheduler: {0}")]
pub struct SchedulerError(String);

impl Scheduler {
    /// A started scheduler that sends job names on `fire` when they are due.
    pub async fn start(fire: mpsc::Sender<String>) -> Result<Scheduler, SchedulerError> {
        let sched = JobScheduler::new()
            .await
            .map_err(|e| SchedulerError(e.to_string()))?;
        sched
            .start()
            .await
            .map_err(|e| SchedulerError(e.to_string()))?;
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
        .map_err(|e| SchedulerError(format!("job {}: schedule `{expr}`: {e}", job.name)))?;
        let id = self
            .sched
            .lock()
            .await
            .add(entry)
            .await
            .map_err(|e| SchedulerError(e.to_string()))?;
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
