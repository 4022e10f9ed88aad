//! Support for evald's end-to-end tests: a local OpenAI-compatible test server with fault modes
//! chosen by model name, and a harness that runs the real `evald` binary on a temporary site
//! (config, jobs directory, data directory) and talks to it over loopback.
//!
//! Test server models:
//! - `ok-*`: answers `Echo: <last user message>`, with usage.
//! - `slow-<ms>`: answers after `<ms>` milliseconds.
//! - `err500`: HTTP 500 with an OpenAI-style error body (`upstream exploded`).
//! - `err429`: HTTP 429 with `Retry-After: 1` the first two times, then answers.
//! - `some429`: every fifth request gets HTTP 429 with `Retry-After: 1`; the rest answer.
//! - `serial-<ms>`: answers one request at a time, each after `<ms>` milliseconds: a server
//!   that can take 1000/`<ms>` requests a second and queues the rest.
//! - `badjson`: HTTP 200 whose body is not JSON.
//! - `empty`: HTTP 200 with no choices.
//! - `echo-auth`: HTTP 401 whose message echoes the Authorization header.
//! - `xss`: answers with HTML and script payloads.
//! - `huge`: a 1 MiB answer with commas, quotes, newlines, tabs and unicode.
//!
//! Streams (`"stream": true`) send one chunk per word after `ttft_ms`, `pace_ms` apart, then
//! the usage chunk (if asked for) and `[DONE]`. `nousage` streams send no usage; `trunc` breaks
//! the connection after two chunks; `nodone` ends without `[DONE]`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

mod arith;
mod daemon;
mod site;
pub mod webhook;

pub use arith::Arith;
pub use daemon::Daemon;
pub use site::{Site, dead_port, free_port};

/// The hostile answer of the `xss` model.
pub const XSS: &str = "<script>alert(1)</script> \"><img src=x onerror=alert(1)>";

/// One request the test server saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The `Authorization` header, if any.
    pub auth: Option<String>,
    /// The JSON body.
    pub body: Value,
}

/// Settings and state of a test server.
#[derive(Debug, Default)]
pub struct ServerState {
    /// Every chat request, in order.
    pub seen: Mutex<Vec<Seen>>,
    /// Attempts per model, for `err429`.
    pub attempts: Mutex<HashMap<String, u32>>,
    /// Streams: delay before the first chunk.
    pub ttft_ms: u64,
    /// Streams: delay between chunks.
    pub pace_ms: u64,
    /// How the `arith` model answers now.
    pub arith: Mutex<Arith>,
    /// Held while a `serial-<ms>` request is served: one at a time.
    pub serial: tokio::sync::Mutex<()>,
}

/// A running test server.
pub struct TestServer {
    /// Its address on 127.0.0.1.
    pub addr: SocketAddr,
    /// What it saw.
    pub state: Arc<ServerState>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0 with no stream delays.
    pub async fn start() -> TestServer {
        TestServer::with_timing(0, 0).await
    }

    /// Starts a server whose streams wait `ttft_ms` for the first chunk and `pace_ms` between.
    pub async fn with_timing(ttft_ms: u64, pace_ms: u64) -> TestServer {
        let state = Arc::new(ServerState {
            ttft_ms,
            pace_ms,
            ..ServerState::default()
        });
        let app = Router::new()
            .route("/v1/models", get(models))
            .route("/v1/chat/completions", post(chat))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("addr: {e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestServer { addr, state }
    }

    /// The base URL to put in `evald.toml`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state
            .seen
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }
}

async fn models() -> impl IntoResponse {
    let names = ["ok-a", "ok-b", "ok-c"];
    axum::Json(
        json!({ "object": "list", "data": names.iter().map(|n| json!({"id": n, "object": "model"})).collect::<Vec<_>>() }),
    )
}

