//! Reading a chat completion's response, whichever client received it: the status and headers
//! first, then the body as a stream of byte chunks (a plain JSON answer, or an SSE stream timed
//! token by token). Both the general client (reqwest) and the benchmark client (evald's own
//! HTTP/1.1, one connection per worker) hand their bodies here, so a response is classified the
//! same way whoever fetched it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use evald_model::fmt::{clip, clip_owned};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

use super::{MAX_BODY_BYTES, Outcome, kind, ms, parse_retry_after, tokens};

/// A body that could not be read to its end.
#[derive(Debug)]
pub(crate) struct BodyError {
    /// The request's deadline passed while reading.
    pub timeout: bool,
    /// What the transport said.
    pub message: String,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.timeout {
            write!(f, "timed out: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for BodyError {}

/// What the head of a response says.
pub(crate) struct Head {
    /// The HTTP status.
    pub status: u16,
    /// `Retry-After`, read.
    pub retry_after: Option<Duration>,
    /// The body is an SSE stream.
    pub is_sse: bool,
    /// The values of the endpoint's `identity_headers` that the response carries.
    pub identity: std::collections::BTreeMap<String, String>,
    /// The cost a gateway reports (`x-litellm-response-cost`), USD.
    pub gateway_cost: Option<f64>,
}

impl Head {
    /// The parts of `headers` the reader needs.
    pub fn of(status: u16, headers: &hyper::HeaderMap, identity: &[String]) -> Head {
        Head::from_lookup(
            status,
            |name| headers.get(name).and_then(|v| v.to_str().ok()),
            identity,
        )
    }

    /// The same from any header lookup (`name` in lower case; the first value).
    pub fn from_lookup<'h>(
        status: u16,
        get: impl Fn(&str) -> Option<&'h str>,
        identity: &[String],
    ) -> Head {
        Head {
            gateway_cost: get("x-litellm-response-cost")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|c| c.is_finite() && *c >= 0.0),
            identity: identity
                .iter()
                .filter_map(|name| {
                    // Names come from the config as parsed header names: lower case already.
                    let v = get(name)?;
                    Some((name.clone(), clip(v, 200)))
                })
                .collect(),
            status,
            retry_after: get("retry-after").and_then(parse_retry_after),
            is_sse: get("content-type").is_some_and(|v| v.starts_with("text/event-stream")),
        }
    }
}

/// Reads a response (plain JSON or SSE) timed from `t0`; the second value is a `Retry-After`
/// to honour.
pub(crate) async fn response<S>(
    head: Head,
    body: S,
    t0: Instant,
    stream: bool,
    endpoint: &str,
) -> (Outcome, Option<Duration>)
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    let mut out = Outcome::default();
    out.metadata.http_status = Some(head.status);
    out.metadata.identity = head.identity;
    out.gateway_cost = head.gateway_cost;
    if !(200..300).contains(&head.status) {
        let retry_after = head.retry_after;
        let body = read_capped(body, 64 * 1024).await.unwrap_or_default();
        out.latency_ms = Some(ms(t0.elapsed()));
        out.metadata.error_kind = Some(kind::HTTP_STATUS.into());
        out.error = Some(format!(
            "HTTP {} from {endpoint}: {}",
            head.status,
            error_message(&body)
        ));
        return (out, retry_after);
    }
    if stream && head.is_sse {
        read_stream(body, t0, &mut out, endpoint).await;
        return (out, None);
    }
    match read_capped(body, MAX_BODY_BYTES).await {
        Err(e) => {
            out.latency_ms = Some(ms(t0.elapsed()));
            out.metadata.error_kind = Some(e.0.into());
            out.error = Some(format!("{} from {endpoint}", e.1));
        }
        Ok(bytes) => {
            out.latency_ms = Some(ms(t0.elapsed()));
            parse_completion(&bytes, &mut out, endpoint);
            // Without usage, the answer's tokens are counted (and marked so).
            let text = out.response.as_deref().unwrap_or_default();
            if out.completion_tokens.is_none() && !text.is_empty() {
                out.completion_tokens = Some(tokens::count_async(text).await);
                out.metadata.tokens_estimated = true;
            }
        }
    }
    (out, None)
}

