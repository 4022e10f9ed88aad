//! Runs evald's WebAssembly plugins: scorers and prompt generators built as
//! components of the WIT package `evald:plugin@0.1.0` (`plugins/wit/`).
//!
//! This is the only crate of evald that depends on wasmtime; its public API
//! is plain Rust so that the daemon never sees a wasmtime type. The pieces:
//!
//! - [`Host`] (`host.rs`) owns the one wasmtime `Engine`, the epoch ticker
//!   that enforces time limits, and the linker with the locked-down WASI. It
//!   loads plugin files: compiles them once, caches the compiled code on disk
//!   (`cache.rs`), and checks the world and WIT version a plugin was built for.
//! - [`Plugin`] (`plugin.rs`) is one loaded plugin, ready to be called with a
//!   time and memory limit per call; failures come back as [`PluginError`]
//!   values to record, never as panics.
//! - `sandbox.rs` is the state of one plugin instance: its WASI context with
//!   no files, network, environment or clock, its captured stdout/stderr and
//!   its memory accounting.
//! - `bindings.rs` holds the code generated from the WIT, kept private.
//! - `error.rs` holds the error enums: [`HostError`], [`LoadError`],
//!   [`PluginError`].
//!
//! The plain data types below mirror the WIT records one to one.

mod bindings;
mod cache;
mod error;
mod host;
mod plugin;
mod sandbox;

use std::fmt;
use std::time::Duration;

pub use error::{HostError, LoadError, PluginError};
pub use host::{Host, HostStats};
pub use plugin::Plugin;

/// The WIT package version this host implements. A plugin built for another
/// semver-compatible 0.1.x version is accepted; any other version is refused
/// with [`LoadError::WrongVersion`].
pub const WIT_VERSION: &str = "0.1.0";

/// One chat message of a case, as sent to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Who speaks: `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

/// One prompt of a job: the messages sent to every target and an optional
/// reference answer for scorers to compare against.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    /// The case's id, unique within its job.
    pub id: String,
    /// The conversation sent to the model, in order.
    pub messages: Vec<Message>,
    /// The expected answer, if any.
    pub reference: Option<String>,
}

/// What happened when one case was sent to one target: what a scorer judges.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The case that was sent.
    pub case: Case,
    /// The target as `endpoint/model`.
    pub target: String,
    /// The model's full response text; empty when the request failed.
    pub response: String,
    /// Time from sending the request to its last byte, in milliseconds.
    pub latency_ms: f64,
    /// Time to the first streamed token in milliseconds, when streamed.
    pub ttft_ms: Option<f64>,
    /// Prompt tokens, if the endpoint reported usage.
    pub prompt_tokens: Option<u32>,
    /// Completion tokens, if the endpoint reported usage.
    pub completion_tokens: Option<u32>,
    /// The endpoint's finish reason, if given.
    pub finish_reason: Option<String>,
    /// Why the request failed, if it did.
    pub error: Option<String>,
}

/// A scorer plugin's verdict, already checked by the host: `value` is a
/// number in `0.0..=1.0`.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// The score, from 0.0 (worst) to 1.0 (best).
    pub value: f64,
    /// The plugin's optional short explanation.
    pub note: Option<String>,
}

/// The limits of one plugin call. A job sets them per scorer or generator
/// with the `timeout` and `memory` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time the call may take, instantiation included. Checked
    /// every 10 ms, so a runaway call stops within about 10 ms after it.
    pub timeout: Duration,
    /// The most linear memory the plugin instance may hold, in bytes, summed
    /// over all its memories.
    pub memory_bytes: u64,
}

impl Default for Limits {
    /// 1 second and 64 MiB, the defaults of the job file.
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Which world a plugin implements, and so which call it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// The `scorer` world: [`Plugin::score`].
    Scorer,
    /// The `generator` world: [`Plugin::generate`].
    Generator,
}

impl PluginKind {
    /// The world's name in the WIT package (`scorer` or `generator`).
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Scorer => "scorer",
            PluginKind::Generator => "generator",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}
