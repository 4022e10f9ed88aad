//! The daemon config, `evald.toml`: parsed into raw serde structs (unknown keys rejected), then
//! validated once into [`Config`] with defaults applied and relative paths resolved against the
//! config file's folder. Every problem is a [`Diagnostic`] naming file, line and key.

pub mod alerts;
pub mod cron;
pub mod pricing;
mod secrets;
mod units;

pub use alerts::{Maintenance, Notifier, NotifierFormat};
pub use pricing::{Price, Pricing};
use secrets::{KeyFileError, read_key_file};
pub use secrets::{Secret, Secrets};
pub use units::{Num, parse_duration, parse_size};

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::diag::{Diagnostic, Source, read_text};

/// Largest config or job file evald reads: anything bigger is a mistake, not a config.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Where `evald` looks for its config when `--config` and `$EVALD_CONFIG` are absent.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["evald.toml", "/etc/evald/evald.toml"];

/// The default `listen` address: loopback, so nothing is exposed until the operator says so.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8417";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    jobs_dir: Option<String>,
    plugins_dir: Option<String>,
    data_dir: Option<String>,
    max_concurrent_runs: Option<Spanned<i64>>,
    shutdown_grace: Option<Spanned<String>>,
    commit_interval: Option<Spanned<String>>,
    retention: Option<RawRetention>,
    web: Option<RawWeb>,
    #[serde(default)]
    endpoints: BTreeMap<Spanned<String>, Spanned<RawEndpoint>>,
    #[serde(default)]
    notifiers: BTreeMap<String, Spanned<alerts::RawNotifier>>,
    #[serde(default)]
    maintenance: Vec<Spanned<alerts::RawMaintenance>>,
    pricing: Option<pricing::RawPricing>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    requests: Option<Spanned<String>>,
    runs: Option<Spanned<String>>,
    max_db_size: Option<Spanned<String>>,
    prune_interval: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    token_env: Option<Spanned<String>>,
    public_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    url: Option<Spanned<String>>,
    api_key_env: Option<Spanned<String>>,
    api_key_file: Option<Spanned<String>>,
    provider: Option<String>,
    timeout: Option<Spanned<String>>,
    max_retries: Option<Spanned<i64>>,
    headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    identity_headers: Option<Spanned<Vec<String>>>,
    simulated: Option<Spanned<RawSimulated>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSimulated {
    latency_ms: Option<Spanned<i64>>,
    jitter_ms: Option<Spanned<i64>>,
    tokens_per_second: Option<Spanned<Num>>,
}

/// `commit_interval`'s default: a record is committed within this time of its response.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// The validated daemon config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file this came from.
    pub path: PathBuf,
    /// What is worth saying about the file but does not stop it (`evald check` prints them,
    /// `serve` logs them): secrets this shell lacks, a key variable that is not set.
    pub warnings: Vec<Diagnostic>,
    /// Where the page, exports and metrics are served.
    pub listen: SocketAddr,
    /// Job files, `*.toml`.
    pub jobs_dir: PathBuf,
    /// Where `plugin = "name.wasm"` is looked up.
    pub plugins_dir: PathBuf,
    /// `evald.redb`, the compiled-plugin cache and the control socket.
    pub data_dir: PathBuf,
    /// Runs going at once, across jobs.
    pub max_concurrent_runs: usize,
    /// How long a shutdown waits for in-flight requests before cutting them off.
    pub shutdown_grace: Duration,
    /// A record is committed within this time of its response (what a kill -9 can lose).
    pub commit_interval: Duration,
    /// What is kept, and for how long.
    pub retention: Retention,
    /// The bearer token the page asks for, read from `[web] token_env`.
    pub web_token: Option<Secret>,
    /// The page's address as its readers reach it (`[web] public_url`), without a trailing
    /// `/`: notifications link runs under it. Default `http://{listen}`.
    pub public_url: String,
    /// Endpoints by name.
    pub endpoints: BTreeMap<String, Arc<Endpoint>>,
    /// Where alerts are delivered, by name.
    pub notifiers: BTreeMap<String, Notifier>,
    /// When alerts are silenced.
    pub maintenance: Vec<Maintenance>,
    /// What tokens cost.
    pub pricing: Pricing,
}

