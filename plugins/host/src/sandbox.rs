//! The state of one plugin instance (`Store<Sandbox>`): what the plugin may
//! touch and what it is allowed to use up.
//!
//! Capabilities are granted here and nowhere else. WASI gets no preopened
//! directories, no environment, no arguments, closed stdin, no TCP, UDP or
//! name lookup, and clocks frozen at zero; stdout and stderr are captured
//! into small buffers that drop what overflows and are written to the log
//! under the plugin's name after each call. Memory is counted across all of
//! the instance's memories; time is enforced by the engine's epoch ticker
//! through the callback installed in [`new_store`].

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// How much of each of stdout and stderr one call keeps for the log; the
/// rest is counted and dropped, so a chatty plugin neither traps nor floods
/// the log.
const CAPTURE_BYTES: usize = 16 * 1024;

/// Random bytes one WASI call may ask for. Rust's std needs 16 for its hash
/// seeds; the WASI default of 64 MiB would let a plugin make the host
/// allocate far past the plugin's own memory limit.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// Host-side resources (streams, pollables) one instance may hold at once.
const MAX_RESOURCES: usize = 1024;

/// Core instances, memories and tables one component may create. A Rust
/// guest needs a handful of instances, one memory and one or two tables.
const MAX_INSTANCES: usize = 64;
const MAX_MEMORIES: usize = 4;
const MAX_TABLES: usize = 16;
/// Elements one table may grow to; each costs the host a pointer.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// The data of one `Store`: one plugin instance's sandbox.
pub(crate) struct Sandbox {
    /// The locked-down WASI context (see the module docs).
    wasi: WasiCtx,
    /// WASI's handles (streams, pollables) for this instance.
    table: ResourceTable,
    /// Linear memory the instance may hold in total, in bytes.
    memory_cap: u64,
    /// Linear memory the instance holds now, summed over its memories.
    memory_used: u64,
    /// Set when a growth was refused for the cap, so that the trap that
    /// follows is reported as a memory overrun rather than a plain trap.
    memory_exceeded: bool,
    /// When the current call must end; checked by the epoch callback.
    deadline: Instant,
    /// Set by the epoch callback when it stops the call at its deadline.
    timed_out: bool,
    /// The guest's stdout for the current call.
    stdout: Capture,
    /// The guest's stderr for the current call.
    stderr: Capture,
}

/// Why the last call stopped early, as recorded by the sandbox itself; more
/// reliable than parsing wasmtime's error text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The epoch callback hit the deadline.
    Timeout,
    /// A memory growth past the cap was refused.
    Memory,
}

