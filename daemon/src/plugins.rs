//! The daemon's side of the plugin sandbox: turns job cases and request records into the plain
//! types of `evald-plugin-host` and back. The host crate is the only one that sees wasmtime.

use std::path::Path;
use std::time::Duration;

use crate::job::{Case, PluginLimits};
use evald_web::model::Record;

/// Why a plugin call gave no result.
pub type PluginError = String;

/// The plugin sandbox, shared by every run.
#[derive(Clone, Debug)]
pub struct Plugins {}

/// A loaded score plugin.
#[derive(Clone, Debug)]
pub struct ScorerPlugin {}

/// A loaded generator plugin.
#[derive(Clone, Debug)]
pub struct GeneratorPlugin {}

impl Plugins {
    /// A sandbox whose compiled-plugin cache lives in `cache_dir`.
    pub fn new(_cache_dir: &Path) -> Result<Plugins, String> {
        Ok(Plugins {})
    }

    /// Loads a score plugin.
    pub fn scorer(&self, path: &Path) -> Result<ScorerPlugin, String> {
        Err(format!("{}: plugin support is not built in yet", path.display()))
    }

    /// Loads a generator plugin.
    pub fn generator(&self, path: &Path) -> Result<GeneratorPlugin, String> {
        Err(format!("{}: plugin support is not built in yet", path.display()))
    }
}

impl ScorerPlugin {
    /// Scores one record.
    pub async fn score(
        &self,
        _case: &Case,
        _record: &Record,
        _config_json: &str,
        _limits: PluginLimits,
    ) -> Result<(f64, Option<String>), PluginError> {
        Err("plugin support is not built in yet".into())
    }
}

impl GeneratorPlugin {
    /// Produces cases.
    pub async fn generate(&self, _config_json: &str, _limits: PluginLimits) -> Result<Vec<Case>, PluginError> {
        let _ = Duration::ZERO;
        Err("plugin support is not built in yet".into())
    }
}
