//! The benchmark client for plain-HTTP endpoints: HTTP/1.1 written and read by evald itself on
//! one TCP connection per request in flight (a closed-loop worker keeps reusing the one it
//! took). The whole request is built once per case ([`Http1::request`]), so a request is one
//! `write` of bytes already made; the response head is parsed in place (`httparse`) and
//! the body framed (length, chunked or to the close) out of one buffer per connection, with no
//! header map, request object, channel or task between the worker and its socket, and one
//! timer per connection moved forward per request. What comes back goes through the same
//! reader ([`super::read`]), retry rule and secret scrubbing as the general client, so an error
//! is classified the same whichever client met it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{FutureExt, Stream, StreamExt};
use hyper::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::read::{self, BodyError};
use super::{ChatRequest, Client, Outcome, kind};
use crate::config::{Endpoint, EndpointKind};

/// A response head larger than this is refused (hyper's default limit is ~400 KiB; 64 KiB
/// of headers is already far beyond what an API sends).
const MAX_HEAD: usize = 64 * 1024;
/// Headers read per response, at most.
const MAX_HEADERS: usize = 100;
/// What each read asks the socket for, at least.
const READ_CHUNK: usize = 16 * 1024;

/// One endpoint's connections, for one benchmark phase; dropped with it, closing them.
pub struct Http1 {
    endpoint: Arc<Endpoint>,
    host: String,
    port: u16,
    /// `POST … HTTP/1.1`, the headers, and `Content-Length: ` awaiting the body's length.
    head: Vec<u8>,
    idle: Mutex<Vec<Conn>>,
}

/// What to connect to for `url` (an IPv6 address without the brackets a URL writes it in, which
/// a name lookup would not take) and what its `Host` header says (as the URL writes it, with
/// the port if the URL names one).
fn host_and_authority(url: &reqwest::Url) -> Option<(String, String)> {
    let written = url.host_str()?;
    let host = written
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(written)
        .to_string();
    let authority = match url.port() {
        Some(p) => format!("{written}:{p}"),
        None => written.to_string(),
    };
    Some((host, authority))
}

/// Whether `host` (as [`host_and_authority`] gives it: IPv6 without brackets) is this machine: a
/// loopback address, or `localhost` and the names under it, which resolve to loopback (RFC
/// 6761). Any other name counts as elsewhere, even one that a hosts file points here.
fn is_local(host: &str) -> bool {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_canonical().is_loopback(),
        Err(_) => {
            let name = host.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    }
}

