//! The benchmark's own client (one HTTP/1.1 connection per worker) meeting what a general
//! client handles for you: a timeout in the middle of a stream, a server that closes each
//! connection, nothing listening.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use evald_tests::{Site, TestServer};
use serde_json::Value;

/// The `stall` model holds every other stream for 300 ms after its third chunk; with a 250 ms
/// timeout those requests time out mid-stream: `stream_timeout`, not a broken stream and not
/// a plain timeout, whichever client sent them — the benchmark's own (a run's
/// `errors_by_kind`) and the general one (a compare run's stored `error_kind`) — and each keeps
/// the text that arrived before the timeout. A stalled stream lasts at least 320 ms (the
/// server's sleeps never come short); an unstalled one ~40 ms, and up to 95 ms was seen in CI
/// with the test binaries sharing two cores, which a 150 ms timeout once cut: 250 ms leaves
/// both sides a margin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_during_a_stream_is_a_stream_timeout_for_both_clients() {
    let server = TestServer::with_timing(5, 5).await;
    let site = Site::new(Some(&server), "");
    let job = "targets = [\"test/stall\"]\ntimeout = \"250ms\"\n[[cases]]\nid = \"c\"\nprompt = \"w1 w2 w3 w4 w5 w6\"\n";
    site.job(
        "bench",
        &format!("kind = \"benchmark\"\n{job}[load]\nconcurrency = 1\nrequests = 10\n"),
    );
    site.job("cmp", &format!("stream = true\nrepeat = 10\n{job}"));
    let report = site.run_json("bench");
    let b = &report["summary"]["targets"][0]["bench"];
    assert_eq!(
        b["errors_by_kind"],
        serde_json::json!({"stream_timeout": 5}),
        "{b}"
    );
    // Half the requests fail, so the run is ok (not every request failed).
    site.evald_ok(&["run", "cmp"]);
    let recs = site.export_job("cmp");
    let timed_out: Vec<&Value> = recs
        .iter()
        .filter(|r| r["metadata"]["error_kind"] == "stream_timeout")
        .collect();
    assert_eq!(timed_out.len(), 5, "{recs:?}");
    for r in timed_out {
        assert!(
            r["response"].as_str().unwrap().starts_with("Echo: w1"),
            "{r}"
        );
    }
}

/// A request that gets no answer within its timeout keeps how long it waited, whichever client
/// sent it: an open loop's latency trend counts timed-out requests as the lower bound they
/// are, so a server whose queue grows until requests time out shows it. `slow-2000` answers
/// after 2 s; the timeout is 200 ms. Bounds: at least the timeout (the timer does not fire
/// early), under 1.5 s (a timer over a second late is a hang, and the answer's 2 s is never
/// waited for); with no latency kept, the test fails on the missing value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_timed_out_keeps_how_long_it_waited_for_both_clients() {
    let server = TestServer::start().await;
    let site = Site::new(Some(&server), "");
    let job = bench_job("test/slow-2000", "concurrency = 1\nrequests = 2\n")
        .replace("[[cases]]", "timeout = \"200ms\"\n[[cases]]");
    site.job("own", &job);
    site.job("general", &job);
    site.evald(&["run", "own"]);
    site.evald_env(&["run", "general"], &[("EVALD_GENERAL_CLIENT", "1")]);
    for name in ["own", "general"] {
        let recs = site.export_job(name);
        assert_eq!(recs.len(), 2, "{name}: {recs:?}");
        for r in &recs {
            assert_eq!(r["metadata"]["error_kind"], "timeout", "{name}: {r}");
            let waited = r["response_time_ms"]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no time kept: {r}"));
            assert!(
                (200.0..1500.0).contains(&waited),
                "{name}: waited {waited} ms"
            );
        }
    }
}

/// A non-streamed benchmark of one case against `target`, with this `[load]`.
fn bench_job(target: &str, load: &str) -> String {
    format!(
        "kind = \"benchmark\"\ntargets = [\"{target}\"]\nstream = false\n[[cases]]\nid = \"c\"\nprompt = \"hi\"\n[load]\n{load}"
    )
}

/// How [`counting_server`] ends its connections.
#[derive(Clone, Copy, PartialEq)]
enum Closing {
    /// Kept alive.
    Never,
    /// Closed after each answer, saying so (`Connection: close`).
    Announced,
    /// Closed after each answer without a word, as a server timing out idle connections does.
    Silently,
}