/// Reads at most `cap` bytes of a body; more is an error (`body_too_large`).
pub(crate) async fn read_capped<S>(body: S, cap: usize) -> Result<Vec<u8>, (&'static str, String)>
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    let mut buf = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            let k = if e.timeout {
                kind::TIMEOUT
            } else {
                kind::TRANSPORT
            };
            (k, format!("reading the body failed: {}", e.message))
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
    /// The model that served the request, as the server names it.
    model: Option<String>,
    system_fingerprint: Option<String>,
}

/// Keeps the served model and fingerprint a response (or its first chunk with them) names.
fn note_identity(out: &mut Outcome, model: Option<String>, fingerprint: Option<String>) {
    if out.served_model.is_none() {
        out.served_model = model.filter(|m| !m.is_empty()).map(|m| clip_owned(m, 200));
    }
    if out.system_fingerprint.is_none() {
        out.system_fingerprint = fingerprint
            .filter(|f| !f.is_empty())
            .map(|f| clip_owned(f, 200));
    }
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

/// Reads a whole (not streamed) chat completion `body` into `out`: the answer, finish reason,
/// usage and the served model's identity; a body that is not one is `malformed`, one without
/// a choice `empty_choices`, each with an error naming `endpoint`. Public for the request
/// benchmark (`cargo bench -p evald-bench --bench request`).
pub fn parse_completion(body: &[u8], out: &mut Outcome, endpoint: &str) {
    // The body's UTF-8 checked once, then parsed as text: from bytes, serde_json checks each
    // string it reads, key by key — a sixth of the parse of a short completion (~800 ns; on
    // this path for every benchmark request, docs/benchmark.md).
    let parsed = std::str::from_utf8(body)
        .map_err(|e| format!("not UTF-8: {e}"))
        .and_then(|text| serde_json::from_str::<Completion>(text).map_err(|e| e.to_string()));
    let parsed = match parsed {
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
    note_identity(out, parsed.model, parsed.system_fingerprint);
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
    out.response = Some(text);
}

/// Reads an SSE stream: times the first token and the gaps between tokens, keeps the text
/// received so far when the stream breaks.
async fn read_stream<S>(body: S, t0: Instant, out: &mut Outcome, endpoint: &str)
where
    S: Stream<Item = Result<Bytes, BodyError>>,
{
    use eventsource_stream::Eventsource;
    // Count raw bytes before they reach the event parser, which buffers an event until its
    // blank line: an endless line must not grow memory past the cap.
    let mut seen = 0usize;
    let capped = body.map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > MAX_BODY_BYTES {
            return Err(BodyError {
                timeout: false,
                message: format!("stream exceeded {} MiB", MAX_BODY_BYTES >> 20),
            });
        }
        Ok(chunk)
    });
    let mut events = std::pin::pin!(capped.eventsource());
    let mut text = String::new();
    // Reasoning text, kept only to count its tokens when the server sends no usage.
    let mut reasoning = String::new();
    let mut last_token: Option<Instant> = None;
    let mut chunks = 0u32;
    let (mut gap_sum, mut gap_max, mut gaps) = (0.0f64, 0.0f64, 0u32);
    let mut done = false;
    let mut size = 0usize;
    let mut failure: Option<String> = None;
    let mut timed_out = false;
    while let Some(ev) = events.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                if let eventsource_stream::EventStreamError::Transport(b) = &e {
                    timed_out = b.timeout;
                }
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
        note_identity(out, chunk.model, chunk.system_fingerprint);
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
        out.completion_tokens =
            Some(tokens::count_async(&text).await + tokens::count_async(&reasoning).await);
        out.metadata.tokens_estimated = true;
    }
    out.response = Some(text);
    if let Some(f) = failure {
        let k = if timed_out {
            kind::STREAM_TIMEOUT
        } else {
            kind::STREAM
        };
        out.metadata.error_kind = Some(k.into());
        out.error = Some(f);
    }
}
