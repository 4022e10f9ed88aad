//! systemd integration through sd-notify: READY once the jobs are loaded and the port is
//! bound, RELOADING around a SIGHUP, STOPPING on shutdown, and watchdog pings at half the
//! unit's `WatchdogSec`. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify");
    }
}

/// Startup (or a reload) is finished.
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// A reload begins.
pub fn reloading() {
    send(&[NotifyState::Reloading]);
}

/// Shutdown begins.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Pings the watchdog while the runtime is alive, if the unit asks for it.
pub fn watchdog(stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let mut usec = 0u64;
    let enabled = sd_notify::watchdog_enabled(false, &mut usec);
    tokio::spawn(async move {
        if !enabled || usec == 0 {
            return;
        }
        let every = Duration::from_micros(usec / 2);
        loop {
            send(&[NotifyState::Watchdog]);
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => break,
            }
        }
    })
}
