//! evald's vocabulary, shared by the daemon and the page: what a request record is, what a run
//! and its per-target results are, which records a filter wants, the analytics summary, and the
//! one aggregator that turns records into a run's figures. Plain data with serde; no storage
//! layout, no I/O.
//!
//! - [`record`]: [`Record`] (owned) and [`RowRef`] (borrowed from stored bytes), [`RecordFilter`].
//! - [`run`]: [`RunSummary`], [`TargetSummary`], [`BenchSummary`], [`JobKind`], [`Trigger`],
//!   [`RunStatus`].
//! - [`tally`]: [`Tally`], the per-target aggregator.
//! - [`score`]: the scoring maths (weighted mean, all passed).
//! - [`stats`]: [`Stats`], the windowed analytics summary.
//! - [`fmt`]: latencies and long texts shortened for people.
//! - [`watch`]: verdicts against a baseline, served-model identity and events, run diffs.
//! - [`jobs`]: [`JobInfo`] and [`InvalidJob`], what the registry reports.

pub mod alerts;
pub mod fmt;
pub mod jobs;
pub mod record;
pub mod run;
pub mod score;
pub mod stats;
pub mod tally;
pub mod watch;

pub use alerts::{AlertState, AlertStatus, AlertsView, Delivery};
pub use jobs::{InvalidJob, JobInfo};
pub use record::{Message, Metadata, Record, RecordFilter, RecordJson, RowRef, Score};
pub use run::{
    BenchSummary, Ci95, JobKind, Percentiles, RunStatus, RunSummary, TargetSummary, Trigger,
};
pub use score::{all_passed, mean, weighted_mean};
pub use stats::{Stats, StatsGroup, TokenStats};
pub use tally::{Tally, TargetTally};
pub use watch::{DiffRow, Event, Identity, TargetWatch, Verdict};