/// A server answering every request with a fixed completion, counting the connections it
/// accepted.
async fn counting_server(closing: Closing) -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request (its head and a Content-Length body), one answer.
                    let Ok(n) = sock.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let len: usize = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() < end + 4 + len {
                        continue;
                    }
                    buf.drain(..end + 4 + len);
                    let body = r#"{"choices":[{"message":{"content":"fixed"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
                        body.len(),
                        if closing == Closing::Announced {
                            "connection: close\r\n"
                        } else {
                            ""
                        }
                    );
                    if sock.write_all(resp.as_bytes()).await.is_err() || closing != Closing::Never {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// A site with endpoint `name` on `port` (plus `extra` lines of its config) and a benchmark job
/// `name` on it with `load`, run: the site and the run's target summary.
fn bench_on(port: u16, name: &str, extra: &str, load: &str) -> (Site, Value) {
    let url = format!("[endpoints.{name}]\nurl = \"http://127.0.0.1:{port}/v1\"\n{extra}");
    let site = Site::new(None, &url);
    site.job(name, &bench_job(&format!("{name}/m"), load));
    let t = site.run_json(name)["summary"]["targets"][0].clone();
    (site, t)
}

/// Connections are opened by warm-up and kept for the measurement: a closed loop of 4 workers
/// opens at most 4 connections over warm-up and measurement together (a measurement on fresh
/// connections would open up to 8 and pay the connects in its first latencies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_connections_serve_the_measurement() {
    let (port, accepted) = counting_server(Closing::Never).await;
    let (_, t) = bench_on(
        port,
        "keep",
        "",
        "concurrency = 4\nwarmup = 8\nrequests = 40\n",
    );
    assert_eq!(
        (t["requests"].as_u64(), t["errors"].as_u64()),
        (Some(40), Some(0)),
        "{t}"
    );
    let n = accepted.load(Ordering::SeqCst);
    assert!((1..=4).contains(&n), "{n} connections for 4 workers");
}

/// A server that closes each kept-alive connection after its answer without saying so: the
/// next request on it meets the close (seen idle, or as the request goes out) and is sent
/// again on a fresh connection, so none fails and each request is answered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_without_a_word_is_replaced_not_failed() {
    let (port, accepted) = counting_server(Closing::Silently).await;
    let load = "concurrency = 4\nrequests = 200\nwarmup = 0\n";
    let (site, t) = bench_on(port, "quiet", "max_retries = 0\n", load);
    let errors: Vec<Value> = site
        .export_job("quiet")
        .into_iter()
        .filter(|r| !r["error"].is_null())
        .take(3)
        .collect();
    assert_eq!(t["errors"], 0, "{errors:?}");
    assert_eq!(t["requests"], 200, "{t}");
    // One connection per answer: no request was answered twice.
    assert_eq!(accepted.load(Ordering::SeqCst), 200, "{t}");
}

/// The benchmark's own client (one connection per worker) against what a general client
/// handles for you: nothing listening is `connect` for every request, named by endpoint; a
/// server that closes each connection after its answer (`Connection: close`, as some proxies
/// do) is answered on a new connection every time, with no error and the server's own count
/// of connections equal to the requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_client_reconnects_and_names_connect_errors() {
    let (port, accepted) = counting_server(Closing::Announced).await;
    let (_held, dead) = evald_tests::dead_port();
    let site = Site::new(
        None,
        &format!(
            "[endpoints.closer]\nurl = \"http://127.0.0.1:{port}/v1\"\n[endpoints.dead]\nurl = \"http://127.0.0.1:{dead}/v1\"\ntimeout = \"2s\"\n"
        ),
    );
    let job = |t: &str| bench_job(t, "concurrency = 4\nrequests = 40\n");
    site.job("closer", &job("closer/m"));
    site.job("dead", &job("dead/m"));
    let report = site.run_json("closer");
    let t = &report["summary"]["targets"][0];
    assert_eq!(t["errors"], 0, "{t}");
    assert_eq!(t["requests"], 40, "{t}");
    assert_eq!(accepted.load(Ordering::SeqCst), 40);
    let out = site.evald(&["run", "dead", "--json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = &report["summary"]["targets"][0]["bench"];
    assert_eq!(
        b["errors_by_kind"],
        serde_json::json!({"connect": 40}),
        "{b}"
    );
    let recs = site.export_job("dead");
    assert!(
        recs[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to dead"),
        "{}",
        recs[0]
    );
}
