//! History on a real redb file: analytics from rollups equal a brute-force computation over the
//! records; pruning removes exactly what is older than the cutoff; exports round-trip hostile
//! content and see one consistent snapshot while a writer commits.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evald::store::rollup::{HOUR_MS, hour_of};
use evald::store::{PruneCutoffs, Store};
use evald_model::{Message, Metadata, Record, RecordFilter, Score};
use evald_web::export::{ExportWriter, Format, parse_filter};

const DAY: i64 = 86_400_000;
/// A fixed "now": 2026-11-28T12:34:56.789Z.
const NOW: i64 = 1_795_869_296_789;

fn record(i: u64, ts: i64) -> Record {
    let models = ["gpt-a", "gpt-b", "llama", "qwen"];
    let providers = ["litellm", "vllm", "ollama"];
    let jobs = ["capitals", "math", "bench"];
    // A deterministic spread: latencies 5..2000 ms, some errors, some missing usage.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17;
    let error = h.is_multiple_of(11);
    Record {
        id: 0,
        timestamp_ms: ts,
        model: models[(h % 4) as usize].into(),
        provider: providers[(h / 4 % 3) as usize].into(),
        messages: vec![Message {
            role: "user".into(),
            content: format!("question {}", h % 5),
        }],
        temperature: Some(0.5),
        max_tokens: Some(64),
        top_p: None,
        response: (!error).then(|| format!("answer {i}")),
        response_time_ms: Some(5.0 + (h % 1995) as f64 + (h % 1000) as f64 / 1000.0),
        prompt_tokens: (!h.is_multiple_of(7)).then_some(10 + (h % 20) as u32),
        completion_tokens: (!h.is_multiple_of(7)).then_some(1 + (h % 200) as u32),
        total_tokens: (!h.is_multiple_of(7)).then_some(11 + (h % 20) as u32 + (h % 200) as u32),
        finish_reason: Some("stop".into()),
        error: error.then(|| "HTTP 500 from gw: boom".into()),
        metadata: Metadata {
            attempts: 1 + (h % 3) as u32,
            ..Metadata::default()
        },
        job: jobs[(h / 12 % 3) as usize].into(),
        run_id: format!("run-{}", i / 10),
        case_id: format!("c{}", h % 5),
        endpoint: "gw".into(),
        ttft_ms: None,
        scores: vec![Score {
            name: "contains".into(),
            value: Some(1.0),
            passed: Some(true),
            weight: 1.0,
            error: None,
            note: None,
        }],
        served_model: None,
        system_fingerprint: None,
        cost_usd: None,
        cost_source: None,
    }
}

async fn seeded(records: &[Record]) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("evald.redb")).unwrap();
    let w = store.writer();
    for r in records {
        w.record(r.clone()).await;
    }
    w.close().await;
    (dir, store)
}

fn all(store: &Store) -> Vec<Record> {
    store.records(&RecordFilter::default()).unwrap()
}

