//! `nosy`: a test plugin, not an example to copy. It tries what a plugin
//! must not be able to do and reports what it saw, or misbehaves on
//! request, so that evald's tests can check the sandbox with a real Rust
//! guest.
//!
//! `config = { mode = "probe" }` (the default): the score is 1.0 when the
//! plugin saw nothing (no files, no environment, no arguments, no network,
//! a clock stuck at zero) and 0.0 otherwise; the note is a JSON report.
//! Other modes: `"print"` writes `bytes` bytes to stdout and scores 1.0;
//! `"sleep"` sleeps `seconds`; `"hog"` allocates until stopped;
//! `"panic"` panics.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evald_plugin_sdk::{Observation, Score, Scorer, export_scorer};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    bytes: usize,
    #[serde(default)]
    seconds: u64,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    #[default]
    Probe,
    Print,
    Sleep,
    Hog,
    Panic,
}

struct Nosy;

impl Scorer for Nosy {
    type Config = Config;

    fn score(_observation: &Observation, config: &Config) -> Result<Score, String> {
        match config.mode {
            Mode::Probe => Ok(probe()),
            Mode::Print => {
                let line = [b'x'; 1024];
                let mut stdout = std::io::stdout();
                let mut left = config.bytes;
                while left > 0 {
                    let n = left.min(line.len());
                    stdout.write_all(&line[..n]).map_err(|e| e.to_string())?;
                    left -= n;
                }
                stdout.flush().map_err(|e| e.to_string())?;
                Ok(Score::new(1.0))
            }
            Mode::Sleep => {
                std::thread::sleep(Duration::from_secs(config.seconds));
                Ok(Score::new(1.0))
            }
            Mode::Hog => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                    if hoard.len() == usize::MAX {
                        return Ok(Score::new(0.0));
                    }
                }
            }
            Mode::Panic => panic!("nosy was asked to panic"),
        }
    }
}

/// Tries files, environment, arguments, network and clock; 1.0 if all
/// came back empty.
fn probe() -> Score {
    let root_listing = std::fs::read_dir("/").map(|d| d.count()).ok();
    let passwd = std::fs::read("/etc/passwd").is_ok();
    let cwd_listing = std::fs::read_dir(".").map(|d| d.count()).ok();
    let env = std::env::vars_os().count();
    let args = std::env::args_os().count();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", 80)).is_ok();
    let dns = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80)).is_ok();
    let clock_secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let saw_nothing = root_listing.is_none()
        && !passwd
        && cwd_listing.is_none()
        && env == 0
        && args == 0
        && !tcp
        && !dns
        && clock_secs == 0;
    let report = serde_json::json!({
        "root_listing": root_listing,
        "passwd": passwd,
        "cwd_listing": cwd_listing,
        "env": env,
        "args": args,
        "tcp": tcp,
        "dns": dns,
        "clock_secs": clock_secs,
    });
    Score::with_note(if saw_nothing { 1.0 } else { 0.0 }, report.to_string())
}

export_scorer!(Nosy);
