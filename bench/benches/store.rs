//! The store benchmark: evald's redb store against SQLite holding the same records in the
//! origin report's schema (its three indexes, WAL mode), side by side.
//!
//! Run: `cargo bench -p evald-bench --bench store -- [RECORDS]` (default 1,000,000).
//! It measures ingest through the daemon's writer, 7-day stats, last-20, a full CSV export
//! (rows/s and peak memory), pruning 30 %, and bytes on disk per record, including a
//! prune-and-refill cycle. Results go to stdout as a table; docs/store.md keeps them.

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Instant;

use evald::store::rollup::hour_of;
use evald::store::{PruneCutoffs, Store};
use evald_model::{Message, Metadata, Record, RecordFilter, Score};
use evald_web::export::{ExportWriter, Format};

/// The daemon's allocator (daemon/src/main.rs), so the writer thread and the producers allocate
/// as they do in `evald serve`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY: i64 = 86_400_000;

/// A realistic record: one of 200 distinct prompts (~300 B of messages, as scheduled jobs
/// resend theirs), a ~700 B answer, usage, two scores.
fn record(i: u64, ts: i64) -> Record {
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 13;
    let prompt = format!(
        "Case {}: You are a careful assistant. Answer the question precisely, cite the fact you rely on, and keep it under a hundred words. Question: what is the capital of country number {} and why is it the capital? Reply in English.",
        h % 200,
        h % 200
    );
    let answer: String = format!("Answer {i}: ")
        + &"The capital is a city chosen for historical and political reasons; ".repeat(11);
    let models = [
        "gpt-4o-mini",
        "llama-3.1-8b",
        "qwen2.5-7b",
        "mistral-7b",
        "academic_search",
        "market_snapshot",
    ];
    let error = h.is_multiple_of(50);
    Record {
        id: 0,
        timestamp_ms: ts,
        model: models[(h % 6) as usize].into(),
        // A model is served by one provider, as behind a real gateway.
        provider: ["litellm", "vllm", "ollama"][(h % 6 % 3) as usize].into(),
        messages: vec![
            Message {
                role: "system".into(),
                content: "Reply concisely.".into(),
            },
            Message {
                role: "user".into(),
                content: prompt,
            },
        ],
        temperature: Some(0.7),
        max_tokens: Some(512),
        top_p: Some(0.9),
        response: (!error).then_some(answer),
        response_time_ms: Some(20.0 + (h % 3000) as f64),
        prompt_tokens: Some(60 + (h % 40) as u32),
        completion_tokens: Some(100 + (h % 200) as u32),
        total_tokens: Some(160 + (h % 240) as u32),
        finish_reason: Some("stop".into()),
        error: error.then(|| "HTTP 500 from gateway: upstream exploded".into()),
        metadata: Metadata {
            attempts: 1,
            ..Metadata::default()
        },
        job: format!("job-{}", h % 8),
        run_id: format!("{:011x}{:05x}", ts / 3_600_000 * 3_600_000, h % 8),
        case_id: format!("case-{}", h % 25),
        endpoint: "gateway".into(),
        ttft_ms: None,
        scores: vec![
            Score {
                name: "contains".into(),
                value: Some(1.0),
                passed: Some(true),
                weight: 1.0,
                error: None,
                note: None,
            },
            Score {
                name: "max-latency".into(),
                value: Some(0.8),
                passed: Some(false),
                weight: 0.5,
                error: None,
                note: None,
            },
        ],
        served_model: Some("gpt-4o-mini-2024-07-18".into()),
        system_fingerprint: Some("fp_0ba0d124f1".into()),
        cost_usd: None,
        cost_source: None,
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the resident set every 20 ms until stopped; returns the highest seen (KiB). (The
/// kernel's own peak mark cannot be reset everywhere: writing to clear_refs may be refused.)
struct PeakRss {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = rss_kib();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            peak.max(rss_kib())
        });
        PeakRss { stop, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

fn size(p: &Path) -> u64 {
    std::fs::read_dir(p.parent().unwrap_or(Path::new(".")))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&*p.file_name().unwrap_or_default().to_string_lossy())
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

struct Row {
    what: &'static str,
    evald: f64,
    sqlite: f64,
    unit: &'static str,
    better: &'static str,
}

fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let now = chrono::Utc::now().timestamp_millis();
    // n records spread over 30 days, in time order as a daemon writes them.
    let span = 30 * DAY;
    let ts = move |i: u64| now - span + (i as i128 * span as i128 / n as i128) as i64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut rows: Vec<Row> = Vec::new();

    eprintln!("generating and storing {n} records in evald (redb)…");
    let db = dir.path().join("evald.redb");
    let store = Store::open(&db).unwrap_or_else(|e| panic!("{e}"));
    let t = Instant::now();
    rt.block_on(async {
        let w = store.writer();
        // Several producers, as concurrent runs are. Each record is stamped when its producer
        // takes it, as a request is stamped when it is sent: records reach the writer nearly,
        // not exactly, in time order.
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let w = w.clone();
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    w.record(record(i, ts(i))).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        w.close().await;
    });
    let redb_ingest = n as f64 / t.elapsed().as_secs_f64();
    // EVALD_BENCH_EVALD_ONLY: ingest and export evald's side only (for profiling).
    if std::env::var_os("EVALD_BENCH_EVALD_ONLY").is_some() {
        let t = Instant::now();
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null");
        let out =
            std::io::BufWriter::with_capacity(64 * 1024, null.unwrap_or_else(|e| panic!("{e}")));
        let mut w = ExportWriter::new(Format::Csv, out).unwrap_or_else(|e| panic!("{e}"));
        let _ = store.export(&RecordFilter::default(), &mut |r| w.write_row(r).is_ok());
        println!(
            "export {:.0} rows/s",
            w.rows() as f64 / t.elapsed().as_secs_f64()
        );
        println!(
            "ingest {redb_ingest:.0} records/s; pages in use {:.0} B per record; file {:.0} B per record",
            store.live_bytes().unwrap_or(0) as f64 / n as f64,
            size(&db) as f64 / n as f64
        );
        return;
    }
    let redb_bytes = size(&db);
    let redb_live = store.live_bytes().unwrap_or(0);

    eprintln!(
        "storing the same records in SQLite (WAL, origin schema, 3 indexes, 1000 per transaction)…"
    );
    let sq_path = dir.path().join("requests.db");
    let mut sq = rusqlite::Connection::open(&sq_path).unwrap_or_else(|e| panic!("{e}"));
    sq.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp INTEGER NOT NULL, model TEXT NOT NULL,
           provider TEXT, messages TEXT NOT NULL, temperature REAL, max_tokens INTEGER, top_p REAL, response TEXT,
           response_time_ms REAL, prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER,
           finish_reason TEXT, error TEXT, metadata TEXT);
         CREATE INDEX idx_model ON requests(model); CREATE INDEX idx_timestamp ON requests(timestamp);
         CREATE INDEX idx_provider ON requests(provider);",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let insert = |sq: &mut rusqlite::Connection, from: u64, to: u64| {
        let mut i = from;
        while i < to {
            let tx = sq.transaction().unwrap_or_else(|e| panic!("{e}"));
            {
                let mut st = tx
                    .prepare_cached("INSERT INTO requests (timestamp, model, provider, messages, temperature, max_tokens, top_p, response, response_time_ms, prompt_tokens, completion_tokens, total_tokens, finish_reason, error, metadata) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
                    .unwrap_or_else(|e| panic!("{e}"));
                for j in i..(i + 1000).min(to) {
                    let r = record(j, ts(j));
                    let meta = serde_json::json!({"job": r.job, "run_id": r.run_id, "case_id": r.case_id, "endpoint": r.endpoint, "scores": r.scores, "attempts": 1}).to_string();
                    st.execute(rusqlite::params![
                        r.timestamp_ms,
                        r.model,
                        r.provider,
                        serde_json::to_string(&r.messages).unwrap_or_default(),
                        r.temperature,
                        r.max_tokens,
                        r.top_p,
                        r.response,
                        r.response_time_ms,
                        r.prompt_tokens,
                        r.completion_tokens,
                        r.total_tokens,
                        r.finish_reason,
                        r.error,
                        meta
                    ])
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            }
            tx.commit().unwrap_or_else(|e| panic!("{e}"));
            i += 1000;
        }
    };
    let t = Instant::now();
    insert(&mut sq, 0, n);
    let sq_ingest = n as f64 / t.elapsed().as_secs_f64();
    sq.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").ok();
    let sq_bytes = size(&sq_path);
    rows.push(Row {
        what: "ingest",
        evald: redb_ingest,
        sqlite: sq_ingest,
        unit: "records/s",
        better: "higher",
    });
    rows.push(Row {
        what: "bytes on disk per record",
        evald: redb_bytes as f64 / n as f64,
        sqlite: sq_bytes as f64 / n as f64,
        unit: "B",
        better: "lower",
    });

    // 7-day stats: evald from rollups; SQLite with the origin report's queries plus percentiles.
    let reps = 20;
    let t = Instant::now();
    let mut total = 0;
    for _ in 0..reps {
        total = evald::view::stats(&store, 7, now)
            .map(|s| s.overall.total_requests)
            .unwrap_or(0);
    }
    let redb_stats = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    let from = hour_of(now - 7 * DAY);
    let t = Instant::now();
    let mut sq_total = 0i64;
    for _ in 0..3 {
        sq_total = sq
            .query_row("SELECT COUNT(*), AVG(response_time_ms), SUM(error IS NOT NULL), SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens) FROM requests WHERE timestamp >= ?1", [from], |r| r.get(0))
            .unwrap_or(0);
        for q in [
            "SELECT model, COUNT(*), AVG(response_time_ms), SUM(error IS NOT NULL), SUM(total_tokens) FROM requests WHERE timestamp >= ?1 GROUP BY model",
            "SELECT provider, COUNT(*), AVG(response_time_ms), SUM(error IS NOT NULL), SUM(total_tokens) FROM requests WHERE timestamp >= ?1 GROUP BY provider",
        ] {
            let mut st = sq.prepare_cached(q).unwrap_or_else(|e| panic!("{e}"));
            let _ = st.query_map([from], |_| Ok(())).map(|it| it.count());
        }
        for p in [0.5, 0.95, 0.99] {
            let off = (sq_total as f64 * p) as i64;
            let _: Option<f64> = sq
                .query_row("SELECT response_time_ms FROM requests WHERE timestamp >= ?1 AND error IS NULL ORDER BY response_time_ms LIMIT 1 OFFSET ?2", rusqlite::params![from, off], |r| r.get(0))
                .ok();
        }
    }
    let sq_stats = t.elapsed().as_secs_f64() * 1000.0 / 3.0;
    eprintln!("7-day requests: evald {total}, SQLite {sq_total}");
    rows.push(Row {
        what: "7-day stats (with p50/p95/p99)",
        evald: redb_stats,
        sqlite: sq_stats,
        unit: "ms",
        better: "lower",
    });

    let t = Instant::now();
    for _ in 0..reps {
        let _ = store.recent_records(&RecordFilter {
            limit: Some(20),
            ..RecordFilter::default()
        });
    }
    let redb_last = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        let mut st = sq
            .prepare_cached("SELECT * FROM requests ORDER BY timestamp DESC LIMIT 20")
            .unwrap_or_else(|e| panic!("{e}"));
        let _ = st.query_map([], |_| Ok(())).map(|it| it.count());
    }
    let sq_last = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    rows.push(Row {
        what: "last 20 requests",
        evald: redb_last,
        sqlite: sq_last,
        unit: "ms",
        better: "lower",
    });

    // Full CSV export to /dev/null, peak memory above the resident set before it.
    let sink = || {
        std::io::BufWriter::with_capacity(
            64 * 1024,
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .unwrap_or_else(|e| panic!("{e}")),
        )
    };
    let base = rss_kib();
    let peak = PeakRss::start();
    let t = Instant::now();
    let mut w = ExportWriter::new(Format::Csv, sink()).unwrap_or_else(|e| panic!("{e}"));
    let _ = store.export(&RecordFilter::default(), &mut |r| w.write_row(r).is_ok());
    let exported = w.rows();
    let _ = w.finish();
    let redb_export = exported as f64 / t.elapsed().as_secs_f64();
    let redb_peak = peak.finish().saturating_sub(base);
    let base = rss_kib();
    let peak = PeakRss::start();
    let t = Instant::now();
    {
        let mut out = csv::Writer::from_writer(sink());
        let mut st = sq
            .prepare("SELECT * FROM requests ORDER BY id")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut q = st.query([]).unwrap_or_else(|e| panic!("{e}"));
        while let Ok(Some(r)) = q.next() {
            let cells: Vec<String> = (0..16)
                .map(|c| match r.get_ref(c) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    Ok(rusqlite::types::ValueRef::Integer(i)) => i.to_string(),
                    Ok(rusqlite::types::ValueRef::Real(f)) => f.to_string(),
                    _ => String::new(),
                })
                .collect();
            let _ = out.write_record(&cells);
        }
    }
    let sq_export = n as f64 / t.elapsed().as_secs_f64();
    let sq_peak = peak.finish().saturating_sub(base);
    rows.push(Row {
        what: "CSV export",
        evald: redb_export,
        sqlite: sq_export,
        unit: "rows/s",
        better: "higher",
    });
    rows.push(Row {
        what: "export peak memory (above baseline)",
        evald: redb_peak as f64 / 1024.0,
        sqlite: sq_peak as f64 / 1024.0,
        unit: "MiB",
        better: "lower",
    });

    // Prune the oldest 30 % (9 of 30 days), in the daemon's batch size.
    let cutoff = hour_of(now - span + 9 * DAY);
    let t = Instant::now();
    let pruned = rt
        .block_on(async {
            let w = store.writer();
            let r = w
                .prune(
                    PruneCutoffs {
                        records_before_ms: cutoff,
                        runs_before_ms: 0,
                    },
                    evald::store::PRUNE_BATCH,
                )
                .await;
            w.close().await;
            r
        })
        .map(|r| r.records)
        .unwrap_or(0);
    let redb_prune = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let sq_pruned = sq
        .execute("DELETE FROM requests WHERE timestamp < ?1", [cutoff])
        .unwrap_or(0);
    let sq_prune = t.elapsed().as_secs_f64();
    eprintln!("pruned: evald {pruned}, SQLite {sq_pruned}");
    rows.push(Row {
        what: "prune oldest 30 %",
        evald: redb_prune,
        sqlite: sq_prune,
        unit: "s",
        better: "lower",
    });
    let redb_after_prune = size(&db);
    sq.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").ok();
    let sq_after_prune = size(&sq_path);

    // Refill what was pruned with the records of the following days (the same ones SQLite
    // gets): freed pages are reused, the file should not grow much.
    rt.block_on(async {
        let w = store.writer();
        for i in n..n + pruned {
            w.record(record(i, ts(i))).await;
        }
        w.close().await;
    });
    insert(&mut sq, n, n + sq_pruned as u64);
    sq.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").ok();
    let redb_refill = size(&db);
    let sq_refill = size(&sq_path);

    println!("\n{n} records, {} distinct prompts\n", 200);
    println!("| measure | evald (redb) | SQLite (WAL, 3 indexes) | evald ÷ SQLite | better |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!(
            "| {} | {:.3} {} | {:.3} {} | {:.3} | {} |",
            r.what,
            r.evald,
            r.unit,
            r.sqlite,
            r.unit,
            r.evald / r.sqlite,
            r.better
        );
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "\nfile size (MiB): after ingest evald {:.1} / SQLite {:.1}; after pruning 30 % evald {:.1} / SQLite {:.1}; after refilling evald {:.1} / SQLite {:.1}",
        mib(redb_bytes),
        mib(sq_bytes),
        mib(redb_after_prune),
        mib(sq_after_prune),
        mib(redb_refill),
        mib(sq_refill)
    );
    println!(
        "evald pages in use after ingest: {:.1} MiB ({:.0} B per record; the file grows in doubling steps ahead of use); after refilling {:.1} MiB",
        mib(redb_live),
        redb_live as f64 / n as f64,
        mib(store.live_bytes().unwrap_or(0))
    );
    println!(
        "records: evald {}, SQLite {}",
        store.record_count().unwrap_or(0),
        sq.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get::<_, i64>(0))
            .unwrap_or(0)
    );
}
