//! The errors of the plugin host, one enum per operation: starting the host,
//! loading a plugin, calling a plugin. A [`PluginError`] is data to record on
//! the request record, not a failure of the daemon.

use std::path::PathBuf;
use std::time::Duration;

use crate::{PluginKind, WIT_VERSION};

/// Why [`Host::new`](crate::Host::new) failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The compiled-plugin cache folder could not be created.
    #[error("creating the plugin cache folder {path}: {source}")]
    CacheDir {
        /// The folder evald tried to create.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// wasmtime refused the engine configuration (a bug, or a platform
    /// wasmtime does not support).
    #[error("starting the WebAssembly engine: {0}")]
    Engine(String),
}

/// Why a plugin could not be loaded. Each message names the plugin file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No file at the path.
    #[error("plugin file {} not found", path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("reading plugin file {}: {source}", path.display())]
    Read {
        /// The path read.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component evald can run: a core module,
    /// not WebAssembly at all, invalid, or needing imports evald does not give.
    #[error("plugin {plugin} is not a usable WebAssembly component: {reason}")]
    Invalid {
        /// The plugin's file name.
        plugin: String,
        /// What is wrong, in one line.
        reason: String,
    },
    /// The component implements another world than the one asked for.
    #[error("plugin {plugin} exports {found} but a {expected} was expected")]
    WrongWorld {
        /// The plugin's file name.
        plugin: String,
        /// The world the job needs.
        expected: PluginKind,
        /// What the component exports instead.
        found: String,
    },
    /// The component was built for an incompatible version of the WIT package.
    #[error("plugin {plugin} was built for evald:plugin@{found}; this evald hosts {WIT_VERSION}")]
    WrongVersion {
        /// The plugin's file name.
        plugin: String,
        /// The version of `evald:plugin` the component was built against.
        found: String,
    },
}

/// Why one plugin call produced no result. The `Display` text is one line,
/// meant to be stored as the scorer's or generator's error.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// The plugin trapped: a panic, `unreachable`, an out-of-bounds access,
    /// a stack overflow, or a WASI call that failed fatally.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The call ran past its time limit and was stopped.
    #[error("plugin exceeded its time limit of {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the limit and was stopped.
    #[error("plugin exceeded its memory limit of {}", display_bytes(*.0))]
    MemoryLimit(u64),
    /// The plugin returned `err` with this reason.
    #[error("plugin returned an error: {0}")]
    Guest(String),
    /// A scorer returned a value that is not a number in 0..=1.
    #[error("plugin returned an invalid score: {0}")]
    BadScore(String),
    /// The call does not match the plugin's world (`score` on a generator).
    #[error("plugin is a {found}, not a {expected}")]
    WrongKind {
        /// The kind the call needs.
        expected: PluginKind,
        /// The kind the plugin was loaded as.
        found: PluginKind,
    },
}

/// `64 MiB` rather than `67108864`, for limits that are whole MiB or KiB.
fn display_bytes(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}

/// Error text on one line, for messages stored on request records.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_was_found() {
        let e = LoadError::WrongWorld {
            plugin: "x.wasm".into(),
            expected: PluginKind::Scorer,
            found: "evald:plugin/generator@0.1.0".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugin x.wasm exports evald:plugin/generator@0.1.0 but a scorer was expected"
        );
        let e = LoadError::WrongVersion {
            plugin: "x.wasm".into(),
            found: "0.2.0".into(),
        };
        assert_eq!(
            e.to_string(),
            "plugin x.wasm was built for evald:plugin@0.2.0; this evald hosts 0.1.0"
        );
        assert_eq!(
            PluginError::MemoryLimit(64 * 1024 * 1024).to_string(),
            "plugin exceeded its memory limit of 64 MiB"
        );
        assert_eq!(
            PluginError::Timeout(Duration::from_millis(1500)).to_string(),
            "plugin exceeded its time limit of 1500 ms"
        );
    }
}
