//! Durability with the real binary: kill -9 at fifty moments of a benchmark writing at full
//! speed into a store over 1 GB, a file system that fills up and frees up, and a backup taken
//! while a run writes.

use std::process::Command;
use std::time::Instant;

use evald_tests::{Site, TestServer};
use serde_json::Value;

const GIB: u64 = 1 << 30;

fn db_bytes(site: &Site) -> u64 {
    std::fs::metadata(site.path().join("data/evald.redb")).map_or(0, |m| m.len())
}

/// Records stored in the last day, from the rollups (committed with the records).
async fn count(site: &Site) -> u64 {
    let (status, body) = site.get("/api/v1/stats?days=1").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["total_requests"].as_u64().unwrap_or(0)
}

fn bench_job(model: &str, requests: u64, concurrency: u64) -> String {
    format!(
        "kind = \"benchmark\"\ntargets = [\"test/{model}\"]\nstream = false\n[[cases]]\nid = \"a\"\nprompt = \"hello\"\n[load]\nconcurrency = {concurrency}\nrequests = {requests}\nwarmup = 0\n"
    )
}

/// kill -9 at fifty moments while a benchmark writes at full speed into a store of over 1 GB:
/// every record counted before a kill is there after the restart, and each cut-off run is
/// marked interrupted with its counts, and gets its latency percentiles soon after. The
/// restart times are printed (measured, not asserted: see docs/store.md for the figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_fifty_moments_of_a_full_speed_benchmark_in_a_gigabyte_store() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    // 1 MiB answers fill a gigabyte in about a thousand requests.
    site.job("fill", &bench_job("huge", 1100, 4));
    site.job("busy", &bench_job("echo", 10_000_000, 16));
    site.evald_ok(&["run", "fill"]);
    assert!(
        db_bytes(&site) >= GIB,
        "store only {} bytes",
        db_bytes(&site)
    );

    let mut restarts = Vec::new();
    let mut d = site.serve().await;
    let mut last = count(&site).await;
    for round in 0..50u64 {
        let mut client = site.evald_child(&["run", "busy"]);
        // A varying moment: after 1 to ~1,500 more records are counted.
        let want = last + 1 + (round * 7919) % 1500;
        site.until(60, "records to grow", || async {
            count(&site).await >= want
        })
        .await;
        let before = count(&site).await;
        d.signal("KILL");
        let _ = d.wait(10).await;
        let _ = client.kill();
        let _ = client.wait();
        let t = Instant::now();
        d = site.serve().await;
        restarts.push(t.elapsed());
        let after = count(&site).await;
        assert!(
            after >= before,
            "round {round}: {before} records counted before the kill, {after} after"
        );
        last = after;
        // The run the kill cut off: interrupted, with what it committed, from the start; its
        // percentiles are counted from its records beside the start, soon after.
        async fn busy_run(site: &Site) -> Value {
            site.runs("busy").await.swap_remove(0)
        }
        let run = busy_run(&site).await;
        assert_eq!(run["status"], "interrupted", "round {round}: {run}");
        assert!(run["requests"].as_u64().unwrap_or(0) > 0, "{run}");
        site.until(30, "the cut-off run's percentiles", || async {
            let bench = &busy_run(&site).await["targets"][0]["bench"];
            bench["e2e_ms"]["count"].as_u64().unwrap_or(0) > 0
                && bench["e2e_ms"]["p50"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    }
    restarts.sort();
    eprintln!(
        "kill -9 x50 on a {:.2} GB store: restart to /healthz median {:?}, max {:?} (debug build)",
        db_bytes(&site) as f64 / 1e9,
        restarts[restarts.len() / 2],
        restarts[restarts.len() - 1]
    );
    drop(d);
}

/// Sets the file size limit (RLIMIT_FSIZE) of a running process: `None` lifts it.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let v = bytes.map_or("unlimited".to_string(), |b| b.to_string());
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--fsize={v}:unlimited"))
        .status()
        .unwrap_or_else(|e| panic!("prlimit (util-linux) is needed for this test: {e}"));
    assert!(status.success(), "prlimit failed");
}

/// The store's file cannot grow (a file size limit, as a full disk would do): writes fail with
/// a clear error, `/healthz` says why with 503, the error counter counts, the run ends failed
/// with the reason, the page and the API keep serving what is stored; when the file may grow
/// again, writing resumes by itself and nothing committed before is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_grow_fails_writes_clearly_and_recovers_by_itself() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job("small", &bench_job("echo", 300, 4));
    site.job("flood", &bench_job("echo", 40_000, 16));
    let d = site.serve().await;
    let first = site.run_json("small");
    assert_eq!(first["summary"]["status"], "ok", "{first}");
    let stored = count(&site).await;
    assert_eq!(stored, 300);

    // From here the file may not grow past its size.
    limit_file_size(d.pid(), Some(db_bytes(&site)));
    let out = site.evald(&["run", "flood", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        report["summary"]["status"], "failed",
        "{}",
        report["summary"]
    );
    let msg = report["summary"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("not stored") && msg.contains("cannot write"),
        "{msg}"
    );

    let (status, why) = site.get("/healthz").await;
    assert_eq!(status, 503, "{why}");
    assert!(
        why.contains("cannot write") && why.contains("evald.redb"),
        "{why}"
    );
    let (_, metrics) = site.get("/metrics").await;
    let errors: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("evald_store_write_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(errors >= 1.0, "{metrics}");
    assert_eq!(site.get("/").await.0, 200);
    assert!(count(&site).await >= stored, "what was stored still shows");
    assert!(
        d.log_text()
            .contains("records are not stored until it can write again")
    );

    // Room again: writing resumes by itself.
    limit_file_size(d.pid(), None);
    site.until(30, "/healthz to answer 200 again", || async {
        site.get("/healthz").await.0 == 200
    })
    .await;
    let again = site.run_json("small");
    assert_eq!(again["summary"]["status"], "ok", "{again}");
    let small = site.records("?job=small").await;
    assert_eq!(small.len(), 600, "both small runs' records, none lost");
    // The failed run's summary, held while the store could not write, is stored now.
    let runs = site.runs("flood").await;
    assert_eq!(runs[0]["status"], "failed", "{runs:?}");
    drop(d);
}

/// `evald backup` while the daemon serves and a benchmark writes: the copy opens as a store
/// (a second daemon serves it) and holds every record counted before the backup began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_a_run_writes_holds_everything_before_it() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    site.job("small", &bench_job("echo", 500, 4));
    site.job("busy", &bench_job("echo", 10_000_000, 8));
    let d = site.serve().await;
    site.run_json("small");
    let mut client = site.evald_child(&["run", "busy"]);
    site.until(60, "the busy run to store records", || async {
        count(&site).await > 1500
    })
    .await;
    let before = count(&site).await;
    let dest = site.path().join("backups/evald.redb");
    let out = site.evald_ok(&["backup", dest.to_str().unwrap_or_default()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("records"), "{said}");
    let _ = client.kill();
    let _ = client.wait();
    drop(d);

    // The copy is a store: a site whose data_dir holds it serves it.
    let copy = Site::new(Some(&server), "");
    std::fs::create_dir_all(copy.path().join("data")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&dest, copy.path().join("data/evald.redb")).unwrap_or_else(|e| panic!("{e}"));
    let _c = copy.serve().await;
    let n = count(&copy).await;
    assert!(
        n >= before,
        "the copy has {n} records, {before} were counted before"
    );
    assert_eq!(copy.records("?job=small").await.len(), 500);
    // The run that was going when the copy was taken is marked interrupted in it.
    let runs = copy.runs("busy").await;
    assert_eq!(runs[0]["status"], "interrupted", "{runs:?}");
}
