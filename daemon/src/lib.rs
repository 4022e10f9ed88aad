//! evald: scheduled LLM comparison and benchmark jobs from TOML files, scored by built-in
//! scorers and sandboxed WebAssembly plugins, every request stored in redb, a read-only page,
//! exports and metrics.
//!
//! The vocabulary (the request record, run summaries, the filter, the per-target aggregator)
//! is the `evald-model` crate; the page, API and exports are `evald-web`, which reads through
//! its `ReadModel` trait; the WebAssembly sandbox is `evald-plugin-host`. This crate's modules
//! import one way, each only from the layers above it in this list:
//!
//! 1. [`diag`]: `path:line:col: message` diagnostics; [`metrics`]: the Prometheus series.
//! 2. [`config`]: `evald.toml`, parsed then validated.
//! 3. [`job`]: job files, parsed then validated against the config; `evald compare`'s ad hoc job.
//! 4. [`endpoint`]: the OpenAI-compatible client (plain and streamed) and the simulated model.
//! 5. [`score`]: built-in scorers and plugin scorers and generators over the sandbox.
//! 6. [`store`]: the redb file: tables, record codec, the batching writer, reads, rollups,
//!    retention and migrations.
//! 7. [`run`]: one run of a job: compare runs and benchmark runs, their progress and report;
//!    after a compare run, served-model identities and the `[watch]` test (`run/watch.rs`).
//! 8. [`registry`]: loaded jobs, broken job files, running flags; [`scheduler`]: cron firings,
//!    skip-if-running, the run limit; [`alert`]: alert states after each run and on a tick,
//!    and the delivery queue; [`view`] (which reads `alert`, never the other way): the store,
//!    registry and alert states as the web's read model.
//! 9. [`control`]: the Unix-socket protocol between the CLI and a running daemon, both ends.
//! 10. [`serve`]: `evald serve`: wires it all, the control socket's handler, the jobs-directory
//!     watcher, systemd notifications, reloads and shutdown.
//!
//! The commands (`check`, `run`, `compare`, …) live on the binary's side, in `cli/`.

pub mod alert;
pub mod config;
pub mod control;
pub mod diag;
pub mod endpoint;
pub mod job;
pub mod metrics;
pub mod registry;
pub mod run;
pub mod scheduler;
pub mod score;
pub mod serve;
pub mod store;
pub mod view;
