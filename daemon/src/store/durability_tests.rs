//! The store's durability: a run's records whatever the clock did, backups, the size cap, and
//! the run spans a schema 3 file gains when it opens.

use evald_model::{JobKind, Trigger};

use super::tables::*;
use super::tests::record;
use super::*;

const T0: i64 = 1_764_000_000_000;
const HOUR: i64 = 3_600_000;

fn by_run(id: &str) -> RecordFilter {
    RecordFilter {
        run_id: Some(id.into()),
        ..RecordFilter::default()
    }
}

/// Stores the start of run `id` of job `j` at T0.
async fn start(w: &Writer, id: &str) {
    w.run(RunSummary::start(
        id.into(),
        "j",
        JobKind::Compare,
        Trigger::Schedule,
        T0,
    ))
    .await;
}

fn cases(rs: &[Record]) -> Vec<&str> {
    rs.iter().map(|r| r.case_id.as_str()).collect()
}

/// The wall clock stepped back an hour in the middle of a run (the records carry the stepped
/// time, as the runner stamps them): the run's records, its export and its interrupted count
/// are complete, and another run's records in the same hours stay out. Before run spans, the
/// records stamped an hour early were outside the run's time span and went missing.
#[tokio::test]
async fn a_clock_stepped_back_an_hour_mid_run_hides_nothing() {
    let store = Store::in_memory();
    let w = store.writer();
    let run = "0019ac8f1a2b0-a";
    start(&w, run).await;
    w.record(record(run, T0 + 1, "before-1")).await;
    w.record(record(run, T0 + 2, "before-2")).await;
    // The clock steps back an hour; another run's records land in that hour too.
    w.record(record(run, T0 - HOUR + 3, "after-1")).await;
    w.record(record("other", T0 - HOUR + 4, "other-1")).await;
    w.record(record(run, T0 - HOUR + 5, "after-2")).await;
    w.record(record("other", T0 - 2 * HOUR, "other-2")).await;
    w.close().await;

    let want = ["after-1", "after-2", "before-1", "before-2"];
    assert_eq!(cases(&store.run_records(run, 100).unwrap()), want);
    assert_eq!(cases(&store.records(&by_run(run)).unwrap()), want);
    let mut csv = Vec::new();
    let (rows, _) = store
        .export_to(&by_run(run), evald_web::export::Format::Csv, &mut csv)
        .unwrap();
    assert_eq!(rows, 4);
    // Cut off by a crash: counted from all four committed records.
    assert_eq!(store.mark_interrupted().unwrap(), [run]);
    assert_eq!(store.run(run).unwrap().unwrap().requests, 4);
}

/// A run id no run has answers with nothing, from the span table alone (before, it scanned
/// every record).
#[tokio::test]
async fn an_unknown_run_has_no_records() {
    let store = Store::in_memory();
    let w = store.writer();
    for i in 0..50 {
        w.record(record("known", T0 + i, &format!("c{i}"))).await;
    }
    w.close().await;
    assert!(store.run_records("no-such-run", 10).unwrap().is_empty());
    assert!(store.records(&by_run("no-such-run")).unwrap().is_empty());
    assert_eq!(store.run_records("known", 100).unwrap().len(), 50);
}

