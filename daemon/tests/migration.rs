//! A store written by evald with schema 1 (`fixtures/v1/evald.redb`, made by that binary with
//! two `evald run capitals`, with its `evald export` and `evald stats --json` output beside it)
//! opens in this binary: it is migrated to schema 2 in place, and every record, run, export
//! byte and statistic reads the same as the old binary showed.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evald::store::{PruneCutoffs, SCHEMA_VERSION, Store};
use evald_model::{RecordFilter, Stats};
use evald_web::export::Format;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v1");

fn opened() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evald.redb");
    std::fs::copy(format!("{FIXTURE}/evald.redb"), &path).unwrap();
    let store = Store::open(&path).unwrap();
    (dir, store)
}

fn export(store: &Store, format: Format) -> String {
    let (_, out) = store
        .export_to(&RecordFilter::default(), format, Vec::new())
        .unwrap();
    String::from_utf8(out).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(1.0)
}

#[test]
fn a_schema_1_store_migrates_and_reads_as_before() {
    assert_eq!(SCHEMA_VERSION, 4);
    let (dir, store) = opened();
    // What the schema 1 binary exported, field for field, with schema 3's new columns
    // (served_model, system_fingerprint, cost_usd) at the end, empty: those records never had them.
    let want = std::fs::read_to_string(format!("{FIXTURE}/export.csv")).unwrap();
    let rows = |text: &str| -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.unwrap().iter().map(String::from).collect())
            .collect()
    };
    let (want, got) = (rows(&want), rows(&export(&store, Format::Csv)));
    assert_eq!(want.len(), got.len());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert_eq!(&g[..w.len()], &w[..], "row {i}");
        let tail: &[&str] = if i == 0 {
            &["served_model", "system_fingerprint", "cost_usd"]
        } else {
            &["", "", ""]
        };
        assert_eq!(&g[w.len()..], tail, "row {i}");
    }
    let want = std::fs::read_to_string(format!("{FIXTURE}/export.jsonl")).unwrap();
    let want: String = want
        .lines()
        .map(|l| {
            format!(
                "{},\"served_model\":null,\"system_fingerprint\":null,\"cost_usd\":null,\"cost_source\":null}}\n",
                &l[..l.len() - 1]
            )
        })
        .collect();
    assert_eq!(export(&store, Format::Jsonl), want);
    // The rollups, rebuilt as hourly and daily rows by group, give the same statistics.
    let want: Stats =
        serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURE}/stats.json")).unwrap())
            .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let got = evald::view::stats(&store, 3660, now).unwrap();
    assert_eq!(got.overall.total_requests, 16);
    let groups = |s: &Stats| {
        let mut v = vec![s.overall.clone()];
        v.extend(s.by_model.iter().cloned());
        v.extend(s.by_provider.iter().cloned());
        v.extend(s.by_job.iter().cloned());
        v
    };
    for (g, w) in groups(&got).iter().zip(groups(&want).iter()) {
        assert_eq!(
            (&g.name, g.total_requests, &g.tokens.total, g.tokens.prompt),
            (&w.name, w.total_requests, &w.tokens.total, w.tokens.prompt)
        );
        for (a, b) in [
            (g.avg_response_time_ms, w.avg_response_time_ms),
            (g.p50_ms, w.p50_ms),
            (g.p95_ms, w.p95_ms),
            (g.p99_ms, w.p99_ms),
            (g.error_rate, w.error_rate),
        ] {
            assert!(close(a, b), "{}: {a} vs {b}", g.name);
        }
    }
    assert_eq!(groups(&got).len(), groups(&want).len());
    // Each run's records, now found by the run's time span, are the run's rows of the export.
    let runs = store.runs(None, 100).unwrap();
    assert_eq!(runs.len(), 2);
    let all = store.records(&RecordFilter::default()).unwrap();
    for run in &runs {
        let mine: Vec<_> = all.iter().filter(|r| r.run_id == run.id).cloned().collect();
        assert_eq!(mine.len(), 8);
        assert_eq!(store.run_records(&run.id, 100).unwrap(), mine);
    }
    // Reopening finds schema 2 and changes nothing.
    drop(store);
    let store = Store::open(&dir.path().join("evald.redb")).unwrap();
    assert_eq!(store.records(&RecordFilter::default()).unwrap(), all);
}