/// Retention of stored data.
#[derive(Debug, Clone, PartialEq)]
pub struct Retention {
    /// Request records older than this are pruned.
    pub requests: Duration,
    /// Run summaries and rollups older than this are pruned.
    pub runs: Duration,
    /// Optional hard cap on the database file: oldest records go first.
    pub max_db_size: Option<u64>,
    /// How often pruning runs while the daemon serves.
    pub prune_interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            requests: Duration::from_secs(30 * 86_400),
            runs: Duration::from_secs(400 * 86_400),
            max_db_size: None,
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// One endpoint from `[endpoints.NAME]`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The table name, the first half of a target.
    pub name: String,
    /// Label recorded with each request.
    pub provider: String,
    /// Per-attempt timeout unless the job sets its own.
    pub timeout: Duration,
    /// Retries on connect errors, 429 and 5xx.
    pub max_retries: u32,
    /// Response headers that identify the model behind the name (e.g. `x-litellm-model-id`):
    /// stored with each record and watched for changes. Lower case.
    pub identity_headers: Vec<String>,
    /// Where requests go.
    pub kind: EndpointKind,
}

/// An OpenAI-compatible server, or the built-in simulated model.
#[derive(Debug, Clone)]
pub enum EndpointKind {
    /// `url`, key and extra headers.
    OpenAi {
        /// Base URL, without a trailing slash (`…/v1`).
        base_url: String,
        /// `{base_url}/chat/completions`, parsed once rather than per request.
        chat_url: reqwest::Url,
        /// Sent as `Authorization: Bearer …`; never stored, logged or shown.
        api_key: Option<Secret>,
        /// Extra headers sent with every request.
        headers: Vec<(String, String)>,
    },
    /// The built-in model: no network.
    Simulated(Simulated),
}

/// Settings of the simulated endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulated {
    /// Delay before the first token, ms.
    pub latency_ms: u64,
    /// Up to this much extra delay, ms, drawn per request.
    pub jitter_ms: u64,
    /// Output pace after the first token.
    pub tokens_per_second: f64,
}

/// Finds the config file: `--config`, else `$EVALD_CONFIG`, else `./evald.toml`, else
/// `/etc/evald/evald.toml`.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, String> {
    // Absolute (not canonical: a symlink stays as written), so every path resolved against it
    // is too: the job files listed at start and those the watcher reports then agree.
    let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    if let Some(p) = explicit {
        return Ok(absolute(p.to_path_buf()));
    }
    if let Some(p) = std::env::var_os("EVALD_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(absolute(PathBuf::from(p)));
    }
    DEFAULT_CONFIG_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .map(absolute)
        .ok_or_else(|| {
            "no config file: pass --config PATH, set EVALD_CONFIG, or create ./evald.toml or /etc/evald/evald.toml".to_string()
        })
}

/// The longest retention a config may ask for: 100 years.
const MAX_RETENTION: Duration = Duration::from_secs(36_500 * 86_400);

