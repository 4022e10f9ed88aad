//! evald: scheduled LLM comparison and benchmark jobs from TOML files, scored by built-in
//! scorers and sandboxed WebAssembly plugins, every request stored in redb, a read-only page,
//! exports and metrics.
//!
//! Module map:
//! - [`config`]: `evald.toml`, parsed then validated.
//! - [`job`]: job files, parsed then validated against the config.
//! - [`diag`]: `path:line:col: message` diagnostics.
//! - [`endpoint`]: the OpenAI-compatible client (plain and streamed) and [`simulated`] model.
//! - [`scorer`]: built-in scorers and plugin scorers; [`plugins`] adapts the sandbox.
//! - [`runner`]: one run of a compare job; [`bench`]: benchmark runs.
//! - [`store`]: redb tables, the batching writer, reads; [`rollup`]: hourly aggregates.
//! - [`registry`]: loaded jobs, broken job files, running flags.
//! - [`scheduler`]: cron firings, skip-if-running, the run limit.
//! - [`daemon`]: `evald serve`: wires it all, reloads, shuts down.
//! - [`view`]: the read-only model the web crate reads; [`metrics`]: the Prometheus series.
//! - [`watch`]: hot reload of the jobs directory; [`service`]: systemd notifications.
//! - [`control`]: the Unix socket through which the CLI reaches a running daemon.
//! - [`cli`]: the other commands.

pub mod bench;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod diag;
pub mod endpoint;
pub mod job;
pub mod metrics;
pub mod plugins;
pub mod registry;
pub mod rollup;
pub mod runner;
pub mod scheduler;
pub mod scorer;
pub mod service;
pub mod simulated;
pub mod store;
pub mod view;
pub mod watch;
