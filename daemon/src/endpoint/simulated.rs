//! The built-in simulated endpoint: a model that needs no network, so a new install shows real
//! data at once and the shipped example jobs run anywhere. It answers deterministically from the
//! prompt (arithmetic and a few capitals it knows, else an echo), waits the configured latency
//! and jitter, emits tokens at the configured rate, and reports usage.
//!
//! Models: `echo` always echoes; `careful` answers what it knows; `sloppy` gets about one answer
//! in three wrong (deterministically), so comparisons have something to show. Any other model
//! name behaves like `careful`.

use std::time::Duration;

// tokio's clock, so tests with a paused clock see the simulated latency exactly.
use tokio::time::Instant;

use crate::config::Simulated;
use crate::endpoint::{ChatRequest, Outcome, kind, ms};

/// What `GET /models` lists for a simulated endpoint.
pub const MODELS: [&str; 3] = ["careful", "echo", "sloppy"];

const CAPITALS: [(&str, &str); 10] = [
    ("france", "Paris"),
    ("japan", "Tokyo"),
    ("germany", "Berlin"),
    ("italy", "Rome"),
    ("spain", "Madrid"),
    ("canada", "Ottawa"),
    ("australia", "Canberra"),
    ("brazil", "Brasília"),
    ("kenya", "Nairobi"),
    ("norway", "Oslo"),
];

/// A stable hash (FNV-1a), so the same prompt gets the same answer on every machine.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The answer `model` gives to `prompt`.
pub fn answer(model: &str, prompt: &str) -> String {
    if model == "echo" {
        return format!("Echo: {prompt}");
    }
    let wrong = model.contains("sloppy") && fnv(prompt).is_multiple_of(3);
    if let Some(v) = arithmetic(prompt) {
        return (if wrong { v + 1 } else { v }).to_string();
    }
    let lower = prompt.to_lowercase();
    if lower.contains("capital") {
        for (i, (country, capital)) in CAPITALS.iter().enumerate() {
            if lower.contains(country) {
                let c = if wrong {
                    CAPITALS[(i + 1) % CAPITALS.len()].1
                } else {
                    capital
                };
                return if lower.contains("json") {
                    format!("{{\"capital\": \"{c}\"}}")
                } else {
                    format!("{c}.")
                };
            }
        }
    }
    format!("Echo: {prompt}")
}

/// `a + b`, `a - b`, `a * b` (or `x`, `×`) somewhere in the text.
fn arithmetic(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let a: i64 = text[start..i].parse().ok()?;
            let rest = text[i..].trim_start();
            let mut chars = rest.chars();
            let op = chars.next()?;
            let after = chars.as_str().trim_start();
            let digits: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
            if let (true, Ok(c)) = (
                matches!(op, '+' | '-' | '*' | 'x' | '×'),
                digits.parse::<i64>(),
            ) {
                return Some(match op {
                    '+' => a.checked_add(c)?,
                    '-' => a.checked_sub(c)?,
                    _ => a.checked_mul(c)?,
                });
            }
        } else {
            i += 1;
        }
    }
    None
}

fn words(s: &str) -> u32 {
    s.split_whitespace().count().max(1) as u32
}