/// A backup taken while the writer commits holds everything committed before it began, opens
/// as a store, and gives the same records, runs, spans and rollups.
#[tokio::test]
async fn a_backup_taken_while_writing_opens_with_everything_committed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("evald.redb")).unwrap();
    let w = store.writer();
    let run = "0019ac8f1a2b0-b";
    start(&w, run).await;
    for i in 0..3000 {
        w.record(record(run, T0 + i, &format!("c{i}"))).await;
    }
    w.flush().await;
    let before = store.record_count().unwrap();
    // More records go in while the copy is taken.
    let writing = {
        let w = w.clone();
        tokio::spawn(async move {
            for i in 3000..9000 {
                w.record(record(run, T0 + i, &format!("c{i}"))).await;
            }
            w.flush().await;
        })
    };
    let dest = dir.path().join("backups/copy.redb");
    let s = store.clone();
    let d = dest.clone();
    let report = tokio::task::spawn_blocking(move || s.backup(&d))
        .await
        .unwrap()
        .unwrap();
    writing.await.unwrap();
    w.close().await;
    assert!(report.records >= before, "{report:?} vs {before}");
    assert_eq!(report.runs, 1);

    let copy = Store::open(&dest).unwrap();
    assert_eq!(copy.record_count().unwrap(), report.records);
    let records = copy.run_records(run, 100_000).unwrap();
    assert_eq!(records.len() as u64, report.records);
    // The copy's records are the original's, field for field.
    let original = store.run_records(run, report.records as usize).unwrap();
    assert_eq!(records, original);
    assert_eq!(copy.run(run).unwrap(), store.run(run).unwrap());
    let (names, totals) = copy.rollup_totals(T0 - HOUR, T0 + HOUR).unwrap();
    let stats = rollup::stats(1, &names, &totals);
    assert_eq!(stats.overall.total_requests, report.records);
    // The copy takes new writes where the original left off.
    let cw = copy.writer();
    cw.record(record(run, T0 + 10_000, "new")).await;
    cw.close().await;
    assert_eq!(copy.record_count().unwrap(), report.records + 1);
    assert!(!dir.path().join("backups/.copy.redb.partial").exists());

    // The store itself is not a destination.
    let err = store.backup(store.path()).unwrap_err().to_string();
    assert!(err.contains("the store itself"), "{err}");
}

/// Over `max_db_size`, the oldest records go and the file is compacted to under the cap; the
/// newest records stay.
#[tokio::test]
async fn over_max_db_size_the_oldest_records_go_and_the_file_shrinks_under_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evald.redb");
    let cap = 4 * 1024 * 1024;
    let store = Store::open_with(
        &path,
        StoreOptions {
            max_db_size: Some(cap),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let w = store.writer();
    let n = 20_000;
    for i in 0..n {
        let mut r = record("big", T0 + i, &format!("c{i}"));
        r.response = Some(format!("{i} {}", "x".repeat(600)));
        w.record(r).await;
    }
    w.close().await;
    assert!(store.file_bytes() > cap, "the test must start over the cap");
    let (pruned, compacted) = store.enforce_cap().unwrap();
    assert!(compacted);
    assert!(pruned > 0 && pruned < n as u64, "{pruned}");
    assert!(store.file_bytes() <= cap, "{} > {cap}", store.file_bytes());
    let left = store.record_count().unwrap();
    assert_eq!(left, n as u64 - pruned);
    // The newest survive, and the store still reads and writes.
    let newest = store.recent_records(&RecordFilter::default()).unwrap();
    assert_eq!(newest[0].case_id, format!("c{}", n - 1));
    let w = store.writer();
    w.record(record("big", T0 + n, "after")).await;
    w.close().await;
    assert_eq!(store.record_count().unwrap(), left + 1);
}

/// A schema 3 file (no run spans) gains them when it opens: its runs' records are found.
#[tokio::test]
async fn a_schema_3_file_gains_run_spans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("evald.redb");
    {
        let store = Store::open(&path).unwrap();
        let w = store.writer();
        for i in 0..10 {
            let run = if i % 2 == 0 { "r1" } else { "r2" };
            w.record(record(run, T0 + i * HOUR, &format!("c{i}"))).await;
        }
        w.close().await;
        // Back to schema 3: no span table.
        let db = store.db().unwrap();
        let tx = begin_write(&db).unwrap();
        tx.delete_table(RUN_SPANS).unwrap();
        tx.open_table(META)
            .unwrap()
            .insert("schema_version", 3)
            .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        cases(&store.run_records("r2", 100).unwrap()),
        ["c1", "c3", "c5", "c7", "c9"]
    );
}

/// A backup that cannot be made says where and why, without calling it an encoding error.
#[tokio::test]
async fn a_backup_that_cannot_be_made_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("evald.redb")).unwrap();
    let e = store
        .backup(std::path::Path::new("/proc/evald-no-such/b.redb"))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("store: backup to ")
            && e.contains("cannot create")
            && !e.contains("encoding"),
        "{e}"
    );
    let e = store
        .backup(&dir.path().join("evald.redb"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("that is the store itself"), "{e}");
}
