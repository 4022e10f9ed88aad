//! The request benchmark: what evald itself does with each answer of a closed-loop benchmark
//! on its lanes, apart from the network and the store's writer, in ns a request.
//!
//! Run: `cargo bench -p evald-bench --bench request -- [REQUESTS]` (default 200,000 a round).
//!
//! On the nginx stub's answer (`../shared/conformance/lib/nginx.conf`, 270 bytes) and the
//! conformance check's job, it times three stages, each including the ones before it:
//! - **parse**: the body read as a chat completion (`endpoint::parse_completion`), as both
//!   clients do;
//! - **record**: the stored record made from the outcome in the one record a lane reuses
//!   (`run::record_into`); beside it, in a fresh record, as `run::record_of` does on the other
//!   paths;
//! - **encode**: the record encoded into a batch (`RecordBatch::push`), taken every 256
//!   records as a lane's batch is, and dropped (handing it to the writer is not timed).
//!
//! The histograms and metrics a lane also counts each request in are not included. A load run
//! (`bench/load.sh`) cannot resolve a change of 1 % on a shared machine; this can. Plain
//! `std::time::Instant` timing over every request of a round; each stage shows the best and
//! the median of 7 rounds (the best is the least disturbed by other work on the machine).
//! Figures go in docs/benchmark.md.

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use evald::config::Config;
use evald::endpoint::{Outcome, parse_completion};
use evald::job::Job;
use evald::run::{Target, record_into};
use evald::store::{Payload, RecordBatch};

/// The daemon's allocator (daemon/src/main.rs): allocation is a good part of what is timed.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// nginx's answer in the conformance check, byte for byte.
const BODY: &[u8] = br#"{"id":"chatcmpl-stub","object":"chat.completion","created":1700000000,"model":"stub-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the nginx stub."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16}}"#;

const CONFIG: &str = r#"
[endpoints.stub]
url = "http://127.0.0.1:18080/v1"
provider = "stubprov"
"#;

/// The conformance check's job (`benchmark-perf`).
const JOB: &str = r#"
kind = "benchmark"
targets = ["stub/stub-model"]
stream = false
[[cases]]
id = "hello"
prompt = "Say hello."
[params]
max_tokens = 16
[load]
concurrency = 64
requests = 200000
warmup = 1000
"#;

/// Records a lane hands to the writer at once (`LaneBatch::FULL`).
const BATCH: usize = 256;
const ROUNDS: usize = 7;

/// What a request's outcome holds before its answer is read: the timings and attempt the
/// client sets.
fn outcome(i: usize) -> Outcome {
    let mut out = Outcome {
        started_ms: 1_764_000_000_000 + i as i64,
        latency_ms: Some(0.143),
        ..Outcome::default()
    };
    out.metadata.attempts = 1;
    out.metadata.http_status = Some(200);
    out
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map_or(200_000, |a| a.parse().expect("REQUESTS is a number"));
    let config = Config::parse(Path::new("evald.toml"), CONFIG).expect("the config parses");
    let job = Job::parse(Path::new("jobs/load.toml"), JOB, &config).expect("the job parses");
    let target = Target {
        endpoint: config.endpoints["stub"].clone(),
        model: "stub-model".into(),
        price: None,
    };
    let case = &job.cases[0];
    let payload = Payload::of(&case.messages);
    let run_id = "1a235a54f4ef536d";

    let parse = |i: usize| {
        let mut out = outcome(i);
        parse_completion(black_box(BODY), &mut out, "stub");
        out
    };
    let extra = |m: &mut evald_model::Metadata| {
        m.warmup = false;
        m.send_lag_ms = None;
    };
    let record = |i: usize, r: &mut evald_model::Record| {
        let mut out = parse(i);
        let gaps = std::mem::take(&mut out.gaps_us);
        record_into(r, &job, run_id, &target, case, Vec::new(), out, extra);
        gaps
    };
    let mut batch = RecordBatch::default();
    let mut r = evald_model::Record::default();

    println!("{n} requests a round, best and median of {ROUNDS} rounds, ns a request:");
    println!("| stage | best | median |");
    println!("| --- | ---: | ---: |");
    report("parse", n, |i| {
        black_box(parse(i));
    });
    report("parse + record afresh", n, |i| {
        // What `record_of` does: a fresh record, made by `record_into`.
        let mut fresh = evald_model::Record::default();
        black_box(record(i, &mut fresh));
        black_box(fresh);
    });
    report("parse + record", n, |i| {
        black_box(record(i, &mut r));
        black_box(&r);
    });
    report("parse + record + encode", n, |i| {
        let gaps = record(i, &mut r);
        batch.push(&r, Some(&payload));
        black_box(gaps);
        if batch.len() >= BATCH {
            black_box(batch.take());
        }
    });
}

/// Times `ROUNDS` rounds of `n` calls of `one` and prints a row.
fn report(stage: &str, n: usize, mut one: impl FnMut(usize)) {
    // A round to warm the caches and the allocator, untimed.
    for i in 0..n.min(10_000) {
        one(i);
    }
    let mut ns: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                one(i);
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    println!("| {stage} | {:.0} | {:.0} |", ns[0], ns[ROUNDS / 2]);
}
