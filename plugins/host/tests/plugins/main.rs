//! Plugin host tests against real wasmtime, no mocks: the example plugins
//! built from `plugins/examples` (`examples.rs`), small hostile components
//! written as WAT text (`hostile.rs`), and the compiled cache (`cache.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod build;
mod cache;
mod examples;
mod hostile;

pub use build::example;

use std::time::Duration;

use evald_plugin_host::{Case, Host, Limits, Message, Observation};

/// A host with its cache in a fresh temp folder (kept alive by the guard).
pub fn host() -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = Host::new(dir.path().join("plugin-cache")).expect("host starts");
    (host, dir)
}

/// Limits that keep hostile tests quick.
pub fn quick_limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(200),
        memory_bytes: 16 * 1024 * 1024,
    }
}

/// An observation of `response` to a one-message case.
pub fn observation(response: &str, reference: Option<&str>) -> Observation {
    Observation {
        case: Case {
            id: "c1".into(),
            messages: vec![Message {
                role: "user".into(),
                content: "What is the capital of France?".into(),
            }],
            reference: reference.map(str::to_owned),
        },
        target: "demo/echo".into(),
        response: response.into(),
        latency_ms: 12.5,
        ttft_ms: Some(3.0),
        prompt_tokens: Some(10),
        completion_tokens: Some(2),
        finish_reason: Some("stop".into()),
        error: None,
    }
}