fn completion(model: &str, text: &str, usage: bool) -> Value {
    let mut v = json!({
        "id": "chatcmpl-test", "object": "chat.completion", "model": model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
    });
    if usage {
        let c = text.split_whitespace().count().max(1);
        v["usage"] = json!({ "prompt_tokens": 7, "completion_tokens": c, "total_tokens": 7 + c });
    }
    v
}

/// HTTP 429 with `Retry-After: 1`.
fn too_many() -> Response {
    let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limited");
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

fn error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "message": msg, "type": "test_error" } })),
    )
        .into_response()
}

async fn chat(
    State(st): State<Arc<ServerState>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad request body"),
    };
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if let Ok(mut s) = st.seen.lock() {
        s.push(Seen {
            auth: auth.clone(),
            body: req.clone(),
        });
    }
    let model = req["model"].as_str().unwrap_or_default().to_string();
    let last = req["messages"]
        .as_array()
        .and_then(|m| m.last())
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    if model == "arith" {
        return arith::answer(&st, &last);
    }
    // `costly` and `gwcost` report 1,000 prompt tokens (400 cached) and 500 completion tokens
    // (100 of them reasoning); `gwcost` also sends the gateway's cost header, 0.0123 USD.
    if model == "costly" || model == "gwcost" || model == "unpriced" {
        let mut v = completion(&model, "A costly answer.", false);
        v["usage"] = json!({
            "prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 400},
            "completion_tokens_details": {"reasoning_tokens": 100},
        });
        let mut r = axum::Json(v).into_response();
        if model == "gwcost" {
            r.headers_mut().insert(
                "x-litellm-response-cost",
                header::HeaderValue::from_static("0.0123"),
            );
        }
        return r;
    }
    let attempt = {
        let mut a = st.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let n = a.entry(model.clone()).or_default();
        *n += 1;
        *n
    };
    match model.as_str() {
        "err500" => return error(StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded"),
        "err429" if attempt <= 2 => return too_many(),
        "some429" if attempt % 5 == 0 => return too_many(),
        "echo-auth" => {
            return error(
                StatusCode::UNAUTHORIZED,
                &format!("bad key: {}", auth.unwrap_or_default()),
            );
        }
        "badjson" => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "<html>this is not json",
            )
                .into_response();
        }
        "empty" => return axum::Json(json!({ "id": "x", "choices": [] })).into_response(),
        // A gateway that sends its cost header (0.01 USD) on every second answer only.
        "gwhalf" => {
            let mut r = axum::Json(completion(&model, "Half priced.", true)).into_response();
            if attempt % 2 == 1 {
                r.headers_mut().insert(
                    "x-litellm-response-cost",
                    header::HeaderValue::from_static("0.01"),
                );
            }
            return r;
        }
        m if m.starts_with("serial-") => {
            let ms: u64 = m[7..].parse().unwrap_or(100);
            let _one_at_a_time = st.serial.lock().await;
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        m if m.starts_with("slow-") => {
            let ms: u64 = m[5..].parse().unwrap_or(100);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        _ => {}
    }
    let text = match model.as_str() {
        "xss" => XSS.to_string(),
        "huge" => hostile_megabyte(),
        _ => format!("Echo: {last}"),
    };
    if req["stream"].as_bool() == Some(true) {
        let usage = req["stream_options"]["include_usage"].as_bool() == Some(true)
            && model != "nousage"
            && model != "chunky";
        // `stall`: every second request stalls once, 300 ms before its fourth chunk.
        let stall = model == "stall" && attempt % 2 == 0;
        return stream(&st, &model, &text, usage, stall);
    }
    axum::Json(completion(&model, &text, true)).into_response()
}

/// About 1 MiB of text with every character a CSV or JSON writer must get right.
pub fn hostile_megabyte() -> String {
    let unit = "a, b; \"quoted\" and\nnewline\ttab — ünïcödé 中文 🚀 \\ back\r\n";
    unit.repeat(1024 * 1024 / unit.len() + 1)
}

