//! The on-disk cache of compiled plugins, so that a restart does not pay
//! for compiling every plugin again (~40 ms to seconds each, against ~0.2 ms
//! to load a cached artifact).
//!
//! An entry is named by the SHA-256 of the engine's compatibility hash and
//! the plugin's bytes: a changed plugin file or a new wasmtime/engine config
//! gets a new name and so is compiled again. Entries are written to a temp
//! file and renamed into place (mode 0600), so a reader never sees half an
//! entry. A cache entry is native code that wasmtime maps and runs without
//! checking it, so only files that look like ours are loaded (see
//! [`Cache::load`]); an unreadable or stale entry is compiled over.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::HostError;

/// The name of a compiled plugin: SHA-256 over the engine's compatibility
/// hash and the plugin bytes.
pub(crate) type Key = [u8; 32];

/// The cache folder and the engine half of every key.
pub(crate) struct Cache {
    /// Where entries live (created by [`Cache::open`]).
    dir: PathBuf,
    /// `Engine::precompile_compatibility_hash`, folded to bytes once.
    engine_hash: [u8; 32],
}

/// Makes temp file names unique within this process; the pid makes them
/// unique across processes sharing the folder (`evald serve` and `evald
/// check` may both load plugins).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Opens the cache in `dir`, creating it (mode 0700) if needed.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> Result<Cache, HostError> {
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&dir).map_err(|source| HostError::CacheDir {
            path: dir.clone(),
            source,
        })?;
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Cache {
            dir,
            engine_hash: hasher.0.finalize().into(),
        })
    }

    /// The key of a plugin with these bytes under this engine.
    pub(crate) fn key(&self, wasm: &[u8]) -> Key {
        let mut sha = Sha256::new();
        sha.update(self.engine_hash);
        sha.update(wasm);
        sha.finalize().into()
    }

    /// The compiled component stored under `key`, if there is a usable one.
    pub(crate) fn load(&self, engine: &Engine, key: &Key) -> Option<Component> {
        let path = self.path(key);
        let meta = fs::metadata(&path).ok()?;
        if !written_by_us(&meta) {
            tracing::warn!(
                path = %path.display(),
                "ignoring a compiled-plugin cache file evald did not write (owner or mode differ)"
            );
            return None;
        }
        #[allow(unsafe_code)]
        // SAFETY: wasmtime runs deserialized code unchecked, so the file must
        // have been produced by `Component::serialize`. It has: it sits under
        // a name derived from this engine's compatibility hash in evald's
        // own cache folder, is owned by the user evald runs as and is not
        // writable by anyone else (`written_by_us`); we only ever put
        // `serialize` output there. wasmtime still checks its header and
        // engine compatibility and returns an error on a mismatch.
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %format!("{error:#}"),
                    "compiled-plugin cache entry unusable; compiling again"
                );
                None
            }
        }
    }

    /// Stores `component` under `key`. A failure only costs a compile at the
    /// next start, so it is logged, not returned.
    pub(crate) fn store(&self, key: &Key, component: &Component) {
        let path = self.path(key);
        let result = component
            .serialize()
            .map_err(|e| std::io::Error::other(format!("{e:#}")))
            .and_then(|bytes| write_atomically(&self.dir, &path, &bytes));
        if let Err(error) = result {
            tracing::warn!(
                path = %path.display(),
                %error,
                "could not write the compiled-plugin cache; the plugin will be compiled again next start"
            );
        }
    }

    fn path(&self, key: &Key) -> PathBuf {
        let mut name = String::with_capacity(2 * key.len() + 6);
        for byte in key {
            name.push_str(&format!("{byte:02x}"));
        }
        name.push_str(".cwasm");
        self.dir.join(name)
    }
}

/// Writes `bytes` to a temp file in `dir` (mode 0600) and renames it to
/// `path`, so that readers see the whole file or none.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    let renamed = written.and_then(|()| fs::rename(&temp, path));
    if renamed.is_err() {
        // Best effort: the temp file is garbage either way.
        let _ = fs::remove_file(&temp);
    }
    renamed
}

/// A regular file owned by the user we run as and writable by no one else.
#[cfg(unix)]
fn written_by_us(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.is_file() && meta.uid() == current_uid() && meta.mode() & 0o022 == 0
}

#[cfg(not(unix))]
fn written_by_us(meta: &fs::Metadata) -> bool {
    meta.is_file()
}

/// The effective uid, read as the owner of `/proc/self` (Linux): std has no
/// `geteuid`, and this avoids an `unsafe` libc call. Without `/proc` no uid
/// matches, so the cache is never trusted and plugins are compiled each start.
#[cfg(unix)]
fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UID.get_or_init(|| {
        fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(u32::MAX)
    })
}

/// Feeds a `std::hash::Hash` value (the engine's compatibility hash) into
/// SHA-256, so that the key is stable across processes, unlike `DefaultHasher`.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        // Never used: the digest is read through `finalize`.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_bytes_and_entries_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = Cache::open(dir.path().join("cache"), &engine).unwrap();
        assert_ne!(cache.key(b"a"), cache.key(b"b"));
        assert_eq!(cache.key(b"a"), cache.key(b"a"));

        let component = Component::new(&engine, "(component)").unwrap();
        let key = cache.key(b"(component)");
        assert!(cache.load(&engine, &key).is_none());
        cache.store(&key, &component);
        assert!(cache.load(&engine, &key).is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = cache.path(&key);
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            // A file others could have written is not trusted.
            fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
            assert!(cache.load(&engine, &key).is_none());
        }
    }
}