/// Nearest-rank percentile.
fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The analytics of `days` at `now`, brute force over every stored record.
fn brute(records: &[Record], days: u32, now: i64) -> (u64, u64, f64, [f64; 3], u64, u64, u64) {
    let from = hour_of(now - days as i64 * DAY);
    let win: Vec<&Record> = records
        .iter()
        .filter(|r| r.timestamp_ms >= from && r.timestamp_ms <= now)
        .collect();
    let mut lat: Vec<f64> = win
        .iter()
        .filter(|r| r.error.is_none())
        .filter_map(|r| r.response_time_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let avg = if lat.is_empty() {
        0.0
    } else {
        lat.iter().sum::<f64>() / lat.len() as f64
    };
    (
        win.len() as u64,
        win.iter().filter(|r| r.error.is_some()).count() as u64,
        avg,
        [pct(&lat, 0.5), pct(&lat, 0.95), pct(&lat, 0.99)],
        win.iter()
            .filter_map(|r| r.prompt_tokens)
            .map(u64::from)
            .sum(),
        win.iter()
            .filter_map(|r| r.completion_tokens)
            .map(u64::from)
            .sum(),
        win.iter()
            .filter_map(|r| r.total_tokens)
            .map(u64::from)
            .sum(),
    )
}

fn assert_group(
    name: &str,
    g: &evald_model::StatsGroup,
    want: (u64, u64, f64, [f64; 3], u64, u64, u64),
) {
    let (n, errors, avg, p, prompt, completion, total) = want;
    assert_eq!(g.total_requests, n, "{name}: requests");
    let rate = if n == 0 {
        0.0
    } else {
        errors as f64 / n as f64
    };
    assert!(
        (g.error_rate - rate).abs() < 1e-12,
        "{name}: error rate {} vs {rate}",
        g.error_rate
    );
    assert!(
        (g.avg_response_time_ms - avg).abs() < 1e-6,
        "{name}: avg {} vs {avg}",
        g.avg_response_time_ms
    );
    // Log-linear buckets: within 0.8 % of the exact value, plus the µs a record is rounded to.
    for (got, want, q) in [
        (g.p50_ms, p[0], "p50"),
        (g.p95_ms, p[1], "p95"),
        (g.p99_ms, p[2], "p99"),
    ] {
        assert!(
            (got - want).abs() <= want * 0.008 + 0.002,
            "{name}: {q} {got} vs {want}"
        );
    }
    assert_eq!(
        (g.tokens.prompt, g.tokens.completion, g.tokens.total),
        (prompt, completion, total),
        "{name}: tokens"
    );
}

#[tokio::test]
async fn analytics_from_rollups_equal_brute_force_over_the_records() {
    // 3000 records over 10 days, plus records exactly on the 7-day window's edge and just before.
    let mut recs: Vec<Record> = (0..3000u64)
        .map(|i| record(i, NOW - 10 * DAY + (i as i64 * 288_000) % (10 * DAY)))
        .collect();
    let edge = hour_of(NOW - 7 * DAY);
    recs.push(record(9001, edge));
    recs.push(record(9002, edge - 1));
    recs.push(record(9003, NOW));
    let (_d, store) = seeded(&recs).await;
    let stored = all(&store);
    assert_eq!(stored.len(), recs.len());
    for days in [1, 7, 30] {
        let s = evald::view::stats(&store, days, NOW).unwrap();
        assert_group(
            &format!("{days}d overall"),
            &s.overall,
            brute(&stored, days, NOW),
        );
        for g in &s.by_model {
            let sub: Vec<Record> = stored
                .iter()
                .filter(|r| r.model == g.name)
                .cloned()
                .collect();
            assert_group(
                &format!("{days}d model {}", g.name),
                g,
                brute(&sub, days, NOW),
            );
        }
        for g in &s.by_provider {
            let sub: Vec<Record> = stored
                .iter()
                .filter(|r| r.provider == g.name)
                .cloned()
                .collect();
            assert_group(
                &format!("{days}d provider {}", g.name),
                g,
                brute(&sub, days, NOW),
            );
        }
        for g in &s.by_job {
            let sub: Vec<Record> = stored.iter().filter(|r| r.job == g.name).cloned().collect();
            assert_group(
                &format!("{days}d job {}", g.name),
                g,
                brute(&sub, days, NOW),
            );
        }
        assert_eq!(
            s.by_model.iter().map(|g| g.total_requests).sum::<u64>(),
            s.overall.total_requests
        );
    }
    // The edge: a record at the window's first millisecond counts, one a millisecond earlier not.
    let week = evald::view::stats(&store, 7, NOW).unwrap();
    let inside = stored.iter().filter(|r| r.timestamp_ms >= edge).count() as u64;
    assert_eq!(week.overall.total_requests, inside);
}

#[tokio::test]
async fn analytics_of_an_empty_window_and_of_a_single_record() {
    let (_d, store) = seeded(&[]).await;
    let s = evald::view::stats(&store, 7, NOW).unwrap();
    assert_eq!(s.overall.total_requests, 0);
    assert_eq!(
        (
            s.overall.p50_ms,
            s.overall.error_rate,
            s.overall.tokens.avg_per_request
        ),
        (0.0, 0.0, 0.0)
    );
    assert!(s.by_model.is_empty());

    let one = record(3, NOW - HOUR_MS);
    let (_d, store) = seeded(std::slice::from_ref(&one)).await;
    let s = evald::view::stats(&store, 7, NOW).unwrap();
    assert_group("single", &s.overall, brute(&all(&store), 7, NOW));
    // A window that ends before the record sees nothing.
    let s = evald::view::stats(&store, 1, NOW - 3 * DAY).unwrap();
    assert_eq!(s.overall.total_requests, 0);
}

/// The messages of each stored prompt payload with its reference count, read from the store's
/// payload table directly (the store must be closed: redb locks its file).
fn payload_table(path: &std::path::Path) -> std::collections::HashMap<Vec<Message>, u64> {
    use redb::{ReadableDatabase, ReadableTable};
    // The store's layout (daemon/src/store/tables.rs): xxh3-128 of the messages JSON →
    // (records referring to it, the messages JSON).
    const PAYLOADS: redb::TableDefinition<u128, (u64, &[u8])> =
        redb::TableDefinition::new("payloads-1");
    let db = redb::ReadOnlyDatabase::open(path).unwrap();
    let tx = db.begin_read().unwrap();
    let table = tx.open_table(PAYLOADS).unwrap();
    let mut out = std::collections::HashMap::new();
    for e in table.iter().unwrap() {
        let (_, v) = e.unwrap();
        let (refs, json) = v.value();
        let messages: Vec<Message> = serde_json::from_slice(json).unwrap();
        assert!(
            out.insert(messages, refs).is_none(),
            "one payload per distinct prompt"
        );
    }
    out
}

/// How many records carry each distinct prompt.
fn prompt_counts<'a>(
    records: impl IntoIterator<Item = &'a Record>,
) -> std::collections::HashMap<Vec<Message>, u64> {
    let mut out = std::collections::HashMap::new();
    for r in records {
        *out.entry(r.messages.clone()).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn pruning_removes_exactly_what_is_older_than_the_cutoff() {
    let cutoff = hour_of(NOW - 30 * DAY);
    let prompt = |text: String| {
        vec![Message {
            role: "user".into(),
            content: text,
        }]
    };
    // ~500 of the 2000 records are older than the cutoff. Their prompts: a quarter have one of
    // their own (payloads that must go), a quarter share one prompt among themselves across many
    // prune batches (must go once, after its last record), record 10 shares a prompt with a kept
    // record (must stay, one reference fewer), and the rest share the five prompts every record
    // draws from (must stay).
    let recs: Vec<Record> = (0..2000u64)
        .map(|i| {
            let mut r = record(i, NOW - 40 * DAY + i as i64 * 1_728_000);
            if r.timestamp_ms < cutoff && i % 4 == 0 {
                r.messages = prompt(format!("pruned-only prompt {i}"));
            } else if r.timestamp_ms < cutoff && i % 4 == 1 {
                r.messages = prompt("a prompt only old records share".into());
            }
            if i == 10 || i == 1990 {
                r.messages = prompt("a prompt on both sides of the cutoff".into());
            }
            r
        })
        .collect();
    let (dir, store) = seeded(&recs).await;
    let path = dir.path().join("evald.redb");
    let before = all(&store);
    let cut = PruneCutoffs {
        records_before_ms: cutoff,
        runs_before_ms: NOW - 400 * DAY,
    };
    let plan = store.prune_plan(&cut).unwrap();
    let w = store.writer();
    // Small batches: the prune takes many transactions and still removes exactly the same.
    let report = w.prune(cut, 97).await.unwrap();
    w.close().await;
    let after = all(&store);
    let want: Vec<&Record> = before.iter().filter(|r| r.timestamp_ms >= cutoff).collect();
    assert_eq!(report.records, (before.len() - want.len()) as u64);
    assert_eq!(plan.records, report.records, "the dry run said the same");
    assert_eq!(after.len(), want.len());
    assert!(
        after.iter().zip(&want).all(|(a, b)| a == *b),
        "nothing newer than the cutoff was touched (prompts included)"
    );
    // Rollups still agree with the records over the part of history the records cover.
    let days = 29;
    let s = evald::view::stats(&store, days, NOW).unwrap();
    assert_group("after prune", &s.overall, brute(&after, days, NOW));

    // Payloads no record refers to are gone, and counted; the others stay, with one reference
    // per remaining record.
    let kept = prompt_counts(want.iter().copied());
    let pruned = prompt_counts(before.iter().filter(|r| r.timestamp_ms < cutoff));
    let gone: Vec<&Vec<Message>> = pruned.keys().filter(|m| !kept.contains_key(*m)).collect();
    // 125 own prompts (i = 0, 4, …, 496) + the one the old records share.
    assert_eq!(gone.len(), 126, "the fixture's pruned-only prompts");
    assert_eq!(
        report.payloads,
        gone.len() as u64,
        "the report counts the payloads that went"
    );
    assert!(
        after.iter().all(|r| !gone.contains(&&r.messages)),
        "no remaining record carries a pruned prompt"
    );
    drop(store);
    let table = payload_table(&path);
    for m in &gone {
        assert!(!table.contains_key(*m), "{m:?} is still stored");
    }
    assert_eq!(
        table, kept,
        "the payload table is exactly the kept prompts, each with its reference count"
    );
}

fn roundtrip_records() -> Vec<Record> {
    let mut hostile = record(1, NOW - 1000);
    hostile.messages = vec![
        Message {
            role: "system".into(),
            content: "a, b, \"quoted\", and\nnewline\ttab — ünïcödé 中文 🚀".into(),
        },
        Message {
            role: "user".into(),
            content: "<script>alert(1)</script> \"><img src=x onerror=alert(1)>".into(),
        },
    ];
    hostile.response = Some(evald_tests_megabyte());
    hostile.error = None;
    hostile.metadata.error_kind = None;
    let mut errored = record(2, NOW - 500);
    errored.response = None;
    errored.error = Some("HTTP 429 from gw: \"slow down\",\nplease".into());
    errored.ttft_ms = Some(12.5);
    let mut rest: Vec<Record> = (3..50u64)
        .map(|i| record(i, NOW - 400 + i as i64))
        .collect();
    rest.insert(0, errored);
    rest.insert(0, hostile);
    rest
}

fn evald_tests_megabyte() -> String {
    let unit = "a, b; \"quoted\" and\nnewline\ttab — ünïcödé 中文 🚀 \\ back\r\n";
    unit.repeat(1024 * 1024 / unit.len() + 1)
}

fn export(store: &Store, format: Format, filter: &RecordFilter) -> Vec<u8> {
    let mut w = ExportWriter::new(format, Vec::new()).unwrap();
    store
        .export(filter, &mut |r| w.write_row(r).is_ok())
        .unwrap();
    w.finish().unwrap()
}

fn from_csv(bytes: &[u8]) -> Vec<csv::StringRecord> {
    let mut rd = csv::Reader::from_reader(bytes);
    assert_eq!(
        rd.headers().unwrap().iter().collect::<Vec<_>>(),
        evald_web::export::CSV_COLUMNS.to_vec()
    );
    rd.records().map(|r| r.unwrap()).collect()
}

#[tokio::test]
async fn exports_round_trip_hostile_content_and_filters_narrow() {
    let recs = roundtrip_records();
    let (_d, store) = seeded(&recs).await;
    let stored = all(&store);
    let none = RecordFilter::default();

    let csv_rows = from_csv(&export(&store, Format::Csv, &none));
    assert_eq!(csv_rows.len(), stored.len());
    for (row, r) in csv_rows.iter().zip(&stored) {
        assert_eq!(row[0].parse::<u64>().unwrap(), r.id);
        assert_eq!(&row[1], evald_web::export::timestamp(r.timestamp_ms));
        assert_eq!(&row[2], r.model);
        let msgs: Vec<Message> = serde_json::from_str(&row[4]).unwrap();
        assert_eq!(msgs, r.messages);
        assert_eq!(&row[8], r.response.as_deref().unwrap_or(""));
        assert_eq!(row[9].parse::<f64>().ok(), r.response_time_ms);
        assert_eq!(&row[14], r.error.as_deref().unwrap_or(""));
        let meta: Metadata = serde_json::from_str(&row[15]).unwrap();
        assert_eq!(meta, r.metadata);
        assert_eq!(row[20].parse::<f64>().ok(), r.ttft_ms);
        let scores: Vec<Score> = serde_json::from_str(&row[21]).unwrap();
        assert_eq!(scores, r.scores);
    }
    assert_eq!(
        &csv_rows[0][8],
        &evald_tests_megabyte(),
        "the 1 MB hostile response survives CSV"
    );

    for format in [Format::Json, Format::Jsonl] {
        let bytes = export(&store, format, &none);
        let rows: Vec<serde_json::Value> = match format {
            Format::Json => serde_json::from_slice(&bytes).unwrap(),
            _ => bytes
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(|l| serde_json::from_slice(l).unwrap())
                .collect(),
        };
        assert_eq!(rows.len(), stored.len());
        // JSON keys are the columns (the CSV's and the JSON-only ones), in the same order.
        // (The last record is a small one: look at the tail.)
        let text = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(3000)..]).into_owned();
        let text = &text[text.rfind("{\"id\":").unwrap()..];
        let at: Vec<usize> = evald_web::export::COLUMNS
            .iter()
            .map(|c| text.find(&format!("\"{c}\":")).unwrap())
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "{format:?} keys out of order"
        );
        for (row, r) in rows.iter().zip(&stored) {
            assert_eq!(
                row.as_object().unwrap().len(),
                evald_web::export::COLUMNS.len()
            );
            assert_eq!(row["response"].as_str(), r.response.as_deref());
            assert_eq!(
                serde_json::from_value::<Vec<Message>>(row["messages"].clone()).unwrap(),
                r.messages
            );
            assert_eq!(row["error"].as_str(), r.error.as_deref());
        }
    }

    // Each filter narrows to exactly the records it names.
    let count = |f: &RecordFilter| from_csv(&export(&store, Format::Csv, f)).len();
    let f = parse_filter(None, None, Some("math"), None, None, None).unwrap();
    assert_eq!(count(&f), stored.iter().filter(|r| r.job == "math").count());
    let f = parse_filter(None, None, None, Some("llama"), None, None).unwrap();
    assert_eq!(
        count(&f),
        stored.iter().filter(|r| r.model == "llama").count()
    );
    let since = evald_web::export::timestamp(NOW - 400 + 20);
    let f = parse_filter(Some(&since), None, None, None, None, None).unwrap();
    assert_eq!(
        count(&f),
        stored
            .iter()
            .filter(|r| r.timestamp_ms >= NOW - 380)
            .count()
    );
    let until = evald_web::export::timestamp(NOW - 400 + 20);
    let f = parse_filter(None, Some(&until), None, None, None, None).unwrap();
    assert_eq!(
        count(&f),
        stored.iter().filter(|r| r.timestamp_ms < NOW - 380).count()
    );
    let f = parse_filter(None, None, None, None, None, Some("7")).unwrap();
    assert_eq!(count(&f), 7);
    // Job and model together: both must hold. The fixture has 3 such records (i = 41, 44, 47),
    // so the combination and the limit each have something to cut.
    let both: Vec<u64> = stored
        .iter()
        .filter(|r| r.job == "math" && r.model == "llama")
        .map(|r| r.id)
        .collect();
    assert!(
        both.len() >= 2,
        "the fixture must have several math/llama records for this check: {both:?}"
    );
    let ids = |f: &RecordFilter| -> Vec<u64> {
        from_csv(&export(&store, Format::Csv, f))
            .iter()
            .map(|row| row[0].parse().unwrap())
            .collect()
    };
    let f = parse_filter(None, None, Some("math"), Some("llama"), None, None).unwrap();
    assert_eq!(
        ids(&f),
        both,
        "job and model narrow to exactly their records"
    );
    let f = parse_filter(None, None, Some("math"), Some("llama"), None, Some("1")).unwrap();
    assert_eq!(
        ids(&f),
        both[..1].to_vec(),
        "limit 1 gives exactly the oldest matching record"
    );
    // A run with no summary stored (pruned, say) is still found, by a scan of everything.
    let run = stored[3].run_id.clone();
    let f = parse_filter(None, None, None, None, Some(&run), None).unwrap();
    let want = stored.iter().filter(|r| r.run_id == run).count();
    assert!(want > 0);
    assert_eq!(count(&f), want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_sees_one_snapshot_while_a_run_writes() {
    let recs: Vec<Record> = (0..500u64)
        .map(|i| record(i, NOW - 10_000 + i as i64))
        .collect();
    let (_d, store) = seeded(&recs).await;
    let writer = store.writer();
    let handle = tokio::runtime::Handle::current();
    let s2 = store.clone();
    let w2 = writer.clone();
    let (seen, during) = tokio::task::spawn_blocking(move || {
        let mut seen = 0u64;
        let mut wrote = false;
        s2.export(&RecordFilter::default(), &mut |_| {
            seen += 1;
            if !wrote {
                wrote = true;
                // Mid-export: a run commits 300 more records, some inside the exported range.
                handle.block_on(async {
                    for i in 0..300u64 {
                        w2.record(record(10_000 + i, NOW - 10_000 + (i as i64 % 500)))
                            .await;
                    }
                    w2.flush().await;
                });
            }
            true
        })
        .unwrap();
        (seen, s2.record_count().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(during, 800, "the writer was not blocked by the export");
    assert_eq!(
        seen, 500,
        "the export saw its snapshot, not the records committed during it"
    );
    assert_eq!(all(&store).len(), 800, "a new export sees them");
    writer.close().await;
}

#[tokio::test]
async fn records_that_arrive_out_of_order_are_kept_in_time_order() {
    // Requests finish out of order: a slow one started earlier reaches the writer after later
    // ones were committed. Shuffled across several commits, they still read back in time order,
    // each once, and the rollups count every one.
    let mut recs: Vec<Record> = (0..4000u64)
        .map(|i| record(i, NOW - 3 * DAY + (i as i64 * 60_011)))
        .collect();
    let n = recs.len();
    for i in 0..n {
        let j = (i.wrapping_mul(7919) + 13) % n;
        recs.swap(i, j);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("evald.redb")).unwrap();
    let w = store.writer();
    for (i, r) in recs.iter().enumerate() {
        w.record(r.clone()).await;
        if i % 500 == 0 {
            w.flush().await;
        }
    }
    w.close().await;
    let stored = all(&store);
    assert_eq!(stored.len(), n);
    assert!(
        stored
            .windows(2)
            .all(|p| (p[0].timestamp_ms, p[0].id) < (p[1].timestamp_ms, p[1].id)),
        "in time order"
    );
    let mut want: Vec<i64> = recs.iter().map(|r| r.timestamp_ms).collect();
    want.sort_unstable();
    assert_eq!(
        stored.iter().map(|r| r.timestamp_ms).collect::<Vec<_>>(),
        want
    );
    let s = evald::view::stats(&store, 7, NOW).unwrap();
    assert_group("shuffled", &s.overall, brute(&stored, 7, NOW));
}

#[tokio::test]
async fn warm_up_requests_are_stored_but_not_counted() {
    let mut warm = record(5, NOW - HOUR_MS);
    warm.metadata.warmup = true;
    let (_d, store) = seeded(&[record(4, NOW - HOUR_MS), warm]).await;
    assert_eq!(all(&store).len(), 2, "both stored and exported");
    let s = evald::view::stats(&store, 7, NOW).unwrap();
    assert_eq!(s.overall.total_requests, 1, "the warm-up is left out");
}

/// A retention past what milliseconds in an i64 hold (the config refuses more than 100 years,
/// this is the store's own guard) keeps everything: the cutoffs saturate at the epoch's far
/// past instead of wrapping into the future, where they removed every record.
#[tokio::test]
async fn an_enormous_retention_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("evald.redb")).unwrap();
    // 300 million years, as someone meaning "forever" wrote it: 9.47e18 ms, past i64::MAX.
    let forever = std::time::Duration::from_secs(300_000_000 * 31_557_600);
    let retention = evald::config::Retention {
        requests: forever,
        runs: forever,
        ..Default::default()
    };
    let c = evald::store::cutoffs(&retention, &store).unwrap();
    assert!(
        c.records_before_ms < 0 && c.runs_before_ms < 0,
        "{} {}",
        c.records_before_ms,
        c.runs_before_ms
    );
}
