//! Plugin host tests against real wasmtime, no mocks: the example plugins
//! built from `plugins/examples` (`examples.rs`), small hostile components
//! written as WAT text (`hostile.rs`), and the compiled cache (`cache.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build;
mod cache;
mod examples;
mod hostile;

pub use build::example;

use std::time::Duration;

use evald_plugin_host::{Case, Host, Limits, Message, Observation};

/// A host with its cache in a fresh temp folder (kept alive by the guard).
pub fn host() -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = Host::new(dir.path().join("plugin-cache")).expect("host starts");
    (host, dir)
}

/// Limits that keep hostile tests quick.
pub fn quick_limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(200),
        memory_bytes: 16 * 1024 * 1024,
    }
}

/// The host's epoch tick (`EPOCH_TICK` in `plugins/host/src/host.rs`, crate-private, so
/// repeated here: keep the two equal). A computing guest's deadline is looked at once per tick.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Asserts that a call stopped for its time limit took about that limit.
///
/// Lower bound: the host arms the deadline when the call starts, after `start` was taken, and
/// stops the guest only once the wall clock has passed it (the epoch callback compares against
/// the deadline; the timer for host calls never fires early). One tick is allowed below the
/// limit so that a host counting ticks instead of reading the clock — whose first tick can come
/// up to one tick early — still passes. A host that answers Timeout at once fails.
///
/// Upper bound: the guest is noticed at the first tick after the deadline (≤ 1 tick late), then
/// unwinds and returns; the rest of the 10 ticks is scheduling slack for the ticker thread and
/// the test's thread on a loaded 2-core machine (several of the scheduler's ~10 ms periods). A
/// host that runs the guest far past its limit fails.
pub fn assert_stopped_at(start: std::time::Instant, limit: Duration) {
    let elapsed = start.elapsed();
    let (lo, hi) = (limit - EPOCH_TICK, limit + 10 * EPOCH_TICK);
    assert!(
        (lo..=hi).contains(&elapsed),
        "stopped after {elapsed:?} for a {limit:?} limit: expected {lo:?}..={hi:?}"
    );
}

/// An observation of `response` to a one-message case.
pub fn observation(response: &str, reference: Option<&str>) -> Observation {
    Observation {
        case: Case {
            id: "c1".into(),
            messages: vec![Message {
                role: "user".into(),
                content: "What is the capital of France?".into(),
            }],
            reference: reference.map(str::to_owned),
        },
        target: "demo/echo".into(),
        response: response.into(),
        latency_ms: 12.5,
        ttft_ms: Some(3.0),
        prompt_tokens: Some(10),
        completion_tokens: Some(2),
        finish_reason: Some("stop".into()),
        error: None,
    }
}
