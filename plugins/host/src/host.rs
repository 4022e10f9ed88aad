//! The plugin host: one wasmtime `Engine` for the whole process, the epoch
//! ticker thread that makes time limits work, the WASI linker, and loading:
//! read, compile or take from cache, check the world and WIT version, and
//! pre-instantiate so that a call does not pay for linking.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

use crate::bindings::generator::GeneratorPre;
use crate::bindings::scorer::ScorerPre;
use crate::cache::{Cache, Key};
use crate::error::{HostError, LoadError, one_line};
use crate::plugin::{EngineHandle, Plugin, Pre};
use crate::sandbox::Sandbox;
use crate::{PluginKind, WIT_VERSION};

/// How often the ticker advances the engine's epoch: the granularity of
/// time limits and of a busy plugin's yields to the async executor.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The deepest wasm stack a plugin gets; deeper recursion traps as a stack
/// overflow instead of growing without bound.
const MAX_WASM_STACK: usize = 512 * 1024;

/// Loads and runs plugins. Cheap to clone; all clones share one engine, one
/// compiled-plugin cache and one epoch ticker thread, which stops when the
/// last clone and the last [`Plugin`] loaded from it are dropped.
#[derive(Clone)]
pub struct Host {
    shared: Arc<Shared>,
}

/// Counters of what loading did, so that callers (and tests) can see that a
/// restart did not recompile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Plugins compiled from their bytes.
    pub compiled: u64,
    /// Plugins loaded from the on-disk compiled cache.
    pub cache_hits: u64,
    /// Plugins whose compiled code was already in this process's memory.
    pub memory_hits: u64,
}

/// What every clone of a [`Host`] and every [`Plugin`] share.
pub(crate) struct Shared {
    /// The one engine: epoch interruption on, bounded wasm stack.
    pub(crate) engine: Engine,
    /// WASI p2 (async), the only imports a plugin gets.
    linker: Linker<Sandbox>,
    /// The on-disk compiled cache.
    cache: Cache,
    /// The last compiled component per plugin name, so that loading the same
    /// file again (a job reload) does not even deserialize. Keyed by name
    /// rather than content so that editing a plugin replaces its entry.
    loaded: Mutex<HashMap<String, (Key, Component)>>,
    /// [`HostStats::compiled`].
    compiled: AtomicU64,
    /// [`HostStats::cache_hits`].
    cache_hits: AtomicU64,
    /// [`HostStats::memory_hits`].
    memory_hits: AtomicU64,
    /// Advances the epoch while anything can still call a plugin.
    _ticker: Ticker,
}

impl Host {
    /// Starts a host whose compiled-plugin cache lives in `cache_dir`
    /// (created with mode 0700 if missing; entries are 0600).
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Host, HostError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(MAX_WASM_STACK);
        let engine = Engine::new(&config).map_err(|e| HostError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| HostError::Engine(format!("{e:#}")))?;

        let cache = Cache::open(cache_dir.into(), &engine)?;
        let ticker = Ticker::start(engine.clone())?;
        Ok(Host {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                loaded: Mutex::new(HashMap::new()),
                compiled: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                memory_hits: AtomicU64::new(0),
                _ticker: ticker,
            }),
        })
    }

    /// Loads the plugin file at `path` as a `kind` plugin: compiles it or
    /// takes it from the cache, checks its world and WIT version, and
    /// pre-instantiates it.
    ///
    /// This blocks (file I/O, and compiling takes ~40 ms to seconds): from
    /// async code, call it inside `spawn_blocking`.
    pub fn load(&self, path: &Path, kind: PluginKind) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                LoadError::NotFound {
                    path: path.to_path_buf(),
                }
            } else {
                LoadError::Read {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        let file = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load_named(&file, &path.display().to_string(), &bytes, kind)
    }

    /// Loads a plugin from bytes already in memory, named `name` (a file
    /// name like `x.wasm`) in messages and logs. Accepts the component text
    /// format too, which is how tests write small hostile fixtures.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        kind: PluginKind,
    ) -> Result<Plugin, LoadError> {
        self.load_named(name, name, bytes, kind)
    }

    /// What loading has done so far, summed over all clones.
    pub fn stats(&self) -> HostStats {
        HostStats {
            compiled: self.shared.compiled.load(Ordering::Relaxed),
            cache_hits: self.shared.cache_hits.load(Ordering::Relaxed),
            memory_hits: self.shared.memory_hits.load(Ordering::Relaxed),
        }
    }

    /// `file` names the plugin in messages; `slot` names its entry in the
    /// in-memory map (the full path for files).
    fn load_named(
        &self,
        file: &str,
        slot: &str,
        bytes: &[u8],
        kind: PluginKind,
    ) -> Result<Plugin, LoadError> {
        let shared = &self.shared;
        let (component, from_cache) = self.component(file, slot, bytes)?;
        check_world(&shared.engine, &component, file, kind)?;

        let instance_pre =
            shared
                .linker
                .instantiate_pre(&component)
                .map_err(|e| LoadError::Invalid {
                    plugin: file.to_owned(),
                    reason: one_line(&format!("{e:#}")),
                })?;
        let signature_mismatch = |e: wasmtime::Error| LoadError::WrongWorld {
            plugin: file.to_owned(),
            expected: kind,
            found: one_line(&format!(
                "a `{}` function whose signature is not evald:plugin/{}@{WIT_VERSION}'s ({e:#})",
                export_name(kind),
                kind.world()
            )),
        };
        let pre = match kind {
            PluginKind::Scorer => {
                Pre::Scorer(ScorerPre::new(instance_pre).map_err(signature_mismatch)?)
            }
            PluginKind::Generator => {
                Pre::Generator(GeneratorPre::new(instance_pre).map_err(signature_mismatch)?)
            }
        };
        let name = file.strip_suffix(".wasm").unwrap_or(file);
        Ok(Plugin::new(
            Arc::clone(shared) as Arc<dyn EngineHandle>,
            name,
            from_cache,
            pre,
        ))
    }

    /// The compiled component for `bytes`: from this process's memory, from
    /// the disk cache, or compiled now (and then cached). The flag says
    /// whether compiling was avoided.
    fn component(
        &self,
        file: &str,
        slot: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), LoadError> {
        let shared = &self.shared;
        let key = shared.cache.key(bytes);
        let remembered = shared
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(slot)
            .filter(|(k, _)| *k == key)
            .map(|(_, component)| component.clone());
        if let Some(component) = remembered {
            shared.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok((component, true));
        }

        let (component, from_cache) = match shared.cache.load(&shared.engine, &key) {
            Some(component) => {
                shared.cache_hits.fetch_add(1, Ordering::Relaxed);
                (component, true)
            }
            None => {
                let component = compile(&shared.engine, file, bytes)?;
                shared.compiled.fetch_add(1, Ordering::Relaxed);
                shared.cache.store(&key, &component);
                (component, false)
            }
        };
        shared
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(slot.to_owned(), (key, component.clone()));
        Ok((component, from_cache))
    }
}

