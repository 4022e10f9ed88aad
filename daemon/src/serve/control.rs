//! The daemon's side of the control socket's requests: a [`Handler`] over the running
//! [`Daemon`].

use std::sync::Arc;

use evald_model::Trigger;
use tokio::task::JoinHandle;

use super::Daemon;
use crate::control::{Handler, HandlerError};
use crate::job::{AdhocSpec, Job};
use crate::run::{ProgressFn, RunReport};
use crate::store::{PruneReport, Store, Writer};

/// The running daemon as the control socket sees it.
pub struct ControlHandler(pub Arc<Daemon>);

impl Handler for ControlHandler {
    async fn start_run(
        &self,
        job: &str,
        trigger: Trigger,
        force: bool,
        progress: Box<ProgressFn>,
    ) -> Result<JoinHandle<RunReport>, HandlerError> {
        // `evald run` runs the job file as it is now: one written or edited a moment ago may
        // not have reached the watcher yet (it settles changes for DEBOUNCE).
        let file = self.0.config().jobs_dir.join(format!("{job}.toml"));
        if !job.contains(['/', '\\']) && crate::job::is_job_file_name(&file) && file.is_file() {
            self.0.reload_file(&file).await;
        }
        if !force && let Some(why) = self.0.over_budget(job) {
            return Err(format!("{why}; `evald run {job} --force` runs it anyway").into());
        }
        Ok(self.0.start_run(job, trigger, Some(progress)).await?)
    }

    fn start_adhoc(&self, spec: &AdhocSpec) -> Result<JoinHandle<RunReport>, HandlerError> {
        let job = Job::adhoc(spec, &self.0.config())?;
        Ok(self.0.start_adhoc(job)?)
    }

    async fn prune(&self, dry_run: bool) -> Result<PruneReport, HandlerError> {
        Ok(self.0.prune(dry_run).await?)
    }

    fn store(&self) -> Store {
        self.0.store.clone()
    }

    fn writer(&self) -> Writer {
        self.0.writer.clone()
    }

    fn alerts(&self) -> evald_model::AlertsView {
        self.0.alerts.view()
    }
}
