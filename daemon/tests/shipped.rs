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

/// `evald check` on contrib/evald.example.toml, as an operator would install it: the key file
/// in systemd's credentials directory, mode 0400. Only `jobs_dir` is pointed at a folder that
/// exists here, holding one job that targets both endpoints the example defines, so the check
/// can pass as a whole: the config is valid, its endpoints are there, and a job can use them.
#[test]
fn the_example_config_in_contrib_is_valid() {
    use std::os::unix::fs::PermissionsExt;
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/evald.example.toml"
    ))
    .unwrap();
    assert!(
        example.contains("jobs_dir = \"/etc/evald/jobs\""),
        "the example's jobs_dir changed; update this test"
    );
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    std::fs::write(
        jobs.join("uses-both.toml"),
        "targets = [\"gateway/gpt-4o-mini\", \"demo/careful\"]\n[[cases]]\nid = \"a\"\nprompt = \"What is 2 + 2?\"\n",
    )
    .unwrap();
    let path = dir.path().join("evald.toml");
    std::fs::write(
        &path,
        example.replace(
            "jobs_dir = \"/etc/evald/jobs\"",
            &format!("jobs_dir = \"{}\"", jobs.display()),
        ),
    )
    .unwrap();
    let check = |key: &str, mode: u32| {
        let creds = tempfile::tempdir().unwrap();
        let file = creds.path().join("litellm-api-key");
        std::fs::write(&file, key).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_evald"))
            .env("CREDENTIALS_DIRECTORY", creds.path())
            .env_remove("EVALD_CONFIG")
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };

    let (code, text) = check("sk-example\n", 0o400);
    assert!(
        !text.contains("evald.toml:"),
        "the config itself has no problem: {text}"
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("ok: {} and 1 job(s) are valid", path.display())),
        "the check passes with the job that uses both example endpoints: {text}"
    );

    // The check does read the config's key file: one that others can read is named as a
    // problem of the config, at its line — so the absence above means something.
    let (code, text) = check("sk-example\n", 0o644);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("evald.toml:") && text.contains("is readable by others"),
        "a key file readable by others is refused: {text}"
    );
}

#[test]
fn stats_refuses_a_window_out_of_range() {
    for days in ["0", "3661", "week"] {
        let out = Command::new(env!("CARGO_BIN_EXE_evald"))
            .args(["stats", "--days", days])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--days {days}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "days: `{days}` is not a whole number from 1 to 3660"
            )),
            "{err}"
        );
    }
}

#[test]
fn commands_work_from_a_shell_without_the_services_secrets() {
    // The example config reads its key from systemd's credentials and (here) its page token
    // from the service's environment: neither exists in an operator's shell, and `evald stats`
    // must still answer there.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../contrib/evald.example.toml"
    ))
    .unwrap()
    .replace(
        "/var/lib/evald",
        &dir.path().join("data").display().to_string(),
    )
    .replace(
        "# token_env = \"EVALD_WEB_TOKEN\"",
        "token_env = \"EVALD_TEST_TOKEN_NOT_SET\"",
    );
    assert!(text.contains("$CREDENTIALS_DIRECTORY/"));
    assert!(text.contains("token_env = \"EVALD_TEST_TOKEN_NOT_SET\""));
    let path = dir.path().join("evald.toml");
    std::fs::write(&path, text).unwrap();
    // A command as an operator's shell runs it: without the service's credentials or token.
    let in_shell = |command: &str| {
        Command::new(env!("CARGO_BIN_EXE_evald"))
            .env_remove("CREDENTIALS_DIRECTORY")
            .env_remove("EVALD_TEST_TOKEN_NOT_SET")
            .args([command, "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = in_shell("stats");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("requests"));
    // `evald check` says what this shell lacks, at its line (stats sends nothing, so it is
    // quiet about keys; a run says it for its own endpoints).
    let out = in_shell("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("evald.toml:")
            && l.contains(": warning: endpoints.gateway.api_key_file is under $CREDENTIALS_DIRECTORY, which only the service has")),
        "{text}"
    );
}