impl std::fmt::Debug for Http1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the head: it carries the key.
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
    /// Whether the server is on this machine ([`is_local`]), sharing its cores with evald.
    pub(crate) fn is_local(&self) -> bool {
        is_local(&self.host)
    }

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
        let (host, authority) = host_and_authority(chat_url)?;
        let port = chat_url.port_or_known_default()?;
        let path = match chat_url.query() {
            Some(q) => format!("{}?{q}", chat_url.path()),
            None => chat_url.path().to_string(),
        };
        let mut headers: Vec<(String, String)> = vec![
            ("Host".into(), authority),
            ("Content-Type".into(), "application/json".into()),
            (
                "User-Agent".into(),
                concat!("evald/", env!("CARGO_PKG_VERSION")).into(),
            ),
        ];
        if let Some(k) = api_key {
            headers.push(("Authorization".into(), format!("Bearer {}", k.expose())));
        }
        for (k, v) in extra {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            headers.push((k.clone(), v.clone()));
        }
        let mut head = format!("POST {path} HTTP/1.1\r\n").into_bytes();
        for (k, v) in &headers {
            // What a header may not hold (a line break above all) leaves this client out,
            // as it did when hyper checked the same.
            HeaderName::from_bytes(k.as_bytes()).ok()?;
            HeaderValue::from_str(v).ok()?;
            head.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        head.extend_from_slice(b"Content-Length: ");
        Some(Http1 {
            endpoint: ep.clone(),
            host,
            port,
            head,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The whole request for `body`, as [`Client::chat_http1`] writes it: made once per case,
    /// so a request costs no formatting or copying. The head depends only on the endpoint, so
    /// the bytes serve every [`Http1`] of that endpoint (a benchmark's lanes each have one).
    pub fn request(&self, body: &[u8]) -> Bytes {
        let len = body.len().to_string();
        let mut wire = Vec::with_capacity(self.head.len() + len.len() + 4 + body.len());
        wire.extend_from_slice(&self.head);
        wire.extend_from_slice(len.as_bytes());
        wire.extend_from_slice(b"\r\n\r\n");
        wire.extend_from_slice(body);
        wire.into()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Conn>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection (unless `fresh`), else a new one; the flag says whether it was idle
    /// (and so may have been closed by the server meanwhile).
    async fn checkout(
        &self,
        deadline: tokio::time::Instant,
        fresh: bool,
    ) -> Result<(Conn, bool), Outcome> {
        if let Some(mut c) = (!fresh).then(|| self.idle().pop()).flatten() {
            // Moving a registered timer later is an atomic store, not a trip through the
            // timer wheel's lock: one timer per connection, reset per request.
            c.timer.as_mut().reset(deadline);
            return Ok((c, true));
        }
        let mut timer = Box::pin(tokio::time::sleep_until(deadline));
        let name = &self.endpoint.name;
        let connect = connect(&self.host, self.port);
        let tcp = tokio::select! {
            biased;
            c = connect => c.map_err(|e| failed(kind::CONNECT, format!("cannot connect to {name}: {e}")))?,
            _ = timer.as_mut() => return Err(failed(kind::TIMEOUT, format!("timed out to {name}: connecting took longer than the timeout"))),
        };
        Ok((
            Conn {
                tcp,
                buf: BytesMut::with_capacity(READ_CHUNK),
                timer,
            },
            false,
        ))
    }

    /// One attempt: the request written on a connection, the response read by the shared
    /// reader.
    async fn attempt(&self, wire: &[u8], req: ChatRequest<'_>) -> (Outcome, Option<Duration>) {
        let name = &self.endpoint.name;
        // One deadline for the whole attempt: connecting, the head and the body.
        let deadline = tokio::time::Instant::now() + req.timeout;
        let mut retried_fresh = false;
        loop {
            // The retry takes a new connection: the other idle ones are as old as the one the
            // server closed.
            let (mut conn, reused) = match self.checkout(deadline, retried_fresh).await {
                Ok(c) => c,
                Err(out) => return (out, None),
            };
            let ident = &self.endpoint.identity_headers;
            match exchange(&mut conn, wire, reused, req, name, ident).await {
                Exchange::Done(out, retry_after, reusable) => {
                    // A connection whose response was read to its end serves the next request.
                    let clean = out.error.is_none()
                        || out.metadata.error_kind.as_deref() == Some(kind::HTTP_STATUS);
                    if reusable && clean {
                        self.idle().push(conn);
                    }
                    return (out, retry_after);
                }
                // A kept-alive connection the server had closed before it took the request:
                // a fresh connection gets it (once).
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
}

/// A benchmark connection to `host:port`: no Nagle delay, and on loopback the cheapest
/// congestion control.
///
/// On loopback, where nothing is lost or queued, congestion control changes nothing a
/// benchmark measures, only what each send costs the client and the server: the usual default
/// (BBR) models the path and paces every send. Reno, which an unprivileged process may always
/// choose, costs least: at concurrency 64 against a local nginx, −1.5 µs of the client's CPU
/// and −1.0 µs of the server's per request, +8 % median requests/s (docs/benchmark.md). Other
/// paths keep the system's choice, the one the server's real clients get. Best effort: where
/// the kernel refuses, the connection keeps its default.
async fn connect(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let tcp = TcpStream::connect((host, port)).await?;
    tcp.set_nodelay(true)?;
    let loopback = tcp
        .peer_addr()
        .is_ok_and(|a| a.ip().to_canonical().is_loopback());
    if loopback && let Err(e) = rustix::net::sockopt::set_tcp_congestion(&tcp, "reno") {
        tracing::debug!(error = %e, "loopback connection keeps its congestion control");
    }
    Ok(tcp)
}

/// A connection: the socket, what was read from it and not yet used, the request being
/// written, and the deadline of the request being made on it.
struct Conn {
    tcp: TcpStream,
    buf: BytesMut,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Conn {
    /// Reads more into the buffer: the byte count (0 at the close), or the error; `None` when
    /// the request's deadline passed first.
    async fn fill(&mut self) -> Option<std::io::Result<usize>> {
        self.buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            r = self.tcp.read_buf(&mut self.buf) => Some(r),
            _ = self.timer.as_mut() => None,
        }
    }
}

// Returned once per request and taken apart at once: boxing the outcome would add an
// allocation per request for nothing.
#[allow(clippy::large_enum_variant)]
enum Exchange {
    /// The outcome, a `Retry-After`, and whether the connection can carry another request.
    Done(Outcome, Option<Duration>, bool),
    /// The server closed a kept-alive connection without taking the request.
    NotSent(String),
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes are left.
    Length(usize),
    /// Chunked: the next chunk's size line is due.
    ChunkSize,
    /// Chunked: this many bytes of the current chunk are left.
    ChunkData(usize),
    /// Chunked: the CRLF after a chunk's data is due.
    ChunkEnd,
    /// Chunked: trailer lines, up to an empty one.
    Trailers,
    /// Read to the connection's close (no length given).
    Close,
    /// The body ended where its framing says.
    Done,
    /// The body could not be read to its end.
    Broken,
}

/// What the response head says, taken out of the buffer it was parsed in.
struct ParsedHead {
    head: read::Head,
    framing: Framing,
    keep_alive: bool,
}

/// Writes the request and reads the response, within the connection's timer.
async fn exchange(
    conn: &mut Conn,
    wire: &[u8],
    reused: bool,
    req: ChatRequest<'_>,
    name: &str,
    identity: &[String],
) -> Exchange {
    // A timed-out request keeps how long it waited (at least the timeout): an open loop's
    // latency trend counts it, or a queue long enough to time out would hide its own end.
    let timed_out = |what: &str, t0: Instant| {
        let mut out = failed(kind::TIMEOUT, format!("timed out to {name}: {what}"));
        out.latency_ms = Some(super::ms(t0.elapsed()));
        Exchange::Done(out, None, false)
    };
    let broken = |what: String| {
        Exchange::Done(
            failed(kind::TRANSPORT, format!("request failed to {name}: {what}")),
            None,
            false,
        )
    };
    // A kept-alive connection the server closed while it was idle shows as readable (its end
    // of file) without a system call: take a fresh one before writing anything.
    if reused && conn.tcp.readable().now_or_never().is_some() {
        match conn.tcp.try_read_buf(&mut conn.buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok(0) => return Exchange::NotSent("the server closed the connection".into()),
            Ok(_) => return Exchange::NotSent("the server sent bytes nobody asked for".into()),
            Err(e) => return Exchange::NotSent(e.to_string()),
        }
    }
    // The timer starts at the write (DESIGN.md), after any connect. The general client starts
    // its own as it hands the request to reqwest, which also holds the connect (and the TLS
    // handshake) when no pooled connection is free, as vLLM's and guidellm's clients time.
    let t0 = Instant::now();
    let written = tokio::select! {
        biased;
        r = conn.tcp.write_all(wire) => r,
        _ = conn.timer.as_mut() => return timed_out("the request could not be written within the timeout", t0),
    };
    match written {
        // A request not written whole was not taken: on a kept-alive connection the server
        // had closed, a fresh one gets it.
        Err(e) if reused => return Exchange::NotSent(e.to_string()),
        Err(e) => return broken(e.to_string()),
        Ok(()) => {}
    }
    let parsed = loop {
        match parse_head(&mut conn.buf, identity) {
            Ok(Some(p)) => break p,
            Ok(None) => {}
            Err(e) => return broken(e),
        }
        match conn.fill().await {
            None => return timed_out("no response head within the timeout", t0),
            // Nothing at all came back on a kept-alive connection, only its close or reset:
            // the server had closed it as the request went out, and did not take it.
            Some(Ok(0)) if reused && conn.buf.is_empty() => {
                return Exchange::NotSent("the server closed the connection".into());
            }
            Some(Err(e)) if reused && conn.buf.is_empty() => {
                return Exchange::NotSent(e.to_string());
            }
            Some(Ok(0)) => return broken("connection closed before the response head".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return broken(e.to_string()),
        }
    };
    let ParsedHead {
        head,
        mut framing,
        keep_alive,
    } = parsed;
    let (out, retry_after) = {
        // Fused: the reader may have read it to its end already, and the drain asks again.
        let mut body = std::pin::pin!(body_stream(conn, &mut framing).fuse());
        let read = read::response(head, body.as_mut(), t0, req.stream, name).await;
        // A stream is read up to its `[DONE]`; what follows (the chunked body's last chunk)
        // is read here, off the clock, so the connection ends the exchange clean and can
        // carry the next request. A body that does not end at once leaves it unusable. A body
        // already read to its end needs no timer (a clock read and a timer a request).
        if !futures_util::stream::FusedStream::is_terminated(&body) {
            let _ = tokio::time::timeout(DRAIN, async {
                while let Some(Ok(_)) = body.next().await {}
            })
            .await;
        }
        read
    };
    let reusable = keep_alive && framing == Framing::Done && conn.buf.is_empty();
    Exchange::Done(out, retry_after, reusable)
}

/// How long the rest of a body may take to arrive after the reader is done with it.
const DRAIN: Duration = Duration::from_millis(100);

/// Parses a response head at the front of `buf` and takes it out: `None` while incomplete;
/// informational (1xx) heads are skipped.
fn parse_head(buf: &mut BytesMut, identity: &[String]) -> Result<Option<ParsedHead>, String> {
    loop {
        if buf.is_empty() {
            return Ok(None);
        }
        // Left uninitialised: httparse fills only the slots a head uses, where a zeroed array
        // would cost a 3 KiB write for every response.
        let mut headers = [std::mem::MaybeUninit::<httparse::Header>::uninit(); MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut headers,
        );
        let n = match parsed {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Err(format!("the response head is over {} KiB", MAX_HEAD / 1024));
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("invalid HTTP response: {e}")),
        };
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) {
            buf.advance(n);
            continue;
        }
        let get = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
        };
        let has_token = |name: &str, token: &str| {
            resp.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .filter_map(|h| std::str::from_utf8(h.value).ok())
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        let framing = if has_token("transfer-encoding", "chunked") {
            Framing::ChunkSize
        } else if status == 204 || status == 304 {
            Framing::Length(0)
        } else if let Some(v) = get("content-length") {
            match v.trim().parse::<usize>() {
                Ok(n) => Framing::Length(n),
                Err(_) => return Err(format!("invalid Content-Length `{}`", v.trim())),
            }
        } else {
            Framing::Close
        };
        let keep_alive = framing != Framing::Close
            && if resp.version == Some(0) {
                has_token("connection", "keep-alive")
            } else {
                !has_token("connection", "close")
            };
        let head = read::Head::from_lookup(status, get, identity);
        buf.advance(n);
        return Ok(Some(ParsedHead {
            head,
            framing,
            keep_alive,
        }));
    }
}

/// The next piece of the body out of the buffer, by its framing: `Ok(None)` when more bytes
/// are needed, `Ok(Some(empty))` never (pieces are not empty).
fn take_body(buf: &mut BytesMut, framing: &mut Framing) -> Result<Option<Bytes>, String> {
    loop {
        match *framing {
            Framing::Done | Framing::Broken | Framing::Length(0) => {
                *framing = Framing::Done;
                return Ok(None);
            }
            Framing::Length(left) | Framing::ChunkData(left) if !buf.is_empty() => {
                let k = left.min(buf.len());
                *framing = match (*framing, left - k) {
                    (Framing::Length(_), rest) => Framing::Length(rest),
                    (_, 0) => Framing::ChunkEnd,
                    (_, rest) => Framing::ChunkData(rest),
                };
                return Ok(Some(buf.split_to(k).freeze()));
            }
            Framing::Close if !buf.is_empty() => return Ok(Some(buf.split().freeze())),
            Framing::ChunkSize | Framing::Trailers => {
                let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
                    if buf.len() > 4096 {
                        return Err("a chunk-size line over 4 KiB".into());
                    }
                    return Ok(None);
                };
                let line = &buf[..end];
                if *framing == Framing::Trailers {
                    if line.is_empty() {
                        *framing = Framing::Done;
                    }
                } else {
                    let hex = line.split(|b| *b == b';').next().unwrap_or_default();
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| usize::from_str_radix(h.trim(), 16).ok())
                        .ok_or_else(|| "an invalid chunk size".to_string())?;
                    *framing = if size == 0 {
                        Framing::Trailers
                    } else {
                        Framing::ChunkData(size)
                    };
                }
                buf.advance(end + 2);
                if *framing == Framing::Done {
                    return Ok(None);
                }
            }
            Framing::ChunkEnd if buf.len() >= 2 => {
                if &buf[..2] != b"\r\n" {
                    return Err("no line break after a chunk".into());
                }
                buf.advance(2);
                *framing = Framing::ChunkSize;
            }
            _ => return Ok(None),
        }
    }
}

/// The body's pieces as they arrive, ended by the attempt's timer; `framing` says afterwards
/// whether it ended where it should ([`Framing::Done`]).
fn body_stream<'a>(
    conn: &'a mut Conn,
    framing: &'a mut Framing,
) -> impl Stream<Item = Result<Bytes, BodyError>> + 'a {
    futures_util::stream::unfold(Some((conn, framing)), |state| async move {
        let (conn, framing) = state?;
        let fail = |framing: &mut Framing, timeout: bool, message: String| {
            *framing = Framing::Broken;
            Some((Err(BodyError { timeout, message }), None))
        };
        loop {
            match take_body(&mut conn.buf, framing) {
                Ok(Some(piece)) => return Some((Ok(piece), Some((conn, framing)))),
                Ok(None) if *framing == Framing::Done => return None,
                Ok(None) => {}
                Err(e) => return fail(framing, false, format!("invalid chunked body: {e}")),
            }
            match conn.fill().await {
                None => return fail(framing, true, "operation timed out".into()),
                Some(Ok(0)) if *framing == Framing::Close => {
                    *framing = Framing::Done;
                    return None;
                }
                Some(Ok(0)) => {
                    return fail(
                        framing,
                        false,
                        "connection closed before the body ended".into(),
                    );
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return fail(framing, false, e.to_string()),
            }
        }
    })
}

impl Client {
    /// Sends one chat request through `h`, written as `wire` ([`Http1::request`] of a body
    /// made by [`super::request_body`]): the same retries, outcome and scrubbing as
    /// [`Client::chat`].
    pub async fn chat_http1(&self, h: &Http1, wire: &[u8], req: ChatRequest<'_>) -> Outcome {
        let started_ms = chrono::Utc::now().timestamp_millis();
        let out = self
            .retrying(&h.endpoint, req.max_retries, || h.attempt(wire, req))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback connection gets reno whatever the system's default is (BBR on the
    /// development machine, so this fails if the choice is not made).
    #[tokio::test]
    async fn loopback_connections_use_reno() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = connect("127.0.0.1", port).await.unwrap();
        assert!(tcp.nodelay().unwrap());
        let cc = rustix::net::sockopt::tcp_congestion(&tcp).unwrap();
        assert_eq!(cc, "reno");
    }

    /// An IPv6 address, which a URL writes in brackets, is connected to without them, and the
    /// `Host` header keeps them.
    #[tokio::test]
    async fn an_ipv6_endpoint_is_connected_to() {
        let listener = match std::net::TcpListener::bind("[::1]:0") {
            Ok(l) => l,
            Err(e) => {
                eprintln!("SKIPPED an_ipv6_endpoint_is_connected_to: no IPv6 loopback here ({e})");
                return;
            }
        };
        let port = listener.local_addr().unwrap().port();
        let url = reqwest::Url::parse(&format!("http://[::1]:{port}/v1/chat/completions")).unwrap();
        let (host, authority) = host_and_authority(&url).unwrap();
        assert_eq!(authority, format!("[::1]:{port}"));
        let tcp = connect(&host, port).await.unwrap();
        assert_eq!(tcp.peer_addr().unwrap(), listener.local_addr().unwrap());
        assert!(is_local(&host));
        let url = reqwest::Url::parse("http://Example.com/v1/chat/completions").unwrap();
        assert_eq!(
            host_and_authority(&url).unwrap(),
            ("example.com".to_string(), "example.com".to_string())
        );
    }

    /// Loopback addresses and `localhost` names are this machine; other names and addresses
    /// are not, whatever they resolve to.
    #[test]
    fn local_hosts_are_loopback_addresses_and_localhost_names() {
        for h in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "::ffff:127.0.0.1",
            "localhost",
            "LocalHost.",
            "api.localhost",
        ] {
            assert!(is_local(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "::2",
            "0.0.0.0",
            "example.com",
            "localhost.example.com",
        ] {
            assert!(!is_local(h), "{h}");
        }
    }

    /// Chunked bodies come apart wherever the reads split them: sizes with extensions, data
    /// across reads, trailers, and what follows the body left for the next response.
    #[test]
    fn chunked_bodies_are_framed_across_any_split() {
        let wire = b"5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for cut in 0..wire.len() {
            let mut buf = BytesMut::new();
            let mut framing = Framing::ChunkSize;
            let mut got = Vec::new();
            for part in [&wire[..cut], &wire[cut..]] {
                buf.extend_from_slice(part);
                while let Some(p) = take_body(&mut buf, &mut framing).unwrap() {
                    got.extend_from_slice(&p);
                }
            }
            assert_eq!(got, b"hello, world", "cut at {cut}");
            assert_eq!(framing, Framing::Done, "cut at {cut}");
            assert_eq!(&buf[..], b"NEXT", "cut at {cut}");
        }
        let mut framing = Framing::ChunkSize;
        let err = take_body(&mut BytesMut::from(&b"zz\r\n"[..]), &mut framing);
        assert_eq!(err, Err("an invalid chunk size".into()));
    }

    /// A head comes out of the buffer whole, 1xx heads skipped; the framing and keep-alive
    /// follow its headers.
    #[test]
    fn heads_give_status_framing_and_keep_alive() {
        let parse = |wire: &str| {
            let mut buf = BytesMut::from(wire.as_bytes());
            let p = parse_head(&mut buf, &["X-Model-Id".into()])
                .unwrap()
                .unwrap();
            (p.head.status, p.framing, p.keep_alive, buf, p.head.identity)
        };
        let (status, framing, keep, rest, id) = parse(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 4\r\nx-model-id: m1\r\n\r\nbody",
        );
        assert_eq!((status, framing, keep), (200, Framing::Length(4), true));
        assert_eq!(&rest[..], b"body");
        assert_eq!(id.get("X-Model-Id").map(String::as_str), Some("m1"));
        let (_, framing, keep, ..) = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
        );
        assert_eq!((framing, keep), (Framing::ChunkSize, false));
        let (_, framing, keep, ..) = parse("HTTP/1.0 200 OK\r\n\r\n");
        assert_eq!((framing, keep), (Framing::Close, false));
        let (status, framing, ..) = parse("HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\n\r\n");
        assert_eq!((status, framing), (429, Framing::Close));
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Le"[..]);
        assert!(parse_head(&mut partial, &[]).unwrap().is_none());
        let mut bad = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..]);
        assert!(parse_head(&mut bad, &[]).is_err());
        let mut garbage = BytesMut::from(&b"<html>not http</html>\r\n\r\n"[..]);
        assert!(parse_head(&mut garbage, &[]).is_err());
    }
}