fn stream(st: &ServerState, model: &str, text: &str, usage: bool, stall: bool) -> Response {
    // `reasoner` thinks first: three reasoning chunks, then the answer as content.
    let thinking = if model == "reasoner" { 3 } else { 0 };
    // `chunky` sends three words a chunk (and no usage).
    let per_chunk = if model == "chunky" { 3 } else { 1 };
    let split: Vec<&str> = text.split(' ').collect();
    let words: Vec<String> = std::iter::repeat_n("hmm".to_string(), thinking)
        .chain(split.chunks(per_chunk).map(|c| c.join(" ")))
        .collect();
    let (ttft, pace) = (
        Duration::from_millis(st.ttft_ms),
        Duration::from_millis(st.pace_ms),
    );
    let model = model.to_string();
    let n = words.len();
    let s = async_stream_of(move |i| {
        let model = model.clone();
        let words = words.clone();
        async move {
            let chunk =
                |v: Value| Ok::<_, std::io::Error>(bytes::Bytes::from(format!("data: {v}\n\n")));
            if i == 0 {
                tokio::time::sleep(ttft).await;
            } else if i < n {
                tokio::time::sleep(pace).await;
            }
            if stall && i == 3 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            if model == "trunc" && i == 2 {
                return Some(Err(std::io::Error::other("cut")));
            }
            if i < thinking {
                return Some(chunk(
                    json!({"id": "c", "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": {"reasoning_content": words[i]}, "finish_reason": null}]}),
                ));
            }
            if i < n {
                let piece = if i == thinking {
                    words[i].clone()
                } else {
                    format!(" {}", words[i])
                };
                return Some(chunk(
                    json!({"id": "c", "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]}),
                ));
            }
            let done =
                || (model != "nodone").then(|| Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n")));
            match (i - n, usage) {
                (0, _) => Some(chunk(
                    json!({"id": "c", "object": "chat.completion.chunk", "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                )),
                (1, true) => Some(chunk(
                    json!({"id": "c", "object": "chat.completion.chunk", "model": model, "choices": [],
                    "usage": {"prompt_tokens": 7, "completion_tokens": n, "total_tokens": 7 + n}}),
                )),
                (1, false) | (2, true) => done(),
                _ => None,
            }
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(s))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A stream of `f(0)`, `f(1)`, … until `f` returns `None`.
fn async_stream_of<F, Fut, T>(f: F) -> impl futures_util::Stream<Item = T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    futures_util::stream::unfold((0usize, f), |(i, f)| async move {
        let item = f(i).await?;
        Some((item, (i + 1, f)))
    })
}

/// The `evald` binary of this build (`cargo test --workspace` builds it).
pub fn evald_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    // target/<profile>/deps/<test> → target/<profile>/evald
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("odd test path {}", exe.display()));
    let bin = dir.join("evald");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the evald binary)",
        bin.display()
    );
    // `cargo test -p evald-tests` alone does not rebuild the binary: a test must never pass on
    // a stale one.
    let built = modified(&bin);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for src in [
        "daemon/src",
        "model/src",
        "web/src",
        "web/templates",
        "plugins/host/src",
    ] {
        if let Some((newest, at)) = newest_file(&root.join(src))
            && newest > built
        {
            panic!(
                "{} is older than {}: build it first (`cargo build -p evald`, or run `cargo test --workspace`)",
                bin.display(),
                at.display()
            );
        }
    }
    bin
}

fn modified(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// The most recently modified file under `dir`, and when.
fn newest_file(dir: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let t = modified(&p);
                if newest.as_ref().is_none_or(|(n, _)| t > *n) {
                    newest = Some((t, p));
                }
            }
        }
    }
    newest
}

/// The API key the tests give evald; it must never show up anywhere.
pub const SECRET: &str = "sk-test-SECRET-4242424242";

/// Every file under `dir`, concatenated as bytes (to look for a secret).
pub fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            if let Ok(b) = std::fs::read(&d) {
                out.extend(b);
            }
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.extend(b);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}
