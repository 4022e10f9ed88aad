//! The benchmark client for plain-HTTP endpoints: HTTP/1.1 on hyper's connection-level API, one
//! connection per request in flight (a closed-loop worker keeps reusing the one it took), no
//! URL parsing, header building or pool bookkeeping per request, and one timer per request.
//! What comes back goes through the same reader ([`super::read`]), retry rule and secret
//! scrubbing as the general client, so an error is classified the same whichever client met
//! it. This is what oha does; the general client (reqwest) pays for a pool keyed by host, a
//! URL per request and hand-offs that add to every latency a benchmark reports.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;

use super::read::{self, BodyError};
use super::{ChatRequest, Client, Outcome, kind};
use crate::config::{Endpoint, EndpointKind};

/// One endpoint's connections, for one benchmark phase; dropped with it, closing them.
pub struct Http1 {
    endpoint: Arc<Endpoint>,
    host: String,
    port: u16,
    path: hyper::Uri,
    headers: HeaderMap,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Http1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1")
            .field("endpoint", &self.endpoint.name)
            .finish()
    }
}

/// Whether this client stands aside: a proxy is configured in the environment (the general
/// client honours it, this one would not), or `EVALD_GENERAL_CLIENT` is set (to compare the
/// two clients, or to rule this one out when a server misbehaves).
fn stand_aside() -> bool {
    [
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "EVALD_GENERAL_CLIENT",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
}

impl Http1 {
    /// The client for `ep` when it is a plain-HTTP OpenAI-compatible endpoint reached without a
    /// proxy; `None` otherwise (HTTPS, the simulated model), and the general client serves.
    pub fn for_endpoint(ep: &Arc<Endpoint>) -> Option<Http1> {
        let EndpointKind::OpenAi {
            chat_url,
            api_key,
            headers: extra,
            ..
        } = &ep.kind
        else {
            return None;
        };
        if chat_url.scheme() != "http" || stand_aside() {
            return None;
        }
        let host = chat_url.host_str()?.to_string();
        let port = chat_url.port_or_known_default()?;
        let path: hyper::Uri = match chat_url.query() {
            Some(q) => format!("{}?{q}", chat_url.path()),
            None => chat_url.path().to_string(),
        }
        .parse()
        .ok()?;
        let mut headers = HeaderMap::new();
        let authority = match chat_url.port() {
            Some(p) => format!("{}:{p}", chat_url.host_str()?),
            None => chat_url.host_str()?.to_string(),
        };
        headers.insert(header::HOST, HeaderValue::from_str(&authority).ok()?);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::USER_AGENT,
            HeaderValue::from_static(concat!("evald/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(k) = api_key {
            let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose())).ok()?;
            v.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, v);
        }
        for (k, v) in extra {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).ok()?,
                HeaderValue::from_str(v).ok()?,
            );
        }
        Some(Http1 {
            endpoint: ep.clone(),
            host,
            port,
            path,
            headers,
            idle: Mutex::new(Vec::new()),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, else a new one; the flag says whether it was idle (and so may have
    /// been closed by the server meanwhile).
    async fn checkout(&self, deadline: tokio::time::Instant) -> Result<(Conn, bool), Outcome> {
        if let Some(mut c) = self.idle().pop() {
            // Moving a registered timer later is an atomic store, not a trip through the
            // timer wheel's lock: one timer per connection, reset per request.
            c.timer.as_mut().reset(deadline);
            return Ok((c, true));
        }
        let mut timer = Box::pin(tokio::time::sleep_until(deadline));
        let name = &self.endpoint.name;
        let connect = async {
            let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await?;
            tcp.set_nodelay(true)?;
            hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(std::io::Error::other)
        };
        let (sender, driver) = tokio::select! {
            biased;
            c = connect => c.map_err(|e| failed(kind::CONNECT, format!("cannot connect to {name}: {e}")))?,
            _ = timer.as_mut() => return Err(failed(kind::TIMEOUT, format!("timed out to {name}: connecting took longer than the timeout"))),
        };
        Ok((
            Conn {
                sender,
                driver: Box::pin(driver),
                timer,
            },
            false,
        ))
    }

    /// One attempt: the body written on a connection, the response read by the shared reader.
    async fn attempt(&self, body: Bytes, req: ChatRequest<'_>) -> (Outcome, Option<Duration>) {
        let name = &self.endpoint.name;
        // One deadline for the whole attempt: connecting, the head and the body.
        let deadline = tokio::time::Instant::now() + req.timeout;
        let mut retried_fresh = false;
        loop {
            let (mut conn, reused) = match self.checkout(deadline).await {
                Ok(c) => c,
                Err(out) => return (out, None),
            };
            let mut closed = false;
            let result = {
                let Conn {
                    sender,
                    driver,
                    timer,
                } = &mut conn;
                let exchange = exchange(
                    sender,
                    self.request(body.clone()),
                    timer,
                    req,
                    name,
                    &self.endpoint.identity_headers,
                );
                let mut exchange = std::pin::pin!(exchange);
                // The connection is driven here, in the request's own task, not in a task of
                // its own: no hand-off between tasks for the request, the head or each chunk.
                loop {
                    tokio::select! {
                        biased;
                        r = &mut exchange => break r,
                        _ = driver.as_mut(), if !closed => closed = true,
                    }
                }
            };
            match result {
                Exchange::Done(out, retry_after, ended) => {
                    // A connection whose response was read to its end serves the next request.
                    let clean = out.error.is_none()
                        || out.metadata.error_kind.as_deref() == Some(kind::HTTP_STATUS);
                    if ended && clean && !closed {
                        self.idle().push(conn);
                    }
                    return (out, retry_after);
                }
                // A kept-alive connection the server had closed before the request went out:
                // nothing was sent, so a fresh connection gets it (once).
                Exchange::NotSent(_) if reused && !retried_fresh => retried_fresh = true,
                Exchange::NotSent(e) => {
                    return (
                        failed(kind::TRANSPORT, format!("request failed to {name}: {e}")),
                        None,
                    );
                }
            }
        }
    }

    fn request(&self, body: Bytes) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::new(Full::new(body));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// A connection: the handle requests are sent on and the state machine that does the I/O.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Pin<
        Box<hyper::client::conn::http1::Connection<TokioIo<tokio::net::TcpStream>, Full<Bytes>>>,
    >,
    /// The deadline of the request being made on it.
    timer: Pin<Box<tokio::time::Sleep>>,
}

// Returned once per request and taken apart at once: boxing the outcome would add an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Exchange {
    /// The outcome, a `Retry-After`, and whether the body was read to its end.
    Done(Outcome, Option<Duration>, bool),
    /// The request never left: the connection was closed or broken before it was written.
    NotSent(String),
}

/// Writes `request` once the connection is ready and reads the response, within the timer.
async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
    sleep: &mut Pin<Box<tokio::time::Sleep>>,
    req: ChatRequest<'_>,
    name: &str,
    identity: &[String],
) -> Exchange {
    let timed_out = |what: &str| {
        Exchange::Done(
            failed(kind::TIMEOUT, format!("timed out to {name}: {what}")),
            None,
            false,
        )
    };
    tokio::select! {
        biased;
        r = sender.ready() => if let Err(e) = r {
            return Exchange::NotSent(innermost(&e));
        },
        _ = sleep.as_mut() => return timed_out("the connection was not ready within the timeout"),
    }
    // The timer starts at the write, as the general client's does.
    let t0 = Instant::now();
    let sent = tokio::select! {
        biased;
        r = sender.try_send_request(request) => r,
        _ = sleep.as_mut() => return timed_out("no response head within the timeout"),
    };
    let resp = match sent {
        Ok(resp) => resp,
        Err(mut e) => {
            if e.take_message().is_some() {
                return Exchange::NotSent(innermost(e.error()));
            }
            return Exchange::Done(
                failed(
                    kind::TRANSPORT,
                    format!("request failed to {name}: {}", innermost(e.error())),
                ),
                None,
                false,
            );
        }
    };
    let (parts, incoming) = resp.into_parts();
    let head = read::Head::of(parts.status.as_u16(), &parts.headers, identity);
    // Fused: the reader may have read it to its end already, and the drain asks again.
    let mut body = std::pin::pin!(body_stream(incoming, sleep).fuse());
    let (out, retry_after) = read::response(head, body.as_mut(), t0, req.stream, name).await;
    // A stream is read up to its `[DONE]`; what follows (the chunked body's last chunk) is read
    // here, off the clock, so the connection ends the exchange clean and can carry the next
    // request. A body that does not end at once leaves the connection unusable.
    let ended = tokio::time::timeout(DRAIN, async {
        while let Some(c) = body.next().await {
            if c.is_err() {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    Exchange::Done(out, retry_after, ended)
}

/// How long the rest of a body may take to arrive after the reader is done with it.
const DRAIN: Duration = Duration::from_millis(100);

impl Client {
    /// Sends one chat request through `h` with a body made by [`super::request_body`]: the
    /// same retries, outcome and scrubbing as [`Client::chat`].
    pub async fn chat_http1(&self, h: &Http1, body: &Bytes, req: ChatRequest<'_>) -> Outcome {
        let started_ms = chrono::Utc::now().timestamp_millis();
        let out = self
            .retrying(&h.endpoint, req.max_retries, || {
                h.attempt(body.clone(), req)
            })
            .await;
        self.finish(out, started_ms, &req)
    }
}

fn failed(k: &str, error: String) -> Outcome {
    let mut out = Outcome::default();
    out.metadata.error_kind = Some(k.into());
    out.error = Some(error);
    out
}

/// The most specific cause ("Connection reset by peer" rather than "connection error").
fn innermost(e: &hyper::Error) -> String {
    let mut cause = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    cause
}

/// The body's data frames, ended by the attempt's timer.
fn body_stream(
    incoming: hyper::body::Incoming,
    sleep: &mut Pin<Box<tokio::time::Sleep>>,
) -> impl Stream<Item = Result<Bytes, BodyError>> + '_ {
    let data = incoming.into_data_stream();
    futures_util::stream::unfold(Some((data, sleep)), |state| async move {
        let (mut data, sleep) = state?;
        tokio::select! {
            biased;
            chunk = data.next() => match chunk {
                None => None,
                Some(Ok(b)) => Some((Ok(b), Some((data, sleep)))),
                Some(Err(e)) => Some((Err(BodyError { timeout: false, message: innermost(&e) }), None)),
            },
            _ = sleep.as_mut() => Some((
                Err(BodyError { timeout: true, message: "operation timed out".into() }),
                None,
            )),
        }
    })
}