#[tokio::test]
async fn a_migrated_store_takes_new_records_and_prunes() {
    let (_dir, store) = opened();
    let before = store.records(&RecordFilter::default()).unwrap();
    let w = store.writer();
    let mut r = before[0].clone();
    r.timestamp_ms = before.last().unwrap().timestamp_ms + 1;
    w.record(r).await;
    w.flush().await;
    let now = chrono::Utc::now().timestamp_millis();
    let s = evald::view::stats(&store, 3660, now).unwrap();
    assert_eq!(
        s.overall.total_requests, 17,
        "the new record joined the old rollups"
    );
    let after = store.records(&RecordFilter::default()).unwrap();
    assert_eq!(after.len(), 17);
    assert!(
        after.last().unwrap().id > before.last().unwrap().id,
        "ids go on"
    );
    // Everything goes: records, runs, rollups; nothing is left that the old tables held.
    let report = w
        .prune(
            PruneCutoffs {
                records_before_ms: now + 1,
                runs_before_ms: now + 86_400_000,
            },
            3,
        )
        .await
        .unwrap();
    w.close().await;
    assert_eq!((report.records, report.runs), (17, 2));
    assert!(report.rollups >= 2, "hourly and daily rows: {report:?}");
    assert_eq!(store.record_count().unwrap(), 0);
    let s = evald::view::stats(&store, 3660, now).unwrap();
    assert_eq!(s.overall.total_requests, 0);
}

#[test]
fn schema_1_rollups_over_many_days_migrate_a_day_at_a_time() {
    // Schema 1 rows written by hand: (hour, joined names) → postcard of the counts and the
    // histogram's (bucket, count) pairs, as that binary wrote them.
    #[derive(serde::Serialize)]
    struct V1 {
        requests: u64,
        errors: u64,
        latency_sum_ms: f64,
        prompt_tokens: u64,
        completion_tokens: u64,
        total_tokens: u64,
        latency: Vec<(u16, u64)>,
    }
    const META: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("meta-1");
    const ROLLUPS: redb::TableDefinition<(u64, &str), &[u8]> =
        redb::TableDefinition::new("rollups-1");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evald.redb");
    let now = chrono::Utc::now().timestamp_millis();
    let hour = 3_600_000i64;
    let first = evald::store::rollup::hour_of(now - 5 * 86_400_000);
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 1)
                .unwrap();
            let mut t = tx.open_table(ROLLUPS).unwrap();
            // Every third hour for five days, two groups.
            let mut h = first;
            while h < now - hour {
                for (group, ms) in [
                    ("j\u{1f}e\u{1f}m1\u{1f}p", 10u16),
                    ("j\u{1f}e\u{1f}m2\u{1f}p", 20),
                ] {
                    let row = V1 {
                        requests: 3,
                        errors: 1,
                        latency_sum_ms: 2.0 * ms as f64,
                        prompt_tokens: 5,
                        completion_tokens: 7,
                        total_tokens: 12,
                        latency: vec![(ms, 2)],
                    };
                    t.insert(
                        (h as u64, group),
                        postcard::to_allocvec(&row).unwrap().as_slice(),
                    )
                    .unwrap();
                }
                h += 3 * hour;
            }
        }
        tx.commit().unwrap();
    }
    let rows = ((now - hour - first) + 3 * hour - 1) / (3 * hour);
    let store = Store::open(&path).unwrap();
    let s = evald::view::stats(&store, 7, now).unwrap();
    assert_eq!(s.overall.total_requests, 2 * 3 * rows as u64);
    assert_eq!(s.overall.tokens.total, 2 * 12 * rows as u64);
    assert!((s.overall.error_rate - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(s.by_model.len(), 2);
    assert!(
        s.by_model
            .iter()
            .all(|g| g.total_requests == 3 * rows as u64)
    );
    // Windows cut through the migrated days agree with the hourly rows they are made of.
    let s2 = evald::view::stats(&store, 2, now).unwrap();
    let from = evald::store::rollup::hour_of(now - 2 * 86_400_000);
    let in_window = (0..rows)
        .map(|i| first + i * 3 * hour)
        .filter(|&h| h >= from)
        .count() as u64;
    assert_eq!(s2.overall.total_requests, 2 * 3 * in_window);
}