impl Config {
    /// Reads and validates a config file for `evald serve` (secrets required).
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        Config::load_with(path, Secrets::Required)
    }

    /// Reads and validates a config file.
    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, Vec<Diagnostic>> {
        let text = read_text(path, MAX_FILE_BYTES).map_err(|d| vec![d])?;
        Config::parse_with(path, &text, secrets)
    }

    /// Validates config text (secrets required); `path` locates it and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, Vec<Diagnostic>> {
        Config::parse_with(path, text, Secrets::Required)
    }

    /// Validates config text; `path` locates it and anchors relative paths.
    pub fn parse_with(
        path: &Path,
        text: &str,
        secrets: Secrets,
    ) -> Result<Config, Vec<Diagnostic>> {
        let src = Source::new(path, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| vec![src.from_toml(&e)])?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut errs = Vec::new();
        let resolve = |p: Option<String>, default: &str| {
            let p = PathBuf::from(p.unwrap_or_else(|| default.to_string()));
            // Joined and rid of `.` components: `jobs_dir = "./jobs"` names its files
            // `/etc/evald/jobs/x.toml` in messages, not `/etc/evald/./jobs/x.toml`.
            let p = if p.is_absolute() { p } else { dir.join(p) };
            p.components().collect::<PathBuf>()
        };

        let listen = match raw.listen {
            None => DEFAULT_LISTEN.parse().ok(),
            Some(l) => match l.get_ref().parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    errs.push(src.at(
                        Some(l.span()),
                        format!(
                            "listen: `{}` is not an address:port such as \"127.0.0.1:8417\"",
                            l.get_ref()
                        ),
                    ));
                    None
                }
            },
        };
        let max_concurrent_runs = match raw.max_concurrent_runs {
            None => 4,
            Some(n) if (1..=256).contains(n.get_ref()) => *n.get_ref() as usize,
            Some(n) => {
                errs.push(src.at(
                    Some(n.span()),
                    "max_concurrent_runs: must be between 1 and 256",
                ));
                1
            }
        };
        let mut duration = |key: &str, v: Option<Spanned<String>>, default: Duration| match v {
            None => default,
            Some(v) => parse_duration(v.get_ref()).unwrap_or_else(|e| {
                errs.push(src.at(Some(v.span()), format!("{key}: {e}")));
                default
            }),
        };
        let shutdown_grace = duration(
            "shutdown_grace",
            raw.shutdown_grace,
            Duration::from_secs(10),
        );
        let commit_span = raw.commit_interval.as_ref().map(|v| v.span());
        let commit_interval = duration(
            "commit_interval",
            raw.commit_interval,
            DEFAULT_COMMIT_INTERVAL,
        );
        let mut retention = Retention::default();
        let raw_retention_spans = raw.retention.as_ref().map(|r| {
            (
                r.requests.as_ref().map(|v| v.span()),
                r.runs.as_ref().map(|v| v.span()),
            )
        });
        if let Some(r) = raw.retention {
            retention.requests = duration("retention.requests", r.requests, retention.requests);
            retention.runs = duration("retention.runs", r.runs, retention.runs);
            retention.prune_interval = duration(
                "retention.prune_interval",
                r.prune_interval,
                retention.prune_interval,
            );
            if let Some(s) = r.max_db_size {
                match parse_size(s.get_ref()) {
                    Ok(n) => retention.max_db_size = Some(n),
                    Err(e) => {
                        errs.push(src.at(Some(s.span()), format!("retention.max_db_size: {e}")))
                    }
                }
            }
        }
        // "Keep forever" is written as a long time; past a century it is surely a slip (and
        // past ~292 million years it would overflow the cutoff's arithmetic).
        if let Some(r) = &raw_retention_spans {
            for (key, v, span) in [
                ("retention.requests", retention.requests, &r.0),
                ("retention.runs", retention.runs, &r.1),
            ] {
                if v > MAX_RETENTION {
                    errs.push(src.at(
                        span.clone(),
                        format!("{key}: at most 100 years (36500d); to keep everything, write \"36500d\""),
                    ));
                }
            }
        }
        if retention.prune_interval < Duration::from_secs(1) {
            retention.prune_interval = Duration::from_secs(1);
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(10)).contains(&commit_interval) {
            errs.push(src.at(
                commit_span,
                "commit_interval: must be between 1ms and 10s".to_string(),
            ));
        }
        let (token_env, public_url) = raw
            .web
            .map_or((None, None), |w| (w.token_env, w.public_url));
        let public_url = public_url.and_then(|u| match reqwest::Url::parse(u.get_ref()) {
            Ok(p) if matches!(p.scheme(), "http" | "https") => Some(u.get_ref().trim_end_matches('/').to_string()),
            _ => {
                errs.push(src.at(Some(u.span()), format!("web.public_url: `{}` is not an http(s) URL such as \"https://evals.example.com\"", u.get_ref())));
                None
            }
        });
        let web_token = token_env.and_then(|var| {
            secrets::from_env(
                &src,
                &var,
                secrets,
                "web.token_env",
                "unset token_env to serve without a token",
                &mut errs,
            )
        });

        let mut endpoints = BTreeMap::new();
        for (name, ep) in raw.endpoints {
            let span = ep.span();
            // Many local gateways take no key, so an unset variable is no error; but a typo in
            // its name would send every request without one, silently.
            if let Some(var) = &ep.get_ref().api_key_env
                && !std::env::var(var.get_ref()).is_ok_and(|v| !v.trim().is_empty())
            {
                errs.push(src.warn(
                    Some(var.span()),
                    format!(
                        "endpoints.{}.api_key_env: environment variable `{}` is not set: requests to {} go without an Authorization header",
                        name.get_ref(),
                        var.get_ref(),
                        name.get_ref()
                    ),
                ));
            }
            match validate_endpoint(&src, dir, name.get_ref(), span, ep.into_inner(), secrets) {
                Ok(e) => {
                    endpoints.insert(name.into_inner(), Arc::new(e));
                }
                Err(mut e) => errs.append(&mut e),
            }
        }
        for name in endpoints.keys() {
            if name.is_empty() || name.contains('/') {
                errs.push(src.at(
                    None,
                    format!("endpoints.{name}: an endpoint name must be non-empty and have no `/`"),
                ));
            }
        }

        let notifiers = alerts::notifiers(&src, dir, raw.notifiers, secrets, &mut errs);
        let maintenance = alerts::maintenance(&src, raw.maintenance, &mut errs);
        let known: Vec<&str> = endpoints.keys().map(String::as_str).collect();
        let pricing = pricing::parse(&src, dir, raw.pricing, &known, &mut errs);
        let (warnings, errs): (Vec<_>, Vec<_>) = errs.into_iter().partition(|d| d.warning);
        if !errs.is_empty() {
            return Err(errs);
        }
        let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8417)));
        Ok(Config {
            path: path.to_path_buf(),
            listen,
            jobs_dir: resolve(raw.jobs_dir, "jobs"),
            plugins_dir: resolve(raw.plugins_dir, "plugins"),
            data_dir: resolve(raw.data_dir, "data"),
            max_concurrent_runs,
            shutdown_grace,
            commit_interval,
            retention,
            web_token,
            public_url: public_url.unwrap_or_else(|| format!("http://{listen}")),
            endpoints,
            notifiers,
            maintenance,
            pricing,
            warnings,
        })
    }

    /// The redb file.
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("evald.redb")
    }

    /// The control socket the CLI uses to reach a running daemon.
    pub fn socket_path(&self) -> PathBuf {
        self.data_dir.join("evald.sock")
    }

    /// Every secret in the config, so error text can be scrubbed of them.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut out: Vec<Secret> = self
            .endpoints
            .values()
            .flat_map(|e| match &e.kind {
                EndpointKind::OpenAi {
                    api_key, headers, ..
                } => {
                    // Headers that carry credentials are secrets too.
                    let creds = headers
                        .iter()
                        .filter(|(k, _)| {
                            let k = k.to_ascii_lowercase();
                            k.contains("key") || k.contains("auth") || k.contains("token")
                        })
                        .map(|(_, v)| Secret::new(v.clone()));
                    api_key.clone().into_iter().chain(creds).collect::<Vec<_>>()
                }
                EndpointKind::Simulated(_) => vec![],
            })
            .collect();
        out.extend(self.web_token.clone());
        out.extend(self.notifiers.values().filter_map(|n| n.secret.clone()));
        out
    }
}

