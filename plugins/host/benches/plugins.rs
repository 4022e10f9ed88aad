//! The plugin benchmark: `cargo bench -p evald-plugin-host --bench plugins`.
//!
//! Measures, on one core (a current-thread tokio runtime):
//! - calls/s of the trivial `length` scorer plugin on a warm instance, and
//!   of the same logic compiled natively (config parsed per call in both);
//!   the difference is the per-call overhead of the plugin boundary;
//! - a call on a fresh instance (what a call pays after a trap, or when
//!   more calls run at once than the pool keeps warm);
//! - cold start: loading the plugin by compiling it, from the on-disk
//!   compiled cache (a restart), and from memory (a job reload).
//!
//! Plain `std::time::Instant` timing of many iterations; per-call figures
//! show the best and the median of several runs (the best is the least
//! disturbed by other work on a shared machine), cold starts the median. No
//! criterion, to keep the dependency list short. Figures go in
//! `docs/plugins.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/plugins/build.rs"]
mod build;

use std::hint::black_box;
use std::time::{Duration, Instant};

use evald_plugin_host::{Case, Host, Limits, Message, Observation, PluginKind, Score};

const CONFIG: &str = r#"{"min": 1, "max": 280}"#;

fn main() {
    let path = build::example("length");
    let observation = observation();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let limits = Limits::default();

    // Cold start.
    let compile = median(5, || {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(dir.path()).unwrap();
        let start = Instant::now();
        host.load(&path, PluginKind::Scorer).unwrap();
        let took = start.elapsed();
        assert_eq!(host.stats().compiled, 1);
        took
    });
    let cache = tempfile::tempdir().unwrap();
    Host::new(cache.path())
        .unwrap()
        .load(&path, PluginKind::Scorer)
        .unwrap();
    let mut host_new = Vec::new();
    let cached = median(21, || {
        let start = Instant::now();
        let host = Host::new(cache.path()).unwrap();
        host_new.push(start.elapsed());
        let start = Instant::now();
        host.load(&path, PluginKind::Scorer).unwrap();
        let took = start.elapsed();
        assert_eq!((host.stats().compiled, host.stats().cache_hits), (0, 1));
        took
    });
    host_new.sort();
    let host_new = host_new[host_new.len() / 2];
    let host = Host::new(cache.path()).unwrap();
    let plugin = host.load(&path, PluginKind::Scorer).unwrap();
    let in_memory = median(21, || {
        let start = Instant::now();
        host.load(&path, PluginKind::Scorer).unwrap();
        start.elapsed()
    });

    // Calls.
    const NATIVE_CALLS: u32 = 2_000_000;
    let native = runs(7, || {
        let start = Instant::now();
        for _ in 0..NATIVE_CALLS {
            black_box(native_length(black_box(&observation), black_box(CONFIG)).unwrap());
        }
        start.elapsed() / NATIVE_CALLS
    });

    const WARM_CALLS: u32 = 200_000;
    let warm = runs(7, || {
        runtime.block_on(async {
            let start = Instant::now();
            for _ in 0..WARM_CALLS {
                let score = plugin.score(&observation, CONFIG, limits).await.unwrap();
                black_box(score);
            }
            start.elapsed() / WARM_CALLS
        })
    });

    // A different memory limit per call finds no warm instance to reuse.
    const FRESH_CALLS: u32 = 2_000;
    let fresh = runs(7, || {
        runtime.block_on(async {
            let start = Instant::now();
            for i in 0..FRESH_CALLS {
                let limits = Limits {
                    memory_bytes: limits.memory_bytes + u64::from(i) * 65_536,
                    ..limits
                };
                black_box(plugin.score(&observation, CONFIG, limits).await.unwrap());
            }
            start.elapsed() / FRESH_CALLS
        })
    });

    println!("evald plugin benchmark (trivial `length` scorer, one core)");
    println!("                               best                      median");
    for (what, (best, median)) in [
        ("native Rust call", native),
        ("plugin call, warm", warm),
        ("plugin call, fresh instance", fresh),
    ] {
        println!(
            "  {what:<28} {:>9.3} µs {:>11.0}/s   {:>9.3} µs {:>11.0}/s",
            us(best),
            per_s(best),
            us(median),
            per_s(median)
        );
    }
    println!(
        "  {:<28} {:>9.3} µs                {:>9.3} µs",
        "plugin call overhead",
        us(warm.0.saturating_sub(native.0)),
        us(warm.1.saturating_sub(native.1))
    );
    println!("  load, compiling              {:>9.3} ms", ms(compile));
    println!("  load, from disk cache        {:>9.3} ms", ms(cached));
    println!("  load, from memory            {:>9.3} ms", ms(in_memory));
    println!("  Host::new                    {:>9.3} ms", ms(host_new));
}

/// What the `length` plugin does, compiled natively.
fn native_length(observation: &Observation, config: &str) -> Result<Score, String> {
    #[derive(serde::Deserialize)]
    struct Config {
        min: usize,
        max: usize,
    }
    let config: Config = serde_json::from_str(config).map_err(|e| e.to_string())?;
    let chars = observation.response.chars().count();
    let passed = (config.min..=config.max).contains(&chars);
    Ok(Score {
        value: if passed { 1.0 } else { 0.0 },
        note: None,
    })
}

fn observation() -> Observation {
    Observation {
        case: Case {
            id: "france".into(),
            messages: vec![Message {
                role: "user".into(),
                content: "What is the capital of France? One word.".into(),
            }],
            reference: Some("Paris".into()),
        },
        target: "demo/echo".into(),
        response: "Paris".into(),
        latency_ms: 150.0,
        ttft_ms: Some(40.0),
        prompt_tokens: Some(14),
        completion_tokens: Some(1),
        finish_reason: Some("stop".into()),
        error: None,
    }
}

fn median(runs: usize, run: impl FnMut() -> Duration) -> Duration {
    self::runs(runs, run).1
}

/// The best and the median of `runs` runs.
fn runs(runs: usize, mut run: impl FnMut() -> Duration) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..runs).map(|_| run()).collect();
    times.sort();
    (times[0], times[runs / 2])
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn per_s(d: Duration) -> f64 {
    1.0 / d.as_secs_f64()
}