/// Compiles a component from its binary or text form.
fn compile(engine: &Engine, file: &str, bytes: &[u8]) -> Result<Component, LoadError> {
    let invalid = |reason: String| LoadError::Invalid {
        plugin: file.to_owned(),
        reason,
    };
    // The binary header says module or component; name the common mistake
    // of building a core module (wasm32-wasip1, or no component step).
    if let Some(version) = bytes.strip_prefix(b"\0asm").and_then(|rest| rest.get(..4))
        && version == [1, 0, 0, 0]
    {
        return Err(invalid(
            "it is a core WebAssembly module, not a component; build it for wasm32-wasip2".into(),
        ));
    }
    Component::new(engine, bytes).map_err(|e| invalid(one_line(&format!("{e:#}"))))
}

/// Checks that `component` was built for `kind`'s world of a compatible
/// `evald:plugin` version, and says what it found when not.
///
/// A world's function exports show at the component's top level (`score`,
/// `generate`); the package version shows in the name of the `types`
/// interface it imports (`evald:plugin/types@0.1.0`).
fn check_world(
    engine: &Engine,
    component: &Component,
    file: &str,
    kind: PluginKind,
) -> Result<(), LoadError> {
    let ty = component.component_type();
    let version = ty.imports(engine).find_map(|(name, _)| {
        name.strip_prefix("evald:plugin/")
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, version)| version.to_owned())
    });
    if let Some(found) = &version
        && !compatible(found)
    {
        return Err(LoadError::WrongVersion {
            plugin: file.to_owned(),
            found: found.clone(),
        });
    }
    let functions: Vec<&str> = ty
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentFunc(_)))
        .map(|(name, _)| name)
        .collect();
    if functions.contains(&export_name(kind)) {
        return Ok(());
    }
    let other = [PluginKind::Scorer, PluginKind::Generator]
        .into_iter()
        .find(|other| functions.contains(&export_name(*other)));
    let found = match other {
        Some(other) => format!(
            "evald:plugin/{}{}",
            other.world(),
            version.map(|v| format!("@{v}")).unwrap_or_default()
        ),
        None if functions.is_empty() => "no functions".to_owned(),
        None => format!(
            "no evald:plugin world (its functions: {})",
            functions.join(", ")
        ),
    };
    Err(LoadError::WrongWorld {
        plugin: file.to_owned(),
        expected: kind,
        found,
    })
}

/// The function a world exports.
fn export_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Scorer => "score",
        PluginKind::Generator => "generate",
    }
}

/// Whether a plugin built for `evald:plugin@version` runs here: the same
/// 0.1.x series, as semver and the component model's own import matching
/// treat 0.x minor versions as breaking.
fn compatible(version: &str) -> bool {
    let mut parts = version.split('.');
    parts.next() == Some("0") && parts.next() == Some("1")
}

impl EngineHandle for Shared {
    fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// The thread that advances the engine's epoch every [`EPOCH_TICK`]. It
/// stops when this value drops (its channel closes).
struct Ticker {
    /// Dropping it disconnects the channel, which ends the thread.
    stop: Option<mpsc::Sender<()>>,
    /// Joined on drop so the thread does not outlive the host.
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Ticker, HostError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("evald-plugin-epoch".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| HostError::Engine(format!("starting the epoch ticker thread: {e}")))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // It wakes at once on disconnect; a panic in it is not ours to
            // propagate from a destructor.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_the_same_minor_series_are_compatible() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("1.1.0"));
    }

    #[test]
    fn one_line_joins_lines() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