fn validate_endpoint(
    src: &Source,
    dir: &Path,
    name: &str,
    span: std::ops::Range<usize>,
    raw: RawEndpoint,
    secrets: Secrets,
) -> Result<Endpoint, Vec<Diagnostic>> {
    let mut errs = Vec::new();
    let key = |k: &str| format!("endpoints.{name}.{k}");
    let timeout = match &raw.timeout {
        None => Duration::from_secs(60),
        Some(t) => parse_duration(t.get_ref()).unwrap_or_else(|e| {
            errs.push(src.at(Some(t.span()), format!("{}: {e}", key("timeout"))));
            Duration::from_secs(60)
        }),
    };
    let max_retries = match &raw.max_retries {
        None => 2,
        Some(n) if (0..=10).contains(n.get_ref()) => *n.get_ref() as u32,
        Some(n) => {
            errs.push(src.at(
                Some(n.span()),
                format!("{}: must be between 0 and 10", key("max_retries")),
            ));
            0
        }
    };
    let mut identity_headers = Vec::new();
    if let Some(h) = &raw.identity_headers {
        for name in h.get_ref() {
            match hyper::header::HeaderName::from_bytes(name.trim().as_bytes()) {
                Ok(n) => identity_headers.push(n.as_str().to_string()),
                Err(_) => errs.push(src.at(
                    Some(h.span()),
                    format!("{}: `{name}` is not a header name", key("identity_headers")),
                )),
            }
        }
    }
    let kind = match (&raw.url, &raw.simulated) {
        (Some(_), Some(s)) => {
            errs.push(src.at(
                Some(s.span()),
                format!("endpoints.{name}: set either `url` or `simulated`, not both"),
            ));
            None
        }
        (None, None) => {
            errs.push(src.at(
                Some(span.clone()),
                format!("endpoints.{name}: needs `url` (an OpenAI-compatible base URL) or `simulated = {{ … }}`"),
            ));
            None
        }
        (None, Some(sim)) => {
            for (k, present) in [
                ("api_key_env", raw.api_key_env.is_some()),
                ("api_key_file", raw.api_key_file.is_some()),
                ("headers", raw.headers.is_some()),
            ] {
                if present {
                    errs.push(src.at(
                        Some(sim.span()),
                        format!("{}: does not apply to a simulated endpoint", key(k)),
                    ));
                }
            }
            let s = sim.get_ref();
            let ms = |v: &Option<Spanned<i64>>,
                      k: &str,
                      default: u64,
                      errs: &mut Vec<Diagnostic>| match v {
                None => default,
                Some(v) if (0..=600_000).contains(v.get_ref()) => *v.get_ref() as u64,
                Some(v) => {
                    errs.push(src.at(
                        Some(v.span()),
                        format!("{}: must be between 0 and 600000", key(k)),
                    ));
                    default
                }
            };
            let latency_ms = ms(&s.latency_ms, "simulated.latency_ms", 100, &mut errs);
            let jitter_ms = ms(&s.jitter_ms, "simulated.jitter_ms", 0, &mut errs);
            let tokens_per_second = match &s.tokens_per_second {
                None => 100.0,
                Some(t) if t.get_ref().0 > 0.0 && t.get_ref().0.is_finite() => t.get_ref().0,
                Some(t) => {
                    errs.push(src.at(
                        Some(t.span()),
                        format!(
                            "{}: must be a positive number",
                            key("simulated.tokens_per_second")
                        ),
                    ));
                    100.0
                }
            };
            Some(EndpointKind::Simulated(Simulated {
                latency_ms,
                jitter_ms,
                tokens_per_second,
            }))
        }
        (Some(url), None) => {
            let u = url.get_ref().trim().trim_end_matches('/').to_string();
            let chat_url = match reqwest::Url::parse(&format!("{u}/chat/completions")) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Some(parsed),
                _ => {
                    errs.push(src.at(
                        Some(url.span()),
                        format!("{}: `{}` is not an http(s) URL", key("url"), url.get_ref()),
                    ));
                    None
                }
            };
            let api_key = match (&raw.api_key_env, &raw.api_key_file) {
                (Some(_), Some(f)) => {
                    errs.push(src.at(
                        Some(f.span()),
                        format!(
                            "endpoints.{name}: set either `api_key_env` or `api_key_file`, not both"
                        ),
                    ));
                    None
                }
                // An unset variable is not an error: many local gateways take no key, and
                // `evald check` must pass on a machine without the operator's secrets.
                (Some(var), None) => std::env::var(var.get_ref())
                    .ok()
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| Secret::new(v.trim())),
                (None, Some(file)) => match read_key_file(dir, file.get_ref()) {
                    Ok(k) => Some(k),
                    Err(KeyFileError::NoCredentialsDirectory) if secrets == Secrets::Optional => {
                        errs.push(src.warn(
                            Some(file.span()),
                            format!("endpoints.{name}.api_key_file is under $CREDENTIALS_DIRECTORY, which only the service has: requests from this shell go without a key"),
                        ));
                        None
                    }
                    Err(e) => {
                        errs.push(
                            src.at(Some(file.span()), format!("{}: {e}", key("api_key_file"))),
                        );
                        None
                    }
                },
                (None, None) => None,
            };
            let mut headers = Vec::new();
            for (k, v) in raw.headers.iter().flatten() {
                let ok_name =
                    reqwest::header::HeaderName::from_bytes(k.get_ref().as_bytes()).is_ok();
                let ok_value = reqwest::header::HeaderValue::from_str(v.get_ref()).is_ok();
                if !ok_name || !ok_value {
                    errs.push(src.at(
                        Some(k.span()),
                        format!(
                            "{}: `{}` is not a valid HTTP header",
                            key("headers"),
                            k.get_ref()
                        ),
                    ));
                } else {
                    headers.push((k.get_ref().clone(), v.get_ref().clone()));
                }
            }
            chat_url.map(|chat_url| EndpointKind::OpenAi {
                base_url: u,
                chat_url,
                api_key,
                headers,
            })
        }
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    let Some(kind) = kind else {
        return Err(errs);
    };
    let provider = raw.provider.unwrap_or_else(|| match kind {
        EndpointKind::Simulated(_) => "simulated".to_string(),
        EndpointKind::OpenAi { .. } => name.to_string(),
    });
    Ok(Endpoint {
        name: name.to_string(),
        provider,
        timeout,
        max_retries,
        identity_headers,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(Path::new("/etc/evald/evald.toml"), text) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_missing_secret_variable_is_a_warning_where_it_is_no_error() {
        let text = "[web]\ntoken_env = \"EVALD_TEST_UNSET_TOKEN\"\n[endpoints.gw]\nurl = \"http://127.0.0.1:9/v1\"\napi_key_env = \"EVALD_TEST_UNSET_KEY\"\n[endpoints.svc]\nurl = \"http://127.0.0.1:9/v1\"\napi_key_file = \"$CREDENTIALS_DIRECTORY/k\"\n";
        let path = Path::new("evald.toml");
        // serve: the token is required; the key is not, but its absence is said.
        let errs = Config::parse_with(path, text, Secrets::Required).unwrap_err();
        assert!(errs.iter().all(|d| !d.warning), "{errs:?}");
        assert!(errs[0].to_string().contains("web.token_env"), "{errs:?}");
        // check and the other commands: both are warnings, and the config is used.
        let c =
            Config::parse_with(path, text, Secrets::Optional).unwrap_or_else(|e| panic!("{e:?}"));
        let w: Vec<String> = c.warnings.iter().map(|d| d.to_string()).collect();
        assert!(
            w.iter()
                .any(|w| w.starts_with("evald.toml:2:13: warning: web.token_env")
                    && w.contains("`evald serve` refuses to start without it")),
            "{w:?}"
        );
        assert!(
            w.iter().any(|w| w.contains("endpoints.gw.api_key_env")
                && w.contains("go without an Authorization header")),
            "{w:?}"
        );
        // The service's credentials, which a shell lacks: located, as every other warning.
        assert!(
            w.iter().any(|w| w.starts_with("evald.toml:8:16: warning: endpoints.svc.api_key_file is under $CREDENTIALS_DIRECTORY")),
            "{w:?}"
        );
    }

    #[test]
    fn defaults_apply_and_paths_resolve_against_the_config_folder() {
        let c =
            Config::parse(Path::new("/srv/e/evald.toml"), "").unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.listen.to_string(), "127.0.0.1:8417");
        assert_eq!(c.public_url, "http://127.0.0.1:8417");
        assert_eq!(c.jobs_dir, PathBuf::from("/srv/e/jobs"));
        assert_eq!(c.db_path(), PathBuf::from("/srv/e/data/evald.redb"));
        assert_eq!(c.max_concurrent_runs, 4);
        assert_eq!(c.retention, Retention::default());
        let c = Config::parse(
            Path::new("/srv/e/./evald.toml"),
            "jobs_dir = \"./jobs\"\ndata_dir = \"../d/./x\"\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.jobs_dir, PathBuf::from("/srv/e/jobs"));
        assert_eq!(c.db_path(), PathBuf::from("/srv/e/../d/x/evald.redb"));
        // Notifications link runs under the address readers use, not the loopback one.
        let c = Config::parse(
            Path::new("/srv/e/evald.toml"),
            "[web]\npublic_url = \"https://evals.example.com/\"\n",
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(c.public_url, "https://evals.example.com");
    }

    #[test]
    fn each_problem_names_line_and_key() {
        let cases: &[(&str, &str)] = &[
            ("bogus = 1\n", "evald.toml:1:1: unknown field `bogus`"),
            (
                "listen = \"nowhere\"\n",
                "evald.toml:1:10: listen: `nowhere` is not an address",
            ),
            (
                "[retention]\nrequests = \"soon\"\n",
                "evald.toml:2:12: retention.requests: `soon` is not a duration",
            ),
            (
                // ~300 million years overflowed the prune's cutoff and removed every record.
                "[retention]\nruns = \"300000000y\"\n",
                "evald.toml:2:8: retention.runs: at most 100 years",
            ),
            (
                "[retention]\nmax_db_size = \"2 parsecs\"\n",
                "retention.max_db_size: `2 parsecs`: unknown size unit",
            ),
            (
                "[endpoints.a]\nurl = \"http://127.0.0.1:9/v1\"\n[pricing.models.\"gatway/m\"]\ninput = 1\noutput = 2\n",
                "evald.toml:3:1: pricing.models.\"gatway/m\": no endpoint `gatway` in this file (endpoints: a)",
            ),
            (
                "[web]\npublic_url = \"evals.example.com\"\n",
                "evald.toml:2:14: web.public_url: `evals.example.com` is not an http(s) URL",
            ),
            (
                "[endpoints.a]\nurl = \"ftp://x\"\n",
                "evald.toml:2:7: endpoints.a.url: `ftp://x` is not an http(s) URL",
            ),
            (
                "[endpoints.a]\nprovider = \"x\"\n",
                "endpoints.a: needs `url`",
            ),
            (
                "[endpoints.a]\nurl = \"http://x\"\nsimulated = {}\n",
                "set either `url` or `simulated`",
            ),
            (
                "[endpoints.a]\nurl = \"http://x\"\nmax_retries = 99\n",
                "endpoints.a.max_retries: must be between 0 and 10",
            ),
            (
                "[endpoints.a]\nsimulated = { latency_ms = -1 }\n",
                "endpoints.a.simulated.latency_ms",
            ),
            (
                "[endpoints.a]\nurl = \"http://x\"\napi_key_file = \"/nonexistent/key\"\n",
                "endpoints.a.api_key_file: cannot read",
            ),
            (
                "max_concurrent_runs = 0\n",
                "max_concurrent_runs: must be between 1 and 256",
            ),
        ];
        for (text, want) in cases {
            let got = errors(text);
            assert!(
                got.iter().any(|e| e.contains(want)),
                "{text:?}: want {want:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("1.5 KB"), Ok(1500));
        assert_eq!(parse_size("10"), Ok(10));
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let key = dir.path().join("key");
        std::fs::write(&key, "sk-123\n").unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644))
            .unwrap_or_else(|e| panic!("{e}"));
        let err = read_key_file(dir.path(), "key")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("readable by others"), "{err}");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_key_file(dir.path(), "key")
                .map(|s| s.expose().to_string())
                .map_err(|e| e.to_string()),
            Ok("sk-123".to_string())
        );
    }
}