/// Answers one request like a server would, timing included.
pub async fn chat(sim: &Simulated, req: ChatRequest<'_>) -> Outcome {
    let t0 = Instant::now();
    let prompt = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| m.content.as_str())
        .unwrap_or_default();
    let mut text = answer(req.model, prompt);
    let mut completion = words(&text);
    if let Some(max) = req.params.max_tokens
        && completion > max
    {
        text = text
            .split_whitespace()
            .take(max as usize)
            .collect::<Vec<_>>()
            .join(" ");
        completion = max;
    }
    let jitter = if sim.jitter_ms > 0 {
        rand::random::<u64>() % (sim.jitter_ms + 1)
    } else {
        0
    };
    let first = Duration::from_millis(sim.latency_ms + jitter);
    let per_token = Duration::from_secs_f64(1.0 / sim.tokens_per_second);
    let total = first + per_token * completion.saturating_sub(1);
    let mut out = Outcome::default();
    out.metadata.attempts = 1;
    if total > req.timeout {
        tokio::time::sleep(req.timeout).await;
        out.latency_ms = Some(ms(t0.elapsed()));
        out.metadata.error_kind = Some(kind::TIMEOUT.into());
        out.error = Some(format!("timed out after {:?} (simulated)", req.timeout));
        return out;
    }
    if req.stream {
        tokio::time::sleep(first).await;
        out.ttft_ms = Some(ms(t0.elapsed()));
        // The simulated model does not reason: its first token is content.
        out.metadata.ttfc_ms = out.ttft_ms;
        tokio::time::sleep(total - first).await;
        if completion > 1 {
            out.metadata.itl_mean_ms = Some(ms(per_token));
            out.metadata.itl_max_ms = Some(ms(per_token));
            // Its tokens are evenly paced: every gap is the per-token time.
            let gap = u32::try_from(per_token.as_micros()).unwrap_or(u32::MAX);
            out.gaps_us = vec![gap; completion as usize - 1];
        }
    } else {
        tokio::time::sleep(total).await;
    }
    out.latency_ms = Some(ms(t0.elapsed()));
    let prompt_tokens: u32 = req.messages.iter().map(|m| words(&m.content)).sum();
    out.prompt_tokens = Some(prompt_tokens);
    out.completion_tokens = Some(completion);
    out.total_tokens = Some(prompt_tokens + completion);
    out.finish_reason = Some("stop".into());
    out.response = Some(text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Params;
    use evald_model::Message;

    #[test]
    fn answers_are_deterministic_and_differ_by_model() {
        assert_eq!(answer("echo", "What is 2 + 3?"), "Echo: What is 2 + 3?");
        assert_eq!(answer("careful", "What is 2 + 3?"), "5");
        assert_eq!(answer("careful", "What is 12 x 3?"), "36");
        assert_eq!(
            answer("careful", "The capital of France? One word."),
            "Paris."
        );
        assert_eq!(
            answer("careful", "Capital of Japan as JSON"),
            "{\"capital\": \"Tokyo\"}"
        );
        let sloppy_wrong = (0..30)
            .filter(|i| answer("sloppy", &format!("{i} + 1")) != (i + 1).to_string())
            .count();
        assert!((3..=20).contains(&sloppy_wrong), "{sloppy_wrong}");
        assert_eq!(answer("sloppy", "7 + 1"), answer("sloppy", "7 + 1"));
    }

    #[tokio::test(start_paused = true)]
    async fn latency_follows_the_settings() {
        let sim = Simulated {
            latency_ms: 150,
            jitter_ms: 0,
            tokens_per_second: 10.0,
        };
        let msgs = [Message {
            role: "user".into(),
            content: "say one two three".into(),
        }];
        let params = Params::default();
        let req = ChatRequest {
            model: "echo",
            messages: &msgs,
            params: &params,
            stream: true,
            timeout: Duration::from_secs(5),
            max_retries: None,
        };
        let out = chat(&sim, req).await;
        // "Echo: say one two three" = 5 words: 150 ms to the first, then 4 × 100 ms.
        let ttft = out.ttft_ms.unwrap();
        let e2e = out.latency_ms.unwrap();
        assert!((150.0..151.0).contains(&ttft), "{ttft}");
        assert!((550.0..551.0).contains(&e2e), "{e2e}");
        assert_eq!(out.completion_tokens, Some(5));
        let slow = chat(
            &sim,
            ChatRequest {
                timeout: Duration::from_millis(100),
                ..req
            },
        )
        .await;
        assert_eq!(slow.metadata.error_kind.as_deref(), Some(kind::TIMEOUT));
    }
}
