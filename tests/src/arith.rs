//! The `arith` model of the test server: arithmetic answers whose quality and served-model
//! identity a test drives (`TestServer::set_arith`).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{ServerState, TestServer, completion};

/// The `arith` model answers "What is K + B?" with K + B, except: cases with K ≤ `bad_cases`
/// get a wrong answer (only the first time each prompt is asked, with `wrong_once`); every
/// answer carries `system_fingerprint` and the `x-model-id` header when set. A model id
/// `x|y` is two deployments behind one name, as a load balancer serves them: cases K ≤ 20
/// are answered by `x`, the rest by `y`.
#[derive(Debug, Default, Clone)]
pub struct Arith {
    /// Cases K = 1..=bad_cases answer wrong.
    pub bad_cases: u32,
    /// Wrong only on a prompt's first asking (the re-send of `confirm` then passes).
    pub wrong_once: bool,
    /// The response's `system_fingerprint`.
    pub fingerprint: Option<String>,
    /// The `x-model-id` response header.
    pub model_id: Option<String>,
    /// Prompts already answered wrong once.
    pub asked: std::collections::HashSet<String>,
}

impl TestServer {
    /// Sets how the `arith` model answers from now on (`asked` is kept).
    pub fn set_arith(
        &self,
        bad_cases: u32,
        wrong_once: bool,
        fingerprint: Option<&str>,
        model_id: Option<&str>,
    ) {
        let mut a = self.state.arith.lock().unwrap_or_else(|p| p.into_inner());
        a.bad_cases = bad_cases;
        a.wrong_once = wrong_once;
        a.fingerprint = fingerprint.map(String::from);
        a.model_id = model_id.map(String::from);
    }
}

pub(crate) fn answer(st: &ServerState, prompt: &str) -> Response {
    let nums: Vec<u64> = prompt
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect();
    let (k, b) = (
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    );
    let mut a = st.arith.lock().unwrap_or_else(|p| p.into_inner());
    let mut wrong = k >= 1 && k <= u64::from(a.bad_cases);
    if wrong && a.wrong_once {
        wrong = a.asked.insert(prompt.to_string());
    }
    let answer = if wrong { k + b + 1 } else { k + b };
    let mut v = completion("arith-2024-08-06", &answer.to_string(), true);
    if let Some(f) = &a.fingerprint {
        v["system_fingerprint"] = json!(f);
    }
    let mut r = axum::Json(v).into_response();
    let model_id = a.model_id.as_deref().map(|m| match m.split_once('|') {
        Some((x, _)) if k <= 20 => x,
        Some((_, y)) => y,
        None => m,
    });
    if let Some(id) = model_id.and_then(|m| header::HeaderValue::from_str(m).ok()) {
        r.headers_mut().insert("x-model-id", id);
    }
    r
}
