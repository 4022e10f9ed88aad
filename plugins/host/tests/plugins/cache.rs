//! The compiled-plugin cache: a restart does not recompile, a changed plugin
//! does, and loading the same file twice in one process reuses the code.

use evald_plugin_host::{Host, HostStats, Limits, PluginKind};

use super::{example, observation};

#[tokio::test]
async fn a_second_host_on_the_same_cache_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("plugin-cache");
    let path = example("length");

    let first = Host::new(&cache).unwrap();
    let plugin = first.load(&path, PluginKind::Scorer).unwrap();
    assert!(!plugin.from_cache());
    assert_eq!(
        first.stats(),
        HostStats {
            compiled: 1,
            cache_hits: 0,
            memory_hits: 0
        }
    );
    // Loading it again in the same process takes the code from memory.
    let again = first.load(&path, PluginKind::Scorer).unwrap();
    assert!(again.from_cache());
    assert_eq!(first.stats().memory_hits, 1);
    assert_eq!(first.stats().compiled, 1);
    drop((first, plugin, again));

    // A restart: a new host (new engine) over the same folder.
    let second = Host::new(&cache).unwrap();
    let plugin = second.load(&path, PluginKind::Scorer).unwrap();
    assert!(plugin.from_cache());
    assert_eq!(
        second.stats(),
        HostStats {
            compiled: 0,
            cache_hits: 1,
            memory_hits: 0
        }
    );
    // And the cached code works.
    let score = plugin
        .score(&observation("hello", None), "{}", Limits::default())
        .await
        .unwrap();
    assert_eq!(score.value, 1.0);
}

#[tokio::test]
async fn a_changed_plugin_file_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("plugin-cache");
    let path = dir.path().join("tiny.wasm");
    let v1 = "(component (core module $m (func (export \"f\"))) (core instance (instantiate $m)))";
    std::fs::write(&path, v1).unwrap();

    let host = Host::new(&cache).unwrap();
    // Not a scorer, but loading compiles (and caches) before the world check.
    assert!(host.load(&path, PluginKind::Scorer).is_err());
    assert_eq!(host.stats().compiled, 1);

    let restarted = Host::new(&cache).unwrap();
    assert!(restarted.load(&path, PluginKind::Scorer).is_err());
    assert_eq!(
        (restarted.stats().compiled, restarted.stats().cache_hits),
        (0, 1)
    );

    std::fs::write(&path, format!("{v1} ;; edited")).unwrap();
    assert!(restarted.load(&path, PluginKind::Scorer).is_err());
    assert_eq!(
        restarted.stats().compiled,
        1,
        "new bytes, new key: compiled even though the same path is in memory"
    );
    assert_eq!(restarted.stats().memory_hits, 0);
}
