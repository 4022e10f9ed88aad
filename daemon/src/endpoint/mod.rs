//! The endpoint client: OpenAI-compatible chat completions over reqwest (plain or SSE-streamed)
//! and the built-in simulated model. Whatever goes wrong — refused, timeout, non-2xx, malformed
//! JSON, empty choices, a stream cut short — comes back as data on the [`Outcome`], never as a
//! Rust error: a failing endpoint is something evald measures, not something that stops it.

pub mod http1;
mod read;
pub use read::parse_completion;
pub mod simulated;
pub mod tokens;

use std::time::{Duration, Instant};

use evald_model::{Message, Metadata};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::config::{Endpoint, EndpointKind, Secret};
use crate::job::Params;

/// Largest response body evald reads; a bigger one is an error on the record, not an OOM.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Longest `Retry-After` evald honours; a server asking for more gets this much.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// One chat request.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    /// The model name as the endpoint knows it.
    pub model: &'a str,
    /// What is sent.
    pub messages: &'a [Message],
    /// Parameters sent when set.
    pub params: &'a Params,
    /// Send as an SSE stream and time the tokens.
    pub stream: bool,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Retries of a connect error, 429 or 5xx; `None` takes the endpoint's `max_retries`.
    /// Benchmarks pass their own (0 unless `[load] retries` opts in): a failed request is a
    /// failed request, with its own latency.
    pub max_retries: Option<u32>,
}

/// What came back from one request (after any retries).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Wall-clock time the request was first sent, Unix ms.
    pub started_ms: i64,
    /// The text received (partial when a stream broke off).
    pub response: Option<String>,
    /// End-to-end latency of the final attempt, ms; for a timeout, how long it waited.
    pub latency_ms: Option<f64>,
    /// Time to the first streamed token of any kind (content, reasoning, a tool call), ms.
    pub ttft_ms: Option<f64>,
    /// Usage, as the server reported it (or estimated, see `metadata.tokens_estimated`).
    pub prompt_tokens: Option<u32>,
    /// Completion tokens.
    pub completion_tokens: Option<u32>,
    /// Total tokens.
    pub total_tokens: Option<u32>,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// A one-line account of what went wrong, scrubbed of secrets.
    pub error: Option<String>,
    /// Attempts, error kind, status, stream timings.
    pub metadata: Metadata,
    /// The model the response says served it.
    pub served_model: Option<String>,
    /// The response's `system_fingerprint`.
    pub system_fingerprint: Option<String>,
    /// The cost the gateway reported for the request, USD.
    pub gateway_cost: Option<f64>,
    /// Every gap between consecutive token-bearing chunks, µs (streams). Not stored in the
    /// record: a benchmark pools them into its run's inter-token histogram.
    pub gaps_us: Vec<u32>,
}

/// Error classes recorded in `metadata.error_kind`.
pub mod kind {
    /// Nothing listening, DNS, TLS: the request never reached a server.
    pub const CONNECT: &str = "connect";
    /// The attempt ran past its timeout.
    pub const TIMEOUT: &str = "timeout";
    /// The server answered with a non-2xx status.
    pub const HTTP_STATUS: &str = "http_status";
    /// The body was not the JSON an OpenAI-compatible server sends.
    pub const MALFORMED: &str = "malformed";
    /// The JSON had no choices.
    pub const EMPTY_CHOICES: &str = "empty_choices";
    /// The body was larger than evald reads.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// A stream broke off, sent malformed data or never sent `[DONE]`.
    pub const STREAM: &str = "stream";
    /// The request's timeout passed while the stream was being read.
    pub const STREAM_TIMEOUT: &str = "stream_timeout";
    /// A shutdown cut the request off.
    pub const INTERRUPTED: &str = "interrupted";
    /// Any other transport failure.
    pub const TRANSPORT: &str = "transport";

    /// A failed request's kind as benchmarks and `evald_requests_total` count it: HTTP statuses
    /// split into `http_429`, `http_4xx` and `http_5xx`, a broken stream `stream_broken`; the
    /// rest (`stream_timeout` among them) as the record's own kind.
    pub fn counted(r: &evald_model::Record) -> String {
        let kind = r.metadata.error_kind.as_deref().unwrap_or("other");
        let s = match (kind, r.metadata.http_status) {
            (HTTP_STATUS, Some(429)) => "http_429",
            (HTTP_STATUS, Some(s)) if (400..500).contains(&s) => "http_4xx",
            (HTTP_STATUS, Some(_)) => "http_5xx",
            (STREAM, _) => "stream_broken",
            (other, _) => other,
        };
        s.to_string()
    }
}

