//! Builds the example plugins once per test (or bench) run. Shared with
//! `benches/plugins.rs` and the end-to-end tests (`tests/`) through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The folder the example plugins are built into, building them first (once
/// per test run). The examples are their own workspace with their own target
/// folder, so this does not wait on the lock of the build running the tests.
pub fn examples_dir() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        // Found from whichever crate includes this file (the host's tests, the end-to-end tests).
        let examples = Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(|d| d.join("plugins/examples"))
            .find(|d| d.join("Cargo.toml").is_file())
            .expect("plugins/examples above this crate");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--workspace",
            ])
            .arg("--manifest-path")
            .arg(examples.join("Cargo.toml"))
            // The examples' own target folder, wherever the tests build.
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("running cargo to build the example plugins");
        assert!(
            status.success(),
            "building the example plugins failed (is the wasm32-wasip2 target installed? \
             `rustup target add wasm32-wasip2`)"
        );
        examples.join("target/wasm32-wasip2/release")
    })
}

/// The built example plugin `name` (`json_keys`, ...).
pub fn example(name: &str) -> PathBuf {
    examples_dir().join(format!("{name}.wasm"))
}
