//! The shipped config and example jobs stay valid: `evald check` on the repository's own
//! `evald.toml` passes, and every example job loads.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn the_shipped_config_and_jobs_pass_check() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_evald"))
        .current_dir(root)
        .env_remove("EVALD_CONFIG")
        .args(["check"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4 job(s) are valid"), "{text}");
}

#[test]
fn check_names_a_missing_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_evald"))
        .current_dir(dir.path())
        .env_remove("EVALD_CONFIG")
        .args(["check", "--config", "nope.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("nope.toml:1:1: cannot read"));
}

#[test]
fn the_example_config_in_contrib_is_valid() {
    use std::os::unix::fs::PermissionsExt;
    let creds = tempfile::tempdir().unwrap();
    let key = creds.path().join("litellm-api-key");
    std::fs::write(&key, "sk-example\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/evald.example.toml"
    ))
    .unwrap();
    let path = dir.path().join("evald.toml");
    std::fs::write(&path, text).unwrap();
    // The only job-independent part is the config itself; validate it with the credential set.
    let out = Command::new(env!("CARGO_BIN_EXE_evald"))
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The jobs directory /etc/evald/jobs does not exist here: that is the one problem expected.
    assert!(
        !text.contains("evald.toml:"),
        "the config itself has no problem: {text}"
    );
}
