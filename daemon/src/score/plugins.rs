//! The daemon's side of the plugin sandbox: turns job cases and request records into the plain
//! types of `evald-plugin-host` and back. The host crate is the only one that sees wasmtime;
//! this module only adapts. Loading compiles (or takes from the cache in `data_dir`), which
//! blocks: async callers go through [`Plugins::scorer_async`] and friends.

use std::path::Path;

use evald_model::{Message, Record};
use evald_plugin_host as host;

use crate::job::{Case, PluginLimits};

/// Why a plugin gave no result: its text is recorded on the score (or the run), its
/// [`cause`](PluginError::cause) labels `evald_plugin_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The sandbox itself could not start (the engine, the compiled-code cache folder).
    #[error("plugin sandbox: {0}")]
    Sandbox(#[from] host::HostError),
    /// The plugin could not be loaded (missing, not a component, wrong world or version).
    #[error("{0}")]
    Load(#[from] host::LoadError),
    /// A call into the plugin failed (trap, time or memory limit, its own error, a bad value).
    #[error("plugin {plugin}: {source}")]
    Call {
        /// The plugin's name.
        plugin: String,
        /// What the host reported.
        source: host::PluginError,
    },
    /// The loading task panicked or was cancelled.
    #[error("loading the plugin failed: {0}")]
    Task(String),
}

impl PluginError {
    /// The cause as a metric label: `load`, `trap`, `timeout`, `memory`, `guest`, `bad_score`,
    /// `wrong_kind` or `sandbox`.
    pub fn cause(&self) -> &'static str {
        match self {
            PluginError::Sandbox(_) | PluginError::Task(_) => "sandbox",
            PluginError::Load(_) => "load",
            PluginError::Call { source, .. } => match source {
                host::PluginError::Trap(_) => "trap",
                host::PluginError::Timeout(_) => "timeout",
                host::PluginError::MemoryLimit(_) => "memory",
                host::PluginError::Guest(_) => "guest",
                host::PluginError::BadScore(_) => "bad_score",
                host::PluginError::WrongKind { .. } => "wrong_kind",
            },
        }
    }
}

/// The plugin sandbox, shared by every run: one engine, one compiled-code cache.
#[derive(Clone)]
pub struct Plugins {
    host: host::Host,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugins")
            .field("stats", &self.host.stats())
            .finish()
    }
}

/// A loaded score plugin.
#[derive(Clone)]
pub struct ScorerPlugin(host::Plugin);

/// A loaded generator plugin.
#[derive(Clone)]
pub struct GeneratorPlugin(host::Plugin);

fn limits(l: PluginLimits) -> host::Limits {
    host::Limits {
        timeout: l.timeout,
        memory_bytes: l.memory_bytes,
    }
}

impl Plugins {
    /// A sandbox whose compiled-plugin cache lives in `cache_dir`.
    pub fn new(cache_dir: &Path) -> Result<Plugins, PluginError> {
        Ok(Plugins {
            host: host::Host::new(cache_dir)?,
        })
    }

    /// Compilations and cache hits so far (a restart that recompiles nothing shows 0 compiled).
    pub fn stats(&self) -> host::HostStats {
        self.host.stats()
    }

    fn load(&self, path: &Path, kind: host::PluginKind) -> Result<host::Plugin, PluginError> {
        let p = self.host.load(path, kind)?;
        // Observable proof that a restart does not recompile: from_cache=true.
        tracing::debug!(
            plugin = p.name(),
            from_cache = p.from_cache(),
            "plugin loaded"
        );
        Ok(p)
    }

    /// Loads a score plugin (blocking).
    pub fn scorer(&self, path: &Path) -> Result<ScorerPlugin, PluginError> {
        self.load(path, host::PluginKind::Scorer).map(ScorerPlugin)
    }

    /// Loads a generator plugin (blocking).
    pub fn generator(&self, path: &Path) -> Result<GeneratorPlugin, PluginError> {
        self.load(path, host::PluginKind::Generator)
            .map(GeneratorPlugin)
    }

    /// Loads a score plugin off the async threads.
    pub async fn scorer_async(&self, path: &Path) -> Result<ScorerPlugin, PluginError> {
        let (me, path, span) = (self.clone(), path.to_path_buf(), tracing::Span::current());
        tokio::task::spawn_blocking(move || span.in_scope(|| me.scorer(&path)))
            .await
            .map_err(|e| PluginError::Task(e.to_string()))?
    }

    /// Loads a generator plugin off the async threads.
    pub async fn generator_async(&self, path: &Path) -> Result<GeneratorPlugin, PluginError> {
        let (me, path, span) = (self.clone(), path.to_path_buf(), tracing::Span::current());
        tokio::task::spawn_blocking(move || span.in_scope(|| me.generator(&path)))
            .await
            .map_err(|e| PluginError::Task(e.to_string()))?
    }
}

fn case_to_host(c: &Case) -> host::Case {
    host::Case {
        id: c.id.clone(),
        messages: c
            .messages
            .iter()
            .map(|m| host::Message {
                role: m.role.clone(),
                content: m.content.clone(),
            })
            .collect(),
        reference: c.reference.clone(),
    }
}

impl ScorerPlugin {
    /// The plugin's name (file stem), for logs and metrics.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Scores one record: `(value, note)`; the caller checks the range.
    pub async fn score(
        &self,
        case: &Case,
        record: &Record,
        config_json: &str,
        l: PluginLimits,
    ) -> Result<(f64, Option<String>), PluginError> {
        let obs = host::Observation {
            case: case_to_host(case),
            target: record.target(),
            response: record.response.clone().unwrap_or_default(),
            latency_ms: record.response_time_ms.unwrap_or(0.0),
            ttft_ms: record.ttft_ms,
            prompt_tokens: record.prompt_tokens,
            completion_tokens: record.completion_tokens,
            finish_reason: record.finish_reason.clone(),
            error: record.error.clone(),
        };
        self.0
            .score(&obs, config_json, limits(l))
            .await
            .map(|s| (s.value, s.note))
            .map_err(|source| PluginError::Call {
                plugin: self.0.name().to_string(),
                source,
            })
    }
}

impl GeneratorPlugin {
    /// Produces cases.
    pub async fn generate(
        &self,
        config_json: &str,
        l: PluginLimits,
    ) -> Result<Vec<Case>, PluginError> {
        let cases = self
            .0
            .generate(config_json, limits(l))
            .await
            .map_err(|source| PluginError::Call {
                plugin: self.0.name().to_string(),
                source,
            })?;
        Ok(cases
            .into_iter()
            .map(|c| Case {
                id: c.id,
                messages: c
                    .messages
                    .into_iter()
                    .map(|m| Message {
                        role: m.role,
                        content: m.content,
                    })
                    .collect(),
                reference: c.reference,
            })
            .collect())
    }
}
