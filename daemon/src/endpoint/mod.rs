//! The endpoint client: OpenAI-compatible chat completions over reqwest (plain or SSE-streamed)
//! and the built-in simulated model. Whatever goes wrong — refused, timeout, non-2xx, malformed
//! JSON, empty choices, a stream cut short — comes back as data on the [`Outcome`], never as a
//! Rust error: a failing endpoint is something evald measures, not something that stops it.

pub mod simulated;
pub mod tokens;

use std::time::{Duration, Instant};

use evald_model::fmt::clip;
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
    /// End-to-end latency of the final attempt, ms.
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
    /// A shutdown cut the request off.
    pub const INTERRUPTED: &str = "interrupted";
    /// Any other transport failure.
    pub const TRANSPORT: &str = "transport";
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
        let mut out = match &ep.kind {
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
        out.started_ms = started_ms;
        out.metadata.stream = req.stream;
        if let Some(e) = out.error.take() {
            out.error = Some(redact(&e, &self.secrets));
        }
        out
    }

    async fn chat_http(
        &self,
        ep: &Endpoint,
        chat_url: &reqwest::Url,
        api_key: Option<&Secret>,
        headers: &[(String, String)],
        req: ChatRequest<'_>,
    ) -> Outcome {
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
        // Serialize once: retries resend the same bytes.
        let body = bytes::Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let auth = api_key.and_then(|k| {
            let mut v =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        let mut attempt = 0u32;
        loop {
            attempt += 1;
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
            let (mut out, retry_after) = match rb.send().await {
                Err(e) => (transport_error(&e, &ep.name), None),
                Ok(resp) => self.read_response(resp, t0, req, &ep.name).await,
            };
            out.metadata.attempts = attempt;
            let retryable = match out.metadata.error_kind.as_deref() {
                Some(kind::CONNECT) => true,
                Some(kind::HTTP_STATUS) => out
                    .metadata
                    .http_status
                    .is_some_and(|s| s == 429 || s >= 500),
                _ => false,
            };
            if !retryable || attempt > req.max_retries.unwrap_or(ep.max_retries) {
                return out;
            }
            let wait = retry_after.unwrap_or_else(|| backoff(attempt));
            let why = out.error.as_deref().map(|e| redact(e, &self.secrets));
            tracing::debug!(endpoint = %ep.name, attempt, ?wait, error = ?why, "retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Reads a response (plain JSON or SSE); the second value is a `Retry-After` to honour.
    async fn read_response(
        &self,
        resp: reqwest::Response,
        t0: Instant,
        req: ChatRequest<'_>,
        endpoint: &str,
    ) -> (Outcome, Option<Duration>) {
        let status = resp.status();
        let mut out = Outcome::default();
        out.metadata.http_status = Some(status.as_u16());
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = read_capped(resp, 64 * 1024).await.unwrap_or_default();
            out.latency_ms = Some(ms(t0.elapsed()));
            out.metadata.error_kind = Some(kind::HTTP_STATUS.into());
            out.error = Some(format!(
                "HTTP {} from {endpoint}: {}",
                status.as_u16(),
                error_message(&body)
            ));
            return (out, retry_after);
        }
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if req.stream && is_sse {
            read_stream(resp, t0, &mut out, endpoint).await;
            return (out, None);
        }
        match read_capped(resp, MAX_BODY_BYTES).await {
            Err(e) => {
                out.latency_ms = Some(ms(t0.elapsed()));
                out.metadata.error_kind = Some(e.0.into());
                out.error = Some(format!("{} from {endpoint}", e.1));
            }
            Ok(bytes) => {
                out.latency_ms = Some(ms(t0.elapsed()));
                parse_completion(&bytes, &mut out, endpoint);
            }
        }
        (out, None)
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
        let body = read_capped(resp, 16 * 1024 * 1024)
            .await
            .map_err(|e| scrub(format!("listing models of {}: {}", ep.name, e.1)))?;
        if !status.is_success() {
            return Err(scrub(format!(
                "listing models of {}: HTTP {}: {}",
                ep.name,
                status.as_u16(),
                error_message(&body)
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

/// Reads at most `cap` bytes of a body; more is an error (`body_too_large`).
async fn read_capped(
    resp: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, (&'static str, String)> {
    let mut buf = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let k = if e.is_timeout() {
                kind::TIMEOUT
            } else {
                kind::TRANSPORT
            };
            (k, format!("reading the body failed: {e}"))
        })?;
        if buf.len() + chunk.len() > cap {
            return Err((
                kind::BODY_TOO_LARGE,
                format!("response body larger than {} MiB", cap / (1024 * 1024)),
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// The human part of an error body: `error.message` (OpenAI style), `error`, `message`,
/// `detail`, or the start of the text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let pick = [
            v.pointer("/error/message"),
            v.get("error").filter(|e| e.is_string()),
            v.get("message"),
            v.get("detail"),
        ];
        if let Some(s) = pick.into_iter().flatten().find_map(|x| x.as_str()) {
            return clip(s, 500);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        "(empty body)".into()
    } else {
        clip(&text, 500)
    }
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<ChoiceMessage>,
    delta: Option<ChoiceMessage>,
    text: Option<String>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
    /// DeepSeek's and vLLM's reasoning parsers.
    reasoning_content: Option<String>,
    /// OpenRouter's and some gateways' name for the same.
    reasoning: Option<String>,
    /// A tool call being streamed: token-bearing, whatever it holds.
    tool_calls: Option<serde_json::Value>,
}

impl ChoiceMessage {
    /// Whether a streamed delta carries a token of any kind (content, reasoning or a tool
    /// call): TTFT and the inter-token gaps count these.
    fn has_token(&self) -> bool {
        let some = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        some(&self.content)
            || some(&self.reasoning_content)
            || some(&self.reasoning)
            || self
                .tool_calls
                .as_ref()
                .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
    }
}

#[derive(Deserialize, Clone, Copy)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
    total_tokens: Option<u32>,
    completion_tokens_details: Option<UsageDetails>,
    prompt_tokens_details: Option<UsageDetails>,
}

/// `completion_tokens_details` / `prompt_tokens_details` of an OpenAI usage object.
#[derive(Deserialize, Clone, Copy)]
struct UsageDetails {
    reasoning_tokens: Option<u32>,
    cached_tokens: Option<u32>,
}

fn apply_usage(out: &mut Outcome, u: Usage) {
    out.metadata.reasoning_tokens = u.completion_tokens_details.and_then(|d| d.reasoning_tokens);
    out.metadata.cached_tokens = u.prompt_tokens_details.and_then(|d| d.cached_tokens);
    out.prompt_tokens = u.prompt_tokens;
    out.completion_tokens = u.completion_tokens;
    out.total_tokens = u
        .total_tokens
        .or(match (u.prompt_tokens, u.completion_tokens) {
            (Some(p), Some(c)) => Some(p + c),
            _ => None,
        });
}

fn parse_completion(body: &[u8], out: &mut Outcome, endpoint: &str) {
    let parsed: Completion = match serde_json::from_slice(body) {
        Ok(c) => c,
        Err(e) => {
            out.metadata.error_kind = Some(kind::MALFORMED.into());
            out.error = Some(format!(
                "malformed response from {endpoint}: not a chat completion ({e}); body starts {:?}",
                clip(&String::from_utf8_lossy(body), 80)
            ));
            return;
        }
    };
    if let Some(u) = parsed.usage {
        apply_usage(out, u);
    }
    let Some(choice) = parsed.choices.into_iter().next() else {
        out.metadata.error_kind = Some(kind::EMPTY_CHOICES.into());
        out.error = Some(format!(
            "empty choices from {endpoint}: the response had no answer"
        ));
        return;
    };
    out.finish_reason = choice.finish_reason;
    let text = choice
        .message
        .and_then(|m| m.content)
        .or(choice.text)
        .unwrap_or_default();
    if out.completion_tokens.is_none() && !text.is_empty() {
        out.completion_tokens = Some(tokens::count(&text));
        out.metadata.tokens_estimated = true;
    }
    out.response = Some(text);
}

/// Reads an SSE stream: times the first token and the gaps between tokens, keeps the text
/// received so far when the stream breaks.
async fn read_stream(resp: reqwest::Response, t0: Instant, out: &mut Outcome, endpoint: &str) {
    use eventsource_stream::Eventsource;
    // Count raw bytes before they reach the event parser, which buffers an event until its
    // blank line: an endless line must not grow memory past the cap.
    let mut seen = 0usize;
    let capped = resp.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len();
        if seen > MAX_BODY_BYTES {
            return Err(std::io::Error::other(format!(
                "stream exceeded {} MiB",
                MAX_BODY_BYTES >> 20
            )));
        }
        Ok(chunk)
    });
    let mut events = capped.eventsource();
    let mut text = String::new();
    // Reasoning text, kept only to count its tokens when the server sends no usage.
    let mut reasoning = String::new();
    let mut last_token: Option<Instant> = None;
    let mut chunks = 0u32;
    let (mut gap_sum, mut gap_max, mut gaps) = (0.0f64, 0.0f64, 0u32);
    let mut done = false;
    let mut size = 0usize;
    let mut failure: Option<String> = None;
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                failure = Some(format!("stream from {endpoint} broke off: {e}"));
                break;
            }
        };
        let data = ev.data.trim();
        if data == "[DONE]" {
            done = true;
            break;
        }
        if data.is_empty() {
            continue;
        }
        size += data.len();
        if size > MAX_BODY_BYTES {
            failure = Some(format!(
                "stream from {endpoint} exceeded {} MiB",
                MAX_BODY_BYTES >> 20
            ));
            break;
        }
        let chunk: Completion = match serde_json::from_str(data) {
            Ok(c) => c,
            Err(e) => {
                failure = Some(format!(
                    "malformed stream chunk from {endpoint} ({e}): {:?}",
                    clip(data, 80)
                ));
                break;
            }
        };
        if let Some(u) = chunk.usage {
            apply_usage(out, u);
        }
        for c in chunk.choices {
            if let Some(f) = c.finish_reason {
                out.finish_reason = Some(f);
            }
            let token = c.delta.as_ref().is_some_and(ChoiceMessage::has_token);
            if let Some(d) = &c.delta {
                for r in [&d.reasoning_content, &d.reasoning].into_iter().flatten() {
                    reasoning.push_str(r);
                }
            }
            let piece = c
                .delta
                .and_then(|d| d.content)
                .or(c.text)
                .unwrap_or_default();
            if piece.is_empty() && !token {
                continue;
            }
            let now = Instant::now();
            // Time to first content: equal to the TTFT unless the model reasoned first.
            if !piece.is_empty() && out.metadata.ttfc_ms.is_none() {
                out.metadata.ttfc_ms = Some(ms(now - t0));
            }
            match last_token {
                None => out.ttft_ms = Some(ms(now - t0)),
                Some(prev) => {
                    let g = ms(now - prev);
                    out.gaps_us
                        .push(u32::try_from((now - prev).as_micros()).unwrap_or(u32::MAX));
                    gap_sum += g;
                    gap_max = gap_max.max(g);
                    gaps += 1;
                }
            }
            last_token = Some(now);
            chunks += 1;
            text.push_str(&piece);
        }
    }
    if !done && failure.is_none() {
        failure = Some(format!("stream from {endpoint} ended before [DONE]"));
    }
    out.latency_ms = Some(ms(t0.elapsed()));
    if gaps > 0 {
        out.metadata.itl_mean_ms = Some(gap_sum / gaps as f64);
        out.metadata.itl_max_ms = Some(gap_max);
    }
    if out.completion_tokens.is_none() && chunks > 0 {
        // Counted, not taken from the chunks: a chunk may carry several tokens.
        out.completion_tokens = Some(tokens::count(&text) + tokens::count(&reasoning));
        out.metadata.tokens_estimated = true;
    }
    out.response = Some(text);
    if let Some(f) = failure {
        out.metadata.error_kind = Some(kind::STREAM.into());
        out.error = Some(f);
    }
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
    }
}