/// Sends chat requests; one per daemon, shared by every run (it pools connections).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    secrets: Vec<Secret>,
}

impl Client {
    /// A client that scrubs `secrets` from every error text it records.
    pub fn new(secrets: Vec<Secret>) -> Client {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("evald/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client { http, secrets }
    }

    /// Sends one chat request, retrying connect errors, 429 and 5xx with backoff.
    pub async fn chat(&self, ep: &Endpoint, req: ChatRequest<'_>) -> Outcome {
        let started_ms = chrono::Utc::now().timestamp_millis();
        let out = match &ep.kind {
            EndpointKind::Simulated(sim) => simulated::chat(sim, req).await,
            EndpointKind::OpenAi {
                chat_url,
                api_key,
                headers,
                ..
            } => {
                self.chat_http(ep, chat_url, api_key.as_ref(), headers, req)
                    .await
            }
        };
        self.finish(out, started_ms, &req)
    }

    async fn chat_http(
        &self,
        ep: &Endpoint,
        chat_url: &reqwest::Url,
        api_key: Option<&Secret>,
        headers: &[(String, String)],
        req: ChatRequest<'_>,
    ) -> Outcome {
        // Serialized once: retries resend the same bytes.
        let body = request_body(&req);
        let auth = api_key.and_then(|k| {
            let mut v =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        self.retrying(ep, req.max_retries, || async {
            let mut rb = self
                .http
                .post(chat_url.clone())
                .timeout(req.timeout)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(a) = &auth {
                rb = rb.header(reqwest::header::AUTHORIZATION, a.clone());
            }
            for (k, v) in headers {
                rb = rb.header(k, v);
            }
            let t0 = Instant::now();
            match rb.send().await {
                Err(e) => {
                    let mut out = transport_error(&e, &ep.name);
                    // As the benchmark's client: a timeout keeps how long it waited.
                    if e.is_timeout() {
                        out.latency_ms = Some(ms(t0.elapsed()));
                    }
                    (out, None)
                }
                Ok(resp) => self.read_response(resp, t0, req, ep).await,
            }
        })
        .await
    }

    /// Makes attempts until one succeeds, fails in a way a retry cannot mend, or the retries
    /// (`max_retries`, else the endpoint's) are spent: connect errors, 429 and 5xx are retried
    /// after the server's `Retry-After` or an exponential backoff. Both clients retry here.
    async fn retrying<F, Fut>(
        &self,
        ep: &Endpoint,
        max_retries: Option<u32>,
        mut attempt_once: F,
    ) -> Outcome
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = (Outcome, Option<Duration>)>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (mut out, retry_after) = attempt_once().await;
            out.metadata.attempts = attempt;
            let retryable = match out.metadata.error_kind.as_deref() {
                Some(kind::CONNECT) => true,
                Some(kind::HTTP_STATUS) => out
                    .metadata
                    .http_status
                    .is_some_and(|s| s == 429 || s >= 500),
                _ => false,
            };
            if !retryable || attempt > max_retries.unwrap_or(ep.max_retries) {
                return out;
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            let why = out.error.as_deref().map(|e| redact(e, &self.secrets));
            tracing::debug!(endpoint = %ep.name, attempt, ?wait, error = ?why, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// What [`Client::chat`] does to every outcome, whichever client fetched it.
    fn finish(&self, mut out: Outcome, started_ms: i64, req: &ChatRequest<'_>) -> Outcome {
        out.started_ms = started_ms;
        out.metadata.stream = req.stream;
        if let Some(e) = out.error.take() {
            out.error = Some(redact(&e, &self.secrets));
        }
        out
    }

    /// Reads a reqwest response through the shared reader.
    async fn read_response(
        &self,
        resp: reqwest::Response,
        t0: Instant,
        req: ChatRequest<'_>,
        ep: &Endpoint,
    ) -> (Outcome, Option<Duration>) {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        read::response(
            read::Head::of(status, &headers, &ep.identity_headers),
            body_of(resp),
            t0,
            req.stream,
            &ep.name,
        )
        .await
    }

    /// The models an OpenAI-compatible endpoint lists at `GET /models` (sorted), or the
    /// simulated endpoint's.
    pub async fn list_models(&self, ep: &Endpoint) -> Result<Vec<String>, String> {
        let (base_url, api_key, headers) = match &ep.kind {
            EndpointKind::Simulated(_) => {
                return Ok(simulated::MODELS.iter().map(|s| s.to_string()).collect());
            }
            EndpointKind::OpenAi {
                base_url,
                api_key,
                headers,
                ..
            } => (base_url, api_key, headers),
        };
        let mut rb = self
            .http
            .get(format!("{base_url}/models"))
            .timeout(ep.timeout);
        if let Some(k) = api_key {
            rb = rb.bearer_auth(k.expose());
        }
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        let scrub = |s: String| redact(&s, &self.secrets);
        let resp = rb.send().await.map_err(|e| {
            scrub(format!(
                "listing models of {}: {}",
                ep.name,
                transport_error(&e, &ep.name).error.unwrap_or_default()
            ))
        })?;
        let status = resp.status();
        let body = read::read_capped(body_of(resp), 16 * 1024 * 1024)
            .await
            .map_err(|e| scrub(format!("listing models of {}: {}", ep.name, e.1)))?;
        if !status.is_success() {
            return Err(scrub(format!(
                "listing models of {}: HTTP {}: {}",
                ep.name,
                status.as_u16(),
                read::error_message(&body)
            )));
        }
        #[derive(Deserialize)]
        struct List {
            data: Vec<Item>,
        }
        #[derive(Deserialize)]
        struct Item {
            id: String,
        }
        let list: List = serde_json::from_slice(&body).map_err(|e| {
            scrub(format!(
                "listing models of {}: GET /models did not return {{\"data\": [{{\"id\": …}}]}}: {e}",
                ep.name
            ))
        })?;
        let mut ids: Vec<String> = list.data.into_iter().map(|i| i.id).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }
}

/// The JSON body of a chat request.
pub fn request_body(req: &ChatRequest<'_>) -> bytes::Bytes {
    let mut body = json!({ "model": req.model, "messages": req.messages });
    if let Some(t) = req.params.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(m) = req.params.max_tokens {
        body["max_tokens"] = json!(m);
    }
    if let Some(p) = req.params.top_p {
        body["top_p"] = json!(p);
    }
    if req.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({ "include_usage": true });
    }
    bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// Milliseconds of a duration, with sub-ms precision.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Exponential backoff with jitter: ~250 ms, 500 ms, 1 s, … capped at 8 s.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.saturating_sub(1).min(5));
    let jitter = rand::random::<u64>() % (base / 4 + 1);
    Duration::from_millis(base.min(8000) + jitter)
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let d = if let Ok(secs) = v.parse::<f64>() {
        // `inf`, `NaN` or 1e30 would panic Duration: clamp first.
        if !secs.is_finite() {
            return Some(MAX_RETRY_AFTER);
        }
        Duration::from_secs_f64(secs.clamp(0.0, MAX_RETRY_AFTER.as_secs_f64()))
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let delta = at.timestamp_millis() - chrono::Utc::now().timestamp_millis();
        Duration::from_millis(delta.max(0) as u64)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// A reqwest body as the shared reader takes it.
fn body_of(
    resp: reqwest::Response,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, read::BodyError>> {
    resp.bytes_stream().map(|c| {
        c.map_err(|e| read::BodyError {
            timeout: e.is_timeout(),
            message: e.to_string(),
        })
    })
}

fn transport_error(e: &reqwest::Error, endpoint: &str) -> Outcome {
    let mut out = Outcome::default();
    let (k, what) = if e.is_timeout() {
        (kind::TIMEOUT, "timed out")
    } else if e.is_connect() {
        (kind::CONNECT, "cannot connect")
    } else {
        (kind::TRANSPORT, "request failed")
    };
    out.metadata.error_kind = Some(k.into());
    // reqwest's Display hides the cause chain; the innermost cause is the useful part
    // ("Connection refused", "deadline has elapsed").
    let mut cause = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    out.error = Some(format!("{what} to {endpoint}: {cause}"));
    out
}

/// Replaces every secret, and anything after `Bearer `, with `[redacted]`: an endpoint that
/// echoes the Authorization header back must not get the key into the store or the logs.
pub fn redact(text: &str, secrets: &[Secret]) -> String {
    let mut s = text.to_string();
    for k in secrets {
        if k.expose().len() >= 4 {
            s = s.replace(k.expose(), "[redacted]");
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("Bearer ") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
            .unwrap_or(rest.len());
        if end > 0 {
            out.push_str("[redacted]");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::read::{error_message, parse_completion};
    use super::*;

    #[test]
    fn redact_removes_keys_and_bearer_values() {
        let s = redact(
            "bad key: Bearer sk-abc123, also sk-abc123 and \"Bearer xyz\"",
            &[Secret::new("sk-abc123")],
        );
        assert!(!s.contains("sk-abc123") && !s.contains("xyz"), "{s}");
        assert!(s.contains("Bearer [redacted]"), "{s}");
    }

    #[test]
    fn error_message_prefers_openai_shape() {
        assert_eq!(
            error_message(br#"{"error":{"message":"upstream exploded"}}"#),
            "upstream exploded"
        );
        assert_eq!(error_message(br#"{"detail":"nope"}"#), "nope");
        assert_eq!(
            error_message(b"<html>\n oops </html>"),
            "<html> oops </html>"
        );
        assert_eq!(error_message(b""), "(empty body)");
    }

    #[test]
    fn retry_after_takes_seconds_and_caps() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after("9999"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("inf"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("1e30"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("NaN"), Some(MAX_RETRY_AFTER));
        assert_eq!(parse_retry_after("-5"), Some(Duration::ZERO));
    }

    /// Reasoning and cached tokens come from usage details (OpenAI's names), and are absent
    /// when the server sends none.
    #[test]
    fn usage_details_give_reasoning_and_cached_tokens() {
        let mut o = Outcome::default();
        parse_completion(
            br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1000,"completion_tokens":500,"total_tokens":1500,"prompt_tokens_details":{"cached_tokens":400},"completion_tokens_details":{"reasoning_tokens":100}}}"#,
            &mut o,
            "e",
        );
        assert_eq!(
            (o.metadata.reasoning_tokens, o.metadata.cached_tokens),
            (Some(100), Some(400))
        );
        assert_eq!(o.completion_tokens, Some(500));
        let mut o = Outcome::default();
        parse_completion(
            br#"{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":1,"completion_tokens":1}}"#,
            &mut o,
            "e",
        );
        assert_eq!(
            (o.metadata.reasoning_tokens, o.metadata.cached_tokens),
            (None, None)
        );
    }

    #[test]
    fn completion_parsing_is_lenient_and_reports_what_is_missing() {
        let mut o = Outcome::default();
        parse_completion(
            br#"{"choices":[{"message":{"content":"hi"},"finish_reason":"stop"}]}"#,
            &mut o,
            "e",
        );
        assert_eq!(o.response.as_deref(), Some("hi"));
        assert_eq!(o.prompt_tokens, None);
        let mut o = Outcome::default();
        parse_completion(br#"{"choices":[]}"#, &mut o, "e");
        assert_eq!(o.metadata.error_kind.as_deref(), Some(kind::EMPTY_CHOICES));
        let mut o = Outcome::default();
        parse_completion(b"<html>", &mut o, "e");
        assert_eq!(o.metadata.error_kind.as_deref(), Some(kind::MALFORMED));
        // Bytes that are not UTF-8, inside a string or out of one: malformed, not a panic or
        // a lossy answer.
        for body in [
            &b"{\"choices\":[{\"message\":{\"content\":\"h\xffi\"}}]}"[..],
            b"\xff{}",
        ] {
            let mut o = Outcome::default();
            parse_completion(body, &mut o, "e");
            assert_eq!(o.metadata.error_kind.as_deref(), Some(kind::MALFORMED));
            assert!(
                o.error.as_deref().unwrap().contains("not UTF-8"),
                "{:?}",
                o.error
            );
            assert_eq!(o.response, None);
        }
    }
}
