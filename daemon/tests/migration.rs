//! A store written by evald with schema 1 (`fixtures/v1/evald.redb`, made by that binary with
//! two `evald run capitals`, with its `evald export` and `evald stats --json` output beside it)
//! opens in this binary: it is migrated to schema 2 in place, and every record, run, export
//! byte and statistic reads the same as the old binary showed.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use evald::store::{PruneCutoffs, SCHEMA_VERSION, Store};
use evald_web::export::Format;
use evald_web::model::{RecordFilter, Stats};

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
    assert_eq!(SCHEMA_VERSION, 2);
    let (dir, store) = opened();
    // Byte for byte what the schema 1 binary exported.
    for (format, file) in [(Format::Csv, "export.csv"), (Format::Jsonl, "export.jsonl")] {
        let want = std::fs::read_to_string(format!("{FIXTURE}/{file}")).unwrap();
        assert_eq!(export(&store, format), want, "{file}");
    }
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