/// A new store with a fresh sandbox for one plugin instance, its memory
/// capped at `memory_cap` bytes. Arm it with [`arm`] before each call.
pub(crate) fn new_store(engine: &Engine, memory_cap: u64) -> Store<Sandbox> {
    let stdout = Capture::default();
    let stderr = Capture::default();
    let wasi = WasiCtx::builder()
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .max_random_size(MAX_RANDOM_BYTES)
        .build();
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_RESOURCES);
    let sandbox = Sandbox {
        wasi,
        table,
        memory_cap,
        memory_used: 0,
        memory_exceeded: false,
        deadline: Instant::now(),
        timed_out: false,
        stdout,
        stderr,
    };
    let mut store = Store::new(engine, sandbox);
    store.limiter(|sandbox| sandbox);
    // Runs at every epoch tick (10 ms) while the guest computes: yield to
    // the async executor so one plugin cannot hog a tokio worker, and stop
    // the guest once its wall-clock budget is spent.
    store.epoch_deadline_callback(|mut ctx| {
        let sandbox = ctx.data_mut();
        if Instant::now() >= sandbox.deadline {
            sandbox.timed_out = true;
            Err(wasmtime::Trap::Interrupt.into())
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
    store
}

/// Prepares `store` for one call that may run for `timeout`, and returns
/// the call's deadline. The memory cap is fixed per store (see `take_idle`
/// in `plugin.rs`).
pub(crate) fn arm(store: &mut Store<Sandbox>, timeout: Duration) -> Instant {
    let sandbox = store.data_mut();
    sandbox.deadline = Instant::now() + timeout;
    sandbox.timed_out = false;
    sandbox.memory_exceeded = false;
    let deadline = sandbox.deadline;
    // Enter the callback at the next tick; it decides from the wall clock.
    store.set_epoch_deadline(1);
    deadline
}

impl Sandbox {
    /// What stopped the last call, if the sandbox stopped it.
    pub(crate) fn stop(&self) -> Option<Stop> {
        if self.timed_out {
            Some(Stop::Timeout)
        } else if self.memory_exceeded {
            Some(Stop::Memory)
        } else {
            None
        }
    }

    /// Linear memory the instance holds now, in bytes.
    pub(crate) fn memory_used(&self) -> u64 {
        self.memory_used
    }

    /// The memory cap this store was made with.
    pub(crate) fn memory_cap(&self) -> u64 {
        self.memory_cap
    }

    /// Writes what the guest printed during the call to the log under the
    /// plugin's name, and empties the buffers for the next call.
    pub(crate) fn flush_output(&self, plugin: &str) {
        for (stream, capture) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let (bytes, dropped) = capture.take();
            if bytes.is_empty() && dropped == 0 {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            tracing::info!(
                target: "evald::plugin",
                plugin,
                stream,
                dropped_bytes = dropped,
                "{}",
                text.trim_end()
            );
        }
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            // The module's own declared maximum: `memory.grow` returns -1 as
            // the spec says; not our limit, so not a memory overrun.
            return Ok(false);
        }
        let total = self
            .memory_used
            .saturating_sub(current as u64)
            .saturating_add(desired as u64);
        if total > self.memory_cap {
            self.memory_exceeded = true;
            // An error here traps at the `memory.grow` (wasmtime's
            // trap-on-grow-failure): a Rust guest would otherwise abort as
            // `unreachable` and hide the cause.
            wasmtime::bail!(
                "memory limit of {} bytes reached growing to {total}",
                self.memory_cap
            );
        }
        self.memory_used = total;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The OS refused memory we had allowed: stop the guest rather than
        // leave our count wrong; the store is thrown away after a trap.
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// Clocks that always read zero: a plugin's score must not depend on when it
/// runs, and the observation already carries the request's timings.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// One captured output stream: keeps the first [`CAPTURE_BYTES`] of a call
/// and counts the rest. Cloned into WASI, which hands the guest a fresh
/// stream over the same buffer each time it asks for stdout.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

#[derive(Default)]
struct Captured {
    /// What was kept.
    bytes: Vec<u8>,
    /// How many bytes did not fit.
    dropped: u64,
}

impl Capture {
    fn push(&self, data: &[u8]) {
        let mut captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = CAPTURE_BYTES.saturating_sub(captured.bytes.len());
        let kept = data.len().min(room);
        captured.bytes.extend_from_slice(&data[..kept]);
        captured.dropped += (data.len() - kept) as u64;
    }

    fn take(&self) -> (Vec<u8>, u64) {
        let mut captured = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut captured.dropped);
        (std::mem::take(&mut captured.bytes), dropped)
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        // Always ready: what overflows the buffer is dropped, never refused,
        // so the guest never blocks or traps on a full pipe.
        Ok(CAPTURE_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_bytes_and_counts_the_rest() {
        let capture = Capture::default();
        capture.push(&[b'a'; CAPTURE_BYTES - 1]);
        capture.push(b"xyz");
        let (bytes, dropped) = capture.take();
        assert_eq!(bytes.len(), CAPTURE_BYTES);
        assert_eq!(bytes.last(), Some(&b'x'));
        assert_eq!(dropped, 2);
        assert_eq!(capture.take(), (Vec::new(), 0));
    }
}
